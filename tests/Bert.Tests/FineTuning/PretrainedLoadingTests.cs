using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.FineTuning;

/// <summary>Fine-tuning models start from a pretraining checkpoint: encoder weights copied, pretraining
/// heads dropped, the new head initialized as BERT does.</summary>
public class PretrainedLoadingTests
{
    [Test]
    public void EveryFineTuningPresetSharesItsEncoderTensorsWithThePretrainingPreset()
    {
        foreach (var p in FineTuningPresets.All)
        {
            var pre = ModelPresets.Get(p.Size).TableFor(1000).ToDictionary(r => r.Name, r => r.ShapeText);
            var table = p.TableFor(1000);
            foreach (var row in table.Where(r => r.Name.StartsWith("bert.", StringComparison.Ordinal)))
                Assert.That(pre.TryGetValue(row.Name, out var shape) ? shape : null, Is.EqualTo(row.ShapeText), $"{p.Config.Name} {row.Name}");
            var heads = table.Where(r => !r.Name.StartsWith("bert.", StringComparison.Ordinal)).Select(r => r.Name + " " + r.ShapeText).ToArray();
            int h = p.Config.Hidden;
            string[] expected = p.Task == FineTuningTask.Span
                ? [$"qa_outputs.weight [2, {h}]", "qa_outputs.bias [2]"]
                : [$"classifier.weight [{p.Labels}, {h}]", $"classifier.bias [{p.Labels}]"];
            Assert.That(heads, Is.EquivalentTo(expected), p.Config.Name);
            Assert.That(table.Any(r => r.Name.StartsWith("bert.pooler.", StringComparison.Ordinal)), Is.EqualTo(p.Task == FineTuningTask.Classification),
                $"{p.Config.Name}: HuggingFace keeps the pooler only for sequence classification");
            Assert.That(FineTuningPresets.SizeOf(p.Config), Is.EqualTo(p.Size));
            // The checkpoint layout rule (bert import/export) agrees with the generated table, offsets included.
            Assert.That(ParameterLayout.For(p.Config with { VocabSize = 1000 }).Select(r => (r.Name, r.ShapeText, r.Offset, r.Decay)),
                Is.EqualTo(table.Select(r => (r.Name, r.ShapeText, r.Offset, r.Decay))), p.Config.Name);
            Assert.That(ConfigJson.Architecture(p.Config), Is.EqualTo(p.Task switch
            {
                FineTuningTask.Classification => "BertForSequenceClassification",
                FineTuningTask.TokenClassification => "BertForTokenClassification",
                _ => "BertForQuestionAnswering",
            }));
        }
        Assert.That(FineTuningPresets.All.Select(p => p.Size).Distinct(), Is.EqualTo(ModelPresets.Names));
        Assert.That(FineTuningPresets.Find("tiny", FineTuningTask.Classification, 2)!.Labels, Is.EqualTo(2));
        Assert.That(FineTuningPresets.Find("base", FineTuningTask.Classification, 3)!.Config.Name, Is.EqualTo("BertBaseForSequenceClassification3"));
        Assert.That(FineTuningPresets.Find("mini", FineTuningTask.TokenClassification, 5)!.Labels, Is.EqualTo(9));
        Assert.That(FineTuningPresets.Find("tiny", FineTuningTask.Classification, 4), Is.Null);
    }

