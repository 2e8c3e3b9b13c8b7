// Attention around cuBLAS's strided-batched GEMMs: head split/merge permutations between the row-major
// [B·S, parts·H] activations and the per-head [B, NH, S, HD] workspace, and the masked softmax forward
// and backward over probs[B, NH, S, S] (the dropout mask index is the flat index into probs).
// Launchers: CudaBackend.Attention.cs.
#include "common.cuh"

#define ROWS_PER_BLOCK 8

// Moves `n` elements from src[si] to dst[di]: one 16-byte copy (8 bf16 or 4 fp32) when `vec`; the
// caller has checked that types match, both addresses are 16-byte aligned and n is one chunk.
__device__ __forceinline__ void move_chunk(void* dst, long long di, int dstType, const void* src, long long si, int srcType, int n, bool vec)
{
    if (vec)
    {
        int bytes = srcType == BERT_BF16 ? 2 : 4;
        *(bert_chunk16*)((char*)dst + di * bytes) = *(const bert_chunk16*)((const char*)src + si * bytes);
        return;
    }
    for (int e = 0; e < n; e++) store(dst, di + e, dstType, load(src, si + e, srcType));
}

// Elements per 16-byte chunk when every pointer is 16-byte aligned, the types match and a chunk never
// crosses a head (headDim a multiple of it); 1 otherwise.
__device__ __forceinline__ int chunk_elements(int type, int otherType, int headDim, const void* a, const void* b,
    const void* c, const void* d)
{
    int vec = type == BERT_BF16 ? 8 : 4;
    if (type != otherType || headDim % vec != 0) return 1;
    return aligned16(a, b, c) && aligned16(d) ? vec : 1;
}

// Element i of a row-major [B·S, width = parts·hidden] tensor (total elements in all): which part (q, k or v) it
// belongs to, and its index in that part's head-major [B, NH, S, HD]. 32-bit division while the tensor has fewer
// than 2^31 elements.
__device__ __forceinline__ long long head_major_index(long long i, long long total, long long width, long long hidden,
    int seq, int heads, int headDim, int* part)
{
    long long row, col;
    if (total < 2147483647LL) { row = (int)i / (int)width; col = (int)i - (int)row * (int)width; }
    else { row = i / width; col = i % width; }
    *part = (int)col / (int)hidden;
    int ch = (int)col - *part * (int)hidden;
    int h = ch / headDim, d = ch - h * headDim;
    int b = (int)(row / seq), s = (int)(row - (long long)b * seq);
    return (((long long)b * heads + h) * seq + s) * headDim + d;
}

// in[B·S, parts·H] (parts = 3: q | k | v, each head-major NH×HD; parts = 1: context) → part p of
// {q, k, v}[B, NH, S, HD]. Unused part pointers may be null. 1-D grid-stride over chunks of the input
// (16 bytes each where chunk_elements allows, else single elements); 32-bit index arithmetic when the
// tensor has fewer than 2^31 elements.
extern "C" __global__ void attention_split_heads(void* q, void* k, void* v, int outType, const void* in, int inType,
    int batch, int seq, int heads, int headDim, int parts)
{
    long long hidden = (long long)heads * headDim;
    long long width = parts * hidden;
    long long total = (long long)batch * seq * width;
    int vec = chunk_elements(outType, inType, headDim, q, k, v, in);
    long long chunks = total / vec;
    for (long long c = grid_index(); c < chunks; c += grid_stride())
    {
        long long i = c * vec;
        int part;
        long long dst = head_major_index(i, total, width, hidden, seq, heads, headDim, &part);
        void* o = part == 0 ? q : part == 1 ? k : v;
        move_chunk(o, dst, outType, in, i, inType, vec, vec > 1);
    }
}

// The inverse: out[B·S, parts·H] ← {q, k, v}[B, NH, S, HD]. 1-D grid-stride over chunks of the output.
extern "C" __global__ void attention_merge_heads(void* out, int outType, const void* q, const void* k, const void* v,
    int inType, int batch, int seq, int heads, int headDim, int parts)
{
    long long hidden = (long long)heads * headDim;
    long long width = parts * hidden;
    long long total = (long long)batch * seq * width;
    int vec = chunk_elements(outType, inType, headDim, out, q, k, v);
    long long chunks = total / vec;
    for (long long c = grid_index(); c < chunks; c += grid_stride())
    {
        long long i = c * vec;
        int part;
        long long src = head_major_index(i, total, width, hidden, seq, heads, headDim, &part);
        const void* x = part == 0 ? q : part == 1 ? k : v;
        move_chunk(out, i, outType, x, src, inType, vec, vec > 1);
    }
}

// Longest row the register-resident softmax paths hold: 4 consecutive keys per lane per 128 keys.
#define SOFTMAX_MAX_GROUPS 4

