using System.Diagnostics;
using Bert.Runtime.Data;
using Bert.Runtime.Training;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// Fine-tuning hyper-parameters. Defaults follow the BERT paper's fine-tuning recipe (batch 32,
/// 3 epochs, AdamW with weight decay 0.01, 10% linear warmup then linear decay, gradients clipped to
/// norm 1) with the learning rate at the top of its range, 5e-5.
/// </summary>
public sealed record FineTuningOptions
{
    public int Epochs { get; init; } = 3;
    /// <summary>Rows per optimizer step.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Rows per forward/backward (gradients accumulate to <see cref="BatchSize"/>); 0 = BatchSize.</summary>
    public int MicroBatch { get; init; }
    public double LearningRate { get; init; } = 5e-5;
    /// <summary>Fraction of all steps spent warming the learning rate up from 0.</summary>
    public double WarmupFraction { get; init; } = 0.1;
    public AdamWOptions Adam { get; init; } = new();
    /// <summary>Seed of the data order and dropout.</summary>
    public ulong Seed { get; init; } = 42;

    public int EffectiveMicroBatch => MicroBatch > 0 ? Math.Min(MicroBatch, BatchSize) : BatchSize;

    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "epochs must be positive");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "batch size must be positive");
        if (MicroBatch < 0) throw new ArgumentOutOfRangeException(nameof(MicroBatch), MicroBatch, "micro-batch must be non-negative");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "learning rate must be positive");
        if (!(WarmupFraction >= 0 && WarmupFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(WarmupFraction), WarmupFraction, "warmup fraction must be in [0, 1]");
    }
}

/// <summary>What one fine-tuning step measured. Accuracy: of the classes (classification), of the
/// labelled words (tokens), of start and end positions (span).</summary>
public readonly record struct FineTuningStepReport(long Step, int Epoch, double Loss, double Accuracy, double LearningRate,
    double GradNorm, int Rows, double Seconds);

/// <summary>
/// The fine-tuning loop: epochs over a freshly shuffled order of the training rows (drawn from
/// (seed, epoch)), optimizer steps of <see cref="FineTuningOptions.BatchSize"/> rows (the last step of an
/// epoch takes what is left) split into micro-batches whose gradients accumulate, then, in the
/// <see cref="TrainingCore"/> pretraining shares, the non-finite checks, global-norm clipping and AdamW over
/// the warmup/decay schedule. Each batch is padded only to its longest row.
/// </summary>
public sealed class FineTuner : IDisposable
{
    private readonly BertModelBase _model;
    private readonly Features _train;
    private readonly FineTuningOptions _options;
    private readonly FineTuningBatch _batch;
    private readonly ShuffledOrder _order;
    private readonly TrainingCore _core;
    private readonly FineTuningStep _task;
    private readonly int[] _rows;
    private int _position;

    public FineTuner(BertModelBase model, Features train, FineTuningOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (train.Count == 0) throw new ArgumentException("no training rows", nameof(train));
        if (train.Stride > model.MaxSeq)
            throw new ArgumentException($"rows of {train.Stride} tokens exceed the model's planned {model.MaxSeq}", nameof(train));
        if (options.EffectiveMicroBatch > model.MaxBatch)
            throw new ArgumentException($"micro-batch {options.EffectiveMicroBatch} exceeds the model's planned {model.MaxBatch}", nameof(options));
        _model = model;
        _train = train;
        _options = options;
        StepsPerEpoch = (train.Count + options.BatchSize - 1) / options.BatchSize;
        TotalSteps = StepsPerEpoch * options.Epochs;
        _core = new TrainingCore(model, options.Adam,
            LearningRateSchedule.Create(options.LearningRate, (long)Math.Round(TotalSteps * options.WarmupFraction), TotalSteps));
        _batch = new FineTuningBatch(model.Backend, model.MaxBatch, Math.Min(model.MaxSeq, train.Stride));
        _order = new ShuffledOrder(train.Count, options.Seed);
        _rows = new int[options.BatchSize];
        _task = new FineTuningStep(this);
        model.Seed = options.Seed;
    }

