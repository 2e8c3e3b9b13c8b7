namespace Bert.Runtime.Training;

/// <summary>
/// BERT's learning-rate schedule: linear warmup from 0 to the peak over <see cref="WarmupSteps"/>, then
/// linear decay to 0 at <see cref="TotalSteps"/> (google-research/bert optimization.py; HuggingFace's
/// get_linear_schedule_with_warmup). One schedule spans both sequence-length phases.
/// </summary>
public sealed record LearningRateSchedule(double PeakLearningRate, long WarmupSteps, long TotalSteps)
{
    /// <summary>The learning rate used by optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(long step)
    {
        if (step < 0 || step >= TotalSteps)
            throw new ArgumentOutOfRangeException(nameof(step), step, $"step must be in [0, {TotalSteps})");
        if (step < WarmupSteps) return PeakLearningRate * step / WarmupSteps;
        long decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        return PeakLearningRate * Math.Max(0.0, (double)(TotalSteps - step) / decaySteps);
    }

    public static LearningRateSchedule Create(double peak, long warmup, long total)
    {
        if (!(peak > 0) || double.IsInfinity(peak))
            throw new ArgumentOutOfRangeException(nameof(peak), peak, "learning rate must be a positive number");
        if (total <= 0) throw new ArgumentOutOfRangeException(nameof(total), total, "total steps must be positive");
        if (warmup < 0 || warmup > total)
            throw new ArgumentOutOfRangeException(nameof(warmup), warmup, $"warmup steps must be in [0, {total}]");
        return new LearningRateSchedule(peak, warmup, total);
    }
}
