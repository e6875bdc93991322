// cuda_emu.h -- run the CUDA C kernels of kernels/cuda/ on the CPU, unchanged.
//
// Include this header, then the .cu file, and compile the whole thing with g++.
// What stands in for what:
//
//   CUDA                         here
//   ----                         ----
//   a block of N threads         N cooperative coroutines (ucontext), run by one OS thread
//   the grid                     a loop over blocks, one block at a time
//   __syncthreads()              a block barrier: the coroutine stops until every
//                                thread of the block has reached a barrier
//   __syncwarp(), __shfl_*_sync  a warp barrier: the coroutine stops until all 32 lanes
//                                of its warp have reached a warp-level sync point
//   __shared__ variables         function-local `static` storage, gathered by the linker
//                                script emu_shared.ld into one region; every byte of it is
//                                set to 0xFF (a float NaN, an int -1) before each block
//                                starts, so reading shared memory that no thread of this
//                                block has written gives NaN, not a lucky 0 or a stale value
//   threadIdx/blockIdx/...       globals that the scheduler sets before resuming a thread
//   atomicAdd                    a plain read-modify-write (only one coroutine runs at a time)
//
// Scheduling is deterministic: a thread runs until it reaches a barrier (or finishes), then
// the next thread in order runs. A missing __syncthreads() therefore does not "usually work"
// as it often does on a GPU: thread 0 runs ahead through the whole phase before thread 1
// has started it, and reads shared memory that the others have not written yet -- every time.
//
// Misuse is reported, not hidden: a __syncthreads() that some threads never reach (because
// they returned early), lanes of one warp at different warp-level sync points, shuffles with
// a partial mask or in a partial warp. The launch then fails with a message.
#ifndef MINILM_CUDA_EMU_H
#define MINILM_CUDA_EMU_H

#include <ucontext.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

// ---------------------------------------------------------------- qualifiers and built-ins
#define __global__
#define __device__ static inline
#define __host__
#define __forceinline__
#define __launch_bounds__(...)
// (GCC ignores a section attribute on statics of templates, hence the linker script.)
#define __shared__ static __attribute__((aligned(16)))

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// One OS thread runs all coroutines of a launch; the scheduler rewrites these before it
// resumes a coroutine, so every CUDA thread sees its own threadIdx.
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

