// Device helpers every kernel file includes: bf16 storage, typed loads and stores, Philox 4x32-10
// dropout (bit-identical to Bert.Runtime.Philox and DropoutSpec), warp and block reductions.
//
// Conventions of every kernel in this directory:
//   - Activation tensors arrive as (pointer, type) pairs: type 0 = F32, 1 = BF16, the values of
//     Bert.Runtime.DType. Parameters, gradients, LayerNorm statistics and weights are float*, indices int*.
//   - Arithmetic is fp32 (reductions of norms and losses fp64); bf16 is a storage format only.
//   - Block sizes are multiples of 32 and warp collectives are always executed by full warps.
//   - No float atomics: every reduction has a fixed order, so results repeat bit for bit.
//   - No headers: NVRTC compiles this without the CUDA toolkit's include directory.
#pragma once

typedef unsigned short bf16_t;

#define BERT_F32 0
#define BERT_BF16 1
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

__device__ __forceinline__ float bf16_to_float(bf16_t h) { return __uint_as_float(((unsigned int)h) << 16); }

__device__ __forceinline__ bf16_t float_to_bf16(float f)
{
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x0040u);  // NaN stays a quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                              // nearest, ties to even
    return (bf16_t)(u >> 16);
}

__device__ __forceinline__ float load(const void* p, long long i, int type)
{
    return type == BERT_BF16 ? bf16_to_float(((const bf16_t*)p)[i]) : ((const float*)p)[i];
}

__device__ __forceinline__ void store(void* p, long long i, int type, float v)
{
    if (type == BERT_BF16) ((bf16_t*)p)[i] = float_to_bf16(v);
    else ((float*)p)[i] = v;
}

// The value as a tensor of `type` holds it, so a later pass computes with exactly what was stored.
__device__ __forceinline__ float stored(float v, int type)
{
    return type == BERT_BF16 ? bf16_to_float(float_to_bf16(v)) : v;
}

// ---- four-element vector access ---------------------------------------------------------------------
// Elementwise kernels walk groups of four consecutive elements. When every tensor of the kernel is
// 16-byte aligned (aligned16 of all their addresses), a group is one 8-byte (bf16) or 16-byte (fp32)
// load or store instead of four.
struct __attribute__((aligned(16))) bert_chunk16 { unsigned long long lo, hi; };

__device__ __forceinline__ bool aligned16(const void* a, const void* b = 0, const void* c = 0)
{
    return (((unsigned long long)a | (unsigned long long)b | (unsigned long long)c) & 15ull) == 0;
}

// v[0..3] = p[i..i+3]; i a multiple of 4, p 16-byte aligned.
__device__ __forceinline__ void load4(const void* p, long long i, int type, float v[4])
{
    if (type == BERT_BF16)
    {
        unsigned long long u = *(const unsigned long long*)((const bf16_t*)p + i);
        v[0] = bf16_to_float((bf16_t)(u & 0xffffu));
        v[1] = bf16_to_float((bf16_t)((u >> 16) & 0xffffu));
        v[2] = bf16_to_float((bf16_t)((u >> 32) & 0xffffu));
        v[3] = bf16_to_float((bf16_t)(u >> 48));
    }
    else
    {
        bert_chunk16 c = *(const bert_chunk16*)((const float*)p + i);
        v[0] = __uint_as_float((unsigned int)(c.lo & 0xffffffffull));
        v[1] = __uint_as_float((unsigned int)(c.lo >> 32));
        v[2] = __uint_as_float((unsigned int)(c.hi & 0xffffffffull));
        v[3] = __uint_as_float((unsigned int)(c.hi >> 32));
    }
}

