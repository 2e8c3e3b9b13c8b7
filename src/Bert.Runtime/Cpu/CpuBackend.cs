// The CPU backend: fp32, vectorized, multithreaded, and the correctness oracle for every op.
//
// Conventions (shared with the CUDA backend; see also IBackend):
// - Memory is host memory; TensorRef.Address is the pointer. Activations are F32 (ComputeType),
//   ids / masks / labels / positions I32.
// - Parallel ops split their work into chunks fixed by the op's sizes alone (never by the thread
//   count). Each chunk writes disjoint outputs, or a partial sum of its own that is then reduced in
//   chunk order; every sum inside a chunk runs in one fixed order. Results are therefore bitwise
//   reproducible, for any thread count, except the GEMMs through OpenBLAS, which are reproducible
//   for a fixed thread count (the managed GEMM is reproducible for any).
// - Dropout: element i of a dropout site is kept iff Philox.Uniform(seed, step, stream, i) ≥ p and
//   then scaled by 1/(1−p), where i is the element's row-major flat index in the op's tensor:
//     AttentionForward/Backward: probs [B,NH,S,S]  i = ((b·NH + h)·S + query)·S + key
//     ResidualLayerNorm(+Backward): branch [N,H]    i = n·H + c
//     EmbeddingsForward/Backward: output [B·S,H]    i = (b·S + s)·H + c
//     Dropout: input [count]                       i = n
//   Backward ops regenerate the same mask from the same spec.
// - Attention mask: key positions with mask 0 get probability exactly 0; a query row whose keys are
//   all masked gets all-zero probabilities (so a zero context and zero gradients).
// - SoftmaxCrossEntropy counts a row correct when the first index of its largest logit equals the
//   label; rows of weight 0 get a zero gradient and contribute nothing, even with non-finite logits.
// - AdamW: the clip scale needs MaxGradNorm > 0 whenever normSquared is given.
using System.Runtime.InteropServices;

namespace Bert.Runtime.Cpu;

/// <summary>Which GEMM the CPU backend uses.</summary>
public enum CpuGemmKind
{
    /// <summary>The managed GEMM on CPUs with AVX-512 (where it measured 1.3–1.8× faster than Debian's
    /// OpenBLAS 0.3.21, whose kernels stop at AVX2, and is deterministic across thread counts); elsewhere
    /// OpenBLAS when it loads, else managed. The BERT_CPU_GEMM environment variable ("openblas" or
    /// "managed") overrides.</summary>
    Auto = 0,
    /// <summary>OpenBLAS cblas_sgemm (libopenblas.so.0).</summary>
    OpenBlas = 1,
    /// <summary>The built-in blocked, vectorized, multithreaded GEMM.</summary>
    Managed = 2,
}

