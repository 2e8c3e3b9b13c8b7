// Softmax cross-entropy fused with its gradient (the MLM, NSP and classifier heads), with deterministic
// statistics: block k handles rows k, k + gridDim.x, … in order and writes its sums to partial[k][0..2]
// (fp64); softmax_xent_finish adds the blocks in order into stats[0..2]. Launchers: CudaBackend.Loss.cs.
//
// A row is read twice and written once, in place when dLogits aliases logits (the MLM head's bf16 logits
// [B·P, V] become their gradient): pass 1 keeps an online (max, Σ exp, first argmax) per thread, merged
// across the block in a fixed order; pass 2 writes gw·(softmax − onehot). Pass 1 walks the row from its
// end, so pass 2 starts on the part most recently read (still in L2 for long rows). Both passes read the
// row as 16-byte vectors (8 bf16 or 2 × 4 fp32) from its first 16-byte boundary, the few elements before
// that boundary and after the last full vector one by one, so rows of any width (V = 30522) and any
// alignment work.
#include "common.cuh"

// Online softmax statistics of a stream of values: max m, s = Σ exp(x − m), arg = first index of m.
// x == m counts exp(0) = 1 exactly, which also keeps a −∞ max from producing exp(−∞ + ∞) = NaN; a NaN
// x makes s NaN (the loss shows it).
struct xent_stats { float m; float s; int arg; };

__device__ __forceinline__ void xent_push(xent_stats& a, float x, int c)
{
    if (x > a.m)
    {
        a.s = a.s * expf(a.m - x) + 1.0f;
        a.m = x;
        a.arg = c;
    }
    else if (x == a.m)
    {
        a.s += 1.0f;
        if (c < a.arg) a.arg = c;
    }
    else a.s += expf(x - a.m);
}

// Symmetric in its two arguments (bit for bit), so an xor butterfly leaves the same value in every lane.
__device__ __forceinline__ xent_stats xent_merge(xent_stats a, xent_stats b)
{
    xent_stats r;
    r.m = a.m > b.m ? a.m : b.m;
    float sa = a.m == r.m ? a.s : a.s * expf(a.m - r.m);
    float sb = b.m == r.m ? b.s : b.s * expf(b.m - r.m);
    r.s = sa + sb;
    r.arg = a.arg;
    if (b.m > a.m || (b.m == a.m && b.arg < a.arg)) r.arg = b.arg;
    return r;
}

__device__ __forceinline__ xent_stats xent_warp_merge(xent_stats a)
{
    for (int o = 16; o > 0; o >>= 1)
    {
        xent_stats b;
        b.m = __shfl_xor_sync(FULL_MASK, a.m, o);
        b.s = __shfl_xor_sync(FULL_MASK, a.s, o);
        b.arg = __shfl_xor_sync(FULL_MASK, a.arg, o);
        a = xent_merge(a, b);
    }
    return a;
}

