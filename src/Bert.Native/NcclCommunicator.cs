using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using Bert.Native.Interop;
using Bert.Runtime;
using Bert.Runtime.Distributed;
using static Bert.Native.CudaCheck;

namespace Bert.Native;

/// <summary>
/// Collectives over NCCL for the CUDA backend: one rank per GPU, device tensors, NCCL's own stream. Each tensor
/// collective is queued on that stream after an event recorded on the backend's compute stream (so it reads the
/// gradients the backward wrote), and the compute stream waits for an event recorded after it (so the optimizer
/// reads the sums): the host does not wait. Host values (the trainer's loss sums, stop request, hashes) travel
/// through a small device buffer and are waited for; sums of host values are reduced to rank 0 and broadcast, so
/// every rank holds the same bits and takes the same clip, NaN and stop decisions.
///
/// The communicator is non-blocking (ncclConfig_t.blocking = 0). A watchdog thread polls the event after the last
/// collective and ncclCommGetAsyncError: a collective not finished within <see cref="Timeout"/> (a rank died or
/// hangs) or an asynchronous NCCL error (a peer's connection lost) aborts the communicator (ncclCommAbort) and ends
/// the process with exit <see cref="FaultExitCode"/>, naming the rank and the collective, as
/// <see cref="MpiCommunicator"/> does; the launcher (mpirun, torchrun) then ends the other ranks, whose own
/// watchdogs fire otherwise.
/// </summary>
public sealed unsafe class NcclCommunicator : ICommunicator
{
    /// <summary>Exit code of a job ended by the watchdog (the distributed exit code, docs/reliability.md).</summary>
    public const int FaultExitCode = MpiCommunicator.TimeoutExitCode;

    private const int InitialScratchBytes = 4096;

    private readonly CudaDriverApi _api;
    private readonly IDisposable? _bootstrap;
    private readonly nint _comm;
    private readonly nint _stream;
    private readonly nint _computeDone;  // recorded on the compute stream before each tensor collective
    private readonly nint _ncclDone;     // recorded on NCCL's stream after each collective
    private ulong _scratch;              // device bytes for host-value collectives
    private nint _pinned;                // pinned host bytes, the same size
    private long _scratchBytes;

    private readonly CollectiveWatchdog _watchdog;
    [ThreadStatic] private static nint _watchContext; // the context current on the watchdog's thread
    private volatile bool _disposed;
    private int _aborted;

    private NcclCommunicator(CudaDriverApi api, nint comm, int rank, int size, int version, TimeSpan timeout, IDisposable? bootstrap)
    {
        _api = api;
        _comm = comm;
        _bootstrap = bootstrap;
        Rank = rank;
        Size = size;
        Version = version;
        Timeout = timeout;
        Name = $"NCCL {Nccl.VersionText(version)}";
        bool failed = true;
        try
        {
            api.MakeCurrent();
            Check(CuDriver.cuStreamCreate(out _stream, CuDriver.CU_STREAM_NON_BLOCKING));
            Check(CuDriver.cuEventCreate(out _computeDone, CuDriver.CU_EVENT_DISABLE_TIMING));
            // Blocking sync: a rank waiting for a host value (or for rank 0's data preparation) sleeps instead of spinning.
            Check(CuDriver.cuEventCreate(out _ncclDone, CuDriver.CU_EVENT_DISABLE_TIMING | CuDriver.CU_EVENT_BLOCKING_SYNC));
            Grow(InitialScratchBytes);
            failed = false;
        }
        finally
        {
            if (failed) ReleaseNative(abort: true);
        }
        _watchdog = new CollectiveWatchdog(LastFinished, AsyncError, EndJob, TimeSpan.FromMilliseconds(100));
        _watchdog.Start("nccl-watchdog");
    }

