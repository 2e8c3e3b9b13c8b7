using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>LayerNorm, LayerNormBackward, ResidualLayerNorm, ResidualLayerNormBackward.</summary>
public abstract class LayerNormOpTests : OpTestBase
{
    private const float Eps = 1e-5f;

    [Test]
    public void LayerNorm_MatchesReference()
    {
        var rng = new Random(30);
        var x = RandomFloats(rng, N * H, 2, 0.5);
        var gamma = RandomFloats(rng, H, 0.3, 1);
        var beta = RandomFloats(rng, H, 0.3);
        var expected = Reference.LayerNorm(D(x), D(gamma), D(beta), N, H, Eps, out var mean, out var rstd);
        var output = ActZeros(N * H);
        var meanT = Param(new float[N]);
        var rstdT = Param(new float[N]);
        Backend.LayerNorm(output, meanT, rstdT, Act(x), Param(gamma), Param(beta), N, H, Eps);
        AssertClose(Read(output), expected, Tolerance, "output");
        AssertClose(Read(meanT), mean, Tolerance, "mean");
        AssertClose(Read(rstdT), rstd, Tolerance, "rstd");
    }

    [Test]
    public void LayerNormBackward_MatchesFiniteDifferencesAndAccumulates()
    {
        var rng = new Random(31);
        var x = RandomFloats(rng, N * H, 2, 0.5);
        var gamma = RandomFloats(rng, H, 0.3, 1);
        var beta = RandomFloats(rng, H, 0.3);
        var r = RandomFloats(rng, N * H);
        var dGammaPre = RandomFloats(rng, H);
        var dBetaPre = RandomFloats(rng, H);

        var input = Act(x);
        var gammaT = Param(gamma);
        var meanT = Param(new float[N]);
        var rstdT = Param(new float[N]);
        Backend.LayerNorm(ActZeros(N * H), meanT, rstdT, input, gammaT, Param(beta), N, H, Eps);
        var dIn = Act(RandomFloats(rng, N * H));
        var dGamma = Param(dGammaPre);
        var dBeta = Param(dBetaPre);
        Backend.LayerNormBackward(dIn, dGamma, dBeta, Act(r), input, meanT, rstdT, gammaT, N, H);

        double[] xd = D(x), g = D(gamma), bt = D(beta), rd = D(r);
        var gx = Reference.Gradient(v => Reference.LayerNorm(v, g, bt, N, H, Eps, out _, out _), xd, rd);
        var gg = Reference.Gradient(v => Reference.LayerNorm(xd, v, bt, N, H, Eps, out _, out _), g, rd);
        var gb = Reference.Gradient(v => Reference.LayerNorm(xd, g, v, N, H, Eps, out _, out _), bt, rd);
        AssertClose(Read(dIn), gx, GradientTolerance, "dInput (=)");
        AssertClose(Read(dGamma), Plus(gg, dGammaPre), GradientTolerance, "dGamma (+=)");
        AssertClose(Read(dBeta), Plus(gb, dBetaPre), GradientTolerance, "dBeta (+=)");

        var analytic = Reference.LayerNormBackward(rd, xd, g, N, H, Eps, out _, out _);
        AssertClose(Read(dIn), analytic, GradientTolerance, "dInput vs analytic");
    }

    [TestCase(0f)]
    [TestCase(0.1f)]
    public void ResidualLayerNorm_MatchesReference(float p)
    {
        var rng = new Random(32);
        var residual = RandomFloats(rng, N * H);
        var branch = RandomFloats(rng, N * H);
        var gamma = RandomFloats(rng, H, 0.3, 1);
        var beta = RandomFloats(rng, H, 0.3);
        var dropout = new DropoutSpec(p, 77, 4, 9);
        var expected = Reference.ResidualLayerNorm(D(residual), D(branch), D(gamma), D(beta), N, H, Eps, dropout,
            out var sum, out var mean, out var rstd);
        var output = ActZeros(N * H);
        var sumT = ActZeros(N * H);
        var meanT = Param(new float[N]);
        var rstdT = Param(new float[N]);
        Backend.ResidualLayerNorm(output, sumT, meanT, rstdT, Act(residual), Act(branch), Param(gamma), Param(beta), N, H, Eps, dropout);
        AssertClose(Read(output), expected, Tolerance, "output");
        AssertClose(Read(sumT), sum, Tolerance, "sum");
        AssertClose(Read(meanT), mean, Tolerance, "mean");
        AssertClose(Read(rstdT), rstd, Tolerance, "rstd");
    }

