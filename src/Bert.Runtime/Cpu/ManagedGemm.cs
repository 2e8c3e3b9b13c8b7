using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Bert.Runtime.Cpu;

/// <summary>Arguments of one SGEMM: C[m,n] = alpha·op(A)[m,k]·op(B)[k,n] + beta·C, row-major,
/// op(X) = Xᵀ when trans. beta = 0 never reads C.</summary>
internal unsafe struct GemmArgs
{
    public bool TransA, TransB;
    public int M, N, K;
    public float Alpha, Beta;
    public float* A, B, C;
    public int Lda, Ldb, Ldc;

    public GemmArgs(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        TransA = transA; TransB = transB; M = m; N = n; K = k; Alpha = alpha; Beta = beta;
        A = a; B = b; C = c; Lda = lda; Ldb = ldb; Ldc = ldc;
    }
}

/// <summary>
/// The GEMM used when OpenBLAS is absent (or BERT_CPU_GEMM=managed), and always for the small
/// per-head GEMMs of attention. BLIS structure: for each NC-column block of C and each KC slice of
/// the inner dimension, op(B) is packed into NR-wide micro-panels and op(A) into MR-tall
/// micro-panels (zero-padded at the edges); a register-blocked micro-kernel of MR×NR accumulators
/// (8×32 with Vector512, 6×(2·Vector&lt;float&gt;.Count) otherwise) computes each tile.
///
/// Determinism: every element of C is Σ over the KC slices in order, each slice summed over k in
/// order by one FMA chain, and tiles always sit on the same MR×NR grid; so the result does not
/// depend on how the tiles are split among threads, nor on the thread count.
/// </summary>
internal static unsafe class ManagedGemm
{
    public static readonly bool Wide = Vector512.IsHardwareAccelerated;
    public static readonly int MR = Wide ? 8 : 6;
    public static readonly int NR = Wide ? 32 : 2 * Vector<float>.Count;
    public const int KC = 256;
    /// <summary>Rows of op(A) packed at once: 192 is a multiple of both MRs (8, 6).</summary>
    public const int MC = 192;
    /// <summary>Columns of op(B) packed at once (a multiple of every NR).</summary>
    public const int NCMax = 1024;

    public static int PackALength => MC * KC;
    public static int PackBLength => KC * NCMax;

    /// <summary>The whole product on the calling thread.</summary>
    public static void Serial(in GemmArgs g, float* packA, float* packB)
    {
        if (g.M == 0 || g.N == 0) return;
        if (g.K == 0)
        {
            ScaleC(g, 0, g.M, 0, g.N);
            return;
        }
        Region(g, 0, g.M, 0, g.N, packA, packB);
    }

    /// <summary>The product split into MC×(multiple of NR) regions of C, one per chunk.</summary>
    public static void Parallel(CpuWorkerPool pool, in GemmArgs g, float** packA, float** packB)
    {
        if (g.M == 0 || g.N == 0) return;
        int tilesM = (g.M + MC - 1) / MC;
        // Enough regions for load balance (about four per thread) without shrinking the column
        // blocks below a few micro-panels, which would make packing op(A) dominate.
        int wantN = Math.Max(1, (4 * pool.Threads + tilesM - 1) / tilesM);
        int nc = RoundUp((g.N + wantN - 1) / wantN, NR);
        nc = Math.Max(nc, Math.Min(4 * NR, RoundUp(g.N, NR)));
        int tilesN = (g.N + nc - 1) / nc;
        var job = new ParallelJob { Args = g, TilesM = tilesM, ColumnsPerTile = nc, PackA = packA, PackB = packB };
        pool.Run(&job, tilesM * tilesN);
    }

    private struct ParallelJob : IChunkJob<ParallelJob>
    {
        public GemmArgs Args;
        public int TilesM, ColumnsPerTile;
        public float** PackA, PackB;

        public static void Execute(ref ParallelJob job, int chunk, int worker)
        {
            ref readonly var g = ref job.Args;
            int im = chunk % job.TilesM, jn = chunk / job.TilesM;
            int i0 = im * MC, i1 = Math.Min(g.M, i0 + MC);
            int j0 = jn * job.ColumnsPerTile, j1 = Math.Min(g.N, j0 + job.ColumnsPerTile);
            if (g.K == 0) ScaleC(g, i0, i1, j0, j1);
            else Region(g, i0, i1, j0, j1, job.PackA[worker], job.PackB[worker]);
        }
    }

    private static int RoundUp(int x, int multiple) => (x + multiple - 1) / multiple * multiple;

    /// <summary>k = 0: C = beta·C over rows [i0,i1), columns [j0,j1).</summary>
    private static void ScaleC(in GemmArgs g, int i0, int i1, int j0, int j1)
    {
        for (int i = i0; i < i1; i++)
        {
            float* row = g.C + (long)i * g.Ldc;
            for (int j = j0; j < j1; j++) row[j] = g.Beta == 0f ? 0f : g.Beta * row[j];
        }
    }

