using System.Text;
using System.Text.Json;
using Bert.Runtime;
using Bert.Runtime.IO;
using NUnit.Framework;

namespace Bert.Tests.IO;

public class CheckpointTests
{
    private TempDirectory _dir = null!;

    [SetUp]
    public void SetUp() => _dir = new TempDirectory("ckpt");

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private static readonly BertConfig Config = ConfigJsonTests.Tiny() with { Layers = 1 };
    private static readonly IReadOnlyList<ParameterInfo> Table = ParameterLayout.ForPretraining(Config);
    private static readonly int Total = (int)ParameterLayout.Total(Table);

    /// <summary>Distinct, step-dependent values so a test can tell which checkpoint it loaded.</summary>
    private static CheckpointContent Content(long step, bool moments = true)
    {
        var p = new float[Total];
        var m = new float[Total];
        var v = new float[Total];
        for (int i = 0; i < Total; i++)
        {
            p[i] = step * 1000 + i * 0.001f;
            m[i] = -step - i * 1e-4f;
            v[i] = step + i * 1e-6f;
        }
        return new CheckpointContent
        {
            Step = step,
            Config = Config,
            Table = Table,
            Parameters = p,
            AdamM = moments ? m : default,
            AdamV = moments ? v : default,
            TrainerState = Encoding.UTF8.GetBytes($"{{\"step\":{step},\"phase\":1}}"),
            ExtraFiles = new Dictionary<string, ReadOnlyMemory<byte>> { ["vocab.txt"] = "[PAD]\n[UNK]\nhello\n"u8.ToArray() },
        };
    }

    private static void AssertLoads(string root, long step, string because = "")
    {
        var c = CheckpointReader.Open(root);
        Assert.That(c.Step, Is.EqualTo(step), because);
        var expected = Content(step);
        var p = new float[Total];
        c.ReadParameters(Table, p);
        Assert.That(p, Is.EqualTo(expected.Parameters.ToArray()), because);
        var m = new float[Total];
        var v = new float[Total];
        c.ReadOptimizerState(Table, m, v);
        Assert.That(m, Is.EqualTo(expected.AdamM.ToArray()), because);
        Assert.That(v, Is.EqualTo(expected.AdamV.ToArray()), because);
        Assert.That(c.ReadTrainerState(), Is.EqualTo(expected.TrainerState.ToArray()), because);
    }

