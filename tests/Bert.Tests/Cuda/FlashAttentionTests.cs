using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// The fused flash-attention forward (Kernels/flash_attention.cu) against the CPU backend's
/// AttentionForward on the same bf16-representable inputs: the context within bf16 rounding (normwise,
/// max|a − b| / max(1, max|b|)), the same dropout mask (a different mask shows as an O(1) error), padded
/// keys, a batch row with every key masked, sequence lengths that are not multiples of the 64-row tiles or
/// of 4 (Philox blocks), odd batch and head counts. The per-row logsumexp against an fp64 computation.
/// On the CPU emulator (tensor-core helpers as C++ models of the PTX fragment layouts), and on a GPU when
/// one is present.
/// </summary>
[TestFixture]
[NonParallelizable]
public class FlashAttentionTests
{
    /// <summary>Normwise tolerance of the bf16 context against the fp32 CPU backend: bf16 inputs are exact in
    /// both, the fused kernel rounds the probabilities and the context to bf16 (relative 2⁻⁹ each).</summary>
    private const double ContextTolerance = 1e-2;

    /// <summary>Tolerance of dq, dk, dv relative to each part's largest magnitude: the backward also rounds dS
    /// and dropout(P) to bf16 for the tensor-core products.</summary>
    private const double GradientTolerance = 2e-2;

