using Bert.Runtime;

namespace Bert.Native;

// LayerNorm family: Kernels/layernorm.cu (row kernels, gamma/beta partials) and reduce.cu (stage 2).
public sealed partial class CudaBackend
{
    private static readonly Dim3 RowBlock = new(KernelCatalog.RowBlock);

    /// <summary>Blocks of the one-warp-per-row kernels: 8 rows per block.</summary>
    private static Dim3 RowGrid(long rows) => new((uint)((rows + 7) / 8));

    public void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps)
    {
        using var _ = Op(nameof(LayerNorm));
        OpChecks.LayerNorm(output, mean, rstd, input, gamma, beta, rows, hidden, eps, Activations);
        if (rows == 0) return;
        Launch(KernelCatalog.LayerNormForward, RowGrid(rows), RowBlock,
            KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
            KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
            KernelArg.Ptr("gamma", gamma), KernelArg.Ptr("beta", beta),
            KernelArg.I32("rows", rows), KernelArg.I32("hidden", hidden), KernelArg.F32("eps", eps));
    }

    public void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef input, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden)
    {
        using var _ = Op(nameof(LayerNormBackward));
        const string op = nameof(LayerNormBackward);
        OpChecks.LayerNormBackward(dInput, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden, Activations);
        if (rows == 0) return;
        LayerNormBackwardAll(dInput, TensorRef.Null, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden, DropoutSpec.None, op);
    }

    public void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef residual, TensorRef branch, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps, DropoutSpec dropout)
    {
        using var _ = Op(nameof(ResidualLayerNorm));
        OpChecks.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, eps, dropout, Activations);
        if (rows == 0) return;
        Launch(KernelCatalog.ResidualLayerNormForward, RowGrid(rows), RowBlock,
            KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
            KernelArg.Ptr("sum", sum), KernelArg.Type("sumType", sum),
            KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd),
            KernelArg.Ptr("residual", residual), KernelArg.Type("residualType", residual),
            KernelArg.Ptr("branch", branch), KernelArg.Type("branchType", branch),
            KernelArg.Ptr("gamma", gamma), KernelArg.Ptr("beta", beta),
            KernelArg.I32("rows", rows), KernelArg.I32("hidden", hidden), KernelArg.F32("eps", eps),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
    }

    public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma,
        int rows, int hidden, DropoutSpec dropout)
    {
        using var _ = Op(nameof(ResidualLayerNormBackward));
        const string op = nameof(ResidualLayerNormBackward);
        OpChecks.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout, Activations);
        if (rows == 0) return;
        LayerNormBackwardAll(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout, op);
    }

    /// <summary>
    /// The LayerNorm backward of every op that has one: dIn[N,H] = LayerNorm backward of dy and dGamma[H] +=
    /// Σ_n dy·xhat, dBeta[H] += Σ_n dy (either may be Null), where dy = dropout(dOut) when dBranch is Null
    /// (embeddings: dropout after the LayerNorm) and dy = dOut otherwise, with dBranch = dropout(dIn)
    /// (post-LN residual: dropout on the branch). dIn may alias dOut.
    /// With H a multiple of 8, at most 1024, and the row tensors 16-byte aligned, one kernel does it all
    /// (16-byte accesses, the gamma/beta partial sums written by the row pass, one ordered stage 2); otherwise
    /// the parameter gradients take their own column pass first (they read dOut, which dIn may overwrite).
    /// </summary>
    private void LayerNormBackwardAll(TensorRef dIn, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOut, TensorRef input, TensorRef mean, TensorRef rstd, TensorRef gamma,
        int rows, int hidden, DropoutSpec dropout, string op)
    {
        if (FusedLayerNormBackwardApplies(hidden, dIn, dBranch, dOut, input))
        {
            bool grads = !dGamma.IsNull || !dBeta.IsNull;
            var (chunks, rowsPerChunk) = FusedLayerNormChunks(rows, hidden, grads, op);
            Launch(hidden <= 768 ? KernelCatalog.LayerNormBackwardFused : KernelCatalog.LayerNormBackwardFusedWide, new Dim3((uint)chunks), RowBlock,
                KernelArg.Ptr("dIn", dIn), KernelArg.Type("dInType", dIn),
                KernelArg.Ptr("dBranch", dBranch), KernelArg.I32("dBranchType", dBranch.IsNull ? 0 : TypeFlag(dBranch)),
                KernelArg.Ptr("dOut", dOut), KernelArg.Type("dOutType", dOut),
                KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
                KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd), KernelArg.Ptr("gamma", gamma),
                KernelArg.Ptr("partial", grads ? _reductionScratch : 0),
                KernelArg.I32("rows", rows), KernelArg.I32("hidden", hidden), KernelArg.I32("rowsPerChunk", rowsPerChunk),
                KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
            if (grads) ReducePartials(dGamma, dBeta, chunks, 2, hidden);
            return;
        }

        if (dBranch.IsNull)
        {
            LayerNormParamGrads(dGamma, dBeta, dOut, input, mean, rstd, rows, hidden, dropout, op);
            LayerNormBackwardRows(dIn, dOut, input, mean, rstd, gamma, rows, hidden, dropout);
            return;
        }
        LayerNormParamGrads(dGamma, dBeta, dOut, input, mean, rstd, rows, hidden, DropoutSpec.None, op);
        // dResidual and dBranch = dropout(dResidual) in one pass.
        Launch(KernelCatalog.ResidualLayerNormBackward, RowGrid(rows), RowBlock,
            KernelArg.Ptr("dResidual", dIn), KernelArg.Type("dResidualType", dIn),
            KernelArg.Ptr("dBranch", dBranch), KernelArg.Type("dBranchType", dBranch),
            KernelArg.Ptr("dOut", dOut), KernelArg.Type("dOutType", dOut),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
            KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd), KernelArg.Ptr("gamma", gamma),
            KernelArg.I32("rows", rows), KernelArg.I32("hidden", hidden),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
    }

    /// <summary>Whether <see cref="KernelCatalog.LayerNormBackwardFused"/> takes the rows: H a multiple of 8 and
    /// at most 1024 (a lane's 8-column groups of four 256-column tiles in registers), every row tensor
    /// 16-byte aligned (the generated arenas align every activation to 64 elements).</summary>
    internal static bool FusedLayerNormBackwardApplies(int hidden, TensorRef dIn, TensorRef dBranch, TensorRef dOut, TensorRef input) =>
        hidden % 8 == 0 && hidden <= 1024
        && ((dIn.Address | dOut.Address | input.Address | (dBranch.IsNull ? 0UL : dBranch.Address)) & 15UL) == 0;

    /// <summary>Rows per block of the fused LayerNorm backward: 32 (four per warp), more when the reduction
    /// scratch cannot hold 2·H partial sums for that many chunks or past 1024 chunks (stage 2 reads them all).
    /// Depends only on the shape and the scratch size, so results repeat exactly.</summary>
    private (int Chunks, int RowsPerChunk) FusedLayerNormChunks(int rows, int hidden, bool grads, string op)
    {
        long chunks = (rows + 31L) / 32;
        if (grads)
        {
            long capacity = ReductionScratchElements / (2L * hidden);
            if (capacity < 1)
                throw new InvalidOperationException(
                    $"{op}: a column reduction over {2L * hidden} partial sums exceeds the reduction scratch " +
                    $"({ReductionScratchElements} elements); raise CudaBackendOptions.ReductionScratchElements");
            chunks = Math.Min(chunks, Math.Min(1024, capacity));
        }
        int perChunk = (int)((rows + chunks - 1) / chunks);
        return ((rows + perChunk - 1) / perChunk, perChunk);
    }

    private static int TypeFlag(TensorRef t) => t.DType == DType.BF16 ? 1 : 0;

    /// <summary>dIn[N,H] = LayerNorm backward of dropout(dOut).</summary>
    private void LayerNormBackwardRows(TensorRef dIn, TensorRef dOut, TensorRef input, TensorRef mean, TensorRef rstd,
        TensorRef gamma, int rows, int hidden, DropoutSpec dropout)
    {
        Launch(KernelCatalog.LayerNormBackward, RowGrid(rows), RowBlock,
            KernelArg.Ptr("dIn", dIn), KernelArg.Type("dInType", dIn),
            KernelArg.Ptr("dOut", dOut), KernelArg.Type("dOutType", dOut),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
            KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd), KernelArg.Ptr("gamma", gamma),
            KernelArg.I32("rows", rows), KernelArg.I32("hidden", hidden),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
    }

    /// <summary>dGamma[H] += Σ_n dy·xhat, dBeta[H] += Σ_n dy with dy = dropout(dOut), in two deterministic
    /// stages. Either target may be Null (then only the other is kept; both Null: nothing).</summary>
    private void LayerNormParamGrads(TensorRef dGamma, TensorRef dBeta, TensorRef dOut, TensorRef input,
        TensorRef mean, TensorRef rstd, int rows, int hidden, DropoutSpec dropout, string op)
    {
        if (dGamma.IsNull && dBeta.IsNull) return;
        int chunks = ReductionChunks(rows, 2L * hidden, op);
        int rowsPerChunk = (rows + chunks - 1) / chunks;
        chunks = (rows + rowsPerChunk - 1) / rowsPerChunk;
        Launch(KernelCatalog.LayerNormParamGradPartial, new Dim3((uint)((hidden + 31) / 32), (uint)chunks), new Dim3(32, 8),
            KernelArg.Ptr("partial", _reductionScratch),
            KernelArg.Ptr("dOut", dOut), KernelArg.Type("dOutType", dOut),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
            KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd),
            KernelArg.I32("rows", rows), KernelArg.I32("hidden", hidden), KernelArg.I32("rowsPerChunk", rowsPerChunk),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
        ReducePartials(dGamma, dBeta, chunks, 2, hidden);
    }
}
