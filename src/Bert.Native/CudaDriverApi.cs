using System.Runtime.InteropServices;
using System.Text;
using Bert.Native.Interop;
using Bert.Runtime;
using static Bert.Native.CudaCheck;

namespace Bert.Native;

/// <summary>
/// <see cref="IDeviceApi"/> on a real GPU: the device's primary context, one non-blocking stream that
/// every copy, kernel and GEMM is queued on, a cuBLAS handle bound to it, the kernel modules (compiled by
/// NVRTC for the device, checked against <see cref="KernelCatalog"/>), and a double-buffered pinned
/// staging area for host→device copies.
/// </summary>
internal sealed unsafe class CudaDriverApi : IDeviceApi
{
    [ThreadStatic] private static nint _currentContext;

    private readonly int _device;
    private readonly nint _context;
    private readonly nint _stream;
    private readonly nint _cublas;
    private readonly nint _cublasLt;
    private readonly nint[] _modules;
    private readonly nint[] _functions;
    private readonly nint _staging;
    private readonly long _stagingHalf;
    private readonly nint[] _stagingEvents = new nint[2];
    private int _nextStaging;
    private readonly bool _syncEachLaunch;
    private readonly ulong _ltWorkspace;
    private readonly LtPlanCache? _ltPlans;
    private bool _disposed;

    public CudaDriverApi(CudaBackendOptions options)
    {
        if (!CudaDevice.IsAvailable(out var reason)) throw new CudaException(reason);
        Device = CudaDevice.Query(options.DeviceOrdinal);
        Check(CuDriver.cuDeviceGet(out _device, options.DeviceOrdinal));
        Check(CuDriver.cuDevicePrimaryCtxRetain(out _context, _device));
        bool failed = true;
        try
        {
            EnsureCurrent();
            Check(CuDriver.cuStreamCreate(out _stream, CuDriver.CU_STREAM_NON_BLOCKING));
            Check(Cublas.cublasCreate_v2(out _cublas));
            Check(Cublas.cublasSetStream_v2(_cublas, _stream));
            // TF32 is opt-in per call through the compute type; the handle itself never rounds inputs.
            Check(Cublas.cublasSetMathMode(_cublas, cublasMath_t.CUBLAS_DEFAULT_MATH));
            Check(Cublas.cublasGetVersion_v2(_cublas, out int cublasVersion));
            if (options.UseCublasLt)
            {
                Check(CublasLt.cublasLtCreate(out _cublasLt));
                Check(CuDriver.cuMemAlloc(out _ltWorkspace, (nuint)LtPlanCache.DefaultWorkspaceBytes));
                _ltPlans = new LtPlanCache(new CublasLtApi(_cublasLt, _stream), _ltWorkspace, LtPlanCache.DefaultWorkspaceBytes,
                    message => Console.Error.WriteLine($"bert: warning: {message}"));
            }

            var nvrtc = KernelCompiler.Probe();
            int arch = nvrtc.ArchitectureFor(Device.ComputeMajor * 10 + Device.ComputeMinor);
            var compiler = new KernelCompiler(nvrtc, options.KernelCacheDirectory);
            var files = KernelCatalog.Files;
            _modules = new nint[files.Count];
            _functions = new nint[KernelCatalog.All.Count];
            for (int f = 0; f < files.Count; f++)
            {
                var compiled = compiler.Compile(files[f], arch);
                var problems = KernelSignatures.CompareWithPtx(files[f], compiled.Ptx);
                if (problems.Count > 0)
                    throw new CudaException($"kernel signatures disagree with the catalog: {string.Join("; ", problems)}");
                _modules[f] = LoadModule(files[f], compiled.Ptx);
                foreach (var spec in KernelCatalog.All.Where(s => s.File == files[f]))
                {
                    var name = Encoding.UTF8.GetBytes(spec.Name + "\0");
                    fixed (byte* p = name) Check(CuDriver.cuModuleGetFunction(out _functions[spec.Index], _modules[f], p));
                    Check(CuDriver.cuFuncGetAttribute(out int maxThreads, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, _functions[spec.Index]));
                    if (spec.FixedBlock is { } b && b.Volume > maxThreads)
                        throw new CudaException($"kernel {spec.Name} needs {b.Volume} threads per block but compiles to at most {maxThreads} on {Device.Name}");
                }
            }

            _stagingHalf = Math.Max(1 << 16, options.StagingBytes / 2);
            Check(CuDriver.cuMemAllocHost(out _staging, (nuint)(2 * _stagingHalf)));
            for (int i = 0; i < 2; i++) Check(CuDriver.cuEventCreate(out _stagingEvents[i], CuDriver.CU_EVENT_DISABLE_TIMING));
            _syncEachLaunch = options.SynchronizeEachLaunch || Environment.GetEnvironmentVariable("CUDA_LAUNCH_BLOCKING") == "1";

            Description = $"NVRTC {nvrtc.Version} ({nvrtc.LibraryPath}), kernels compute_{arch}, " +
                          $"cuBLAS {cublasVersion} ({NativeLibraries.Describe(NativeLibraries.Cublas)}), " +
                          $"driver {Device.DriverVersion / 1000}.{Device.DriverVersion % 1000 / 10}, " +
                          $"kernel cache {compiler.CacheDirectory ?? "off"}";
            failed = false;
        }
        finally
        {
            if (failed) ReleaseAfterFailure();
        }
    }

