using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Bert.Runtime.Cpu;

/// <summary>An elementwise function of one vector, specialized by the JIT per struct (no virtual calls).</summary>
internal interface IVectorUnary
{
    static abstract Vector<float> Invoke(Vector<float> x);
}

/// <summary>An elementwise function of two vectors.</summary>
internal interface IVectorBinary
{
    static abstract Vector<float> Invoke(Vector<float> x, Vector<float> y);
}

/// <summary>
/// Vector math of the CPU backend. Elementwise maps run every element, the last partial vector
/// included, through the same vector code, so an element's value never depends on where a chunk
/// boundary falls. Reductions sum in one fixed order (Vector&lt;float&gt; lanes, then lanes in order,
/// then the tail), so they are reproducible for a given length.
/// </summary>
internal static unsafe class CpuMath
{
    private static readonly int W = Vector<float>.Count;

    // ---- exp ------------------------------------------------------------------------------------
    // Cephes expf: exp(x) = 2ⁿ·exp(r), n = round(x·log₂e), r = x − n·ln2 (ln2 split in two so r is
    // exact to fp32), exp(r) = 1 + r + r²·P(r) on |r| ≤ ln2/2; max relative error 8e-8 (tested). As
    // fast as Vector.Exp, inlinable, and with the special values softmax relies on stated and tested:
    // exp(−∞) = 0 exactly, exp(+∞) = +∞, NaN stays NaN.
    private const float ExpHi = 88.72283f, ExpLo = -87.33654f;
    private const float Log2E = 1.44269504088896341f, Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;
    private const float E0 = 1.9875691500e-4f, E1 = 1.3981999507e-3f, E2 = 8.3334519073e-3f, E3 = 4.1665795894e-2f,
        E4 = 1.6666665459e-1f, E5 = 5.0000001201e-1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Exp(Vector<float> x)
    {
        var clamped = Vector.Min(Vector.Max(x, new Vector<float>(ExpLo)), new Vector<float>(ExpHi));
        var n = Vector.Round(clamped * new Vector<float>(Log2E));
        var r = Vector.FusedMultiplyAdd(n, new Vector<float>(-Ln2Hi), clamped);
        r = Vector.FusedMultiplyAdd(n, new Vector<float>(-Ln2Lo), r);
        var p = new Vector<float>(E0);
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(E1));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(E2));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(E3));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(E4));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(E5));
        var e = Vector.FusedMultiplyAdd(p, r * r, r) + Vector<float>.One;
        // 2ⁿ in two factors, so n = 128 (x near ln FLT_MAX) does not overflow the exponent field.
        var ni = Vector.ConvertToInt32(n);
        var half = Vector.ShiftRightArithmetic(ni, 1);
        var bias = new Vector<int>(127);
        var result = e * Vector.ShiftLeft(half + bias, 23).As<int, float>() * Vector.ShiftLeft(ni - half + bias, 23).As<int, float>();
        // Below the clamp the true value is under 1.2e-38: flush to 0 (so exp(−∞) = 0 exactly).
        result = Vector.ConditionalSelect(Vector.LessThan(x, new Vector<float>(ExpLo)).As<int, float>(), Vector<float>.Zero, result);
        result = Vector.ConditionalSelect(Vector.GreaterThan(x, new Vector<float>(ExpHi)).As<int, float>(),
            new Vector<float>(float.PositiveInfinity), result);
        return Vector.ConditionalSelect(Vector.Equals(x, x).As<int, float>(), result, x);
    }

    /// <summary>The scalar exp: the vector code on one lane.</summary>
    public static float Exp(float x) => Exp(new Vector<float>(x))[0];

    // ---- erf -----------------------------------------------------------------------------------
    // |x| ≤ 0.9: erf(x) = x + x·P(x²), P of degree 5 (weighted least-squares fit to the relative error
    // of erf; fit error 1e-8). 0.9 < |x| ≤ 6: erfc(|x|) = exp(Q(|x| − 0.9)), Q of degree 9 fit to
    // log erfc (so erfc keeps ~1e-5 relative accuracy, which 1 + erf(x) for x ≪ 0 needs; fit error
    // 4e-7 relative). Past 6, erfc < 2e-17: |x| is clamped there. Measured max abs error of erf over
    // [−6, 6]: 7e-8 (CpuBackendTests.Erf_MaxAbsoluteErrorBelow1e7).
    private const float ErfSplit = 0.9f, ErfClamp = 6f;
    private const float P0 = 0.12837917f, P1 = -0.37612545f, P2 = 0.11282312f, P3 = -0.026784042f,
        P4 = 0.005018543f, P5 = -0.0006120652f;
    private const float Q0 = -1.5940973f, Q1 = -2.471632f, Q2 = -0.83002156f, Q3 = -0.045794725f, Q4 = 0.011143412f,
        Q5 = -0.0022619893f, Q6 = 0.00035537692f, Q7 = -3.9480474e-05f, Q8 = 2.7087942e-06f, Q9 = -8.522369e-08f;

    /// <summary>small = erf(x) for |x| ≤ 0.9; tail = erfc(|x|) for |x| &gt; 0.9; large = |x| &gt; 0.9.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ErfParts(Vector<float> x, out Vector<float> small, out Vector<float> tail, out Vector<float> large)
    {
        var s = x * x;
        var p = new Vector<float>(P5);
        p = Vector.FusedMultiplyAdd(p, s, new Vector<float>(P4));
        p = Vector.FusedMultiplyAdd(p, s, new Vector<float>(P3));
        p = Vector.FusedMultiplyAdd(p, s, new Vector<float>(P2));
        p = Vector.FusedMultiplyAdd(p, s, new Vector<float>(P1));
        p = Vector.FusedMultiplyAdd(p, s, new Vector<float>(P0));
        small = Vector.FusedMultiplyAdd(p, x, x);

        var ax = Vector.Abs(x);
        var t = Vector.Min(ax, new Vector<float>(ErfClamp)) - new Vector<float>(ErfSplit);
        var q = new Vector<float>(Q9);
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q8));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q7));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q6));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q5));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q4));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q3));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q2));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q1));
        q = Vector.FusedMultiplyAdd(q, t, new Vector<float>(Q0));
        tail = Exp(q);
        large = Vector.GreaterThan(ax, new Vector<float>(ErfSplit)).As<int, float>();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Erf(Vector<float> x)
    {
        ErfParts(x, out var small, out var tail, out var large);
        var big = Vector.CopySign(Vector<float>.One - tail, x);
        return Vector.ConditionalSelect(large, big, small);
    }

    /// <summary>1 + erf(x), without the cancellation of adding 1 to erf(x) ≈ −1 for x ≪ 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> OnePlusErf(Vector<float> x)
    {
        ErfParts(x, out var small, out var tail, out var large);
        var positive = Vector.GreaterThan(x, Vector<float>.Zero).As<int, float>();
        var big = Vector.ConditionalSelect(positive, new Vector<float>(2f) - tail, tail);
        return Vector.ConditionalSelect(large, big, Vector<float>.One + small);
    }

    /// <summary>The scalar erf: the vector code on one lane, so both agree exactly.</summary>
    public static float Erf(float x) => Erf(new Vector<float>(x))[0];

    // ---- activations ---------------------------------------------------------------------------
    private const float InvSqrt2 = 0.70710677f, InvSqrt2Pi = 0.3989423f;
    private const float TanhK0 = 0.7978846f /* √(2/π) */, TanhK1 = 0.044715f;

    /// <summary>Exact GELU x·Φ(x) = ½·x·(1 + erf(x/√2)).</summary>
    public struct Gelu : IVectorUnary
    {
        public static Vector<float> Invoke(Vector<float> x) =>
            new Vector<float>(0.5f) * x * OnePlusErf(x * new Vector<float>(InvSqrt2));
    }

    /// <summary>dOut·(Φ(x) + x·φ(x)).</summary>
    public struct GeluBackward : IVectorBinary
    {
        public static Vector<float> Invoke(Vector<float> dOut, Vector<float> x)
        {
            var cdf = new Vector<float>(0.5f) * OnePlusErf(x * new Vector<float>(InvSqrt2));
            var pdf = new Vector<float>(InvSqrt2Pi) * Exp(new Vector<float>(-0.5f) * x * x);
            return dOut * Vector.FusedMultiplyAdd(x, pdf, cdf);
        }
    }

    /// <summary>½·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³); e = exp(−2u) is clamped
    /// at e⁸⁰ so that e·σ stays finite in the backward.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> TanhGeluE(Vector<float> x)
    {
        var u = new Vector<float>(TanhK0) * Vector.FusedMultiplyAdd(new Vector<float>(TanhK1) * x * x, x, x);
        return Exp(Vector.Min(new Vector<float>(-2f) * u, new Vector<float>(80f)));
    }

    public struct GeluTanh : IVectorUnary
    {
        public static Vector<float> Invoke(Vector<float> x) => x / (Vector<float>.One + TanhGeluE(x));
    }

    /// <summary>dOut·(σ + x·2u'·σ·(1−σ)), with 1−σ = e·σ.</summary>
    public struct GeluTanhBackward : IVectorBinary
    {
        public static Vector<float> Invoke(Vector<float> dOut, Vector<float> x)
        {
            var e = TanhGeluE(x);
            var s = Vector<float>.One / (Vector<float>.One + e);
            var du = new Vector<float>(2f * TanhK0) * Vector.FusedMultiplyAdd(new Vector<float>(3f * TanhK1) * x, x, Vector<float>.One);
            return dOut * Vector.FusedMultiplyAdd(x * du, e * s * s, s);
        }
    }

    public struct Relu : IVectorUnary
    {
        public static Vector<float> Invoke(Vector<float> x) => Vector.Max(x, Vector<float>.Zero);
    }

    /// <summary>dOut where x &gt; 0, else 0 (the subgradient 0 at x = 0).</summary>
    public struct ReluBackward : IVectorBinary
    {
        public static Vector<float> Invoke(Vector<float> dOut, Vector<float> x) =>
            Vector.ConditionalSelect(Vector.GreaterThan(x, Vector<float>.Zero).As<int, float>(), dOut, Vector<float>.Zero);
    }

    /// <summary>dst[i] = f(x[i]) for i &lt; n; dst may equal x.</summary>
    public static void Map<T>(float* dst, float* x, long n) where T : struct, IVectorUnary
    {
        long i = 0;
        for (; i <= n - W; i += W) T.Invoke(Vector.Load(x + i)).Store(dst + i);
        if (i < n)
        {
            int rest = (int)(n - i);
            float* buffer = stackalloc float[W];
            for (int j = 0; j < W; j++) buffer[j] = j < rest ? x[i + j] : 0f;
            T.Invoke(Vector.Load(buffer)).Store(buffer);
            for (int j = 0; j < rest; j++) dst[i + j] = buffer[j];
        }
    }

    /// <summary>dst[i] = f(x[i], y[i]) for i &lt; n; dst may equal x or y.</summary>
    public static void Map<T>(float* dst, float* x, float* y, long n) where T : struct, IVectorBinary
    {
        long i = 0;
        for (; i <= n - W; i += W) T.Invoke(Vector.Load(x + i), Vector.Load(y + i)).Store(dst + i);
        if (i < n)
        {
            int rest = (int)(n - i);
            float* bx = stackalloc float[W];
            float* by = stackalloc float[W];
            for (int j = 0; j < W; j++)
            {
                bx[j] = j < rest ? x[i + j] : 0f;
                by[j] = j < rest ? y[i + j] : 0f;
            }
            T.Invoke(Vector.Load(bx), Vector.Load(by)).Store(bx);
            for (int j = 0; j < rest; j++) dst[i + j] = bx[j];
        }
    }

    /// <summary>dst = act(x) over n elements (dst may equal x).</summary>
    public static void Activate(float* dst, float* x, long n, Activation activation)
    {
        switch (activation)
        {
            case Activation.None:
                if (dst != x) Buffer.MemoryCopy(x, dst, n * sizeof(float), n * sizeof(float));
                break;
            case Activation.Gelu: Map<Gelu>(dst, x, n); break;
            case Activation.GeluTanh: Map<GeluTanh>(dst, x, n); break;
            case Activation.Relu: Map<Relu>(dst, x, n); break;
            case Activation.Tanh:
                TensorPrimitives.Tanh(new ReadOnlySpan<float>(x, checked((int)n)), new Span<float>(dst, (int)n));
                break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, "unknown activation");
        }
    }

    /// <summary>dPre = dOut·act'(pre) over n elements (dPre may equal dOut).</summary>
    public static void ActivateBackward(float* dPre, float* dOut, float* pre, long n, Activation activation)
    {
        switch (activation)
        {
            case Activation.None:
                if (dPre != dOut) Buffer.MemoryCopy(dOut, dPre, n * sizeof(float), n * sizeof(float));
                break;
            case Activation.Gelu: Map<GeluBackward>(dPre, dOut, pre, n); break;
            case Activation.GeluTanh: Map<GeluTanhBackward>(dPre, dOut, pre, n); break;
            case Activation.Relu: Map<ReluBackward>(dPre, dOut, pre, n); break;
            case Activation.Tanh:
            {
                // 1 − tanh² from tanh recomputed in blocks: the pooler is the only Tanh, so this is small.
                const int block = 256;
                float* t = stackalloc float[block];
                for (long i = 0; i < n; i += block)
                {
                    int m = (int)Math.Min(block, n - i);
                    TensorPrimitives.Tanh(new ReadOnlySpan<float>(pre + i, m), new Span<float>(t, m));
                    for (int j = 0; j < m; j++) dPre[i + j] = dOut[i + j] * (1f - t[j] * t[j]);
                }
                break;
            }
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, "unknown activation");
        }
    }

    // ---- reductions and row helpers ------------------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Horizontal(Vector<float> v) => Vector.Sum(v);

    /// <summary>Σ x[i].</summary>
    public static float Sum(float* x, int n)
    {
        var acc0 = Vector<float>.Zero;
        var acc1 = Vector<float>.Zero;
        int i = 0;
        for (; i <= n - 2 * W; i += 2 * W)
        {
            acc0 += Vector.Load(x + i);
            acc1 += Vector.Load(x + i + W);
        }
        for (; i <= n - W; i += W) acc0 += Vector.Load(x + i);
        float s = Horizontal(acc0 + acc1);
        for (; i < n; i++) s += x[i];
        return s;
    }

    /// <summary>Σ (x[i] − mean)².</summary>
    public static float SumSquaredDeviation(float* x, int n, float mean)
    {
        var m = new Vector<float>(mean);
        var acc0 = Vector<float>.Zero;
        var acc1 = Vector<float>.Zero;
        int i = 0;
        for (; i <= n - 2 * W; i += 2 * W)
        {
            var d0 = Vector.Load(x + i) - m;
            var d1 = Vector.Load(x + i + W) - m;
            acc0 = Vector.FusedMultiplyAdd(d0, d0, acc0);
            acc1 = Vector.FusedMultiplyAdd(d1, d1, acc1);
        }
        for (; i <= n - W; i += W)
        {
            var d = Vector.Load(x + i) - m;
            acc0 = Vector.FusedMultiplyAdd(d, d, acc0);
        }
        float s = Horizontal(acc0 + acc1);
        for (; i < n; i++)
        {
            float d = x[i] - mean;
            s = MathF.FusedMultiplyAdd(d, d, s);
        }
        return s;
    }

    /// <summary>Σ x[i]·y[i].</summary>
    public static float Dot(float* x, float* y, int n)
    {
        var acc0 = Vector<float>.Zero;
        var acc1 = Vector<float>.Zero;
        int i = 0;
        for (; i <= n - 2 * W; i += 2 * W)
        {
            acc0 = Vector.FusedMultiplyAdd(Vector.Load(x + i), Vector.Load(y + i), acc0);
            acc1 = Vector.FusedMultiplyAdd(Vector.Load(x + i + W), Vector.Load(y + i + W), acc1);
        }
        for (; i <= n - W; i += W) acc0 = Vector.FusedMultiplyAdd(Vector.Load(x + i), Vector.Load(y + i), acc0);
        float s = Horizontal(acc0 + acc1);
        for (; i < n; i++) s = MathF.FusedMultiplyAdd(x[i], y[i], s);
        return s;
    }

    /// <summary>dst[i] += x[i].</summary>
    public static void AddInPlace(float* dst, float* x, int n)
    {
        int i = 0;
        for (; i <= n - W; i += W) (Vector.Load(dst + i) + Vector.Load(x + i)).Store(dst + i);
        for (; i < n; i++) dst[i] += x[i];
    }

    /// <summary>The largest x[i] and the first index holding it (NaN-free input assumed).</summary>
    public static float Max(float* x, int n, out int argMax)
    {
        var acc = new Vector<float>(float.NegativeInfinity);
        int i = 0;
        for (; i <= n - W; i += W) acc = Vector.Max(acc, Vector.Load(x + i));
        float m = float.NegativeInfinity;
        for (int j = 0; j < W; j++) m = MathF.Max(m, acc[j]);
        for (; i < n; i++) m = MathF.Max(m, x[i]);
        argMax = 0;
        for (int j = 0; j < n; j++)
        {
            if (x[j] == m)
            {
                argMax = j;
                break;
            }
        }
        return m;
    }
}