// p[i..i+3] = v[0..3] (rounded to bf16 when the type says so); i a multiple of 4, p 16-byte aligned.
__device__ __forceinline__ void store4(void* p, long long i, int type, const float v[4])
{
    if (type == BERT_BF16)
    {
        unsigned long long u = (unsigned long long)float_to_bf16(v[0])
            | ((unsigned long long)float_to_bf16(v[1]) << 16)
            | ((unsigned long long)float_to_bf16(v[2]) << 32)
            | ((unsigned long long)float_to_bf16(v[3]) << 48);
        *(unsigned long long*)((bf16_t*)p + i) = u;
    }
    else
    {
        bert_chunk16 c;
        c.lo = (unsigned long long)__float_as_uint(v[0]) | ((unsigned long long)__float_as_uint(v[1]) << 32);
        c.hi = (unsigned long long)__float_as_uint(v[2]) | ((unsigned long long)__float_as_uint(v[3]) << 32);
        *(bert_chunk16*)((float*)p + i) = c;
    }
}

// Eight-element groups: one 16-byte access for bf16, two for fp32. i a multiple of 8 (so i·2 and i·4
// bytes are multiples of 16), p 16-byte aligned.
__device__ __forceinline__ void load8(const void* p, long long i, int type, float v[8])
{
    if (type == BERT_BF16)
    {
        bert_chunk16 c = *(const bert_chunk16*)((const bf16_t*)p + i);
#pragma unroll
        for (int k = 0; k < 4; k++)
        {
            v[k] = bf16_to_float((bf16_t)((c.lo >> (16 * k)) & 0xffffull));
            v[4 + k] = bf16_to_float((bf16_t)((c.hi >> (16 * k)) & 0xffffull));
        }
    }
    else
    {
        load4(p, i, type, v);
        load4(p, i + 4, type, v + 4);
    }
}

__device__ __forceinline__ void store8(void* p, long long i, int type, const float v[8])
{
    if (type == BERT_BF16)
    {
        bert_chunk16 c;
        c.lo = 0ull;
        c.hi = 0ull;
#pragma unroll
        for (int k = 0; k < 4; k++)
        {
            c.lo |= (unsigned long long)float_to_bf16(v[k]) << (16 * k);
            c.hi |= (unsigned long long)float_to_bf16(v[4 + k]) << (16 * k);
        }
        *(bert_chunk16*)((bf16_t*)p + i) = c;
    }
    else
    {
        store4(p, i, type, v);
        store4(p, i + 4, type, v + 4);
    }
}

// Bytes per element of an activation tensor of `type`.
__device__ __forceinline__ int type_bytes(int type) { return type == BERT_BF16 ? 2 : 4; }

// ---- Philox 4x32-10 --------------------------------------------------------------------------------
// Counter = (index/4 low, index/4 high, step, stream), key = seed; lane = index mod 4. One evaluation
// gives the four lanes of a block, so kernels that walk four consecutive indices call philox4 once.
struct philox_out { unsigned int x, y, z, w; };

