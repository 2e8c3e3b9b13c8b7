using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Data;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using Bert.Tests.Cuda.Emulator;
using Bert.Tests.Distributed;
using Bert.Tests.Training;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// Pretraining with --cuda-graphs (<see cref="TrainingCore"/> over <see cref="StepGraphs{TKey}"/>): each micro-batch's
/// forward + backward and each update replayed as captured graphs. On the CPU emulator a run of two phases, each
/// accumulating two micro-batches with their own dropout counters and a batch weight total that changes every step,
/// gives the eager run's losses, norms, weights and moments bit for bit (the MLM gradient scale is read from device
/// memory, so one capture serves every batch of a shape); where graphs cannot run, auto says why once and on is refused.
/// </summary>
[TestFixture, NonParallelizable]
public class PretrainGraphTests
{
    // Two steps at S=32 and one at S=64; each step accumulates two micro-batches of one sequence (the emulator is slow).
    // Step 0 warms the micro-batch graph up and captures it at its second micro-batch, step 1 captures the update, the
    // long phase's step captures its own micro-batch shape and replays the update.
    private const long Steps = 3;
    private const double LongFraction = 1.0 / 3;

    private sealed record Run(StepReport[] Reports, uint[] Weights, uint[] Moments, string GraphState, int Captures, float[] WeightTotals);

    private static Run Train(IBackend backend, CudaGraphMode graphs, List<string>? log = null)
    {
        var datasets = TrainerTests.Datasets();
        try
        {
            using var model = ModelPresets.Create("tiny", backend, 1, TrainingData.LongSeq, TrainingData.LongPredictions, TrainingData.Vocab.Count);
            model.InitializeParameters(21);
            using var trainer = new Trainer(model, TrainerTests.Phases(Steps, LongFraction, 2, 1, 2, 1), datasets,
                LearningRateSchedule.Create(1e-3, 1, Steps), new AdamWOptions(), seed: 5, graphs: graphs, log: log is null ? null : log.Add);
            var totals = new List<float>();
            trainer.BatchObserver = (_, host) => totals.Add(host.MlmWeights.Sum());
            var reports = new List<StepReport>();
            while (!trainer.Finished) reports.Add(trainer.RunStep());
            var w = new float[model.ParameterTotal];
            var v = new float[model.ParameterTotal];
            backend.Download<float>(w, model.Parameters);
            backend.Download<float>(v, trainer.Optimizer.V);
            static uint[] Bits(float[] x) => Array.ConvertAll(x, BitConverter.SingleToUInt32Bits);
            return new Run(reports.ToArray(), Bits(w), Bits(v), trainer.GraphState, trainer.GraphCaptures, totals.ToArray());
        }
        finally
        {
            TrainerTests.Close(datasets);
        }
    }

    // bf16, the GPU's training precision (CudaGraphTests covers the fp32 step as well).
    [Test]
    public void EmulatedGraphedPretrainingGivesTheEagerRunBitForBit()
    {
        using var backend = EmulatedCuda.CreateBackend(DType.BF16);
        var eager = Train(backend, CudaGraphMode.Off);
        var graphed = Train(backend, CudaGraphMode.On);
        Assert.Multiple(() =>
        {
            Assert.That(graphed.GraphState, Is.EqualTo("on"));
            // The short and the long micro-batch shapes, and one update (both phases accumulate two micro-batches).
            Assert.That(graphed.Captures, Is.EqualTo(3), "one capture per micro-batch shape and per update");
            Assert.That(eager.WeightTotals.Distinct().Count(), Is.GreaterThan(1), "the MLM weight total changes between steps");
            Assert.That(eager.Reports.Select(r => r.Phase).Distinct().Count(), Is.EqualTo(2), "both phases ran");
            for (int i = 0; i < eager.Reports.Length; i++)
            {
                var (e, g) = (eager.Reports[i], graphed.Reports[i]);
                Assert.That(g.Loss, Is.EqualTo(e.Loss), $"step {i} loss");
                Assert.That(g.MlmAccuracy, Is.EqualTo(e.MlmAccuracy), $"step {i} MLM accuracy");
                Assert.That(g.GradNorm, Is.EqualTo(e.GradNorm), $"step {i} gradient norm");
                Assert.That(g.LearningRate, Is.EqualTo(e.LearningRate), $"step {i} learning rate");
            }
            Assert.That(graphed.Weights, Is.EqualTo(eager.Weights), "weights after the run");
            Assert.That(graphed.Moments, Is.EqualTo(eager.Moments), "AdamW second moments after the run");
        });
    }