    public BertModelBase Model => _model;
    public AdamWOptimizer Optimizer => _core.Optimizer;
    public LearningRateSchedule Schedule => _core.Schedule;
    public long StepsPerEpoch { get; }
    public long TotalSteps { get; }
    /// <summary>Optimizer steps done.</summary>
    public long Step { get; private set; }
    /// <summary>The epoch the next step belongs to (0-based).</summary>
    public int Epoch { get; private set; }
    public bool Finished => Step >= TotalSteps;
    /// <summary>Whether the last step ended an epoch (evaluate now).</summary>
    public bool EpochEnded => Step > 0 && Step % StepsPerEpoch == 0;

    /// <summary>Runs one optimizer step.</summary>
    /// <exception cref="NonFiniteException">The loss or the gradient norm is not finite; no weight was updated.</exception>
    public FineTuningStepReport RunStep()
    {
        if (Finished) throw new InvalidOperationException($"fine-tuning already finished at step {Step}");
        var clock = Stopwatch.StartNew();
        int epoch = Epoch;
        int b = Math.Min(_options.BatchSize, _train.Count - _position);
        for (int i = 0; i < b; i++) _rows[i] = (int)_order[epoch, _position + i];
        var rows = _rows.AsSpan(0, b);

        float labelGradScale = 0f;
        if (_train.Task == FineTuningTask.TokenClassification)
        {
            double weights = 0;
            foreach (int r in rows)
                for (int t = 0; t < _train.Lengths[r]; t++) weights += _train.LabelWeights![r * _train.Stride + t];
            labelGradScale = (float)(1.0 / (weights + 1e-5));
        }

        int micro = _options.EffectiveMicroBatch;
        int microSteps = (b + micro - 1) / micro;
        _task.Begin(_rows, b, labelGradScale);
        // A fresh dropout mask per forward pass: steps are numbered as if every batch were full.
        var (lr, gradNorm) = _core.Step(Step, _task, microSteps, (_options.BatchSize + micro - 1) / micro);
        double loss = _task.Loss, correct = _task.Correct, count = _task.Count;

        var report = new FineTuningStepReport(Step, epoch, loss, count > 0 ? correct / count : 0, lr, gradNorm, b, clock.Elapsed.TotalSeconds);
        Step++;
        _position += b;
        if (_position >= _train.Count)
        {
            _position = 0;
            Epoch++;
        }
        return report;
    }

    public void Dispose()
    {
        _batch.Dispose();
        _core.Dispose();
    }

    /// <summary>One fine-tuning step for the core: the step's rows in micro-batches, the task head's metrics.</summary>
    private sealed class FineTuningStep(FineTuner tuner) : ITrainingTask
    {
        private int[] _rows = [];
        private int _count;
        private float _labelGradScale;

        public double Loss, Correct, Count;

        double ITrainingTask.Loss => Loss;

        public void Begin(int[] rows, int count, float labelGradScale)
        {
            _rows = rows;
            _count = count;
            _labelGradScale = labelGradScale;
            Loss = Correct = Count = 0;
        }

        public BertBatch MicroBatch(int micro)
        {
            int size = tuner._options.EffectiveMicroBatch;
            var chunk = _rows.AsSpan(micro * size, Math.Min(size, _count - micro * size));
            int seq = FineTuningBatch.SeqOf(tuner._train, chunk);
            return tuner._batch.Upload(tuner._train, chunk, seq, withLabels: true, (float)chunk.Length / _count, _labelGradScale);
        }

        public void Accumulate(ReadOnlySpan<float> metrics)
        {
            if (tuner._train.Task == FineTuningTask.Span)
            {
                Loss += metrics[MetricSlot.SpanStartLoss] + metrics[MetricSlot.SpanEndLoss];
                Correct += metrics[MetricSlot.SpanStartCorrect] + metrics[MetricSlot.SpanEndCorrect];
                Count += 2 * metrics[MetricSlot.SpanCount];
            }
            else
            {
                Loss += metrics[MetricSlot.ClsLoss];
                Correct += metrics[MetricSlot.ClsCorrect];
                Count += metrics[MetricSlot.ClsCount];
            }
        }

        public string DescribeLoss() => $"loss is {Loss}";
    }
}
