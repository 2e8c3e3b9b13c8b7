using Bert.Dsl;
using Bert.Runtime;
using Bert.Runtime.Presets;
using NUnit.Framework;

namespace Bert.Tests.Generator;

/// <summary>The generated parameter tables: exact counts of the published sizes, HuggingFace names and
/// shapes, and the layout invariants the optimizer and the fused QKV Linear rely on.</summary>
public class ParameterTableTests
{
    [Test]
    public void BertBase_HasThePublishedParameterCounts()
    {
        var p = ModelPresets.Get("base");
        Assert.That(p.BertModelParameters, Is.EqualTo(109_482_240L));
        Assert.That(p.TotalParameters, Is.EqualTo(110_106_428L));
        Assert.That(Sum(p.Table, bertModelOnly: true), Is.EqualTo(109_482_240L));
        Assert.That(Sum(p.Table, bertModelOnly: false), Is.EqualTo(110_106_428L));
        // The built-in classes' declared sizes are bert-base-uncased's.
        Assert.That(BertForPreTraining.TotalParameters, Is.EqualTo(110_106_428L));
        Assert.That(BertModel.TotalParameters, Is.EqualTo(109_482_240L));
    }

    [Test]
    public void BertLarge_HasThePublishedParameterCounts()
    {
        var p = ModelPresets.Get("large");
        Assert.That(p.BertModelParameters, Is.EqualTo(335_141_888L));
        Assert.That(p.TotalParameters, Is.EqualTo(336_226_108L));
        Assert.That(Sum(p.Table, bertModelOnly: true), Is.EqualTo(335_141_888L));
        Assert.That(Sum(p.Table, bertModelOnly: false), Is.EqualTo(336_226_108L));
    }

    private static long Sum(IReadOnlyList<ParameterInfo> table, bool bertModelOnly) =>
        table.Where(p => !bertModelOnly || p.Name.StartsWith("bert.", StringComparison.Ordinal)).Sum(p => p.Count);

    public static IEnumerable<TestCaseData> Tables()
    {
        foreach (var name in ModelPresets.Names)
        {
            var p = ModelPresets.Get(name);
            yield return new TestCaseData(p.Config, p.Table, p.TotalParameters).SetArgDisplayNames(name);
        }
        yield return new TestCaseData(OddModel.DefaultConfig, OddModel.Table, OddModel.TotalParameters).SetArgDisplayNames("odd");
        yield return new TestCaseData(ModelPresets.Base with { VocabSize = 8000 }, ModelPresets.Get("base").TableFor(8000),
            ModelPresets.TotalParameters("base") - 30522L * 769 + 8000L * 769).SetArgDisplayNames("base-vocab-8000");
        // No preset: sizes are run-time data.
        var odd = new BertConfig { Name = "L3-H96-A4", Layers = 3, Hidden = 96, Heads = 4, Intermediate = 50, VocabSize = 77, MaxPositions = 40, TypeVocabSize = 3 };
        long h = 96, i = 50, expected = 77 * h + 40 * h + 3 * h + 2 * h + 3 * (4 * h * h + 4 * h + 2 * h + 2 * h * i + i + h + 2 * h)
            + (h * h + h) + (h * h + h + 2 * h + 77) + (2 * h + 2);
        yield return new TestCaseData(BertForPreTraining.ResolveConfig(odd), BertForPreTraining.TableFor(odd), expected).SetArgDisplayNames("L3-H96-A4");
    }

