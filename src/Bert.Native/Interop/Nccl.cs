using System.Runtime.InteropServices;
using System.Text;
using Bert.Runtime.Distributed;

namespace Bert.Native.Interop;

/// <summary>ncclResult_t (nccl.h), native names.</summary>
internal enum ncclResult_t
{
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    /// <summary>A non-blocking communicator's call has not finished: poll <see cref="Nccl.ncclCommGetAsyncError"/>.</summary>
    ncclInProgress = 7,
}

/// <summary>ncclDataType_t, the values used here.</summary>
internal enum ncclDataType_t
{
    ncclInt8 = 0,
    ncclUint8 = 1,
    ncclInt32 = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6,
    ncclFloat32 = 7,
    ncclFloat64 = 8,
    ncclBfloat16 = 9,
}

/// <summary>ncclRedOp_t, the values used here.</summary>
internal enum ncclRedOp_t
{
    ncclSum = 0,
    ncclProd = 1,
    ncclMax = 2,
    ncclMin = 3,
    ncclAvg = 4,
}

/// <summary>ncclUniqueId: 128 opaque bytes, made by rank 0 (<see cref="Nccl.ncclGetUniqueId"/>) and handed to every
/// rank before <see cref="Nccl.ncclCommInitRankConfig"/>; passed by value.</summary>
[StructLayout(LayoutKind.Sequential, Size = Bytes)]
internal unsafe struct ncclUniqueId
{
    public const int Bytes = 128;
    public fixed byte Internal[Bytes];

    public static ncclUniqueId From(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Bytes) throw new ArgumentException($"an NCCL unique id is {Bytes} bytes, got {bytes.Length}", nameof(bytes));
        var id = new ncclUniqueId();
        bytes.CopyTo(new Span<byte>(id.Internal, Bytes));
        return id;
    }

    public byte[] ToArray()
    {
        fixed (byte* p = Internal) return new ReadOnlySpan<byte>(p, Bytes).ToArray();
    }
}

/// <summary>
/// ncclConfig_t as NCCL 2.18 declares it (ncclConfig_v21700 with splitShare): 48 bytes on 64-bit Linux. NCCL reads
/// the first <see cref="Size"/> bytes and takes its defaults for any field a newer version appended, so this layout
/// works with every NCCL from 2.18 on; <see cref="Magic"/> and <see cref="Version"/> must be set as
/// NCCL_CONFIG_INITIALIZER sets them (<see cref="Initializer"/>), or the library refuses the config.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ncclConfig_t
{
    /// <summary>NCCL_CONFIG_UNDEF_INT: the library's default.</summary>
    public const int UndefInt = int.MinValue;
    public const uint MagicValue = 0xcafebeef;

    public nuint Size;
    public uint Magic;
    public uint Version;
    /// <summary>0: non-blocking (calls may return <see cref="ncclResult_t.ncclInProgress"/>), 1: blocking.</summary>
    public int Blocking;
    public int CgaClusterSize;
    public int MinCTAs;
    public int MaxCTAs;
    public nint NetName;
    public int SplitShare;

    /// <summary>NCCL_CONFIG_INITIALIZER for this layout, declared as version 2.18.0.</summary>
    public static unsafe ncclConfig_t Initializer => new()
    {
        Size = (nuint)sizeof(ncclConfig_t),
        Magic = MagicValue,
        Version = (uint)Nccl.VersionCode(2, 18, 0),
        Blocking = UndefInt,
        CgaClusterSize = UndefInt,
        MinCTAs = UndefInt,
        MaxCTAs = UndefInt,
        NetName = 0,
        SplitShare = UndefInt,
    };
}

/// <summary>
/// NCCL (libnccl.so.2: the system's, NCCL_HOME's, or the nvidia-nccl wheel's that torch installs; see
/// <see cref="NativeLibraries"/>), raw: every call returns its <see cref="ncclResult_t"/>; wrap calls in
/// <see cref="ThrowIfFailed"/>. Device buffers are <c>ulong</c> (CUdeviceptr), communicators and streams
/// <c>nint</c> (a driver-API CUstream is a cudaStream_t). NCCL 2.18 or later (<see cref="MinimumVersion"/>): the
/// non-blocking communicators, ncclCommGetAsyncError and ncclCommAbort that the watchdog needs are older, the
/// config layout bound here is 2.18's.
/// </summary>
internal static unsafe partial class Nccl
{
    static Nccl() => NativeLibraries.EnsureResolver();

    private const string Lib = NativeLibraries.Nccl;

    /// <summary>2.18.0 as ncclGetVersion reports it.</summary>
    public static readonly int MinimumVersion = VersionCode(2, 18, 0);

    /// <summary>NCCL_VERSION(major, minor, patch) for NCCL 2.9 and later: 2.27.3 → 22703.</summary>
    public static int VersionCode(int major, int minor, int patch) => major * 10000 + minor * 100 + patch;

