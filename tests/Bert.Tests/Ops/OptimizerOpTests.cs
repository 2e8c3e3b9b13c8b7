using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>SquaredNorm, AdamW.</summary>
public abstract class OptimizerOpTests : OpTestBase
{
    [Test]
    public void SquaredNorm_MatchesDoubleSum()
    {
        const int n = 100_003;
        var x = RandomFloats(new Random(80), n, 0.1);
        var result = Param([123f]);
        Backend.SquaredNorm(result, Param(x), n);
        double expected = 0;
        foreach (var v in x) expected += (double)v * v;
        Assert.That(Read(result)[0], Is.EqualTo(expected).Within(1e-6 * expected));
    }

    [Test]
    public void SquaredNorm_OfARange_IgnoresTheRest()
    {
        var x = new float[] { 3, 4, 100 };
        var result = Param([0f]);
        Backend.SquaredNorm(result, Param(x), 2);
        Assert.That(Read(result)[0], Is.EqualTo(25f));
    }

    [Test]
    public void AdamW_FirstStep_MatchesHandComputedValues()
    {
        // Step 1 from m = v = 0: m̂ = g, v̂ = g², so p −= lr·(g/(|g| + ε) + wd·p).
        // p = 1:    1 − 0.1·(0.1/(0.1+1e-8) + 0.01·1)      = 0.89900001
        // p = −2:  −2 − 0.1·(0.2/(0.2+1e-8) + 0.01·(−2))   = −2.09799999
        // p = 0.5: 0.5 − 0.1·(−0.3/(0.3+1e-8) + 0.01·0.5)  = 0.59949999
        var p = Param([1f, -2f, 0.5f]);
        var g = Param([0.1f, 0.2f, -0.3f]);
        var m = Param(new float[3]);
        var v = Param(new float[3]);
        Backend.AdamW(p, g, m, v, TensorRef.Null, 3, new AdamWStep(0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1f));
        Assert.That(Read(p), Is.EqualTo(new[] { 0.89900001f, -2.09799999f, 0.59949999f }).Within(1e-6));
        // fp32 holds 1 − 0.999 only to 1.3e-5 relative, hence relative tolerances on the moments.
        Assert.That(Read(m), Is.EqualTo(new[] { 0.01f, 0.02f, -0.03f }).Within(0.01).Percent);
        Assert.That(Read(v), Is.EqualTo(new[] { 1e-5f, 4e-5f, 9e-5f }).Within(0.01).Percent);
    }

    [Test]
    public void AdamW_LaterStep_MatchesHandComputedValues()
    {
        // Step 3, β1 0.9, β2 0.99: element 0 has m = 0.9·0.02 + 0.1·0.4 = 0.058, v = 0.99·4e-4 + 0.01·0.16 = 0.001996;
        // m̂ = 0.058/(1−0.9³) = 0.214022, v̂ = 0.001996/(1−0.99³) = 0.067203, √v̂ = 0.259236;
        // p = 0.25 − 0.01·(0.214022/0.259237 + 0.1·0.25) = 0.24149414. Element 1 likewise: −1.50078433.
        var p = Param([0.25f, -1.5f]);
        var g = Param([0.4f, -0.05f]);
        var m = Param([0.02f, 0.01f]);
        var v = Param([0.0004f, 0.0001f]);
        Backend.AdamW(p, g, m, v, TensorRef.Null, 2, new AdamWStep(0.01f, 0.9f, 0.99f, 1e-6f, 0.1f, 3, 1f));
        Assert.That(Read(p), Is.EqualTo(new[] { 0.24149414f, -1.50078433f }).Within(1e-6));
        Assert.That(Read(m), Is.EqualTo(new[] { 0.058f, 0.004f }).Within(0.01).Percent);
        Assert.That(Read(v), Is.EqualTo(new[] { 0.001996f, 0.000124f }).Within(0.01).Percent);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void AdamW_MatchesReference_WithAndWithoutClipping(bool clip)
    {
        const int n = 10_007;
        var rng = new Random(81);
        var p0 = RandomFloats(rng, n, 0.5);
        var g0 = RandomFloats(rng, n, 0.2);
        var m0 = RandomFloats(rng, n, 0.01);
        var v0 = Array.ConvertAll(RandomFloats(rng, n, 0.01), x => x * x);
        double normSquared = 0;
        foreach (var x in g0) normSquared += (double)x * x;
        var step = new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 7, 1f);

        TensorRef p = Param(p0), g = Param(g0), m = Param(m0), v = Param(v0);
        var ns = clip ? Param([(float)normSquared]) : TensorRef.Null;
        Backend.AdamW(p, g, m, v, ns, n, step);

        double[] pe = D(p0), me = D(m0), ve = D(v0);
        Reference.AdamW(pe, D(g0), me, ve, clip ? (float)normSquared : null, step);
        Assert.That(clip ? Math.Sqrt(normSquared) : 2, Is.GreaterThan(1), "the gradient norm exceeds MaxGradNorm, so clipping acts");
        AssertClose(Read(m), me, Tolerance, "m");
        AssertClose(Read(v), ve, Tolerance, "v");
        // Compare the update (p − p0), not p, so the tolerance is relative to the step size.
        var pActual = Read(p);
        var delta = new float[n];
        var deltaExpected = new double[n];
        for (int i = 0; i < n; i++)
        {
            delta[i] = pActual[i] - p0[i];
            deltaExpected[i] = pe[i] - p0[i];
        }
        AssertClose(delta, deltaExpected, 1e-3, "p − p0");
    }

