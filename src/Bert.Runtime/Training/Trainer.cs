using System.Diagnostics;
using Bert.Runtime.Data;

namespace Bert.Runtime.Training;

/// <summary>What one optimizer step measured. <see cref="Step"/> is the step's 0-based index (as in
/// metrics.jsonl); losses are the batch means (MLM weighted over its predictions).</summary>
public readonly record struct StepReport(
    long Step, string Phase, int SeqLength, double Loss, double MlmLoss, double NspLoss, double MlmAccuracy, double NspAccuracy,
    double LearningRate, double GradNorm, int Sequences, int Tokens, double Seconds);

/// <summary>Loss and accuracies over a held-out set.</summary>
public readonly record struct EvalReport(double Loss, double MlmLoss, double NspLoss, double MlmAccuracy, double NspAccuracy,
    long Sequences, double MlmPredictions);

/// <summary>Training diverged: a loss or gradient is NaN or infinite. Thrown before any weight of
/// the step changed; <see cref="What"/> names the first non-finite tensor.</summary>
public sealed class NonFiniteException(long step, string what)
    : Exception($"step {step}: {what}; training stopped (the last checkpoint is intact)")
{
    /// <summary>0-based index of the step that diverged (as in metrics.jsonl).</summary>
    public long Step { get; } = step;
    public string What { get; } = what;
}

