using Bert.Runtime;

namespace Bert.Native;

// Attention (Kernels/attention.cu around cuBLAS strided-batched GEMMs) and standalone dropout (elementwise.cu).
//
// Workspace (elements of the workspace's type W, T = B·S tokens, H = NH·HD), AttentionWorkspaceLength:
//   [0, 3TH)        q | k | v   [B·NH, S, HD] each, split from qkv
//   [3TH, 4TH)      context, or dContext in backward   [B·NH, S, HD]
//   [4TH, 7TH)      dq | dk | dv   (backward)
//   [7TH, +B·NH·S²) dropped probabilities D (forward and backward), then dScores in backward
// The forward's workspace content is not kept: the backward rebuilds q, k, v and D from qkv and probs,
// since every layer shares one workspace.
public sealed partial class CudaBackend
{
    public long AttentionWorkspaceLength(int batch, int seq, int heads, int headDim)
    {
        OpChecks.AttentionWorkspaceLength(batch, seq, heads, headDim);
        return WorkspaceElements(batch, seq, heads, headDim);
    }

    /// <summary><see cref="AttentionWorkspaceLength"/> without the checks (for <see cref="OpChecks"/>).</summary>
    private static long WorkspaceElements(int batch, int seq, int heads, int headDim)
    {
        long tokensHidden = (long)batch * seq * heads * headDim;
        return 7 * tokensHidden + (long)batch * heads * seq * seq;
    }

    private readonly record struct AttentionLayout(TensorRef Q, TensorRef K, TensorRef V, TensorRef Ctx,
        TensorRef DQ, TensorRef DK, TensorRef DV, TensorRef Probs2);

    private AttentionLayout Layout(TensorRef workspace, int batch, int seq, int heads, int headDim, string op)
    {
        long th = (long)batch * seq * heads * headDim;
        long need = AttentionWorkspaceLength(batch, seq, heads, headDim);
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
        OpChecks.AttentionForward(context, probs, workspace, WorkspaceElements(batch, seq, heads, headDim), qkv, attentionMask,
            batch, seq, heads, headDim, dropout, Activations);
        if (batch == 0 || seq == 0) return;
        CheckAttentionLimits(batch, seq, heads, headDim, op);
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
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
        // Row-major ctx_z[S, HD] = D_z[S, S]·v_z[S, HD].
        _api.Gemm(GemmCall.RowMajor(false, false, seq, headDim, seq, 1f,
            dropped, seq, (long)seq * seq, ws.V, headDim, (long)seq * headDim, 0f,
            ws.Ctx, headDim, (long)seq * headDim, (int)z, _options.Fp32Gemm));
        MergeHeads(context, ws.Ctx, TensorRef.Null, TensorRef.Null, batch, seq, heads, headDim, 1);
    }

    public void AttentionBackward(TensorRef dQkv, TensorRef workspace,
        TensorRef dContext, TensorRef qkv, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        using var _ = Op(nameof(AttentionBackward));
        const string op = nameof(AttentionBackward);
        OpChecks.AttentionBackward(dQkv, workspace, WorkspaceElements(batch, seq, heads, headDim), dContext, qkv, probs, attentionMask,
            batch, seq, heads, headDim, dropout, Activations);
        if (batch == 0 || seq == 0) return;
        CheckAttentionLimits(batch, seq, heads, headDim, op);
        long t = (long)batch * seq, hidden = (long)heads * headDim, z = (long)batch * heads;
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
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
        // dq_z = dS_z·k_z / √HD; dk_z = dS_zᵀ·q_z / √HD.
        _api.Gemm(GemmCall.RowMajor(false, false, seq, headDim, seq, scale,
            dScores, seq, sS, ws.K, headDim, sHd, 0f, ws.DQ, headDim, sHd, (int)z, _options.Fp32Gemm));
        _api.Gemm(GemmCall.RowMajor(true, false, seq, headDim, seq, scale,
            dScores, seq, sS, ws.Q, headDim, sHd, 0f, ws.DK, headDim, sHd, (int)z, _options.Fp32Gemm));
        MergeHeads(dQkv, ws.DQ, ws.DK, ws.DV, batch, seq, heads, headDim, 3);
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
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
    }
}
