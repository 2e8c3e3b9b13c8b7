// Softmax cross-entropy fused with its gradient, with deterministic statistics: block k handles rows
// k, k + gridDim.x, … in order and writes its sums to partial[k][0..2] (fp64); softmax_xent_finish adds
// the blocks in order into stats[0..2]. Launchers: CudaBackend.Loss.cs.
#include "common.cuh"

// logits[N,C]; labels[N]; weights[N] or null (all 1). dLogits[N,C] = gradScale·w·(softmax − onehot(label))
// (may alias logits). partial[block][0] = Σ gradScale·w·CE, [1] = Σ w·[first argmax = label], [2] = Σ w.
// A label outside [0, C) marks a row to ignore: weight 0, zero gradient. blockDim.x = 256.
extern "C" __global__ void softmax_xent_forward_backward(void* dLogits, int dLogitsType, double* partial,
    const void* logits, int logitsType, const int* labels, const float* weights, int rows, int classes,
    float gradScale)
{
    __shared__ float scratchV[32];
    __shared__ int scratchI[32];
    double lossSum = 0.0, correctSum = 0.0, weightSum = 0.0;  // used by thread 0
    for (int r = blockIdx.x; r < rows; r += gridDim.x)
    {
        long long base = (long long)r * classes;
        int label = labels[r];
        bool valid = label >= 0 && label < classes;
        float w = valid ? (weights != 0 ? weights[r] : 1.0f) : 0.0f;
        // Read before any thread overwrites the row (dLogits may alias logits); the barriers inside
        // block_argmax order this read before the writes below.
        float labelLogit = valid ? load(logits, base + label, logitsType) : 0.0f;

        float mx = neg_inf();
        int arg = 0x7fffffff;
        for (int c = threadIdx.x; c < classes; c += blockDim.x)
            argmax_merge(mx, arg, load(logits, base + c, logitsType), c);
        block_argmax(mx, arg, scratchV, scratchI);

        float s = 0.0f;
        for (int c = threadIdx.x; c < classes; c += blockDim.x) s += expf(load(logits, base + c, logitsType) - mx);
        s = block_sum(s, scratchV);

        float gw = gradScale * w;
        for (int c = threadIdx.x; c < classes; c += blockDim.x)
        {
            float pr = expf(load(logits, base + c, logitsType) - mx) / s;
            store(dLogits, base + c, dLogitsType, gw * (pr - (c == label ? 1.0f : 0.0f)));
        }
        if (threadIdx.x == 0 && valid)
        {
            float ce = mx + logf(s) - labelLogit;
            lossSum += (double)gw * (double)ce;
            correctSum += arg == label ? (double)w : 0.0;
            weightSum += (double)w;
        }
        __syncthreads();  // the reductions' scratch is reused by the next row
    }
    if (threadIdx.x == 0)
    {
        partial[(long long)blockIdx.x * 3 + 0] = lossSum;
        partial[(long long)blockIdx.x * 3 + 1] = correctSum;
        partial[(long long)blockIdx.x * 3 + 2] = weightSum;
    }
}

// stats[k] = Σ_block partial[block][k] for k < 3, blocks added in order (overwrites). One block of 32.
extern "C" __global__ void softmax_xent_finish(float* stats, const double* partial, int blocks)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double a = 0.0, b = 0.0, c = 0.0;
    for (int k = 0; k < blocks; k++)
    {
        a += partial[(long long)k * 3 + 0];
        b += partial[(long long)k * 3 + 1];
        c += partial[(long long)k * 3 + 2];
    }
    stats[0] = (float)a;
    stats[1] = (float)b;
    stats[2] = (float)c;
}
