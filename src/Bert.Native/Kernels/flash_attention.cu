// Fused (flash-style) attention for bf16 with head dimension 64, on tensor cores (mma.sync m16n8k16
// through the helpers of common.cuh): scores, masked online softmax, dropout and the context product in
// one kernel, with no [B,NH,S,S] tensor in memory. Issue 12; launchers: CudaBackend.Attention.cs
// (FlashAttentionForward). Needs compute capability 8.0.
//
// Layouts: qkv [B·S, 3H] bf16 (q | k | v, each head-major NH×64), context [B·S, H] bf16, mask I32 [B, S]
// (0 = padded key), lse F32 [B, NH, S]: the per-row log Σ_j exp(scale·q·k_j) over unmasked keys (+inf
// for a row whose keys are all masked), which the backward uses to rebuild the probabilities.
// Dropout: the mask of the unfused path and of the CPU backend: Philox index = flat index into probs
// [B, NH, S, S], applied to the normalized probabilities (the row sum excludes dropout).
#include "common.cuh"

#define FA_HEAD_DIM 64
#define FA_ROWS 64      // query rows per block: 4 warps × 16
#define FA_KEYS 64      // keys per shared-memory tile
#define FA_PITCH 72     // shared row pitch in bf16: 144 bytes keeps rows 16-byte aligned and ldmatrix conflict-free
#define FA_THREADS 128

// Copies rows [row0, row0 + 64) × 64 columns of a bf16 matrix with row pitch `ld` into tile[64][FA_PITCH];
// rows at or past `rows` become zeros. 16 bytes per copy (cp.async), 4 per thread.
__device__ __forceinline__ void fa_load_tile(bf16_t* tile, const bf16_t* src, long long ld, int row0, int rows)
{
    for (int c = threadIdx.x; c < FA_ROWS * 8; c += FA_THREADS)
    {
        int r = c >> 3, col = (c & 7) * 8;
        bf16_t* dst = tile + r * FA_PITCH + col;
        if (row0 + r < rows) cp_async_16(dst, src + (long long)(row0 + r) * ld + col);
        else
        {
            bert_chunk16 zero;
            zero.lo = zero.hi = 0ull;
            *(bert_chunk16*)dst = zero;
        }
    }
}

// Starts copying keys and values [k0, k0 + 64) into a buffer (cp.async) and stores their mask flags (0 past S).
__device__ __forceinline__ void fa_load_keys(bf16_t* k, bf16_t* v, int* flags, const bf16_t* kBase, const bf16_t* vBase,
    long long width, const int* mask, int k0, int seq)
{
    fa_load_tile(k, kBase, width, k0, seq);
    fa_load_tile(v, vBase, width, k0, seq);
    if (threadIdx.x < FA_KEYS) flags[threadIdx.x] = k0 + (int)threadIdx.x < seq ? mask[k0 + threadIdx.x] : 0;
}

// Dropout multipliers of the flat probs indices i and i + 1 (one Philox evaluation when both share a block of four).
__device__ __forceinline__ void fa_dropout_pair(float p, float scale, unsigned long long seed, unsigned int step,
    unsigned int stream, unsigned long long i, float f[2])
{
    if (!(p > 0.0f)) { f[0] = f[1] = 1.0f; return; }
    philox_out r = philox4(seed, step, stream, i >> 2);
    f[0] = dropout_of_word(philox_pick(r, (unsigned int)(i & 3ull)), p, scale);
    if ((i & 3ull) != 3ull) f[1] = dropout_of_word(philox_pick(r, (unsigned int)((i + 1) & 3ull)), p, scale);
    else f[1] = dropout_factor(p, scale, seed, step, stream, (long long)(i + 1));
}

