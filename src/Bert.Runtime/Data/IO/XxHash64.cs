using System.Buffers.Binary;
using System.Numerics;

namespace Bert.Runtime.Data;

/// <summary>
/// XXH64 (Yann Collet), the checksum of shards and the vocabulary hash: one-shot and incremental.
/// Written here because System.IO.Hashing is not a dependency of the runtime.
/// </summary>
public sealed class XxHash64
{
    private const ulong P1 = 11400714785074694791UL, P2 = 14029467366897019727UL, P3 = 1609587929392839161UL,
        P4 = 9650029242287828579UL, P5 = 2870177450012600261UL;

    private readonly ulong _seed;
    private ulong _v1, _v2, _v3, _v4;
    private readonly byte[] _pending = new byte[32];
    private int _pendingLength;
    private long _totalLength;

    public XxHash64(ulong seed = 0)
    {
        _seed = seed;
        Reset();
    }

    public void Reset()
    {
        _v1 = _seed + P1 + P2;
        _v2 = _seed + P2;
        _v3 = _seed;
        _v4 = _seed - P1;
        _pendingLength = 0;
        _totalLength = 0;
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        _totalLength += data.Length;
        if (_pendingLength > 0)
        {
            int take = Math.Min(32 - _pendingLength, data.Length);
            data[..take].CopyTo(_pending.AsSpan(_pendingLength));
            _pendingLength += take;
            data = data[take..];
            if (_pendingLength < 32) return;
            Stripes(_pending);
            _pendingLength = 0;
        }
        int whole = data.Length & ~31;
        if (whole > 0) Stripes(data[..whole]);
        data[whole..].CopyTo(_pending);
        _pendingLength = data.Length - whole;
    }

    public ulong GetCurrentHash()
    {
        ulong h = _totalLength >= 32
            ? Merge(Merge(Merge(Merge(BitOperations.RotateLeft(_v1, 1) + BitOperations.RotateLeft(_v2, 7)
                + BitOperations.RotateLeft(_v3, 12) + BitOperations.RotateLeft(_v4, 18), _v1), _v2), _v3), _v4)
            : _seed + P5;
        h += (ulong)_totalLength;
        return Finish(h, _pending.AsSpan(0, _pendingLength));
    }

    public static ulong Hash(ReadOnlySpan<byte> data, ulong seed = 0)
    {
        var hasher = new XxHash64(seed);
        hasher.Append(data);
        return hasher.GetCurrentHash();
    }

    private void Stripes(ReadOnlySpan<byte> data)
    {
        ulong v1 = _v1, v2 = _v2, v3 = _v3, v4 = _v4;
        for (int i = 0; i < data.Length; i += 32)
        {
            v1 = Round(v1, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
            v2 = Round(v2, BinaryPrimitives.ReadUInt64LittleEndian(data[(i + 8)..]));
            v3 = Round(v3, BinaryPrimitives.ReadUInt64LittleEndian(data[(i + 16)..]));
            v4 = Round(v4, BinaryPrimitives.ReadUInt64LittleEndian(data[(i + 24)..]));
        }
        (_v1, _v2, _v3, _v4) = (v1, v2, v3, v4);
    }

    private static ulong Round(ulong acc, ulong input) => BitOperations.RotateLeft(acc + input * P2, 31) * P1;

    private static ulong Merge(ulong acc, ulong v) => (acc ^ Round(0, v)) * P1 + P4;

    private static ulong Finish(ulong h, ReadOnlySpan<byte> tail)
    {
        int i = 0;
        for (; i + 8 <= tail.Length; i += 8)
        {
            h ^= Round(0, BinaryPrimitives.ReadUInt64LittleEndian(tail[i..]));
            h = BitOperations.RotateLeft(h, 27) * P1 + P4;
        }
        if (i + 4 <= tail.Length)
        {
            h ^= BinaryPrimitives.ReadUInt32LittleEndian(tail[i..]) * P1;
            h = BitOperations.RotateLeft(h, 23) * P2 + P3;
            i += 4;
        }
        for (; i < tail.Length; i++)
        {
            h ^= tail[i] * P5;
            h = BitOperations.RotateLeft(h, 11) * P1;
        }
        h ^= h >> 33;
        h *= P2;
        h ^= h >> 29;
        h *= P3;
        h ^= h >> 32;
        return h;
    }
}
