using System.Collections.Concurrent;
using System.Diagnostics;
using Bert.Runtime.IO;

namespace Bert.Runtime.Data;

/// <summary>A step of <see cref="PretrainingDataBuilder"/> and how far it is (0..1).</summary>
public readonly record struct PrepareProgress(string Stage, double Fraction)
{
    public const string Read = "read", Tokenize = "tokenize", Instances = "instances", Write = "write";
}

/// <summary>
/// Corpus → shards for one sequence length: read, tokenize, create instances (dupe passes × documents
/// in parallel), shuffle them with the seed, write shard-00000.bin … and stats.json into the dataset
/// directory. The directory is built under a temporary name and moved into place at the end, so a
/// failure or cancellation leaves nothing behind (and an older dataset there stays intact).
/// </summary>
public static class PretrainingDataBuilder
{
    public const string StatsFileName = "stats.json";
    private const ulong ShuffleStream = 0x53485546; // "SHUF"

    /// <summary>The dataset directory for sequence length <paramref name="seqLength"/> under <paramref name="root"/>: root/seq128.</summary>
    public static string DatasetDirectory(string root, int seqLength) => Path.Combine(root, $"seq{seqLength}");

    public static string ShardFileName(int index) => $"shard-{index:D5}.bin";

    /// <summary>Whether <paramref name="name"/> is a file this builder writes (and may replace).</summary>
    public static bool IsDatasetFile(string name) =>
        name == StatsFileName || (name.StartsWith("shard-", StringComparison.Ordinal) && name.EndsWith(".bin", StringComparison.Ordinal));

    /// <summary>Reads and tokenizes <paramref name="corpusPath"/>, then builds the dataset.</summary>
    /// <param name="fileSystem">Where the dataset is written (default: the physical file system).</param>
    /// <exception cref="DiskFullException">The volume filled up; an older dataset in <paramref name="outputDirectory"/>
    /// is unchanged and nothing partial is left.</exception>
    public static PretrainingStats Build(string corpusPath, CorpusFormat format, Vocabulary vocabulary,
        PretrainingDataOptions options, string outputDirectory, IProgress<PrepareProgress>? progress = null,
        CancellationToken cancellationToken = default, IFileSystem? fileSystem = null)
    {
        options.Validate();
        var clock = Stopwatch.StartNew();
        var text = TextCorpus.Read(corpusPath, format, Stage(progress, PrepareProgress.Read), cancellationToken);
        var tokenizer = new BertTokenizer(vocabulary, options.LowerCase);
        var corpus = TokenizedCorpus.Tokenize(text, tokenizer, Stage(progress, PrepareProgress.Tokenize), cancellationToken,
            options.MaxDegreeOfParallelism);
        return Build(corpus, corpusPath, vocabulary, options, outputDirectory, progress, cancellationToken, clock, fileSystem);
    }

    /// <summary>Builds the dataset from an already tokenized corpus.</summary>
    /// <param name="fileSystem">Where the dataset is written (default: the physical file system).</param>
    /// <exception cref="DiskFullException">The volume filled up; an older dataset in <paramref name="outputDirectory"/>
    /// is unchanged and nothing partial is left.</exception>
    public static PretrainingStats Build(TokenizedCorpus corpus, string corpusName, Vocabulary vocabulary,
        PretrainingDataOptions options, string outputDirectory, IProgress<PrepareProgress>? progress = null,
        CancellationToken cancellationToken = default, IFileSystem? fileSystem = null) =>
        Build(corpus, corpusName, vocabulary, options, outputDirectory, progress, cancellationToken, Stopwatch.StartNew(), fileSystem);