    [Test]
    public void AScaleBakedIntoTheGraphWouldDiffer()
    {
        // The control of the test above: with the MLM gradient scale passed as a host value (what a graph captured
        // before this change froze), the replayed steps use the first batch's scale and the weights end elsewhere.
        using var backend = new HostScaleOnly(new CpuBackend(1));
        var eager = Train(backend, CudaGraphMode.Off);
        using var cpu = new CpuBackend(1);
        var deviceScale = Train(cpu, CudaGraphMode.Off);
        Assert.That(eager.Weights, Is.EqualTo(deviceScale.Weights), "eagerly, a host scale and a device scale are the same numbers");
        using var frozen = new HostScaleOnly(new CpuBackend(1), freezeFirst: true);
        var replayedWithFrozenScale = Train(frozen, CudaGraphMode.Off);
        Assert.That(replayedWithFrozenScale.Weights, Is.Not.EqualTo(eager.Weights));
    }

    [Test]
    public void AutoOnTheCpuBackendRunsEagerlyWithOneLineAndOnIsRefused()
    {
        using var cpu = new CpuBackend(1);
        var log = new List<string>();
        var auto = Train(cpu, CudaGraphMode.Auto, log);
        var off = Train(cpu, CudaGraphMode.Off);
        Assert.Multiple(() =>
        {
            Assert.That(auto.GraphState, Is.EqualTo("fallback"));
            Assert.That(log, Is.EqualTo(new[] { "cuda graphs: running steps eagerly: the backend cpu (1 thread, " +
                (cpu.Gemm == CpuGemmKind.OpenBlas ? "OpenBLAS" : "managed") + " GEMM) cannot capture graphs (only the CUDA backend can)" }));
            Assert.That(auto.Weights, Is.EqualTo(off.Weights));
        });
        var e = Assert.Throws<GraphCaptureException>(() => Train(cpu, CudaGraphMode.On));
        Assert.That(e!.Message, Does.StartWith("--cuda-graphs on: the backend cpu"));
    }

    [Test]
    public void SeveralRanksRunEagerlyUnderAuto()
    {
        using var backend = EmulatedCuda.CreateBackend();
        using var model = ModelPresets.Create("tiny", backend, 1, TrainingData.LongSeq, TrainingData.LongPredictions, TrainingData.Vocab.Count);
        var comm = ThreadCommunicator.Create(2)[0];
        var log = new List<string>();
        using var core = new TrainingCore(model, new AdamWOptions(), LearningRateSchedule.Create(1e-3, 0, 1), comm, graphs: CudaGraphMode.Auto, log: log.Add);
        Assert.That(core.GraphState, Is.EqualTo("fallback"));
        Assert.That(core.GraphFallbackReason, Does.StartWith("data-parallel training over 2 rank(s)"));
        Assert.That(log, Has.Count.EqualTo(1));
        Assert.Throws<GraphCaptureException>(() =>
            new TrainingCore(model, new AdamWOptions(), LearningRateSchedule.Create(1e-3, 0, 1), comm, graphs: CudaGraphMode.On).Dispose());
    }

    /// <summary>Passes the MLM loss its scale as a host value (the device copy dropped); with freezeFirst, the first
    /// scale it saw for every later call, as a graph that captured the host value would replay it.</summary>
    private sealed class HostScaleOnly(IBackend inner, bool freezeFirst = false) : DelegatingBackend(inner, ownsInner: true)
    {
        private float? _first;

        public override void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
            int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default)
        {
            if (!gradScaleOnDevice.IsNull && freezeFirst) gradScale = _first ??= gradScale;
            base.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale, stride);
        }
    }
}