// logits[N,C] with rows `stride` apart (stride ≥ C: the padded vocabulary GEMM's rows); their padding columns
// [C, stride) are never read, and those of dLogits are set to 0 (the backward GEMMs may read them).
// labels[N]; weights[N] or null (all 1). gradScaleOnDevice, when not null, replaces gradScale (read here, so a
// captured graph follows a scale that changes from step to step). dLogits[N,C] = gradScale·w·(softmax − onehot(label))
// (may alias logits; its type may differ). partial[block][0] = gradScale·Σ w·CE, [1] = Σ w·[first argmax =
// label], [2] = Σ w. A label outside [0, C) marks a row to ignore: weight 0. A row of weight 0 gets a zero
// gradient without its logits being read and adds nothing (so non-finite logits there do no harm), as on
// the CPU. Sums of exponentials in fp32, CE and the statistics in fp64. blockDim.x = 256.
extern "C" __global__ void softmax_xent_forward_backward(void* dLogits, int dLogitsType, double* partial,
    const void* logits, int logitsType, const int* labels, const float* weights, int rows, int classes,
    int stride, float gradScale, const float* gradScaleOnDevice)
{
    if (gradScaleOnDevice != 0) gradScale = *gradScaleOnDevice;
    __shared__ float scratchM[32];
    __shared__ float scratchS[32];
    __shared__ int scratchA[32];
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    int inBytes = type_bytes(logitsType), outBytes = type_bytes(dLogitsType);
    double lossSum = 0.0, correctSum = 0.0, weightSum = 0.0;  // used by thread 0
    for (int r = blockIdx.x; r < rows; r += gridDim.x)
    {
        long long base = (long long)r * stride;
        for (int c = classes + tid; c < stride; c += blockDim.x) store(dLogits, base + c, dLogitsType, 0.0f);
        int label = labels[r];
        bool valid = label >= 0 && label < classes;
        float w = valid ? (weights != 0 ? weights[r] : 1.0f) : 0.0f;
        // Elements before the row's first 16-byte boundary, full 8-element vectors, the rest.
        unsigned long long address = (unsigned long long)logits + (unsigned long long)base * inBytes;
        int head = (address & (unsigned long long)(inBytes - 1)) != 0
            ? classes : min(classes, (int)(((16ull - (address & 15ull)) & 15ull) / inBytes));
        int vectors = (classes - head) >> 3;
        int tail = head + vectors * 8;
        unsigned long long outAddress = (unsigned long long)dLogits + (unsigned long long)(base + head) * outBytes;
        bool vectorOut = (outAddress & 15ull) == 0;

        if (w == 0.0f)
        {
            for (int c = tid; c < head; c += blockDim.x) store(dLogits, base + c, dLogitsType, 0.0f);
            const float zero[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            for (int j = tid; j < vectors; j += blockDim.x)
            {
                long long i = base + head + 8LL * j;
                if (vectorOut) store8(dLogits, i, dLogitsType, zero);
                else for (int k = 0; k < 8; k++) store(dLogits, i + k, dLogitsType, 0.0f);
            }
            for (int c = tail + tid; c < classes; c += blockDim.x) store(dLogits, base + c, dLogitsType, 0.0f);
            continue;  // uniform across the block: no barrier is skipped by some threads only
        }

        // Read before any thread overwrites the row (dLogits may alias logits); the block merge's barriers
        // order this read before the writes of pass 2.
        float labelLogit = tid == 0 ? load(logits, base + label, logitsType) : 0.0f;

        // Pass 1, from the row's end.
        xent_stats st;
        st.m = neg_inf();
        st.s = 0.0f;
        st.arg = 0x7fffffff;
        for (int c = tail + tid; c < classes; c += blockDim.x) xent_push(st, load(logits, base + c, logitsType), c);
        for (int j = vectors - 1 - tid; j >= 0; j -= blockDim.x)
        {
            float v[8];
            load8(logits, base + head + 8LL * j, logitsType, v);
#pragma unroll
            for (int k = 0; k < 8; k++) xent_push(st, v[k], head + 8 * j + k);
        }
        for (int c = tid; c < head; c += blockDim.x) xent_push(st, load(logits, base + c, logitsType), c);

        st = xent_warp_merge(st);
        __syncthreads();  // the scratch may still be read for the previous row
        if (lane == 0)
        {
            scratchM[warp] = st.m;
            scratchS[warp] = st.s;
            scratchA[warp] = st.arg;
        }
        __syncthreads();
        st.m = lane < warps ? scratchM[lane] : neg_inf();
        st.s = lane < warps ? scratchS[lane] : 0.0f;
        st.arg = lane < warps ? scratchA[lane] : 0x7fffffff;
        st = xent_warp_merge(st);

        // Pass 2: d = exp(x − max)·(gw / Σ), minus gw at the label (the CPU backend's formula).
        float gw = gradScale * w;
        float coef = gw / st.s;
        for (int c = tid; c < head; c += blockDim.x)
        {
            float d = expf(load(logits, base + c, logitsType) - st.m) * coef;
            store(dLogits, base + c, dLogitsType, c == label ? d - gw : d);
        }
        for (int j = tid; j < vectors; j += blockDim.x)
        {
            long long i = base + head + 8LL * j;
            int c0 = head + 8 * j;
            float v[8];
            load8(logits, i, logitsType, v);
#pragma unroll
            for (int k = 0; k < 8; k++)
            {
                v[k] = expf(v[k] - st.m) * coef;
                if (c0 + k == label) v[k] -= gw;
            }
            if (vectorOut) store8(dLogits, i, dLogitsType, v);
            else for (int k = 0; k < 8; k++) store(dLogits, i + k, dLogitsType, v[k]);
        }
        for (int c = tail + tid; c < classes; c += blockDim.x)
        {
            float d = expf(load(logits, base + c, logitsType) - st.m) * coef;
            store(dLogits, base + c, dLogitsType, c == label ? d - gw : d);
        }

        if (tid == 0)
        {
            double ce = (double)st.m + log((double)st.s) - (double)labelLogit;
            lossSum += (double)w * ce;
            correctSum += st.arg == label ? (double)w : 0.0;
            weightSum += (double)w;
        }
    }
    if (tid == 0)
    {
        partial[(long long)blockIdx.x * 3 + 0] = (double)gradScale * lossSum;
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
