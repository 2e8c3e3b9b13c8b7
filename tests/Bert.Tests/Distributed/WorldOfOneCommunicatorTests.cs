using Bert.Runtime.Training;
using Bert.Tests.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Distributed;

/// <summary>A real communicator over a world of one (what BERT_FORCE_NCCL=1 gives the CUDA backend) still carries every
/// step's gradients and metrics, and changes no bit: the CPU version of NcclGpuTests' bit-identity check.</summary>
public class WorldOfOneCommunicatorTests
{
    [Test]
    public void AWorldOfOneReducesEveryStepAndChangesNoBit()
    {
        float[] plain, reduced;
        using (var backend0 = NewBackend()) plain = TrainedWeights(backend0, null, 3);
        var one = ThreadCommunicator.Create(1)[0];
        using (var backend1 = NewBackend()) reduced = TrainedWeights(backend1, one, 3);
        // The gradients go layer by layer during the backward (GradientBuckets), then the rest, then the metrics.
        using var backend = NewBackend();
        using var model = Tiny(backend, 4);
        var buckets = Bert.Runtime.Distributed.GradientBuckets.TryCreate(model, one)!;
        var perStep = Enumerable.Range(0, model.Config.Layers).Reverse()
            .SelectMany(l => buckets.Layers[l].Select(_ => $"the gradient all-reduce of bert.encoder.layer.{l}"))
            .Concat(buckets.Rest.Select(_ => "the gradient all-reduce of the embeddings and heads"))
            .Append("the metrics reduction").ToList();
        Assert.That(one.Calls, Is.EqualTo(Enumerable.Range(0, 3).SelectMany(s => perStep.Select(what => $"{what} of step {s}"))));
        Assert.That(reduced, Is.EqualTo(plain));
    }
}
