using Bert.Runtime;

namespace Bert.Tests.Training;

/// <summary>The process "died" at a chosen op (see <see cref="KillSwitchBackend"/>).</summary>
public sealed class SimulatedKillException(int call) : Exception($"simulated kill at loss call #{call}")
{
    public int Call { get; } = call;
}

/// <summary>
/// A backend that forwards every op to another one (<see cref="DelegatingBackend"/>) and "kills the
/// process" at the N-th loss op: <see cref="IBackend.SoftmaxCrossEntropy"/> call number
/// <see cref="KillAtLossCall"/> (1-based) throws before it runs, and so does every op after it (every
/// member but Allocate and the queries). Each forward pass of a pretraining model makes two such calls
/// (MLM, then NSP), so a kill can be placed between micro-batches of one step. The inner backend
/// belongs to the caller.
/// </summary>
public sealed class KillSwitchBackend(IBackend inner) : DelegatingBackend(inner)
{
    private bool _dead;

    public int? KillAtLossCall { get; set; }
    public int LossCalls { get; private set; }

    private void Alive()
    {
        if (_dead) throw new SimulatedKillException(LossCalls);
    }

    public override string Name => "kill-switch over " + Inner.Name;

    public override void Upload<T>(TensorRef destination, ReadOnlySpan<T> source)
    {
        Alive();
        base.Upload(destination, source);
    }

    public override void Download<T>(Span<T> destination, TensorRef source)
    {
        Alive();
        base.Download(destination, source);
    }

    public override void Copy(TensorRef destination, TensorRef source)
    {
        Alive();
        base.Copy(destination, source);
    }

    public override void Zero(TensorRef tensor)
    {
        Alive();
        base.Zero(tensor);
    }

    public override void Synchronize()
    {
        Alive();
        base.Synchronize();
    }

    public override void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0)
    {
        Alive();
        base.Linear(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation, outputStride);
    }

    public override void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0)
    {
        Alive();
        base.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, rows, inFeatures, outFeatures, accumulateInput, dOutputStride);
    }

    public override void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation)
    {
        Alive();
        base.ActivationBackward(dPre, dOut, pre, count, activation);
    }

    public override void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds,
        TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb, TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout)
    {
        Alive();
        base.EmbeddingsForward(output, sum, mean, rstd, inputIds, tokenTypeIds, wordEmb, posEmb, typeEmb, gamma, beta, batch, seq, hidden, eps, dropout);
    }

    public override void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta, TensorRef scratch,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout)
    {
        Alive();
        base.EmbeddingsBackward(dWordEmb, dPosEmb, dTypeEmb, dGamma, dBeta, scratch, dOutput, sum, mean, rstd, inputIds, tokenTypeIds, gamma,
            batch, seq, hidden, dropout);
    }

    public override void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta, int rows, int hidden, float eps)
    {
        Alive();
        base.LayerNorm(output, mean, rstd, input, gamma, beta, rows, hidden, eps);
    }

    public override void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput, TensorRef input, TensorRef mean,
        TensorRef rstd, TensorRef gamma, int rows, int hidden)
    {
        Alive();
        base.LayerNormBackward(dInput, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden);
    }

    public override void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef residual, TensorRef branch,
        TensorRef gamma, TensorRef beta, int rows, int hidden, float eps, DropoutSpec dropout)
    {
        Alive();
        base.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, eps, dropout);
    }

    public override void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
        TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout)
    {
        Alive();
        base.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout);
    }

    public override void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        Alive();
        base.AttentionForward(context, probs, workspace, qkv, attentionMask, batch, seq, heads, headDim, dropout);
    }

    public override void AttentionBackward(TensorRef dQkv, TensorRef workspace, TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        Alive();
        base.AttentionBackward(dQkv, workspace, dContext, qkv, context, probs, attentionMask, batch, seq, heads, headDim, dropout);
    }

    public override void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout)
    {
        Alive();
        base.Dropout(output, input, count, dropout);
    }

    public override void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        Alive();
        base.GatherRows(output, input, positions, batch, seq, count, hidden);
    }

    public override void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        Alive();
        base.ScatterAddRows(dInput, dOutput, positions, batch, seq, count, hidden);
    }

    public override void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default)
    {
        Alive();
        LossCalls++;
        if (LossCalls == KillAtLossCall)
        {
            _dead = true;
            throw new SimulatedKillException(LossCalls);
        }
        base.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale, stride, gradScaleOnDevice);
    }

    public override void SquaredNorm(TensorRef result, TensorRef input, long count)
    {
        Alive();
        base.SquaredNorm(result, input, count);
    }

    public override void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, long count, in AdamWStep step)
    {
        Alive();
        base.AdamW(param, grad, m, v, normSquared, count, step);
    }

    public override void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants)
    {
        Alive();
        base.AdamWDevice(param, grad, m, v, normSquared, scalars, count, constants);
    }
}