/// <summary>
/// The pretraining loop: per optimizer step, Phase.Accumulation micro-batches of forward (MLM + NSP
/// loss) and backward accumulate into the flat gradient buffer, then global-norm clipping and AdamW
/// with the warmup/decay schedule. State that a resume needs (step, data cursors) is exposed as
/// <see cref="TrainerState"/>; dropout and data order are pure functions of (seed, step), so nothing
/// else is needed to continue bit-exactly.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly BertModelBase _model;
    private int _aboveChance;

    /// <summary>The divergence rule: a loss above this many times the chance level ...</summary>
    public const double DivergenceFactor = 4;
    /// <summary>... for this many optimizer steps in a row stops training (exit 5).</summary>
    public const int DivergenceSteps = 5;
    private readonly IReadOnlyList<Phase> _phases;
    private readonly Dictionary<string, BatchAssembler> _assemblers = new();
    private readonly Dictionary<string, HostBatch> _hosts = new();
    private readonly DeviceBatch _device;
    private readonly float[] _metrics = new float[MetricSlot.Length];
    private readonly float[] _norm = new float[1];
    private readonly ulong _seed;

    /// <param name="datasets">Phase name → its dataset (sequence length and max predictions must match).</param>
    public Trainer(BertModelBase model, IReadOnlyList<Phase> phases, IReadOnlyDictionary<string, PretrainingDataset> datasets,
        LearningRateSchedule schedule, AdamWOptions adam, ulong seed, TrainerState? resume = null)
    {
        _model = model;
        _phases = phases;
        _seed = seed;
        Schedule = schedule;
        foreach (var p in phases)
        {
            if (!datasets.TryGetValue(p.Name, out var src))
                throw new ArgumentException($"no dataset for phase {p.Name} (sequence length {p.SeqLength})", nameof(datasets));
            if (src.SeqLength != p.SeqLength)
                throw new InvalidDataException($"{src.Directory}: dataset sequence length is {src.SeqLength}, phase {p.Name} needs {p.SeqLength}");
            if (src.MaxPredictions != p.MaxPredictions)
                throw new InvalidDataException($"{src.Directory}: dataset max predictions is {src.MaxPredictions}, phase {p.Name} needs {p.MaxPredictions}");
            if (src.VocabSize > model.Config.VocabSize)
                throw new InvalidDataException($"{src.Directory}: dataset vocabulary has {src.VocabSize} tokens, the model only {model.Config.VocabSize}");
            if (p.MicroBatch > model.MaxBatch || p.SeqLength > model.MaxSeq || p.MaxPredictions > model.MaxPredictions)
                throw new ArgumentException($"phase {p.Name} (micro-batch {p.MicroBatch}, S={p.SeqLength}, P={p.MaxPredictions}) exceeds the model's planned maxima " +
                                            $"({model.MaxBatch}, {model.MaxSeq}, {model.MaxPredictions})");
            var c = resume?.Cursors.FirstOrDefault(x => x.Phase == p.Name);
            // Each phase draws its own order (seed mixed with S) so the two datasets shuffle independently.
            _assemblers[p.Name] = new BatchAssembler(src, seed ^ ((ulong)p.SeqLength << 32),
                c is null ? default : new DataCursor(checked((int)c.Epoch), c.Position));
            _hosts[p.Name] = new HostBatch(p.BatchSize, p.SeqLength, p.MaxPredictions);
        }
        if (resume is not null && resume.Seed != seed)
            throw new ArgumentException($"the resumed state was trained with seed {resume.Seed}, this trainer has seed {seed}", nameof(resume));
        Optimizer = new AdamWOptimizer(model, adam);
        Step = resume?.Step ?? 0;
        _device = new DeviceBatch(model.Backend, model.MaxBatch, model.MaxSeq, model.MaxPredictions);
        model.Seed = seed;
    }

    public LearningRateSchedule Schedule { get; }
    public AdamWOptimizer Optimizer { get; }
    public BertModelBase Model => _model;

    /// <summary>Optimizer steps done so far (the next step's 0-based index).</summary>
    public long Step { get; private set; }

    public bool Finished => Step >= Schedule.TotalSteps;

    public Phase CurrentPhase => PhasePlan.At(_phases, Math.Min(Step, Schedule.TotalSteps - 1));

    public IReadOnlyList<Phase> Phases => _phases;

    /// <summary>Called once per optimizer step with the step's 0-based index and the whole batch just
    /// read, before it goes to the device (instrumentation: tests, data audits). Must not keep the batch.</summary>
    public Action<long, HostBatch>? BatchObserver { get; set; }

    /// <summary>Everything besides weights and moments that a resume needs.</summary>
    public TrainerState State => new(Step, _seed,
        _phases.Select(p => new CursorState(p.Name, _assemblers[p.Name].Cursor.Epoch, _assemblers[p.Name].Cursor.Position)).ToArray());

    /// <summary>Runs one optimizer step. Throws <see cref="NonFiniteException"/> before updating any
    /// weight when the loss or the gradient norm is not finite. A step that throws (or whose process
    /// dies) part-way leaves this trainer unusable: the data cursor has moved and the gradients are
    /// partial; continue from the last checkpoint in a new trainer.</summary>
    public StepReport RunStep()
    {
        if (Finished) throw new InvalidOperationException($"training already finished at step {Step}");
        var clock = Stopwatch.StartNew();
        var phase = PhasePlan.At(_phases, Step);
        var host = _hosts[phase.Name];
        int accumulation = phase.Accumulation;

        // The MLM loss is the weighted mean over the whole batch, so the whole batch is read first:
        // its weight total scales every micro-batch's gradient.
        float weightTotal = _assemblers[phase.Name].Next(host);
        BatchObserver?.Invoke(Step, host);
        int tokens = 0;
        for (int i = 0; i < phase.BatchSize * phase.SeqLength; i++) tokens += host.AttentionMask[i];

        _model.Training = true;
        _model.ZeroGradients();
        double mlmLoss = 0, nspLoss = 0, mlmCorrect = 0, mlmCount = 0, nspCorrect = 0, nspCount = 0;
        for (int micro = 0; micro < accumulation; micro++)
        {
            var batch = _device.Upload(host, micro * phase.MicroBatch, phase.MicroBatch, weightTotal, accumulation);
            _model.DropoutStep = (uint)(Step * accumulation + micro);
            _model.Forward(batch);
            _model.Backward(batch);
            _model.ReadMetrics(_metrics);
            mlmLoss += _metrics[MetricSlot.MlmLoss];
            mlmCorrect += _metrics[MetricSlot.MlmCorrect];
            mlmCount += _metrics[MetricSlot.MlmCount];
            nspLoss += _metrics[MetricSlot.NspLoss];
            nspCorrect += _metrics[MetricSlot.NspCorrect];
            nspCount += _metrics[MetricSlot.NspCount];
        }
        double loss = mlmLoss + nspLoss;

        // The norm is read before the update so that a NaN never reaches the weights or the moments.
        Optimizer.ComputeGradientNorm();
        _model.Backend.Download<float>(_norm, Optimizer.GradNormSquared);
        double gradNorm = Math.Sqrt(_norm[0]);
        if (!double.IsFinite(loss))
            throw new NonFiniteException(Step, $"loss is {loss} (MLM {mlmLoss}, NSP {nspLoss}); {FirstNonFiniteTensor()}");
        if (!double.IsFinite(gradNorm))
            throw new NonFiniteException(Step, $"gradient norm is {gradNorm}; {FirstNonFiniteTensor()}");
        // Divergence that stays finite (--lr 1e3 once ended "successfully" with loss 1e17): a loss above
        // DivergenceFactor × the chance level (ln V for the masked LM + ln 2 for NSP, what a model that
        // learned nothing scores) for DivergenceSteps steps in a row stops the run.
        double chance = Math.Log(_model.Config.VocabSize) + Math.Log(2);
        _aboveChance = loss > DivergenceFactor * chance ? _aboveChance + 1 : 0;
        if (_aboveChance >= DivergenceSteps)
            throw new NonFiniteException(Step, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"diverged: loss {loss:G4} has been above {DivergenceFactor} x the chance level ({chance:F2}) for {DivergenceSteps} steps; lower --lr"));

        float lr = (float)Schedule.At(Step);
        Optimizer.Apply((int)(Step + 1), lr);

        var report = new StepReport(Step, phase.Name, phase.SeqLength, loss, mlmLoss, nspLoss,
            mlmCount > 0 ? mlmCorrect / mlmCount : 0, nspCount > 0 ? nspCorrect / nspCount : 0,
            lr, gradNorm, phase.BatchSize, tokens, clock.Elapsed.TotalSeconds);
        Step++;
        return report;
    }

    /// <summary>Names the first tensor holding a NaN or infinity: a weight first (the likeliest cause),
    /// else a gradient, in parameter-table order. Reads both buffers back (only on divergence).</summary>
    public string FirstNonFiniteTensor()
    {
        var host = new float[_model.ParameterTotal];
        _model.Backend.Download<float>(host, _model.Parameters);
        if (FirstNonFinite(host, "weight") is { } weight) return weight;
        _model.Backend.Download<float>(host, _model.Gradients);
        return FirstNonFinite(host, "gradient of")
               ?? "every weight and gradient is finite (an activation overflowed)";
    }

    private string? FirstNonFinite(float[] host, string what)
    {
        foreach (var p in _model.ParameterTable)
        {
            var span = host.AsSpan((int)p.Offset, (int)p.Count);
            for (int i = 0; i < span.Length; i++)
                if (!float.IsFinite(span[i]))
                    return $"first non-finite tensor: {what} {p.Name} {p.ShapeText} is {span[i]} at element {i}";
        }
        return null;
    }

    /// <summary>Held-out loss and accuracies over up to <paramref name="maxSequences"/> instances (in
    /// index order, dropout off). Leaves the gradient buffer untouched.</summary>
    public EvalReport Evaluate(PretrainingDataset heldOut, long maxSequences, int microBatch)
        => Evaluator.Run(_model, heldOut, maxSequences, microBatch, _device);

    public void Dispose()
    {
        _device.Dispose();
        Optimizer.Dispose();
    }
}

