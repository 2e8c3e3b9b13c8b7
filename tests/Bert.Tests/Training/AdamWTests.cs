using Bert.Runtime;
using Bert.Runtime.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Training;

/// <summary>AdamWOptimizer on the tiny preset's real parameter table against a double-precision
/// reference: bias correction, decoupled weight decay on the decayed rows only, global-norm clipping.</summary>
public class AdamWTests
{
    private const float Lr = 1e-2f;

    /// <summary>A gradient with a known global norm: pseudo-random values, but zero on the first
    /// half of every tensor so that those elements show the decay term alone.</summary>
    private static float[] Gradient(BertModelBase model, double norm, int seed)
    {
        var rng = new Random(seed);
        var g = new float[model.ParameterTotal];
        foreach (var p in model.ParameterTable)
            for (long i = p.Count / 2; i < p.Count; i++)
                g[p.Offset + i] = (float)(rng.NextDouble() * 2 - 1);
        double sq = g.Sum(x => (double)x * x);
        float scale = (float)(norm / Math.Sqrt(sq));
        for (int i = 0; i < g.Length; i++) g[i] *= scale;
        return g;
    }

    /// <summary>Whether element i takes weight decay, from the table's flags alone.</summary>
    private static bool[] DecayMask(BertModelBase model)
    {
        var mask = new bool[model.ParameterTotal];
        foreach (var p in model.ParameterTable)
            if (p.Decay) Array.Fill(mask, true, (int)p.Offset, (int)p.Count);
        return mask;
    }

    [Test]
    public void DecayedParametersComeFirstAndExcludeLayerNormAndBiases()
    {
        using var backend = NewBackend();
        using var model = Tiny(backend, 1, 8, 2);
        var table = model.ParameterTable;
        int decayedRows = table.TakeWhile(p => p.Decay).Count();
        Assert.Multiple(() =>
        {
            Assert.That(table.Skip(decayedRows).Any(p => p.Decay), Is.False, "decayed rows are one prefix of the table");
            Assert.That(model.DecayedParameterCount, Is.EqualTo(table[decayedRows].Offset), "DecayedParameterCount ends the prefix");
            Assert.That(table.Where(p => p.Name.Contains("LayerNorm") || p.Name.EndsWith(".bias", StringComparison.Ordinal)).All(p => !p.Decay),
                "LayerNorm weights and biases take no decay");
            Assert.That(table.Where(p => p.Name.EndsWith("embeddings.weight", StringComparison.Ordinal) || p.Name.EndsWith("dense.weight", StringComparison.Ordinal)).All(p => p.Decay),
                "embeddings and Linear weights take decay");
        });
    }

