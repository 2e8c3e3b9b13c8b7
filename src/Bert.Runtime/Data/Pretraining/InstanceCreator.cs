namespace Bert.Runtime.Data;

/// <summary>
/// create_instances_from_document and create_masked_lm_predictions of google-research/bert
/// create_pretraining_data.py, writing each instance straight into a shard record. One call handles
/// one (dupe pass, document) pair with its own generator derived from (seed, pass, document), so the
/// output does not depend on how the work is spread over threads.
/// One deliberate difference: a document with a single sentence cannot give an actual-next pair, so
/// it is skipped as a source of A segments (the reference would emit only random-next pairs from it,
/// biasing the NSP labels); it still serves as a source of random B segments.
/// </summary>
internal sealed class InstanceCreator
{
    private const ulong InstanceStream = 0x494E5354; // "INST"

    private readonly TokenizedCorpus _corpus;
    private readonly Vocabulary _vocab;
    private readonly PretrainingDataOptions _options;
    private readonly bool[] _isContinuation;

    public InstanceCreator(TokenizedCorpus corpus, Vocabulary vocab, PretrainingDataOptions options)
    {
        _corpus = corpus;
        _vocab = vocab;
        _options = options;
        Layout = new ShardLayout(options.SeqLength, options.ResolvedMaxPredictions, ShardLayout.TokenBytesFor(vocab.Count));
        _isContinuation = new bool[vocab.Count];
        for (int i = 0; i < vocab.Count; i++)
            _isContinuation[i] = vocab[i].StartsWith(Vocabulary.ContinuationPrefix, StringComparison.Ordinal) && vocab[i].Length > 2;
    }

    public ShardLayout Layout { get; }

    /// <summary>Per-thread buffers.</summary>
    public sealed class Scratch(int seqLength, int maxPredictions)
    {
        public int[] A = new int[seqLength], B = new int[seqLength];
        public readonly int[] Tokens = new int[seqLength], Output = new int[seqLength];
        public readonly int[] GroupIndices = new int[seqLength], GroupStarts = new int[seqLength + 1], Order = new int[seqLength];
        public readonly int[] MaskedPositions = new int[maxPredictions], MaskedLabels = new int[maxPredictions];
        public readonly List<int> Chunk = new();
    }

    public bool IsSkipped(int document) => _corpus.SentenceCount(document) < 2;

    /// <summary>Appends the instances of <paramref name="document"/> in dupe pass <paramref name="pass"/>.</summary>
    /// <param name="key">The document's index in the whole corpus (its random stream); null: <paramref name="document"/>
    /// (the corpus is whole). Streaming gives each window's documents their corpus-wide index.</param>
    public void Create(int pass, int document, Scratch scratch, RecordBuffer output, StatsAccumulator stats, long? key = null)
    {
        if (IsSkipped(document)) return;
        var rng = DataRng.Create(_options.Seed, InstanceStream, (ulong)pass, (ulong)(key ?? document));
        var corpus = _corpus;
        int sentences = corpus.SentenceCount(document);
        int maxNumTokens = _options.SeqLength - 3;
        // As in the reference, the target length is drawn once per document and pass.
        int target = maxNumTokens;
        if (rng.NextDouble() < _options.ShortSeqProb) target = rng.NextInt(2, maxNumTokens);

        var chunk = scratch.Chunk;
        chunk.Clear();
        int currentLength = 0;
        int i = 0;
        while (i < sentences)
        {
            chunk.Add(i);
            currentLength += corpus.Sentence(document, i).Length;
            if (i == sentences - 1 || currentLength >= target)
            {
                // `chunk` is never empty here.
                int aEnd = chunk.Count >= 2 ? rng.NextInt(1, chunk.Count - 1) : 1;
                int aLength = 0;
                for (int j = 0; j < aEnd; j++) Append(ref scratch.A, ref aLength, corpus.Sentence(document, chunk[j]));
                int bLength = 0;
                bool isRandomNext;
                bool forced = chunk.Count == 1;
                if (forced || rng.NextDouble() < 0.5)
                {
                    isRandomNext = true;
                    int targetB = target - aLength;
                    int randomDocument = 0;
                    for (int t = 0; t < 10; t++)
                    {
                        randomDocument = rng.NextInt(0, corpus.DocumentCount - 1);
                        if (randomDocument != document) break;
                    }
                    int randomSentences = corpus.SentenceCount(randomDocument);
                    int randomStart = rng.NextInt(0, randomSentences - 1);
                    for (int j = randomStart; j < randomSentences; j++)
                    {
                        Append(ref scratch.B, ref bLength, corpus.Sentence(randomDocument, j));
                        if (bLength >= targetB) break;
                    }
                    // The unused segments go back to be used by the next instance.
                    i -= chunk.Count - aEnd;
                }
                else
                {
                    isRandomNext = false;
                    for (int j = aEnd; j < chunk.Count; j++) Append(ref scratch.B, ref bLength, corpus.Sentence(document, chunk[j]));
                }
                Emit(scratch, aLength, bLength, isRandomNext, forced, maxNumTokens, ref rng, output, stats);
                chunk.Clear();
                currentLength = 0;
            }
            i++;
        }
    }

    private static void Append(ref int[] buffer, ref int length, ReadOnlySpan<int> sentence)
    {
        if (length + sentence.Length > buffer.Length) Array.Resize(ref buffer, Math.Max(buffer.Length * 2, length + sentence.Length));
        sentence.CopyTo(buffer.AsSpan(length));
        length += sentence.Length;
    }

