namespace Bert.Runtime;

/// <summary>
/// The base of backend decorators: every member of <see cref="IBackend"/> forwards to
/// <see cref="Inner"/> and is virtual, so a decorator (profiling, fault injection, a kill switch)
/// overrides only the ops it changes. A test checks that every member of the interface is forwarded,
/// so a member added to <see cref="IBackend"/> cannot silently fall back to a default here.
/// Argument checks stay with the real backends (<see cref="OpChecks"/>), not with decorators.
/// </summary>
public abstract class DelegatingBackend : IBackend
{
    private readonly bool _ownsInner;

    /// <param name="inner">The backend every call goes to.</param>
    /// <param name="ownsInner">Whether <see cref="Dispose"/> disposes <paramref name="inner"/> (default: the caller owns it).</param>
    protected DelegatingBackend(IBackend inner, bool ownsInner = false)
    {
        ArgumentNullException.ThrowIfNull(inner);
        Inner = inner;
        _ownsInner = ownsInner;
    }

    /// <summary>The decorated backend.</summary>
    public IBackend Inner { get; }

    public virtual string Name => Inner.Name;

    public virtual DType ComputeType => Inner.ComputeType;

    public virtual long? AvailableMemoryBytes => Inner.AvailableMemoryBytes;

    // ---- memory -------------------------------------------------------------------------------

    public virtual DeviceBuffer Allocate(long length, DType type, string label) => Inner.Allocate(length, type, label);

    public virtual void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged => Inner.Upload(destination, source);

    public virtual void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged => Inner.Download(destination, source);

    public virtual void Copy(TensorRef destination, TensorRef source) => Inner.Copy(destination, source);

    public virtual void Zero(TensorRef tensor) => Inner.Zero(tensor);
    public virtual void WrittenExternally(TensorRef written) => Inner.WrittenExternally(written);

    public virtual void Synchronize() => Inner.Synchronize();

    // ---- GEMM ---------------------------------------------------------------------------------

    public virtual void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0) =>
        Inner.Linear(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation, outputStride);

    public virtual void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias,
        TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0) =>
        Inner.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, rows, inFeatures, outFeatures, accumulateInput, dOutputStride);

    public virtual void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation) =>
        Inner.ActivationBackward(dPre, dOut, pre, count, activation);

    // ---- embeddings and normalization ---------------------------------------------------------

    public virtual void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb,
        TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout) =>
        Inner.EmbeddingsForward(output, sum, mean, rstd, inputIds, tokenTypeIds, wordEmb, posEmb, typeEmb, gamma, beta,
            batch, seq, hidden, eps, dropout);

    public virtual void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout) =>
        Inner.EmbeddingsBackward(dWordEmb, dPosEmb, dTypeEmb, dGamma, dBeta, scratch, dOutput, sum, mean, rstd,
            inputIds, tokenTypeIds, gamma, batch, seq, hidden, dropout);

    public virtual void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps) =>
        Inner.LayerNorm(output, mean, rstd, input, gamma, beta, rows, hidden, eps);

    public virtual void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef input, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden) =>
        Inner.LayerNormBackward(dInput, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden);

    public virtual void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef residual, TensorRef branch, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps, DropoutSpec dropout) =>
        Inner.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, eps, dropout);

    public virtual void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma,
        int rows, int hidden, DropoutSpec dropout) =>
        Inner.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout);

    // ---- attention ----------------------------------------------------------------------------

    public virtual AttentionPlan PlanAttention(int batch, int seq, int heads, int headDim) =>
        Inner.PlanAttention(batch, seq, heads, headDim);

    public virtual void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace,
        TensorRef qkv, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout) =>
        Inner.AttentionForward(context, probs, workspace, qkv, attentionMask, batch, seq, heads, headDim, dropout);

    public virtual void AttentionBackward(TensorRef dQkv, TensorRef workspace,
        TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout) =>
        Inner.AttentionBackward(dQkv, workspace, dContext, qkv, context, probs, attentionMask, batch, seq, heads, headDim, dropout);

    public virtual void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout) =>
        Inner.Dropout(output, input, count, dropout);

    // ---- gathers ------------------------------------------------------------------------------

    public virtual void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden) =>
        Inner.GatherRows(output, input, positions, batch, seq, count, hidden);

    public virtual void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden) =>
        Inner.ScatterAddRows(dInput, dOutput, positions, batch, seq, count, hidden);

    // ---- loss ---------------------------------------------------------------------------------

    public virtual void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default) =>
        Inner.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale, stride, gradScaleOnDevice);

    public virtual int LogitsStride(int classes) => Inner.LogitsStride(classes);

    // ---- optimizer ----------------------------------------------------------------------------

    public virtual void SquaredNorm(TensorRef result, TensorRef input, long count) => Inner.SquaredNorm(result, input, count);

    public virtual void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared,
        long count, in AdamWStep step) =>
        Inner.AdamW(param, grad, m, v, normSquared, count, step);

    public virtual void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants) =>
        Inner.AdamWDevice(param, grad, m, v, normSquared, scalars, count, constants);

    /// <summary>Disposes <see cref="Inner"/> only when this decorator was created owning it.</summary>
    public virtual void Dispose()
    {
        if (_ownsInner) Inner.Dispose();
        GC.SuppressFinalize(this);
    }
}