    [Test]
    public void TwoStepsMatchHandComputedAdamWWithDecayOnlyOnDecayedRows()
    {
        using var backend = NewBackend();
        using var model = Tiny(backend, 1, 8, 2);
        model.InitializeParameters(3);
        var options = new AdamWOptions();
        using var adam = new AdamWOptimizer(model, options);
        var decays = DecayMask(model);
        long n = model.ParameterTotal;

        var p = Download(backend, model.Parameters).Select(x => (double)x).ToArray();
        var p0 = Download(backend, model.Parameters);
        var m = new double[n];
        var v = new double[n];
        float[] after1 = [];
        for (int t = 1; t <= 2; t++)
        {
            var g = Gradient(model, 0.5, seed: t);   // norm < 1: no clipping
            backend.Upload<float>(model.Gradients, g);
            adam.Step(t, Lr);
            double c1 = 1 - Math.Pow(options.Beta1, t), c2 = 1 - Math.Pow(options.Beta2, t);
            for (long i = 0; i < n; i++)
            {
                m[i] = options.Beta1 * m[i] + (1 - options.Beta1) * g[i];
                v[i] = options.Beta2 * v[i] + (1 - options.Beta2) * (double)g[i] * g[i];
                double update = m[i] / c1 / (Math.Sqrt(v[i] / c2) + options.Epsilon);
                p[i] -= Lr * (update + (decays[i] ? options.WeightDecay * p[i] : 0));
            }
            var actual = Download(backend, model.Parameters);
            for (long i = 0; i < n; i++)
                if (Math.Abs(actual[i] - p[i]) > 1e-6 * Math.Abs(p[i]) + 1e-8)
                {
                    var row = model.ParameterTable.Last(r => r.Offset <= i);
                    Assert.Fail($"step {t}: {row.Name}[{i - row.Offset}] is {actual[i]:R}, reference {p[i]:R}");
                }
            if (t == 1) after1 = actual;
        }

        // Elements with a zero gradient: a decayed weight shrinks by exactly the decay term, a
        // LayerNorm weight or bias stays bit-for-bit what it was.
        int decayedSeen = 0, keptSeen = 0;
        foreach (var row in model.ParameterTable)
        {
            long i = row.Offset;   // first element: zero gradient in both steps
            if (row.Decay)
            {
                double expected = p0[i] * (1 - (double)Lr * options.WeightDecay);
                Assert.That(after1[i], Is.EqualTo(expected).Within(1e-7 * Math.Abs(expected) + 1e-12), $"{row.Name}: decay term only");
                if (p0[i] != 0) Assert.That(after1[i], Is.Not.EqualTo(p0[i]), $"{row.Name} decays");
                decayedSeen++;
            }
            else
            {
                Assert.That(after1[i], Is.EqualTo(p0[i]), $"{row.Name} takes no decay");
                keptSeen++;
            }
        }
        Assert.That((decayedSeen, keptSeen), Is.EqualTo((model.ParameterTable.Count(r => r.Decay), model.ParameterTable.Count(r => !r.Decay))));
        Assert.That(keptSeen, Is.GreaterThan(10), "the tiny preset has LayerNorm and bias rows");
    }

    [TestCase(4.0, 1.0f, TestName = "a gradient of norm 4 is clipped to norm 1")]
    [TestCase(0.5, 1.0f, TestName = "a gradient of norm 0.5 is not clipped")]
    [TestCase(4.0, 0f, TestName = "MaxGradNorm 0 disables clipping")]
    public void ClipsToTheGlobalNorm(double norm, float maxNorm)
    {
        using var backend = NewBackend();
        using var model = Tiny(backend, 1, 8, 2);
        model.InitializeParameters(3);
        var options = new AdamWOptions { MaxGradNorm = maxNorm };
        using var adam = new AdamWOptimizer(model, options);
        var g = Gradient(model, norm, seed: 9);
        backend.Upload<float>(model.Gradients, g);
        adam.Step(1, Lr);

        var normSquared = new float[1];
        backend.Download<float>(normSquared, adam.GradNormSquared);
        Assert.That(normSquared[0], Is.EqualTo(norm * norm).Within(1e-5 * norm * norm), "global squared norm");
        double clip = maxNorm > 0 ? Math.Min(1.0, maxNorm / (norm + 1e-6)) : 1.0;
        var m = Download(backend, adam.M);
        var v = Download(backend, adam.V);
        for (int i = 0; i < g.Length; i++)
        {
            double gc = g[i] * clip, em = (1 - options.Beta1) * gc, ev = (1 - options.Beta2) * gc * gc;
            if (Math.Abs(m[i] - em) > 1e-6 * Math.Abs(em) + 1e-12 || Math.Abs(v[i] - ev) > 1e-5 * ev + 1e-20)
                Assert.Fail($"element {i}: m {m[i]:R} (expected {em:R}), v {v[i]:R} (expected {ev:R})");
        }
        double clippedNorm = Math.Sqrt(m.Sum(x => (double)x * x)) / (1 - options.Beta1);
        Assert.That(clippedNorm, Is.EqualTo(maxNorm > 0 ? Math.Min(norm, maxNorm) : norm).Within(1e-4), "norm of the gradient AdamW used");
    }
}
