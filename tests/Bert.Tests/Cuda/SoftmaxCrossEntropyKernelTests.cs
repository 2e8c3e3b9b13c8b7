using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// The fused softmax cross-entropy kernel (Kernels/loss.cu) on the CPU emulator against the CPU backend's
/// SoftmaxCrossEntropy, on the MLM head's bf16 path: bf16 logits turned into their bf16 gradient in place.
/// Both sides see the same bf16-representable logits, so the loss statistics agree to fp32 rounding and each
/// bf16 gradient element to its own rounding (2⁻⁹ relative, the tolerance below allows 2⁻⁸). Rows of weight
/// 0 (including labels outside [0, C), which the CUDA kernel ignores and the CPU rejects) get a zero
/// gradient even over non-finite logits; the vocabulary is not a multiple of the 8-element vectors or of the
/// 256-thread block; tensors start off a 16-byte boundary; a bf16 loss writes F32 gradients elsewhere.
/// </summary>
[TestFixture]
[NonParallelizable]
public class SoftmaxCrossEntropyKernelTests
{
    private static CudaBackend Emulated()
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return new CudaBackend(device!, new CudaBackendOptions { ComputeType = DType.BF16 });
    }

    private static CudaBackend Gpu(CudaBackendOptions? options = null)
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, options ?? new CudaBackendOptions { ComputeType = DType.BF16 }))
            Assert.Ignore(reason);
        return backend!;
    }

    // rows, classes, offset of the tensors in elements (0: 16-byte aligned), in place, dLogits type
    public static IEnumerable<TestCaseData> Cases()
    {
        yield return new TestCaseData(13, 99, 0, true, DType.BF16).SetName("Small vocabulary in place");
        yield return new TestCaseData(6, 30522, 0, true, DType.BF16).SetName("BERT vocabulary in place (rows start off 16-byte boundaries)");
        yield return new TestCaseData(7, 1003, 3, true, DType.BF16).SetName("Unaligned tensor in place");
        yield return new TestCaseData(7, 1003, 3, false, DType.F32).SetName("Bf16 logits, F32 gradient elsewhere");
        yield return new TestCaseData(9, 2, 0, true, DType.BF16).SetName("Two classes (NSP)");
        yield return new TestCaseData(1100, 9, 1, true, DType.BF16).SetName("More rows than blocks");
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesTheCpuBackend(int rows, int classes, int offset, bool inPlace, DType dLogitsType)
    {
        using var cuda = Emulated();
        Check(cuda, rows, classes, offset, inPlace, dLogitsType);
    }

    [Test, Gpu]
    public void MatchesTheCpuBackendOnTheGpu()
    {
        using var cuda = Gpu();
        foreach (var c in Cases())
            Check(cuda, (int)c.Arguments[0]!, (int)c.Arguments[1]!, (int)c.Arguments[2]!, (bool)c.Arguments[3]!, (DType)c.Arguments[4]!);
        Check(cuda, 5120, 30522, 0, true, DType.BF16);
    }

    /// <summary>The MLM head's loss at BERT-base pretraining size (B·P = 256·20 rows, V = 30522): bf16 logits
    /// in place against F32 logits in place (the layout before issue 12), from the profiler's CUDA events;
    /// prints ms and GB/s (two reads and one write of the logits) and asserts that bf16 is faster.</summary>
    [Test, Gpu]
    public void Bf16LogitsAreFasterThanF32OnTheGpu()
    {
        using var cuda = Gpu(new CudaBackendOptions { ComputeType = DType.BF16, Profile = true });
        const int rows = 5120, classes = 30522;
        var ms = new Dictionary<DType, double>();
        foreach (var type in new[] { DType.F32, DType.BF16 })
        {
            using var logits = cuda.Allocate((long)rows * classes, type, "logits");
            using var labels = cuda.Allocate(rows, DType.I32, "labels");
            using var stats = cuda.Allocate(3, DType.F32, "stats");
            cuda.Upload<int>(labels, Enumerable.Range(0, rows).Select(i => i * 7 % classes).ToArray());
            for (int r = 0; r <= 10; r++)
            {
                if (r == 1) cuda.CollectOpTimings();
                cuda.SoftmaxCrossEntropy(logits, stats, logits, labels, TensorRef.Null, rows, classes, 1f / rows);
            }
            var t = cuda.CollectOpTimings()["SoftmaxCrossEntropy"];
            ms[type] = t.TotalMilliseconds / t.Calls;
            double bytes = 3.0 * rows * classes * type.Size();
            TestContext.Progress.WriteLine($"{cuda.Name} SoftmaxCrossEntropy {rows}x{classes} {type}: {ms[type]:F3} ms, {bytes / ms[type] / 1e6:F0} GB/s");
        }
        Assert.That(ms[DType.BF16], Is.LessThan(ms[DType.F32]));
    }

    private static void Check(CudaBackend cuda, int rows, int classes, int offset, bool inPlace, DType dLogitsType)
    {
        var rng = new Random(rows * 31 + classes);
        var logits = new float[rows * classes];
        for (int i = 0; i < logits.Length; i++) logits[i] = BFloat16.Round((float)(rng.NextDouble() * 16 - 8));
        var labels = new int[rows];
        var gpuLabels = new int[rows];
        var weights = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            labels[r] = gpuLabels[r] = rng.Next(classes);
            weights[r] = (float)(0.5 + rng.NextDouble());
        }
        // Row 1: weight 0. Row 2: a label the kernel ignores (the CPU backend rejects it: weight 0 there).
        // Row 3: weight 0 over non-finite logits.
        weights[1 % rows] = 0f;
        if (rows > 3)
        {
            gpuLabels[2] = -100;
            weights[2] = 0f;
            weights[3] = 0f;
            for (int c = 0; c < classes; c++) logits[3 * classes + c] = c % 2 == 0 ? float.NaN : float.PositiveInfinity;
        }
        const float gradScale = 0.37f;

        using var cpu = new CpuBackend();
        var (wantD, wantStats) = Run(cpu, DType.F32, DType.F32, logits, labels, weights, rows, classes, 0, inPlace, gradScale);
        var (gotD, gotStats) = Run(cuda, DType.BF16, dLogitsType, logits, gpuLabels, weights, rows, classes, offset, inPlace, gradScale);

        Assert.That(gotStats[0], Is.EqualTo(wantStats[0]).Within(1e-5).Percent.Or.EqualTo(wantStats[0]).Within(1e-6), "loss");
        Assert.That(gotStats[1], Is.EqualTo(wantStats[1]).Within(1e-5).Percent, "correct");
        Assert.That(gotStats[2], Is.EqualTo(wantStats[2]).Within(1e-5).Percent, "weight");
        double relative = dLogitsType == DType.BF16 ? 1.0 / 256 : 2e-5;
        for (int r = 0; r < rows; r++)
        {
            float gw = gradScale * weights[r];
            for (int c = 0; c < classes; c++)
            {
                int i = r * classes + c;
                double tolerance = relative * Math.Abs(wantD[i]) + 1e-5 * gw;
                if (!(Math.Abs(gotD[i] - wantD[i]) <= tolerance))
                    Assert.Fail($"dLogits[{r}, {c}] = {gotD[i]}, the CPU backend gives {wantD[i]} (tolerance {tolerance:G3}; label {labels[r]}, weight {weights[r]})");
            }
        }
    }

    [Test]
    public void RowsThatAreAllIgnoredGiveZeroStatisticsAndGradients()
    {
        const int rows = 5, classes = 777;
        var logits = Enumerable.Range(0, rows * classes).Select(i => i % 7 == 0 ? float.NaN : i * 0.01f).ToArray();
        var labels = new[] { -1, 777, 3, -100, 5 };
        var weights = new[] { 1f, 1f, 0f, 1f, 0f };
        using var cuda = Emulated();
        var (d, stats) = Run(cuda, DType.BF16, DType.BF16, logits, labels, weights, rows, classes, 0, true, 1f);
        Assert.That(stats, Is.EqualTo(new[] { 0f, 0f, 0f }));
        Assert.That(d, Has.All.EqualTo(0f));
    }

    /// <summary>dLogits and stats of one call; logits placed <paramref name="offset"/> elements into their buffer
    /// (dLogits one element further when not in place, so the two tensors differ in alignment).</summary>
    private static (float[] DLogits, float[] Stats) Run(IBackend backend, DType logitsType, DType dLogitsType,
        float[] logits, int[] labels, float[] weights, int rows, int classes, int offset, bool inPlace, float gradScale)
    {
        long n = (long)rows * classes;
        using var lBuf = backend.Allocate(n + offset, logitsType, "logits");
        using var dBuf = backend.Allocate(n + offset + 1, dLogitsType, "dlogits");
        using var labelBuf = backend.Allocate(rows, DType.I32, "labels");
        using var weightBuf = backend.Allocate(rows, DType.F32, "weights");
        using var statsBuf = backend.Allocate(3, DType.F32, "stats");
        var l = lBuf.Slice(offset, n);
        var d = inPlace ? l : dBuf.Slice(offset + 1, n);
        backend.Upload<float>(l, logits);
        backend.Upload<int>(labelBuf, labels);
        backend.Upload<float>(weightBuf, weights);
        backend.Upload<float>(statsBuf, new float[] { 9, 9, 9 });
        backend.SoftmaxCrossEntropy(d, statsBuf, l, labelBuf, weightBuf, rows, classes, gradScale);
        var dl = new float[n];
        backend.Download<float>(dl, d);
        var stats = new float[3];
        backend.Download<float>(stats, statsBuf);
        return (dl, stats);
    }
}