// probs[B,NH,S,S] in place: the scaled scores become softmax over keys j with mask[b·S + j] ≠ 0; masked
// keys get probability 0, and a row with every key masked becomes all zeros. When `dropped` is not
// null it also receives dropout(probs) as stored (mask index = flat probs index), the operand of the
// context GEMM, in the same pass. One warp per row (rows = B·NH·S), blockDim.x = 256. Rows of at most
// 512 keys with S a multiple of 4 stay in registers (lane l holds keys 4l..4l+3 of each 128) and take
// one Philox evaluation per four keys; other rows re-read memory.
extern "C" __global__ void attention_softmax_forward(void* probs, int probsType, void* dropped, int droppedType,
    const int* mask, int batch, int heads, int seq,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    long long rows = (long long)batch * heads * seq;
    long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long b = row / ((long long)heads * seq);
    const int* m = mask + b * seq;
    long long base = row * seq;

    if ((seq & 3) == 0 && seq <= 128 * SOFTMAX_MAX_GROUPS)
    {
        float x[SOFTMAX_MAX_GROUPS][4];
        float mx = neg_inf();
#pragma unroll
        for (int g = 0; g < SOFTMAX_MAX_GROUPS; g++)
        {
            int j0 = g * 128 + lane * 4;
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                int j = j0 + r;
                bool on = j < seq && m[j] != 0;
                x[g][r] = on ? load(probs, base + j, probsType) : neg_inf();
                mx = fmaxf(mx, x[g][r]);
            }
        }
        mx = warp_max(mx);
        float sum = 0.0f;
#pragma unroll
        for (int g = 0; g < SOFTMAX_MAX_GROUPS; g++)
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                float e = x[g][r] == neg_inf() ? 0.0f : expf(x[g][r] - mx);
                x[g][r] = e;
                sum += e;
            }
        sum = warp_sum(sum);
#pragma unroll
        for (int g = 0; g < SOFTMAX_MAX_GROUPS; g++)
        {
            int j0 = g * 128 + lane * 4;
            if (j0 >= seq) continue;
            float f[4];
            if (dropped != 0)
                dropout_factor4(dropP, dropScale, seed, step, stream, (unsigned long long)(base + j0) >> 2, f);
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                float p = sum > 0.0f ? x[g][r] / sum : 0.0f;
                store(probs, base + j0 + r, probsType, p);
                if (dropped != 0) store(dropped, base + j0 + r, droppedType, stored(p, probsType) * f[r]);
            }
        }
        return;
    }

    float mx = neg_inf();
    for (int j = lane; j < seq; j += 32)
        if (m[j] != 0) mx = fmaxf(mx, load(probs, base + j, probsType));
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < seq; j += 32)
        if (m[j] != 0) sum += expf(load(probs, base + j, probsType) - mx);
    sum = warp_sum(sum);
    for (int j = lane; j < seq; j += 32)
    {
        float p = m[j] != 0 && sum > 0.0f ? expf(load(probs, base + j, probsType) - mx) / sum : 0.0f;
        store(probs, base + j, probsType, p);
        if (dropped != 0)
            store(dropped, base + j, droppedType,
                stored(p, probsType) * dropout_factor(dropP, dropScale, seed, step, stream, base + j));
    }
}

// In place on dScores[B,NH,S,S], which holds the gradient of the dropped probabilities on entry:
//   dP = dropout(dIn) (mask index = flat probs index), dScores = P ⊙ (dP − Σ_j dP·P).
// The 1/√HD of the scores is left to the GEMMs that consume dScores. One warp per row, blockDim.x = 256;
// rows of at most 512 keys with S a multiple of 4 stay in registers as in the forward.
extern "C" __global__ void attention_softmax_backward(void* dScores, int dScoresType, const void* probs, int probsType,
    int batch, int heads, int seq, float dropP, float dropScale, unsigned long long seed, unsigned int step,
    unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    long long rows = (long long)batch * heads * seq;
    long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long base = row * seq;

    if ((seq & 3) == 0 && seq <= 128 * SOFTMAX_MAX_GROUPS)
    {
        float dp[SOFTMAX_MAX_GROUPS][4], pr[SOFTMAX_MAX_GROUPS][4];
        float dot = 0.0f;
#pragma unroll
        for (int g = 0; g < SOFTMAX_MAX_GROUPS; g++)
        {
            int j0 = g * 128 + lane * 4;
            float f[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
            if (j0 < seq) dropout_factor4(dropP, dropScale, seed, step, stream, (unsigned long long)(base + j0) >> 2, f);
#pragma unroll
            for (int r = 0; r < 4; r++)
            {
                bool in = j0 < seq;
                dp[g][r] = in ? load(dScores, base + j0 + r, dScoresType) * f[r] : 0.0f;
                pr[g][r] = in ? load(probs, base + j0 + r, probsType) : 0.0f;
                dot += dp[g][r] * pr[g][r];
            }
        }
        dot = warp_sum(dot);
#pragma unroll
        for (int g = 0; g < SOFTMAX_MAX_GROUPS; g++)
        {
            int j0 = g * 128 + lane * 4;
            if (j0 >= seq) continue;
#pragma unroll
            for (int r = 0; r < 4; r++)
                store(dScores, base + j0 + r, dScoresType, pr[g][r] * (dp[g][r] - dot));
        }
        return;
    }

    float dot = 0.0f;
    for (int j = lane; j < seq; j += 32)
    {
        long long i = base + j;
        float dp = load(dScores, i, dScoresType) * dropout_factor(dropP, dropScale, seed, step, stream, i);
        dot += dp * load(probs, i, probsType);
    }
    dot = warp_sum(dot);
    for (int j = lane; j < seq; j += 32)
    {
        long long i = base + j;
        float dp = load(dScores, i, dScoresType) * dropout_factor(dropP, dropScale, seed, step, stream, i);
        store(dScores, i, dScoresType, load(probs, i, probsType) * (dp - dot));
    }
}
