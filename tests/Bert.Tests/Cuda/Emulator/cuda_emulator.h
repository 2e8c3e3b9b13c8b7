// Compiles the CUDA C kernels of src/Bert.Native/Kernels as plain C++ for the CPU emulator
// (emulator.cpp): CUDA keywords become C++, the built-in index variables are globals the scheduler sets
// before resuming a thread, and every warp or block collective goes through the emulator's barriers,
// which also report collectives that not all threads reach. Each CUDA thread of a block is a fiber on
// one OS thread; the blocks of a grid run one after another, so __shared__ can be a function-local
// static (shared by the block's threads, reused by the next block).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict

struct dim3
{
    unsigned int x = 1, y = 1, z = 1;
};

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu
{
// Implemented in emulator.cpp.
void syncthreads();
int syncthreads_or(int predicate);
std::uint64_t warp_exchange(std::uint64_t bits, int sourceLane, unsigned int mask);
unsigned int warp_ballot(int predicate, unsigned int mask);
int lane_id();
}  // namespace emu

inline void __syncthreads() { emu::syncthreads(); }
inline int __syncthreads_or(int predicate) { return emu::syncthreads_or(predicate); }

template <typename T>
inline T emu_shuffle_from(T value, int sourceLane, unsigned int mask)
{
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = emu::warp_exchange(bits, sourceLane, mask);
    T result;
    std::memcpy(&result, &bits, sizeof(T));
    return result;
}

template <typename T>
inline T __shfl_xor_sync(unsigned int mask, T value, int laneMask)
{
    return emu_shuffle_from(value, emu::lane_id() ^ laneMask, mask);
}

template <typename T>
inline T __shfl_down_sync(unsigned int mask, T value, unsigned int delta)
{
    int source = emu::lane_id() + (int)delta;
    T result = emu_shuffle_from(value, source < 32 ? source : emu::lane_id(), mask);
    return result;
}

template <typename T>
inline T __shfl_sync(unsigned int mask, T value, int sourceLane)
{
    return emu_shuffle_from(value, sourceLane & 31, mask);
}

inline unsigned int __ballot_sync(unsigned int mask, int predicate) { return emu::warp_ballot(predicate, mask); }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((std::uint64_t)a * b) >> 32); }

inline float __uint_as_float(unsigned int u)
{
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline unsigned int __float_as_uint(float f)
{
    unsigned int u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float __int_as_float(int i)
{
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// ---- tensor-core helpers (issue 12) ------------------------------------------------------------
// BERT_CUDA_EMULATOR tells kernel sources to take these C++ paths instead of inline PTX.
#define BERT_CUDA_EMULATOR 1

namespace emu
{
inline float bf16_bits_to_float(unsigned int h) { unsigned int u = h << 16; float f; std::memcpy(&f, &u, 4); return f; }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 over the fragments of all 32 lanes, in the PTX
// layout: groupID g = lane >> 2, t = lane & 3. A (16x16, row-major), registers of two bf16 (low half
// first): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..). B (16x8, "col"): b0 rows
// k = 2t..2t+1 of column g, b1 rows k = 2t+8..2t+9. C/D (16x8 fp32): c0,c1 (g, 2t..2t+1), c2,c3 (g+8, ..).
inline void mma_m16n8k16_bf16_warp(float d[32][4], const unsigned int a[32][4], const unsigned int b[32][2],
                                   const float c[32][4])
{
    float A[16][16], B[16][8];
    for (int lane = 0; lane < 32; lane++)
    {
        int g = lane >> 2, t = lane & 3;
        for (int r = 0; r < 4; r++)
            for (int h = 0; h < 2; h++)
                A[g + (r & 1) * 8][2 * t + h + (r >> 1) * 8] = bf16_bits_to_float((a[lane][r] >> (16 * h)) & 0xffffu);
        for (int r = 0; r < 2; r++)
            for (int h = 0; h < 2; h++)
                B[2 * t + h + r * 8][g] = bf16_bits_to_float((b[lane][r] >> (16 * h)) & 0xffffu);
    }
    for (int lane = 0; lane < 32; lane++)
    {
        int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; i++)
        {
            int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
            float acc = c[lane][i];
            for (int k = 0; k < 16; k++) acc += A[row][k] * B[k][col];
            d[lane][i] = acc;
        }
    }
}

std::uint64_t warp_exchange(std::uint64_t bits, int sourceLane, unsigned int mask);
int lane_id();

// One lane's part of the warp-collective MMA: gathers every lane's A and B fragments by warp exchanges
// (so all 32 lanes must call it, as on the device) and computes this lane's D fragment.
inline void mma_m16n8k16_bf16(float d[4], const unsigned int a[4], const unsigned int b[2], const float c[4])
{
    unsigned int A[32][4] = {}, B[32][2] = {};
    float C[32][4] = {}, D[32][4];
    for (int src = 0; src < 32; src++)
    {
        std::uint64_t w0 = warp_exchange(a[0] | ((std::uint64_t)a[1] << 32), src, 0xffffffffu);
        std::uint64_t w1 = warp_exchange(a[2] | ((std::uint64_t)a[3] << 32), src, 0xffffffffu);
        std::uint64_t w2 = warp_exchange(b[0] | ((std::uint64_t)b[1] << 32), src, 0xffffffffu);
        A[src][0] = (unsigned int)w0, A[src][1] = (unsigned int)(w0 >> 32);
        A[src][2] = (unsigned int)w1, A[src][3] = (unsigned int)(w1 >> 32);
        B[src][0] = (unsigned int)w2, B[src][1] = (unsigned int)(w2 >> 32);
    }
    int lane = lane_id();
    for (int i = 0; i < 4; i++) C[lane][i] = c[i];
    mma_m16n8k16_bf16_warp(D, A, B, C);
    for (int i = 0; i < 4; i++) d[i] = D[lane][i];
}

// ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: lanes 8j..8j+7 give the row addresses of 8x8 matrix j
// (16 bytes each); register j of lane l gets row l>>2, elements 2(l&3), 2(l&3)+1 of matrix j (with
// .trans: column l>>2, rows 2(l&3), 2(l&3)+1), low half first.
inline void ldmatrix_x4(unsigned int r[4], const void* rowAddress, bool trans)
{
    const unsigned short* rows[32];
    for (int src = 0; src < 32; src++)
        rows[src] = (const unsigned short*)(std::uintptr_t)warp_exchange((std::uint64_t)(std::uintptr_t)rowAddress, src, 0xffffffffu);
    int lane = lane_id(), q = lane >> 2, p = 2 * (lane & 3);
    for (int j = 0; j < 4; j++)
    {
        unsigned int lo = trans ? rows[8 * j + p][q] : rows[8 * j + q][p];
        unsigned int hi = trans ? rows[8 * j + p + 1][q] : rows[8 * j + q][p + 1];
        r[j] = lo | (hi << 16);
    }
}
}  // namespace emu

#include <cstddef>
#include <type_traits>
#include <utility>

namespace emu
{
// Calls a kernel with cuLaunchKernel's argument convention: args[i] points at the value of parameter i.
template <typename... A, std::size_t... I>
inline void invoke_impl(void (*kernel)(A...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <typename... A>
inline void invoke(void (*kernel)(A...), void** args)
{
    invoke_impl(kernel, args, std::index_sequence_for<A...>{});
}

struct KernelEntry
{
    const char* name;
    void (*launch)(void** args);
};
}  // namespace emu

// Provided by the generated kernel table (kernels.cpp).
extern const emu::KernelEntry kEmuKernels[];
extern const int kEmuKernelCount;