    /// <summary>"2.27.3" for 22703 (and for the pre-2.9 scheme, 2708 → "2.7.8").</summary>
    public static string VersionText(int code) => code >= 10000
        ? $"{code / 10000}.{code / 100 % 100}.{code % 100}"
        : $"{code / 1000}.{code / 100 % 10}.{code % 100}";

    [LibraryImport(Lib)] public static partial ncclResult_t ncclGetVersion(out int version);
    [LibraryImport(Lib)] public static partial ncclResult_t ncclGetUniqueId(out ncclUniqueId uniqueId);
    [LibraryImport(Lib)] public static partial ncclResult_t ncclCommInitRankConfig(out nint comm, int nranks, ncclUniqueId commId, int rank, ncclConfig_t* config);
    [LibraryImport(Lib)] public static partial ncclResult_t ncclCommGetAsyncError(nint comm, out ncclResult_t asyncError);
    [LibraryImport(Lib)] public static partial ncclResult_t ncclCommFinalize(nint comm);
    [LibraryImport(Lib)] public static partial ncclResult_t ncclCommDestroy(nint comm);
    [LibraryImport(Lib)] public static partial ncclResult_t ncclCommAbort(nint comm);
    [LibraryImport(Lib)] public static partial byte* ncclGetErrorString(ncclResult_t result);
    [LibraryImport(Lib)] public static partial byte* ncclGetLastError(nint comm);

    [LibraryImport(Lib)]
    public static partial ncclResult_t ncclAllReduce(ulong sendbuff, ulong recvbuff, nuint count, ncclDataType_t datatype, ncclRedOp_t op, nint comm, nint stream);

    /// <summary>Rank r receives the reduction of block r (of <paramref name="recvcount"/> elements) of sendbuff.</summary>
    [LibraryImport(Lib)]
    public static partial ncclResult_t ncclReduceScatter(ulong sendbuff, ulong recvbuff, nuint recvcount, ncclDataType_t datatype, ncclRedOp_t op, nint comm, nint stream);

    [LibraryImport(Lib)]
    public static partial ncclResult_t ncclAllGather(ulong sendbuff, ulong recvbuff, nuint sendcount, ncclDataType_t datatype, nint comm, nint stream);

    [LibraryImport(Lib)]
    public static partial ncclResult_t ncclBroadcast(ulong sendbuff, ulong recvbuff, nuint count, ncclDataType_t datatype, int root, nint comm, nint stream);

    [LibraryImport(Lib)]
    public static partial ncclResult_t ncclReduce(ulong sendbuff, ulong recvbuff, nuint count, ncclDataType_t datatype, ncclRedOp_t op, int root, nint comm, nint stream);

    /// <summary>Loads libnccl.so.2 and checks its version, or throws <see cref="CommunicatorException"/> saying what
    /// was tried (the library is optional: only the CUDA backend with several ranks needs it).</summary>
    /// <returns>The version code (22703 for 2.27.3).</returns>
    public static int Load()
    {
        if (!NativeLibraries.TryLoad(NativeLibraries.Nccl, out _, out var reason)) throw new CommunicatorException(reason);
        ThrowIfFailed(ncclGetVersion(out int version), "ncclGetVersion");
        if (version < MinimumVersion)
            throw new CommunicatorException($"{NativeLibraries.Describe(NativeLibraries.Nccl)} is NCCL {VersionText(version)}; " +
                                            $"data-parallel training needs NCCL {VersionText(MinimumVersion)} or later (pip install nvidia-nccl-cu12 or -cu13)");
        return version;
    }

    /// <summary>Throws a <see cref="CommunicatorException"/> naming <paramref name="call"/>, the status's native name,
    /// NCCL's text for it and, with a communicator, NCCL's last error message.</summary>
    public static void ThrowIfFailed(ncclResult_t status, string call, nint comm = 0)
    {
        if (status == ncclResult_t.ncclSuccess) return;
        throw new CommunicatorException(Describe(status, call, comm));
    }

    /// <summary>"ncclAllReduce failed: ncclUnhandledCudaError (unhandled cuda error (run with NCCL_DEBUG=INFO for details)): …".</summary>
    public static string Describe(ncclResult_t status, string call, nint comm = 0)
    {
        var text = new StringBuilder($"{call} failed: {status}");
        try
        {
            if (Text(ncclGetErrorString(status)) is { Length: > 0 } s) text.Append($" ({s})");
            if (comm != 0 && Text(ncclGetLastError(comm)) is { Length: > 0 } last) text.Append($": {last}");
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // The status alone still names the failure.
        }
        return text.ToString();
    }

    private static string? Text(byte* p) => p == null ? null : Marshal.PtrToStringUTF8((nint)p);
}
