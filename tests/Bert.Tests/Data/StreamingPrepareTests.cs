using System.IO.Compression;
using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

/// <summary>
/// `bert prepare` streams many inputs in bounded windows: the shards are byte-identical for any thread count,
/// a corpus of one window gives exactly the in-memory build, the statistics of a many-window, many-block build
/// stay within create_pretraining_data's, and files, directories, globs and .gz name the same corpus.
/// </summary>
public class StreamingPrepareTests
{
    private static readonly Vocabulary Vocab = SyntheticCorpus.Vocabulary;

    private static PretrainingDataOptions Options(int threads = -1) => new()
    {
        SeqLength = 64,
        DupeFactor = 2,
        Seed = 3,
        InstancesPerShard = 50,
        MaxDegreeOfParallelism = threads,
    };

    private static Dictionary<string, byte[]> Shards(string directory) =>
        Directory.GetFiles(directory, "shard-*.bin").Order(StringComparer.Ordinal).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

    /// <summary>Writes the synthetic corpus split into <paramref name="files"/> files (documents kept whole).</summary>
    private static List<string> WriteCorpus(string directory, int documents, int sentences, int files, int seed)
    {
        var all = SyntheticCorpus.Documents(documents, sentences, seed);
        var paths = new List<string>();
        Directory.CreateDirectory(directory);
        for (int f = 0; f < files; f++)
        {
            string path = Path.Combine(directory, $"part-{f:D2}.txt");
            TextCorpus.Write(path, all.Where((_, i) => i % files == f).ToList());
            paths.Add(path);
        }
        return paths;
    }

    [Test]
    public void ManyWindowsAndBlocks_AreByteIdenticalForOneAndTwoThreads()
    {
        using var dir = TestPaths.NewTempDirectory();
        var files = WriteCorpus(dir.File("corpus"), 120, 10, 3, seed: 5);
        // Windows of ~3,000 characters and blocks of 2 shards: many of each.
        var options = Options() with { WindowChars = 3000, ShuffleBufferBytes = 1 };
        var one = PretrainingDataBuilder.Build(files, CorpusFormat.Documents, Vocab, options with { MaxDegreeOfParallelism = 1 }, dir.File("one"));
        var two = PretrainingDataBuilder.Build(files, CorpusFormat.Documents, Vocab, options with { MaxDegreeOfParallelism = 2 }, dir.File("two"));
        Assert.That(one.Windows, Is.GreaterThan(5));
        Assert.That(one.Shards, Is.GreaterThan(4), "several blocks of shards");
        var a = Shards(dir.File("one"));
        var b = Shards(dir.File("two"));
        Assert.That(b.Keys, Is.EqualTo(a.Keys));
        foreach (var (name, bytes) in a) Assert.That(b[name], Is.EqualTo(bytes), name);
        Assert.That(one.Instances, Is.EqualTo(two.Instances));
        Assert.That(one.ShardFiles.Select(s => s.Xxh64), Is.EqualTo(two.ShardFiles.Select(s => s.Xxh64)));
        Assert.That(one.Inputs.Select(i => i.Path), Is.EqualTo(files));
        Assert.That(one.ShardFiles.Sum(s => s.Instances), Is.EqualTo(one.Instances));

        // The dataset opens and holds every instance once.
        using var ds = PretrainingDataset.Open(dir.File("one"), Vocab);
        Assert.That(ds.Count, Is.EqualTo(one.Instances));
    }

    [Test]
    public void OneWindow_GivesExactlyTheInMemoryBuild()
    {
        using var dir = TestPaths.NewTempDirectory();
        var files = WriteCorpus(dir.File("corpus"), 40, 8, 1, seed: 9);
        var streamed = PretrainingDataBuilder.Build(files, CorpusFormat.Documents, Vocab, Options(), dir.File("streamed"));
        var text = TextCorpus.Read(files[0]);
        var whole = TokenizedCorpus.Tokenize(text, new BertTokenizer(Vocab, lowerCase: true));
        PretrainingDataBuilder.Build(whole, "synthetic", Vocab, Options(), dir.File("whole"));
        Assert.That(streamed.Windows, Is.EqualTo(1));
        var a = Shards(dir.File("streamed"));
        var b = Shards(dir.File("whole"));
        Assert.That(a.Keys, Is.EqualTo(b.Keys));
        foreach (var (name, bytes) in a) Assert.That(b[name], Is.EqualTo(bytes), name);
    }

