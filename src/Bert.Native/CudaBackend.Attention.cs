using Bert.Runtime;

namespace Bert.Native;

// Attention (Kernels/attention.cu around cuBLAS strided-batched GEMMs) and standalone dropout (elementwise.cu).
//
// Unfused (cuBLAS strided-batched GEMMs around the softmax kernels): probs holds the probabilities
// [B,NH,S,S]; workspace (elements of its type W, T = B·S tokens, H = NH·HD):
//   [0, 3TH)        q | k | v   [B·NH, S, HD] each, split from qkv
//   [3TH, 4TH)      context, or dContext in backward   [B·NH, S, HD]
//   [4TH, 7TH)      dq | dk | dv   (backward)
//   [7TH, +B·NH·S²) dropped probabilities D (forward and backward), then dScores in backward
// The forward's workspace content is not kept: the backward rebuilds q, k, v and D from qkv and probs,
// since every layer shares one workspace.
//
// Fused (CudaBackendOptions.FusedAttention, where it applies: see FusedApplies): probs holds the row
// logsumexp F32 [B·NH·S] (2·B·NH·S bf16 elements); the backward reads the forward's context instead of
// probabilities. Workspace, 2·T·H elements: slot 0 (BF16 [T·H]) stages a context (forward) or dContext
// (backward) that is not 16-byte aligned BF16, slot 1 (BF16 [T·H]) such a context in backward.
public sealed partial class CudaBackend
{
    public AttentionPlan PlanAttention(int batch, int seq, int heads, int headDim)
    {
        OpChecks.PlanAttention(batch, seq, heads, headDim);
        return Plan(batch, seq, heads, headDim);
    }

    /// <summary><see cref="PlanAttention"/> without the checks (for <see cref="OpChecks"/>).</summary>
    private AttentionPlan Plan(int batch, int seq, int heads, int headDim)
    {
        long tokensHidden = (long)batch * seq * heads * headDim;
        if (FusedApplies(batch, heads, headDim))
            return new AttentionPlan(FusedSavedBytes(batch, seq, heads) / ComputeType.Size(), 2 * tokensHidden, Fused: true);
        long probabilities = AttentionPlan.ProbabilitiesLength(batch, seq, heads);
        return new AttentionPlan(probabilities, 7 * tokensHidden + probabilities, Fused: false);
    }

    /// <summary>
    /// Whether the attention ops take the fused kernels (<see cref="CudaBackendOptions.FusedAttention"/>): BF16
    /// mode, head dim 64, compute capability 8.0, batch and heads within the grid's 65535. Depends only on the
    /// options, the device and the sizes, so the plan, the forward and the backward always agree, and a smaller
    /// batch of a fused plan is fused too (so its saved state never outgrows the plan's).
    /// </summary>
    private bool FusedApplies(int batch, int heads, int headDim) =>
        _options.FusedAttention && FusedAttentionUnavailable(headDim) is null && batch <= 65535 && heads <= 65535;

    /// <summary>
    /// Why the fused attention kernels cannot run on this backend for a model with head dimension
    /// <paramref name="headDim"/> (fp32 mode, another head dimension, a device older than compute 8.0), or null
    /// when they can. Independent of <see cref="CudaBackendOptions.FusedAttention"/>: the CLI asks before
    /// turning it on.
    /// </summary>
    public string? FusedAttentionUnavailable(int headDim)
    {
        if (ComputeType != DType.BF16) return "the backend computes in F32 (the fused kernels are bf16)";
        if (headDim != FlashHeadDim) return $"the model's head dimension is {headDim} (the fused kernels support {FlashHeadDim})";
        if (_api.Device.ComputeMajor < 8)
            return $"{_api.Device.Name} has compute capability {_api.Device.ComputeMajor}.{_api.Device.ComputeMinor} (the fused kernels need 8.0 or newer)";
        return null;
    }

