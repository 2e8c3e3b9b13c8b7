using Bert.Runtime;
using NUnit.Framework;

namespace Bert.Tests.Generator;

/// <summary>
/// The generated Forward and Backward of every head combination, run on <see cref="PlanCheckingBackend"/>:
/// exact shapes and dtypes at every op, no read of an unwritten activation, the activation plan covers
/// its arenas exactly with disjoint tensors, backward never overwrites what forward saved, and Backward
/// calls the backward of each forward op in exact reverse order with the same weights and dropout masks.
/// The numbers themselves are checked on the CPU backend by the model tests.
/// </summary>
public class GeneratedPassTests
{
    private const int B = 3, S = 7, P = 2;

    public delegate BertModelBase Factory(IBackend backend, int maxBatch, int maxSeq, int maxPredictions);

    public static IEnumerable<TestCaseData> Models()
    {
        var models = new (string Name, Factory Create)[]
        {
            ("OddModel", (b, n, s, p) => new OddModel(b, n, s, p)),
            ("OddClassifier", (b, n, s, p) => new OddClassifier(b, n, s, p)),
            ("OddTagger", (b, n, s, p) => new OddTagger(b, n, s, p)),
            ("OddReader", (b, n, s, p) => new OddReader(b, n, s, p)),
            ("OddUntied", (b, n, s, p) => new OddUntied(b, n, s, p)),
            ("OddModel-vocab-50", (b, n, s, p) => new OddModel(b, n, s, p, OddModel.DefaultConfig with { VocabSize = 50 })),
        };
        foreach (var (name, create) in models)
            foreach (var type in new[] { DType.F32, DType.BF16 })
                yield return new TestCaseData(create, type).SetArgDisplayNames(name, type.ToString());
    }

    /// <summary>A batch with every label the model's heads read, uploaded so it counts as written.</summary>
    private static BertBatch Batch(PlanCheckingBackend backend, BertModelBase model, int batch, int seq, int predictions, bool labels)
    {
        TensorRef I32(long n) => backend.Allocate(n, DType.I32, "batch");
        TensorRef F32(long n) => backend.Allocate(n, DType.F32, "batch");
        var c = model.Config;
        long tokens = (long)batch * seq;
        return new BertBatch
        {
            Batch = batch,
            Seq = seq,
            Predictions = c.HasMlmHead ? predictions : 0,
            InputIds = I32(tokens),
            TokenTypeIds = I32(tokens),
            AttentionMask = I32(tokens),
            MlmPositions = c.HasMlmHead ? I32((long)batch * predictions) : TensorRef.Null,
            MlmLabels = c.HasMlmHead && labels ? I32((long)batch * predictions) : TensorRef.Null,
            MlmWeights = c.HasMlmHead && labels ? F32((long)batch * predictions) : TensorRef.Null,
            MlmGradScale = 0.25f,
            NspLabels = c.HasNspHead && labels ? I32(batch) : TensorRef.Null,
            Labels = !labels ? TensorRef.Null
                : c.ClassificationLabels > 0 ? I32(batch)
                : c.TokenClassificationLabels > 0 ? I32(tokens) : TensorRef.Null,
            LabelWeights = c.TokenClassificationLabels > 0 && labels ? F32(tokens) : TensorRef.Null,
            LabelGradScale = 0.1f,
            StartPositions = c.HasSpanHead && labels ? I32(batch) : TensorRef.Null,
            EndPositions = c.HasSpanHead && labels ? I32(batch) : TensorRef.Null,
        };
    }

    private static (PlanCheckingBackend Backend, BertModelBase Model, BertBatch Batch) Run(Factory create, DType type, bool training = true)
    {
        var backend = new PlanCheckingBackend(type);
        var model = create(backend, B, S, P);
        model.Training = training;
        model.Seed = 42;
        model.DropoutStep = 3;
        var batch = Batch(backend, model, B, S, P, labels: true);
        backend.Phase = "forward";
        model.Forward(batch);
        backend.Phase = "backward";
        model.Backward(batch);
        return (backend, model, batch);
    }

    /// <summary>Every activation starts on this many elements (the generator's arena alignment).</summary>
    private const long Alignment = 64;

    private static long Up(long elements) => (elements + Alignment - 1) / Alignment * Alignment;