    public CudaDeviceInfo Device { get; }

    public string Description { get; } = "";

    /// <summary>The stream every op of the backend is queued on (a communicator orders its own stream after it).</summary>
    internal nint Stream => _stream;

    /// <summary>The device's primary context (NCCL's CUDA runtime shares it).</summary>
    internal nint Context => _context;

    /// <summary>The CUdevice handle.</summary>
    internal int DeviceHandle => _device;

    /// <summary>Makes the backend's context current on the calling thread.</summary>
    internal void MakeCurrent() => EnsureCurrent();

    public bool SupportsLt => _cublasLt != 0;

    /// <summary>Releases whatever the constructor got before it failed (statuses ignored: already failing).</summary>
    private void ReleaseAfterFailure()
    {
        foreach (var e in _stagingEvents) if (e != 0) CuDriver.cuEventDestroy(e);
        if (_staging != 0) CuDriver.cuMemFreeHost(_staging);
        if (_modules is not null) foreach (var m in _modules) if (m != 0) CuDriver.cuModuleUnload(m);
        if (_ltWorkspace != 0) CuDriver.cuMemFree(_ltWorkspace);
        if (_cublasLt != 0) CublasLt.cublasLtDestroy(_cublasLt);
        if (_cublas != 0) Cublas.cublasDestroy_v2(_cublas);
        if (_stream != 0) CuDriver.cuStreamDestroy(_stream);
        CuDriver.cuDevicePrimaryCtxRelease(_device);
    }

    private nint LoadModule(string file, string ptx)
    {
        const int logSize = 16 * 1024;
        var log = new byte[logSize];
        var image = Encoding.UTF8.GetBytes(ptx + "\0");
        var options = stackalloc CUjit_option[2];
        var values = stackalloc void*[2];
        options[0] = CUjit_option.CU_JIT_ERROR_LOG_BUFFER;
        options[1] = CUjit_option.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES;
        fixed (byte* l = log)
        fixed (byte* p = image)
        {
            values[0] = l;
            values[1] = (void*)(nint)logSize;
            var status = CuDriver.cuModuleLoadDataEx(out nint module, p, 2, options, values);
            if (status != CUresult.CUDA_SUCCESS)
            {
                int n = Array.IndexOf(log, (byte)0);
                var text = Encoding.UTF8.GetString(log, 0, n < 0 ? logSize : n).Trim();
                throw new CudaException($"{Failure(status, $"cuModuleLoadDataEx({file})").Message}{(text.Length > 0 ? " JIT log: " + text : "")}")
                    { Call = "cuModuleLoadDataEx", ErrorName = ErrorName(status) };
            }
            return module;
        }
    }

