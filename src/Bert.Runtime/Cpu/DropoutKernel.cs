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

        if (Avx2.IsSupported && threshold <= uint.MaxValue)
        {
            var vThreshold = Vector256.Create((uint)threshold);
            var vScale = Vector256.Create(scale);
            for (; i + 32 <= n; i += 32)
            {
                ulong block = (ulong)(baseIndex + i) >> 2;
                if ((uint)block > uint.MaxValue - 7) break; // the 8 counters would carry into the high word
                EightBlocks(block, spec.Step, spec.Stream, k0, k1, out var e0, out var e1, out var e2, out var e3);
                float* d = dst + i, s = src + i;
                // e_j holds elements 8j..8j+7 in order; keep where word ≥ threshold.
                Store(d, s, e0, vThreshold, vScale);
                Store(d + 8, s + 8, e1, vThreshold, vScale);
                Store(d + 16, s + 16, e2, vThreshold, vScale);
                Store(d + 24, s + 24, e3, vThreshold, vScale);
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* d, float* s, Vector256<uint> words, Vector256<uint> threshold, Vector256<float> scale)
    {
        // Unsigned words ≥ threshold ⇔ max(words, threshold) = words.
        var keep = Vector256.Equals(Avx2.Max(words, threshold), words).AsSingle();
        (Vector256.Load(s) * scale & keep).Store(d);
    }

    /// <summary>Philox 4x32-10 for blocks block..block+7, one block per 32-bit lane, returned in element
    /// order (e0 = elements 0..7 = words 0..3 of blocks 0 and 1, …). vpmuludq multiplies the even
    /// lanes; the odd lanes go through a 32-bit shift, and the halves are recombined into hi/lo.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void EightBlocks(ulong block, uint step, uint stream, uint k0, uint k1,
        out Vector256<uint> e0, out Vector256<uint> e1, out Vector256<uint> e2, out Vector256<uint> e3)
    {
        var c0 = Vector256.Create((uint)block) + Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        var c1 = Vector256.Create((uint)(block >> 32));
        var c2 = Vector256.Create(step);
        var c3 = Vector256.Create(stream);
        var m0 = Vector256.Create(M0);
        var m1 = Vector256.Create(M1);
        for (int round = 0; round < 10; round++)
        {
            MulHiLo(c0, m0, out var hi0, out var lo0);
            MulHiLo(c2, m1, out var hi1, out var lo1);
            var n0 = hi1 ^ c1 ^ Vector256.Create(k0);
            var n2 = hi0 ^ c3 ^ Vector256.Create(k1);
            c1 = lo1;
            c3 = lo0;
            c0 = n0;
            c2 = n2;
            k0 += W0;
            k1 += W1;
        }
        // 4×4 transposes within each 128-bit half: t_b = [words of block b | words of block b+4].
        var a01 = Avx2.UnpackLow(c0, c1);
        var b01 = Avx2.UnpackHigh(c0, c1);
        var a23 = Avx2.UnpackLow(c2, c3);
        var b23 = Avx2.UnpackHigh(c2, c3);
        var t0 = Avx2.UnpackLow(a01.AsUInt64(), a23.AsUInt64()).AsUInt32();
        var t1 = Avx2.UnpackHigh(a01.AsUInt64(), a23.AsUInt64()).AsUInt32();
        var t2 = Avx2.UnpackLow(b01.AsUInt64(), b23.AsUInt64()).AsUInt32();
        var t3 = Avx2.UnpackHigh(b01.AsUInt64(), b23.AsUInt64()).AsUInt32();
        e0 = Avx2.Permute2x128(t0, t1, 0x20);
        e1 = Avx2.Permute2x128(t2, t3, 0x20);
        e2 = Avx2.Permute2x128(t0, t1, 0x31);
        e3 = Avx2.Permute2x128(t2, t3, 0x31);
    }

    /// <summary>Full 32×32→64 products of every lane: hi and lo words.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MulHiLo(Vector256<uint> a, Vector256<uint> m, out Vector256<uint> hi, out Vector256<uint> lo)
    {
        var even = Avx2.Multiply(a, m);                                    // lanes 0,2,4,6 as u64
        var odd = Avx2.Multiply((a.AsUInt64() >>> 32).AsUInt32(), m);     // lanes 1,3,5,7 as u64
        var mask = Vector256.Create(0xFFFFFFFFul);
        lo = ((even & mask) | (odd << 32)).AsUInt32();
        hi = ((even >>> 32) | (odd & ~mask)).AsUInt32();
    }
}
