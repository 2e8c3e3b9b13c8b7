using System.Collections.Concurrent;
using System.Diagnostics;
using Bert.Runtime.IO;

namespace Bert.Runtime.Data;

/// <summary>How far <see cref="PretrainingDataBuilder"/> is: the stage, its fraction (0..1), and for a
/// streamed corpus the input bytes read of the total and the instances written so far.</summary>
public readonly record struct PrepareProgress(string Stage, double Fraction, long BytesRead = 0, long TotalBytes = 0, long InstancesWritten = 0)
{
    public const string Read = "read", Tokenize = "tokenize", Instances = "instances", Write = "write", Stream = "prepare";

    /// <summary>Progress of dataset <paramref name="index"/> of <paramref name="count"/> built one after another
    /// (train and held-out sets at each sequence length): the stage is prefixed with <paramref name="name"/>
    /// ("train seq128: instances") and the fraction is of all of them, so a bar does not return to 0 and
    /// "100% instances" does not repeat without saying which dataset.</summary>
    public static IProgress<PrepareProgress>? ForDataset(IProgress<PrepareProgress>? progress, string name, int index, int count) =>
        progress is null ? null : new DatasetProgress(progress, name, index, Math.Max(count, 1));

    private sealed class DatasetProgress(IProgress<PrepareProgress> inner, string name, int index, int count) : IProgress<PrepareProgress>
    {
        public void Report(PrepareProgress value) =>
            inner.Report(value with { Stage = $"{name}: {value.Stage}", Fraction = (index + Math.Clamp(value.Fraction, 0, 1)) / count });
    }
}

/// <summary>
/// Corpus → shards for one sequence length, in memory bounded by the options, not by the corpus: the
/// input files are streamed in windows of about <see cref="PretrainingDataOptions.WindowChars"/> characters;
/// each window is tokenized and turned into instances (dupe passes × documents, in parallel; the random next
/// sentences are drawn from the window and the one before it); instances are shuffled in blocks of about
/// <see cref="PretrainingDataOptions.ShuffleBufferBytes"/> and written as shard files as each block fills;
/// with several blocks the shard files are then named in a shuffled order. Every random choice comes from
/// (seed, pass, document index) or (seed, block), so the shards are byte-identical for any thread count. A
/// corpus of one window gives exactly the shards of building it whole in memory. The dataset directory is
/// built under a temporary name and moved into place at the end, so a failure or cancellation leaves
/// nothing behind (and an older dataset there stays intact). stats.json lists the inputs and the shards
/// with their checksums.
/// </summary>
public static class PretrainingDataBuilder
{
    public const string StatsFileName = "stats.json";
    private const ulong ShuffleStream = 0x53485546; // "SHUF"
    private const ulong ShardOrderStream = 0x4F524452; // "ORDR"

    /// <summary>The dataset directory for sequence length <paramref name="seqLength"/> under <paramref name="root"/>: root/seq128.</summary>
    public static string DatasetDirectory(string root, int seqLength) => Path.Combine(root, $"seq{seqLength}");

    public static string ShardFileName(int index) => $"shard-{index:D5}.bin";

    /// <summary>Whether <paramref name="name"/> is a file this builder writes (and may replace).</summary>
    public static bool IsDatasetFile(string name) =>
        name == StatsFileName || (name.StartsWith("shard-", StringComparison.Ordinal) && name.EndsWith(".bin", StringComparison.Ordinal));

    /// <summary>Streams one corpus file into the dataset (see the class summary).</summary>
    public static PretrainingStats Build(string corpusPath, CorpusFormat format, Vocabulary vocabulary,
        PretrainingDataOptions options, string outputDirectory, IProgress<PrepareProgress>? progress = null,
        CancellationToken cancellationToken = default, IFileSystem? fileSystem = null)
    {
        if (!File.Exists(corpusPath)) throw new FileNotFoundException($"{corpusPath}: corpus file not found", corpusPath);
        return Build([Path.GetFullPath(corpusPath)], format, vocabulary, options, outputDirectory, progress, cancellationToken, fileSystem);
    }

