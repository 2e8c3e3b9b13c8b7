using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Bert.Runtime.Distributed;

/// <summary>What every rank knows after the rendezvous: NCCL's unique id (made by rank 0) and every rank's device
/// id (the GPU's 16-byte UUID), in rank order, so that each rank can check the GPU assignment the same way.</summary>
public sealed record RendezvousResult(byte[] UniqueId, IReadOnlyList<byte[]> DeviceIds);

/// <summary>
/// Hands NCCL's unique id from rank 0 to every rank before the NCCL communicator exists, and gathers each rank's
/// GPU UUID on the way. Launched by mpirun, MPI carries it (<see cref="OverCommunicator"/>); launched by torchrun
/// or srun without MPI, rank 0 listens on TCP (<see cref="OverTcp"/>) at MASTER_ADDR and <see cref="Port"/>:
/// BERT_NCCL_PORT, or MASTER_PORT + 1 so that torchrun's own store on MASTER_PORT is left alone. Every wait has a
/// timeout and every failure says which rank, address and port, and which variable to set.
/// </summary>
public static class UniqueIdRendezvous
{
    public const string PortVariable = "BERT_NCCL_PORT";
    public const int DeviceIdBytes = 16;

    private static ReadOnlySpan<byte> Magic => "BERTNCCL"u8;
    private const int ProtocolVersion = 1;
    private const byte Ok = 0, Refused = 1;

    /// <summary>The TCP port rank 0 listens on: <see cref="PortVariable"/> when set, else MASTER_PORT + 1.</summary>
    /// <exception cref="DistributedLaunchException">Neither is set, or the value is not a port.</exception>
    public static int Port(DistributedLaunch launch, Func<string, string?> environment)
    {
        if (environment(PortVariable) is { Length: > 0 } text)
        {
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
                throw new DistributedLaunchException($"{PortVariable} '{text}': not a TCP port (1-65535)");
            return port;
        }
        if (launch.MasterPort is not int master)
            throw new DistributedLaunchException($"{launch}: the NCCL unique id travels over TCP from rank 0, which needs MASTER_ADDR and " +
                                                 $"MASTER_PORT (or {PortVariable}); set them, or launch with mpirun");
        if (master == 65535)
            throw new DistributedLaunchException($"MASTER_PORT {master}: the NCCL rendezvous uses MASTER_PORT + 1; set {PortVariable} to a free port");
        return master + 1;
    }

    /// <summary>Over an existing communicator (MPI when launched by mpirun): rank 0 makes the id and broadcasts it;
    /// the device ids are all-gathered as two 64-bit halves.</summary>
    public static RendezvousResult OverCommunicator(ICommunicator comm, Func<byte[]> makeUniqueId, byte[] deviceId)
    {
        CheckDeviceId(deviceId);
        var id = comm.Rank == 0 ? makeUniqueId() : null;
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(length, id?.Length ?? 0);
        comm.Broadcast(length, 0, "the broadcast of the NCCL unique id's length");
        id ??= new byte[BinaryPrimitives.ReadInt32LittleEndian(length)];
        comm.Broadcast(id, 0, "the broadcast of the NCCL unique id");
        var low = new ulong[comm.Size];
        var high = new ulong[comm.Size];
        comm.AllGather(BinaryPrimitives.ReadUInt64LittleEndian(deviceId), low, "the exchange of the ranks' GPU UUIDs");
        comm.AllGather(BinaryPrimitives.ReadUInt64LittleEndian(deviceId.AsSpan(8)), high, "the exchange of the ranks' GPU UUIDs");
        var ids = new byte[comm.Size][];
        for (int r = 0; r < comm.Size; r++)
        {
            ids[r] = new byte[DeviceIdBytes];
            BinaryPrimitives.WriteUInt64LittleEndian(ids[r], low[r]);
            BinaryPrimitives.WriteUInt64LittleEndian(ids[r].AsSpan(8), high[r]);
        }
        return new RendezvousResult(id, ids);
    }

