using Bert.Native;
using Bert.Runtime;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>CudaBackend behaviour beyond op math, on the CPU emulator: dropout masks bit for bit, the bf16
/// weight shadow, memory errors, uploads and downloads, profiling, and the emulator's own safety net.</summary>
[TestFixture]
[NonParallelizable]
public class EmulatedBehaviourTests
{
    private static EmulatedDevice Start()
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return device!;
    }

    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    [Test]
    public void DropoutMasksMatchThePhiloxOfBertRuntimeBitForBit()
    {
        using var cuda = new CudaBackend(Start(), new CudaBackendOptions());
        const int n = 20_011;
        var spec = new DropoutSpec(0.25f, 0xDEADBEEF_12345678UL, 77, 5);
        using var x = cuda.Allocate(n, DType.F32, "x");
        cuda.Upload<float>(x, Enumerable.Repeat(1f, n).ToArray());
        cuda.Dropout(x, x, n, spec);
        var y = new float[n];
        cuda.Download<float>(y, x);
        int kept = 0;
        for (int i = 0; i < n; i++)
        {
            float expected = spec.Keep(i) ? spec.Scale : 0f;
            Assert.That(y[i], Is.EqualTo(expected), $"element {i}");
            if (y[i] != 0) kept++;
        }
        Assert.That(kept / (double)n, Is.EqualTo(0.75).Within(0.02));
    }

    [Test]
    public void Bf16GemmsReadAShadowThatFollowsEveryWriteToTheParameters()
    {
        using var cuda = new CudaBackend(Start(), new CudaBackendOptions { ComputeType = DType.BF16 });
        const int n = 5, k = 8, o = 3;
        using var parameters = cuda.Allocate(o * k + 4, DType.F32, "parameters");
        var w = parameters.Slice(4, o * k);
        using var input = cuda.Allocate(n * k, DType.BF16, "activations");
        using var output = cuda.Allocate(n * o, DType.F32, "logits");
        var x = Random(n * k, 1).Select(BFloat16.Round).ToArray();
        cuda.Upload<float>(input, x);

        float[] Forward()
        {
            cuda.Linear(output, TensorRef.Null, input, w, TensorRef.Null, n, k, o, Activation.None);
            var y = new float[n * o];
            cuda.Download<float>(y, output);
            return y;
        }

        float[] Expected(float[] weights) =>
            Enumerable.Range(0, n * o).Select(i =>
                (float)Enumerable.Range(0, k).Sum(j => (double)x[i / o * k + j] * BFloat16.Round(weights[i % o * k + j]))).ToArray();

        var w1 = Random(o * k, 2);
        cuda.Upload<float>(w, w1);
        Assert.That(Forward(), Is.EqualTo(Expected(w1)).Within(1e-5), "after Upload");

        using var g = cuda.Allocate(o * k, DType.F32, "gradients");
        using var m = cuda.Allocate(o * k, DType.F32, "m");
        using var v = cuda.Allocate(o * k, DType.F32, "v");
        cuda.Upload<float>(g, Random(o * k, 3));
        cuda.AdamW(w, g, m, v, TensorRef.Null, o * k, new AdamWStep(0.1f, 0.9f, 0.999f, 1e-8f, 0f, 1, 1f));
        var w2 = new float[o * k];
        cuda.Download<float>(w2, w);
        Assert.That(w2, Is.Not.EqualTo(w1));
        Assert.That(Forward(), Is.EqualTo(Expected(w2)).Within(1e-5), "after AdamW");

        using var other = cuda.Allocate(o * k, DType.F32, "staging");
        var w3 = Random(o * k, 4);
        cuda.Upload<float>(other, w3);
        cuda.Copy(w, other);
        Assert.That(Forward(), Is.EqualTo(Expected(w3)).Within(1e-5), "after Copy");

        cuda.Zero(parameters);
        Assert.That(Forward(), Is.All.EqualTo(0f), "after Zero");
    }

    [Test]
    public void OutOfMemoryStatesRequestedFreeAndTotal()
    {
        using var cuda = new CudaBackend(Start(), new CudaBackendOptions());
        var e = Assert.Throws<CudaOutOfMemoryException>(() => cuda.Allocate(1L << 32, DType.F32, "activations"));
        Assert.That(e!.RequestedBytes, Is.EqualTo(16L << 30));
        Assert.That(e.TotalBytes, Is.EqualTo(cuda.Device.TotalMemory));
        Assert.That(e.FreeBytes, Is.LessThan(e.TotalBytes));
        Assert.That(e.Message, Does.Contain("activations").And.Contain("16.00 GiB").And.Contain("smaller micro-batch").And.Contain("bf16"));
    }

    [Test]
    public void UploadsAndDownloadsConvertAndCheck()
    {
        using var cuda = new CudaBackend(Start(), new CudaBackendOptions());
        using var b = cuda.Allocate(10, DType.BF16, "x");
        var x = new[] { 1f, -2.5f, 3.14159f, 1e-3f, 65504f, -0f, 0.1f, 7f };
        cuda.Upload<float>(b.Slice(0, 8), x);
        var back = new float[8];
        cuda.Download<float>(back, b);
        Assert.That(back, Is.EqualTo(x.Select(BFloat16.Round).ToArray()), "prefix download of a BF16 tensor as floats");
        var bits = new ushort[8];
        cuda.Download<ushort>(bits, b);
        Assert.That(bits, Is.EqualTo(x.Select(BFloat16.FromFloat).ToArray()), "raw bf16 bits");

        using var ints = cuda.Allocate(4, DType.I32, "ids");
        Assert.Throws<ArgumentException>(() => cuda.Upload<float>(ints, new float[4]), "floats into an I32 tensor");
        Assert.Throws<ArgumentException>(() => cuda.Upload<int>(ints, new int[5]), "more elements than the tensor");
        cuda.Upload<int>(ints, [4, 5, 6, 7]);
        var ids = new int[4];
        cuda.Download<int>(ids, ints);
        Assert.That(ids, Is.EqualTo(new[] { 4, 5, 6, 7 }));
    }

    [Test]
    public void PinnedUploadsGoStraightToTheDevice()
    {
        using var cuda = new CudaBackend(Start(), new CudaBackendOptions());
        using var pinned = cuda.AllocatePinned<int>(6);
        new[] { 3, 1, 4, 1, 5, 9 }.CopyTo(pinned.Span);
        using var ids = cuda.Allocate(8, DType.I32, "ids");
        cuda.UploadAsync(ids, pinned, 6);
        pinned.WaitForTransfers();
        var back = new int[8];
        cuda.Download<int>(back, ids);
        Assert.That(back, Is.EqualTo(new[] { 3, 1, 4, 1, 5, 9, 0, 0 }));
    }

    [Test]
    public void ProfilingAttributesTimeToOps()
    {
        using var cuda = new CudaBackend(Start(), new CudaBackendOptions { Profile = true });
        using var x = cuda.Allocate(1000, DType.F32, "x");
        using var r = cuda.Allocate(1, DType.F32, "r");
        cuda.SquaredNorm(r, x, 1000);
        cuda.SquaredNorm(r, x, 1000);
        cuda.Dropout(x, x, 1000, new DropoutSpec(0.5f, 1, 1, 1));
        var timings = cuda.CollectOpTimings();
        Assert.That(timings["SquaredNorm"].Calls, Is.EqualTo(2));
        Assert.That(timings["Dropout"].Calls, Is.EqualTo(1));
        Assert.That(timings.Values.All(t => t.TotalMilliseconds >= 0));
        Assert.That(cuda.CollectOpTimings().ContainsKey("SquaredNorm"), Is.False, "collecting resets");
    }

    [Test]
    public void OpsRejectBadArgumentsWithTheirNames()
    {
        using var cuda = new CudaBackend(Start(), new CudaBackendOptions());
        using var x = cuda.Allocate(10, DType.F32, "x");
        using var ids = cuda.Allocate(10, DType.I32, "ids");
        var e = Assert.Throws<ArgumentException>(() => cuda.LayerNorm(x, x, x, x, x, x, rows: 2, hidden: 8, eps: 1e-5f));
        Assert.That(e!.Message, Does.Contain("LayerNorm").And.Contain("output").And.Contain("16"));
        e = Assert.Throws<ArgumentException>(() => cuda.Dropout(ids, ids, 10, DropoutSpec.None));
        Assert.That(e!.Message, Does.Contain("Dropout").And.Contain("I32"));
        e = Assert.Throws<ArgumentException>(() =>
            cuda.ResidualLayerNormBackward(x, x, TensorRef.Null, TensorRef.Null, x, x, x, x, x, 1, 2, DropoutSpec.None));
        Assert.That(e!.Message, Does.Contain("may not alias"));
    }

    [Test]
    public void TheEmulatorCatchesOutOfBoundsAccessesInKernels()
    {
        // Launch below the backend's checks, straight at the device, with a count past the allocation.
        using var device = Start();
        ulong a = device.Allocate(64 * 4, "a");
        ulong b = device.Allocate(64 * 4, "b");
        KernelArg[] args =
        [
            KernelArg.Ptr("out", a), KernelArg.I32("outType", 0), KernelArg.Ptr("in", b), KernelArg.I32("inType", 0),
            KernelArg.I64("count", 65),
        ];
        var e = Assert.Throws<InvalidOperationException>(() => device.Launch(KernelCatalog.ConvertDtype, new Dim3(1), new Dim3(64), args));
        Assert.That(e!.Message, Does.Contain("heap-buffer-overflow").And.Contain("convert_dtype"));
    }

    [Test]
    public void TheEmulatorRejectsPointersOutsideAllocations()
    {
        using var device = Start();
        ulong a = device.Allocate(64, "a");
        KernelArg[] args =
        [
            KernelArg.Ptr("out", a), KernelArg.I32("outType", 0), KernelArg.Ptr("in", 0x1234), KernelArg.I32("inType", 0),
            KernelArg.I64("count", 1),
        ];
        var e = Assert.Throws<InvalidOperationException>(() => device.Launch(KernelCatalog.ConvertDtype, new Dim3(1), new Dim3(32), args));
        Assert.That(e!.Message, Does.Contain("argument 2 points outside every allocation"));
    }
}