    /// <summary>Streams corpus files (see <see cref="CorpusInputs.Expand"/>) into the dataset, in bounded memory.</summary>
    /// <param name="files">The input files, in reading order (.gz files are decompressed).</param>
    /// <param name="fileSystem">Where the dataset is written (default: the physical file system).</param>
    /// <param name="include">Which documents (by their 0-based index in the whole input) go into the dataset; null: all.
    /// A held-out split is built from the same files with the complementary filter.</param>
    /// <exception cref="DiskFullException">The volume filled up; an older dataset in <paramref name="outputDirectory"/>
    /// is unchanged and nothing partial is left.</exception>
    public static PretrainingStats Build(IReadOnlyList<string> files, CorpusFormat format, Vocabulary vocabulary,
        PretrainingDataOptions options, string outputDirectory, IProgress<PrepareProgress>? progress = null,
        CancellationToken cancellationToken = default, IFileSystem? fileSystem = null, Func<long, bool>? include = null,
        string? corpusName = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        options.Validate();
        if (files.Count == 0) throw new ArgumentException("no input file", nameof(files));
        var clock = Stopwatch.StartNew();
        string name = corpusName ?? (files.Count == 1 ? files[0] : $"{files.Count} files ({files[0]} …)");
        var reader = new DocumentReader(files, format);
        var tokenizer = new BertTokenizer(vocabulary, options.LowerCase);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // Reading (one thread) runs a window ahead of tokenizing and instance creation (all cores).
        using var windows = new BlockingCollection<TextCorpus>(boundedCapacity: 1);
        var producer = Task.Run(() =>
        {
            try
            {
                var documents = new List<string[]>();
                long chars = 0, index = -1;
                foreach (var document in reader.Documents(stop.Token))
                {
                    if (include is not null && !include(++index)) continue;
                    documents.Add(document);
                    foreach (var sentence in document) chars += sentence.Length;
                    if (chars < options.WindowChars) continue;
                    windows.Add(new TextCorpus(documents, name), stop.Token);
                    documents = [];
                    chars = 0;
                }
                if (documents.Count > 0) windows.Add(new TextCorpus(documents, name), stop.Token);
            }
            finally
            {
                windows.CompleteAdding();
            }
        }, stop.Token);
        try
        {
            using var dataset = new DatasetWriter(name, vocabulary, options, outputDirectory, fileSystem ?? PhysicalFileSystem.Instance, cancellationToken);
            TokenizedCorpus? previous = null;
            foreach (var text in windows.GetConsumingEnumerable(stop.Token))
            {
                var tokens = TokenizedCorpus.Tokenize(text, tokenizer, null, stop.Token, options.MaxDegreeOfParallelism);
                if (tokens.DocumentCount == 0) continue;
                dataset.AddWindow(tokens, previous);
                previous = tokens;
                progress?.Report(new PrepareProgress(PrepareProgress.Stream, reader.TotalBytes == 0 ? 1 : (double)reader.BytesRead / reader.TotalBytes,
                    reader.BytesRead, reader.TotalBytes, dataset.Instances));
            }
            producer.GetAwaiter().GetResult();
            var inputs = files.Select(f => new DatasetInput(f, new FileInfo(f).Length)).ToArray();
            return dataset.Finish(clock, inputs, reader.TotalBytes);
        }
        catch
        {
            stop.Cancel();
            try { producer.Wait(); } catch (AggregateException) { }
            throw;
        }
    }

    /// <summary>Builds the dataset from an already tokenized corpus (one window: the whole corpus).</summary>
    /// <param name="fileSystem">Where the dataset is written (default: the physical file system).</param>
    /// <exception cref="DiskFullException">The volume filled up; an older dataset in <paramref name="outputDirectory"/>
    /// is unchanged and nothing partial is left.</exception>
    public static PretrainingStats Build(TokenizedCorpus corpus, string corpusName, Vocabulary vocabulary,
        PretrainingDataOptions options, string outputDirectory, IProgress<PrepareProgress>? progress = null,
        CancellationToken cancellationToken = default, IFileSystem? fileSystem = null)
    {
        options.Validate();
        var clock = Stopwatch.StartNew();
        if (corpus.DocumentCount == 0)
            throw new CorpusFormatException(corpusName, "documents", "0", "no document has any token");
        using var dataset = new DatasetWriter(corpusName, vocabulary, options, outputDirectory, fileSystem ?? PhysicalFileSystem.Instance, cancellationToken)
        {
            Progress = progress,
        };
        dataset.AddWindow(corpus, null, Stage(progress, PrepareProgress.Instances));
        return dataset.Finish(clock, [], 0);
    }

