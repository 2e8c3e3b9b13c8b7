using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bert.Native.Interop;
using Bert.Runtime;

namespace Bert.Native;

/// <summary>
/// The CUDA implementation of <see cref="IBackend"/>: cuBLAS GEMMs (strided-batched for attention) and
/// the NVRTC-compiled kernels of Kernels/*.cu, all queued on one stream. Ops allocate nothing and never
/// wait for the device; <see cref="Synchronize"/> and downloads do.
///
/// Precision: in F32 mode everything is fp32 (GEMMs without TF32 unless asked). In BF16 mode activations
/// are stored as bf16, GEMMs take bf16 inputs and accumulate in fp32; parameters, gradients, optimizer
/// state, LayerNorm statistics and losses stay F32. BF16 GEMMs read weights from a bf16 shadow of the
/// parameter buffer, refreshed by AdamW in the same pass and by every upload, copy or zeroing into it.
///
/// Tensors of activations may be F32 or BF16 independently (each kernel takes a type flag per tensor), so
/// F32 logits next to BF16 hidden states work in either mode.
///
/// Op implementations live in the partial files named after the op family (CudaBackend.Norm.cs, …);
/// their kernels in Kernels/&lt;family&gt;.cu.
/// </summary>
public sealed partial class CudaBackend : IBackend
{
    private readonly IDeviceApi _api;
    private readonly CudaBackendOptions _options;
    private readonly HashSet<CudaBuffer> _live = [];
    private readonly List<ShadowedBuffer> _shadows = [];
    private readonly ulong _reductionScratch;      // F32[ReductionScratchElements]
    private readonly ulong _doubleScratch;         // F64[2·MaxReductionBlocks·3]
    private readonly ulong _conversionScratch;     // BF16[ConversionScratchElements]
    private readonly ulong _zeroCounter;           // U32[1] zero: the dropout counter when none is set (CudaBackend.Graphs.cs)
    private readonly long _conversionElements;
    private readonly OpProfiler? _profiler;
    private float[]? _hostConversion;
    private bool _disposed;

    /// <summary>Blocks of the fp64 two-stage reductions (squared norm, loss statistics).</summary>
    internal const int MaxReductionBlocks = 1024;

    private sealed record ShadowedBuffer(CudaBuffer Master, ulong Shadow);

    /// <summary>Creates a backend on a GPU. Throws <see cref="CudaException"/> when there is none
    /// (see <see cref="TryCreate"/> for a non-throwing variant).</summary>
    public static CudaBackend Create(CudaBackendOptions? options = null)
    {
        options ??= new CudaBackendOptions();
        if (!TryCreate(out var backend, out var reason, options)) throw new CudaException(reason);
        return backend!;
    }

    /// <summary>Creates a backend, or returns false with <paramref name="reason"/> when no usable GPU, driver,
    /// cuBLAS or NVRTC is found (never throws for those).</summary>
    public static bool TryCreate(out CudaBackend? backend, out string reason, CudaBackendOptions? options = null)
    {
        options ??= new CudaBackendOptions();
        backend = null;
        if (!CudaDevice.IsAvailable(out reason)) return false;
        try
        {
            backend = new CudaBackend(new CudaDriverApi(options), options);
            reason = "";
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            reason = $"the CUDA libraries could not be used: {e.Message} " +
                     $"(cuBLAS: {NativeLibraries.Describe(NativeLibraries.Cublas)}; NVRTC: {NativeLibraries.Describe(NativeLibraries.Nvrtc)})";
            return false;
        }
        catch (CudaException e) when (e is not CudaOutOfMemoryException)
        {
            reason = e.Message;
            return false;
        }
    }

    internal CudaBackend(IDeviceApi api, CudaBackendOptions options)
    {
        if (options.ComputeType is not (DType.F32 or DType.BF16))
            throw new ArgumentException($"compute type must be F32 or BF16, not {options.ComputeType}", nameof(options));
        _api = api;
        _options = options;
        try
        {
            if (options.ComputeType == DType.BF16 && api.Device.ComputeMajor < 8)
                throw new CudaException($"bf16 compute needs an Ampere or newer GPU (compute capability 8.0); " +
                                        $"{api.Device.Name} is {api.Device.ComputeCapability}. Use F32 compute.");
            long reduction = Math.Max(1 << 10, options.ReductionScratchElements);
            _reductionScratch = api.Allocate(reduction * 4, "reduction-scratch");
            ReductionScratchElements = reduction;
            _doubleScratch = api.Allocate(2L * MaxReductionBlocks * 3 * 8, "reduction-scratch-f64");
            _conversionElements = Math.Max(1 << 10, options.ConversionScratchElements);
            _conversionScratch = api.Allocate(_conversionElements * 2, "conversion-scratch");
            _zeroCounter = api.Allocate(4, "dropout-counter-zero");
            api.Memset(_zeroCounter, 0, 4);
            if (options.Profile) _profiler = new OpProfiler(api);
        }
        catch
        {
            api.Dispose();
            throw;
        }
    }

