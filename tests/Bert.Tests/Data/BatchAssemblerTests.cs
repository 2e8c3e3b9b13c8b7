using Bert.Runtime.Data;
using NUnit.Framework;

namespace Bert.Tests.Data;

public class BatchAssemblerTests
{
    private static readonly Vocabulary Vocab = SyntheticCorpus.Vocabulary;
    private TempDirectory _dir = null!;
    private PretrainingDataset _dataset = null!;

    [OneTimeSetUp]
    public void Build()
    {
        _dir = TestPaths.NewTempDirectory();
        var corpus = SyntheticCorpus.Tokenized(20, 10, seed: 2);
        PretrainingDataBuilder.Build(corpus, "synthetic", Vocab,
            new PretrainingDataOptions { SeqLength = 32, DupeFactor = 1, InstancesPerShard = 13 }, _dir.Path);
        _dataset = PretrainingDataset.Open(_dir.Path, Vocab);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        _dataset.Dispose();
        _dir.Dispose();
    }

    [Test]
    public void FillsRowsAsTheDatasetHoldsThem()
    {
        var batch = new HostBatch(3, _dataset.SeqLength, _dataset.MaxPredictions);
        var assembler = new BatchAssembler(_dataset, seed: 1);
        long[] indices = [5, 0, 17];
        float sum = assembler.Fill(batch, indices);
        int s = _dataset.SeqLength, p = _dataset.MaxPredictions;
        float expectedSum = 0;
        for (int r = 0; r < 3; r++)
        {
            var (ids, types, pos, lab) = (new int[s], new int[s], new int[p], new int[p]);
            var info = _dataset.Read(ids, types, pos, lab, indices[r]);
            Assert.That(batch.InputIds.AsSpan(r * s, s).ToArray(), Is.EqualTo(ids));
            Assert.That(batch.TokenTypeIds.AsSpan(r * s, s).ToArray(), Is.EqualTo(types));
            Assert.That(batch.AttentionMask.AsSpan(r * s, s).ToArray(), Is.EqualTo(Enumerable.Range(0, s).Select(k => k < info.Length ? 1 : 0)));
            Assert.That(batch.MlmPositions.AsSpan(r * p, p).ToArray(), Is.EqualTo(pos));
            Assert.That(batch.MlmLabels.AsSpan(r * p, p).ToArray(), Is.EqualTo(lab));
            Assert.That(batch.MlmWeights.AsSpan(r * p, p).ToArray(), Is.EqualTo(Enumerable.Range(0, p).Select(k => k < info.MaskedCount ? 1f : 0f)));
            Assert.That(batch.NspLabels[r], Is.EqualTo(info.NspLabel));
            expectedSum += info.MaskedCount;
        }
        Assert.That(sum, Is.EqualTo(expectedSum));
        Assert.That(batch.WeightSum, Is.EqualTo(expectedSum));
        Assert.That(batch.MlmGradScale, Is.EqualTo(1f / (expectedSum + 1e-5f)));
        Assert.That(batch.Rows, Is.EqualTo(3));
    }

    [Test]
    public void EachEpochIsAFreshPermutation()
    {
        long n = _dataset.Count;
        var order = new ShuffledOrder(n, seed: 9);
        var e0 = Enumerable.Range(0, (int)n).Select(i => order[0, i]).ToArray();
        var e1 = Enumerable.Range(0, (int)n).Select(i => order[1, i]).ToArray();
        Assert.That(e0.Order(), Is.EqualTo(Enumerable.Range(0, (int)n).Select(i => (long)i)));
        Assert.That(e1.Order(), Is.EqualTo(e0.Order()));
        Assert.That(e1, Is.Not.EqualTo(e0));
        Assert.That(new ShuffledOrder(n, seed: 9)[0, 3], Is.EqualTo(e0[3]), "same seed, same order");
        var other = new ShuffledOrder(n, seed: 10);
        Assert.That(Enumerable.Range(0, (int)n).Select(i => other[0, i]), Is.Not.EqualTo(e0));
    }

    [Test]
    public void ResumingFromACursorContinuesTheSameStream()
    {
        const int b = 7;
        int steps = (int)(2.5 * _dataset.Count / b); // crosses two epoch boundaries
        var full = new BatchAssembler(_dataset, seed: 3);
        var batch = new HostBatch(b, _dataset.SeqLength, _dataset.MaxPredictions);
        var stream = new List<int[]>();
        DataCursor resumeAt = default;
        for (int k = 0; k < steps; k++)
        {
            if (k == steps / 2) resumeAt = full.Cursor;
            full.Next(batch);
            stream.Add((int[])batch.InputIds.Clone());
        }
        Assert.That(full.Cursor.Epoch, Is.EqualTo(2));

        var resumed = new BatchAssembler(_dataset, seed: 3, resumeAt);
        for (int k = steps / 2; k < steps; k++)
        {
            resumed.Next(batch);
            Assert.That(batch.InputIds, Is.EqualTo(stream[k]), $"batch {k}");
        }
        Assert.That(resumed.Cursor, Is.EqualTo(full.Cursor));
    }

    [Test]
    public void EveryInstanceOncePerEpoch()
    {
        var assembler = new BatchAssembler(_dataset, seed: 4);
        int n = (int)_dataset.Count;
        var batch = new HostBatch(1, _dataset.SeqLength, _dataset.MaxPredictions);
        var seen = new HashSet<string>();
        for (int k = 0; k < n; k++)
        {
            assembler.Next(batch);
            seen.Add(string.Join(",", batch.InputIds) + "|" + string.Join(",", batch.MlmLabels));
        }
        Assert.That(assembler.Cursor, Is.EqualTo(new DataCursor(1, 0)));
        Assert.That(seen, Has.Count.EqualTo(n), "n distinct instances in one epoch");
    }

    [Test]
    public void MismatchedBatchShapeIsRejected()
    {
        var assembler = new BatchAssembler(_dataset, seed: 1);
        Assert.Throws<ArgumentException>(() => assembler.Next(new HostBatch(2, 64, _dataset.MaxPredictions)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchAssembler(_dataset, 1, new DataCursor(0, _dataset.Count)));
    }
}
