using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// The residual + dropout + LayerNorm kernels (Kernels/layernorm.cu) on the CPU emulator against the CPU
/// backend: the forward's 16-byte path (H a multiple of 8, at most 1024, aligned tensors), the fused
/// backward that writes the gamma/beta partial sums from the row pass (layernorm_backward_fused for
/// H ≤ 768, _wide up to 1024), and the fallbacks (H a multiple of 4, odd H, tensors off a 16-byte boundary,
/// H over 1024). Dropout is on, so a mask that differs from the CPU's shows as an O(1) error; dGamma and
/// dBeta start non-zero (they accumulate); chunks of rows that do not fill the warps evenly. Both sides get
/// the same bf16-representable inputs; the tolerance is normwise (max|a − b| / max(1, max|b|)).
/// </summary>
[TestFixture]
[NonParallelizable]
public class LayerNormKernelTests
{
    private static readonly DropoutSpec Dropout = new(0.1f, 0x5EED_0000_0002UL, 5, 9);

    private static (CudaBackend Cuda, EmulatedDevice Device) Emulated(DType type, long reductionScratch = 4L << 20)
    {
        if (!EmulatedDevice.TryStart(out var device, out var reason)) Assert.Ignore($"the CPU emulator cannot be built: {reason}");
        return (new CudaBackend(device!, new CudaBackendOptions { ComputeType = type, ReductionScratchElements = reductionScratch }), device!);
    }

    // type, rows, hidden, offset of every row tensor in elements (0: 16-byte aligned), the backward kernel expected
    [TestCase(DType.BF16, 37, 768, 0, "layernorm_backward_fused", TestName = "BERT-base width, bf16")]
    [TestCase(DType.F32, 37, 64, 0, "layernorm_backward_fused", TestName = "One tile, fp32")]
    [TestCase(DType.BF16, 19, 40, 0, "layernorm_backward_fused", TestName = "Partial tile, bf16")]
    [TestCase(DType.BF16, 13, 1000, 0, "layernorm_backward_fused_wide", TestName = "Four tiles, the last partial, bf16")]
    [TestCase(DType.F32, 11, 1024, 0, "layernorm_backward_fused_wide", TestName = "BERT-large width, fp32")]
    [TestCase(DType.BF16, 21, 36, 0, "residual_layernorm_backward", TestName = "H a multiple of 4 only: fallback")]
    [TestCase(DType.BF16, 21, 33, 0, "residual_layernorm_backward", TestName = "Odd H: scalar fallback")]
    [TestCase(DType.BF16, 21, 64, 4, "residual_layernorm_backward", TestName = "Unaligned tensors: fallback")]
    [TestCase(DType.F32, 9, 1032, 0, "residual_layernorm_backward", TestName = "H over 1024: fallback")]
    public void ResidualLayerNormMatchesTheCpuBackend(DType type, int rows, int hidden, int offset, string backwardKernel)
    {
        var (cuda, device) = Emulated(type);
        using var _ = cuda;
        var (want, got) = Compare(cuda, type, rows, hidden, offset, plain: false);
        AssertClose(want, got, type);
        Assert.That(device.Launches.Select(l => l.Kernel), Does.Contain(backwardKernel));
    }

    /// <summary>The same cases on a GPU (with the plain LayerNorm backward at BERT-base width).</summary>
    [Test, Gpu]
    public void MatchTheCpuBackendOnTheGpu()
    {
        foreach (var type in new[] { DType.F32, DType.BF16 })
        {
            using var cuda = Gpu(new CudaBackendOptions { ComputeType = type });
            foreach (var (rows, hidden, offset) in new[] { (37, 768, 0), (19, 40, 0), (13, 1000, 0), (11, 1024, 0), (21, 36, 0), (21, 33, 0), (21, 64, 4), (9, 1032, 0), (4096, 768, 0) })
            {
                var (want, got) = Compare(cuda, type, rows, hidden, offset, plain: false);
                AssertClose(want, got, type);
            }
            var (w, g) = Compare(cuda, type, 29, 768, 0, plain: true);
            AssertClose(w, g, type);
        }
    }

