namespace Bert.Runtime.Cpu;

// Linear, LinearBackward, ActivationBackward: GEMMs on the active GEMM, epilogues row-parallel.
public sealed unsafe partial class CpuBackend
{
    public void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0)
    {
        ThrowIfDisposed();
        OpChecks.Linear(output, preActivation, input, weight, bias, rows, inFeatures, outFeatures, activation, Activations, outputStride);
        int ld = outputStride == 0 ? outFeatures : outputStride;  // padding columns [O, ld) are left alone
        // With no activation there is no pre-activation to save; a Null preActivation with an
        // activation (inference) computes in place in output.
        bool savePre = activation != Activation.None && !preActivation.IsNull;
        if (rows == 0) return;

        float* target = savePre ? F(preActivation) : F(output);
        // [N,O] = [N,K]·[O,K]ᵀ, rows ld apart
        Sgemm(false, true, rows, outFeatures, inFeatures, 1f, F(input), inFeatures, F(weight), inFeatures, 0f, target, ld);
        if (bias.IsNull && activation == Activation.None) return;

        int perChunk = RowsPerChunk(outFeatures);
        var job = new LinearEpilogueJob
        {
            Output = F(output), Target = target, Bias = bias.IsNull ? null : F(bias),
            Rows = rows, Columns = outFeatures, Stride = ld, RowsPerChunk = perChunk, Activation = activation,
        };
        _pool.Run(&job, CeilDiv(rows, perChunk));
    }

    /// <summary>target += bias; output = act(target) (in place when target is output).</summary>
    private struct LinearEpilogueJob : IChunkJob<LinearEpilogueJob>
    {
        public float* Output, Target, Bias;
        public int Rows, Columns, Stride, RowsPerChunk;
        public Activation Activation;

        public static void Execute(ref LinearEpilogueJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk);
            int o = job.Columns;
            for (int r = r0; r < r1; r++)
            {
                float* t = job.Target + (long)r * job.Stride;
                if (job.Bias != null) CpuMath.AddInPlace(t, job.Bias, o);
                if (job.Activation != Activation.None) CpuMath.Activate(job.Output + (long)r * job.Stride, t, o, job.Activation);
            }
        }
    }

    public void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias,
        TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0)
    {
        ThrowIfDisposed();
        OpChecks.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, rows, inFeatures, outFeatures, Activations, dOutputStride);
        if (rows == 0) return;
        int ld = dOutputStride == 0 ? outFeatures : dOutputStride;  // dOutput's padding columns [O, ld) are not read

        // dInput[N,K] (=|+=) dOutput[N,O]·weight[O,K]
        if (!dInput.IsNull)
            Sgemm(false, false, rows, inFeatures, outFeatures, 1f, F(dOutput), ld, F(weight), inFeatures,
                accumulateInput ? 1f : 0f, F(dInput), inFeatures);
        // dWeight[O,K] += dOutput[N,O]ᵀ·input[N,K]
        if (!dWeight.IsNull)
            Sgemm(true, false, outFeatures, inFeatures, rows, 1f, F(dOutput), ld, F(input), inFeatures, 1f, F(dWeight), inFeatures);
        if (!dBias.IsNull) ColumnSumsInto(F(dBias), F(dOutput), rows, outFeatures, ld);
    }

    /// <summary>dst[C] += Σ_n x[n,:] over <paramref name="rows"/> rows <paramref name="stride"/> apart (0: columns),
    /// reproducibly: fixed row chunks summed in row order, then the chunk partials in chunk order.</summary>
    private void ColumnSumsInto(float* dst, float* x, int rows, int columns, int stride = 0)
    {
        int perChunk = RowsPerChunk(columns);
        int chunks = CeilDiv(rows, perChunk);
        float* partials = (float*)_partials.Get((long)chunks * columns * sizeof(float));
        var job = new ColumnSumJob
        {
            X = x, Partials = partials, Rows = rows, Columns = columns, Stride = stride == 0 ? columns : stride, RowsPerChunk = perChunk,
        };
        _pool.Run(&job, chunks);
        ReducePartials(dst, partials, chunks, columns, columns);
    }

    private struct ColumnSumJob : IChunkJob<ColumnSumJob>
    {
        public float* X, Partials;
        public int Rows, Columns, Stride, RowsPerChunk;

        public static void Execute(ref ColumnSumJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk);
            float* partial = job.Partials + (long)chunk * job.Columns;
            new Span<float>(partial, job.Columns).Clear();
            for (int r = r0; r < r1; r++) CpuMath.AddInPlace(partial, job.X + (long)r * job.Stride, job.Columns);
        }
    }

    public void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation)
    {
        ThrowIfDisposed();
        OpChecks.ActivationBackward(dPre, dOut, pre, count, activation, Activations);
        if (count == 0 || (activation == Activation.None && dPre.Address == dOut.Address)) return;
        var job = new ActivationBackwardJob { DPre = F(dPre), DOut = F(dOut), Pre = F(pre), Count = count, Activation = activation };
        _pool.Run(&job, CeilDiv(count, ElementChunk));
    }

    private struct ActivationBackwardJob : IChunkJob<ActivationBackwardJob>
    {
        public float* DPre, DOut, Pre;
        public long Count;
        public Activation Activation;

        public static void Execute(ref ActivationBackwardJob job, int chunk, int worker)
        {
            long i0 = (long)chunk * ElementChunk, n = Math.Min(ElementChunk, job.Count - i0);
            CpuMath.ActivateBackward(job.DPre + i0, job.DOut + i0, job.Pre + i0, n, job.Activation);
        }
    }
}
