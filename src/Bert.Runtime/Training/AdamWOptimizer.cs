namespace Bert.Runtime.Training;

/// <summary>AdamW hyper-parameters (BERT's defaults).</summary>
public sealed record AdamWOptions
{
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Epsilon { get; init; } = 1e-6f;
    public float WeightDecay { get; init; } = 0.01f;
    /// <summary>Clip gradients to this global L2 norm; 0 disables clipping. Default 1.0.</summary>
    public float MaxGradNorm { get; init; } = 1.0f;
}

/// <summary>
/// AdamW over the model's flat buffers: the moments m and v share the parameter layout, so a step is
/// one global-norm pass and two range updates (weight-decayed prefix, then LayerNorm weights and
/// biases without decay — the split comes from the generated table's Decay flags, never from names).
/// The clip factor is computed on the device from the norm, so a step reads nothing back.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly BertModelBase _model;
    private readonly DeviceBuffer _normSquared;

    public AdamWOptimizer(BertModelBase model, AdamWOptions options)
    {
        _model = model;
        Options = options;
        var be = model.Backend;
        M = be.Allocate(model.ParameterTotal, DType.F32, "adam-m");
        V = be.Allocate(model.ParameterTotal, DType.F32, "adam-v");
        _normSquared = be.Allocate(1, DType.F32, "grad-norm-squared");
    }

    public AdamWOptions Options { get; }

    /// <summary>Where the moments live (the model's backend).</summary>
    public IBackend Backend => _model.Backend;

    /// <summary>First moment, F32[ParameterTotal].</summary>
    public DeviceBuffer M { get; }

    /// <summary>Second moment, F32[ParameterTotal].</summary>
    public DeviceBuffer V { get; }

    /// <summary>Squared global gradient norm of the last step (device scalar).</summary>
    public TensorRef GradNormSquared => _normSquared.View;

    /// <summary>Applies optimizer step <paramref name="step"/> (1-based for bias correction):
    /// <see cref="ComputeGradientNorm"/>, then <see cref="Apply"/>.</summary>
    public void Step(int step, float learningRate)
    {
        ComputeGradientNorm();
        Apply(step, learningRate);
    }

    /// <summary>Writes the squared global gradient norm into <see cref="GradNormSquared"/> (on the device).
    /// A caller that must inspect it before any weight changes (the trainer's non-finite check) reads it
    /// between this and <see cref="Apply"/>.</summary>
    public void ComputeGradientNorm() =>
        _model.Backend.SquaredNorm(_normSquared, _model.Gradients, _model.ParameterTotal);

    /// <summary>The AdamW update of every parameter, clipped by the norm of the last
    /// <see cref="ComputeGradientNorm"/>: the decayed prefix [0, DecayedParameterCount) with weight
    /// decay, the rest without.</summary>
    public void Apply(int step, float learningRate)
    {
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, "AdamW steps are 1-based");
        var be = _model.Backend;
        long total = _model.ParameterTotal, decayed = _model.DecayedParameterCount;
        var clipNorm = Options.MaxGradNorm > 0 ? _normSquared.View : TensorRef.Null;
        var decay = new AdamWStep(learningRate, Options.Beta1, Options.Beta2, Options.Epsilon, Options.WeightDecay, step, Options.MaxGradNorm);
        var noDecay = decay with { WeightDecay = 0f };
        if (decayed > 0)
            be.AdamW(_model.Parameters.Slice(0, decayed), _model.Gradients.Slice(0, decayed),
                M.Slice(0, decayed), V.Slice(0, decayed), clipNorm, decayed, decay);
        if (total > decayed)
            be.AdamW(_model.Parameters.Slice(decayed, total - decayed), _model.Gradients.Slice(decayed, total - decayed),
                M.Slice(decayed, total - decayed), V.Slice(decayed, total - decayed), clipNorm, total - decayed, noDecay);
    }

    public void Dispose()
    {
        _normSquared.Dispose();
        V.Dispose();
        M.Dispose();
    }
}