    /// <summary>ResidualLayerNormBackward at BERT-base size (B·S = 256·128 rows, H = 768, bf16, dropout 0.1):
    /// the fused kernel (aligned tensors) against the two-pass fallback (the same tensors 4 elements off a
    /// 16-byte boundary: the code before issue 12), and the forward, from the profiler's CUDA events; prints
    /// ms and GB/s and asserts that the fused backward is faster.</summary>
    [Test, Gpu]
    public void FusedBackwardIsFasterThanTheFallbackOnTheGpu()
    {
        using var cuda = Gpu(new CudaBackendOptions { ComputeType = DType.BF16, Profile = true });
        const int rows = 256 * 128, hidden = 768;
        long n = (long)rows * hidden;
        var ms = new Dictionary<int, (double Forward, double Backward)>();
        foreach (int offset in new[] { 0, 4 })
        {
            var buffers = new List<DeviceBuffer>();
            TensorRef Act()
            {
                var b = cuda.Allocate(n + offset, DType.BF16, "act");
                buffers.Add(b);
                return b.Slice(offset, n);
            }
            TensorRef F32(long count)
            {
                var b = cuda.Allocate(count, DType.F32, "f32");
                buffers.Add(b);
                return b;
            }
            try
            {
                var (output, sum, residual, branch, dOut, dBranch) = (Act(), Act(), Act(), Act(), Act(), Act());
                var (mean, rstd, gamma, beta, dGamma, dBeta) = (F32(rows), F32(rows), F32(hidden), F32(hidden), F32(hidden), F32(hidden));
                var rng = new Random(3);
                var values = Enumerable.Range(0, (int)n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                foreach (var t in new[] { residual, branch, dOut }) cuda.Upload<float>(t, values);
                cuda.Upload<float>(gamma, Enumerable.Repeat(1f, hidden).ToArray());
                for (int r = 0; r <= 10; r++)
                {
                    if (r == 1) cuda.CollectOpTimings();
                    cuda.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, 1e-12f, Dropout);
                    cuda.ResidualLayerNormBackward(dOut, dBranch, dGamma, dBeta, dOut, sum, mean, rstd, gamma, rows, hidden, Dropout);
                }
                var t0 = cuda.CollectOpTimings();
                ms[offset] = (t0["ResidualLayerNorm"].TotalMilliseconds / t0["ResidualLayerNorm"].Calls,
                    t0["ResidualLayerNormBackward"].TotalMilliseconds / t0["ResidualLayerNormBackward"].Calls);
                // forward: residual, branch in; sum, output out. backward: dOut, sum in; dResidual, dBranch out.
                double bytes = 4.0 * n * 2;
                TestContext.Progress.WriteLine($"{cuda.Name} {rows}x{hidden} bf16 {(offset == 0 ? "aligned (16-byte, fused)" : "unaligned (fallback)")}: " +
                    $"forward {ms[offset].Forward:F3} ms ({bytes / ms[offset].Forward / 1e6:F0} GB/s), backward {ms[offset].Backward:F3} ms ({bytes / ms[offset].Backward / 1e6:F0} GB/s)");
            }
            finally
            {
                foreach (var b in buffers) b.Dispose();
            }
        }
        Assert.That(ms[0].Backward, Is.LessThan(ms[4].Backward));
    }

    [TestCase(DType.BF16, 29, 768, TestName = "Plain LayerNorm backward, BERT-base width, bf16")]
    [TestCase(DType.F32, 29, 96, TestName = "Plain LayerNorm backward, fp32")]
    public void LayerNormBackwardMatchesTheCpuBackend(DType type, int rows, int hidden)
    {
        var (cuda, device) = Emulated(type);
        using var _ = cuda;
        var (want, got) = Compare(cuda, type, rows, hidden, 0, plain: true);
        AssertClose(want, got, type);
        Assert.That(device.Launches.Select(l => l.Kernel), Does.Contain("layernorm_backward_fused"));
    }

    /// <summary>A reduction scratch that holds few chunks: 300 rows in chunks of 38 (not a multiple of the eight
    /// warps), partial sums added in chunk order.</summary>
    [Test]
    public void ManyRowsPerChunkMatchTheCpuBackend()
    {
        var (cuda, device) = Emulated(DType.F32, reductionScratch: 1024);
        using var _ = cuda;
        var (want, got) = Compare(cuda, DType.F32, 300, 64, 0, plain: false);
        AssertClose(want, got, DType.F32);
        var launch = device.Launches.Single(l => l.Kernel == "layernorm_backward_fused");
        Assert.That(launch.Grid.X, Is.EqualTo(8u), "1024 partial sums / (2·64) = 8 chunks of 38 rows");
    }

    [Test]
    public void SameInputsGiveTheSameBits()
    {
        var (cuda, _) = Emulated(DType.BF16);
        using var __ = cuda;
        var (_, first) = Compare(cuda, DType.BF16, 37, 768, 0, plain: false);
        var (_, second) = Compare(cuda, DType.BF16, 37, 768, 0, plain: false);
        foreach (var (name, values) in first) Assert.That(second[name], Is.EqualTo(values), name);
    }

