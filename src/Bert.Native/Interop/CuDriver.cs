using System.Runtime.InteropServices;

namespace Bert.Native.Interop;


/// <summary>CUresult (cuda.h), native names.</summary>
internal enum CUresult
{
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_DEINITIALIZED = 4,
    CUDA_ERROR_PROFILER_DISABLED = 5,
    CUDA_ERROR_STUB_LIBRARY = 34,
    CUDA_ERROR_DEVICE_UNAVAILABLE = 46,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_DEVICE_NOT_LICENSED = 102,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_CONTEXT_ALREADY_CURRENT = 202,
    CUDA_ERROR_MAP_FAILED = 205,
    CUDA_ERROR_UNMAP_FAILED = 206,
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    CUDA_ERROR_ECC_UNCORRECTABLE = 214,
    CUDA_ERROR_INVALID_PTX = 218,
    CUDA_ERROR_JIT_COMPILER_NOT_FOUND = 221,
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    CUDA_ERROR_JIT_COMPILATION_DISABLED = 223,
    CUDA_ERROR_INVALID_SOURCE = 300,
    CUDA_ERROR_FILE_NOT_FOUND = 301,
    CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND = 302,
    CUDA_ERROR_SHARED_OBJECT_INIT_FAILED = 303,
    CUDA_ERROR_OPERATING_SYSTEM = 304,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_ILLEGAL_STATE = 401,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_TIMEOUT = 702,
    CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING = 703,
    CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE = 708,
    CUDA_ERROR_CONTEXT_IS_DESTROYED = 709,
    CUDA_ERROR_ASSERT = 710,
    CUDA_ERROR_HARDWARE_STACK_ERROR = 714,
    CUDA_ERROR_ILLEGAL_INSTRUCTION = 715,
    CUDA_ERROR_MISALIGNED_ADDRESS = 716,
    CUDA_ERROR_INVALID_ADDRESS_SPACE = 717,
    CUDA_ERROR_INVALID_PC = 718,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_PERMITTED = 800,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_SYSTEM_NOT_READY = 802,
    CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803,
    CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
    CUDA_ERROR_STREAM_CAPTURE_MERGE = 902,
    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED = 903,
    CUDA_ERROR_STREAM_CAPTURE_UNJOINED = 904,
    CUDA_ERROR_STREAM_CAPTURE_ISOLATION = 905,
    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906,
    CUDA_ERROR_CAPTURED_EVENT = 907,
    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908,
    CUDA_ERROR_UNKNOWN = 999,
}

/// <summary>CUdevice_attribute values this project reads.</summary>
internal enum CUdevice_attribute
{
    CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1,
    CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X = 2,
    CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y = 3,
    CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z = 4,
    CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X = 5,
    CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y = 6,
    CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z = 7,
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    CU_DEVICE_ATTRIBUTE_WARP_SIZE = 10,
    CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13,
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36,
    CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37,
    CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
}

/// <summary>CUfunction_attribute values this project reads.</summary>
internal enum CUfunction_attribute
{
    CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0,
    CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1,
    CU_FUNC_ATTRIBUTE_NUM_REGS = 4,
}

/// <summary>CUstreamCaptureMode: which other threads' unsafe calls (allocations, synchronizations) a capture forbids.</summary>
internal enum CUstreamCaptureMode
{
    CU_STREAM_CAPTURE_MODE_GLOBAL = 0,
    CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
    CU_STREAM_CAPTURE_MODE_RELAXED = 2,
}

/// <summary>CUstreamCaptureStatus.</summary>
internal enum CUstreamCaptureStatus
{
    CU_STREAM_CAPTURE_STATUS_NONE = 0,
    CU_STREAM_CAPTURE_STATUS_ACTIVE = 1,
    /// <summary>Capture began but an illegal call (a synchronization, a legacy-stream use) broke it; EndCapture fails.</summary>
    CU_STREAM_CAPTURE_STATUS_INVALIDATED = 2,
}

/// <summary>CUjit_option values used to capture the PTX JIT log at module load.</summary>
internal enum CUjit_option
{
    CU_JIT_INFO_LOG_BUFFER = 3,
    CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
    CU_JIT_ERROR_LOG_BUFFER = 5,
    CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
}

/// <summary>
/// CUDA driver API (libcuda.so.1), raw: every call returns its <see cref="CUresult"/>; wrap calls in
/// <see cref="CudaCheck.Check(CUresult, string)"/>. Entry points are the ones cuda.h maps the plain
/// names to (the <c>_v2</c> variants where they exist), so the same binary runs on drivers for CUDA 12
/// and 13. Device pointers are <c>ulong</c> (CUdeviceptr), handles <c>nint</c>.
/// </summary>
internal static unsafe partial class CuDriver
{
    static CuDriver() => NativeLibraries.EnsureResolver();

    private const string Lib = NativeLibraries.Cuda;

    public const uint CU_STREAM_NON_BLOCKING = 1;
    public const uint CU_EVENT_DEFAULT = 0;
    /// <summary>cuEventSynchronize yields the CPU instead of spinning.</summary>
    public const uint CU_EVENT_BLOCKING_SYNC = 1;
    public const uint CU_EVENT_DISABLE_TIMING = 2;

    [LibraryImport(Lib)] public static partial CUresult cuInit(uint flags);
    [LibraryImport(Lib)] public static partial CUresult cuDriverGetVersion(out int driverVersion);
    [LibraryImport(Lib)] public static partial CUresult cuGetErrorName(CUresult error, out byte* name);
    [LibraryImport(Lib)] public static partial CUresult cuGetErrorString(CUresult error, out byte* text);