__device__ __forceinline__ philox_out philox4(unsigned long long seed, unsigned int step, unsigned int stream,
                                              unsigned long long block)
{
    unsigned int c0 = (unsigned int)block, c1 = (unsigned int)(block >> 32), c2 = step, c3 = stream;
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
#pragma unroll
    for (int round = 0; round < 10; round++)
    {
        unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        unsigned int n0 = hi1 ^ c1 ^ k0;
        unsigned int n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    philox_out r;
    r.x = c0; r.y = c1; r.z = c2; r.w = c3;
    return r;
}

__device__ __forceinline__ unsigned int philox_pick(philox_out r, unsigned int lane)
{
    return lane == 0 ? r.x : lane == 1 ? r.y : lane == 2 ? r.z : r.w;
}

__device__ __forceinline__ unsigned int philox_lane(unsigned long long seed, unsigned int step,
                                                    unsigned int stream, unsigned long long index)
{
    return philox_pick(philox4(seed, step, stream, index >> 2), (unsigned int)(index & 3ull));
}

// The dropout multiplier of one Philox output word: 0 when dropped, `scale` when kept.
__device__ __forceinline__ float dropout_of_word(unsigned int word, float p, float scale)
{
    float u = (float)(word >> 8) * (1.0f / 16777216.0f);
    return u >= p ? scale : 0.0f;
}

// The multipliers of the four elements 4·block .. 4·block + 3 (all 1 when p = 0).
__device__ __forceinline__ void dropout_factor4(float p, float scale, unsigned long long seed, unsigned int step,
                                                unsigned int stream, unsigned long long block, float f[4])
{
    if (!(p > 0.0f)) { f[0] = f[1] = f[2] = f[3] = 1.0f; return; }
    philox_out r = philox4(seed, step, stream, block);
    f[0] = dropout_of_word(r.x, p, scale);
    f[1] = dropout_of_word(r.y, p, scale);
    f[2] = dropout_of_word(r.z, p, scale);
    f[3] = dropout_of_word(r.w, p, scale);
}

// Multiplier of element `index` under dropout: 0 when dropped, `scale` = 1/(1-p) when kept, 1 when p = 0.
// u = (x >> 8)·2^-24 is exact in fp32, so keep = u >= p decides exactly as the CPU does.
__device__ __forceinline__ float dropout_factor(float p, float scale, unsigned long long seed,
                                                unsigned int step, unsigned int stream, long long index)
{
    if (!(p > 0.0f)) return 1.0f;
    return dropout_of_word(philox_lane(seed, step, stream, (unsigned long long)index), p, scale);
}

// ---- reductions (full warps only) ------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_double(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over a 1-D block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// scratch: __shared__ float[32]. All threads of the block must call it.
__device__ __forceinline__ float block_sum(float v, float* scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by the previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

__device__ __forceinline__ double block_sum_double(double v, double* scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum_double(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum_double(lane < warps ? scratch[lane] : 0.0);
}

// (value, index) pairs ordered by value, ties to the smaller index: the first maximum, as a serial scan finds.
__device__ __forceinline__ void argmax_merge(float& v, int& i, float ov, int oi)
{
    if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
}

// Block-wide first argmax; every thread gets the result. scratchV: __shared__ float[32], scratchI: int[32].
__device__ __forceinline__ void block_argmax(float& v, int& i, float* scratchV, int* scratchI)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(v, i, __shfl_xor_sync(FULL_MASK, v, o), __shfl_xor_sync(FULL_MASK, i, o));
    __syncthreads();
    if (lane == 0) { scratchV[warp] = v; scratchI[warp] = i; }
    __syncthreads();
    v = lane < warps ? scratchV[lane] : neg_inf();
    i = lane < warps ? scratchI[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(v, i, __shfl_xor_sync(FULL_MASK, v, o), __shfl_xor_sync(FULL_MASK, i, o));
}

// ---- activations (values of Bert.Runtime.Activation) -----------------------------------------------

#define ACT_NONE 0
#define ACT_GELU 1
#define ACT_GELU_TANH 2
#define ACT_RELU 3
#define ACT_TANH 4

__device__ __forceinline__ float activate(float x, int activation)
{
    switch (activation)
    {
        case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.7071067811865475f));
        case ACT_GELU_TANH:
        {
            float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            return 0.5f * x * (1.0f + tanhf(u));
        }
        case ACT_RELU: return x > 0.0f ? x : 0.0f;
        case ACT_TANH: return tanhf(x);
        default: return x;
    }
}

// d activate(x) / dx
__device__ __forceinline__ float activate_grad(float x, int activation)
{
    switch (activation)
    {
        case ACT_GELU:
        {
            float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865475f));
            float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
            return cdf + x * pdf;
        }
        case ACT_GELU_TANH:
        {
            float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            float t = tanhf(u);
            float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        }
        case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case ACT_TANH:
        {
            float t = tanhf(x);
            return 1.0f - t * t;
        }
        default: return 1.0f;
    }
}

// First index of a grid-stride loop over a 1-D grid, and its stride.
__device__ __forceinline__ long long grid_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_stride() { return (long long)gridDim.x * blockDim.x; }


