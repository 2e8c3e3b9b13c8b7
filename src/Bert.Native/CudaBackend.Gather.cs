using Bert.Runtime;

namespace Bert.Native;

// Masked-LM gathers: Kernels/gather.cu.
public sealed partial class CudaBackend
{
    public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        using var _ = Op(nameof(GatherRows));
        OpChecks.GatherRows(output, input, positions, batch, seq, count, hidden, Activations);
        long rows = (long)batch * count, h = hidden;
        if (rows == 0) return;
        Launch(KernelCatalog.GatherRows, new Dim3(GridFor(rows * h, 256)), new Dim3(256),
            KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
            KernelArg.Ptr("in", input), KernelArg.Type("inType", input), KernelArg.Ptr("positions", positions),
            KernelArg.I32("batch", batch), KernelArg.I32("seq", seq), KernelArg.I32("count", count), KernelArg.I32("hidden", hidden));
    }

    public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        using var _ = Op(nameof(ScatterAddRows));
        OpChecks.ScatterAddRows(dInput, dOutput, positions, batch, seq, count, hidden, Activations);
        long rows = (long)batch * count;
        if (rows == 0) return;
        Launch(KernelCatalog.ScatterAddRows, new Dim3((uint)rows), new Dim3(128),
            KernelArg.Ptr("dIn", dInput), KernelArg.Type("dInType", dInput),
            KernelArg.Ptr("dOut", dOutput), KernelArg.Type("dOutType", dOutput), KernelArg.Ptr("positions", positions),
            KernelArg.I32("batch", batch), KernelArg.I32("seq", seq), KernelArg.I32("count", count), KernelArg.I32("hidden", hidden));
    }


}