    internal long ReductionScratchElements { get; }

    public string Name => $"cuda:{_api.Device.Ordinal} ({_api.Device.Name})";

    public DType ComputeType => _options.ComputeType;

    public CudaDeviceInfo Device => _api.Device;

    /// <summary>Libraries, kernel architecture and cache in use.</summary>
    public string Description => _api.Description;

    /// <summary>The device behind the backend (a communicator on the real GPU reads its stream and context).</summary>
    internal IDeviceApi DeviceApi => _api;

    public CudaBackendOptions Options => _options;

    // ---- memory -------------------------------------------------------------------------------

    public DeviceBuffer Allocate(long length, DType type, string label)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfCapturing(nameof(Allocate));
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        long bytes = length * type.Size();
        ulong address = _api.Allocate(bytes, label);
        _api.Memset(address, 0, bytes);
        var buffer = new CudaBuffer(this, new TensorRef(address, length, type), label);
        _live.Add(buffer);
        if (ComputeType == DType.BF16 && type == DType.F32 && _options.ShadowedLabels.Contains(label))
        {
            ulong shadow;
            try
            {
                shadow = _api.Allocate(length * 2, label + " (bf16 shadow)");
            }
            catch
            {
                buffer.Dispose();
                throw;
            }
            _api.Memset(shadow, 0, length * 2);
            _shadows.Add(new ShadowedBuffer(buffer, shadow));
        }
        return buffer;
    }

    internal void Release(CudaBuffer buffer)
    {
        if (_disposed || !_live.Contains(buffer)) return;
        ThrowIfCapturing("freeing a buffer");
        _live.Remove(buffer);
        int s = _shadows.FindIndex(x => ReferenceEquals(x.Master, buffer));
        if (s >= 0)
        {
            _api.Free(_shadows[s].Shadow);
            _shadows.RemoveAt(s);
        }
        _api.Free(buffer.View.Address);
    }

    /// <summary>The bf16 shadow of an F32 view inside a shadowed buffer.</summary>
    internal bool TryShadow(TensorRef f32, out TensorRef shadow)
    {
        foreach (var s in _shadows)
        {
            var m = s.Master.View;
            if (f32.DType == DType.F32 && f32.Address >= m.Address && f32.Address + (ulong)f32.Bytes <= m.Address + (ulong)m.Bytes)
            {
                long offset = (long)(f32.Address - m.Address) / 4;
                shadow = new TensorRef(s.Shadow + (ulong)(offset * 2), f32.Length, DType.BF16);
                return true;
            }
        }
        shadow = TensorRef.Null;
        return false;
    }

    /// <inheritdoc/>
    public void WrittenExternally(TensorRef written)
    {
        using var _ = Op(nameof(WrittenExternally));
        RefreshShadow(written);
    }

    /// <summary>Re-derives the shadow of whatever part of a shadowed buffer <paramref name="written"/> covers.</summary>
    private void RefreshShadow(TensorRef written)
    {
        if (_shadows.Count == 0 || written.IsNull) return;
        foreach (var s in _shadows)
        {
            var m = s.Master.View;
            ulong lo = Math.Max(m.Address, written.Address);
            ulong hi = Math.Min(m.Address + (ulong)m.Bytes, written.Address + (ulong)written.Bytes);
            if (hi <= lo) continue;
            long first = (long)(lo - m.Address) / 4, count = (long)(hi - lo) / 4;
            var master = new TensorRef(m.Address + (ulong)(first * 4), count, DType.F32);
            ConvertInto(new TensorRef(s.Shadow + (ulong)(first * 2), count, DType.BF16), master);
        }
    }

    public void Upload<T>(TensorRef destination, ReadOnlySpan<T> source) where T : unmanaged
    {
        using var _ = Op(nameof(Upload));
        ThrowIfCapturing(nameof(Upload));
        RequireView(destination, nameof(Upload), nameof(destination));
        if (source.Length > destination.Length)
            throw new ArgumentException($"Upload: {source.Length} elements do not fit in destination {destination}", nameof(source));
        if (source.IsEmpty) return;
        if (IsRaw<T>(destination.DType))
        {
            _api.Upload(destination.Address, MemoryMarshal.AsBytes(source));
        }
        else if (typeof(T) == typeof(float) && destination.DType == DType.BF16)
        {
            var floats = MemoryMarshal.Cast<T, float>(source);
            var staging = HostConversionBuffer();
            var bits = MemoryMarshal.Cast<float, ushort>(staging.AsSpan());
            for (int offset = 0; offset < floats.Length; offset += bits.Length)
            {
                int n = Math.Min(bits.Length, floats.Length - offset);
                BFloat16.FromFloats(bits[..n], floats.Slice(offset, n));
                _api.Upload(destination.Address + (ulong)offset * 2, MemoryMarshal.AsBytes(bits[..n]));
            }
        }
        else
        {
            throw new ArgumentException($"Upload: cannot store {typeof(T).Name} elements in a {destination.DType} tensor", nameof(source));
        }
        RefreshShadow(destination.Slice(0, source.Length));
    }

    public void Download<T>(Span<T> destination, TensorRef source) where T : unmanaged
    {
        using var _ = Op(nameof(Download));
        ThrowIfCapturing(nameof(Download));
        RequireView(source, nameof(Download), nameof(source));
        if (destination.Length > source.Length)
            throw new ArgumentException($"Download: {destination.Length} elements requested from source {source}", nameof(destination));
        if (destination.IsEmpty) return;
        if (IsRaw<T>(source.DType))
        {
            _api.Download(MemoryMarshal.AsBytes(destination), source.Address);
        }
        else if (typeof(T) == typeof(float) && source.DType == DType.BF16)
        {
            var floats = MemoryMarshal.Cast<T, float>(destination);
            var staging = HostConversionBuffer();
            var bits = MemoryMarshal.Cast<float, ushort>(staging.AsSpan());
            for (int offset = 0; offset < floats.Length; offset += bits.Length)
            {
                int n = Math.Min(bits.Length, floats.Length - offset);
                _api.Download(MemoryMarshal.AsBytes(bits[..n]), source.Address + (ulong)offset * 2);
                BFloat16.ToFloats(floats.Slice(offset, n), bits[..n]);
            }
        }
        else
        {
            throw new ArgumentException($"Download: cannot read a {source.DType} tensor as {typeof(T).Name}", nameof(destination));
        }
    }

    private static bool IsRaw<T>(DType type) where T : unmanaged => type switch
    {
        DType.F32 => typeof(T) == typeof(float),
        DType.I32 => typeof(T) == typeof(int) || typeof(T) == typeof(uint),
        DType.BF16 => typeof(T) == typeof(ushort),
        _ => false,
    };

    private float[] HostConversionBuffer() => _hostConversion ??= new float[1 << 18];

    /// <summary>Queues a copy from pinned host memory straight to the device (no staging copy). The pinned
    /// buffer must stay untouched until <see cref="CudaPinnedBuffer.WaitForTransfers"/> returns.</summary>
    public void UploadAsync<T>(TensorRef destination, CudaPinnedBuffer<T> source, int count) where T : unmanaged
    {
        using var _ = Op(nameof(UploadAsync));
        ThrowIfCapturing(nameof(UploadAsync));
        RequireView(destination, nameof(UploadAsync), nameof(destination));
        if (!IsRaw<T>(destination.DType))
            throw new ArgumentException($"UploadAsync: cannot store {typeof(T).Name} elements in a {destination.DType} tensor", nameof(source));
        if (count < 0 || count > source.Length || count > destination.Length)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"UploadAsync: {count} elements from a pinned buffer of {source.Length} into {destination}");
        _api.UploadPinned(destination.Address, source.Pointer, (long)count * Unsafe.SizeOf<T>());
        _api.RecordEvent(source.TransferEvent);
        RefreshShadow(destination.Slice(0, count));
    }

    /// <summary>Pinned (page-locked) host memory for <see cref="UploadAsync{T}"/>.</summary>
    public CudaPinnedBuffer<T> AllocatePinned<T>(int length) where T : unmanaged => new(_api, length);

    public void Copy(TensorRef destination, TensorRef source)
    {
        using var _ = Op(nameof(Copy));
        OpChecks.Copy(destination, source);
        _api.Copy(destination.Address, source.Address, source.Bytes);
        RefreshShadow(destination);
    }

    public void Zero(TensorRef tensor)
    {
        using var _ = Op(nameof(Zero));
        OpChecks.Zero(tensor);
        _api.Memset(tensor.Address, 0, tensor.Bytes);
        RefreshShadow(tensor);
    }

    public void Synchronize()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfCapturing(nameof(Synchronize));
        _api.Synchronize();
    }

    /// <summary>Free and total device memory in bytes.</summary>
    public (long Free, long Total) MemoryInfo() => _api.MemoryInfo();

    // ---- profiling ----------------------------------------------------------------------------

    /// <summary>Per-op GPU time recorded since the last call (waits for the device). Empty unless
    /// <see cref="CudaBackendOptions.Profile"/> is on.</summary>
    public IReadOnlyDictionary<string, OpTiming> CollectOpTimings() =>
        _profiler?.Collect() ?? new Dictionary<string, OpTiming>();

    private OpProfiler.Scope Op(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _profiler is null ? default : _profiler.Begin(name);
    }

    // ---- launch helpers -----------------------------------------------------------------------

    /// <summary>Blocks of <paramref name="threads"/> threads covering <paramref name="work"/> items in a
    /// grid-stride loop (capped, the loop covers the rest).</summary>
    internal static uint GridFor(long work, int threads, long cap = 65535) =>
        (uint)Math.Clamp((work + threads - 1) / threads, 1, cap);

    private void Launch(KernelSpec kernel, Dim3 grid, Dim3 block, params ReadOnlySpan<KernelArg> args) =>
        _api.Launch(kernel, grid, block, args);

    /// <summary>destination = source converted (F32 ↔ BF16), elementwise.</summary>
    private void ConvertInto(TensorRef destination, TensorRef source)
    {
        long n = source.Length;
        if (n == 0) return;
        Launch(KernelCatalog.ConvertDtype, new Dim3(GridFor(n, 256)), new Dim3(256),
            KernelArg.Ptr("out", destination), KernelArg.Type("outType", destination),
            KernelArg.Ptr("in", source), KernelArg.Type("inType", source), KernelArg.I64("count", n));
    }

    // ---- argument checks ----------------------------------------------------------------------

    /// <summary>Activations may be F32 or BF16, per tensor. Every op calls its <see cref="OpChecks"/> method
    /// first, so a bad call fails as it does on the CPU backend.</summary>
    private const ActivationTypes Activations = ActivationTypes.F32OrBF16;

    private static void RequireView(TensorRef t, string op, string argument)
    {
        if (t.IsNull) throw new ArgumentException($"{op}: {argument} is null", argument);
    }

    /// <summary>An activation tensor (see <see cref="OpChecks.Activations"/>).</summary>
    private static void RequireAct(TensorRef t, long needed, string op, string argument) =>
        OpChecks.Activations(t, needed, Activations, op, argument);

    /// <summary>Waits for queued work, frees every buffer still alive and releases the device. A failure of
    /// queued work (a kernel fault) is rethrown after everything is released.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        Exception? failure = null;
        try
        {
            _api.Synchronize();
        }
        catch (CudaException e)
        {
            failure = e;
        }
        // After a fault the context refuses further calls; release what can be released regardless.
        foreach (var b in _live.ToArray())
        {
            try
            {
                b.Dispose();
            }
            catch (CudaException) { }
        }
        try
        {
            _profiler?.Dispose();
            if (_padding != 0) _api.Free(_padding);
        }
        catch (CudaException) { }
        _disposed = true;
        _api.Dispose();
        if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
    }
}

/// <summary>A device allocation of a <see cref="CudaBackend"/>.</summary>
internal sealed class CudaBuffer : DeviceBuffer
{
    private CudaBackend? _owner;

    public CudaBuffer(CudaBackend owner, TensorRef view, string label) : base(view, label) => _owner = owner;

    public override void Dispose()
    {
        var owner = Interlocked.Exchange(ref _owner, null);
        owner?.Release(this);
    }
}

/// <summary>Host bf16 conversion with the kernels' rounding (nearest, ties to even; NaN stays NaN).</summary>
internal static class BFloat16
{
    public static ushort FromFloat(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x0040u);
        u += 0x7fffu + ((u >> 16) & 1u);
        return (ushort)(u >> 16);
    }

    public static float ToFloat(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);

    public static void FromFloats(Span<ushort> destination, ReadOnlySpan<float> source)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = FromFloat(source[i]);
    }

    public static void ToFloats(Span<float> destination, ReadOnlySpan<ushort> source)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = ToFloat(source[i]);
    }

    /// <summary>The float a bf16 tensor holds after storing <paramref name="f"/>.</summary>
    public static float Round(float f) => ToFloat(FromFloat(f));
}