    [TestCaseSource(nameof(Tables))]
    public void Table_IsContiguous_DecayedFirst_WithFusableQkv(BertConfig config, IReadOnlyList<ParameterInfo> table, long total)
    {
        // One flat buffer: offsets are the running sum of the counts, no gaps, no overlaps.
        long offset = 0;
        foreach (var p in table)
        {
            Assert.That(p.Offset, Is.EqualTo(offset), p.Name);
            offset += p.Count;
        }
        Assert.That(offset, Is.EqualTo(total));

        // Decayed tensors form a prefix, so AdamW is two range calls.
        int firstUndecayed = table.ToList().FindIndex(p => !p.Decay);
        Assert.That(table.Skip(firstUndecayed).Any(p => p.Decay), Is.False, "a decayed tensor after the first undecayed one");

        // Decay and initialization follow BERT: LayerNorm weights and biases are not decayed.
        foreach (var p in table)
        {
            bool norm = p.Name.Contains(".LayerNorm.", StringComparison.Ordinal);
            bool bias = p.Name.EndsWith(".bias", StringComparison.Ordinal);
            Assert.That(p.Decay, Is.EqualTo(!norm && !bias), p.Name);
            var init = norm && !bias ? ParameterInit.Ones : bias ? ParameterInit.Zeros : ParameterInit.Normal;
            Assert.That(p.Init, Is.EqualTo(init), p.Name);
        }

        // Query, key, value consecutive: one [3H, H] weight and one [3H] bias per layer.
        int h = config.Hidden;
        for (int l = 0; l < config.Layers; l++)
        {
            foreach (var kind in new[] { "weight", "bias" })
            {
                int q = Index(table, $"bert.encoder.layer.{l}.attention.self.query.{kind}");
                Assert.That(table[q + 1].Name, Is.EqualTo($"bert.encoder.layer.{l}.attention.self.key.{kind}"));
                Assert.That(table[q + 2].Name, Is.EqualTo($"bert.encoder.layer.{l}.attention.self.value.{kind}"));
                Assert.That(table[q + 2].Offset + table[q + 2].Count - table[q].Offset, Is.EqualTo(kind == "weight" ? 3L * h * h : 3L * h));
            }
        }

        Assert.That(table.Select(p => p.Name), Is.Unique);
    }