    /// <summary>Makes the context current on the calling thread (cheap when it already is).</summary>
    private void EnsureCurrent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_currentContext == _context) return;
        Check(CuDriver.cuCtxSetCurrent(_context));
        _currentContext = _context;
    }

    public ulong Allocate(long bytes, string label)
    {
        EnsureCurrent();
        var status = CuDriver.cuMemAlloc(out ulong p, (nuint)Math.Max(bytes, 1));
        if (status == CUresult.CUDA_ERROR_OUT_OF_MEMORY)
        {
            var (free, total) = MemoryInfo();
            throw new CudaOutOfMemoryException(label, bytes, free, total);
        }
        if (status != CUresult.CUDA_SUCCESS) throw Failure(status, $"cuMemAlloc({bytes} bytes for '{label}')");
        return p;
    }

    public void Free(ulong address)
    {
        EnsureCurrent();
        Check(CuDriver.cuMemFree(address));
    }

    public (long Free, long Total) MemoryInfo()
    {
        EnsureCurrent();
        Check(CuDriver.cuMemGetInfo(out nuint free, out nuint total));
        return ((long)free, (long)total);
    }

    public void Memset(ulong destination, byte value, long bytes)
    {
        EnsureCurrent();
        if (bytes == 0) return;
        if (value == 0 && destination % 4 == 0 && bytes % 4 == 0)
            Check(CuDriver.cuMemsetD32Async(destination, 0, (nuint)(bytes / 4), _stream));
        else
            Check(CuDriver.cuMemsetD8Async(destination, value, (nuint)bytes, _stream));
    }

    public void Copy(ulong destination, ulong source, long bytes)
    {
        EnsureCurrent();
        if (bytes == 0 || destination == source) return;
        Check(CuDriver.cuMemcpyDtoDAsync(destination, source, (nuint)bytes, _stream));
    }

    public void Upload(ulong destination, ReadOnlySpan<byte> source)
    {
        EnsureCurrent();
        long offset = 0;
        while (offset < source.Length)
        {
            int half = _nextStaging;
            _nextStaging ^= 1;
            // The previous copy out of this half must have left it before it is overwritten.
            Check(CuDriver.cuEventSynchronize(_stagingEvents[half]));
            int n = (int)Math.Min(_stagingHalf, source.Length - offset);
            var staging = (byte*)_staging + half * _stagingHalf;
            source.Slice((int)offset, n).CopyTo(new Span<byte>(staging, n));
            Check(CuDriver.cuMemcpyHtoDAsync(destination + (ulong)offset, staging, (nuint)n, _stream));
            Check(CuDriver.cuEventRecord(_stagingEvents[half], _stream));
            offset += n;
        }
    }

    public void Download(Span<byte> destination, ulong source)
    {
        EnsureCurrent();
        long offset = 0;
        while (offset < destination.Length)
        {
            int n = (int)Math.Min(_stagingHalf, destination.Length - offset);
            Check(CuDriver.cuMemcpyDtoHAsync((void*)_staging, source + (ulong)offset, (nuint)n, _stream));
            Check(CuDriver.cuStreamSynchronize(_stream));
            new ReadOnlySpan<byte>((void*)_staging, n).CopyTo(destination.Slice((int)offset, n));
            offset += n;
        }
    }

    public void UploadPinned(ulong destination, nint pinnedSource, long bytes)
    {
        EnsureCurrent();
        if (bytes > 0) Check(CuDriver.cuMemcpyHtoDAsync(destination, (void*)pinnedSource, (nuint)bytes, _stream));
    }

    public nint AllocatePinned(long bytes)
    {
        EnsureCurrent();
        var status = CuDriver.cuMemAllocHost(out nint p, (nuint)Math.Max(1, bytes));
        if (status != CUresult.CUDA_SUCCESS) throw Failure(status, $"cuMemAllocHost({bytes} bytes)");
        return p;
    }

    public void FreePinned(nint pointer)
    {
        EnsureCurrent();
        Check(CuDriver.cuMemFreeHost(pointer));
    }

    public void Synchronize()
    {
        EnsureCurrent();
        Check(CuDriver.cuStreamSynchronize(_stream));
    }

    public void Launch(KernelSpec kernel, Dim3 grid, Dim3 block, ReadOnlySpan<KernelArg> args)
    {
        KernelArg.Validate(kernel, grid, block, args, Device);
        EnsureCurrent();
        int n = args.Length;
        // cuLaunchKernel reads each argument through its own pointer: one 8-byte slot per argument,
        // little-endian, so 4-byte arguments are the slot's low half.
        ulong* values = stackalloc ulong[n];
        void** pointers = stackalloc void*[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = args[i].Bits;
            pointers[i] = &values[i];
        }
        var status = CuDriver.cuLaunchKernel(_functions[kernel.Index], grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z,
            0, _stream, pointers, null);
        if (status != CUresult.CUDA_SUCCESS) throw Failure(status, $"cuLaunchKernel({kernel.Name}, grid {grid}, block {block})");
        if (_syncEachLaunch)
        {
            status = CuDriver.cuStreamSynchronize(_stream);
            if (status != CUresult.CUDA_SUCCESS) throw Failure(status, $"kernel {kernel.Name} (grid {grid}, block {block})");
        }
    }

    internal static cudaDataType_t DataType(DType t) => t switch
    {
        DType.F32 => cudaDataType_t.CUDA_R_32F,
        DType.BF16 => cudaDataType_t.CUDA_R_16BF,
        _ => throw new ArgumentException($"GEMM operand of type {t}"),
    };

    internal static cublasOperation_t Op(bool transpose) => transpose ? cublasOperation_t.CUBLAS_OP_T : cublasOperation_t.CUBLAS_OP_N;

    public void Gemm(in GemmCall g)
    {
        g.Validate();
        EnsureCurrent();
        var compute = g.AType == DType.BF16 ? cublasComputeType_t.CUBLAS_COMPUTE_32F : g.Fp32Mode switch
        {
            Fp32GemmMode.Pedantic => cublasComputeType_t.CUBLAS_COMPUTE_32F_PEDANTIC,
            Fp32GemmMode.Tf32 => cublasComputeType_t.CUBLAS_COMPUTE_32F_FAST_TF32,
            _ => cublasComputeType_t.CUBLAS_COMPUTE_32F,
        };
        float alpha = g.Alpha, beta = g.Beta;
        var status = g.BatchCount == 1
            ? Cublas.cublasGemmEx(_cublas, Op(g.TransA), Op(g.TransB), g.M, g.N, g.K, &alpha,
                g.A, DataType(g.AType), g.Lda, g.B, DataType(g.BType), g.Ldb, &beta,
                g.C, DataType(g.CType), g.Ldc, compute, cublasGemmAlgo_t.CUBLAS_GEMM_DEFAULT)
            : Cublas.cublasGemmStridedBatchedEx(_cublas, Op(g.TransA), Op(g.TransB), g.M, g.N, g.K, &alpha,
                g.A, DataType(g.AType), g.Lda, g.StrideA, g.B, DataType(g.BType), g.Ldb, g.StrideB, &beta,
                g.C, DataType(g.CType), g.Ldc, g.StrideC, g.BatchCount, compute, cublasGemmAlgo_t.CUBLAS_GEMM_DEFAULT);
        if (status != cublasStatus_t.CUBLAS_STATUS_SUCCESS)
            throw new CudaException($"{(g.BatchCount == 1 ? "cublasGemmEx" : "cublasGemmStridedBatchedEx")}({g}) failed: {status}")
                { Call = "cublasGemmEx", ErrorName = status.ToString() };
        if (_syncEachLaunch) Check(CuDriver.cuStreamSynchronize(_stream));
    }

    public bool LtMatmul(in LtMatmulCall call)
    {
        if (_ltPlans is null) throw new InvalidOperationException("cuBLASLt is off (CudaBackendOptions.UseCublasLt)");
        EnsureCurrent();
        if (!_ltPlans.TryMatmul(call)) return false;
        if (_syncEachLaunch) Check(CuDriver.cuStreamSynchronize(_stream));
        return true;
    }

    public nint CreateEvent()
    {
        EnsureCurrent();
        Check(CuDriver.cuEventCreate(out nint e, CuDriver.CU_EVENT_DEFAULT));
        return e;
    }

    public void RecordEvent(nint evt)
    {
        EnsureCurrent();
        Check(CuDriver.cuEventRecord(evt, _stream));
    }

    public void SynchronizeEvent(nint evt)
    {
        EnsureCurrent();
        Check(CuDriver.cuEventSynchronize(evt));
    }

    public float ElapsedMilliseconds(nint start, nint end)
    {
        EnsureCurrent();
        Check(CuDriver.cuEventElapsedTime(out float ms, start, end));
        return ms;
    }

    public void DestroyEvent(nint evt)
    {
        EnsureCurrent();
        Check(CuDriver.cuEventDestroy(evt));
    }

    // ---- CUDA graphs -----------------------------------------------------------------------------

    public void BeginCapture()
    {
        EnsureCurrent();
        if (_syncEachLaunch)
            throw new CudaException("a step cannot be captured while every launch is synchronized (SynchronizeEachLaunch or CUDA_LAUNCH_BLOCKING=1)");
        // Thread-local: an unsafe call (an allocation, a synchronization) by this thread breaks the capture, others' do not.
        Check(CuDriver.cuStreamBeginCapture(_stream, CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    }

    public (nint Graph, int Nodes) EndCapture()
    {
        EnsureCurrent();
        Check(CuDriver.cuStreamIsCapturing(_stream, out var status));
        // EndCapture also ends a broken capture (and fails), so the stream is usable again either way.
        var ended = CuDriver.cuStreamEndCapture(_stream, out nint graph);
        if (ended != CUresult.CUDA_SUCCESS || status != CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_ACTIVE)
        {
            if (graph != 0) CuDriver.cuGraphDestroy(graph);
            throw Failure(ended != CUresult.CUDA_SUCCESS ? ended : CUresult.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
                $"cuStreamEndCapture (capture status {status}: a call inside the capture synchronized with or waited on the host)");
        }
        try
        {
            nuint count = 0;
            Check(CuDriver.cuGraphGetNodes(graph, null, ref count));
            Check(CuDriver.cuGraphInstantiateWithFlags(out nint exec, graph, 0));
            return (exec, (int)count);
        }
        finally
        {
            CuDriver.cuGraphDestroy(graph);
        }
    }

    public void LaunchGraph(nint graph)
    {
        EnsureCurrent();
        Check(CuDriver.cuGraphLaunch(graph, _stream));
        if (_syncEachLaunch) Check(CuDriver.cuStreamSynchronize(_stream));
    }

    public void DestroyGraph(nint graph)
    {
        EnsureCurrent();
        Check(CuDriver.cuGraphExecDestroy(graph));
    }

    public void Dispose()
    {
        if (_disposed) return;
        // Teardown reports nothing: a context broken by an earlier kernel fault must still be released.
        CuDriver.cuCtxSetCurrent(_context);
        _currentContext = _context;
        CuDriver.cuStreamSynchronize(_stream);
        _ltPlans?.Dispose();
        if (_ltWorkspace != 0) CuDriver.cuMemFree(_ltWorkspace);
        foreach (var e in _stagingEvents) if (e != 0) CuDriver.cuEventDestroy(e);
        if (_staging != 0) CuDriver.cuMemFreeHost(_staging);
        foreach (var m in _modules) if (m != 0) CuDriver.cuModuleUnload(m);
        if (_cublasLt != 0) CublasLt.cublasLtDestroy(_cublasLt);
        Cublas.cublasDestroy_v2(_cublas);
        CuDriver.cuStreamDestroy(_stream);
        CuDriver.cuDevicePrimaryCtxRelease(_device);
        _disposed = true;
        _currentContext = 0;
    }
}
