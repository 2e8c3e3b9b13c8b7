// Attention around cuBLAS's strided-batched GEMMs: head split/merge permutations between the row-major
// [B·S, parts·H] activations and the per-head [B, NH, S, HD] workspace, and the masked softmax forward
// and backward over probs[B, NH, S, S] (the dropout mask index is the flat index into probs).
// Launchers: CudaBackend.Attention.cs.
#include "common.cuh"

#define ROWS_PER_BLOCK 8

// in[B·S, parts·H] (parts = 3: q | k | v, each head-major NH×HD; parts = 1: context) → part p of
// {q, k, v}[B, NH, S, HD]. Unused part pointers may be null. 1-D grid-stride over the input.
extern "C" __global__ void attention_split_heads(void* q, void* k, void* v, int outType, const void* in, int inType,
    int batch, int seq, int heads, int headDim, int parts)
{
    long long hidden = (long long)heads * headDim;
    long long width = parts * hidden;
    long long total = (long long)batch * seq * width;
    for (long long i = grid_index(); i < total; i += grid_stride())
    {
        long long row = i / width, col = i % width;
        int part = (int)(col / hidden);
        long long c = col % hidden;
        long long h = c / headDim, d = c % headDim;
        long long b = row / seq, s = row % seq;
        long long dst = ((b * heads + h) * seq + s) * headDim + d;
        void* o = part == 0 ? q : part == 1 ? k : v;
        store(o, dst, outType, load(in, i, inType));
    }
}

// The inverse: out[B·S, parts·H] ← {q, k, v}[B, NH, S, HD]. 1-D grid-stride over the output.
extern "C" __global__ void attention_merge_heads(void* out, int outType, const void* q, const void* k, const void* v,
    int inType, int batch, int seq, int heads, int headDim, int parts)
{
    long long hidden = (long long)heads * headDim;
    long long width = parts * hidden;
    long long total = (long long)batch * seq * width;
    for (long long i = grid_index(); i < total; i += grid_stride())
    {
        long long row = i / width, col = i % width;
        int part = (int)(col / hidden);
        long long c = col % hidden;
        long long h = c / headDim, d = c % headDim;
        long long b = row / seq, s = row % seq;
        long long src = ((b * heads + h) * seq + s) * headDim + d;
        const void* x = part == 0 ? q : part == 1 ? k : v;
        store(out, i, outType, load(x, src, inType));
    }
}

// probs[B,NH,S,S] in place: the scaled scores become softmax over keys j with mask[b·S + j] ≠ 0; masked
// keys get probability 0, and a row with every key masked becomes all zeros. One warp per row
// (rows = B·NH·S), blockDim.x = 256.
extern "C" __global__ void attention_softmax_forward(void* probs, int probsType, const int* mask,
    int batch, int heads, int seq)
{
    long long rows = (long long)batch * heads * seq;
    long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long b = row / ((long long)heads * seq);
    const int* m = mask + b * seq;
    long long base = row * seq;

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
    }
}

// In place on dScores[B,NH,S,S], which holds the gradient of the dropped probabilities on entry:
//   dP = dropout(dIn) (mask index = flat probs index), dScores = P ⊙ (dP − Σ_j dP·P).
// The 1/√HD of the scores is left to the GEMMs that consume dScores. One warp per row, blockDim.x = 256.
extern "C" __global__ void attention_softmax_backward(void* dScores, int dScoresType, const void* probs, int probsType,
    int batch, int heads, int seq, float dropP, float dropScale, unsigned long long seed, unsigned int step,
    unsigned int stream)
{
    long long rows = (long long)batch * heads * seq;
    long long row = (long long)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    long long base = row * seq;

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
