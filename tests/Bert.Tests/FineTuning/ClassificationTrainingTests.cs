using Bert.Runtime.Cpu;
using Bert.Runtime.Data;
using Bert.Runtime.FineTuning;
using Bert.Runtime.Training;
using NUnit.Framework;

namespace Bert.Tests.FineTuning;

/// <summary>The fine-tuning loop learns a small synthetic task completely.</summary>
public class ClassificationTrainingTests
{
    // 5 special tokens + the marker "x" + 19 filler words = the 25 tokens of TinySyntheticClassifier.
    private static readonly Vocabulary Vocab = Vocabulary.FromTokens(
        Vocabulary.SpecialTokens.Concat(["x"]).Concat(Enumerable.Range(0, 19).Select(i => "w" + i)), "synthetic");

    /// <summary>Label 1 exactly when the marker word "x" occurs somewhere in 3–12 filler words.</summary>
    private static List<ClassificationExample> Task(int count, ulong seed)
    {
        var rng = DataRng.Create(seed);
        var result = new List<ClassificationExample>();
        for (int i = 0; i < count; i++)
        {
            int n = rng.NextInt(3, 12);
            var words = Enumerable.Range(0, n).Select(_ => "w" + rng.NextInt(0, 18)).ToList();
            bool positive = i % 2 == 0;
            if (positive) words[rng.NextInt(0, n - 1)] = "x";
            result.Add(new ClassificationExample(string.Join(' ', words), null, positive ? "yes" : "no", $"synthetic:{i}"));
        }
        return result;
    }

    [Test]
    public void ASmallClassifierReaches100PercentOnHeldOutExamples()
    {
        var tokenizer = new BertTokenizer(Vocab);
        var labels = LabelSets.FromLabels(["no", "yes"]);
        var index = LabelSets.Index(labels);
        var train = Featurizer.Classification(Task(160, 1), index, tokenizer, 14);
        var heldOutExamples = Task(60, 2);
        var heldOut = TaskSplit.ForClassification(heldOutExamples, Featurizer.Classification(heldOutExamples, index, tokenizer, 14));

        using var backend = new CpuBackend(2);
        using var model = new TinySyntheticClassifier(backend, 16, 14, 0);
        model.InitializeParameters(7);
        var options = new FineTuningOptions { Epochs = 12, BatchSize = 16, MicroBatch = 8, LearningRate = 3e-3, Seed = 3 };
        using var tuner = new FineTuner(model, train, options);
        Assert.That((tuner.StepsPerEpoch, tuner.TotalSteps, tuner.Schedule.WarmupSteps), Is.EqualTo((10L, 120L, 12L)));

        var before = FineTuningEvaluator.Evaluate(model, heldOut, labels, 32).Result;
        var losses = new List<double>();
        int epochsEnded = 0;
        while (!tuner.Finished)
        {
            var r = tuner.RunStep();
            Assert.That(r.Rows, Is.EqualTo(16));
            Assert.That(double.IsFinite(r.Loss) && double.IsFinite(r.GradNorm), Is.True);
            losses.Add(r.Loss);
            if (tuner.EpochEnded) epochsEnded++;
        }
        var (after, predictions) = FineTuningEvaluator.Evaluate(model, heldOut, labels, 32);
        Assert.That(epochsEnded, Is.EqualTo(12));
        Assert.That(losses.TakeLast(10).Average(), Is.LessThan(losses.Take(10).Average() / 4));
        Assert.That(after.Accuracy, Is.EqualTo(1.0), $"before training: {before.Describe()}; after: {after.Describe()}");
        Assert.That(after.F1, Is.EqualTo(1.0));
        Assert.That(after.Loss, Is.LessThan(before.Loss));
        Assert.That(predictions.Classes, Is.EqualTo(heldOut.Features.Labels));
    }

    [Test]
    public void TheLastBatchOfAnEpochTakesTheRemainderAndDataOrderFollowsTheSeed()
    {
        var tokenizer = new BertTokenizer(Vocab);
        var index = LabelSets.Index(["no", "yes"]);
        var train = Featurizer.Classification(Task(21, 4), index, tokenizer, 14);
        using var backend = new CpuBackend(2);
        double[] Run(ulong seed)
        {
            using var model = new TinySyntheticClassifier(backend, 8, 14, 0);
            model.InitializeParameters(1);
            using var tuner = new FineTuner(model, train, new FineTuningOptions { Epochs = 2, BatchSize = 8, Seed = seed });
            var rows = new List<int>();
            var losses = new List<double>();
            while (!tuner.Finished)
            {
                var r = tuner.RunStep();
                rows.Add(r.Rows);
                losses.Add(r.Loss);
            }
            Assert.That(rows, Is.EqualTo(new[] { 8, 8, 5, 8, 8, 5 }));
            return losses.ToArray();
        }
        Assert.That(Run(5), Is.EqualTo(Run(5)), "same seed, same run");
        Assert.That(Run(5), Is.Not.EqualTo(Run(6)));
    }

    [Test]
    public void InvalidOptionsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new FineTuningOptions { Epochs = 0 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new FineTuningOptions { LearningRate = double.NaN }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new FineTuningOptions { WarmupFraction = 1.5 }.Validate());
        Assert.That(new FineTuningOptions { BatchSize = 32, MicroBatch = 64 }.EffectiveMicroBatch, Is.EqualTo(32));
        Assert.That(new AdamWOptions().WeightDecay, Is.EqualTo(0.01f));
    }
}