    /// <summary>Bytes of the fused path's saved state: the row logsumexp, F32 [B·NH·S].</summary>
    private static long FusedSavedBytes(int batch, int seq, int heads) => (long)batch * heads * seq * 4;

    private readonly record struct AttentionLayout(TensorRef Q, TensorRef K, TensorRef V, TensorRef Ctx,
        TensorRef DQ, TensorRef DK, TensorRef DV, TensorRef Probs2);

    private AttentionLayout Layout(TensorRef workspace, int batch, int seq, int heads, int headDim, string op)
    {
        long th = (long)batch * seq * heads * headDim;
        long need = 7 * th + AttentionPlan.ProbabilitiesLength(batch, seq, heads);
        RequireAct(workspace, need, op, nameof(workspace));
        return new AttentionLayout(workspace.Slice(0, th), workspace.Slice(th, th), workspace.Slice(2 * th, th),
            workspace.Slice(3 * th, th), workspace.Slice(4 * th, th), workspace.Slice(5 * th, th), workspace.Slice(6 * th, th),
            workspace.Slice(7 * th, need - 7 * th));
    }

    public void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace,
        TensorRef qkv, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        using var _ = Op(nameof(AttentionForward));
        const string op = nameof(AttentionForward);
        var plan = Plan(batch, seq, heads, headDim);
        OpChecks.AttentionForward(context, probs, workspace, plan, qkv, attentionMask,
            batch, seq, heads, headDim, dropout, Activations);
        if (batch == 0 || seq == 0) return;
        CheckAttentionLimits(batch, seq, heads, headDim, op);
        if (plan.Fused)
        {
            // probs holds the row logsumexp for the backward, not probabilities.
            var lse = FusedLogSumExp(probs, qkv, batch, seq, heads, op);
            var output = Bf16Aligned(context.Slice(0, (long)batch * seq * heads * headDim), workspace, 0, op, fill: false);
            LaunchFlashForward(output, lse, qkv, attentionMask, batch, seq, heads, headDim, dropout);
            if (output.Address != context.Address) ConvertInto(context.Slice(0, output.Length), output);
            return;
        }
        long t = (long)batch * seq, hidden = (long)heads * headDim, z = (long)batch * heads;
        var ws = Layout(workspace, batch, seq, heads, headDim, op);
        var probsView = probs.Slice(0, z * seq * seq);

        SplitHeads(ws.Q, ws.K, ws.V, qkv, batch, seq, heads, headDim, 3);
        // Row-major scores_z[S, S] = q_z[S, HD]·k_z[S, HD]ᵀ / √HD, written straight into probs.
        float scale = 1f / MathF.Sqrt(headDim);
        _api.Gemm(GemmCall.RowMajor(false, true, seq, seq, headDim, scale,
            ws.Q, headDim, (long)seq * headDim, ws.K, headDim, (long)seq * headDim, 0f,
            probsView, seq, (long)seq * seq, (int)z, _options.Fp32Gemm));
        // Softmax in place, and in the same pass the dropped copy D the context GEMM reads (unless D is probs itself).
        bool separate = dropout.Active || probsView.DType != ws.Probs2.DType;
        var dropped = separate ? ws.Probs2.Slice(0, probsView.Length) : probsView;
        Launch(KernelCatalog.AttentionSoftmaxForward, RowGrid(z * seq), RowBlock,
            KernelArg.Ptr("probs", probsView), KernelArg.Type("probsType", probsView),
            KernelArg.Ptr("dropped", separate ? dropped.Address : 0UL), KernelArg.Type("droppedType", dropped),
            KernelArg.Ptr("mask", attentionMask),
            KernelArg.I32("batch", batch), KernelArg.I32("heads", heads), KernelArg.I32("seq", seq),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
        // Row-major ctx_z[S, HD] = D_z[S, S]·v_z[S, HD].
        _api.Gemm(GemmCall.RowMajor(false, false, seq, headDim, seq, 1f,
            dropped, seq, (long)seq * seq, ws.V, headDim, (long)seq * headDim, 0f,
            ws.Ctx, headDim, (long)seq * headDim, (int)z, _options.Fp32Gemm));
        MergeHeads(context, ws.Ctx, TensorRef.Null, TensorRef.Null, batch, seq, heads, headDim, 1);
    }

