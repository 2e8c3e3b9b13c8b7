// CPU emulator of the CUDA device for tests without a GPU. A child process of the test run: it reads
// commands on stdin and answers on stdout (little-endian binary, see EmulatedDevice.cs), holds "device
// memory" as host allocations, runs kernels block after block, and
// runs GEMMs with cuBLAS's column-major semantics. Single-threaded and deterministic: CUDA threads are
// fibers (see run_block). Built with AddressSanitizer, so an out-of-bounds
// access in a kernel ends the process with a report naming the kernel, instead of corrupting memory.
// Collectives are strict: a __syncthreads or warp shuffle that not every thread of the block or warp
// reaches (because some returned) is reported as an error, as is a mask other than the full warp.
#include "cuda_emulator.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <sys/mman.h>
#include <ucontext.h>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace
{
// ---- fibers -----------------------------------------------------------------------------------
// The threads of a block are fibers run by a round-robin scheduler on the main stack: a fiber runs
// until it waits at a barrier or returns. Barriers release their waiters when the last participant
// arrives; a scheduler pass in which nothing can run while threads remain is a deadlock.

constexpr std::size_t StackBytes = 256 * 1024;

enum class State { Runnable, AtSync, AtWarp, Done };

struct Fiber
{
    ucontext_t context;
    char* stack = nullptr;
    State state = State::Done;
    dim3 index;
};

struct Warp
{
    int arrived = 0;
    int done = 0;
    unsigned generation = 0;
    std::uint64_t slots[2][32] = {};   // by generation parity: a fast lane may publish the next round early
};

struct Block
{
    const emu::KernelEntry* kernel = nullptr;
    void** args = nullptr;
    int threads = 0;
    int current = -1;
    int syncArrived = 0;
    int done = 0;
    unsigned syncGeneration = 0;
    int orAccumulator = 0;
    int orResult[2] = {};
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::string error;
    ucontext_t scheduler;
#if EMU_ASAN
    const void* schedulerStack = nullptr;
    std::size_t schedulerStackSize = 0;
#endif
};

Block g_block;

std::string where()
{
    return " (block " + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) +
           ", thread " + std::to_string(threadIdx.x) + "," + std::to_string(threadIdx.y) + "," + std::to_string(threadIdx.z) + ")";
}

// From the running fiber back to the scheduler. `dying`: the fiber will not be resumed (ASan frees its fake stack).
void yield_to_scheduler(bool dying = false)
{
    Fiber& f = g_block.fibers[g_block.current];
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(dying ? nullptr : &fake, g_block.schedulerStack, g_block.schedulerStackSize);
    swapcontext(&f.context, &g_block.scheduler);
    __sanitizer_finish_switch_fiber(fake, &g_block.schedulerStack, &g_block.schedulerStackSize);
#else
    (void)dying;
    swapcontext(&f.context, &g_block.scheduler);
#endif
}

// Records the first error and parks the fiber for good; the scheduler abandons the launch.
[[noreturn]] void fail(const std::string& what)
{
    if (g_block.error.empty()) g_block.error = what + where();
    g_block.fibers[g_block.current].state = State::Done;
    for (;;) yield_to_scheduler(true);
}

void fiber_main(int index)
{
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_block.schedulerStack, &g_block.schedulerStackSize);
#endif
    g_block.kernel->launch(g_block.args);
    Fiber& f = g_block.fibers[index];
    Warp& w = g_block.warps[index >> 5];
    if (w.arrived > 0) fail("a lane returned while others wait in a warp collective");
    if (g_block.syncArrived > 0) fail("a thread returned while others wait at __syncthreads");
    w.done++;
    g_block.done++;
    f.state = State::Done;
    for (;;) yield_to_scheduler(true);
}

void resume(int t)
{
    Fiber& f = g_block.fibers[t];
    g_block.current = t;
    threadIdx = f.index;
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack, StackBytes);
    swapcontext(&g_block.scheduler, &f.context);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    swapcontext(&g_block.scheduler, &f.context);
