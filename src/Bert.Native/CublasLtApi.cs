using Bert.Native.Interop;
using Bert.Runtime;
using static Bert.Native.CudaCheck;

namespace Bert.Native;

/// <summary><see cref="ICublasLtApi"/> on the real library: one cuBLASLt handle, every matmul queued on the
/// backend's stream. The caller makes its context current first (<see cref="CudaDriverApi"/> does).</summary>
internal sealed unsafe class CublasLtApi(nint handle, nint stream) : ICublasLtApi
{
    public nint CreateDescriptor(bool transA, bool transB, LtEpilogue epilogue, DType biasType)
    {
        Check(CublasLt.cublasLtMatmulDescCreate(out nint desc, cublasComputeType_t.CUBLAS_COMPUTE_32F, cudaDataType_t.CUDA_R_32F));
        try
        {
            int ta = (int)CudaDriverApi.Op(transA), tb = (int)CudaDriverApi.Op(transB);
            Set(desc, cublasLtMatmulDescAttributes_t.CUBLASLT_MATMUL_DESC_TRANSA, ta);
            Set(desc, cublasLtMatmulDescAttributes_t.CUBLASLT_MATMUL_DESC_TRANSB, tb);
            uint e = (uint)(epilogue switch
            {
                LtEpilogue.Bias => cublasLtEpilogue_t.CUBLASLT_EPILOGUE_BIAS,
                LtEpilogue.GeluTanhAuxBias => cublasLtEpilogue_t.CUBLASLT_EPILOGUE_GELU_AUX_BIAS,
                LtEpilogue.BiasGradB => cublasLtEpilogue_t.CUBLASLT_EPILOGUE_BGRADB,
                _ => throw new ArgumentOutOfRangeException(nameof(epilogue), epilogue, "no cuBLASLt epilogue"),
            });
            Set(desc, cublasLtMatmulDescAttributes_t.CUBLASLT_MATMUL_DESC_EPILOGUE, e);
            // The bias (gradient) vector's type: fp32 for BGRADB's output (it goes to the fp32 reduction scratch).
            int bt = (int)CudaDriverApi.DataType(biasType);
            Set(desc, cublasLtMatmulDescAttributes_t.CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bt);
            return desc;
        }
        catch
        {
            CublasLt.cublasLtMatmulDescDestroy(desc);
            throw;
        }
    }

    public void SetPointers(nint descriptor, ulong bias, ulong aux, long auxLd)
    {
        Set(descriptor, cublasLtMatmulDescAttributes_t.CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
        if (aux == 0) return;
        Set(descriptor, cublasLtMatmulDescAttributes_t.CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
        Set(descriptor, cublasLtMatmulDescAttributes_t.CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, auxLd);
    }

    public nint CreateLayout(DType type, long rows, long cols, long ld)
    {
        Check(CublasLt.cublasLtMatrixLayoutCreate(out nint layout, CudaDriverApi.DataType(type), (ulong)rows, (ulong)cols, ld));
        return layout;
    }

    public bool TryGetAlgorithm(nint descriptor, nint aLayout, nint bLayout, nint dLayout, long workspaceBytes, uint alignment,
        out cublasLtMatmulAlgo_t algorithm, out string reason)
    {
        algorithm = default;
        Check(CublasLt.cublasLtMatmulPreferenceCreate(out nint preference));
        try
        {
            ulong workspace = (ulong)workspaceBytes;
            Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(preference,
                cublasLtMatmulPreferenceAttributes_t.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(ulong)));
            foreach (var a in (ReadOnlySpan<cublasLtMatmulPreferenceAttributes_t>)[
                         cublasLtMatmulPreferenceAttributes_t.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                         cublasLtMatmulPreferenceAttributes_t.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                         cublasLtMatmulPreferenceAttributes_t.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                         cublasLtMatmulPreferenceAttributes_t.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES])
            {
                uint value = alignment;
                Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(preference, a, &value, sizeof(uint)));
            }
            cublasLtMatmulHeuristicResult_t result;
            var status = CublasLt.cublasLtMatmulAlgoGetHeuristic(handle, descriptor, aLayout, bLayout, dLayout, dLayout,
                preference, 1, &result, out int found);
            // NOT_SUPPORTED / INVALID_VALUE: this combination (epilogue, types, alignment) has no kernel.
            if (status != cublasStatus_t.CUBLAS_STATUS_SUCCESS) { reason = $"heuristic returned {status}"; return false; }
            if (found == 0) { reason = "the heuristic found no algorithm"; return false; }
            if (result.State != cublasStatus_t.CUBLAS_STATUS_SUCCESS) { reason = $"algorithm state {result.State}"; return false; }
            algorithm = result.Algo;
            reason = "";
            return true;
        }
        finally
        {
            CublasLt.cublasLtMatmulPreferenceDestroy(preference);
        }
    }

    public void Matmul(nint descriptor, float alpha, ulong a, nint aLayout, ulong b, nint bLayout, float beta, ulong d, nint dLayout,
        in cublasLtMatmulAlgo_t algorithm, ulong workspace, long workspaceBytes)
    {
        var algo = algorithm;
        Check(CublasLt.cublasLtMatmul(handle, descriptor, &alpha, a, aLayout, b, bLayout, &beta,
            d, dLayout, d, dLayout, &algo, workspace, (nuint)workspaceBytes, stream));
    }

    public void DestroyLayout(nint layout) => CublasLt.cublasLtMatrixLayoutDestroy(layout);

    public void DestroyDescriptor(nint descriptor) => CublasLt.cublasLtMatmulDescDestroy(descriptor);

    private static void Set<T>(nint desc, cublasLtMatmulDescAttributes_t attribute, T value) where T : unmanaged =>
        Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, attribute, &value, (nuint)sizeof(T)), $"cublasLtMatmulDescSetAttribute({attribute})");
}
