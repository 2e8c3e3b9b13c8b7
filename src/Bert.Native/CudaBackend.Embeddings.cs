using Bert.Runtime;

namespace Bert.Native;

// Embeddings: Kernels/embeddings.cu, with the LayerNorm backward of layernorm.cu and the column sums of reduce.cu.
public sealed partial class CudaBackend
{
    public void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb,
        TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout)
    {
        using var _ = Op(nameof(EmbeddingsForward));
        const string op = nameof(EmbeddingsForward);
        if (batch == 0) return;
        RequirePositive(batch, op, nameof(batch));
        RequirePositive(seq, op, nameof(seq));
        RequirePositive(hidden, op, nameof(hidden));
        long tokens = (long)batch * seq, h = hidden;
        if (tokens > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{op}: batch·seq exceeds 2^31");
        RequireAct(output, tokens * h, op, nameof(output));
        RequireAct(sum, tokens * h, op, nameof(sum));
        mean.Require(tokens, DType.F32, op, nameof(mean));
        rstd.Require(tokens, DType.F32, op, nameof(rstd));
        inputIds.Require(tokens, DType.I32, op, nameof(inputIds));
        tokenTypeIds.Require(tokens, DType.I32, op, nameof(tokenTypeIds));
        int vocab = TableRows(wordEmb, hidden, op, nameof(wordEmb));
        int maxPositions = TableRows(posEmb, hidden, op, nameof(posEmb));
        int typeVocab = TableRows(typeEmb, hidden, op, nameof(typeEmb));
        if (seq > maxPositions)
            throw new ArgumentOutOfRangeException(nameof(seq), seq, $"{op}: sequence length exceeds the {maxPositions} position embeddings");
        gamma.Require(h, DType.F32, op, nameof(gamma));
        beta.Require(h, DType.F32, op, nameof(beta));
        Launch(KernelCatalog.EmbeddingsForward, RowGrid(tokens), RowBlock,
            KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
            KernelArg.Ptr("sum", sum), KernelArg.Type("sumType", sum),
            KernelArg.Ptr("mean", mean), KernelArg.Ptr("rstd", rstd),
            KernelArg.Ptr("inputIds", inputIds), KernelArg.Ptr("tokenTypeIds", tokenTypeIds),
            KernelArg.Ptr("wordEmb", wordEmb), KernelArg.Ptr("posEmb", posEmb), KernelArg.Ptr("typeEmb", typeEmb),
            KernelArg.Ptr("gamma", gamma), KernelArg.Ptr("beta", beta),
            KernelArg.I32("tokens", (int)tokens), KernelArg.I32("seq", seq), KernelArg.I32("hidden", hidden),
            KernelArg.I32("vocab", vocab), KernelArg.I32("typeVocab", typeVocab), KernelArg.I32("maxPositions", maxPositions),
            KernelArg.F32("eps", eps),
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout));
    }

    public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout)
    {
        using var _ = Op(nameof(EmbeddingsBackward));
        const string op = nameof(EmbeddingsBackward);
        if (batch == 0) return;
        RequirePositive(batch, op, nameof(batch));
        RequirePositive(seq, op, nameof(seq));
        RequirePositive(hidden, op, nameof(hidden));
        long tokens = (long)batch * seq, h = hidden;
        if (tokens > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{op}: batch·seq exceeds 2^31");
        scratch.Require(tokens * h, DType.F32, op, nameof(scratch));
        RequireAct(dOutput, tokens * h, op, nameof(dOutput));
        RequireAct(sum, tokens * h, op, nameof(sum));
        mean.Require(tokens, DType.F32, op, nameof(mean));
        rstd.Require(tokens, DType.F32, op, nameof(rstd));
        inputIds.Require(tokens, DType.I32, op, nameof(inputIds));
        tokenTypeIds.Require(tokens, DType.I32, op, nameof(tokenTypeIds));
        gamma.Require(h, DType.F32, op, nameof(gamma));
        if (!dGamma.IsNull) dGamma.Require(h, DType.F32, op, nameof(dGamma));
        if (!dBeta.IsNull) dBeta.Require(h, DType.F32, op, nameof(dBeta));
        int vocab = dWordEmb.IsNull ? 0 : TableRows(dWordEmb, hidden, op, nameof(dWordEmb));
        int maxPositions = dPosEmb.IsNull ? seq : TableRows(dPosEmb, hidden, op, nameof(dPosEmb));
        int typeVocab = dTypeEmb.IsNull ? 0 : TableRows(dTypeEmb, hidden, op, nameof(dTypeEmb));
        if (seq > maxPositions)
            throw new ArgumentOutOfRangeException(nameof(seq), seq, $"{op}: sequence length exceeds the {maxPositions} position embeddings");

        // output = dropout(LN(sum)·gamma + beta): the LayerNorm sees dropout(dOutput).
        LayerNormParamGrads(dGamma, dBeta, dOutput, sum, mean, rstd, (int)tokens, hidden, dropout, op);
        var dSum = scratch.Slice(0, tokens * h);
        LayerNormBackwardRows(dSum, dOutput, sum, mean, rstd, gamma, (int)tokens, hidden, dropout);

        if (!dWordEmb.IsNull)
        {
            Launch(KernelCatalog.EmbeddingScatterAdd, new Dim3((uint)tokens), new Dim3(256),
                KernelArg.Ptr("table", dWordEmb), KernelArg.Ptr("dRows", dSum), KernelArg.Ptr("ids", inputIds),
                KernelArg.I32("tokens", (int)tokens), KernelArg.I32("hidden", hidden), KernelArg.I32("vocab", vocab));
        }
        // dPos[s, :] += Σ_b dSum[b·S + s, :]: a column sum over the batch of dSum viewed as [B, S·H].
        if (!dPosEmb.IsNull) ColumnSum(dPosEmb, dSum, batch, seq * h, TensorRef.Null, 0, op);
        // dType[k, :] += Σ over tokens of type k: one filtered column sum per type.
        for (int k = 0; k < typeVocab; k++)
            ColumnSum(dTypeEmb.Slice(k * h, h), dSum, (int)tokens, h, tokenTypeIds, k, op);
    }

    /// <summary>Rows of an embedding table F32[rows, hidden] (its length must be a multiple of hidden).</summary>
    private static int TableRows(TensorRef table, int hidden, string op, string argument)
    {
        if (table.IsNull) throw new ArgumentException($"{op}: {argument} is null", argument);
        if (table.DType != DType.F32) throw new ArgumentException($"{op}: {argument} has dtype {table.DType}, expected F32", argument);
        if (table.Length == 0 || table.Length % hidden != 0)
            throw new ArgumentException($"{op}: {argument} has {table.Length} elements, not a positive multiple of hidden = {hidden}", argument);
        long rows = table.Length / hidden;
        if (rows > int.MaxValue) throw new ArgumentException($"{op}: {argument} has more than 2^31 rows", argument);
        return (int)rows;
    }
}
