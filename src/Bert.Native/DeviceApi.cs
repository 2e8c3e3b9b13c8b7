using Bert.Runtime;

namespace Bert.Native;

/// <summary>How fp32 GEMMs run on cuBLAS.</summary>
public enum Fp32GemmMode
{
    /// <summary>CUBLAS_COMPUTE_32F with the default math mode: full fp32, no TF32.</summary>
    Default = 0,
    /// <summary>CUBLAS_COMPUTE_32F_PEDANTIC: fp32 with no reduced-precision shortcuts at all (slowest).</summary>
    Pedantic = 1,
    /// <summary>CUBLAS_COMPUTE_32F_FAST_TF32: fp32 storage, TF32 tensor cores (about 1e-3 relative error).</summary>
    Tf32 = 2,
}

/// <summary>
/// One GEMM as cuBLAS's <c>cublasGemmStridedBatchedEx</c> takes it, column-major: for each batch z,
/// C_z[M×N] = Alpha·op(A_z)·op(B_z) + Beta·C_z with op(A_z) M×K, op(B_z) K×N, X_z = X + z·StrideX
/// elements. BatchCount 1 runs as <c>cublasGemmEx</c>. The backend's row-major GEMMs map onto it as
/// Cᵀ = op(B)ᵀ·op(A)ᵀ (see <see cref="RowMajor"/>).
/// </summary>
internal readonly record struct GemmCall(
    bool TransA, bool TransB, int M, int N, int K, float Alpha,
    ulong A, DType AType, int Lda, long StrideA,
    ulong B, DType BType, int Ldb, long StrideB, float Beta,
    ulong C, DType CType, int Ldc, long StrideC, int BatchCount, Fp32GemmMode Fp32Mode)
{
    /// <summary>
    /// Row-major C[m×n] = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n, where lda/ldb/ldc are row
    /// strides and transA means A is stored k×m. Row-major X is column-major Xᵀ with the same leading
    /// dimension, so this is cuBLAS's Cᵀ = op(B)ᵀ·op(A)ᵀ: operands swapped, sizes (n, m, k).
    /// </summary>
    public static GemmCall RowMajor(bool transA, bool transB, int m, int n, int k, float alpha,
        TensorRef a, int lda, long strideA, TensorRef b, int ldb, long strideB, float beta,
        TensorRef c, int ldc, long strideC, int batch, Fp32GemmMode mode) =>
        new(transB, transA, n, m, k, alpha,
            b.Address, b.DType, ldb, strideB,
            a.Address, a.DType, lda, strideA, beta,
            c.Address, c.DType, ldc, strideC, batch, mode);

    /// <summary>The highest element index (exclusive) each operand touches, for bounds checks.</summary>
    public (long A, long B, long C) Extents()
    {
        long rowsA = TransA ? K : M, colsA = TransA ? M : K;
        long rowsB = TransB ? N : K, colsB = TransB ? K : N;
        long z = BatchCount - 1L;
        return (z * StrideA + (colsA - 1) * Lda + rowsA,
                z * StrideB + (colsB - 1) * Ldb + rowsB,
                z * StrideC + (N - 1L) * Ldc + M);
    }

    /// <summary>Throws when cuBLAS would reject the call (leading dimensions, type combination), with
    /// the whole call in the message.</summary>
    public void Validate()
    {
        if (M <= 0 || N <= 0 || K <= 0 || BatchCount <= 0)
            throw new ArgumentException($"GEMM with non-positive size: {this}");
        if (Lda < Math.Max(1, TransA ? K : M) || Ldb < Math.Max(1, TransB ? N : K) || Ldc < Math.Max(1, M))
            throw new ArgumentException($"GEMM leading dimension too small: {this}");
        bool ok = (AType, BType, CType) switch
        {
            (DType.F32, DType.F32, DType.F32) => true,
            (DType.BF16, DType.BF16, DType.BF16 or DType.F32) => true,
            _ => false,
        };
        if (!ok)
            throw new ArgumentException($"GEMM type combination A={AType} B={BType} C={CType} is not one cuBLAS runs " +
                                        "(F32·F32→F32 or BF16·BF16→BF16/F32)");
    }

    public override string ToString() =>
        $"{(TransA ? 'T' : 'N')}{(TransB ? 'T' : 'N')} m={M} n={N} k={K} alpha={Alpha} beta={Beta} " +
        $"A={AType}@0x{A:x} lda={Lda} sA={StrideA} B={BType}@0x{B:x} ldb={Ldb} sB={StrideB} " +
        $"C={CType}@0x{C:x} ldc={Ldc} sC={StrideC} batch={BatchCount}";
}

