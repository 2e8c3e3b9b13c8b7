using System.Diagnostics;
using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Training;
using Bert.Runtime.Presets;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// Padded MLM logits (IBackend.LogitsStride, CudaBackendOptions.LogitsPadding): the decoder Linear, the loss and the
/// decoder's backward with the logits' rows a padded stride apart give the same loss and gradients as dense rows, on
/// the CPU backend (the oracle) and on the CUDA backend run by the emulator, op by op with NaN in the padding (so
/// nothing reads it as a value) and for a whole training step of a model whose generated code asks the backend for
/// the stride; the same comparison at BERT-base sizes on a GPU, with timings.
/// </summary>
[TestFixture, NonParallelizable]
public class PaddedLogitsTests
{
    // Odd sizes: rows, hidden, vocabulary (padded to 128 by 64).
    private const int Rows = 37, Hidden = 24, Vocab = 99;

    private static int Padded(int classes, int pad) => (classes + pad - 1) / pad * pad;

    /// <summary>A CPU backend whose logits are padded to a multiple of <paramref name="pad"/>, as the CUDA backend's
    /// LogitsPadding pads them: the CPU ops honour any stride.</summary>
    private sealed class PaddedCpu(int pad) : DelegatingBackend(new CpuBackend(1), ownsInner: true)
    {
        public override int LogitsStride(int classes) => Padded(classes, pad);
    }

