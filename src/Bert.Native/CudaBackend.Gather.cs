using Bert.Runtime;

namespace Bert.Native;

// Masked-LM gathers: Kernels/gather.cu.
public sealed partial class CudaBackend
{
    public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        using var _ = Op(nameof(GatherRows));
        const string op = nameof(GatherRows);
        if (batch == 0 || count == 0) return;
        CheckGatherSizes(batch, seq, count, hidden, op);
        long rows = (long)batch * count, h = hidden;
        RequireAct(output, rows * h, op, nameof(output));
        RequireAct(input, (long)batch * seq * h, op, nameof(input));
        positions.Require(rows, DType.I32, op, nameof(positions));
        Launch(KernelCatalog.GatherRows, new Dim3(GridFor(rows * h, 256)), new Dim3(256),
            KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input), KernelArg.Ptr("positions", positions),
            KernelArg.I32("batch", batch), KernelArg.I32("seq", seq), KernelArg.I32("count", count), KernelArg.I32("hidden", hidden));
    }

    public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        using var _ = Op(nameof(ScatterAddRows));
        const string op = nameof(ScatterAddRows);
        if (batch == 0 || count == 0) return;
        CheckGatherSizes(batch, seq, count, hidden, op);
        long rows = (long)batch * count, h = hidden;
        RequireAct(dInput, (long)batch * seq * h, op, nameof(dInput));
        RequireAct(dOutput, rows * h, op, nameof(dOutput));
        positions.Require(rows, DType.I32, op, nameof(positions));
        Launch(KernelCatalog.ScatterAddRows, new Dim3((uint)rows), new Dim3(128),
            KernelArg.Ptr("dIn", dInput), KernelArg.Type("dInType", dInput),
            KernelArg.Ptr("dOut", dOutput), KernelArg.Type("dOutType", dOutput), KernelArg.Ptr("positions", positions),
            KernelArg.I32("batch", batch), KernelArg.I32("seq", seq), KernelArg.I32("count", count), KernelArg.I32("hidden", hidden));
    }

    private static void CheckGatherSizes(int batch, int seq, int count, int hidden, string op)
    {
        RequirePositive(batch, op, nameof(batch));
        RequirePositive(seq, op, nameof(seq));
        RequirePositive(count, op, nameof(count));
        RequirePositive(hidden, op, nameof(hidden));
        if ((long)batch * count > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(count), count, $"{op}: batch·count exceeds 2^31");
    }
}
