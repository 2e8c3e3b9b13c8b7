using Bert.Native;
using Bert.Runtime;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// LinearBackward's weight and bias gradients through cuBLASLt's BGRADB epilogue (UseCublasLt, bf16): against the
/// plain path (cuBLAS GEMM + column-sum kernels) on two emulators, the bias gradient accumulated (+=) through the
/// reduction scratch, the cases that must not take it, and the fallback when cuBLASLt refuses the shape. The same
/// comparison at BERT-base shapes on a GPU.
/// </summary>
[TestFixture]
[NonParallelizable]
public class LtBackwardTests
{
    private static (CudaBackend Cuda, EmulatedDevice Device) Emulated(bool useLt, DType type = DType.BF16)
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return (new CudaBackend(device!, new CudaBackendOptions { ComputeType = type, UseCublasLt = useLt }), device!);
    }

    private static float[] Rand(int seed, long n, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    /// <summary>Two LinearBackward calls (so the parameter gradients accumulate twice onto non-zero starts):
    /// dInput, dWeight, dBias.</summary>
    private static (float[] DInput, float[] DWeight, float[] DBias) Run(IBackend b, int rows, int inFeatures, int outFeatures, int offset = 0)
    {
        var type = b.ComputeType;
        using var dy = b.Allocate(rows * outFeatures + offset, type, "activations");
        using var x = b.Allocate(rows * inFeatures + offset, type, "activations");
        using var w = b.Allocate(outFeatures * inFeatures, DType.F32, "parameters");
        using var dx = b.Allocate(rows * inFeatures, type, "activations");
        using var grads = b.Allocate(outFeatures * inFeatures + outFeatures, DType.F32, "gradients");
        var dyView = dy.View.Slice(offset, rows * outFeatures);
        var xView = x.View.Slice(offset, rows * inFeatures);
        var dW = grads.View.Slice(0, outFeatures * inFeatures);
        var dB = grads.View.Slice(outFeatures * inFeatures, outFeatures);
        b.Upload<float>(dyView, Rand(1, rows * outFeatures, 0.5f));
        b.Upload<float>(xView, Rand(2, rows * inFeatures));
        b.Upload<float>(w, Rand(3, outFeatures * inFeatures, 0.3f));
        b.Upload<float>(dW, Rand(4, outFeatures * inFeatures));
        b.Upload<float>(dB, Rand(5, outFeatures));
        for (int i = 0; i < 2; i++) b.LinearBackward(dx, dW, dB, dyView, xView, w, rows, inFeatures, outFeatures, false);
        var result = (new float[rows * inFeatures], new float[outFeatures * inFeatures], new float[outFeatures]);
        b.Download<float>(result.Item1, dx);
        b.Download<float>(result.Item2, dW);
        b.Download<float>(result.Item3, dB);
        return result;
    }

    private static void AssertClose(float[] want, float[] got, double tolerance, string what)
    {
        double scale = Math.Max(1, want.Max(Math.Abs));
        double worst = want.Zip(got, (a, b) => Math.Abs(a - (double)b)).Max() / scale;
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance), what);
    }

    [TestCase(37, 24, 40, TestName = "Rows not a multiple of 8")]
    [TestCase(64, 32, 16, TestName = "Square-ish")]
    public void BgradbMatchesThePlainPathAndAccumulates(int rows, int inFeatures, int outFeatures)
    {
        var (lt, ltDevice) = Emulated(useLt: true);
        var (plain, _) = Emulated(useLt: false);
        using var _1 = lt;
        using var _2 = plain;
        var got = Run(lt, rows, inFeatures, outFeatures);
        var want = Run(plain, rows, inFeatures, outFeatures);

        Assert.That(ltDevice.LtLog.Count(c => c.Epilogue == LtEpilogue.BiasGradB), Is.EqualTo(2), "one BGRADB matmul per call");
        Assert.That(ltDevice.LtLog.Where(c => c.Epilogue == LtEpilogue.BiasGradB).Select(c => c.Beta), Is.All.EqualTo(1f));
        Assert.That(got.DInput, Is.EqualTo(want.DInput), "dInput takes the same cuBLAS GEMM");
        AssertClose(want.DWeight, got.DWeight, 1e-6, "dWeight");
        AssertClose(want.DBias, got.DBias, 1e-5, "dBias");

        // dBias = start + 2·Σ_n dy[n, o] over the bf16-rounded dy: the scratch was added, not copied, both times.
        var dy = Rand(1, rows * outFeatures, 0.5f).Select(Bf16).ToArray();
        var start = Rand(5, outFeatures);
        var expected = Enumerable.Range(0, outFeatures)
            .Select(o => (float)(start[o] + 2 * Enumerable.Range(0, rows).Sum(n => dy[n * outFeatures + o]))).ToArray();
        AssertClose(expected, got.DBias, 1e-5, "dBias against the host sum");
    }

    /// <summary>bf16 round-to-nearest-even, as the upload converts.</summary>
    private static double Bf16(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000;
        return BitConverter.UInt32BitsToSingle(bits);
    }

    [TestCase(DType.BF16, 37, 24, 36, 0, TestName = "O not a multiple of 8")]
    [TestCase(DType.BF16, 37, 20, 40, 0, TestName = "K not a multiple of 8")]
    [TestCase(DType.BF16, 37, 24, 40, 4, TestName = "Operands off a 16-byte boundary")]
    [TestCase(DType.F32, 37, 24, 40, 0, TestName = "F32 compute")]
    public void CasesBgradbDoesNotCoverTakeThePlainPath(DType type, int rows, int inFeatures, int outFeatures, int offset)
    {
        var (lt, ltDevice) = Emulated(useLt: true, type);
        var (plain, _) = Emulated(useLt: false, type);
        using var _1 = lt;
        using var _2 = plain;
        var got = Run(lt, rows, inFeatures, outFeatures, offset);
        var want = Run(plain, rows, inFeatures, outFeatures, offset);
        Assert.That(ltDevice.LtLog.Where(c => c.Epilogue == LtEpilogue.BiasGradB), Is.Empty);
        Assert.That(got, Is.EqualTo(want), "bit for bit: the same kernels and GEMMs ran");
    }

    [Test]
    public void ARefusedShapeFallsBackToCublas()
    {
        var (lt, ltDevice) = Emulated(useLt: true);
        var (plain, plainDevice) = Emulated(useLt: false);
        using var _1 = lt;
        using var _2 = plain;
        ltDevice.RefuseLt = c => c.Epilogue == LtEpilogue.BiasGradB;
        var got = Run(lt, 37, 24, 40);
        var want = Run(plain, 37, 24, 40);
        Assert.That(ltDevice.LtLog, Is.Empty);
        Assert.That(got, Is.EqualTo(want), "bit for bit: the refused call queued nothing and the cuBLAS path ran");
        Assert.That(ltDevice.Gemms, Has.Count.EqualTo(plainDevice.Gemms.Count));
    }

    /// <summary>On a GPU at BERT-base shapes (rows B·S = 4096; the FFN, the attention output and the MLM transform):
    /// the BGRADB path against the plain one. Ignored without a GPU.</summary>
    [Test, Gpu]
    public void BgradbMatchesThePlainPathOnTheGpu()
    {
        if (!CudaBackend.TryCreate(out var lt, out var reason, new CudaBackendOptions { ComputeType = DType.BF16, UseCublasLt = true }))
            Assert.Ignore(reason);
        using var _1 = lt!;
        if (!CudaBackend.TryCreate(out var plain, out reason, new CudaBackendOptions { ComputeType = DType.BF16 })) Assert.Ignore(reason);
        using var _2 = plain!;
        foreach (var (rows, k, o) in new[] { (4096, 768, 3072), (4096, 3072, 768), (4096, 768, 768), (5120, 768, 768), (37, 24, 40) })
        {
            var got = Run(lt!, rows, k, o);
            var want = Run(plain!, rows, k, o);
            // Both sum the same bf16 products in fp32, in different orders: a few ulps of the sums' scale.
            AssertClose(want.DWeight, got.DWeight, 1e-4, $"dWeight {rows}x{k}->{o}");
            AssertClose(want.DBias, got.DBias, 1e-4, $"dBias {rows}x{k}->{o}");
            Assert.That(got.DInput, Is.EqualTo(want.DInput), $"dInput {rows}x{k}->{o}");
            TestContext.Progress.WriteLine($"Lt backward {rows}x{k}->{o}: matches the plain path");
        }
    }
}
