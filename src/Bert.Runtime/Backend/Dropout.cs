namespace Bert.Runtime;

/// <summary>
/// Dropout as a pure function of (seed, step, stream, element index): the keep mask is drawn from
/// Philox 4x32-10, so forward and backward regenerate the same mask without storing it, the CUDA
/// backend reproduces the CPU's masks exactly, and a resumed run makes the same draws.
/// Probability 0 means no dropout (evaluation, or p = 0 in the spec).
/// </summary>
/// <param name="Probability">Drop probability p; kept elements are scaled by 1/(1−p).</param>
/// <param name="Seed">Run seed (the Philox key).</param>
/// <param name="Step">Optimizer step × accumulation + micro-batch: a fresh mask per forward.</param>
/// <param name="Stream">Which tensor of the model (a constant the generator assigns per dropout site).</param>
public readonly record struct DropoutSpec(float Probability, ulong Seed, uint Step, uint Stream)
{
    public static readonly DropoutSpec None = default;

    public bool Active => Probability > 0f;

    public float Scale => 1f / (1f - Probability);

    /// <summary>Whether element <paramref name="index"/> is kept.</summary>
    public bool Keep(long index) => Philox.Uniform(Seed, Step, Stream, index) >= Probability;
}

/// <summary>Philox 4x32-10 (Salmon et al. 2011), the counter-based generator behind dropout.</summary>
public static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The four 32-bit outputs for counter (c0,c1,c2,c3) and key (k0,k1).</summary>
    public static (uint, uint, uint, uint) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            c0 = hi1 ^ c1 ^ k0;
            c1 = lo1;
            c2 = hi0 ^ c3 ^ k1;
            c3 = lo0;
            k0 += W0;
            k1 += W1;
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>A uniform float in [0,1) with 24 random bits for element <paramref name="index"/> of a
    /// stream. Counter = (index/4 low, index/4 high, step, stream), key = seed; lane = index mod 4.</summary>
    public static float Uniform(ulong seed, uint step, uint stream, long index)
    {
        ulong block = (ulong)index >> 2;
        var (a, b, c, d) = Block((uint)block, (uint)(block >> 32), step, stream, (uint)seed, (uint)(seed >> 32));
        uint x = (index & 3) switch { 0 => a, 1 => b, 2 => c, _ => d };
        return (x >> 8) * (1f / 16777216f);
    }
}
