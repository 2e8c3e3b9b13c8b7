using Bert.Runtime;
using Bert.Runtime.Distributed;
using Bert.Runtime.Training;
using Bert.Tests.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Distributed;

/// <summary>
/// The gradient all-reduce bucketed by encoder layer and started during the backward (<see cref="GradientBuckets"/>):
/// the buckets cover the gradient buffer once, each layer's all-reduce starts while the backward is still running
/// (after that layer's gradients, before the layers below), and the trained weights equal those of one all-reduce
/// after the backward bit for bit (every element is summed over the same ranks in the same order either way).
/// The same path over Open MPI (MPI_Iallreduce) runs in <see cref="MpiTrainingTests"/>, which compare mpirun ranks
/// with one process accumulating.
/// </summary>
public class GradientBucketsTests
{
    [Test]
    public void BucketsCoverTheGradientBufferOnceLayerByLayer()
    {
        using var backend = NewBackend();
        using var model = Tiny(backend, 4);
        var buckets = GradientBuckets.TryCreate(model, ThreadCommunicator.Create(2)[0]);
        Assert.That(buckets, Is.Not.Null, "the layout keeps each layer's tensors together");
        Assert.That(buckets!.Layers, Has.Count.EqualTo(model.Config.Layers));
        var all = buckets.Layers.SelectMany(l => l).Concat(buckets.Rest).OrderBy(s => s.Offset).ToList();
        long next = 0;
        foreach (var (offset, length) in all)
        {
            Assert.That(offset, Is.EqualTo(next), "no gap and no overlap");
            Assert.That(length, Is.Positive);
            next = offset + length;
        }
        Assert.That(next, Is.EqualTo(model.ParameterTotal));
        for (int l = 0; l < model.Config.Layers; l++)
        {
            var inLayer = model.ParameterTable.Where(p => p.Name.StartsWith($"bert.encoder.layer.{l}.", StringComparison.Ordinal)).ToList();
            Assert.That(buckets.Layers[l].Sum(s => s.Length), Is.EqualTo(inLayer.Sum(p => p.Count)), $"layer {l}: every tensor of the layer");
            foreach (var p in inLayer)
                Assert.That(buckets.Layers[l].Any(s => s.Offset <= p.Offset && p.Offset + p.Count <= s.Offset + s.Length), $"{p.Name} in layer {l}'s bucket");
            Assert.That(buckets.Layers[l], Has.Count.EqualTo(2), "decayed weights, then biases and LayerNorms");
        }
    }

    [Test]
    public void NoBucketsInAWorldOfOneOrWithShardedMoments()
    {
        using var backend = NewBackend();
        using var model = Tiny(backend, 4);
        var schedule = LearningRateSchedule.Create(1e-3, 1, 3);
        using (var single = new TrainingCore(model, new AdamWOptions(), schedule))
            Assert.That(single.Buckets, Is.Null, "a single process reduces nothing");
        var comms = ThreadCommunicator.Create(2);
        using (var off = new TrainingCore(model, new AdamWOptions(), schedule, comms[0], overlapGradientReduce: false))
            Assert.That(off.Buckets, Is.Null, "turned off");
        using (var on = new TrainingCore(model, new AdamWOptions(), schedule, comms[0]))
            Assert.That(on.Buckets, Is.Not.Null, "on by default with a real communicator");
    }

    /// <summary>Trains 3 steps on 2 thread-ranks (one micro-batch each per step) and returns rank 0's weights, whether
    /// both ranks ended equal, and rank 0's record of the collectives it started.</summary>
    private static (float[] Weights, bool Same, List<Started> Log) Train(bool overlap)
    {
        var comms = ThreadCommunicator.Create(2);
        var weights = new float[2][];
        List<Started> log = [];
        ThreadCommunicator.Run(comms, comm =>
        {
            var datasets = TrainerTests.Datasets();
            try
            {
                using var backend = NewBackend();
                using var model = Tiny(backend, 4);
                model.InitializeParameters(7);
                var recording = new StartRecording(comm, model);
                using var trainer = new Trainer(model, TrainerTests.Phases(3, 1 / 3.0, 8, 4, 4, 2), datasets,
                    LearningRateSchedule.Create(1e-3, 1, 3), new AdamWOptions(), seed: 5, communicator: recording,
                    overlapGradientReduce: overlap);
                trainer.SynchronizeReplicas();
                while (!trainer.Finished) trainer.RunStep();
                weights[comm.Rank] = Download(backend, model.Parameters.View);
                if (comm.Rank == 0) log = recording.Log;
            }
            finally
            {
                TrainerTests.Close(datasets);
            }
        });
        return (weights[0], weights[1].AsSpan().SequenceEqual(weights[0]), log);
    }