    [TestCaseSource(nameof(Models))]
    public void ActivationPlan_CoversTheArenasExactly_WithDisjointAlignedTensors(Factory create, DType type)
    {
        var (backend, model, _) = Run(create, type);
        using var _ = model;
        foreach (var arena in new[] { "activations", "activations-f32" })
        {
            // Tensors written at the planned maxima tile the arena in order, each at the first aligned
            // element after the previous one (or right after it: the end logits of the span head follow
            // the start logits in one [2, N] tensor): no overlap, no tensor missing, no slack.
            var ranges = backend.WrittenRanges(arena).Distinct().OrderBy(r => r.Start).ToList();
            long end = 0;
            foreach (var (start, stop) in ranges)
            {
                Assert.That(start, Is.EqualTo(Up(end)).Or.EqualTo(end), $"{arena}: a gap or an overlap at element {Math.Min(start, end)} (tensor [{start}, {stop}))");
                end = stop;
            }
            Assert.That(backend.Length(arena), Is.EqualTo(Up(end)), $"{arena}: the plan's length is not the sum of its aligned tensors");
        }
    }

    [TestCaseSource(nameof(Models))]
    public void Backward_MirrorsForward_InExactReverseOrder(Factory create, DType type)
    {
        var (backend, model, _) = Run(create, type);
        using var _ = model;
        var forward = backend.Ops.Where(o => o.Phase == "forward" && o.Name is not ("Zero" or "SoftmaxCrossEntropy")).ToList();
        var backward = backend.Ops.Where(o => o.Phase == "backward" && o.Name != "Zero").ToList();

        var expected = new List<(string Name, PlanCheckingBackend.Op Forward)>();
        foreach (var op in Enumerable.Reverse(forward))
        {
            switch (op.Name)
            {
                case "Linear":
                    if (op.Activation != Activation.None) expected.Add(("ActivationBackward", op));
                    expected.Add(("LinearBackward", op));
                    break;
                case "Dropout": expected.Add(("Dropout", op)); break;
                case "GatherRows": expected.Add(("ScatterAddRows", op)); break;
                default: expected.Add((op.Name.Replace("Forward", "") + "Backward", op)); break;
            }
        }
        Assert.That(backward.Select(o => o.Name), Is.EqualTo(expected.Select(e => e.Name)));
        for (int i = 0; i < backward.Count; i++)
        {
            var (name, f) = expected[i];
            var b = backward[i];
            Assert.That(b.Dropout, Is.EqualTo(f.Dropout), $"op {i} {name}: the dropout mask differs from forward's");
            if (name is "LinearBackward" or "LayerNormBackward" or "ResidualLayerNormBackward" or "EmbeddingsBackward")
                Assert.That(b.Weight, Is.EqualTo(f.Weight), $"op {i} {name}: a different weight than forward's");
            if (name == "ActivationBackward") Assert.That(b.Activation, Is.EqualTo(f.Activation), $"op {i}");
        }
    }

    [TestCaseSource(nameof(Models))]
    public void Backward_NeverOverwritesWhatForwardSaved(Factory create, DType type)
    {
        var (backend, model, _) = Run(create, type);
        using var _ = model;
        // Saved: every arena tensor forward wrote, except the logits (their gradient replaces them in
        // forward) and the branch scratch that forward itself consumes at once.
        var backwardWrites = backend.Ops.Where(o => o.Phase == "backward").SelectMany(o => o.Writes).Distinct().ToList();
        var forwardOps = backend.Ops.Where(o => o.Phase == "forward").ToList();
        var reusedInForward = forwardOps.SelectMany(o => o.Writes).GroupBy(w => w).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        foreach (var saved in forwardOps.SelectMany(o => o.Writes).Distinct())
        {
            if (backend.Owner(saved) is not ("activations" or "activations-f32") || reusedInForward.Contains(saved)) continue;
            foreach (var w in backwardWrites)
                Assert.That(w.Address < saved.Address + (ulong)saved.Bytes && saved.Address < w.Address + (ulong)w.Bytes, Is.False,
                    $"backward writes {w}, over {saved} saved by forward");
        }
    }

    [TestCaseSource(nameof(Models))]
    public void Dropout_HasOneStreamPerSite_AndIsOffInEvaluation(Factory create, DType type)
    {
        var (backend, model, _) = Run(create, type);
        using var _ = model;
        var specs = backend.Ops.Where(o => o.Phase == "forward" && o.Dropout.Active).Select(o => o.Dropout).ToList();
        int sites = 1 + 3 * model.Config.Layers + (model.Config.ClassificationLabels + model.Config.TokenClassificationLabels > 0 ? 1 : 0);
        Assert.That(specs, Has.Count.EqualTo(sites));
        Assert.That(specs.Select(s => s.Stream), Is.Unique);
        Assert.That(specs.Select(s => (s.Seed, s.Step)), Is.All.EqualTo((42UL, 3U)));

        var (evaluation, evalModel, _) = Run(create, type, training: false);
        using var __ = evalModel;
        Assert.That(evaluation.Ops.Any(o => o.Dropout.Active), Is.False);
    }

