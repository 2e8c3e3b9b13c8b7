using Bert.Native;
using Bert.Runtime;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// On a real GPU (ignored without one): every op against the fp64 reference through KernelCheck in both
/// precisions, bit-for-bit repeatability of the reductions, and the device plumbing (pinned uploads,
/// profiling, memory info). The comparison with the CPU backend is CudaVsCpuTests.
/// </summary>
[TestFixture]
[Gpu]
[NonParallelizable]
public class CudaGpuTests
{
    private static CudaBackend Create(CudaBackendOptions? options = null)
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, options)) Assert.Ignore(reason);
        return backend!;
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    public void EveryOpMatchesTheReference(DType computeType)
    {
        using var cuda = Create(new CudaBackendOptions { ComputeType = computeType, Profile = true });
        using var reference = new ReferenceBackend();
        var results = KernelCheck.Run(reference, cuda, new KernelCheckOptions());
        TestContext.Progress.WriteLine($"{cuda.Name} {computeType}; {cuda.Description}");
        TestContext.Progress.Write(KernelCheck.Format(results));
        Assert.That(results.Where(r => !r.Passed).Select(r => $"{r.Op}/{r.Case}: {r.Error ?? r.MaxRelError.ToString("e2")} at {r.WorstOutput}"),
            Is.Empty);
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    public void CublasLtEpiloguesMatchTheReference(DType computeType)
    {
        using var cuda = Create(new CudaBackendOptions { ComputeType = computeType, UseCublasLt = true });
        using var reference = new ReferenceBackend();
        var results = KernelCheck.Run(reference, cuda, new KernelCheckOptions { Filter = "Linear/" });
        Assert.That(results, Is.Not.Empty);
        Assert.That(results.Where(r => !r.Passed).Select(r => $"{r.Op}/{r.Case}: {r.Error ?? r.MaxRelError.ToString("e2")}"), Is.Empty);
    }

    [Test]
    public void ReductionsRepeatBitForBit()
    {
        using var cuda = Create();
        const int rows = 1031, hidden = 96, vocab = 77;
        var r = new Random(5);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
        using var dOut = cuda.Allocate(rows * hidden, DType.F32, "dOut");
        using var x = cuda.Allocate(rows * hidden, DType.F32, "x");
        using var ids = cuda.Allocate(rows, DType.I32, "ids");
        cuda.Upload<float>(dOut, Rand(rows * hidden));
        cuda.Upload<float>(x, Rand(rows * hidden));
        cuda.Upload<int>(ids, Enumerable.Range(0, rows).Select(i => i * 7 % vocab).ToArray());

        float[] Run()
        {
            using var dW = cuda.Allocate(hidden * hidden, DType.F32, "dW");
            using var dB = cuda.Allocate(hidden, DType.F32, "dB");
            using var norm = cuda.Allocate(1, DType.F32, "norm");
            cuda.LinearBackward(TensorRef.Null, dW, dB, dOut, x, TensorRef.Null, rows, hidden, hidden, false);
            cuda.SquaredNorm(norm, dOut, rows * hidden);
            var result = new float[hidden * hidden + hidden + 1];
            cuda.Download<float>(result.AsSpan(0, hidden * hidden), dW);
            cuda.Download<float>(result.AsSpan(hidden * hidden, hidden), dB);
            cuda.Download<float>(result.AsSpan(hidden * hidden + hidden, 1), norm);
            return result;
        }

        var first = Run();
        var second = Run();
        Assert.That(second.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(first.Select(BitConverter.SingleToInt32Bits)));
    }

    [Test]
    public void DeviceReportsItselfAndItsMemory()
    {
        using var cuda = Create();
        Assert.That(cuda.Name, Does.StartWith("cuda:0 ("));
        Assert.That(cuda.Device.ComputeMajor, Is.GreaterThanOrEqualTo(7));
        var (free, total) = cuda.MemoryInfo();
        Assert.That(free, Is.InRange(1, total));
        Assert.That(CudaDevice.Enumerate(), Is.Not.Empty);
    }

    [Test]
    public void PinnedUploadsAndProfilingWork()
    {
        using var cuda = Create(new CudaBackendOptions { Profile = true });
        using var pinned = cuda.AllocatePinned<int>(1000);
        for (int i = 0; i < 1000; i++) pinned.Span[i] = i * 3;
        using var ids = cuda.Allocate(1000, DType.I32, "ids");
        cuda.UploadAsync(ids, pinned, 1000);
        pinned.WaitForTransfers();
        var back = new int[1000];
        cuda.Download<int>(back, ids);
        Assert.That(back, Is.EqualTo(Enumerable.Range(0, 1000).Select(i => i * 3).ToArray()));
        Assert.That(cuda.CollectOpTimings(), Does.ContainKey("UploadAsync"));
    }

    [Test]
    public void OutOfMemoryIsAClearException()
    {
        using var cuda = Create();
        var e = Assert.Throws<CudaOutOfMemoryException>(() => cuda.Allocate(cuda.Device.TotalMemory, DType.F32, "activations"));
        Assert.That(e!.Message, Does.Contain("activations").And.Contain("free"));
    }
}