#endif
}

std::string run_block()
{
    Block& b = g_block;
    for (int t = 0; t < b.threads; t++)
    {
        Fiber& f = b.fibers[t];
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = StackBytes;
        f.context.uc_link = nullptr;
        makecontext(&f.context, (void (*)())fiber_main, 1, t);
        f.state = State::Runnable;
    }
    for (auto& w : b.warps) w = Warp{};
    b.syncArrived = b.done = 0;
    b.orAccumulator = 0;
    while (b.done < b.threads)
    {
        bool progressed = false;
        for (int t = 0; t < b.threads && b.error.empty(); t++)
        {
            if (b.fibers[t].state != State::Runnable) continue;
            progressed = true;
            resume(t);
        }
        if (!b.error.empty()) return b.error;
        if (!progressed)
        {
            int atSync = 0, atWarp = 0;
            for (auto& f : b.fibers)
            {
                atSync += f.state == State::AtSync;
                atWarp += f.state == State::AtWarp;
            }
            return "deadlock: " + std::to_string(atSync) + " thread(s) at __syncthreads, " + std::to_string(atWarp) +
                   " in warp collectives, " + std::to_string(b.done) + " returned (block " + std::to_string(blockIdx.x) + ")";
        }
    }
    return "";
}

std::string run_kernel(const emu::KernelEntry& kernel, dim3 grid, dim3 block, void** args)
{
    long long threads = (long long)block.x * block.y * block.z;
    if (threads <= 0 || threads > 1024 || threads % 32 != 0) return "block size must be a positive multiple of 32, at most 1024";
    Block& b = g_block;
    b.kernel = &kernel;
    b.args = args;
    b.threads = (int)threads;
    b.error.clear();
    if ((long long)b.fibers.size() < threads) b.fibers.resize(threads);
    for (int t = 0; t < threads; t++)
    {
        Fiber& f = b.fibers[t];
        if (f.stack == nullptr)
        {
            void* p = mmap(nullptr, StackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) return "cannot map a fiber stack";
            f.stack = (char*)p;
        }
        f.index.x = t % block.x;
        f.index.y = (t / block.x) % block.y;
        f.index.z = t / (block.x * block.y);
    }
    b.warps.assign(threads / 32, Warp{});
    blockDim = block;
    gridDim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++)
            {
                blockIdx.x = x;
                blockIdx.y = y;
                blockIdx.z = z;
                std::string e = run_block();
                if (!e.empty()) return std::string(kernel.name) + ": " + e;
            }
    return "";
}
}  // namespace

namespace emu
{
int lane_id() { return g_block.current & 31; }

int syncthreads_or(int predicate)
{
    Block& b = g_block;
    if (b.done > 0) fail("__syncthreads reached after " + std::to_string(b.done) + " thread(s) of the block returned");
    if (b.warps[b.current >> 5].arrived > 0) fail("__syncthreads while lanes of the same warp wait in a warp collective");
    unsigned generation = b.syncGeneration;
    b.orAccumulator |= predicate != 0;
    if (++b.syncArrived == b.threads)
    {
        b.orResult[generation & 1] = b.orAccumulator;
        b.orAccumulator = 0;
        b.syncArrived = 0;
        b.syncGeneration++;
        for (auto& f : b.fibers)
            if (f.state == State::AtSync) f.state = State::Runnable;
    }
    else
    {
        b.fibers[b.current].state = State::AtSync;
        yield_to_scheduler();
    }
    return b.orResult[generation & 1];
}

void syncthreads() { syncthreads_or(0); }

// Every lane publishes `bits`, then reads lane `sourceLane`'s: the core of all shuffles.
std::uint64_t warp_exchange(std::uint64_t bits, int sourceLane, unsigned int mask)
{
    return warp_publish(bits, mask)[sourceLane & 31];
}

// Every lane publishes `bits`; returns the 32 published values, which stay valid until this lane's next
// warp collective (a round's slots are reused two rounds later, which this lane must reach first).
const std::uint64_t* warp_publish(std::uint64_t bits, unsigned int mask)
{
    Block& b = g_block;
    if (mask != 0xffffffffu) fail("warp collective with a partial mask");
    int warp = b.current >> 5;
    Warp& w = b.warps[warp];
    if (w.done > 0) fail("warp collective after lanes of the warp returned");
    for (int lane = 0; lane < 32; lane++)
        if (b.fibers[warp * 32 + lane].state == State::AtSync) fail("warp collective while lanes of the same warp wait at __syncthreads");
    unsigned generation = w.generation;
    w.slots[generation & 1][b.current & 31] = bits;
    if (++w.arrived == 32)
    {
        w.arrived = 0;
        w.generation++;
        for (int lane = 0; lane < 32; lane++)
        {
            Fiber& f = b.fibers[warp * 32 + lane];
            if (f.state == State::AtWarp) f.state = State::Runnable;
        }
    }
    else
    {
        b.fibers[b.current].state = State::AtWarp;
        yield_to_scheduler();
    }
    return w.slots[generation & 1];
}

unsigned int warp_ballot(int predicate, unsigned int mask)
{
    unsigned int ballot = 0;
    for (int lane = 0; lane < 32; lane++)
        if (warp_exchange(predicate != 0, lane, mask) != 0) ballot |= 1u << lane;
    return ballot;
}
}  // namespace emu