    /// <summary>
    /// Joins the NCCL communicator of <paramref name="launch"/>'s ranks on <paramref name="backend"/>'s GPU: loads
    /// NCCL, exchanges the unique id and the GPUs' UUIDs (over <paramref name="bootstrap"/> when given, e.g. MPI under
    /// mpirun, otherwise over TCP from rank 0: <see cref="UniqueIdRendezvous"/>), refuses two ranks on one GPU
    /// (unless BERT_ALLOW_SHARED_GPU=1), then creates the non-blocking communicator, waiting at most
    /// <paramref name="timeout"/> for the other ranks. The communicator disposes <paramref name="bootstrap"/>.
    /// </summary>
    /// <exception cref="CommunicatorException">NCCL is missing or too old, the rendezvous or the initialization failed
    /// or timed out (the message names the call, NCCL's error and the ranks).</exception>
    /// <exception cref="DistributedLaunchException">Two ranks on one GPU, or the launch lacks the rendezvous' variables.</exception>
    public static NcclCommunicator Open(CudaBackend backend, DistributedLaunch launch, TimeSpan timeout, ICommunicator? bootstrap = null,
        Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (backend.DeviceApi is not CudaDriverApi api)
            throw new CommunicatorException($"NCCL needs a real GPU; {backend.Name} is emulated");
        try
        {
            int version = Nccl.Load();
            var uuid = CudaDevice.Uuid(backend.Device.Ordinal);
            byte[] MakeId()
            {
                Nccl.ThrowIfFailed(Nccl.ncclGetUniqueId(out var id), "ncclGetUniqueId");
                return id.ToArray();
            }
            var rendezvous = bootstrap is not null ? UniqueIdRendezvous.OverCommunicator(bootstrap, MakeId, uuid)
                : launch.Size == 1 ? new RendezvousResult(MakeId(), [uuid])
                : UniqueIdRendezvous.OverTcp(launch.Rank, launch.Size,
                    launch.MasterAddress ?? throw new DistributedLaunchException($"{launch}: MASTER_ADDR is not set: the NCCL rendezvous needs rank 0's address"),
                    UniqueIdRendezvous.Port(launch, environment), MakeId, uuid, timeout);
            GpuAssignment.CheckDistinct(rendezvous.DeviceIds, GpuAssignment.Flag(environment, GpuAssignment.AllowSharedVariable));

            api.MakeCurrent(); // NCCL takes the device from the calling thread's current context
            var config = ncclConfig_t.Initializer;
            config.Blocking = 0;
            var status = Nccl.ncclCommInitRankConfig(out nint comm, launch.Size, ncclUniqueId.From(rendezvous.UniqueId), launch.Rank, &config);
            if (status is not (ncclResult_t.ncclSuccess or ncclResult_t.ncclInProgress))
            {
                if (comm != 0) Nccl.ncclCommAbort(comm);
                throw new CommunicatorException($"rank {launch.Rank} of {launch.Size}: {Nccl.Describe(status, "ncclCommInitRankConfig", comm)}");
            }
            var deadline = Stopwatch.GetTimestamp() + Ticks(timeout);
            status = WaitWhileInProgress(comm, deadline);
            if (status != ncclResult_t.ncclSuccess)
            {
                string what = status == ncclResult_t.ncclInProgress
                    ? $"ncclCommInitRankConfig did not finish within {Seconds(timeout)} s (another rank did not join: it died, or cannot reach this one; NCCL_DEBUG=INFO shows the network NCCL tried)"
                    : Nccl.Describe(status, "ncclCommInitRankConfig", comm);
                Nccl.ncclCommAbort(comm);
                throw new CommunicatorException($"rank {launch.Rank} of {launch.Size}: {what}");
            }
            return new NcclCommunicator(api, comm, launch.Rank, launch.Size, version, timeout, bootstrap);
        }
        catch
        {
            bootstrap?.Dispose();
            throw;
        }
    }

    public int Rank { get; }
    public int Size { get; }
    public string Name { get; }

    /// <summary>ncclGetVersion's code (22703 for 2.27.3).</summary>
    public int Version { get; }

    /// <summary>How long one collective may take before the job is aborted.</summary>
    public TimeSpan Timeout { get; set; }

