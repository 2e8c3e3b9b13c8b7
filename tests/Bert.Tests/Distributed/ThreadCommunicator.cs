using Bert.Runtime;
using Bert.Runtime.Distributed;

namespace Bert.Tests.Distributed;

/// <summary>
/// A world of ranks that are threads of this process, for tests of the collectives' users (the sharded optimizer)
/// on the CPU backend, whose tensors are host memory every thread can read. Each collective posts every rank's
/// buffers, waits for all, computes each rank's result into a private array (summing ranks in rank order, so
/// results are deterministic and an all-reduce and a reduce-scatter add in the same order), waits again, writes its
/// result and waits a third time, so in-place forms read only inputs. Not a transport: one process only.
/// </summary>
internal sealed unsafe class ThreadCommunicator : ICommunicator
{
    private sealed class World(int size)
    {
        public readonly Barrier Barrier = new(size);
        public readonly TensorRef[] Send = new TensorRef[size];
        public readonly TensorRef[] Recv = new TensorRef[size];
        public readonly double[][] Host = new double[size][];
        public readonly ulong[] Words = new ulong[size];
        public readonly byte[][] Bytes = new byte[size][];
    }

    private readonly World _world;

    private ThreadCommunicator(World world, int rank)
    {
        _world = world;
        Rank = rank;
    }

    /// <summary>One communicator per rank of a new world of <paramref name="size"/>.</summary>
    public static ThreadCommunicator[] Create(int size)
    {
        var world = new World(size);
        return Enumerable.Range(0, size).Select(r => new ThreadCommunicator(world, r)).ToArray();
    }

    /// <summary>Runs <paramref name="body"/> on one thread per rank and rethrows the first failure.</summary>
    public static void Run(ThreadCommunicator[] ranks, Action<ThreadCommunicator> body)
    {
        var errors = new Exception?[ranks.Length];
        var threads = ranks.Select((c, r) => new Thread(() =>
        {
            try { body(c); }
            catch (Exception e) { errors[r] = e; c._world.Barrier.RemoveParticipant(); }
        }, 16 << 20)).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        if (errors.FirstOrDefault(e => e is not null) is { } first) throw new AggregateException(first.Message, first);
    }

    public int Rank { get; }
    public int Size => _world.Send.Length;
    public string Name => "threads";
    public readonly List<string> Calls = [];

    private static float* F(TensorRef t) => (float*)t.Address;

    private void Tensor(TensorRef send, TensorRef recv, Collective what, Func<int, float[]> result)
    {
        Calls.Add(what.ToString());
        _world.Send[Rank] = send;
        _world.Recv[Rank] = recv;
        _world.Barrier.SignalAndWait();
        var mine = result(Rank);
        _world.Barrier.SignalAndWait();
        fixed (float* p = mine) Buffer.MemoryCopy(p, F(recv), recv.Bytes, (long)mine.Length * 4);
        _world.Barrier.SignalAndWait();
    }

    public void AllReduceSum(TensorRef buffer, Collective what) => Tensor(buffer, buffer, what, _ =>
    {
        var sum = new float[buffer.Length];
        for (int r = 0; r < Size; r++)
            for (long i = 0; i < sum.Length; i++) sum[i] += F(_world.Send[r])[i];
        return sum;
    });

    public void ReduceScatterSum(TensorRef send, TensorRef recv, Collective what)
    {
        if (send.Length != recv.Length * Size) throw new ArgumentException($"{what}: {send.Length} elements do not split into {Size} × {recv.Length}");
        Tensor(send, recv, what, rank =>
        {
            var sum = new float[recv.Length];
            for (int r = 0; r < Size; r++)
                for (long i = 0; i < sum.Length; i++) sum[i] += F(_world.Send[r])[rank * recv.Length + i];
            return sum;
        });
    }

    public void AllGather(TensorRef send, TensorRef recv, Collective what)
    {
        if (recv.Length != send.Length * Size) throw new ArgumentException($"{what}: {Size} × {send.Length} elements do not fill {recv.Length}");
        Tensor(send, recv, what, _ =>
        {
            var all = new float[recv.Length];
            for (int r = 0; r < Size; r++)
                for (long i = 0; i < send.Length; i++) all[r * send.Length + i] = F(_world.Send[r])[i];
            return all;
        });
    }

    public void Broadcast(TensorRef buffer, int root, Collective what) => Tensor(buffer, buffer, what, _ =>
    {
        var copy = new float[buffer.Length];
        for (long i = 0; i < copy.Length; i++) copy[i] = F(_world.Send[root])[i];
        return copy;
    });

    public void AllReduceSum(Span<double> values, Collective what)
    {
        Calls.Add(what.ToString());
        _world.Host[Rank] = values.ToArray();
        _world.Barrier.SignalAndWait();
        for (int i = 0; i < values.Length; i++)
        {
            double s = 0;
            for (int r = 0; r < Size; r++) s += _world.Host[r][i];
            values[i] = s;
        }
        _world.Barrier.SignalAndWait();
    }

    public void AllGather(ulong mine, Span<ulong> all, Collective what)
    {
        Calls.Add(what.ToString());
        _world.Words[Rank] = mine;
        _world.Barrier.SignalAndWait();
        _world.Words.CopyTo(all);
        _world.Barrier.SignalAndWait();
    }

    public void Broadcast(Span<byte> bytes, int root, Collective what)
    {
        Calls.Add(what.ToString());
        if (Rank == root) _world.Bytes[root] = bytes.ToArray();
        _world.Barrier.SignalAndWait();
        _world.Bytes[root].CopyTo(bytes);
        _world.Barrier.SignalAndWait();
    }

    public void Barrier(Collective what, TimeSpan? timeout = null) => _world.Barrier.SignalAndWait();

    public void Abort(int exitCode, string reason) => throw new InvalidOperationException($"abort ({exitCode}): {reason}");

    public void Dispose() { }
}
