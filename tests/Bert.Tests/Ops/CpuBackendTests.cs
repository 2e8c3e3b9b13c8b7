using System.Numerics;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>What is specific to the CPU backend: erf, the two GEMMs, reproducibility, the vectorized
/// Philox path, the worker pool, and the host-side validation of indices.</summary>
public unsafe class CpuBackendTests
{
    // ---- erf ------------------------------------------------------------------------------------

    [Test]
    public void Erf_MaxAbsoluteErrorBelow1e7()
    {
        double worst = 0, at = 0;
        for (double x = -6; x <= 6; x += 1.0 / 4096)
        {
            float xf = (float)x;
            double e = Math.Abs(CpuMath.Erf(xf) - Reference.Erf(xf));
            if (e > worst)
            {
                worst = e;
                at = xf;
            }
        }
        var rng = new Random(100);
        for (int i = 0; i < 200_000; i++)
        {
            float xf = (float)(rng.NextDouble() * 8 - 4);
            double e = Math.Abs(CpuMath.Erf(xf) - Reference.Erf(xf));
            if (e > worst)
            {
                worst = e;
                at = xf;
            }
        }
        TestContext.Out.WriteLine($"erf: max abs error {worst:g3} at {at}");
        Assert.That(worst, Is.LessThan(1e-7), $"worst at x = {at}");
    }

    [Test]
    public void Erf_KnownValuesAndSymmetry()
    {
        // erf(0.5), erf(1), erf(2) to 10 digits (Abramowitz & Stegun table 7.1).
        Assert.That(CpuMath.Erf(0.5f), Is.EqualTo(0.5204998778).Within(1e-7));
        Assert.That(CpuMath.Erf(1f), Is.EqualTo(0.8427007929).Within(1e-7));
        Assert.That(CpuMath.Erf(2f), Is.EqualTo(0.9953222650).Within(1e-7));
        Assert.That(CpuMath.Erf(0f), Is.EqualTo(0f));
        Assert.That(CpuMath.Erf(10f), Is.EqualTo(1f));
        Assert.That(CpuMath.Erf(-10f), Is.EqualTo(-1f));
        Assert.That(float.IsNaN(CpuMath.Erf(float.NaN)), Is.True);
        for (float x = 0.01f; x < 5; x += 0.37f) Assert.That(CpuMath.Erf(-x), Is.EqualTo(-CpuMath.Erf(x)));
        // The reference itself, against the same table; erfc(3) = 2.209049699858544e-5 (A&S 7.1.26 table).
        Assert.That(Reference.Erf(1), Is.EqualTo(0.8427007929497149).Within(1e-15));
        Assert.That(Reference.Erfc(3), Is.EqualTo(2.209049699858544e-5).Within(1e-18));
        Assert.That(Reference.Erfc(1.5), Is.EqualTo(1 - Reference.Erf(1.5)));
    }

    [Test]
    public void OnePlusErf_IsAccurateInTheNegativeTail()
    {
        // GELU uses 1 + erf(x/√2) for x ≪ 0, where adding 1 to erf ≈ −1 would lose every digit.
        double worst = 0;
        for (double x = -6; x < 0; x += 1.0 / 512)
        {
            float xf = (float)x;
            double expected = Reference.Erfc(-xf);
            double actual = CpuMath.OnePlusErf(new Vector<float>(xf))[0];
            worst = Math.Max(worst, Math.Abs(actual - expected) / expected);
        }
        TestContext.Out.WriteLine($"1 + erf: max relative error {worst:g3} on [−6, 0)");
        Assert.That(worst, Is.LessThan(2e-5));
    }

