using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Training;
using Bert.Tests.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Distributed;

/// <summary>
/// Optimizer-state sharding (ZeRO-1) against the replicated optimizer, with ranks as threads of this process
/// (<see cref="ThreadCommunicator"/>, which sums ranks in rank order for every collective, so the reduce-scattered
/// gradients are the all-reduced ones bit for bit). Without clipping the AdamW update is element-wise, so the sharded
/// weights and the gathered moments must equal the replicated ones bitwise; with clipping the norm is a sum of
/// per-shard sums instead of one pass, so the weights agree to float rounding. The end-to-end run over Open MPI is in
/// <see cref="MpiTrainingTests"/>.
/// </summary>
public class ShardedOptimizerTests
{
    private const int Steps = 3;

    [TestCase(1000L, 3)]
    [TestCase(1001L, 4)]
    [TestCase(7L, 4)]
    [TestCase(3L, 5)]
    [TestCase(0L, 2)]
    public void ShardsCoverTheBufferOnceInRankOrder(long total, int ranks)
    {
        long next = 0;
        for (int r = 0; r < ranks; r++)
        {
            var s = new OptimizerShard(r, ranks, total);
            Assert.That(s.Offset, Is.EqualTo(next), $"rank {r} starts where rank {r - 1} ended");
            Assert.That(s.Offset, Is.EqualTo(s.OffsetOf(r)));
            Assert.That(s.Length, Is.EqualTo(s.LengthOf(r)));
            Assert.That(s.Tail, Is.LessThan(ranks));
            Assert.That(s.Covered + s.Tail, Is.EqualTo(total));
            next += s.Length;
        }
        Assert.That(next, Is.EqualTo(total), "the shards end at the buffer's end");
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new OptimizerShard(ranks, ranks, total));
    }

    /// <summary>Runs <see cref="Steps"/> optimizer steps on <paramref name="ranks"/> thread-ranks, each with its own
    /// CPU backend and tiny model (the same initial weights) and its own gradients each step; returns rank 0's weights
    /// and whole moments and whether every rank ended with rank 0's weights.</summary>
    private static (float[] Weights, float[] M, float[] V, bool SameOnAllRanks, long Total) Train(int ranks, bool sharded, float maxGradNorm)
    {
        var comms = ThreadCommunicator.Create(ranks);
        var weights = new float[ranks][];
        float[] m = [], v = [];
        long total = 0;
        ThreadCommunicator.Run(comms, comm =>
        {
            using var backend = new CpuBackend(1);
            using var model = Tiny(backend, 2);
            model.InitializeParameters(11);
            total = model.ParameterTotal;
            using var adam = new AdamWOptimizer(model, new AdamWOptions { MaxGradNorm = maxGradNorm }, sharded ? comm : null);
            var grad = new float[model.ParameterTotal];
            for (int step = 0; step < Steps; step++)
            {
                var random = new Random(1000 * step + comm.Rank);
                for (int i = 0; i < grad.Length; i++) grad[i] = (float)(random.NextDouble() - 0.5) * 0.1f;
                backend.Upload<float>(model.Gradients, grad);
                adam.ReduceGradients(comm, step);
                adam.ComputeGradientNorm(step);
                adam.Apply(step + 1, 1e-3f);
            }
            var mm = new float[model.ParameterTotal];
            var vv = new float[model.ParameterTotal];
            adam.DownloadMoments(mm, vv);
            weights[comm.Rank] = Download(backend, model.Parameters);
            if (comm.Rank == 0) (m, v) = (mm, vv);
        });
        bool same = weights.All(w => w.AsSpan().SequenceEqual(weights[0]));
        return (weights[0], m, v, same, total);
    }

    /// <summary>2 ranks and the first count from 3 whose shards leave a tail for the last rank.</summary>
    private static IEnumerable<int> RankCounts()
    {
        yield return 2;
        using var backend = new CpuBackend(1);
        using var model = Tiny(backend, 2);
        for (int n = 3; n < 16; n++)
            if (model.ParameterTotal % n != 0) { yield return n; yield break; }
    }

    [TestCaseSource(nameof(RankCounts))]
    public void WithoutClippingShardedWeightsAndMomentsEqualReplicatedBitwise(int ranks)
    {
        var replicated = Train(ranks, sharded: false, maxGradNorm: 0);
        var sharded = Train(ranks, sharded: true, maxGradNorm: 0);
        TestContext.Out.WriteLine($"{ranks} ranks, {sharded.Total} parameters: block {sharded.Total / ranks}, tail {sharded.Total % ranks}");
        Assert.Multiple(() =>
        {
            Assert.That(sharded.SameOnAllRanks, "every rank holds the all-gathered weights");
            Assert.That(replicated.SameOnAllRanks);
            Assert.That(sharded.Weights, Is.EqualTo(replicated.Weights), "weights");
            Assert.That(sharded.M, Is.EqualTo(replicated.M), "gathered first moments");
            Assert.That(sharded.V, Is.EqualTo(replicated.V), "gathered second moments");
            Assert.That(sharded.M.Any(x => x != 0), "the moments moved");
        });
    }

    [Test]
    public void WithClippingShardedWeightsMatchReplicatedToRounding()
    {
        // Gradients of norm ≈ 0.1·√(n/12)·√ranks ≫ 0.01, so every step clips.
        var replicated = Train(3, sharded: false, maxGradNorm: 0.01f);
        var sharded = Train(3, sharded: true, maxGradNorm: 0.01f);
        double max = 0;
        for (int i = 0; i < replicated.Weights.Length; i++) max = Math.Max(max, Math.Abs(replicated.Weights[i] - sharded.Weights[i]));
        TestContext.Out.WriteLine($"clipped, 3 ranks: max |Δweight| {max:G3}");
        Assert.That(sharded.SameOnAllRanks);
        Assert.That(max, Is.LessThanOrEqualTo(1e-7));
    }

    [Test]
    public void UploadedMomentsAreShardedAndGatherBackWhole()
    {
        var comms = ThreadCommunicator.Create(3);
        ThreadCommunicator.Run(comms, comm =>
        {
            using var backend = new CpuBackend(1);
            using var model = Tiny(backend, 2);
            using var adam = new AdamWOptimizer(model, new AdamWOptions(), comm);
            var m = Enumerable.Range(0, (int)model.ParameterTotal).Select(i => (float)i).ToArray();
            var v = m.Select(x => -x).ToArray();
            adam.UploadMoments(m, v);
            var shard = adam.Shard!;
            Assert.That(adam.M.Length, Is.EqualTo(shard.Length), "a rank holds only its shard");
            Assert.That(Download(backend, adam.M)[0], Is.EqualTo((float)shard.Offset));
            var m2 = new float[m.Length];
            var v2 = new float[m.Length];
            adam.DownloadMoments(m2, v2);
            Assert.That(m2, Is.EqualTo(m));
            Assert.That(v2, Is.EqualTo(v));
            // A checkpoint: only rank 0 keeps what the others send.
            var m3 = comm.Rank == 0 ? new float[m.Length] : [];
            var v3 = comm.Rank == 0 ? new float[m.Length] : [];
            adam.DownloadMoments(m3, v3);
            if (comm.Rank == 0) Assert.That((m3, v3), Is.EqualTo((m, v)));
            Assert.Throws<ArgumentException>(() => adam.UploadMoments(m.AsSpan(1), v));
        });
    }
}
