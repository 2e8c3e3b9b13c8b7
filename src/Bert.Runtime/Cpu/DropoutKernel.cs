using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Bert.Runtime.Cpu;

/// <summary>
/// Applies a <see cref="DropoutSpec"/> mask to a run of elements with global indices base, base+1, …
/// Element i is kept iff <see cref="Philox.Uniform"/>(seed, step, stream, i) ≥ p, exactly as
/// <see cref="DropoutSpec.Keep"/>: since the uniform is (word ≫ 8)·2⁻²⁴, that is word ≥ ⌈p·2²⁴⌉·2⁸.
/// One Philox block serves four consecutive indices; with AVX2, four blocks run in parallel lanes.
/// </summary>
internal static unsafe class DropoutKernel
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>Throws unless 0 ≤ p &lt; 1.</summary>
    public static void Validate(in DropoutSpec spec, string op)
    {
        if (!(spec.Probability >= 0f && spec.Probability < 1f))
            throw new ArgumentException($"{op}: dropout probability {spec.Probability} is outside [0, 1)", "dropout");
    }

    /// <summary>Words at or above this keep their element.</summary>
    private static ulong Threshold(float p) => (ulong)Math.Ceiling(p * 16777216.0) << 8;

    /// <summary>dst[i] = keep(base+i) ? src[i]·scale : 0 for i &lt; n. dst may equal src.</summary>
    public static void Apply(float* dst, float* src, long n, long baseIndex, in DropoutSpec spec)
    {
        if (n <= 0) return;
        ulong threshold = Threshold(spec.Probability);
        float scale = spec.Scale;
        uint k0 = (uint)spec.Seed, k1 = (uint)(spec.Seed >> 32);
        long i = 0;

        // Leading indices up to a multiple of four, one scalar block.
        int lead = (int)((4 - (baseIndex & 3)) & 3);
        if (lead > 0)
        {
            int m = (int)Math.Min(lead, n);
            ScalarBlock(dst, src, baseIndex, (int)(baseIndex & 3), m, threshold, scale, spec.Step, spec.Stream, k0, k1);
            i = m;
        }

        if (Avx2.IsSupported)
        {
            ulong* words = stackalloc ulong[16];
            for (; i + 16 <= n; i += 16)
            {
                ulong block = (ulong)(baseIndex + i) >> 2;
                FourBlocks(block, spec.Step, spec.Stream, k0, k1, words);
                float* d = dst + i, s = src + i;
                // words[w·4 + b] is word w of block b, i.e. element 4b + w.
                for (int b = 0; b < 4; b++)
                {
                    d[4 * b + 0] = words[0 + b] >= threshold ? s[4 * b + 0] * scale : 0f;
                    d[4 * b + 1] = words[4 + b] >= threshold ? s[4 * b + 1] * scale : 0f;
                    d[4 * b + 2] = words[8 + b] >= threshold ? s[4 * b + 2] * scale : 0f;
                    d[4 * b + 3] = words[12 + b] >= threshold ? s[4 * b + 3] * scale : 0f;
                }
            }
        }

        for (; i < n; i += 4)
        {
            int m = (int)Math.Min(4, n - i);
            ScalarBlock(dst + i, src + i, baseIndex + i, 0, m, threshold, scale, spec.Step, spec.Stream, k0, k1);
        }
    }

    /// <summary>Elements lane..lane+m−1 of the block holding index <paramref name="index"/>, written to dst[0..m).</summary>
    private static void ScalarBlock(float* dst, float* src, long index, int lane, int m, ulong threshold, float scale,
        uint step, uint stream, uint k0, uint k1)
    {
        ulong block = (ulong)index >> 2;
        var (a, b, c, d) = Philox.Block((uint)block, (uint)(block >> 32), step, stream, k0, k1);
        uint* words = stackalloc uint[4] { a, b, c, d };
        for (int j = 0; j < m; j++) dst[j] = words[lane + j] >= threshold ? src[j] * scale : 0f;
    }

    /// <summary>Philox 4x32-10 for blocks block..block+3 in 64-bit lanes (each holding a 32-bit word):
    /// vpmuludq gives the full 32×32→64 products the rounds need.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FourBlocks(ulong block, uint step, uint stream, uint k0, uint k1, ulong* words)
    {
        var lo32 = Vector256.Create(0xFFFFFFFFul);
        var counter = Vector256.Create(block, block + 1, block + 2, block + 3);
        var c0 = counter & lo32;
        var c1 = counter >>> 32;
        var c2 = Vector256.Create((ulong)step);
        var c3 = Vector256.Create((ulong)stream);
        var m0 = Vector256.Create((ulong)M0).AsUInt32();
        var m1 = Vector256.Create((ulong)M1).AsUInt32();
        for (int round = 0; round < 10; round++)
        {
            var p0 = Avx2.Multiply(c0.AsUInt32(), m0);
            var p1 = Avx2.Multiply(c2.AsUInt32(), m1);
            var n0 = (p1 >>> 32) ^ c1 ^ Vector256.Create((ulong)k0);
            var n2 = (p0 >>> 32) ^ c3 ^ Vector256.Create((ulong)k1);
            c1 = p1 & lo32;
            c3 = p0 & lo32;
            c0 = n0;
            c2 = n2;
            k0 += W0;
            k1 += W1;
        }
        c0.Store(words);
        c1.Store(words + 4);
        c2.Store(words + 8);
        c3.Store(words + 12);
    }
}
