using Bert.Runtime;

namespace Bert.Native;

/// <summary>Settings of a <see cref="CudaBackend"/>; every default is the one used when nothing is said.</summary>
public sealed record CudaBackendOptions
{
    /// <summary>Which GPU (driver ordinal). Default 0.</summary>
    public int DeviceOrdinal { get; init; }

    /// <summary>Element type of activations and GEMM inputs: F32 (default; the mode kernels are checked
    /// in) or BF16 (bf16 storage and GEMM inputs, fp32 accumulation; parameters, gradients and
    /// optimizer state stay F32).</summary>
    public DType ComputeType { get; init; } = DType.F32;

    /// <summary>How fp32 GEMMs run. Default <see cref="Fp32GemmMode.Default"/> (no TF32).</summary>
    public Fp32GemmMode Fp32Gemm { get; init; } = Fp32GemmMode.Default;

    /// <summary>Record CUDA events around every op for <see cref="CudaBackend.CollectOpTimings"/>. Default off.</summary>
    public bool Profile { get; init; }

    /// <summary>Synchronize after every kernel and GEMM so an asynchronous fault names its kernel (slow;
    /// also on with CUDA_LAUNCH_BLOCKING=1). Default off.</summary>
    public bool SynchronizeEachLaunch { get; init; }

    /// <summary>Run Linear layers with a bias (and GELU-tanh) through cuBLASLt epilogues instead of a bias
    /// broadcast + cuBLAS GEMM + activation kernel: fp32, and bf16 (issue 12; weight and bias from their bf16
    /// shadows; not yet measured on a GPU). Default off.</summary>
    public bool UseCublasLt { get; init; }

    /// <summary>Experimental (issue 12; not yet verified on a GPU): in BF16 mode, AttentionForward and
    /// AttentionBackward run the fused flash-attention kernels where they apply (head dimension 64, compute
    /// capability 8.0; see <see cref="CudaBackend.FusedAttentionUnavailable"/>). <see cref="CudaBackend.PlanAttention"/>
    /// then asks for the row logsumexp (F32 [B·NH·S]) instead of the probabilities [B,NH,S,S], so a model planned on
    /// this backend saves that much arena per layer, and probs must not be read as probabilities. Default off
    /// (the CLI's --fused-attention).</summary>
    public bool FusedAttention { get; init; }

    /// <summary>Pinned host staging for uploads, split in two halves that alternate. Default 16 MiB.</summary>
    public long StagingBytes { get; init; } = 16L << 20;

    /// <summary>BF16 elements of scratch for GEMM operands that arrive as F32 in a BF16 GEMM (converted in
    /// row chunks of at most this size). Default 16 Mi elements (32 MiB).</summary>
    public long ConversionScratchElements { get; init; } = 16L << 20;

    /// <summary>F32 elements of scratch for the partial sums of deterministic column reductions.
    /// Default 4 Mi elements (16 MiB).</summary>
    public long ReductionScratchElements { get; init; } = 4L << 20;

    /// <summary>Where compiled PTX is cached; null: <see cref="KernelCompiler.DefaultCacheDirectory"/>.</summary>
    public string? KernelCacheDirectory { get; init; }

    /// <summary>In BF16 mode, F32 allocations with one of these labels get a BF16 shadow copy that BF16
    /// GEMMs read as the weight operand; uploads, copies, zeroing and AdamW into them refresh it.
    /// Default: "parameters" (the label <see cref="BertModelBase"/> gives the flat parameter buffer).</summary>
    public IReadOnlyCollection<string> ShadowedLabels { get; init; } = ["parameters"];
}
