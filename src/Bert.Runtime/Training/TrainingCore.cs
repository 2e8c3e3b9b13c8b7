using Bert.Runtime.Distributed;

namespace Bert.Runtime.Training;

/// <summary>
/// What a task (pretraining, fine-tuning) supplies to one optimizer step of <see cref="TrainingCore"/>: its
/// micro-batches, already on the device and scaled so that their gradients sum to the batch mean, and the
/// reading of the metrics each forward pass leaves.
/// </summary>
public interface ITrainingTask
{
    /// <summary>Micro-batch <paramref name="micro"/> of the current step, on the device.</summary>
    BertBatch MicroBatch(int micro);

    /// <summary>Adds the metrics of the micro-batch just run (a host copy of <see cref="BertModelBase.Metrics"/>).</summary>
    void Accumulate(ReadOnlySpan<float> metrics);

    /// <summary>The step's loss: the sum over its micro-batches of their scaled losses.</summary>
    double Loss { get; }

    /// <summary>The loss and its parts, for the message of a non-finite loss.</summary>
    string DescribeLoss();

    /// <summary>Called once per step after all of its device work is queued (every micro-batch uploaded, the update
    /// launched) and before the step's one wait for the device: host work for the next step done here (reading its
    /// batch) overlaps the device's work on this one. Must not touch the device.</summary>
    void WhileDeviceRuns() { }

    /// <summary>A reason to stop although the loss is finite (a diverging run), or null. Called once per step,
    /// after the loss and the gradient norm were found finite.</summary>
    string? Diverged(double loss) => null;

    /// <summary>Data-parallel training: replaces this rank's metrics of the step by their sums over all ranks
    /// (every rank then holds the same values). Called once per step, after the gradients were all-reduced and
    /// before <see cref="Loss"/> is read. A task that cannot run on several ranks keeps the default.</summary>
    void Reduce(ICommunicator communicator, long step)
    {
        if (communicator.Size > 1)
            throw new NotSupportedException($"{GetType().Name} does not support data-parallel training ({communicator.Size} ranks)");
    }
}

/// <summary>
/// The optimizer step every task shares: gradients zeroed, the task's micro-batches forward and backward
/// (dropout on, a fresh dropout counter per forward pass), the global gradient norm, then global-norm clipping and
/// AdamW at the schedule's learning rate with the step's scalars in device memory
/// (<see cref="AdamWOptimizer.ApplyDevice"/>), so the step queues its work without waiting for the device once. The
/// metrics of every micro-batch and the norm are read back together, once, after the update, and checked then: the
/// device skips the update when the norm is not finite, so a NaN or infinity in the gradients never reaches the
/// weights or the moments (<see cref="NonFiniteException"/> names the first non-finite tensor). A loss that is not
/// finite while the gradient norm is (not seen in practice: a non-finite loss comes from non-finite logits, whose
/// gradient is non-finite too), or a finite divergence (<see cref="ITrainingTask.Diverged"/>), is reported after that
/// step's update. Pretraining (<see cref="Trainer"/>) and fine-tuning (<see cref="FineTuning.FineTuner"/>) differ
/// only in their <see cref="ITrainingTask"/>.
/// </summary>
public sealed class TrainingCore : IDisposable
{
    // The step's read-back, F32[micro·MetricSlot.Length + 1]: each micro-batch's metrics (copied on the device after its
    // backward), then the squared gradient norm; grown only when a step has more micro-batches than any before.
    private DeviceBuffer? _readBack;
    private float[] _readBackHost = [];

    // CUDA graphs (--cuda-graphs): one per micro-batch's views (part -1: forward + backward) and one per micro-batch
    // count (part = the count: norm, clip and AdamW); null when off. The captured work reads the current micro-batch and
    // dropout counter from _micro and _dropout (delegates made once: a step allocates nothing).
    private readonly StepGraphs<(BertBatch Batch, int Part)>? _graphs;
    private readonly Action<bool>? _microBody, _updateBody;
    private BertBatch _micro;
    private uint _dropout;