    // ---- tensor collectives: queued, ordered between the compute stream and NCCL's ------------------

    public void AllReduceSum(TensorRef buffer, Collective what) => QueueAllReduce(buffer, what, computeWaits: true);

    // The in-place fp32 sum, queued after the compute stream's work so far; computeWaits: the compute stream waits for it.
    private bool QueueAllReduce(TensorRef buffer, Collective what, bool computeWaits)
    {
        RequireF32(buffer, what);
        if (buffer.Length == 0) return false;
        long generation = Begin(what, null, afterCompute: true);
        Enqueue(Nccl.ncclAllReduce(buffer.Address, buffer.Address, (nuint)buffer.Length, ncclDataType_t.ncclFloat32, ncclRedOp_t.ncclSum, _comm, _stream), "ncclAllReduce", what);
        End(generation, computeWaits);
        return true;
    }

    // Whether AllReduceSumStart queued collectives the compute stream does not yet wait for.
    private bool _startedPending;

    /// <summary>Queued after the compute stream's work so far, as <see cref="AllReduceSum(TensorRef, Collective)"/>,
    /// but the compute stream does not wait for it: the backward of the layers below runs beside it on the GPU until
    /// <see cref="CompleteStarted"/>.</summary>
    public void AllReduceSumStart(TensorRef buffer, Collective what)
    {
        if (QueueAllReduce(buffer, what, computeWaits: false)) _startedPending = true;
    }

    /// <summary>The compute stream waits for every started collective (NCCL's stream runs them in order, so the event
    /// after the last one covers all); the host does not wait.</summary>
    public void CompleteStarted(Collective what)
    {
        if (!_startedPending) return;
        ObjectDisposedException.ThrowIf(_disposed, this);
        _api.MakeCurrent();
        Check(CuDriver.cuStreamWaitEvent(_api.Stream, _ncclDone, 0));
        _startedPending = false;
    }

    public void ReduceScatterSum(TensorRef send, TensorRef recv, Collective what)
    {
        RequireF32(send, what);
        RequireF32(recv, what);
        if (send.Length != recv.Length * Size)
            throw new ArgumentException($"{what}: reduce-scatter of {send.Length} elements over {Size} ranks needs {send.Length / Size}-element slices, got {recv.Length}");
        if (recv.Length == 0) return;
        long generation = Begin(what, null, afterCompute: true);
        Enqueue(Nccl.ncclReduceScatter(send.Address, recv.Address, (nuint)recv.Length, ncclDataType_t.ncclFloat32, ncclRedOp_t.ncclSum, _comm, _stream), "ncclReduceScatter", what);
        End(generation, computeWaits: true);
    }

    public void AllGather(TensorRef send, TensorRef recv, Collective what)
    {
        RequireF32(send, what);
        RequireF32(recv, what);
        if (recv.Length != send.Length * Size)
            throw new ArgumentException($"{what}: all-gather of {send.Length} elements from {Size} ranks needs {send.Length * Size}, got {recv.Length}");
        if (send.Length == 0) return;
        long generation = Begin(what, null, afterCompute: true);
        Enqueue(Nccl.ncclAllGather(send.Address, recv.Address, (nuint)send.Length, ncclDataType_t.ncclFloat32, _comm, _stream), "ncclAllGather", what);
        End(generation, computeWaits: true);
    }

    public void Broadcast(TensorRef buffer, int root, Collective what)
    {
        CheckRoot(root);
        if (buffer.IsNull) throw new ArgumentException($"{what}: null buffer");
        if (buffer.Bytes == 0) return;
        long generation = Begin(what, null, afterCompute: true);
        Enqueue(Nccl.ncclBroadcast(buffer.Address, buffer.Address, (nuint)buffer.Bytes, ncclDataType_t.ncclUint8, root, _comm, _stream), "ncclBroadcast", what);
        End(generation, computeWaits: true);
    }

