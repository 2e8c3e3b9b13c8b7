namespace Bert.Runtime;

/// <summary>Elementwise activation fused into a linear layer's epilogue.</summary>
public enum Activation
{
    None = 0,
    /// <summary>Exact GELU x·Φ(x).</summary>
    Gelu = 1,
    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    GeluTanh = 2,
    Relu = 3,
    Tanh = 4,
}

/// <summary>
/// The op boundary: every computation of a BERT step is one of these coarse, fused ops, each a
/// forward/backward pair. The generated model calls nothing else, so a backend is exactly this
/// interface (the CPU backend in Bert.Runtime, the CUDA backend in Bert.Native).
///
/// Conventions. Outputs first, then inputs, then sizes. Row-major. Shapes in the comment of every
/// op, with the legend B batch, S sequence, H hidden, NH heads, HD head dim (H = NH·HD), I
/// intermediate, V vocab, P predictions per sequence, N rows, C classes. In backward ops parameter
/// gradients accumulate (+=) and activation gradients overwrite (=), unless an argument says
/// otherwise. A Null view means "not needed" where the comment allows it. Ops are asynchronous on
/// devices that queue work; <see cref="Synchronize"/> and downloads wait.
///
/// Argument checks are one set for all backends: each op first calls its <see cref="OpChecks"/> method
/// (sizes, dtypes, view lengths, which views may be Null, aliasing, eps, dropout), so a bad call fails
/// with the same exception and message everywhere. A row count (rows, batch, seq, count) of 0 is a
/// checked no-op; decorators derive from <see cref="DelegatingBackend"/>.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>"cpu", "cuda:0 (NVIDIA H100 …)".</summary>
    string Name { get; }

    /// <summary>Element type of activations and GEMM inputs (F32 on the CPU; F32 or BF16 on CUDA).
    /// Parameters, gradients and optimizer state are always F32.</summary>
    DType ComputeType { get; }

    /// <summary>Bytes this backend can still allocate (host memory for the CPU, free device memory for a
    /// GPU), for the check a model makes before it allocates; null when unknown.</summary>
    long? AvailableMemoryBytes => null;

    // ---- memory -------------------------------------------------------------------------------

    /// <summary>A zero-filled allocation of <paramref name="length"/> elements.</summary>
    DeviceBuffer Allocate(long length, DType type, string label);

    void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged;

    void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged;

    /// <summary>destination = source (same length and type).</summary>
    void Copy(TensorRef destination, TensorRef source);

    void Zero(TensorRef tensor);

    /// <summary>Waits for all queued work.</summary>
    void Synchronize();

    /// <summary>Something other than this backend's own operations (a collective of a communicator) wrote
    /// <paramref name="written"/>: the backend re-derives whatever it keeps of that memory (the CUDA backend's bf16
    /// copy of the weights). Nothing to do for a backend that keeps no such copy.</summary>
    void WrittenExternally(TensorRef written) { }

    // ---- GEMM ---------------------------------------------------------------------------------

    /// <summary>output[N,O] = act(input[N,K]·weight[O,K]ᵀ + bias[O]). preActivation[N,O] receives the
    /// value before the activation when act ≠ None and it is not Null (Null: not kept, e.g. inference).
    /// bias may be Null. <paramref name="outputStride"/>: the row stride of output and preActivation (0: O);
    /// columns [O, stride) are padding that a backend may overwrite (with zeros: the CUDA backend's padded
    /// vocabulary GEMM) or leave alone, and that no op reads as values (see <see cref="LogitsStride"/>).</summary>
    void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0);

    /// <summary>Backward of <see cref="Linear"/> without its activation (see <see cref="ActivationBackward"/>):
    /// dWeight[O,K] += dOutput[N,O]ᵀ·input[N,K] (Null: skip); dBias[O] += Σ_n dOutput[n,:] (Null: skip);
    /// dInput[N,K] = dOutput·weight, or += when <paramref name="accumulateInput"/> (Null: skip). input is
    /// read only for dWeight, weight only for dInput (either may be Null when not read). dOutput's rows are
    /// <paramref name="dOutputStride"/> apart (0: O); its columns [O, stride) are never read.</summary>
    void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias,
        TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0);

    /// <summary>dPre[n] = dOut[n]·act'(pre[n]) for n &lt; count. dPre may alias dOut.</summary>
    void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation);

    // ---- embeddings and normalization ---------------------------------------------------------

    /// <summary>sum[B·S,H] = wordEmb[ids]+posEmb[s]+typeEmb[types]; mean,rstd[B·S] its LayerNorm
    /// statistics; output[B·S,H] = dropout(LN(sum)·gamma + beta). ids, types: I32[B·S]. The tables are
    /// F32[rows, H] (length a positive multiple of H); posEmb has at least S rows. eps &gt; 0.</summary>
    void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb,
        TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout);

    /// <summary>Backward of <see cref="EmbeddingsForward"/>: all five parameter gradients += (each may be
    /// Null: skip). The tables are F32[rows, H]; dPosEmb has at least S rows. scratch: F32[B·S·H] (the
    /// gradient of sum).</summary>
    void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout);

    /// <summary>output[N,H] = LN(input)·gamma + beta; mean, rstd[N] saved.</summary>
    void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps);

    /// <summary>dInput[N,H] =; dGamma, dBeta[H] += (Null: skip).</summary>
    void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef input, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden);

    /// <summary>Post-LN residual: sum[N,H] = residual + dropout(branch); output = LN(sum)·gamma + beta;
    /// mean, rstd[N] saved. sum may alias residual only while dropout is inactive.</summary>
    void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef residual, TensorRef branch, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps, DropoutSpec dropout);

    /// <summary>dResidual[N,H] = ∂/∂sum (overwrite; may alias dOutput); dBranch[N,H] =
    /// dropout-mask·dResidual (overwrite; may alias neither dResidual nor dOutput); dGamma, dBeta += (Null: skip).</summary>
    void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma,
        int rows, int hidden, DropoutSpec dropout);

    // ---- attention ----------------------------------------------------------------------------

    /// <summary>How <see cref="AttentionForward"/>/<see cref="AttentionBackward"/> run at these sizes: the
    /// elements of the saved state (probs) the forward writes for the backward, and of the workspace. A model
    /// plans its arena with it; both ops check their views against it.</summary>
    AttentionPlan PlanAttention(int batch, int seq, int heads, int headDim);

    /// <summary>qkv[B·S,3H] holds per row [q | k | v], each head-major (NH×HD). mask: I32[B·S], 1 attend,
    /// 0 padding. context[B·S,H] = dropout(P)·v, heads concatenated, with P[B,NH,S,S] = softmax(q·kᵀ/√HD +
    /// (mask−1)·∞). probs (<see cref="AttentionPlan.SavedLength"/> elements) receives what the backward needs:
    /// P itself before dropout, or, where <see cref="AttentionPlan.Fused"/>, the fused kernel's row statistics.</summary>
    void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace,
        TensorRef qkv, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout);

    /// <summary>dQkv[B·S,3H] = (overwrite) from dContext[B·S,H]; context[B·S,H] and probs are the forward's
    /// outputs for the same qkv, mask and dropout (a fused backward reads the context instead of P).</summary>
    void AttentionBackward(TensorRef dQkv, TensorRef workspace,
        TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout);

    /// <summary>output[n] = dropout(input[n]) for n &lt; count (a copy when inactive). Self-adjoint: the
    /// backward is the same call on the gradients with the same spec. output may alias input.</summary>
    void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout);

    // ---- gathers ------------------------------------------------------------------------------

    /// <summary>output[B·P,H] = input[b·S + positions[b·P+p], :]. positions: I32[B·P] in [0,S).</summary>
    void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden);

    /// <summary>dInput[b·S + positions[b·P+p], :] += dOutput[b·P+p, :] (accumulates: the rows also
    /// carry the gradient of other consumers).</summary>
    void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden);

    // ---- loss ---------------------------------------------------------------------------------

    /// <summary>Softmax cross-entropy fused with its gradient. logits[N,C]; labels I32[N]; weights
    /// F32[N] or Null (all 1). dLogits[N,C] = gradScale·w·(softmax − onehot(label)) (may alias logits);
    /// stats[0] = gradScale·Σ w·CE, stats[1] = Σ w·[argmax = label], stats[2] = Σ w (overwrite; zeros for
    /// 0 rows). gradScale is finite. logits and dLogits rows are <paramref name="stride"/> apart (0: C); columns
    /// [C, stride) of logits are never read, and those of dLogits are set to 0. <paramref name="gradScaleOnDevice"/>,
    /// when not Null, is an F32 element in device memory read in place of <paramref name="gradScale"/> when the op
    /// runs (a scale that changes from step to step, such as the MLM loss's 1/Σw, then leaves the queued work, and a
    /// captured CUDA graph, unchanged).</summary>
    void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default);

    /// <summary>The row stride a model gives the logits of a <paramref name="classes"/>-wide softmax head that it
    /// passes to <see cref="Linear"/>, <see cref="SoftmaxCrossEntropy"/> and <see cref="LinearBackward"/> (the MLM
    /// decoder): classes, or more where the backend runs that GEMM padded (the CUDA backend in bf16 with
    /// CudaBackendOptions.LogitsPadding: the vocabulary rounded up to a multiple of it, inside the GEMM only; the
    /// parameters keep their rows). The padding columns never count in the loss or a gradient.</summary>
    int LogitsStride(int classes)
    {
        OpChecks.LogitsStride(classes);
        return classes;
    }

    // ---- optimizer ----------------------------------------------------------------------------

    /// <summary>result[0] = Σ x² over input[count] (overwrite; 0 for count 0), accumulated in at least fp32 pairs.</summary>
    void SquaredNorm(TensorRef result, TensorRef input, long count);

    /// <summary>One AdamW step over a contiguous range of the flat buffers (all F32[count]).
    /// The clip scale min(1, maxNorm/(√normSquared[0] + 1e-6)) is computed on the device from
    /// <paramref name="normSquared"/> (Null: no clipping), so no host read is needed.
    /// g = grad·clip; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
    /// param −= lr·(m/(1−β1ᵗ) / (√(v/(1−β2ᵗ)) + ε) + weightDecay·param).</summary>
    void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared,
        long count, in AdamWStep step);

    /// <summary><see cref="AdamW"/> with the per-step scalars read on the device, so every step queues the same work
    /// (a CUDA graph can replay it). scalars: F32[<see cref="StepScalars.Length"/>] as <see cref="StepScalars"/> lays
    /// it out (learning rate, 1−β1ᵗ, 1−β2ᵗ). normSquared: F32[1], required: a non-finite value skips the update
    /// (param, m and v unchanged, as the host path never calls AdamW then); otherwise the clip scale
    /// min(1, maxNorm/(√normSquared[0] + 1e-6)) when MaxGradNorm &gt; 0 (0: no clipping). Bit-identical to
    /// <see cref="AdamW"/> with the same scalars on the same backend.</summary>
    void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants);
}

/// <summary>Scalars of one AdamW step. Step is 1-based (bias correction uses it).</summary>
public readonly record struct AdamWStep(float LearningRate, float Beta1, float Beta2, float Epsilon,
    float WeightDecay, int Step, float MaxGradNorm);
