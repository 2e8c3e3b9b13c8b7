using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>Linear, LinearBackward, ActivationBackward.</summary>
public abstract class LinearOpTests : OpTestBase
{
    [TestCase(Activation.None, true)]
    [TestCase(Activation.None, false)]
    [TestCase(Activation.Gelu, true)]
    [TestCase(Activation.Gelu, false)]
    [TestCase(Activation.GeluTanh, true)]
    [TestCase(Activation.Relu, true)]
    [TestCase(Activation.Tanh, true)]
    public void Linear_MatchesReference(Activation activation, bool withBias)
    {
        var rng = new Random(10 + (int)activation);
        var x = RandomFloats(rng, N * H);
        var w = RandomFloats(rng, I * H, 0.3);
        var bias = RandomFloats(rng, I, 0.5);
        var expected = Reference.Linear(D(x), D(w), withBias ? D(bias) : null, N, H, I, activation, out var pre);

        var output = ActZeros(N * I);
        var preActivation = activation == Activation.None ? TensorRef.Null : ActZeros(N * I);
        Backend.Linear(output, preActivation, Act(x), Param(w), withBias ? Param(bias) : TensorRef.Null, N, H, I, activation);

        AssertClose(Read(output), expected, Tolerance, "output");
        if (activation != Activation.None) AssertClose(Read(preActivation), pre, Tolerance, "preActivation");
    }