// Grid (⌈S/64⌉, NH, B), block 128: warp w of block (x, h, b) owns query rows 64x + 16w .. +15 of head h.
// Lane l (g = l>>2, t = l&3) holds rows g and g+8 of its warp's 16, keys/dims 8n + 2t, 8n + 2t + 1.
// qkv and context must be 16-byte aligned (the launcher checks).
extern "C" __global__ void flash_attention_forward(bf16_t* context, float* lse, const bf16_t* qkv, const int* mask,
    int batch, int seq, int heads, float scale,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    // Two buffers of K, V and the key mask: tile i + 1 is copied (cp.async) while tile i is computed on.
    // Buffer 0's K also stages the query tile at the start. 37 KiB in all.
    __shared__ bf16_t sK[2][FA_KEYS * FA_PITCH] __attribute__((aligned(16)));
    __shared__ bf16_t sV[2][FA_KEYS * FA_PITCH] __attribute__((aligned(16)));
    __shared__ int sMask[2][FA_KEYS];

    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * FA_ROWS;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    long long hidden = (long long)heads * FA_HEAD_DIM, width = 3 * hidden;
    const bf16_t* qBase = qkv + (long long)b * seq * width + (long long)h * FA_HEAD_DIM;
    const bf16_t* kBase = qBase + hidden;
    const bf16_t* vBase = qBase + 2 * hidden;
    const int* m = mask + (long long)b * seq;

    fa_load_tile(sK[0], qBase, width, q0, seq);
    cp_async_wait_all();
    __syncthreads();

    // This warp's 16 query rows as A fragments, one per 16 head dimensions.
    unsigned int qa[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
        ldmatrix_x4(qa[kk], sK[0] + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * FA_PITCH + kk * 16 + (lane >> 4) * 8);

    float o[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float rowMax[2] = { neg_inf(), neg_inf() }, rowSum[2] = { 0.0f, 0.0f };   // rowSum: this lane's columns only
    int rows[2] = { q0 + warp * 16 + g, q0 + warp * 16 + g + 8 };
    long long probsRow[2] = { (((long long)b * heads + h) * seq + rows[0]) * seq, (((long long)b * heads + h) * seq + rows[1]) * seq };

    __syncthreads();   // every warp has its query fragments before buffer 0 is overwritten
    fa_load_keys(sK[0], sV[0], sMask[0], kBase, vBase, width, m, 0, seq);
    for (int k0 = 0, buf = 0; k0 < seq; k0 += FA_KEYS, buf ^= 1)
    {
        cp_async_wait_all();
        __syncthreads();   // tile k0 is in buffer `buf`, and every warp is done with the other buffer
        if (k0 + FA_KEYS < seq) fa_load_keys(sK[buf ^ 1], sV[buf ^ 1], sMask[buf ^ 1], kBase, vBase, width, m, k0 + FA_KEYS, seq);
        const bf16_t* tK = sK[buf];
        const bf16_t* tV = sV[buf];
        const int* tMask = sMask[buf];

        // s = q·kᵀ for 16 rows × 64 keys: B(k = dim, n = key) = K[key][dim], so K's rows are B's columns.
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
        {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int half = 0; half < 2; half++)
            {
                unsigned int kb[4];
                ldmatrix_x4(kb, tK + (n * 8 + (lane & 7)) * FA_PITCH + half * 32 + (lane >> 3) * 8);
                mma_m16n8k16_bf16(s[n], qa[2 * half], kb, s[n]);
                mma_m16n8k16_bf16(s[n], qa[2 * half + 1], kb + 2, s[n]);
            }
        }

        // Scale, mask, and the running row maximum (the four lanes of a row group share it).
        float tileMax[2] = { neg_inf(), neg_inf() };
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int i = 0; i < 4; i++)
            {
                int key = n * 8 + 2 * t + (i & 1);
                s[n][i] = tMask[key] != 0 ? s[n][i] * scale : neg_inf();
                tileMax[i >> 1] = fmaxf(tileMax[i >> 1], s[n][i]);
            }
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++)
        {
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(FULL_MASK, tileMax[r], 1));
            tileMax[r] = fmaxf(tileMax[r], __shfl_xor_sync(FULL_MASK, tileMax[r], 2));
            float next = fmaxf(rowMax[r], tileMax[r]);
            alpha[r] = next == neg_inf() || rowMax[r] == neg_inf() ? (next == neg_inf() ? 1.0f : 0.0f) : expf(rowMax[r] - next);
            rowMax[r] = next;
            rowSum[r] *= alpha[r];
        }
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) o[n][i] *= alpha[i >> 1];

        // p = exp(s − max); the row sum takes p, the context product takes dropout(p) as bf16 A fragments
        // (the C layout of key tiles 2kk, 2kk+1 is the A layout of keys 16kk .. 16kk + 15).
        unsigned int pa[4][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
        {
            float p[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
            {
                p[i] = s[n][i] == neg_inf() ? 0.0f : expf(s[n][i] - rowMax[i >> 1]);
                rowSum[i >> 1] += p[i];
            }
            int key = k0 + n * 8 + 2 * t;
#pragma unroll
            for (int r = 0; r < 2; r++)
            {
                float f[2] = { 1.0f, 1.0f };
                if (rows[r] < seq && key < seq) fa_dropout_pair(dropP, dropScale, seed, step, stream, (unsigned long long)(probsRow[r] + key), f);
                pa[n >> 1][(n & 1) * 2 + r] = pack_bf16x2(p[2 * r] * f[0], p[2 * r + 1] * f[1]);
            }
        }

        // o += dropout(p)·v: B(k = key, n = dim) = V[key][dim], read transposed.
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int half = 0; half < 2; half++)
            {
                unsigned int vb[4];
                ldmatrix_x4_trans(vb, tV + (half * 32 + (lane & 7) + (lane >> 3) * 8) * FA_PITCH + n * 8);
                mma_m16n8k16_bf16(o[n], pa[2 * half], vb, o[n]);
                mma_m16n8k16_bf16(o[n], pa[2 * half + 1], vb + 2, o[n]);
            }
    }

#pragma unroll
    for (int r = 0; r < 2; r++)
    {
        rowSum[r] += __shfl_xor_sync(FULL_MASK, rowSum[r], 1);
        rowSum[r] += __shfl_xor_sync(FULL_MASK, rowSum[r], 2);
        if (rows[r] >= seq) continue;
        float inv = rowSum[r] > 0.0f ? 1.0f / rowSum[r] : 0.0f;
        bf16_t* out = context + ((long long)b * seq + rows[r]) * hidden + (long long)h * FA_HEAD_DIM + 2 * t;
#pragma unroll
        for (int n = 0; n < 8; n++)
            *(unsigned int*)(out + n * 8) = pack_bf16x2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
        if (t == 0)
            lse[((long long)b * heads + h) * seq + rows[r]] = rowSum[r] > 0.0f ? rowMax[r] + logf(rowSum[r]) : __int_as_float(0x7f800000);
    }
}
