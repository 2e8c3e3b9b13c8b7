using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Tests.Generator;
using NUnit.Framework;

namespace Bert.Tests.Model;

/// <summary>
/// The generated Forward/Backward of whole models on the CPU backend against finite differences of the
/// loss (<see cref="GradientCheck"/>): every parameter tensor of the odd pretraining model and of a
/// sequence-classification, a token-classification (with an untied MLM decoder) and a span model,
/// with dropout off and with dropout on (fixed seed and step: the masks are a pure function of them,
/// so the loss stays a smooth function of the weights). Weights: <see cref="TestWeights"/>.
/// Then the check itself is shown to fail on injected bugs.
/// </summary>
[TestFixture]
public class WholeModelGradientTests
{
    private const int B = 3, S = 7, P = 3;
    private const ulong WeightSeed = 11, DropoutSeed = 1234;
    private const uint DropoutStep = 5;

    public delegate BertModelBase Factory(IBackend backend, int maxBatch, int maxSeq, int maxPredictions);

    private CpuBackend _backend = null!;

    [OneTimeSetUp]
    public void CreateBackend() => _backend = new CpuBackend();

    [OneTimeTearDown]
    public void DisposeBackend() => _backend.Dispose();

    private static readonly (string Name, Factory Create)[] Models =
    [
        ("OddModel", (b, n, s, p) => new OddModel(b, n, s, p)),
        ("GradSequenceClassifier", (b, n, s, p) => new GradSequenceClassifier(b, n, s, p)),
        ("GradTokenClassifier", (b, n, s, p) => new GradTokenClassifier(b, n, s, p)),
        ("GradSpanReader", (b, n, s, p) => new GradSpanReader(b, n, s, p)),
    ];

    public static IEnumerable<TestCaseData> Cases() =>
        from m in Models
        from dropout in new[] { false, true }
        select new TestCaseData(m.Create, dropout).SetArgDisplayNames(m.Name, dropout ? "dropout-on" : "dropout-off");

    private static BertModelBase Build(IBackend backend, Factory create, bool dropout)
    {
        var model = create(backend, B, S, P);
        TestWeights.Apply(model, WeightSeed);
        model.Training = dropout;
        model.Seed = DropoutSeed;
        model.DropoutStep = DropoutStep;
        return model;
    }

    private static HostInputs Inputs(BertModelBase model) => HostInputs.Create(model.Config, B, S, P, seed: 3);

    /// <summary>Word-embedding rows the inputs use, and one they do not: with a tied decoder the latter's
    /// gradient comes from the MLM decoder alone.</summary>
    private static Func<ParameterInfo, IEnumerable<long>> WordEmbeddingRows(HostInputs inputs, int hidden) => p =>
    {
        if (p.Name != "bert.embeddings.word_embeddings.weight") return [];
        int used = inputs.InputIds[1];
        int unused = Enumerable.Range(0, p.Shape[0]).First(r => !inputs.InputIds.Contains(r));
        return [(long)used * hidden + 5, (long)unused * hidden + 7];
    };

    [TestCaseSource(nameof(Cases))]
    public void EveryParameterTensor_MatchesFiniteDifferences(Factory create, bool dropout)
    {
        using var model = Build(_backend, create, dropout);
        var host = Inputs(model);
        using var inputs = new DeviceInputs(_backend, host, model.Config);

        var result = GradientCheck.Run(model, inputs.Batch, include: WordEmbeddingRows(host, model.Config.Hidden));

        Assert.That(double.IsFinite(result.Loss) && result.Loss > 0, $"loss {result.Loss}");
        var table = model.ParameterTable;
        Assert.That(result.Samples.Select(s => s.Row).Distinct().Count(), Is.EqualTo(table.Count), "every parameter tensor is checked");
        Assert.That(result.Failures, Is.Empty, result.Report());

        // Not vacuous: in every tensor the largest checked gradient is big enough that an error of half
        // of it would fail (most tensors: a tenth; the query biases, whose gradients are small, a half),
        // except in the tensors whose gradient is zero by construction, where it must indeed be zero.
        var byTensor = result.Samples.GroupBy(s => s.Tensor).ToDictionary(g => g.Key, g => g.Max(s => Math.Abs(s.Numeric)));
        double detectable = GradientCheck.Absolute / (0.5 - 1.5 * GradientCheck.Relative);
        var expectedZero = table.Where(p => StructurallyZero(model.Config, p.Name)).Select(p => p.Name).ToList();
        Assert.That(byTensor.Where(t => t.Value < detectable).Select(t => t.Key), Is.EquivalentTo(expectedZero),
            "tensors whose checked gradients are too small to test should be exactly those that are zero by construction");
        foreach (var name in expectedZero)
        {
            var p = table[model.ParameterIndex(name)];
            float largest = result.Gradients.AsSpan((int)p.Offset, (int)p.Count).ToArray().Max(Math.Abs);
            Assert.That(largest, Is.LessThan(1e-6), $"{name}: its gradient is zero by construction");
        }
        TestContext.Out.WriteLine($"{model.Config.Name}, dropout {(dropout ? "on" : "off")}: loss {result.Loss:F6}, " +
            $"{result.Samples.Count} elements of {table.Count} tensors, worst |fd − an| / allowed " +
            $"{result.Samples.Max(s => s.Error / s.Allowed):F3}, median relative error " +
            $"{Median(result.Samples.Where(s => Math.Abs(s.Numeric) > 1e-3).Select(s => s.Error / Math.Abs(s.Numeric))):g3}");
    }

