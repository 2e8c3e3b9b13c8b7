namespace Bert.Runtime;

/// <summary>Whether a training step runs as replayed CUDA graphs (--cuda-graphs).</summary>
public enum CudaGraphMode
{
    /// <summary>Every step runs op by op.</summary>
    Off,
    /// <summary>The step is captured and replayed; a step that cannot be captured is an error.</summary>
    On,
    /// <summary>Captured and replayed on the CUDA backend; eager, after one log line saying why, where it cannot be.</summary>
    Auto,
}

/// <summary>
/// A backend that can record the device work an action queues and replay it later in one launch (the CUDA backend:
/// CUDA graphs). Pointers and kernel arguments are fixed at capture, so what changes between replays must live in
/// device memory written before each replay: the batch, <see cref="StepScalars"/>, the MLM gradient scale
/// (<see cref="BertBatch.MlmGradScaleOnDevice"/>) and the dropout counter (<see cref="DropoutCounter"/>).
/// </summary>
public interface IGraphCapture
{
    /// <summary>A device element that every dropout kernel adds to its step while it is set; Null: a constant 0.
    /// Set during a capture (the model's DropoutStep then stays 0), so each replay draws the masks that an eager pass
    /// with DropoutStep = the element's value draws.</summary>
    TensorRef DropoutCounter { get; set; }

    /// <summary>Records what <paramref name="work"/> queues without running it; false with a one-line reason when it
    /// cannot be captured (it needs the host: an upload, a download, a synchronization, an allocation), and then
    /// nothing of it ran and the backend works as before.</summary>
    bool TryCapture(Action work, out IReplayableGraph? graph, out string reason);
}

/// <summary>Captured device work (<see cref="IGraphCapture.TryCapture"/>).</summary>
public interface IReplayableGraph : IDisposable
{
    /// <summary>Operations in the graph.</summary>
    int Nodes { get; }

    /// <summary>Queues one run of the captured work (asynchronous, like any op).</summary>
    void Replay();
}

/// <summary>A step asked to run as a graph (<see cref="CudaGraphMode.On"/>) that cannot; the message says why.</summary>
public sealed class GraphCaptureException : Exception
{
    public GraphCaptureException(string message) : base(message) { }
}

/// <summary>
/// Runs pieces of a training step as captured graphs, one per key (a batch's views, an update), with the policy every
/// caller shares: the first run of a key is eager (libraries initialize lazily on a first call: cuBLAS picks kernels
/// and workspaces, cuBLASLt plans), the second captures it and replays the capture, later ones replay. Under
/// <see cref="CudaGraphMode.Auto"/> anything that prevents capture (a backend without <see cref="IGraphCapture"/>, work
/// that needs the host, keys that keep changing) turns every later run eager after one log line; under
/// <see cref="CudaGraphMode.On"/> it is a <see cref="GraphCaptureException"/>. At most <see cref="MaxGraphs"/> captures
/// are kept (each phase of a run has one shape); a key seen after that many captures means the work is not fixed
/// (shapes or host-side scalars vary), which Auto answers by running eagerly.
/// </summary>
public sealed class StepGraphs<TKey> : IDisposable where TKey : notnull, IEquatable<TKey>
{
    /// <summary>Captures a run may make; a key beyond them means the work varies from step to step.</summary>
    public const int MaxGraphs = 16;

    private readonly IGraphCapture? _capture;
    private readonly Action<string> _log;
    private readonly Dictionary<TKey, IReplayableGraph> _graphs = new();
    private readonly HashSet<TKey> _warmed = new();
    private int _captures;
    private bool _fellBack;

    /// <param name="unsupported">Why this caller's work cannot be captured at all (a sharded optimizer, collectives), or null.</param>
    /// <param name="log">Receives the one line that says why work runs eagerly under <see cref="CudaGraphMode.Auto"/>.</param>
    /// <exception cref="GraphCaptureException"><see cref="CudaGraphMode.On"/> with a backend that cannot capture or an
    /// <paramref name="unsupported"/> reason.</exception>
    public StepGraphs(IBackend backend, CudaGraphMode mode, string? unsupported = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Mode = mode;
        _log = log ?? (_ => { });
        _capture = backend as IGraphCapture;
        if (mode == CudaGraphMode.Off) return;
        unsupported ??= _capture is null ? $"the backend {backend.Name} cannot capture graphs (only the CUDA backend can)" : null;
        if (unsupported is null) return;
        if (mode == CudaGraphMode.On) throw new GraphCaptureException($"--cuda-graphs on: {unsupported}");
        FallBack(unsupported);
    }

    public CudaGraphMode Mode { get; }

    /// <summary>True when every run is eager: graphs off, or Auto fell back.</summary>
    public bool Eager => Mode == CudaGraphMode.Off || _fellBack;

    /// <summary>"on" once some work replays a graph, "off" when it runs op by op as asked (or has not been captured
    /// yet), "fallback" when Auto could not capture (<see cref="FallbackReason"/> says why).</summary>
    public string State => _fellBack ? "fallback" : _graphs.Count > 0 ? "on" : "off";

    /// <summary>Why Auto runs eagerly; null otherwise.</summary>
    public string? FallbackReason { get; private set; }

    /// <summary>Operations in the graphs held now.</summary>
    public int Nodes => _graphs.Values.Sum(g => g.Nodes);

    /// <summary>Graphs captured so far (a recapture after a key was dropped counts again).</summary>
    public int Captures => _captures;

    /// <summary>
    /// Runs <paramref name="work"/> under <paramref name="key"/>: eagerly, or captured and replayed (see the class).
    /// <paramref name="work"/> receives true when it is being captured: it must then take its dropout counter from
    /// <paramref name="dropoutCounter"/> (set the model's DropoutStep to 0), which the caller writes before every run;
    /// false: it runs now, with its counter on the host. Replays do not call it.
    /// </summary>
    /// <exception cref="GraphCaptureException"><see cref="CudaGraphMode.On"/> and the work cannot be captured.</exception>
    public void Run(TKey key, Action<bool> work, TensorRef dropoutCounter)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (Eager)
        {
            work(false);
            return;
        }
        if (_graphs.TryGetValue(key, out var graph))
        {
            graph.Replay();
            return;
        }
        if (_warmed.Add(key))
        {
            work(false);
            return;
        }
        if (_captures >= MaxGraphs)
        {
            Refuse($"the step's work changed {MaxGraphs} times (its shapes or host-side scalars vary from step to step)");
            work(false);
            return;
        }
        var capture = _capture!;
        bool captured;
        string reason;
        try
        {
            capture.DropoutCounter = dropoutCounter;
            captured = capture.TryCapture(() => work(true), out graph, out reason);
        }
        finally
        {
            capture.DropoutCounter = TensorRef.Null;
        }
        if (!captured)
        {
            Refuse(reason);
            work(false);
            return;
        }
        _captures++;
        _graphs[key] = graph!;
        graph!.Replay();
    }

    /// <summary>Drops every capture (the next runs warm up and capture again): after the buffers a graph reads were
    /// reallocated.</summary>
    public void Reset()
    {
        foreach (var g in _graphs.Values) g.Dispose();
        _graphs.Clear();
        _warmed.Clear();
    }

    private void Refuse(string reason)
    {
        if (Mode == CudaGraphMode.On) throw new GraphCaptureException($"--cuda-graphs on: {reason}");
        Reset();
        FallBack(reason);
    }

    private void FallBack(string reason)
    {
        _fellBack = true;
        FallbackReason = reason;
        _log($"cuda graphs: running steps eagerly: {reason}");
    }

    public void Dispose() => Reset();
}
