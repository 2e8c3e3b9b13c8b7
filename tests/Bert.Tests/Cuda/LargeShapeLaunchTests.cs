using Bert.Native;
using Bert.Runtime;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// Every op at BERT-large sizes on the recording device: launch arguments, block shapes, grid limits
/// (grid.y/z ≤ 65535), 32-bit overflow in sizes, and GEMM operand extents, checked without executing.
/// </summary>
[TestFixture(DType.F32, false)]
[TestFixture(DType.BF16, false)]
[TestFixture(DType.BF16, true)]
public class LargeShapeLaunchTests(DType computeType, bool useLt)
{
    [Test]
    public void BaseSizeCheckKernelsCasesLaunchWithinLimits()
    {
        using var reference = new CudaBackend(new RecordingDevice(), new CudaBackendOptions { ComputeType = computeType, UseCublasLt = useLt });
        using var candidate = new CudaBackend(new RecordingDevice(), new CudaBackendOptions { ComputeType = computeType, UseCublasLt = useLt });
        var results = KernelCheck.Run(reference, candidate, new KernelCheckOptions { Size = KernelCheckSize.Base, TimingRepeats = 0 });
        Assert.That(results, Has.Count.EqualTo(KernelCheck.CaseNames(new KernelCheckOptions { Size = KernelCheckSize.Base }, computeType).Count));
        Assert.That(results.Where(r => r.Error is not null).Select(r => $"{r.Op}/{r.Case}: {r.Error}"), Is.Empty);
    }

