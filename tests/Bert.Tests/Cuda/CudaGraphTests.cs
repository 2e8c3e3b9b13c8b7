using Bert.Cli.Commands;
using Bert.Native;
using Bert.Runtime;
using Bert.Runtime.Cpu;
using Bert.Runtime.Presets;
using Bert.Runtime.Training;
using Bert.Tests.Cuda.Emulator;
using NUnit.Framework;

namespace Bert.Tests.Cuda;

/// <summary>
/// CUDA graphs of a training step (<see cref="CudaBackend.Capture"/>, <see cref="GraphedTrainingStep"/>): on the CPU
/// emulator a replayed step gives the eager step's bits, dropout masks included (the counter advances per replay); on
/// the recording device a replay runs the eager step's operations in the same order; host work inside a capture is
/// detected and Auto falls back with one line. The [Gpu] test does the same comparison on a real device.
/// </summary>
[TestFixture, NonParallelizable]
public class CudaGraphTests
{
    // BERT-Tiny (dropout 0.1 on) at odd small sizes.
    private const int Batch = 3, Seq = 16, Predictions = 3, Vocab = 67, Steps = 3;

    private sealed class Rig : IDisposable
    {
        public Rig(IBackend backend, ulong seed = 1)
        {
            Model = ModelPresets.Create("tiny", backend, Batch, Seq, Predictions, Vocab);
            Model.InitializeParameters(11);
            Model.Seed = seed;
            Optimizer = new AdamWOptimizer(Model, new AdamWOptions());
            Device = new DeviceBatch(backend, Batch, Seq, Predictions);
            Batch_ = Device.Upload(BenchCommand.SyntheticBatch(Batch, Seq, Predictions, Vocab, seed: 3), 0, Batch, Batch * Predictions, 1);
        }

        public BertModelBase Model { get; }
        public AdamWOptimizer Optimizer { get; }
        public DeviceBatch Device { get; }
        public BertBatch Batch_ { get; }

        public void Run(GraphedTrainingStep step, int steps)
        {
            for (int t = 0; t < steps; t++) step.Run(t, Batch_, 1e-3f * (t + 1), dropoutStep: (uint)(7 + t));
        }

        public (uint[] Weights, uint[] Moments, uint[] Metrics) Bits()
        {
            var be = Model.Backend;
            var w = new float[Model.ParameterTotal];
            var m = new float[Model.ParameterTotal];
            var metrics = new float[MetricSlot.Length];
            be.Download<float>(w, Model.Parameters);
            be.Download<float>(m, Optimizer.V);
            be.Download<float>(metrics, Model.Metrics);
            static uint[] B(float[] x) => Array.ConvertAll(x, BitConverter.SingleToUInt32Bits);
            return (B(w), B(m), B(metrics));
        }

        public void Dispose()
        {
            Device.Dispose();
            Optimizer.Dispose();
            Model.Dispose();
        }
    }