    // AdamWDevice on this backend against AdamW on the same backend: the same bits over three steps (moments carried),
    // with the clip active (norm² 50 > 1), inactive (norm² 0.25) and off (max norm 0, AdamW without a norm).
    [TestCase(50f, 1f)]
    [TestCase(0.25f, 1f)]
    [TestCase(50f, 0f)]
    public void AdamWDevice_IsBitIdenticalToAdamW(float normSquared, float maxNorm)
    {
        const int n = 10_007;
        var rng = new Random(82);
        var p0 = RandomFloats(rng, n, 0.5);
        var g0 = RandomFloats(rng, n, 0.2);
        var constants = new AdamWConstants(0.9f, 0.999f, 1e-6f, 0.01f, maxNorm);
        TensorRef ph = Param(p0), mh = Param(new float[n]), vh = Param(new float[n]);
        TensorRef pd = Param(p0), md = Param(new float[n]), vd = Param(new float[n]);
        TensorRef g = Param(g0), ns = Param([normSquared]), scalars = Param(new float[StepScalars.Length]);
        var host = new float[StepScalars.Length];
        for (int t = 1; t <= 3; t++)
        {
            float lr = 1e-3f * t;
            Backend.AdamW(ph, g, mh, vh, maxNorm > 0 ? ns : TensorRef.Null, n,
                new AdamWStep(lr, constants.Beta1, constants.Beta2, constants.Epsilon, constants.WeightDecay, t, maxNorm > 0 ? maxNorm : 1f));
            StepScalars.For(lr, constants.Beta1, constants.Beta2, t, dropoutStep: 0xFFFF_FFFFu).WriteTo(host);
            Backend.Upload<float>(scalars, host);
            Backend.AdamWDevice(pd, g, md, vd, ns, scalars, n, constants);
        }
        Assert.Multiple(() =>
        {
            Assert.That(Bits(Read(pd)), Is.EqualTo(Bits(Read(ph))), "param");
            Assert.That(Bits(Read(md)), Is.EqualTo(Bits(Read(mh))), "m");
            Assert.That(Bits(Read(vd)), Is.EqualTo(Bits(Read(vh))), "v");
            Assert.That(Read(pd), Is.Not.EqualTo(p0), "the steps moved the weights");
        });
    }

    [TestCase(float.NaN)]
    [TestCase(float.PositiveInfinity)]
    public void AdamWDevice_NonFiniteNorm_LeavesWeightsAndMomentsUnchanged(float normSquared)
    {
        const int n = 1003;
        var rng = new Random(83);
        var p0 = RandomFloats(rng, n, 0.5);
        var m0 = RandomFloats(rng, n, 0.01);
        var v0 = Array.ConvertAll(RandomFloats(rng, n, 0.01), x => x * x);
        TensorRef p = Param(p0), m = Param(m0), v = Param(v0);
        var host = new float[StepScalars.Length];
        StepScalars.For(1e-2f, 0.9f, 0.999f, 4).WriteTo(host);
        Backend.AdamWDevice(p, Param(RandomFloats(rng, n, 0.2)), m, v, Param([normSquared]), Param(host), n,
            new AdamWConstants(0.9f, 0.999f, 1e-6f, 0.01f, 1f));
        Assert.Multiple(() =>
        {
            Assert.That(Bits(Read(p)), Is.EqualTo(Bits(p0)), "param");
            Assert.That(Bits(Read(m)), Is.EqualTo(Bits(m0)), "m");
            Assert.That(Bits(Read(v)), Is.EqualTo(Bits(v0)), "v");
        });
    }

    [Test]
    public void StepScalars_RoundTripTheDropoutCounterBits()
    {
        var host = new float[StepScalars.Length];
        var s = StepScalars.For(3e-4f, 0.9f, 0.999f, 2, 0x7FC0_0001u);
        s.WriteTo(host);
        var scalars = Param(host);
        Assert.That(StepScalars.Read(Read(scalars)), Is.EqualTo(s), "a NaN-patterned counter survives upload and download");
        Assert.That(s.BiasCorrection1, Is.EqualTo(0.19f).Within(1e-7), "1 − β1ᵗ");
    }

    private static uint[] Bits(float[] x) => Array.ConvertAll(x, BitConverter.SingleToUInt32Bits);
}