    private static string[] Entries(string root) =>
        Directory.GetFileSystemEntries(root).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal).ToArray()!;

    [Test]
    public void SaveThenOpenRoundTripsEverything()
    {
        string root = _dir["run"];
        var writer = new CheckpointWriter(root);
        string written = writer.Save(Content(123));
        Assert.That(written, Is.EqualTo(Path.Combine(root, "step-000123")));
        Assert.That(File.ReadAllText(Path.Combine(root, "latest")), Is.EqualTo("step-000123\n"));
        Assert.That(Entries(written), Is.EqualTo(new[] { "config.json", "manifest.json", "model.safetensors", "optimizer.safetensors", "trainer-state.bin", "vocab.txt" }));
        AssertLoads(root, 123);
        AssertLoads(written, 123, "a step directory opens directly");

        var c = CheckpointReader.Open(root);
        Assert.That(c.Config, Is.EqualTo(Config));
        Assert.That(c.ReadFile("vocab.txt"), Is.EqualTo("[PAD]\n[UNK]\nhello\n"u8.ToArray()));
        Assert.That(c.Manifest.Files.Select(f => f.Name), Is.EquivalentTo(new[] { "model.safetensors", "config.json", "optimizer.safetensors", "trainer-state.bin", "vocab.txt" }));
        foreach (var f in c.Manifest.Files)
        {
            Assert.That(f.Bytes, Is.EqualTo(new FileInfo(Path.Combine(written, f.Name)).Length), f.Name);
            Assert.That(f.XxHash64, Is.EqualTo(XxHash64.Hash(File.ReadAllBytes(Path.Combine(written, f.Name))).ToString("x16")), f.Name);
        }

        // model.safetensors is a HuggingFace file: "format": "pt", BertForPreTraining names, no tied decoder.
        using var model = SafetensorsFile.Open(Path.Combine(written, "model.safetensors"));
        Assert.That(model.Metadata["format"], Is.EqualTo("pt"));
        Assert.That(model.Tensors.Select(t => t.Name), Is.EqualTo(Table.Select(t => t.Name)));
        Assert.That(model.Contains("cls.predictions.decoder.weight"), Is.False);
    }

    [Test]
    public void WeightsOnlyCheckpointHasNoOptimizerFile()
    {
        string root = _dir["run"];
        var c = Content(0, moments: false);
        new CheckpointWriter(root).Save(new CheckpointContent { Step = c.Step, Config = c.Config, Table = c.Table, Parameters = c.Parameters });
        var ckpt = CheckpointReader.Open(root);
        Assert.That(ckpt.HasOptimizerState, Is.False);
        Assert.That(ckpt.HasTrainerState, Is.False);
        Assert.That(ckpt.ReadTrainerState(), Is.Empty);
        Assert.Throws<InvalidOperationException>(() => ckpt.ReadOptimizerState(Table, new float[Total], new float[Total]));
    }

    [Test]
    public void KeepsTheLastNCheckpoints()
    {
        string root = _dir["run"];
        var writer = new CheckpointWriter(root, new CheckpointWriterOptions { KeepLast = 2 });
        for (int step = 1; step <= 5; step++) writer.Save(Content(step * 10));
        Assert.That(Entries(root), Is.EqualTo(new[] { "latest", "step-000040", "step-000050" }));
        AssertLoads(root, 50);
        AssertLoads(Path.Combine(root, "step-000040"), 40);
    }

    [Test]
    public void ResavingAStepReplacesIt()
    {
        string root = _dir["run"];
        var writer = new CheckpointWriter(root);
        writer.Save(Content(7));
        var again = Content(7);
        var p = again.Parameters.ToArray();
        p[0] = 42f;
        writer.Save(new CheckpointContent { Step = 7, Config = Config, Table = Table, Parameters = p, AdamM = again.AdamM, AdamV = again.AdamV });
        var loaded = new float[Total];
        CheckpointReader.Open(root).ReadParameters(Table, loaded);
        Assert.That(loaded[0], Is.EqualTo(42f));
        Assert.That(Entries(root), Is.EqualTo(new[] { "latest", "step-000007" }));
    }

    [Test]
    public void CrashAtEveryOperationOfASaveLeavesTheNewestCompleteCheckpointLoadable()
    {
        // Count the operations of the save under test (steps 10 and 20 exist; keep 2, so it also prunes).
        string probeRoot = _dir["probe"];
        new CheckpointWriter(probeRoot, new CheckpointWriterOptions { KeepLast = 2 }).Save(Content(10));
        new CheckpointWriter(probeRoot, new CheckpointWriterOptions { KeepLast = 2 }).Save(Content(20));
        var probe = new FaultInjectingFileSystem();
        new CheckpointWriter(probeRoot, new CheckpointWriterOptions { KeepLast = 2 }, probe).Save(Content(30));
        int operations = probe.Operations;
        Assert.That(operations, Is.GreaterThan(30));
        TestContext.Out.WriteLine($"a save is {operations} file-system operations");

        for (int crashAt = 0; crashAt < operations; crashAt++)
        {
            string root = _dir[$"crash-{crashAt}"];
            var options = new CheckpointWriterOptions { KeepLast = 2 };
            new CheckpointWriter(root, options).Save(Content(10));
            new CheckpointWriter(root, options).Save(Content(20));
            var fs = new FaultInjectingFileSystem { CrashAtOperation = crashAt };
            Assert.Throws<SimulatedCrashException>(() => new CheckpointWriter(root, options, fs).Save(Content(30)));
            string why = $"crash at #{crashAt}: {fs.Log[^1]}";

            // After the crash: the newest complete checkpoint is 30 (crash after its rename) or 20.
            long newest = CheckpointReader.Open(root).Step;
            Assert.That(newest, Is.EqualTo(30).Or.EqualTo(20), why);
            AssertLoads(root, newest, why);

            // The next good save cleans every stale temp entry and keeps two checkpoints.
            new CheckpointWriter(root, options).Save(Content(40));
            var entries = Entries(root);
            Assert.That(entries.Where(e => e.Contains(".tmp-")), Is.Empty, why);
            Assert.That(entries, Is.EqualTo(new[] { "latest", $"step-0000{newest}", "step-000040" }), why);
            AssertLoads(root, 40, why);
            Directory.Delete(root, recursive: true);
        }
    }

    [Test]
    public void FullDiskFailsClearlyAndKeepsTheOldCheckpoint()
    {
        string root = _dir["run"];
        new CheckpointWriter(root).Save(Content(1));
        var fs = new FaultInjectingFileSystem { DiskFullAfterBytes = 50_000 };
        var e = Assert.Throws<DiskFullException>(() => new CheckpointWriter(root, null, fs).Save(Content(2)))!;
        Assert.That(e.Message, Does.Contain("step-000002").And.Contain("no space left on device").And.Contain("earlier checkpoints are unchanged"));
        Assert.That(Entries(root), Is.EqualTo(new[] { "latest", "step-000001" }), "the partial directory is removed");
        AssertLoads(root, 1);
    }

    [Test]
    public void TooLittleFreeSpaceIsRefusedBeforeWritingAnything()
    {
        string root = _dir["run"];
        new CheckpointWriter(root).Save(Content(1));
        var fs = new FaultInjectingFileSystem { ReportedFreeSpace = 1000 };
        var e = Assert.Throws<DiskFullException>(() => new CheckpointWriter(root, null, fs).Save(Content(2)))!;
        Assert.That(e.Message, Does.Contain("only 1000 are free"));
        Assert.That(fs.Log.Where(l => l.Contains(" create ") || l.Contains("mkdir") && l.Contains("step-000002")), Is.Empty);
        AssertLoads(root, 1);
    }

    [Test]
    public void DirectoriesWithoutAManifestAreIgnored()
    {
        string root = _dir["run"];
        new CheckpointWriter(root).Save(Content(5));
        // A later directory that never completed (copied by hand, or another tool's).
        Directory.CreateDirectory(Path.Combine(root, "step-000009"));
        File.WriteAllText(Path.Combine(root, "step-000009", "model.safetensors"), "partial");
        Directory.CreateDirectory(Path.Combine(root, "step-000011.tmp-deadbeef"));
        AssertLoads(root, 5);
        Assert.That(CheckpointReader.ListComplete(PhysicalFileSystem.Instance, root).Select(c => c.Step), Is.EqualTo(new[] { 5L }));
    }

    [Test]
    public void EmptyRootHasNoCheckpoint()
    {
        Directory.CreateDirectory(_dir["empty"]);
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_dir["empty"]))!;
        Assert.That(e.Message, Does.Contain("no complete checkpoint"));
        Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_dir["absent"]));
    }

    [Test]
    public void CorruptionIsDetectedByTheManifest()
    {
        string root = _dir["run"];
        string dir = new CheckpointWriter(root).Save(Content(3));
        string model = Path.Combine(dir, "model.safetensors");
        byte[] original = File.ReadAllBytes(model);

        // One flipped bit in the data: same size, different checksum.
        var flipped = (byte[])original.Clone();
        flipped[^5] ^= 0x10;
        File.WriteAllBytes(model, flipped);
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(root))!;
        Assert.That(e.File, Is.EqualTo(model));
        Assert.That(e.Field, Is.EqualTo("xxh64"));
        Assert.That(e.Message, Does.Contain("corrupt"));
        Assert.DoesNotThrow(() => CheckpointReader.Open(root, verify: false), "verification can be skipped");

        // Truncated: the size check names the recorded size.
        File.WriteAllBytes(model, original[..^4]);
        e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(root))!;
        Assert.That(e.Field, Is.EqualTo("bytes"));
        Assert.That(e.Message, Does.Contain($"records {original.Length} bytes"));

        // A listed file deleted.
        File.WriteAllBytes(model, original);
        File.Delete(Path.Combine(dir, "trainer-state.bin"));
        e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(root))!;
        Assert.That(e.Message, Does.Contain("trainer-state.bin").And.Contain("missing"));

        // The manifest itself damaged.
        string manifest = Path.Combine(dir, "manifest.json");
        File.WriteAllText(manifest, "{\"format\": \"bert-checkpoint\", \"version\": 1, \"step\": 3, \"files\": [");
        e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(root))!;
        Assert.That(e.File, Is.EqualTo(manifest));
        File.WriteAllText(manifest, "{\"format\": \"bert-checkpoint\", \"version\": 1, \"step\": 3, \"files\": [{\"name\": \"model.safetensors\", \"bytes\": 1, \"xxh64\": \"XYZ\"}]}");
        e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(root))!;
        Assert.That(e.Field, Is.EqualTo("model.safetensors.xxh64"));
        File.WriteAllText(manifest, "{\"format\": \"bert-checkpoint\", \"version\": 9, \"step\": 3, \"files\": []}");
        e = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(root))!;
        Assert.That(e.Field, Is.EqualTo("version"));
    }

    [Test]
    public void LoadingIntoAnotherTableListsEveryDifferenceWithBothShapes()
    {
        string root = _dir["run"];
        new CheckpointWriter(root).Save(Content(1));
        // Another model: wider intermediate, two layers, no MLM head (BertForNextSentencePrediction).
        var other = Config with { Intermediate = 41, Layers = 2, HasMlmHead = false };
        var table = ParameterLayout.For(other);
        var buffer = new float[ParameterLayout.Total(table)];
        var e = Assert.Throws<TensorMismatchException>(() => CheckpointReader.Open(root).ReadParameters(table, buffer))!;
        var r = e.Report;

        string[] missing = table.Where(p => p.Name.Contains("layer.1.")).Select(p => p.Name).ToArray();
        Assert.That(r.Missing.Select(i => i.Name), Is.EquivalentTo(missing));
        Assert.That(r.Unexpected.Select(i => i.Name), Is.EquivalentTo(new[]
        {
            "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias",
        }));
        Assert.That(r.Mismatched.Select(i => i.Name), Is.EquivalentTo(new[]
        {
            "bert.encoder.layer.0.intermediate.dense.weight", "bert.encoder.layer.0.intermediate.dense.bias", "bert.encoder.layer.0.output.dense.weight",
        }));
        foreach (var name in missing) Assert.That(e.Message, Does.Contain(name));
        Assert.That(e.Message, Does.Contain("mismatched bert.encoder.layer.0.intermediate.dense.weight: model [41, 32], file [37, 32]"));
        Assert.That(e.Message, Does.Contain("mismatched bert.encoder.layer.0.output.dense.weight: model [32, 41], file [32, 37]"));
        Assert.That(e.Message, Does.Contain("unexpected cls.predictions.transform.dense.weight [32, 32]"));
        Assert.That(e.Message, Does.Contain("missing    bert.encoder.layer.1.attention.self.query.weight [32, 32]"));
        Assert.That(buffer, Is.All.EqualTo(0f), "nothing is loaded when the tables differ");

        // The optimizer state is checked the same way, over both moments.
        var oe = Assert.Throws<TensorMismatchException>(() => CheckpointReader.Open(root).ReadOptimizerState(table, new float[buffer.Length], new float[buffer.Length]))!;
        Assert.That(oe.Report.Mismatched.Count(), Is.EqualTo(6));
        Assert.That(oe.Message, Does.Contain("exp_avg_sq.bert.encoder.layer.0.output.dense.weight: model [32, 41], file [32, 37]"));
    }

    [Test]
    public void ManifestSerializationRoundTrips()
    {
        var m = new CheckpointManifest(12, [new ManifestEntry("a.bin", 3, new string('a', 16))], "2025-01-01T00:00:00Z");
        var back = CheckpointManifest.Parse(m.Serialize(), "manifest.json");
        Assert.That(back.Step, Is.EqualTo(12));
        Assert.That(back.Files, Is.EqualTo(m.Files));
        using var doc = JsonDocument.Parse(m.Serialize());
        Assert.That(doc.RootElement.GetProperty("format").GetString(), Is.EqualTo("bert-checkpoint"));
        Assert.Throws<CheckpointFormatException>(() => CheckpointManifest.Parse("{\"format\":\"bert-checkpoint\",\"version\":1,\"step\":1,\"files\":[{\"name\":\"../x\",\"bytes\":1,\"xxh64\":\"aa\"}]}"u8, "m"));
    }
}