    [Test]
    public void Linear_WithNullPreActivation_StillAppliesTheActivation()
    {
        var rng = new Random(11);
        var x = RandomFloats(rng, N * H);
        var w = RandomFloats(rng, I * H, 0.3);
        var bias = RandomFloats(rng, I, 0.5);
        var expected = Reference.Linear(D(x), D(w), D(bias), N, H, I, Activation.Gelu, out _);
        var output = ActZeros(N * I);
        Backend.Linear(output, TensorRef.Null, Act(x), Param(w), Param(bias), N, H, I, Activation.Gelu);
        AssertClose(Read(output), expected, Tolerance, "output");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void LinearBackward_MatchesFiniteDifferencesAndAccumulates(bool accumulateInput)
    {
        var rng = new Random(12);
        var x = RandomFloats(rng, N * H);
        var w = RandomFloats(rng, I * H, 0.3);
        var bias = RandomFloats(rng, I, 0.5);
        var r = RandomFloats(rng, N * I);
        var dInPrefill = RandomFloats(rng, N * H);
        var dWPrefill = RandomFloats(rng, I * H);
        var dBPrefill = RandomFloats(rng, I);

        var dIn = Act(dInPrefill);
        var dW = Param(dWPrefill);
        var dB = Param(dBPrefill);
        Backend.LinearBackward(dIn, dW, dB, Act(r), Act(x), Param(w), N, H, I, accumulateInput);

        double[] xd = D(x), wd = D(w), bd = D(bias), rd = D(r);
        var gx = Reference.Gradient(v => Reference.Linear(v, wd, bd, N, H, I, Activation.None, out _), xd, rd);
        var gw = Reference.Gradient(v => Reference.Linear(xd, v, bd, N, H, I, Activation.None, out _), wd, rd);
        var gb = Reference.Gradient(v => Reference.Linear(xd, wd, v, N, H, I, Activation.None, out _), bd, rd);

        AssertClose(Read(dIn), accumulateInput ? Plus(gx, dInPrefill) : gx, GradientTolerance, "dInput");
        AssertClose(Read(dW), Plus(gw, dWPrefill), GradientTolerance, "dWeight (+=)");
        AssertClose(Read(dB), Plus(gb, dBPrefill), GradientTolerance, "dBias (+=)");

        // Analytic: dWeight = dOutputᵀ·input.
        var analytic = Reference.Gemm(true, false, I, H, N, 1, r, I, x, H, 1, dWPrefill, H);
        AssertClose(Read(dW), analytic, Tolerance, "dWeight vs dOutputᵀ·input");
    }

    [Test]
    public void LinearBackward_WithNullDInputAndDBias_UpdatesOnlyDWeight()
    {
        var rng = new Random(13);
        var x = RandomFloats(rng, N * H);
        var w = RandomFloats(rng, I * H, 0.3);
        var r = RandomFloats(rng, N * I);
        var dW = Param(new float[I * H]);
        Backend.LinearBackward(TensorRef.Null, dW, TensorRef.Null, Act(r), Act(x), Param(w), N, H, I, false);
        var expected = Reference.Gemm(true, false, I, H, N, 1, r, I, x, H, 0, new float[I * H], H);
        AssertClose(Read(dW), expected, Tolerance, "dWeight");
    }

    [Test]
    public void LinearBackward_ManyRows_MatchesAnalyticReference()
    {
        // 1500 rows span several row chunks of the bias-gradient reduction.
        const int rows = 1500, inF = 40, outF = I;
        var rng = new Random(16);
        var x = RandomFloats(rng, rows * inF);
        var w = RandomFloats(rng, outF * inF, 0.3);
        var r = RandomFloats(rng, rows * outF);
        var dBPrefill = RandomFloats(rng, outF);
        var dIn = ActZeros(rows * inF);
        var dW = Param(new float[outF * inF]);
        var dB = Param(dBPrefill);
        Backend.LinearBackward(dIn, dW, dB, Act(r), Act(x), Param(w), rows, inF, outF, false);

        var bias = D(dBPrefill);
        for (int n = 0; n < rows; n++)
        for (int o = 0; o < outF; o++)
            bias[o] += r[n * outF + o];
        AssertClose(Read(dB), bias, Tolerance, "dBias");
        AssertClose(Read(dW), Reference.Gemm(true, false, outF, inF, rows, 1, r, outF, x, inF, 0, new float[outF * inF], inF), Tolerance, "dWeight");
        AssertClose(Read(dIn), Reference.Gemm(false, false, rows, inF, outF, 1, r, outF, w, inF, 0, new float[rows * inF], inF), Tolerance, "dInput");
    }

    [TestCase(Activation.None)]
    [TestCase(Activation.Gelu)]
    [TestCase(Activation.GeluTanh)]
    [TestCase(Activation.Relu)]
    [TestCase(Activation.Tanh)]
    public void ActivationBackward_MatchesFiniteDifferences(Activation activation)
    {
        var rng = new Random(14 + (int)activation);
        // Wide inputs reach both tails of the GELUs; count is odd so vector tails are exercised.
        var pre = RandomFloats(rng, N * I, 2.5);
        var r = RandomFloats(rng, N * I);
        var dPre = ActZeros(N * I);
        Backend.ActivationBackward(dPre, Act(r), Act(pre), N * I, activation);

        var expected = new double[pre.Length];
        for (int i = 0; i < pre.Length; i++)
        {
            double h = 1e-5 * Math.Max(1, Math.Abs(pre[i]));
            expected[i] = r[i] * (Reference.Activate(pre[i] + h, activation) - Reference.Activate(pre[i] - h, activation)) / (2 * h);
        }
        AssertClose(Read(dPre), expected, GradientTolerance, $"dPre ({activation})");
    }

    [Test]
    public void ActivationBackward_InPlace_dPreAliasesDOut()
    {
        var rng = new Random(15);
        var pre = RandomFloats(rng, N * I, 2);
        var r = RandomFloats(rng, N * I);
        var grads = Act(r);
        Backend.ActivationBackward(grads, grads, Act(pre), N * I, Activation.Gelu);
        var expected = new double[pre.Length];
        for (int i = 0; i < pre.Length; i++)
        {
            double h = 1e-5 * Math.Max(1, Math.Abs(pre[i]));
            expected[i] = r[i] * (Reference.Activate(pre[i] + h, Activation.Gelu) - Reference.Activate(pre[i] - h, Activation.Gelu)) / (2 * h);
        }
        AssertClose(Read(grads), expected, GradientTolerance, "dPre (aliased)");
    }

    [Test]
    public void Linear_ShapeMismatch_ThrowsNamingOpArgumentAndSizes()
    {
        var x = ActZeros(N * H);
        var w = Param(new float[I * H - 1]);
        var output = ActZeros(N * I);
        var e = Assert.Throws<ArgumentException>(() =>
            Backend.Linear(output, TensorRef.Null, x, w, TensorRef.Null, N, H, I, Activation.None));
        Assert.That(e!.Message, Does.Contain("Linear").And.Contain("weight").And.Contain($"{I * H - 1}").And.Contain($"{I * H}"));
    }
}