    /// <summary>
    /// Over TCP. Rank 0 makes the id, listens on <paramref name="port"/> (every interface), accepts one connection from
    /// each other rank (which sends its rank, the world size and its device id), then answers each with the id and
    /// all device ids. The other ranks connect to <paramref name="address"/>, retrying until rank 0 listens. Nothing
    /// waits longer than <paramref name="timeout"/> in all.
    /// </summary>
    /// <exception cref="CommunicatorException">A rank did not connect or answer in time, the port cannot be bound, or
    /// a rank reports another world size or a rank already seen (the message names them).</exception>
    public static RendezvousResult OverTcp(int rank, int size, string address, int port, Func<byte[]> makeUniqueId, byte[] deviceId, TimeSpan timeout)
    {
        CheckDeviceId(deviceId);
        if (size < 1 || (uint)rank >= (uint)size) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {size})");
        var deadline = DateTime.UtcNow + timeout;
        return rank == 0 ? Serve(size, port, makeUniqueId, deviceId, timeout, deadline) : Join(rank, size, address, port, deviceId, timeout, deadline);
    }

    private static RendezvousResult Serve(int size, int port, Func<byte[]> makeUniqueId, byte[] deviceId, TimeSpan timeout, DateTime deadline)
    {
        var id = makeUniqueId();
        var ids = new byte[size][];
        ids[0] = deviceId;
        if (size == 1) return new RendezvousResult(id, ids);
        using var listener = new TcpListener(IPAddress.Any, port);
        try
        {
            listener.Start(size);
        }
        catch (SocketException e)
        {
            throw new CommunicatorException($"rank 0: cannot listen on TCP port {port} for the NCCL rendezvous ({e.SocketErrorCode}: {e.Message}); " +
                                            $"set {PortVariable} to a free port on every rank");
        }
        var clients = new Socket?[size];
        try
        {
            for (int joined = 1; joined < size; joined++)
            {
                var client = Accept(listener, deadline) ?? throw new CommunicatorException(
                    $"rank 0: rank(s) {Missing(clients)} did not reach the NCCL rendezvous on TCP port {port} within {Seconds(timeout)} s " +
                    $"(did they start? do they see MASTER_ADDR, and is port {port} open between the machines? {PortVariable} moves it)");
                var hello = new byte[Magic.Length + 12 + DeviceIdBytes];
                string? problem = null;
                int r = -1;
                try
                {
                    Receive(client, hello, deadline);
                    r = BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(Magic.Length + 4));
                    int theirSize = BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(Magic.Length + 8));
                    if (!hello.AsSpan(0, Magic.Length).SequenceEqual(Magic) || BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(Magic.Length)) != ProtocolVersion)
                        problem = $"a connection from {client.RemoteEndPoint} on TCP port {port} is not a bert rank of this version (another program on the port? set {PortVariable})";
                    else if (theirSize != size)
                        problem = $"rank {r} was started with a world of {theirSize} ranks, rank 0 with {size}; start every rank with the same WORLD_SIZE";
                    else if (r < 1 || r >= size)
                        problem = $"a rank reports rank {r}, outside [1, {size})";
                    else if (clients[r] is not null)
                        problem = $"two processes report rank {r}; every rank needs its own RANK";
                }
                catch (Exception e) when (e is SocketException or IOException or TimeoutException)
                {
                    problem = $"a rank's greeting on TCP port {port} failed ({e.Message})";
                }
                if (problem is not null)
                {
                    TrySend(client, Refusal(problem));
                    client.Dispose();
                    throw new CommunicatorException($"rank 0: the NCCL rendezvous failed: {problem}");
                }
                clients[r] = client;
                ids[r] = hello.AsSpan(Magic.Length + 12, DeviceIdBytes).ToArray();
            }
            // Everyone is here: the id, then every rank's device id in rank order.
            var answer = new byte[1 + 4 + id.Length + size * DeviceIdBytes];
            answer[0] = Ok;
            BinaryPrimitives.WriteInt32LittleEndian(answer.AsSpan(1), id.Length);
            id.CopyTo(answer, 5);
            for (int r = 0; r < size; r++) ids[r].CopyTo(answer, 5 + id.Length + r * DeviceIdBytes);
            for (int r = 1; r < size; r++)
            {
                try { Send(clients[r]!, answer, deadline); }
                catch (Exception e) when (e is SocketException or IOException or TimeoutException)
                {
                    throw new CommunicatorException($"rank 0: answering rank {r} in the NCCL rendezvous failed ({e.Message}); did it end?");
                }
            }
            return new RendezvousResult(id, ids);
        }
        catch (CommunicatorException e)
        {
            // Tell the ranks already connected why, so that they fail with rank 0's reason instead of a reset.
            foreach (var c in clients) if (c is not null) TrySend(c, Refusal(e.Message));
            throw;
        }
        finally
        {
            foreach (var c in clients) c?.Dispose();
        }
    }

    private static RendezvousResult Join(int rank, int size, string address, int port, byte[] deviceId, TimeSpan timeout, DateTime deadline)
    {
        using var socket = Connect(rank, address, port, timeout, deadline);
        var hello = new byte[Magic.Length + 12 + DeviceIdBytes];
        Magic.CopyTo(hello);
        BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(Magic.Length), ProtocolVersion);
        BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(Magic.Length + 4), rank);
        BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(Magic.Length + 8), size);
        deviceId.CopyTo(hello, Magic.Length + 12);
        string where = $"rank 0 at {address}:{port}";
        try
        {
            Send(socket, hello, deadline);
            var status = new byte[5];
            Receive(socket, status, deadline);
            int length = BinaryPrimitives.ReadInt32LittleEndian(status.AsSpan(1));
            if (length is < 0 or > 1 << 20) throw new IOException($"a malformed answer (length {length})");
            if (status[0] == Refused)
            {
                var reason = new byte[length];
                Receive(socket, reason, deadline);
                throw new CommunicatorException($"rank {rank}: {where} refused the NCCL rendezvous: {Encoding.UTF8.GetString(reason)}");
            }
            var rest = new byte[length + size * DeviceIdBytes];
            Receive(socket, rest, deadline);
            var id = rest.AsSpan(0, length).ToArray();
            var ids = new byte[size][];
            for (int r = 0; r < size; r++) ids[r] = rest.AsSpan(length + r * DeviceIdBytes, DeviceIdBytes).ToArray();
            return new RendezvousResult(id, ids);
        }
        catch (TimeoutException)
        {
            throw new CommunicatorException($"rank {rank}: {where} did not answer the NCCL rendezvous within {Seconds(timeout)} s " +
                                            "(another rank did not start or cannot reach it)");
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            throw new CommunicatorException($"rank {rank}: the NCCL rendezvous with {where} failed: {e.Message} (rank 0 ended? its error says why)");
        }
    }

    /// <summary>Connects to rank 0, retrying every 100 ms while it is not listening yet.</summary>
    private static Socket Connect(int rank, string address, int port, TimeSpan timeout, DateTime deadline)
    {
        string? last = null;
        while (true)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) break;
                using var cts = new CancellationTokenSource(left);
                socket.ConnectAsync(address, port, cts.Token).AsTask().GetAwaiter().GetResult();
                return socket;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                socket.Dispose();
                last = e is SocketException s ? $"{s.SocketErrorCode}: {s.Message}" : "connect timed out";
                if (e is SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.NoData })
                    throw new CommunicatorException($"rank {rank}: MASTER_ADDR {address}: unknown host ({last})");
            }
            if (DateTime.UtcNow >= deadline) break;
            Thread.Sleep(100);
        }
        throw new CommunicatorException($"rank {rank}: could not reach rank 0 at {address}:{port} for the NCCL rendezvous within {Seconds(timeout)} s " +
                                        $"(last error: {last ?? "none"}); is rank 0 running, MASTER_ADDR its address and the port ({PortVariable}) open?");
    }

    private static Socket? Accept(TcpListener listener, DateTime deadline)
    {
        var left = deadline - DateTime.UtcNow;
        if (left <= TimeSpan.Zero) return null;
        using var cts = new CancellationTokenSource(left);
        try
        {
            var socket = listener.AcceptSocketAsync(cts.Token).AsTask().GetAwaiter().GetResult();
            socket.NoDelay = true;
            return socket;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static void Send(Socket socket, byte[] data, DateTime deadline)
    {
        socket.SendTimeout = Milliseconds(deadline);
        int sent = 0;
        while (sent < data.Length) sent += socket.Send(data, sent, data.Length - sent, SocketFlags.None);
    }

    private static void Receive(Socket socket, byte[] data, DateTime deadline)
    {
        int got = 0;
        while (got < data.Length)
        {
            socket.ReceiveTimeout = Milliseconds(deadline);
            int n;
            try
            {
                n = socket.Receive(data, got, data.Length - got, SocketFlags.None);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
            {
                throw new TimeoutException();
            }
            if (n == 0) throw new IOException("the connection closed early");
            got += n;
        }
    }

    private static int Milliseconds(DateTime deadline)
    {
        double ms = (deadline - DateTime.UtcNow).TotalMilliseconds;
        if (ms <= 0) throw new TimeoutException();
        return (int)Math.Clamp(Math.Ceiling(ms), 1, int.MaxValue);
    }

    private static byte[] Refusal(string reason)
    {
        var text = Encoding.UTF8.GetBytes(reason);
        var data = new byte[5 + text.Length];
        data[0] = Refused;
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(1), text.Length);
        text.CopyTo(data, 5);
        return data;
    }

    private static void TrySend(Socket socket, byte[] data)
    {
        try
        {
            socket.SendTimeout = 1000;
            socket.Send(data);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The rank is gone already; rank 0's own error says what happened.
        }
    }

    private static string Missing(Socket?[] clients) =>
        string.Join(", ", Enumerable.Range(1, clients.Length - 1).Where(r => clients[r] is null));

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture);

    private static void CheckDeviceId(byte[] deviceId)
    {
        if (deviceId is null || deviceId.Length != DeviceIdBytes)
            throw new ArgumentException($"a device id is {DeviceIdBytes} bytes (a GPU UUID)", nameof(deviceId));
    }
}