// ---- tensor-core helpers (issue 12) -----------------------------------------------------------------
// Inline PTX for compute capability 8.0 and newer (mma.sync bf16 and cp.async need sm_80). Under the CPU
// emulator (BERT_CUDA_EMULATOR, defined by tests/Bert.Tests/Cuda/Emulator/cuda_emulator.h) C++ models that
// follow the PTX fragment layouts. Compiled for an older architecture they trap: launchers never start a
// tensor-core kernel there, and the module still loads, so fp32 on compute 7.x keeps working.
#if defined(BERT_CUDA_EMULATOR) || !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define BERT_TENSOR_CORES 1
#else
#define BERT_TENSOR_CORES 0
#endif

// d = a*b + c for a 16x16 (row) by 16x8 (col) bf16 tile, fp32 accumulate; d may be c. All 32 lanes call it.
// Lane l (g = l>>2, t = l&3) holds a[0] = A(g, 2t..2t+1), a[1] = A(g+8, 2t..), a[2] = A(g, 2t+8..),
// a[3] = A(g+8, 2t+8..); b[0] = B(2t..2t+1, g), b[1] = B(2t+8..2t+9, g); c/d[0..1] = (g, 2t..2t+1),
// c/d[2..3] = (g+8, 2t..2t+1). Two bf16 per register, the lower index in the low half.
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const unsigned int a[4], const unsigned int b[2],
                                                  const float c[4])
{
#if defined(BERT_CUDA_EMULATOR)
    emu::mma_m16n8k16_bf16(d, a, b, c);
#elif BERT_TENSOR_CORES
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
                   "f"(c[2]), "f"(c[3]));
#else
    d[0] = d[1] = d[2] = d[3] = quiet_nan();
    __trap();
#endif
}

// Shared-memory address of a generic pointer into shared memory, for the PTX operands below.
__device__ __forceinline__ unsigned int shared_address(const void* p)
{
#if defined(BERT_CUDA_EMULATOR)
    return 0;
#else
    return (unsigned int)__cvta_generic_to_shared(p);
#endif
}

// Four 8x8 b16 matrices from shared memory: lanes 8j..8j+7 pass the addresses of rows 0..7 of matrix j
// (16 bytes each, 16-byte aligned). Register j of lane l gets row l>>2, elements 2(l&3), 2(l&3)+1 of
// matrix j; the _trans form gets column l>>2, rows 2(l&3), 2(l&3)+1. All 32 lanes call it.
__device__ __forceinline__ void ldmatrix_x4(unsigned int r[4], const void* sharedRow)
{
#if defined(BERT_CUDA_EMULATOR)
    emu::ldmatrix_x4(r, sharedRow, false);
#elif BERT_TENSOR_CORES
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(sharedRow)));
#else
    r[0] = r[1] = r[2] = r[3] = 0u;
    __trap();
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned int r[4], const void* sharedRow)
{
#if defined(BERT_CUDA_EMULATOR)
    emu::ldmatrix_x4(r, sharedRow, true);
#elif BERT_TENSOR_CORES
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(sharedRow)));
#else
    r[0] = r[1] = r[2] = r[3] = 0u;
    __trap();
#endif
}

// 16 bytes global -> shared, both 16-byte aligned, asynchronously; cp_async_wait_all waits for this
// thread's copies (a __syncthreads must follow before other threads read them). A plain copy under the
// emulator and below compute 8.0.
__device__ __forceinline__ void cp_async_16(void* sharedDst, const void* globalSrc)
{
#if !defined(BERT_CUDA_EMULATOR) && BERT_TENSOR_CORES
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" : : "r"(shared_address(sharedDst)), "l"(globalSrc) : "memory");
#else
    *(bert_chunk16*)sharedDst = *(const bert_chunk16*)globalSrc;
#endif
}

__device__ __forceinline__ void cp_async_wait_all()
{
#if !defined(BERT_CUDA_EMULATOR) && BERT_TENSOR_CORES
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

// Two floats as one register of two bf16 (round to nearest even), `lo` in the low half.
__device__ __forceinline__ unsigned int pack_bf16x2(float lo, float hi)
{
    return (unsigned int)float_to_bf16(lo) | ((unsigned int)float_to_bf16(hi) << 16);
}
