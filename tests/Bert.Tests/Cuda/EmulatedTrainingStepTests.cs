using Bert.Runtime;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using Bert.Tests.Cuda.Emulator;
using Bert.Tests.Training;
using NUnit.Framework;
using static Bert.Tests.Training.TrainingHelpers;

namespace Bert.Tests.Cuda;

/// <summary>
/// One whole bf16 training step of BERT-Tiny on the CUDA backend run by the CPU emulator, against the CPU
/// backend (fp32) from the same weights, data and dropout stream: every kernel of the step in the model's
/// own order, the MLM logits in bf16 (the compute arena) turned into their gradient in place by the fused
/// loss, the fused LayerNorm backwards. bf16 activations put the losses about 10⁻³ apart; a wrong kernel or a
/// wrong dropout mask puts them much further.
/// </summary>
[TestFixture, NonParallelizable]
public class EmulatedTrainingStepTests
{
    [Test]
    public void OneBf16StepTracksTheCpuBackend()
    {
        using var cpu = NewBackend();
        var (want, wantLogits) = Step(cpu);
        using var cuda = EmulatedCuda.CreateBackend(DType.BF16);
        var (got, gotLogits) = Step(cuda);
        TestContext.Progress.WriteLine($"cpu loss {want.Loss:R} MLM {want.MlmLoss:R} NSP {want.NspLoss:R} norm {want.GradNorm:R}; " +
            $"emulated bf16 {got.Loss:R} {got.MlmLoss:R} {got.NspLoss:R} {got.GradNorm:R}");
        Assert.Multiple(() =>
        {
            Assert.That(wantLogits, Is.EqualTo(DType.F32));
            Assert.That(gotLogits, Is.EqualTo(DType.BF16), "MLM logits live in the compute arena");
            Assert.That(got.MlmLoss, Is.EqualTo(want.MlmLoss).Within(1e-2 * Math.Abs(want.MlmLoss)), "MLM loss");
            Assert.That(got.NspLoss, Is.EqualTo(want.NspLoss).Within(1e-2 * Math.Abs(want.NspLoss)), "NSP loss");
            Assert.That(got.GradNorm, Is.EqualTo(want.GradNorm).Within(3e-2 * want.GradNorm), "gradient norm");
        });
    }

    private static (StepReport Report, DType Logits) Step(IBackend backend)
    {
        var datasets = TrainerTests.Datasets();
        try
        {
            using var model = ModelPresets.Create("tiny", backend, 8, TrainingData.LongSeq, TrainingData.LongPredictions, TrainingData.Vocab.Count);
            model.InitializeParameters(21);
            using var trainer = new Trainer(model, TrainerTests.Phases(1, 0, 8, 8, 4, 4), datasets,
                LearningRateSchedule.Create(1e-3, 0, 1), new AdamWOptions(), seed: 5);
            var report = trainer.RunStep();
            return (report, model.MlmLogits.DType);
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }
}