    [Test]
    public void ManyWindows_KeepTheReferenceStatistics()
    {
        using var dir = TestPaths.NewTempDirectory();
        var files = WriteCorpus(dir.File("corpus"), 400, 40, 4, seed: 11);
        var options = Options() with { SeqLength = 128, DupeFactor = 3, WindowChars = 100_000, ShuffleBufferBytes = 1 << 20, InstancesPerShard = 1000 };
        var s = PretrainingDataBuilder.Build(files, CorpusFormat.Documents, Vocab, options, dir.File("out"));
        Assert.That(s.Windows, Is.GreaterThan(3));
        Assert.That(s.MaskedFraction, Is.EqualTo(0.15).Within(0.005));
        Assert.That(s.MaskFraction, Is.EqualTo(0.80).Within(0.005));
        Assert.That(s.RandomFraction, Is.EqualTo(0.10).Within(0.005));
        Assert.That(s.KeptFraction, Is.EqualTo(0.10).Within(0.005));
        Assert.That(s.NspCoinRandomFraction, Is.EqualTo(0.50).Within(0.01));
        Assert.That(s.Documents, Is.EqualTo(400));
    }

    [Test]
    public void DirectoriesGlobsAndGzipNameTheSameCorpus()
    {
        using var dir = TestPaths.NewTempDirectory();
        var files = WriteCorpus(dir.File("corpus"), 30, 6, 3, seed: 2);
        // The same three files, the middle one gzipped.
        Directory.CreateDirectory(dir.File("mixed"));
        File.Copy(files[0], dir.File("mixed/part-00.txt"));
        using (var input = File.OpenRead(files[1]))
        using (var output = new GZipStream(File.Create(dir.File("mixed/part-01.txt.gz")), CompressionLevel.Fastest))
            input.CopyTo(output);
        File.Copy(files[2], dir.File("mixed/part-02.txt"));
        File.WriteAllText(dir.File("mixed/.hidden"), "not corpus text\n");

        Assert.That(CorpusInputs.Expand([dir.File("corpus")]), Is.EqualTo(files));
        Assert.That(CorpusInputs.Expand([dir.File("corpus") + "/*.txt"]), Is.EqualTo(files));
        Assert.That(CorpusInputs.Expand([dir.File("corpus/part-02.txt"), dir.File("corpus") + "/**/part-0?.txt"]),
            Is.EqualTo(new[] { files[2], files[0], files[1] }), "arguments in order, duplicates dropped");
        Assert.That(CorpusInputs.Expand([dir.File("mixed")]).Select(Path.GetFileName), Is.EqualTo(new[] { "part-00.txt", "part-01.txt.gz", "part-02.txt" }));
        var e = Assert.Throws<FileNotFoundException>(() => CorpusInputs.Expand([dir.File("corpus") + "/*.md"]))!;
        Assert.That(e.Message, Does.Contain("*.md").And.Contain("matches no file"));

        var plain = PretrainingDataBuilder.Build(files, CorpusFormat.Documents, Vocab, Options(), dir.File("plain"));
        var mixed = PretrainingDataBuilder.Build(CorpusInputs.Expand([dir.File("mixed")]), CorpusFormat.Documents, Vocab, Options(), dir.File("gz"));
        Assert.That(mixed.ShardFiles.Select(x => x.Xxh64), Is.EqualTo(plain.ShardFiles.Select(x => x.Xxh64)), ".gz is read decompressed");
    }

