namespace Bert.Runtime.Training;

/// <summary>One sequence-length phase of pretraining.</summary>
/// <param name="Name">"seq128", "seq512".</param>
/// <param name="SeqLength">S of its dataset.</param>
/// <param name="MaxPredictions">P of its dataset (20 at 128, 80 at 512).</param>
/// <param name="BatchSize">Sequences per optimizer step.</param>
/// <param name="MicroBatch">Sequences per forward/backward; BatchSize/MicroBatch micro-batches are accumulated.</param>
/// <param name="FirstStep">First optimizer step of the phase (inclusive).</param>
/// <param name="EndStep">End (exclusive).</param>
public sealed record Phase(string Name, int SeqLength, int MaxPredictions, int BatchSize, int MicroBatch, long FirstStep, long EndStep)
{
    public int Accumulation => BatchSize / MicroBatch;
    public long Steps => EndStep - FirstStep;
}

/// <summary>
/// The mixed-length schedule of the BERT paper: the first 90% of optimizer steps at S=128 (20
/// predictions), the rest at S=512 (80 predictions). A phase with zero steps is dropped.
/// </summary>
public static class PhasePlan
{
    public static IReadOnlyList<Phase> Create(long totalSteps, double longFraction,
        (int Seq, int Predictions, int Batch, int Micro) shortPhase,
        (int Seq, int Predictions, int Batch, int Micro) longPhase)
    {
        if (totalSteps <= 0) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "steps must be positive");
        if (!(longFraction >= 0 && longFraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(longFraction), longFraction, "the long-sequence fraction must be in [0, 1]");
        Validate(shortPhase, "short phase");
        Validate(longPhase, "long phase");
        long longSteps = (long)Math.Round(totalSteps * longFraction, MidpointRounding.AwayFromZero);
        long shortSteps = totalSteps - longSteps;
        var phases = new List<Phase>(2);
        if (shortSteps > 0)
            phases.Add(new Phase($"seq{shortPhase.Seq}", shortPhase.Seq, shortPhase.Predictions, shortPhase.Batch, shortPhase.Micro, 0, shortSteps));
        if (longSteps > 0)
            phases.Add(new Phase($"seq{longPhase.Seq}", longPhase.Seq, longPhase.Predictions, longPhase.Batch, longPhase.Micro, shortSteps, totalSteps));
        return phases;
    }

    private static void Validate((int Seq, int Predictions, int Batch, int Micro) p, string what)
    {
        if (p.Seq < 8) throw new ArgumentOutOfRangeException(nameof(p), p.Seq, $"{what}: sequence length must be at least 8");
        if (p.Predictions < 1 || p.Predictions > p.Seq)
            throw new ArgumentOutOfRangeException(nameof(p), p.Predictions, $"{what}: max predictions must be in [1, {p.Seq}]");
        if (p.Batch < 1) throw new ArgumentOutOfRangeException(nameof(p), p.Batch, $"{what}: batch size must be positive");
        if (p.Micro < 1 || p.Batch % p.Micro != 0)
            throw new ArgumentOutOfRangeException(nameof(p), p.Micro, $"{what}: micro-batch {p.Micro} must divide the batch size {p.Batch}");
    }

    public static Phase At(IReadOnlyList<Phase> phases, long step)
    {
        foreach (var p in phases)
            if (step >= p.FirstStep && step < p.EndStep) return p;
        throw new ArgumentOutOfRangeException(nameof(step), step, "step is outside every phase");
    }
}
