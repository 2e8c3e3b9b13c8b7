using System.Text.Json;
using Bert.Cli;
using Bert.Cli.Commands;
using Bert.Runtime.Cpu;
using Bert.Runtime.FineTuning;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.FineTuning;

/// <summary>`bert predict` and <see cref="BertPredictor"/> on fine-tuned models: the predictions equal those the
/// fine-tuning run's evaluator wrote for the same test file (predictions.tsv), labels by name.</summary>
public class PredictCommandTests
{
    private TempDirectory _dir = null!;
    private string _checkpoint = null!;

    [OneTimeSetUp]
    public void WriteCheckpoint()
    {
        _dir = TestPaths.NewTempDirectory();
        using var backend = new CpuBackend(2);
        TinyCheckpoints.WriteRandom(backend, _dir.File("pre"), seed: 4);
        _checkpoint = _dir.File("pre");
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    /// <summary>Fine-tunes <paramref name="task"/> on <paramref name="train"/>, evaluating <paramref name="test"/>;
    /// returns the best checkpoint and the predicted column of predictions.tsv.</summary>
    private (string Best, string[] Predicted) Finetune(string task, string train, string test, string name)
    {
        var s = new FinetuneSettings
        {
            Task = task, Checkpoint = _checkpoint, Data = train, Test = test, Output = _dir.File(name), Epochs = 2, Batch = 8, MaxSeq = 16,
            LearningRate = 1e-3, Threads = 2, Device = "cpu",
        };
        var log = new StringWriter();
        Assert.That(FinetuneCommand.Run(s, log, default), Is.EqualTo(ExitCodes.Ok), log.ToString());
        var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(s.Output, "results.json"))).RootElement;
        var predicted = File.ReadAllLines(Path.Combine(s.Output, "predictions.tsv")).Skip(1).Select(l => l.Split('\t')[2]).ToArray();
        return (results.GetProperty("best_checkpoint").GetString()!, predicted);
    }

    private (int Code, string[] Lines, string Log) Predict(string checkpoint, string input, string output)
    {
        var log = new StringWriter();
        int code = PredictCommand.Run(checkpoint, input, output, 16, 4, "cpu", 2, TextWriter.Null, log, default);
        return (code, code == ExitCodes.Ok ? File.ReadAllLines(output) : [], log.ToString());
    }

    [Test]
    public void Classify_PredictsTheEvaluatorsLabelsByName()
    {
        string[] labels = ["neg", "neu", "pos"];
        string[] words = ["awful", "fine", "great"];
        var train = new List<string> { "label\ttext" };
        for (int i = 0; i < 36; i++) train.Add($"{labels[i % 3]}\tthe film was {words[i % 3]}");
        File.WriteAllLines(_dir.File("cls-train.tsv"), train);
        string[] texts = ["it was great", "the film was awful", "it was fine", "a good film"];
        File.WriteAllLines(_dir.File("cls-test.tsv"), ["label\ttext", .. texts.Select(t => "pos\t" + t)]);
        var (best, expected) = Finetune("classify", _dir.File("cls-train.tsv"), _dir.File("cls-test.tsv"), "cls");

        File.WriteAllLines(_dir.File("cls-input.txt"), texts);
        var (code, lines, log) = Predict(best, _dir.File("cls-input.txt"), _dir.File("cls-out.tsv"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), log);
        Assert.That(lines[0], Is.EqualTo("label\tscore\ttext"));
        Assert.That(lines.Skip(1).Select(l => l.Split('\t')[0]), Is.EqualTo(expected));
        Assert.That(lines.Skip(1).Select(l => l.Split('\t')[2]), Is.EqualTo(texts));
        Assert.That(log, Does.Contain("4 lines with BertForSequenceClassification (L2 H128, 3 labels)"));

        using var backend = new CpuBackend(2);
        using var predictor = BertPredictor.Load(best, backend, maxSeq: 16, batchSize: 3);
        Assert.That(predictor.Labels, Is.EqualTo(labels));
        var p = predictor.Classify(texts);
        Assert.That(p.Select(x => x.Label), Is.EqualTo(expected), "batches of 3 give what batches of 4 gave");
        foreach (var x in p)
        {
            Assert.That(x.Probabilities.Sum(), Is.EqualTo(1.0).Within(1e-9));
            Assert.That(x.Score, Is.EqualTo(x.Probabilities.Max()));
        }
        Assert.That(predictor.Embed(texts), Has.Length.EqualTo(4 * 128));
        Assert.Throws<InvalidOperationException>(() => predictor.Tag(texts));
    }

    [Test]
    public void Tag_PredictsTheEvaluatorsTags()
    {
        var train = new List<string>();
        for (int i = 0; i < 12; i++)
            train.AddRange(i % 2 == 0 ? ["john\tB-PER", "lives\tO", "in\tO", "paris\tB-LOC", "", ] : ["the\tO", "man\tO", "went\tO", "to\tO", "paris\tB-LOC", ""]);
        File.WriteAllLines(_dir.File("tok-train.conll"), train);
        File.WriteAllLines(_dir.File("tok-test.conll"), ["john\tO", "went\tO", "to\tO", "paris\tO", "", "who\tO", "lives\tO", "in\tO", "paris\tO", "?\tO", ""]);
        var (best, expected) = Finetune("tokens", _dir.File("tok-train.conll"), _dir.File("tok-test.conll"), "tok");

        File.WriteAllLines(_dir.File("tok-input.txt"), ["john went to paris", "who lives in paris ?"]);
        var (code, lines, log) = Predict(best, _dir.File("tok-input.txt"), _dir.File("tok-out.tsv"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), log);
        Assert.That(lines.Skip(1).Select(l => string.Join(' ', l.Split(' ').Select(w => w[(w.LastIndexOf('/') + 1)..]))), Is.EqualTo(expected));
        Assert.That(lines[1], Does.StartWith("john/"));
    }

    [Test]
    public void Answer_PredictsTheEvaluatorsAnswers()
    {
        var lines = new List<string>();
        for (int i = 0; i < 16; i++)
        {
            string place = i % 2 == 0 ? "store" : "park";
            string context = $"the man went to the {place} . john lives in paris .";
            lines.Add(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["id"] = $"q{i}", ["context"] = context, ["question"] = "where did the man go ?",
                ["answer_start"] = context.IndexOf(place, StringComparison.Ordinal), ["answer_text"] = place,
            }));
        }
        File.WriteAllLines(_dir.File("span-train.jsonl"), lines);
        File.WriteAllLines(_dir.File("span-test.jsonl"), lines.Take(3));
        var (best, expected) = Finetune("span", _dir.File("span-train.jsonl"), _dir.File("span-test.jsonl"), "span");

        var (code, output, log) = Predict(best, _dir.File("span-test.jsonl"), _dir.File("span-out.tsv"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), log);
        Assert.That(output[0], Is.EqualTo("answer\tstart\tscore\tquestion"));
        Assert.That(output.Skip(1).Select(l => l.Split('\t')[0]), Is.EqualTo(expected));
        foreach (var l in output.Skip(1))
        {
            var f = l.Split('\t');
            Assert.That(f[0].Length == 0 || "the man went to the store . john lives in paris .".Contains(f[0]) || "the man went to the park . john lives in paris .".Contains(f[0]));
        }
    }

    [Test]
    public void APretrainingCheckpointOrAMissingInputIsRefused()
    {
        File.WriteAllLines(_dir.File("some.txt"), ["a text"]);
        var e = Assert.Throws<UserException>(() => PredictCommand.Run(_checkpoint, _dir.File("some.txt"), null, 16, 4, "cpu", 2, TextWriter.Null, TextWriter.Null, default))!;
        Assert.That(e.ExitCode, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(e.Message, Does.Contain("BertForPreTraining has no fine-tuned head").And.Contain("config.json"));
        var missing = Assert.Throws<UserException>(() => PredictCommand.Run(_checkpoint, _dir.File("absent.txt"), null, 16, 4, "cpu", 2, TextWriter.Null, TextWriter.Null, default))!;
        Assert.That(missing.ExitCode, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(Program.Run(["predict", "--checkpoint", _checkpoint, "--input", _dir.File("some.txt"), "--device", "cpu"]), Is.EqualTo(ExitCodes.BadInput));
    }
}
