using Bert.Runtime;

namespace Bert.Native;

// CUDA graphs: a step's queued work captured once and replayed (CudaGraph), and the device-side dropout counter
// that lets a replay draw fresh masks.
public sealed partial class CudaBackend : IGraphCapture
{
    private bool _capturing;
    private TensorRef _dropoutCounter;

    /// <summary>Whether a <see cref="Capture"/> is recording (ops are queued into the graph, not run).</summary>
    public bool IsCapturing => _capturing;

    /// <summary>
    /// A device uint that every dropout kernel adds to its <see cref="DropoutSpec.Step"/> (the Philox counter is
    /// step + counter[0]): a captured step keeps the model's DropoutStep at 0 and writes each step's counter into its
    /// scalars (<see cref="StepScalars.DropoutStepIndex"/>), so each replay draws the masks an eager step with that
    /// DropoutStep draws. Null (the default): a constant 0, the eager behaviour. A 4-byte view (F32, I32) of at least
    /// one element; only its bits are read.
    /// </summary>
    public TensorRef DropoutCounter
    {
        get => _dropoutCounter;
        set
        {
            if (!value.IsNull && (value.DType.Size() != 4 || value.Length < 1))
                throw new ArgumentException($"DropoutCounter must be a 4-byte element on the device, not {value}", nameof(value));
            _dropoutCounter = value;
        }
    }

    private KernelArg DropoutCounterArg =>
        KernelArg.Ptr("stepBase", _dropoutCounter.IsNull ? _zeroCounter : _dropoutCounter.Address);

    /// <summary>
    /// Records the device work <paramref name="step"/> queues (kernels, GEMMs, device copies and memsets) into a graph
    /// instead of running it; <see cref="CudaGraph.Replay"/> then queues all of it in one launch. Pointers and kernel
    /// arguments are fixed at capture: a replay reads the same buffers, so the step must take whatever changes from
    /// device memory (inputs uploaded before the replay, <see cref="StepScalars"/>, <see cref="DropoutCounter"/>).
    /// Throws <see cref="CudaGraphCaptureException"/> when the step cannot be captured: it uploads, downloads,
    /// synchronizes, allocates or frees (all of which need the host), or per-op profiling is on; nothing of the step
    /// ran then, and the backend is usable as before.
    /// </summary>
    public CudaGraph Capture(Action step)
    {
        ArgumentNullException.ThrowIfNull(step);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_capturing) throw new InvalidOperationException("Capture: a capture is already recording on this backend");
        if (_profiler is not null)
            throw new CudaGraphCaptureException("per-op profiling times every op with events and waits for them; a graph cannot replay that (profile without graphs)");
        try
        {
            _api.BeginCapture();
        }
        catch (CudaException e)
        {
            throw new CudaGraphCaptureException($"the stream could not start capturing: {e.Message}", e);
        }
        _capturing = true;
        try
        {
            step();
        }
        catch (Exception e)
        {
            _capturing = false;
            EndBrokenCapture();
            if (e is CudaGraphCaptureException) throw;
            throw new CudaGraphCaptureException($"the step failed while it was captured: {e.Message}", e);
        }
        _capturing = false;
        try
        {
            var (graph, nodes) = _api.EndCapture();
            return new CudaGraph(this, graph, nodes);
        }
        catch (CudaException e)
        {
            throw new CudaGraphCaptureException($"the captured step is not a valid graph: {e.Message}", e);
        }
    }

    /// <summary><see cref="Capture"/>, or false with the one-line reason when the step cannot be captured (the caller
    /// then runs it eagerly).</summary>
    public bool TryCapture(Action step, out CudaGraph? graph, out string reason)
    {
        try
        {
            graph = Capture(step);
            reason = "";
            return true;
        }
        catch (CudaGraphCaptureException e)
        {
            graph = null;
            reason = e.Message;
            return false;
        }
    }

    bool IGraphCapture.TryCapture(Action work, out IReplayableGraph? graph, out string reason)
    {
        bool captured = TryCapture(work, out var cudaGraph, out reason);
        graph = cudaGraph;
        return captured;
    }

    internal void Replay(CudaGraph graph)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfCapturing("replaying a graph");
        _api.LaunchGraph(graph.Handle);
    }

    internal void Destroy(CudaGraph graph)
    {
        if (_disposed) return;
        _api.DestroyGraph(graph.Handle);
    }

    /// <summary>Ends a capture the step broke, discarding what was recorded; the stream runs eagerly again.</summary>
    private void EndBrokenCapture()
    {
        try
        {
            var (graph, _) = _api.EndCapture();
            _api.DestroyGraph(graph);
        }
        catch (CudaException)
        {
            // The capture was invalidated (the usual case): EndCapture already ended it.
        }
    }

    /// <summary>Host-side work (an upload, a download, a synchronization, an allocation) cannot be part of a graph:
    /// inside <see cref="Capture"/> it fails at once with the reason, rather than as an invalidated capture later.</summary>
    private void ThrowIfCapturing(string what)
    {
        if (_capturing)
            throw new CudaGraphCaptureException($"{what} inside a captured step needs the host, which a CUDA graph cannot replay; " +
                                                "do it before or after the step");
    }
}

/// <summary>A step that cannot be recorded as a CUDA graph (see <see cref="CudaBackend.Capture"/>); the message says why.</summary>
public sealed class CudaGraphCaptureException : CudaException
{
    public CudaGraphCaptureException(string message) : base(message) { }

    public CudaGraphCaptureException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>An executable CUDA graph of one captured step (<see cref="CudaBackend.Capture"/>). <see cref="Replay"/> queues
/// the whole step on the backend's stream in one call; asynchronous like any op.</summary>
public sealed class CudaGraph : IReplayableGraph
{
    private CudaBackend? _owner;

    internal CudaGraph(CudaBackend owner, nint handle, int nodes)
    {
        _owner = owner;
        Handle = handle;
        Nodes = nodes;
    }

    internal nint Handle { get; }

    /// <summary>Operations in the graph as the driver counts them (kernels, memsets, copies; cuBLAS may add its own).</summary>
    public int Nodes { get; }

    /// <summary>Queues one run of the captured step.</summary>
    public void Replay()
    {
        var owner = _owner ?? throw new ObjectDisposedException(nameof(CudaGraph));
        owner.Replay(this);
    }

    public void Dispose()
    {
        var owner = Interlocked.Exchange(ref _owner, null);
        owner?.Destroy(this);
    }
}