    [TestCase(0f, false)]
    [TestCase(0.1f, false)]
    [TestCase(0.1f, true)]
    public void ResidualLayerNormBackward_MatchesFiniteDifferences(float p, bool dResidualAliasesDOutput)
    {
        var rng = new Random(33);
        var residual = RandomFloats(rng, N * H);
        var branch = RandomFloats(rng, N * H);
        var gamma = RandomFloats(rng, H, 0.3, 1);
        var beta = RandomFloats(rng, H, 0.3);
        var r = RandomFloats(rng, N * H);
        var dGammaPre = RandomFloats(rng, H);
        var dBetaPre = RandomFloats(rng, H);
        var dropout = new DropoutSpec(p, 78, 5, 10);

        var sumT = ActZeros(N * H);
        var meanT = Param(new float[N]);
        var rstdT = Param(new float[N]);
        var gammaT = Param(gamma);
        Backend.ResidualLayerNorm(ActZeros(N * H), sumT, meanT, rstdT, Act(residual), Act(branch), gammaT, Param(beta), N, H, Eps, dropout);

        var dOutput = Act(r);
        var dResidual = dResidualAliasesDOutput ? dOutput : Act(RandomFloats(rng, N * H));
        var dBranch = Act(RandomFloats(rng, N * H));
        var dGamma = Param(dGammaPre);
        var dBeta = Param(dBetaPre);
        Backend.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sumT, meanT, rstdT, gammaT, N, H, dropout);

        double[] res = D(residual), br = D(branch), g = D(gamma), bt = D(beta), rd = D(r);
        double[] F(double[] a, double[] b, double[] ga, double[] be) =>
            Reference.ResidualLayerNorm(a, b, ga, be, N, H, Eps, dropout, out _, out _, out _);
        AssertClose(Read(dResidual), Reference.Gradient(v => F(v, br, g, bt), res, rd), GradientTolerance, "dResidual");
        AssertClose(Read(dBranch), Reference.Gradient(v => F(res, v, g, bt), br, rd), GradientTolerance, "dBranch");
        AssertClose(Read(dGamma), Plus(Reference.Gradient(v => F(res, br, v, bt), g, rd), dGammaPre), GradientTolerance, "dGamma (+=)");
        AssertClose(Read(dBeta), Plus(Reference.Gradient(v => F(res, br, g, v), bt, rd), dBetaPre), GradientTolerance, "dBeta (+=)");
    }

    [Test]
    public void LayerNorm_OddHiddenManyRows_MatchesReferenceAndAnalyticBackward()
    {
        // Odd hidden exercises the non-vector tails; 2000 rows span several row chunks, so the
        // dGamma/dBeta partial sums are reduced across chunks.
        const int rows = 2000, hidden = I;
        var rng = new Random(34);
        var x = RandomFloats(rng, rows * hidden, 1.5, -0.3);
        var gamma = RandomFloats(rng, hidden, 0.3, 1);
        var beta = RandomFloats(rng, hidden, 0.3);
        var r = RandomFloats(rng, rows * hidden);
        var dGammaPre = RandomFloats(rng, hidden);
        var dBetaPre = RandomFloats(rng, hidden);

        var input = Act(x);
        var gammaT = Param(gamma);
        var output = ActZeros(rows * hidden);
        var meanT = Param(new float[rows]);
        var rstdT = Param(new float[rows]);
        Backend.LayerNorm(output, meanT, rstdT, input, gammaT, Param(beta), rows, hidden, Eps);
        AssertClose(Read(output), Reference.LayerNorm(D(x), D(gamma), D(beta), rows, hidden, Eps, out _, out _), Tolerance, "output");

        var dIn = ActZeros(rows * hidden);
        var dGamma = Param(dGammaPre);
        var dBeta = Param(dBetaPre);
        Backend.LayerNormBackward(dIn, dGamma, dBeta, Act(r), input, meanT, rstdT, gammaT, rows, hidden);
        var expected = Reference.LayerNormBackward(D(r), D(x), D(gamma), rows, hidden, Eps, out var gg, out var gb);
        AssertClose(Read(dIn), expected, GradientTolerance, "dInput");
        AssertClose(Read(dGamma), Plus(gg, dGammaPre), GradientTolerance, "dGamma (+=)");
        AssertClose(Read(dBeta), Plus(gb, dBetaPre), GradientTolerance, "dBeta (+=)");
    }
}
