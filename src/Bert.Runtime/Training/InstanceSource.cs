namespace Bert.Runtime.Training;

/// <summary>A fixed set of pretraining instances of one sequence length, read by index.</summary>
public interface IInstanceSource
{
    /// <summary>Where it comes from (a directory), for messages.</summary>
    string Origin { get; }
    int SeqLength { get; }
    int MaxPredictions { get; }
    long Count { get; }

    /// <summary>Writes instance <paramref name="index"/> into row <paramref name="row"/> of
    /// <paramref name="batch"/> (tokens padded to <see cref="HostBatch.Seq"/>, predictions padded with
    /// weight 0 to <see cref="HostBatch.Predictions"/>). Allocates nothing.</summary>
    void Fill(long index, HostBatch batch, int row);
}

/// <summary>
/// A resumable pass over a source in a seeded order: each epoch is a fresh permutation drawn from
/// (seed, stream, epoch), and the cursor (epoch, position) is all the state needed to continue exactly,
/// so no instance is repeated or skipped across a resume.
/// </summary>
public sealed class ShuffledCursor
{
    private readonly IInstanceSource _source;
    private readonly ulong _seed;
    private readonly uint _stream;
    private long[] _order = [];
    private long _orderEpoch = -1;

    public ShuffledCursor(IInstanceSource source, ulong seed, uint stream, long epoch = 0, long position = 0)
    {
        if (source.Count <= 0)
            throw new InvalidDataException($"{source.Origin}: the dataset holds no instances");
        _source = source;
        _seed = seed;
        _stream = stream;
        Epoch = epoch;
        Position = position;
    }

    public long Epoch { get; private set; }
    public long Position { get; private set; }

    /// <summary>The next instance index; advances the cursor.</summary>
    public long Next()
    {
        if (Position >= _source.Count)
        {
            Epoch++;
            Position = 0;
        }
        if (_orderEpoch != Epoch) Shuffle();
        return _order[Position++];
    }

    private void Shuffle()
    {
        long n = _source.Count;
        if (_order.Length != n) _order = new long[n];
        for (long i = 0; i < n; i++) _order[i] = i;
        // Fisher–Yates driven by Philox: the order is a pure function of (seed, stream, epoch).
        for (long i = n - 1; i > 0; i--)
        {
            ulong r = ((ulong)(Philox.Uniform(_seed, (uint)Epoch, _stream, 2 * i) * 16777216f) << 24)
                      | (ulong)(Philox.Uniform(_seed, (uint)Epoch, _stream, 2 * i + 1) * 16777216f);
            long j = (long)(r % (ulong)(i + 1));
            (_order[i], _order[j]) = (_order[j], _order[i]);
        }
        _orderEpoch = Epoch;
    }
}
