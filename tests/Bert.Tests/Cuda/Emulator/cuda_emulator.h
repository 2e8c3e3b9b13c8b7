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