    /// <param name="shardOptimizer">With several ranks, shard the AdamW moments over them (ZeRO stage 1, see
    /// <see cref="AdamWOptimizer"/>); the step computes the same update either way, up to the order of float sums.</param>
    /// <param name="overlapGradientReduce">With a real communicator and unsharded moments, all-reduce each encoder
    /// layer's gradients during the step's last backward (<see cref="GradientBuckets"/>) instead of the whole buffer
    /// after it; the sums are the same.</param>
    /// <param name="graphs">Run each micro-batch's forward + backward, and the update, as replayed CUDA graphs
    /// (<see cref="StepGraphs{TKey}"/>): the same bits as op by op, fewer launches. One process only: with several ranks
    /// Auto runs eagerly (the collectives run between the pieces) and On is refused.</param>
    /// <param name="log">Receives the one line that says why Auto runs eagerly.</param>
    /// <exception cref="GraphCaptureException"><paramref name="graphs"/> is On where the step cannot be captured.</exception>
    public TrainingCore(BertModelBase model, AdamWOptions adam, LearningRateSchedule schedule, ICommunicator? communicator = null,
        bool shardOptimizer = false, bool overlapGradientReduce = true, CudaGraphMode graphs = CudaGraphMode.Off,
        Action<string>? log = null)
    {
        Communicator = communicator ?? SingleProcessCommunicator.Instance;
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(adam);
        ArgumentNullException.ThrowIfNull(schedule);
        Model = model;
        Schedule = schedule;
        Optimizer = new AdamWOptimizer(model, adam, shardOptimizer ? Communicator : null);
        if (overlapGradientReduce && Communicator is not SingleProcessCommunicator && Optimizer.Shard is null)
            Buckets = GradientBuckets.TryCreate(model, Communicator);
        if (graphs != CudaGraphMode.Off)
        {
            _graphs = new StepGraphs<(BertBatch, int)>(model.Backend, graphs,
                Communicator is SingleProcessCommunicator ? null
                    : $"data-parallel training over {Communicator.Size} rank(s) runs its collectives between the step's pieces", log);
            _microBody = MicroBody;
            _updateBody = UpdateBody;
        }
    }

    /// <summary>The CUDA graphs of the step: "on" once pieces replay, "off", or "fallback" (see
    /// <see cref="GraphFallbackReason"/>).</summary>
    public string GraphState => _graphs?.State ?? "off";

    /// <summary>Why --cuda-graphs auto runs eagerly; null otherwise.</summary>
    public string? GraphFallbackReason => _graphs?.FallbackReason;

    /// <summary>Graphs captured so far.</summary>
    public int GraphCaptures => _graphs?.Captures ?? 0;

    /// <summary>The per-layer gradient all-reduce overlapped with the backward; null: one all-reduce after it (a world
    /// of one, sharded moments, or overlap turned off).</summary>
    public GradientBuckets? Buckets { get; }

    public BertModelBase Model { get; }
    public AdamWOptimizer Optimizer { get; }
    public LearningRateSchedule Schedule { get; }

    /// <summary>The ranks this core's gradients are summed over (a world of one by default).</summary>
    public ICommunicator Communicator { get; }

    /// <summary>Runs optimizer step <paramref name="step"/> (0-based) over <paramref name="microSteps"/> micro-batches of
    /// <paramref name="task"/>; forward pass m of the step draws dropout counter step · <paramref name="dropoutStride"/> +
    /// <paramref name="dropoutOffset"/> + m. With several ranks, each runs its own micro-batches (rank r's offset is the
    /// index of its first micro-batch in the global batch, so the dropout streams are those of one process accumulating
    /// the whole batch), then the gradients are summed over the ranks in F32 once, the task's metrics likewise, and every
    /// rank takes the same non-finite, divergence, clipping and update decisions from the same numbers.</summary>
    /// <returns>The learning rate applied and the gradient norm before clipping.</returns>
    /// <exception cref="NonFiniteException">The loss or the gradient norm is not finite, or the task reports divergence.
    /// With a non-finite gradient norm no weight was updated; with a non-finite loss but a finite norm, or a divergence,
    /// the step's update was applied (see the class remarks).</exception>
    public (double LearningRate, double GradNorm) Step(long step, ITrainingTask task, int microSteps, int dropoutStride, int dropoutOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (microSteps < 1 || dropoutOffset < 0 || dropoutOffset + microSteps > dropoutStride)
            throw new ArgumentOutOfRangeException(nameof(microSteps), microSteps,
                $"micro-batches [{dropoutOffset}, {dropoutOffset + microSteps}) of a step must lie in [0, {dropoutStride})");
        const int slot = MetricSlot.Length;
        var backend = Model.Backend;
        var readBack = ReadBack(microSteps);
        float lr = (float)Schedule.At(step);
        Model.Training = true;
        Model.ZeroGradients();
        for (int m = 0; m < microSteps; m++)
        {
            var batch = task.MicroBatch(m);
            uint dropout = (uint)(step * dropoutStride + dropoutOffset + m);
            if (_graphs is { Eager: false } graphs)
            {
                // The scalars carry this pass's dropout counter (the update reads the same buffer's other entries).
                Optimizer.WriteStepScalars((int)(step + 1), lr, dropout);
                (_micro, _dropout) = (batch, dropout);
                graphs.Run((GraphKey(batch), -1), _microBody!, DropoutCounter);
            }
            else
            {
                Model.DropoutStep = dropout;
                Model.Forward(batch);
                if (m == microSteps - 1) Buckets?.Arm(step);
                try { Model.Backward(batch); }
                catch { Buckets?.Disarm(); throw; }
            }
            backend.Copy(readBack.Slice(m * slot, slot), Model.Metrics);
        }

        // Any real communicator reduces, a world of one too (BERT_FORCE_NCCL=1 checks the NCCL path on one GPU).
        bool reduces = Communicator is not SingleProcessCommunicator;
        if (Buckets is not null) Buckets.Finish();
        else if (reduces) Optimizer.ReduceGradients(Communicator, step);
        if (_graphs is { Eager: false } g)
        {
            // Unsharded and one process (else the graphs fell back): the norm and the update take no collective.
            g.Run((default, microSteps), _updateBody!, DropoutCounter);
        }
        else
        {
            Optimizer.ComputeGradientNorm(step);
            Optimizer.WriteStepScalars((int)(step + 1), lr);
            Optimizer.ApplyDevice(step);
        }
        backend.Copy(readBack.Slice(microSteps * slot, 1), Optimizer.GradNormSquared);
        task.WhileDeviceRuns();

        var host = _readBackHost.AsSpan(0, microSteps * slot + 1);
        backend.Download(host, readBack.Slice(0, host.Length));
        for (int m = 0; m < microSteps; m++) task.Accumulate(host.Slice(m * slot, slot));
        if (reduces) task.Reduce(Communicator, step);
        double gradNorm = Math.Sqrt(host[microSteps * slot]);
        double loss = task.Loss;
        if (!double.IsFinite(loss))
            throw new NonFiniteException(step, $"{task.DescribeLoss()}; {FirstNonFiniteTensor()}");
        if (!double.IsFinite(gradNorm))
            throw new NonFiniteException(step, $"gradient norm is {gradNorm}; {FirstNonFiniteTensor()}; no weight was updated");
        if (task.Diverged(loss) is { } reason) throw new NonFiniteException(step, reason);
        return (lr, gradNorm);
    }