    [TestCaseSource(nameof(Models))]
    public void SmallerBatch_ThanPlanned_RunsInsideTheArenas(Factory create, DType type)
    {
        var backend = new PlanCheckingBackend(type);
        using var model = create(backend, B, S, P);
        var batch = Batch(backend, model, 2, 5, 1, labels: true);
        model.Forward(batch);
        model.Backward(batch);
        Assert.That(model.SequenceOutput.Length, Is.EqualTo(2L * 5 * model.Config.Hidden));
        if (model.Config.HasMlmHead) Assert.That(model.MlmLogits.Length, Is.EqualTo(2L * 1 * model.Config.VocabSize));
    }

    [TestCaseSource(nameof(Models))]
    public void WithoutLabels_ForwardComputesNoLoss_AndBackwardRefuses(Factory create, DType type)
    {
        var backend = new PlanCheckingBackend(type);
        using var model = create(backend, B, S, P);
        var batch = Batch(backend, model, B, S, P, labels: false);
        model.Forward(batch);
        Assert.That(backend.Ops.Any(o => o.Name == "SoftmaxCrossEntropy"), Is.False);
        var c = model.Config;
        if (c.HasMlmHead) Assert.That(model.MlmLogits.Length, Is.EqualTo((long)B * P * c.VocabSize));
        if (c.HasNspHead) Assert.That(model.NspLogits.Length, Is.EqualTo(B * 2L));
        if (c.HasPooler) Assert.That(model.PooledOutput.Length, Is.EqualTo((long)B * c.Hidden));
        if (c.HasSpanHead) Assert.That(model.SpanLogits.Length, Is.EqualTo(2L * B * S));
        var e = Assert.Throws<ArgumentException>(() => model.Backward(batch));
        Assert.That(e!.Message, Does.Contain("no labels"));
    }

    [Test]
    public void EncoderWithoutHeads_RunsForward_AndHasNothingToDifferentiate()
    {
        var backend = new PlanCheckingBackend();
        using var model = new OddEncoder(backend, B, S, P);
        var batch = Batch(backend, model, B, S, 0, labels: false);
        model.Forward(batch);
        Assert.That(model.PooledOutput.Length, Is.EqualTo((long)B * 32));
        Assert.Throws<InvalidOperationException>(() => model.Backward(batch));
    }

    [Test]
    public void MissingHeadInput_IsReportedByName()
    {
        var backend = new PlanCheckingBackend();
        using var model = new OddModel(backend, B, S, P);
        var batch = Batch(backend, model, B, S, P, labels: true) with { MlmWeights = TensorRef.Null };
        var e = Assert.Throws<ArgumentException>(() => model.Forward(batch));
        Assert.That(e!.Message, Does.Contain("MlmWeights"));
    }

    [Test]
    public void PlanArena_GrowsWithEverySize()
    {
        var d = OddModel.DefaultConfig;
        var be = new PlanCheckingBackend();
        var (c0, f0) = OddModel.PlanArena(be, d, 3, 7, 2);
        Assert.That(OddModel.PlanArena(be, d, 4, 7, 2).Compute, Is.GreaterThan(c0));
        Assert.That(OddModel.PlanArena(be, d, 3, 8, 2).Compute, Is.GreaterThan(c0));
        Assert.That(OddModel.PlanArena(be, d, 3, 7, 3).Compute, Is.GreaterThan(c0));
        Assert.That(OddModel.PlanArena(be, d, 3, 7, 40).F32, Is.GreaterThan(f0), "the MLM LayerNorm statistics grow with P");
        Assert.That(OddModel.PlanArena(be, d with { VocabSize = 200 }, 3, 7, 2).Compute, Is.GreaterThan(c0), "the MLM logits (compute type) grow with V");
        Assert.That(OddModel.PlanArena(be, d with { VocabSize = 200 }, 3, 7, 2).F32, Is.EqualTo(f0), "and are not F32");
        Assert.That(OddModel.PlanArena(be, d with { Hidden = 64 }, 3, 7, 2).Compute, Is.GreaterThan(c0), "activations grow with H");
        Assert.That(OddModel.PlanArena(be, d with { Layers = 3 }, 3, 7, 2).Compute, Is.GreaterThan(c0), "and with L");
        Assert.That(OddModel.PlanArena(be, d with { Intermediate = 80 }, 3, 7, 2).Compute, Is.GreaterThan(c0), "and with I");
    }
}
