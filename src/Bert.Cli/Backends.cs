using System.CommandLine;
using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;

namespace Bert.Cli;

/// <summary>Chooses the backend for --device: auto (the GPU when one is usable, else the CPU), cpu, cuda;
/// and its precision for --precision: auto (bf16 on the GPU, fp32 on the CPU), f32, bf16 (GPU only).</summary>
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

    public static IBackend Create(string device, int threads, string precision = "auto")
    {
        ValidatePrecision(device, precision);
        var options = new CudaBackendOptions { ComputeType = precision == "f32" ? DType.F32 : DType.BF16 };
        switch (device)
        {
            case "cpu":
                return new CpuBackend(threads);
            case "cuda":
                if (CudaBackend.TryCreate(out var cuda, out string reason, options)) return cuda!;
                throw new UserException($"--device cuda: {reason}", ExitCodes.Device);
            case "auto":
                if (CudaBackend.TryCreate(out var gpu, out _, options)) return gpu!;
                if (precision == "bf16") throw new UserException("--precision bf16: no GPU is usable and the CPU backend computes in fp32");
                return new CpuBackend(threads);
            default:
                throw new UserException($"--device {device}: choose auto, cpu or cuda");
        }
    }
}
