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
/// (dropout on, a fresh dropout counter per forward pass), the global gradient norm read back and checked
/// with the loss before the update, so a NaN or infinity never reaches the weights or the moments
/// (<see cref="NonFiniteException"/> names the first non-finite tensor), then global-norm clipping and AdamW
/// at the schedule's learning rate. Pretraining (<see cref="Trainer"/>) and fine-tuning
/// (<see cref="FineTuning.FineTuner"/>) differ only in their <see cref="ITrainingTask"/>.
/// </summary>
public sealed class TrainingCore : IDisposable
{
    private readonly float[] _metrics = new float[MetricSlot.Length];
    private readonly float[] _norm = new float[1];

    /// <param name="shardOptimizer">With several ranks, shard the AdamW moments over them (ZeRO stage 1, see
    /// <see cref="AdamWOptimizer"/>); the step computes the same update either way, up to the order of float sums.</param>
    public TrainingCore(BertModelBase model, AdamWOptions adam, LearningRateSchedule schedule, ICommunicator? communicator = null,
        bool shardOptimizer = false)
    {
        Communicator = communicator ?? SingleProcessCommunicator.Instance;
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(adam);
        ArgumentNullException.ThrowIfNull(schedule);
        Model = model;
        Schedule = schedule;
        Optimizer = new AdamWOptimizer(model, adam, shardOptimizer ? Communicator : null);
    }

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
    /// <exception cref="NonFiniteException">The loss or the gradient norm is not finite, or the task reports divergence;
    /// no weight was updated.</exception>
    public (double LearningRate, double GradNorm) Step(long step, ITrainingTask task, int microSteps, int dropoutStride, int dropoutOffset = 0)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (microSteps < 1 || dropoutOffset < 0 || dropoutOffset + microSteps > dropoutStride)
            throw new ArgumentOutOfRangeException(nameof(microSteps), microSteps,
                $"micro-batches [{dropoutOffset}, {dropoutOffset + microSteps}) of a step must lie in [0, {dropoutStride})");
        Model.Training = true;
        Model.ZeroGradients();
        for (int m = 0; m < microSteps; m++)
        {
            var batch = task.MicroBatch(m);
            Model.DropoutStep = (uint)(step * dropoutStride + dropoutOffset + m);
            Model.Forward(batch);
            Model.Backward(batch);
            Model.ReadMetrics(_metrics);
            task.Accumulate(_metrics);
        }

        // Any real communicator reduces, a world of one too (BERT_FORCE_NCCL=1 checks the NCCL path on one GPU).
        if (Communicator is not SingleProcessCommunicator)
        {
            Optimizer.ReduceGradients(Communicator, step);
            task.Reduce(Communicator, step);
        }

        Optimizer.ComputeGradientNorm(step);
        Model.Backend.Download<float>(_norm, Optimizer.GradNormSquared);
        double gradNorm = Math.Sqrt(_norm[0]);
        double loss = task.Loss;
        if (!double.IsFinite(loss))
            throw new NonFiniteException(step, $"{task.DescribeLoss()}; {FirstNonFiniteTensor()}");
        if (!double.IsFinite(gradNorm))
            throw new NonFiniteException(step, $"gradient norm is {gradNorm}; {FirstNonFiniteTensor()}; no weight was updated");
        if (task.Diverged(loss) is { } reason) throw new NonFiniteException(step, reason);

        float lr = (float)Schedule.At(step);
        Optimizer.Apply((int)(step + 1), lr);
        return (lr, gradNorm);
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

    public void Dispose() => Optimizer.Dispose();
}
