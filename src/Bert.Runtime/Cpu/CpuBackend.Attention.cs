using System.Numerics;

namespace Bert.Runtime.Cpu;

// AttentionForward/Backward: one chunk per (batch, head); the per-head GEMMs run serially on the
// managed GEMM inside the chunk (OpenBLAS is not called from worker threads), with per-worker packing
// buffers and a per-worker slice of the workspace:
//   [dropped probs S×S | dScores S×S | additive key mask S]   per worker.
public sealed unsafe partial class CpuBackend
{
    public AttentionPlan PlanAttention(int batch, int seq, int heads, int headDim)
    {
        OpChecks.PlanAttention(batch, seq, heads, headDim);
        return Plan(batch, seq, heads);
    }

    /// <summary>The probabilities are saved; <see cref="PlanAttention"/> without the checks.</summary>
    private AttentionPlan Plan(int batch, int seq, int heads) =>
        new(AttentionPlan.ProbabilitiesLength(batch, seq, heads), Threads * PerWorkerAttention(seq), Fused: false);

    private static long PerWorkerAttention(int seq) => 2L * seq * seq + seq;

    public void AttentionForward(TensorRef context, TensorRef probs, TensorRef workspace,
        TensorRef qkv, TensorRef attentionMask, int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        ThrowIfDisposed();
        OpChecks.AttentionForward(context, probs, workspace, Plan(batch, seq, heads), qkv, attentionMask,
            batch, seq, heads, headDim, dropout, Activations);
        if (batch == 0 || seq == 0) return;
        EnsureGemmScratch();
        var job = new AttentionJob
        {
            Context = F(context), Probs = F(probs), Workspace = F(workspace), Qkv = F(qkv), Mask = I(attentionMask),
            PackA = _packA, PackB = _packB, Seq = seq, Heads = heads, HeadDim = headDim, Dropout = dropout,
        };
        _pool.Run(&job, checked(batch * heads));
    }

    public void AttentionBackward(TensorRef dQkv, TensorRef workspace,
        TensorRef dContext, TensorRef qkv, TensorRef context, TensorRef probs, TensorRef attentionMask,
        int batch, int seq, int heads, int headDim, DropoutSpec dropout)
    {
        ThrowIfDisposed();
        OpChecks.AttentionBackward(dQkv, workspace, Plan(batch, seq, heads), dContext, qkv, context, probs, attentionMask,
            batch, seq, heads, headDim, dropout, Activations);
        if (batch == 0 || seq == 0) return;
        EnsureGemmScratch();
        var job = new AttentionJob
        {
            Context = F(dContext), Probs = F(probs), Workspace = F(workspace), Qkv = F(qkv), DQkv = F(dQkv),
            PackA = _packA, PackB = _packB, Seq = seq, Heads = heads, HeadDim = headDim, Dropout = dropout,
        };
        _pool.Run(&job, checked(batch * heads));
    }

    /// <summary>Forward when DQkv is null (Context is the output), else backward (Context is dContext).</summary>
    private struct AttentionJob : IChunkJob<AttentionJob>
    {
        public float* Context, Probs, Workspace, Qkv, DQkv;
        public int* Mask;
        public float** PackA, PackB;
        public int Seq, Heads, HeadDim;
        public DropoutSpec Dropout;

