using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

public class PretrainingDataTests
{
    private static readonly Vocabulary Vocab = SyntheticCorpus.Vocabulary;

    // ~230k WordPiece tokens: enough for the masking statistics (≥100k tokens).
    private static readonly Lazy<TokenizedCorpus> Large = new(() => SyntheticCorpus.Tokenized(400, 40, seed: 11));
    private static readonly Lazy<TokenizedCorpus> Small = new(() => SyntheticCorpus.Tokenized(30, 12, seed: 7));

    private static PretrainingDataOptions Options(int seq = 64, ulong seed = 1) => new()
    {
        SeqLength = seq,
        DupeFactor = 2,
        Seed = seed,
        InstancesPerShard = 97,
    };

    /// <summary>All instances of a dataset with the fields the tests look at.</summary>
    private sealed record Instance(int[] Ids, int[] Types, int Length, int[] Positions, int[] Labels, int Nsp);

    private static List<Instance> ReadAll(PretrainingDataset ds)
    {
        var list = new List<Instance>();
        int s = ds.SeqLength, p = ds.MaxPredictions;
        for (long i = 0; i < ds.Count; i++)
        {
            var ids = new int[s];
            var types = new int[s];
            var pos = new int[p];
            var lab = new int[p];
            var info = ds.Read(ids, types, pos, lab, i);
            list.Add(new Instance(ids, types, info.Length, pos[..info.MaskedCount], lab[..info.MaskedCount], info.NspLabel));
        }
        return list;
    }

    [Test]
    public void MaskingAndNspStatisticsMatchTheReference()
    {
        using var dir = TestPaths.NewTempDirectory();
        var options = Options(seq: 128) with { DupeFactor = 3 };
        var stats = PretrainingDataBuilder.Build(Large.Value, "synthetic", Vocab, options, dir.Path);
        using var ds = PretrainingDataset.Open(dir.Path, Vocab);
        var all = ReadAll(ds);
        Assert.That(all, Has.Count.EqualTo(stats.Instances));

        long nonSpecial = 0, masked = 0, asMask = 0, kept = 0, random = 0, nspRandom = 0;
        foreach (var x in all)
        {
            Assert.That(x.Length, Is.InRange(5, 128), "no instance longer than S");
            // The tokens before masking: a random replacement may itself be [SEP] or [CLS].
            var original = (int[])x.Ids.Clone();
            for (int j = 0; j < x.Positions.Length; j++) original[x.Positions[j]] = x.Labels[j];
            int firstSep = Array.IndexOf(x.Types, 1) - 1;
            Assert.That(firstSep, Is.InRange(2, x.Length - 3), "A and B each hold at least one token");
            Assert.That(original[0], Is.EqualTo(Vocab.ClsId));
            Assert.That(original[firstSep], Is.EqualTo(Vocab.SepId));
            Assert.That(original[x.Length - 1], Is.EqualTo(Vocab.SepId));
            Assert.That(original.Take(x.Length).Count(t => t == Vocab.SepId || t == Vocab.ClsId), Is.EqualTo(3));
            for (int k = 0; k < 128; k++)
            {
                int expectedType = k > firstSep && k < x.Length ? 1 : 0;
                Assert.That(x.Types[k], Is.EqualTo(expectedType));
                if (k >= x.Length) Assert.That(x.Ids[k], Is.EqualTo(Vocab.PadId));
            }
            Assert.That(x.Positions, Is.Ordered.Ascending);
            Assert.That(x.Positions, Has.None.EqualTo(0).And.None.EqualTo(firstSep).And.None.EqualTo(x.Length - 1),
                "[CLS] and [SEP] are never masked");
            Assert.That(x.Labels, Has.None.EqualTo(Vocab.ClsId).And.None.EqualTo(Vocab.SepId));
            Assert.That(x.Positions.Length, Is.EqualTo(Math.Min(20, Math.Max(1, (int)Math.Round(x.Length * 0.15)))));
            nonSpecial += x.Length - 3;
            for (int j = 0; j < x.Positions.Length; j++)
            {
                int shown = x.Ids[x.Positions[j]];
                masked++;
                if (shown == Vocab.MaskId) asMask++;
                else if (shown == x.Labels[j]) kept++;
                else random++;
            }
            nspRandom += x.Nsp;
        }
        Assert.That(nonSpecial, Is.GreaterThan(100_000));
        Assert.Multiple(() =>
        {
            Assert.That((double)masked / nonSpecial, Is.EqualTo(0.15).Within(0.01), "masked fraction of non-special tokens");
            Assert.That((double)asMask / masked, Is.EqualTo(0.80).Within(0.02), "[MASK]");
            Assert.That((double)random / masked, Is.EqualTo(0.10).Within(0.02), "random token");
            Assert.That((double)kept / masked, Is.EqualTo(0.10).Within(0.02), "kept");
            Assert.That(nspRandom, Is.EqualTo(stats.NspRandom));
            // One-sentence chunks must take a random B (as in the reference); every other pair tosses a fair coin.
            Assert.That(stats.NspCoinRandomFraction, Is.EqualTo(0.5).Within(0.02), "NSP random among tossed pairs");
            Assert.That(stats.NspRandomFraction, Is.EqualTo(0.5).Within(0.05), "NSP random overall");
            Assert.That(stats.MaskedTokens, Is.EqualTo(masked));
            Assert.That(stats.MaskedAsMask + stats.MaskedAsRandom + stats.MaskedAsKept, Is.EqualTo(masked));
            Assert.That(stats.LengthHistogram.Sum(), Is.EqualTo(stats.Instances));
        });
    }

