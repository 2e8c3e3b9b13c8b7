using System.Diagnostics;

namespace Bert.Runtime;

/// <summary>
/// A decorator over any backend that times every op of the boundary: it waits for the device before
/// and after each call (so queued work is attributed to the op that issued it) and accumulates wall
/// time per op name. For breakdowns only: the waits remove the overlap a real step has, so measure
/// throughput without it. Memory calls other than Copy and Zero (Allocate, Upload, Download,
/// Synchronize) and the queries pass through untimed (<see cref="DelegatingBackend"/>).
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : DelegatingBackend(inner)
{
    private readonly Dictionary<string, (double Seconds, long Calls)> _times = new(StringComparer.Ordinal);

    /// <summary>Accumulated (seconds, calls) per op since the last <see cref="Reset"/>, largest first.</summary>
    public IReadOnlyList<(string Op, double Seconds, long Calls)> Breakdown =>
        _times.Select(kv => (kv.Key, kv.Value.Seconds, kv.Value.Calls)).OrderByDescending(x => x.Seconds).ToList();

    public void Reset() => _times.Clear();

    /// <summary>Waits for queued work and returns the start timestamp of the op about to run.</summary>
    private long Start()
    {
        Inner.Synchronize();
        return Stopwatch.GetTimestamp();
    }

    /// <summary>Waits for the op's work and adds its wall time to <paramref name="op"/>.</summary>
    private void Stop(string op, long t0)
    {
        Inner.Synchronize();
        double s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        _times[op] = _times.TryGetValue(op, out var v) ? (v.Seconds + s, v.Calls + 1) : (s, 1);
    }

    public override void Copy(TensorRef destination, TensorRef source)
    {
        long t0 = Start();
        base.Copy(destination, source);
        Stop("Copy", t0);
    }

    public override void Zero(TensorRef tensor)
    {
        long t0 = Start();
        base.Zero(tensor);
        Stop("Zero", t0);
    }

    public override void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0)
    {
        long t0 = Start();
        base.Linear(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation, outputStride);
        Stop($"Linear {inFeatures}->{outFeatures}", t0);
    }

    public override void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0)
    {
        long t0 = Start();
        base.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, rows, inFeatures, outFeatures, accumulateInput, dOutputStride);
        Stop($"LinearBackward {inFeatures}->{outFeatures}", t0);
    }

    public override void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation)
    {
        long t0 = Start();
        base.ActivationBackward(dPre, dOut, pre, count, activation);
        Stop("ActivationBackward", t0);
    }

    public override void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds,
        TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb, TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout)
    {
        long t0 = Start();
        base.EmbeddingsForward(output, sum, mean, rstd, inputIds, tokenTypeIds, wordEmb, posEmb, typeEmb, gamma, beta, batch, seq, hidden, eps, dropout);
        Stop("EmbeddingsForward", t0);
    }

    public override void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta, TensorRef scratch,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout)
    {
        long t0 = Start();
        base.EmbeddingsBackward(dWordEmb, dPosEmb, dTypeEmb, dGamma, dBeta, scratch, dOutput, sum, mean, rstd, inputIds, tokenTypeIds, gamma,
            batch, seq, hidden, dropout);
        Stop("EmbeddingsBackward", t0);
    }

    public override void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps)
    {
        long t0 = Start();
        base.LayerNorm(output, mean, rstd, input, gamma, beta, rows, hidden, eps);
        Stop("LayerNorm", t0);
    }

    public override void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput, TensorRef input,
        TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden)
    {
        long t0 = Start();
        base.LayerNormBackward(dInput, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden);
        Stop("LayerNormBackward", t0);
    }

    public override void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef residual, TensorRef branch,
        TensorRef gamma, TensorRef beta, int rows, int hidden, float eps, DropoutSpec dropout)
    {
        long t0 = Start();
        base.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, eps, dropout);
        Stop("ResidualLayerNorm", t0);
    }

    public override void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
        TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout)
    {
        long t0 = Start();
        base.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout);
        Stop("ResidualLayerNormBackward", t0);
    }

    // A fused attention is timed under its own name ("AttentionForward (fused)"), so a breakdown shows which ran.
    public override void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        string name = AttentionName("AttentionForward", batch, seq, heads, headDim);
        long t0 = Start();
        base.AttentionForward(context, probs, workspace, qkv, attentionMask, batch, seq, heads, headDim, dropout);
        Stop(name, t0);
    }

    public override void AttentionBackward(TensorRef dQkv, TensorRef workspace, TensorRef dContext, TensorRef qkv, TensorRef context,
        TensorRef probs, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        string name = AttentionName("AttentionBackward", batch, seq, heads, headDim);
        long t0 = Start();
        base.AttentionBackward(dQkv, workspace, dContext, qkv, context, probs, attentionMask, batch, seq, heads, headDim, dropout);
        Stop(name, t0);
    }

    private string AttentionName(string op, int batch, int seq, int heads, int headDim) =>
        Inner.PlanAttention(batch, seq, heads, headDim).Fused ? op + " (fused)" : op;

    public override void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout)
    {
        long t0 = Start();
        base.Dropout(output, input, count, dropout);
        Stop("Dropout", t0);
    }

    public override void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        long t0 = Start();
        base.GatherRows(output, input, positions, batch, seq, count, hidden);
        Stop("GatherRows", t0);
    }

    public override void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        long t0 = Start();
        base.ScatterAddRows(dInput, dOutput, positions, batch, seq, count, hidden);
        Stop("ScatterAddRows", t0);
    }

    public override void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default)
    {
        long t0 = Start();
        base.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale, stride, gradScaleOnDevice);
        Stop("SoftmaxCrossEntropy", t0);
    }

    public override void SquaredNorm(TensorRef result, TensorRef input, long count)
    {
        long t0 = Start();
        base.SquaredNorm(result, input, count);
        Stop("SquaredNorm", t0);
    }

    public override void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, long count, in AdamWStep step)
    {
        long t0 = Start();
        base.AdamW(param, grad, m, v, normSquared, count, step);
        Stop("AdamW", t0);
    }

    public override void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants)
    {
        long t0 = Start();
        base.AdamWDevice(param, grad, m, v, normSquared, scalars, count, constants);
        Stop("AdamW", t0);
    }
}
