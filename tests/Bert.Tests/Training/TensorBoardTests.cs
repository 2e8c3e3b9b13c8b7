using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Bert.Cli;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;
using Bert.Runtime.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Training;

/// <summary>
/// TensorBoard event files, read back by a reader of their own (TFRecord framing with both masked CRC-32Cs
/// checked by a table CRC, not the writer's BitOperations one; the Event protobuf decoded field by field).
/// </summary>
[NonParallelizable] // the pretrain runs write to Console
public class TensorBoardTests
{
    // ---- an independent reader ---------------------------------------------------------------

    private sealed record Scalar(string Tag, float Value);

    private sealed record Event(double WallTime, long Step, string? FileVersion, int? SessionStatus, List<Scalar> Scalars);

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(i =>
    {
        uint c = (uint)i;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        return c;
    }).ToArray();

    private static uint TableCrc32C(ReadOnlySpan<byte> data)
    {
        uint c = ~0u;
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    private static uint Masked(ReadOnlySpan<byte> data)
    {
        uint c = TableCrc32C(data);
        return unchecked(((c >> 15) | (c << 17)) + 0xa282ead8u);
    }

    /// <summary>Every record of a TFRecord file; throws InvalidDataException at the first bad checksum or short record.</summary>
    private static List<byte[]> ReadRecords(byte[] file)
    {
        var records = new List<byte[]>();
        int at = 0;
        while (at < file.Length)
        {
            if (file.Length - at < 12) throw new InvalidDataException($"record {records.Count}: truncated header");
            var head = file.AsSpan(at, 8);
            if (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 8)) != Masked(head))
                throw new InvalidDataException($"record {records.Count}: length checksum mismatch");
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(head);
            if (length > (ulong)(file.Length - at - 16)) throw new InvalidDataException($"record {records.Count}: truncated data");
            var data = file.AsSpan(at + 12, (int)length);
            if (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 12 + (int)length)) != Masked(data))
                throw new InvalidDataException($"record {records.Count}: data checksum mismatch");
            records.Add(data.ToArray());
            at += 16 + (int)length;
        }
        return records;
    }

    private static ulong Varint(ReadOnlySpan<byte> b, ref int at)
    {
        ulong v = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte x = b[at++];
            v |= (ulong)(x & 0x7F) << shift;
            if (x < 0x80) return v;
        }
    }

    /// <summary>(field, wire type, varint or fixed value, bytes) for each field of a protobuf message.</summary>
    private static List<(int Field, int Wire, ulong Number, byte[] Bytes)> Fields(ReadOnlySpan<byte> b)
    {
        var fields = new List<(int, int, ulong, byte[])>();
        int at = 0;
        while (at < b.Length)
        {
            ulong key = Varint(b, ref at);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: fields.Add((field, wire, Varint(b, ref at), [])); break;
                case 1: fields.Add((field, wire, BinaryPrimitives.ReadUInt64LittleEndian(b[at..]), [])); at += 8; break;
                case 5: fields.Add((field, wire, BinaryPrimitives.ReadUInt32LittleEndian(b[at..]), [])); at += 4; break;
                case 2:
                    int n = (int)Varint(b, ref at);
                    fields.Add((field, wire, 0, b.Slice(at, n).ToArray()));
                    at += n;
                    break;
                default: throw new InvalidDataException($"wire type {wire} of field {field}");
            }
        }
        return fields;
    }

    private static Event Decode(byte[] record)
    {
        double wall = 0;
        long step = 0;
        string? version = null;
        int? session = null;
        var scalars = new List<Scalar>();
        foreach (var (field, wire, number, bytes) in Fields(record))
        {
            switch (field, wire)
            {
                case (1, 1): wall = BitConverter.UInt64BitsToDouble(number); break;
                case (2, 0): step = (long)number; break;
                case (3, 2): version = Encoding.UTF8.GetString(bytes); break;
                case (5, 2):
                    foreach (var value in Fields(bytes).Where(f => f.Field == 1))
                    {
                        var vf = Fields(value.Bytes);
                        scalars.Add(new Scalar(Encoding.UTF8.GetString(vf.Single(f => f.Field == 1 && f.Wire == 2).Bytes),
                            BitConverter.UInt32BitsToSingle((uint)vf.Single(f => f.Field == 2 && f.Wire == 5).Number)));
                    }
                    break;
                case (7, 2): session = (int)Fields(bytes).Single(f => f.Field == 1).Number; break;
                default: throw new InvalidDataException($"unexpected Event field {field} (wire {wire})");
            }
        }
        return new Event(wall, step, version, session, scalars);
    }

    private static List<Event> ReadEvents(string path) => ReadRecords(File.ReadAllBytes(path)).Select(Decode).ToList();

    private static string[] EventFiles(string directory) =>
        Directory.GetFiles(directory, "events.out.tfevents.*").Order(StringComparer.Ordinal).ToArray();

    // ---- the writer ----------------------------------------------------------------------------

    [Test]
    public void Crc32CIsCastagnoliAndAgreesWithATableCrc()
    {
        Assert.That(TensorBoardWriter.Crc32C("123456789"u8), Is.EqualTo(0xE3069283u), "the CRC-32C check value");
        var rng = new Random(5);
        for (int n = 0; n < 70; n++)
        {
            var data = new byte[n];
            rng.NextBytes(data);
            Assert.That(TensorBoardWriter.Crc32C(data), Is.EqualTo(TableCrc32C(data)), $"{n} bytes");
            Assert.That(TensorBoardWriter.MaskedCrc32C(data), Is.EqualTo(Masked(data)), $"{n} bytes, masked");
        }
    }

    [Test]
    public void EventsReadBackWithTheirStepsTagsAndValues()
    {
        string dir = Path.Combine(TrainingData.NewDirectory("tb-writer"), "tensorboard");
        string path;
        double before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0 - 1;
        using (var w = TensorBoardWriter.Create(dir))
        {
            path = w.Path;
            w.Write(0, ("train/loss", 7.25), ("train/learning_rate", 1e-4));
            w.Write(1, ("train/loss", 6.5), ("train/learning_rate", 2e-4));
            w.Write(130, ("eval/über_loss", -0.125));
            // Flushed after every step: a reader sees all of it while the file is still open.
            Assert.That(ReadEvents(path), Has.Count.EqualTo(5));
        }
        using (var second = TensorBoardWriter.Create(dir, startStep: 1)) { }

        Assert.That(Path.GetFileName(path), Does.Match(@"^events\.out\.tfevents\.\d{10}\.[A-Za-z0-9_.-]+$"));
        var events = ReadEvents(path);
        Assert.Multiple(() =>
        {
            Assert.That(events[0].FileVersion, Is.EqualTo("brain.Event:2"));
            Assert.That(events[0].Scalars, Is.Empty);
            Assert.That(events[1].SessionStatus, Is.EqualTo(1), "SessionLog START");
            Assert.That(events.Select(e => e.Step), Is.EqualTo(new long[] { 0, 0, 0, 1, 130 }));
            Assert.That(events[2].Scalars, Is.EqualTo(new[] { new Scalar("train/loss", 7.25f), new Scalar("train/learning_rate", 1e-4f) }));
            Assert.That(events[3].Scalars, Is.EqualTo(new[] { new Scalar("train/loss", 6.5f), new Scalar("train/learning_rate", 2e-4f) }));
            Assert.That(events[4].Scalars, Is.EqualTo(new[] { new Scalar("eval/über_loss", -0.125f) }));
            Assert.That(events.All(e => e.WallTime >= before && e.WallTime < before + 600), "wall_time is Unix seconds");
        });

        // A second writer (a resumed run) never overwrites the first file, and marks where it resumes.
        var files = EventFiles(dir);
        Assert.That(files, Has.Length.EqualTo(2));
        Assert.That(ReadEvents(path), Has.Count.EqualTo(5));
        var resumed = ReadEvents(files.Single(f => f != path));
        Assert.That(resumed.Select(e => (e.Step, e.FileVersion, e.SessionStatus)),
            Is.EqualTo(new (long, string?, int?)[] { (0, "brain.Event:2", null), (1, null, 1) }), "file_version, then SessionLog START at step 1");
    }

    [Test]
    public void EveryCorruptedByteFailsAChecksum()
    {
        string dir = Path.Combine(TrainingData.NewDirectory("tb-corrupt"), "tensorboard");
        string path;
        using (var w = TensorBoardWriter.Create(dir))
        {
            path = w.Path;
            w.Write(3, ("train/loss", 1.0), ("train/grad_norm", 0.5));
        }
        var good = File.ReadAllBytes(path);
        Assert.That(ReadRecords(good), Has.Count.EqualTo(3));
        for (int i = 0; i < good.Length; i++)
        {
            var bad = (byte[])good.Clone();
            bad[i] ^= 0x10;
            Assert.Throws<InvalidDataException>(() => ReadRecords(bad), $"byte {i} flipped");
        }
        // A crash mid-record: the earlier records are whole, the torn one is detected.
        Assert.That(Assert.Throws<InvalidDataException>(() => ReadRecords(good[..^3]))!.Message, Does.StartWith("record 2:"));
        int first = 16 + BitConverter.ToInt32(good, 0), second = first + 16 + BitConverter.ToInt32(good, first);
        Assert.That(ReadRecords(good[..second]), Has.Count.EqualTo(2));
    }

    [Test]
    public void FineTuningLogWritesHfNamedScalars()
    {
        string dir = TrainingData.NewDirectory("tb-finetune");
        string tb = Path.Combine(dir, "tensorboard");
        using (var log = new FineTuningLog(Path.Combine(dir, "metrics.jsonl"), tb))
        {
            log.WriteStep(new FineTuningStepReport(0, 0, 0.75, 0.5, 2e-5, 1.25, 32, 0.1));
            log.WriteStep(new FineTuningStepReport(1, 1, 0.5, 0.625, 1e-5, 0.875, 32, 0.1));
            log.WriteEval("validation", 2, 2, new EvaluationResult(FineTuningTask.Classification, 0.25, 0.875, 0.8125, 40));
            log.WriteEval("test", 2, 2, new EvaluationResult(FineTuningTask.Classification, 0.375, 0.75, 0.6875, 50));
        }
        var events = ReadEvents(EventFiles(tb).Single()).Skip(2).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(events.Select(e => e.Step), Is.EqualTo(new long[] { 0, 1, 2, 2 }));
            Assert.That(events[1].Scalars, Is.EqualTo(new[]
            {
                new Scalar("train/loss", 0.5f), new Scalar("train/accuracy", 0.625f), new Scalar("train/learning_rate", 1e-5f),
                new Scalar("train/grad_norm", 0.875f), new Scalar("train/epoch", 2f),
            }));
            Assert.That(events[2].Scalars, Is.EqualTo(new[] { new Scalar("eval/loss", 0.25f), new Scalar("eval/accuracy", 0.875f), new Scalar("eval/f1", 0.8125f) }));
            Assert.That(events[3].Scalars, Is.EqualTo(new[] { new Scalar("test/loss", 0.375f), new Scalar("test/accuracy", 0.75f), new Scalar("test/f1", 0.6875f) }));
        });
    }

    // ---- bert pretrain ------------------------------------------------------------------------

    private static string[] PretrainArgs(string output, long steps, params string[] extra) =>
    [
        "pretrain", "--data", TrainingData.DataRoot, "--vocab", TrainingData.VocabPath, "--heldout", TrainingData.HeldOutRoot,
        "--preset", "tiny", "--steps", steps.ToString(CultureInfo.InvariantCulture), "--batch", "2", "--seq", "32", "--long-fraction", "0",
        "--warmup", "1", "--checkpoint-every", "2", "--eval-sequences", "8", "--threads", "2", "--device", "cpu", "--seed", "3",
        "--out", output, .. extra,
    ];

    /// <summary>metrics.jsonl's lines as the scalars they should appear as in TensorBoard, keyed by step.</summary>
    private static List<(long Step, Scalar[] Scalars)> ExpectedScalars(string metricsPath)
    {
        var expected = new List<(long, Scalar[])>();
        foreach (var line in File.ReadLines(metricsPath))
        {
            using var doc = JsonDocument.Parse(line);
            var o = doc.RootElement;
            float F(string name) => (float)o.GetProperty(name).GetDouble();
            long step = o.GetProperty("step").GetInt64();
            if (o.GetProperty("kind").GetString() == "train")
                expected.Add((step,
                [
                    new("train/loss", F("loss")), new("train/mlm_loss", F("mlm_loss")), new("train/nsp_loss", F("nsp_loss")),
                    new("train/mlm_accuracy", F("mlm_accuracy")), new("train/nsp_accuracy", F("nsp_accuracy")),
                    new("train/learning_rate", F("lr")), new("train/grad_norm", F("grad_norm")),
                    new("train/sequences_per_second", (float)(o.GetProperty("sequences").GetInt32() / o.GetProperty("seconds").GetDouble())),
                ]));
            else
            {
                string p = "eval/" + o.GetProperty("split").GetString() + "_";
                expected.Add((step,
                [
                    new(p + "loss", F("loss")), new(p + "mlm_loss", F("mlm_loss")), new(p + "nsp_loss", F("nsp_loss")),
                    new(p + "mlm_accuracy", F("mlm_accuracy")), new(p + "nsp_accuracy", F("nsp_accuracy")),
                ]));
            }
        }
        return expected;
    }

    [Test]
    public void PretrainWritesTheSameScalarsAsMetricsJsonl()
    {
        string dir = TrainingData.NewDirectory("tb-pretrain");
        var (code, stdout, stderr) = RunCli(PretrainArgs(dir, 3));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        string tb = Path.Combine(dir, "tensorboard");
        Assert.That(stdout, Does.Contain($"tensorboard: {tb}"));
        var events = ReadEvents(EventFiles(tb).Single());
        var expected = ExpectedScalars(Path.Combine(dir, "metrics.jsonl"));
        Assert.That(expected, Has.Count.EqualTo(4), "3 steps and the held-out evaluation");
        Assert.That(events[0].FileVersion, Is.EqualTo("brain.Event:2"));
        Assert.That((events[1].Step, events[1].SessionStatus), Is.EqualTo((0L, (int?)1)), "SessionLog START at step 0");
        Assert.That(events.Skip(2).Select(e => (e.Step, e.Scalars.ToArray())), Is.EqualTo(expected));
        Assert.That(expected[^1].Scalars[0].Tag, Is.EqualTo("eval/heldout-seq32_loss"));
    }

    [Test]
    public void AResumedPretrainRunStartsANewEventFileAndTensorBoardFalseWritesNone()
    {
        string dir = TrainingData.NewDirectory("tb-resume");
        Assert.That(RunCli(PretrainArgs(dir, 4)).Code, Is.EqualTo(ExitCodes.Ok));
        // "Killed" after step 2's checkpoint: the later one removed, then resumed.
        Directory.Delete(Path.Combine(dir, "checkpoints", CheckpointWriter.DirectoryName(4)), recursive: true);
        var (code, _, stderr) = RunCli(PretrainArgs(dir, 4, "--resume"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);

        var files = EventFiles(Path.Combine(dir, "tensorboard"));
        Assert.That(files, Has.Length.EqualTo(2));
        var first = ReadEvents(files[0]);
        var second = ReadEvents(files[1]);
        var expected = ExpectedScalars(Path.Combine(dir, "metrics.jsonl"));
        Assert.Multiple(() =>
        {
            Assert.That(first.Skip(2).Select(e => e.Step), Is.EqualTo(new long[] { 0, 1, 2, 3, 4 }), "the first run's steps and its evaluation");
            Assert.That(second[1].SessionStatus, Is.EqualTo(1), "SessionLog START");
            Assert.That(second[1].Step, Is.EqualTo(2), "at the resumed step");
            Assert.That(second.Skip(2).Select(e => (e.Step, e.Scalars.ToArray())), Is.EqualTo(expected.Where(x => x.Step >= 2)),
                "the resumed file holds metrics.jsonl's steps from 2 on");
        });

        string off = TrainingData.NewDirectory("tb-off");
        Assert.That(RunCli(PretrainArgs(off, 1, "--tensorboard", "false")).Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(File.Exists(Path.Combine(off, "metrics.jsonl")));
        Assert.That(Directory.Exists(Path.Combine(off, "tensorboard")), Is.False);
    }

    [Test]
    public void FinetuneWritesTheSameScalarsAsMetricsJsonl()
    {
        string dir = TrainingData.NewDirectory("tb-finetune-cli");
        using (var backend = new Bert.Runtime.Cpu.CpuBackend(2))
            Bert.Tests.FineTuning.TinyCheckpoints.WriteRandom(backend, Path.Combine(dir, "pre"), seed: 9);
        var lines = new List<string> { "label\ttext" };
        for (int i = 0; i < 24; i++) lines.Add(i % 2 == 0 ? $"pos\tthe film was good {i}" : $"neg\tthe film was awful {i}");
        File.WriteAllLines(Path.Combine(dir, "train.tsv"), lines);
        File.WriteAllLines(Path.Combine(dir, "test.tsv"), ["label\ttext", "pos\tit was good", "neg\tit was awful"]);
        string output = Path.Combine(dir, "out");
        var (code, stdout, stderr) = RunCli("finetune", "--task", "classify", "--checkpoint", Path.Combine(dir, "pre"), "--data", Path.Combine(dir, "train.tsv"),
            "--test", Path.Combine(dir, "test.tsv"), "--out", output, "--epochs", "2", "--batch", "8", "--max-seq", "16", "--lr", "1e-3",
            "--threads", "2", "--device", "cpu");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain($"tensorboard: {Path.Combine(output, "tensorboard")}; "));

        var expected = new List<(long Step, Scalar[] Scalars)>();
        foreach (var line in File.ReadLines(Path.Combine(output, "metrics.jsonl")))
        {
            using var doc = JsonDocument.Parse(line);
            var o = doc.RootElement;
            float F(string name) => (float)o.GetProperty(name).GetDouble();
            string p = o.GetProperty("kind").GetString() == "train" ? "train/" : o.GetProperty("split").GetString() == "validation" ? "eval/" : "test/";
            expected.Add((o.GetProperty("step").GetInt64(), p == "train/"
                ? [new("train/loss", F("loss")), new("train/accuracy", F("accuracy")), new("train/learning_rate", F("lr")),
                   new("train/grad_norm", F("grad_norm")), new("train/epoch", F("epoch"))]
                : [new(p + "loss", F("loss")), new(p + "accuracy", F("accuracy")), new(p + "f1", F("f1"))]));
        }
        var events = ReadEvents(EventFiles(Path.Combine(output, "tensorboard")).Single());
        Assert.That(expected.Count(e => e.Scalars[0].Tag == "eval/loss"), Is.EqualTo(2), "a validation per epoch");
        Assert.That(expected.Count(e => e.Scalars[0].Tag == "test/loss"), Is.EqualTo(1));
        Assert.That(events.Skip(2).Select(e => (e.Step, e.Scalars.ToArray())), Is.EqualTo(expected));
    }

    [Test]
    public void TensorBoardsOwnReaderLoadsTheFile()
    {
        const string python = "/usr/bin/python3";
        if (!File.Exists(python) || Run(python, "-c \"import tensorboard\"").Code != 0)
            Assert.Ignore("python3 with the tensorboard package is not installed");
        string dir = Path.Combine(TrainingData.NewDirectory("tb-python"), "tensorboard");
        using (var w = TensorBoardWriter.Create(dir))
        {
            w.Write(0, ("train/loss", 2.5));
            w.Write(1, ("train/loss", 1.5));
        }
        string script = Path.Combine(dir, "..", "read.py");
        File.WriteAllText(script, """
            import sys
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            acc = EventAccumulator(sys.argv[1]); acc.Reload()
            print(";".join(f"{e.step}={e.value}" for e in acc.Scalars("train/loss")))
            """);
        var (code, output) = Run(python, $"\"{script}\" \"{dir}\"");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output.Trim(), Is.EqualTo("0=2.5;1=1.5"));
    }

    private static (int Code, string Output) Run(string file, string args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }
}
