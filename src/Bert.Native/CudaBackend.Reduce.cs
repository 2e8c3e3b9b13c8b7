using Bert.Runtime;

namespace Bert.Native;

// Deterministic column reductions (Kernels/reduce.cu): bias gradients, position and token-type embedding
// gradients, stage 2 of the LayerNorm parameter gradients.
public sealed partial class CudaBackend
{
    /// <summary>Row chunks of a two-stage column reduction: about 64 rows each (enough blocks to fill the
    /// device), at most 256, and as many as the reduction scratch holds <paramref name="elementsPerChunk"/>
    /// partial sums for. Depends only on the shape, so results repeat exactly.</summary>
    private int ReductionChunks(int rows, long elementsPerChunk, string op)
    {
        long capacity = ReductionScratchElements / elementsPerChunk;
        if (capacity < 1)
            throw new InvalidOperationException(
                $"{op}: a column reduction over {elementsPerChunk} partial sums exceeds the reduction scratch " +
                $"({ReductionScratchElements} elements); raise CudaBackendOptions.ReductionScratchElements");
        long chunks = Math.Clamp((rows + 63L) / 64, 1, 256);
        return (int)Math.Min(chunks, capacity);
    }

    /// <summary>output[c] += Σ_r input[r, c] over r &lt; rows (only rows with filterIds[r] = filterValue when
    /// filterIds is not Null). input[rows, cols] row-major with rows <paramref name="ld"/> apart (0: cols), F32 or
    /// BF16; output F32[cols].</summary>
    private void ColumnSum(TensorRef output, TensorRef input, int rows, long cols, TensorRef filterIds, int filterValue, string op, long ld = 0)
    {
        if (rows == 0 || cols == 0) return;
        int chunks = ReductionChunks(rows, cols, op);
        int rowsPerChunk = (rows + chunks - 1) / chunks;
        chunks = (rows + rowsPerChunk - 1) / rowsPerChunk;
        Launch(KernelCatalog.ColumnSumPartial, new Dim3((uint)((cols + 31) / 32), (uint)chunks), new Dim3(32, 8),
            KernelArg.Ptr("partial", _reductionScratch),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
            KernelArg.I32("rows", rows), KernelArg.I64("cols", cols), KernelArg.I32("rowsPerChunk", rowsPerChunk),
            KernelArg.Ptr("filterIds", filterIds), KernelArg.I32("filterValue", filterValue), KernelArg.I64("ld", ld == 0 ? cols : ld));
        ReducePartials(output, TensorRef.Null, chunks, 1, cols);
    }

    /// <summary>Stage 2: out0[c] (and out1[c] when outputs = 2) += the chunk partials, in chunk order.</summary>
    private void ReducePartials(TensorRef out0, TensorRef out1, int chunks, int outputs, long cols)
    {
        Launch(KernelCatalog.ReducePartials, new Dim3(GridFor(cols, 256)), new Dim3(256),
            KernelArg.Ptr("out0", out0), KernelArg.Ptr("out1", out1), KernelArg.Ptr("partial", _reductionScratch),
            KernelArg.I32("chunks", chunks), KernelArg.I32("outputs", outputs), KernelArg.I64("cols", cols));
    }
}
