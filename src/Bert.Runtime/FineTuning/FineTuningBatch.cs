namespace Bert.Runtime.FineTuning;

/// <summary>
/// Device buffers for fine-tuning micro-batches, allocated once for the model's maxima; each
/// <see cref="Upload"/> gathers chosen rows of a <see cref="Features"/> set (padded to the longest
/// of them) and describes them as a <see cref="BertBatch"/>.
/// </summary>
public sealed class FineTuningBatch : IDisposable
{
    private readonly IBackend _backend;
    private readonly DeviceBuffer _ids, _types, _mask, _labels, _weights, _start, _end;
    private readonly int[] _hostIds, _hostTypes, _hostMask, _hostLabels, _hostStart, _hostEnd;
    private readonly float[] _hostWeights;

    public FineTuningBatch(IBackend backend, int maxBatch, int maxSeq)
    {
        _backend = backend;
        int tokens = checked(maxBatch * maxSeq);
        _ids = backend.Allocate(tokens, DType.I32, "finetune-input-ids");
        _types = backend.Allocate(tokens, DType.I32, "finetune-token-types");
        _mask = backend.Allocate(tokens, DType.I32, "finetune-attention-mask");
        _labels = backend.Allocate(tokens, DType.I32, "finetune-labels");
        _weights = backend.Allocate(tokens, DType.F32, "finetune-label-weights");
        _start = backend.Allocate(maxBatch, DType.I32, "finetune-start-positions");
        _end = backend.Allocate(maxBatch, DType.I32, "finetune-end-positions");
        _hostIds = new int[tokens];
        _hostTypes = new int[tokens];
        _hostMask = new int[tokens];
        _hostLabels = new int[tokens];
        _hostWeights = new float[tokens];
        _hostStart = new int[maxBatch];
        _hostEnd = new int[maxBatch];
        MaxBatch = maxBatch;
        MaxSeq = maxSeq;
    }

    public int MaxBatch { get; }
    public int MaxSeq { get; }

    /// <summary>The longest row among <paramref name="rows"/>.</summary>
    public static int SeqOf(Features f, ReadOnlySpan<int> rows)
    {
        int s = 1;
        foreach (int r in rows) s = Math.Max(s, f.Lengths[r]);
        return s;
    }

    /// <summary>Uploads rows <paramref name="rows"/> of <paramref name="f"/>, padded to <paramref name="seq"/>.</summary>
    /// <param name="withLabels">Attach the task's labels (training) or not (inference: logits only).</param>
    /// <param name="microBatchScale">This micro-batch's share of the optimizer batch (rows / batch rows).</param>
    /// <param name="labelGradScale">Token classification: 1/(Σ label weights of the optimizer batch + 1e-5).</param>
    public BertBatch Upload(Features f, ReadOnlySpan<int> rows, int seq, bool withLabels, float microBatchScale = 1f, float labelGradScale = 0f)
    {
        int b = rows.Length;
        if (b < 1 || b > MaxBatch) throw new ArgumentOutOfRangeException(nameof(rows), b, $"a micro-batch holds 1 to {MaxBatch} rows");
        if (seq < 1 || seq > MaxSeq || seq > f.Stride) throw new ArgumentOutOfRangeException(nameof(seq), seq, $"sequence length must be in [1, {Math.Min(MaxSeq, f.Stride)}]");
        int t = b * seq;
        bool tokens = f.Task == FineTuningTask.TokenClassification;
        for (int i = 0; i < b; i++)
        {
            int r = rows[i], o = i * seq, src = r * f.Stride, len = f.Lengths[r];
            if (len > seq) throw new ArgumentOutOfRangeException(nameof(seq), seq, $"row {r} has {len} tokens");
            f.InputIds.AsSpan(src, seq).CopyTo(_hostIds.AsSpan(o, seq));
            f.TokenTypes.AsSpan(src, seq).CopyTo(_hostTypes.AsSpan(o, seq));
            _hostMask.AsSpan(o, len).Fill(1);
            _hostMask.AsSpan(o + len, seq - len).Clear();
            if (withLabels && tokens)
            {
                f.Labels!.AsSpan(src, seq).CopyTo(_hostLabels.AsSpan(o, seq));
                f.LabelWeights!.AsSpan(src, seq).CopyTo(_hostWeights.AsSpan(o, seq));
            }
            else if (withLabels && f.Task == FineTuningTask.Classification) _hostLabels[i] = f.Labels![r];
            else if (withLabels)
            {
                _hostStart[i] = f.StartPositions![r];
                _hostEnd[i] = f.EndPositions![r];
            }
        }
        _backend.Upload<int>(_ids.Slice(0, t), _hostIds.AsSpan(0, t));
        _backend.Upload<int>(_types.Slice(0, t), _hostTypes.AsSpan(0, t));
        _backend.Upload<int>(_mask.Slice(0, t), _hostMask.AsSpan(0, t));
        var batch = new BertBatch
        {
            Batch = b, Seq = seq,
            InputIds = _ids.Slice(0, t), TokenTypeIds = _types.Slice(0, t), AttentionMask = _mask.Slice(0, t),
            MicroBatchScale = microBatchScale,
        };
        if (!withLabels) return batch;
        switch (f.Task)
        {
            case FineTuningTask.Classification:
                _backend.Upload<int>(_labels.Slice(0, b), _hostLabels.AsSpan(0, b));
                return batch with { Labels = _labels.Slice(0, b) };
            case FineTuningTask.TokenClassification:
                _backend.Upload<int>(_labels.Slice(0, t), _hostLabels.AsSpan(0, t));
                _backend.Upload<float>(_weights.Slice(0, t), _hostWeights.AsSpan(0, t));
                return batch with { Labels = _labels.Slice(0, t), LabelWeights = _weights.Slice(0, t), LabelGradScale = labelGradScale };
            default:
                _backend.Upload<int>(_start.Slice(0, b), _hostStart.AsSpan(0, b));
                _backend.Upload<int>(_end.Slice(0, b), _hostEnd.AsSpan(0, b));
                return batch with { StartPositions = _start.Slice(0, b), EndPositions = _end.Slice(0, b) };
        }
    }

    public void Dispose()
    {
        _end.Dispose();
        _start.Dispose();
        _weights.Dispose();
        _labels.Dispose();
        _mask.Dispose();
        _types.Dispose();
        _ids.Dispose();
    }
}
