namespace Bert.Runtime.Training;

/// <summary>
/// Host arrays of one pretraining micro-batch, sized once for the largest phase (B·S tokens, B·P
/// predictions), refilled in place by the data loader.
/// </summary>
public sealed class HostBatch
{
    public HostBatch(int maxBatch, int maxSeq, int maxPredictions)
    {
        MaxBatch = maxBatch;
        MaxSeq = maxSeq;
        MaxPredictions = maxPredictions;
        InputIds = new int[maxBatch * maxSeq];
        TokenTypeIds = new int[maxBatch * maxSeq];
        AttentionMask = new int[maxBatch * maxSeq];
        MlmPositions = new int[maxBatch * maxPredictions];
        MlmLabels = new int[maxBatch * maxPredictions];
        MlmWeights = new float[maxBatch * maxPredictions];
        NspLabels = new int[maxBatch];
    }

    public int MaxBatch { get; }
    public int MaxSeq { get; }
    public int MaxPredictions { get; }

    /// <summary>Current shape; arrays are used as [Batch·Seq] and [Batch·Predictions] prefixes.</summary>
    public int Batch { get; set; }
    public int Seq { get; set; }
    public int Predictions { get; set; }

    public int[] InputIds { get; }
    public int[] TokenTypeIds { get; }
    public int[] AttentionMask { get; }
    public int[] MlmPositions { get; }
    public int[] MlmLabels { get; }
    public float[] MlmWeights { get; }
    public int[] NspLabels { get; }

    public int Tokens => Batch * Seq;
    public int PredictionSlots => Batch * Predictions;

    /// <summary>Σ MlmWeights over the current shape.</summary>
    public float WeightSum()
    {
        float s = 0;
        for (int i = 0; i < PredictionSlots; i++) s += MlmWeights[i];
        return s;
    }
}

/// <summary>Device copies of a <see cref="HostBatch"/>, allocated once; <see cref="Upload"/> refills them.</summary>
public sealed class DeviceBatch : IDisposable
{
    private readonly IBackend _backend;
    private readonly DeviceBuffer _ids, _types, _mask, _positions, _labels, _weights, _nsp;

    public DeviceBatch(IBackend backend, int maxBatch, int maxSeq, int maxPredictions)
    {
        _backend = backend;
        long tokens = (long)maxBatch * maxSeq, preds = Math.Max(1L, (long)maxBatch * maxPredictions);
        _ids = backend.Allocate(tokens, DType.I32, "batch-input-ids");
        _types = backend.Allocate(tokens, DType.I32, "batch-token-types");
        _mask = backend.Allocate(tokens, DType.I32, "batch-attention-mask");
        _positions = backend.Allocate(preds, DType.I32, "batch-mlm-positions");
        _labels = backend.Allocate(preds, DType.I32, "batch-mlm-labels");
        _weights = backend.Allocate(preds, DType.F32, "batch-mlm-weights");
        _nsp = backend.Allocate(maxBatch, DType.I32, "batch-nsp-labels");
    }

    /// <summary>Copies <paramref name="host"/> to the device and describes it as a <see cref="BertBatch"/>.</summary>
    /// <param name="mlmWeightTotal">Σ MLM weights over the whole optimizer batch (all micro-batches),
    /// so the accumulated gradient is the full batch's weighted mean.</param>
    /// <param name="accumulation">Micro-batches per optimizer step.</param>
    public BertBatch Upload(HostBatch host, float mlmWeightTotal, int accumulation)
    {
        int t = host.Tokens, p = host.PredictionSlots;
        _backend.Upload<int>(_ids.Slice(0, t), host.InputIds.AsSpan(0, t));
        _backend.Upload<int>(_types.Slice(0, t), host.TokenTypeIds.AsSpan(0, t));
        _backend.Upload<int>(_mask.Slice(0, t), host.AttentionMask.AsSpan(0, t));
        if (p > 0)
        {
            _backend.Upload<int>(_positions.Slice(0, p), host.MlmPositions.AsSpan(0, p));
            _backend.Upload<int>(_labels.Slice(0, p), host.MlmLabels.AsSpan(0, p));
            _backend.Upload<float>(_weights.Slice(0, p), host.MlmWeights.AsSpan(0, p));
        }
        _backend.Upload<int>(_nsp.Slice(0, host.Batch), host.NspLabels.AsSpan(0, host.Batch));
        return new BertBatch
        {
            Batch = host.Batch,
            Seq = host.Seq,
            Predictions = host.Predictions,
            InputIds = _ids.Slice(0, t),
            TokenTypeIds = _types.Slice(0, t),
            AttentionMask = _mask.Slice(0, t),
            MlmPositions = p > 0 ? _positions.Slice(0, p) : TensorRef.Null,
            MlmLabels = p > 0 ? _labels.Slice(0, p) : TensorRef.Null,
            MlmWeights = p > 0 ? _weights.Slice(0, p) : TensorRef.Null,
            MlmGradScale = 1f / (mlmWeightTotal + 1e-5f),
            NspLabels = _nsp.Slice(0, host.Batch),
            MicroBatchScale = 1f / accumulation,
        };
    }

    public void Dispose()
    {
        _nsp.Dispose();
        _weights.Dispose();
        _labels.Dispose();
        _positions.Dispose();
        _mask.Dispose();
        _types.Dispose();
        _ids.Dispose();
    }
}
