using System.Globalization;

namespace Bert.Runtime.Distributed;

/// <summary>What a collective is for, in the messages of a timeout or an error: a fixed text and, for the collectives
/// of every step, the step. It is formatted only when a message is written, so naming a per-step collective allocates
/// nothing. A string converts to one without a step.</summary>
public readonly record struct Collective(string What, long Step = -1)
{
    public static implicit operator Collective(string what) => new(what);

    public override string ToString() => Step < 0 ? What : string.Create(CultureInfo.InvariantCulture, $"{What} of step {Step}");
}

/// <summary>Operations built on <see cref="ICommunicator"/>'s collectives.</summary>
public static class Communicators
{
    /// <summary>Gathers every rank's <paramref name="mine"/> and returns the ranks whose value differs from rank 0's
    /// (empty when all agree; the same list on every rank).</summary>
    public static List<int> RanksDifferingFromRankZero(this ICommunicator communicator, ulong mine, Collective what)
    {
        var all = new ulong[communicator.Size];
        communicator.AllGather(mine, all, what);
        var differing = new List<int>();
        for (int r = 1; r < all.Length; r++)
            if (all[r] != all[0]) differing.Add(r);
        return differing;
    }
}

/// <summary>
/// The collectives data-parallel training needs, over one group of ranks (processes). Tensor collectives
/// work on the memory of the backend the communicator was made for (host memory for <see cref="MpiCommunicator"/>
/// on the CPU backend, device memory for NCCL on the CUDA backend), F32 only; host collectives move small
/// control values (losses, counts, stop requests, hashes). Every rank must call the same collectives in the
/// same order with the same sizes. A collective that does not finish within the communicator's timeout (a
/// rank died or hangs) aborts the whole job with a message naming the collective.
/// </summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This process's rank, 0 ≤ Rank &lt; <see cref="Size"/>.</summary>
    int Rank { get; }

    /// <summary>Number of ranks.</summary>
    int Size { get; }

    /// <summary>What carries the collectives, e.g. "single process", "Open MPI v4.1.4", "NCCL 2.27.3".</summary>
    string Name { get; }

    /// <summary>In place: every rank's <paramref name="buffer"/> becomes the element-wise sum over ranks.</summary>
    void AllReduceSum(TensorRef buffer, Collective what);

    /// <summary>Starts <see cref="AllReduceSum(TensorRef, Collective)"/> of <paramref name="buffer"/> without waiting for
    /// it (the gradient buckets of the backward: layer l's all-reduce runs while layer l − 1's backward computes). The
    /// buffer must not be read or written until <see cref="CompleteStarted"/>; the sums are the same bits as the blocking
    /// call's. Every rank starts the same collectives in the same order. The default runs it at once.</summary>
    void AllReduceSumStart(TensorRef buffer, Collective what) => AllReduceSum(buffer, what);

    /// <summary>Waits for every collective <see cref="AllReduceSumStart"/> began (on a GPU: orders the compute stream
    /// after them, without blocking the host); <paramref name="what"/> names the wait in a timeout's message.</summary>
    void CompleteStarted(Collective what) { }

    /// <summary>Rank r receives the sum over ranks of slice r (of length recv.Length) of <paramref name="send"/>;
    /// send.Length = Size · recv.Length. In place (as NCCL defines it) when <paramref name="recv"/> is slice Rank of
    /// <paramref name="send"/>; the other slices of send are then left undefined.</summary>
    void ReduceScatterSum(TensorRef send, TensorRef recv, Collective what);

    /// <summary>recv = the concatenation of every rank's <paramref name="send"/> in rank order. In place (as NCCL
    /// defines it) when <paramref name="send"/> is slice Rank of <paramref name="recv"/>.</summary>
    void AllGather(TensorRef send, TensorRef recv, Collective what);

    /// <summary>Every rank's <paramref name="buffer"/> becomes <paramref name="root"/>'s.</summary>
    void Broadcast(TensorRef buffer, int root, Collective what);

    /// <summary>Host values: every rank's <paramref name="values"/> become the sum over ranks. The result is the
    /// same on every rank (the reduction runs once and is broadcast).</summary>
    void AllReduceSum(Span<double> values, Collective what);

    /// <summary>Host values: <paramref name="all"/>[r] = rank r's <paramref name="mine"/>.</summary>
    void AllGather(ulong mine, Span<ulong> all, Collective what);

    /// <summary>Host bytes: every rank's <paramref name="bytes"/> become <paramref name="root"/>'s (same length on every rank).</summary>
    void Broadcast(Span<byte> bytes, int root, Collective what);

    /// <summary>Returns when every rank has called it. <paramref name="timeout"/> overrides the communicator's
    /// (a barrier that waits for rank 0's data preparation may need longer); <see cref="Timeout.InfiniteTimeSpan"/>: none.</summary>
    void Barrier(Collective what, TimeSpan? timeout = null);

    /// <summary>Ends every rank of the job now with <paramref name="exitCode"/>, after printing <paramref name="reason"/>.</summary>
    void Abort(int exitCode, string reason);
}

/// <summary>The world of one: every collective is the identity.</summary>
public sealed class SingleProcessCommunicator : ICommunicator
{
    public static readonly SingleProcessCommunicator Instance = new();

    public int Rank => 0;
    public int Size => 1;
    public string Name => "single process";

    public void AllReduceSum(TensorRef buffer, Collective what) { }

    public void ReduceScatterSum(TensorRef send, TensorRef recv, Collective what)
    {
        if (send.Length != recv.Length)
            throw new ArgumentException($"{what}: a world of 1 reduce-scatters {send.Length} elements into {recv.Length}");
        if (send.Address != recv.Address)
            throw new NotSupportedException($"{what}: a single-process reduce-scatter must be in place (no backend to copy with)");
    }

    public void AllGather(TensorRef send, TensorRef recv, Collective what)
    {
        if (send.Length != recv.Length)
            throw new ArgumentException($"{what}: a world of 1 all-gathers {send.Length} elements into {recv.Length}");
        if (send.Address != recv.Address)
            throw new NotSupportedException($"{what}: a single-process all-gather must be in place (no backend to copy with)");
    }

    public void Broadcast(TensorRef buffer, int root, Collective what) => CheckRoot(root);

    public void AllReduceSum(Span<double> values, Collective what) { }

    public void AllGather(ulong mine, Span<ulong> all, Collective what) => all[0] = mine;

    public void Broadcast(Span<byte> bytes, int root, Collective what) => CheckRoot(root);

    public void Barrier(Collective what, TimeSpan? timeout = null) { }

    public void Abort(int exitCode, string reason)
    {
        Console.Error.WriteLine(reason);
        Environment.Exit(exitCode);
    }

    private static void CheckRoot(int root)
    {
        if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "a world of 1 has only rank 0");
    }

    public void Dispose() { }
}