namespace emu {

constexpr int kMaxThreads = 1024;
constexpr int kWarp = 32;
constexpr size_t kStackBytes = 256 * 1024;  // per emulated thread, including one guard page
constexpr size_t kGuardBytes = 4096;         // PROT_NONE: a stack overflow faults, loudly

enum class State { Ready, AtSyncthreads, AtWarpSync, Done, Failed };

struct Thread {
    ucontext_t ctx;
    State state = State::Ready;
    unsigned long warp_syncs = 0;  // how many warp-level sync points this lane has passed
    int shfl_parity = 0;           // which of the two shuffle buffers the next shuffle uses
};

struct Scheduler {
    std::vector<Thread> threads;
    ucontext_t main_ctx;
    int current = -1;
    const std::function<void()>* body = nullptr;
    std::string error;
    char* stacks = nullptr;
    size_t stacks_bytes = 0;
    // Shuffle exchange slots, double-buffered: shuffle n writes buffer n % 2, waits for its
    // warp, reads. A lane can only write buffer n % 2 again at shuffle n + 2, after it has
    // passed the warp barrier of shuffle n + 1, which every lane reaches only after reading
    // shuffle n. So one warp barrier per shuffle is enough.
    uint32_t shfl[kMaxThreads / kWarp][2][kWarp];
};

inline thread_local Scheduler* g_sched = nullptr;

inline Thread& self() { return g_sched->threads[g_sched->current]; }

inline void yield_as(State s) {
    Thread& t = self();
    t.state = s;
    swapcontext(&t.ctx, &g_sched->main_ctx);
}

// Called from inside a coroutine: stop this launch with a message.
inline void fail(const std::string& msg) {
    if (g_sched->error.empty()) g_sched->error = msg;
    yield_as(State::Failed);
}

inline void warp_sync_point() {
    self().warp_syncs += 1;
    yield_as(State::AtWarpSync);
}

inline int lane_id() { return g_sched->current % kWarp; }
inline int warp_id() { return g_sched->current / kWarp; }

// Shuffle: every lane publishes its value, the warp meets, each lane reads its source lane.
template <class T, class SrcLane>
T shuffle(unsigned mask, T value, SrcLane src_of_lane, const char* what) {
    static_assert(sizeof(T) == 4, "the emulator shuffles 4-byte values only");
    const int n = (int)g_sched->threads.size();
    const int lanes_in_warp = std::min(kWarp, n - warp_id() * kWarp);
    if (mask != 0xffffffffu || lanes_in_warp != kWarp) {
        fail(std::string(what) + ": the emulator supports full-warp shuffles only "
             "(mask 0xffffffff in a block whose size is a multiple of 32)");
    }
    Thread& t = self();
    uint32_t (&slot)[kWarp] = g_sched->shfl[warp_id()][t.shfl_parity];
    uint32_t bits;
    std::memcpy(&bits, &value, 4);
    slot[lane_id()] = bits;
    warp_sync_point();
    const int src = src_of_lane(lane_id());
    std::memcpy(&value, &slot[src], 4);
    self().shfl_parity ^= 1;
    return value;
}

extern "C" {
// Defined by the linker script emu_shared.ld, which gathers every function-local static
// (`.bss._ZZ*`, with -fdata-sections) -- i.e. every __shared__ variable -- between them.
extern char emu_shared_begin[] __attribute__((visibility("hidden")));
extern char emu_shared_end[] __attribute__((visibility("hidden")));
}

inline void poison_shared_memory() {
    char* begin = emu_shared_begin;
    char* end = emu_shared_end;
    // Hide where the pointers come from, so the compiler cannot assume that writing
    // through them leaves the (distinct) shared-memory objects unchanged.
    asm volatile("" : "+r"(begin), "+r"(end) : : "memory");
    std::memset(begin, 0xFF, (size_t)(end - begin));
}

inline void thread_entry() {
    (*g_sched->body)();
    g_sched->threads[g_sched->current].state = State::Done;
    // returning resumes uc_link, the scheduler
}

inline const char* state_name(State s) {
    switch (s) {
        case State::Ready: return "running";
        case State::AtSyncthreads: return "__syncthreads";
        case State::AtWarpSync: return "warp sync";
        case State::Done: return "exited";
        default: return "failed";
    }
}

inline std::string describe_block(const Scheduler& s) {
    std::string out;
    for (size_t i = 0; i < s.threads.size(); i += kWarp) {
        out += " [warp " + std::to_string(i / kWarp) + ":";
        for (size_t j = i; j < std::min(s.threads.size(), i + kWarp); ++j) {
            if (j == i || s.threads[j].state != s.threads[j - 1].state)
                out += " t" + std::to_string(j) + "=" + state_name(s.threads[j].state);
        }
        out += "]";
    }
    return out;
}

inline void set_thread_index(int tid) {
    threadIdx.x = tid % blockDim.x;
    threadIdx.y = (tid / blockDim.x) % blockDim.y;
    threadIdx.z = tid / (blockDim.x * blockDim.y);
}

// Release a barrier if everyone it waits for has arrived; throw on a deadlock.
inline void settle_barriers(Scheduler& s) {
    const int n = (int)s.threads.size();
    // warp-level sync points
    for (int w = 0; w * kWarp < n; ++w) {
        const int lo = w * kWarp, hi = std::min(n, lo + kWarp);
        bool all_there = true;
        for (int i = lo; i < hi; ++i) all_there &= s.threads[i].state == State::AtWarpSync;
        if (!all_there) continue;
        for (int i = lo; i < hi; ++i) {
            if (s.threads[i].warp_syncs != s.threads[lo].warp_syncs)
                throw std::runtime_error("lanes of warp " + std::to_string(w) +
                                         " met at different warp-level sync points (divergent "
                                         "__syncwarp/__shfl_*_sync)");
        }
        for (int i = lo; i < hi; ++i) s.threads[i].state = State::Ready;
    }
    // block barrier
    int at_bar = 0;
    for (const Thread& t : s.threads) at_bar += t.state == State::AtSyncthreads;
    if (at_bar == n) {
        for (Thread& t : s.threads) t.state = State::Ready;
    }
}

inline void run_block(Scheduler& s) {
    const int n = (int)s.threads.size();
    for (int i = 0; i < n; ++i) {
        Thread& t = s.threads[i];
        t = Thread();
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = s.stacks + (size_t)i * kStackBytes + kGuardBytes;
        t.ctx.uc_stack.ss_size = kStackBytes - kGuardBytes;
        t.ctx.uc_link = &s.main_ctx;
        makecontext(&t.ctx, (void (*)())thread_entry, 0);
    }
    poison_shared_memory();
    int next = 0;
    for (;;) {
        int pick = -1;
        for (int k = 0; k < n; ++k) {
            const int i = (next + k) % n;
            if (s.threads[i].state == State::Ready) { pick = i; break; }
        }
        if (pick < 0) {
            bool all_done = true;
            for (const Thread& t : s.threads) all_done &= t.state == State::Done;
            if (all_done) return;
            throw std::runtime_error("deadlock: no thread can run; some wait at a barrier that "
                                     "others never reach (a barrier inside divergent code or "
                                     "after an early return?):" + describe_block(s));
        }
        s.current = pick;
        set_thread_index(pick);
        swapcontext(&s.main_ctx, &s.threads[pick].ctx);
        if (s.threads[pick].state == State::Failed) throw std::runtime_error(s.error);
        settle_barriers(s);
        next = pick + 1;
    }
}

// Run `body` (which calls the kernel) as a grid of blocks.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    const unsigned long nthreads = (unsigned long)block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > (unsigned long)kMaxThreads)
        throw std::runtime_error("block size " + std::to_string(nthreads) + " is not in 1..1024");
    Scheduler* s = new Scheduler();
    s->threads.resize(nthreads);
    s->body = &body;
    s->stacks_bytes = nthreads * kStackBytes;
    void* mem = mmap(nullptr, s->stacks_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        delete s;
        throw std::runtime_error("could not map coroutine stacks");
    }
    s->stacks = (char*)mem;
    for (unsigned long i = 0; i < nthreads; ++i)  // stacks grow down: guard the low end
        mprotect(s->stacks + i * kStackBytes, kGuardBytes, PROT_NONE);
    Scheduler* previous = g_sched;
    g_sched = s;
    gridDim = grid;
    blockDim = block;
    std::string error;
    try {
        for (unsigned z = 0; z < grid.z; ++z)
            for (unsigned y = 0; y < grid.y; ++y)
                for (unsigned x = 0; x < grid.x; ++x) {
                    blockIdx = dim3(x, y, z);
                    run_block(*s);
                }
    } catch (const std::exception& e) {
        error = std::string(e.what()) + " (block " + std::to_string(blockIdx.x) + "," +
                std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + ")";
    }
    g_sched = previous;
    munmap(s->stacks, s->stacks_bytes);
    delete s;
    if (!error.empty()) throw std::runtime_error(error);
}

}  // namespace emu

// ---------------------------------------------------------------- synchronisation
inline void __syncthreads() { emu::yield_as(emu::State::AtSyncthreads); }

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    const int n = (int)emu::g_sched->threads.size();
    if (mask != 0xffffffffu || n - emu::warp_id() * emu::kWarp < emu::kWarp)
        emu::fail("__syncwarp: the emulator supports full warps only");
    emu::warp_sync_point();
}

template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    return emu::shuffle(mask, v, [=](int lane) { return (lane / width) * width + src_lane % width; },
                        "__shfl_sync");
}

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu::shuffle(mask, v, [=](int lane) {
        const int src = lane ^ lane_mask;
        return (src / width == lane / width) ? src : lane;
    }, "__shfl_xor_sync");
}

template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu::shuffle(mask, v, [=](int lane) {
        const int src = lane + (int)delta;
        return (src / width == lane / width) ? src : lane;
    }, "__shfl_down_sync");
}

inline float atomicAdd(float* address, float value) {
    const float old = *address;
    *address = old + value;
    return old;
}

inline int atomicAdd(int* address, int value) {
    const int old = *address;
    *address = old + value;
    return old;
}

// ---------------------------------------------------------------- math
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

#endif  // MINILM_CUDA_EMU_H