    // ---- host values: through the scratch buffer, waited for -------------------------------------------

    public void AllReduceSum(Span<double> values, Collective what)
    {
        if (values.Length == 0) return;
        long bytes = values.Length * 8L;
        Grow(bytes);
        values.CopyTo(new Span<double>((void*)_pinned, values.Length));
        long generation = Begin(what, null, afterCompute: false);
        Check(CuDriver.cuMemcpyHtoDAsync(_scratch, (void*)_pinned, (nuint)bytes, _stream));
        // Reduce once, then broadcast: every rank gets rank 0's bits whatever algorithm NCCL picks.
        Enqueue(Nccl.ncclReduce(_scratch, _scratch, (nuint)values.Length, ncclDataType_t.ncclFloat64, ncclRedOp_t.ncclSum, 0, _comm, _stream), "ncclReduce", what);
        Enqueue(Nccl.ncclBroadcast(_scratch, _scratch, (nuint)values.Length, ncclDataType_t.ncclFloat64, 0, _comm, _stream), "ncclBroadcast", what);
        Check(CuDriver.cuMemcpyDtoHAsync((void*)_pinned, _scratch, (nuint)bytes, _stream));
        End(generation, computeWaits: false);
        Wait();
        new ReadOnlySpan<double>((void*)_pinned, values.Length).CopyTo(values);
    }

    public void AllGather(ulong mine, Span<ulong> all, Collective what)
    {
        if (all.Length != Size) throw new ArgumentException($"{what}: {all.Length} slots for {Size} ranks");
        long bytes = Size * 8L;
        Grow(bytes);
        ((ulong*)_pinned)[Rank] = mine;
        long generation = Begin(what, null, afterCompute: false);
        ulong slot = _scratch + (ulong)Rank * 8;
        Check(CuDriver.cuMemcpyHtoDAsync(slot, (ulong*)_pinned + Rank, 8, _stream));
        Enqueue(Nccl.ncclAllGather(slot, _scratch, 1, ncclDataType_t.ncclUint64, _comm, _stream), "ncclAllGather", what);
        Check(CuDriver.cuMemcpyDtoHAsync((void*)_pinned, _scratch, (nuint)bytes, _stream));
        End(generation, computeWaits: false);
        Wait();
        new ReadOnlySpan<ulong>((void*)_pinned, Size).CopyTo(all);
    }

    public void Broadcast(Span<byte> bytes, int root, Collective what)
    {
        CheckRoot(root);
        if (bytes.Length == 0) return;
        Grow(bytes.Length);
        bytes.CopyTo(new Span<byte>((void*)_pinned, bytes.Length));
        long generation = Begin(what, null, afterCompute: false);
        Check(CuDriver.cuMemcpyHtoDAsync(_scratch, (void*)_pinned, (nuint)bytes.Length, _stream));
        Enqueue(Nccl.ncclBroadcast(_scratch, _scratch, (nuint)bytes.Length, ncclDataType_t.ncclUint8, root, _comm, _stream), "ncclBroadcast", what);
        Check(CuDriver.cuMemcpyDtoHAsync((void*)_pinned, _scratch, (nuint)bytes.Length, _stream));
        End(generation, computeWaits: false);
        Wait();
        new ReadOnlySpan<byte>((void*)_pinned, bytes.Length).CopyTo(bytes);
    }

    /// <summary>NCCL has no barrier: an all-reduce of one value, waited for.</summary>
    public void Barrier(Collective what, TimeSpan? timeout = null)
    {
        long generation = Begin(what, timeout, afterCompute: false);
        Enqueue(Nccl.ncclAllReduce(_scratch, _scratch, 1, ncclDataType_t.ncclFloat32, ncclRedOp_t.ncclSum, _comm, _stream), "ncclAllReduce", what);
        End(generation, computeWaits: false);
        Wait();
    }

    public void Abort(int exitCode, string reason) => EndJob(reason, exitCode);

    // ---- ordering and the watchdog ---------------------------------------------------------------------

