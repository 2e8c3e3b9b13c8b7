using System.Numerics;

namespace Bert.Runtime.Cpu;

// Dropout, GatherRows/ScatterAddRows, SoftmaxCrossEntropy, SquaredNorm, AdamW.
public sealed unsafe partial class CpuBackend
{
    // ---- dropout --------------------------------------------------------------------------------

    public void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout)
    {
        ThrowIfDisposed();
        OpChecks.Dropout(output, input, count, dropout, Activations);
        if (count == 0 || (!dropout.Active && output.Address == input.Address)) return;
        var job = new DropoutJob { Output = F(output), Input = F(input), Count = count, Dropout = dropout };
        _pool.Run(&job, CeilDiv(count, ElementChunk));
    }

    private struct DropoutJob : IChunkJob<DropoutJob>
    {
        public float* Output, Input;
        public long Count;
        public DropoutSpec Dropout;

        public static void Execute(ref DropoutJob job, int chunk, int worker)
        {
            long i0 = (long)chunk * ElementChunk, n = Math.Min(ElementChunk, job.Count - i0);
            if (job.Dropout.Active) DropoutKernel.Apply(job.Output + i0, job.Input + i0, n, i0, job.Dropout);
            else Buffer.MemoryCopy(job.Input + i0, job.Output + i0, n * sizeof(float), n * sizeof(float));
        }
    }

    // ---- gathers --------------------------------------------------------------------------------

    public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        ThrowIfDisposed();
        OpChecks.GatherRows(output, input, positions, batch, seq, count, hidden, Activations);
        CheckIndices(I(positions), (long)batch * count, seq, nameof(GatherRows), nameof(positions));
        int rows = batch * count;
        if (rows == 0) return;
        int perChunk = RowsPerChunk(hidden);
        var job = new GatherJob
        {
            Output = F(output), Input = F(input), Positions = I(positions),
            Rows = rows, Seq = seq, Count = count, Hidden = hidden, RowsPerChunk = perChunk,
        };
        _pool.Run(&job, CeilDiv(rows, perChunk));
    }

    private struct GatherJob : IChunkJob<GatherJob>
    {
        public float* Output, Input;
        public int* Positions;
        public int Rows, Seq, Count, Hidden, RowsPerChunk;

        public static void Execute(ref GatherJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk), h = job.Hidden;
            long bytes = (long)h * sizeof(float);
            for (int r = r0; r < r1; r++)
            {
                long source = (long)(r / job.Count) * job.Seq + job.Positions[r];
                Buffer.MemoryCopy(job.Input + source * h, job.Output + (long)r * h, bytes, bytes);
            }
        }
    }

    public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        ThrowIfDisposed();
        OpChecks.ScatterAddRows(dInput, dOutput, positions, batch, seq, count, hidden, Activations);
        CheckIndices(I(positions), (long)batch * count, seq, nameof(ScatterAddRows), nameof(positions));
        if (batch == 0 || count == 0) return;
        var job = new ScatterJob
        {
            DInput = F(dInput), DOutput = F(dOutput), Positions = I(positions), Seq = seq, Count = count, Hidden = hidden,
        };
        // One chunk per sequence: its rows are disjoint from every other sequence's, and repeated
        // positions within it are added in p order.
        _pool.Run(&job, batch);
    }

    private struct ScatterJob : IChunkJob<ScatterJob>
    {
        public float* DInput, DOutput;
        public int* Positions;
        public int Seq, Count, Hidden;

        public static void Execute(ref ScatterJob job, int chunk, int worker)
        {
            int h = job.Hidden;
            for (int p = 0; p < job.Count; p++)
            {
                long r = (long)chunk * job.Count + p;
                long target = (long)chunk * job.Seq + job.Positions[r];
                CpuMath.AddInPlace(job.DInput + target * h, job.DOutput + r * h, h);
            }
        }
    }

    // ---- loss -----------------------------------------------------------------------------------

    public void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default)
    {
        const string op = nameof(SoftmaxCrossEntropy);
        ThrowIfDisposed();
        OpChecks.SoftmaxCrossEntropy(dLogits, stats, logits, labels, weights, rows, classes, gradScale, Activations, stride, gradScaleOnDevice);
        if (!gradScaleOnDevice.IsNull)
        {
            gradScale = *F(gradScaleOnDevice);
            if (!float.IsFinite(gradScale))
                throw new ArgumentOutOfRangeException(nameof(gradScaleOnDevice), gradScale, $"{op}: gradScaleOnDevice holds {gradScale}; it must be finite");
        }
        int* label = I(labels);
        for (int r = 0; r < rows; r++)
        {
            if ((uint)label[r] >= (uint)classes)
                throw new ArgumentException($"{op}: labels[{r}] = {label[r]} is outside [0, {classes})", nameof(labels));
        }

        double* rowStats = (double*)_rowStats.Get((long)rows * 3 * sizeof(double));
        int perChunk = RowsPerChunk(classes);
        var job = new CrossEntropyJob
        {
            DLogits = F(dLogits), Logits = F(logits), Labels = label, Weights = weights.IsNull ? null : F(weights),
            RowStats = rowStats, Rows = rows, Classes = classes, Stride = stride == 0 ? classes : stride, RowsPerChunk = perChunk,
            GradScale = gradScale,
        };
        _pool.Run(&job, CeilDiv(rows, perChunk));

        double loss = 0, correct = 0, weight = 0;
        for (int r = 0; r < rows; r++)
        {
            loss += rowStats[3 * r];
            correct += rowStats[3 * r + 1];
            weight += rowStats[3 * r + 2];
        }
        float* s = F(stats);
        s[0] = (float)(gradScale * loss);
        s[1] = (float)correct;
        s[2] = (float)weight;
    }

    private struct CrossEntropyJob : IChunkJob<CrossEntropyJob>
    {
        public float* DLogits, Logits, Weights;
        public int* Labels;
        public double* RowStats;
        public int Rows, Classes, Stride, RowsPerChunk;
        public float GradScale;

        public static void Execute(ref CrossEntropyJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk), c = job.Classes;
            for (int r = r0; r < r1; r++)
            {
                float* x = job.Logits + (long)r * job.Stride;
                float* d = job.DLogits + (long)r * job.Stride;
                // The padding columns [C, stride) take no part in the loss; their gradient is 0.
                new Span<float>(d + c, job.Stride - c).Clear();
                double* st = job.RowStats + 3 * r;
                float w = job.Weights == null ? 1f : job.Weights[r];
                if (w == 0f)
                {
                    new Span<float>(d, c).Clear();
                    st[0] = st[1] = st[2] = 0;
                    continue;
                }
                int label = job.Labels[r];
                // Everything read from x happens before d (which may be x) is written.
                float max = CpuMath.Max(x, c, out int argMax);
                float atLabel = x[label];
                ExpShiftedInto(d, x, c, max);
                double sum = SumDouble(d, c);
                double ce = max + Math.Log(sum) - atLabel;
                float g = job.GradScale * w;
                float coef = (float)(g / sum);
                int wv = Vector<float>.Count, i = 0;
                var vc = new Vector<float>(coef);
                for (; i <= c - wv; i += wv) (Vector.Load(d + i) * vc).Store(d + i);
                for (; i < c; i++) d[i] *= coef;
                d[label] -= g;
                st[0] = w * ce;
                st[1] = argMax == label ? w : 0;
                st[2] = w;
            }
        }
    }

    /// <summary>d = exp(x − shift) (d may be x), the tail through the same vector code.</summary>
    private static void ExpShiftedInto(float* d, float* x, int n, float shift)
    {
        int w = Vector<float>.Count, c = 0;
        var vs = new Vector<float>(shift);
        for (; c <= n - w; c += w) CpuMath.Exp(Vector.Load(x + c) - vs).Store(d + c);
        if (c < n)
        {
            int rest = n - c;
            float* buffer = stackalloc float[w];
            for (int j = 0; j < w; j++) buffer[j] = j < rest ? x[c + j] : shift;
            CpuMath.Exp(Vector.Load(buffer) - vs).Store(buffer);
            for (int j = 0; j < rest; j++) d[c + j] = buffer[j];
        }
    }

    /// <summary>Σ x in double, lanes in a fixed order.</summary>
    private static double SumDouble(float* x, long n)
    {
        var acc0 = Vector<double>.Zero;
        var acc1 = Vector<double>.Zero;
        int w = Vector<float>.Count;
        long i = 0;
        for (; i <= n - w; i += w)
        {
            Vector.Widen(Vector.Load(x + i), out var lo, out var hi);
            acc0 += lo;
            acc1 += hi;
        }
        double s = Vector.Sum(acc0 + acc1);
        for (; i < n; i++) s += x[i];
        return s;
    }

    // ---- optimizer ------------------------------------------------------------------------------

    public void SquaredNorm(TensorRef result, TensorRef input, long count)
    {
        ThrowIfDisposed();
        OpChecks.SquaredNorm(result, input, count, Activations);
        int chunks = CeilDiv(count, ElementChunk);
        double* partials = (double*)_rowStats.Get(Math.Max(1, chunks) * (long)sizeof(double));
        var job = new SquaredNormJob { Input = F(input), Partials = partials, Count = count };
        _pool.Run(&job, chunks);
        double total = 0;
        for (int c = 0; c < chunks; c++) total += partials[c];
        F(result)[0] = (float)total;
    }

    private struct SquaredNormJob : IChunkJob<SquaredNormJob>
    {
        public float* Input;
        public double* Partials;
        public long Count;

        public static void Execute(ref SquaredNormJob job, int chunk, int worker)
        {
            long i0 = (long)chunk * ElementChunk;
            int n = (int)Math.Min(ElementChunk, job.Count - i0);
            float* x = job.Input + i0;
            var acc0 = Vector<double>.Zero;
            var acc1 = Vector<double>.Zero;
            int w = Vector<float>.Count, i = 0;
            for (; i <= n - w; i += w)
            {
                Vector.Widen(Vector.Load(x + i), out var lo, out var hi);
                acc0 = Vector.FusedMultiplyAdd(lo, lo, acc0);
                acc1 = Vector.FusedMultiplyAdd(hi, hi, acc1);
            }
            double s = Vector.Sum(acc0 + acc1);
            for (; i < n; i++) s += (double)x[i] * x[i];
            job.Partials[chunk] = s;
        }
    }

    public void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared,
        long count, in AdamWStep step)
    {
        ThrowIfDisposed();
        OpChecks.AdamW(param, grad, m, v, normSquared, count, step);
        float clip = 1f;
        if (!normSquared.IsNull)
        {
            double norm = Math.Sqrt(F(normSquared)[0]);
            clip = (float)Math.Min(1.0, step.MaxGradNorm / (norm + 1e-6));
        }
        var job = new AdamWJob
        {
            Param = F(param), Grad = F(grad), M = F(m), V = F(v), Count = count, Clip = clip,
            Lr = step.LearningRate, Beta1 = step.Beta1, Beta2 = step.Beta2, Eps = step.Epsilon, Decay = step.WeightDecay,
            Correction1 = StepScalars.BiasCorrection(step.Beta1, step.Step),
            Correction2 = StepScalars.BiasCorrection(step.Beta2, step.Step),
        };
        _pool.Run(&job, CeilDiv(count, ElementChunk));
    }

    public void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants)
    {
        ThrowIfDisposed();
        OpChecks.AdamWDevice(param, grad, m, v, normSquared, scalars, count, constants);
        // The host path's arithmetic exactly (clip in double, then the same job), so both paths agree bit for bit.
        if (count == 0) return;
        float normSq = F(normSquared)[0];
        if (!float.IsFinite(normSq)) return;
        float clip = 1f;
        if (constants.MaxGradNorm > 0f)
        {
            double norm = Math.Sqrt(normSq);
            clip = (float)Math.Min(1.0, constants.MaxGradNorm / (norm + 1e-6));
        }
        var s = StepScalars.Read(new ReadOnlySpan<float>(F(scalars), StepScalars.Length));
        var job = new AdamWJob
        {
            Param = F(param), Grad = F(grad), M = F(m), V = F(v), Count = count, Clip = clip,
            Lr = s.LearningRate, Beta1 = constants.Beta1, Beta2 = constants.Beta2, Eps = constants.Epsilon, Decay = constants.WeightDecay,
            Correction1 = s.BiasCorrection1, Correction2 = s.BiasCorrection2,
        };
        _pool.Run(&job, CeilDiv(count, ElementChunk));
    }

    private struct AdamWJob : IChunkJob<AdamWJob>
    {
        public float* Param, Grad, M, V;
        public long Count;
        public float Clip, Lr, Beta1, Beta2, Eps, Decay, Correction1, Correction2;

        public static void Execute(ref AdamWJob job, int chunk, int worker)
        {
            long i0 = (long)chunk * ElementChunk;
            int n = (int)Math.Min(ElementChunk, job.Count - i0);
            float* p = job.Param + i0, g = job.Grad + i0, m = job.M + i0, v = job.V + i0;
            float b1 = job.Beta1, b2 = job.Beta2, c1 = 1f - b1, c2 = 1f - b2;
            var vClip = new Vector<float>(job.Clip);
            var vB1 = new Vector<float>(b1);
            var vB2 = new Vector<float>(b2);
            var vC1 = new Vector<float>(c1);
            var vC2 = new Vector<float>(c2);
            var vBc1 = new Vector<float>(job.Correction1);
            var vBc2 = new Vector<float>(job.Correction2);
            var vEps = new Vector<float>(job.Eps);
            var vLr = new Vector<float>(job.Lr);
            var vDecay = new Vector<float>(job.Decay);
            int w = Vector<float>.Count, i = 0;
            for (; i <= n - w; i += w)
            {
                var gi = Vector.Load(g + i) * vClip;
                var mi = vB1 * Vector.Load(m + i) + vC1 * gi;
                var vi = vB2 * Vector.Load(v + i) + vC2 * (gi * gi);
                mi.Store(m + i);
                vi.Store(v + i);
                var pi = Vector.Load(p + i);
                var update = (mi / vBc1) / (Vector.SquareRoot(vi / vBc2) + vEps) + vDecay * pi;
                (pi - vLr * update).Store(p + i);
            }
            for (; i < n; i++)
            {
                float gi = g[i] * job.Clip;
                float mi = b1 * m[i] + c1 * gi;
                float vi = b2 * v[i] + c2 * (gi * gi);
                m[i] = mi;
                v[i] = vi;
                float update = (mi / job.Correction1) / (MathF.Sqrt(vi / job.Correction2) + job.Eps) + job.Decay * p[i];
                p[i] -= job.Lr * update;
            }
        }
    }
}
