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
        // Parameter gradients first: they read dOutput, which dInput may overwrite.
        LayerNormParamGrads(dGamma, dBeta, dOutput, input, mean, rstd, rows, hidden, DropoutSpec.None, op);
        LayerNormBackwardRows(dInput, dOutput, input, mean, rstd, gamma, rows, hidden, DropoutSpec.None);
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
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
    }

    public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma,
        int rows, int hidden, DropoutSpec dropout)
    {
        using var _ = Op(nameof(ResidualLayerNormBackward));
        const string op = nameof(ResidualLayerNormBackward);
        OpChecks.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout, Activations);
        if (rows == 0) return;
        // Order matters: the parameter gradients read dOutput, which dResidual may overwrite; dBranch is
        // derived from dResidual.
        LayerNormParamGrads(dGamma, dBeta, dOutput, sum, mean, rstd, rows, hidden, DropoutSpec.None, op);
        // dResidual and dBranch = dropout(dResidual) in one pass.
        Launch(KernelCatalog.ResidualLayerNormBackward, RowGrid(rows), RowBlock,
            KernelArg.Ptr("dResidual", dResidual), KernelArg.Type("dResidualType", dResidual),
            KernelArg.Ptr("dBranch", dBranch), KernelArg.Type("dBranchType", dBranch),
            KernelArg.Ptr("dOut", dOutput), KernelArg.Type("dOutType", dOutput),
            KernelArg.Ptr("in", sum), KernelArg.Type("inType", sum),
            KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd), KernelArg.Ptr("gamma", gamma),
            KernelArg.I32("rows", rows), KernelArg.I32("hidden", hidden),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
    }

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
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
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
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
        ReducePartials(dGamma, dBeta, chunks, 2, hidden);
    }
}
