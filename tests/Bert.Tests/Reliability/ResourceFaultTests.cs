using Bert.Runtime.Data;
using Bert.Runtime.IO;
using Bert.Tests.Data;
using Bert.Tests.Reliability.Fuzz;
using NUnit.Framework;
using TempDirectory = Bert.Tests.IO.TempDirectory;

namespace Bert.Tests.Reliability;

/// <summary>
/// A volume that fills up part-way through a write (<see cref="DiskFullFileSystem"/>, through the
/// IFileSystem seam of checkpoints and of shard writing): the write fails with a
/// <see cref="DiskFullException"/> that names what could not be written, and everything written
/// before is intact: earlier checkpoints still verify and load, an older dataset is byte-identical,
/// and no temp entries are left. The fill point walks across the whole write.
/// </summary>
public class ResourceFaultTests
{
    /// <summary>Capacities from nothing to one byte short of what the write needs.</summary>
    private static IEnumerable<long> FillPoints(long total)
    {
        var points = new SortedSet<long> { 0, 1, 7, 8, 79, 80, 81, 200, total / 3, total / 2, 2 * total / 3, total - 100, total - 13, total - 1 };
        var rng = new Random(5);
        for (int i = 0; i < 12; i++) points.Add(rng.NextInt64(total));
        return points.Where(p => p >= 0 && p < total);
    }

    [Test]
    public void FullDiskDuringShardWritingLeavesTheOlderDatasetIntact()
    {
        using var dir = new TempDirectory("fault-shards");
        var vocab = SyntheticCorpus.Vocabulary;
        var corpus = SyntheticCorpus.Tokenized(20, 8, seed: 4);
        var options = new PretrainingDataOptions { SeqLength = 32, DupeFactor = 2, InstancesPerShard = 40, MaxDegreeOfParallelism = 1, Seed = 1 };
        string output = PretrainingDataBuilder.DatasetDirectory(dir["data"], 32);
        PretrainingDataBuilder.Build(corpus, "synthetic", vocab, options, output);
        var before = Snapshot(output);
        Assert.That(before.Keys.Count(k => k.StartsWith("shard-", StringComparison.Ordinal)), Is.GreaterThan(2), "several shards, so the fill point lands in different ones");

        var probe = new DiskFullFileSystem(null);
        PretrainingDataBuilder.Build(corpus, "synthetic", vocab, options with { Seed = 2 }, dir["probe"], fileSystem: probe);
        long total = probe.BytesWritten;

        foreach (long capacity in FillPoints(total))
        {
            var fs = new DiskFullFileSystem(capacity);
            var e = Assert.Throws<DiskFullException>(() =>
                PretrainingDataBuilder.Build(corpus, "synthetic", vocab, options with { Seed = 2 }, output, fileSystem: fs))!;
            Assert.That(e.Message, Does.Contain(output).And.Contain("no space left on device").And.Contain("unchanged"), $"capacity {capacity}");
            Assert.That(fs.FullErrors, Is.GreaterThan(0));
            Assert.That(Snapshot(output), Is.EqualTo(before), $"capacity {capacity}: the older dataset changed");
            Assert.That(TempEntries(dir["data"]).Concat(TempEntries(output)), Is.Empty, $"capacity {capacity}");
            using var dataset = PretrainingDataset.Open(output, vocab);
            Assert.That(dataset.Count, Is.GreaterThan(0));
        }

        // stats.json records the seconds taken, whose digits vary from run to run: a little room beyond the probe.
        PretrainingDataBuilder.Build(corpus, "synthetic", vocab, options with { Seed = 2 }, output, fileSystem: new DiskFullFileSystem(total + 64));
        Assert.That(Snapshot(output)["shard-00000.bin"], Is.Not.EqualTo(before["shard-00000.bin"]), "with room enough, the new dataset replaces the old one");
    }

    [Test]
    public void FullDiskDuringCheckpointSaveLeavesEarlierCheckpointsIntact()
    {
        using var dir = new TempDirectory("fault-ckpt");
        string root = dir["checkpoints"];
        var options = new CheckpointWriterOptions { KeepLast = 2, CheckFreeSpace = false };
        new CheckpointWriter(root, options).Save(FuzzSamples.Checkpoint(1));
        string first = Path.Combine(root, CheckpointWriter.DirectoryName(1));
        var before = Snapshot(first);

        var probe = new DiskFullFileSystem(null);
        new CheckpointWriter(dir["probe"], options, probe).Save(FuzzSamples.Checkpoint(2));
        long total = probe.BytesWritten;

        foreach (long capacity in FillPoints(total))
        {
            var fs = new DiskFullFileSystem(capacity);
            var e = Assert.Throws<DiskFullException>(() => new CheckpointWriter(root, options, fs).Save(FuzzSamples.Checkpoint(2)))!;
            Assert.That(e.Message, Does.Contain("no space left on device").And.Contain(root), $"capacity {capacity}");
            Assert.That(Snapshot(first), Is.EqualTo(before), $"capacity {capacity}: step 1 changed");
            Assert.That(TempEntries(root), Is.Empty, $"capacity {capacity}");
            var complete = CheckpointReader.ListComplete(PhysicalFileSystem.Instance, root);
            foreach (var (step, path) in complete) Assert.That(CheckpointReader.Open(path).Step, Is.EqualTo(step));
            // Only the "latest" pointer (written after the new directory is in place) can fail with step 2 complete.
            Assert.That(complete.Select(c => c.Step), Is.EqualTo(new long[] { 1 }).Or.EqualTo(new long[] { 2, 1 }), $"capacity {capacity}");
            if (complete.Count == 2)
            {
                Assert.That(e.Message, Does.Contain(CheckpointWriter.LatestFile));
                DeleteDirectory(Path.Combine(root, CheckpointWriter.DirectoryName(2)));
            }
            else Assert.That(e.Message, Does.Contain(CheckpointWriter.DirectoryName(2)).And.Contain("earlier checkpoints are unchanged"));
            Assert.That(File.ReadAllText(Path.Combine(root, CheckpointWriter.LatestFile)), Is.EqualTo("step-000001\n"));
        }

        // A save that cannot fit is refused before it writes anything.
        var tight = new DiskFullFileSystem(null) { ReportedFreeSpace = 1000 };
        var refused = Assert.Throws<DiskFullException>(() =>
            new CheckpointWriter(root, options with { CheckFreeSpace = true }, tight).Save(FuzzSamples.Checkpoint(2)))!;
        Assert.That(refused.Message, Does.Contain("only 1000 are free"));
        Assert.That(tight.BytesWritten, Is.Zero);

        new CheckpointWriter(root, options, new DiskFullFileSystem(total + 4096)).Save(FuzzSamples.Checkpoint(2));
        Assert.That(CheckpointReader.Open(root).Step, Is.EqualTo(2));
    }

    private static void DeleteDirectory(string directory) => Directory.Delete(directory, recursive: true);

    private static Dictionary<string, byte[]> Snapshot(string directory) =>
        Directory.EnumerateFiles(directory).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

    private static IEnumerable<string> TempEntries(string directory) =>
        Directory.Exists(directory)
            ? Directory.EnumerateFileSystemEntries(directory).Where(e => Path.GetFileName(e).Contains(".tmp-", StringComparison.Ordinal))
            : [];
}
