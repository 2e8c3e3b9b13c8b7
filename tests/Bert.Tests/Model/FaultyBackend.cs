using Bert.Runtime;

namespace Bert.Tests.Model;

/// <summary>A deliberate bug in one backward op, for showing that the gradient check catches it.</summary>
internal enum BackwardFault
{
    None,
    /// <summary>The residual LayerNorm backward forgets the dropout mask of its branch (a mask that forward
    /// applied and backward must apply again): invisible with dropout off.</summary>
    ResidualDropoutMaskIgnored,
    /// <summary>The bias gradient of the Linear layers with <see cref="FaultyBackend.BiasFeatures"/> outputs
    /// is not accumulated (the FFN intermediate dense layers of the odd model).</summary>
    BiasGradientDropped,
}

/// <summary>
/// Delegates every op to a real backend (<see cref="DelegatingBackend"/>), except for one injected
/// <see cref="BackwardFault"/>. It owns nothing: the inner backend is disposed by whoever created it.
/// </summary>
internal sealed class FaultyBackend(IBackend inner, BackwardFault fault) : DelegatingBackend(inner)
{
    /// <summary>Output features of the Linear layers whose bias gradient <see cref="BackwardFault.BiasGradientDropped"/> drops.</summary>
    public const int BiasFeatures = 37;

    public override string Name => Inner.Name + " with " + fault;

    public override void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0) =>
        base.LinearBackward(dInput, dWeight,
            fault == BackwardFault.BiasGradientDropped && outFeatures == BiasFeatures ? TensorRef.Null : dBias,
            dOutput, input, weight, rows, inFeatures, outFeatures, accumulateInput, dOutputStride);

    public override void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
        TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout) =>
        base.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden,
            fault == BackwardFault.ResidualDropoutMaskIgnored ? DropoutSpec.None : dropout);
}
