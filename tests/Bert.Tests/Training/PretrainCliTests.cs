using System.Globalization;
using System.Text.RegularExpressions;
using Bert.Cli;
using Bert.Cli.Commands;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Training;

/// <summary>`bert pretrain` and `bert eval` end to end, through Program.Run, on the synthetic data.</summary>
[NonParallelizable] // the commands write to Console
public partial class PretrainCliTests
{
    private const string Tensor = "bert.encoder.layer.0.attention.output.dense.weight";

    /// <summary>The arguments of a small two-phase run into <paramref name="output"/>; <paramref name="overrides"/>
    /// replace options ("--lr" → "0.002") or add flags ("--resume" → null).</summary>
    private static string[] Args(string output, params (string Option, string? Value)[] overrides)
    {
        var options = new List<(string Option, string? Value)>
        {
            ("--data", TrainingData.DataRoot), ("--vocab", TrainingData.VocabPath), ("--heldout", TrainingData.HeldOutRoot),
            ("--preset", "tiny"), ("--steps", "6"), ("--batch", "4"), ("--micro-batch", "2"), ("--batch-long", "2"),
            ("--micro-batch-long", "1"), ("--seq", "32"), ("--seq-long", "64"), ("--long-fraction", "0.34"), ("--warmup", "2"),
            ("--lr", "0.001"), ("--checkpoint-every", "2"), ("--eval-sequences", "50"), ("--threads", "2"), ("--device", "cpu"),
            ("--seed", "9"), ("--out", output),
        };
        foreach (var o in overrides)
        {
            int i = options.FindIndex(x => x.Option == o.Option);
            if (i >= 0) options[i] = o;
            else options.Add(o);
        }
        var args = new List<string> { "pretrain" };
        foreach (var (option, value) in options)
        {
            args.Add(option);
            if (value is not null) args.Add(value);
        }
        return args.ToArray();
    }

    private sealed record Run(string Directory, int Code, string Out, string Err)
    {
        public string Checkpoints => Path.Combine(Directory, "checkpoints");
        public string Step(int step) => Path.Combine(Checkpoints, CheckpointWriter.DirectoryName(step));
    }

    /// <summary>One complete run, shared by the tests that only read it.</summary>
    private static readonly Lazy<Run> Straight = new(() =>
    {
        string dir = TrainingData.NewDirectory("cli-straight");
        var (code, stdout, stderr) = RunCli(Args(dir));
        return new Run(dir, code, stdout, stderr);
    });