    [LibraryImport(Lib)] public static partial CUresult cuDeviceGetCount(out int count);
    [LibraryImport(Lib)] public static partial CUresult cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] public static partial CUresult cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib)] public static partial CUresult cuDeviceGetAttribute(out int value, CUdevice_attribute attribute, int device);
    /// <summary>The device's 16-byte UUID (CUuuid), the one nvidia-smi -L prints; unique across machines.</summary>
    [LibraryImport(Lib, EntryPoint = "cuDeviceGetUuid_v2")] public static partial CUresult cuDeviceGetUuid(byte* uuid, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] public static partial CUresult cuDeviceTotalMem(out nuint bytes, int device);

    [LibraryImport(Lib)] public static partial CUresult cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial CUresult cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Lib, EntryPoint = "cuCtxCreate_v2")] public static partial CUresult cuCtxCreate(out nint context, uint flags, int device);
    [LibraryImport(Lib, EntryPoint = "cuCtxDestroy_v2")] public static partial CUresult cuCtxDestroy(nint context);
    [LibraryImport(Lib)] public static partial CUresult cuCtxSetCurrent(nint context);
    [LibraryImport(Lib)] public static partial CUresult cuCtxGetCurrent(out nint context);
    [LibraryImport(Lib)] public static partial CUresult cuCtxSynchronize();

    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] public static partial CUresult cuMemAlloc(out ulong devicePointer, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] public static partial CUresult cuMemFree(ulong devicePointer);
    [LibraryImport(Lib, EntryPoint = "cuMemAllocHost_v2")] public static partial CUresult cuMemAllocHost(out nint hostPointer, nuint bytes);
    [LibraryImport(Lib)] public static partial CUresult cuMemFreeHost(nint hostPointer);
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] public static partial CUresult cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial CUresult cuMemcpyHtoDAsync(ulong destination, void* source, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial CUresult cuMemcpyDtoHAsync(void* destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial CUresult cuMemcpyDtoDAsync(ulong destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(Lib)] public static partial CUresult cuMemsetD8Async(ulong destination, byte value, nuint count, nint stream);
    [LibraryImport(Lib)] public static partial CUresult cuMemsetD32Async(ulong destination, uint value, nuint count, nint stream);

    [LibraryImport(Lib)] public static partial CUresult cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] public static partial CUresult cuStreamDestroy(nint stream);
    [LibraryImport(Lib)] public static partial CUresult cuStreamSynchronize(nint stream);
    /// <summary>Work queued on <paramref name="stream"/> after this call waits for <paramref name="evt"/>'s last record (flags 0).</summary>
    [LibraryImport(Lib)] public static partial CUresult cuStreamWaitEvent(nint stream, nint evt, uint flags);

    [LibraryImport(Lib)] public static partial CUresult cuEventCreate(out nint evt, uint flags);
    [LibraryImport(Lib)] public static partial CUresult cuEventRecord(nint evt, nint stream);
    [LibraryImport(Lib)] public static partial CUresult cuEventSynchronize(nint evt);
    /// <summary>CUDA_SUCCESS when the event's work is done, CUDA_ERROR_NOT_READY while it is not.</summary>
    [LibraryImport(Lib)] public static partial CUresult cuEventQuery(nint evt);
    [LibraryImport(Lib)] public static partial CUresult cuEventElapsedTime(out float milliseconds, nint start, nint end);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] public static partial CUresult cuEventDestroy(nint evt);

    [LibraryImport(Lib)] public static partial CUresult cuModuleLoadData(out nint module, void* image);
    [LibraryImport(Lib)] public static partial CUresult cuModuleLoadDataEx(out nint module, void* image, uint numOptions, CUjit_option* options, void** optionValues);
    [LibraryImport(Lib)] public static partial CUresult cuModuleUnload(nint module);
    [LibraryImport(Lib)] public static partial CUresult cuModuleGetFunction(out nint function, nint module, byte* name);
    [LibraryImport(Lib)] public static partial CUresult cuFuncGetAttribute(out int value, CUfunction_attribute attribute, nint function);

    // CUDA graphs (stream capture): CUgraph and CUgraphExec are handles.
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] public static partial CUresult cuStreamBeginCapture(nint stream, CUstreamCaptureMode mode);
    [LibraryImport(Lib)] public static partial CUresult cuStreamEndCapture(nint stream, out nint graph);
    [LibraryImport(Lib)] public static partial CUresult cuStreamIsCapturing(nint stream, out CUstreamCaptureStatus status);
    [LibraryImport(Lib)] public static partial CUresult cuGraphInstantiateWithFlags(out nint graphExec, nint graph, ulong flags);
    [LibraryImport(Lib)] public static partial CUresult cuGraphGetNodes(nint graph, nint* nodes, ref nuint count);
    [LibraryImport(Lib, EntryPoint = "cuGraphLaunch")] public static partial CUresult cuGraphLaunch(nint graphExec, nint stream);
    [LibraryImport(Lib)] public static partial CUresult cuGraphExecDestroy(nint graphExec);
    [LibraryImport(Lib)] public static partial CUresult cuGraphDestroy(nint graph);

    /// <summary><paramref name="kernelParams"/>: one pointer per kernel parameter, each to that argument's value.</summary>
    [LibraryImport(Lib)]
    public static partial CUresult cuLaunchKernel(nint function,
        uint gridDimX, uint gridDimY, uint gridDimZ, uint blockDimX, uint blockDimY, uint blockDimZ,
        uint sharedMemBytes, nint stream, void** kernelParams, void** extra);
}