    private static CudaBackend Emulated()
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return new CudaBackend(device!, new CudaBackendOptions { ComputeType = DType.BF16 });
    }

    private static CudaBackend Gpu()
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, new CudaBackendOptions { ComputeType = DType.BF16 }))
            Assert.Ignore(reason);
        if (backend!.Device.ComputeMajor < 8)
        {
            backend.Dispose();
            Assert.Ignore("the fused attention kernels need compute capability 8.0");
        }
        return backend;
    }

    public static IEnumerable<TestCaseData> Cases()
    {
        // batch, heads, seq, key lengths per batch row, dropout probability
        yield return new TestCaseData(2, 2, 64, new[] { 64, 41 }, 0f).SetName("S64_Padding_NoDropout");
        yield return new TestCaseData(2, 2, 64, new[] { 64, 41 }, 0.1f).SetName("S64_Padding_Dropout");
        yield return new TestCaseData(2, 2, 128, new[] { 100, 128 }, 0.1f).SetName("S128_Padding_Dropout");
        yield return new TestCaseData(3, 3, 77, new[] { 77, 0, 13 }, 0.25f).SetName("S77_OddShapes_AllMaskedRow_Dropout");
        // Four key tiles: both shared buffers of the forward are reused.
        yield return new TestCaseData(1, 2, 200, new[] { 171 }, 0.1f).SetName("S200_FourTiles_Dropout");
    }

    /// <summary>The longest supported sequence, forward only (the emulated backward takes about a minute there).</summary>
    public static IEnumerable<TestCaseData> ForwardCases() =>
        Cases().Append(new TestCaseData(1, 1, 512, new[] { 509 }, 0.1f).SetName("S512_Dropout"));

    [TestCaseSource(nameof(ForwardCases))]
    public void ForwardMatchesTheCpuBackendOnTheEmulator(int batch, int heads, int seq, int[] lengths, float dropP)
    {
        using var cuda = Emulated();
        Check(cuda, batch, heads, seq, lengths, dropP);
    }

    [TestCaseSource(nameof(Cases))]
    public void BackwardMatchesTheCpuBackendOnTheEmulator(int batch, int heads, int seq, int[] lengths, float dropP)
    {
        using var cuda = Emulated();
        Check(cuda, batch, heads, seq, lengths, dropP, backward: true);
    }

    [Test]
    [Gpu]
    public void ForwardAndBackwardMatchTheCpuBackendOnTheGpu([Values(64, 128, 200, 512)] int seq, [Values(0f, 0.1f)] float dropP)
    {
        using var cuda = Gpu();
        Check(cuda, 3, 5, seq, [seq, seq / 2 + 1, 0], dropP, backward: true);
    }

    [Test]
    [Gpu]
    public void RepeatsBitForBitOnTheGpu()
    {
        using var cuda = Gpu();
        var first = Check(cuda, 2, 12, 128, [128, 77], 0.1f, backward: true);
        var second = Check(cuda, 2, 12, 128, [128, 77], 0.1f, backward: true);
        Assert.That(second, Is.EqualTo(first));
    }

    /// <summary>CudaBackendOptions.FusedAttention: the IBackend attention ops take the fused kernels (probs then
    /// holds the logsumexp and the context) and still match the CPU backend, dContext F32 (staged) or BF16.</summary>
    [TestCase(DType.BF16)]
    [TestCase(DType.F32)]
    public void FusedAttentionOptionMatchesTheCpuBackend(DType gradType)
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        using var cuda = new CudaBackend(device!, new CudaBackendOptions { ComputeType = DType.BF16, FusedAttention = true });
        const int batch = 2, heads = 2, seq = 96, headDim = 64, hidden = heads * headDim, tokens = batch * seq;
        var rng = new Random(77);
        var qkv = Enumerable.Range(0, tokens * 3 * hidden).Select(_ => BFloat16.Round((float)(rng.NextDouble() * 4 - 2))).ToArray();
        var dContext = Enumerable.Range(0, tokens * hidden).Select(_ => BFloat16.Round((float)(rng.NextDouble() * 2 - 1))).ToArray();
        var mask = Enumerable.Range(0, tokens).Select(i => i % seq < (i < seq ? seq : 70) ? 1 : 0).ToArray();
        var dropout = new DropoutSpec(0.1f, 99, 4, 2);

        float[] Run(IBackend backend, DType act, DType grad, out float[] dQkv)
        {
            using var q = backend.Allocate(qkv.Length, act, "qkv");
            using var m = backend.Allocate(tokens, DType.I32, "mask");
            using var c = backend.Allocate(tokens * hidden, act, "ctx");
            using var p = backend.Allocate((long)batch * heads * seq * seq, act, "probs");
            using var w = backend.Allocate(backend.PlanAttention(batch, seq, heads, headDim).WorkspaceLength, act, "ws");
            using var dc = backend.Allocate(tokens * hidden, grad, "dctx");
            using var dq = backend.Allocate(qkv.Length, act, "dqkv");
            backend.Upload<float>(q, qkv);
            backend.Upload<int>(m, mask);
            backend.Upload<float>(dc, dContext);
            backend.AttentionForward(c, p, w, q, m, batch, seq, heads, headDim, dropout);
            backend.AttentionBackward(dq, w, dc, q, c, p, m, batch, seq, heads, headDim, dropout);
            var context = new float[tokens * hidden];
            backend.Download<float>(context, c);
            dQkv = new float[qkv.Length];
            backend.Download<float>(dQkv, dq);
            if (backend is CudaBackend gpu)
            {
                // The fused path ran: probs starts with the logsumexp the fused forward computes.
                using var lse = gpu.Allocate(batch * heads * seq, DType.F32, "lse");
                using var c2 = gpu.Allocate(tokens * hidden, DType.BF16, "ctx2");
                gpu.FlashAttentionForward(c2, lse, q, m, batch, seq, heads, headDim, dropout);
                var want = new float[batch * heads * seq];
                gpu.Download<float>(want, lse);
                var raw = new ushort[2 * want.Length];
                gpu.Download<ushort>(raw, p);
                var got = Enumerable.Range(0, want.Length).Select(i => BitConverter.UInt32BitsToSingle(raw[2 * i] | (uint)raw[2 * i + 1] << 16)).ToArray();
                Assert.That(got, Is.EqualTo(want), "probs holds the fused forward's logsumexp");
            }
            return context;
        }

        using var cpu = new CpuBackend();
        var expected = Run(cpu, DType.F32, DType.F32, out var expectedGrad);
        var actual = Run(cuda, DType.BF16, gradType, out var grad);
        double Rel(float[] a, float[] b, int from, int stride, int width)
        {
            double diff = 0, size = 0;
            for (int i = from; i < a.Length; i += stride)
                for (int c = 0; c < width; c++)
                {
                    diff = Math.Max(diff, Math.Abs(a[i + c] - b[i + c]));
                    size = Math.Max(size, Math.Abs(b[i + c]));
                }
            return diff / size;
        }
        Assert.That(Rel(actual, expected, 0, hidden, hidden), Is.LessThanOrEqualTo(ContextTolerance), "context");
        for (int part = 0; part < 3; part++)
            Assert.That(Rel(grad, expectedGrad, part * hidden, 3 * hidden, hidden), Is.LessThanOrEqualTo(GradientTolerance), $"part {part} of dQkv");
    }

    /// <summary>GPU times of the fused kernels against the unfused path (cuBLAS strided-batched GEMMs around
    /// the softmax kernels) at BERT-base attention shapes, forward and backward, from the profiler's CUDA
    /// events; prints ms per call and TFLOP/s, and asserts that the fused forward + backward is faster.</summary>
    [TestCase(256, 128)]
    [TestCase(32, 512)]
    [Gpu]
    public void FusedIsFasterThanUnfusedOnTheGpu(int batch, int seq)
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, new CudaBackendOptions { ComputeType = DType.BF16, Profile = true }))
            Assert.Ignore(reason);
        using var cuda = backend!;
        if (cuda.Device.ComputeMajor < 8) Assert.Ignore("the fused attention kernels need compute capability 8.0");
        var ms = Timings(cuda, batch, seq, 12, 10);
        Assert.That(ms["FlashAttentionForward"] + ms["FlashAttentionBackward"],
            Is.LessThan(ms["AttentionForward"] + ms["AttentionBackward"]));
    }

    [Test]
    public void TimingHarnessRunsOnTheEmulator()
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        using var cuda = new CudaBackend(device!, new CudaBackendOptions { ComputeType = DType.BF16, Profile = true });
        var ms = Timings(cuda, 1, 64, 2, 1);
        Assert.That(ms.Keys, Is.EquivalentTo(new[] { "AttentionForward", "AttentionBackward", "FlashAttentionForward", "FlashAttentionBackward" }));
        Assert.That(ms.Values, Has.All.GreaterThan(0));
    }

    /// <summary>Milliseconds per call of the unfused and fused forward and backward (dropout 0.1, some padding),
    /// after one warm-up round; prints them with TFLOP/s.</summary>
    private static Dictionary<string, double> Timings(CudaBackend cuda, int batch, int seq, int heads, int repeats)
    {
        const int headDim = 64;
        int hidden = heads * headDim, tokens = batch * seq;
        var rng = new Random(5);
        using var qkv = cuda.Allocate((long)tokens * 3 * hidden, DType.BF16, "qkv");
        using var mask = cuda.Allocate(tokens, DType.I32, "mask");
        using var ctx = cuda.Allocate((long)tokens * hidden, DType.BF16, "ctx");
        using var dCtx = cuda.Allocate((long)tokens * hidden, DType.BF16, "dctx");
        using var dQkv = cuda.Allocate((long)tokens * 3 * hidden, DType.BF16, "dqkv");
        using var lse = cuda.Allocate((long)batch * heads * seq, DType.F32, "lse");
        using var probs = cuda.Allocate((long)batch * heads * seq * seq, DType.BF16, "probs");
        using var ws = cuda.Allocate(cuda.PlanAttention(batch, seq, heads, headDim).WorkspaceLength, DType.BF16, "ws");
        cuda.Upload<float>(qkv, Enumerable.Range(0, tokens * 3 * hidden).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        cuda.Upload<float>(dCtx, Enumerable.Range(0, tokens * hidden).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        cuda.Upload<int>(mask, Enumerable.Range(0, tokens).Select(i => i % seq < seq - 7 * (i / seq % 3) ? 1 : 0).ToArray());
        var dropout = new DropoutSpec(0.1f, 42, 1, 0);
        for (int r = 0; r <= repeats; r++)
        {
            if (r == 1) cuda.CollectOpTimings();   // the first round warms up
            cuda.AttentionForward(ctx, probs, ws, qkv, mask, batch, seq, heads, headDim, dropout);
            cuda.AttentionBackward(dQkv, ws, dCtx, qkv, ctx, probs, mask, batch, seq, heads, headDim, dropout);
            cuda.FlashAttentionForward(ctx, lse, qkv, mask, batch, seq, heads, headDim, dropout);
            cuda.FlashAttentionBackward(dQkv, dCtx, ctx, lse, qkv, mask, batch, seq, heads, headDim, dropout);
        }
        var ms = cuda.CollectOpTimings().ToDictionary(kv => kv.Key, kv => kv.Value.TotalMilliseconds / kv.Value.Calls);
        double flopsForward = 4.0 * batch * heads * seq * seq * headDim;
        foreach (var (op, ratio) in new[] { ("AttentionForward", 1.0), ("AttentionBackward", 2.5), ("FlashAttentionForward", 1.0), ("FlashAttentionBackward", 2.5) })
            TestContext.Progress.WriteLine($"{cuda.Name} B{batch} NH{heads} S{seq}: {op} {ms[op]:F3} ms, {ratio * flopsForward / ms[op] / 1e9:F1} TFLOP/s");
        return ms;
    }

    // BERT-large: phase 1 (B 256, S 128) and phase 2 (B 32, S 512), 16 heads; and the grid's y/z limits.
    [TestCase(256, 128, 16)]
    [TestCase(32, 512, 16)]
    [TestCase(65535, 1, 2)]
    public void LaunchesWithinLimitsOnTheRecordingDevice(int batch, int seq, int heads)
    {
        var device = new RecordingDevice();
        using var cuda = new CudaBackend(device, new CudaBackendOptions { ComputeType = DType.BF16 });
        long tokens = (long)batch * seq, hidden = heads * 64L;
        using var qkv = cuda.Allocate(tokens * 3 * hidden, DType.BF16, "qkv");
        using var mask = cuda.Allocate(tokens, DType.I32, "mask");
        using var ctx = cuda.Allocate(tokens * hidden, DType.BF16, "ctx");
        using var dCtx = cuda.Allocate(tokens * hidden, DType.BF16, "dctx");
        using var dQkv = cuda.Allocate(tokens * 3 * hidden, DType.BF16, "dqkv");
        using var lse = cuda.Allocate(tokens * heads, DType.F32, "lse");
        var dropout = new DropoutSpec(0.1f, 1, 2, 3);
        int before = device.Launches;
        cuda.FlashAttentionForward(ctx, lse, qkv, mask, batch, seq, heads, 64, dropout);
        cuda.FlashAttentionBackward(dQkv, dCtx, ctx, lse, qkv, mask, batch, seq, heads, 64, dropout);
        Assert.That(device.Launches - before, Is.EqualTo(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => cuda.FlashAttentionForward(ctx, lse, qkv, mask, 65536, 1, 1, 64, dropout));
    }

    [Test]
    public void RejectsWhatTheKernelCannotDo()
    {
        using var cuda = Emulated();
        using var qkv = cuda.Allocate(2 * 3 * 128, DType.BF16, "qkv");
        using var ctx = cuda.Allocate(2 * 128, DType.BF16, "ctx");
        using var lse = cuda.Allocate(2, DType.F32, "lse");
        using var mask = cuda.Allocate(2, DType.I32, "mask");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            cuda.FlashAttentionForward(ctx, lse, qkv, mask, 1, 2, 1, 128, DropoutSpec.None))!;
        Assert.That(e.Message, Does.Contain("head dimension 64"));
        using var f32 = cuda.Allocate(2 * 3 * 64, DType.F32, "qkv32");
        var d = Assert.Throws<ArgumentException>(() =>
            cuda.FlashAttentionForward(ctx, lse, f32, mask, 1, 2, 1, 64, DropoutSpec.None))!;
        Assert.That(d.Message, Does.Contain("qkv has dtype F32, expected BF16"));
        var a = Assert.Throws<ArgumentException>(() =>
            cuda.FlashAttentionForward(ctx, lse, qkv.Slice(1, 2 * 3 * 64), mask, 1, 2, 1, 64, DropoutSpec.None))!;
        Assert.That(a.Message, Does.Contain("16-byte aligned"));
    }

    /// <summary>Runs the fused forward (and backward) and the CPU backend on the same inputs, asserts, and
    /// returns the fused results (context, then dQkv) for repeatability checks.</summary>
    private static float[] Check(CudaBackend cuda, int batch, int heads, int seq, int[] lengths, float dropP, bool backward = false)
    {
        const int headDim = 64;
        int hidden = heads * headDim, tokens = batch * seq;
        var rng = new Random(1000 * seq + 10 * batch + heads);
        // Amplitude 2: scores with a standard deviation near 1.3, so the softmax is neither flat nor one-hot.
        var qkv = new float[tokens * 3 * hidden];
        for (int i = 0; i < qkv.Length; i++) qkv[i] = BFloat16.Round((float)(rng.NextDouble() * 4 - 2));
        var mask = new int[tokens];
        for (int b = 0; b < batch; b++)
            for (int s = 0; s < seq; s++) mask[b * seq + s] = s < lengths[b] ? 1 : 0;
        var dropout = dropP > 0 ? new DropoutSpec(dropP, 0x1234_5678_9ABC_DEF0UL, 7, 3) : DropoutSpec.None;

        var dContext = new float[tokens * hidden];
        for (int i = 0; i < dContext.Length; i++) dContext[i] = BFloat16.Round((float)(rng.NextDouble() * 2 - 1));

        using var cpu = new CpuBackend();
        var expected = new float[tokens * hidden];
        var expectedGrad = new float[tokens * 3 * hidden];
        using (var cQkv = cpu.Allocate(qkv.Length, DType.F32, "qkv"))
        using (var cMask = cpu.Allocate(tokens, DType.I32, "mask"))
        using (var cCtx = cpu.Allocate(expected.Length, DType.F32, "ctx"))
        using (var cProbs = cpu.Allocate((long)batch * heads * seq * seq, DType.F32, "probs"))
        using (var cWs = cpu.Allocate(cpu.PlanAttention(batch, seq, heads, headDim).WorkspaceLength, DType.F32, "ws"))
        using (var cdCtx = cpu.Allocate(dContext.Length, DType.F32, "dctx"))
        using (var cdQkv = cpu.Allocate(qkv.Length, DType.F32, "dqkv"))
        {
            cpu.Upload<float>(cQkv, qkv);
            cpu.Upload<int>(cMask, mask);
            cpu.AttentionForward(cCtx, cProbs, cWs, cQkv, cMask, batch, seq, heads, headDim, dropout);
            cpu.Download<float>(expected, cCtx);
            if (backward)
            {
                cpu.Upload<float>(cdCtx, dContext);
                cpu.AttentionBackward(cdQkv, cWs, cdCtx, cQkv, cCtx, cProbs, cMask, batch, seq, heads, headDim, dropout);
                cpu.Download<float>(expectedGrad, cdQkv);
            }
        }

        var context = new float[tokens * hidden];
        var lse = new float[batch * heads * seq];
        var grad = new float[tokens * 3 * hidden];
        using (var gQkv = cuda.Allocate(qkv.Length, DType.BF16, "qkv"))
        using (var gMask = cuda.Allocate(tokens, DType.I32, "mask"))
        using (var gCtx = cuda.Allocate(context.Length, DType.BF16, "ctx"))
        using (var gLse = cuda.Allocate(lse.Length, DType.F32, "lse"))
        using (var gdCtx = cuda.Allocate(dContext.Length, DType.BF16, "dctx"))
        using (var gdQkv = cuda.Allocate(qkv.Length, DType.F32, "dqkv"))
        {
            cuda.Upload<float>(gQkv, qkv);
            cuda.Upload<int>(gMask, mask);
            cuda.FlashAttentionForward(gCtx, gLse, gQkv, gMask, batch, seq, heads, headDim, dropout);
            cuda.Download<float>(context, gCtx);
            cuda.Download<float>(lse, gLse);
            if (backward)
            {
                cuda.Upload<float>(gdCtx, dContext);
                cuda.Upload<float>(gdQkv, Enumerable.Repeat(float.NaN, grad.Length).ToArray());   // every element must be written
                cuda.FlashAttentionBackward(gdQkv, gdCtx, gCtx, gLse, gQkv, gMask, batch, seq, heads, headDim, dropout);
                cuda.Download<float>(grad, gdQkv);
            }
        }

        double worst = 0, scaleOf = 1;
        int worstAt = -1;
        for (int i = 0; i < expected.Length; i++) scaleOf = Math.Max(scaleOf, Math.Abs(expected[i]));
        for (int i = 0; i < expected.Length; i++)
        {
            double e = Math.Abs(context[i] - expected[i]);
            if (!(e <= worst)) { worst = e; worstAt = i; }
        }
        worst /= scaleOf;
        TestContext.Progress.WriteLine($"{cuda.Name} flash forward B{batch} NH{heads} S{seq} p{dropP}: context normwise error {worst:e2}");
        Assert.That(worst, Is.LessThanOrEqualTo(ContextTolerance),
            $"context differs from the CPU backend at element {worstAt} (token {worstAt / hidden}, column {worstAt % hidden}): " +
            $"{(worstAt >= 0 ? context[worstAt] : 0)} vs {(worstAt >= 0 ? expected[worstAt] : 0)}");

        // logsumexp per (b, h, row) in fp64 from the same bf16 inputs.
        double scale = 1.0 / Math.Sqrt(headDim), lseWorst = 0;
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < seq; i++)
                {
                    float got = lse[(b * heads + h) * seq + i];
                    if (lengths[b] == 0)
                    {
                        Assert.That(float.IsPositiveInfinity(got), $"lse of a row with every key masked is {got}, expected +inf");
                        continue;
                    }
                    var scores = new double[lengths[b]];
                    for (int j = 0; j < lengths[b]; j++)
                    {
                        double dot = 0;
                        for (int d = 0; d < headDim; d++)
                            dot += (double)qkv[(b * seq + i) * 3 * hidden + h * headDim + d] * qkv[(b * seq + j) * 3 * hidden + hidden + h * headDim + d];
                        scores[j] = dot * scale;
                    }
                    double max = scores.Max(), want = max + Math.Log(scores.Sum(x => Math.Exp(x - max)));
                    lseWorst = Math.Max(lseWorst, Math.Abs(got - want) / Math.Max(1, Math.Abs(want)));
                }
        Assert.That(lseWorst, Is.LessThanOrEqualTo(1e-4), "logsumexp against fp64");
        if (!backward) return context;

        // dq, dk, dv each against the CPU, relative to that part's largest magnitude (no floor of 1: the
        // gradients are small, and a floor would hide errors).
        string[] parts = ["dq", "dk", "dv"];
        for (int part = 0; part < 3; part++)
        {
            double diff = 0, size = 0;
            int at = -1;
            for (int row = 0; row < tokens; row++)
                for (int c = 0; c < hidden; c++)
                {
                    int i = row * 3 * hidden + part * hidden + c;
                    size = Math.Max(size, Math.Abs(expectedGrad[i]));
                    double e = Math.Abs(grad[i] - expectedGrad[i]);
                    if (!(e <= diff)) { diff = e; at = i; }
                }
            double rel = diff / Math.Max(size, 1e-30);
            TestContext.Progress.WriteLine($"{cuda.Name} flash backward {parts[part]}: relative error {rel:e2} (largest |grad| {size:e2})");
            Assert.That(rel, Is.LessThanOrEqualTo(GradientTolerance),
                $"{parts[part]} differs at token {at / (3 * hidden)}, column {at % hidden}: {(at >= 0 ? grad[at] : 0)} vs {(at >= 0 ? expectedGrad[at] : 0)}");
        }
        return [.. context, .. grad];
    }
}
