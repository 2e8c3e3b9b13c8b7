using Bert.Native;
using Bert.Runtime;

namespace Bert.Tests.Cuda.Emulator;

/// <summary>
/// An <see cref="IDeviceApi"/> that executes nothing and holds no memory: it hands out address ranges,
/// and checks every launch (arguments against the catalog, block and grid against an H100's limits,
/// pointers inside allocations) and every GEMM (cuBLAS's rules, and every operand's extent inside one
/// allocation). With it the launchers run at full BERT-large sizes on a laptop.
/// </summary>
internal sealed class RecordingDevice(int computeMajor = 9) : IDeviceApi
{
    private readonly SortedDictionary<ulong, long> _allocations = [];
    private ulong _next = 0x7000_0000_0000UL;
    private long _used;
    private readonly GraphRecorder _graphs = new();

    public CudaDeviceInfo Device { get; } = new()
    {
        Ordinal = 0, Name = "recording", ComputeMajor = computeMajor, ComputeMinor = 0, TotalMemory = 1L << 40, Multiprocessors = 132,
    };

    public string Description => "recording device (no execution)";

    public bool SupportsLt => true;

    public int Launches { get; private set; }

    public int GemmCount { get; private set; }

    public uint MaxGridX { get; private set; }

    /// <summary>Every kernel launched so far, by name.</summary>
    public HashSet<string> KernelNames { get; } = [];

    public ulong Allocate(long bytes, string label)
    {
        _graphs.Host("cuMemAlloc");
        ulong a = _next;
        _allocations[a] = Math.Max(1, bytes);
        _next += (ulong)((Math.Max(1, bytes) + 511) / 256 * 256);
        _used += bytes;
        return a;
    }

    public void Free(ulong address)
    {
        _graphs.Host("cuMemFree");
        if (!_allocations.Remove(address, out var bytes)) throw new InvalidOperationException($"free of unknown address 0x{address:x}");
        _used -= bytes;
    }

    public (long Free, long Total) MemoryInfo() => (Device.TotalMemory - _used, Device.TotalMemory);

    private void Inside(ulong address, long bytes, string what)
    {
        if (bytes <= 0) return;
        foreach (var (start, size) in _allocations)
        {
            if (address >= start && address + (ulong)bytes <= start + (ulong)size) return;
        }
        throw new InvalidOperationException($"{what}: [0x{address:x}, +{bytes}) is not inside one allocation");
    }

    public void Memset(ulong destination, byte value, long bytes)
    {
        Inside(destination, bytes, "memset");
        if (!_graphs.Record(() => Operations.Add($"memset {bytes}"))) Operations.Add($"memset {bytes}");
    }

    public void Copy(ulong destination, ulong source, long bytes)
    {
        Inside(destination, bytes, "copy destination");
        Inside(source, bytes, "copy source");
        if (!_graphs.Record(() => Operations.Add($"copy {bytes}"))) Operations.Add($"copy {bytes}");
    }

    public void Upload(ulong destination, ReadOnlySpan<byte> source)
    {
        _graphs.Host("an upload");
        Inside(destination, source.Length, "upload");
    }

    public void Download(Span<byte> destination, ulong source)
    {
        _graphs.Host("a download");
        Inside(source, destination.Length, "download");
        destination.Clear();
    }

    public void UploadPinned(ulong destination, nint pinnedSource, long bytes) => Inside(destination, bytes, "pinned upload");

    public nint AllocatePinned(long bytes) => System.Runtime.InteropServices.Marshal.AllocHGlobal((nint)Math.Max(1, bytes));

    public void FreePinned(nint pointer) => System.Runtime.InteropServices.Marshal.FreeHGlobal(pointer);

    public void Synchronize() => _graphs.Host("cuStreamSynchronize");

    public void Launch(KernelSpec kernel, Dim3 grid, Dim3 block, ReadOnlySpan<KernelArg> args)
    {
        KernelArg.Validate(kernel, grid, block, args, Device);
        foreach (var a in args)
            if (a.Kind == KernelArgKind.Pointer && a.Bits != 0) Inside(a.Bits, 1, $"{kernel.Name} argument '{a.Name}'");
        if (_graphs.Record(() => Launched(kernel, grid, block))) return;
        Launched(kernel, grid, block);
    }

    private void Launched(KernelSpec kernel, Dim3 grid, Dim3 block)
    {
        Launches++;
        KernelNames.Add(kernel.Name);
        MaxGridX = Math.Max(MaxGridX, grid.X);
        Operations.Add($"{kernel.Name} {grid} {block}");
    }

    public void Gemm(in GemmCall call)
    {
        call.Validate();
        var (a, b, c) = call.Extents();
        Inside(call.A, a * call.AType.Size(), $"GEMM A ({call})");
        Inside(call.B, b * call.BType.Size(), $"GEMM B ({call})");
        Inside(call.C, c * call.CType.Size(), $"GEMM C ({call})");
        var text = $"gemm {call}";
        if (_graphs.Record(() => Gemmed(text))) return;
        Gemmed(text);
    }

    private void Gemmed(string text)
    {
        GemmCount++;
        Operations.Add(text);
    }

    public bool LtMatmul(in LtMatmulCall call)
    {
        long extentA = (call.TransA ? (long)call.M - 1 : call.K - 1L) * call.Lda + (call.TransA ? call.K : call.M);
        long extentB = (call.TransB ? (long)call.K - 1 : call.N - 1L) * call.Ldb + (call.TransB ? call.N : call.K);
        int size = call.Type.Size();
        Inside(call.A, extentA * size, "Lt A");
        Inside(call.B, extentB * size, "Lt B");
        Inside(call.D, ((call.N - 1L) * call.Ldd + call.M) * call.DType.Size(), "Lt D");
        Inside(call.Bias, call.BiasLength * (long)call.BiasType.Size(), "Lt bias");
        if (call.Epilogue == LtEpilogue.GeluTanhAuxBias) Inside(call.Aux, ((call.N - 1L) * call.Ldd + call.M) * size, "Lt aux");
        var text = $"lt {call}";
        if (_graphs.Record(() => LtDone(text))) return true;
        LtDone(text);
        return true;
    }

    private void LtDone(string text)
    {
        LtCalls++;
        Operations.Add(text);
    }

    /// <summary>cuBLASLt matmuls so far.</summary>
    public int LtCalls { get; private set; }

    public nint CreateEvent() => 1;

    public void RecordEvent(nint evt) { }

    public void SynchronizeEvent(nint evt) { }

    public float ElapsedMilliseconds(nint start, nint end) => 0;

    public void DestroyEvent(nint evt) { }

    public void Dispose() { }

    // ---- CUDA graphs: stream capture through a GraphRecorder -------------------------------------

    /// <summary>Every stream operation run so far, in order (kernel name with grid and block, GEMMs, memsets,
    /// copies); a graph replay appends what it replays.</summary>
    public List<string> Operations { get; } = [];

    public GraphRecorder Graphs => _graphs;

    public void BeginCapture() => _graphs.Begin();

    public (nint Graph, int Nodes) EndCapture() => _graphs.End();

    public void LaunchGraph(nint graph) => _graphs.Launch(graph);

    public void DestroyGraph(nint graph) => _graphs.Destroy(graph);
}