/// <summary>
/// fp32 implementation of <see cref="IBackend"/> on the host: OpenBLAS (or a managed fallback) for
/// GEMMs, vectorized and multithreaded loops for everything else, reproducible results (see the
/// file header). Ops run synchronously on the calling thread plus the backend's worker threads;
/// like a device stream, a backend serves one caller at a time.
/// </summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    /// <summary>Environment variable that forces the GEMM: "managed" or "openblas".</summary>
    public const string GemmEnvironmentVariable = "BERT_CPU_GEMM";

    /// <summary>Elements per chunk of elementwise ops (a multiple of 16, so Philox blocks and
    /// vectors never straddle chunks).</summary>
    private const int ElementChunk = 16384;

    private readonly CpuWorkerPool _pool;
    private float** _packA;
    private float** _packB;
    private NativeScratch _partials;
    private NativeScratch _rowStats;
    private bool _disposed;

    /// <param name="threads">Threads for ops and GEMMs; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    public CpuBackend(int threads = 0) : this(threads, CpuGemmKind.Auto)
    {
    }

    /// <param name="threads">Threads for ops and GEMMs; 0 means <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="gemm">GEMM choice; <see cref="CpuGemmKind.OpenBlas"/> throws when OpenBLAS does not load.</param>
    public CpuBackend(int threads, CpuGemmKind gemm)
    {
        if (threads < 0)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be ≥ 0 (0: one per processor)");
        Threads = threads == 0 ? Environment.ProcessorCount : threads;
        Gemm = ResolveGemm(gemm);
        _pool = new CpuWorkerPool(Threads);
        Name = $"cpu ({Threads} thread{(Threads == 1 ? "" : "s")}, {(Gemm == CpuGemmKind.OpenBlas ? "OpenBLAS" : "managed")} GEMM)";
    }

    /// <summary>"cpu (16 threads, OpenBLAS GEMM)" or "cpu (16 threads, managed GEMM)".</summary>
    public string Name { get; }

    /// <summary>The memory the runtime may use (physical memory, or the container's limit).</summary>
    public long? AvailableMemoryBytes
    {
        get
        {
            var info = GC.GetGCMemoryInfo();
            long total = info.TotalAvailableMemoryBytes;
            return total > 0 ? total - Math.Min(total, info.MemoryLoadBytes) + GC.GetTotalMemory(false) : null;
        }
    }

    public DType ComputeType => DType.F32;

    /// <summary>Threads used by ops and GEMMs (the caller counts as one).</summary>
    public int Threads { get; }

    /// <summary>The active GEMM: <see cref="CpuGemmKind.OpenBlas"/> or <see cref="CpuGemmKind.Managed"/>.</summary>
    public CpuGemmKind Gemm { get; }

    /// <summary>Whether libopenblas could be loaded in this process.</summary>
    public static bool OpenBlasAvailable => OpenBlas.IsAvailable;

    /// <summary>What <see cref="CpuGemmKind.Auto"/> picks on this machine (without the environment override).</summary>
    public static CpuGemmKind AutoGemm =>
        ManagedGemm.Wide || !OpenBlas.IsAvailable ? CpuGemmKind.Managed : CpuGemmKind.OpenBlas;

    private static CpuGemmKind ResolveGemm(CpuGemmKind requested)
    {
        if (requested == CpuGemmKind.Auto)
        {
            string? env = Environment.GetEnvironmentVariable(GemmEnvironmentVariable);
            requested = env?.Trim().ToLowerInvariant() switch
            {
                null or "" or "auto" => AutoGemm,
                "managed" => CpuGemmKind.Managed,
                "openblas" => CpuGemmKind.OpenBlas,
                _ => throw new ArgumentException(
                    $"environment variable {GemmEnvironmentVariable} is '{env}'; expected 'managed', 'openblas' or 'auto'", nameof(requested)),
            };
        }
        if (requested == CpuGemmKind.OpenBlas && !OpenBlas.IsAvailable)
            throw new DllNotFoundException(
                "OpenBLAS GEMM was requested but neither libopenblas.so.0 nor libopenblas.so loads (install libopenblas0-pthread, or use the managed GEMM)");
        if (requested is not (CpuGemmKind.OpenBlas or CpuGemmKind.Managed))
            throw new ArgumentOutOfRangeException(nameof(requested), requested, "unknown GEMM kind");
        return requested;
    }

    // ---- memory ---------------------------------------------------------------------------------

    public DeviceBuffer Allocate(long length, DType type, string label)
    {
        ThrowIfDisposed();
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, $"Allocate '{label}': length must be ≥ 0");
        _ = type.Size();
        return CpuBuffer.Create(length, type, label);
    }

    /// <summary>Writes source into the first source.Length elements of destination.</summary>
    public void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged
    {
        CheckHostType<T>(destination, nameof(Upload), nameof(destination));
        if (source.Length > destination.Length)
            throw new ArgumentException(
                $"Upload: source has {source.Length} elements but destination holds {destination.Length}", nameof(source));
        source.CopyTo(new Span<T>((void*)destination.Address, source.Length));
    }

    /// <summary>Reads the first destination.Length elements of source.</summary>
    public void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged
    {
        CheckHostType<T>(source, nameof(Download), nameof(source));
        if (destination.Length > source.Length)
            throw new ArgumentException(
                $"Download: destination has {destination.Length} elements but source holds {source.Length}", nameof(destination));
        new ReadOnlySpan<T>((void*)source.Address, destination.Length).CopyTo(destination);
    }

    public void Copy(TensorRef destination, TensorRef source)
    {
        ThrowIfDisposed();
        OpChecks.Copy(destination, source);
        Buffer.MemoryCopy((void*)source.Address, (void*)destination.Address, destination.Bytes, source.Bytes);
    }

    public void Zero(TensorRef tensor)
    {
        ThrowIfDisposed();
        OpChecks.Zero(tensor);
        NativeMemory.Clear((void*)tensor.Address, (nuint)tensor.Bytes);
    }

    public void Synchronize() => ThrowIfDisposed();

    private void CheckHostType<T>(TensorRef view, string op, string argument) where T : unmanaged
    {
        ThrowIfDisposed();
        if (view.IsNull) throw new ArgumentException($"{op}: {argument} is null", argument);
        bool ok = view.DType switch
        {
            DType.F32 => typeof(T) == typeof(float),
            DType.I32 => typeof(T) == typeof(int) || typeof(T) == typeof(uint),
            DType.BF16 => typeof(T) == typeof(ushort) || typeof(T) == typeof(short),
            _ => false,
        };
        if (!ok)
            throw new ArgumentException($"{op}: {argument} has dtype {view.DType}, which host type {typeof(T).Name} cannot hold", argument);
    }

    // ---- shared helpers --------------------------------------------------------------------------

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Activations are F32 (see <see cref="OpChecks"/>, which every op calls first).</summary>
    private const ActivationTypes Activations = ActivationTypes.F32;

    private static float* F(TensorRef t) => (float*)t.Address;

    private static int* I(TensorRef t) => (int*)t.Address;

    private static int CeilDiv(long x, long y) => checked((int)((x + y - 1) / y));

    /// <summary>Rows per chunk for row-wise ops over rows of <paramref name="width"/> elements: about
    /// <see cref="ElementChunk"/> elements, a function of the width only.</summary>
    private static int RowsPerChunk(int width) => Math.Max(1, ElementChunk / Math.Max(1, width));

    /// <summary>C[m,n] = alpha·op(A)·op(B) + beta·C on the active GEMM, using every thread.</summary>
    internal void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (m == 0 || n == 0) return;
        if (Gemm == CpuGemmKind.OpenBlas && k > 0)
        {
            OpenBlas.SetThreads(Threads);
            OpenBlas.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        }
        else
        {
            EnsureGemmScratch();
            var args = new GemmArgs(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            ManagedGemm.Parallel(_pool, args, _packA, _packB);
        }
    }

    /// <summary>Per-worker packing buffers of the managed GEMM (also used by attention's per-head GEMMs).</summary>
    private void EnsureGemmScratch()
    {
        if (_packA != null) return;
        var packA = (float**)NativeMemory.AllocZeroed((nuint)Threads, (nuint)sizeof(float*));
        var packB = (float**)NativeMemory.AllocZeroed((nuint)Threads, (nuint)sizeof(float*));
        for (int w = 0; w < Threads; w++)
        {
            packA[w] = (float*)NativeMemory.AlignedAlloc((nuint)ManagedGemm.PackALength * sizeof(float), 64);
            packB[w] = (float*)NativeMemory.AlignedAlloc((nuint)ManagedGemm.PackBLength * sizeof(float), 64);
        }
        _packA = packA;
        _packB = packB;
    }

    /// <summary>dst[width] += Σ_chunk partials[chunk·stride + c], summed in chunk order.</summary>
    private void ReducePartials(float* dst, float* partials, int chunks, int width, int stride)
    {
        var job = new ReducePartialsJob { Dst = dst, Partials = partials, Chunks = chunks, Width = width, Stride = stride };
        _pool.Run(&job, CeilDiv(width, ReducePartialsJob.Columns));
    }

    private struct ReducePartialsJob : IChunkJob<ReducePartialsJob>
    {
        public const int Columns = 256;
        public float* Dst, Partials;
        public int Chunks, Width, Stride;

        public static void Execute(ref ReducePartialsJob job, int chunk, int worker)
        {
            int c0 = chunk * Columns, n = Math.Min(Columns, job.Width - c0);
            float* acc = stackalloc float[Columns];
            new Span<float>(acc, n).Clear();
            for (int ch = 0; ch < job.Chunks; ch++) CpuMath.AddInPlace(acc, job.Partials + (long)ch * job.Stride + c0, n);
            CpuMath.AddInPlace(job.Dst + c0, acc, n);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _pool.Dispose();
        if (_packA != null)
        {
            for (int w = 0; w < Threads; w++)
            {
                NativeMemory.AlignedFree(_packA[w]);
                NativeMemory.AlignedFree(_packB[w]);
            }
            NativeMemory.Free(_packA);
            NativeMemory.Free(_packB);
            _packA = null;
            _packB = null;
        }
        _partials.Dispose();
        _rowStats.Dispose();
    }
}

/// <summary>A grow-only native block reused across calls (partial sums, per-row statistics).</summary>
internal unsafe struct NativeScratch : IDisposable
{
    private void* _memory;
    private nuint _bytes;

    /// <summary>At least <paramref name="bytes"/> bytes, 64-byte aligned; contents undefined.</summary>
    public void* Get(long bytes)
    {
        if ((nuint)bytes > _bytes)
        {
            if (_memory != null) NativeMemory.AlignedFree(_memory);
            _bytes = (nuint)Math.Max(bytes, 4096);
            _memory = NativeMemory.AlignedAlloc(_bytes, 64);
        }
        return _memory;
    }

    public void Dispose()
    {
        if (_memory != null) NativeMemory.AlignedFree(_memory);
        _memory = null;
        _bytes = 0;
    }
}
