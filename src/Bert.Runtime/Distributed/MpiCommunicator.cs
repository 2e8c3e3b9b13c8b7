using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Bert.Runtime.Distributed;

/// <summary>MPI is missing or failed: the message says what to install or how to launch.</summary>
public sealed class CommunicatorException(string message) : Exception(message);

/// <summary>
/// Collectives over Open MPI (Debian: openmpi-bin, libopenmpi3; libmpi.so.40), bound with LibraryImport, for the
/// CPU backend: tensors are host memory. Opened once per process (<see cref="Open"/>), for the ranks mpirun (or
/// srun with PMIx) started. Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are addresses of
/// exported objects and are read from the library itself, so no C shim is needed; MPICH-family libraries have
/// another ABI and are not supported. A watchdog thread ends the job (MPI_Abort, exit
/// <see cref="TimeoutExitCode"/>) when a collective has not finished within <see cref="Timeout"/>: a rank
/// that died or hangs then stops every other rank instead of leaving them waiting forever.
/// </summary>
public sealed unsafe partial class MpiCommunicator : ICommunicator
{
    /// <summary>Exit code of a job ended by a collective's timeout.</summary>
    public const int TimeoutExitCode = 7;

    private const string Library = "libmpi.so.40";
    private const int ThreadSerialized = 2;
    private const int MaxChunk = 1 << 28;
    private static readonly nint InPlace = 1; // Open MPI's MPI_IN_PLACE

    private readonly nint _world, _float, _double, _uint64, _byte, _sum;
    private readonly Thread _watchdog;
    private long _deadlineTicks; // Stopwatch ticks; 0: nothing in flight
    private Collective _inFlight = "";
    private TimeSpan _inFlightLimit;
    private volatile bool _disposed;

    private MpiCommunicator(nint library, TimeSpan timeout)
    {
        _world = Export(library, "ompi_mpi_comm_world");
        _float = Export(library, "ompi_mpi_float");
        _double = Export(library, "ompi_mpi_double");
        _uint64 = Export(library, "ompi_mpi_uint64_t");
        _byte = Export(library, "ompi_mpi_byte");
        _sum = Export(library, "ompi_mpi_op_sum");
        Timeout = timeout;
        int initialized;
        Check(MPI_Initialized(&initialized), "MPI_Initialized");
        if (initialized == 0)
        {
            int provided;
            Check(MPI_Init_thread(null, null, ThreadSerialized, &provided), "MPI_Init_thread");
        }
        int rank, size;
        Check(MPI_Comm_rank(_world, &rank), "MPI_Comm_rank");
        Check(MPI_Comm_size(_world, &size), "MPI_Comm_size");
        Rank = rank;
        Size = size;
        Name = LibraryVersion();
        _watchdog = new Thread(Watch) { IsBackground = true, Name = "mpi-watchdog" };
        _watchdog.Start();
    }

    private static MpiCommunicator? s_instance;

    /// <summary>Initializes MPI (once per process) and returns the world communicator.</summary>
    /// <exception cref="CommunicatorException">libmpi.so.40 is not installed or is not Open MPI.</exception>
    public static MpiCommunicator Open(TimeSpan timeout)
    {
        if (s_instance is { _disposed: false } existing)
        {
            existing.Timeout = timeout;
            return existing;
        }
        if (s_instance is not null) throw new CommunicatorException("MPI was finalized in this process; it cannot be initialized again");
        if (!NativeLibrary.TryLoad(Library, out var library))
            throw new CommunicatorException($"{Library} not found: install Open MPI (Debian: apt install openmpi-bin libopenmpi3) to train on several CPU processes");
        if (!NativeLibrary.TryGetExport(library, "ompi_mpi_comm_world", out _))
            throw new CommunicatorException($"{Library} is not Open MPI (no ompi_mpi_comm_world): only Open MPI's ABI is bound");
        // Open MPI intercepts SIGSEGV/SIGBUS/SIGFPE/SIGABRT by default to print its own backtrace; .NET needs
        // SIGSEGV for NullReferenceException, so leave the signals to the runtime (unless the user set it).
        if (Environment.GetEnvironmentVariable("OMPI_MCA_opal_signal") is null) _ = setenv("OMPI_MCA_opal_signal", "", 0);
        return s_instance = new MpiCommunicator(library, timeout);
    }

