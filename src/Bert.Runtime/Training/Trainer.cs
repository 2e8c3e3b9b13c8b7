using System.Diagnostics;
using System.IO.Hashing;
using Bert.Runtime.Data;
using Bert.Runtime.Distributed;

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
/// The pretraining loop: per optimizer step, the whole batch of the step's phase is read, then
/// <see cref="TrainingCore"/> runs its Phase.Accumulation micro-batches of forward (MLM + NSP loss) and
/// backward, the non-finite and divergence checks, global-norm clipping and AdamW with the warmup/decay
/// schedule. State that a resume needs (step, data cursors) is exposed as
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
    // The next step's batch, read while the device ran this one (ITrainingTask.WhileDeviceRuns): its step, its rank-local
    // MLM weight total, and its phase's cursor before the read (what State reports until the batch is used).
    private (long Step, float Weight, DataCursor Before)? _prefetched;
    private readonly DeviceBatch _device;
    private readonly ulong _seed;
    private readonly TrainingCore _core;
    private readonly PretrainingStep _task;
    private readonly ICommunicator _comm;

    /// <param name="datasets">Phase name → its dataset (sequence length and max predictions must match).</param>
    /// <param name="overlapGradientReduce">All-reduce each encoder layer's gradients during the backward (see
    /// <see cref="TrainingCore"/>); false: the whole buffer once after it.</param>
    /// <param name="graphs">Run the steps as replayed CUDA graphs (see <see cref="TrainingCore"/>).</param>
    /// <param name="log">Receives the one line that says why --cuda-graphs auto runs eagerly.</param>
    public Trainer(BertModelBase model, IReadOnlyList<Phase> phases, IReadOnlyDictionary<string, PretrainingDataset> datasets,
        LearningRateSchedule schedule, AdamWOptions adam, ulong seed, TrainerState? resume = null, ICommunicator? communicator = null,
        bool shardOptimizer = false, bool overlapGradientReduce = true, CudaGraphMode graphs = CudaGraphMode.Off, Action<string>? log = null)
    {
        _model = model;
        _phases = phases;
        _seed = seed;
        _comm = communicator ?? SingleProcessCommunicator.Instance;
        foreach (var p in phases)
        {
            if (p.Accumulation % _comm.Size != 0)
                throw new ArgumentException($"phase {p.Name}: its {p.Accumulation} micro-batches of {p.MicroBatch} (batch {p.BatchSize}) cannot be split evenly " +
                                            $"over {_comm.Size} ranks; the batch must be a multiple of ranks × micro-batch ({_comm.Size} × {p.MicroBatch})");
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
            if (c is not null && (c.Epoch < 0 || c.Epoch > int.MaxValue || c.Position < 0 || c.Position >= src.Count))
                throw new ResumeStateException($"the saved data cursor of phase {p.Name} (epoch {c.Epoch}, position {c.Position}) is outside the " +
                    $"{src.Count} instances of {src.Directory}: the dataset changed (prepared again?) since the checkpoint; resume with the data it " +
                    "was trained on, or start a new run");
            // Each phase draws its own order (seed mixed with S) so the two datasets shuffle independently.
            _assemblers[p.Name] = new BatchAssembler(src, seed ^ ((ulong)p.SeqLength << 32),
                c is null ? default : new DataCursor(checked((int)c.Epoch), c.Position));
            _hosts[p.Name] = new HostBatch(p.BatchSize / _comm.Size, p.SeqLength, p.MaxPredictions);
        }
        if (resume?.Cursors.FirstOrDefault(c => phases.All(p => p.Name != c.Phase)) is { } unknown)
            throw new ResumeStateException($"the checkpoint's trainer state has a data cursor for phase {unknown.Phase}, which this run does not have " +
                $"({string.Join(", ", phases.Select(p => p.Name))}); resume with the same --seq/--seq-long");
        if (resume is not null && resume.Seed != seed)
            throw new ResumeStateException($"the checkpoint's trainer state was trained with seed {resume.Seed}, this run has seed {seed}; " +
                "resume with the same --seed (dropout and data order derive from it)");
        _core = new TrainingCore(model, adam, schedule, _comm, shardOptimizer, overlapGradientReduce, graphs, log);
        Step = resume?.Step ?? 0;
        _device = new DeviceBatch(model.Backend, model.MaxBatch, model.MaxSeq, model.MaxPredictions);
        _task = new PretrainingStep(this);
        model.Seed = seed;
    }

    public LearningRateSchedule Schedule => _core.Schedule;
    public AdamWOptimizer Optimizer => _core.Optimizer;
    public BertModelBase Model => _model;

    /// <summary>Optimizer steps done so far (the next step's 0-based index).</summary>
    public long Step { get; private set; }

    public bool Finished => Step >= Schedule.TotalSteps;

    public Phase CurrentPhase => PhasePlan.At(_phases, Math.Min(Step, Schedule.TotalSteps - 1));

    public IReadOnlyList<Phase> Phases => _phases;

    /// <summary>The steps' CUDA graphs: "on", "off" or "fallback" (see <see cref="TrainingCore.GraphState"/>).</summary>
    public string GraphState => _core.GraphState;

    /// <summary>Graphs captured so far (one per phase's micro-batch shape and one per update).</summary>
    public int GraphCaptures => _core.GraphCaptures;

    /// <summary>The ranks training together (a world of one by default).</summary>
    public ICommunicator Communicator => _comm;

    /// <summary>After the last <see cref="RunStep"/>: some rank asked to stop (its stopRequested argument), so every
    /// rank stops after the same step.</summary>
    public bool StopRequestedByAnyRank { get; private set; }

    /// <summary>Called once per optimizer step with the step's 0-based index and the batch just read, before it
    /// goes to the device (instrumentation: tests, data audits): the whole batch, or with several ranks this rank's
    /// slice of it. Must not keep the batch.</summary>
    public Action<long, HostBatch>? BatchObserver { get; set; }

    /// <summary>The batch of the step after the last one read (or the running one) was already read, while the device ran
    /// that step; <see cref="State"/> still points at it.</summary>
    public bool NextBatchReady => _prefetched is not null;

    /// <summary>Everything besides weights and moments that a resume needs.</summary>
    public TrainerState State => new(Step, _seed,
        _phases.Select(p => new CursorState(p.Name, Cursor(p.Name).Epoch, Cursor(p.Name).Position)).ToArray());

    // A phase's data cursor as the steps done so far left it: a batch read ahead for the next step does not count yet.
    private DataCursor Cursor(string phase) =>
        _prefetched is { } p && PhasePlan.At(_phases, p.Step).Name == phase ? p.Before : _assemblers[phase].Cursor;

    // The next step's batch into its phase's host buffer, while the device runs this step (every micro-batch of this
    // step was uploaded, so a shared buffer is free). The same read RunStep would do, only earlier.
    private void ReadAhead()
    {
        long next = Step + 1;
        if (next >= Schedule.TotalSteps) return;
        var phase = PhasePlan.At(_phases, next);
        var before = _assemblers[phase.Name].Cursor;
        _prefetched = (next, ReadBatch(phase), before);
    }

    // This rank's rows of the phase's next global batch into its host buffer; the rank-local MLM weight total.
    private float ReadBatch(Phase phase)
    {
        int rows = phase.BatchSize / _comm.Size;
        return _assemblers[phase.Name].Next(_hosts[phase.Name], phase.BatchSize, _comm.Rank * rows, rows);
    }

    /// <summary>Runs one optimizer step. Throws <see cref="NonFiniteException"/> before updating any
    /// weight when the loss or the gradient norm is not finite. A step that throws (or whose process
    /// dies) part-way leaves this trainer unusable: the data cursor has moved and the gradients are
    /// partial; continue from the last checkpoint in a new trainer.</summary>
    /// <param name="stopRequested">This rank was asked to stop (a signal); with several ranks the request is shared
    /// in the step's metrics reduction and <see cref="StopRequestedByAnyRank"/> tells every rank to stop after it.</param>
    public StepReport RunStep(bool stopRequested = false)
    {
        if (Finished) throw new InvalidOperationException($"training already finished at step {Step}");
        var clock = Stopwatch.StartNew();
        var phase = PhasePlan.At(_phases, Step);
        var host = _hosts[phase.Name];
        int accumulation = phase.Accumulation, ranks = _comm.Size;
        int rows = phase.BatchSize / ranks, micros = accumulation / ranks;

        // The MLM loss is the weighted mean over the whole batch, so this rank's rows are read first (usually while the
        // device ran the previous step) and the weight total over all ranks' rows scales every micro-batch's gradient.
        float weightTotal = _prefetched is { } p && p.Step == Step ? p.Weight : ReadBatch(phase);
        _prefetched = null;
        if (ranks > 1)
        {
            Span<double> total = [weightTotal];
            _comm.AllReduceSum(total, new Collective("the MLM weight total", Step));
            weightTotal = (float)total[0]; // a sum of integer counts: exact
        }
        BatchObserver?.Invoke(Step, host);
        int tokens = 0;
        for (int i = 0; i < rows * phase.SeqLength; i++) tokens += host.AttentionMask[i];

        _task.Begin(phase, host, weightTotal, tokens, stopRequested);
        var (lr, gradNorm) = _core.Step(Step, _task, micros, accumulation, _comm.Rank * micros);

        var t = _task;
        StopRequestedByAnyRank = t.Stop;
        var report = new StepReport(Step, phase.Name, phase.SeqLength, t.Loss, t.MlmLoss, t.NspLoss,
            t.MlmCount > 0 ? t.MlmCorrect / t.MlmCount : 0, t.NspCount > 0 ? t.NspCorrect / t.NspCount : 0,
            lr, gradNorm, phase.BatchSize, (int)t.Tokens, clock.Elapsed.TotalSeconds);
        Step++;
        return report;
    }

    /// <summary>Data-parallel start: every rank takes rank 0's weights and AdamW moments (initialized or restored
    /// there), then <see cref="CheckReplicas"/>. A no-op in a world of one. With sharded moments each rank keeps its
    /// own shard (zero, or restored from the checkpoint every rank read).</summary>
    public void SynchronizeReplicas()
    {
        if (_comm.Size == 1) return;
        _comm.Broadcast(_model.Parameters.View, 0, "the broadcast of rank 0's weights");
        _model.Backend.WrittenExternally(_model.Parameters.View);
        if (Optimizer.Shard is null)
        {
            _comm.Broadcast(Optimizer.M.View, 0, "the broadcast of rank 0's AdamW first moments");
            _comm.Broadcast(Optimizer.V.View, 0, "the broadcast of rank 0's AdamW second moments");
        }
        CheckReplicas("after the broadcast from rank 0");
    }

    /// <summary>Data-parallel check: hashes this rank's weights, AdamW moments and data cursors (XxHash64 of their bytes)
    /// and compares the hashes of all ranks; every rank must hold bit-identical copies. Sharded moments are disjoint
    /// (each rank holds its own), so only the weights, step and cursors are compared then.</summary>
    /// <exception cref="ReplicaMismatchException">Some rank's copy differs from rank 0's.</exception>
    public void CheckReplicas(string when)
    {
        if (_comm.Size == 1) return;
        ulong mine = ReplicaHash();
        var differing = _comm.RanksDifferingFromRankZero(mine, $"the replica check {when}");
        if (differing.Count > 0)
            throw new ReplicaMismatchException($"step {Step}: the weights, AdamW moments or data cursors of rank(s) {string.Join(", ", differing)} " +
                $"differ from rank 0's {when}; the ranks no longer train one model");
    }

    /// <summary>XxHash64 of the weights, the AdamW moments (unless sharded), the step and the data cursors on this rank.</summary>
    public ulong ReplicaHash()
    {
        var hash = new XxHash64();
        var host = new float[_model.ParameterTotal];
        foreach (var buffer in Optimizer.Shard is null ? new[] { _model.Parameters, Optimizer.M, Optimizer.V } : new[] { _model.Parameters })
        {
            _model.Backend.Download<float>(host, buffer.View);
            hash.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(host.AsSpan()));
        }
        Span<long> state = stackalloc long[1 + 2 * _phases.Count];
        state[0] = Step;
        for (int i = 0; i < _phases.Count; i++)
        {
            var c = Cursor(_phases[i].Name);
            state[1 + 2 * i] = c.Epoch;
            state[2 + 2 * i] = c.Position;
        }
        hash.Append(System.Runtime.InteropServices.MemoryMarshal.AsBytes(state));
        return hash.GetCurrentHashAsUInt64();
    }

    /// <summary>Names the first tensor holding a NaN or infinity (see <see cref="TrainingCore.FirstNonFiniteTensor"/>).</summary>
    public string FirstNonFiniteTensor() => _core.FirstNonFiniteTensor();

    /// <summary>Held-out loss and accuracies over up to <paramref name="maxSequences"/> instances (in
    /// index order, dropout off). Leaves the gradient buffer untouched.</summary>
    public EvalReport Evaluate(PretrainingDataset heldOut, long maxSequences, int microBatch)
        => Evaluator.Run(_model, heldOut, maxSequences, microBatch, _device);

    public void Dispose()
    {
        _device.Dispose();
        _core.Dispose();
    }

    /// <summary>One pretraining step for the core: the phase's batch, read whole, in micro-batches; MLM + NSP
    /// metrics; the divergence rule.</summary>
    private sealed class PretrainingStep(Trainer trainer) : ITrainingTask
    {
        private Phase _phase = null!;
        private HostBatch _host = null!;
        private float _weightTotal;

        public double MlmLoss, NspLoss, MlmCorrect, MlmCount, NspCorrect, NspCount, Tokens;
        public bool Stop;

        public void Begin(Phase phase, HostBatch host, float weightTotal, int tokens, bool stop)
        {
            _phase = phase;
            _host = host;
            _weightTotal = weightTotal;
            MlmLoss = NspLoss = MlmCorrect = MlmCount = NspCorrect = NspCount = 0;
            Tokens = tokens;
            Stop = stop;
        }

        // Micro-batch m of this rank: rows [m·micro, (m+1)·micro) of its slice; each is scaled by the global
        // micro-batch count, so the sum over all ranks is the batch mean.
        public BertBatch MicroBatch(int micro) =>
            trainer._device.Upload(_host, micro * _phase.MicroBatch, _phase.MicroBatch, _weightTotal, _phase.Accumulation);

        public void Reduce(ICommunicator communicator, long step)
        {
            Span<double> v = [MlmLoss, NspLoss, MlmCorrect, MlmCount, NspCorrect, NspCount, Tokens, Stop ? 1 : 0];
            communicator.AllReduceSum(v, new Collective("the metrics reduction", step));
            (MlmLoss, NspLoss, MlmCorrect, MlmCount, NspCorrect, NspCount, Tokens) = (v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
            Stop = v[7] > 0;
        }

        public void Accumulate(ReadOnlySpan<float> metrics)
        {
            MlmLoss += metrics[MetricSlot.MlmLoss];
            MlmCorrect += metrics[MetricSlot.MlmCorrect];
            MlmCount += metrics[MetricSlot.MlmCount];
            NspLoss += metrics[MetricSlot.NspLoss];
            NspCorrect += metrics[MetricSlot.NspCorrect];
            NspCount += metrics[MetricSlot.NspCount];
        }

        public void WhileDeviceRuns() => trainer.ReadAhead();

        public double Loss => MlmLoss + NspLoss;

        public string DescribeLoss() => $"loss is {Loss} (MLM {MlmLoss}, NSP {NspLoss})";

        // Divergence that stays finite (--lr 1e3 once ended "successfully" with loss 1e17): a loss above
        // DivergenceFactor × the chance level (ln V for the masked LM + ln 2 for NSP, what a model that
        // learned nothing scores) for DivergenceSteps steps in a row stops the run.
        public string? Diverged(double loss)
        {
            double chance = Math.Log(trainer._model.Config.VocabSize) + Math.Log(2);
            trainer._aboveChance = loss > DivergenceFactor * chance ? trainer._aboveChance + 1 : 0;
            return trainer._aboveChance >= DivergenceSteps
                ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"diverged: loss {loss:G4} has been above {DivergenceFactor} x the chance level ({chance:F2}) for {DivergenceSteps} steps; lower --lr")
                : null;
        }
    }
}

/// <summary>Data-parallel ranks hold different weights, moments or data cursors (a bug, or ranks started differently).</summary>
public sealed class ReplicaMismatchException(string message) : Exception(message);

/// <summary>A checkpoint's trainer state that cannot continue this run (another seed, a data cursor outside the
/// dataset); the message says why and what to do. The CLI reports it as bad input (exit 3).</summary>
public sealed class ResumeStateException(string message) : Exception(message);

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
