using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using Bert.Tests.Data;
using Bert.Tests.Cuda;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Training;

/// <summary>
/// Whole training steps on the GPU against the CPU backend (the oracle) and bf16 against fp32, on the
/// synthetic pretraining data of <see cref="TrainingData"/>: one step from the same weights and dropout
/// stream (fp32, loss within 1e-4 relative), 200 steps of Tiny tracking the CPU's loss curve within 1%,
/// and 2,000 steps of Mini in bf16 tracking fp32 within 2%. Ignored without a GPU.
/// </summary>
[TestFixture, Gpu, NonParallelizable]
public class GpuTrainingTests
{
    private static IBackend Gpu(DType computeType) => Bert.Tests.Cuda.Emulator.EmulatedCuda.CreateGpuBackend(computeType);

    private sealed record Run(List<StepReport> Reports, float[] FirstGradient);

    /// <summary>A corpus of 4,000 synthetic documents at S=32 (about 20,000 instances): random syllables
    /// have an entropy floor, so 2,000 steps of batch 8 (less than one epoch) cannot memorize it and the
    /// loss stays meaningful to compare.</summary>
    private static readonly Lazy<string> LargeData = new(() =>
    {
        string root = TrainingData.NewDirectory("large");
        PretrainingDataBuilder.Build(SyntheticCorpus.Tokenized(4000, 8, seed: 31), "synthetic-large", TrainingData.Vocab,
            new PretrainingDataOptions { SeqLength = TrainingData.ShortSeq, DupeFactor = 1, Seed = 3 },
            PretrainingDataBuilder.DatasetDirectory(root, TrainingData.ShortSeq));
        return root;
    });

