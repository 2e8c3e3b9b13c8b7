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
    public void EveryTaskModelSharesItsEncoderTensorsWithThePretrainingModel_AtAnySizeAndLabelCount()
    {
        var tasks = new[] { FineTuningTask.Classification, FineTuningTask.TokenClassification, FineTuningTask.Span };
        var sizes = ModelPresets.Names.Select(n => ModelPresets.Config(n) with { VocabSize = 1000 })
            .Append(new BertConfig { Name = "odd", VocabSize = 77, Hidden = 96, Heads = 4, Layers = 3, Intermediate = 50, MaxPositions = 40, TypeVocabSize = 3 });
        foreach (var encoder in sizes)
        foreach (var task in tasks)
        foreach (int labels in new[] { 1, 5, 12 })
        {
            var config = task.ModelConfig(encoder, labels);
            var pre = ParameterLayout.ForPretraining(encoder).ToDictionary(r => r.Name, r => r.ShapeText);
            var table = ParameterLayout.For(config);
            foreach (var row in table.Where(r => r.Name.StartsWith("bert.", StringComparison.Ordinal)))
                Assert.That(pre.TryGetValue(row.Name, out var shape) ? shape : null, Is.EqualTo(row.ShapeText), $"{encoder.Name} {task} {row.Name}");
            var heads = table.Where(r => !r.Name.StartsWith("bert.", StringComparison.Ordinal)).Select(r => r.Name + " " + r.ShapeText).ToArray();
            int h = encoder.Hidden;
            string[] expected = task == FineTuningTask.Span
                ? [$"qa_outputs.weight [2, {h}]", "qa_outputs.bias [2]"]
                : [$"classifier.weight [{labels}, {h}]", $"classifier.bias [{labels}]"];
            Assert.That(heads, Is.EquivalentTo(expected), $"{encoder.Name} {task}");
            Assert.That(table.Any(r => r.Name.StartsWith("bert.pooler.", StringComparison.Ordinal)), Is.EqualTo(task == FineTuningTask.Classification),
                $"{encoder.Name} {task}: HuggingFace keeps the pooler only for sequence classification");
            Assert.That(ConfigJson.Architecture(config), Is.EqualTo(task.Architecture()));
        }
    }

    [Test]
    public void TaskModelConfig_RefusesALabelCountOutOfRange()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => FineTuningTask.Classification.ModelConfig(ModelPresets.Tiny, 0))!;
        Assert.That(e.Message, Does.Contain("at least one class"));
        var big = Assert.Throws<BertConfigException>(() => FineTuningTask.TokenClassification.ModelConfig(ModelPresets.Tiny, BertConfig.MaxLabels + 1))!;
        Assert.That(big.Message, Does.Contain("TokenClassificationLabels = 4097"));
    }

    [Test]
    public void ClassificationModelLoadsEncoderAndPoolerAndInitializesItsHead()
    {
        using var dir = TestPaths.NewTempDirectory();
        using var backend = new CpuBackend(2);
        string checkpoint = TinyCheckpoints.WriteRandom(backend, dir.File("pre"), seed: 5);
        var source = PretrainedSource.Open(dir.File("pre"));
        Assert.That(source.Directory, Is.EqualTo(checkpoint));
        Assert.That((source.Step, source.PresetName, source.LowerCase(source.LoadVocabulary())), Is.EqualTo(((long?)1, "tiny", true)));

        using var model = FineTuningTask.Classification.CreateModel(source.Config, 2, backend, 2, 8);
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
            using var model = task.CreateModel(source.Config, 2, backend, 1, 8);
            var report = PretrainedLoader.Load(model, source.WeightsPath, seed: 1);
            Assert.That(report.Dropped, Has.Some.StartsWith("bert.pooler.dense.weight"), task.ToString());
            Assert.That(report.Initialized, Has.Count.EqualTo(2), task.ToString());
        }
        // A model laid out for another vocabulary does not fit the checkpoint.
        using var other = FineTuningTask.Classification.CreateModel(source.Config with { VocabSize = 50 }, 2, backend, 1, 8);
        var e = Assert.Throws<InvalidDataException>(() => PretrainedLoader.Load(other, source.WeightsPath, 1))!;
        Assert.That(e.Message, Does.Contain("bert.embeddings.word_embeddings.weight").And.Contain("[50, 128]"));
    }
}
