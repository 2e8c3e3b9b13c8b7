using Bert.Runtime;

namespace Bert.Native;

// Linear layers: cuBLAS GEMMs plus the elementwise kernels of Kernels/elementwise.cu.
public sealed partial class CudaBackend
{
    public void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0)
    {
        using var _ = Op(nameof(Linear));
        OpChecks.Linear(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation, Activations, outputStride);
        if (rows == 0) return;
        if (outputStride != 0 && outputStride != outFeatures)
            LinearPadded(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation, outputStride);
        else
            LinearCore(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation);
    }

    /// <summary><see cref="Linear"/> on dense rows (checked by the caller; rows &gt; 0).</summary>
    private void LinearCore(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation)
    {
        const string op = nameof(Linear);
        long n = rows, k = inFeatures, o = outFeatures;

        // z[N,O] = input·Wᵀ (+ bias) goes to the pre-activation, or straight to the output without one
        // (the activation then runs in place: inference does not keep the pre-activation).
        var z = activation == Activation.None || preActivation.IsNull ? output : preActivation;

        if (_options.UseCublasLt && _api.SupportsLt && TryLinearLt(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation))
            return;

        float beta = 0f;
        if (!bias.IsNull)
        {
            // The bias enters as the GEMM's C with beta = 1: added in fp32 before the single rounding.
            Launch(KernelCatalog.BroadcastBias, new Dim3(GridFor(n * o, 256)), new Dim3(256),
                KernelArg.Ptr("out", z), KernelArg.Type("outType", z), KernelArg.Ptr("bias", bias),
                KernelArg.I64("rows", n), KernelArg.I32("cols", outFeatures));
            beta = 1f;
        }

        var gemmType = GemmType(input, weight, z);
        var plan = new ConversionPlan(this, op);
        var w = plan.Weight(weight, gemmType, nameof(weight));
        bool convertInput = input.DType != gemmType;
        int chunk = plan.ChunkRows(rows, convertInput ? k : 0);
        for (int r0 = 0; r0 < rows; r0 += chunk)
        {
            int r = Math.Min(chunk, rows - r0);
            var x = convertInput ? plan.Rows(input, r0, r, k, 0) : input.Slice(r0 * k, r * k);
            // Row-major z[r0:r0+r, O] = x[r, K]·W[O, K]ᵀ (+ z when beta = 1).
            _api.Gemm(GemmCall.RowMajor(false, true, r, outFeatures, inFeatures, 1f,
                x, inFeatures, 0, w, inFeatures, 0, beta, z.Slice(r0 * o, r * o), outFeatures, 0, 1, _options.Fp32Gemm));
        }

        if (activation != Activation.None)
        {
            Launch(KernelCatalog.ActivationForward, new Dim3(GridFor(n * o, 256)), new Dim3(256),
                KernelArg.Ptr("out", output), KernelArg.Type("outType", output),
                KernelArg.Ptr("pre", z), KernelArg.Type("preType", z),
                KernelArg.I64("count", n * o), KernelArg.I32("activation", (int)activation));
        }
    }

    /// <summary>Linear with a bias through one cuBLASLt call (BIAS, or GELU_AUX_BIAS for GeluTanh): fp32, or bf16
    /// (input and output BF16, weight and bias read from their bf16 shadows, fp32 accumulation, the bias added
    /// in fp32 before the single rounding). False when the case is not one it covers.</summary>
    private bool TryLinearLt(TensorRef output, TensorRef pre, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation)
    {
        if (bias.IsNull) return false;
        var type = output.DType;
        if (input.DType != type) return false;
        if (type == DType.BF16)
        {
            // Every operand 16-byte aligned, as the tensor-core kernels want (so the plan cached per shape, whose
            // heuristic saw the first call's pointers, suits every later call); the shadows follow their F32 buffers.
            if (weight.DType == DType.F32 && !TryShadow(weight, out weight)) return false;
            if (bias.DType == DType.F32 && !TryShadow(bias, out bias)) return false;
            ulong any = input.Address | output.Address | weight.Address | bias.Address | (pre.IsNull ? 0UL : pre.Address);
            if ((any & 15UL) != 0 || inFeatures % 8 != 0) return false;
        }
        else if (type != DType.F32) return false;
        if (weight.DType != type || bias.DType != type) return false;
        if (activation == Activation.GeluTanh)
        {
            // The aux (pre-activation) leading dimension must be a multiple of 8.
            if (pre.IsNull || pre.DType != type || outFeatures % 8 != 0) return false;
        }
        else if (activation != Activation.None) return false;
        // Column-major D[O×N] = op(W)[O×K]·X[K×N]: W stored K×O (transposed), X stored K×N.
        // False when cuBLASLt refuses the shape (logged once): the caller then runs the cuBLAS path.
        return _api.LtMatmul(new LtMatmulCall(true, false, outFeatures, rows, inFeatures,
            weight.Address, inFeatures, input.Address, inFeatures, output.Address, outFeatures,
            bias.Address, activation == Activation.GeluTanh ? pre.Address : 0,
            activation == Activation.GeluTanh ? LtEpilogue.GeluTanhAuxBias : LtEpilogue.Bias, type));
    }

    public void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias,
        TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0)
    {
        using var _ = Op(nameof(LinearBackward));
        const string op = nameof(LinearBackward);
        OpChecks.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, rows, inFeatures, outFeatures, Activations, dOutputStride);
        if (rows == 0) return;
        // dOutput's rows are ld apart (the padded logits' gradient); every GEMM reads its O columns only.
        long k = inFeatures, o = outFeatures, ld = dOutputStride == 0 ? outFeatures : dOutputStride;

        if (_options.UseCublasLt && _api.SupportsLt && TryWeightGradientLt(dWeight, dBias, dOutput, input, rows, inFeatures, outFeatures, (int)ld))
        {
            // dWeight and dBias are done; dInput below as usual.
            dWeight = TensorRef.Null;
            dBias = TensorRef.Null;
        }
        if (!dBias.IsNull) ColumnSum(dBias, dOutput, rows, o, TensorRef.Null, 0, op, ld);
        if (dWeight.IsNull && dInput.IsNull) return;

        var gemmType = GemmType(dOutput, dWeight.IsNull ? TensorRef.Null : input, dInput.IsNull ? TensorRef.Null : weight, dInput);
        var plan = new ConversionPlan(this, op);
        var w = dInput.IsNull ? TensorRef.Null : plan.Weight(weight, gemmType, nameof(weight));
        bool convertDOut = dOutput.DType != gemmType;
        bool convertInput = !dWeight.IsNull && input.DType != gemmType;
        int chunk = plan.ChunkRows(rows, (convertDOut ? ld : 0) + (convertInput ? k : 0));
        for (int r0 = 0; r0 < rows; r0 += chunk)
        {
            int r = Math.Min(chunk, rows - r0);
            var dy = convertDOut ? plan.Rows(dOutput, r0, r, ld, 0) : dOutput.Slice(r0 * ld, r * ld);
            if (!dWeight.IsNull)
            {
                var x = convertInput ? plan.Rows(input, r0, r, k, convertDOut ? r * ld : 0) : input.Slice(r0 * k, r * k);
                // Row-major dW[O, K] += dy[r, O]ᵀ·x[r, K].
                _api.Gemm(GemmCall.RowMajor(true, false, outFeatures, inFeatures, r, 1f,
                    dy, (int)ld, 0, x, inFeatures, 0, 1f, dWeight, inFeatures, 0, 1, _options.Fp32Gemm));
            }
            if (!dInput.IsNull)
            {
                // Row-major dX[r, K] (=|+=) dy[r, O]·W[O, K].
                _api.Gemm(GemmCall.RowMajor(false, false, r, inFeatures, outFeatures, 1f,
                    dy, (int)ld, 0, w, inFeatures, 0, accumulateInput ? 1f : 0f,
                    dInput.Slice(r0 * k, r * k), inFeatures, 0, 1, _options.Fp32Gemm));
            }
        }
    }

    /// <summary>The bf16 weight gradient with its bias gradient through one cuBLASLt matmul with the BGRADB
    /// epilogue: dWeight[O,K] += dOutputᵀ·input in fp32, and Σ_n dOutput[n,:] out of the same pass. BGRADB
    /// overwrites its output, so it goes to the F32 reduction scratch and one ordered pass adds it to dBias
    /// (parameter gradients accumulate). False when the case is not one it covers (F32, an operand not already
    /// BF16, unaligned operands, K or dOutput's row stride not a multiple of 8) or cuBLASLt refuses the shape.</summary>
    private bool TryWeightGradientLt(TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input,
        int rows, int inFeatures, int outFeatures, int ld)
    {
        if (dWeight.IsNull || dBias.IsNull || input.IsNull) return false;
        if (dOutput.DType != DType.BF16 || input.DType != DType.BF16 || dWeight.DType != DType.F32 || dBias.DType != DType.F32) return false;
        if (outFeatures > ReductionScratchElements) return false;
        if (((dOutput.Address | input.Address | dWeight.Address) & 15UL) != 0 || inFeatures % 8 != 0 || ld % 8 != 0) return false;
        // Column-major D[K×O] (= row-major dW[O,K]) += X[K×N]·op(dY)[N×O] with dY stored O×N (transposed); BGRADB
        // reduces op(B) = dYᵀ over the GEMM's k (the rows): scratch[O] = Σ_n dY[n, :].
        if (!_api.LtMatmul(new LtMatmulCall(false, true, inFeatures, outFeatures, rows,
                input.Address, inFeatures, dOutput.Address, ld, dWeight.Address, inFeatures,
                _reductionScratch, 0, LtEpilogue.BiasGradB, DType.BF16, DType.F32, Beta: 1f)))
            return false;
        // dBias[O] += scratch[O]: the reduction's stage 2 with one chunk, a fixed order.
        ReducePartials(dBias, TensorRef.Null, 1, 1, outFeatures);
        return true;
    }

    public void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation)
    {
        using var _ = Op(nameof(ActivationBackward));
        OpChecks.ActivationBackward(dPre, dOut, pre, count, activation, Activations);
        if (count == 0) return;
        Launch(KernelCatalog.ActivationBackward, new Dim3(GridFor(count, 256)), new Dim3(256),
            KernelArg.Ptr("dPre", dPre), KernelArg.Type("dPreType", dPre),
            KernelArg.Ptr("dOut", dOut), KernelArg.Type("dOutType", dOut),
            KernelArg.Ptr("pre", pre), KernelArg.Type("preType", pre),
            KernelArg.I64("count", count), KernelArg.I32("activation", (int)activation));
    }

    /// <summary>BF16 when any operand or the output is BF16 (cuBLAS then reads bf16 inputs and accumulates
    /// in fp32), F32 otherwise. Null views do not count.</summary>
    private static DType GemmType(params ReadOnlySpan<TensorRef> tensors)
    {
        foreach (var t in tensors) if (!t.IsNull && t.DType == DType.BF16) return DType.BF16;
        return DType.F32;
    }

    /// <summary>
    /// Brings GEMM operands to the GEMM's type. A weight uses its own storage when the type matches, its
    /// bf16 shadow when it has one, or a converted copy at the start of the conversion scratch; row
    /// operands are converted chunk by chunk into the rest of the scratch.
    /// </summary>
    private ref struct ConversionPlan(CudaBackend backend, string op)
    {
        private long _used;

        public TensorRef Weight(TensorRef weight, DType type, string argument)
        {
            if (weight.DType == type) return weight;
            if (type == DType.BF16 && backend.TryShadow(weight, out var shadow)) return shadow;
            if (weight.Length > backend._conversionElements - _used)
                throw new InvalidOperationException(
                    $"{op}: {argument} ({weight.Length} elements) must be converted to {type} but the conversion scratch holds " +
                    $"{backend._conversionElements}; allocate weights with a shadowed label (CudaBackendOptions.ShadowedLabels) " +
                    "or raise ConversionScratchElements");
            var converted = backend.Scratch(_used, weight.Length, type);
            backend.ConvertInto(converted, weight);
            _used += weight.Length;
            return converted;
        }

        /// <summary>Rows per chunk so that <paramref name="elementsPerRow"/> converted elements per row fit.</summary>
        public readonly int ChunkRows(int rows, long elementsPerRow)
        {
            if (elementsPerRow == 0) return rows;
            long free = backend._conversionElements - _used;
            long chunk = free / elementsPerRow;
            if (chunk < 1)
                throw new InvalidOperationException(
                    $"{op}: one row needs {elementsPerRow} converted elements but {free} of the conversion scratch are free; " +
                    "raise CudaBackendOptions.ConversionScratchElements");
            return (int)Math.Min(rows, chunk);
        }

        /// <summary>Rows [r0, r0 + count) of a [·, width] tensor converted into scratch at
        /// <paramref name="offset"/> past the weights.</summary>
        public readonly TensorRef Rows(TensorRef tensor, int r0, int count, long width, long offset)
        {
            // Only F32 → BF16 happens: an F32 GEMM has no BF16 operand to convert.
            var converted = backend.Scratch(_used + offset, count * width, DType.BF16);
            backend.ConvertInto(converted, tensor.Slice(r0 * width, count * width));
            return converted;
        }
    }

    /// <summary>A view of the conversion scratch (BF16 elements).</summary>
    private TensorRef Scratch(long offsetElements, long length, DType type)
    {
        if (type != DType.BF16 || offsetElements + length > _conversionElements)
            throw new InvalidOperationException($"conversion scratch: {length} {type} elements at {offsetElements} do not fit in {_conversionElements} BF16");
        return new TensorRef(_conversionScratch + (ulong)(offsetElements * 2), length, type);
    }
}
