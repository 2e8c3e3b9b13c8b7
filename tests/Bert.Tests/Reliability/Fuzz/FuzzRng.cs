namespace Bert.Tests.Reliability.Fuzz;

/// <summary>
/// SplitMix64: tiny, fast and fully determined by its seed, so input #i of a fuzz run can be
/// regenerated on its own from (run seed, i) without replaying the inputs before it.
/// </summary>
internal sealed class FuzzRng(ulong seed)
{
    private ulong _state = seed;

    /// <summary>The generator for input <paramref name="index"/> of a run seeded with <paramref name="runSeed"/>.</summary>
    public static FuzzRng ForInput(ulong runSeed, long index) => new(Mix(runSeed ^ Mix((ulong)index + 0x9E3779B97F4A7C15UL)));

    public ulong Next()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>Uniform in [0, n); n must be positive.</summary>
    public int Below(int n) => (int)((Next() >> 33) % (ulong)n);

    /// <summary>Uniform in [lo, hi].</summary>
    public int Between(int lo, int hi) => lo + Below(hi - lo + 1);

    public bool OneIn(int n) => Below(n) == 0;

    public T Pick<T>(IReadOnlyList<T> items) => items[Below(items.Count)];

    /// <summary>Small numbers much more often than large ones (1 ≤ result ≤ max).</summary>
    public int Skewed(int max)
    {
        int bits = Below(BitLength(max)) + 1;
        return Math.Clamp(1 + Below(1 << Math.Min(bits, 30)), 1, max);
    }

    private static int BitLength(int v) => 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)Math.Max(1, v));

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
