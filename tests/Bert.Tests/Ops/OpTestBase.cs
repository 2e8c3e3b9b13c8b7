using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>
/// Base of the per-op-family fixtures. A backend subclass supplies <see cref="CreateBackend"/> and its
/// tolerances; the tests touch the backend only through <see cref="IBackend"/> (upload, run,
/// download). Activations are allocated in the backend's compute type (converted on upload and
/// download), parameters, gradients and statistics in F32, ids in I32.
/// Sizes are odd on purpose: B 3, S 7, H 32, NH 4 (HD 8), I 37, V 99.
/// </summary>
public abstract class OpTestBase
{
    protected const int B = 3, S = 7, H = 32, NH = 4, HD = 8, I = 37, V = 99, N = B * S;

    private readonly List<DeviceBuffer> _buffers = [];
    private IBackend? _backend;

    protected abstract IBackend CreateBackend();

    /// <summary>Max error of a forward result relative to the largest reference magnitude.</summary>
    protected virtual double Tolerance => 2e-5;

    /// <summary>The same for gradients (against fp64 finite differences or the analytic reference).</summary>
    protected virtual double GradientTolerance => 1e-4;

    protected IBackend Backend => _backend ?? throw new InvalidOperationException("backend not created");

    [OneTimeSetUp]
    public void CreateBackendOnce() => _backend = CreateBackend();

    [OneTimeTearDown]
    public void DisposeBackend() => _backend?.Dispose();

    [TearDown]
    public void FreeBuffers()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
    }

    // ---- buffers ---------------------------------------------------------------------------------

    protected TensorRef Alloc(long length, DType type)
    {
        var buffer = Backend.Allocate(length, type, "test");
        _buffers.Add(buffer);
        return buffer.View;
    }

    /// <summary>An F32 tensor (parameters, gradients, statistics).</summary>
    protected TensorRef Param(float[] data)
    {
        var t = Alloc(data.Length, DType.F32);
        Backend.Upload<float>(t, data);
        return t;
    }

    /// <summary>An activation tensor in the backend's compute type.</summary>
    protected TensorRef Act(float[] data)
    {
        var t = Alloc(data.Length, Backend.ComputeType);
        if (Backend.ComputeType == DType.BF16) Backend.Upload<ushort>(t, Array.ConvertAll(data, ToBf16));
        else Backend.Upload<float>(t, data);
        return t;
    }

    protected TensorRef ActZeros(long length) => Alloc(length, Backend.ComputeType);

    protected TensorRef Ints(int[] data)
    {
        var t = Alloc(data.Length, DType.I32);
        Backend.Upload<int>(t, data);
        return t;
    }

    /// <summary>Reads any float tensor (F32 or BF16) back as floats.</summary>
    protected float[] Read(TensorRef t)
    {
        if (t.DType == DType.BF16)
        {
            var raw = new ushort[t.Length];
            Backend.Download<ushort>(raw, t);
            return Array.ConvertAll(raw, FromBf16);
        }
        var data = new float[t.Length];
        Backend.Download<float>(data, t);
        return data;
    }

    private static ushort ToBf16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    private static float FromBf16(ushort x) => BitConverter.UInt32BitsToSingle((uint)x << 16);

    // ---- data ------------------------------------------------------------------------------------

    protected static float[] RandomFloats(Random rng, int n, double scale = 1, double offset = 0)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Normal via Box–Muller: fixed seeds make every test deterministic.
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = (float)(offset + scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return x;
    }

    protected static double[] RandomDoubles(Random rng, int n) => Reference.ToDouble(RandomFloats(rng, n));

    protected static double[] D(float[] x) => Reference.ToDouble(x);

    /// <summary>[B·S] attention mask with trailing padding: sequence b has S − 2b real tokens.</summary>
    protected static int[] PaddedMask()
    {
        var mask = new int[N];
        for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            mask[b * S + s] = s < S - 2 * b ? 1 : 0;
        return mask;
    }

    // ---- assertions ------------------------------------------------------------------------------

    /// <summary>max |actual − expected| ≤ tolerance · max |expected|.</summary>
    protected static void AssertClose(float[] actual, double[] expected, double tolerance, string what)
    {
        Assert.That(actual.Length, Is.GreaterThanOrEqualTo(expected.Length), $"{what}: length");
        double scale = 0, worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(expected[i]));
            double e = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(e)) Assert.Fail($"{what}: [{i}] is {actual[i]}, expected {expected[i]}");
            if (e > worst)
            {
                worst = e;
                at = i;
            }
        }
        Assert.That(scale, Is.GreaterThan(0), $"{what}: the reference is all zero, so the comparison would prove nothing");
        double relative = worst / scale;
        Assert.That(relative, Is.LessThanOrEqualTo(tolerance),
            $"{what}: max error {worst:g4} at [{at}] (actual {(at >= 0 ? actual[at] : 0):g6}, expected {(at >= 0 ? expected[at] : 0):g6}), " +
            $"{relative:g3} of the largest magnitude {scale:g4}");
    }

    protected static void AssertClose(float[] actual, float[] expected, double tolerance, string what) =>
        AssertClose(actual, D(expected), tolerance, what);

    /// <summary>expected + prefill, for checking that a gradient accumulates.</summary>
    protected static double[] Plus(double[] expected, float[] prefill)
    {
        var r = new double[expected.Length];
        for (int i = 0; i < r.Length; i++) r[i] = expected[i] + prefill[i];
        return r;
    }
}