    public void AttentionBackward(TensorRef dQkv, TensorRef workspace,
        TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        using var _ = Op(nameof(AttentionBackward));
        const string op = nameof(AttentionBackward);
        var plan = Plan(batch, seq, heads, headDim);
        OpChecks.AttentionBackward(dQkv, workspace, plan, dContext, qkv, context, probs, attentionMask,
            batch, seq, heads, headDim, dropout, Activations);
        if (batch == 0 || seq == 0) return;
        CheckAttentionLimits(batch, seq, heads, headDim, op);
        long t = (long)batch * seq, hidden = (long)heads * headDim, z = (long)batch * heads;
        if (plan.Fused)
        {
            var lse = FusedLogSumExp(probs, qkv, batch, seq, heads, op);
            // The kernels read dContext and context as 16-byte bf16 rows: stage others in the workspace.
            var dO = Bf16Aligned(dContext.Slice(0, t * hidden), workspace, 0, op, fill: true);
            var o = Bf16Aligned(context.Slice(0, t * hidden), workspace, 1, op, fill: true);
            LaunchFlashBackward(dQkv, dO, o, lse, qkv, attentionMask, batch, seq, heads, headDim, dropout);
            return;
        }
        var ws = Layout(workspace, batch, seq, heads, headDim, op);
        var probsView = probs.Slice(0, z * seq * seq);
        long sHd = (long)seq * headDim, sS = (long)seq * seq;
        float scale = 1f / MathF.Sqrt(headDim);

        SplitHeads(ws.Q, ws.K, ws.V, qkv, batch, seq, heads, headDim, 3);
        SplitHeads(ws.Ctx, TensorRef.Null, TensorRef.Null, dContext, batch, seq, heads, headDim, 1);
        var dropped = DroppedProbs(ws.Probs2, probsView, dropout);
        // dv_z[S, HD] = D_z[S, S]ᵀ·dCtx_z[S, HD].
        _api.Gemm(GemmCall.RowMajor(true, false, seq, headDim, seq, 1f,
            dropped, seq, sS, ws.Ctx, headDim, sHd, 0f, ws.DV, headDim, sHd, (int)z, _options.Fp32Gemm));
        // dD_z[S, S] = dCtx_z[S, HD]·v_z[S, HD]ᵀ, into the D slot (D is not read after dv).
        var dScores = ws.Probs2.Slice(0, z * sS);
        _api.Gemm(GemmCall.RowMajor(false, true, seq, seq, headDim, 1f,
            ws.Ctx, headDim, sHd, ws.V, headDim, sHd, 0f, dScores, seq, sS, (int)z, _options.Fp32Gemm));
        Launch(KernelCatalog.AttentionSoftmaxBackward, RowGrid(z * seq), RowBlock,
            KernelArg.Ptr("dScores", dScores), KernelArg.Type("dScoresType", dScores),
            KernelArg.Ptr("probs", probsView), KernelArg.Type("probsType", probsView),
            KernelArg.I32("batch", batch), KernelArg.I32("heads", heads), KernelArg.I32("seq", seq),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
        // dq_z = dS_z·k_z / √HD; dk_z = dS_zᵀ·q_z / √HD.
        _api.Gemm(GemmCall.RowMajor(false, false, seq, headDim, seq, scale,
            dScores, seq, sS, ws.K, headDim, sHd, 0f, ws.DQ, headDim, sHd, (int)z, _options.Fp32Gemm));
        _api.Gemm(GemmCall.RowMajor(true, false, seq, headDim, seq, scale,
            dScores, seq, sS, ws.Q, headDim, sHd, 0f, ws.DK, headDim, sHd, (int)z, _options.Fp32Gemm));
        MergeHeads(dQkv, ws.DQ, ws.DK, ws.DV, batch, seq, heads, headDim, 3);
    }

    /// <summary>Head dimension the fused attention kernels support.</summary>
    public const int FlashHeadDim = 64;

    /// <summary>
    /// Fused (flash-style) attention forward, bf16 on tensor cores (Kernels/flash_attention.cu, issue 12):
    /// context[B·S, H] (BF16) = dropout(softmax(q·kᵀ/√64 with padded keys masked))·v for q, k, v read in
    /// place from qkv[B·S, 3H] (BF16), without a probabilities tensor; logSumExp[B·NH·S] (F32) receives each
    /// row's log Σ exp of the scaled scores over unmasked keys (+∞ when every key is masked), for a backward.
    /// Same results as <see cref="AttentionForward"/>'s context within bf16 rounding, with the same dropout
    /// mask (Philox index = flat index into probs [B, NH, S, S]). Head dimension 64, compute capability 8.0,
    /// qkv and context 16-byte aligned. The model reaches it through AttentionForward with CudaBackendOptions.FusedAttention.
    /// </summary>
    public void FlashAttentionForward(TensorRef context, TensorRef logSumExp, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        using var _ = Op(nameof(FlashAttentionForward));
        const string op = nameof(FlashAttentionForward);
        if (!CheckFlash(batch, seq, heads, headDim, dropout, op)) return;
        long t = (long)batch * seq, hidden = (long)heads * headDim;
        context.Require(t * hidden, DType.BF16, op, nameof(context));
        logSumExp.Require((long)batch * heads * seq, DType.F32, op, nameof(logSumExp));
        qkv.Require(t * 3 * hidden, DType.BF16, op, nameof(qkv));
        attentionMask.Require(t, DType.I32, op, nameof(attentionMask));
        RequireAligned16(qkv, op, nameof(qkv));
        RequireAligned16(context, op, nameof(context));
        LaunchFlashForward(context, logSumExp, qkv, attentionMask, batch, seq, heads, headDim, dropout);
    }

    private void LaunchFlashForward(TensorRef context, TensorRef logSumExp, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        var grid = new Dim3((uint)((seq + KernelCatalog.FlashRows - 1) / KernelCatalog.FlashRows), (uint)heads, (uint)batch);
        Launch(KernelCatalog.FlashAttentionForward, grid, new Dim3(KernelCatalog.FlashBlock),
            KernelArg.Ptr("context", context), KernelArg.Ptr("lse", logSumExp), KernelArg.Ptr("qkv", qkv),
            KernelArg.Ptr("mask", attentionMask), KernelArg.I32("batch", batch), KernelArg.I32("seq", seq),
            KernelArg.I32("heads", heads), KernelArg.F32("scale", 1f / MathF.Sqrt(headDim)),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
    }

    /// <summary>
    /// Backward of <see cref="FlashAttentionForward"/> (Kernels/flash_attention_backward.cu): dQkv[B·S, 3H]
    /// (F32 or BF16, overwritten) from dContext, the forward's context and logSumExp, qkv and the mask, with
    /// the same dropout. Deterministic: one kernel writes dK and dV (a block per 64 keys), another dQ (a block
    /// per 64 queries), without atomics. dContext and context BF16 and 16-byte aligned.
    /// </summary>
    public void FlashAttentionBackward(TensorRef dQkv, TensorRef dContext, TensorRef context, TensorRef logSumExp,
        TensorRef qkv, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        using var _ = Op(nameof(FlashAttentionBackward));
        const string op = nameof(FlashAttentionBackward);
        if (!CheckFlash(batch, seq, heads, headDim, dropout, op)) return;
        long t = (long)batch * seq, hidden = (long)heads * headDim;
        RequireAct(dQkv, t * 3 * hidden, op, nameof(dQkv));
        dContext.Require(t * hidden, DType.BF16, op, nameof(dContext));
        context.Require(t * hidden, DType.BF16, op, nameof(context));
        logSumExp.Require((long)batch * heads * seq, DType.F32, op, nameof(logSumExp));
        qkv.Require(t * 3 * hidden, DType.BF16, op, nameof(qkv));
        attentionMask.Require(t, DType.I32, op, nameof(attentionMask));
        RequireAligned16(qkv, op, nameof(qkv));
        RequireAligned16(dContext, op, nameof(dContext));
        LaunchFlashBackward(dQkv, dContext, context, logSumExp, qkv, attentionMask, batch, seq, heads, headDim, dropout);
    }

    private void LaunchFlashBackward(TensorRef dQkv, TensorRef dContext, TensorRef context, TensorRef logSumExp,
        TensorRef qkv, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        var grid = new Dim3((uint)((seq + KernelCatalog.FlashRows - 1) / KernelCatalog.FlashRows), (uint)heads, (uint)batch);
        foreach (var kernel in new[] { KernelCatalog.FlashAttentionBackwardDkDv, KernelCatalog.FlashAttentionBackwardDq })
            Launch(kernel, grid, new Dim3(KernelCatalog.FlashBlock),
                KernelArg.Ptr("dQkv", dQkv), KernelArg.Type("dQkvType", dQkv), KernelArg.Ptr("dContext", dContext),
                KernelArg.Ptr("context", context), KernelArg.Ptr("lse", logSumExp), KernelArg.Ptr("qkv", qkv),
                KernelArg.Ptr("mask", attentionMask), KernelArg.I32("batch", batch), KernelArg.I32("seq", seq),
                KernelArg.I32("heads", heads), KernelArg.F32("scale", 1f / MathF.Sqrt(headDim)),
                KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
    }

    /// <summary>The fused kernels' sizes and device; false for an empty call (0 rows: nothing to do).</summary>
    private bool CheckFlash(int batch, int seq, int heads, int headDim, DropoutSpec dropout, string op)
    {
        OpChecks.NonNegative(batch, op, nameof(batch));
        OpChecks.NonNegative(seq, op, nameof(seq));
        OpChecks.Positive(heads, op, nameof(heads));
        OpChecks.Dropout(dropout, op);
        if (headDim != FlashHeadDim)
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"{op}: the fused attention kernels support head dimension {FlashHeadDim} only");
        if (_api.Device.ComputeMajor < 8)
            throw new NotSupportedException($"{op}: the fused attention kernels need compute capability 8.0 or newer; " +
                $"{_api.Device.Name} has {_api.Device.ComputeMajor}.{_api.Device.ComputeMinor}");
        if (heads > 65535 || batch > 65535)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{op}: batch {batch} and heads {heads} must each be at most 65535");
        if (batch == 0 || seq == 0) return false;
        CheckAttentionLimits(batch, seq, heads, headDim, op);
        return true;
    }

    /// <summary>The fused path's logsumexp view of probs, after the kernels' preconditions on qkv and probs.</summary>
    private static TensorRef FusedLogSumExp(TensorRef probs, TensorRef qkv, int batch, int seq, int heads, string op)
    {
        if (qkv.DType != DType.BF16)
            throw new ArgumentException($"{op}: the fused attention (CudaBackendOptions.FusedAttention) reads qkv as BF16; qkv has dtype {qkv.DType}", nameof(qkv));
        RequireAligned16(qkv, op, nameof(qkv));
        RequireAligned16(probs, op, nameof(probs));
        return new TensorRef(probs.Address, (long)batch * heads * seq, DType.F32);
    }

    /// <summary><paramref name="view"/> itself when it is 16-byte aligned BF16, else BF16 slot <paramref name="slot"/>
    /// (of view's length) of the workspace, holding view's values when <paramref name="fill"/>.</summary>
    private TensorRef Bf16Aligned(TensorRef view, TensorRef workspace, int slot, string op, bool fill)
    {
        if (view.DType == DType.BF16 && (view.Address & 15) == 0) return view;
        RequireAligned16(workspace, op, nameof(workspace));
        var staged = new TensorRef(workspace.Address + (ulong)(slot * view.Length * DType.BF16.Size()), view.Length, DType.BF16);
        if (fill) ConvertInto(staged, view);
        return staged;
    }

    private static void RequireAligned16(TensorRef t, string op, string argument)
    {
        if ((t.Address & 15) != 0)
            throw new ArgumentException($"{op}: {argument} must be 16-byte aligned (address 0x{t.Address:x})", argument);
    }

    /// <summary>The kernels' index limits, beyond <see cref="OpChecks"/>'s rules.</summary>
    private static void CheckAttentionLimits(int batch, int seq, int heads, int headDim, string op)
    {
        if ((long)batch * heads > int.MaxValue || (long)batch * seq * 3 * heads * headDim > int.MaxValue * 16L)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{op}: attention sizes too large");
    }

    /// <summary>The probabilities the context GEMM multiplies: probs itself when no dropout is active and its
    /// type is the workspace's, otherwise dropout(probs) (or a converted copy) in the workspace.</summary>
    private TensorRef DroppedProbs(TensorRef slot, TensorRef probs, DropoutSpec dropout)
    {
        if (!dropout.Active && probs.DType == slot.DType) return probs;
        var d = slot.Slice(0, probs.Length);
        DropoutInto(d, probs, probs.Length, dropout);
        return d;
    }

    private void SplitHeads(TensorRef q, TensorRef k, TensorRef v, TensorRef input, int batch, int seq, int heads, int headDim, int parts)
    {
        long total = (long)batch * seq * parts * heads * headDim;
        Launch(KernelCatalog.AttentionSplitHeads, new Dim3(GridFor(total, 256)), new Dim3(256),
            KernelArg.Ptr("q", q), KernelArg.Ptr("k", k), KernelArg.Ptr("v", v), KernelArg.Type("outType", q),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
            KernelArg.I32("batch", batch), KernelArg.I32("seq", seq), KernelArg.I32("heads", heads),
            KernelArg.I32("headDim", headDim), KernelArg.I32("parts", parts));
    }

    private void MergeHeads(TensorRef output, TensorRef q, TensorRef k, TensorRef v, int batch, int seq, int heads, int headDim, int parts)
    {
        long total = (long)batch * seq * parts * heads * headDim;
        Launch(KernelCatalog.AttentionMergeHeads, new Dim3(GridFor(total, 256)), new Dim3(256),
            KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
            KernelArg.Ptr("q", q), KernelArg.Ptr("k", k), KernelArg.Ptr("v", v), KernelArg.Type("inType", q),
            KernelArg.I32("batch", batch), KernelArg.I32("seq", seq), KernelArg.I32("heads", heads),
            KernelArg.I32("headDim", headDim), KernelArg.I32("parts", parts));
    }

    public void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout)
    {
        using var _ = Op(nameof(Dropout));
        OpChecks.Dropout(output, input, count, dropout, Activations);
        if (count == 0) return;
        DropoutInto(output, input, count, dropout);
    }

    /// <summary>output[i] = dropout(input[i]) for i &lt; count (mask index i); a copy or conversion when inactive.</summary>
    private void DropoutInto(TensorRef output, TensorRef input, long count, DropoutSpec dropout)
    {
        if (!dropout.Active && output.DType == input.DType)
        {
            _api.Copy(output.Address, input.Address, count * input.DType.Size());
            return;
        }
        Launch(KernelCatalog.DropoutForward, new Dim3(GridFor((count + 3) / 4, 256)), new Dim3(256),
            KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input), KernelArg.I64("count", count),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
    }
}