    // BERT-large: phase 1 (B 256, S 128, P 20) and phase 2 (B 32, S 512, P 80).
    [TestCase(256, 128, 20)]
    [TestCase(32, 512, 80)]
    public void EveryOpLaunchesWithinLimits(int batch, int seq, int predictions)
    {
        const int hidden = 1024, heads = 16, inter = 4096, vocab = 30522, types = 2, maxPos = 512;
        using var device = new RecordingDevice();
        using var cuda = new CudaBackend(device, new CudaBackendOptions { ComputeType = computeType, UseCublasLt = useLt });
        var act = cuda.ComputeType;
        DeviceBuffer A(long n) => cuda.Allocate(n, act, "activations");
        DeviceBuffer F(long n) => cuda.Allocate(n, DType.F32, "activations-f32");
        DeviceBuffer I(long n) => cuda.Allocate(n, DType.I32, "indices");
        long t = (long)batch * seq, rows = (long)batch * predictions;
        int tokens = (int)t;

        using var parameters = cuda.Allocate((long)vocab * hidden + maxPos * hidden + types * hidden + 4L * hidden * hidden
            + 2L * hidden * inter + 16L * hidden + vocab, DType.F32, "parameters");
        long offset = 0;
        TensorRef P(long n)
        {
            var v = parameters.Slice(offset, n);
            offset += n;
            return v;
        }
        var wordEmb = P((long)vocab * hidden); var posEmb = P((long)maxPos * hidden); var typeEmb = P((long)types * hidden);
        var gamma = P(hidden); var beta = P(hidden);
        var wQkv = P(3L * hidden * hidden); var bQkv = P(3L * hidden);
        var wOut = P((long)hidden * hidden); var wInter = P((long)inter * hidden); var bInter = P(inter);
        var wDown = P((long)hidden * inter); var decoderBias = P(vocab);
        using var grads = cuda.Allocate(parameters.Length, DType.F32, "gradients");
        using var m = cuda.Allocate(parameters.Length, DType.F32, "m");
        using var v = cuda.Allocate(parameters.Length, DType.F32, "v");

        using var ids = I(t); using var typeIds = I(t); using var mask = I(t);
        using var emb = A(t * hidden); using var sum = A(t * hidden); using var mean = F(t); using var rstd = F(t);
        var dropout = new DropoutSpec(0.1f, 42, 1, 1);
        cuda.EmbeddingsForward(emb, sum, mean, rstd, ids, typeIds, wordEmb, posEmb, typeEmb, gamma, beta, batch, seq, hidden, 1e-12f, dropout);

        using var qkv = A(t * 3 * hidden);
        cuda.Linear(qkv, TensorRef.Null, emb, wQkv, bQkv, tokens, hidden, 3 * hidden, Activation.None);
        using var ctx = A(t * hidden); using var probs = A((long)batch * heads * seq * seq);
        using var ws = A(cuda.PlanAttention(batch, seq, heads, hidden / heads).WorkspaceLength);
        cuda.AttentionForward(ctx, probs, ws, qkv, mask, batch, seq, heads, hidden / heads, dropout);
        using var pre = A(t * inter); using var h1 = A(t * inter); using var h2 = A(t * hidden);
        cuda.Linear(h1, pre, ctx, wInter, bInter, tokens, hidden, inter, Activation.Gelu);
        cuda.Linear(h2, TensorRef.Null, h1, wDown, TensorRef.Null, tokens, inter, hidden, Activation.None);
        using var y = A(t * hidden);
        cuda.ResidualLayerNorm(y, sum, mean, rstd, emb, h2, gamma, beta, tokens, hidden, 1e-12f, dropout);

        using var positions = I(rows); using var gathered = A(rows * hidden);
        cuda.GatherRows(gathered, y, positions, batch, seq, predictions, hidden);
        using var logits = F(rows * vocab); using var labels = I(rows); using var weights = F(rows); using var stats = F(3);
        cuda.Linear(logits, TensorRef.Null, gathered, wordEmb, decoderBias, (int)rows, hidden, vocab, Activation.None);
        cuda.SoftmaxCrossEntropy(logits, stats, logits, labels, weights, (int)rows, vocab, 1f / rows);
        using var dGathered = A(rows * hidden);
        cuda.LinearBackward(dGathered, grads.Slice(0, (long)vocab * hidden), grads.Slice(0, vocab), logits, gathered, wordEmb,
            (int)rows, hidden, vocab, false);
        using var dy = A(t * hidden);
        cuda.ScatterAddRows(dy, dGathered, positions, batch, seq, predictions, hidden);

        using var dBranch = A(t * hidden);
        cuda.ResidualLayerNormBackward(dy, dBranch, grads.Slice(0, hidden), grads.Slice(hidden, hidden), dy, sum, mean, rstd, gamma,
            tokens, hidden, dropout);
        using var dh1 = A(t * inter);
        cuda.LinearBackward(dh1, grads.Slice(0, (long)hidden * inter), TensorRef.Null, dBranch, h1, wDown, tokens, inter, hidden, false);
        cuda.ActivationBackward(dh1, dh1, pre, t * inter, Activation.Gelu);
        using var dCtx = A(t * hidden);
        cuda.LinearBackward(dCtx, grads.Slice(0, (long)inter * hidden), grads.Slice(0, inter), dh1, ctx, wInter, tokens, hidden, inter, false);
        using var dQkv = A(t * 3 * hidden);
        cuda.AttentionBackward(dQkv, ws, dCtx, qkv, ctx, probs, mask, batch, seq, heads, hidden / heads, dropout);
        using var dEmb = A(t * hidden);
        cuda.LinearBackward(dEmb, grads.Slice(0, 3L * hidden * hidden), grads.Slice(0, 3L * hidden), dQkv, emb, wQkv, tokens, hidden, 3 * hidden, true);
        using var scratch = F(t * hidden);
        cuda.EmbeddingsBackward(grads.Slice(0, (long)vocab * hidden), grads.Slice((long)vocab * hidden, (long)maxPos * hidden),
            grads.Slice((long)(vocab + maxPos) * hidden, (long)types * hidden), grads.Slice(0, hidden), grads.Slice(hidden, hidden),
            scratch, dEmb, sum, mean, rstd, ids, typeIds, gamma, batch, seq, hidden, dropout);
        cuda.LayerNorm(y, mean, rstd, sum, gamma, beta, tokens, hidden, 1e-12f);
        cuda.LayerNormBackward(dEmb, grads.Slice(0, hidden), grads.Slice(hidden, hidden), dy, sum, mean, rstd, gamma, tokens, hidden);
        cuda.Dropout(dEmb, dEmb, t * hidden, dropout);

        using var norm = F(1);
        cuda.SquaredNorm(norm, grads, grads.Length);
        cuda.AdamW(parameters, grads, m, v, norm, parameters.Length, new AdamWStep(1e-4f, 0.9f, 0.999f, 1e-6f, 0.01f, 1, 1f));

        Assert.That(device.Launches, Is.GreaterThan(30));
        Assert.That(device.GemmCount, Is.GreaterThanOrEqualTo(10));
        // With cuBLASLt on, the Linears with a bias and no exact-GELU take it (bf16: from the weight and bias shadows).
        Assert.That(device.LtCalls, useLt ? Is.GreaterThan(0) : Is.Zero);
        TestContext.Progress.WriteLine($"{computeType} B={batch} S={seq}: {device.Launches} launches, {device.GemmCount} GEMMs, " +
                                       $"largest grid.x {device.MaxGridX}");
    }
}
