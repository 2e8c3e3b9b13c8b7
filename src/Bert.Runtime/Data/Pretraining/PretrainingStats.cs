using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Bert.Runtime.Data;

/// <summary>Counts gathered while instances are created, one per thread, merged at the end.</summary>
internal sealed class StatsAccumulator(int seqLength, int binWidth)
{
    private readonly int _binWidth = binWidth;
    public long Instances, Tokens, Masked, MaskedAsMask, MaskedAsRandom, MaskedAsKept, NspRandom, NspForcedRandom, Truncated;
    public readonly long[] Histogram = new long[(seqLength + binWidth - 1) / binWidth];

    public void AddInstance(int length, int masked, bool randomNext, bool forcedRandom, bool truncated)
    {
        Instances++;
        Tokens += length;
        Masked += masked;
        if (randomNext) NspRandom++;
        if (forcedRandom) NspForcedRandom++;
        if (truncated) Truncated++;
        Histogram[(length - 1) / _binWidth]++;
    }

    public void Add(StatsAccumulator other)
    {
        Instances += other.Instances;
        Tokens += other.Tokens;
        Masked += other.Masked;
        MaskedAsMask += other.MaskedAsMask;
        MaskedAsRandom += other.MaskedAsRandom;
        MaskedAsKept += other.MaskedAsKept;
        NspRandom += other.NspRandom;
        NspForcedRandom += other.NspForcedRandom;
        Truncated += other.Truncated;
        for (int i = 0; i < Histogram.Length; i++) Histogram[i] += other.Histogram[i];
    }
}

/// <summary>An input file of a dataset.</summary>
public sealed record DatasetInput(string Path, long Bytes);

/// <summary>A shard file of a dataset: its name, instances, bytes and XXH64 checksum (hex).</summary>
public sealed record DatasetShard(string Name, long Instances, long Bytes, string Xxh64);

/// <summary>What a dataset holds; written as stats.json beside the shards (snake_case keys).</summary>
public sealed record PretrainingStats
{
    public required string Corpus { get; init; }
    public required string Vocabulary { get; init; }
    /// <summary>XXH64 of the canonical vocab.txt, as in the shard headers (hex).</summary>
    public required string VocabHash { get; init; }
    public int VocabSize { get; init; }
    public int SeqLength { get; init; }
    public int MaxPredictions { get; init; }
    public int DupeFactor { get; init; }
    public ulong Seed { get; init; }
    public bool WholeWordMask { get; init; }
    public bool LowerCase { get; init; }
    public double ShortSeqProb { get; init; }
    public double MaskedLmProb { get; init; }

    public int Documents { get; init; }
    /// <summary>Documents with fewer than two sentences: no instance starts in them (each pass).</summary>
    public int SkippedDocuments { get; init; }
    public long Sentences { get; init; }
    /// <summary>WordPiece tokens of the corpus (before duplication).</summary>
    public long CorpusTokens { get; init; }

    public long Instances { get; init; }
    /// <summary>Real tokens over all instances, [CLS] and [SEP] included.</summary>
    public long Tokens { get; init; }
    public long MaskedTokens { get; init; }
    public long MaskedAsMask { get; init; }
    public long MaskedAsRandom { get; init; }
    public long MaskedAsKept { get; init; }
    public long NspRandom { get; init; }
    /// <summary>Random-next instances whose chunk held a single sentence, so that B had to be random
    /// (as in the reference); they push <see cref="NspRandomFraction"/> above one half.</summary>
    public long NspForcedRandom { get; init; }
    /// <summary>Instances whose pair was truncated to fit S − 3 tokens.</summary>
    public long TruncatedPairs { get; init; }
    public int Shards { get; init; }

    /// <summary>Masked tokens over non-special tokens (tokens − 3 per instance).</summary>
    public double MaskedFraction => Ratio(MaskedTokens, Tokens - 3 * Instances);
    public double MaskFraction => Ratio(MaskedAsMask, MaskedTokens);
    public double RandomFraction => Ratio(MaskedAsRandom, MaskedTokens);
    public double KeptFraction => Ratio(MaskedAsKept, MaskedTokens);
    public double NspRandomFraction => Ratio(NspRandom, Instances);
    /// <summary>Random fraction among the instances where the coin was tossed (should be 0.5).</summary>
    public double NspCoinRandomFraction => Ratio(NspRandom - NspForcedRandom, Instances - NspForcedRandom);
    public double MeanLength => Ratio(Tokens, Instances);

    /// <summary>Instances by length: bin i counts lengths in [i·w + 1, (i+1)·w], w = <see cref="HistogramBinWidth"/>.</summary>
    public required long[] LengthHistogram { get; init; }
    public int HistogramBinWidth { get; init; }

    public double Seconds { get; init; }

    /// <summary>The input files, in reading order, with their sizes: which inputs produced the dataset.</summary>
    public IReadOnlyList<DatasetInput> Inputs { get; init; } = [];

    /// <summary>The shard files with their instance counts, sizes and XXH64 checksums.</summary>
    public IReadOnlyList<DatasetShard> ShardFiles { get; init; } = [];

    /// <summary>Bytes of input read (compressed size for .gz) and the windows the stream was cut into.</summary>
    public long InputBytes { get; init; }
    public int Windows { get; init; }

    private static double Ratio(long a, long b) => b == 0 ? 0 : (double)a / b;

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public static PretrainingStats FromJson(string json) =>
        JsonSerializer.Deserialize<PretrainingStats>(json, JsonOptions) ?? throw new JsonException("stats.json is empty");

    /// <summary>The human-readable summary the CLI prints.</summary>
    public string Summary()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"corpus       {Corpus}: {Documents} documents ({SkippedDocuments} skipped: fewer than 2 sentences), {Sentences} sentences, {CorpusTokens} tokens");
        sb.AppendLine($"vocabulary   {Vocabulary}: {VocabSize} tokens, hash {VocabHash}");
        sb.AppendLine($"settings     S={SeqLength} P={MaxPredictions} dupe={DupeFactor} seed={Seed} whole-word={WholeWordMask} short-seq={ShortSeqProb} mlm-prob={MaskedLmProb}");
        sb.AppendLine($"instances    {Instances} in {Shards} shard(s), {Tokens} tokens, mean length {MeanLength:0.0}, truncated pairs {TruncatedPairs}");
        sb.AppendLine($"masking      {MaskedFraction:P2} of non-special tokens; [MASK] {MaskFraction:P1}, random {RandomFraction:P1}, kept {KeptFraction:P1}");
        sb.AppendLine($"NSP          random next {NspRandomFraction:P2} ({NspForcedRandom} forced by one-sentence chunks; {NspCoinRandomFraction:P2} of the others)");
        sb.Append("lengths     ");
        long max = LengthHistogram.Length == 0 ? 1 : Math.Max(1, LengthHistogram.Max());
        for (int i = 0; i < LengthHistogram.Length; i++)
        {
            int lo = i * HistogramBinWidth + 1, hi = Math.Min(SeqLength, (i + 1) * HistogramBinWidth);
            sb.AppendLine().Append($"  {lo,5}-{hi,-5} {LengthHistogram[i],9} {new string('#', (int)(40 * LengthHistogram[i] / max))}");
        }
        if (InputBytes > 0)
            sb.AppendLine().Append($"input        {Inputs.Count} file(s), {InputBytes / 1e6:0.0} MB in {Windows} window(s), {InputBytes / 1e6 / Math.Max(Seconds, 1e-9):0.0} MB/s");
        sb.AppendLine().Append($"time         {Seconds:0.00} s");
        return sb.ToString();
    }
}