    /// <summary>Starts the clock for one collective and, for tensor collectives, makes NCCL's stream wait for the work
    /// queued so far on the compute stream. Returns the generation that <see cref="End"/> publishes.</summary>
    private long Begin(Collective what, TimeSpan? timeout, bool afterCompute)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _api.MakeCurrent();
        long generation = _watchdog.Begin(what, timeout ?? Timeout);
        if (afterCompute)
        {
            Check(CuDriver.cuEventRecord(_computeDone, _api.Stream));
            Check(CuDriver.cuStreamWaitEvent(_stream, _computeDone, 0));
        }
        return generation;
    }

    /// <summary>Checks one NCCL call's status; a non-blocking communicator may answer ncclInProgress while it connects
    /// lazily, and then is polled (within the deadline) before the next call.</summary>
    private void Enqueue(ncclResult_t status, string call, Collective what)
    {
        if (status == ncclResult_t.ncclInProgress) status = WaitWhileInProgress(_comm, () => _watchdog.Expired);
        if (status == ncclResult_t.ncclInProgress) FailNow($"{call}: {_watchdog.TimeoutReason()}");
        else if (status != ncclResult_t.ncclSuccess) FailNow($"{Nccl.Describe(status, call, _comm)} during {what}; aborting the job");
    }

    /// <summary>Records the completion event on NCCL's stream, lets the compute stream wait for it (tensor collectives),
    /// and hands the collective to the watchdog.</summary>
    private void End(long generation, bool computeWaits)
    {
        Check(CuDriver.cuEventRecord(_ncclDone, _stream));
        if (computeWaits) Check(CuDriver.cuStreamWaitEvent(_api.Stream, _ncclDone, 0));
        _watchdog.Arm(generation);
    }

    /// <summary>Waits for the last collective (host values); a hang is the watchdog's to end.</summary>
    private void Wait()
    {
        var status = CuDriver.cuEventSynchronize(_ncclDone);
        if (status != CUresult.CUDA_SUCCESS) FailNow($"{Failure(status, "cuEventSynchronize").Message} after {_watchdog.InFlight}; aborting the job");
    }

    /// <summary>Ends the job from the calling thread (the throw is reached only if the watchdog is ending it already).</summary>
    private void FailNow(string reason)
    {
        _watchdog.Fault(reason);
        throw new CommunicatorException(reason);
    }

    /// <summary>The watchdog's poll: whether the event after the last collective has completed. The event query needs
    /// the backend's context current on the watchdog's thread.</summary>
    private bool LastFinished()
    {
        if (_watchContext != _api.Context)
        {
            Check(CuDriver.cuCtxSetCurrent(_api.Context));
            _watchContext = _api.Context;
        }
        var query = CuDriver.cuEventQuery(_ncclDone);
        if (query == CUresult.CUDA_ERROR_NOT_READY) return false;
        Check(query, "cuEventQuery of the event after the last NCCL collective");
        return true;
    }

    /// <summary>The communicator's asynchronous error (a peer died, a connection broke), or null.</summary>
    private string? AsyncError() =>
        Nccl.ncclCommGetAsyncError(_comm, out var async) == ncclResult_t.ncclSuccess && async is not (ncclResult_t.ncclSuccess or ncclResult_t.ncclInProgress)
            ? $"NCCL reported {Nccl.Describe(async, "the communicator", _comm)}"
            : null;

    /// <summary>Ends the job: the reason naming this rank, ncclCommAbort (so that no NCCL kernel keeps spinning and
    /// the peers' connections close), then exit <paramref name="exitCode"/>.</summary>
    private void EndJob(string reason) => EndJob(reason, FaultExitCode);

    private void EndJob(string reason, int exitCode)
    {
        Console.Error.WriteLine($"bert: rank {Rank} of {Size}: {reason}");
        Console.Error.Flush();
        if (Interlocked.Exchange(ref _aborted, 1) == 0) Nccl.ncclCommAbort(_comm);
        Environment.Exit(exitCode);
    }

    private static ncclResult_t WaitWhileInProgress(nint comm, long deadlineTicks) =>
        WaitWhileInProgress(comm, () => Stopwatch.GetTimestamp() > deadlineTicks);

    /// <summary>Polls a non-blocking communicator until its pending call has finished or <paramref name="expired"/>;
    /// returns ncclInProgress when it expired.</summary>
    private static ncclResult_t WaitWhileInProgress(nint comm, Func<bool> expired)
    {
        var spin = new SpinWait();
        while (true)
        {
            var status = Nccl.ncclCommGetAsyncError(comm, out var state);
            if (status != ncclResult_t.ncclSuccess) return status;
            if (state != ncclResult_t.ncclInProgress) return state;
            if (expired()) return ncclResult_t.ncclInProgress;
            if (spin.Count < 50) spin.SpinOnce();
            else Thread.Sleep(1);
        }
    }

    /// <summary>Makes the scratch buffers hold at least <paramref name="bytes"/> (rarely: the host collectives are small).</summary>
    private void Grow(long bytes)
    {
        if (bytes <= _scratchBytes) return;
        long size = Math.Max(InitialScratchBytes, (long)BitOperations.RoundUpToPowerOf2((ulong)bytes));
        if (_scratch != 0)
        {
            Check(CuDriver.cuStreamSynchronize(_stream));
            _api.Free(_scratch);
            _api.FreePinned(_pinned);
            _scratch = 0;
            _pinned = 0;
            _scratchBytes = 0;
        }
        _scratch = _api.Allocate(size, "nccl-host-values");
        _pinned = _api.AllocatePinned(size);
        _scratchBytes = size;
    }

    private static long Ticks(TimeSpan t) => t == System.Threading.Timeout.InfiniteTimeSpan || t.TotalSeconds * Stopwatch.Frequency >= long.MaxValue / 2
        ? long.MaxValue / 2 : (long)(t.TotalSeconds * Stopwatch.Frequency);

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture);

    private void CheckRoot(int root)
    {
        if ((uint)root >= (uint)Size) throw new ArgumentOutOfRangeException(nameof(root), root, $"root must be a rank in [0, {Size})");
    }

    private static void RequireF32(TensorRef t, Collective what)
    {
        if (t.IsNull || t.DType != DType.F32) throw new ArgumentException($"{what}: the NCCL communicator reduces F32 device tensors, got {t}");
    }

    /// <summary>Frees what this communicator made. <paramref name="abort"/>: ncclCommAbort instead of an orderly
    /// finalize (after a failure).</summary>
    private void ReleaseNative(bool abort)
    {
        _api.MakeCurrent();
        if (!abort && _stream != 0) CuDriver.cuStreamSynchronize(_stream);
        if (abort) Nccl.ncclCommAbort(_comm);
        else
        {
            // Finalize flushes NCCL's outstanding work with the peers (non-blocking: poll), then destroy frees it.
            var status = Nccl.ncclCommFinalize(_comm);
            if (status == ncclResult_t.ncclInProgress) status = WaitWhileInProgress(_comm, Stopwatch.GetTimestamp() + Ticks(Timeout));
            if (status == ncclResult_t.ncclSuccess) Nccl.ncclCommDestroy(_comm);
            else Nccl.ncclCommAbort(_comm);
        }
        if (_scratch != 0) _api.Free(_scratch);
        if (_pinned != 0) _api.FreePinned(_pinned);
        if (_ncclDone != 0) CuDriver.cuEventDestroy(_ncclDone);
        if (_computeDone != 0) CuDriver.cuEventDestroy(_computeDone);
        if (_stream != 0) CuDriver.cuStreamDestroy(_stream);
        _scratch = 0;
        _pinned = 0;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _watchdog.Dispose();
        if (Volatile.Read(ref _aborted) == 0 && !_watchdog.Faulted) ReleaseNative(abort: false);
        _bootstrap?.Dispose();
    }
}
