using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bert.Native.Interop;

namespace Bert.Native;

/// <summary>A CUDA driver, cuBLAS or NVRTC call failed. The message names the call and the native error.</summary>
public class CudaException : Exception
{
    public CudaException(string message) : base(message) { }

    public CudaException(string message, Exception inner) : base(message, inner) { }

    /// <summary>The failing call as written in the source, e.g. "CuDriver.cuMemAlloc(out p, bytes)".</summary>
    public string? Call { get; init; }

    /// <summary>The native error name, e.g. "CUDA_ERROR_ILLEGAL_ADDRESS".</summary>
    public string? ErrorName { get; init; }
}

/// <summary>A device allocation did not fit. States what was asked for and what the device has.</summary>
public sealed class CudaOutOfMemoryException : CudaException
{
    public CudaOutOfMemoryException(string label, long requestedBytes, long freeBytes, long totalBytes)
        : base($"out of GPU memory allocating '{label}': requested {Bytes(requestedBytes)}, " +
               $"free {Bytes(freeBytes)} of {Bytes(totalBytes)}. Try a smaller micro-batch (with gradient " +
               "accumulation to keep the effective batch), a shorter sequence length, or bf16 compute.")
    {
        Label = label;
        RequestedBytes = requestedBytes;
        FreeBytes = freeBytes;
        TotalBytes = totalBytes;
        ErrorName = nameof(CUresult.CUDA_ERROR_OUT_OF_MEMORY);
    }

    public string Label { get; }
    public long RequestedBytes { get; }
    public long FreeBytes { get; }
    public long TotalBytes { get; }

    internal static string Bytes(long b) => b >= 1L << 30 ? $"{b / (double)(1L << 30):F2} GiB"
        : b >= 1L << 20 ? $"{b / (double)(1L << 20):F1} MiB" : $"{b} B";
}

/// <summary>Turns native status codes into <see cref="CudaException"/> naming the call.</summary>
internal static unsafe class CudaCheck
{
    public static void Check(CUresult status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != CUresult.CUDA_SUCCESS) throw Failure(status, call);
    }

    public static void Check(cublasStatus_t status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != cublasStatus_t.CUBLAS_STATUS_SUCCESS)
            throw new CudaException($"{call} failed: {status} ({CublasDescription(status)})") { Call = call, ErrorName = status.ToString() };
    }

    public static void Check(nvrtcResult status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != nvrtcResult.NVRTC_SUCCESS)
            throw new CudaException($"{call} failed: {status}") { Call = call, ErrorName = status.ToString() };
    }

    public static CudaException Failure(CUresult status, string call)
    {
        string name = ErrorName(status);
        string text = ErrorString(status);
        string hint = status switch
        {
            CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION =>
                " The PTX came from an NVRTC newer than the driver supports: update the driver, or point " +
                $"{NativeLibraries.PathVariable} at an older NVRTC.",
            CUresult.CUDA_ERROR_ILLEGAL_ADDRESS or CUresult.CUDA_ERROR_LAUNCH_FAILED =>
                " The context is unusable from here on; an earlier asynchronous kernel may be the culprit " +
                "(rerun with CUDA_LAUNCH_BLOCKING=1 to pin it down).",
            _ => "",
        };
        return new CudaException($"{call} failed: {name} ({text}).{hint}") { Call = call, ErrorName = name };
    }

    /// <summary>The driver's name for a status ("CUDA_ERROR_…"), or the enum name without a driver.</summary>
    public static string ErrorName(CUresult status)
    {
        try
        {
            if (CuDriver.cuGetErrorName(status, out var p) == CUresult.CUDA_SUCCESS && p != null)
                return Marshal.PtrToStringUTF8((nint)p) ?? status.ToString();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return status.ToString();
    }

    public static string ErrorString(CUresult status)
    {
        try
        {
            if (CuDriver.cuGetErrorString(status, out var p) == CUresult.CUDA_SUCCESS && p != null)
                return Marshal.PtrToStringUTF8((nint)p) ?? "no description";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return "no description";
    }

    private static string CublasDescription(cublasStatus_t status)
    {
        try
        {
            var p = Cublas.cublasGetStatusString(status);
            if (p != null) return Marshal.PtrToStringUTF8((nint)p) ?? "";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return status switch
        {
            cublasStatus_t.CUBLAS_STATUS_INVALID_VALUE => "an argument is out of range (sizes, leading dimensions, types)",
            cublasStatus_t.CUBLAS_STATUS_NOT_SUPPORTED => "this type combination or size is not supported",
            cublasStatus_t.CUBLAS_STATUS_ARCH_MISMATCH => "the device lacks a feature this call needs",
            cublasStatus_t.CUBLAS_STATUS_EXECUTION_FAILED => "a GPU kernel failed to launch or run",
            _ => "see the cuBLAS documentation",
        };
    }
}
