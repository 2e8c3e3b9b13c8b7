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
        Assert.That(BertBase.BertModelParameters, Is.EqualTo(109_482_240L));
        Assert.That(BertBase.TotalParameters, Is.EqualTo(110_106_428L));
        Assert.That(Sum(BertBase.Table, bertModelOnly: true), Is.EqualTo(109_482_240L));
        Assert.That(Sum(BertBase.Table, bertModelOnly: false), Is.EqualTo(110_106_428L));
    }

    [Test]
    public void BertLarge_HasThePublishedParameterCounts()
    {
        Assert.That(BertLarge.BertModelParameters, Is.EqualTo(335_141_888L));
        Assert.That(BertLarge.TotalParameters, Is.EqualTo(336_226_108L));
        Assert.That(Sum(BertLarge.Table, bertModelOnly: true), Is.EqualTo(335_141_888L));
        Assert.That(Sum(BertLarge.Table, bertModelOnly: false), Is.EqualTo(336_226_108L));
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
        yield return new TestCaseData(OddModel.ModelConfig, OddModel.Table, OddModel.TotalParameters).SetArgDisplayNames("odd");
        yield return new TestCaseData(BertBase.ModelConfig with { VocabSize = 8000 }, BertBase.TableFor(8000),
            BertBase.TotalParameters - 30522L * 769 + 8000L * 769).SetArgDisplayNames("base-vocab-8000");
    }

    [TestCaseSource(nameof(Tables))]
    public void Table_IsContiguous_DecayedFirst_WithFusableQkv(ModelConfig config, IReadOnlyList<ParameterInfo> table, long total)
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
    public void Table_HasTheHuggingFaceNamesAndShapes(ModelConfig config, IReadOnlyList<ParameterInfo> table, long total)
    {
        var expected = HuggingFaceBertForPreTraining(config).ToDictionary(e => e.Name, e => e.Shape);
        var actual = table.ToDictionary(p => p.Name, p => p.Shape);
        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var (name, shape) in expected) Assert.That(actual[name], Is.EqualTo(shape), name);
    }

    /// <summary>BertForPreTraining's state dict without the tied decoder (written independently of the generator).</summary>
    private static IEnumerable<(string Name, int[] Shape)> HuggingFaceBertForPreTraining(ModelConfig c)
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
        var c = OddModel.ModelConfig;
        Assert.That(c.LayerNormEps, Is.EqualTo((float)enc.LayerNormEps));
        Assert.That(c.HiddenDropout, Is.EqualTo((float)enc.HiddenDropout));
        Assert.That(c.AttentionDropout, Is.EqualTo((float)enc.AttentionDropout));
        Assert.That(c.HiddenActivation.ToString(), Is.EqualTo(enc.Activation.ToString()));
        Assert.That(c.TypeVocabSize, Is.EqualTo(emb.TypeVocabSize));
        Assert.That(BertBase.ModelConfig.VocabSize, Is.EqualTo(emb.VocabSize));
        Assert.That(BertBase.ModelConfig.MaxPositions, Is.EqualTo(emb.MaxPositions));
        Assert.That(c.ClassifierDropout, Is.EqualTo((float)new ClassificationHeadAttribute().Dropout));
        Assert.That(new MlmHeadAttribute().TransformSize, Is.Zero, "0 means the hidden size");
        Assert.That(OddModel.Table.Single(p => p.Name == "cls.predictions.transform.dense.weight").Shape, Is.EqualTo(new[] { 32, 32 }));
    }

    [Test]
    public void VocabularyOverride_LaysOutTheTableAndArenasForIt()
    {
        var backend = new PlanCheckingBackend();
        using var model = new BertTiny(backend, maxBatch: 2, maxSeq: 16, maxPredictions: 3, vocabSize: 8000);
        Assert.That(model.Config.VocabSize, Is.EqualTo(8000));
        Assert.That(model.Config.Name, Is.EqualTo("BertTiny"));
        Assert.That(model.ParameterTable[model.ParameterIndex("bert.embeddings.word_embeddings.weight")].Shape, Is.EqualTo(new[] { 8000, 128 }));
        Assert.That(model.ParameterTable[model.ParameterIndex("cls.predictions.bias")].Shape, Is.EqualTo(new[] { 8000 }));
        var last = model.ParameterTable[^1];
        Assert.That(model.ParameterTotal, Is.EqualTo(last.Offset + last.Count));
        Assert.That(model.ParameterTotal, Is.EqualTo(model.ParameterTable.Sum(p => p.Count)));
        Assert.That(model.DecayedParameterCount, Is.EqualTo(model.ParameterTable.Where(p => p.Decay).Sum(p => p.Count)));
        Assert.That(model.Parameters.Length, Is.EqualTo(model.ParameterTotal));
        Assert.That(backend.Length("activations-f32"), Is.EqualTo(BertTiny.PlanArena(2, 16, 3, 8000).F32));
        Assert.That(BertTiny.PlanArena(2, 16, 3, 8000).F32, Is.LessThan(BertTiny.PlanArena(2, 16, 3).F32), "the MLM logits shrink with V");

        using var declared = new BertTiny(new PlanCheckingBackend(), 2, 16, 3);
        Assert.That(declared.ParameterTable, Is.SameAs(BertTiny.Table));
        Assert.That(declared.ParameterTotal, Is.EqualTo(BertTiny.TotalParameters));
        Assert.That(declared.DecayedParameterCount, Is.EqualTo(BertTiny.DecayedParameters));
    }

    [Test]
    public void VocabularyOverride_RejectsNonPositiveSizes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new BertTiny(new PlanCheckingBackend(), 2, 16, 3, vocabSize: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => BertTiny.TableFor(-1));
    }

    [Test]
    public void SequenceLongerThanThePositions_IsRejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new OddModel(new PlanCheckingBackend(), 3, 17, 2));
        Assert.That(e!.Message, Does.Contain("16 positions"));
    }
}
