using Bert.Cli;
using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

[NonParallelizable] // the commands write to Console
public class DataCliTests
{
    [Test]
    public void VocabThenPrepareWritesVocabularyShardsAndStats()
    {
        using var dir = TestPaths.NewTempDirectory();
        string corpus = SyntheticCorpus.Write(dir.File("corpus.txt"), 30, 12, seed: 8);
        string vocab = dir.File("vocab.txt");
        Assert.That(Program.Run(["vocab", "--corpus", corpus, "--size", "120", "--out", vocab]), Is.EqualTo(ExitCodes.Ok));
        var v = Vocabulary.Load(vocab);
        Assert.That(v.Count, Is.EqualTo(120));

        string outRoot = dir.File("out");
        Assert.That(Program.Run(["prepare", "--corpus", corpus, "--vocab", vocab, "--seq", "64", "--out", outRoot,
            "--dupe", "2", "--seed", "7", "--whole-word", "--max-predictions", "9"]), Is.EqualTo(ExitCodes.Ok));
        string data = Path.Combine(outRoot, "seq64");
        var stats = PretrainingStats.FromJson(File.ReadAllText(Path.Combine(data, "stats.json")));
        Assert.That((stats.SeqLength, stats.MaxPredictions, stats.DupeFactor, stats.Seed, stats.WholeWordMask), Is.EqualTo((64, 9, 2, 7UL, true)));
        using var ds = PretrainingDataset.Open(data, v);
        Assert.That(ds.Count, Is.EqualTo(stats.Instances));
        Assert.That(Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[] { "corpus.txt", "out", "vocab.txt" }), "no temporary files");
    }

    [Test]
    public void UserMistakesGiveDocumentedExitCodes()
    {
        using var dir = TestPaths.NewTempDirectory();
        string corpus = SyntheticCorpus.Write(dir.File("corpus.txt"), 5, 5, seed: 1);
        string vocab = dir.File("vocab.txt");
        SyntheticCorpus.Vocabulary.Save(vocab);
        File.WriteAllText(dir.File("bad-vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n");
        File.WriteAllBytes(dir.File("bad.txt"), [0x61, 0x0A, 0xFE, 0x0A]);
        Assert.Multiple(() =>
        {
            Assert.That(Program.Run(["prepare", "--corpus", dir.File("missing.txt"), "--vocab", vocab, "--out", dir.File("o")]), Is.EqualTo(ExitCodes.BadInput));
            Assert.That(Program.Run(["prepare", "--corpus", corpus, "--vocab", dir.File("bad-vocab.txt"), "--out", dir.File("o")]), Is.EqualTo(ExitCodes.BadInput));
            Assert.That(Program.Run(["prepare", "--corpus", dir.File("bad.txt"), "--vocab", vocab, "--out", dir.File("o")]), Is.EqualTo(ExitCodes.BadInput));
            Assert.That(Program.Run(["prepare", "--corpus", corpus, "--vocab", vocab, "--out", dir.File("o"), "--seq", "4"]), Is.EqualTo(ExitCodes.Usage));
            Assert.That(Program.Run(["vocab", "--corpus", corpus, "--size", "7", "--out", dir.File("v.txt")]), Is.EqualTo(ExitCodes.Usage));
        });
        Assert.That(Directory.Exists(dir.File("o")), Is.False);
        Assert.That(File.Exists(dir.File("v.txt")), Is.False);
    }
}
