using Bert.Cli;
using Bert.Runtime.FineTuning;
using Bert.Runtime.IO;
using Bert.Tests.Data;
using Bert.Tests.Model;
using NUnit.Framework;

namespace Bert.Tests.IO;

/// <summary>Models in the HuggingFace hub cache are found offline, as transformers does with local_files_only:
/// by model id under HF_HUB_CACHE / HF_HOME/hub, or by their cache repository directory.</summary>
[NonParallelizable]
public class HfCacheTests
{
    private Bert.Tests.Data.TempDirectory _dir = null!;
    private string? _hubCache;

    [SetUp]
    public void SetUp()
    {
        _dir = TestPaths.NewTempDirectory();
        _hubCache = Environment.GetEnvironmentVariable("HF_HUB_CACHE");
    }

    [TearDown]
    public void TearDown()
    {
        Environment.SetEnvironmentVariable("HF_HUB_CACHE", _hubCache);
        _dir.Dispose();
    }

    /// <summary>Lays out models--acme--tiny-bert as huggingface_hub does: refs/main naming a snapshot whose files
    /// are the model directory's.</summary>
    private string WriteCache(string model, bool withRef = true)
    {
        string hub = _dir.File("hub");
        string repository = Path.Combine(hub, "models--acme--tiny-bert");
        string commit = "0123456789abcdef0123456789abcdef01234567";
        string snapshot = Path.Combine(repository, "snapshots", commit);
        Directory.CreateDirectory(snapshot);
        foreach (var f in Directory.GetFiles(model)) File.Copy(f, Path.Combine(snapshot, Path.GetFileName(f)));
        if (withRef)
        {
            Directory.CreateDirectory(Path.Combine(repository, "refs"));
            File.WriteAllText(Path.Combine(repository, "refs", "main"), commit);
        }
        Environment.SetEnvironmentVariable("HF_HUB_CACHE", hub);
        return repository;
    }

    private string WriteModel()
    {
        string model = _dir.File("model");
        Directory.CreateDirectory(model);
        var table = ParameterLayout.ForPretraining(AnySizeParityTests.Config);
        var weights = TestWeights.Create(table, ParameterLayout.Total(table), 0.02f, 5);
        HfInterop.Export(PhysicalFileSystem.Instance, model, AnySizeParityTests.Config, table, weights);
        FineTuning.TinyCheckpoints.Vocabulary.Save(Path.Combine(model, "vocab.txt"));
        return model;
    }

    [Test]
    public void AModelIdOrACacheRepositoryResolvesToItsSnapshot()
    {
        string repository = WriteCache(WriteModel());
        string snapshot = Directory.GetDirectories(Path.Combine(repository, "snapshots")).Single();
        Assert.That(HfCache.Resolve("acme/tiny-bert"), Is.EqualTo(snapshot));
        Assert.That(HfCache.Resolve(repository), Is.EqualTo(snapshot));
        Assert.That(HfCache.Resolve("acme/not-there"), Is.Null);
        Assert.That(HfCache.IsModelId("bert-base-uncased") && HfCache.IsModelId("google/bert_uncased_L-2_H-128_A-2"));
        Assert.That(HfCache.IsModelId("../x") || HfCache.IsModelId("/abs/path") || HfCache.IsModelId("a/b/c"), Is.False);

        var source = PretrainedSource.Open("acme/tiny-bert");
        Assert.That(source.Directory, Is.EqualTo(snapshot));
        Assert.That(source.Config.Hidden, Is.EqualTo(96));
    }

    [Test]
    public void ImportAndFillMaskTakeAModelIdFromTheCache()
    {
        WriteCache(WriteModel());
        Assert.That(Program.Run(["import", "--hf", "acme/tiny-bert", "--out", _dir.File("ckpt")]), Is.EqualTo(ExitCodes.Ok));
        Assert.That(CheckpointReader.Open(_dir.File("ckpt")).Config.Hidden, Is.EqualTo(96));
        Assert.That(Program.Run(["fill-mask", "--checkpoint", "acme/tiny-bert", "--device", "cpu", "the man went to the [MASK] ."]), Is.EqualTo(ExitCodes.Ok));
    }

    [Test]
    public void ASnapshotThatIsMissingOrAmbiguousIsAClearError()
    {
        string repository = WriteCache(WriteModel());
        File.WriteAllText(Path.Combine(repository, "refs", "main"), "ffffffffffffffffffffffffffffffffffffffff");
        var e = Assert.Throws<DirectoryNotFoundException>(() => HfCache.Resolve("acme/tiny-bert"))!;
        Assert.That(e.Message, Does.Contain("refs").And.Contain("ffffffff").And.Contain("not in"));
        Assert.That(Program.Run(["import", "--hf", "acme/tiny-bert", "--out", _dir.File("ckpt")]), Is.EqualTo(ExitCodes.BadInput));

        File.Delete(Path.Combine(repository, "refs", "main"));
        Directory.CreateDirectory(Path.Combine(repository, "snapshots", "second"));
        var two = Assert.Throws<DirectoryNotFoundException>(() => HfCache.Resolve(repository))!;
        Assert.That(two.Message, Does.Contain("2 snapshots and no refs/main"));
    }
}
