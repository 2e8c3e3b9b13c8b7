// Embedding sum + LayerNorm + dropout forward, and the deterministic scatter of the word-embedding
// gradient. The backward's LayerNorm part is layernorm_backward / layernorm_param_grad_partial (with the
// output dropout), the position and token-type gradients are column sums (reduce.cu).
// Launchers: CudaBackend.Embeddings.cs.
#include "common.cuh"

#define ROWS_PER_BLOCK 8

// One warp per token t of tokens = B·S; s = t mod seq. sum[t,:] = wordEmb[ids[t]] + posEmb[s] +
// typeEmb[types[t]] (NaN when an id is out of range, so the loss shows it); mean, rstd[t];
// out[t,:] = dropout(LN(sum)·gamma + beta) with mask index t·H + h. blockDim.x = 256.
extern "C" __global__ void embeddings_forward(void* out, int outType, void* sum, int sumType,
    float* mean, float* rstd, const int* inputIds, const int* tokenTypeIds,
    const float* wordEmb, const float* posEmb, const float* typeEmb, const float* gamma, const float* beta,
    int tokens, int seq, int hidden, int vocab, int typeVocab, int maxPositions, float eps,
    float dropP, float dropScale, unsigned long long seed, unsigned int step, unsigned int stream,
    const unsigned int* stepBase)
{
    step += *stepBase; // the device-side dropout counter (0 unless a captured step reads its own)
    int t = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (t >= tokens) return;  // warp-uniform
    int s = t % seq;
    int id = inputIds[t];
    int type = tokenTypeIds[t];
    bool valid = id >= 0 && id < vocab && type >= 0 && type < typeVocab && s < maxPositions;
    long long base = (long long)t * hidden;

    float acc = 0.0f;
    for (int h = lane; h < hidden; h += 32)
    {
        float v = valid
            ? wordEmb[(long long)id * hidden + h] + posEmb[(long long)s * hidden + h] + typeEmb[(long long)type * hidden + h]
            : quiet_nan();
        v = stored(v, sumType);
        store(sum, base + h, sumType, v);
        acc += v;
    }
    float mu = warp_sum(acc) / hidden;
    float q = 0.0f;
    for (int h = lane; h < hidden; h += 32)
    {
        float d = load(sum, base + h, sumType) - mu;
        q += d * d;
    }
    float rs = 1.0f / sqrtf(warp_sum(q) / hidden + eps);
    for (int h = lane; h < hidden; h += 32)
    {
        long long i = base + h;
        float y = (load(sum, i, sumType) - mu) * rs * gamma[h] + beta[h];
        store(out, i, outType, y * dropout_factor(dropP, dropScale, seed, step, stream, i));
    }
    if (lane == 0)
    {
        mean[t] = mu;
        rstd[t] = rs;
    }
}

#define SCATTER_THREADS 256

// table[id,:] += Σ over tokens u with ids[u] = id of dRows[u,:], for every id present, in token order.
// grid.x = tokens, blockDim.x = 256. Block t works only if t is the first token with its id (otherwise
// it returns: ids earlier in the sequence own the row), so each table row has exactly one writer and
// no atomics are needed. Tokens with an id outside [0, vocab) are skipped.
extern "C" __global__ void embedding_scatter_add(float* table, const float* dRows, const int* ids, int tokens,
    int hidden, int vocab)
{
    __shared__ int matches[SCATTER_THREADS];
    __shared__ int warpCounts[SCATTER_THREADS / 32];
    __shared__ int matchCount;
    int t = blockIdx.x;
    int id = ids[t];
    if (id < 0 || id >= vocab) return;  // block-uniform

    // Is there an earlier token with this id? Scanned a window at a time, so the many later occurrences
    // of frequent ids ([PAD], [CLS]) stop at the first window that shows one.
    for (int first = 0; first < t; first += blockDim.x)
    {
        int u = first + threadIdx.x;
        if (__syncthreads_or(u < t && ids[u] == id)) return;  // block-uniform
    }

    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int first = t; first < tokens; first += blockDim.x)
    {
        // Compact the tokens of this window that carry `id` into matches[], in token order.
        int u = first + threadIdx.x;
        int hit = u < tokens && ids[u] == id;
        unsigned int ballot = __ballot_sync(FULL_MASK, hit);
        if (lane == 0) warpCounts[warp] = __popc(ballot);
        __syncthreads();
        if (hit)
        {
            int slot = __popc(ballot & ((1u << lane) - 1u));
            for (int w = 0; w < warp; w++) slot += warpCounts[w];
            matches[slot] = u;
        }
        if (threadIdx.x == 0)
        {
            int n = 0;
            for (int w = 0; w < (int)(blockDim.x >> 5); w++) n += warpCounts[w];
            matchCount = n;
        }
        __syncthreads();
        int n = matchCount;
        for (int h = threadIdx.x; h < hidden; h += blockDim.x)
        {
            long long dst = (long long)id * hidden + h;
            float acc = table[dst];
            for (int k = 0; k < n; k++) acc += dRows[(long long)matches[k] * hidden + h];
            table[dst] = acc;
        }
        __syncthreads();  // matches, warpCounts and matchCount are rewritten by the next window
    }
}