    [Test]
    public void Exp_RelativeErrorBelow3e7_AndExactSpecialValues()
    {
        double worst = 0, at = 0;
        for (double x = -87.3; x <= 88.7; x += 1.0 / 1024)
        {
            float xf = (float)x;
            double expected = Math.Exp(xf);
            double e = Math.Abs(CpuMath.Exp(xf) - expected) / expected;
            if (e > worst)
            {
                worst = e;
                at = xf;
            }
        }
        TestContext.Out.WriteLine($"exp: max relative error {worst:g3} at {at}");
        Assert.That(worst, Is.LessThan(3e-7), $"worst at x = {at}");
        Assert.That(CpuMath.Exp(0f), Is.EqualTo(1f));
        Assert.That(CpuMath.Exp(float.NegativeInfinity), Is.EqualTo(0f), "masked softmax entries must be exactly 0");
        Assert.That(CpuMath.Exp(-1000f), Is.EqualTo(0f));
        Assert.That(CpuMath.Exp(float.PositiveInfinity), Is.EqualTo(float.PositiveInfinity));
        Assert.That(CpuMath.Exp(89f), Is.EqualTo(float.PositiveInfinity));
        Assert.That(float.IsNaN(CpuMath.Exp(float.NaN)), Is.True);
    }

    // ---- GEMM -----------------------------------------------------------------------------------

    private static float[] RandomMatrix(int n, int seed)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    private static float[] RunGemm(CpuBackend backend, bool transA, bool transB, int m, int n, int k, float alpha, float beta, float[] c0)
    {
        int lda = transA ? m + 3 : k + 2, ldb = transB ? k + 1 : n + 5, ldc = n + 4;
        var a = RandomMatrix((transA ? k : m) * lda, 1);
        var b = RandomMatrix((transB ? n : k) * ldb, 2);
        var c = (float[])c0.Clone();
        fixed (float* pa = a, pb = b, pc = c)
            backend.Sgemm(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
        return c;
    }

    private static double[] ReferenceGemm(bool transA, bool transB, int m, int n, int k, float alpha, float beta, float[] c0)
    {
        int lda = transA ? m + 3 : k + 2, ldb = transB ? k + 1 : n + 5, ldc = n + 4;
        return Reference.Gemm(transA, transB, m, n, k, alpha, RandomMatrix((transA ? k : m) * lda, 1), lda,
            RandomMatrix((transB ? n : k) * ldb, 2), ldb, beta, c0, ldc);
    }

    [TestCase(false, false)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    [TestCase(true, true)]
    public void ManagedGemm_MatchesOpenBlasAndReference_OnOddSizes(bool transA, bool transB)
    {
        const int m = 67, n = 45, k = 131;
        var c0 = RandomMatrix(m * (n + 4), 3);
        var expected = ReferenceGemm(transA, transB, m, n, k, 0.75f, 0.5f, c0);
        using var managed = new CpuBackend(2, CpuGemmKind.Managed);
        var ours = RunGemm(managed, transA, transB, m, n, k, 0.75f, 0.5f, c0);
        AssertNear(ours, expected, 1e-5, "managed vs fp64");
        if (!CpuBackend.OpenBlasAvailable) Assert.Ignore("OpenBLAS is not installed: the managed GEMM was checked against fp64 only");
        using var blas = new CpuBackend(2, CpuGemmKind.OpenBlas);
        var theirs = RunGemm(blas, transA, transB, m, n, k, 0.75f, 0.5f, c0);
        AssertNear(ours, Reference.ToDouble(theirs), 1e-5, "managed vs OpenBLAS");
    }

    [TestCase(600, 300, 700)]
    [TestCase(1, 1, 1)]
    [TestCase(5, 1100, 3)]
    [TestCase(200, 7, 0)]
    public void ManagedGemm_LargeAndDegenerateShapes(int m, int n, int k)
    {
        var c0 = RandomMatrix(m * (n + 4), 4);
        var expected = ReferenceGemm(false, true, m, n, k, 1f, 1f, c0);
        using var managed = new CpuBackend(3, CpuGemmKind.Managed);
        AssertNear(RunGemm(managed, false, true, m, n, k, 1f, 1f, c0), expected, 1e-5, "managed vs fp64");
    }

    [Test]
    public void ManagedGemm_BetaZeroNeverReadsC()
    {
        var c0 = new float[20 * 24];
        Array.Fill(c0, float.NaN);
        using var managed = new CpuBackend(2, CpuGemmKind.Managed);
        var c = RunGemm(managed, false, false, 20, 20, 9, 1f, 0f, c0);
        for (int i = 0; i < 20; i++)
        for (int j = 0; j < 20; j++)
            Assert.That(float.IsFinite(c[i * 24 + j]), Is.True, $"C[{i},{j}]");
    }

    [Test]
    public void ManagedGemm_IsBitwiseIdenticalForAnyThreadCount()
    {
        var c0 = RandomMatrix(300 * 504, 5);
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3, 5 })
        {
            using var backend = new CpuBackend(threads, CpuGemmKind.Managed);
            var c = RunGemm(backend, true, false, 300, 500, 257, 1f, 1f, c0);
            if (first is null) first = c;
            else Assert.That(c, Is.EqualTo(first), $"{threads} threads");
        }
    }

