using System.Runtime.InteropServices;
using Bert.Runtime;

namespace Bert.Tests.Cuda.Emulator;

/// <summary>
/// A deliberately naive IBackend for checking the CUDA backend without a GPU: host memory, fp64
/// arithmetic, loops written straight from the comments of <see cref="IBackend"/>. It shares no code
/// with the kernels (only the Philox dropout of Bert.Runtime, which the interface prescribes), so the
/// emulated CUDA backend agreeing with it checks the kernels' math, not just their plumbing. It is slow
/// and meant for the small sizes of KernelCheck only; the real CPU backend lives in Bert.Runtime.Cpu.
/// </summary>
internal sealed unsafe class ReferenceBackend : IBackend
{
    private readonly List<Buffer> _buffers = [];

    public string Name => "reference (fp64 loops)";

    public DType ComputeType => DType.F32;

    private sealed class Buffer(TensorRef view, string label) : DeviceBuffer(view, label)
    {
        public bool Freed;

        public override void Dispose()
        {
            if (Freed) return;
            Freed = true;
            NativeMemory.AlignedFree((void*)View.Address);
        }
    }

    public DeviceBuffer Allocate(long length, DType type, string label)
    {
        if (type != DType.F32 && type != DType.I32) throw new ArgumentException($"the reference stores F32 and I32, not {type}");
        long bytes = Math.Max(4, length * type.Size());
        var p = NativeMemory.AlignedAlloc((nuint)bytes, 64);
        NativeMemory.Clear(p, (nuint)bytes);
        var b = new Buffer(new TensorRef((ulong)p, length, type), label);
        _buffers.Add(b);
        return b;
    }

    private static Span<float> F(TensorRef t) => t.IsNull ? default : new Span<float>((void*)t.Address, checked((int)t.Length));

    private static Span<int> I(TensorRef t) => new((void*)t.Address, checked((int)t.Length));

    public void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged =>
        MemoryMarshal.AsBytes(source).CopyTo(new Span<byte>((void*)destination.Address, (int)destination.Bytes));

    public void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged =>
        new ReadOnlySpan<byte>((void*)source.Address, MemoryMarshal.AsBytes(destination).Length).CopyTo(MemoryMarshal.AsBytes(destination));

    public void Copy(TensorRef destination, TensorRef source) =>
        new ReadOnlySpan<byte>((void*)source.Address, (int)source.Bytes).CopyTo(new Span<byte>((void*)destination.Address, (int)destination.Bytes));

    public void Zero(TensorRef tensor) => new Span<byte>((void*)tensor.Address, (int)tensor.Bytes).Clear();

    public void Synchronize() { }

    private static double Act(double x, Activation a) => a switch
    {
        Activation.Gelu => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        Activation.GeluTanh => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
        Activation.Relu => Math.Max(0, x),
        Activation.Tanh => Math.Tanh(x),
        _ => x,
    };

    private static double ActGrad(double x, Activation a)
    {
        switch (a)
        {
            case Activation.Gelu:
                return 0.5 * (1 + Erf(x / Math.Sqrt(2))) + x * Math.Exp(-x * x / 2) / Math.Sqrt(2 * Math.PI);
            case Activation.GeluTanh:
            {
                double c = Math.Sqrt(2 / Math.PI), t = Math.Tanh(c * (x + 0.044715 * x * x * x));
                return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
            }
            case Activation.Relu: return x > 0 ? 1 : 0;
            case Activation.Tanh:
            {
                double t = Math.Tanh(x);
                return 1 - t * t;
            }
            default: return 1;
        }
    }

