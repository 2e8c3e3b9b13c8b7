// Rename to CudaVsCpuTests.cs once Bert.Runtime.Cpu.CpuBackend is merged (it is not on the cuda branch).
using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// Every CUDA op against the CPU backend (the project's oracle) on the same inputs, through the cases of
/// `bert check-kernels`: fp32 within max|a − b| ≤ 1e-5·max(1, max|b|) per output tensor, bf16 within 5e-2 (activations rounded to
/// 8 mantissa bits at every op boundary, fp32 accumulation). Ignored without a GPU.
/// </summary>
[TestFixture]
[Gpu]
[NonParallelizable]
public class CudaVsCpuTests
{
    private static CudaBackend Create(CudaBackendOptions options)
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, options)) Assert.Ignore(reason);
        return backend!;
    }

    [TestCase(DType.F32, KernelCheckSize.Small)]
    [TestCase(DType.BF16, KernelCheckSize.Small)]
    [TestCase(DType.F32, KernelCheckSize.Base)]
    public void EveryOpMatchesTheCpuBackend(DType computeType, KernelCheckSize size)
    {
        using var cuda = Create(new CudaBackendOptions { ComputeType = computeType, Profile = true });
        using var cpu = new CpuBackend();
        var results = KernelCheck.Run(cpu, cuda, new KernelCheckOptions { Size = size });
        TestContext.Progress.WriteLine($"{cuda.Name} {computeType} {size} vs {cpu.Name}");
        TestContext.Progress.Write(KernelCheck.Format(results));
        Assert.That(results.Where(r => !r.Passed).Select(r => $"{r.Op}/{r.Case}: {r.Error ?? r.MaxRelError.ToString("e2")} at {r.WorstOutput}"),
            Is.Empty);
    }

    [Test]
    public void CheckKernelsCommandPassesWithTheCpuReference()
    {
        if (!CudaDevice.IsAvailable(out var reason)) Assert.Ignore(reason);
        var output = new StringWriter();
        int code = Bert.Cli.Commands.CheckKernelsCommand.Run(() => new CpuBackend(), new CudaBackendOptions { Profile = true },
            new KernelCheckOptions(), output, TextWriter.Null);
        TestContext.Progress.Write(output.ToString());
        Assert.That(code, Is.EqualTo(Bert.Cli.ExitCodes.Ok));
    }
}
