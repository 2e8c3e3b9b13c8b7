using Bert.Runtime;

namespace Bert.Native;

// Softmax cross-entropy: Kernels/loss.cu.
public sealed partial class CudaBackend
{
    public void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default)
    {
        using var _ = Op(nameof(SoftmaxCrossEntropy));
        OpChecks.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale, Activations, stride, gradScaleOnDevice);
        if (rows == 0)
        {
            // Sums over no rows.
            _api.Memset(stats.Address, 0, 3 * 4);
            return;
        }
        int blocks = Math.Min(rows, MaxReductionBlocks);
        Launch(KernelCatalog.SoftmaxXentForwardBackward, new Dim3((uint)blocks), new Dim3(256),
            KernelArg.Ptr("dLogits", dLogits), KernelArg.Type("dLogitsType", dLogits), KernelArg.Ptr("partial", _doubleScratch),
            KernelArg.Ptr("logits", logits), KernelArg.Type("logitsType", logits),
            KernelArg.Ptr("labels", labels), KernelArg.Ptr("weights", weights),
            KernelArg.I32("rows", rows), KernelArg.I32("classes", classes), KernelArg.I32("stride", stride == 0 ? classes : stride),
            KernelArg.F32("gradScale", gradScale), KernelArg.Ptr("gradScaleOnDevice", gradScaleOnDevice));
        Launch(KernelCatalog.SoftmaxXentFinish, new Dim3(1), new Dim3(32),
            KernelArg.Ptr("stats", stats), KernelArg.Ptr("partial", _doubleScratch), KernelArg.I32("blocks", blocks));
    }
}
