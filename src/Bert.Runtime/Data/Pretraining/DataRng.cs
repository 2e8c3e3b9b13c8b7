using System.Numerics;

namespace Bert.Runtime.Data;

/// <summary>
/// xoshiro256** (Blackman and Vigna) seeded through SplitMix64: the random source of data creation
/// and shuffling. A generator is derived from a key tuple, e.g. (seed, dupe pass, document), so each
/// unit of parallel work draws the same numbers whatever the thread count, and a run with the same
/// seed is reproduced exactly on any machine and .NET version (unlike System.Random).
/// </summary>
public struct DataRng
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>A generator for the key (seed, stream, a, b).</summary>
    public static DataRng Create(ulong seed, ulong stream = 0, ulong a = 0, ulong b = 0)
    {
        ulong x = SplitMix(seed ^ 0x6A09E667F3BCC909UL);
        x = SplitMix(x ^ stream);
        x = SplitMix(x ^ a);
        x = SplitMix(x ^ b);
        var rng = new DataRng();
        rng._s0 = SplitMix(ref x);
        rng._s1 = SplitMix(ref x);
        rng._s2 = SplitMix(ref x);
        rng._s3 = SplitMix(ref x);
        return rng;
    }

    public ulong NextUInt64()
    {
        ulong result = BitOperations.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [<paramref name="minInclusive"/>, <paramref name="maxInclusive"/>]
    /// (Python's randint), without modulo bias (Lemire's method).</summary>
    public int NextInt(int minInclusive, int maxInclusive)
    {
        if (maxInclusive < minInclusive)
            throw new ArgumentOutOfRangeException(nameof(maxInclusive), maxInclusive, $"empty range [{minInclusive}, {maxInclusive}]");
        return (int)((long)minInclusive + (long)NextBelow((ulong)((long)maxInclusive - minInclusive) + 1));
    }

    /// <summary>Uniform in [0, <paramref name="bound"/>), bound ≥ 1.</summary>
    public ulong NextBelow(ulong bound)
    {
        ulong hi = Math.BigMul(NextUInt64(), bound, out ulong lo);
        if (lo < bound)
        {
            ulong threshold = (0 - bound) % bound;
            while (lo < threshold) hi = Math.BigMul(NextUInt64(), bound, out lo);
        }
        return hi;
    }

    /// <summary>Fisher–Yates shuffle (the order of Python's random.shuffle).</summary>
    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = (int)NextBelow((ulong)i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    private static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    private static ulong SplitMix(ref ulong state)
    {
        state += 0x9E3779B97F4A7C15UL;
        ulong z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
