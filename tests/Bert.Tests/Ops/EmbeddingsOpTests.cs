using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Ops;

/// <summary>EmbeddingsForward, EmbeddingsBackward.</summary>
public abstract class EmbeddingsOpTests : OpTestBase
{
    internal const int Types = 2;
    internal const float Eps = 1e-12f;

    internal sealed record Inputs(int[] Ids, int[] TypeIds, float[] Word, float[] Pos, float[] Type, float[] Gamma, float[] Beta);

    internal static Inputs MakeInputs(int seed)
    {
        var rng = new Random(seed);
        var ids = new int[N];
        var types = new int[N];
        for (int r = 0; r < N; r++)
        {
            // Repeated ids (small range) so the table gradient must sum rows.
            ids[r] = r % 5 == 0 ? 7 : rng.Next(V);
            types[r] = (r % S) >= 4 ? 1 : 0;
        }
        return new Inputs(ids, types, RandomFloats(rng, V * H, 0.5), RandomFloats(rng, S * H, 0.5), RandomFloats(rng, Types * H, 0.5),
            RandomFloats(rng, H, 0.3, 1.0), RandomFloats(rng, H, 0.3));
    }

    [TestCase(0f)]
    [TestCase(0.1f)]
    public void EmbeddingsForward_MatchesReference(float p)
    {
        var x = MakeInputs(20);
        var dropout = new DropoutSpec(p, 99, 3, 1);
        var expected = Reference.Embeddings(x.Ids, x.TypeIds, D(x.Word), D(x.Pos), D(x.Type), D(x.Gamma), D(x.Beta),
            B, S, H, Eps, dropout, out var sum, out var mean, out var rstd);

        var output = ActZeros(N * H);
        var sumT = ActZeros(N * H);
        var meanT = Param(new float[N]);
        var rstdT = Param(new float[N]);
        Backend.EmbeddingsForward(output, sumT, meanT, rstdT, Ints(x.Ids), Ints(x.TypeIds), Param(x.Word), Param(x.Pos), Param(x.Type),
            Param(x.Gamma), Param(x.Beta), B, S, H, Eps, dropout);

        AssertClose(Read(output), expected, Tolerance, "output");
        AssertClose(Read(sumT), sum, Tolerance, "sum");
        AssertClose(Read(meanT), mean, Tolerance, "mean");
        AssertClose(Read(rstdT), rstd, Tolerance, "rstd");
        if (p > 0)
        {
            var o = Read(output);
            int zeros = o.Count(v => v == 0f);
            Assert.That(zeros, Is.InRange(1, N * H / 4), "dropout zeroes about p of the elements");
        }
    }

    [TestCase(0f)]
    [TestCase(0.1f)]
    public void EmbeddingsBackward_MatchesFiniteDifferencesAndAccumulates(float p)
    {
        var x = MakeInputs(21);
        var dropout = new DropoutSpec(p, 5, 8, 2);
        var rng = new Random(22);
        var r = RandomFloats(rng, N * H);

        var output = ActZeros(N * H);
        var sumT = ActZeros(N * H);
        var meanT = Param(new float[N]);
        var rstdT = Param(new float[N]);
        var ids = Ints(x.Ids);
        var types = Ints(x.TypeIds);
        var gamma = Param(x.Gamma);
        Backend.EmbeddingsForward(output, sumT, meanT, rstdT, ids, types, Param(x.Word), Param(x.Pos), Param(x.Type),
            gamma, Param(x.Beta), B, S, H, Eps, dropout);

        var prefill = RandomFloats(rng, V * H + S * H + Types * H + 2 * H);
        var dWordPre = prefill[..(V * H)];
        var dPosPre = prefill[(V * H)..(V * H + S * H)];
        var dTypePre = prefill[(V * H + S * H)..(V * H + S * H + Types * H)];
        var dGammaPre = prefill[^(2 * H)..^H];
        var dBetaPre = prefill[^H..];
        TensorRef dWord = Param(dWordPre), dPos = Param(dPosPre), dType = Param(dTypePre), dGamma = Param(dGammaPre), dBeta = Param(dBetaPre);
        Backend.EmbeddingsBackward(dWord, dPos, dType, dGamma, dBeta, ActZeros(N * H), Act(r), sumT, meanT, rstdT,
            ids, types, gamma, B, S, H, dropout);

        double[] word = D(x.Word), pos = D(x.Pos), type = D(x.Type), g = D(x.Gamma), be = D(x.Beta), rd = D(r);
        double[] F(double[] w, double[] ps, double[] t, double[] ga, double[] bt) =>
            Reference.Embeddings(x.Ids, x.TypeIds, w, ps, t, ga, bt, B, S, H, Eps, dropout, out _, out _, out _);
        AssertClose(Read(dWord), Plus(Reference.Gradient(v => F(v, pos, type, g, be), word, rd), dWordPre), GradientTolerance, "dWordEmb");
        AssertClose(Read(dPos), Plus(Reference.Gradient(v => F(word, v, type, g, be), pos, rd), dPosPre), GradientTolerance, "dPosEmb");
        AssertClose(Read(dType), Plus(Reference.Gradient(v => F(word, pos, v, g, be), type, rd), dTypePre), GradientTolerance, "dTypeEmb");
        AssertClose(Read(dGamma), Plus(Reference.Gradient(v => F(word, pos, type, v, be), g, rd), dGammaPre), GradientTolerance, "dGamma");
        AssertClose(Read(dBeta), Plus(Reference.Gradient(v => F(word, pos, type, g, v), be, rd), dBetaPre), GradientTolerance, "dBeta");
    }
}
