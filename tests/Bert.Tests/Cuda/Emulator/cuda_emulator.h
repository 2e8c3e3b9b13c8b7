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
#define __launch_bounds__(...)
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
// BERT_CUDA_EMULATOR tells kernel sources (common.cuh) to take these C++ models instead of inline PTX.
#define BERT_CUDA_EMULATOR 1

namespace emu
{
// Implemented in emulator.cpp: every lane of the warp publishes `bits`; returns the 32 published values,
// valid until this lane's next warp collective.
const std::uint64_t* warp_publish(std::uint64_t bits, unsigned int mask);

inline float bf16_bits_to_float(unsigned int h) { unsigned int u = h << 16; float f; std::memcpy(&f, &u, 4); return f; }

// all[l] = lane l's `mine` (bytes each), for every lane: a warp collective of two rounds. The first
// publishes the addresses; the second keeps every lane from changing its data before all have copied.
inline void warp_gather(const void* mine, void* all, std::size_t bytes)
{
    const std::uint64_t* from = warp_publish((std::uint64_t)(std::uintptr_t)mine, 0xffffffffu);
    for (int lane = 0; lane < 32; lane++)
        std::memcpy((char*)all + lane * bytes, (const void*)(std::uintptr_t)from[lane], bytes);
    warp_publish(0, 0xffffffffu);
}

// The A and B fragments one lane holds for mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32.
struct MmaFragments
{
    unsigned int a[4];
    unsigned int b[2];
};

// Lane `lane`'s D fragment from every lane's A/B fragments and its own C, in the PTX ISA layout
// (groupID g = lane >> 2, t = lane & 3; registers hold two bf16, the lower column/row in the low half):
//   A 16x16 row-major: a0 (g, 2t..2t+1), a1 (g+8, 2t..2t+1), a2 (g, 2t+8..2t+9), a3 (g+8, 2t+8..2t+9)
//   B 16x8 ("col"):    b0 (k = 2t..2t+1, n = g), b1 (k = 2t+8..2t+9, n = g)
//   C/D 16x8 fp32:     c0, c1 (g, 2t..2t+1), c2, c3 (g+8, 2t..2t+1)
// Products of bf16 are exact in fp32; the sum runs in fp32, k ascending.
inline void mma_m16n8k16_bf16_lane(float d[4], const MmaFragments all[32], int lane, const float c[4])
{
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++)
    {
        int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; r++)
            for (int h = 0; h < 2; h++)
                A[g + (r & 1) * 8][2 * t + h + (r >> 1) * 8] = bf16_bits_to_float((all[l].a[r] >> (16 * h)) & 0xffffu);
        for (int r = 0; r < 2; r++)
            for (int h = 0; h < 2; h++)
                B[2 * t + h + r * 8][g] = bf16_bits_to_float((all[l].b[r] >> (16 * h)) & 0xffffu);
    }
    int g = lane >> 2, t = lane & 3;
    float out[4];
    for (int i = 0; i < 4; i++)
    {
        int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
        float acc = c[i];
        for (int k = 0; k < 16; k++) acc += A[row][k] * B[k][col];
        out[i] = acc;
    }
    for (int i = 0; i < 4; i++) d[i] = out[i];   // d may alias c
}

// One lane's part of the warp-collective MMA: every lane must call it, as on the device.
inline void mma_m16n8k16_bf16(float d[4], const unsigned int a[4], const unsigned int b[2], const float c[4])
{
    MmaFragments mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}}, all[32];
    warp_gather(&mine, all, sizeof mine);
    mma_m16n8k16_bf16_lane(d, all, lane_id(), c);
}

// ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16 for lane `lane`, given the 32 lanes' row addresses
// (lanes 8j..8j+7 address rows 0..7 of 8x8 matrix j, 16 bytes each). Register j gets row lane>>2,
// elements 2(lane&3), 2(lane&3)+1 of matrix j; with .trans, column lane>>2, rows 2(lane&3), 2(lane&3)+1.
inline void ldmatrix_x4_lane(unsigned int r[4], const std::uint64_t rowAddresses[32], int lane, bool trans)
{
    int q = lane >> 2, p = 2 * (lane & 3);
    for (int j = 0; j < 4; j++)
    {
        const unsigned short* row0 = (const unsigned short*)(std::uintptr_t)rowAddresses[8 * j + (trans ? p : q)];
        const unsigned short* row1 = (const unsigned short*)(std::uintptr_t)rowAddresses[8 * j + (trans ? p + 1 : q)];
        unsigned int lo = trans ? row0[q] : row0[p];
        unsigned int hi = trans ? row1[q] : row1[p + 1];
        r[j] = lo | (hi << 16);
    }
}

inline void ldmatrix_x4(unsigned int r[4], const void* rowAddress, bool trans)
{
    std::uint64_t rows[32];
    const std::uint64_t* from = warp_publish((std::uint64_t)(std::uintptr_t)rowAddress, 0xffffffffu);
    for (int l = 0; l < 32; l++) rows[l] = from[l];
    ldmatrix_x4_lane(r, rows, lane_id(), trans);
    warp_publish(0, 0xffffffffu);   // no lane writes shared memory before every lane has read
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