    [Test]
    public void WholeWordMaskingMasksEveryPieceOfAWord()
    {
        using var dir = TestPaths.NewTempDirectory();
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options() with { WholeWordMask = true }, dir.Path);
        using var ds = PretrainingDataset.Open(dir.Path);
        Assert.That(ds.WholeWordMask);
        int checkedWords = 0;
        foreach (var x in ReadAll(ds))
        {
            // Original tokens: the input with the labels put back.
            var original = (int[])x.Ids.Clone();
            for (int j = 0; j < x.Positions.Length; j++) original[x.Positions[j]] = x.Labels[j];
            var maskedSet = x.Positions.ToHashSet();
            for (int k = 1; k < x.Length - 1; k++)
            {
                bool continuation = Vocab[original[k]].StartsWith("##");
                if (!continuation || original[k - 1] == Vocab.SepId || original[k - 1] == Vocab.ClsId) continue;
                Assert.That(maskedSet.Contains(k), Is.EqualTo(maskedSet.Contains(k - 1)), "a word's pieces are masked together");
                checkedWords++;
            }
        }
        Assert.That(checkedWords, Is.GreaterThan(100));
    }

    [Test]
    public void SameSeedGivesIdenticalShardsWhateverTheThreadCount()
    {
        using var a = TestPaths.NewTempDirectory();
        using var b = TestPaths.NewTempDirectory();
        using var c = TestPaths.NewTempDirectory();
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(seed: 5), a.Path);
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(seed: 5) with { MaxDegreeOfParallelism = 1 }, b.Path);
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(seed: 6), c.Path);
        var shardsA = Directory.GetFiles(a.Path, "shard-*.bin").Order().ToArray();
        var shardsB = Directory.GetFiles(b.Path, "shard-*.bin").Order().ToArray();
        Assert.That(shardsA, Has.Length.GreaterThan(1));
        Assert.That(shardsB.Select(Path.GetFileName), Is.EqualTo(shardsA.Select(Path.GetFileName)));
        for (int i = 0; i < shardsA.Length; i++)
            Assert.That(File.ReadAllBytes(shardsB[i]), Is.EqualTo(File.ReadAllBytes(shardsA[i])), Path.GetFileName(shardsA[i]));
        var shardC = Directory.GetFiles(c.Path, "shard-00000.bin").Single();
        Assert.That(File.ReadAllBytes(shardC), Is.Not.EqualTo(File.ReadAllBytes(shardsA[0])));
    }

    [Test]
    public void ShardRoundTrip()
    {
        using var dir = TestPaths.NewTempDirectory();
        var layout = new ShardLayout(16, 3, 2);
        var vocab = Vocabulary.FromTokens(Vocabulary.SpecialTokens.Concat(Enumerable.Range(0, 95).Select(i => $"t{i}")));
        string path = dir.File("shard-00000.bin");
        var expected = new List<(int[] Ids, int[] Types, int Length, int[] Pos, int[] Lab, int Nsp)>();
        var rng = new Random(3);
        using (var w = new ShardWriter(path, vocab.Hash, vocab.Count, 16, 3))
        {
            Assert.That(w.Layout, Is.EqualTo(layout));
            for (int r = 0; r < 10; r++)
            {
                int len = rng.Next(5, 17), count = rng.Next(0, 4), nsp = r % 2;
                var ids = Enumerable.Range(0, 16).Select(k => k < len ? rng.Next(100) : 0).ToArray();
                var types = Enumerable.Range(0, 16).Select(k => k >= 3 && k < len ? 1 : 0).ToArray();
                var pos = Enumerable.Range(1, 3).Select(k => k < count + 1 ? k : 0).ToArray();
                var lab = Enumerable.Range(0, 3).Select(k => k < count ? rng.Next(100) : 0).ToArray();
                var record = new byte[layout.RecordSize];
                for (int k = 0; k < 16; k++) layout.WriteToken(record, 2 * k, ids[k]);
                for (int k = 0; k < 3; k++)
                {
                    BitConverter.TryWriteBytes(record.AsSpan(layout.MaskedPositionsOffset + 2 * k), (ushort)pos[k]);
                    layout.WriteToken(record, layout.MaskedIdsOffset + 2 * k, lab[k]);
                }
                BitConverter.TryWriteBytes(record.AsSpan(layout.LengthOffset), (ushort)len);
                BitConverter.TryWriteBytes(record.AsSpan(layout.MaskedCountOffset), (ushort)count);
                record[layout.NspOffset] = (byte)nsp;
                for (int k = 0; k < 16; k++) record[layout.SegmentBitsOffset + k / 8] |= (byte)(types[k] << (k % 8));
                w.Append(record);
                expected.Add((ids, types, len, pos, lab, nsp));
            }
            w.Commit();
        }
        Assert.That(new FileInfo(path).Length, Is.EqualTo(ShardHeader.Size + 10 * layout.RecordSize));
        using var ds = PretrainingDataset.Open(dir.Path, vocab);
        Assert.That((ds.Count, ds.SeqLength, ds.MaxPredictions, ds.VocabHash), Is.EqualTo((10L, 16, 3, vocab.Hash)));
        var (i2, t2, p2, l2) = (new int[16], new int[16], new int[3], new int[3]);
        for (int r = 0; r < 10; r++)
        {
            var info = ds.Read(i2, t2, p2, l2, r);
            var e = expected[r];
            Assert.That((info.Length, info.MaskedCount, info.NspLabel), Is.EqualTo((e.Length, e.Pos.Count(p => p != 0), e.Nsp)));
            Assert.That(i2, Is.EqualTo(e.Ids));
            Assert.That(t2, Is.EqualTo(e.Types));
            Assert.That(p2, Is.EqualTo(e.Pos));
            Assert.That(l2, Is.EqualTo(e.Lab));
        }
    }

    [Test]
    public void LargeVocabulariesUseFourByteIds()
    {
        Assert.That(ShardLayout.TokenBytesFor(30522), Is.EqualTo(2));
        Assert.That(ShardLayout.TokenBytesFor(65536), Is.EqualTo(2));
        Assert.That(ShardLayout.TokenBytesFor(65537), Is.EqualTo(4));
        var tokens = Vocabulary.SpecialTokens.Concat(Enumerable.Range(0, 70_000).Select(i => $"w{i}")).ToList();
        var big = Vocabulary.FromTokens(tokens);
        using var dir = TestPaths.NewTempDirectory();
        var ids = new[] { big.ClsId, 69_999, 70_004, big.SepId, 66_000, big.SepId };
        using (var w = new ShardWriter(dir.File("shard-00000.bin"), big.Hash, big.Count, 8, 1))
        {
            Assert.That(w.Layout.TokenBytes, Is.EqualTo(4));
            var record = new byte[w.Layout.RecordSize];
            for (int k = 0; k < 8; k++) w.Layout.WriteToken(record, 4 * k, k < ids.Length ? ids[k] : 0);
            BitConverter.TryWriteBytes(record.AsSpan(w.Layout.LengthOffset), (ushort)ids.Length);
            w.Append(record);
            w.Commit();
        }
        using var ds = PretrainingDataset.Open(dir.Path, big);
        var read = new int[8];
        ds.Read(read, new int[8], new int[1], new int[1], 0);
        Assert.That(read.Take(6), Is.EqualTo(ids));
    }

    private static string BuildSmall(TempDirectory dir)
    {
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options() with { InstancesPerShard = 100_000 }, dir.Path);
        return Directory.GetFiles(dir.Path, "shard-*.bin").Single();
    }

    [TestCase(30, "header checksum", TestName = "flipped byte in the header")]
    [TestCase(3, "magic", TestName = "flipped byte in the magic")]
    [TestCase(-1, "records checksum", TestName = "flipped byte in a record")]
    public void CorruptedShardIsRejected(int offset, string field)
    {
        using var dir = TestPaths.NewTempDirectory();
        string shard = BuildSmall(dir);
        var bytes = File.ReadAllBytes(shard);
        int at = offset >= 0 ? offset : ShardHeader.Size + (bytes.Length - ShardHeader.Size) / 2;
        bytes[at] ^= 0x10;
        File.WriteAllBytes(shard, bytes);
        var e = Assert.Throws<ShardFormatException>(() => PretrainingDataset.Open(dir.Path).Dispose())!;
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.FilePath, Is.EqualTo(shard));
        Assert.That(e.Message, Does.Contain(shard));
    }

    [TestCase(1, "record_count")]
    [TestCase(500, "record_count")]
    [TestCase(-1, "file length")]
    public void TruncatedShardIsRejected(int cut, string field)
    {
        using var dir = TestPaths.NewTempDirectory();
        string shard = BuildSmall(dir);
        long length = new FileInfo(shard).Length;
        using (var f = new FileStream(shard, FileMode.Open)) f.SetLength(cut > 0 ? length - cut : 40);
        var e = Assert.Throws<ShardFormatException>(() => PretrainingDataset.Open(dir.Path).Dispose())!;
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.Contain(Path.GetFileName(shard)));
    }

    [Test]
    public void HugeRecordCountInAValidHeaderIsRejectedWithoutAllocating()
    {
        using var dir = TestPaths.NewTempDirectory();
        string shard = BuildSmall(dir);
        var bytes = File.ReadAllBytes(shard);
        var header = ShardHeader.Read(bytes, bytes.Length, shard) with { RecordCount = long.MaxValue / 2 };
        header.WriteTo(bytes);
        File.WriteAllBytes(shard, bytes);
        var e = Assert.Throws<ShardFormatException>(() => PretrainingDataset.Open(dir.Path).Dispose())!;
        Assert.That((e.Field, e.Value), Is.EqualTo(("record_count", (long.MaxValue / 2).ToString())));
    }

    [Test]
    public void VocabularyMismatchIsRejected()
    {
        using var dir = TestPaths.NewTempDirectory();
        string shard = BuildSmall(dir);
        var other = Vocabulary.FromTokens(Vocab.Tokens.Append("extra"), "other-vocab.txt");
        var e = Assert.Throws<ShardFormatException>(() => PretrainingDataset.Open(dir.Path, other).Dispose())!;
        Assert.That(e.Field, Is.EqualTo("vocab_hash"));
        Assert.That(e.Message, Does.Contain("other-vocab.txt").And.Contain(shard));
    }

    [Test]
    public void ShardsOfOneDatasetMustAgree()
    {
        using var a = TestPaths.NewTempDirectory();
        using var b = TestPaths.NewTempDirectory();
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(seq: 64), a.Path);
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(seq: 32), b.Path);
        File.Copy(Path.Combine(b.Path, "shard-00000.bin"), Path.Combine(a.Path, "shard-99999.bin"));
        var e = Assert.Throws<ShardFormatException>(() => PretrainingDataset.Open(a.Path).Dispose())!;
        Assert.That((e.Field, e.Value), Is.EqualTo(("seq_length", "32")));
    }

    [Test]
    public void EmptyOrMissingDatasetDirectoryIsReported()
    {
        using var dir = TestPaths.NewTempDirectory();
        Assert.Throws<DirectoryNotFoundException>(() => PretrainingDataset.Open(dir.File("nope")));
        var e = Assert.Throws<ShardFormatException>(() => PretrainingDataset.Open(dir.Path))!;
        Assert.That(e.Field, Is.EqualTo("shards"));
    }

    [Test]
    public void SingleSentenceDocumentsAreSkippedAndCounted()
    {
        var docs = SyntheticCorpus.Documents(20, 6, seed: 9);
        docs.AddRange(SyntheticCorpus.Documents(7, 1, seed: 10));
        var corpus = TokenizedCorpus.Tokenize(new TextCorpus(docs, "mixed"), new BertTokenizer(Vocab));
        using var dir = TestPaths.NewTempDirectory();
        var stats = PretrainingDataBuilder.Build(corpus, "mixed", Vocab, Options(), dir.Path);
        Assert.That((stats.Documents, stats.SkippedDocuments), Is.EqualTo((27, 7)));
        Assert.That(stats.Instances, Is.GreaterThan(0));

        var only = TokenizedCorpus.Tokenize(new TextCorpus(SyntheticCorpus.Documents(5, 1, seed: 1), "singles"), new BertTokenizer(Vocab));
        var e = Assert.Throws<CorpusFormatException>(() =>
            PretrainingDataBuilder.Build(only, "singles", Vocab, Options(), dir.File("out")))!;
        Assert.That(e.Message, Does.Contain("singles").And.Contain("fewer than 2 sentences"));
        Assert.That(Directory.Exists(dir.File("out")), Is.False);
    }

    [Test]
    public void CancelledBuildLeavesNothingBehindAndKeepsTheOldDataset()
    {
        using var root = TestPaths.NewTempDirectory();
        string outDir = root.File("seq64");
        PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(seed: 1), outDir);
        var before = Directory.GetFiles(outDir).Order().Select(File.ReadAllBytes).ToList();

        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p =>
        {
            if (p.Stage == PrepareProgress.Write) cts.Cancel(); // after the first shard is written
        });
        Assert.That(() => PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(seed: 2), outDir, progress, cts.Token),
            Throws.InstanceOf<OperationCanceledException>());
        Assert.That(Directory.GetFileSystemEntries(root.Path), Is.EqualTo(new[] { outDir }), "no temporary directory left");
        Assert.That(Directory.GetFiles(outDir).Order().Select(File.ReadAllBytes).ToList(), Is.EqualTo(before), "old dataset intact");
    }

    [Test]
    public void ForeignFilesInTheOutputDirectoryAreNotOverwritten()
    {
        using var root = TestPaths.NewTempDirectory();
        File.WriteAllText(root.File("notes.txt"), "mine");
        var e = Assert.Throws<IOException>(() => PretrainingDataBuilder.Build(Small.Value, "synthetic", Vocab, Options(), root.Path))!;
        Assert.That(e.Message, Does.Contain("notes.txt"));
        Assert.That(Directory.GetFileSystemEntries(root.Path), Is.EqualTo(new[] { root.File("notes.txt") }));
    }

    [Test]
    public void AtomicFileLeavesNoTemporaryOnFailure()
    {
        using var dir = TestPaths.NewTempDirectory();
        string path = dir.File("x.bin");
        File.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[100]);
            throw new InvalidOperationException("disk on fire");
        }));
        Assert.That(Directory.GetFiles(dir.Path), Is.EqualTo(new[] { path }));
        Assert.That(File.ReadAllText(path), Is.EqualTo("old"));
    }

    [Test]
    public void EndToEndFromFileWithStatsJson()
    {
        using var dir = TestPaths.NewTempDirectory();
        string corpus = SyntheticCorpus.Write(dir.File("corpus.txt"), 12, 10, seed: 4);
        string outDir = PretrainingDataBuilder.DatasetDirectory(dir.File("out"), 32);
        var stats = PretrainingDataBuilder.Build(corpus, CorpusFormat.Documents, Vocab, Options(seq: 32), outDir);
        var json = PretrainingStats.FromJson(File.ReadAllText(Path.Combine(outDir, "stats.json")));
        Assert.That(json with { Seconds = 0 }, Is.EqualTo(stats with { Seconds = 0 }).Using<PretrainingStats>((x, y) =>
            x.ToJson() == y.ToJson()));
        Assert.That(json.MaxPredictions, Is.EqualTo(PretrainingDataOptions.DefaultMaxPredictions(32)));
        Assert.That(outDir, Does.EndWith("seq32"));
        using var ds = PretrainingDataset.Open(outDir, Vocab);
        Assert.That(ds.Count, Is.EqualTo(stats.Instances));
    }

    [TestCase(128, 20)]
    [TestCase(512, 80)]
    public void DefaultMaxPredictionsFollowBert(int seq, int expected) =>
        Assert.That(PretrainingDataOptions.DefaultMaxPredictions(seq), Is.EqualTo(expected));

    private sealed class SyncProgress(Action<PrepareProgress> action) : IProgress<PrepareProgress>
    {
        public void Report(PrepareProgress value) => action(value);
    }
}