    private void Emit(Scratch scratch, int aLength, int bLength, bool isRandomNext, bool forcedRandom, int maxNumTokens, ref DataRng rng,
        RecordBuffer output, StatsAccumulator stats)
    {
        // truncate_seq_pair: shorten the longer side, from the front or the back at random.
        int aStart = 0, aEnd = aLength, bStart = 0, bEnd = bLength;
        bool truncated = false;
        while ((aEnd - aStart) + (bEnd - bStart) > maxNumTokens)
        {
            truncated = true;
            bool fromA = aEnd - aStart > bEnd - bStart;
            bool front = rng.NextDouble() < 0.5;
            if (fromA)
            {
                if (front) aStart++;
                else aEnd--;
            }
            else
            {
                if (front) bStart++;
                else bEnd--;
            }
        }

        var tokens = scratch.Tokens;
        int n = 0;
        tokens[n++] = _vocab.ClsId;
        for (int k = aStart; k < aEnd; k++) tokens[n++] = scratch.A[k];
        tokens[n++] = _vocab.SepId;
        int segmentBStart = n;
        for (int k = bStart; k < bEnd; k++) tokens[n++] = scratch.B[k];
        tokens[n++] = _vocab.SepId;

        int masked = Mask(scratch, n, ref rng, stats);

        var layout = Layout;
        var record = output.Add();
        var outputTokens = scratch.Output;
        for (int k = 0; k < layout.SeqLength; k++)
            layout.WriteToken(record, layout.TokenBytes * k, k < n ? outputTokens[k] : _vocab.PadId);
        for (int j = 0; j < masked; j++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(record[(layout.MaskedPositionsOffset + 2 * j)..], (ushort)scratch.MaskedPositions[j]);
            layout.WriteToken(record, layout.MaskedIdsOffset + layout.TokenBytes * j, scratch.MaskedLabels[j]);
        }
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(record[layout.LengthOffset..], (ushort)n);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(record[layout.MaskedCountOffset..], (ushort)masked);
        record[layout.NspOffset] = isRandomNext ? (byte)1 : (byte)0;
        var bits = record[layout.SegmentBitsOffset..];
        for (int k = segmentBStart; k < n; k++) bits[k >> 3] |= (byte)(1 << (k & 7));

        stats.AddInstance(n, masked, isRandomNext, forcedRandom, truncated);
    }

    /// <summary>create_masked_lm_predictions: fills scratch.Output, MaskedPositions (ascending) and
    /// MaskedLabels; returns the number of predictions.</summary>
    private int Mask(Scratch scratch, int n, ref DataRng rng, StatsAccumulator stats)
    {
        var tokens = scratch.Tokens;
        var groupIndices = scratch.GroupIndices;
        var groupStarts = scratch.GroupStarts;
        int groups = 0, indices = 0;
        bool wholeWord = _options.WholeWordMask;
        for (int k = 0; k < n; k++)
        {
            int t = tokens[k];
            if (t == _vocab.ClsId || t == _vocab.SepId) continue;
            // As in the reference, a "##" piece joins the previous candidate even across [SEP].
            if (!(wholeWord && groups >= 1 && _isContinuation[t])) groupStarts[groups++] = indices;
            groupIndices[indices++] = k;
        }
        groupStarts[groups] = indices;
        var order = scratch.Order.AsSpan(0, groups);
        for (int g = 0; g < groups; g++) order[g] = g;
        rng.Shuffle(order);

        tokens.AsSpan(0, n).CopyTo(scratch.Output);
        int numToPredict = Math.Min(Layout.MaxPredictions, Math.Max(1, (int)Math.Round(n * _options.MaskedLmProb, MidpointRounding.ToEven)));
        int masked = 0;
        foreach (int g in order)
        {
            if (masked >= numToPredict) break;
            int start = groupStarts[g], length = groupStarts[g + 1] - start;
            if (masked + length > numToPredict) continue;
            for (int k = start; k < start + length; k++)
            {
                int index = groupIndices[k];
                int replacement;
                if (rng.NextDouble() < 0.8)
                {
                    replacement = _vocab.MaskId;
                    stats.MaskedAsMask++;
                }
                else if (rng.NextDouble() < 0.5)
                {
                    replacement = tokens[index];
                    stats.MaskedAsKept++;
                }
                else
                {
                    replacement = rng.NextInt(0, _vocab.Count - 1);
                    stats.MaskedAsRandom++;
                }
                scratch.Output[index] = replacement;
                scratch.MaskedPositions[masked] = index;
                scratch.MaskedLabels[masked] = tokens[index];
                masked++;
            }
        }
        // Sort the predictions by position (insertion sort: P is small).
        for (int a = 1; a < masked; a++)
        {
            int p = scratch.MaskedPositions[a], l = scratch.MaskedLabels[a];
            int b = a - 1;
            while (b >= 0 && scratch.MaskedPositions[b] > p)
            {
                scratch.MaskedPositions[b + 1] = scratch.MaskedPositions[b];
                scratch.MaskedLabels[b + 1] = scratch.MaskedLabels[b];
                b--;
            }
            scratch.MaskedPositions[b + 1] = p;
            scratch.MaskedLabels[b + 1] = l;
        }
        return masked;
    }
}

/// <summary>Records appended in a growable byte array.</summary>
internal sealed class RecordBuffer(int recordSize)
{
    private byte[] _bytes = new byte[recordSize * 16];

    public int RecordSize { get; } = recordSize;

    public int Count { get; private set; }

    /// <summary>A zeroed record at the end.</summary>
    public Span<byte> Add()
    {
        int need = (Count + 1) * RecordSize;
        if (need > _bytes.Length) Array.Resize(ref _bytes, Math.Max(need, _bytes.Length * 2));
        var r = _bytes.AsSpan(Count * RecordSize, RecordSize);
        r.Clear();
        Count++;
        return r;
    }

    public ReadOnlySpan<byte> Record(int index) => _bytes.AsSpan(index * RecordSize, RecordSize);
}