    /// <summary>Instances of windows in, shuffled blocks of shards out, stats at the end.</summary>
    private sealed class DatasetWriter : IDisposable
    {
        private readonly string _corpusName;
        private readonly Vocabulary _vocabulary;
        private readonly PretrainingDataOptions _options;
        private readonly string _outputDirectory;
        private readonly IFileSystem _fs;
        private readonly CancellationToken _cancellationToken;
        private readonly AtomicDirectory _directory;
        private readonly ShardLayout _layout;
        private readonly int _binWidth;
        private readonly StatsAccumulator _total;
        private byte[] _block;
        private readonly int _blockCapacity;
        private readonly byte[] _staging;
        private readonly List<DatasetShard> _shards = [];
        private int _blockCount, _blocks, _windows;
        private long _written;
        public IProgress<PrepareProgress>? Progress { get; init; }
        private long _documents, _skipped, _sentences, _corpusTokens;

        public DatasetWriter(string corpusName, Vocabulary vocabulary, PretrainingDataOptions options, string outputDirectory, IFileSystem fs,
            CancellationToken cancellationToken)
        {
            _corpusName = corpusName;
            _vocabulary = vocabulary;
            _options = options;
            _outputDirectory = outputDirectory;
            _fs = fs;
            _cancellationToken = cancellationToken;
            _layout = new ShardLayout(options.SeqLength, options.ResolvedMaxPredictions, ShardLayout.TokenBytesFor(vocabulary.Count));
            _binWidth = Math.Max(1, (options.SeqLength + 15) / 16);
            _total = new StatsAccumulator(options.SeqLength, _binWidth);
            // A block is a whole number of shards (at least one), so only the very last shard is partial.
            long shardBytes = (long)options.InstancesPerShard * _layout.RecordSize;
            long shards = Math.Max(1, options.ShuffleBufferBytes / shardBytes);
            long capacity = shards * options.InstancesPerShard;
            if (capacity * _layout.RecordSize > Array.MaxLength)
                capacity = Math.Max(1, Array.MaxLength / _layout.RecordSize / options.InstancesPerShard) * options.InstancesPerShard;
            _blockCapacity = (int)capacity;
            // The block grows as instances arrive (a small corpus never allocates the whole buffer).
            _block = new byte[Math.Min(_blockCapacity, 1024) * _layout.RecordSize];
            _staging = new byte[Math.Max(_layout.RecordSize, (1 << 20) / _layout.RecordSize * _layout.RecordSize)];
            try
            {
                _directory = new AtomicDirectory(outputDirectory, IsDatasetFile, fs);
            }
            catch (Exception e) when (DiskFull.Is(e) && e is not DiskFullException)
            {
                throw Full(e);
            }
        }

        public long Instances => _total.Instances;