    private static void AssertSameBits((uint[] Weights, uint[] Moments, uint[] Metrics) eager, (uint[] Weights, uint[] Moments, uint[] Metrics) graphed)
    {
        Assert.Multiple(() =>
        {
            Assert.That(graphed.Metrics, Is.EqualTo(eager.Metrics), "the last step's metrics (loss, accuracy)");
            Assert.That(graphed.Weights, Is.EqualTo(eager.Weights), "weights after the steps");
            Assert.That(graphed.Moments, Is.EqualTo(eager.Moments), "AdamW second moments after the steps");
        });
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    public void EmulatedReplaysGiveTheEagerStepsBitForBit(DType compute)
    {
        using var backend = EmulatedCuda.CreateBackend(compute);
        using var eagerRig = new Rig(backend);
        using (var eager = new GraphedTrainingStep(eagerRig.Model, eagerRig.Optimizer, CudaGraphMode.Off)) eagerRig.Run(eager, Steps);
        using var graphRig = new Rig(backend);
        using var graphed = new GraphedTrainingStep(graphRig.Model, graphRig.Optimizer, CudaGraphMode.On);
        graphRig.Run(graphed, Steps);
        Assert.That(graphed.State, Is.EqualTo("on"));
        AssertSameBits(eagerRig.Bits(), graphRig.Bits());
    }

    [Test]
    public void EmulatedReplayWithAFrozenDropoutCounterWouldDiffer()
    {
        // The control of the test above: the same graph replayed with every step's counter 7 (as a graph that baked the
        // counter into its kernel arguments would do) ends elsewhere, so bit equality there shows the counter advancing.
        using var backend = EmulatedCuda.CreateBackend();
        using var advancing = new Rig(backend);
        using (var step = new GraphedTrainingStep(advancing.Model, advancing.Optimizer, CudaGraphMode.On)) advancing.Run(step, Steps);
        using var frozen = new Rig(backend);
        using (var step = new GraphedTrainingStep(frozen.Model, frozen.Optimizer, CudaGraphMode.On))
            for (int t = 0; t < Steps; t++) step.Run(t, frozen.Batch_, 1e-3f * (t + 1), dropoutStep: 7);
        Assert.That(frozen.Bits().Weights, Is.Not.EqualTo(advancing.Bits().Weights));
    }

    [Test]
    public void DropoutCounterIsAddedToTheSpecsStep()
    {
        using var backend = EmulatedCuda.CreateBackend();
        var cuda = (CudaBackend)backend;
        const int n = 1001;
        using var input = backend.Allocate(n, DType.F32, "in");
        using var viaSpec = backend.Allocate(n, DType.F32, "spec");
        using var viaCounter = backend.Allocate(n, DType.F32, "counter");
        using var counter = backend.Allocate(1, DType.I32, "counter-value");
        backend.Upload<float>(input, Enumerable.Range(0, n).Select(i => 1f + i).ToArray());
        backend.Upload<int>(counter, [40]);
        backend.Dropout(viaSpec, input, n, new DropoutSpec(0.3f, 9, 45, 2));
        cuda.DropoutCounter = counter.View;
        backend.Dropout(viaCounter, input, n, new DropoutSpec(0.3f, 9, 5, 2));
        cuda.DropoutCounter = TensorRef.Null;
        var a = new float[n];
        var b = new float[n];
        backend.Download<float>(a, viaSpec);
        backend.Download<float>(b, viaCounter);
        Assert.That(b, Is.EqualTo(a), "step 5 + counter 40 draws the mask of step 45");
        Assert.That(a.Count(x => x == 0f), Is.InRange(200, 400), "about 30% dropped");
    }

    [Test]
    public void ReplayRunsTheEagerStepsOperationsInOrder()
    {
        var device = new RecordingDevice();
        using var backend = new CudaBackend(device, new CudaBackendOptions { ComputeType = DType.BF16 });
        using var rig = new Rig(backend);
        using var eager = new GraphedTrainingStep(rig.Model, rig.Optimizer, CudaGraphMode.Off);
        eager.Run(0, rig.Batch_, 1e-3f, 0);
        int before = device.Operations.Count;
        eager.Run(1, rig.Batch_, 1e-3f, 1);
        var eagerOps = device.Operations.Skip(before).ToList();

        using var graphed = new GraphedTrainingStep(rig.Model, rig.Optimizer, CudaGraphMode.On);
        graphed.Run(2, rig.Batch_, 1e-3f, 2);
        Assert.That(device.Graphs.Replays + device.Graphs.Live, Is.Zero, "the first step on a batch warms up eagerly");
        before = device.Operations.Count;
        graphed.Run(3, rig.Batch_, 1e-3f, 3);
        var firstReplay = device.Operations.Skip(before).ToList();
        before = device.Operations.Count;
        graphed.Run(4, rig.Batch_, 1e-3f, 4);
        var secondReplay = device.Operations.Skip(before).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(eagerOps, Has.Count.GreaterThan(50), "a whole step of kernels and GEMMs");
            Assert.That(firstReplay, Is.EqualTo(eagerOps), "the captured step's operations are the eager step's");
            Assert.That(secondReplay, Is.EqualTo(eagerOps));
            Assert.That(graphed.GraphNodes, Is.EqualTo(eagerOps.Count));
            Assert.That(device.Graphs.Replays, Is.EqualTo(2), "captured once, replayed twice");
            Assert.That(device.Graphs.Live, Is.EqualTo(1));
        });
    }

    [Test]
    public void HostSynchronizationInsideACaptureIsDetectedAndTheBackendStaysUsable()
    {
        var device = new RecordingDevice();
        using var backend = new CudaBackend(device, new CudaBackendOptions());
        using var x = backend.Allocate(16, DType.F32, "x");
        foreach (var (what, body) in new (string, Action)[]
                 {
                     ("Synchronize", backend.Synchronize),
                     ("Download", () => backend.Download<float>(new float[1], x)),
                     ("Upload", () => backend.Upload<float>(x, [1f])),
                     ("Allocate", () => backend.Allocate(4, DType.F32, "inside").Dispose()),
                 })
        {
            bool captured = backend.TryCapture(() =>
            {
                backend.Zero(x);
                body();
            }, out var graph, out var reason);
            Assert.Multiple(() =>
            {
                Assert.That(captured, Is.False, what);
                Assert.That(graph, Is.Null);
                Assert.That(reason, Does.StartWith(what).And.Contain("cannot replay"), what);
                Assert.That(backend.IsCapturing, Is.False);
                Assert.That(device.Graphs.Capturing, Is.False, "the device's capture was ended");
            });
        }
        int before = device.Operations.Count;
        backend.Zero(x);
        Assert.That(device.Operations.Count, Is.EqualTo(before + 1), "eager work runs again after a failed capture");
        Assert.That(device.Graphs.Live, Is.Zero, "no graph is left behind");
    }

    [Test]
    public void TheDeviceDetectsASynchronizationTheBackendDidNotStop()
    {
        // Below the backend's own check: the stream capture itself (as the driver) refuses a synchronization and the
        // capture is invalid afterwards.
        var device = new RecordingDevice();
        device.BeginCapture();
        var e = Assert.Throws<CudaException>(device.Synchronize);
        Assert.That(e!.ErrorName, Is.EqualTo("CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"));
        var end = Assert.Throws<CudaException>(() => device.EndCapture());
        Assert.That(end!.ErrorName, Is.EqualTo("CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"));
        Assert.That(device.Graphs.Capturing, Is.False);
    }

    [Test]
    public void AutoFallsBackWithOneLogLineWhereCaptureIsImpossible()
    {
        var device = new RecordingDevice();
        using var backend = new CudaBackend(device, new CudaBackendOptions { Profile = true });
        using var rig = new Rig(backend);
        var log = new List<string>();
        using var auto = new GraphedTrainingStep(rig.Model, rig.Optimizer, CudaGraphMode.Auto, log.Add);
        int before = device.Launches;
        rig.Run(auto, 2);
        Assert.Multiple(() =>
        {
            Assert.That(auto.State, Is.EqualTo("fallback"));
            Assert.That(log, Has.Count.EqualTo(1));
            Assert.That(log[0], Does.StartWith("cuda graphs: running steps eagerly: per-op profiling"));
            Assert.That(device.Launches, Is.GreaterThan(before), "the steps ran eagerly");
            Assert.That(device.Graphs.Replays, Is.Zero);
        });
        using var on = new GraphedTrainingStep(rig.Model, rig.Optimizer, CudaGraphMode.On);
        on.Run(0, rig.Batch_, 1e-3f, 0);
        var e = Assert.Throws<GraphCaptureException>(() => on.Run(1, rig.Batch_, 1e-3f, 1));
        Assert.That(e!.Message, Does.StartWith("--cuda-graphs on: per-op profiling"));
    }

    [Test]
    public void AutoOnTheCpuBackendRunsEagerlyAndOnIsRefused()
    {
        using var cpu = new CpuBackend(1);
        using var rig = new Rig(cpu);
        var log = new List<string>();
        using var auto = new GraphedTrainingStep(rig.Model, rig.Optimizer, CudaGraphMode.Auto, log.Add);
        rig.Run(auto, 1);
        Assert.That(auto.State, Is.EqualTo("fallback"));
        Assert.That(log, Has.Count.EqualTo(1));
        Assert.That(log[0], Does.StartWith("cuda graphs: running steps eagerly: the backend cpu").And.EndWith("cannot capture graphs (only the CUDA backend can)"));
        var e = Assert.Throws<GraphCaptureException>(() => new GraphedTrainingStep(rig.Model, rig.Optimizer, CudaGraphMode.On));
        Assert.That(e!.Message, Does.Contain("--cuda-graphs on").And.Contain("only the CUDA backend can"));
    }

    [Test, Gpu]
    public void GpuReplaysGiveTheEagerStepsBitForBit([Values(DType.F32, DType.BF16)] DType compute)
    {
        using var backend = EmulatedCuda.CreateGpuBackend(compute);
        using var eagerRig = new Rig(backend);
        using (var eager = new GraphedTrainingStep(eagerRig.Model, eagerRig.Optimizer, CudaGraphMode.Off)) eagerRig.Run(eager, Steps);
        using var graphRig = new Rig(backend);
        using var graphed = new GraphedTrainingStep(graphRig.Model, graphRig.Optimizer, CudaGraphMode.On);
        graphRig.Run(graphed, Steps);
        TestContext.Progress.WriteLine($"{backend.Name} {compute}: graph of {graphed.GraphNodes} nodes");
        Assert.That(graphed.State, Is.EqualTo("on"));
        AssertSameBits(eagerRig.Bits(), graphRig.Bits());
    }
}
