// Backward of the fused flash-style attention (flash_attention.cu), bf16 on tensor cores, head dim 64,
// deterministic (no atomics): one kernel for dK and dV (a block per 64 keys, looping over query tiles) and
// one for dQ (a block per 64 queries, looping over key tiles), each output element written once.
// Issue 12; launcher: CudaBackend.FlashAttentionBackward. Needs compute capability 8.0.
//
// With P the probabilities (rebuilt as exp(scale·q·k − lse) from the forward's logsumexp), f the dropout
// multipliers (Philox index = flat index into probs [B, NH, S, S], as the forward), dO = dContext and
// O = context: dV_j = Σ_i P_ij f_ij dO_i; dP_ij = f_ij (dO_i · v_j); D_i = dO_i · O_i (= Σ_j P_ij dP_ij);
// dS_ij = P_ij (dP_ij − D_i); dQ_i = scale Σ_j dS_ij k_j; dK_j = scale Σ_i dS_ij q_i.
// Layouts as the forward: qkv [B·S, 3H], context and dContext [B·S, H] (bf16), lse F32 [B, NH, S], mask
// I32 [B, S]; dQkv [B·S, 3H] (F32 or BF16, overwritten; rows of padded keys get zero dK, dV).
#include "common.cuh"

#define FB_HEAD_DIM 64
#define FB_TILE 64       // rows per block and per loop tile: 4 warps × 16
#define FB_PITCH 72      // shared row pitch in bf16 (144 bytes)
#define FB_THREADS 128

// Rows [row0, row0 + 64) × 64 bf16 columns of a matrix with row pitch `ld` into tile[64][FB_PITCH]; rows at or
// past `rows` become zeros.
__device__ __forceinline__ void fb_load_tile(bf16_t* tile, const bf16_t* src, long long ld, int row0, int rows)
{
    for (int c = threadIdx.x; c < FB_TILE * 8; c += FB_THREADS)
    {
        int r = c >> 3, col = (c & 7) * 8;
        bf16_t* dst = tile + r * FB_PITCH + col;
        if (row0 + r < rows) cp_async_16(dst, src + (long long)(row0 + r) * ld + col);
        else
        {
            bert_chunk16 zero;
            zero.lo = zero.hi = 0ull;
            *(bert_chunk16*)dst = zero;
        }
    }
}

// D_i = dO_i · O_i over the 64 dimensions, fp32 in a fixed order (both kernels compute it identically).
__device__ __forceinline__ float fb_row_dot(const bf16_t* dO, const bf16_t* o)
{
    float sum = 0.0f;
    for (int d = 0; d < FB_HEAD_DIM; d++) sum += bf16_to_float(dO[d]) * bf16_to_float(o[d]);
    return sum;
}

// Per-row statistics of query rows [q0, q0 + 64) into shared memory: logsumexp (+inf past the sequence,
// so those rows' probabilities are 0) and D. Threads 0..63 each take one row.
__device__ __forceinline__ void fb_load_row_stats(float* sLse, float* sD, const float* lse, const bf16_t* dContext,
    const bf16_t* context, long long statsBase, long long rowBase, long long hidden, int q0, int seq)
{
    int i = threadIdx.x;
    if (i >= FB_TILE) return;
    bool in = q0 + i < seq;
    sLse[i] = in ? lse[statsBase + q0 + i] : __int_as_float(0x7f800000);
    sD[i] = in ? fb_row_dot(dContext + (rowBase + q0 + i) * hidden, context + (rowBase + q0 + i) * hidden) : 0.0f;
}

// The A fragments of rows 16w .. 16w + 15 (w = this warp) × 64 columns of a shared tile, one per 16 columns.
__device__ __forceinline__ void fb_row_fragments(unsigned int a[4][4], const bf16_t* tile)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
        ldmatrix_x4(a[kk], tile + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * FB_PITCH + kk * 16 + (lane >> 4) * 8);
}