        /// <summary>Creates the instances of <paramref name="own"/>'s documents; random next sentences may come from
        /// <paramref name="previous"/> (the window before) as well.</summary>
        public void AddWindow(TokenizedCorpus own, TokenizedCorpus? previous, IProgress<double>? progress = null)
        {
            var pool = previous is null ? own : TokenizedCorpus.Concat(previous, own);
            int first = previous?.DocumentCount ?? 0;
            var creator = new InstanceCreator(pool, _vocabulary, _options);
            int documents = own.DocumentCount;
            long key = _documents;
            for (int d = 0; d < documents; d++)
                if (creator.IsSkipped(first + d)) _skipped++;
            _documents += documents;
            _sentences += own.TotalSentences;
            _corpusTokens += own.TotalTokens;
            _windows++;

            // One work item per (pass, document); items are independent and appended in item order.
            int items = checked(_options.DupeFactor * documents);
            var results = new RecordBuffer[items];
            var layout = _layout;
            long done = 0;
            var window = new StatsAccumulator(_options.SeqLength, _binWidth);
            Parallel.ForEach(Partitioner.Create(0, items, Math.Max(1, Math.Min(64, items / (8 * Environment.ProcessorCount) + 1))),
                new ParallelOptions { CancellationToken = _cancellationToken, MaxDegreeOfParallelism = _options.MaxDegreeOfParallelism },
                () => (Scratch: new InstanceCreator.Scratch(_options.SeqLength, layout.MaxPredictions), Stats: new StatsAccumulator(_options.SeqLength, _binWidth)),
                (range, _, local) =>
                {
                    for (int item = range.Item1; item < range.Item2; item++)
                    {
                        var buffer = new RecordBuffer(layout.RecordSize);
                        int d = item % documents;
                        creator.Create(item / documents, first + d, local.Scratch, buffer, local.Stats, key + d);
                        results[item] = buffer;
                    }
                    progress?.Report((double)Interlocked.Add(ref done, range.Item2 - range.Item1) / items);
                    return local;
                },
                local =>
                {
                    lock (window) window.Add(local.Stats);
                });
            _total.Add(window);

            foreach (var r in results)
                for (int i = 0; i < r.Count; i++)
                {
                    if ((_blockCount + 1) * layout.RecordSize > _block.Length)
                        Array.Resize(ref _block, (int)Math.Min((long)_blockCapacity * layout.RecordSize, 2L * _block.Length));
                    r.Record(i).CopyTo(_block.AsSpan(_blockCount * layout.RecordSize));
                    if (++_blockCount == _blockCapacity) FlushBlock();
                }
        }

        /// <summary>Shuffles the block and writes it as shards.</summary>
        private void FlushBlock()
        {
            _cancellationToken.ThrowIfCancellationRequested();
            int count = _blockCount;
            var order = new int[count];
            for (int k = 0; k < count; k++) order[k] = k;
            // Block 0's stream is the one a whole in-memory build used, so a one-block corpus gives the same shards.
            DataRng.Create(_options.Seed, ShuffleStream, (ulong)_blocks).Shuffle(order.AsSpan());
            int flags = _options.WholeWordMask ? ShardHeader.FlagWholeWordMask : 0;
            int size = _layout.RecordSize;
            try
            {
                for (int first = 0; first < count; first += _options.InstancesPerShard)
                {
                    _cancellationToken.ThrowIfCancellationRequested();
                    string shardName = ShardFileName(_shards.Count);
                    string path = Path.Combine(_directory.TempPath, shardName);
                    int last = Math.Min(count, first + _options.InstancesPerShard);
                    using (var writer = new ShardWriter(path, _vocabulary.Hash, _vocabulary.Count, _options.SeqLength, _layout.MaxPredictions, flags, _fs))
                    {
                        int filled = 0;
                        for (int g = first; g < last; g++)
                        {
                            _block.AsSpan(order[g] * size, size).CopyTo(_staging.AsSpan(filled));
                            filled += size;
                            if (filled == _staging.Length)
                            {
                                writer.Append(_staging);
                                filled = 0;
                            }
                        }
                        writer.Append(_staging.AsSpan(0, filled));
                        writer.Commit();
                    }
                    _shards.Add(new DatasetShard(shardName, last - first, _fs.FileLength(path), Checksum(path)));
                    _written += last - first;
                    Progress?.Report(new PrepareProgress(PrepareProgress.Write, _total.Instances == 0 ? 1 : (double)_written / _total.Instances,
                        InstancesWritten: _written));
                }
            }
            catch (Exception e) when (DiskFull.Is(e) && e is not DiskFullException)
            {
                throw Full(e);
            }
            _blocks++;
            _blockCount = 0;
        }

        private string Checksum(string path)
        {
            var hash = new XxHash64();
            var buffer = new byte[1 << 20];
            using var stream = _fs.OpenRead(path);
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0) hash.Append(buffer.AsSpan(0, n));
            return hash.DigestHex();
        }