    private static void AssertNear(float[] actual, double[] expected, double tolerance, string what)
    {
        double scale = expected.Max(Math.Abs), worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        Assert.That(worst / scale, Is.LessThanOrEqualTo(tolerance), what);
    }

    // ---- reproducibility --------------------------------------------------------------------------

    /// <summary>Runs a forward and backward of every op family at sizes that span many chunks and
    /// returns every output.</summary>
    private static List<float[]> RunEverything(CpuBackend be)
    {
        const int b = 4, s = 37, nh = 3, hd = 16, h = nh * hd, inter = 101, vocab = 1000, rows = b * s, classes = 3001;
        var rng = new Random(7);
        var outputs = new List<float[]>();
        var buffers = new List<DeviceBuffer>();
        TensorRef F(float[] data)
        {
            var buffer = be.Allocate(data.Length, DType.F32, "t");
            buffers.Add(buffer);
            be.Upload<float>(buffer, data);
            return buffer;
        }
        TensorRef Ints(int[] data)
        {
            var buffer = be.Allocate(data.Length, DType.I32, "t");
            buffers.Add(buffer);
            be.Upload<int>(buffer, data);
            return buffer;
        }
        TensorRef Z(long n) => F(new float[n]);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        void Keep(TensorRef t)
        {
            var data = new float[t.Length];
            be.Download<float>(data, t);
            outputs.Add(data);
        }

        try
        {
            var dropout = new DropoutSpec(0.1f, 9, 1, 1);
            var ids = Ints(Enumerable.Range(0, rows).Select(i => (i * 37) % vocab).ToArray());
            var types = Ints(Enumerable.Range(0, rows).Select(i => i % 2).ToArray());
            var mask = Ints(Enumerable.Range(0, rows).Select(i => i % s < s - 3 ? 1 : 0).ToArray());
            TensorRef word = F(R(vocab * h)), pos = F(R(s * h)), type = F(R(2 * h)), gamma = F(R(h)), beta = F(R(h));
            TensorRef emb = Z(rows * h), sum = Z(rows * h), mean = Z(rows), rstd = Z(rows);
            be.EmbeddingsForward(emb, sum, mean, rstd, ids, types, word, pos, type, gamma, beta, b, s, h, 1e-12f, dropout);
            Keep(emb);
            TensorRef wq = F(R(3 * h * h)), bq = F(R(3 * h)), qkv = Z(rows * 3 * h);
            be.Linear(qkv, TensorRef.Null, emb, wq, bq, rows, h, 3 * h, Activation.None);
            Keep(qkv);
            TensorRef ctx = Z(rows * h), probs = Z(b * nh * s * s), ws = Z(be.PlanAttention(b, s, nh, hd).WorkspaceLength);
            be.AttentionForward(ctx, probs, ws, qkv, mask, b, s, nh, hd, dropout);
            Keep(ctx);
            TensorRef w1 = F(R(inter * h)), b1 = F(R(inter)), pre = Z(rows * inter), act = Z(rows * inter);
            be.Linear(act, pre, ctx, w1, b1, rows, h, inter, Activation.Gelu);
            Keep(act);
            TensorRef w2 = F(R(h * inter)), out2 = Z(rows * h);
            be.Linear(out2, TensorRef.Null, act, w2, TensorRef.Null, rows, inter, h, Activation.None);
            TensorRef ln = Z(rows * h), lsum = Z(rows * h), lmean = Z(rows), lrstd = Z(rows);
            be.ResidualLayerNorm(ln, lsum, lmean, lrstd, emb, out2, gamma, beta, rows, h, 1e-12f, dropout);
            Keep(ln);
            TensorRef positions = Ints(Enumerable.Range(0, b * 5).Select(i => (i * 3) % s).ToArray()), gathered = Z(b * 5 * h);
            be.GatherRows(gathered, ln, positions, b, s, 5, h);
            TensorRef wo = F(R(classes * h)), logits = Z(b * 5 * classes), stats = Z(3);
            be.Linear(logits, TensorRef.Null, gathered, wo, TensorRef.Null, b * 5, h, classes, Activation.None);
            be.SoftmaxCrossEntropy(logits, stats, logits, Ints(Enumerable.Range(0, b * 5).Select(i => i * 7).ToArray()),
                TensorRef.Null, b * 5, classes, 0.05f);
            Keep(logits);
            Keep(stats);

            TensorRef dWo = Z(classes * h), dGathered = Z(b * 5 * h), dLn = Z(rows * h);
            be.LinearBackward(dGathered, dWo, TensorRef.Null, logits, gathered, wo, b * 5, h, classes, false);
            be.ScatterAddRows(dLn, dGathered, positions, b, s, 5, h);
            TensorRef dGamma = Z(h), dBeta = Z(h), dEmb = Z(rows * h), dOut2 = Z(rows * h);
            be.ResidualLayerNormBackward(dLn, dOut2, dGamma, dBeta, dLn, lsum, lmean, lrstd, gamma, rows, h, dropout);
            TensorRef dAct = Z(rows * inter), dW2 = Z(h * inter);
            be.LinearBackward(dAct, dW2, TensorRef.Null, dOut2, act, w2, rows, inter, h, false);
            be.ActivationBackward(dAct, dAct, pre, rows * inter, Activation.Gelu);
            TensorRef dCtx = Z(rows * h), dW1 = Z(inter * h), dB1 = Z(inter);
            be.LinearBackward(dCtx, dW1, dB1, dAct, ctx, w1, rows, h, inter, false);
            TensorRef dQkv = Z(rows * 3 * h);
            be.AttentionBackward(dQkv, ws, dCtx, qkv, ctx, probs, mask, b, s, nh, hd, dropout);
            TensorRef dWq = Z(3 * h * h), dBq = Z(3 * h);
            be.LinearBackward(dLn, dWq, dBq, dQkv, emb, wq, rows, h, 3 * h, true);
            TensorRef dWord = Z(vocab * h), dPos = Z(s * h), dType = Z(2 * h);
            be.EmbeddingsBackward(dWord, dPos, dType, dGamma, dBeta, Z(rows * h), dLn, sum, mean, rstd, ids, types, gamma, b, s, h, dropout);
            foreach (var t in new[] { dWo, dW2, dW1, dB1, dQkv, dWq, dBq, dWord, dPos, dType, dGamma, dBeta }) Keep(t);

            TensorRef norm = Z(1);
            be.SquaredNorm(norm, dWord, vocab * h);
            Keep(norm);
            be.AdamW(word, dWord, Z(vocab * h), Z(vocab * h), norm, vocab * h, new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 1, 1f));
            Keep(word);
            return outputs;
        }
        finally
        {
            foreach (var buffer in buffers) buffer.Dispose();
        }
    }

    [Test]
    public void EveryOp_IsBitwiseReproducible_WithTheSameThreads()
    {
        using var backend = new CpuBackend(2);
        var first = RunEverything(backend);
        var second = RunEverything(backend);
        Assert.That(first.Count, Is.EqualTo(second.Count));
        for (int i = 0; i < first.Count; i++) Assert.That(second[i], Is.EqualTo(first[i]), $"output {i}");
    }

    [Test]
    public void EveryOp_IsBitwiseIdenticalAcrossThreadCounts_OnTheManagedGemm()
    {
        List<float[]>? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var backend = new CpuBackend(threads, CpuGemmKind.Managed);
            var outputs = RunEverything(backend);
            Assert.That(outputs.All(o => o.All(float.IsFinite)), Is.True, "finite outputs");
            if (first is null)
            {
                first = outputs;
                continue;
            }
            for (int i = 0; i < first.Count; i++) Assert.That(outputs[i], Is.EqualTo(first[i]), $"output {i} with {threads} threads");
        }
    }

    [TestCase(1)]
    [TestCase(2)]
    public void Ops_AllocateNothingPerCall(int threads)
    {
        const int b = 2, s = 9, nh = 2, hd = 8, h = nh * hd, rows = b * s, vocab = 50;
        using var be = new CpuBackend(threads);
        var buffers = new List<DeviceBuffer>();
        TensorRef Z(long n, DType type = DType.F32)
        {
            var buffer = be.Allocate(n, type, "t");
            buffers.Add(buffer);
            return buffer;
        }
        try
        {
            TensorRef ids = Z(rows, DType.I32), mask = Z(rows, DType.I32), word = Z(vocab * h), pos = Z(s * h), type = Z(2 * h);
            be.Upload<int>(mask, Enumerable.Repeat(1, rows).ToArray());
            TensorRef gamma = Z(h), beta = Z(h), x = Z(rows * h), y = Z(rows * h), sum = Z(rows * h), mean = Z(rows), rstd = Z(rows);
            TensorRef qkv = Z(rows * 3 * h), probs = Z(b * nh * s * s), ws = Z(be.PlanAttention(b, s, nh, hd).WorkspaceLength), w = Z(3 * h * h);
            TensorRef logits = Z(rows * vocab), pre = Z(rows * vocab), bias = Z(vocab), stats = Z(3), norm = Z(1), m = Z(3 * h * h), v = Z(3 * h * h);
            var drop = new DropoutSpec(0.1f, 1, 1, 1);
            void Step()
            {
                be.EmbeddingsForward(y, sum, mean, rstd, ids, ids, word, pos, type, gamma, beta, b, s, h, 1e-12f, drop);
                be.Linear(qkv, TensorRef.Null, y, w, TensorRef.Null, rows, h, 3 * h, Activation.None);
                be.AttentionForward(x, probs, ws, qkv, mask, b, s, nh, hd, drop);
                be.ResidualLayerNorm(y, sum, mean, rstd, y, x, gamma, beta, rows, h, 1e-12f, drop);
                be.Linear(logits, pre, y, word, bias, rows, h, vocab, Activation.Gelu);
                be.SoftmaxCrossEntropy(logits, stats, logits, ids, TensorRef.Null, rows, vocab, 1f);
                be.ActivationBackward(logits, logits, pre, rows * vocab, Activation.Gelu);
                be.LinearBackward(x, word, bias, logits, y, word, rows, h, vocab, false);
                be.ResidualLayerNormBackward(x, sum, gamma, beta, x, y, mean, rstd, gamma, rows, h, drop);
                be.AttentionBackward(qkv, ws, x, qkv, x, probs, mask, b, s, nh, hd, drop);
                be.LayerNorm(y, mean, rstd, x, gamma, beta, rows, h, 1e-5f);
                be.LayerNormBackward(x, gamma, beta, y, sum, mean, rstd, gamma, rows, h);
                be.GatherRows(y, x, ids, b, s, 3, h);
                be.ScatterAddRows(x, y, ids, b, s, 3, h);
                be.Dropout(x, x, rows * h, drop);
                be.EmbeddingsBackward(word, pos, type, gamma, beta, sum, x, y, mean, rstd, ids, ids, gamma, b, s, h, drop);
                be.SquaredNorm(norm, w, 3 * h * h);
                be.AdamW(w, w, m, v, norm, 3 * h * h, new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 1, 1f));
            }
            Step();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 3; i++) Step();
            Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.EqualTo(0), "bytes allocated by three steps");
        }
        finally
        {
            foreach (var buffer in buffers) buffer.Dispose();
        }
    }

    // ---- dropout kernel ---------------------------------------------------------------------------

    [Test]
    public void DropoutKernel_AgreesWithDropoutSpecKeep_AtAnyOffsetAndLength()
    {
        var spec = new DropoutSpec(0.3f, 0xDEADBEEFCAFEul, 11, 12);
        var src = new float[80];
        Array.Fill(src, 1f);
        var dst = new float[80];
        // Offsets include a run that crosses a 2^32 block boundary (index 2^34).
        foreach (long start in new long[] { 0, 1, 2, 3, 5, 17, (1L << 34) - 9 })
        foreach (int n in new[] { 1, 3, 4, 15, 16, 17, 33, 80 })
        {
            fixed (float* s = src, d = dst) DropoutKernel.Apply(d, s, n, start, spec);
            for (int i = 0; i < n; i++)
                Assert.That(dst[i] != 0f, Is.EqualTo(spec.Keep(start + i)), $"start {start}, element {i} of {n}");
        }
    }

    // ---- validation, naming, pool -------------------------------------------------------------------

    [Test]
    public void Name_ThreadsAndGemmAreReported()
    {
        using var managed = new CpuBackend(3, CpuGemmKind.Managed);
        Assert.That(managed.Name, Is.EqualTo("cpu (3 threads, managed GEMM)"));
        Assert.That(managed.Threads, Is.EqualTo(3));
        Assert.That(managed.ComputeType, Is.EqualTo(DType.F32));
        using var auto = new CpuBackend();
        Assert.That(auto.Threads, Is.EqualTo(Environment.ProcessorCount));
        var expected = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated || !CpuBackend.OpenBlasAvailable
            ? CpuGemmKind.Managed : CpuGemmKind.OpenBlas;
        if (Environment.GetEnvironmentVariable(CpuBackend.GemmEnvironmentVariable) is null)
        {
            Assert.That(CpuBackend.AutoGemm, Is.EqualTo(expected));
            Assert.That(auto.Gemm, Is.EqualTo(expected));
            Assert.That(auto.Name, Does.Contain(expected == CpuGemmKind.OpenBlas ? "OpenBLAS GEMM" : "managed GEMM"));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBackend(-1));
    }

    [Test]
    public void GemmEnvironmentVariable_ForcesManagedAndRejectsUnknownValues()
    {
        string? saved = Environment.GetEnvironmentVariable(CpuBackend.GemmEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(CpuBackend.GemmEnvironmentVariable, "managed");
            using (var backend = new CpuBackend(1)) Assert.That(backend.Gemm, Is.EqualTo(CpuGemmKind.Managed));
            Environment.SetEnvironmentVariable(CpuBackend.GemmEnvironmentVariable, "mkl");
            var e = Assert.Throws<ArgumentException>(() => new CpuBackend(1));
            Assert.That(e!.Message, Does.Contain(CpuBackend.GemmEnvironmentVariable).And.Contain("mkl"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(CpuBackend.GemmEnvironmentVariable, saved);
        }
    }

    [Test]
    public void OutOfRangeIndices_ThrowNamingElementAndValue()
    {
        using var be = new CpuBackend(2);
        using var ids = be.Allocate(6, DType.I32, "ids");
        using var f = be.Allocate(10_000, DType.F32, "f");
        using var stats = be.Allocate(3, DType.F32, "stats");

        be.Upload<int>(ids, [0, 1, 2, 5, 1, 0]);
        var e = Assert.Throws<ArgumentException>(() => be.SoftmaxCrossEntropy(f, stats, f, ids, TensorRef.Null, 6, 5, 1f));
        Assert.That(e!.Message, Does.Contain("SoftmaxCrossEntropy").And.Contain("labels[3] = 5").And.Contain("[0, 5)"));

        be.Upload<int>(ids, [0, 1, -1, 2, 1, 0]);
        e = Assert.Throws<ArgumentException>(() => be.SoftmaxCrossEntropy(f, stats, f, ids, TensorRef.Null, 6, 5, 1f));
        Assert.That(e!.Message, Does.Contain("labels[2] = -1"));

        e = Assert.Throws<ArgumentException>(() => be.GatherRows(f, f, ids, 2, 3, 3, 4));
        Assert.That(e!.Message, Does.Contain("GatherRows").And.Contain("positions[2] = -1"));

        be.Upload<int>(ids, [0, 1, 2, 3, 99, 0]);
        e = Assert.Throws<ArgumentException>(() => be.EmbeddingsForward(f, f.Slice(100, 100), f.Slice(200, 6), f.Slice(300, 6),
            ids, ids.Slice(0, 6), f.Slice(1000, 99 * 4), f.Slice(2000, 12), f.Slice(3000, 8), f.Slice(4000, 4), f.Slice(5000, 4),
            2, 3, 4, 1e-12f, DropoutSpec.None));
        Assert.That(e!.Message, Does.Contain("inputIds[4] = 99").And.Contain("[0, 99)"));
    }

    [Test]
    public void Ops_RejectWrongDTypeAndDropoutProbability()
    {
        using var be = new CpuBackend(1);
        using var f = be.Allocate(100, DType.F32, "f");
        using var i = be.Allocate(100, DType.I32, "i");
        var e = Assert.Throws<ArgumentException>(() => be.LayerNorm(f, f, f, i, f, f, 2, 10, 1e-5f));
        Assert.That(e!.Message, Does.Contain("LayerNorm").And.Contain("input").And.Contain("I32"));
        e = Assert.Throws<ArgumentException>(() => be.Dropout(f, f, 10, new DropoutSpec(1f, 0, 0, 0)));
        Assert.That(e!.Message, Does.Contain("Dropout").And.Contain("1"));
    }

    private struct ThrowingJob : IChunkJob<ThrowingJob>
    {
        public int Bad;
        public int* Hits;

        public static void Execute(ref ThrowingJob job, int chunk, int worker)
        {
            if (chunk == job.Bad) throw new InvalidOperationException($"chunk {chunk} failed");
            Interlocked.Increment(ref job.Hits[chunk]);
        }
    }

    private static void RunJob(CpuWorkerPool pool, ThrowingJob job, int chunks) => pool.Run(&job, chunks);

    [Test]
    public void WorkerPool_RunsEveryChunkOnce_AndRethrowsAChunkException()
    {
        using var pool = new CpuWorkerPool(3);
        var hits = new int[1000];
        fixed (int* h = hits)
        {
            var job = new ThrowingJob { Bad = -1, Hits = h };
            for (int round = 0; round < 20; round++) pool.Run(&job, 1000);
            Assert.That(hits, Is.All.EqualTo(20));
            job.Bad = 500;
            var failing = job;
            var e = Assert.Throws<InvalidOperationException>(() => RunJob(pool, failing, 1000));
            Assert.That(e!.Message, Is.EqualTo("chunk 500 failed"));
            job.Bad = -1;
            Array.Clear(hits);
            pool.Run(&job, 1000);
            Assert.That(hits, Is.All.EqualTo(1), "the pool still works after a failed run");
        }
    }
}