    public int Rank { get; }
    public int Size { get; }
    public string Name { get; }

    /// <summary>How long one collective may take before the job is aborted.</summary>
    public TimeSpan Timeout { get; set; }

    public void AllReduceSum(TensorRef buffer, Collective what)
    {
        RequireF32(buffer, what);
        Arm(what, null);
        try
        {
            for (long done = 0; done < buffer.Length; done += MaxChunk)
            {
                int n = (int)Math.Min(MaxChunk, buffer.Length - done);
                Check(MPI_Allreduce((void*)InPlace, (void*)(buffer.Address + (ulong)done * 4), n, _float, _sum, _world), "MPI_Allreduce");
            }
        }
        finally { Disarm(); }
    }

    // Requests of the all-reduces AllReduceSumStart began (MPI_Request is a pointer in Open MPI's ABI); grown, never
    // shrunk, so a step's buckets allocate nothing once the first step has sized it.
    private nint[] _started = new nint[64];
    private int _startedCount;

    public void AllReduceSumStart(TensorRef buffer, Collective what)
    {
        RequireF32(buffer, what);
        ObjectDisposedException.ThrowIf(_disposed, this);
        for (long done = 0; done < buffer.Length; done += MaxChunk)
        {
            int n = (int)Math.Min(MaxChunk, buffer.Length - done);
            if (_startedCount == _started.Length) Array.Resize(ref _started, _started.Length * 2);
            nint request;
            Check(MPI_Iallreduce((void*)InPlace, (void*)(buffer.Address + (ulong)done * 4), n, _float, _sum, _world, &request), "MPI_Iallreduce");
            _started[_startedCount++] = request;
        }
        // Open MPI progresses non-blocking collectives inside MPI calls: a test lets the started ones advance while
        // the backward goes on (the flag is not needed: MPI_Waitall completes them).
        int flag;
        fixed (nint* requests = _started) Check(MPI_Testall(_startedCount, requests, &flag, null), "MPI_Testall");
    }

    public void CompleteStarted(Collective what)
    {
        if (_startedCount == 0) return;
        Arm(what, null);
        try
        {
            fixed (nint* requests = _started) Check(MPI_Waitall(_startedCount, requests, null), "MPI_Waitall");
        }
        finally
        {
            _startedCount = 0;
            Disarm();
        }
    }

    public void ReduceScatterSum(TensorRef send, TensorRef recv, Collective what)
    {
        RequireF32(send, what);
        RequireF32(recv, what);
        if (send.Length != recv.Length * Size)
            throw new ArgumentException($"{what}: reduce-scatter of {send.Length} elements over {Size} ranks needs {send.Length / Size}-element slices, got {recv.Length}");
        if (recv.Length > int.MaxValue) throw new ArgumentException($"{what}: {recv.Length} elements per rank exceed MPI's int count");
        // NCCL's in-place form (recv = slice Rank of send): MPI's MPI_IN_PLACE form reads the whole buffer and leaves
        // the result in its first slice, so the result then moves to slice Rank (host memory: the CPU backend's).
        bool inPlace = recv.Address == send.Address + (ulong)(Rank * recv.Bytes);
        Arm(what, null);
        try
        {
            if (inPlace)
            {
                Check(MPI_Reduce_scatter_block((void*)InPlace, (void*)send.Address, (int)recv.Length, _float, _sum, _world), "MPI_Reduce_scatter_block");
                if (Rank > 0) Buffer.MemoryCopy((void*)send.Address, (void*)recv.Address, recv.Bytes, recv.Bytes);
            }
            else
            {
                Check(MPI_Reduce_scatter_block((void*)send.Address, (void*)recv.Address, (int)recv.Length, _float, _sum, _world), "MPI_Reduce_scatter_block");
            }
        }
        finally { Disarm(); }
    }

