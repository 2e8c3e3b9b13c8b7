using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;

namespace Bert.Cli;

/// <summary>Chooses the backend for --device: auto (the GPU when one is usable, else the CPU), cpu, cuda.</summary>
public static class Backends
{
    public static IBackend Create(string device, int threads)
    {
        switch (device)
        {
            case "cpu":
                return new CpuBackend(threads);
            case "cuda":
                if (CudaBackend.TryCreate(out var cuda, out string reason)) return cuda!;
                throw new UserException($"--device cuda: {reason}", ExitCodes.Device);
            case "auto":
                return CudaBackend.TryCreate(out var gpu, out _) ? gpu! : new CpuBackend(threads);
            default:
                throw new UserException($"--device {device}: choose auto, cpu or cuda");
        }
    }
}
