namespace Bert.Runtime.Data;

/// <summary>Where the trainer is in the data: the next instance is entry <see cref="Position"/> of
/// epoch <see cref="Epoch"/>'s shuffled order. Saved with checkpoints to resume exactly.</summary>
public readonly record struct DataCursor(int Epoch, long Position)
{
    public override string ToString() => $"epoch {Epoch}, position {Position}";
}

/// <summary>
/// A fresh uniform permutation of [0, count) for each epoch, drawn from (seed, epoch), so the order of
/// any epoch can be recomputed on resume. Holds one epoch's permutation at a time (4 bytes per instance).
/// </summary>
public sealed class ShuffledOrder
{
    private const ulong EpochStream = 0x45504F43; // "EPOC"
    private readonly int[] _permutation;
    private int _epoch = -1;

    public ShuffledOrder(long count, ulong seed)
    {
        if (count is <= 0 or > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(count), count, "a shuffled order needs between 1 and 2^31 − 1 instances");
        Count = count;
        Seed = seed;
        _permutation = new int[count];
    }

    public long Count { get; }

    public ulong Seed { get; }

    /// <summary>The instance at <paramref name="position"/> of <paramref name="epoch"/> (recomputes the permutation when the epoch changes).</summary>
    public long this[int epoch, long position]
    {
        get
        {
            if ((ulong)position >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(position), position, $"an epoch has {Count} positions");
            if (epoch != _epoch)
            {
                for (int i = 0; i < _permutation.Length; i++) _permutation[i] = i;
                DataRng.Create(Seed, EpochStream, (ulong)epoch).Shuffle(_permutation.AsSpan());
                _epoch = epoch;
            }
            return _permutation[position];
        }
    }
}

/// <summary>
/// Host arrays for one micro-batch of B rows, S tokens and P predictions, laid out as
/// <see cref="Bert.Runtime.BertBatch"/> expects them on the device. Arrays are pinned so an upload can
/// read them directly. Rows beyond <see cref="Rows"/> are stale.
/// </summary>
public sealed class HostBatch
{
    public HostBatch(int batch, int seqLength, int predictions)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "batch must be positive");
        Batch = batch;
        SeqLength = seqLength;
        Predictions = predictions;
        InputIds = GC.AllocateArray<int>(batch * seqLength, pinned: true);
        TokenTypeIds = GC.AllocateArray<int>(batch * seqLength, pinned: true);
        AttentionMask = GC.AllocateArray<int>(batch * seqLength, pinned: true);
        MlmPositions = GC.AllocateArray<int>(batch * predictions, pinned: true);
        MlmLabels = GC.AllocateArray<int>(batch * predictions, pinned: true);
        MlmWeights = GC.AllocateArray<float>(batch * predictions, pinned: true);
        NspLabels = GC.AllocateArray<int>(batch, pinned: true);
    }

    /// <summary>B: capacity in rows.</summary>
    public int Batch { get; }
    /// <summary>S.</summary>
    public int SeqLength { get; }
    /// <summary>P.</summary>
    public int Predictions { get; }

    /// <summary>Rows filled by the last <see cref="BatchAssembler.Fill"/> (≤ B).</summary>
    public int Rows { get; internal set; }

    /// <summary>[B·S] token ids ([MASK]ed and [PAD]ded).</summary>
    public int[] InputIds { get; }
    /// <summary>[B·S] 0 for [CLS] A [SEP] and padding, 1 for B [SEP].</summary>
    public int[] TokenTypeIds { get; }
    /// <summary>[B·S] 1 for real tokens, 0 for padding.</summary>
    public int[] AttentionMask { get; }
    /// <summary>[B·P] masked positions in [0, S) (0 in unused slots).</summary>
    public int[] MlmPositions { get; }
    /// <summary>[B·P] original token ids at those positions (0 in unused slots).</summary>
    public int[] MlmLabels { get; }
    /// <summary>[B·P] 1 for a real prediction, 0 for an unused slot.</summary>
    public float[] MlmWeights { get; }
    /// <summary>[B] 0 = actual next, 1 = random.</summary>
    public int[] NspLabels { get; }

    /// <summary>Σ MlmWeights over the filled rows.</summary>
    public float WeightSum { get; internal set; }

    /// <summary>1/(Σ weights + 1e-5): <see cref="Bert.Runtime.BertBatch.MlmGradScale"/>.</summary>
    public float MlmGradScale => 1f / (WeightSum + 1e-5f);
}