    [TestCaseSource(nameof(Tables))]
    public void Table_HasTheHuggingFaceNamesAndShapes(BertConfig config, IReadOnlyList<ParameterInfo> table, long total)
    {
        var expected = HuggingFaceBertForPreTraining(config).ToDictionary(e => e.Name, e => e.Shape);
        var actual = table.ToDictionary(p => p.Name, p => p.Shape);
        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var (name, shape) in expected) Assert.That(actual[name], Is.EqualTo(shape), name);
    }

    /// <summary>BertForPreTraining's state dict without the tied decoder (written independently of the generator).</summary>
    private static IEnumerable<(string Name, int[] Shape)> HuggingFaceBertForPreTraining(BertConfig c)
    {
        int h = c.Hidden, i = c.Intermediate;
        yield return ("bert.embeddings.word_embeddings.weight", [c.VocabSize, h]);
        yield return ("bert.embeddings.position_embeddings.weight", [c.MaxPositions, h]);
        yield return ("bert.embeddings.token_type_embeddings.weight", [c.TypeVocabSize, h]);
        yield return ("bert.embeddings.LayerNorm.weight", [h]);
        yield return ("bert.embeddings.LayerNorm.bias", [h]);
        for (int l = 0; l < c.Layers; l++)
        {
            var p = $"bert.encoder.layer.{l}.";
            foreach (var m in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense" })
            {
                yield return (p + m + ".weight", [h, h]);
                yield return (p + m + ".bias", [h]);
            }
            yield return (p + "attention.output.LayerNorm.weight", [h]);
            yield return (p + "attention.output.LayerNorm.bias", [h]);
            yield return (p + "intermediate.dense.weight", [i, h]);
            yield return (p + "intermediate.dense.bias", [i]);
            yield return (p + "output.dense.weight", [h, i]);
            yield return (p + "output.dense.bias", [h]);
            yield return (p + "output.LayerNorm.weight", [h]);
            yield return (p + "output.LayerNorm.bias", [h]);
        }
        yield return ("bert.pooler.dense.weight", [h, h]);
        yield return ("bert.pooler.dense.bias", [h]);
        yield return ("cls.predictions.bias", [c.VocabSize]);
        yield return ("cls.predictions.transform.dense.weight", [h, h]);
        yield return ("cls.predictions.transform.dense.bias", [h]);
        yield return ("cls.predictions.transform.LayerNorm.weight", [h]);
        yield return ("cls.predictions.transform.LayerNorm.bias", [h]);
        yield return ("cls.seq_relationship.weight", [2, h]);
        yield return ("cls.seq_relationship.bias", [2]);
    }

    private static int Index(IReadOnlyList<ParameterInfo> table, string name) =>
        table.Select((p, i) => (p, i)).Single(x => x.p.Name == name).i;

    [Test]
    public void Presets_HaveThePublishedSizes()
    {
        var sizes = ModelPresets.Names.Select(n => ModelPresets.Config(n))
            .Select(c => (c.Name, c.Layers, c.Hidden, c.Heads, c.Intermediate, c.VocabSize, c.MaxPositions, c.TypeVocabSize));
        Assert.That(sizes, Is.EqualTo(new[]
        {
            ("BertTiny", 2, 128, 2, 512, 30522, 512, 2),
            ("BertMini", 4, 256, 4, 1024, 30522, 512, 2),
            ("BertSmall", 4, 512, 8, 2048, 30522, 512, 2),
            ("BertMedium", 8, 512, 8, 2048, 30522, 512, 2),
            ("BertBase", 12, 768, 12, 3072, 30522, 512, 2),
            ("BertLarge", 24, 1024, 16, 4096, 30522, 512, 2),
        }));
        Assert.That(ModelPresets.Names.All(n => ModelPresets.Config(n) is { HasPooler: true, HasMlmHead: true, HasNspHead: true }));
        Assert.That(ModelPresets.TotalParameters("base"), Is.EqualTo(110_106_428L));
    }

    /// <summary>google-research/bert's README gives the sizes in millions (Large, quoted as 340M there, is 336.2M).</summary>
    [TestCase("tiny", 4.4)]
    [TestCase("mini", 11.3)]
    [TestCase("small", 29.1)]
    [TestCase("medium", 41.7)]
    [TestCase("base", 110.1)]
    [TestCase("large", 336.2)]
    public void Preset_HasThePublishedSizeInMillions(string name, double millions) =>
        Assert.That(Math.Round(ModelPresets.TotalParameters(name) / 1e5) / 10, Is.EqualTo(millions));

    [Test]
    public void UnknownPreset_ListsTheValidNames()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelPresets.Get("huge"));
        Assert.That(e!.Message, Does.Contain("'huge'").And.Contain("tiny, mini, small, medium, base, large"));
    }

    [Test]
    public void GeneratedConfig_UsesTheAttributesDefaults()
    {
        var emb = new EmbeddingsAttribute();
        var enc = new EncoderLayerAttribute();
        var c = OddModel.DefaultConfig;
        Assert.That(c.LayerNormEps, Is.EqualTo((float)enc.LayerNormEps));
        Assert.That(c.HiddenDropout, Is.EqualTo((float)enc.HiddenDropout));
        Assert.That(c.AttentionDropout, Is.EqualTo((float)enc.AttentionDropout));
        Assert.That(c.HiddenActivation.ToString(), Is.EqualTo(enc.Activation.ToString()));
        Assert.That(c.TypeVocabSize, Is.EqualTo(emb.TypeVocabSize));
        Assert.That(OddModel.DefaultConfig.VocabSize, Is.EqualTo(99));
        Assert.That(BertForPreTraining.DefaultConfig.VocabSize, Is.EqualTo(emb.VocabSize));
        Assert.That(BertForPreTraining.DefaultConfig.MaxPositions, Is.EqualTo(emb.MaxPositions));
        Assert.That(c.ClassifierDropout, Is.EqualTo((float)new ClassificationHeadAttribute().Dropout));
        Assert.That(new MlmHeadAttribute().TransformSize, Is.Zero, "0 means the hidden size");
        Assert.That(OddModel.Table.Single(p => p.Name == "cls.predictions.transform.dense.weight").Shape, Is.EqualTo(new[] { 32, 32 }));
    }

    [Test]
    public void ConfigOverride_LaysOutTheTableAndArenasForIt()
    {
        var backend = new PlanCheckingBackend();
        var config = ModelPresets.Tiny with { VocabSize = 8000 };
        using var model = new BertForPreTraining(backend, maxBatch: 2, maxSeq: 16, maxPredictions: 3, config);
        Assert.That(model.Config, Is.EqualTo(config));
        Assert.That(model.Config.Name, Is.EqualTo("BertTiny"));
        Assert.That(model.ParameterTable[model.ParameterIndex("bert.embeddings.word_embeddings.weight")].Shape, Is.EqualTo(new[] { 8000, 128 }));
        Assert.That(model.ParameterTable[model.ParameterIndex("cls.predictions.bias")].Shape, Is.EqualTo(new[] { 8000 }));
        var last = model.ParameterTable[^1];
        Assert.That(model.ParameterTotal, Is.EqualTo(last.Offset + last.Count));
        Assert.That(model.ParameterTotal, Is.EqualTo(model.ParameterTable.Sum(p => p.Count)));
        Assert.That(model.DecayedParameterCount, Is.EqualTo(model.ParameterTable.Where(p => p.Decay).Sum(p => p.Count)));
        Assert.That(model.Parameters.Length, Is.EqualTo(model.ParameterTotal));
        Assert.That(backend.Length("activations-f32"), Is.EqualTo(BertForPreTraining.PlanArena(backend, config, 2, 16, 3).F32));
        Assert.That(BertForPreTraining.PlanArena(backend, config, 2, 16, 3).Compute, Is.LessThan(BertForPreTraining.PlanArena(backend, ModelPresets.Tiny, 2, 16, 3).Compute),
            "the MLM logits (compute type: bf16 on a bf16 GPU) shrink with V");

        using var declared = new OddModel(new PlanCheckingBackend(), 2, 16, 3);
        Assert.That(declared.Config, Is.SameAs(OddModel.DefaultConfig));
        Assert.That(declared.ParameterTotal, Is.EqualTo(OddModel.TotalParameters));
    }

    [Test]
    public void ConfigOverride_TheClassDecidesTheHeads()
    {
        // A classifier's config given to the pretraining class: its heads are the class's.
        var config = ModelPresets.Tiny with { HasMlmHead = false, HasNspHead = false, ClassificationLabels = 7 };
        using var model = new BertForPreTraining(new PlanCheckingBackend(), 2, 16, 3, config);
        Assert.That(model.Config is { HasMlmHead: true, HasNspHead: true, HasPooler: true, ClassificationLabels: 0 });
        // A classifier takes the config's label count, whatever it is; none given: the declared 2.
        using var seven = new BertForSequenceClassification(new PlanCheckingBackend(), 2, 16, 0, config);
        Assert.That(seven.ParameterTable[seven.ParameterIndex("classifier.weight")].Shape, Is.EqualTo(new[] { 7, 128 }));
        Assert.That(BertForSequenceClassification.ResolveConfig(ModelPresets.Tiny).ClassificationLabels, Is.EqualTo(2));
        Assert.That(BertForTokenClassification.ResolveConfig(ModelPresets.Tiny with { TokenClassificationLabels = 12 }).TokenClassificationLabels, Is.EqualTo(12));
    }

    [TestCase("Hidden", 0, "Hidden = 0: must be positive")]
    [TestCase("Hidden", 129, "Hidden = 129: must be divisible by Heads (2)")]
    [TestCase("VocabSize", -1, "VocabSize = -1: must be positive")]
    [TestCase("Layers", 0, "Layers = 0: must be positive")]
    [TestCase("Intermediate", 0, "Intermediate = 0: must be positive")]
    [TestCase("MaxPositions", 0, "MaxPositions = 0: must be positive")]
    public void ConfigOverride_RejectsABadSizeBeforeAllocating(string field, int value, string message)
    {
        var c = ModelPresets.Tiny;
        c = field switch
        {
            "Hidden" => c with { Hidden = value },
            "VocabSize" => c with { VocabSize = value },
            "Layers" => c with { Layers = value },
            "Intermediate" => c with { Intermediate = value },
            _ => c with { MaxPositions = value },
        };
        var backend = new PlanCheckingBackend();
        var e = Assert.Throws<BertConfigException>(() => new BertForPreTraining(backend, 2, 16, 3, c))!;
        Assert.That(e.Message, Does.Contain("model config 'BertTiny': " + message));
        Assert.That(e.ParamName, Is.EqualTo(field));
        Assert.That(backend.Allocations, Is.Zero, "nothing allocated");
        Assert.Throws<BertConfigException>(() => BertForPreTraining.TableFor(c));
    }

    [Test]
    public void ConfigOverride_RejectsBadHyperParameters()
    {
        Assert.That(Assert.Throws<BertConfigException>(() => BertForPreTraining.ResolveConfig(ModelPresets.Tiny with { HiddenDropout = 1f }))!.Message,
            Does.Contain("HiddenDropout = 1: a dropout probability must be in [0, 1)"));
        Assert.That(Assert.Throws<BertConfigException>(() => BertForPreTraining.ResolveConfig(ModelPresets.Tiny with { LayerNormEps = 0f }))!.Message,
            Does.Contain("LayerNormEps = 0: a LayerNorm epsilon must be in (0, 1)"));
        Assert.That(Assert.Throws<BertConfigException>(() => BertForSequenceClassification.ResolveConfig(ModelPresets.Tiny with { ClassificationLabels = -3 }))!.Message,
            Does.Contain("ClassificationLabels = -3"));
    }

    [Test]
    public void SequenceLongerThanThePositions_IsRejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new OddModel(new PlanCheckingBackend(), 3, 17, 2));
        Assert.That(e!.Message, Does.Contain("16 positions"));
    }
}
