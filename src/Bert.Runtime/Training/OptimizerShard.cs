namespace Bert.Runtime.Training;

/// <summary>
/// Which part of the flat parameter buffer one rank's AdamW updates under optimizer-state sharding (ZeRO stage 1).
/// The buffer of <see cref="Total"/> elements is cut into <see cref="Ranks"/> equal blocks of
/// <see cref="Block"/> = ⌊Total / Ranks⌋ elements (what the equal-count reduce-scatter and all-gather of NCCL and MPI
/// move, in place, with no padded copy of the buffers); the <see cref="Tail"/> of fewer than Ranks elements left over
/// is all-reduced with the gradients and belongs to the last rank, whose shard is therefore
/// [(Ranks − 1)·Block, Total). Every element lies in exactly one shard.
/// </summary>
public sealed record OptimizerShard
{
    public OptimizerShard(int rank, int ranks, long total)
    {
        if (ranks < 1) throw new ArgumentOutOfRangeException(nameof(ranks), ranks, "a shard needs at least one rank");
        if (rank < 0 || rank >= ranks) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must lie in [0, {ranks})");
        if (total < 0) throw new ArgumentOutOfRangeException(nameof(total), total, "the buffer length must not be negative");
        (Rank, Ranks, Total) = (rank, ranks, total);
    }

    public int Rank { get; }
    public int Ranks { get; }

    /// <summary>Elements of the flat buffer (the model's ParameterTotal).</summary>
    public long Total { get; }

    /// <summary>Elements of each rank's equal block.</summary>
    public long Block => Total / Ranks;

    /// <summary>Elements the equal-block collectives cover: [0, Ranks · Block).</summary>
    public long Covered => Block * Ranks;

    /// <summary>Elements after <see cref="Covered"/> (fewer than <see cref="Ranks"/>), owned by the last rank.</summary>
    public long Tail => Total - Covered;

    /// <summary>First element of this rank's shard.</summary>
    public long Offset => Rank * Block;

    /// <summary>Elements of this rank's shard (the last rank's includes the tail).</summary>
    public long Length => Rank == Ranks - 1 ? Block + Tail : Block;

    /// <summary>First element of rank <paramref name="rank"/>'s shard.</summary>
    public long OffsetOf(int rank) => rank * Block;

    /// <summary>Elements of rank <paramref name="rank"/>'s shard.</summary>
    public long LengthOf(int rank) => rank == Ranks - 1 ? Block + Tail : Block;
}
