using Bert.Runtime;
using Bert.Runtime.Distributed;
using Bert.Runtime.Training;
using Bert.Tests.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Distributed;

/// <summary>The trainer's data-parallel plumbing against a scripted communicator (the real one runs in
/// <see cref="MpiTrainingTests"/>): what is reduced, in which order, and what a mismatch reports.</summary>
public class ReplicaCheckTests
{
    /// <summary>Rank 0 of a world of two whose other rank mirrors it (sums double), except where told to differ.</summary>
    private sealed class MirrorCommunicator(IBackend backend) : ICommunicator
    {
        public readonly List<string> Calls = [];
        public ulong OtherRankHashXor;
        public bool OtherRankStops;
        public int Rank => 0;
        public int Size => 2;
        public string Name => "mirror";

        public void AllReduceSum(TensorRef buffer, Collective what)
        {
            Calls.Add("tensor " + what);
            var host = new float[buffer.Length];
            backend.Download<float>(host, buffer);
            for (int i = 0; i < host.Length; i++) host[i] *= 2;
            backend.Upload<float>(buffer, host);
        }

        public void AllReduceSum(Span<double> values, Collective what)
        {
            Calls.Add("host " + what);
            bool stopSlot = what.What.StartsWith("the metrics", StringComparison.Ordinal);
            for (int i = 0; i < values.Length; i++) values[i] *= 2;
            if (stopSlot && OtherRankStops) values[^1] += 1;
        }

        public void AllGather(ulong mine, Span<ulong> all, Collective what)
        {
            Calls.Add("gather " + what);
            all[0] = mine;
            all[1] = mine ^ OtherRankHashXor;
        }

        public void Broadcast(TensorRef buffer, int root, Collective what) => Calls.Add("broadcast " + what);
        public void ReduceScatterSum(TensorRef send, TensorRef recv, Collective what) => throw new NotSupportedException();
        public void AllGather(TensorRef send, TensorRef recv, Collective what) => throw new NotSupportedException();
        public void Broadcast(Span<byte> bytes, int root, Collective what) => throw new NotSupportedException();
        public void Barrier(Collective what, TimeSpan? timeout = null) => Calls.Add("barrier " + what);
        public void Abort(int exitCode, string reason) => throw new InvalidOperationException(reason);
        public void Dispose() { }
    }

    [Test]
    public void AStepReducesTheWeightTotalThenTheGradientsThenTheMetricsAndSharesAStopRequest()
    {
        var datasets = TrainerTests.Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = Tiny(backend, 4);
            model.InitializeParameters(3);
            var comm = new MirrorCommunicator(backend);
            using var trainer = new Trainer(model, TrainerTests.Phases(4, 0, 8, 4, 2, 1), datasets, LearningRateSchedule.Create(1e-3, 0, 4),
                new AdamWOptions(), seed: 5, communicator: comm);
            var rows = new List<int>();
            trainer.BatchObserver = (_, batch) => rows.Add(batch.Rows);
            trainer.SynchronizeReplicas();
            var report = trainer.RunStep();
            Assert.Multiple(() =>
            {
                Assert.That(comm.Calls, Is.EqualTo(new[]
                {
                    "broadcast the broadcast of rank 0's weights", "broadcast the broadcast of rank 0's AdamW first moments",
                    "broadcast the broadcast of rank 0's AdamW second moments", "gather the replica check after the broadcast from rank 0",
                    "host the MLM weight total of step 0",
                }.Concat(GradientsOfStep0(model)).Append("host the metrics reduction of step 0")));
                Assert.That(rows, Is.EqualTo(new[] { 4 }), "this rank reads its half of the batch of 8");
                Assert.That(report.Sequences, Is.EqualTo(8), "the report counts the global batch");
                Assert.That(trainer.StopRequestedByAnyRank, Is.False);
            });
            comm.OtherRankStops = true;
            trainer.RunStep();
            Assert.That(trainer.StopRequestedByAnyRank, Is.True, "the other rank's stop request reaches this one");
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }

    /// <summary>The gradient all-reduces of step 0 (<see cref="Bert.Runtime.Distributed.GradientBuckets"/>): each layer's
    /// slices during the backward, last layer first, then the embeddings and heads.</summary>
    private static IEnumerable<string> GradientsOfStep0(Bert.Runtime.BertModelBase model)
    {
        var buckets = Bert.Runtime.Distributed.GradientBuckets.TryCreate(model, Bert.Runtime.Distributed.SingleProcessCommunicator.Instance)!;
        return Enumerable.Range(0, model.Config.Layers).Reverse()
            .SelectMany(l => buckets.Layers[l].Select(_ => $"tensor the gradient all-reduce of bert.encoder.layer.{l} of step 0"))
            .Concat(buckets.Rest.Select(_ => "tensor the gradient all-reduce of the embeddings and heads of step 0"));
    }

    [Test]
    public void AReplicaThatDiffersIsNamed()
    {
        var datasets = TrainerTests.Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = Tiny(backend, 4);
            model.InitializeParameters(3);
            var comm = new MirrorCommunicator(backend) { OtherRankHashXor = 1 };
            using var trainer = new Trainer(model, TrainerTests.Phases(4, 0, 8, 4, 2, 1), datasets, LearningRateSchedule.Create(1e-3, 0, 4),
                new AdamWOptions(), seed: 5, communicator: comm);
            var e = Assert.Throws<ReplicaMismatchException>(() => trainer.CheckReplicas("after step 0"));
            Assert.That(e!.Message, Does.StartWith("step 0: the weights, AdamW moments or data cursors of rank(s) 1 differ from rank 0's after step 0"));
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }

    [Test]
    public void ABatchThatDoesNotSplitOverTheRanksIsRefused()
    {
        var datasets = TrainerTests.Datasets();
        try
        {
            using var backend = NewBackend();
            using var model = Tiny(backend, 4);
            var e = Assert.Throws<ArgumentException>(() => new Trainer(model, TrainerTests.Phases(4, 0, 4, 4, 2, 1), datasets,
                LearningRateSchedule.Create(1e-3, 0, 4), new AdamWOptions(), seed: 5, communicator: new MirrorCommunicator(backend)));
            Assert.That(e!.Message, Does.Contain("cannot be split evenly over 2 ranks"));
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }
}
