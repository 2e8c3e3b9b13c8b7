using Bert.Runtime;

namespace Bert.Tests.Ops;

/// <summary>
/// Naive double-precision reference of every IBackend op, written straight from the interface's
/// comments (loops, no vectorization, no fusion), plus central finite differences. The op tests
/// compare each backend with these; backward ops are checked against finite differences of the
/// reference forward, which in fp64 are accurate to ~1e-9.
/// Dropout uses <see cref="DropoutSpec.Keep"/> with the index conventions of the backends.
/// </summary>
public static class Reference
{
    // ---- scalar functions -------------------------------------------------------------------------

    /// <summary>erf by the series 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3·…·(2n+1)), whose terms are all
    /// positive (no cancellation): relative error ~1e-16 for |x| ≤ 6; ±1 beyond (erfc(6) ≈ 2e-17).</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        double ax = Math.Abs(x);
        if (ax > 6) return Math.Sign(x);
        double term = ax, sum = ax;
        for (int n = 1; n < 1000; n++)
        {
            term *= 2 * ax * ax / (2 * n + 1);
            sum += term;
            if (term < 1e-17 * sum) break;
        }
        return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * Math.Exp(-ax * ax) * sum;
    }

    /// <summary>erfc = 1 − erf without cancellation: 1 − erf below 2 (erfc(2) ≈ 5e-3, so ≤ 1e-13 relative
    /// error), the continued fraction e^(−x²)/√π · 1/(x + ½/(x + 1/(x + 3⁄2/(x + …)))) above.</summary>
    public static double Erfc(double x)
    {
        if (x < 2) return 1 - Erf(x);
        double f = x;
        for (int n = 300; n >= 1; n--) f = x + n / 2.0 / f;
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }

    public static double Activate(double x, Activation activation) => activation switch
    {
        Activation.None => x,
        Activation.Gelu => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        Activation.GeluTanh => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
        Activation.Relu => Math.Max(x, 0),
        Activation.Tanh => Math.Tanh(x),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    // ---- GEMM and linear --------------------------------------------------------------------------

    /// <summary>C[m,n] = alpha·op(A)·op(B) + beta·C, row-major.</summary>
    public static double[] Gemm(bool transA, bool transB, int m, int n, int k, double alpha,
        float[] a, int lda, float[] b, int ldb, double beta, float[] c, int ldc)
    {
        var result = new double[c.Length];
        for (int i = 0; i < c.Length; i++) result[i] = c[i];
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
            result[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]);
        }
        return result;
    }

    /// <summary>output[N,O] = act(input[N,K]·weight[O,K]ᵀ + bias).</summary>
    public static double[] Linear(double[] input, double[] weight, double[]? bias, int rows, int inF, int outF,
        Activation activation, out double[] pre)
    {
        pre = new double[rows * outF];
        var output = new double[rows * outF];
        for (int n = 0; n < rows; n++)
        for (int o = 0; o < outF; o++)
        {
            double s = bias?[o] ?? 0;
            for (int k = 0; k < inF; k++) s += input[n * inF + k] * weight[o * inF + k];
            pre[n * outF + o] = s;
            output[n * outF + o] = Activate(s, activation);
        }
        return output;
    }

    // ---- normalization ----------------------------------------------------------------------------

    public static double[] LayerNorm(double[] x, double[] gamma, double[] beta, int rows, int hidden, double eps,
        out double[] mean, out double[] rstd)
    {
        mean = new double[rows];
        rstd = new double[rows];
        var y = new double[rows * hidden];
        for (int r = 0; r < rows; r++)
        {
            double m = 0;
            for (int c = 0; c < hidden; c++) m += x[r * hidden + c];
            m /= hidden;
            double v = 0;
            for (int c = 0; c < hidden; c++) v += (x[r * hidden + c] - m) * (x[r * hidden + c] - m);
            v /= hidden;
            double s = 1 / Math.Sqrt(v + eps);
            mean[r] = m;
            rstd[r] = s;
            for (int c = 0; c < hidden; c++) y[r * hidden + c] = (x[r * hidden + c] - m) * s * gamma[c] + beta[c];
        }
        return y;
    }

    /// <summary>Analytic LayerNorm backward: dInput, and dGamma, dBeta (fresh sums).</summary>
    public static double[] LayerNormBackward(double[] dy, double[] x, double[] gamma, int rows, int hidden, double eps,
        out double[] dGamma, out double[] dBeta)
    {
        LayerNorm(x, gamma, new double[hidden], rows, hidden, eps, out var mean, out var rstd);
        dGamma = new double[hidden];
        dBeta = new double[hidden];
        var dx = new double[rows * hidden];
        for (int r = 0; r < rows; r++)
        {
            double a = 0, b = 0;
            for (int c = 0; c < hidden; c++)
            {
                double xhat = (x[r * hidden + c] - mean[r]) * rstd[r];
                double g = dy[r * hidden + c] * gamma[c];
                a += g;
                b += g * xhat;
                dGamma[c] += dy[r * hidden + c] * xhat;
                dBeta[c] += dy[r * hidden + c];
            }
            for (int c = 0; c < hidden; c++)
            {
                double xhat = (x[r * hidden + c] - mean[r]) * rstd[r];
                dx[r * hidden + c] = rstd[r] * (dy[r * hidden + c] * gamma[c] - a / hidden - xhat * b / hidden);
            }
        }
        return dx;
    }

    /// <summary>x[i] kept (scaled by 1/(1−p)) or zeroed, element i at global index baseIndex + i.</summary>
    public static double[] Dropout(double[] x, DropoutSpec spec, long baseIndex = 0)
    {
        var y = (double[])x.Clone();
        if (!spec.Active) return y;
        double scale = 1.0 / (1.0 - spec.Probability);
        for (int i = 0; i < y.Length; i++) y[i] = spec.Keep(baseIndex + i) ? y[i] * scale : 0;
        return y;
    }

    /// <summary>sum = residual + dropout(branch) (index n·H + c); output = LN(sum).</summary>
    public static double[] ResidualLayerNorm(double[] residual, double[] branch, double[] gamma, double[] beta,
        int rows, int hidden, double eps, DropoutSpec dropout, out double[] sum, out double[] mean, out double[] rstd)
    {
        var dropped = Dropout(branch, dropout);
        sum = new double[rows * hidden];
        for (int i = 0; i < sum.Length; i++) sum[i] = residual[i] + dropped[i];
        return LayerNorm(sum, gamma, beta, rows, hidden, eps, out mean, out rstd);
    }

    /// <summary>sum = word[id] + pos[s] + type[t]; output = dropout(LN(sum)) (index (b·S+s)·H + c).</summary>
    public static double[] Embeddings(int[] ids, int[] types, double[] word, double[] pos, double[] type,
        double[] gamma, double[] beta, int batch, int seq, int hidden, double eps, DropoutSpec dropout,
        out double[] sum, out double[] mean, out double[] rstd)
    {
        int rows = batch * seq;
        sum = new double[rows * hidden];
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < hidden; c++)
            sum[r * hidden + c] = word[ids[r] * hidden + c] + pos[(r % seq) * hidden + c] + type[types[r] * hidden + c];
        return Dropout(LayerNorm(sum, gamma, beta, rows, hidden, eps, out mean, out rstd), dropout);
    }

    // ---- attention --------------------------------------------------------------------------------

    /// <summary>probs[B,NH,S,S] = masked softmax(q·kᵀ/√HD) (masked keys exactly 0, rows with no key all 0);
    /// context[B·S,H] = dropout(probs)·v (index into probs).</summary>
    public static double[] Attention(double[] qkv, int[] mask, int batch, int seq, int heads, int headDim,
        DropoutSpec dropout, out double[] probs)
    {
        int hidden = heads * headDim, ld = 3 * hidden;
        probs = new double[batch * heads * seq * seq];
        var context = new double[batch * seq * hidden];
        double scale = 1 / Math.Sqrt(headDim);
        double keep = dropout.Active ? 1.0 / (1.0 - dropout.Probability) : 1.0;
        for (int b = 0; b < batch; b++)
        for (int h = 0; h < heads; h++)
        for (int i = 0; i < seq; i++)
        {
            var scores = new double[seq];
            double max = double.NegativeInfinity;
            for (int j = 0; j < seq; j++)
            {
                if (mask[b * seq + j] == 0) continue;
                double s = 0;
                for (int d = 0; d < headDim; d++)
                    s += qkv[(b * seq + i) * ld + h * headDim + d] * qkv[(b * seq + j) * ld + hidden + h * headDim + d];
                scores[j] = s * scale;
                max = Math.Max(max, scores[j]);
            }
            double total = 0;
            for (int j = 0; j < seq; j++)
            {
                scores[j] = mask[b * seq + j] == 0 ? 0 : Math.Exp(scores[j] - max);
                total += scores[j];
            }
            long rowBase = ((long)(b * heads + h) * seq + i) * seq;
            for (int j = 0; j < seq; j++)
            {
                double p = total > 0 ? scores[j] / total : 0;
                probs[rowBase + j] = p;
                double dropped = dropout.Active ? (dropout.Keep(rowBase + j) ? p * keep : 0) : p;
                for (int d = 0; d < headDim; d++)
                    context[(b * seq + i) * hidden + h * headDim + d] += dropped * qkv[(b * seq + j) * ld + 2 * hidden + h * headDim + d];
            }
        }
        return context;
    }

    // ---- gathers, loss, optimizer -----------------------------------------------------------------

    public static double[] GatherRows(double[] input, int[] positions, int batch, int seq, int count, int hidden)
    {
        var output = new double[batch * count * hidden];
        for (int b = 0; b < batch; b++)
        for (int p = 0; p < count; p++)
        for (int c = 0; c < hidden; c++)
            output[(b * count + p) * hidden + c] = input[(b * seq + positions[b * count + p]) * hidden + c];
        return output;
    }

    /// <summary>stats = (gradScale·Σ w·CE, Σ w·[argmax = label], Σ w) and the analytic gradient.</summary>
    public static double[] SoftmaxCrossEntropy(double[] logits, int[] labels, double[]? weights, int rows, int classes,
        double gradScale, out double[] stats)
    {
        stats = new double[3];
        var d = new double[rows * classes];
        for (int r = 0; r < rows; r++)
        {
            double w = weights?[r] ?? 1;
            double max = double.NegativeInfinity;
            int argMax = 0;
            for (int c = 0; c < classes; c++)
            {
                if (logits[r * classes + c] > max)
                {
                    max = logits[r * classes + c];
                    argMax = c;
                }
            }
            double total = 0;
            for (int c = 0; c < classes; c++) total += Math.Exp(logits[r * classes + c] - max);
            double lse = max + Math.Log(total);
            stats[0] += gradScale * w * (lse - logits[r * classes + labels[r]]);
            stats[1] += argMax == labels[r] ? w : 0;
            stats[2] += w;
            for (int c = 0; c < classes; c++)
                d[r * classes + c] = gradScale * w * (Math.Exp(logits[r * classes + c] - lse) - (c == labels[r] ? 1 : 0));
        }
        return d;
    }

    /// <summary>One AdamW step in double, exactly as IBackend.AdamW states.</summary>
    public static void AdamW(double[] param, double[] grad, double[] m, double[] v, double? normSquared, AdamWStep step)
    {
        double clip = normSquared is { } ns ? Math.Min(1, step.MaxGradNorm / (Math.Sqrt(ns) + 1e-6)) : 1;
        double bc1 = 1 - Math.Pow(step.Beta1, step.Step), bc2 = 1 - Math.Pow(step.Beta2, step.Step);
        for (int i = 0; i < param.Length; i++)
        {
            double g = grad[i] * clip;
            m[i] = step.Beta1 * m[i] + (1 - step.Beta1) * g;
            v[i] = step.Beta2 * v[i] + (1 - step.Beta2) * g * g;
            param[i] -= step.LearningRate * (m[i] / bc1 / (Math.Sqrt(v[i] / bc2) + step.Epsilon) + step.WeightDecay * param[i]);
        }
    }

    // ---- finite differences -----------------------------------------------------------------------

    /// <summary>∂/∂x of Σ f(x)·r by central differences (step h relative to max(1, |x_i|)).</summary>
    public static double[] Gradient(Func<double[], double[]> f, double[] x, double[] r, double h = 1e-5)
    {
        var g = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            double step = h * Math.Max(1, Math.Abs(saved));
            x[i] = saved + step;
            double plus = Dot(f(x), r);
            x[i] = saved - step;
            double minus = Dot(f(x), r);
            x[i] = saved;
            g[i] = (plus - minus) / (2 * step);
        }
        return g;
    }

    /// <summary>∂L/∂x of a scalar loss by central differences.</summary>
    public static double[] Gradient(Func<double[], double> loss, double[] x, double h = 1e-5)
    {
        var g = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            double step = h * Math.Max(1, Math.Abs(saved));
            x[i] = saved + step;
            double plus = loss(x);
            x[i] = saved - step;
            double minus = loss(x);
            x[i] = saved;
            g[i] = (plus - minus) / (2 * step);
        }
        return g;
    }

    public static double Dot(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    public static double[] ToDouble(float[] x) => Array.ConvertAll(x, v => (double)v);
}