    private static CudaBackend Gpu(CudaBackendOptions options)
    {
        if (!CudaBackend.TryCreate(out var backend, out var reason, options)) Assert.Ignore(reason);
        return backend!;
    }

    private static void AssertClose(Dictionary<string, float[]> want, Dictionary<string, float[]> got, DType type)
    {
        // fp32: two implementations that sum in different orders. bf16: outputs rounded to bf16 (2⁻⁹), sum stored
        // as bf16 before the statistics.
        double tolerance = type == DType.BF16 ? 1e-2 : 1e-5;
        foreach (var (name, expected) in want)
        {
            var actual = got[name];
            double diff = 0, size = 1;
            for (int i = 0; i < expected.Length; i++)
            {
                diff = Math.Max(diff, Math.Abs(actual[i] - expected[i]));
                size = Math.Max(size, Math.Abs(expected[i]));
            }
            Assert.That(diff / size, Is.LessThanOrEqualTo(tolerance), $"{name}: normwise error");
        }
    }

    /// <summary>Forward then backward on the CPU backend (F32, aligned) and on <paramref name="cuda"/> (row
    /// tensors <paramref name="offset"/> elements into their buffers); every output of both.</summary>
    private static (Dictionary<string, float[]> Want, Dictionary<string, float[]> Got) Compare(
        CudaBackend cuda, DType type, int rows, int hidden, int offset, bool plain)
    {
        var rng = new Random(rows * 1000 + hidden);
        long n = (long)rows * hidden;
        float[] Rand(long count, float scale, float center = 0f, bool round = true)
        {
            var a = new float[count];
            for (long i = 0; i < count; i++)
            {
                a[i] = center + (float)(rng.NextDouble() * 2 - 1) * scale;
                if (round) a[i] = BFloat16.Round(a[i]);
            }
            return a;
        }
        var residual = Rand(n, 1f);
        var branch = Rand(n, 2f);
        var gamma = Rand(hidden, 0.2f, 1f, round: false);
        var beta = Rand(hidden, 0.2f, round: false);
        var dOut = Rand(n, 1f);
        var dGamma0 = Rand(hidden, 1f, round: false);
        var dBeta0 = Rand(hidden, 1f, round: false);
        using var cpu = new CpuBackend();
        return (Run(cpu, DType.F32, 0), Run(cuda, type, offset));

        Dictionary<string, float[]> Run(IBackend b, DType t, int off)
        {
            var buffers = new List<DeviceBuffer>();
            TensorRef Act(float[]? values)
            {
                var buffer = b.Allocate(n + off, t, "act");
                buffers.Add(buffer);
                var view = buffer.Slice(off, n);
                if (values is not null) b.Upload<float>(view, values);
                return view;
            }
            TensorRef Param(float[] values)
            {
                var buffer = b.Allocate(values.Length, DType.F32, "param");
                buffers.Add(buffer);
                b.Upload<float>(buffer, values);
                return buffer;
            }
            float[] Read(TensorRef x)
            {
                var a = new float[x.Length];
                b.Download<float>(a, x);
                return a;
            }
            try
            {
                var output = Act(null);
                var sum = Act(null);
                var mean = Param(new float[rows]);
                var rstd = Param(new float[rows]);
                var g = Param(gamma);
                var dG = Param(dGamma0);
                var dB = Param(dBeta0);
                var dy = Act(dOut);
                var result = new Dictionary<string, float[]>();
                if (plain)
                {
                    var x = Act(branch);
                    b.LayerNorm(output, mean, rstd, x, g, Param(beta), rows, hidden, 1e-12f);
                    var dx = Act(null);
                    b.LayerNormBackward(dx, dG, dB, dy, x, mean, rstd, g, rows, hidden);
                    result["dInput"] = Read(dx);
                }
                else
                {
                    b.ResidualLayerNorm(output, sum, mean, rstd, Act(residual), Act(branch), g, Param(beta), rows, hidden, 1e-12f, Dropout);
                    result["sum"] = Read(sum);
                    var dBranch = Act(null);
                    // dResidual overwrites dOut (the model's in-place use).
                    b.ResidualLayerNormBackward(dy, dBranch, dG, dB, dy, sum, mean, rstd, g, rows, hidden, Dropout);
                    result["dResidual"] = Read(dy);
                    result["dBranch"] = Read(dBranch);
                }
                result["output"] = Read(output);
                result["mean"] = Read(mean);
                result["rstd"] = Read(rstd);
                result["dGamma"] = Read(dG);
                result["dBeta"] = Read(dB);
                return result;
            }
            finally
            {
                foreach (var buffer in buffers) buffer.Dispose();
            }
        }
    }
}
