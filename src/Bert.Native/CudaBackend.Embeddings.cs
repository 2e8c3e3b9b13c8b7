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
        OpChecks.EmbeddingsForward(output, sum, mean, rstd, inputIds, tokenTypeIds, wordEmb, posEmb, typeEmb, gamma, beta,
            batch, seq, hidden, eps, dropout, Activations);
        long tokens = (long)batch * seq;
        if (tokens == 0) return;
        int vocab = (int)(wordEmb.Length / hidden), maxPositions = (int)(posEmb.Length / hidden), typeVocab = (int)(typeEmb.Length / hidden);
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
            KernelArg.DropP(dropout), KernelArg.DropScale(dropout), KernelArg.Seed(dropout), KernelArg.Step(dropout), KernelArg.Stream(dropout), DropoutCounterArg);
    }

    public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout)
    {
        using var _ = Op(nameof(EmbeddingsBackward));
        const string op = nameof(EmbeddingsBackward);
        OpChecks.EmbeddingsBackward(dWordEmb, dPosEmb, dTypeEmb, dGamma, dBeta, scratch, dOutput, sum, mean, rstd,
            inputIds, tokenTypeIds, gamma, batch, seq, hidden, dropout, Activations);
        long tokens = (long)batch * seq, h = hidden;
        if (tokens == 0) return;
        int vocab = (int)(dWordEmb.Length / hidden), typeVocab = (int)(dTypeEmb.Length / hidden);

        // output = dropout(LN(sum)·gamma + beta): the LayerNorm sees dropout(dOutput).
        var dSum = scratch.Slice(0, tokens * h);
        LayerNormBackwardAll(dSum, TensorRef.Null, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, (int)tokens, hidden, dropout, op);

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


}
