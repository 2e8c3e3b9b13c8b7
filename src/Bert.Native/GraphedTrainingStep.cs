using Bert.Runtime;
using Bert.Runtime.Training;

namespace Bert.Native;

/// <summary>Whether a training step runs as a replayed CUDA graph (--cuda-graphs).</summary>
public enum CudaGraphMode
{
    /// <summary>Every step runs op by op.</summary>
    Off,
    /// <summary>The step is captured and replayed; a step that cannot be captured is an error.</summary>
    On,
    /// <summary>Captured and replayed on the CUDA backend; eager, after one log line saying why, where it cannot be.</summary>
    Auto,
}

/// <summary>
/// One optimizer step of a fixed batch shape, single process: gradients zeroed, forward, backward, global gradient
/// norm, clip and AdamW (<see cref="AdamWOptimizer.ApplyDevice"/>), run op by op or captured once as a CUDA graph and
/// replayed. What changes from step to step lives in device memory, written before the step: the batch (uploaded into
/// the buffers the graph reads) and <see cref="AdamWOptimizer.Scalars"/> (learning rate, bias corrections and the
/// dropout counter, one upload), so a replay of step t computes exactly what an eager step t computes, dropout masks
/// included (the model's DropoutStep stays 0 in the graph and the kernels add the counter of the scalars, see
/// <see cref="CudaBackend.DropoutCounter"/>). The step's metrics stay in <see cref="BertModelBase.Metrics"/> and the
/// norm in <see cref="AdamWOptimizer.GradNormSquared"/>; nothing is read back.
/// </summary>
public sealed class GraphedTrainingStep : IDisposable
{
    private readonly BertModelBase _model;
    private readonly AdamWOptimizer _optimizer;
    private readonly CudaBackend? _cuda;
    private readonly Action<string> _log;
    private CudaGraph? _graph;
    private BertBatch _capturedBatch;
    private BertBatch _warmedBatch;
    private bool _warmed;
    private bool _fellBack;

    /// <param name="log">Receives the one line that says why a step runs eagerly under <see cref="CudaGraphMode.Auto"/>.</param>
    public GraphedTrainingStep(BertModelBase model, AdamWOptimizer optimizer, CudaGraphMode mode, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        _model = model;
        _optimizer = optimizer;
        _cuda = model.Backend as CudaBackend;
        _log = log ?? (_ => { });
        Mode = mode;
        if (mode == CudaGraphMode.Off) return;
        string? unsupported = _cuda is null ? $"the backend {model.Backend.Name} is not the CUDA backend"
            : optimizer.Shard is not null ? "the optimizer is sharded over several ranks (its collectives run on the host)"
            : null;
        if (unsupported is null) return;
        if (mode == CudaGraphMode.On) throw new CudaGraphCaptureException($"--cuda-graphs on: {unsupported}");
        FallBack(unsupported);
    }

    public CudaGraphMode Mode { get; }

    /// <summary>"on" once steps replay a graph, "off" when they run op by op as asked, "fallback" when Auto could not
    /// capture (<see cref="FallbackReason"/> says why).</summary>
    public string State => _graph is not null ? "on" : _fellBack ? "fallback" : "off";

    /// <summary>Why Auto runs eagerly; null otherwise.</summary>
    public string? FallbackReason { get; private set; }

    /// <summary>Operations in the captured graph (0 before the first capture).</summary>
    public int GraphNodes => _graph?.Nodes ?? 0;

    /// <summary>Queues step <paramref name="step"/> (0-based; AdamW step step + 1) on <paramref name="batch"/>, already on
    /// the device, at <paramref name="learningRate"/>, with dropout counter <paramref name="dropoutStep"/>. The first
    /// step on a batch runs eagerly (libraries initialize lazily on a first call: cuBLAS picks its kernels and workspace),
    /// the second captures and replays, later ones replay; a batch whose views differ from the captured one's starts over.</summary>
    public void Run(long step, in BertBatch batch, float learningRate, uint dropoutStep)
    {
        _model.Training = true;
        if (Mode == CudaGraphMode.Off || _fellBack)
        {
            _model.DropoutStep = dropoutStep;
            _optimizer.WriteStepScalars((int)(step + 1), learningRate, dropoutStep);
            Body(batch);
            return;
        }
        _optimizer.WriteStepScalars((int)(step + 1), learningRate, dropoutStep);
        if (_graph is null || _capturedBatch != batch)
        {
            _graph?.Dispose();
            _graph = null;
            if (!_warmed || _warmedBatch != batch)
            {
                _model.DropoutStep = dropoutStep;
                Body(batch);
                (_warmed, _warmedBatch) = (true, batch);
                return;
            }
            if (!TryCapture(batch))
            {
                _model.DropoutStep = dropoutStep;
                Body(batch);
                return;
            }
        }
        _graph!.Replay();
    }

    private bool TryCapture(BertBatch batch)
    {
        var cuda = _cuda!;
        // The graph's dropout kernels read the counter from the step scalars; the model's own counter stays 0.
        _model.DropoutStep = 0;
        cuda.DropoutCounter = _optimizer.Scalars.Slice(StepScalars.DropoutStepIndex, 1);
        bool captured;
        string reason;
        CudaGraph? graph;
        try
        {
            captured = cuda.TryCapture(() => Body(batch), out graph, out reason);
        }
        finally
        {
            cuda.DropoutCounter = TensorRef.Null;
        }
        if (captured)
        {
            _graph = graph;
            _capturedBatch = batch;
            return true;
        }
        if (Mode == CudaGraphMode.On) throw new CudaGraphCaptureException($"--cuda-graphs on: {reason}");
        FallBack(reason);
        return false;
    }

    private void FallBack(string reason)
    {
        _fellBack = true;
        FallbackReason = reason;
        _log($"cuda graphs: running steps eagerly: {reason}");
    }

    // The step itself, eager or captured: nothing here reads from or writes to the host.
    private void Body(BertBatch batch)
    {
        _model.ZeroGradients();
        _model.Forward(batch);
        _model.Backward(batch);
        _optimizer.ComputeGradientNorm();
        _optimizer.ApplyDevice();
    }

    public void Dispose()
    {
        _graph?.Dispose();
        _graph = null;
    }
}
