namespace Bert.Runtime;

/// <summary>Element types a backend stores activations in (GEMM operands, hidden states, logits).</summary>
public enum ActivationTypes : byte
{
    /// <summary>F32 only (the CPU backend).</summary>
    F32 = 0,
    /// <summary>F32 or BF16, chosen per tensor (the CUDA backend).</summary>
    F32OrBF16 = 1,
}

/// <summary>
/// The argument checks of every op of <see cref="IBackend"/>, one method per op, called first by each
/// backend so that the same bad call fails the same way (exception type and message) on every backend.
/// They check what the interface states: sizes, dtypes, the length each view needs for the sizes,
/// which views may be Null, forbidden aliasing, eps &gt; 0 and finite, dropout probability in [0, 1),
/// the AdamW scalars. They read no tensor memory (so element values such as token ids, labels and
/// positions are checked by the CPU backend only, where memory is the host's) and allocate nothing
/// unless they throw.
///
/// Rules shared by all ops:
/// - Counts of rows (rows, batch, seq, count) may be 0: the call is then a no-op that touches no
///   memory, except that SoftmaxCrossEntropy and SquaredNorm still overwrite their statistics with 0
///   (a sum over nothing). Every other argument is checked all the same. Feature sizes (hidden,
///   heads, headDim, inFeatures, outFeatures, classes) must be positive.
/// - A view must be non-Null unless its op's comment allows Null; a view may be longer than needed.
/// - Parameters, parameter gradients, LayerNorm statistics, optimizer state and losses are F32; ids,
///   masks, labels and positions I32; activations one of the backend's <see cref="ActivationTypes"/>.
/// - Sizes and views out of range throw <see cref="ArgumentOutOfRangeException"/>; a bad view, dropout
///   spec or aliasing <see cref="ArgumentException"/>; each message starts with "Op: argument".
/// </summary>
public static class OpChecks
{
    // ---- memory ---------------------------------------------------------------------------------

    /// <summary><see cref="IBackend.Copy"/>: both views non-Null, same dtype and length.</summary>
    public static void Copy(TensorRef destination, TensorRef source)
    {
        const string op = nameof(IBackend.Copy);
        NotNull(destination, op, nameof(destination));
        NotNull(source, op, nameof(source));
        if (destination.DType != source.DType)
            throw new ArgumentException($"{op}: destination has dtype {destination.DType}, source {source.DType}", nameof(destination));
        if (destination.Length != source.Length)
            throw new ArgumentException($"{op}: destination has {destination.Length} elements, source {source.Length}", nameof(destination));
    }

    /// <summary><see cref="IBackend.Zero"/>: a non-Null view.</summary>
    public static void Zero(TensorRef tensor) => NotNull(tensor, nameof(IBackend.Zero), nameof(tensor));

    // ---- GEMM -----------------------------------------------------------------------------------

