using Bert.Runtime;
using Bert.Runtime.Training;

namespace Bert.Native;

/// <summary>
/// One optimizer step of a fixed batch shape, single process, as `bert bench` times it: gradients zeroed, forward,
/// backward, global gradient norm, clip and AdamW (<see cref="AdamWOptimizer.ApplyDevice"/>), run op by op or captured
/// once as one CUDA graph and replayed (<see cref="StepGraphs{TKey}"/>, keyed by the batch). What changes from step to step
/// lives in device memory, written before the step: the batch (uploaded into the buffers the graph reads) and
/// <see cref="AdamWOptimizer.Scalars"/> (learning rate, bias corrections and the dropout counter, one upload), so a
/// replay of step t computes exactly what an eager step t computes, dropout masks included. The step's metrics stay in
/// <see cref="BertModelBase.Metrics"/> and the norm in <see cref="AdamWOptimizer.GradNormSquared"/>; nothing is read
/// back. Pretraining uses the same graphs per micro-batch and per update (<see cref="TrainingCore"/>).
/// </summary>
public sealed class GraphedTrainingStep : IDisposable
{
    private readonly BertModelBase _model;
    private readonly AdamWOptimizer _optimizer;
    private readonly StepGraphs<BertBatch> _graphs;
    private readonly Action<bool> _body;
    private BertBatch _batch;
    private uint _dropoutStep;

    /// <param name="log">Receives the one line that says why a step runs eagerly under <see cref="CudaGraphMode.Auto"/>.</param>
    /// <exception cref="GraphCaptureException"><see cref="CudaGraphMode.On"/> where the step cannot be captured.</exception>
    public GraphedTrainingStep(BertModelBase model, AdamWOptimizer optimizer, CudaGraphMode mode, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        _model = model;
        _optimizer = optimizer;
        _graphs = new StepGraphs<BertBatch>(model.Backend, mode,
            optimizer.Shard is not null ? "the optimizer is sharded over several ranks (its collectives run on the host)" : null, log);
        _body = Body;
    }

    public CudaGraphMode Mode => _graphs.Mode;

    /// <summary>"on" once steps replay a graph, "off" when they run op by op as asked, "fallback" when Auto could not
    /// capture (<see cref="FallbackReason"/> says why).</summary>
    public string State => _graphs.State;

    /// <summary>Why Auto runs eagerly; null otherwise.</summary>
    public string? FallbackReason => _graphs.FallbackReason;

    /// <summary>Operations in the captured graph (0 before the first capture).</summary>
    public int GraphNodes => _graphs.Nodes;

    /// <summary>Queues step <paramref name="step"/> (0-based; AdamW step step + 1) on <paramref name="batch"/>, already on
    /// the device, at <paramref name="learningRate"/>, with dropout counter <paramref name="dropoutStep"/>. The first
    /// step on a batch runs eagerly, the second captures and replays, later ones replay.</summary>
    public void Run(long step, in BertBatch batch, float learningRate, uint dropoutStep)
    {
        _model.Training = true;
        _optimizer.WriteStepScalars((int)(step + 1), learningRate, dropoutStep);
        (_batch, _dropoutStep) = (batch, dropoutStep);
        _graphs.Run(batch, _body, _optimizer.Scalars.Slice(StepScalars.DropoutStepIndex, 1));
    }

    // The step itself, eager or captured: nothing here reads from or writes to the host.
    private void Body(bool capturing)
    {
        // A captured step's dropout kernels read the counter from the step scalars; the model's own counter stays 0.
        _model.DropoutStep = capturing ? 0 : _dropoutStep;
        _model.ZeroGradients();
        _model.Forward(_batch);
        _model.Backward(_batch);
        _optimizer.ComputeGradientNorm();
        _optimizer.ApplyDevice();
    }

    public void Dispose() => _graphs.Dispose();
}
