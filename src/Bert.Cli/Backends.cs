using System.CommandLine;
using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;

namespace Bert.Cli;

/// <summary>Chooses the backend for --device: auto (the GPU when one is usable, else the CPU), cpu, cuda;
/// its precision for --precision: auto (bf16 on the GPU, fp32 on the CPU), f32, bf16 (GPU only); and its
/// attention for --fused-attention: off (default), on, auto (the GPU's fused kernels where they apply).</summary>
public static class Backends
{
    /// <summary>The --precision option shared by the commands that train or time a model.</summary>
    public static Option<string> PrecisionOption()
    {
        var option = new Option<string>("--precision")
        {
            Description = "auto (bf16 with fp32 master weights on the GPU, fp32 on the CPU), f32 (TF32 off), or bf16 (GPU only)",
            DefaultValueFactory = _ => "auto",
        };
        // Checked by Create (and the commands' settings) rather than AcceptOnlyFromAmong, whose message does
        // not name the option.
        return option;
    }

    /// <summary>Rejects a --precision value, or bf16 with --device cpu, before any work starts.</summary>
    public static void ValidatePrecision(string device, string precision)
    {
        if (precision is not ("auto" or "f32" or "bf16"))
            throw new UserException($"--precision {precision}: choose auto, f32 or bf16");
        if (precision == "bf16" && device == "cpu")
            throw new UserException("--precision bf16: the CPU backend computes in fp32; use --device cuda or --precision f32");
    }

    /// <summary>The --fused-attention option shared by the commands that train or time a model.</summary>
    public static Option<string> FusedAttentionOption() => new("--fused-attention")
    {
        Description = "fused (flash-style) attention on the GPU, bf16 with head dimension 64 on compute capability 8.0+: " +
                      "off (experimental until verified on a GPU), on (an error where it cannot apply), or auto (where it applies)",
        DefaultValueFactory = _ => "off",
    };

    /// <summary>Rejects a --fused-attention value, or 'on' with --device cpu or --precision f32, before any work starts.</summary>
    public static void ValidateFusedAttention(string device, string precision, string fusedAttention)
    {
        if (fusedAttention is not ("off" or "on" or "auto"))
            throw new UserException($"--fused-attention {fusedAttention}: choose off, on or auto");
        if (fusedAttention != "on") return;
        if (device == "cpu")
            throw new UserException("--fused-attention on: the CPU backend has no fused attention; use --device cuda, or --fused-attention off");
        if (precision == "f32")
            throw new UserException("--fused-attention on: the fused kernels are bf16; use --precision bf16 (or auto), or --fused-attention off");
    }

    /// <summary>The --cuda-graphs option shared by the commands that train or time a model.</summary>
    public static Option<string> CudaGraphsOption() => new("--cuda-graphs")
    {
        Description = "run the training step as replayed CUDA graphs: off, on (an error if the step cannot be captured) or auto " +
                      "(on for the CUDA backend in one process, else op by op after one line saying why)",
        DefaultValueFactory = _ => "off",
    };

    /// <summary>Parses --cuda-graphs; 'on' with --device cpu is refused before any work starts.</summary>
    public static CudaGraphMode ParseCudaGraphs(string value, string device = "auto")
    {
        var mode = value switch
        {
            "off" => CudaGraphMode.Off,
            "on" => CudaGraphMode.On,
            "auto" => CudaGraphMode.Auto,
            _ => throw new UserException($"--cuda-graphs {value}: choose off, on or auto"),
        };
        if (mode == CudaGraphMode.On && device == "cpu")
            throw new UserException("--cuda-graphs on: CUDA graphs need the CUDA backend; use --device cuda, or --cuda-graphs off");
        return mode;
    }

    /// <param name="device">--device.</param>
    /// <param name="threads">CPU threads (0: all cores).</param>
    /// <param name="precision">--precision.</param>
    /// <param name="fusedAttention">--fused-attention: off, on (fails unless it applies to this GPU and
    /// <paramref name="headDim"/>) or auto.</param>
    /// <param name="headDim">The model's head dimension (hidden / heads); read only with fusedAttention on.</param>
    /// <param name="deviceOrdinal">The GPU to use (a data-parallel rank's, <see cref="DistributedRun.DeviceOrdinal"/>).</param>
    public static IBackend Create(string device, int threads, string precision = "auto", string fusedAttention = "off", int headDim = 0,
        int deviceOrdinal = 0)
    {
        ValidatePrecision(device, precision);
        ValidateFusedAttention(device, precision, fusedAttention);
        var options = new CudaBackendOptions
        {
            ComputeType = precision == "f32" ? DType.F32 : DType.BF16,
            FusedAttention = fusedAttention != "off",
            DeviceOrdinal = deviceOrdinal,
        };
        if (device != "cpu")
        {
            try
            {
                // Issue 12's GEMM experiments (BERT_CUBLASLT, BERT_LOGITS_PADDING): off unless the environment says.
                options = options.WithEnvironment();
            }
            catch (ArgumentException e)
            {
                throw new UserException(e.Message);
            }
        }
        IBackend backend;
        switch (device)
        {
            case "cpu":
                return new CpuBackend(threads);
            case "cuda":
                if (!CudaBackend.TryCreate(out var cuda, out string reason, options))
                    throw new UserException($"--device cuda: {reason}", ExitCodes.Device);
                backend = cuda!;
                break;
            case "auto":
                if (CudaBackend.TryCreate(out var gpu, out _, options))
                {
                    backend = gpu!;
                    break;
                }
                if (precision == "bf16") throw new UserException("--precision bf16: no GPU is usable and the CPU backend computes in fp32");
                if (fusedAttention == "on")
                    throw new UserException("--fused-attention on: no GPU is usable and the CPU backend has no fused attention", ExitCodes.Device);
                return new CpuBackend(threads);
            default:
                throw new UserException($"--device {device}: choose auto, cpu or cuda");
        }
        if (fusedAttention == "on" && ((CudaBackend)backend).FusedAttentionUnavailable(headDim) is { } why)
        {
            backend.Dispose();
            throw new UserException($"--fused-attention on: cannot apply: {why}; use --fused-attention auto or off");
        }
        return backend;
    }

    /// <summary>"fused" or "unfused": how <paramref name="backend"/> runs attention for a model's sizes (the --fused-attention
    /// setting as it applies), for the run's log.</summary>
    public static string AttentionKind(IBackend backend, int batch, int seq, BertConfig config) =>
        backend.PlanAttention(batch, seq, config.Heads, config.HeadDim).Fused ? "fused" : "unfused";
}
