using System.Diagnostics;
using System.Globalization;

namespace Bert.Runtime.Distributed;

/// <summary>
/// The timeout of a communicator whose collectives finish asynchronously (NCCL queues them on a GPU stream and
/// returns): the communicator calls <see cref="Begin"/> when it starts queueing a collective and <see cref="Arm"/>
/// once the collective's completion marker (an event recorded after it) exists; a poll (<see cref="Poll"/>, every
/// interval on a background thread after <see cref="Start"/>) asks whether the last armed collective has finished and
/// whether the transport reports an asynchronous error, and calls the fault action (which ends the process) when the
/// collective has not finished by its deadline or the transport failed. Collectives run in order on one stream, so
/// the last one finishing means all have. The deadline counts from the latest <see cref="Begin"/>: a rank that keeps
/// queueing is alive; one that stops (waiting on a result) leaves the deadline where it is.
/// </summary>
public sealed class CollectiveWatchdog : IDisposable
{
    private readonly Func<bool> _lastFinished;
    private readonly Func<string?> _asyncError;
    private readonly Action<string> _fault;
    private readonly Func<long> _clock;
    private readonly long _ticksPerSecond;
    private readonly TimeSpan _interval;
    private readonly object _gate = new();
    private Thread? _thread;
    private volatile bool _disposed;
    private long _generation;      // of the latest Begin
    private long _armed;           // generation whose completion marker exists and is unfinished; 0: none
    private long _deadline;        // clock ticks; long.MaxValue: none
    private Collective _inFlight = "";
    private TimeSpan _limit;
    private int _faulted;

    /// <param name="lastFinished">Whether the collective armed last has finished (e.g. cuEventQuery of its event); may
    /// throw, which is a fault.</param>
    /// <param name="asyncError">The transport's asynchronous error as a sentence, or null (e.g. ncclCommGetAsyncError).</param>
    /// <param name="fault">Ends the job with the reason (called at most once, on the polling thread).</param>
    /// <param name="interval">Between polls of the background thread.</param>
    /// <param name="clock">Ticks of <paramref name="ticksPerSecond"/>; Stopwatch's by default (tests pass a fake).</param>
    public CollectiveWatchdog(Func<bool> lastFinished, Func<string?> asyncError, Action<string> fault, TimeSpan interval,
        Func<long>? clock = null, long ticksPerSecond = 0)
    {
        _lastFinished = lastFinished;
        _asyncError = asyncError;
        _fault = fault;
        _interval = interval;
        _clock = clock ?? Stopwatch.GetTimestamp;
        _ticksPerSecond = clock is null ? Stopwatch.Frequency : ticksPerSecond > 0 ? ticksPerSecond
            : throw new ArgumentOutOfRangeException(nameof(ticksPerSecond), "a custom clock needs its tick rate");
    }

    /// <summary>True once the fault action has been called.</summary>
    public bool Faulted => Volatile.Read(ref _faulted) != 0;

    /// <summary>The collective of the latest <see cref="Begin"/>.</summary>
    public Collective InFlight
    {
        get { lock (_gate) return _inFlight; }
    }

    /// <summary>A collective is being queued; it must finish within <paramref name="limit"/>
    /// (<see cref="Timeout.InfiniteTimeSpan"/>: no limit). Returns its generation, for <see cref="Arm"/>.</summary>
    public long Begin(Collective what, TimeSpan limit)
    {
        lock (_gate)
        {
            _inFlight = what;
            _limit = limit;
            _deadline = limit == Timeout.InfiniteTimeSpan || limit.TotalSeconds * _ticksPerSecond >= long.MaxValue / 2
                ? long.MaxValue : _clock() + (long)(limit.TotalSeconds * _ticksPerSecond);
            return ++_generation;
        }
    }

    /// <summary>The completion marker of collective <paramref name="generation"/> exists: the polls watch it.</summary>
    public void Arm(long generation)
    {
        lock (_gate) _armed = generation;
    }

    /// <summary>The deadline of the latest collective has passed (for a communicator that polls while it queues).</summary>
    public bool Expired
    {
        get { lock (_gate) return _deadline != long.MaxValue && _clock() > _deadline; }
    }

    /// <summary>"X did not finish within T s: another rank died or hangs (--dist-timeout); aborting the job".</summary>
    public string TimeoutReason()
    {
        lock (_gate) return TimeoutReason(_inFlight, _limit);
    }

    public static string TimeoutReason(Collective what, TimeSpan limit) => string.Create(CultureInfo.InvariantCulture,
        $"{what} did not finish within {limit.TotalSeconds:0.#} s: another rank died or hangs (--dist-timeout); aborting the job");

    /// <summary>One check: an asynchronous error, or the armed collective past its deadline, calls the fault action.
    /// Returns true when it did (now or before).</summary>
    public bool Poll()
    {
        if (Faulted) return true;
        string? reason = null;
        try
        {
            if (_asyncError() is { } error) reason = $"{error} during {InFlight} (a peer died or its connection broke); aborting the job";
            else
            {
                long armed;
                lock (_gate) armed = _armed;
                if (armed != 0)
                {
                    if (_lastFinished())
                    {
                        lock (_gate) if (_armed == armed) _armed = 0; // a newer collective stays armed
                    }
                    else
                    {
                        lock (_gate)
                            if (_armed == armed && _deadline != long.MaxValue && _clock() > _deadline)
                                reason = TimeoutReason(_inFlight, _limit);
                    }
                }
            }
        }
        catch (Exception e)
        {
            reason = $"{e.Message} while waiting for {InFlight}; aborting the job";
        }
        if (reason is null) return false;
        Fault(reason);
        return true;
    }

    /// <summary>Calls the fault action once, whichever thread gets here first.</summary>
    public void Fault(string reason)
    {
        if (Interlocked.Exchange(ref _faulted, 1) != 0) return;
        _fault(reason);
    }

    /// <summary>Polls every interval on a background thread until disposed.</summary>
    public void Start(string threadName)
    {
        if (_thread is not null) throw new InvalidOperationException("the watchdog runs already");
        _thread = new Thread(() =>
        {
            while (!_disposed)
            {
                Thread.Sleep(_interval);
                if (_disposed || Poll()) return;
            }
        }) { IsBackground = true, Name = threadName };
        _thread.Start();
    }

    /// <summary>Stops the polls (and waits for the thread, unless called from it).</summary>
    public void Dispose()
    {
        _disposed = true;
        if (_thread is { } t && t != Thread.CurrentThread) t.Join();
    }
}
