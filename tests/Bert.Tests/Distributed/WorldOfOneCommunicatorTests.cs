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
        float[] Train(ThreadCommunicator? comm)
        {
            var datasets = TrainerTests.Datasets();
            try
            {
                using var backend = NewBackend();
                using var model = Tiny(backend, 4);
                model.InitializeParameters(7);
                using var trainer = new Trainer(model, TrainerTests.Phases(3, 1 / 3.0, 8, 4, 4, 2), datasets, LearningRateSchedule.Create(1e-3, 1, 3),
                    new AdamWOptions(), seed: 5, communicator: comm);
                trainer.SynchronizeReplicas();
                while (!trainer.Finished) trainer.RunStep();
                return Download(backend, model.Parameters.View);
            }
            finally
            {
                TrainerTests.Close(datasets);
            }
        }

        var plain = Train(null);
        var one = ThreadCommunicator.Create(1)[0];
        var reduced = Train(one);
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
