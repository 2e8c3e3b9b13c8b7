using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>SoftmaxCrossEntropy (fused loss, gradient and statistics).</summary>
public abstract class SoftmaxCrossEntropyOpTests : OpTestBase
{
    private const int C = V;

    private static int[] Labels(Random rng)
    {
        var labels = new int[N];
        for (int r = 0; r < N; r++) labels[r] = rng.Next(C);
        return labels;
    }

    private static float[] Weights()
    {
        var w = new float[N];
        for (int r = 0; r < N; r++) w[r] = r % 4 == 3 ? 0f : 1f;
        return w;
    }

    [TestCase(true)]
    [TestCase(false)]
    public void SoftmaxCrossEntropy_GradientMatchesFiniteDifferences_StatsMatchReference(bool withWeights)
    {
        var rng = new Random(70);
        var logits = RandomFloats(rng, N * C, 2);
        var labels = Labels(rng);
        // Some rows predict their label, so the correct count is not trivially 0.
        for (int r = 0; r < N; r += 3) logits[r * C + labels[r]] += 10f;
        float[]? weights = withWeights ? Weights() : null;
        float gradScale = 1f / ((weights?.Sum() ?? N) + 1e-5f);

        var dLogits = ActZeros(N * C);
        var stats = Param(new float[3]);
        Backend.SoftmaxCrossEntropy(dLogits, stats, Act(logits), Ints(labels), weights is null ? TensorRef.Null : Param(weights), N, C, gradScale);

        double[]? wd = weights is null ? null : D(weights);
        var analytic = Reference.SoftmaxCrossEntropy(D(logits), labels, wd, N, C, gradScale, out var expectedStats);
        var fd = Reference.Gradient(x =>
        {
            Reference.SoftmaxCrossEntropy(x, labels, wd, N, C, gradScale, out var s);
            return s[0];
        }, D(logits));
        var actual = Read(dLogits);
        AssertClose(actual, fd, GradientTolerance, "dLogits vs finite differences of stats[0]");
        AssertClose(actual, analytic, GradientTolerance, "dLogits vs analytic");
        var st = Read(stats);
        Assert.That(st[0], Is.EqualTo(expectedStats[0]).Within(Tolerance * Math.Abs(expectedStats[0])), "stats[0] = gradScale·Σ w·CE");
        Assert.That(st[1], Is.EqualTo(expectedStats[1]), "stats[1] = Σ w·[argmax = label]");
        Assert.That(expectedStats[1], Is.GreaterThan(0));
        Assert.That(st[2], Is.EqualTo(expectedStats[2]), "stats[2] = Σ w");
    }

    [Test]
    public void SoftmaxCrossEntropy_InPlace_dLogitsAliasesLogits()
    {
        var rng = new Random(71);
        var logits = RandomFloats(rng, N * C, 2);
        var labels = Labels(rng);
        var t = Act(logits);
        var stats = Param(new float[3]);
        Backend.SoftmaxCrossEntropy(t, stats, t, Ints(labels), Param(Weights()), N, C, 0.5f);
        var expected = Reference.SoftmaxCrossEntropy(D(logits), labels, D(Weights()), N, C, 0.5, out var expectedStats);
        AssertClose(Read(t), expected, GradientTolerance, "dLogits (aliased)");
        Assert.That(Read(stats)[0], Is.EqualTo(expectedStats[0]).Within(Tolerance * Math.Abs(expectedStats[0])));
    }

    [Test]
    public void SoftmaxCrossEntropy_IsStableForLargeLogits()
    {
        var rng = new Random(72);
        var logits = RandomFloats(rng, N * C, 30, 1e4);
        var labels = Labels(rng);
        var dLogits = ActZeros(N * C);
        var stats = Param(new float[3]);
        Backend.SoftmaxCrossEntropy(dLogits, stats, Act(logits), Ints(labels), TensorRef.Null, N, C, 1f / N);
        var expected = Reference.SoftmaxCrossEntropy(D(logits), labels, null, N, C, 1.0 / N, out var expectedStats);
        AssertClose(Read(dLogits), expected, GradientTolerance, "dLogits");
        var st = Read(stats);
        Assert.That(float.IsFinite(st[0]), Is.True);
        Assert.That(st[0], Is.EqualTo(expectedStats[0]).Within(1e-4 * Math.Abs(expectedStats[0])));
    }
}