// acc[n] (16 rows × 8 columns n, N tiles) += a (16 rows × 64) · tileᵀ, where the tile's first 8N rows are
// the columns: B(k, n) = tile[n][k], read with ldmatrix (not transposed).
template <int N>
__device__ __forceinline__ void fb_times_rows_transposed(float acc[N][4], const unsigned int a[4][4], const bf16_t* tile)
{
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int half = 0; half < 2; half++)
        {
            unsigned int b[4];
            ldmatrix_x4(b, tile + (n * 8 + (lane & 7)) * FB_PITCH + half * 32 + (lane >> 3) * 8);
            mma_m16n8k16_bf16(acc[n], a[2 * half], b, acc[n]);
            mma_m16n8k16_bf16(acc[n], a[2 * half + 1], b + 2, acc[n]);
        }
}

// acc[n] (16 rows × dims 8n..8n+7) += a (16 rows × 16·KK tile rows) · tile: B(k, n) = tile[k][n], read
// with ldmatrix .trans (KK even).
template <int KK>
__device__ __forceinline__ void fb_times_rows(float acc[8][4], const unsigned int a[KK][4], const bf16_t* tile)
{
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int half = 0; half < KK / 2; half++)
        {
            unsigned int b[4];
            ldmatrix_x4_trans(b, tile + (half * 32 + (lane & 7) + (lane >> 3) * 8) * FB_PITCH + n * 8);
            mma_m16n8k16_bf16(acc[n], a[2 * half], b, acc[n]);
            mma_m16n8k16_bf16(acc[n], a[2 * half + 1], b + 2, acc[n]);
        }
}

// The C fragments of 16 rows × 8N columns as bf16 A fragments for a product over those columns.
template <int N>
__device__ __forceinline__ void fb_to_a_fragments(unsigned int a[N / 2][4], const float c[N][4])
{
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int r = 0; r < 2; r++) a[n >> 1][(n & 1) * 2 + r] = pack_bf16x2(c[n][2 * r], c[n][2 * r + 1]);
}