    public void AllGather(TensorRef send, TensorRef recv, Collective what)
    {
        RequireF32(send, what);
        RequireF32(recv, what);
        if (recv.Length != send.Length * Size)
            throw new ArgumentException($"{what}: all-gather of {send.Length} elements from {Size} ranks needs {send.Length * Size}, got {recv.Length}");
        if (send.Length > int.MaxValue) throw new ArgumentException($"{what}: {send.Length} elements per rank exceed MPI's int count");
        // In place (send = slice Rank of recv) is MPI_IN_PLACE's meaning for MPI_Allgather too.
        bool inPlace = send.Address == recv.Address + (ulong)(Rank * send.Bytes);
        Arm(what, null);
        try { Check(MPI_Allgather(inPlace ? (void*)InPlace : (void*)send.Address, (int)send.Length, _float, (void*)recv.Address, (int)send.Length, _float, _world), "MPI_Allgather"); }
        finally { Disarm(); }
    }

    public void Broadcast(TensorRef buffer, int root, Collective what)
    {
        CheckRoot(root);
        if (buffer.IsNull) throw new ArgumentException($"{what}: null buffer");
        long bytes = buffer.Bytes;
        Arm(what, null);
        try
        {
            for (long done = 0; done < bytes; done += MaxChunk)
            {
                int n = (int)Math.Min(MaxChunk, bytes - done);
                Check(MPI_Bcast((void*)(buffer.Address + (ulong)done), n, _byte, root, _world), "MPI_Bcast");
            }
        }
        finally { Disarm(); }
    }

    public void AllReduceSum(Span<double> values, Collective what)
    {
        // Reduce once, then broadcast, so that every rank holds the same bits whatever algorithm MPI picks.
        fixed (double* p = values)
        {
            Arm(what, null);
            try
            {
                Check(MPI_Reduce(Rank == 0 ? (void*)InPlace : p, p, values.Length, _double, _sum, 0, _world), "MPI_Reduce");
                Check(MPI_Bcast(p, values.Length, _double, 0, _world), "MPI_Bcast");
            }
            finally { Disarm(); }
        }
    }

    public void AllGather(ulong mine, Span<ulong> all, Collective what)
    {
        if (all.Length != Size) throw new ArgumentException($"{what}: {all.Length} slots for {Size} ranks");
        fixed (ulong* p = all)
        {
            Arm(what, null);
            try { Check(MPI_Allgather(&mine, 1, _uint64, p, 1, _uint64, _world), "MPI_Allgather"); }
            finally { Disarm(); }
        }
    }

    public void Broadcast(Span<byte> bytes, int root, Collective what)
    {
        CheckRoot(root);
        fixed (byte* p = bytes)
        {
            Arm(what, null);
            try { Check(MPI_Bcast(p, bytes.Length, _byte, root, _world), "MPI_Bcast"); }
            finally { Disarm(); }
        }
    }

    public void Barrier(Collective what, TimeSpan? timeout = null)
    {
        Arm(what, timeout);
        try { Check(MPI_Barrier(_world), "MPI_Barrier"); }
        finally { Disarm(); }
    }

    public void Abort(int exitCode, string reason)
    {
        Console.Error.WriteLine($"bert: rank {Rank} of {Size}: {reason}");
        Console.Error.Flush();
        MPI_Abort(_world, exitCode);
        Environment.Exit(exitCode); // not reached: MPI_Abort ends the process
    }