    private static void Region(in GemmArgs g, int i0, int i1, int j0, int j1, float* packA, float* packB)
    {
        int mr = MR, nr = NR;
        float* edge = stackalloc float[MR * NR];
        for (int jc = j0; jc < j1; jc += NCMax)
        {
            int nc = Math.Min(NCMax, j1 - jc);
            for (int pc = 0; pc < g.K; pc += KC)
            {
                int kc = Math.Min(KC, g.K - pc);
                float beta = pc == 0 ? g.Beta : 1f;
                PackB(g, pc, kc, jc, nc, packB);
                for (int ic = i0; ic < i1; ic += MC)
                {
                    int mc = Math.Min(MC, i1 - ic);
                    PackA(g, ic, mc, pc, kc, packA);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int cols = Math.Min(nr, nc - jr);
                        float* bp = packB + (long)jr * kc;
                        for (int ir = 0; ir < mc; ir += mr)
                        {
                            int rows = Math.Min(mr, mc - ir);
                            float* ap = packA + (long)ir * kc;
                            float* c = g.C + (long)(ic + ir) * g.Ldc + jc + jr;
                            if (rows == mr && cols == nr)
                            {
                                Kernel(kc, ap, bp, c, g.Ldc, g.Alpha, beta);
                            }
                            else
                            {
                                Kernel(kc, ap, bp, edge, nr, 1f, 0f);
                                MergeEdge(c, g.Ldc, edge, nr, rows, cols, g.Alpha, beta);
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>The same arithmetic as the kernels' stores: alpha·acc, c + alpha·acc or beta·c + alpha·acc.</summary>
    private static void MergeEdge(float* c, int ldc, float* tile, int ldt, int rows, int cols, float alpha, float beta)
    {
        for (int r = 0; r < rows; r++)
        {
            float* cr = c + (long)r * ldc;
            float* tr = tile + r * ldt;
            if (beta == 0f) for (int j = 0; j < cols; j++) cr[j] = tr[j] * alpha;
            else if (beta == 1f) for (int j = 0; j < cols; j++) cr[j] = cr[j] + tr[j] * alpha;
            else for (int j = 0; j < cols; j++) cr[j] = cr[j] * beta + tr[j] * alpha;
        }
    }

    /// <summary>op(A)[ic.., pc..] (mc×kc) into MR-row micro-panels: panel q holds rows
    /// ic+q·MR.. as [p·MR + r], zero rows past mc.</summary>
    private static void PackA(in GemmArgs g, int ic, int mc, int pc, int kc, float* dst)
    {
        int mr = MR;
        for (int ir = 0; ir < mc; ir += mr)
        {
            int rows = Math.Min(mr, mc - ir);
            float* panel = dst + (long)ir * kc;
            if (g.TransA)
            {
                // op(A)[i,p] = A[p,i]: each p is a contiguous run of rows.
                for (int p = 0; p < kc; p++)
                {
                    float* src = g.A + (long)(pc + p) * g.Lda + ic + ir;
                    float* d = panel + p * mr;
                    int r = 0;
                    for (; r < rows; r++) d[r] = src[r];
                    for (; r < mr; r++) d[r] = 0f;
                }
            }
            else
            {
                for (int r = 0; r < mr; r++)
                {
                    if (r < rows)
                    {
                        float* src = g.A + (long)(ic + ir + r) * g.Lda + pc;
                        for (int p = 0; p < kc; p++) panel[p * mr + r] = src[p];
                    }
                    else
                    {
                        for (int p = 0; p < kc; p++) panel[p * mr + r] = 0f;
                    }
                }
            }
        }
    }

    /// <summary>op(B)[pc.., jc..] (kc×nc) into NR-column micro-panels: panel q holds columns
    /// jc+q·NR.. as [p·NR + j], zero columns past nc.</summary>
    private static void PackB(in GemmArgs g, int pc, int kc, int jc, int nc, float* dst)
    {
        int nr = NR;
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* panel = dst + (long)jr * kc;
            if (g.TransB)
            {
                // op(B)[p,j] = B[j,p]: each column of the panel is a contiguous row of B.
                for (int j = 0; j < nr; j++)
                {
                    if (j < cols)
                    {
                        float* src = g.B + (long)(jc + jr + j) * g.Ldb + pc;
                        for (int p = 0; p < kc; p++) panel[p * nr + j] = src[p];
                    }
                    else
                    {
                        for (int p = 0; p < kc; p++) panel[p * nr + j] = 0f;
                    }
                }
            }
            else
            {
                for (int p = 0; p < kc; p++)
                {
                    float* src = g.B + (long)(pc + p) * g.Ldb + jc + jr;
                    float* d = panel + p * nr;
                    if (cols == nr)
                    {
                        new ReadOnlySpan<float>(src, nr).CopyTo(new Span<float>(d, nr));
                    }
                    else
                    {
                        int j = 0;
                        for (; j < cols; j++) d[j] = src[j];
                        for (; j < nr; j++) d[j] = 0f;
                    }
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Kernel(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (Wide) Kernel8x32(kc, a, b, c, ldc, alpha, beta);
        else Kernel6xV(kc, a, b, c, ldc, alpha, beta);
    }

    /// <summary>8×32 tile: 16 Vector512 accumulators, two B vectors and one broadcast per k.</summary>
    private static void Kernel8x32(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(a0, b0, c00); c01 = Vector512.FusedMultiplyAdd(a0, b1, c01);
            var a1 = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(a1, b0, c10); c11 = Vector512.FusedMultiplyAdd(a1, b1, c11);
            var a2 = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(a2, b0, c20); c21 = Vector512.FusedMultiplyAdd(a2, b1, c21);
            var a3 = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(a3, b0, c30); c31 = Vector512.FusedMultiplyAdd(a3, b1, c31);
            var a4 = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(a4, b0, c40); c41 = Vector512.FusedMultiplyAdd(a4, b1, c41);
            var a5 = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(a5, b0, c50); c51 = Vector512.FusedMultiplyAdd(a5, b1, c51);
            var a6 = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(a6, b0, c60); c61 = Vector512.FusedMultiplyAdd(a6, b1, c61);
            var a7 = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(a7, b0, c70); c71 = Vector512.FusedMultiplyAdd(a7, b1, c71);
            a += 8;
            b += 32;
        }
        var va = Vector512.Create(alpha);
        Store512(c, c00, c01, va, beta); c += ldc;
        Store512(c, c10, c11, va, beta); c += ldc;
        Store512(c, c20, c21, va, beta); c += ldc;
        Store512(c, c30, c31, va, beta); c += ldc;
        Store512(c, c40, c41, va, beta); c += ldc;
        Store512(c, c50, c51, va, beta); c += ldc;
        Store512(c, c60, c61, va, beta); c += ldc;
        Store512(c, c70, c71, va, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> x0, Vector512<float> x1, Vector512<float> alpha, float beta)
    {
        if (beta == 0f)
        {
            (x0 * alpha).Store(c);
            (x1 * alpha).Store(c + 16);
        }
        else if (beta == 1f)
        {
            (Vector512.Load(c) + x0 * alpha).Store(c);
            (Vector512.Load(c + 16) + x1 * alpha).Store(c + 16);
        }
        else
        {
            var vb = Vector512.Create(beta);
            (Vector512.Load(c) * vb + x0 * alpha).Store(c);
            (Vector512.Load(c + 16) * vb + x1 * alpha).Store(c + 16);
        }
    }

    /// <summary>6×(2·V) tile with Vector&lt;float&gt; (6×16 with AVX2): 12 accumulators.</summary>
    private static void Kernel6xV(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        int w = Vector<float>.Count;
        Vector<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector.Load(b);
            var b1 = Vector.Load(b + w);
            var a0 = new Vector<float>(a[0]);
            c00 = Vector.FusedMultiplyAdd(a0, b0, c00); c01 = Vector.FusedMultiplyAdd(a0, b1, c01);
            var a1 = new Vector<float>(a[1]);
            c10 = Vector.FusedMultiplyAdd(a1, b0, c10); c11 = Vector.FusedMultiplyAdd(a1, b1, c11);
            var a2 = new Vector<float>(a[2]);
            c20 = Vector.FusedMultiplyAdd(a2, b0, c20); c21 = Vector.FusedMultiplyAdd(a2, b1, c21);
            var a3 = new Vector<float>(a[3]);
            c30 = Vector.FusedMultiplyAdd(a3, b0, c30); c31 = Vector.FusedMultiplyAdd(a3, b1, c31);
            var a4 = new Vector<float>(a[4]);
            c40 = Vector.FusedMultiplyAdd(a4, b0, c40); c41 = Vector.FusedMultiplyAdd(a4, b1, c41);
            var a5 = new Vector<float>(a[5]);
            c50 = Vector.FusedMultiplyAdd(a5, b0, c50); c51 = Vector.FusedMultiplyAdd(a5, b1, c51);
            a += 6;
            b += 2 * w;
        }
        var va = new Vector<float>(alpha);
        StoreV(c, w, c00, c01, va, beta); c += ldc;
        StoreV(c, w, c10, c11, va, beta); c += ldc;
        StoreV(c, w, c20, c21, va, beta); c += ldc;
        StoreV(c, w, c30, c31, va, beta); c += ldc;
        StoreV(c, w, c40, c41, va, beta); c += ldc;
        StoreV(c, w, c50, c51, va, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreV(float* c, int w, Vector<float> x0, Vector<float> x1, Vector<float> alpha, float beta)
    {
        if (beta == 0f)
        {
            (x0 * alpha).Store(c);
            (x1 * alpha).Store(c + w);
        }
        else if (beta == 1f)
        {
            (Vector.Load(c) + x0 * alpha).Store(c);
            (Vector.Load(c + w) + x1 * alpha).Store(c + w);
        }
        else
        {
            var vb = new Vector<float>(beta);
            (Vector.Load(c) * vb + x0 * alpha).Store(c);
            (Vector.Load(c + w) * vb + x1 * alpha).Store(c + w);
        }
    }
}
