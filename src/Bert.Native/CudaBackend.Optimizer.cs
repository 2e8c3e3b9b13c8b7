using Bert.Runtime;

namespace Bert.Native;

// Global gradient norm and AdamW: Kernels/optimizer.cu.
public sealed partial class CudaBackend
{
    public void SquaredNorm(TensorRef result, TensorRef input, long count)
    {
        using var _ = Op(nameof(SquaredNorm));
        OpChecks.SquaredNorm(result, input, count, Activations);
        if (count == 0)
        {
            _api.Memset(result.Address, 0, 4);
            return;
        }
        // At least 8 elements per thread: fewer partials to add, and the fp64 adds are not the bottleneck.
        int blocks = (int)GridFor(count, 256 * 8, MaxReductionBlocks);
        Launch(KernelCatalog.SquaredNormPartial, new Dim3((uint)blocks), new Dim3(256),
            KernelArg.Ptr("partial", _doubleScratch), KernelArg.Ptr("in", input), KernelArg.Type("inType", input),
            KernelArg.I64("count", count));
        Launch(KernelCatalog.SquaredNormFinish, new Dim3(1), new Dim3(32),
            KernelArg.Ptr("result", result), KernelArg.Ptr("partial", _doubleScratch), KernelArg.I32("blocks", blocks));
    }

    public void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared,
        long count, in AdamWStep step)
    {
        using var _ = Op(nameof(AdamW));
        OpChecks.AdamW(param, grad, m, v, normSquared, count, step);
        if (count == 0) return;
        var range = param.Slice(0, count);
        // Inside a shadowed buffer the kernel writes the bf16 copy in the same pass; a range only partly
        // inside one is refreshed afterwards.
        var shadow = TryShadow(range, out var s) ? s : TensorRef.Null;
        float bc1 = StepScalars.BiasCorrection(step.Beta1, step.Step);
        float bc2 = StepScalars.BiasCorrection(step.Beta2, step.Step);
        Launch(KernelCatalog.AdamWStep, new Dim3(GridFor(count, 256)), new Dim3(256),
            KernelArg.Ptr("param", param), KernelArg.Ptr("shadow", shadow), KernelArg.Ptr("m", m), KernelArg.Ptr("v", v),
            KernelArg.Ptr("grad", grad), KernelArg.Ptr("normSquared", normSquared), KernelArg.I64("count", count),
            KernelArg.F32("lr", step.LearningRate), KernelArg.F32("beta1", step.Beta1), KernelArg.F32("beta2", step.Beta2),
            KernelArg.F32("eps", step.Epsilon), KernelArg.F32("weightDecay", step.WeightDecay),
            KernelArg.F32("bc1", bc1), KernelArg.F32("bc2", bc2), KernelArg.F32("maxNorm", step.MaxGradNorm));
        if (shadow.IsNull) RefreshShadow(range);
    }

    public void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants)
    {
        using var _ = Op(nameof(AdamWDevice));
        OpChecks.AdamWDevice(param, grad, m, v, normSquared, scalars, count, constants);
        if (count == 0) return;
        var range = param.Slice(0, count);
        var shadow = TryShadow(range, out var s) ? s : TensorRef.Null;
        Launch(KernelCatalog.AdamWDevice, new Dim3(GridFor(count, 256)), new Dim3(256),
            KernelArg.Ptr("param", param), KernelArg.Ptr("shadow", shadow), KernelArg.Ptr("m", m), KernelArg.Ptr("v", v),
            KernelArg.Ptr("grad", grad), KernelArg.Ptr("normSquared", normSquared), KernelArg.Ptr("scalars", scalars),
            KernelArg.I64("count", count), KernelArg.F32("beta1", constants.Beta1), KernelArg.F32("beta2", constants.Beta2),
            KernelArg.F32("eps", constants.Epsilon), KernelArg.F32("weightDecay", constants.WeightDecay),
            KernelArg.F32("maxNorm", constants.MaxGradNorm));
        // A skipped update (non-finite norm) leaves the weights as they were, so refreshing the shadow is harmless.
        if (shadow.IsNull) RefreshShadow(range);
    }
}
