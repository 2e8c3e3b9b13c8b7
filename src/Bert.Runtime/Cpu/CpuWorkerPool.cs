using System.Runtime.ExceptionServices;

namespace Bert.Runtime.Cpu;

/// <summary>A unit of parallel work: <c>Execute(ref job, chunk, worker)</c> for each chunk. Chunks are
/// fixed by the op (a function of its sizes only) and write disjoint outputs or per-chunk partial
/// sums, so the result does not depend on which worker runs which chunk.</summary>
internal interface IChunkJob<TSelf> where TSelf : unmanaged, IChunkJob<TSelf>
{
    /// <param name="worker">0 for the calling thread, 1..Threads−1 for the pool's threads; indexes
    /// per-worker scratch.</param>
    static abstract void Execute(ref TSelf job, int chunk, int worker);
}

/// <summary>
/// Threads−1 dedicated threads plus the caller. A run publishes a job (a function pointer and a
/// pointer to an unmanaged struct on the caller's stack, so nothing is allocated), wakes the
/// threads, lets every participant take chunks from a shared counter, and waits for all of them.
/// Not reentrant: a job must not start another run.
/// </summary>
internal sealed unsafe class CpuWorkerPool : IDisposable
{
    [ThreadStatic] private static bool t_insideJob;

    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _start;
    private readonly ManualResetEventSlim _done = new(false, 200);
    private readonly object _gate = new();
    private delegate*<void*, int, int, void> _body;
    private void* _state;
    private int _chunks;
    private int _next;
    private int _remaining;
    private Exception? _error;
    private volatile bool _disposed;

    public CpuWorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        _threads = new Thread[threads - 1];
        _start = new ManualResetEventSlim[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _start[i] = new ManualResetEventSlim(false, 200);
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker))
            {
                IsBackground = true,
                Name = $"bert-cpu-{worker}",
            };
            _threads[i].Start();
        }
    }

    public int Threads { get; }

    /// <summary>Runs <c>TJob.Execute</c> for chunks [0, <paramref name="chunks"/>) and returns when all
    /// are done; rethrows the first exception a chunk threw.</summary>
    public void Run<TJob>(TJob* job, int chunks) where TJob : unmanaged, IChunkJob<TJob>
    {
        if (chunks <= 0) return;
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (t_insideJob) throw new InvalidOperationException("CpuWorkerPool.Run was called from inside a parallel job");
        lock (_gate)
        {
            int helpers = Math.Min(_threads.Length, chunks - 1);
            if (helpers == 0)
            {
                t_insideJob = true;
                try
                {
                    for (int c = 0; c < chunks; c++) TJob.Execute(ref *job, c, 0);
                }
                finally
                {
                    t_insideJob = false;
                }
                return;
            }

            _body = &Invoke<TJob>;
            _state = job;
            _chunks = chunks;
            _next = 0;
            _error = null;
            _remaining = helpers;
            _done.Reset();
            for (int i = 0; i < helpers; i++) _start[i].Set();
            Work(0);
            _done.Wait();
            _body = null;
            _state = null;
            if (_error is { } error) ExceptionDispatchInfo.Throw(error);
        }
    }

    private static void Invoke<TJob>(void* state, int chunk, int worker) where TJob : unmanaged, IChunkJob<TJob> =>
        TJob.Execute(ref *(TJob*)state, chunk, worker);

    private void Work(int worker)
    {
        t_insideJob = true;
        try
        {
            int chunks = _chunks;
            while (true)
            {
                int chunk = Interlocked.Increment(ref _next) - 1;
                if (chunk >= chunks) break;
                _body(_state, chunk, worker);
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _error, e, null);
            Volatile.Write(ref _next, int.MaxValue / 2);
        }
        finally
        {
            t_insideJob = false;
        }
    }

    private void WorkerLoop(int worker)
    {
        var start = _start[worker - 1];
        while (true)
        {
            start.Wait();
            start.Reset();
            if (_disposed) return;
            Work(worker);
            if (Interlocked.Decrement(ref _remaining) == 0) _done.Set();
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        lock (_gate)
        {
            _disposed = true;
            foreach (var s in _start) s.Set();
        }
        foreach (var t in _threads) t.Join();
        foreach (var s in _start) s.Dispose();
        _done.Dispose();
    }
}