/// <summary>cuBLASLt epilogues the backend uses.</summary>
internal enum LtEpilogue
{
    /// <summary>D = A·B + bias (bias along M, of the call's Type).</summary>
    Bias,
    /// <summary>Aux = A·B + bias; D = gelu_tanh(Aux).</summary>
    GeluTanhAuxBias,
    /// <summary>D = A·B (+ Beta·D); Bias[N] = Σ_k op(B)[k, n], F32, overwritten (cuBLASLt's BGRADB: the bias
    /// gradient of a weight-gradient GEMM whose B is dOutput).</summary>
    BiasGradB,
}

/// <summary>A single cuBLASLt matmul with an epilogue, column-major like <see cref="GemmCall"/> (no batch, fp32
/// accumulation): D[M×N] = epilogue(op(A)·op(B)) (+ Beta·D), bias[M] (Bias epilogues) or bias[N] (BiasGradB),
/// Aux[M×N] with leading dimension Ldd. A and B are of <paramref name="Type"/> (F32, or BF16 with the bias from the
/// bf16 shadow); D is of <paramref name="OutType"/> (null: Type); the bias of Type, except BiasGradB's F32 output.</summary>
internal readonly record struct LtMatmulCall(
    bool TransA, bool TransB, int M, int N, int K,
    ulong A, int Lda, ulong B, int Ldb, ulong D, int Ldd, ulong Bias, ulong Aux, LtEpilogue Epilogue, DType Type = DType.F32,
    DType? OutType = null, float Beta = 0f)
{
    /// <summary>D's element type.</summary>
    public DType DType => OutType ?? Type;

    /// <summary>The bias vector's element type: F32 for the BiasGradB output, the operands' type otherwise.</summary>
    public DType BiasType => Epilogue == LtEpilogue.BiasGradB ? DType.F32 : Type;

    /// <summary>The bias vector's length: N for BiasGradB (one per column of D), M otherwise.</summary>
    public int BiasLength => Epilogue == LtEpilogue.BiasGradB ? N : M;
}

/// <summary>
/// Everything the CUDA backend asks of a device, in stream order: memory, copies, kernel launches,
/// GEMMs, events. <see cref="CudaDriverApi"/> implements it with the driver API and cuBLAS; tests
/// implement it with an emulator that runs the same kernel sources on the CPU.
/// </summary>
internal interface IDeviceApi : IDisposable
{
    CudaDeviceInfo Device { get; }

    /// <summary>NVRTC, cuBLAS and kernel-cache details for diagnostics.</summary>
    string Description { get; }

    /// <summary>Whether <see cref="LtMatmul"/> is available.</summary>
    bool SupportsLt { get; }

    /// <summary>A device allocation of at least <paramref name="bytes"/>, 256-byte aligned. Throws
    /// <see cref="CudaOutOfMemoryException"/> when it does not fit.</summary>
    ulong Allocate(long bytes, string label);

    void Free(ulong address);

    (long Free, long Total) MemoryInfo();

    void Memset(ulong destination, byte value, long bytes);

    void Copy(ulong destination, ulong source, long bytes);

    /// <summary>Queues a copy from host memory; <paramref name="source"/> may be reused when this returns.</summary>
    void Upload(ulong destination, ReadOnlySpan<byte> source);

    /// <summary>Waits for queued work, then copies to the host.</summary>
    void Download(Span<byte> destination, ulong source);

    /// <summary>Queues a copy from pinned host memory without staging; the caller keeps the memory intact
    /// until an event recorded after it has completed.</summary>
    void UploadPinned(ulong destination, nint pinnedSource, long bytes);

    nint AllocatePinned(long bytes);

    void FreePinned(nint pointer);

    void Synchronize();

    void Launch(KernelSpec kernel, Dim3 grid, Dim3 block, ReadOnlySpan<KernelArg> args);

    void Gemm(in GemmCall call);

    /// <summary>Queues one cuBLASLt matmul; false, with nothing queued, when cuBLASLt has no algorithm for the
    /// call's shape and epilogue (the caller then takes the cuBLAS path).</summary>
    bool LtMatmul(in LtMatmulCall call);

    nint CreateEvent();

    void RecordEvent(nint evt);

    void SynchronizeEvent(nint evt);

    float ElapsedMilliseconds(nint start, nint end);

    void DestroyEvent(nint evt);

    // ---- CUDA graphs (stream capture) ---------------------------------------------------------

    /// <summary>From here until <see cref="EndCapture"/> the stream's work (launches, GEMMs, copies, memsets) is recorded,
    /// not run. A host synchronization or download in between breaks the capture (the driver reports
    /// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, and <see cref="EndCapture"/> then fails).</summary>
    void BeginCapture();

    /// <summary>Ends the capture and returns the executable graph with the number of operations it holds. Throws
    /// <see cref="CudaException"/> when the capture was broken; the stream is no longer capturing either way.</summary>
    (nint Graph, int Nodes) EndCapture();

    /// <summary>Queues one replay of a graph of <see cref="EndCapture"/> on the stream.</summary>
    void LaunchGraph(nint graph);

    void DestroyGraph(nint graph);
}
