using System.Runtime.InteropServices;

namespace Bert.Native.Interop;

/// <summary>cublasStatus_t, native names.</summary>
internal enum cublasStatus_t
{
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16,
}

internal enum cublasOperation_t
{
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
}

internal enum cublasMath_t
{
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_PEDANTIC_MATH = 2,
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
}

/// <summary>cudaDataType_t (library_types.h), the values used here.</summary>
internal enum cudaDataType_t
{
    CUDA_R_32F = 0,
    CUDA_R_64F = 1,
    CUDA_R_16F = 2,
    CUDA_R_32I = 10,
    CUDA_R_16BF = 14,
}

internal enum cublasComputeType_t
{
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_64F = 70,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
}

internal enum cublasGemmAlgo_t
{
    CUBLAS_GEMM_DEFAULT = -1,
}

/// <summary>
/// cuBLAS (libcublas.so.13 or .12), raw. Matrices are column-major as cuBLAS sees them; the backend's
/// row-major helpers (<see cref="Bert.Native.GemmCall"/>) do the transposition. Alpha and beta are host
/// pointers (the default pointer mode) to values of the compute type's scale type (float for 32F).
/// </summary>
internal static unsafe partial class Cublas
{
    static Cublas() => NativeLibraries.EnsureResolver();

    private const string Lib = NativeLibraries.Cublas;

    [LibraryImport(Lib)] public static partial cublasStatus_t cublasCreate_v2(out nint handle);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasDestroy_v2(nint handle);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasGetVersion_v2(nint handle, out int version);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasSetStream_v2(nint handle, nint stream);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasSetMathMode(nint handle, cublasMath_t mode);
    [LibraryImport(Lib)] public static partial byte* cublasGetStatusName(cublasStatus_t status);
    [LibraryImport(Lib)] public static partial byte* cublasGetStatusString(cublasStatus_t status);

    [LibraryImport(Lib)]
    public static partial cublasStatus_t cublasGemmEx(nint handle, cublasOperation_t transa, cublasOperation_t transb,
        int m, int n, int k, void* alpha,
        ulong a, cudaDataType_t aType, int lda,
        ulong b, cudaDataType_t bType, int ldb, void* beta,
        ulong c, cudaDataType_t cType, int ldc,
        cublasComputeType_t computeType, cublasGemmAlgo_t algo);

    [LibraryImport(Lib)]
    public static partial cublasStatus_t cublasGemmStridedBatchedEx(nint handle, cublasOperation_t transa, cublasOperation_t transb,
        int m, int n, int k, void* alpha,
        ulong a, cudaDataType_t aType, int lda, long strideA,
        ulong b, cudaDataType_t bType, int ldb, long strideB, void* beta,
        ulong c, cudaDataType_t cType, int ldc, long strideC,
        int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo);
}

/// <summary>cublasLtMatmulDescAttributes_t, the values used here.</summary>
internal enum cublasLtMatmulDescAttributes_t
{
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
    CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_TRANSC = 5,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE = 10,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE = 13,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE = 22,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
}

/// <summary>cublasLtEpilogue_t.</summary>
internal enum cublasLtEpilogue_t
{
    CUBLASLT_EPILOGUE_DEFAULT = 1,
    CUBLASLT_EPILOGUE_RELU = 2,
    CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_RELU_BIAS = 6,
    /// <summary>GELU (tanh approximation) with its input saved to the aux buffer.</summary>
    CUBLASLT_EPILOGUE_GELU = 32,
    CUBLASLT_EPILOGUE_GELU_AUX = 32 | 128,
    CUBLASLT_EPILOGUE_GELU_BIAS = 32 | 4,
    CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 32 | 128 | 4,
    CUBLASLT_EPILOGUE_DGELU = 64 | 128,
    CUBLASLT_EPILOGUE_DGELU_BGRAD = 64 | 128 | 16,
    CUBLASLT_EPILOGUE_BGRADA = 256,
    CUBLASLT_EPILOGUE_BGRADB = 512,
}

internal enum cublasLtMatrixLayoutAttribute_t
{
    CUBLASLT_MATRIX_LAYOUT_TYPE = 0,
    CUBLASLT_MATRIX_LAYOUT_ORDER = 1,
    CUBLASLT_MATRIX_LAYOUT_ROWS = 2,
    CUBLASLT_MATRIX_LAYOUT_COLS = 3,
    CUBLASLT_MATRIX_LAYOUT_LD = 4,
    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
    CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
}

internal enum cublasLtMatmulPreferenceAttributes_t
{
    CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
}

/// <summary>cublasLtMatmulAlgo_t: 8 opaque 64-bit words.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct cublasLtMatmulAlgo_t
{
    public fixed ulong Data[8];
}

/// <summary>cublasLtMatmulHeuristicResult_t (96 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct cublasLtMatmulHeuristicResult_t
{
    public cublasLtMatmulAlgo_t Algo;
    public nuint WorkspaceSize;
    public cublasStatus_t State;
    public float WavesCount;
    public fixed int Reserved[4];
}

/// <summary>
/// cuBLASLt (libcublasLt.so.13 or .12), raw: handle, matmul descriptor (epilogues BIAS, GELU_AUX_BIAS,
/// DGELU, BGRADB…), matrix layouts, heuristic preference and query, and the matmul itself.
/// </summary>
internal static unsafe partial class CublasLt
{
    static CublasLt() => NativeLibraries.EnsureResolver();

    private const string Lib = NativeLibraries.CublasLt;

    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtCreate(out nint handle);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtDestroy(nint handle);
    [LibraryImport(Lib)] public static partial nuint cublasLtGetVersion();

    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatmulDescCreate(out nint desc, cublasComputeType_t computeType, cudaDataType_t scaleType);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatmulDescDestroy(nint desc);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatmulDescSetAttribute(nint desc, cublasLtMatmulDescAttributes_t attribute, void* buffer, nuint sizeInBytes);

    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatrixLayoutCreate(out nint layout, cudaDataType_t type, ulong rows, ulong cols, long ld);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatrixLayoutDestroy(nint layout);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatrixLayoutSetAttribute(nint layout, cublasLtMatrixLayoutAttribute_t attribute, void* buffer, nuint sizeInBytes);

    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatmulPreferenceCreate(out nint preference);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatmulPreferenceDestroy(nint preference);
    [LibraryImport(Lib)] public static partial cublasStatus_t cublasLtMatmulPreferenceSetAttribute(nint preference, cublasLtMatmulPreferenceAttributes_t attribute, void* buffer, nuint sizeInBytes);

    [LibraryImport(Lib)]
    public static partial cublasStatus_t cublasLtMatmulAlgoGetHeuristic(nint handle, nint operationDesc,
        nint aDesc, nint bDesc, nint cDesc, nint dDesc, nint preference, int requestedAlgoCount,
        cublasLtMatmulHeuristicResult_t* heuristicResults, out int returnAlgoCount);

    [LibraryImport(Lib)]
    public static partial cublasStatus_t cublasLtMatmul(nint handle, nint computeDesc, void* alpha,
        ulong a, nint aDesc, ulong b, nint bDesc, void* beta,
        ulong c, nint cDesc, ulong d, nint dDesc,
        cublasLtMatmulAlgo_t* algo, ulong workspace, nuint workspaceSizeInBytes, nint stream);
}