/// <summary>The trainer's resumable state besides weights and moments.</summary>
public sealed record TrainerState(long Step, ulong Seed, CursorState[] Cursors);

/// <summary>Where a phase's data cursor stands.</summary>
public sealed record CursorState(string Phase, long Epoch, long Position);

/// <summary>Forward-only evaluation over a dataset.</summary>
public static class Evaluator
{
    /// <summary>Loss and accuracies over the first <paramref name="maxSequences"/> instances of
    /// <paramref name="dataset"/> (in index order, dropout off).</summary>
    public static EvalReport Run(BertModelBase model, PretrainingDataset dataset, long maxSequences, int microBatch,
        DeviceBatch? device = null)
    {
        if (dataset.SeqLength > model.MaxSeq || dataset.MaxPredictions > model.MaxPredictions)
            throw new InvalidDataException($"{dataset.Directory}: S={dataset.SeqLength}, P={dataset.MaxPredictions} exceed the model's planned " +
                                           $"S={model.MaxSeq}, P={model.MaxPredictions}");
        microBatch = Math.Min(microBatch, model.MaxBatch);
        bool ownDevice = device is null;
        device ??= new DeviceBatch(model.Backend, model.MaxBatch, model.MaxSeq, model.MaxPredictions);
        bool wasTraining = model.Training;
        try
        {
            model.Training = false;
            var host = new HostBatch(microBatch, dataset.SeqLength, dataset.MaxPredictions);
            var assembler = new BatchAssembler(dataset, 0);
            var metrics = new float[MetricSlot.Length];
            var indices = new long[microBatch];
            long n = Math.Min(maxSequences, dataset.Count);
            double mlmLossW = 0, mlmCorrect = 0, mlmCount = 0, nspLoss = 0, nspCorrect = 0, nspCount = 0;
            for (long start = 0; start < n; start += microBatch)
            {
                int b = (int)Math.Min(microBatch, n - start);
                for (int r = 0; r < b; r++) indices[r] = start + r;
                float w = assembler.Fill(host, indices.AsSpan(0, b));
                var batch = device.Upload(host, 0, b, w, 1);
                model.Forward(batch);
                model.ReadMetrics(metrics);
                // Per-batch means weighted back into totals.
                mlmLossW += metrics[MetricSlot.MlmLoss] * (w + 1e-5);
                mlmCorrect += metrics[MetricSlot.MlmCorrect];
                mlmCount += metrics[MetricSlot.MlmCount];
                nspLoss += metrics[MetricSlot.NspLoss] * b;
                nspCorrect += metrics[MetricSlot.NspCorrect];
                nspCount += metrics[MetricSlot.NspCount];
            }
            double mlm = mlmCount > 0 ? mlmLossW / mlmCount : 0, nsp = nspCount > 0 ? nspLoss / nspCount : 0;
            return new EvalReport(mlm + nsp, mlm, nsp, mlmCount > 0 ? mlmCorrect / mlmCount : 0,
                nspCount > 0 ? nspCorrect / nspCount : 0, (long)nspCount, mlmCount);
        }
        finally
        {
            model.Training = wasTraining;
            if (ownDevice) device.Dispose();
        }
    }
}