template <int N>
__device__ __forceinline__ void fb_zero(float acc[N][4])
{
#pragma unroll
    for (int n = 0; n < N; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// Writes scale·acc (16 rows of this warp starting at `row0`, 64 columns) into out[row][col0 + ...], rows < seq.
__device__ __forceinline__ void fb_store(void* out, int outType, const float acc[8][4], float scale, long long rowBase,
    int row0, int seq, long long ld, long long col0)
{
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int r = 0; r < 2; r++)
    {
        int row = row0 + g + 8 * r;
        if (row >= seq) continue;
        long long at = (rowBase + row) * ld + col0 + 2 * t;
#pragma unroll
        for (int n = 0; n < 8; n++)
        {
            store(out, at + n * 8, outType, acc[n][2 * r] * scale);
            store(out, at + n * 8 + 1, outType, acc[n][2 * r + 1] * scale);
        }
    }
}

// dK and dV. Grid (⌈S/64⌉, NH, B), block 128: warp w owns keys 64x + 16w .. +15; lane l holds keys g, g+8
// of them (g = l>>2) and queries 8n + 2t, 8n + 2t + 1 of each query tile (t = l&3).
extern "C" __global__ void flash_attention_backward_dkdv(void* dQkv, int dQkvType, const bf16_t* dContext,
    const bf16_t* context, const float* lse, const bf16_t* qkv, const int* mask, int batch, int seq, int heads,
    float scale, float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    __shared__ bf16_t sQ[FB_TILE * FB_PITCH] __attribute__((aligned(16)));
    __shared__ bf16_t sO[FB_TILE * FB_PITCH] __attribute__((aligned(16)));   // dO
    __shared__ float sLse[FB_TILE], sD[FB_TILE];

    int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * FB_TILE;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    long long hidden = (long long)heads * FB_HEAD_DIM, width = 3 * hidden, rowBase = (long long)b * seq;
    const bf16_t* qBase = qkv + rowBase * width + (long long)h * FB_HEAD_DIM;
    const bf16_t* dOBase = dContext + rowBase * hidden + (long long)h * FB_HEAD_DIM;
    long long statsBase = ((long long)b * heads + h) * seq;

    // This warp's keys and values as A fragments (staged through the two tiles).
    unsigned int kf[4][4], vf[4][4];
    fb_load_tile(sQ, qBase + hidden, width, k0, seq);
    fb_load_tile(sO, qBase + 2 * hidden, width, k0, seq);
    cp_async_wait_all();
    __syncthreads();
    fb_row_fragments(kf, sQ);
    fb_row_fragments(vf, sO);
    int keys[2] = { k0 + warp * 16 + g, k0 + warp * 16 + g + 8 };
    bool keyOn[2] = { keys[0] < seq && mask[rowBase + keys[0]] != 0, keys[1] < seq && mask[rowBase + keys[1]] != 0 };

    float dk[8][4], dv[8][4];
    fb_zero<8>(dk);
    fb_zero<8>(dv);
    for (int q0 = 0; q0 < seq; q0 += FB_TILE)
    {
        __syncthreads();   // every warp is done with the previous tiles
        fb_load_tile(sQ, qBase, width, q0, seq);
        fb_load_tile(sO, dOBase, hidden, q0, seq);
        fb_load_row_stats(sLse, sD, lse, dContext + (long long)h * FB_HEAD_DIM, context + (long long)h * FB_HEAD_DIM,
            statsBase, rowBase, hidden, q0, seq);
        cp_async_wait_all();
        __syncthreads();

        // Two halves of 32 queries each, to keep the live registers within the limit.
#pragma unroll
        for (int qh = 0; qh < 2; qh++)
        {
            const bf16_t* tQ = sQ + qh * 32 * FB_PITCH;
            const bf16_t* tO = sO + qh * 32 * FB_PITCH;
            float st[4][4], dpt[4][4];   // scores and dP, transposed: 16 keys × 32 queries
            fb_zero<4>(st);
            fb_zero<4>(dpt);
            fb_times_rows_transposed<4>(st, kf, tQ);
            fb_times_rows_transposed<4>(dpt, vf, tO);
            // Dropout keep bits (bit 4n + i), one element per Philox evaluation in a loop that is not unrolled,
            // so its code and registers appear once.
            unsigned int keep = 0xffffu;
            if (dropP > 0.0f)
            {
                keep = 0u;
#pragma unroll 1
                for (int e = 0; e < 16; e++)
                {
                    int query = q0 + qh * 32 + (e >> 2) * 8 + 2 * t + (e & 1), r = (e >> 1) & 1;
                    int key = r ? keys[1] : keys[0];
                    if (query < seq && key < seq &&
                        dropout_of_word(philox_lane(seed, step, stream, (unsigned long long)((statsBase + query) * seq + key)), dropP, 1.0f) != 0.0f)
                        keep |= 1u << e;
                }
            }
#pragma unroll
            for (int n = 0; n < 4; n++)
#pragma unroll
                for (int i = 0; i < 4; i++)
                {
                    int col = qh * 32 + n * 8 + 2 * t + (i & 1), r = i >> 1;
                    float p = keyOn[r] ? expf(st[n][i] * scale - sLse[col]) : 0.0f;
                    float f = dropP > 0.0f ? ((keep >> (4 * n + i)) & 1u ? dropScale : 0.0f) : 1.0f;
                    st[n][i] = p * f;                            // dropped P
                    dpt[n][i] = p * (dpt[n][i] * f - sD[col]);   // dS
                }
            unsigned int a[2][4];
            fb_to_a_fragments<4>(a, st);
            fb_times_rows<2>(dv, a, tO);
            fb_to_a_fragments<4>(a, dpt);
            fb_times_rows<2>(dk, a, tQ);
        }
    }
    fb_store(dQkv, dQkvType, dk, scale, rowBase, k0 + warp * 16, seq, width, hidden + (long long)h * FB_HEAD_DIM);
    fb_store(dQkv, dQkvType, dv, 1.0f, rowBase, k0 + warp * 16, seq, width, 2 * hidden + (long long)h * FB_HEAD_DIM);
}

// dQ. Grid (⌈S/64⌉, NH, B), block 128: warp w owns queries 64x + 16w .. +15; lane l holds queries g, g+8 of
// them and keys 8n + 2t, 8n + 2t + 1 of each key tile.
extern "C" __global__ void flash_attention_backward_dq(void* dQkv, int dQkvType, const bf16_t* dContext,
    const bf16_t* context, const float* lse, const bf16_t* qkv, const int* mask, int batch, int seq, int heads,
    float scale, float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    __shared__ bf16_t sK[FB_TILE * FB_PITCH] __attribute__((aligned(16)));
    __shared__ bf16_t sV[FB_TILE * FB_PITCH] __attribute__((aligned(16)));
    __shared__ float sLse[FB_TILE], sD[FB_TILE];
    __shared__ int sMask[FB_TILE];

    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * FB_TILE;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    long long hidden = (long long)heads * FB_HEAD_DIM, width = 3 * hidden, rowBase = (long long)b * seq;
    const bf16_t* qBase = qkv + rowBase * width + (long long)h * FB_HEAD_DIM;
    long long statsBase = ((long long)b * heads + h) * seq;

    // This warp's queries and output gradients as A fragments (staged through the two tiles), and their statistics.
    unsigned int qa[4][4], oa[4][4];
    fb_load_tile(sK, qBase, width, q0, seq);
    fb_load_tile(sV, dContext + rowBase * hidden + (long long)h * FB_HEAD_DIM, hidden, q0, seq);
    fb_load_row_stats(sLse, sD, lse, dContext + (long long)h * FB_HEAD_DIM, context + (long long)h * FB_HEAD_DIM,
        statsBase, rowBase, hidden, q0, seq);
    cp_async_wait_all();
    __syncthreads();
    fb_row_fragments(qa, sK);
    fb_row_fragments(oa, sV);
    int rows[2] = { q0 + warp * 16 + g, q0 + warp * 16 + g + 8 };
    float rowLse[2] = { sLse[warp * 16 + g], sLse[warp * 16 + g + 8] };
    float rowD[2] = { sD[warp * 16 + g], sD[warp * 16 + g + 8] };

    float dq[8][4];
    fb_zero<8>(dq);
    for (int k0 = 0; k0 < seq; k0 += FB_TILE)
    {
        __syncthreads();
        fb_load_tile(sK, qBase + hidden, width, k0, seq);
        fb_load_tile(sV, qBase + 2 * hidden, width, k0, seq);
        if (threadIdx.x < FB_TILE) sMask[threadIdx.x] = k0 + (int)threadIdx.x < seq ? mask[rowBase + k0 + threadIdx.x] : 0;
        cp_async_wait_all();
        __syncthreads();

        float s[8][4], dp[8][4];
        fb_zero<8>(s);
        fb_zero<8>(dp);
        fb_times_rows_transposed<8>(s, qa, sK);
        fb_times_rows_transposed<8>(dp, oa, sV);
        // Dropout keep bits (bit 4n + 2r + e), in a loop that is not unrolled (one copy of the Philox code).
        unsigned int keep = 0xffffffffu;
        if (dropP > 0.0f)
        {
            keep = 0u;
#pragma unroll 1
            for (int e = 0; e < 32; e++)
            {
                int row = (e >> 1) & 1 ? rows[1] : rows[0], key = k0 + (e >> 2) * 8 + 2 * t + (e & 1);
                if (row < seq && key < seq &&
                    dropout_of_word(philox_lane(seed, step, stream, (unsigned long long)((statsBase + row) * seq + key)), dropP, 1.0f) != 0.0f)
                    keep |= 1u << e;
            }
        }
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int i = 0; i < 4; i++)
            {
                int col = n * 8 + 2 * t + (i & 1), r = i >> 1;
                float f = dropP > 0.0f ? ((keep >> (4 * n + i)) & 1u ? dropScale : 0.0f) : 1.0f;
                float p = sMask[col] != 0 ? expf(s[n][i] * scale - rowLse[r]) : 0.0f;
                dp[n][i] = p * (dp[n][i] * f - rowD[r]);   // dS
            }
        unsigned int a[4][4];
        fb_to_a_fragments<8>(a, dp);
        fb_times_rows<4>(dq, a, sK);
    }
    fb_store(dQkv, dQkvType, dq, scale, rowBase, q0 + warp * 16, seq, width, (long long)h * FB_HEAD_DIM);
}