    [Test]
    public void ClassificationModelLoadsEncoderAndPoolerAndInitializesItsHead()
    {
        using var dir = TestPaths.NewTempDirectory();
        using var backend = new CpuBackend(2);
        string checkpoint = TinyCheckpoints.WriteRandom(backend, dir.File("pre"), seed: 5);
        var source = PretrainedSource.Open(dir.File("pre"));
        Assert.That(source.Directory, Is.EqualTo(checkpoint));
        Assert.That((source.Step, source.PresetSize(), source.LowerCase(source.LoadVocabulary())), Is.EqualTo(((long?)1, "tiny", true)));

        using var model = FineTuningPresets.Find("tiny", FineTuningTask.Classification, 2)!.Create(backend, 2, 8, 0, TinyCheckpoints.Vocabulary.Count);
        var report = PretrainedLoader.Load(model, source.WeightsPath, seed: 11);
        Assert.That(report.Initialized, Is.EqualTo(new[] { "classifier.weight [2, 128]", "classifier.bias [2]" }));
        Assert.That(report.Dropped.Select(d => d.Split(' ')[0]).Order(), Is.EqualTo(new[]
        {
            "cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias", "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.transform.dense.bias", "cls.predictions.transform.dense.weight", "cls.seq_relationship.bias", "cls.seq_relationship.weight",
        }));
        Assert.That(report.Loaded, Has.Count.EqualTo(model.ParameterTable.Count - 2));
        Assert.That(report.Describe(), Does.Contain("loaded 39 tensors, initialized 2, dropped 7\n  loaded      bert.embeddings (5), bert.encoder.layer.0-1 (32), bert.pooler (2)\n"));

        // Every shared tensor equals the checkpoint's, bit for bit.
        var pre = new float[ModelPresets.Get("tiny").TableFor(TinyCheckpoints.Vocabulary.Count).Sum(r => r.Count)];
        var preTable = ModelPresets.Get("tiny").TableFor(TinyCheckpoints.Vocabulary.Count);
        CheckpointReader.Open(checkpoint).ReadParameters(preTable, pre);
        var host = new float[model.ParameterTotal];
        backend.Download<float>(host, model.Parameters);
        foreach (var row in model.ParameterTable.Where(r => r.Name.StartsWith("bert.", StringComparison.Ordinal)))
        {
            var src = preTable.Single(r => r.Name == row.Name);
            Assert.That(host.AsSpan((int)row.Offset, (int)row.Count).SequenceEqual(pre.AsSpan((int)src.Offset, (int)src.Count)), Is.True, row.Name);
        }
        // The head: Normal(0, 0.02) weights, zero bias.
        var w = host.AsSpan((int)model.ParameterTable[model.ParameterIndex("classifier.weight")].Offset, 256).ToArray();
        double mean = w.Average(x => (double)x), std = Math.Sqrt(w.Average(x => (x - mean) * (x - mean)));
        Assert.That(std, Is.EqualTo(0.02).Within(0.004));
        Assert.That(Math.Abs(mean), Is.LessThan(0.005));
        var bias = model.ParameterTable[model.ParameterIndex("classifier.bias")];
        Assert.That(host.AsSpan((int)bias.Offset, 2).ToArray(), Is.EqualTo(new[] { 0f, 0f }));
    }

    [Test]
    public void TokenAndSpanModelsDropThePoolerAndMismatchedShapesAreRefused()
    {
        using var dir = TestPaths.NewTempDirectory();
        using var backend = new CpuBackend(2);
        TinyCheckpoints.WriteRandom(backend, dir.File("pre"));
        var source = PretrainedSource.Open(dir.File("pre"));
        foreach (var task in new[] { FineTuningTask.TokenClassification, FineTuningTask.Span })
        {
            using var model = FineTuningPresets.Find("tiny", task, 2)!.Create(backend, 1, 8, 0, TinyCheckpoints.Vocabulary.Count);
            var report = PretrainedLoader.Load(model, source.WeightsPath, seed: 1);
            Assert.That(report.Dropped, Has.Some.StartsWith("bert.pooler.dense.weight"), task.ToString());
            Assert.That(report.Initialized, Has.Count.EqualTo(2), task.ToString());
        }
        // A model laid out for another vocabulary does not fit the checkpoint.
        using var other = FineTuningPresets.Find("tiny", FineTuningTask.Classification, 2)!.Create(backend, 1, 8, 0, 50);
        var e = Assert.Throws<InvalidDataException>(() => PretrainedLoader.Load(other, source.WeightsPath, 1))!;
        Assert.That(e.Message, Does.Contain("bert.embeddings.word_embeddings.weight").And.Contain("[50, 128]"));
    }
}
