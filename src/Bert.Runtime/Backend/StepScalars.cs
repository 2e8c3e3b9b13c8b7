using System.Runtime.InteropServices;

namespace Bert.Runtime;

/// <summary>
/// The scalars that change from one optimizer step to the next, as the device reads them: F32[<see cref="Length"/>] in a
/// device buffer written once per step by an upload, so the work queued for a step (forward, backward, norm, clip,
/// AdamW) is the same every step and a CUDA graph can replay it (see <see cref="IBackend.AdamWDevice"/>).
/// Layout: [0] learning rate, [1] bias correction 1 − β1ᵗ, [2] bias correction 2 − β2ᵗ, [3] the dropout counter
/// (<see cref="DropoutSpec.Step"/> of the step's forward pass) stored as the raw bits of a uint, not a float value.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct StepScalars(float LearningRate, float BiasCorrection1, float BiasCorrection2, uint DropoutStep)
{
    /// <summary>Elements of the device buffer (F32).</summary>
    public const int Length = 4;

    /// <summary>Index of the dropout counter (uint bits) in the device buffer.</summary>
    public const int DropoutStepIndex = 3;

    /// <summary>The scalars of AdamW step <paramref name="step"/> (1-based) at <paramref name="learningRate"/>.</summary>
    public static StepScalars For(float learningRate, float beta1, float beta2, int step, uint dropoutStep = 0)
    {
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "AdamW steps are 1-based");
        return new(learningRate, BiasCorrection(beta1, step), BiasCorrection(beta2, step), dropoutStep);
    }

    /// <summary>1 − βᵗ, computed in double and rounded once: the one definition every backend and path uses, so the
    /// host-scalar and the device-scalar AdamW agree bit for bit.</summary>
    public static float BiasCorrection(float beta, int step) => (float)(1.0 - Math.Pow(beta, step));

    /// <summary>The four elements as the device buffer holds them.</summary>
    public void WriteTo(Span<float> destination)
    {
        if (destination.Length < Length)
            throw new ArgumentException($"step scalars need {Length} elements, the destination has {destination.Length}", nameof(destination));
        destination[0] = LearningRate;
        destination[1] = BiasCorrection1;
        destination[2] = BiasCorrection2;
        destination[DropoutStepIndex] = BitConverter.UInt32BitsToSingle(DropoutStep);
    }

    /// <summary>The scalars a device buffer's four elements hold (the inverse of <see cref="WriteTo"/>).</summary>
    public static StepScalars Read(ReadOnlySpan<float> source)
    {
        if (source.Length < Length)
            throw new ArgumentException($"step scalars need {Length} elements, the source has {source.Length}", nameof(source));
        return new(source[0], source[1], source[2], BitConverter.SingleToUInt32Bits(source[DropoutStepIndex]));
    }
}

/// <summary>The AdamW hyper-parameters that stay fixed over a run (the kernel arguments of
/// <see cref="IBackend.AdamWDevice"/>); MaxGradNorm 0 disables clipping.</summary>
public readonly record struct AdamWConstants(float Beta1, float Beta2, float Epsilon, float WeightDecay, float MaxGradNorm);
