namespace Bert.Runtime.Data;

/// <summary>
/// Settings of pretraining-data creation, with the defaults of google-research/bert
/// create_pretraining_data.py except <see cref="DupeFactor"/> (5 instead of 10, sized for the Brown corpus).
/// </summary>
public sealed record PretrainingDataOptions
{
    /// <summary>S: tokens per instance including [CLS] and two [SEP] (128 in phase 1, 512 in phase 2).</summary>
    public int SeqLength { get; init; } = 128;

    /// <summary>P: most masked positions per instance; null means <see cref="DefaultMaxPredictions"/>(S):
    /// 20 at S = 128, 80 at S = 512.</summary>
    public int? MaxPredictions { get; init; }

    /// <summary>Passes over the corpus, each with different masks and pairings.</summary>
    public int DupeFactor { get; init; } = 5;

    /// <summary>Probability that a document's target length is drawn from [2, S−3] instead of S−3.</summary>
    public double ShortSeqProb { get; init; } = 0.1;

    /// <summary>Fraction of the tokens of an instance (specials included, as the reference counts) to predict.</summary>
    public double MaskedLmProb { get; init; } = 0.15;

    /// <summary>Mask all the WordPiece pieces of a word together ("##" pieces join the word before them).</summary>
    public bool WholeWordMask { get; init; }

    /// <summary>Seed of every random choice; the output is a function of (corpus, vocabulary, options).</summary>
    public ulong Seed { get; init; } = 12345;

    /// <summary>Lowercase and strip accents when tokenizing (must match the vocabulary).</summary>
    public bool LowerCase { get; init; } = true;

    /// <summary>Instances per shard file (the last shard holds the rest).</summary>
    public int InstancesPerShard { get; init; } = 65536;

    /// <summary>Threads for tokenization and instance creation (−1: all cores). The output does not depend on it.</summary>
    public int MaxDegreeOfParallelism { get; init; } = -1;

    /// <summary>Streaming: documents are read, tokenized and turned into instances in windows of about this many
    /// characters of text (16 Mi); the random next sentences come from the window and the one before it.
    /// Memory grows with it, not with the corpus. A corpus smaller than one window is built whole.</summary>
    public long WindowChars { get; init; } = 16L << 20;

    /// <summary>Streaming: bytes of instances shuffled together before they are written as shards (256 MiB,
    /// rounded to whole shards); shards of several such blocks are then written in a shuffled order.</summary>
    public long ShuffleBufferBytes { get; init; } = 256L << 20;

    public int ResolvedMaxPredictions => MaxPredictions ?? DefaultMaxPredictions(SeqLength);

    /// <summary>S·0.15 rounded up to a multiple of 4: 20 at S = 128, 80 at S = 512 (BERT's settings).</summary>
    public static int DefaultMaxPredictions(int seqLength) => (int)Math.Ceiling(seqLength * 0.15 / 4) * 4;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (SeqLength is < 8 or > 65535)
            throw new ArgumentOutOfRangeException(nameof(SeqLength), SeqLength, "sequence length must be in [8, 65535]");
        int p = ResolvedMaxPredictions;
        if (p < 1 || p > SeqLength - 3)
            throw new ArgumentOutOfRangeException(nameof(MaxPredictions), p, $"max predictions must be in [1, {SeqLength - 3}] for sequence length {SeqLength}");
        if (DupeFactor is < 1 or > 1000)
            throw new ArgumentOutOfRangeException(nameof(DupeFactor), DupeFactor, "dupe factor must be in [1, 1000]");
        if (!(ShortSeqProb is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(ShortSeqProb), ShortSeqProb, "short sequence probability must be in [0, 1]");
        if (!(MaskedLmProb is > 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(MaskedLmProb), MaskedLmProb, "masked LM probability must be in (0, 1]");
        if (MaxDegreeOfParallelism is 0 or < -1)
            throw new ArgumentOutOfRangeException(nameof(MaxDegreeOfParallelism), MaxDegreeOfParallelism, "parallelism must be positive or -1 (all cores)");
        if (WindowChars < 1)
            throw new ArgumentOutOfRangeException(nameof(WindowChars), WindowChars, "window must be positive");
        if (ShuffleBufferBytes < 1)
            throw new ArgumentOutOfRangeException(nameof(ShuffleBufferBytes), ShuffleBufferBytes, "shuffle buffer must be positive");
        if (InstancesPerShard < 1)
            throw new ArgumentOutOfRangeException(nameof(InstancesPerShard), InstancesPerShard, "instances per shard must be positive");
    }
}
