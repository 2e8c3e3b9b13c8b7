using System.Numerics;

namespace Bert.Runtime.Cpu;

// EmbeddingsForward/Backward, LayerNorm/Backward, ResidualLayerNorm/Backward. Rows run in parallel in
// fixed chunks; dGamma/dBeta are per-chunk partials [chunks, 2H] = [gamma | beta] reduced in chunk
// order; the embedding-table gradients are summed per column block over the rows in order.
public sealed unsafe partial class CpuBackend
{
    // ---- row kernels ----------------------------------------------------------------------------

    /// <summary>y = (x − mean)·rstd·gamma + beta with mean and the population variance of x.</summary>
    private static void NormalizeRow(float* y, float* x, float* gamma, float* beta, int h, float eps, out float mean, out float rstd)
    {
        mean = CpuMath.Sum(x, h) / h;
        float variance = CpuMath.SumSquaredDeviation(x, h, mean) / h;
        rstd = 1f / MathF.Sqrt(variance + eps);
        int w = Vector<float>.Count, c = 0;
        var vm = new Vector<float>(mean);
        var vr = new Vector<float>(rstd);
        for (; c <= h - w; c += w)
            (((Vector.Load(x + c) - vm) * vr) * Vector.Load(gamma + c) + Vector.Load(beta + c)).Store(y + c);
        for (; c < h; c++) y[c] = ((x[c] - mean) * rstd) * gamma[c] + beta[c];
    }

    /// <summary>dx = rstd·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)) with x̂ = (x − mean)·rstd; dx may alias dy.
    /// partial[0..h) += dy·x̂ (dGamma), partial[h..2h) += dy (dBeta).</summary>
    private static void NormalizeBackwardRow(float* dx, float* dy, float* x, float mean, float rstd, float* gamma, int h, float* partial)
    {
        int w = Vector<float>.Count, c = 0;
        var vm = new Vector<float>(mean);
        var vr = new Vector<float>(rstd);
        var sumG = Vector<float>.Zero;
        var sumGx = Vector<float>.Zero;
        float* pg = partial, pb = partial + h;
        for (; c <= h - w; c += w)
        {
            var xhat = (Vector.Load(x + c) - vm) * vr;
            var d = Vector.Load(dy + c);
            var g = d * Vector.Load(gamma + c);
            sumG += g;
            sumGx = Vector.FusedMultiplyAdd(g, xhat, sumGx);
            Vector.FusedMultiplyAdd(d, xhat, Vector.Load(pg + c)).Store(pg + c);
            (Vector.Load(pb + c) + d).Store(pb + c);
        }
        float a = Vector.Sum(sumG), b = Vector.Sum(sumGx);
        for (int t = c; t < h; t++)
        {
            float xhat = (x[t] - mean) * rstd;
            float g = dy[t] * gamma[t];
            a += g;
            b = MathF.FusedMultiplyAdd(g, xhat, b);
            pg[t] = MathF.FusedMultiplyAdd(dy[t], xhat, pg[t]);
            pb[t] += dy[t];
        }
        float meanG = a / h, meanGx = b / h;
        var vmg = new Vector<float>(meanG);
        var vmgx = new Vector<float>(meanGx);
        c = 0;
        for (; c <= h - w; c += w)
        {
            var xhat = (Vector.Load(x + c) - vm) * vr;
            var g = Vector.Load(dy + c) * Vector.Load(gamma + c);
            ((g - (vmg + xhat * vmgx)) * vr).Store(dx + c);
        }
        for (; c < h; c++)
        {
            float xhat = (x[c] - mean) * rstd;
            float g = dy[c] * gamma[c];
            dx[c] = (g - (meanG + xhat * meanGx)) * rstd;
        }
    }

    /// <summary>Throws when an index is outside [0, limit), naming the op, argument, element and value.</summary>
    private static void CheckIndices(int* values, long count, int limit, string op, string argument)
    {
        for (long i = 0; i < count; i++)
        {
            int v = values[i];
            if ((uint)v >= (uint)limit)
                throw new ArgumentException($"{op}: {argument}[{i}] = {v} is outside [0, {limit})", argument);
        }
    }

    /// <summary>Partials for dGamma/dBeta, then their reduction into the two gradients.</summary>
    private float* GammaBetaPartials(int chunks, int hidden) =>
        (float*)_partials.Get((long)chunks * 2 * hidden * sizeof(float));

    private void ReduceGammaBeta(float* dGamma, float* dBeta, float* partials, int chunks, int hidden)
    {
        if (dGamma != null) ReducePartials(dGamma, partials, chunks, hidden, 2 * hidden);
        if (dBeta != null) ReducePartials(dBeta, partials + hidden, chunks, hidden, 2 * hidden);
    }

    // ---- LayerNorm --------------------------------------------------------------------------------

