namespace Bert.Runtime.Data;

/// <summary>
/// A dataset directory (one sequence length): its shard-*.bin files in name order, opened and validated
/// together. Instance i is addressed across shards; reads go into caller-provided spans and allocate
/// nothing. Safe for concurrent reads.
/// </summary>
public sealed class PretrainingDataset : IDisposable
{
    private readonly ShardReader[] _shards;
    private readonly long[] _starts; // [shards + 1] first global index of each shard

    private PretrainingDataset(string directory, ShardReader[] shards)
    {
        Directory = directory;
        _shards = shards;
        _starts = new long[shards.Length + 1];
        for (int i = 0; i < shards.Length; i++) _starts[i + 1] = _starts[i] + shards[i].Count;
        var h = shards[0].Header;
        SeqLength = h.SeqLength;
        MaxPredictions = h.MaxPredictions;
        VocabHash = h.VocabHash;
        VocabSize = h.VocabSize;
        WholeWordMask = (h.Flags & ShardHeader.FlagWholeWordMask) != 0;
    }

    public string Directory { get; }

    /// <summary>Instances in all shards.</summary>
    public long Count => _starts[^1];

    /// <summary>S.</summary>
    public int SeqLength { get; }

    /// <summary>P.</summary>
    public int MaxPredictions { get; }

    public ulong VocabHash { get; }

    public int VocabSize { get; }

    public bool WholeWordMask { get; }

    public IReadOnlyList<string> ShardPaths => _shards.Select(s => s.Path).ToArray();

    /// <summary>
    /// Opens every shard of <paramref name="directory"/>. With <paramref name="vocabulary"/>, the shards
    /// must have been made with it (same hash and size). Throws <see cref="DirectoryNotFoundException"/>
    /// or <see cref="ShardFormatException"/> (file, field, value) on any problem.
    /// </summary>
    public static PretrainingDataset Open(string directory, Vocabulary? vocabulary = null, bool verifyChecksums = true) =>
        Open([directory], vocabulary, verifyChecksums);

    /// <summary>
    /// Opens the shards of several dataset directories of one sequence length as one dataset (instances of the
    /// first directory first): datasets prepared separately, for example from different corpora or parts of
    /// one, are trained on together. All shards must agree (sequence length, predictions, vocabulary).
    /// </summary>
    public static PretrainingDataset Open(IReadOnlyList<string> directories, Vocabulary? vocabulary = null, bool verifyChecksums = true)
    {
        ArgumentNullException.ThrowIfNull(directories);
        if (directories.Count == 0) throw new ArgumentException("no dataset directory", nameof(directories));
        var paths = new List<string>();
        foreach (var d in directories)
        {
            string full = Path.GetFullPath(d);
            if (!System.IO.Directory.Exists(full))
                throw new DirectoryNotFoundException($"{full}: dataset directory not found (create it with `bert prepare`)");
            var found = System.IO.Directory.EnumerateFiles(full, "shard-*.bin").Order(StringComparer.Ordinal).ToArray();
            if (found.Length == 0)
                throw new ShardFormatException(full, "shards", "0", "no shard-*.bin files in the dataset directory");
            paths.AddRange(found);
        }
        string directory = string.Join(" + ", directories.Select(Path.GetFullPath));
        var shards = new List<ShardReader>(paths.Count);
        try
        {
            foreach (var p in paths)
            {
                var shard = ShardReader.Open(p, verifyChecksums);
                shards.Add(shard);
                var h = shard.Header;
                var first = shards[0].Header;
                void Same<T>(string field, T value, T expected) where T : IEquatable<T>
                {
                    if (!value.Equals(expected))
                        throw new ShardFormatException(p, field, value.ToString()!, $"differs from {paths[0]} ({expected}); a dataset's shards must agree");
                }
                Same("seq_length", h.SeqLength, first.SeqLength);
                Same("max_predictions", h.MaxPredictions, first.MaxPredictions);
                Same("vocab_size", h.VocabSize, first.VocabSize);
                Same("vocab_hash", h.VocabHash, first.VocabHash);
                if (vocabulary != null && (h.VocabHash != vocabulary.Hash || h.VocabSize != vocabulary.Count))
                    throw new ShardFormatException(p, "vocab_hash", $"0x{h.VocabHash:x16}",
                        $"the shard was made with another vocabulary than {vocabulary.Source} (0x{vocabulary.Hash:x16}, {vocabulary.Count} tokens); prepare the data again with this vocabulary");
            }
            return new PretrainingDataset(directory, shards.ToArray());
        }
        catch
        {
            foreach (var s in shards) s.Dispose();
            throw;
        }
    }

    /// <summary>Copies instance <paramref name="index"/> into spans of S and P elements (outputs first; see <see cref="ShardReader.Read"/>).</summary>
    public InstanceInfo Read(Span<int> inputIds, Span<int> tokenTypeIds, Span<int> maskedPositions, Span<int> maskedIds, long index)
    {
        if ((ulong)index >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"{Directory} holds {Count} instances");
        int shard = ShardOf(index);
        return _shards[shard].Read(inputIds, tokenTypeIds, maskedPositions, maskedIds, index - _starts[shard]);
    }

    private int ShardOf(long index)
    {
        int lo = 0, hi = _shards.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (_starts[mid] <= index) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    public void Dispose()
    {
        foreach (var s in _shards) s.Dispose();
    }
}