    [Test]
    public void LayerAllReducesStartDuringTheBackwardAndGiveTheSameWeightsBitwise()
    {
        var once = Train(overlap: false);
        var overlapped = Train(overlap: true);
        Assert.Multiple(() =>
        {
            Assert.That(once.Same && overlapped.Same, "both ranks hold the same weights");
            Assert.That(overlapped.Weights, Is.EqualTo(once.Weights), "bucketed sums are the whole buffer's sums");
            Assert.That(once.Log.Where(s => s.Start), Is.Empty, "without overlap nothing is started early");
        });

        using var backend = NewBackend();
        using var model = Tiny(backend, 4);
        var buckets = GradientBuckets.TryCreate(model, ThreadCommunicator.Create(2)[0])!;
        int layers = model.Config.Layers;
        for (int step = 0; step < 3; step++)
        {
            var mine = overlapped.Log.Where(s => s.Start && s.What.Step == step).ToList();
            var expected = Enumerable.Range(0, layers).Reverse()
                .SelectMany(l => buckets.Layers[l].Select(slice => ($"the gradient all-reduce of bert.encoder.layer.{l}", slice, true)))
                .Concat(buckets.Rest.Select(r => ("the gradient all-reduce of the embeddings and heads", r, false)));
            Assert.That(mine.Select(s => (s.What.What, (s.Offset, s.Length), s.DuringBackward)), Is.EqualTo(expected),
                $"step {step}: layers last first while the backward runs, then the rest");
            Assert.That(overlapped.Log.Count(s => !s.Start && s.What.Step == step), Is.EqualTo(1), $"step {step}: one completion");
        }
    }

    internal readonly record struct Started(bool Start, Collective What, long Offset, long Length, bool DuringBackward);

    /// <summary>Records each started all-reduce (its slice of the gradient buffer, and whether the model's backward was
    /// still listening for layers then) and each completion; forwards everything to a thread-rank communicator.</summary>
    private sealed class StartRecording(ThreadCommunicator inner, BertModelBase model) : ICommunicator
    {
        public readonly List<Started> Log = [];

        public void AllReduceSumStart(TensorRef buffer, Collective what)
        {
            long offset = (long)(buffer.Address - model.Gradients.View.Address) / 4;
            Log.Add(new Started(true, what, offset, buffer.Length, model.LayerGradientsListener is not null));
            inner.AllReduceSum(buffer, what);
        }

        public void CompleteStarted(Collective what) => Log.Add(new Started(false, what, 0, 0, false));

        public int Rank => inner.Rank;
        public int Size => inner.Size;
        public string Name => inner.Name;
        public void AllReduceSum(TensorRef buffer, Collective what) => inner.AllReduceSum(buffer, what);
        public void ReduceScatterSum(TensorRef send, TensorRef recv, Collective what) => inner.ReduceScatterSum(send, recv, what);
        public void AllGather(TensorRef send, TensorRef recv, Collective what) => inner.AllGather(send, recv, what);
        public void Broadcast(TensorRef buffer, int root, Collective what) => inner.Broadcast(buffer, root, what);
        public void AllReduceSum(Span<double> values, Collective what) => inner.AllReduceSum(values, what);
        public void AllGather(ulong mine, Span<ulong> all, Collective what) => inner.AllGather(mine, all, what);
        public void Broadcast(Span<byte> bytes, int root, Collective what) => inner.Broadcast(bytes, root, what);
        public void Barrier(Collective what, TimeSpan? timeout = null) => inner.Barrier(what, timeout);
        public void Abort(int exitCode, string reason) => inner.Abort(exitCode, reason);
        public void Dispose() => inner.Dispose();
    }
}