    private TensorRef DropoutCounter => Optimizer.Scalars.Slice(StepScalars.DropoutStepIndex, 1);

    // A micro-batch's graph is keyed by its views; its MLM gradient scale is read on the device when it has one there,
    // so the host copy of the scale (which changes every step) is left out of the key.
    private static BertBatch GraphKey(in BertBatch batch) =>
        batch.MlmGradScaleOnDevice.IsNull ? batch : batch with { MlmGradScale = 0f };

    // Forward + backward of the current micro-batch; captured, its dropout kernels read the counter from the scalars.
    private void MicroBody(bool capturing)
    {
        Model.DropoutStep = capturing ? 0 : _dropout;
        Model.Forward(_micro);
        Model.Backward(_micro);
    }

    // The global norm, clip and AdamW with the scalars the last micro-batch wrote (learning rate, bias corrections).
    private void UpdateBody(bool capturing)
    {
        Optimizer.ComputeGradientNorm();
        Optimizer.ApplyDevice();
    }

    private TensorRef ReadBack(int microSteps)
    {
        long needed = (long)microSteps * MetricSlot.Length + 1;
        if (_readBack is null || _readBack.View.Length < needed)
        {
            _readBack?.Dispose();
            _readBack = Model.Backend.Allocate(needed, DType.F32, "step-read-back");
            _readBackHost = new float[needed];
        }
        return _readBack.View;
    }

    /// <summary>Names the first tensor holding a NaN or infinity: a weight first (the likeliest cause),
    /// else a gradient, in parameter-table order. Reads both buffers back (only on divergence).</summary>
    public string FirstNonFiniteTensor()
    {
        var host = new float[Model.ParameterTotal];
        Model.Backend.Download<float>(host, Model.Parameters);
        if (FirstNonFinite(host, "weight") is { } weight) return weight;
        Model.Backend.Download<float>(host, Model.Gradients);
        return FirstNonFinite(host, "gradient of")
               ?? "every weight and gradient is finite (an activation overflowed)";
    }

    private string? FirstNonFinite(float[] host, string what)
    {
        foreach (var p in Model.ParameterTable)
        {
            var span = host.AsSpan((int)p.Offset, (int)p.Count);
            for (int i = 0; i < span.Length; i++)
                if (!float.IsFinite(span[i]))
                    return $"first non-finite tensor: {what} {p.Name} {p.ShapeText} is {span[i]} at element {i}";
        }
        return null;
    }

    public void Dispose()
    {
        _graphs?.Dispose();
        _readBack?.Dispose();
        Optimizer.Dispose();
    }
}
