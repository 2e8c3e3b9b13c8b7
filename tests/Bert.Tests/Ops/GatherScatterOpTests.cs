using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>GatherRows, ScatterAddRows.</summary>
public abstract class GatherScatterOpTests : OpTestBase
{
    private const int P = 4;

    /// <summary>[B·P] positions in [0,S) with repeats (padding entries at 0, as the batch builder writes them).</summary>
    private static int[] Positions() => [1, 3, 6, 0, /**/ 2, 2, 0, 0, /**/ 5, 4, 0, 6];

    [Test]
    public void GatherRows_MatchesReference()
    {
        var rng = new Random(50);
        var input = RandomFloats(rng, N * H);
        var output = ActZeros(B * P * H);
        Backend.GatherRows(output, Act(input), Ints(Positions()), B, S, P, H);
        AssertClose(Read(output), Reference.GatherRows(D(input), Positions(), B, S, P, H), Tolerance, "output");
    }

    [Test]
    public void ScatterAddRows_AccumulatesRepeatedPositions()
    {
        var rng = new Random(51);
        var prefill = RandomFloats(rng, N * H);
        var dOutput = RandomFloats(rng, B * P * H);
        var dInput = Act(prefill);
        Backend.ScatterAddRows(dInput, Act(dOutput), Ints(Positions()), B, S, P, H);

        var expected = D(prefill);
        var positions = Positions();
        for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++)
        for (int c = 0; c < H; c++)
            expected[(b * S + positions[b * P + p]) * H + c] += dOutput[(b * P + p) * H + c];
        AssertClose(Read(dInput), expected, Tolerance, "dInput (+=)");
    }

    [Test]
    public void ScatterAddRows_IsTheAdjointOfGatherRows()
    {
        // <Gather(x), y> = <x, Scatter(y)> for the gradient to be right.
        var rng = new Random(52);
        var x = RandomFloats(rng, N * H);
        var y = RandomFloats(rng, B * P * H);
        var gathered = ActZeros(B * P * H);
        var positions = Ints(Positions());
        Backend.GatherRows(gathered, Act(x), positions, B, S, P, H);
        var scattered = Act(new float[N * H]);
        Backend.ScatterAddRows(scattered, Act(y), positions, B, S, P, H);
        double left = Reference.Dot(D(Read(gathered)), D(y));
        double right = Reference.Dot(D(x), D(Read(scattered)));
        Assert.That(left, Is.EqualTo(right).Within(Tolerance * 10 * Math.Abs(right)));
    }

    [Test]
    public void GatherRows_ShapeMismatch_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            Backend.GatherRows(ActZeros(B * P * H - 1), ActZeros(N * H), Ints(Positions()), B, S, P, H));
        Assert.That(e!.Message, Does.Contain("GatherRows").And.Contain("output"));
    }
}