    public void LayerNorm(TensorRef output, TensorRef mean, TensorRef rstd, TensorRef input, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps)
    {
        ThrowIfDisposed();
        OpChecks.LayerNorm(output, mean, rstd, input, gamma, beta, rows, hidden, eps, Activations);
        int perChunk = RowsPerChunk(hidden);
        var job = new LayerNormJob
        {
            Output = F(output), Mean = F(mean), Rstd = F(rstd), Input = F(input), Gamma = F(gamma), Beta = F(beta),
            Rows = rows, Hidden = hidden, Eps = eps, RowsPerChunk = perChunk,
        };
        _pool.Run(&job, CeilDiv(rows, perChunk));
    }

    private struct LayerNormJob : IChunkJob<LayerNormJob>
    {
        public float* Output, Mean, Rstd, Input, Gamma, Beta;
        public int Rows, Hidden, RowsPerChunk;
        public float Eps;

        public static void Execute(ref LayerNormJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk), h = job.Hidden;
            for (int r = r0; r < r1; r++)
            {
                NormalizeRow(job.Output + (long)r * h, job.Input + (long)r * h, job.Gamma, job.Beta, h, job.Eps, out float m, out float s);
                job.Mean[r] = m;
                job.Rstd[r] = s;
            }
        }
    }

    public void LayerNormBackward(TensorRef dInput, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef input, TensorRef mean, TensorRef rstd, TensorRef gamma, int rows, int hidden)
    {
        ThrowIfDisposed();
        OpChecks.LayerNormBackward(dInput, dGamma, dBeta, dOutput, input, mean, rstd, gamma, rows, hidden, Activations);
        if (rows == 0) return;
        int perChunk = RowsPerChunk(hidden);
        int chunks = CeilDiv(rows, perChunk);
        float* partials = GammaBetaPartials(chunks, hidden);
        var job = new NormBackwardJob
        {
            DX = F(dInput), DY = F(dOutput), X = F(input), Mean = F(mean), Rstd = F(rstd), Gamma = F(gamma),
            Partials = partials, Rows = rows, Hidden = hidden, RowsPerChunk = perChunk,
        };
        _pool.Run(&job, chunks);
        ReduceGammaBeta(F(dGamma), F(dBeta), partials, chunks, hidden);
    }

    /// <summary>LayerNorm backward over row chunks; optionally dropout-masks dx into DBranch afterwards
    /// (ResidualLayerNormBackward) or masks dy before (EmbeddingsBackward, where DX = DY = scratch).</summary>
    private struct NormBackwardJob : IChunkJob<NormBackwardJob>
    {
        public float* DX, DY, X, Mean, Rstd, Gamma, Partials;
        public float* DBranch;
        public float* MaskedDY;
        public int Rows, Hidden, RowsPerChunk;
        public DropoutSpec Dropout;

        public static void Execute(ref NormBackwardJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk), h = job.Hidden;
            float* partial = job.Partials + (long)chunk * 2 * h;
            new Span<float>(partial, 2 * h).Clear();
            bool drop = job.Dropout.Active;
            for (int r = r0; r < r1; r++)
            {
                long o = (long)r * h;
                float* dy = job.DY + o;
                if (job.MaskedDY != null)
                {
                    // Embeddings: the dropout came after the LayerNorm.
                    float* masked = job.MaskedDY + o;
                    if (drop) DropoutKernel.Apply(masked, dy, h, o, job.Dropout);
                    else if (masked != dy) new ReadOnlySpan<float>(dy, h).CopyTo(new Span<float>(masked, h));
                    dy = masked;
                }
                NormalizeBackwardRow(job.DX + o, dy, job.X + o, job.Mean[r], job.Rstd[r], job.Gamma, h, partial);
                if (job.DBranch != null)
                {
                    // Residual: the dropout was on the branch before the sum.
                    if (drop) DropoutKernel.Apply(job.DBranch + o, job.DX + o, h, o, job.Dropout);
                    else new ReadOnlySpan<float>(job.DX + o, h).CopyTo(new Span<float>(job.DBranch + o, h));
                }
            }
        }
    }

    // ---- ResidualLayerNorm ------------------------------------------------------------------------

    public void ResidualLayerNorm(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef residual, TensorRef branch, TensorRef gamma, TensorRef beta,
        int rows, int hidden, float eps, DropoutSpec dropout)
    {
        ThrowIfDisposed();
        OpChecks.ResidualLayerNorm(output, sum, mean, rstd, residual, branch, gamma, beta, rows, hidden, eps, dropout, Activations);
        int perChunk = RowsPerChunk(hidden);
        var job = new ResidualLayerNormJob
        {
            Output = F(output), Sum = F(sum), Mean = F(mean), Rstd = F(rstd), Residual = F(residual), Branch = F(branch),
            Gamma = F(gamma), Beta = F(beta), Rows = rows, Hidden = hidden, Eps = eps, RowsPerChunk = perChunk, Dropout = dropout,
        };
        _pool.Run(&job, CeilDiv(rows, perChunk));
    }

    private struct ResidualLayerNormJob : IChunkJob<ResidualLayerNormJob>
    {
        public float* Output, Sum, Mean, Rstd, Residual, Branch, Gamma, Beta;
        public int Rows, Hidden, RowsPerChunk;
        public float Eps;
        public DropoutSpec Dropout;

        public static void Execute(ref ResidualLayerNormJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk), h = job.Hidden;
            for (int r = r0; r < r1; r++)
            {
                long o = (long)r * h;
                float* s = job.Sum + o;
                if (job.Dropout.Active)
                {
                    DropoutKernel.Apply(s, job.Branch + o, h, o, job.Dropout);
                    CpuMath.AddInPlace(s, job.Residual + o, h);
                }
                else
                {
                    AddRows(s, job.Branch + o, job.Residual + o, h);
                }
                NormalizeRow(job.Output + o, s, job.Gamma, job.Beta, h, job.Eps, out float m, out float sd);
                job.Mean[r] = m;
                job.Rstd[r] = sd;
            }
        }
    }

    /// <summary>dst = x + y (the same operation order as the dropout path: dropped branch, then + residual).</summary>
    private static void AddRows(float* dst, float* x, float* y, int n)
    {
        int w = Vector<float>.Count, i = 0;
        for (; i <= n - w; i += w) (Vector.Load(x + i) + Vector.Load(y + i)).Store(dst + i);
        for (; i < n; i++) dst[i] = x[i] + y[i];
    }

    public void ResidualLayerNormBackward(TensorRef dResidual, TensorRef dBranch, TensorRef dGamma, TensorRef dBeta,
        TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd, TensorRef gamma,
        int rows, int hidden, DropoutSpec dropout)
    {
        ThrowIfDisposed();
        OpChecks.ResidualLayerNormBackward(dResidual, dBranch, dGamma, dBeta, dOutput, sum, mean, rstd, gamma, rows, hidden, dropout, Activations);
        if (rows == 0) return;
        int perChunk = RowsPerChunk(hidden);
        int chunks = CeilDiv(rows, perChunk);
        float* partials = GammaBetaPartials(chunks, hidden);
        var job = new NormBackwardJob
        {
            DX = F(dResidual), DY = F(dOutput), X = F(sum), Mean = F(mean), Rstd = F(rstd), Gamma = F(gamma),
            Partials = partials, DBranch = F(dBranch), Rows = rows, Hidden = hidden, RowsPerChunk = perChunk, Dropout = dropout,
        };
        _pool.Run(&job, chunks);
        ReduceGammaBeta(F(dGamma), F(dBeta), partials, chunks, hidden);
    }

    // ---- embeddings -------------------------------------------------------------------------------

    public void EmbeddingsForward(TensorRef output, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef wordEmb, TensorRef posEmb, TensorRef typeEmb,
        TensorRef gamma, TensorRef beta, int batch, int seq, int hidden, float eps, DropoutSpec dropout)
    {
        const string op = nameof(EmbeddingsForward);
        ThrowIfDisposed();
        OpChecks.EmbeddingsForward(output, sum, mean, rstd, inputIds, tokenTypeIds, wordEmb, posEmb, typeEmb, gamma, beta,
            batch, seq, hidden, eps, dropout, Activations);
        int rows = batch * seq;
        CheckIndices(I(inputIds), rows, (int)(wordEmb.Length / hidden), op, nameof(inputIds));
        CheckIndices(I(tokenTypeIds), rows, (int)(typeEmb.Length / hidden), op, nameof(tokenTypeIds));
        int perChunk = RowsPerChunk(hidden);
        var job = new EmbeddingsJob
        {
            Output = F(output), Sum = F(sum), Mean = F(mean), Rstd = F(rstd), Ids = I(inputIds), Types = I(tokenTypeIds),
            Word = F(wordEmb), Pos = F(posEmb), Type = F(typeEmb), Gamma = F(gamma), Beta = F(beta),
            Rows = rows, Seq = seq, Hidden = hidden, Eps = eps, RowsPerChunk = perChunk, Dropout = dropout,
        };
        _pool.Run(&job, CeilDiv(rows, perChunk));
    }

    private struct EmbeddingsJob : IChunkJob<EmbeddingsJob>
    {
        public float* Output, Sum, Mean, Rstd, Word, Pos, Type, Gamma, Beta;
        public int* Ids, Types;
        public int Rows, Seq, Hidden, RowsPerChunk;
        public float Eps;
        public DropoutSpec Dropout;

        public static void Execute(ref EmbeddingsJob job, int chunk, int worker)
        {
            int r0 = chunk * job.RowsPerChunk, r1 = Math.Min(job.Rows, r0 + job.RowsPerChunk), h = job.Hidden;
            int w = Vector<float>.Count;
            for (int r = r0; r < r1; r++)
            {
                long o = (long)r * h;
                float* s = job.Sum + o;
                float* we = job.Word + (long)job.Ids[r] * h;
                float* pe = job.Pos + (long)(r % job.Seq) * h;
                float* te = job.Type + (long)job.Types[r] * h;
                int c = 0;
                for (; c <= h - w; c += w) (Vector.Load(we + c) + Vector.Load(pe + c) + Vector.Load(te + c)).Store(s + c);
                for (; c < h; c++) s[c] = we[c] + pe[c] + te[c];
                float* y = job.Output + o;
                NormalizeRow(y, s, job.Gamma, job.Beta, h, job.Eps, out float m, out float sd);
                job.Mean[r] = m;
                job.Rstd[r] = sd;
                if (job.Dropout.Active) DropoutKernel.Apply(y, y, h, o, job.Dropout);
            }
        }
    }

    public void EmbeddingsBackward(TensorRef dWordEmb, TensorRef dPosEmb, TensorRef dTypeEmb, TensorRef dGamma, TensorRef dBeta,
        TensorRef scratch, TensorRef dOutput, TensorRef sum, TensorRef mean, TensorRef rstd,
        TensorRef inputIds, TensorRef tokenTypeIds, TensorRef gamma,
        int batch, int seq, int hidden, DropoutSpec dropout)
    {
        const string op = nameof(EmbeddingsBackward);
        ThrowIfDisposed();
        OpChecks.EmbeddingsBackward(dWordEmb, dPosEmb, dTypeEmb, dGamma, dBeta, scratch, dOutput, sum, mean, rstd,
            inputIds, tokenTypeIds, gamma, batch, seq, hidden, dropout, Activations);
        int rows = batch * seq;
        // Ids index only the tables whose gradients are kept.
        if (!dWordEmb.IsNull) CheckIndices(I(inputIds), rows, (int)(dWordEmb.Length / hidden), op, nameof(inputIds));
        if (!dTypeEmb.IsNull) CheckIndices(I(tokenTypeIds), rows, (int)(dTypeEmb.Length / hidden), op, nameof(tokenTypeIds));
        if (rows == 0) return;

        // scratch = ∂L/∂sum, with dGamma/dBeta partials on the way.
        int perChunk = RowsPerChunk(hidden);
        int chunks = CeilDiv(rows, perChunk);
        float* partials = GammaBetaPartials(chunks, hidden);
        var norm = new NormBackwardJob
        {
            DX = F(scratch), DY = F(dOutput), MaskedDY = F(scratch), X = F(sum), Mean = F(mean), Rstd = F(rstd), Gamma = F(gamma),
            Partials = partials, Rows = rows, Hidden = hidden, RowsPerChunk = perChunk, Dropout = dropout,
        };
        _pool.Run(&norm, chunks);
        ReduceGammaBeta(F(dGamma), F(dBeta), partials, chunks, hidden);

        // Table gradients: ids repeat, so rows are summed per column block in row order.
        if (dWordEmb.IsNull && dPosEmb.IsNull && dTypeEmb.IsNull) return;
        var tables = new EmbeddingTablesJob
        {
            DWord = F(dWordEmb), DPos = F(dPosEmb), DType = F(dTypeEmb), DSum = F(scratch), Ids = I(inputIds), Types = I(tokenTypeIds),
            Rows = rows, Seq = seq, Hidden = hidden,
        };
        _pool.Run(&tables, CeilDiv(hidden, EmbeddingTablesJob.Columns));
    }

    private struct EmbeddingTablesJob : IChunkJob<EmbeddingTablesJob>
    {
        public const int Columns = 64;
        public float* DWord, DPos, DType, DSum;
        public int* Ids, Types;
        public int Rows, Seq, Hidden;

        public static void Execute(ref EmbeddingTablesJob job, int chunk, int worker)
        {
            int c0 = chunk * Columns, n = Math.Min(Columns, job.Hidden - c0), h = job.Hidden;
            for (int r = 0; r < job.Rows; r++)
            {
                float* g = job.DSum + (long)r * h + c0;
                if (job.DWord != null) CpuMath.AddInPlace(job.DWord + (long)job.Ids[r] * h + c0, g, n);
                if (job.DPos != null) CpuMath.AddInPlace(job.DPos + (long)(r % job.Seq) * h + c0, g, n);
                if (job.DType != null) CpuMath.AddInPlace(job.DType + (long)job.Types[r] * h + c0, g, n);
            }
        }
    }
}
