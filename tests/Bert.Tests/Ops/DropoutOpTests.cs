using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>Dropout (and the mask convention every dropout site shares).</summary>
public abstract class DropoutOpTests : OpTestBase
{
    private const int Count = N * I; // odd, not a multiple of 4 or of a vector

    [Test]
    public void Dropout_MatchesReferenceMask()
    {
        var rng = new Random(60);
        var x = RandomFloats(rng, Count);
        var spec = new DropoutSpec(0.1f, 42, 7, 3);
        var output = ActZeros(Count);
        Backend.Dropout(output, Act(x), Count, spec);
        var expected = Reference.Dropout(D(x), spec);
        AssertClose(Read(output), expected, Tolerance, "output");
        var actual = Read(output);
        for (int i = 0; i < Count; i++)
            Assert.That(actual[i] == 0f, Is.EqualTo(!spec.Keep(i)), $"element {i}: kept must follow DropoutSpec.Keep({i})");
    }

    [Test]
    public void Dropout_Inactive_Copies()
    {
        var x = RandomFloats(new Random(61), Count);
        var output = ActZeros(Count);
        Backend.Dropout(output, Act(x), Count, DropoutSpec.None);
        AssertClose(Read(output), x, Tolerance, "output");
    }

    [Test]
    public void Dropout_InPlace()
    {
        var x = RandomFloats(new Random(62), Count);
        var spec = new DropoutSpec(0.1f, 43, 1, 1);
        var t = Act(x);
        Backend.Dropout(t, t, Count, spec);
        AssertClose(Read(t), Reference.Dropout(D(x), spec), Tolerance, "output (aliased)");
    }

    [Test]
    public void Dropout_IsSelfAdjoint()
    {
        var rng = new Random(63);
        var x = RandomFloats(rng, Count);
        var y = RandomFloats(rng, Count);
        var spec = new DropoutSpec(0.1f, 44, 2, 2);
        var dx = ActZeros(Count);
        var dy = ActZeros(Count);
        Backend.Dropout(dx, Act(x), Count, spec);
        Backend.Dropout(dy, Act(y), Count, spec);
        double left = Reference.Dot(D(Read(dx)), D(y));
        double right = Reference.Dot(D(x), D(Read(dy)));
        Assert.That(left, Is.EqualTo(right).Within(Tolerance * 10 * Reference.Dot(D(x), D(x))));
    }

    [Test]
    public void Dropout_KeepsAboutOneMinusPAndScales()
    {
        const int n = 100_003;
        var ones = new float[n];
        Array.Fill(ones, 1f);
        var spec = new DropoutSpec(0.25f, 45, 3, 3);
        var output = ActZeros(n);
        Backend.Dropout(output, Act(ones), n, spec);
        var y = Read(output);
        int kept = y.Count(v => v != 0f);
        Assert.That(kept / (double)n, Is.EqualTo(0.75).Within(0.01));
        Assert.That(y.Where(v => v != 0f), Is.All.EqualTo(1f / 0.75f).Within(1e-2), "kept elements are scaled by 1/(1−p)");
    }

    [Test]
    public void Dropout_SameSpecGivesSameMask_OtherStepStreamOrSeedDiffers()
    {
        var ones = new float[Count];
        Array.Fill(ones, 1f);
        var input = Act(ones);
        bool[] Mask(DropoutSpec spec)
        {
            var output = ActZeros(Count);
            Backend.Dropout(output, input, Count, spec);
            return Read(output).Select(v => v != 0f).ToArray();
        }
        var baseline = new DropoutSpec(0.1f, 46, 4, 4);
        Assert.That(Mask(baseline), Is.EqualTo(Mask(baseline)), "same spec, same mask");
        Assert.That(Mask(baseline with { Step = 5 }), Is.Not.EqualTo(Mask(baseline)), "another step");
        Assert.That(Mask(baseline with { Stream = 5 }), Is.Not.EqualTo(Mask(baseline)), "another stream");
        Assert.That(Mask(baseline with { Seed = 47 }), Is.Not.EqualTo(Mask(baseline)), "another seed");
    }
}
