using Bert.Native;

namespace Bert.Tests.Cuda.Emulator;

/// <summary>
/// Stream capture for the test devices, as the driver does it: between BeginCapture and EndCapture each stream operation
/// (launch, GEMM, memset, device copy) is kept instead of run, and a graph replays the kept operations in order. A host
/// operation during the capture (upload, download, synchronization, allocation, free) fails with
/// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture, so EndCapture then fails too.
/// </summary>
internal sealed class GraphRecorder
{
    private readonly Dictionary<nint, Action[]> _graphs = [];
    private List<Action>? _capture;
    private string? _broken;
    private nint _next = 1;

    public bool Capturing => _capture is not null;

    /// <summary>Graph launches so far.</summary>
    public int Replays { get; private set; }

    /// <summary>Graphs instantiated and not destroyed.</summary>
    public int Live => _graphs.Count;

    /// <summary>Keeps <paramref name="operation"/> when capturing (true: the caller must not run it now).</summary>
    public bool Record(Action operation)
    {
        if (_capture is null) return false;
        _capture.Add(operation);
        return true;
    }

    /// <summary>A host operation: fails, and breaks the capture, when capturing.</summary>
    public void Host(string what)
    {
        if (_capture is null) return;
        _broken ??= what;
        throw new CudaException($"{what} during stream capture: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED")
        {
            ErrorName = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
        };
    }

    public void Begin()
    {
        if (_capture is not null) throw new CudaException("cuStreamBeginCapture: the stream is already capturing");
        _capture = [];
        _broken = null;
    }

    public (nint Graph, int Nodes) End()
    {
        var operations = _capture ?? throw new CudaException("cuStreamEndCapture: the stream is not capturing");
        _capture = null;
        if (_broken is { } what)
            throw new CudaException($"cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ({what} broke the capture)")
            {
                ErrorName = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
            };
        nint graph = _next++;
        _graphs[graph] = [.. operations];
        return (graph, operations.Count);
    }

    public void Launch(nint graph)
    {
        if (_capture is not null) throw new CudaException("cuGraphLaunch: launching a graph inside a capture is not supported here");
        if (!_graphs.TryGetValue(graph, out var operations)) throw new CudaException($"cuGraphLaunch: unknown graph {graph}");
        Replays++;
        foreach (var operation in operations) operation();
    }

    public void Destroy(nint graph)
    {
        if (!_graphs.Remove(graph)) throw new CudaException($"cuGraphExecDestroy: unknown graph {graph}");
    }
}
