using System.Diagnostics;

namespace Bert.Runtime;

/// <summary>
/// A decorator over any backend that times every op of the boundary: it waits for the device before
/// and after each call (so queued work is attributed to the op that issued it) and accumulates wall
/// time per op name. For breakdowns only: the waits remove the overlap a real step has, so measure
/// throughput without it.
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    private readonly Dictionary<string, (double Seconds, long Calls)> _times = new(StringComparer.Ordinal);

    public IBackend Inner { get; } = inner;

    public string Name => Inner.Name;

    public DType ComputeType => Inner.ComputeType;

    /// <summary>Accumulated (seconds, calls) per op since the last <see cref="Reset"/>, largest first.</summary>
    public IReadOnlyList<(string Op, double Seconds, long Calls)> Breakdown =>
        _times.Select(kv => (kv.Key, kv.Value.Seconds, kv.Value.Calls)).OrderByDescending(x => x.Seconds).ToList();

    public void Reset() => _times.Clear();

    private void Time(string op, Action run)
    {
        Inner.Synchronize();
        long t0 = Stopwatch.GetTimestamp();
        run();
        Inner.Synchronize();
        double s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        _times[op] = _times.TryGetValue(op, out var v) ? (v.Seconds + s, v.Calls + 1) : (s, 1);
    }

    public DeviceBuffer Allocate(long length, DType type, string label) => Inner.Allocate(length, type, label);
    public void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged => Inner.Upload(destination, source);
    public void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged => Inner.Download(destination, source);
    public void Copy(TensorRef destination, TensorRef source) => Time("Copy", () => Inner.Copy(destination, source));
    public void Zero(TensorRef tensor) => Time("Zero", () => Inner.Zero(tensor));
    public void Synchronize() => Inner.Synchronize();

    public void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation) =>
        Time($"Linear {inFeatures}->{outFeatures}", () => Inner.Linear(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation));

    public void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput) =>
        Time($"LinearBackward {inFeatures}->{outFeatures}", () => Inner.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, rows, inFeatures, outFeatures, accumulateInput));

    public void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation) =>
        Time("ActivationBackward", () => Inner.ActivationBackward(dPre, dOut, pre, count, activation));

    public void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds,
        TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb, TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout) =>
        Time("EmbeddingsForward", () => Inner.EmbeddingsForward(output, sum, mean, rstd, inputIds, tokenTypeIds, wordEmb, posEmb, typeEmb, gamma, beta, batch, seq, hidden, eps, dropout));

    public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta, TensorRef scratch,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout) =>
        Time("EmbeddingsBackward", () => Inner.EmbeddingsBackward(dWordEmb, dPosEmb, dTypeEmb, dGamma, dBeta, scratch, dOutput, sum, mean, rstd, inputIds, tokenTypeIds, gamma, batch, seq, hidden, dropout));

    public void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta, int rows, int hidden, float eps) =>
        Time("LayerNorm", () => Inner.LayerNorm(output, mean, rstd, input, gamma, beta, rows, hidden, eps));

    public void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput, TensorRef input, TensorRef mean, TensorRef rstd,
        TensorRef gamma, int rows, int hidden) =>
        Time("LayerNormBackward", () => Inner.LayerNormBackward(dInput, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden));

    public void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef residual, TensorRef branch,
        TensorRef gamma, TensorRef beta, int rows, int hidden, float eps, DropoutSpec dropout) =>
        Time("ResidualLayerNorm", () => Inner.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, eps, dropout));

    public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
        TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout) =>
        Time("ResidualLayerNormBackward", () => Inner.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout));

    public long AttentionWorkspaceLength(int batch, int seq, int heads, int headDim) => Inner.AttentionWorkspaceLength(batch, seq, heads, headDim);

    public void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout) =>
        Time("AttentionForward", () => Inner.AttentionForward(context, probs, workspace, qkv, attentionMask, batch, seq, heads, headDim, dropout));

    public void AttentionBackward(TensorRef dQkv, TensorRef workspace, TensorRef dContext, TensorRef qkv, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout) =>
        Time("AttentionBackward", () => Inner.AttentionBackward(dQkv, workspace, dContext, qkv, probs, attentionMask, batch, seq, heads, headDim, dropout));

    public void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout) =>
        Time("Dropout", () => Inner.Dropout(output, input, count, dropout));

    public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden) =>
        Time("GatherRows", () => Inner.GatherRows(output, input, positions, batch, seq, count, hidden));

    public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden) =>
        Time("ScatterAddRows", () => Inner.ScatterAddRows(dInput, dOutput, positions, batch, seq, count, hidden));

    public void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights, int rows, int classes, float gradScale) =>
        Time("SoftmaxCrossEntropy", () => Inner.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale));

    public void SquaredNorm(TensorRef result, TensorRef input, long count) => Time("SquaredNorm", () => Inner.SquaredNorm(result, input, count));

    public void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, long count, in AdamWStep step)
    {
        var s = step;
        Time("AdamW", () => Inner.AdamW(param, grad, m, v, normSquared, count, s));
    }

    /// <summary>Does not dispose the inner backend (the caller owns it).</summary>
    public void Dispose() { }
}