/// <summary>
/// Fills <see cref="HostBatch"/>es from a dataset in a deterministic shuffled order: epoch after
/// epoch, each a fresh permutation from (seed, epoch), batches running across epoch boundaries so
/// every batch is full. <see cref="Cursor"/> is the resume point: a new assembler made with the same
/// dataset, seed and cursor yields exactly the batches the old one would have. No allocation per batch.
/// </summary>
public sealed class BatchAssembler
{
    private readonly PretrainingDataset _dataset;
    private readonly ShuffledOrder _order;

    public BatchAssembler(PretrainingDataset dataset, ulong seed, DataCursor start = default)
    {
        _dataset = dataset;
        _order = new ShuffledOrder(dataset.Count, seed);
        if (start.Epoch < 0 || (ulong)start.Position >= (ulong)dataset.Count)
            throw new ArgumentOutOfRangeException(nameof(start), start, $"a cursor must have epoch ≥ 0 and position in [0, {dataset.Count})");
        Cursor = start;
    }

    public PretrainingDataset Dataset => _dataset;

    /// <summary>The next instance to be read.</summary>
    public DataCursor Cursor { get; private set; }

    /// <summary>Fills all <see cref="HostBatch.Batch"/> rows (or <paramref name="rows"/>) with the
    /// next instances and advances the cursor; returns Σ MLM weights.</summary>
    public float Next(HostBatch batch, int rows = -1)
    {
        if (rows < 0) rows = batch.Batch;
        return Next(batch, rows, 0, rows);
    }

    /// <summary>One rank's share of a global batch: advances the cursor past the next <paramref name="rows"/>
    /// instances (the whole batch, the same on every rank) but reads only those at [<paramref name="first"/>,
    /// first + <paramref name="count"/>) of it, into rows 0..count−1 of <paramref name="batch"/>; returns Σ MLM
    /// weights of the rows read.</summary>
    public float Next(HostBatch batch, int rows, int first, int count)
    {
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), rows, "rows must be non-negative");
        if (first < 0 || count < 0 || first + count > rows)
            throw new ArgumentOutOfRangeException(nameof(first), $"rows [{first}, {first + count}) are outside a batch of {rows}");
        if (count > batch.Batch) throw new ArgumentOutOfRangeException(nameof(count), count, $"the batch holds {batch.Batch} rows");
        Span<long> indices = count <= 256 ? stackalloc long[count] : new long[count];
        var c = Cursor;
        for (int r = 0; r < rows; r++)
        {
            if (r >= first && r < first + count) indices[r - first] = _order[c.Epoch, c.Position];
            c = c.Position + 1 == _dataset.Count ? new DataCursor(c.Epoch + 1, 0) : c with { Position = c.Position + 1 };
        }
        float sum = Fill(batch, indices);
        Cursor = c;
        return sum;
    }

    /// <summary>Fills rows 0..indices.Length−1 with the given instances; returns Σ MLM weights.</summary>
    public float Fill(HostBatch batch, ReadOnlySpan<long> indices)
    {
        int s = _dataset.SeqLength, p = _dataset.MaxPredictions;
        if (batch.SeqLength != s || batch.Predictions != p)
            throw new ArgumentException($"the batch is S={batch.SeqLength}, P={batch.Predictions} but {_dataset.Directory} holds S={s}, P={p}", nameof(batch));
        if (indices.Length > batch.Batch)
            throw new ArgumentOutOfRangeException(nameof(indices), indices.Length, $"the batch holds {batch.Batch} rows");
        float sum = 0;
        for (int r = 0; r < indices.Length; r++)
        {
            var ids = batch.InputIds.AsSpan(r * s, s);
            var info = _dataset.Read(ids, batch.TokenTypeIds.AsSpan(r * s, s),
                batch.MlmPositions.AsSpan(r * p, p), batch.MlmLabels.AsSpan(r * p, p), indices[r]);
            var mask = batch.AttentionMask.AsSpan(r * s, s);
            mask[..info.Length].Fill(1);
            mask[info.Length..].Clear();
            var weights = batch.MlmWeights.AsSpan(r * p, p);
            weights[..info.MaskedCount].Fill(1f);
            weights[info.MaskedCount..].Clear();
            batch.NspLabels[r] = info.NspLabel;
            sum += info.MaskedCount;
        }
        batch.Rows = indices.Length;
        batch.WeightSum = sum;
        return sum;
    }
}