    /// <summary><paramref name="steps"/> steps of <paramref name="preset"/> with dropout as the preset has it
    /// (0.1), batch 8, 10% of the steps at S=64 (all at S=32 on the large corpus); weights, data order and
    /// dropout from fixed seeds.</summary>
    private static Run Train(IBackend backend, string preset, int steps, double lr, bool large = false)
    {
        var datasets = large
            ? new Dictionary<string, PretrainingDataset>
            {
                [$"seq{TrainingData.ShortSeq}"] = PretrainingDataset.Open(
                    PretrainingDataBuilder.DatasetDirectory(LargeData.Value, TrainingData.ShortSeq), TrainingData.Vocab),
            }
            : TrainerTests.Datasets();
        try
        {
            using var model = ModelPresets.Create(preset, backend, 8, TrainingData.LongSeq, TrainingData.LongPredictions, TrainingData.Vocab.Count);
            model.InitializeParameters(21);
            var phases = TrainerTests.Phases(steps, steps >= 10 && !large ? 0.1 : 0, 8, 8, 4, 4);
            using var trainer = new Trainer(model, phases, datasets, LearningRateSchedule.Create(lr, steps / 10, steps), new AdamWOptions(), seed: 5);
            var reports = new List<StepReport>(steps);
            float[]? first = null;
            while (!trainer.Finished)
            {
                var r = trainer.RunStep();
                reports.Add(r);
                Assert.That(double.IsFinite(r.Loss), $"{backend.Name}: step {r.Step} loss {r.Loss}");
                first ??= Download(backend, model.Gradients);
            }
            return new Run(reports, first!);
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }

    /// <summary>Mean loss over consecutive windows of <paramref name="width"/> steps.</summary>
    private static double[] Windows(List<StepReport> reports, int width) =>
        Enumerable.Range(0, reports.Count / width).Select(w => reports.Skip(w * width).Take(width).Average(r => r.Loss)).ToArray();

    [Test]
    public void OneStepMatchesTheCpuFromTheSameWeightsAndDropoutStream()
    {
        using var gpu = Gpu(DType.F32);
        using var cpu = NewBackend();
        var a = Train(cpu, "tiny", 1, 1e-3);
        var b = Train(gpu, "tiny", 1, 1e-3);
        var (ra, rb) = (a.Reports[0], b.Reports[0]);
        TestContext.Progress.WriteLine($"loss cpu {ra.Loss:R} gpu {rb.Loss:R}; MLM {ra.MlmLoss:R} / {rb.MlmLoss:R}; NSP {ra.NspLoss:R} / {rb.NspLoss:R}");
        Assert.Multiple(() =>
        {
            Assert.That(rb.Loss, Is.EqualTo(ra.Loss).Within(1e-4 * Math.Abs(ra.Loss)), "loss");
            Assert.That(rb.MlmLoss, Is.EqualTo(ra.MlmLoss).Within(1e-4 * Math.Abs(ra.MlmLoss)), "MLM loss");
            Assert.That(rb.NspLoss, Is.EqualTo(ra.NspLoss).Within(1e-4 * Math.Abs(ra.NspLoss)), "NSP loss");
            Assert.That(rb.GradNorm, Is.EqualTo(ra.GradNorm).Within(1e-4 * ra.GradNorm), "gradient norm");
        });
        // The whole gradient, normwise: max |g_gpu − g_cpu| / max |g_cpu|.
        double scale = a.FirstGradient.Max(Math.Abs), worst = 0;
        int at = 0;
        for (int i = 0; i < a.FirstGradient.Length; i++)
        {
            double d = Math.Abs((double)b.FirstGradient[i] - a.FirstGradient[i]);
            if (d > worst) (worst, at) = (d, i);
        }
        TestContext.Progress.WriteLine($"gradient: normwise error {worst / scale:e2} at element {at}");
        Assert.That(worst / scale, Is.LessThanOrEqualTo(1e-4), $"gradient element {at}");
    }

    [Test]
    public void TwoHundredStepsOfTinyTrackTheCpuLossCurve()
    {
        const int steps = 200, width = 20;
        using var gpu = Gpu(DType.F32);
        using var cpu = NewBackend();
        var a = Windows(Train(cpu, "tiny", steps, 1e-3).Reports, width);
        var b = Windows(Train(gpu, "tiny", steps, 1e-3).Reports, width);
        TestContext.Progress.WriteLine("window  cpu      gpu      rel");
        for (int w = 0; w < a.Length; w++)
            TestContext.Progress.WriteLine($"{w * width,6}  {a[w]:F4}  {b[w]:F4}  {Math.Abs(b[w] - a[w]) / a[w]:e2}");
        Assert.That(a[^1], Is.LessThan(a[0]), "the CPU run must learn for the comparison to mean anything");
        for (int w = 0; w < a.Length; w++)
            Assert.That(Math.Abs(b[w] - a[w]) / a[w], Is.LessThanOrEqualTo(0.01), $"steps {w * width}..{(w + 1) * width - 1}");
    }

    [Test]
    public void TwoThousandStepsOfMiniInBf16TrackFp32()
    {
        const int steps = 2000, width = 100;
        using var f32 = Gpu(DType.F32);
        var a = Windows(Train(f32, "mini", steps, 5e-4, large: true).Reports, width);
        using var bf16 = Gpu(DType.BF16);
        var b = Windows(Train(bf16, "mini", steps, 5e-4, large: true).Reports, width);
        TestContext.Progress.WriteLine("window  fp32     bf16     rel");
        for (int w = 0; w < a.Length; w++)
            TestContext.Progress.WriteLine($"{w * width,6}  {a[w]:F4}  {b[w]:F4}  {Math.Abs(b[w] - a[w]) / a[w]:e2}");
        Assert.That(a[^1], Is.LessThan(0.9 * a[0]), "the fp32 run must learn for the comparison to mean anything");
        for (int w = 0; w < a.Length; w++)
            Assert.That(Math.Abs(b[w] - a[w]) / a[w], Is.LessThanOrEqualTo(0.02), $"steps {w * width}..{(w + 1) * width - 1}");
    }
}