    /// <summary>Every file of a run directory but the lock file (which a refused run may create).</summary>
    private static Dictionary<string, byte[]> Snapshot(string directory) =>
        System.IO.Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) != RunDirectoryLock.LockFile)
            .ToDictionary(f => Path.GetRelativePath(directory, f), File.ReadAllBytes);

    private static void CopyDirectory(string source, string destination)
    {
        System.IO.Directory.CreateDirectory(destination);
        foreach (var f in System.IO.Directory.GetFiles(source)) File.Copy(f, Path.Combine(destination, Path.GetFileName(f)));
        foreach (var d in System.IO.Directory.GetDirectories(source)) CopyDirectory(d, Path.Combine(destination, Path.GetFileName(d)));
    }

    [GeneratedRegex("\"seconds\":[^,}]*")]
    private static partial Regex SecondsField();

    [Test]
    public void PretrainRunsBothPhasesThenResumesBitForBit()
    {
        var a = Straight.Value;
        Assert.That(a.Code, Is.EqualTo(ExitCodes.Ok), a.Err);
        var lines = File.ReadAllLines(Path.Combine(a.Directory, "metrics.jsonl"));
        Assert.Multiple(() =>
        {
            Assert.That(lines.Count(l => l.Contains("\"kind\":\"train\"")), Is.EqualTo(6));
            Assert.That(lines.Count(l => l.Contains("\"phase\":\"seq32\",\"seq_length\":32,")), Is.EqualTo(4));
            Assert.That(lines.Count(l => l.Contains("\"phase\":\"seq64\",\"seq_length\":64,")), Is.EqualTo(2), "the long phase is the last 34%");
            Assert.That(lines.Count(l => l.Contains("\"kind\":\"eval\"")), Is.EqualTo(2), "held-out evaluation at both lengths");
            Assert.That(a.Out, Does.Contain("held-out seq32: loss ").And.Contain("held-out seq64: loss "));
            Assert.That(File.Exists(Path.Combine(a.Directory, "loss.png")));
            Assert.That(new TrainingCheckpoints(a.Checkpoints).Complete.Select(c => c.Step), Is.EqualTo(new[] { 6L, 4L, 2L }));
        });

        // The same run, "killed" after step 2's checkpoint (the later ones removed), then resumed.
        string dir = TrainingData.NewDirectory("cli-resumed");
        Assert.That(RunCli(Args(dir)).Code, Is.EqualTo(ExitCodes.Ok));
        var b = new Run(dir, 0, "", "");
        System.IO.Directory.Delete(b.Step(6), recursive: true);
        System.IO.Directory.Delete(b.Step(4), recursive: true);
        var (code, stdout, stderr) = RunCli(Args(dir, ("--resume", null)));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("resuming at step 2"));
        foreach (var file in new[] { CheckpointWriter.ModelFile, CheckpointWriter.OptimizerFile, CheckpointWriter.TrainerStateFile, "config.json", "vocab.txt" })
            Assert.That(File.ReadAllBytes(Path.Combine(b.Step(6), file)), Is.EqualTo(File.ReadAllBytes(Path.Combine(a.Step(6), file))), file);
        string Untimed(string path) => SecondsField().Replace(File.ReadAllText(path), "");
        Assert.That(Untimed(Path.Combine(b.Directory, "metrics.jsonl")), Is.EqualTo(Untimed(Path.Combine(a.Directory, "metrics.jsonl"))),
            "metrics.jsonl reads as one uninterrupted run");
        Assert.That(File.ReadAllBytes(Path.Combine(b.Step(6), "vocab.txt")), Is.EqualTo(File.ReadAllBytes(TrainingData.VocabPath)), "vocab.txt travels with the checkpoint");
    }

    [Test]
    public void CudaGraphsAutoOnTheCpuSaysWhyOnceAndTrainsTheSameRun()
    {
        var a = Straight.Value;
        Assert.That(a.Code, Is.EqualTo(ExitCodes.Ok), a.Err);
        string dir = TrainingData.NewDirectory("cli-graphs-auto");
        var (code, stdout, stderr) = RunCli(Args(dir, ("--cuda-graphs", "auto")));
        string Metrics(string d) => SecondsField().Replace(File.ReadAllText(Path.Combine(d, "metrics.jsonl")), "");
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
            Assert.That(Regex.Matches(stdout, "cuda graphs: running steps eagerly: the backend cpu").Count, Is.EqualTo(1), stdout);
            Assert.That(stdout, Does.Contain("bert pretrain: cuda graphs fallback (0 captured"));
            Assert.That(Metrics(dir), Is.EqualTo(Metrics(a.Directory)), "the same losses, accuracies and norms as without the option");
        });
    }

    [Test]
    public void ANaNWeightExitsWithCode5AndLeavesTheCheckpointIntact()
    {
        var a = Straight.Value;
        Assert.That(a.Code, Is.EqualTo(ExitCodes.Ok), a.Err);
        string dir = TrainingData.NewDirectory("cli-nan");
        string root = Path.Combine(dir, "checkpoints");
        CopyDirectory(a.Step(2), Path.Combine(root, CheckpointWriter.DirectoryName(2)));

        // Step 2's checkpoint again, with one weight NaN: a run that diverged right after saving.
        var ckpt = CheckpointReader.Open(root);
        var table = ModelPresets.Get("tiny").TableFor(TrainingData.Vocab.Count);
        long total = table.Sum(p => p.Count);
        float[] p = new float[total], m = new float[total], v = new float[total];
        ckpt.ReadParameters(table, p);
        ckpt.ReadOptimizerState(table, m, v);
        p[table.Single(t => t.Name == Tensor).Offset + 7] = float.NaN;
        new CheckpointWriter(root).Save(new CheckpointContent
        {
            Step = 2, Config = ckpt.Config, Table = table, Parameters = p, AdamM = m, AdamV = v,
            TrainerState = ckpt.ReadTrainerState(),
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = ckpt.ReadFile("vocab.txt") },
        });
        var before = Snapshot(root);

        var (code, _, stderr) = RunCli(Args(dir, ("--resume", null)));
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(ExitCodes.NonFinite), stderr);
            Assert.That(stderr, Does.Contain("step 2: loss is NaN"));
            Assert.That(stderr, Does.Contain($"weight {Tensor} [128, 128] is NaN at element 7"));
            Assert.That(Snapshot(root), Is.EqualTo(before), "the checkpoints are unchanged, none added");
        });
    }

    private static string Copy(Run run, string name)
    {
        string dir = TrainingData.NewDirectory(name);
        CopyDirectory(run.Checkpoints, Path.Combine(dir, "checkpoints"));
        File.Copy(Path.Combine(run.Directory, "metrics.jsonl"), Path.Combine(dir, "metrics.jsonl"));
        return dir;
    }

    [Test]
    public void ResumingWithAnotherModelListsEveryMismatchedTensorAndChangesNothing()
    {
        var a = Straight.Value;
        Assert.That(a.Code, Is.EqualTo(ExitCodes.Ok), a.Err);
        string dir = Copy(a, "cli-other-model");
        var before = Snapshot(dir);
        var (code, _, stderr) = RunCli(Args(dir, ("--resume", null), ("--preset", "mini")));

        int v = TrainingData.Vocab.Count;
        var tiny = ModelPresets.Get("tiny").TableFor(v).ToDictionary(t => t.Name, t => t.ShapeText);
        var mini = ModelPresets.Get("mini").TableFor(v);
        var mismatched = mini.Where(t => tiny.TryGetValue(t.Name, out var s) && s != t.ShapeText).ToList();
        var missing = mini.Where(t => !tiny.ContainsKey(t.Name)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(ExitCodes.BadInput), stderr);
            Assert.That(stderr, Does.Contain("--resume: the checkpoint is not a mini model")
                .And.Contain(Path.Combine(dir, "checkpoints", "step-000006", CheckpointWriter.ModelFile)));
            Assert.That(mismatched, Has.Count.GreaterThan(20));
            foreach (var t in mismatched)
                Assert.That(stderr, Does.Contain($"mismatched {t.Name}: model {t.ShapeText}, file {tiny[t.Name]}"));
            foreach (var t in missing)
                Assert.That(stderr, Does.Contain($"missing    {t.Name} {t.ShapeText}"));
            Assert.That(Regex.Matches(stderr, "mismatched ").Count, Is.EqualTo(mismatched.Count), "each mismatched tensor once");
            Assert.That(Snapshot(dir), Is.EqualTo(before), "checkpoints and metrics untouched");
        });
    }

    [Test]
    public void ResumingWithOtherSettingsOrOverwritingARunIsRefused()
    {
        var a = Straight.Value;
        Assert.That(a.Code, Is.EqualTo(ExitCodes.Ok), a.Err);
        string dir = Copy(a, "cli-settings");
        var before = Snapshot(dir);
        var changed = RunCli(Args(dir, ("--resume", null), ("--lr", "0.002")));
        var fresh = RunCli(Args(dir));
        Assert.Multiple(() =>
        {
            Assert.That(changed.Code, Is.EqualTo(ExitCodes.Usage), changed.Err);
            Assert.That(changed.Err, Does.Contain("setting 'lr' is 0.002 but the checkpoint was trained with 0.001")
                .And.Contain(Path.Combine(dir, "checkpoints", "step-000006")));
            Assert.That(fresh.Code, Is.EqualTo(ExitCodes.Usage), fresh.Err);
            Assert.That(fresh.Err, Does.Contain("holds checkpoints of an earlier run; pass --resume"));
            Assert.That(Snapshot(dir), Is.EqualTo(before), "checkpoints and metrics untouched");
        });
    }

    [Test]
    public void MissingOrMismatchedDataIsBadInput()
    {
        string dir = TrainingData.NewDirectory("cli-data");
        string shortDir = PretrainingDataBuilder.DatasetDirectory(TrainingData.DataRoot, 32);

        string onlyShort = Path.Combine(dir, "only-short");
        CopyDirectory(shortDir, Path.Combine(onlyShort, "seq32"));
        var missing = RunCli(Args(Path.Combine(dir, "out1"), ("--data", onlyShort)));

        string wrongLength = Path.Combine(dir, "wrong-length");
        CopyDirectory(shortDir, Path.Combine(wrongLength, "seq32"));
        CopyDirectory(shortDir, Path.Combine(wrongLength, "seq64"));
        var length = RunCli(Args(Path.Combine(dir, "out2"), ("--data", wrongLength)));

        string otherVocab = Path.Combine(dir, "other-vocab.txt");
        Vocabulary.FromTokens(TrainingData.Vocab.Tokens.Append("zzz")).Save(otherVocab);
        var vocab = RunCli(Args(Path.Combine(dir, "out3"), ("--vocab", otherVocab)));

        var noCheckpoint = RunCli(Args(Path.Combine(dir, "out4"), ("--resume", null)));

        Assert.Multiple(() =>
        {
            Assert.That(missing.Code, Is.EqualTo(ExitCodes.BadInput), missing.Err);
            Assert.That(missing.Err, Does.Contain(Path.Combine(onlyShort, "seq64")).And.Contain("not found"));
            Assert.That(length.Code, Is.EqualTo(ExitCodes.BadInput), length.Err);
            Assert.That(length.Err, Does.Contain(Path.Combine(wrongLength, "seq64")).And.Contain("seq_length 32, phase seq64 needs 64"));
            Assert.That(vocab.Code, Is.EqualTo(ExitCodes.BadInput), vocab.Err);
            Assert.That(vocab.Err, Does.Contain("vocab_hash").And.Contain(shortDir).And.Contain(otherVocab));
            Assert.That(noCheckpoint.Code, Is.EqualTo(ExitCodes.BadInput), noCheckpoint.Err);
            Assert.That(noCheckpoint.Err, Does.Contain("--resume: no complete checkpoint under"));
            foreach (var o in new[] { "out1", "out2", "out3", "out4" })
                Assert.That(System.IO.Directory.Exists(Path.Combine(dir, o)), Is.False, $"{o}: nothing written before the input was checked");
        });
    }

    /// <summary>--config run.json: options from a file, the command line overriding them; every run records its resolved
    /// options as run-config.json, which is itself a valid --config file.</summary>
    [Test]
    public void RunConfigFileGivesTheOptionsAndTheRunRecordsItsResolvedOnes()
    {
        string dir = TrainingData.NewDirectory("cli-runconfig");
        string output = Path.Combine(dir, "run");
        var args = Args(output);
        // Everything but the command name and --steps moves to the file (lists and numbers as JSON values).
        var file = new System.Text.Json.Nodes.JsonObject();
        for (int i = 1; i < args.Length; i += 2)
            if (args[i] != "--steps")
                file[args[i].TrimStart('-')] = args[i] == "--data" ? new System.Text.Json.Nodes.JsonArray(args[i + 1])
                    : double.TryParse(args[i + 1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double d) && args[i] != "--preset"
                        ? System.Text.Json.Nodes.JsonValue.Create(d) : System.Text.Json.Nodes.JsonValue.Create(args[i + 1]);
        file["steps"] = 100;   // overridden by the command line below
        string runJson = Path.Combine(dir, "run.json");
        File.WriteAllText(runJson, file.ToJsonString());

        var (code, _, err) = TrainingHelpers.RunCli("pretrain", "--config", runJson, "--steps", "6");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), err);
        string recorded = Path.Combine(output, "run-config.json");
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(recorded)))
        {
            var r = doc.RootElement;
            Assert.That(r.GetProperty("steps").GetInt64(), Is.EqualTo(6), "the command line wins over the file");
            Assert.That(r.GetProperty("lr").GetDouble(), Is.EqualTo(0.001));
            Assert.That(r.GetProperty("micro-batch").GetInt32(), Is.EqualTo(2));
            Assert.That(r.GetProperty("data")[0].GetString(), Is.EqualTo(TrainingData.DataRoot));
            Assert.That(r.GetProperty("keep").GetInt32(), Is.EqualTo(3), "defaults are recorded too");
            Assert.That(r.GetProperty("out").GetString(), Is.EqualTo(output));
        }
        Assert.That(System.IO.Directory.Exists(Path.Combine(output, "checkpoints", "step-000006")));

        // The recorded file runs again: an interrupted run resumes with exactly its options.
        System.IO.Directory.Delete(Path.Combine(output, "checkpoints", "step-000006"), recursive: true);
        File.WriteAllText(Path.Combine(output, "checkpoints", "latest"), "step-000004");
        var again = TrainingHelpers.RunCli("pretrain", "--config", recorded, "--resume");
        Assert.That(again.Code, Is.EqualTo(ExitCodes.Ok), again.Err);
        Assert.That(System.IO.Directory.Exists(Path.Combine(output, "checkpoints", "step-000006")));

        File.WriteAllText(runJson, """{"stepz": 3}""");
        var bad = TrainingHelpers.RunCli("pretrain", "--config", runJson);
        Assert.That(bad.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(bad.Err, Does.Contain(runJson).And.Contain("'stepz'").And.Contain("no option --stepz"));
    }

    /// <summary>--model-config: a HuggingFace config.json of sizes no preset has pretrains, checkpoints and resumes.</summary>
    [Test]
    public void PretrainWithAConfigJsonOfAnySize()
    {
        string root = TrainingData.NewDirectory("cli-config");
        string configPath = Path.Combine(root, "config.json");
        File.WriteAllText(configPath, """
            {"architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 24, "num_hidden_layers": 3,
             "num_attention_heads": 3, "intermediate_size": 40, "max_position_embeddings": 64, "hidden_act": "relu"}
            """);
        var settings = new PretrainSettings
        {
            Data = TrainingData.DataRoot, Vocab = TrainingData.VocabPath, ModelConfig = configPath, Steps = 4, Batch = 4, MicroBatch = 2,
            BatchLong = 2, MicroBatchLong = 1, Seq = 32, SeqLong = 64, LongFraction = 0.25, Warmup = 1, LearningRate = 0.001,
            CheckpointEvery = 2, EvalSequences = 20, Threads = 2, Device = "cpu", Seed = 3, Output = Path.Combine(root, "run"),
        };
        Assert.That(PretrainCommand.Run(settings, CancellationToken.None), Is.EqualTo(ExitCodes.Ok));
        var ckpt = CheckpointReader.Open(Path.Combine(root, "run", "checkpoints"));
        Assert.That(ckpt.Config is { Layers: 3, Hidden: 24, Heads: 3, Intermediate: 40, MaxPositions: 64, HiddenActivation: Activation.Relu });
        Assert.That(ckpt.Config.VocabSize, Is.EqualTo(TrainingData.Vocab.Count), "vocab_size follows the vocabulary");
        // Interrupted after step 2: --resume continues from it with the config's model.
        System.IO.Directory.Delete(Path.Combine(root, "run", "checkpoints", "step-000004"), recursive: true);
        File.WriteAllText(Path.Combine(root, "run", "checkpoints", "latest"), "step-000002");
        Assert.That(PretrainCommand.Run(settings with { Resume = true }, CancellationToken.None), Is.EqualTo(ExitCodes.Ok), "resumes");
        Assert.That(System.IO.Directory.Exists(Path.Combine(root, "run", "checkpoints", "step-000004")));

        Assert.That(Assert.Throws<UserException>(() => PretrainCommand.Run(settings with { Preset = "mini", Output = Path.Combine(root, "both") }, CancellationToken.None))!
            .Message, Does.Contain("give one"));
        File.WriteAllText(configPath, """{"vocab_size": 10, "hidden_size": 25, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}""");
        var bad = Assert.Throws<UserException>(() => PretrainCommand.Run(settings with { Output = Path.Combine(root, "bad") }, CancellationToken.None))!;
        Assert.That(bad.Message, Does.Contain(configPath).And.Contain("hidden_size"));
        Assert.That(bad.ExitCode, Is.EqualTo(ExitCodes.BadInput));
    }

    [Test]
    public void TheDefaultJobRunAgainContinuesAnUnfinishedRunOrNumbersTheNextOne()
    {
        string root = TrainingData.NewDirectory("cli-again");
        string run = Path.Combine(root, "pretrain");
        var settings = new PretrainSettings
        {
            Data = TrainingData.DataRoot, Vocab = TrainingData.VocabPath, Preset = "tiny", Steps = 6, Batch = 4, MicroBatch = 2,
            BatchLong = 2, MicroBatchLong = 1, Seq = 32, SeqLong = 64, LongFraction = 0.34, Warmup = 2, LearningRate = 0.001,
            CheckpointEvery = 2, EvalSequences = 50, Threads = 2, Device = "cpu", Seed = 9, Output = run, OutputIsDefault = true,
        };
        var log = new StringWriter();
        Assert.That(PretrainCommand.ContinueOrNumber(settings, log).Output, Is.EqualTo(run), "a fresh default run uses the default directory");
        Assert.That(PretrainCommand.Run(settings, CancellationToken.None), Is.EqualTo(ExitCodes.Ok));

        var second = PretrainCommand.ContinueOrNumber(settings, log);
        Assert.That(second.Output, Is.EqualTo(run + "-2"));
        Assert.That(second.Resume, Is.False);
        Assert.That(log.ToString(), Does.Contain("holds a finished run").And.Contain(run + "-2"));
        Assert.That(PretrainCommand.Run(settings, CancellationToken.None), Is.EqualTo(ExitCodes.Ok), "the headline command works again");
        Assert.That(System.IO.Directory.Exists(Path.Combine(run + "-2", "checkpoints", "step-000006")));

        // An interrupted second run (only step 2 complete) is continued, not numbered anew.
        System.IO.Directory.Delete(Path.Combine(run + "-2", "checkpoints", "step-000006"), recursive: true);
        System.IO.Directory.Delete(Path.Combine(run + "-2", "checkpoints", "step-000004"), recursive: true);
        var third = PretrainCommand.ContinueOrNumber(settings, log);
        Assert.That((third.Output, third.Resume), Is.EqualTo((run + "-2", true)));
        Assert.That(PretrainCommand.Run(settings, CancellationToken.None), Is.EqualTo(ExitCodes.Ok));
        Assert.That(System.IO.Directory.Exists(Path.Combine(run + "-2", "checkpoints", "step-000006")));

        // An explicit --out keeps refusing an occupied directory.
        var explicitOut = settings with { OutputIsDefault = false };
        Assert.That(PretrainCommand.ContinueOrNumber(explicitOut, log), Is.EqualTo(explicitOut));
        var e = Assert.Throws<UserException>(() => PretrainCommand.Run(explicitOut, CancellationToken.None))!;
        Assert.That(e.Message, Does.Contain("holds checkpoints of an earlier run"));
    }

    [Test]
    public void PretrainFromCorpusFilesMakesItsDatasetsAndTrains()
    {
        string dir = TrainingData.NewDirectory("cli-corpus");
        string a = Bert.Tests.Data.SyntheticCorpus.Write(Path.Combine(dir, "a.txt"), 30, 6, seed: 1);
        string b = Bert.Tests.Data.SyntheticCorpus.Write(Path.Combine(dir, "b.txt"), 30, 6, seed: 2);
        string vocab = Path.Combine(dir, "vocab.txt");
        Bert.Tests.Data.SyntheticCorpus.Vocabulary.Save(vocab);
        string run = Path.Combine(dir, "run");
        string[] Args(string output, params string[] extra) =>
        [
            "pretrain", "--corpus", a, b, "--preset", "tiny", "--steps", "4", "--batch", "4", "--batch-long", "2", "--seq", "32", "--seq-long", "64",
            "--long-fraction", "0.25", "--warmup", "1", "--eval-sequences", "20", "--threads", "2", "--device", "cpu", "--out", output, .. extra,
        ];
        var (code, stdout, stderr) = RunCli(Args(run, "--vocab", vocab));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("57 training and 3 held-out documents"));
        foreach (var sub in new[] { "data/seq32", "data/seq64", "heldout/seq32", "heldout/seq64" })
            Assert.That(System.IO.Directory.EnumerateFiles(Path.Combine(run, "corpus", sub), "shard-*.bin").Any(), sub);
        Assert.That(stdout, Does.Contain("held-out seq32"));
        Assert.That(System.IO.Directory.Exists(Path.Combine(run, "checkpoints", "step-000004")));

        // Without --vocab a vocabulary is learned into the run directory.
        string learned = Path.Combine(dir, "learned");
        var second = RunCli(Args(learned, "--vocab-size", "120"));
        Assert.That(second.Code, Is.EqualTo(ExitCodes.Ok), second.Err);
        Assert.That(File.Exists(Path.Combine(learned, "corpus", "vocab.txt")));

        var both = RunCli(Args(Path.Combine(dir, "both"), "--data", TrainingData.DataRoot));
        Assert.That(both.Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(both.Err, Does.Contain("either --corpus or --data"));
        var missing = RunCli(Args(Path.Combine(dir, "missing"), "--corpus", Path.Combine(dir, "nope.txt")));
        Assert.That(missing.Code, Is.EqualTo(ExitCodes.BadInput), missing.Err);
        Assert.That(missing.Err, Does.Contain("nope.txt"));
    }

    [Test]
    public void AnUnwritableOutputDirectoryIsAnIoError()
    {
        string dir = TrainingData.NewDirectory("cli-unwritable");
        string file = Path.Combine(dir, "a-file");
        File.WriteAllText(file, "not a directory");
        var (code, _, stderr) = RunCli(Args(Path.Combine(file, "run")));
        Assert.That(code, Is.EqualTo(ExitCodes.Io), stderr);
        Assert.That(stderr, Does.Contain($"--out {Path.Combine(file, "run")}: cannot create the output directory"));
        Assert.That(File.ReadAllText(file), Is.EqualTo("not a directory"));
    }

    // ---- bert eval ---------------------------------------------------------------------------

    [GeneratedRegex(@"loss [0-9.]+ \(MLM [0-9.]+, NSP [0-9.]+\), MLM accuracy [0-9.]+ %, NSP accuracy [0-9.]+ % over \d+ sequences")]
    private static partial Regex EvalNumbers();

    [Test]
    public void EvalReproducesTheHeldOutNumbersOfPretrainFromTheCheckpoint()
    {
        var a = Straight.Value;
        Assert.That(a.Code, Is.EqualTo(ExitCodes.Ok), a.Err);
        var (code, stdout, stderr) = RunCli("eval", "--checkpoint", a.Checkpoints, "--data", TrainingData.HeldOutRoot,
            "--batch", "2", "--max-sequences", "50", "--threads", "2", "--device", "cpu");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("step 6, tiny"));
        foreach (int seq in new[] { 32, 64 })
        {
            string pretrainLine = a.Out.Split('\n').Single(l => l.StartsWith($"held-out seq{seq}:", StringComparison.Ordinal));
            string evalLine = stdout.Split('\n').Single(l => l.StartsWith(PretrainingDataBuilder.DatasetDirectory(TrainingData.HeldOutRoot, seq) + ":", StringComparison.Ordinal));
            Assert.That(EvalNumbers().Match(evalLine).Value, Is.EqualTo(EvalNumbers().Match(pretrainLine).Value).And.Not.Empty, $"seq{seq}");
        }
    }

    [Test]
    public void EvalOfZeroWeightsGivesUniformPredictions()
    {
        // All-zero weights make every logit 0: the MLM loss is ln V and the NSP loss ln 2, exactly
        // what an independent computation gives.
        string dir = TrainingData.NewDirectory("eval-zero");
        var config = ModelPresets.Get("tiny").Config with { VocabSize = TrainingData.Vocab.Count };
        var table = ModelPresets.Get("tiny").TableFor(config.VocabSize);
        new CheckpointWriter(dir).Save(new CheckpointContent { Step = 0, Config = config, Table = table, Parameters = new float[table.Sum(t => t.Count)] });
        string data = PretrainingDataBuilder.DatasetDirectory(TrainingData.HeldOutRoot, 32);

        var noVocab = RunCli("eval", "--checkpoint", dir, "--data", data, "--device", "cpu");
        var (code, stdout, stderr) = RunCli("eval", "--checkpoint", dir, "--data", data, "--vocab", TrainingData.VocabPath, "--device", "cpu");
        Assert.That(noVocab.Code, Is.EqualTo(ExitCodes.BadInput), noVocab.Err);
        Assert.That(noVocab.Err, Does.Contain("stores no vocab.txt; pass --vocab"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        double lnV = Math.Log(TrainingData.Vocab.Count), ln2 = Math.Log(2);
        Assert.That(stdout, Does.Contain(string.Create(CultureInfo.InvariantCulture,
            $"loss {lnV + ln2:F4} (MLM {lnV:F4}, NSP {ln2:F4}), MLM accuracy 0.00 %")));
    }

    [Test]
    public void EvalRunsAModelOfAnySizeAndRejectsMismatchedInputs()
    {
        var a = Straight.Value;
        Assert.That(a.Code, Is.EqualTo(ExitCodes.Ok), a.Err);
        string dir = TrainingData.NewDirectory("eval-bad");
        string odd = Path.Combine(dir, "odd");
        var config = NoDropoutModel.DefaultConfig with { VocabSize = TrainingData.Vocab.Count, MaxPositions = 512 };
        var table = NoDropoutModel.TableFor(config);
        new CheckpointWriter(odd).Save(new CheckpointContent { Step = 0, Config = config, Table = table, Parameters = new float[table.Sum(t => t.Count)] });
        string otherVocab = Path.Combine(dir, "other-vocab.txt");
        Vocabulary.FromTokens(TrainingData.Vocab.Tokens.Append("zzz")).Save(otherVocab);

        var anySize = RunCli("eval", "--checkpoint", odd, "--data", TrainingData.HeldOutRoot, "--vocab", TrainingData.VocabPath, "--device", "cpu");
        var vocab = RunCli("eval", "--checkpoint", a.Checkpoints, "--data", TrainingData.HeldOutRoot, "--vocab", otherVocab, "--device", "cpu");
        var noData = RunCli("eval", "--checkpoint", a.Checkpoints, "--data", Path.Combine(dir, "absent"), "--device", "cpu");
        var noCheckpoint = RunCli("eval", "--checkpoint", Path.Combine(dir, "absent"), "--data", TrainingData.HeldOutRoot, "--device", "cpu");
        Assert.Multiple(() =>
        {
            // No preset has these sizes (L2 H32 A4 I37): sizes are run-time data, so it evaluates.
            Assert.That(anySize.Code, Is.EqualTo(ExitCodes.Ok), anySize.Err);
            Assert.That(anySize.Out, Does.Contain("L2 H32 A4").And.Contain("MLM accuracy"));
            Assert.That(vocab.Code, Is.EqualTo(ExitCodes.BadInput), vocab.Err);
            Assert.That(vocab.Err, Does.Contain(otherVocab).And.Contain($"vocab_size {TrainingData.Vocab.Count}"));
            Assert.That(noData.Code, Is.EqualTo(ExitCodes.BadInput), noData.Err);
            Assert.That(noData.Err, Does.Contain(Path.Combine(dir, "absent")));
            Assert.That(noCheckpoint.Code, Is.EqualTo(ExitCodes.BadInput), noCheckpoint.Err);
            Assert.That(noCheckpoint.Err, Does.Contain(Path.Combine(dir, "absent")));
        });
    }
}