    private static CudaBackend Emulated(CudaBackendOptions options)
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return new CudaBackend(device!, options);
    }

    private static float[] Rand(int seed, long n, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private sealed record HeadResult(float[] Logits, float[] Stats, float[] DInput, float[] DWeight, float[] DBias, float[] Padding);

    /// <summary>The MLM decoder and its loss with logits rows <paramref name="stride"/> apart, the padding filled with
    /// NaN first: Linear, SoftmaxCrossEntropy (dLogits in place), LinearBackward. Logits are the real columns.</summary>
    private static HeadResult Head(IBackend b, int rows, int hidden, int vocab, int stride)
    {
        var type = b.ComputeType;
        using var x = b.Allocate((long)rows * hidden, type, "activations");
        using var logits = b.Allocate((long)rows * stride, type, "activations");
        using var dx = b.Allocate((long)rows * hidden, type, "activations");
        using var parameters = b.Allocate((long)vocab * hidden + vocab, DType.F32, "parameters");
        using var grads = b.Allocate((long)vocab * hidden + vocab, DType.F32, "gradients");
        using var labels = b.Allocate(rows, DType.I32, "labels");
        using var weights = b.Allocate(rows, DType.F32, "weights");
        using var stats = b.Allocate(3, DType.F32, "stats");
        var w = parameters.Slice(0, (long)vocab * hidden);
        var bias = parameters.Slice((long)vocab * hidden, vocab);
        var dW = grads.Slice(0, (long)vocab * hidden);
        var dB = grads.Slice((long)vocab * hidden, vocab);
        b.Upload<float>(x, Rand(1, (long)rows * hidden));
        b.Upload<float>(w, Rand(2, (long)vocab * hidden, 0.5f));
        b.Upload<float>(bias, Rand(3, vocab, 0.1f));
        b.Upload<float>(grads, Rand(4, (long)vocab * hidden + vocab, 0.01f));   // parameter gradients accumulate
        b.Upload<int>(labels, Enumerable.Range(0, rows).Select(r => r * 7 % vocab).ToArray());
        b.Upload<float>(weights, Enumerable.Range(0, rows).Select(r => r % 5 == 3 ? 0f : 1f).ToArray());
        var poison = new float[(long)rows * stride];
        Array.Fill(poison, float.NaN);
        b.Upload<float>(logits, poison);

        b.Linear(logits, TensorRef.Null, x, w, bias, rows, hidden, vocab, Activation.None, stride);
        var all = new float[(long)rows * stride];
        b.Download<float>(all, logits);
        var real = Columns(all, rows, vocab, stride);
        b.SoftmaxCrossEntropy(logits, stats, logits, labels, weights, rows, vocab, 1f / rows, stride);
        b.Download<float>(all, logits);
        var padding = new float[(long)rows * (stride - vocab)];
        for (int r = 0; r < rows; r++) all.AsSpan(r * stride + vocab, stride - vocab).CopyTo(padding.AsSpan(r * (stride - vocab)));
        b.LinearBackward(dx, dW, dB, logits, x, w, rows, hidden, vocab, false, stride);
        return new HeadResult(real, Read(b, stats), Read(b, dx), Read(b, dW), Read(b, dB), padding);
    }

    private static float[] Columns(float[] all, int rows, int cols, int stride)
    {
        var a = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++) all.AsSpan(r * stride, cols).CopyTo(a.AsSpan(r * cols));
        return a;
    }

    private static float[] Read(IBackend b, TensorRef t)
    {
        var a = new float[t.Length];
        b.Download<float>(a, t);
        return a;
    }

    /// <param name="biasTolerance">0: bit for bit; cuBLASLt's BGRADB (which only the padded, 8-aligned stride takes)
    /// sums the bias gradient in another order.</param>
    /// <param name="gradientTolerance">0: bit for bit; the CUDA loss kernel's 16-byte vectors start at each row's first
    /// 16-byte boundary, so in fp32 (no bf16 rounding of dLogits) another row stride sums the softmax in another order.</param>
    private static void AssertIdentical(HeadResult want, HeadResult got, double biasTolerance = 0, double gradientTolerance = 0)
    {
        static void Same(float[] want, float[] got, double tolerance, string what)
        {
            if (tolerance == 0) Assert.That(got, Is.EqualTo(want), what);
            else Assert.That(got.Zip(want, (a, b) => Math.Abs(a - b)).Max(), Is.LessThanOrEqualTo(tolerance), what);
        }
        Assert.Multiple(() =>
        {
            Assert.That(got.Logits, Is.EqualTo(want.Logits), "logits (the real columns)");
            Same(want.Stats, got.Stats, gradientTolerance, "loss statistics");
            Same(want.DInput, got.DInput, gradientTolerance, "dInput");
            Same(want.DWeight, got.DWeight, gradientTolerance, "dWeight");
            Same(want.DBias, got.DBias, Math.Max(biasTolerance, gradientTolerance), "dBias");
            Assert.That(got.Padding, Is.All.EqualTo(0f), "the padding columns of dLogits are 0");
            Assert.That(got.Stats.All(float.IsFinite) && got.DWeight.All(float.IsFinite), "the NaN padding was never read");
        });
    }

    [Test]
    public void OpsGiveIdenticalResultsWithPaddedRowsOnTheCpu()
    {
        using var cpu = new CpuBackend(1);
        var dense = Head(cpu, Rows, Hidden, Vocab, Vocab);
        var padded = Head(cpu, Rows, Hidden, Vocab, Padded(Vocab, 64));
        AssertIdentical(dense, padded);
        Assert.That(dense.Stats[2], Is.GreaterThan(0f));
    }

    [TestCase(DType.BF16, false)]
    [TestCase(DType.BF16, true)]
    [TestCase(DType.F32, false)]
    public void OpsGiveIdenticalResultsWithPaddedRowsOnTheEmulator(DType type, bool useLt)
    {
        using var cuda = Emulated(new CudaBackendOptions { ComputeType = type, LogitsPadding = 64, UseCublasLt = useLt });
        // Only bf16 asks for padding; the ops take any stride in either precision.
        Assert.That(cuda.LogitsStride(Vocab), Is.EqualTo(type == DType.BF16 ? 128 : Vocab));
        var dense = Head(cuda, Rows, Hidden, Vocab, Vocab);
        var padded = Head(cuda, Rows, Hidden, Vocab, 128);
        AssertIdentical(dense, padded, useLt ? 1e-6 : 0, type == DType.F32 ? 1e-6 : 0);
    }

    /// <summary>The loss and the backward alone, on rows whose padding holds NaN (the forward above overwrites it on
    /// CUDA): the loss reads none of it and zeroes the gradient's; LinearBackward reads none of dOutput's.</summary>
    [TestCase("cpu")]
    [TestCase("emulator-bf16")]
    [TestCase("emulator-bf16-cublaslt")]
    public void LossAndBackwardNeverReadThePadding(string backendName)
    {
        using IBackend b = backendName == "cpu" ? new CpuBackend(1)
            : Emulated(new CudaBackendOptions { ComputeType = DType.BF16, UseCublasLt = backendName.EndsWith("cublaslt") });
        const int stride = 128;
        var values = Rand(7, (long)Rows * Vocab);
        var dense = Rand(7, (long)Rows * Vocab);
        var padded = new float[Rows * stride];
        Array.Fill(padded, float.NaN);
        for (int r = 0; r < Rows; r++) values.AsSpan(r * Vocab, Vocab).CopyTo(padded.AsSpan(r * stride));

        (float[] Stats, float[] DLogits, float[] DWeight, float[] DBias, float[] DInput) Run(float[] host, int ld)
        {
            using var logits = b.Allocate(host.Length, b.ComputeType, "activations");
            using var dLogits = b.Allocate(host.Length, b.ComputeType, "activations");
            using var stats = b.Allocate(3, DType.F32, "stats");
            using var labels = b.Allocate(Rows, DType.I32, "labels");
            using var x = b.Allocate((long)Rows * Hidden, b.ComputeType, "activations");
            using var dx = b.Allocate((long)Rows * Hidden, b.ComputeType, "activations");
            using var w = b.Allocate((long)Vocab * Hidden, DType.F32, "parameters");
            using var grads = b.Allocate((long)Vocab * Hidden + Vocab, DType.F32, "gradients");
            b.Upload<float>(logits, host);
            b.Upload<float>(dLogits, host);
            b.Upload<int>(labels, Enumerable.Range(0, Rows).Select(r => r * 5 % Vocab).ToArray());
            b.Upload<float>(x, Rand(8, (long)Rows * Hidden));
            b.Upload<float>(w, Rand(9, (long)Vocab * Hidden, 0.5f));
            b.SoftmaxCrossEntropy(logits, stats, logits, labels, TensorRef.Null, Rows, Vocab, 0.5f, ld);
            // The backward on the NaN-padded input rows themselves, not on the loss's (zero-padded) gradient.
            var dW = grads.Slice(0, (long)Vocab * Hidden);
            var dB = grads.Slice((long)Vocab * Hidden, Vocab);
            b.LinearBackward(dx, dW, dB, dLogits, x, w, Rows, Hidden, Vocab, false, ld);
            var all = Read(b, logits);
            return (Read(b, stats), all, Read(b, dW), Read(b, dB), Read(b, dx));
        }

        var want = Run(dense, Vocab);
        var got = Run(padded, stride);
        Assert.Multiple(() =>
        {
            Assert.That(got.Stats, Is.EqualTo(want.Stats), "loss statistics");
            Assert.That(Columns(got.DLogits, Rows, Vocab, stride), Is.EqualTo(want.DLogits), "the gradient's real columns");
            Assert.That(Enumerable.Range(0, Rows).SelectMany(r => got.DLogits.Skip(r * stride + Vocab).Take(stride - Vocab)), Is.All.EqualTo(0f),
                "the gradient's padding");
            Assert.That(got.DInput, Is.EqualTo(want.DInput), "dInput");
            Assert.That(got.DWeight, Is.EqualTo(want.DWeight), "dWeight");
            // cuBLASLt's BGRADB (only the 8-aligned padded stride takes it) sums the bias gradient in another order.
            Assert.That(got.DBias.Zip(want.DBias, (p, q) => Math.Abs(p - q)).Max(), Is.LessThanOrEqualTo(backendName.EndsWith("cublaslt") ? 1e-5 : 0),
                "dBias");
        });
    }

    [Test]
    public void OnlyBf16WithTheOptionPads()
    {
        using (var off = Emulated(new CudaBackendOptions { ComputeType = DType.BF16 })) Assert.That(off.LogitsStride(30522), Is.EqualTo(30522));
        using (var f32 = Emulated(new CudaBackendOptions { ComputeType = DType.F32, LogitsPadding = 64 })) Assert.That(f32.LogitsStride(30522), Is.EqualTo(30522));
        using (var on = Emulated(new CudaBackendOptions { ComputeType = DType.BF16, LogitsPadding = 64 })) Assert.That(on.LogitsStride(30522), Is.EqualTo(30528));
        using var cpu = new CpuBackend(1);
        Assert.That(((IBackend)cpu).LogitsStride(30522), Is.EqualTo(30522));
    }

    [Test]
    public void AStrideBelowTheWidthIsRejected()
    {
        using var cpu = new CpuBackend(1);
        using var t = cpu.Allocate(1000, DType.F32, "t");
        using var labels = cpu.Allocate(2, DType.I32, "labels");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            cpu.SoftmaxCrossEntropy(t, t.Slice(0, 3), t, labels, TensorRef.Null, 2, 10, 1f, stride: 9));
        Assert.That(e!.Message, Does.StartWith("SoftmaxCrossEntropy: stride must be 0 (dense) or at least the row width 10"));
    }

    /// <summary>One forward and backward of a small pretraining model on a backend that pads against the same without
    /// padding: identical MLM loss and parameter gradients; the model's logits are the padded rows.</summary>
    private static void ModelStepIsIdentical(Func<bool, IBackend> create, int expectedStride)
    {
        var config = ModelPresets.Tiny with { Layers = 1, Intermediate = 64, VocabSize = Vocab, MaxPositions = 32 };
        const int batch = 2, seq = 32, predictions = 5;
        var host = Bert.Cli.Commands.BenchCommand.SyntheticBatch(batch, seq, predictions, config.VocabSize, 11);

        (float[] Metrics, float[] Gradients, int Stride) Step(bool pad)
        {
            using var backend = create(pad);
            using var model = new BertForPreTraining(backend, batch, seq, predictions, config);
            model.InitializeParameters(5);
            model.Seed = 9;
            model.DropoutStep = 1;
            model.Training = true;
            using var data = new DeviceBatch(backend, batch, seq, predictions);
            var b = data.Upload(host, 0, batch, batch * predictions, 1);
            model.ZeroGradients();
            model.Forward(b);
            model.Backward(b);
            var metrics = new float[MetricSlot.Length];
            model.ReadMetrics(metrics);
            var grads = new float[model.ParameterTotal];
            backend.Download<float>(grads, model.Gradients);
            Assert.That(model.MlmLogits.Length, Is.EqualTo((long)batch * predictions * model.MlmLogitsStride));
            return (metrics, grads, model.MlmLogitsStride);
        }

        var dense = Step(pad: false);
        var padded = Step(pad: true);
        Assert.That(dense.Stride, Is.EqualTo(Vocab));
        Assert.That(padded.Stride, Is.EqualTo(expectedStride));
        Assert.That(padded.Metrics[MetricSlot.MlmLoss], Is.EqualTo(dense.Metrics[MetricSlot.MlmLoss]), "MLM loss");
        Assert.That(padded.Metrics, Is.EqualTo(dense.Metrics), "every metric");
        Assert.That(padded.Gradients, Is.EqualTo(dense.Gradients), "every parameter gradient (the tied word embeddings' included)");
        Assert.That(float.IsFinite(dense.Metrics[MetricSlot.MlmLoss]) && dense.Metrics[MetricSlot.MlmLoss] > 0);
    }

    [Test]
    public void ModelStepIsIdenticalWithPaddedLogitsOnTheCpu() =>
        ModelStepIsIdentical(pad => pad ? new PaddedCpu(64) : new CpuBackend(1), 128);

    [Test]
    public void ModelStepIsIdenticalWithPaddedLogitsOnTheEmulator() =>
        ModelStepIsIdentical(pad => Emulated(new CudaBackendOptions { ComputeType = DType.BF16, LogitsPadding = pad ? 64 : 0 }), 128);

    /// <summary>At BERT-base's MLM head (B·P = 256·20 rows, H 768, V 30522) on a GPU: the padded head against the dense
    /// one (both bf16; the padded GEMM may pick other kernels, so within bf16 rounding), and both timed. Ignored
    /// without a GPU.</summary>
    [Test, Gpu]
    public void PaddedLogitsMatchThePlainPathOnTheGpu()
    {
        foreach (bool lt in new[] { false, true })
        {
            if (!CudaBackend.TryCreate(out var cuda, out var reason,
                    new CudaBackendOptions { ComputeType = DType.BF16, LogitsPadding = 64, UseCublasLt = lt }))
                Assert.Ignore(reason);
            using var _ = cuda!;
            const int rows = 5120, hidden = 768, vocab = 30522;
            int stride = cuda!.LogitsStride(vocab);
            Assert.That(stride, Is.EqualTo(30528));
            var dense = Head(cuda, rows, hidden, vocab, vocab);
            var padded = Head(cuda, rows, hidden, vocab, stride);
            Assert.That(padded.Padding, Is.All.EqualTo(0f));
            Assert.That(padded.Stats[0], Is.EqualTo(dense.Stats[0]).Within(1e-3 * Math.Abs(dense.Stats[0])), "loss");
            Assert.That(padded.Stats[2], Is.EqualTo(dense.Stats[2]), "weight sum");
            foreach (var (name, want, got) in new[] { ("dInput", dense.DInput, padded.DInput), ("dWeight", dense.DWeight, padded.DWeight), ("dBias", dense.DBias, padded.DBias) })
            {
                double scale = Math.Max(1e-6, want.Max(Math.Abs));
                double worst = want.Zip(got, (a, b) => Math.Abs(a - (double)b)).Max() / scale;
                Assert.That(worst, Is.LessThanOrEqualTo(2e-2), $"{name} (cuBLASLt {lt})");
            }
            TestContext.Progress.WriteLine($"padded logits (cuBLASLt {lt}): head forward+loss+backward {Time(cuda, rows, hidden, vocab, vocab):F3} ms dense, " +
                                           $"{Time(cuda, rows, hidden, vocab, stride):F3} ms padded to {stride}");
        }
    }

    /// <summary>Median milliseconds of the head (Linear, loss, LinearBackward) over 20 runs after 3 warm-ups.</summary>
    private static double Time(CudaBackend b, int rows, int hidden, int vocab, int stride)
    {
        using var x = b.Allocate((long)rows * hidden, DType.BF16, "activations");
        using var logits = b.Allocate((long)rows * stride, DType.BF16, "activations");
        using var dx = b.Allocate((long)rows * hidden, DType.BF16, "activations");
        using var parameters = b.Allocate((long)vocab * hidden + vocab, DType.F32, "parameters");
        using var grads = b.Allocate((long)vocab * hidden + vocab, DType.F32, "gradients");
        using var labels = b.Allocate(rows, DType.I32, "labels");
        using var stats = b.Allocate(3, DType.F32, "stats");
        var w = parameters.Slice(0, (long)vocab * hidden);
        var bias = parameters.Slice((long)vocab * hidden, vocab);
        var times = new List<double>();
        for (int i = 0; i < 23; i++)
        {
            b.Synchronize();
            long t0 = Stopwatch.GetTimestamp();
            b.Linear(logits, TensorRef.Null, x, w, bias, rows, hidden, vocab, Activation.None, stride);
            b.SoftmaxCrossEntropy(logits, stats, logits, labels, TensorRef.Null, rows, vocab, 1f / rows, stride);
            b.LinearBackward(dx, grads.Slice(0, (long)vocab * hidden), grads.Slice((long)vocab * hidden, vocab), logits, x, w,
                rows, hidden, vocab, false, stride);
            b.Synchronize();
            if (i >= 3) times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }
}
