// A CUDA device on the host, for the test suite only (tests/cuda_emulator.py builds with it).
//
// Included before a family's CUDA text (cuda_launch.source: the preambles and the .cu file), it
// lets g++ compile the real `__global__` kernels as host functions, and runs a launch the way the
// hardware may: every block of the grid (last to first: no kernel may depend on the order), each
// block as `blockDim.x` cooperative threads (ucontext fibers on one OS thread) that meet at
// `__syncthreads()`. Shared memory is a static variable, shared by the block's threads; blocks run
// one after another, so it is the block's own. A `__syncthreads()` that only some threads of a
// block reach is reported as an error (on a GPU it hangs or corrupts), never waited on.
//
// Vector accesses (the preamble's fr_quad and fr_bytes4 loads and stores, which are ld/st.v4 on a
// GPU) are modelled as what the device requires of them: each one's address must be a multiple of
// its size, else the launch fails with "misaligned vector access" (a GPU raises
// cudaErrorMisalignedAddress; x86 would silently accept it). They are also counted
// (fr_emu_vector_accesses), so tests can tell which path a launch took.
//
// What it cannot show: speed, warp-level behaviour, data races between threads (fibers switch
// only at barriers), and the device's transcendental functions (the host's libm answers). The
// float16 conversions use the preamble's host path (FR_HOST_EMULATION), not PTX.
#pragma once

#include <math.h>
#include <ucontext.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#define FR_HOST_EMULATION 1
#define __CUDACC__ 1
#define __CUDA_ARCH__ 900
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// CUDA's built-in vector types that kernels use, with the device's size and alignment.
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};

namespace fr_emu {

inline dim3 thread_index, block_index, block_dim, grid_dim;

struct Thread {
    ucontext_t context;
    bool finished = false;
    bool at_barrier = false;
};

// The first fault of the running launch (nullptr: none), and the vector accesses of all launches.
inline const char *fault = nullptr;
inline unsigned long long vector_accesses = 0;

inline void check_aligned(const void *pointer, std::size_t alignment) {
    ++vector_accesses;
    if (reinterpret_cast<std::uintptr_t>(pointer) % alignment != 0 && fault == nullptr)
        fault = "misaligned vector access";
}

// 256 KiB of address space per fiber; only the pages a kernel touches are ever committed.
constexpr std::size_t kStackBytes = 256 * 1024;

inline ucontext_t scheduler;
inline Thread *running = nullptr;
inline void (*running_body)(void *) = nullptr;
inline void *running_state = nullptr;

inline void sync_threads() {
    running->at_barrier = true;
    swapcontext(&running->context, &scheduler);
}

inline void thread_entry() {
    running_body(running_state);
    running->finished = true;  // returning resumes uc_link, the scheduler
}

// Runs body(state) as every thread of a (grid x block) launch; nullptr on success, else why not.
inline const char *launch(unsigned grid, unsigned block, void (*body)(void *), void *state) {
    if (grid == 0 || block == 0 || block > 1024) return "invalid launch configuration";
    static std::vector<std::unique_ptr<char[]>> stacks;
    while (stacks.size() < block) stacks.emplace_back(new char[kStackBytes]);
    std::vector<Thread> threads(block);
    grid_dim = {grid, 1, 1};
    block_dim = {block, 1, 1};
    running_body = body;
    running_state = state;
    fault = nullptr;
    for (unsigned b = grid; b-- > 0;) {
        block_index = {b, 0, 0};
        for (unsigned t = 0; t < block; ++t) {
            Thread &thread = threads[t];
            thread.finished = false;
            getcontext(&thread.context);
            thread.context.uc_stack.ss_sp = stacks[t].get();
            thread.context.uc_stack.ss_size = kStackBytes;
            thread.context.uc_link = &scheduler;
            makecontext(&thread.context, thread_entry, 0);
        }
        // Rounds: every thread runs to its next barrier or to its end; then all of them must be
        // at the barrier (next round) or all finished (next block).
        for (;;) {
            unsigned finished = 0, waiting = 0;
            for (unsigned t = 0; t < block; ++t) {
                Thread &thread = threads[t];
                thread.at_barrier = false;
                thread_index = {t, 0, 0};
                running = &thread;
                swapcontext(&scheduler, &thread.context);
                finished += thread.finished;
                waiting += thread.at_barrier;
            }
            if (finished == block) break;
            if (waiting != block) return "__syncthreads() reached by only some threads of a block";
        }
        if (fault) return fault;
    }
    return nullptr;
}

// The kernel's parameters, read from an array of pointers to their values (cuLaunchKernel's
// kernelParams convention).
template <class... P, std::size_t... I>
void call(void (*kernel)(P...), void **args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>> *>(args[I])...);
}

template <class... P>
const char *launch_kernel(void (*kernel)(P...), void **args, unsigned grid, unsigned block) {
    struct State {
        void (*kernel)(P...);
        void **args;
    } state{kernel, args};
    return launch(
        grid, block,
        [](void *s) {
            State *st = static_cast<State *>(s);
            call(st->kernel, st->args, std::index_sequence_for<P...>{});
        },
        &state);
}

}  // namespace fr_emu

#define FR_CHECK_ALIGNED(pointer, alignment) \
    fr_emu::check_aligned((const void *)(pointer), (alignment))
#define threadIdx fr_emu::thread_index
#define blockIdx fr_emu::block_index
#define blockDim fr_emu::block_dim
#define gridDim fr_emu::grid_dim
#define __syncthreads() fr_emu::sync_threads()