    /// <summary>Tensors whose loss gradient vanishes identically: a softmax is invariant to adding the same
    /// value to all of its inputs. The key bias adds q·b to every score of a query's row; the span head's
    /// bias, and the last LayerNorm's bias feeding only the span head, shift all start (end) logits of a
    /// sequence by the same amount.</summary>
    private static bool StructurallyZero(BertConfig c, string name) =>
        name.EndsWith(".attention.self.key.bias", StringComparison.Ordinal)
        || c.HasSpanHead && !c.HasMlmHead && !c.HasPooler && c.TokenClassificationLabels == 0
           && (name == "qa_outputs.bias" || name == $"bert.encoder.layer.{c.Layers - 1}.output.LayerNorm.bias");

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length == 0 ? double.NaN : v[v.Length / 2];
    }

    [Test]
    public void DropoutOn_ChangesTheLoss_SoTheDropoutCasesCheckTheMasks()
    {
        double Loss(bool dropout, uint step)
        {
            using var model = Build(_backend, (b, n, s, p) => new OddModel(b, n, s, p), dropout);
            model.DropoutStep = step;
            using var inputs = new DeviceInputs(_backend, Inputs(model), model.Config);
            model.Forward(inputs.Batch);
            return ModelLoss.Total(model);
        }
        double off = Loss(false, DropoutStep), on = Loss(true, DropoutStep);
        Assert.That(Math.Abs(on - off), Is.GreaterThan(1e-3), "dropout on should change the loss");
        Assert.That(Loss(true, DropoutStep), Is.EqualTo(on), "the same seed and step draw the same masks");
        Assert.That(Loss(true, DropoutStep + 1), Is.Not.EqualTo(on), "another step draws other masks");
    }

    // ---- the check can fail ------------------------------------------------------------------------

    [Test]
    public void CorruptedGradientElement_IsCaught()
    {
        using var model = Build(_backend, (b, n, s, p) => new OddModel(b, n, s, p), dropout: false);
        using var inputs = new DeviceInputs(_backend, Inputs(model), model.Config);
        const string target = "bert.encoder.layer.1.intermediate.dense.weight";
        var info = model.ParameterTable[model.ParameterIndex(target)];
        long corrupted = -1;

        // +5% on the tensor's largest gradient element, one of those the check always samples.
        var result = GradientCheck.Run(model, inputs.Batch, tensors: p => p.Name == target, corrupt: g =>
        {
            var span = g.AsSpan((int)info.Offset, (int)info.Count);
            int at = 0;
            for (int i = 1; i < span.Length; i++) if (Math.Abs(span[i]) > Math.Abs(span[at])) at = i;
            span[at] *= 1.05f;
            corrupted = at;
        });

        Assert.That(result.Failures.Select(f => (f.Tensor, f.Index)), Is.EqualTo(new[] { (target, corrupted) }), result.Report());
    }

    [Test]
    public void DroppedBiasGradient_IsCaught_InExactlyTheAffectedTensors()
    {
        using var faulty = new FaultyBackend(_backend, BackwardFault.BiasGradientDropped);
        using var model = Build(faulty, (b, n, s, p) => new OddModel(b, n, s, p), dropout: false);
        using var inputs = new DeviceInputs(faulty, Inputs(model), model.Config);
        Assert.That(model.Config.Intermediate, Is.EqualTo(FaultyBackend.BiasFeatures));

        var result = GradientCheck.Run(model, inputs.Batch);

        Assert.That(result.Failures.Select(f => f.Tensor).Distinct(), Is.EquivalentTo(new[]
        {
            "bert.encoder.layer.0.intermediate.dense.bias",
            "bert.encoder.layer.1.intermediate.dense.bias",
        }), result.Report());
    }

    [Test]
    public void IgnoredDropoutMask_IsCaughtWithDropoutOn_AndInvisibleWithDropoutOff()
    {
        using var faulty = new FaultyBackend(_backend, BackwardFault.ResidualDropoutMaskIgnored);
        // The first layer and the embeddings lie behind every residual dropout site.
        static bool Early(ParameterInfo p) => p.Name.StartsWith("bert.embeddings.", StringComparison.Ordinal)
            || p.Name.StartsWith("bert.encoder.layer.0.", StringComparison.Ordinal);
        GradientCheck.Result Check(bool dropout)
        {
            using var model = Build(faulty, (b, n, s, p) => new OddModel(b, n, s, p), dropout);
            using var inputs = new DeviceInputs(faulty, Inputs(model), model.Config);
            return GradientCheck.Run(model, inputs.Batch, perTensor: 3, tensors: Early);
        }

        Assert.That(Check(dropout: false).Failures, Is.Empty, "without dropout the mask is never used");
        var on = Check(dropout: true);
        Assert.That(on.Failures.Select(f => f.Tensor).Distinct().Count(), Is.GreaterThan(5), on.Report());
    }
}