    /// <summary><see cref="IBackend.Linear"/>. preActivation and bias may be Null.</summary>
    public static void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, ActivationTypes types, int outputStride = 0)
    {
        const string op = nameof(IBackend.Linear);
        NonNegative(rows, op, nameof(rows));
        Positive(inFeatures, op, nameof(inFeatures));
        Positive(outFeatures, op, nameof(outFeatures));
        KnownActivation(activation, op);
        long n = rows, k = inFeatures, o = outFeatures, ld = Stride(outputStride, outFeatures, op, nameof(outputStride));
        Activations(output, n * ld, types, op, nameof(output));
        if (activation != Activation.None && !preActivation.IsNull) Activations(preActivation, n * ld, types, op, nameof(preActivation));
        Activations(input, n * k, types, op, nameof(input));
        Activations(weight, o * k, types, op, nameof(weight));
        if (!bias.IsNull) bias.Require(o, DType.F32, op, nameof(bias));
    }

    /// <summary><see cref="IBackend.LinearBackward"/>. dInput, dWeight and dBias may be Null (not
    /// computed); input is needed only for dWeight, weight only for dInput.</summary>
    public static void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias,
        TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, ActivationTypes types, int dOutputStride = 0)
    {
        const string op = nameof(IBackend.LinearBackward);
        NonNegative(rows, op, nameof(rows));
        Positive(inFeatures, op, nameof(inFeatures));
        Positive(outFeatures, op, nameof(outFeatures));
        long n = rows, k = inFeatures, o = outFeatures, ld = Stride(dOutputStride, outFeatures, op, nameof(dOutputStride));
        if (!dInput.IsNull) Activations(dInput, n * k, types, op, nameof(dInput));
        if (!dWeight.IsNull) dWeight.Require(o * k, DType.F32, op, nameof(dWeight));
        if (!dBias.IsNull) dBias.Require(o, DType.F32, op, nameof(dBias));
        Activations(dOutput, n * ld, types, op, nameof(dOutput));
        if (!dWeight.IsNull) Activations(input, n * k, types, op, nameof(input));
        if (!dInput.IsNull) Activations(weight, o * k, types, op, nameof(weight));
    }

    /// <summary><see cref="IBackend.ActivationBackward"/>. dPre may alias dOut; pre is always required.</summary>
    public static void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation,
        ActivationTypes types)
    {
        const string op = nameof(IBackend.ActivationBackward);
        NonNegative(count, op, nameof(count));
        KnownActivation(activation, op);
        Activations(dPre, count, types, op, nameof(dPre));
        Activations(dOut, count, types, op, nameof(dOut));
        Activations(pre, count, types, op, nameof(pre));
    }

    // ---- embeddings and normalization -----------------------------------------------------------

    /// <summary><see cref="IBackend.EmbeddingsForward"/>. The tables are F32[rows, hidden] (a positive
    /// multiple of hidden elements); posEmb has at least seq rows.</summary>
    public static void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb,
        TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout, ActivationTypes types)
    {
        const string op = nameof(IBackend.EmbeddingsForward);
        long tokens = Tokens(batch, seq, hidden, op);
        Eps(eps, op);
        Dropout(dropout, op);
        long h = hidden;
        Activations(output, tokens * h, types, op, nameof(output));
        Activations(sum, tokens * h, types, op, nameof(sum));
        mean.Require(tokens, DType.F32, op, nameof(mean));
        rstd.Require(tokens, DType.F32, op, nameof(rstd));
        inputIds.Require(tokens, DType.I32, op, nameof(inputIds));
        tokenTypeIds.Require(tokens, DType.I32, op, nameof(tokenTypeIds));
        Table(wordEmb, hidden, op, nameof(wordEmb));
        PositionTable(posEmb, seq, hidden, op, nameof(posEmb));
        Table(typeEmb, hidden, op, nameof(typeEmb));
        gamma.Require(h, DType.F32, op, nameof(gamma));
        beta.Require(h, DType.F32, op, nameof(beta));
    }

    /// <summary><see cref="IBackend.EmbeddingsBackward"/>. Each of the five parameter gradients may be
    /// Null (not computed); the tables follow <see cref="EmbeddingsForward"/>'s rule.</summary>
    public static void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout, ActivationTypes types)
    {
        const string op = nameof(IBackend.EmbeddingsBackward);
        long tokens = Tokens(batch, seq, hidden, op);
        Dropout(dropout, op);
        long h = hidden;
        if (!dWordEmb.IsNull) Table(dWordEmb, hidden, op, nameof(dWordEmb));
        if (!dPosEmb.IsNull) PositionTable(dPosEmb, seq, hidden, op, nameof(dPosEmb));
        if (!dTypeEmb.IsNull) Table(dTypeEmb, hidden, op, nameof(dTypeEmb));
        if (!dGamma.IsNull) dGamma.Require(h, DType.F32, op, nameof(dGamma));
        if (!dBeta.IsNull) dBeta.Require(h, DType.F32, op, nameof(dBeta));
        scratch.Require(tokens * h, DType.F32, op, nameof(scratch));
        Activations(dOutput, tokens * h, types, op, nameof(dOutput));
        Activations(sum, tokens * h, types, op, nameof(sum));
        mean.Require(tokens, DType.F32, op, nameof(mean));
        rstd.Require(tokens, DType.F32, op, nameof(rstd));
        inputIds.Require(tokens, DType.I32, op, nameof(inputIds));
        tokenTypeIds.Require(tokens, DType.I32, op, nameof(tokenTypeIds));
        gamma.Require(h, DType.F32, op, nameof(gamma));
    }

    /// <summary><see cref="IBackend.LayerNorm"/>.</summary>
    public static void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps, ActivationTypes types)
    {
        const string op = nameof(IBackend.LayerNorm);
        NonNegative(rows, op, nameof(rows));
        Positive(hidden, op, nameof(hidden));
        Eps(eps, op);
        long n = rows, h = hidden;
        Activations(output, n * h, types, op, nameof(output));
        mean.Require(n, DType.F32, op, nameof(mean));
        rstd.Require(n, DType.F32, op, nameof(rstd));
        Activations(input, n * h, types, op, nameof(input));
        gamma.Require(h, DType.F32, op, nameof(gamma));
        beta.Require(h, DType.F32, op, nameof(beta));
    }

    /// <summary><see cref="IBackend.LayerNormBackward"/>. dGamma and dBeta may be Null.</summary>
    public static void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef input, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, ActivationTypes types)
    {
        const string op = nameof(IBackend.LayerNormBackward);
        NonNegative(rows, op, nameof(rows));
        Positive(hidden, op, nameof(hidden));
        long n = rows, h = hidden;
        Activations(dInput, n * h, types, op, nameof(dInput));
        if (!dGamma.IsNull) dGamma.Require(h, DType.F32, op, nameof(dGamma));
        if (!dBeta.IsNull) dBeta.Require(h, DType.F32, op, nameof(dBeta));
        Activations(dOutput, n * h, types, op, nameof(dOutput));
        Activations(input, n * h, types, op, nameof(input));
        mean.Require(n, DType.F32, op, nameof(mean));
        rstd.Require(n, DType.F32, op, nameof(rstd));
        gamma.Require(h, DType.F32, op, nameof(gamma));
    }

    /// <summary><see cref="IBackend.ResidualLayerNorm"/>. sum may not alias residual while dropout is active.</summary>
    public static void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef residual, TensorRef branch, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps, DropoutSpec dropout, ActivationTypes types)
    {
        const string op = nameof(IBackend.ResidualLayerNorm);
        NonNegative(rows, op, nameof(rows));
        Positive(hidden, op, nameof(hidden));
        Eps(eps, op);
        Dropout(dropout, op);
        long n = rows, h = hidden;
        Activations(output, n * h, types, op, nameof(output));
        Activations(sum, n * h, types, op, nameof(sum));
        mean.Require(n, DType.F32, op, nameof(mean));
        rstd.Require(n, DType.F32, op, nameof(rstd));
        Activations(residual, n * h, types, op, nameof(residual));
        Activations(branch, n * h, types, op, nameof(branch));
        gamma.Require(h, DType.F32, op, nameof(gamma));
        beta.Require(h, DType.F32, op, nameof(beta));
        if (dropout.Active && sum.Address == residual.Address)
            throw new ArgumentException($"{op}: sum may not alias residual when dropout is active", nameof(sum));
    }

    /// <summary><see cref="IBackend.ResidualLayerNormBackward"/>. dGamma and dBeta may be Null; dResidual may
    /// alias dOutput; dBranch may alias neither.</summary>
    public static void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma,
        int rows, int hidden, DropoutSpec dropout, ActivationTypes types)
    {
        const string op = nameof(IBackend.ResidualLayerNormBackward);
        NonNegative(rows, op, nameof(rows));
        Positive(hidden, op, nameof(hidden));
        Dropout(dropout, op);
        long n = rows, h = hidden;
        Activations(dResidual, n * h, types, op, nameof(dResidual));
        Activations(dBranch, n * h, types, op, nameof(dBranch));
        if (!dGamma.IsNull) dGamma.Require(h, DType.F32, op, nameof(dGamma));
        if (!dBeta.IsNull) dBeta.Require(h, DType.F32, op, nameof(dBeta));
        Activations(dOutput, n * h, types, op, nameof(dOutput));
        Activations(sum, n * h, types, op, nameof(sum));
        mean.Require(n, DType.F32, op, nameof(mean));
        rstd.Require(n, DType.F32, op, nameof(rstd));
        gamma.Require(h, DType.F32, op, nameof(gamma));
        if (dBranch.Address == dResidual.Address || dBranch.Address == dOutput.Address)
            throw new ArgumentException($"{op}: dBranch may not alias dResidual or dOutput", nameof(dBranch));
    }

    // ---- attention ------------------------------------------------------------------------------

    /// <summary><see cref="IBackend.PlanAttention"/>: the sizes of an attention call.</summary>
    public static void PlanAttention(int batch, int seq, int heads, int headDim) =>
        AttentionSizes(batch, seq, heads, headDim, nameof(IBackend.PlanAttention));

    /// <summary><see cref="IBackend.AttentionForward"/>; <paramref name="plan"/> is the backend's
    /// <see cref="IBackend.PlanAttention"/> for these sizes (computed without checks).</summary>
    public static void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, AttentionPlan plan,
        TensorRef qkv, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout, ActivationTypes types)
    {
        const string op = nameof(IBackend.AttentionForward);
        AttentionSizes(batch, seq, heads, headDim, op);
        Dropout(dropout, op);
        long tokens = (long)batch * seq, hidden = (long)heads * headDim;
        Activations(context, tokens * hidden, types, op, nameof(context));
        Activations(probs, plan.SavedLength, types, op, nameof(probs));
        Activations(workspace, plan.WorkspaceLength, types, op, nameof(workspace));
        Activations(qkv, tokens * 3 * hidden, types, op, nameof(qkv));
        attentionMask.Require(tokens, DType.I32, op, nameof(attentionMask));
    }

    /// <summary><see cref="IBackend.AttentionBackward"/>; see <see cref="AttentionForward"/> for the plan.</summary>
    public static void AttentionBackward(TensorRef dQkv, TensorRef workspace, AttentionPlan plan,
        TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout, ActivationTypes types)
    {
        const string op = nameof(IBackend.AttentionBackward);
        AttentionSizes(batch, seq, heads, headDim, op);
        Dropout(dropout, op);
        long tokens = (long)batch * seq, hidden = (long)heads * headDim;
        Activations(dQkv, tokens * 3 * hidden, types, op, nameof(dQkv));
        Activations(workspace, plan.WorkspaceLength, types, op, nameof(workspace));
        Activations(dContext, tokens * hidden, types, op, nameof(dContext));
        Activations(qkv, tokens * 3 * hidden, types, op, nameof(qkv));
        Activations(context, tokens * hidden, types, op, nameof(context));
        Activations(probs, plan.SavedLength, types, op, nameof(probs));
        attentionMask.Require(tokens, DType.I32, op, nameof(attentionMask));
    }

    /// <summary><see cref="IBackend.Dropout"/>. output may alias input.</summary>
    public static void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout, ActivationTypes types)
    {
        const string op = nameof(IBackend.Dropout);
        NonNegative(count, op, nameof(count));
        Dropout(dropout, op);
        Activations(output, count, types, op, nameof(output));
        Activations(input, count, types, op, nameof(input));
    }

    // ---- gathers --------------------------------------------------------------------------------

    /// <summary><see cref="IBackend.GatherRows"/>.</summary>
    public static void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden,
        ActivationTypes types)
    {
        const string op = nameof(IBackend.GatherRows);
        long rows = GatherSizes(batch, seq, count, hidden, op);
        Activations(output, rows * hidden, types, op, nameof(output));
        Activations(input, (long)batch * seq * hidden, types, op, nameof(input));
        positions.Require(rows, DType.I32, op, nameof(positions));
    }

    /// <summary><see cref="IBackend.ScatterAddRows"/>.</summary>
    public static void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden,
        ActivationTypes types)
    {
        const string op = nameof(IBackend.ScatterAddRows);
        long rows = GatherSizes(batch, seq, count, hidden, op);
        Activations(dInput, (long)batch * seq * hidden, types, op, nameof(dInput));
        Activations(dOutput, rows * hidden, types, op, nameof(dOutput));
        positions.Require(rows, DType.I32, op, nameof(positions));
    }

    // ---- loss -----------------------------------------------------------------------------------

    /// <summary><see cref="IBackend.SoftmaxCrossEntropy"/>. weights may be Null; dLogits may alias logits;
    /// gradScale must be finite; gradScaleOnDevice, when given, one F32 element (its value is read when the op runs).</summary>
    public static void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, ActivationTypes types, int stride = 0, TensorRef gradScaleOnDevice = default)
    {
        const string op = nameof(IBackend.SoftmaxCrossEntropy);
        NonNegative(rows, op, nameof(rows));
        Positive(classes, op, nameof(classes));
        if (!float.IsFinite(gradScale))
            throw new ArgumentOutOfRangeException(nameof(gradScale), gradScale, $"{op}: gradScale must be finite");
        long n = rows * Stride(stride, classes, op, nameof(stride));
        Activations(dLogits, n, types, op, nameof(dLogits));
        stats.Require(3, DType.F32, op, nameof(stats));
        Activations(logits, n, types, op, nameof(logits));
        labels.Require(rows, DType.I32, op, nameof(labels));
        if (!weights.IsNull) weights.Require(rows, DType.F32, op, nameof(weights));
        if (!gradScaleOnDevice.IsNull) gradScaleOnDevice.Require(1, DType.F32, op, nameof(gradScaleOnDevice));
    }

    /// <summary><see cref="IBackend.LogitsStride"/>: a positive class count.</summary>
    public static void LogitsStride(int classes) => Positive(classes, nameof(IBackend.LogitsStride), nameof(classes));

    // ---- optimizer ------------------------------------------------------------------------------

    /// <summary><see cref="IBackend.SquaredNorm"/>.</summary>
    public static void SquaredNorm(TensorRef result, TensorRef input, long count, ActivationTypes types)
    {
        const string op = nameof(IBackend.SquaredNorm);
        NonNegative(count, op, nameof(count));
        result.Require(1, DType.F32, op, nameof(result));
        Activations(input, count, types, op, nameof(input));
    }

    /// <summary><see cref="IBackend.AdamW"/>: F32 buffers; Step ≥ 1; β1, β2 in [0, 1); learning rate and
    /// weight decay finite; ε finite and ≥ 0; with normSquared (clipping) MaxGradNorm finite and &gt; 0.</summary>
    public static void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared,
        long count, in AdamWStep step)
    {
        const string op = nameof(IBackend.AdamW);
        NonNegative(count, op, nameof(count));
        param.Require(count, DType.F32, op, nameof(param));
        grad.Require(count, DType.F32, op, nameof(grad));
        m.Require(count, DType.F32, op, nameof(m));
        v.Require(count, DType.F32, op, nameof(v));
        if (!normSquared.IsNull) normSquared.Require(1, DType.F32, op, nameof(normSquared));
        if (step.Step < 1)
            throw new ArgumentOutOfRangeException(nameof(step), step.Step, $"{op}: step.Step must be ≥ 1 (bias correction is 1-based)");
        if (!(step.Beta1 >= 0f && step.Beta1 < 1f))
            throw new ArgumentOutOfRangeException(nameof(step), step.Beta1, $"{op}: step.Beta1 must be in [0, 1)");
        if (!(step.Beta2 >= 0f && step.Beta2 < 1f))
            throw new ArgumentOutOfRangeException(nameof(step), step.Beta2, $"{op}: step.Beta2 must be in [0, 1)");
        if (!float.IsFinite(step.LearningRate))
            throw new ArgumentOutOfRangeException(nameof(step), step.LearningRate, $"{op}: step.LearningRate must be finite");
        if (!(step.Epsilon >= 0f) || float.IsInfinity(step.Epsilon))
            throw new ArgumentOutOfRangeException(nameof(step), step.Epsilon, $"{op}: step.Epsilon must be finite and ≥ 0");
        if (!float.IsFinite(step.WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(step), step.WeightDecay, $"{op}: step.WeightDecay must be finite");
        if (!normSquared.IsNull && (!(step.MaxGradNorm > 0f) || float.IsInfinity(step.MaxGradNorm)))
            throw new ArgumentOutOfRangeException(nameof(step), step.MaxGradNorm,
                $"{op}: step.MaxGradNorm must be finite and > 0 when normSquared is given");
    }

    /// <summary><see cref="IBackend.AdamWDevice"/>: F32 buffers; normSquared F32[1] and scalars
    /// F32[<see cref="StepScalars.Length"/>] required; β1, β2 in [0, 1); ε finite and ≥ 0; weight decay finite;
    /// MaxGradNorm finite and ≥ 0 (0: no clipping). The scalars' values live on the device and are not checked.</summary>
    public static void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants)
    {
        const string op = nameof(IBackend.AdamWDevice);
        NonNegative(count, op, nameof(count));
        param.Require(count, DType.F32, op, nameof(param));
        grad.Require(count, DType.F32, op, nameof(grad));
        m.Require(count, DType.F32, op, nameof(m));
        v.Require(count, DType.F32, op, nameof(v));
        normSquared.Require(1, DType.F32, op, nameof(normSquared));
        scalars.Require(StepScalars.Length, DType.F32, op, nameof(scalars));
        if (!(constants.Beta1 >= 0f && constants.Beta1 < 1f))
            throw new ArgumentOutOfRangeException(nameof(constants), constants.Beta1, $"{op}: constants.Beta1 must be in [0, 1)");
        if (!(constants.Beta2 >= 0f && constants.Beta2 < 1f))
            throw new ArgumentOutOfRangeException(nameof(constants), constants.Beta2, $"{op}: constants.Beta2 must be in [0, 1)");
        if (!(constants.Epsilon >= 0f) || float.IsInfinity(constants.Epsilon))
            throw new ArgumentOutOfRangeException(nameof(constants), constants.Epsilon, $"{op}: constants.Epsilon must be finite and ≥ 0");
        if (!float.IsFinite(constants.WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(constants), constants.WeightDecay, $"{op}: constants.WeightDecay must be finite");
        if (!(constants.MaxGradNorm >= 0f) || float.IsInfinity(constants.MaxGradNorm))
            throw new ArgumentOutOfRangeException(nameof(constants), constants.MaxGradNorm,
                $"{op}: constants.MaxGradNorm must be finite and ≥ 0 (0: no clipping)");
    }

    // ---- building blocks ------------------------------------------------------------------------

    /// <summary>An activation view: non-Null, one of <paramref name="types"/>, at least <paramref name="needed"/> elements.</summary>
    public static void Activations(TensorRef t, long needed, ActivationTypes types, string op, string argument)
    {
        bool typeOk = t.DType == DType.F32 || (types == ActivationTypes.F32OrBF16 && t.DType == DType.BF16);
        if (!t.IsNull && typeOk && t.Length >= needed) return;
        string expected = types == ActivationTypes.F32OrBF16 ? "F32 or BF16" : "F32";
        if (t.IsNull)
            throw new ArgumentException($"{op}: {argument} is null but {needed} elements are required", argument);
        if (!typeOk)
            throw new ArgumentException($"{op}: {argument} has dtype {t.DType}, expected {expected}", argument);
        throw new ArgumentException($"{op}: {argument} has {t.Length} elements, the shape needs {needed}", argument);
    }

    public static void Positive(int value, string op, string argument)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(argument, value, $"{op}: {argument} must be positive");
    }

    public static void NonNegative(long value, string op, string argument)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(argument, value, $"{op}: {argument} must be non-negative");
    }

    /// <summary>A row stride of a [rows, width] tensor: 0 (dense: width) or at least width. Returns the stride.</summary>
    public static long Stride(int stride, int width, string op, string argument)
    {
        if (stride == 0) return width;
        if (stride < width)
            throw new ArgumentOutOfRangeException(argument, stride, $"{op}: {argument} must be 0 (dense) or at least the row width {width}");
        return stride;
    }

    /// <summary>A LayerNorm epsilon: positive and finite (0 divides by zero on a constant row).</summary>
    public static void Eps(float eps, string op)
    {
        if (!(eps > 0f) || float.IsInfinity(eps))
            throw new ArgumentOutOfRangeException(nameof(eps), eps, $"{op}: eps must be positive and finite");
    }

    /// <summary>A dropout spec: probability in [0, 1) (NaN refused).</summary>
    public static void Dropout(in DropoutSpec dropout, string op)
    {
        if (!(dropout.Probability >= 0f && dropout.Probability < 1f))
            throw new ArgumentException($"{op}: dropout probability {dropout.Probability} is outside [0, 1)", nameof(dropout));
    }

    private static void NotNull(TensorRef t, string op, string argument)
    {
        if (t.IsNull) throw new ArgumentException($"{op}: {argument} is null", argument);
    }

    private static void KnownActivation(Activation activation, string op)
    {
        if (activation is < Activation.None or > Activation.Tanh)
            throw new ArgumentOutOfRangeException(nameof(activation), activation, $"{op}: unknown activation");
    }

    /// <summary>batch·seq tokens, after checking batch, seq ≥ 0, hidden &gt; 0 and the count below 2^31.</summary>
    private static long Tokens(int batch, int seq, int hidden, string op)
    {
        NonNegative(batch, op, nameof(batch));
        NonNegative(seq, op, nameof(seq));
        Positive(hidden, op, nameof(hidden));
        long tokens = (long)batch * seq;
        if (tokens > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{op}: batch·seq = {tokens} exceeds 2^31 − 1");
        return tokens;
    }

    /// <summary>An embedding table F32[rows, hidden]: a positive multiple of hidden elements, fewer than 2^31 rows.</summary>
    private static void Table(TensorRef table, int hidden, string op, string argument)
    {
        if (table.IsNull) throw new ArgumentException($"{op}: {argument} is null", argument);
        if (table.DType != DType.F32) throw new ArgumentException($"{op}: {argument} has dtype {table.DType}, expected F32", argument);
        if (table.Length == 0 || table.Length % hidden != 0)
            throw new ArgumentException($"{op}: {argument} has {table.Length} elements, not a positive multiple of hidden = {hidden}", argument);
        if (table.Length / hidden > int.MaxValue) throw new ArgumentException($"{op}: {argument} has more than 2^31 − 1 rows", argument);
    }

    /// <summary>A position table: <see cref="Table"/> with at least <paramref name="seq"/> rows.</summary>
    private static void PositionTable(TensorRef table, int seq, int hidden, string op, string argument)
    {
        Table(table, hidden, op, argument);
        long positions = table.Length / hidden;
        if (seq > positions)
            throw new ArgumentOutOfRangeException(nameof(seq), seq, $"{op}: seq exceeds the {positions} rows of {argument}");
    }

    private static void AttentionSizes(int batch, int seq, int heads, int headDim, string op)
    {
        NonNegative(batch, op, nameof(batch));
        NonNegative(seq, op, nameof(seq));
        Positive(heads, op, nameof(heads));
        Positive(headDim, op, nameof(headDim));
        if ((long)batch * heads > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{op}: batch·heads exceeds 2^31 − 1");
        if ((long)batch * seq > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{op}: batch·seq exceeds 2^31 − 1");
    }

    /// <summary>batch·count gathered rows, after checking the sizes; a row needs a sequence to point into.</summary>
    private static long GatherSizes(int batch, int seq, int count, int hidden, string op)
    {
        NonNegative(batch, op, nameof(batch));
        NonNegative(seq, op, nameof(seq));
        NonNegative(count, op, nameof(count));
        Positive(hidden, op, nameof(hidden));
        long rows = (long)batch * count;
        if (rows > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"{op}: batch·count = {rows} exceeds 2^31 − 1");
        if (rows > 0 && seq == 0)
            throw new ArgumentOutOfRangeException(nameof(seq), seq, $"{op}: seq must be positive when there are rows to gather");
        return rows;
    }
}