    /// <summary>Starts the watchdog's clock for one collective; <see cref="Disarm"/> stops it.</summary>
    private void Arm(Collective what, TimeSpan? timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var limit = timeout ?? Timeout;
        _inFlight = what;
        _inFlightLimit = limit;
        Volatile.Write(ref _deadlineTicks, limit == System.Threading.Timeout.InfiniteTimeSpan
            ? long.MaxValue
            : Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency));
    }

    private void Disarm() => Volatile.Write(ref _deadlineTicks, 0);

    private void Watch()
    {
        while (!_disposed)
        {
            Thread.Sleep(200);
            long deadline = Volatile.Read(ref _deadlineTicks);
            if (deadline != 0 && deadline != long.MaxValue && Stopwatch.GetTimestamp() > deadline)
                Abort(TimeoutExitCode, string.Create(CultureInfo.InvariantCulture,
                    $"{_inFlight} did not finish within {_inFlightLimit.TotalSeconds:0.#} s: another rank died or hangs (--dist-timeout); aborting the job"));
        }
    }

    private void CheckRoot(int root)
    {
        if ((uint)root >= (uint)Size) throw new ArgumentOutOfRangeException(nameof(root), root, $"root must be a rank in [0, {Size})");
    }

    private static void RequireF32(TensorRef t, Collective what)
    {
        if (t.IsNull || t.DType != DType.F32) throw new ArgumentException($"{what}: the MPI communicator reduces F32 host tensors, got {t}");
    }

    private static void Check(int code, string call)
    {
        if (code == 0) return;
        var text = new byte[256];
        int len = 0;
        fixed (byte* p = text) _ = MPI_Error_string(code, p, &len);
        throw new CommunicatorException($"{call} failed with MPI error {code}: {Encoding.UTF8.GetString(text, 0, Math.Max(0, len))}");
    }

    private static string LibraryVersion()
    {
        var text = new byte[512];
        int len = 0;
        fixed (byte* p = text) _ = MPI_Get_library_version(p, &len);
        string v = Encoding.UTF8.GetString(text, 0, Math.Clamp(len, 0, text.Length)).Trim('\0', ' ', '\n');
        int comma = v.IndexOf(',');
        return comma > 0 ? v[..comma] : v;
    }

    private static nint Export(nint library, string name) =>
        NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new CommunicatorException($"{Library}: symbol {name} not found (not Open MPI 4 or later?)");

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        int finalized;
        if (MPI_Finalized(&finalized) == 0 && finalized == 0) MPI_Finalize();
    }

    [LibraryImport(Library)] private static partial int MPI_Initialized(int* flag);
    [LibraryImport(Library)] private static partial int MPI_Finalized(int* flag);
    [LibraryImport(Library)] private static partial int MPI_Init_thread(int* argc, byte*** argv, int required, int* provided);
    [LibraryImport(Library)] private static partial int MPI_Finalize();
    [LibraryImport(Library)] private static partial int MPI_Comm_rank(nint comm, int* rank);
    [LibraryImport(Library)] private static partial int MPI_Comm_size(nint comm, int* size);
    [LibraryImport(Library)] private static partial int MPI_Allreduce(void* send, void* recv, int count, nint type, nint op, nint comm);
    [LibraryImport(Library)] private static partial int MPI_Iallreduce(void* send, void* recv, int count, nint type, nint op, nint comm, nint* request);
    // statuses: null is Open MPI's MPI_STATUSES_IGNORE
    [LibraryImport(Library)] private static partial int MPI_Waitall(int count, nint* requests, void* statuses);
    [LibraryImport(Library)] private static partial int MPI_Testall(int count, nint* requests, int* flag, void* statuses);
    [LibraryImport(Library)] private static partial int MPI_Reduce(void* send, void* recv, int count, nint type, nint op, int root, nint comm);
    [LibraryImport(Library)] private static partial int MPI_Reduce_scatter_block(void* send, void* recv, int count, nint type, nint op, nint comm);
    [LibraryImport(Library)] private static partial int MPI_Allgather(void* send, int sendCount, nint sendType, void* recv, int recvCount, nint recvType, nint comm);
    [LibraryImport(Library)] private static partial int MPI_Bcast(void* buffer, int count, nint type, int root, nint comm);
    [LibraryImport(Library)] private static partial int MPI_Barrier(nint comm);
    [LibraryImport(Library)] private static partial int MPI_Abort(nint comm, int code);
    [LibraryImport(Library)] private static partial int MPI_Get_library_version(byte* version, int* length);
    [LibraryImport(Library)] private static partial int MPI_Error_string(int code, byte* text, int* length);
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)] private static partial int setenv(string name, string value, int overwrite);
}