namespace
{
// ---- device memory ----------------------------------------------------------------------------

std::map<std::uint64_t, std::uint64_t> g_allocations;   // address -> bytes

bool inside(std::uint64_t address, std::uint64_t bytes)
{
    auto it = g_allocations.upper_bound(address);
    if (it == g_allocations.begin()) return false;
    --it;
    return address >= it->first && address + bytes <= it->first + it->second;
}

std::string check_range(const char* what, std::uint64_t address, std::uint64_t bytes)
{
    if (bytes == 0 || inside(address, bytes)) return "";
    char text[160];
    std::snprintf(text, sizeof text, "%s: [0x%llx, +%llu) is not inside one allocation", what,
                  (unsigned long long)address, (unsigned long long)bytes);
    return text;
}

// ---- GEMM (cublasGemmStridedBatchedEx semantics) -----------------------------------------------

enum DType : int { F32 = 0, BF16 = 1 };

float load_elem(std::uint64_t base, long long i, int type)
{
    if (type == BF16)
    {
        unsigned short h;
        std::memcpy(&h, (const void*)(base + 2 * i), 2);
        return __uint_as_float((unsigned int)h << 16);
    }
    float f;
    std::memcpy(&f, (const void*)(base + 4 * i), 4);
    return f;
}

unsigned short to_bf16(float f)
{
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

void store_elem(std::uint64_t base, long long i, int type, float v)
{
    if (type == BF16)
    {
        unsigned short h = to_bf16(v);
        std::memcpy((void*)(base + 2 * i), &h, 2);
    }
    else
    {
        std::memcpy((void*)(base + 4 * i), &v, 4);
    }
}

struct Gemm
{
    int transA, transB, m, n, k;
    float alpha, beta;
    std::uint64_t a, b, c;
    int aType, bType, cType, lda, ldb, ldc;
    long long strideA, strideB, strideC;
    int batch;
};

std::string run_gemm(const Gemm& g)
{
    if (g.m <= 0 || g.n <= 0 || g.k <= 0 || g.batch <= 0) return "GEMM: non-positive size";
    if (g.lda < (g.transA ? g.k : g.m) || g.ldb < (g.transB ? g.n : g.k) || g.ldc < g.m) return "GEMM: leading dimension too small";
    bool typesOk = (g.aType == F32 && g.bType == F32 && g.cType == F32) || (g.aType == BF16 && g.bType == BF16);
    if (!typesOk) return "GEMM: unsupported type combination";
    auto size = [](int t) { return t == BF16 ? 2 : 4; };
    long long z = g.batch - 1;
    long long rowsA = g.transA ? g.k : g.m, colsA = g.transA ? g.m : g.k;
    long long rowsB = g.transB ? g.n : g.k, colsB = g.transB ? g.k : g.n;
    std::string e = check_range("GEMM A", g.a, (z * g.strideA + (colsA - 1) * g.lda + rowsA) * size(g.aType));
    if (e.empty()) e = check_range("GEMM B", g.b, (z * g.strideB + (colsB - 1) * g.ldb + rowsB) * size(g.bType));
    if (e.empty()) e = check_range("GEMM C", g.c, (z * g.strideC + (g.n - 1LL) * g.ldc + g.m) * size(g.cType));
    if (!e.empty()) return e;
    for (long long batch = 0; batch < g.batch; batch++)
        for (int j = 0; j < g.n; j++)
            for (int i = 0; i < g.m; i++)
            {
                double acc = 0;
                for (int l = 0; l < g.k; l++)
                {
                    long long ai = g.transA ? l + (long long)i * g.lda : i + (long long)l * g.lda;
                    long long bi = g.transB ? j + (long long)l * g.ldb : l + (long long)j * g.ldb;
                    acc += (double)load_elem(g.a, batch * g.strideA + ai, g.aType) * load_elem(g.b, batch * g.strideB + bi, g.bType);
                }
                long long ci = batch * g.strideC + i + (long long)j * g.ldc;
                double v = g.alpha * acc;
                // cuBLAS does not read C when beta is 0 (it may hold NaN garbage).
                if (g.beta != 0.0f) v += (double)g.beta * load_elem(g.c, ci, g.cType);
                store_elem(g.c, ci, g.cType, (float)v);
            }
    return "";
}

// cuBLASLt matmul, fp32 accumulation, D = epilogue(op(A)·op(B)) (+ beta·D). epilogue 0 BIAS, 1 GELU_AUX_BIAS
// (tanh GELU): bias[m] of A's type added to the fp32 product before D (and aux) are rounded once, beta = 0.
// epilogue 2 BGRADB: bias[n] = Σ_l op(B)[l, n] in fp32 (overwritten), D = A·B + beta·D. A and B are F32 or BF16;
// D is outType.
std::string run_lt(int transA, int transB, int m, int n, int k, std::uint64_t a, int lda, std::uint64_t b, int ldb,
                   std::uint64_t d, int ldd, std::uint64_t bias, std::uint64_t aux, int epilogue, int type, int outType, float beta)
{
    if (type != F32 && type != BF16) return "Lt: unsupported type";
    if (outType != F32 && outType != BF16) return "Lt: unsupported output type";
    if (epilogue != 2 && beta != 0.0f) return "Lt: the bias epilogues run with beta 0";
    std::uint64_t size = type == BF16 ? 2 : 4, outSize = outType == BF16 ? 2 : 4;
    long long rowsA = transA ? k : m, colsA = transA ? m : k;
    long long rowsB = transB ? n : k, colsB = transB ? k : n;
    std::string e = check_range("Lt A", a, ((colsA - 1) * lda + rowsA) * size);
    if (e.empty()) e = check_range("Lt B", b, ((colsB - 1) * ldb + rowsB) * size);
    if (e.empty()) e = check_range("Lt D", d, ((n - 1ULL) * ldd + m) * outSize);
    if (e.empty()) e = epilogue == 2 ? check_range("Lt bias gradient", bias, (std::uint64_t)n * 4)
                                     : check_range("Lt bias", bias, (std::uint64_t)m * size);
    if (e.empty() && epilogue == 1) e = check_range("Lt aux", aux, ((n - 1ULL) * ldd + m) * outSize);
    if (!e.empty()) return e;
    for (int j = 0; j < n; j++)
    {
        if (epilogue == 2)
        {
            double g = 0;
            for (int l = 0; l < k; l++)
                g += load_elem(b, transB ? j + (long long)l * ldb : l + (long long)j * ldb, type);
            store_elem(bias, j, F32, (float)g);
        }
        for (int i = 0; i < m; i++)
        {
            double acc = 0;
            for (int l = 0; l < k; l++)
            {
                long long ai = transA ? l + (long long)i * lda : i + (long long)l * lda;
                long long bi = transB ? j + (long long)l * ldb : l + (long long)j * ldb;
                acc += (double)load_elem(a, ai, type) * load_elem(b, bi, type);
            }
            long long di = i + (long long)j * ldd;
            if (epilogue == 2)
            {
                // cuBLASLt does not read D when beta is 0.
                double v = acc;
                if (beta != 0.0f) v += (double)beta * load_elem(d, di, outType);
                store_elem(d, di, outType, (float)v);
                continue;
            }
            float v = (float)acc + load_elem(bias, i, type);
            if (epilogue == 1)
            {
                store_elem(aux, di, outType, v);
                float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
                v = 0.5f * v * (1.0f + std::tanh(u));
            }
            store_elem(d, di, outType, v);
        }
    }
    return "";
}

// ---- protocol ---------------------------------------------------------------------------------

template <typename T>
T read_value()
{
    T v;
    if (std::fread(&v, sizeof v, 1, stdin) != 1) std::exit(0);  // the test host went away
    return v;
}

void read_bytes(void* p, std::uint64_t n)
{
    if (n > 0 && std::fread(p, 1, n, stdin) != n) std::exit(0);
}

template <typename T>
void write_value(T v)
{
    std::fwrite(&v, sizeof v, 1, stdout);
}

void reply(const std::string& error)
{
    write_value<std::uint32_t>(error.empty() ? 0 : 1);
    if (!error.empty())
    {
        write_value<std::uint32_t>((std::uint32_t)error.size());
        std::fwrite(error.data(), 1, error.size(), stdout);
    }
}

enum Command : std::uint32_t { Alloc = 1, Free = 2, Memset = 3, Copy = 4, Write = 5, Read = 6, Launch = 7, GemmCmd = 8, Lt = 9, Quit = 10 };
}  // namespace

int main()
{
    for (;;)
    {
        auto command = read_value<std::uint32_t>();
        switch (command)
        {
            case Alloc:
            {
                auto bytes = read_value<std::uint64_t>();
                void* p = nullptr;
                if (posix_memalign(&p, 256, bytes == 0 ? 1 : bytes) != 0) p = nullptr;
                if (p == nullptr)
                {
                    reply("out of host memory");
                    break;
                }
                g_allocations[(std::uint64_t)p] = bytes == 0 ? 1 : bytes;
                reply("");
                write_value<std::uint64_t>((std::uint64_t)p);
                break;
            }
            case Free:
            {
                auto address = read_value<std::uint64_t>();
                auto it = g_allocations.find(address);
                if (it == g_allocations.end())
                {
                    reply("free of an address that was not allocated");
                    break;
                }
                g_allocations.erase(it);
                std::free((void*)address);
                reply("");
                break;
            }
            case Memset:
            {
                auto address = read_value<std::uint64_t>();
                auto value = read_value<std::uint8_t>();
                auto bytes = read_value<std::uint64_t>();
                std::string e = check_range("memset", address, bytes);
                if (e.empty() && bytes > 0) std::memset((void*)address, value, bytes);
                reply(e);
                break;
            }
            case Copy:
            {
                auto dst = read_value<std::uint64_t>();
                auto src = read_value<std::uint64_t>();
                auto bytes = read_value<std::uint64_t>();
                std::string e = check_range("copy destination", dst, bytes);
                if (e.empty()) e = check_range("copy source", src, bytes);
                if (e.empty() && bytes > 0) std::memmove((void*)dst, (const void*)src, bytes);
                reply(e);
                break;
            }
            case Write:
            {
                auto dst = read_value<std::uint64_t>();
                auto bytes = read_value<std::uint64_t>();
                std::vector<unsigned char> data(bytes);
                read_bytes(data.data(), bytes);
                std::string e = check_range("upload", dst, bytes);
                if (e.empty() && bytes > 0) std::memcpy((void*)dst, data.data(), bytes);
                reply(e);
                break;
            }
            case Read:
            {
                auto src = read_value<std::uint64_t>();
                auto bytes = read_value<std::uint64_t>();
                std::string e = check_range("download", src, bytes);
                reply(e);
                if (e.empty() && bytes > 0) std::fwrite((const void*)src, 1, bytes, stdout);
                break;
            }
            case Launch:
            {
                auto index = read_value<std::uint32_t>();
                dim3 grid, block;
                grid.x = read_value<std::uint32_t>();
                grid.y = read_value<std::uint32_t>();
                grid.z = read_value<std::uint32_t>();
                block.x = read_value<std::uint32_t>();
                block.y = read_value<std::uint32_t>();
                block.z = read_value<std::uint32_t>();
                auto count = read_value<std::uint32_t>();
                std::vector<std::uint64_t> values(count);
                std::vector<void*> pointers(count);
                std::string e;
                for (std::uint32_t i = 0; i < count; i++)
                {
                    auto isPointer = read_value<std::uint8_t>();
                    values[i] = read_value<std::uint64_t>();
                    pointers[i] = &values[i];
                    if (isPointer && values[i] != 0 && !inside(values[i], 1) && e.empty())
                        e = "argument " + std::to_string(i) + " points outside every allocation";
                }
                if (index >= (std::uint32_t)kEmuKernelCount) e = "no kernel with index " + std::to_string(index);
                if (e.empty()) e = run_kernel(kEmuKernels[index], grid, block, pointers.data());
                else if (index < (std::uint32_t)kEmuKernelCount) e = std::string(kEmuKernels[index].name) + ": " + e;
                reply(e);
                break;
            }
            case GemmCmd:
            {
                Gemm g;
                g.transA = read_value<std::int32_t>();
                g.transB = read_value<std::int32_t>();
                g.m = read_value<std::int32_t>();
                g.n = read_value<std::int32_t>();
                g.k = read_value<std::int32_t>();
                g.alpha = read_value<float>();
                g.beta = read_value<float>();
                g.a = read_value<std::uint64_t>();
                g.aType = read_value<std::int32_t>();
                g.lda = read_value<std::int32_t>();
                g.strideA = read_value<std::int64_t>();
                g.b = read_value<std::uint64_t>();
                g.bType = read_value<std::int32_t>();
                g.ldb = read_value<std::int32_t>();
                g.strideB = read_value<std::int64_t>();
                g.c = read_value<std::uint64_t>();
                g.cType = read_value<std::int32_t>();
                g.ldc = read_value<std::int32_t>();
                g.strideC = read_value<std::int64_t>();
                g.batch = read_value<std::int32_t>();
                reply(run_gemm(g));
                break;
            }
            case Lt:
            {
                int transA = read_value<std::int32_t>(), transB = read_value<std::int32_t>();
                int m = read_value<std::int32_t>(), n = read_value<std::int32_t>(), k = read_value<std::int32_t>();
                auto a = read_value<std::uint64_t>();
                int lda = read_value<std::int32_t>();
                auto b = read_value<std::uint64_t>();
                int ldb = read_value<std::int32_t>();
                auto d = read_value<std::uint64_t>();
                int ldd = read_value<std::int32_t>();
                auto bias = read_value<std::uint64_t>();
                auto aux = read_value<std::uint64_t>();
                int epilogue = read_value<std::int32_t>();
                int type = read_value<std::int32_t>() ? BF16 : F32;
                int outType = read_value<std::int32_t>() ? BF16 : F32;
                float beta = read_value<float>();
                reply(run_lt(transA, transB, m, n, k, a, lda, b, ldb, d, ldd, bias, aux, epilogue, type, outType, beta));
                break;
            }
            case Quit:
                reply("");
                std::fflush(stdout);
                return 0;
            default:
                std::fprintf(stderr, "emulator: unknown command %u\n", command);
                return 2;
        }
        std::fflush(stdout);
    }
}
