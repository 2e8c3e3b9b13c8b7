using Bert.Runtime.Data;

namespace Bert.Runtime.Training;

/// <summary>Device copies of a <see cref="HostBatch"/>, allocated once; <see cref="Upload"/> refills them.</summary>
public sealed class DeviceBatch : IDisposable
{
    private readonly IBackend _backend;
    private readonly DeviceBuffer _ids, _types, _mask, _positions, _labels, _weights, _nsp, _mlmScale;
    private readonly float[] _mlmScaleHost = new float[1];

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
        _mlmScale = backend.Allocate(1, DType.F32, "batch-mlm-grad-scale");
    }

    /// <summary>Copies rows [<paramref name="firstRow"/>, +<paramref name="rows"/>) of <paramref name="host"/>
    /// to the device and describes them as a <see cref="BertBatch"/>. The MLM gradient scale goes to the device too
    /// (<see cref="BertBatch.MlmGradScaleOnDevice"/>): every batch of one shape then queues the same work.</summary>
    /// <param name="mlmWeightTotal">Σ MLM weights over the whole optimizer batch (all micro-batches),
    /// so the accumulated gradient is the full batch's weighted mean.</param>
    /// <param name="accumulation">Micro-batches per optimizer step.</param>
    public BertBatch Upload(HostBatch host, int firstRow, int rows, float mlmWeightTotal, int accumulation)
    {
        int s = host.SeqLength, pp = host.Predictions;
        int t = rows * s, p = rows * pp;
        _backend.Upload<int>(_ids.Slice(0, t), host.InputIds.AsSpan(firstRow * s, t));
        _backend.Upload<int>(_types.Slice(0, t), host.TokenTypeIds.AsSpan(firstRow * s, t));
        _backend.Upload<int>(_mask.Slice(0, t), host.AttentionMask.AsSpan(firstRow * s, t));
        if (p > 0)
        {
            _backend.Upload<int>(_positions.Slice(0, p), host.MlmPositions.AsSpan(firstRow * pp, p));
            _backend.Upload<int>(_labels.Slice(0, p), host.MlmLabels.AsSpan(firstRow * pp, p));
            _backend.Upload<float>(_weights.Slice(0, p), host.MlmWeights.AsSpan(firstRow * pp, p));
        }
        _backend.Upload<int>(_nsp.Slice(0, rows), host.NspLabels.AsSpan(firstRow, rows));
        float mlmGradScale = 1f / (mlmWeightTotal + 1e-5f);
        _mlmScaleHost[0] = mlmGradScale;
        _backend.Upload<float>(_mlmScale.View, _mlmScaleHost);
        return new BertBatch
        {
            Batch = rows,
            Seq = s,
            Predictions = pp,
            InputIds = _ids.Slice(0, t),
            TokenTypeIds = _types.Slice(0, t),
            AttentionMask = _mask.Slice(0, t),
            MlmPositions = p > 0 ? _positions.Slice(0, p) : TensorRef.Null,
            MlmLabels = p > 0 ? _labels.Slice(0, p) : TensorRef.Null,
            MlmWeights = p > 0 ? _weights.Slice(0, p) : TensorRef.Null,
            MlmGradScale = mlmGradScale,
            MlmGradScaleOnDevice = _mlmScale.View,
            NspLabels = _nsp.Slice(0, rows),
            MicroBatchScale = 1f / accumulation,
        };
    }

    public void Dispose()
    {
        _mlmScale.Dispose();
        _nsp.Dispose();
        _weights.Dispose();
        _labels.Dispose();
        _positions.Dispose();
        _mask.Dispose();
        _types.Dispose();
        _ids.Dispose();
    }
}