    [Test]
    public void CorruptGzipAndInvalidUtf8NameTheFile()
    {
        using var dir = TestPaths.NewTempDirectory();
        File.WriteAllBytes(dir.File("bad.txt.gz"), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7]);
        var e = Assert.Throws<CorpusFormatException>(() =>
            PretrainingDataBuilder.Build([dir.File("bad.txt.gz")], CorpusFormat.Documents, Vocab, Options(), dir.File("out")))!;
        Assert.That(e.Message, Does.Contain("bad.txt.gz").And.Contain("gzip"));
        File.WriteAllBytes(dir.File("bad.txt"), [(byte)'a', (byte)'\n', 0xff, (byte)'\n']);
        var u = Assert.Throws<CorpusFormatException>(() =>
            PretrainingDataBuilder.Build([dir.File("bad.txt")], CorpusFormat.Documents, Vocab, Options(), dir.File("out")))!;
        Assert.That(u.Message, Does.Contain("bad.txt").And.Contain("byte 2").And.Contain("invalid UTF-8"));
        Assert.That(Directory.Exists(dir.File("out")), Is.False, "nothing left behind");
    }

    [Test]
    public void Vocabulary_FromStreamedFiles_EqualsTheInMemoryOne_AndPruningBoundsTheTable()
    {
        using var dir = TestPaths.NewTempDirectory();
        var files = WriteCorpus(dir.File("corpus"), 200, 10, 3, seed: 4);
        var options = new VocabularyTrainerOptions { VocabularySize = 300 };
        var text = new TextCorpus(files.SelectMany(f => TextCorpus.Read(f).Documents).ToList(), "all");
        var inMemory = VocabularyTrainer.Train(text, options);
        var streamed = VocabularyTrainer.Train(new DocumentReader(files, CorpusFormat.Documents), options, "streamed");
        Assert.That(streamed.Tokens, Is.EqualTo(inMemory.Tokens));

        var counts = VocabularyTrainer.CountWords(text, options);
        var pruned = new Dictionary<string, long>(counts);
        VocabularyTrainer.Prune(pruned, counts.Count / 4);
        Assert.That(pruned.Count, Is.LessThanOrEqualTo(counts.Count / 4).And.GreaterThan(0));
        long kept = pruned.Values.Min();
        Assert.That(counts.Where(kv => kv.Value > kept).All(kv => pruned.ContainsKey(kv.Key)), "only the rarest words are forgotten");
        Assert.That(pruned.All(kv => counts[kv.Key] == kv.Value), "the kept counts are exact");
    }

    [Test]
    public void DatasetsPreparedSeparately_OpenAsOne()
    {
        using var dir = TestPaths.NewTempDirectory();
        var a = WriteCorpus(dir.File("a"), 20, 6, 1, seed: 1);
        var b = WriteCorpus(dir.File("b"), 30, 6, 1, seed: 2);
        var sa = PretrainingDataBuilder.Build(a, CorpusFormat.Documents, Vocab, Options(), dir.File("da"));
        var sb = PretrainingDataBuilder.Build(b, CorpusFormat.Documents, Vocab, Options(), dir.File("db"));
        using var both = PretrainingDataset.Open([dir.File("da"), dir.File("db")], Vocab);
        using var second = PretrainingDataset.Open(dir.File("db"), Vocab);
        Assert.That(both.Count, Is.EqualTo(sa.Instances + sb.Instances));
        int s = both.SeqLength, p = both.MaxPredictions;
        int[] ids1 = new int[s], ids2 = new int[s], t = new int[s], mp = new int[p], ml = new int[p];
        both.Read(ids1, t, mp, ml, sa.Instances + 3);
        second.Read(ids2, t, mp, ml, 3);
        Assert.That(ids1, Is.EqualTo(ids2), "the second directory's instances follow the first's");

        var other = PretrainingDataBuilder.Build(b, CorpusFormat.Documents, Vocab, Options() with { SeqLength = 32 }, dir.File("d32"));
        var e = Assert.Throws<ShardFormatException>(() => PretrainingDataset.Open([dir.File("da"), dir.File("d32")], Vocab))!;
        Assert.That(e.Message, Does.Contain("seq_length").And.Contain("must agree"));
    }
}
