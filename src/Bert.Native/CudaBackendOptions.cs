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

    /// <summary>Issue 12, not yet measured on a GPU: in BF16 mode, pad the rows of a softmax head's logits (the MLM
    /// decoder's 30522-wide vocabulary) to a multiple of this many columns (<see cref="CudaBackend.LogitsStride"/>), so
    /// the vocabulary GEMM runs on aligned rows and whole tiles: its weight is a zero-padded copy inside the GEMM only
    /// (parameters, checkpoints and exports keep their rows) and the padding columns never count in the loss or the
    /// gradients. 0 (default): no padding; the CLI takes it from BERT_LOGITS_PADDING.</summary>
    public int LogitsPadding { get; init; }

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

    /// <summary>Environment variable that turns <see cref="UseCublasLt"/> on ("1") or off ("0").</summary>
    public const string CublasLtVariable = "BERT_CUBLASLT";

    /// <summary>Environment variable that sets <see cref="LogitsPadding"/> (a multiple of 8 up to 1024; 0 off).</summary>
    public const string LogitsPaddingVariable = "BERT_LOGITS_PADDING";

    /// <summary>These options with the GEMM settings the environment gives (issue 12's experiments, off until a GPU
    /// measures them): BERT_CUBLASLT=1 sets <see cref="UseCublasLt"/>, BERT_LOGITS_PADDING=64 <see cref="LogitsPadding"/>;
    /// unset or empty variables leave the options as they are. Throws <see cref="ArgumentException"/> naming the
    /// variable and its value when a value is not one of those.</summary>
    public CudaBackendOptions WithEnvironment(Func<string, string?>? getVariable = null)
    {
        getVariable ??= Environment.GetEnvironmentVariable;
        var options = this;
        var lt = getVariable(CublasLtVariable)?.Trim();
        if (!string.IsNullOrEmpty(lt))
        {
            options = lt switch
            {
                "1" => options with { UseCublasLt = true },
                "0" => options with { UseCublasLt = false },
                _ => throw new ArgumentException($"{CublasLtVariable}={lt}: expected 1 (cuBLASLt epilogues on) or 0 (off)"),
            };
        }
        var pad = getVariable(LogitsPaddingVariable)?.Trim();
        if (!string.IsNullOrEmpty(pad))
        {
            if (!int.TryParse(pad, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int columns)
                || columns > 1024 || columns % 8 != 0)
                throw new ArgumentException($"{LogitsPaddingVariable}={pad}: expected 0 (off) or a multiple of 8 up to 1024, such as 64");
            options = options with { LogitsPadding = columns };
        }
        return options;
    }

    /// <summary>The GEMM settings in one line for logs: "cublaslt on|off, logits padding N|off".</summary>
    public string DescribeGemmOptions() =>
        $"cublaslt {(UseCublasLt ? "on" : "off")}, logits padding {(LogitsPadding > 0 ? LogitsPadding.ToString(System.Globalization.CultureInfo.InvariantCulture) : "off")}";
}
