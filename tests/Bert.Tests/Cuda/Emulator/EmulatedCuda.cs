using Bert.Native;
using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Cuda.Emulator;

/// <summary>Backends for op fixtures: the real CUDA backend (ignored without a GPU) and the CUDA backend on
/// the CPU emulator (ignored without g++), so the abstract op fixtures can run the CUDA code in CI too.</summary>
public static class EmulatedCuda
{
    /// <summary>A CudaBackend on the CPU emulator; calls Assert.Ignore when the emulator cannot be built.
    /// Disposing the backend stops the emulator process.</summary>
    public static IBackend CreateBackend(DType computeType = DType.F32)
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return new CudaBackend(device!, new CudaBackendOptions { ComputeType = computeType });
    }

    /// <summary>A CudaBackend on the GPU; calls Assert.Ignore without one.</summary>
    public static IBackend CreateGpuBackend(DType computeType = DType.F32)
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, new CudaBackendOptions { ComputeType = computeType }))
            Assert.Ignore(reason);
        return backend!;
    }
}