    private static PretrainingStats Build(TokenizedCorpus corpus, string corpusName, Vocabulary vocabulary,
        PretrainingDataOptions options, string outputDirectory, IProgress<PrepareProgress>? progress,
        CancellationToken cancellationToken, Stopwatch clock, IFileSystem? fileSystem)
    {
        options.Validate();
        if (corpus.DocumentCount == 0)
            throw new CorpusFormatException(corpusName, "documents", "0", "no document has any token");
        var creator = new InstanceCreator(corpus, vocabulary, options);
        var layout = creator.Layout;
        int documents = corpus.DocumentCount;
        int skipped = 0;
        for (int d = 0; d < documents; d++)
            if (creator.IsSkipped(d)) skipped++;
        if (skipped == documents)
            throw new CorpusFormatException(corpusName, "documents", $"{documents} (all with fewer than 2 sentences)",
                "no document can give a sentence pair; put one sentence per line (or use the paragraphs format)");

        // One work item per (pass, document); items are independent and written in item order.
        int items = checked(options.DupeFactor * documents);
        var results = new RecordBuffer[items];
        var binWidth = Math.Max(1, (options.SeqLength + 15) / 16);
        var total = new StatsAccumulator(options.SeqLength, binWidth);
        long done = 0;
        var instanceProgress = Stage(progress, PrepareProgress.Instances);
        Parallel.ForEach(Partitioner.Create(0, items, Math.Max(1, Math.Min(64, items / (8 * Environment.ProcessorCount) + 1))),
            new ParallelOptions { CancellationToken = cancellationToken, MaxDegreeOfParallelism = options.MaxDegreeOfParallelism },
            () => (Scratch: new InstanceCreator.Scratch(options.SeqLength, layout.MaxPredictions), Stats: new StatsAccumulator(options.SeqLength, binWidth)),
            (range, _, local) =>
            {
                for (int item = range.Item1; item < range.Item2; item++)
                {
                    var buffer = new RecordBuffer(layout.RecordSize);
                    creator.Create(item / documents, item % documents, local.Scratch, buffer, local.Stats);
                    results[item] = buffer;
                }
                instanceProgress?.Report((double)Interlocked.Add(ref done, range.Item2 - range.Item1) / items);
                return local;
            },
            local =>
            {
                lock (total) total.Add(local.Stats);
            });

        long count = total.Instances;
        if (count > Array.MaxLength)
            throw new CorpusFormatException(corpusName, "instances", count.ToString(), $"more than {Array.MaxLength}; lower the dupe factor or split the corpus");
        var itemStarts = new int[items + 1];
        for (int k = 0; k < items; k++) itemStarts[k + 1] = itemStarts[k] + results[k].Count;

        // The reference shuffles all instances before writing; the trainer shuffles again per epoch.
        var order = new int[count];
        for (int k = 0; k < order.Length; k++) order[k] = k;
        DataRng.Create(options.Seed, ShuffleStream).Shuffle(order.AsSpan());

        int shardCount = count == 0 ? 0 : (int)((count + options.InstancesPerShard - 1) / options.InstancesPerShard);
        var fs = fileSystem ?? PhysicalFileSystem.Instance;
        var writeProgress = Stage(progress, PrepareProgress.Write);
        try
        {
            using var directory = new AtomicDirectory(outputDirectory, IsDatasetFile, fs);
            var buffer = new byte[Math.Max(layout.RecordSize, (1 << 20) / layout.RecordSize * layout.RecordSize)];
            int flags = options.WholeWordMask ? ShardHeader.FlagWholeWordMask : 0;
            for (int s = 0; s < shardCount; s++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var writer = new ShardWriter(Path.Combine(directory.TempPath, ShardFileName(s)), vocabulary.Hash, vocabulary.Count,
                    options.SeqLength, layout.MaxPredictions, flags, fs);
                long first = (long)s * options.InstancesPerShard;
                long last = Math.Min(count, first + options.InstancesPerShard);
                int filled = 0;
                for (long g = first; g < last; g++)
                {
                    int source = order[g];
                    int item = FindItem(itemStarts, source);
                    results[item].Record(source - itemStarts[item]).CopyTo(buffer.AsSpan(filled));
                    filled += layout.RecordSize;
                    if (filled == buffer.Length)
                    {
                        writer.Append(buffer);
                        filled = 0;
                    }
                }
                writer.Append(buffer.AsSpan(0, filled));
                writer.Commit();
                writeProgress?.Report((double)(s + 1) / shardCount);
            }

            var stats = new PretrainingStats
            {
                Corpus = corpusName,
                Vocabulary = vocabulary.Source,
                VocabHash = vocabulary.Hash.ToString("x16"),
                VocabSize = vocabulary.Count,
                SeqLength = options.SeqLength,
                MaxPredictions = layout.MaxPredictions,
                DupeFactor = options.DupeFactor,
                Seed = options.Seed,
                WholeWordMask = options.WholeWordMask,
                LowerCase = options.LowerCase,
                ShortSeqProb = options.ShortSeqProb,
                MaskedLmProb = options.MaskedLmProb,
                Documents = documents,
                SkippedDocuments = skipped,
                Sentences = corpus.TotalSentences,
                CorpusTokens = corpus.TotalTokens,
                Instances = count,
                Tokens = total.Tokens,
                MaskedTokens = total.Masked,
                MaskedAsMask = total.MaskedAsMask,
                MaskedAsRandom = total.MaskedAsRandom,
                MaskedAsKept = total.MaskedAsKept,
                NspRandom = total.NspRandom,
                NspForcedRandom = total.NspForcedRandom,
                TruncatedPairs = total.Truncated,
                Shards = shardCount,
                LengthHistogram = total.Histogram,
                HistogramBinWidth = binWidth,
                Seconds = Math.Round(clock.Elapsed.TotalSeconds, 3),
            };
            // Seconds vary between runs, so stats.json is not part of the byte-identical output; the shards are.
            byte[] json = System.Text.Encoding.UTF8.GetBytes(stats.ToJson());
            Bert.Runtime.IO.AtomicFile.WriteDurable(fs, Path.Combine(directory.TempPath, StatsFileName), s => s.Write(json));
            directory.Commit();
            return stats;
        }
        catch (Exception e) when (DiskFull.Is(e) && e is not DiskFullException)
        {
            string full = Path.GetFullPath(outputDirectory);
            throw new DiskFullException(full,
                $"cannot write dataset '{full}': no space left on device; the previous dataset (if any) is unchanged and nothing partial was left", e);
        }
    }

    private static int FindItem(int[] itemStarts, int index)
    {
        // Last k with itemStarts[k] <= index (items may be empty, so skip ties forward).
        int lo = 0, hi = itemStarts.Length - 2;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (itemStarts[mid] <= index) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    private static IProgress<double>? Stage(IProgress<PrepareProgress>? progress, string stage) =>
        progress == null ? null : new StageProgress(progress, stage);

    private sealed class StageProgress(IProgress<PrepareProgress> inner, string stage) : IProgress<double>
    {
        public void Report(double value) => inner.Report(new PrepareProgress(stage, value));
    }
}