    /// <summary>erf to about 1e-15 (series below 3, continued fraction above).</summary>
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double r;
        if (ax < 3)
        {
            double term = ax, sum = ax;
            for (int n = 1; n < 200 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
            {
                term *= 2 * ax * ax / (2 * n + 1);
                sum += term;
            }
            r = 2 / Math.Sqrt(Math.PI) * Math.Exp(-ax * ax) * sum;
        }
        else
        {
            double f = 0;
            for (int n = 60; n >= 1; n--) f = n / 2.0 / (ax + f);
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + f);
        }
        return x < 0 ? -r : r;
    }

    private static double Drop(in DropoutSpec d, long index) => !d.Active ? 1 : d.Keep(index) ? d.Scale : 0;

    public void Linear(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int outputStride = 0)
    {
        int ld = outputStride == 0 ? outFeatures : outputStride;
        var x = F(input); var w = F(weight); var b = F(bias); var y = F(output); var pre = F(preActivation);
        for (int n = 0; n < rows; n++)
            for (int o = 0; o < outFeatures; o++)
            {
                double z = b.IsEmpty ? 0 : b[o];
                for (int k = 0; k < inFeatures; k++) z += (double)x[n * inFeatures + k] * w[o * inFeatures + k];
                if (activation != Activation.None) pre[n * ld + o] = (float)z;
                y[n * ld + o] = (float)Act((float)z, activation);
            }
    }

    public void LinearBackward(TensorRef dInput, TensorRef dWeight, TensorRef dBias, TensorRef dOutput, TensorRef input, TensorRef weight,
        int rows, int inFeatures, int outFeatures, bool accumulateInput, int dOutputStride = 0)
    {
        int ld = dOutputStride == 0 ? outFeatures : dOutputStride;
        var dy = F(dOutput); var x = F(input); var w = F(weight);
        if (!dWeight.IsNull)
        {
            var dw = F(dWeight);
            for (int o = 0; o < outFeatures; o++)
                for (int k = 0; k < inFeatures; k++)
                {
                    double s = 0;
                    for (int n = 0; n < rows; n++) s += (double)dy[n * ld + o] * x[n * inFeatures + k];
                    dw[o * inFeatures + k] = (float)(dw[o * inFeatures + k] + s);
                }
        }
        if (!dBias.IsNull)
        {
            var db = F(dBias);
            for (int o = 0; o < outFeatures; o++)
            {
                double s = 0;
                for (int n = 0; n < rows; n++) s += dy[n * ld + o];
                db[o] = (float)(db[o] + s);
            }
        }
        if (!dInput.IsNull)
        {
            var dx = F(dInput);
            for (int n = 0; n < rows; n++)
                for (int k = 0; k < inFeatures; k++)
                {
                    double s = accumulateInput ? dx[n * inFeatures + k] : 0;
                    for (int o = 0; o < outFeatures; o++) s += (double)dy[n * ld + o] * w[o * inFeatures + k];
                    dx[n * inFeatures + k] = (float)s;
                }
        }
    }

    public void ActivationBackward(TensorRef dPre, TensorRef dOut, TensorRef pre, long count, Activation activation)
    {
        var dp = F(dPre); var dy = F(dOut); var z = F(pre);
        for (int i = 0; i < count; i++) dp[i] = (float)(dy[i] * ActGrad(z[i], activation));
    }

    /// <summary>y[n,:] = (x − mean)·rstd·gamma + beta with biased variance over the row.</summary>
    private static void Normalize(Span<float> y, Span<float> mean, Span<float> rstd, ReadOnlySpan<float> x,
        ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, int rows, int h, float eps, in DropoutSpec outputDropout)
    {
        for (int n = 0; n < rows; n++)
        {
            double mu = 0;
            for (int j = 0; j < h; j++) mu += x[n * h + j];
            mu /= h;
            double v = 0;
            for (int j = 0; j < h; j++) v += (x[n * h + j] - mu) * (x[n * h + j] - mu);
            double rs = 1 / Math.Sqrt(v / h + eps);
            for (int j = 0; j < h; j++)
                y[n * h + j] = (float)(((x[n * h + j] - mu) * rs * gamma[j] + beta[j]) * Drop(outputDropout, (long)n * h + j));
            mean[n] = (float)mu;
            rstd[n] = (float)rs;
        }
    }

    /// <summary>dx = LayerNorm backward of dy·mask; dGamma, dBeta +=.</summary>
    private static void NormalizeBackward(Span<float> dx, Span<float> dGamma, Span<float> dBeta, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> x, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, ReadOnlySpan<float> gamma, int rows, int h,
        in DropoutSpec outputDropout)
    {
        var dg = new double[h];
        var db = new double[h];
        var g = new double[h];
        var xhat = new double[h];
        for (int n = 0; n < rows; n++)
        {
            double a = 0, b = 0;
            for (int j = 0; j < h; j++)
            {
                double dy = dOut[n * h + j] * Drop(outputDropout, (long)n * h + j);
                xhat[j] = (x[n * h + j] - mean[n]) * rstd[n];
                g[j] = dy * gamma[j];
                dg[j] += dy * xhat[j];
                db[j] += dy;
                a += g[j];
                b += g[j] * xhat[j];
            }
            for (int j = 0; j < h; j++) dx[n * h + j] = (float)(rstd[n] * (g[j] - a / h - xhat[j] * b / h));
        }
        for (int j = 0; j < h; j++)
        {
            if (!dGamma.IsEmpty) dGamma[j] = (float)(dGamma[j] + dg[j]);
            if (!dBeta.IsEmpty) dBeta[j] = (float)(dBeta[j] + db[j]);
        }
    }

    public void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds,
        TensorRef tokenTypeIds, TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb, TensorRef gamma, TensorRef beta,
        int batch, int seq, int hidden, float eps, DropoutSpec dropout)
    {
        var s = F(sum); var ids = I(inputIds); var types = I(tokenTypeIds);
        var we = F(wordEmb); var pe = F(posEmb); var te = F(typeEmb);
        int tokens = batch * seq;
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < hidden; j++)
                s[t * hidden + j] = we[ids[t] * hidden + j] + pe[t % seq * hidden + j] + te[types[t] * hidden + j];
        Normalize(F(output), F(mean), F(rstd), s, F(gamma), F(beta), tokens, hidden, eps, dropout);
    }

    public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef inputIds, TensorRef tokenTypeIds,
        TensorRef gamma, int batch, int seq, int hidden, DropoutSpec dropout)
    {
        int tokens = batch * seq;
        var ds = F(scratch);
        NormalizeBackward(ds, F(dGamma), F(dBeta), F(dOutput), F(sum), F(mean), F(rstd), F(gamma), tokens, hidden, dropout);
        var ids = I(inputIds); var types = I(tokenTypeIds);
        var dw = F(dWordEmb); var dp = F(dPosEmb); var dt = F(dTypeEmb);
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < hidden; j++)
            {
                float g = ds[t * hidden + j];
                dw[ids[t] * hidden + j] += g;
                dp[t % seq * hidden + j] += g;
                dt[types[t] * hidden + j] += g;
            }
    }

    public void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps) =>
        Normalize(F(output), F(mean), F(rstd), F(input), F(gamma), F(beta), rows, hidden, eps, DropoutSpec.None);

    public void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput, TensorRef input,
        TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden)
    {
        var dx = new float[(long)rows * hidden];
        NormalizeBackward(dx, F(dGamma), F(dBeta), F(dOutput), F(input), F(mean), F(rstd), F(gamma), rows, hidden, DropoutSpec.None);
        dx.CopyTo(F(dInput));
    }

    public void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef residual, TensorRef branch,
        TensorRef gamma, TensorRef beta, int rows, int hidden, float eps, DropoutSpec dropout)
    {
        var s = F(sum); var r = F(residual); var b = F(branch);
        for (int i = 0; i < rows * hidden; i++) s[i] = (float)(r[i] + b[i] * Drop(dropout, i));
        Normalize(F(output), F(mean), F(rstd), s, F(gamma), F(beta), rows, hidden, eps, DropoutSpec.None);
    }

    public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta, TensorRef dOutput,
        TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden, DropoutSpec dropout)
    {
        var ds = new float[(long)rows * hidden];
        NormalizeBackward(ds, F(dGamma), F(dBeta), F(dOutput), F(sum), F(mean), F(rstd), F(gamma), rows, hidden, DropoutSpec.None);
        var dr = F(dResidual); var db = F(dBranch);
        for (int i = 0; i < rows * hidden; i++)
        {
            dr[i] = ds[i];
            db[i] = (float)(ds[i] * Drop(dropout, i));
        }
    }

    public AttentionPlan PlanAttention(int batch, int seq, int heads, int headDim) =>
        new(AttentionPlan.ProbabilitiesLength(batch, seq, heads), 1, Fused: false);

    public void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace, TensorRef qkv, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        var x = F(qkv); var mask = I(attentionMask); var p = F(probs); var ctx = F(context);
        int h = heads * headDim;
        double scale = 1 / Math.Sqrt(headDim);
        for (int b = 0; b < batch; b++)
            for (int hd = 0; hd < heads; hd++)
                for (int i = 0; i < seq; i++)
                {
                    long row = ((long)(b * heads + hd) * seq + i) * seq;
                    var score = new double[seq];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < seq; j++)
                    {
                        if (mask[b * seq + j] == 0) continue;
                        double s = 0;
                        for (int d = 0; d < headDim; d++)
                            s += (double)x[(b * seq + i) * 3 * h + hd * headDim + d] * x[(b * seq + j) * 3 * h + h + hd * headDim + d];
                        score[j] = s * scale;
                        max = Math.Max(max, score[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < seq; j++) if (mask[b * seq + j] != 0) sum += Math.Exp(score[j] - max);
                    for (int j = 0; j < seq; j++) p[(int)row + j] = mask[b * seq + j] != 0 ? (float)(Math.Exp(score[j] - max) / sum) : 0f;
                    for (int d = 0; d < headDim; d++)
                    {
                        double c = 0;
                        for (int j = 0; j < seq; j++)
                            c += p[(int)row + j] * Drop(dropout, row + j) * x[(b * seq + j) * 3 * h + 2 * h + hd * headDim + d];
                        ctx[(b * seq + i) * h + hd * headDim + d] = (float)c;
                    }
                }
    }

    public void AttentionBackward(TensorRef dQkv, TensorRef workspace, TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs,
        TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        var x = F(qkv); var p = F(probs); var dctx = F(dContext); var dx = F(dQkv);
        int h = heads * headDim;
        double scale = 1 / Math.Sqrt(headDim);
        dx.Clear();
        for (int b = 0; b < batch; b++)
            for (int hd = 0; hd < heads; hd++)
                for (int i = 0; i < seq; i++)
                {
                    long row = ((long)(b * heads + hd) * seq + i) * seq;
                    var dp = new double[seq];
                    double dot = 0;
                    for (int j = 0; j < seq; j++)
                    {
                        double m = Drop(dropout, row + j);
                        double g = 0;
                        for (int d = 0; d < headDim; d++)
                        {
                            double dc = dctx[(b * seq + i) * h + hd * headDim + d];
                            g += dc * x[(b * seq + j) * 3 * h + 2 * h + hd * headDim + d];
                            // dV[j] += (P·mask)[i,j]·dCtx[i]
                            dx[(b * seq + j) * 3 * h + 2 * h + hd * headDim + d] += (float)(p[(int)row + j] * m * dc);
                        }
                        dp[j] = g * m;
                        dot += dp[j] * p[(int)row + j];
                    }
                    for (int j = 0; j < seq; j++)
                    {
                        double ds = p[(int)row + j] * (dp[j] - dot) * scale;
                        for (int d = 0; d < headDim; d++)
                        {
                            dx[(b * seq + i) * 3 * h + hd * headDim + d] += (float)(ds * x[(b * seq + j) * 3 * h + h + hd * headDim + d]);
                            dx[(b * seq + j) * 3 * h + h + hd * headDim + d] += (float)(ds * x[(b * seq + i) * 3 * h + hd * headDim + d]);
                        }
                    }
                }
    }

    public void Dropout(TensorRef output, TensorRef input, long count, DropoutSpec dropout)
    {
        var y = F(output); var x = F(input);
        for (int i = 0; i < count; i++) y[i] = (float)(x[i] * Drop(dropout, i));
    }

    public void GatherRows(TensorRef output, TensorRef input, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        var y = F(output); var x = F(input); var pos = I(positions);
        for (int r = 0; r < batch * count; r++)
            for (int j = 0; j < hidden; j++) y[r * hidden + j] = x[(r / count * seq + pos[r]) * hidden + j];
    }

    public void ScatterAddRows(TensorRef dInput, TensorRef dOutput, TensorRef positions, int batch, int seq, int count, int hidden)
    {
        var dx = F(dInput); var dy = F(dOutput); var pos = I(positions);
        for (int r = 0; r < batch * count; r++)
            for (int j = 0; j < hidden; j++) dx[(r / count * seq + pos[r]) * hidden + j] += dy[r * hidden + j];
    }

    public void SoftmaxCrossEntropy(TensorRef dLogits, TensorRef stats, TensorRef logits, TensorRef labels, TensorRef weights,
        int rows, int classes, float gradScale, int stride = 0, TensorRef gradScaleOnDevice = default)
    {
        int ld = stride == 0 ? classes : stride;
        if (!gradScaleOnDevice.IsNull) gradScale = F(gradScaleOnDevice)[0];
        var z = F(logits); var g = F(dLogits); var y = I(labels); var w = F(weights); var st = F(stats);
        double loss = 0, correct = 0, total = 0;
        var row = new double[classes];
        for (int n = 0; n < rows; n++)
        {
            double wn = w.IsEmpty ? 1 : w[n];
            double max = double.NegativeInfinity;
            int arg = 0;
            for (int c = 0; c < classes; c++)
            {
                row[c] = z[n * ld + c];
                if (row[c] > max) { max = row[c]; arg = c; }
            }
            double sum = 0;
            for (int c = 0; c < classes; c++) sum += Math.Exp(row[c] - max);
            loss += wn * (max + Math.Log(sum) - row[y[n]]);
            correct += arg == y[n] ? wn : 0;
            total += wn;
            for (int c = 0; c < classes; c++)
                g[n * ld + c] = (float)(gradScale * wn * (Math.Exp(row[c] - max) / sum - (c == y[n] ? 1 : 0)));
            for (int c = classes; c < ld; c++) g[n * ld + c] = 0;
        }
        st[0] = (float)(gradScale * loss);
        st[1] = (float)correct;
        st[2] = (float)total;
    }

    public void SquaredNorm(TensorRef result, TensorRef input, long count)
    {
        var x = F(input);
        double s = 0;
        for (int i = 0; i < count; i++) s += (double)x[i] * x[i];
        F(result)[0] = (float)s;
    }

    public void AdamW(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, long count, in AdamWStep step)
    {
        var p = F(param); var g = F(grad); var mm = F(m); var vv = F(v);
        double clip = normSquared.IsNull ? 1 : Math.Min(1, step.MaxGradNorm / (Math.Sqrt(F(normSquared)[0]) + 1e-6));
        double bc1 = 1 - Math.Pow(step.Beta1, step.Step), bc2 = 1 - Math.Pow(step.Beta2, step.Step);
        for (int i = 0; i < count; i++)
        {
            double gi = g[i] * clip;
            double mi = step.Beta1 * (double)mm[i] + (1 - step.Beta1) * gi;
            double vi = step.Beta2 * (double)vv[i] + (1 - step.Beta2) * gi * gi;
            mm[i] = (float)mi;
            vv[i] = (float)vi;
            p[i] = (float)(p[i] - step.LearningRate * (mi / bc1 / (Math.Sqrt(vi / bc2) + step.Epsilon) + step.WeightDecay * p[i]));
        }
    }

    public void AdamWDevice(TensorRef param, TensorRef grad, TensorRef m, TensorRef v, TensorRef normSquared, TensorRef scalars,
        long count, in AdamWConstants constants)
    {
        float n2 = F(normSquared)[0];
        if (!float.IsFinite(n2)) return;
        var s = StepScalars.Read(F(scalars));
        var p = F(param); var g = F(grad); var mm = F(m); var vv = F(v);
        double clip = constants.MaxGradNorm > 0 ? Math.Min(1, constants.MaxGradNorm / (Math.Sqrt(n2) + 1e-6)) : 1;
        for (int i = 0; i < count; i++)
        {
            double gi = g[i] * clip;
            double mi = constants.Beta1 * (double)mm[i] + (1 - constants.Beta1) * gi;
            double vi = constants.Beta2 * (double)vv[i] + (1 - constants.Beta2) * gi * gi;
            mm[i] = (float)mi;
            vv[i] = (float)vi;
            p[i] = (float)(p[i] - s.LearningRate * (mi / s.BiasCorrection1 / (Math.Sqrt(vi / s.BiasCorrection2) + constants.Epsilon)
                                                    + constants.WeightDecay * p[i]));
        }
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
    }
}