        public static void Execute(ref AttentionJob job, int chunk, int worker)
        {
            int s = job.Seq, hd = job.HeadDim, b = chunk / job.Heads, h = chunk % job.Heads;
            int hidden = job.Heads * hd, ld = 3 * hidden;
            long ss = (long)s * s;
            float scale = 1f / MathF.Sqrt(hd);
            float* q = job.Qkv + (long)b * s * ld + h * hd;
            float* k = q + hidden;
            float* v = q + 2 * hidden;
            float* p = job.Probs + chunk * ss;
            float* ws = job.Workspace + worker * PerWorkerAttention(s);
            float* dropped = ws, dScores = ws + ss, keyBias = ws + 2 * ss;
            float* ctx = job.Context + (long)b * s * hidden + h * hd;
            float* packA = job.PackA[worker], packB = job.PackB[worker];
            long baseIndex = chunk * ss;

            if (job.DQkv == null)
            {
                // probs[S,S] = softmax(scale·q·kᵀ + keyBias)
                ManagedGemm.Serial(new GemmArgs(false, true, s, s, hd, scale, q, ld, k, ld, 0f, p, s), packA, packB);
                int* mask = job.Mask + (long)b * s;
                for (int j = 0; j < s; j++) keyBias[j] = mask[j] != 0 ? 0f : float.NegativeInfinity;
                for (int i = 0; i < s; i++) SoftmaxRow(p + (long)i * s, keyBias, s);
                float* used = p;
                if (job.Dropout.Active)
                {
                    DropoutKernel.Apply(dropped, p, ss, baseIndex, job.Dropout);
                    used = dropped;
                }
                // context[S,HD] = dropout(probs)[S,S]·v[S,HD]
                ManagedGemm.Serial(new GemmArgs(false, false, s, hd, s, 1f, used, s, v, ld, 0f, ctx, hidden), packA, packB);
                return;
            }

            float* dq = job.DQkv + (long)b * s * ld + h * hd;
            float* dk = dq + hidden;
            float* dv = dq + 2 * hidden;
            float* kept = p;
            if (job.Dropout.Active)
            {
                DropoutKernel.Apply(dropped, p, ss, baseIndex, job.Dropout);
                kept = dropped;
            }
            // dV[S,HD] = dropout(P)ᵀ·dContext
            ManagedGemm.Serial(new GemmArgs(true, false, s, hd, s, 1f, kept, s, ctx, hidden, 0f, dv, ld), packA, packB);
            // dP[S,S] = dContext·Vᵀ, through the dropout mask
            ManagedGemm.Serial(new GemmArgs(false, true, s, s, hd, 1f, ctx, hidden, v, ld, 0f, dScores, s), packA, packB);
            if (job.Dropout.Active) DropoutKernel.Apply(dScores, dScores, ss, baseIndex, job.Dropout);
            // softmax backward: dS = P ⊙ (dP − Σ_j dP·P)
            for (int i = 0; i < s; i++)
            {
                float* dRow = dScores + (long)i * s;
                float* pRow = p + (long)i * s;
                float dot = CpuMath.Dot(dRow, pRow, s);
                SoftmaxBackwardRow(dRow, pRow, dot, s);
            }
            // dQ = scale·dS·K, dK = scale·dSᵀ·Q
            ManagedGemm.Serial(new GemmArgs(false, false, s, hd, s, scale, dScores, s, k, ld, 0f, dq, ld), packA, packB);
            ManagedGemm.Serial(new GemmArgs(true, false, s, hd, s, scale, dScores, s, q, ld, 0f, dk, ld), packA, packB);
        }
    }

    /// <summary>row = softmax(row + keyBias) in place; keyBias is 0 or −∞, so masked keys get exactly 0,
    /// and a row with every key masked becomes all zeros.</summary>
    private static void SoftmaxRow(float* row, float* keyBias, int n)
    {
        int w = Vector<float>.Count, c = 0;
        for (; c <= n - w; c += w) (Vector.Load(row + c) + Vector.Load(keyBias + c)).Store(row + c);
        for (; c < n; c++) row[c] += keyBias[c];
        float max = CpuMath.Max(row, n, out _);
        if (float.IsNegativeInfinity(max))
        {
            new Span<float>(row, n).Clear();
            return;
        }
        ExpShifted(row, n, max);
        float inv = 1f / CpuMath.Sum(row, n);
        var vi = new Vector<float>(inv);
        c = 0;
        for (; c <= n - w; c += w) (Vector.Load(row + c) * vi).Store(row + c);
        for (; c < n; c++) row[c] *= inv;
    }

    /// <summary>row = exp(row − shift), the tail through the same vector code.</summary>
    private static void ExpShifted(float* row, int n, float shift)
    {
        int w = Vector<float>.Count, c = 0;
        var vs = new Vector<float>(shift);
        for (; c <= n - w; c += w) CpuMath.Exp(Vector.Load(row + c) - vs).Store(row + c);
        if (c < n)
        {
            int rest = n - c;
            float* buffer = stackalloc float[w];
            for (int j = 0; j < w; j++) buffer[j] = j < rest ? row[c + j] : shift;
            CpuMath.Exp(Vector.Load(buffer) - vs).Store(buffer);
            for (int j = 0; j < rest; j++) row[c + j] = buffer[j];
        }
    }

    /// <summary>dRow = pRow·(dRow − dot).</summary>
    private static void SoftmaxBackwardRow(float* dRow, float* pRow, float dot, int n)
    {
        int w = Vector<float>.Count, c = 0;
        var vd = new Vector<float>(dot);
        for (; c <= n - w; c += w) (Vector.Load(pRow + c) * (Vector.Load(dRow + c) - vd)).Store(dRow + c);
        for (; c < n; c++) dRow[c] = pRow[c] * (dRow[c] - dot);
    }
}
