using System.Text.Json;
using Bert.Cli;
using Bert.Cli.Commands;
using Bert.Runtime.Cpu;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;
using Bert.Tests.Data;
using NUnit.Framework;

namespace Bert.Tests.FineTuning;

/// <summary>`bert finetune` end to end on tiny data for each task, and its user errors.</summary>
[NonParallelizable] // the commands write to Console
public class FinetuneCommandTests
{
    private TempDirectory _dir = null!;
    private string _checkpoint = null!;

    [OneTimeSetUp]
    public void WriteCheckpoint()
    {
        _dir = TestPaths.NewTempDirectory();
        using var backend = new CpuBackend(2);
        TinyCheckpoints.WriteRandom(backend, _dir.File("pre"), seed: 9);
        _checkpoint = _dir.File("pre");
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    private FinetuneSettings Settings(string task, string data, string output) => new()
    {
        Task = task, Checkpoint = _checkpoint, Data = data, Output = _dir.File(output), Epochs = 2, Batch = 8, MaxSeq = 16,
        LearningRate = 1e-3, Threads = 2, Device = "cpu",
    };

    private static JsonElement Results(string output) => JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "results.json"))).RootElement;

    [Test]
    public void ClassifySavesTheBestCheckpointAsAHuggingFaceClassifierWithMetricsPlotAndPredictions()
    {
        var lines = new List<string> { "label\ttext" };
        for (int i = 0; i < 40; i++)
            lines.Add(i % 2 == 0 ? $"pos\tthe film was {(i % 4 == 0 ? "good" : "great")}" : $"neg\tthe film was {(i % 3 == 0 ? "bad" : "awful")}");
        File.WriteAllLines(_dir.File("train.tsv"), lines);
        File.WriteAllLines(_dir.File("test.tsv"), ["label\ttext", "pos\tit was good", "neg\tit was awful"]);
        var log = new StringWriter();
        var s = Settings("classify", _dir.File("train.tsv"), "cls") with { Test = _dir.File("test.tsv") };
        Assert.That(FinetuneCommand.Run(s, log, default), Is.EqualTo(ExitCodes.Ok));
        string text = log.ToString();
        Assert.That(text, Does.Contain("initialized classifier.weight [2, 128]").And.Contain("dropped     cls.seq_relationship.weight"));
        Assert.That(text, Does.Contain("classes: neg, pos").And.Contain("train 36 examples; validation 4 examples; test 2 examples"));
        Assert.That(text, Does.Contain("epoch 1: train loss").And.Contain("epoch 2: train loss").And.Contain("test (best checkpoint)"));

        var results = Results(s.Output);
        Assert.That(results.GetProperty("per_epoch").GetArrayLength(), Is.EqualTo(2));
        Assert.That(results.GetProperty("labels").EnumerateArray().Select(e => e.GetString()), Is.EqualTo(new[] { "neg", "pos" }));
        Assert.That(results.GetProperty("test").GetProperty("examples").GetInt32(), Is.EqualTo(2));
        Assert.That((results.GetProperty("windows").GetInt32(), results.GetProperty("tail_tokens").GetInt32()), Is.EqualTo((1, 0)));
        string best = results.GetProperty("best_checkpoint").GetString()!;
        var config = ConfigJson.Read(Path.Combine(best, "config.json"));
        Assert.That((config.Model.ClassificationLabels, config.LabelNames), Is.EqualTo((2, new[] { "neg", "pos" })));
        Assert.That(File.ReadAllText(Path.Combine(best, "config.json")), Does.Contain("BertForSequenceClassification"));
        var reopened = PretrainedSource.Open(Path.Combine(s.Output, "best"));
        Assert.That(reopened.LoadVocabulary().Count, Is.EqualTo(TinyCheckpoints.Vocabulary.Count));
        Assert.That(File.ReadAllLines(Path.Combine(s.Output, "metrics.jsonl")), Has.Length.EqualTo(2 * 5 + 2 + 1), "10 steps, 2 validations, 1 test");
        Assert.That(new FileInfo(Path.Combine(s.Output, "finetune.png")).Length, Is.GreaterThan(1000));
        Assert.That(File.ReadAllLines(Path.Combine(s.Output, "predictions.tsv"))[1], Does.StartWith(_dir.File("test.tsv") + ":2\tpos\t"));

        // A second run into the same directory is refused rather than mixing runs.
        Assert.That(Assert.Throws<UserException>(() => FinetuneCommand.Run(s, TextWriter.Null, default))!.Message, Does.Contain("earlier run"));
    }

    /// <summary>Any label count: the head is built at run time with exactly the data's classes.</summary>
    [TestCase(5)]
    [TestCase(12)]
    public void ClassifyTrainsAndEvaluatesWithAnyNumberOfClasses(int classes)
    {
        string[] words = ["good", "bad", "great", "awful", "film", "park", "store", "man", "john", "paris", "went", "lives"];
        var lines = new List<string> { "label\ttext" };
        for (int i = 0; i < 6 * classes; i++)
            lines.Add($"c{i % classes}\tthe {words[i % classes]} {words[(i / classes) % words.Length]}");
        string data = _dir.File($"classes{classes}.tsv");
        File.WriteAllLines(data, lines);
        var log = new StringWriter();
        var s = Settings("classify", data, $"cls{classes}");
        Assert.That(FinetuneCommand.Run(s, log, default), Is.EqualTo(ExitCodes.Ok), log.ToString());
        Assert.That(log.ToString(), Does.Contain($"initialized classifier.weight [{classes}, 128]"));
        var results = Results(s.Output);
        Assert.That(results.GetProperty("labels").GetArrayLength(), Is.EqualTo(classes));
        var v = results.GetProperty("per_epoch")[1].GetProperty("validation");
        Assert.That(v.GetProperty("accuracy").GetDouble(), Is.InRange(0.0, 1.0));
        var config = ConfigJson.Read(Path.Combine(results.GetProperty("best_checkpoint").GetString()!, "config.json"));
        Assert.That(config.Model.ClassificationLabels, Is.EqualTo(classes));
        Assert.That(config.LabelNames, Is.EqualTo(Enumerable.Range(0, classes).Select(i => $"c{i}").Order(StringComparer.Ordinal)));
    }

    [Test]
    public void TokensTrainAHeadOfExactlyTheTagSetAndReportEntityF1()
    {
        var lines = new List<string>();
        for (int i = 0; i < 12; i++)
            lines.AddRange(i % 2 == 0
                ? ["john\tB-PER", "lives\tO", "in\tO", "paris\tB-LOC", ".\tO", ""]
                : ["the\tO", "man\tO", "went\tO", "to\tO", "paris\tB-LOC", ""]);
        File.WriteAllLines(_dir.File("train.conll"), lines);
        var log = new StringWriter();
        var s = Settings("tokens", _dir.File("train.conll"), "tok");
        Assert.That(FinetuneCommand.Run(s, log, default), Is.EqualTo(ExitCodes.Ok));
        Assert.That(log.ToString(), Does.Contain("classes: B-LOC, B-PER, O\n").And.Contain("initialized classifier.weight [3, 128]"));
        var results = Results(s.Output);
        var v = results.GetProperty("per_epoch")[1].GetProperty("validation");
        Assert.That(v.GetProperty("accuracy").GetDouble(), Is.InRange(0.0, 1.0));
        var config = ConfigJson.Read(Path.Combine(results.GetProperty("best_checkpoint").GetString()!, "config.json"));
        Assert.That(config.LabelNames, Is.EqualTo(new[] { "B-LOC", "B-PER", "O" }));
        Assert.That(config.Model.TokenClassificationLabels, Is.EqualTo(3));
        string[] predicted = File.ReadAllLines(Path.Combine(s.Output, "predictions.tsv"))[1].Split('\t')[2].Split(' ');
        Assert.That(predicted, Has.Length.EqualTo(5));
        Assert.That(predicted.Except(["B-LOC", "B-PER", "O"]), Is.Empty);
    }

    [Test]
    public void SpanTrainsOnSquadStyleJsonl()
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
        File.WriteAllLines(_dir.File("train.jsonl"), lines);
        var log = new StringWriter();
        var s = Settings("span", _dir.File("train.jsonl"), "span") with { Epochs = 1 };
        Assert.That(FinetuneCommand.Run(s, log, default), Is.EqualTo(ExitCodes.Ok));
        Assert.That(log.ToString(), Does.Contain("initialized qa_outputs.weight [2, 128]").And.Contain("exact match"));
        var results = Results(s.Output);
        Assert.That(results.GetProperty("per_epoch")[0].GetProperty("validation").TryGetProperty("exact_match", out _), Is.True);
        Assert.That(File.ReadAllText(Path.Combine(results.GetProperty("best_checkpoint").GetString()!, "config.json")), Does.Contain("BertForQuestionAnswering"));
    }

    [Test]
    public void UserMistakesGiveDocumentedExitCodes()
    {
        File.WriteAllLines(_dir.File("one-class.tsv"), ["label\ttext", "pos\tgood", "pos\tgreat"]);
        File.WriteAllLines(_dir.File("bad.tsv"), ["label\ttext", "pos\tgood\textra"]);
        string[] Args(params string[] more) => ["finetune", "--checkpoint", _checkpoint, "--out", _dir.File("err"), "--device", "cpu", .. more];
        Assert.Multiple(() =>
        {
            Assert.That(Program.Run(Args("--task", "translate", "--data", _dir.File("bad.tsv"))), Is.EqualTo(ExitCodes.Usage));
            Assert.That(Program.Run(Args("--task", "classify", "--data", _dir.File("missing.tsv"))), Is.EqualTo(ExitCodes.BadInput));
            Assert.That(Program.Run(Args("--task", "classify", "--data", _dir.File("bad.tsv"))), Is.EqualTo(ExitCodes.BadInput));
            Assert.That(Program.Run(Args("--task", "classify", "--data", _dir.File("one-class.tsv"))), Is.EqualTo(ExitCodes.BadInput));
            Assert.That(Program.Run(Args("--task", "classify", "--data", _dir.File("bad.tsv"), "--lr", "0")), Is.EqualTo(ExitCodes.Usage));
            Assert.That(Program.Run(Args("--task", "tokens", "--data", "spam")), Is.EqualTo(ExitCodes.Usage));
            Assert.That(Program.Run(["finetune", "--task", "classify", "--data", _dir.File("bad.tsv"), "--checkpoint", _dir.File("nothing")]),
                Is.EqualTo(ExitCodes.BadInput));
        });
        Assert.That(Directory.Exists(_dir.File("err")), Is.False);
    }

    [Test]
    public void WithoutTheDefaultPretrainedModelTheUserIsToldToRunPretrainFirst()
    {
        if (Directory.Exists(FinetuneCommand.DefaultCheckpoint)) Assert.Ignore($"{Path.GetFullPath(FinetuneCommand.DefaultCheckpoint)} exists here");
        var e = Assert.Throws<UserException>(() => FinetuneCommand.OpenCheckpoint(FinetuneCommand.DefaultCheckpoint))!;
        Assert.That(e.Message, Does.Contain("run `bert pretrain` first"));
        Assert.That(e.ExitCode, Is.EqualTo(ExitCodes.BadInput));
    }
}