        public PretrainingStats Finish(Stopwatch clock, IReadOnlyList<DatasetInput> inputs, long inputBytes)
        {
            if (_documents == 0)
                throw new CorpusFormatException(_corpusName, "documents", "0", "no document has any token");
            if (_skipped == _documents)
                throw new CorpusFormatException(_corpusName, "documents", $"{_documents} (all with fewer than 2 sentences)",
                    "no document can give a sentence pair; put one sentence per line (or use the paragraphs format)");
            if (_blockCount > 0) FlushBlock();
            var shards = _shards.ToArray();
            try
            {
                if (_blocks > 1)
                {
                    // Blocks are shuffled within; their shards are named in a shuffled order across them.
                    var order = new int[shards.Length];
                    for (int k = 0; k < order.Length; k++) order[k] = k;
                    DataRng.Create(_options.Seed, ShardOrderStream).Shuffle(order.AsSpan());
                    for (int k = 0; k < shards.Length; k++)
                        _fs.MoveFile(Path.Combine(_directory.TempPath, shards[k].Name), Path.Combine(_directory.TempPath, "renaming-" + shards[k].Name));
                    var renamed = new DatasetShard[shards.Length];
                    for (int k = 0; k < shards.Length; k++)
                    {
                        string name = ShardFileName(order[k]);
                        _fs.MoveFile(Path.Combine(_directory.TempPath, "renaming-" + shards[k].Name), Path.Combine(_directory.TempPath, name));
                        renamed[order[k]] = shards[k] with { Name = name };
                    }
                    shards = renamed;
                }
                var stats = new PretrainingStats
                {
                    Corpus = _corpusName,
                    Vocabulary = _vocabulary.Source,
                    VocabHash = _vocabulary.Hash.ToString("x16"),
                    VocabSize = _vocabulary.Count,
                    SeqLength = _options.SeqLength,
                    MaxPredictions = _layout.MaxPredictions,
                    DupeFactor = _options.DupeFactor,
                    Seed = _options.Seed,
                    WholeWordMask = _options.WholeWordMask,
                    LowerCase = _options.LowerCase,
                    ShortSeqProb = _options.ShortSeqProb,
                    MaskedLmProb = _options.MaskedLmProb,
                    Documents = checked((int)_documents),
                    SkippedDocuments = checked((int)_skipped),
                    Sentences = _sentences,
                    CorpusTokens = _corpusTokens,
                    Instances = _total.Instances,
                    Tokens = _total.Tokens,
                    MaskedTokens = _total.Masked,
                    MaskedAsMask = _total.MaskedAsMask,
                    MaskedAsRandom = _total.MaskedAsRandom,
                    MaskedAsKept = _total.MaskedAsKept,
                    NspRandom = _total.NspRandom,
                    NspForcedRandom = _total.NspForcedRandom,
                    TruncatedPairs = _total.Truncated,
                    Shards = shards.Length,
                    LengthHistogram = _total.Histogram,
                    HistogramBinWidth = _binWidth,
                    Seconds = Math.Round(clock.Elapsed.TotalSeconds, 3),
                    Inputs = inputs,
                    ShardFiles = shards,
                    InputBytes = inputBytes,
                    Windows = _windows,
                };
                // Seconds vary between runs, so stats.json is not part of the byte-identical output; the shards are.
                byte[] json = System.Text.Encoding.UTF8.GetBytes(stats.ToJson());
                Bert.Runtime.IO.AtomicFile.WriteDurable(_fs, Path.Combine(_directory.TempPath, StatsFileName), s => s.Write(json));
                _directory.Commit();
                return stats;
            }
            catch (Exception e) when (DiskFull.Is(e) && e is not DiskFullException)
            {
                throw Full(e);
            }
        }

        private DiskFullException Full(Exception e)
        {
            string full = Path.GetFullPath(_outputDirectory);
            return new DiskFullException(full,
                $"cannot write dataset '{full}': no space left on device; the previous dataset (if any) is unchanged and nothing partial was left", e);
        }

        public void Dispose() => _directory.Dispose();
    }

    private static IProgress<double>? Stage(IProgress<PrepareProgress>? progress, string stage) =>
        progress == null ? null : new StageProgress(progress, stage);

    private sealed class StageProgress(IProgress<PrepareProgress> inner, string stage) : IProgress<double>
    {
        public void Report(double value) => inner.Report(new PrepareProgress(stage, value));
    }
}
