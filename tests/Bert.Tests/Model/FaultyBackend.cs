using Bert.Runtime;

namespace Bert.Tests.Model;

/// <summary>A deliberate bug in one backward op, for showing that the gradient check catches it.</summary>
internal enum BackwardFault
{
    None,
    /// <summary>The residual LayerNorm backward forgets the dropout mask of its branch (a mask that forward
    /// applied and backward must apply again): invisible with dropout off.</summary>
    ResidualDropoutMaskIgnored,
    /// <summary>The bias gradient of the Linear layers with <see cref="FaultyBackend.BiasFeatures"/> outputs
    /// is not accumulated (the FFN intermediate dense layers of the odd model).</summary>
    BiasGradientDropped,
}

/// <summary>
/// Delegates every op to a real backend, except for one injected <see cref="BackwardFault"/>. It owns
/// nothing: the inner backend is disposed by whoever created it.
/// </summary>
internal sealed class FaultyBackend(IBackend inner, BackwardFault fault) : IBackend
{
    /// <summary>Output features of the Linear layers whose bias gradient <see cref="BackwardFault.BiasGradientDropped"/> drops.</summary>
    public const int BiasFeatures = 37;

    public string Name => inner.Name + " with " + fault;
    public DType ComputeType => inner.ComputeType;

    public DeviceBuffer Allocate(long length, DType type, string label) => inner.Allocate(length, type, label);
    public void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged => inner.Upload(destination, source);
    public void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged => inner.Download(destination, source);
    public void Copy(TensorRef destination, TensorRef source) => inner.Copy(destination, source);
    public void Zero(TensorRef tensor) => inner.Zero(tensor);
    public void Synchronize() => inner.Synchronize();

    public void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation) =>
        inner.Linear(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation);

    public void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput) =>
        inner.LinearBackward(dInput, dWeight,
            fault == BackwardFault.BiasGradientDropped && outFeatures == BiasFeatures ? TensorRef.Null : dBias,
            dOutput, input, weight, rows, inFeatures, outFeatures, accumulateInput);

    public void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation) =>
        inner.ActivationBackward(dPre, dOut, pre, count, activation);

    public void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds,
        TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb, TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout) =>
        inner.EmbeddingsForward(output, sum, mean, rstd, inputIds, tokenTypeIds, wordEmb, posEmb, typeEmb, gamma, beta, batch, seq, hidden, eps, dropout);

    public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta, TensorRef scratch,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout) =>
        inner.EmbeddingsBackward(dWordEmb, dPosEmb, dTypeEmb, dGamma, dBeta, scratch, dOutput, sum, mean, rstd, inputIds, tokenTypeIds, gamma,
            batch, seq, hidden, dropout);

    public void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta, int rows, int hidden, float eps) =>
        inner.LayerNorm(output, mean, rstd, input, gamma, beta, rows, hidden, eps);

    public void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput, TensorRef input, TensorRef mean,
        TensorRef rstd, TensorRef gamma, int rows, int hidden) =>
        inner.LayerNormBackward(dInput, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden);

    public void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef residual, TensorRef branch,
        TensorRef gamma, TensorRef beta, int rows, int hidden, float eps, DropoutSpec dropout) =>
        inner.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, eps, dropout);

    public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
        TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout) =>
        inner.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden,
            fault == BackwardFault.ResidualDropoutMaskIgnored ? DropoutSpec.None : dropout);

    public long AttentionWorkspaceLength(int batch, int seq, int heads, int headDim) => inner.AttentionWorkspaceLength(batch, seq, heads, headDim);

    public void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout) =>
        inner.AttentionForward(context, probs, workspace, qkv, attentionMask, batch, seq, heads, headDim, dropout);

    public void AttentionBackward(TensorRef dQkv, TensorRef workspace, TensorRef dContext, TensorRef qkv, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout) =>
        inner.AttentionBackward(dQkv, workspace, dContext, qkv, probs, attentionMask, batch, seq, heads, headDim, dropout);

    public void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout) => inner.Dropout(output, input, count, dropout);

    public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden) =>
        inner.GatherRows(output, input, positions, batch, seq, count, hidden);

    public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden) =>
        inner.ScatterAddRows(dInput, dOutput, positions, batch, seq, count, hidden);

    public void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale) =>
        inner.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale);

    public void SquaredNorm(TensorRef result, TensorRef input, long count) => inner.SquaredNorm(result, input, count);

    public void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, long count, in AdamWStep step) =>
        inner.AdamW(param, grad, m, v, normSquared, count, step);

    public void Dispose() { }
}
