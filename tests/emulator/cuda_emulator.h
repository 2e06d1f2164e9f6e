// A CPU emulator for this package's CUDA device code, so that the kernels' own source runs in CI,
// which has no GPU (tests/test_cuda_emulated.py). Each CUDA thread of a block is a fiber
// (a stack of its own). Fibers switch only at __syncthreads, __syncwarp, warp shuffles, votes and
// reductions, in an order drawn from a seed, so a kernel whose answer depends on thread timing
// answers differently for different seeds; dynamic shared memory starts as seed-dependent
// garbage, as on a GPU.
// It stops with an error where a GPU would hang or misbehave: threads of a block waiting at
// different __syncthreads, lanes of a warp at different warp operations, a barrier that some
// threads of the block already returned past, a deadlock.
// What it does not model: memory ordering between threads (it is sequentially consistent), and
// speed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

// Fiber switching: a few instructions on x86-64 (ucontext's swapcontext makes a signal-mask
// system call per switch, which made the tests eight times slower); ucontext elsewhere, or
// with EMU_UCONTEXT defined.
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_X86_64_SWITCH 1
extern "C" void emu_switch_stack(void** save_sp, void* load_sp);  // cuda_emulator.cpp
#else
#include <ucontext.h>
#endif

namespace emu {

struct Context {
#if defined(EMU_X86_64_SWITCH)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

inline void switch_context(Context& save, Context& load) {
#if defined(EMU_X86_64_SWITCH)
  emu_switch_stack(&save.sp, load.sp);
#else
  swapcontext(&save.uc, &load.uc);
#endif
}

// Prepares ctx to run entry() on stack [base, base + size) when first switched to.
inline void make_context(Context& ctx, char* base, size_t size, void (*entry)()) {
#if defined(EMU_X86_64_SWITCH)
  auto top = reinterpret_cast<uintptr_t>(base + size) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                            // entry's return address slot: it never returns
  *--sp = reinterpret_cast<void*>(entry);     // emu_switch_stack's ret lands here
  for (int k = 0; k < 6; ++k) *--sp = nullptr;  // the callee-saved registers it pops
  ctx.sp = sp;
#else
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = base;
  ctx.uc.uc_stack.ss_size = size;
  ctx.uc.uc_link = nullptr;
  makecontext(&ctx.uc, entry, 0);
#endif
}

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

enum class State { kReady, kBlockWait, kWarpWait, kDone };

struct Fiber {
  Context ctx;
  std::vector<char> stack;
  State state = State::kReady;
  int line = 0;  // source line of the barrier or warp operation it waits at
};

struct Runtime {
  dim3 grid, block, block_idx;
  int current = -1;
  std::vector<Fiber> fibers;
  Context scheduler;
  std::vector<uint64_t> slots;  // a warp-shuffle exchange word per thread
  std::vector<unsigned char> smem;
  std::function<void()> body;
  std::mt19937_64 rng;
  uint64_t seed = 0;
  int64_t sweeps_left = 0;  // a budget of scheduler sweeps: a kernel that spins is reported
};

inline Runtime& rt() {
  static Runtime r;
  return r;
}

inline dim3 thread_idx() { return dim3{static_cast<unsigned>(rt().current), 1, 1}; }

// Parks the running fiber until the scheduler releases it.
inline void wait(State s, int line) {
  Runtime& r = rt();
  Fiber& f = r.fibers[r.current];
  f.state = s;
  f.line = line;
  switch_context(f.ctx, r.scheduler);
}

inline void fiber_main() {
  Runtime& r = rt();
  r.body();
  r.fibers[r.current].state = State::kDone;
  switch_context(r.fibers[r.current].ctx, r.scheduler);  // never resumed
}

// A warp shuffle: every lane publishes its value, all lanes meet, each reads its source lane's,
// and all meet again before the words can be reused.
template <typename T>
T shfl_from(T v, int src_lane, int line) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a value wider than 8 bytes");
  Runtime& r = rt();
  const int t = r.current, base = t - t % 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  r.slots[t] = bits;
  wait(State::kWarpWait, line);
  const uint64_t got = r.slots[base + src_lane];
  wait(State::kWarpWait, line);
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

// A warp vote: bit k of the result is lane k's predicate, in every lane.
inline unsigned ballot(bool pred, int line) {
  Runtime& r = rt();
  const int t = r.current, base = t - t % 32;
  r.slots[t] = pred ? 1 : 0;
  wait(State::kWarpWait, line);
  unsigned mask = 0;
  for (int k = 0; k < 32 && base + k < static_cast<int>(r.slots.size()); ++k) mask |= static_cast<unsigned>(r.slots[base + k] != 0) << k;
  wait(State::kWarpWait, line);
  return mask;
}

template <typename T>
T shfl_down(T v, unsigned delta, int line) {
  const int lane = rt().current % 32;
  const int src = lane + static_cast<int>(delta);
  return shfl_from(v, src < 32 ? src : lane, line);
}

template <typename T>
T shfl_xor(T v, int lane_mask, int line) {
  return shfl_from(v, (rt().current % 32) ^ lane_mask, line);
}

// __reduce_min_sync (sm_80+): the lowest of the lanes' values, in every lane.
inline unsigned reduce_min(unsigned v, int line) {
  Runtime& r = rt();
  const int t = r.current, base = t - t % 32;
  r.slots[t] = v;
  wait(State::kWarpWait, line);
  unsigned low = ~0u;
  for (int k = 0; k < 32 && base + k < static_cast<int>(r.slots.size()); ++k) {
    low = std::min(low, static_cast<unsigned>(r.slots[base + k]));
  }
  wait(State::kWarpWait, line);
  return low;
}

[[noreturn]] inline void fail(const std::string& what) {
  throw std::runtime_error("CUDA emulator, block " + std::to_string(rt().block_idx.x) + ": " + what);
}

// Runs one block to completion: runs the ready fibers (in a seed-dependent order) until each
// waits or returns, then releases every warp and the block whose members all wait at the same
// operation, and repeats.
inline void run_block() {
  Runtime& r = rt();
  const int nt = static_cast<int>(r.block.x), nwarps = (nt + 31) / 32;
  constexpr size_t kStack = 64 * 1024;
  r.fibers.resize(nt);
  for (Fiber& f : r.fibers) {
    f.stack.resize(kStack);
    make_context(f.ctx, f.stack.data(), kStack, fiber_main);
    f.state = State::kReady;
  }
  std::vector<int> ready(nt), warp_waiting(nwarps, 0), warp_done(nwarps, 0), warp_line(nwarps, 0);
  std::iota(ready.begin(), ready.end(), 0);
  int done = 0, block_waiting = 0, block_line = 0;
  const auto lanes = [&](int w) { return std::min(nt, 32 * (w + 1)) - 32 * w; };
  for (;;) {
    if (--r.sweeps_left < 0) fail("still running after the sweep budget: on a GPU this would hang or spin");
    if (r.seed != 0) std::shuffle(ready.begin(), ready.end(), r.rng);
    for (const int t : ready) {
      r.current = t;
      switch_context(r.scheduler, r.fibers[t].ctx);
      const Fiber& f = r.fibers[t];
      const int w = t / 32;
      if (f.state == State::kDone) {
        ++done;
        ++warp_done[w];
      } else if (f.state == State::kWarpWait) {
        if (warp_waiting[w]++ == 0) warp_line[w] = f.line;
        if (f.line != warp_line[w]) {
          fail("lanes of warp " + std::to_string(w) + " at different warp operations (lines " +
               std::to_string(warp_line[w]) + " and " + std::to_string(f.line) + ")");
        }
      } else {
        if (block_waiting++ == 0) block_line = f.line;
        if (f.line != block_line) {
          fail("threads wait at different __syncthreads (lines " + std::to_string(block_line) + " and " +
               std::to_string(f.line) + ")");
        }
      }
    }
    ready.clear();
    if (done == nt) return;
    for (int w = 0; w < nwarps; ++w) {
      if (warp_waiting[w] == 0 || warp_waiting[w] + warp_done[w] < lanes(w)) continue;
      if (warp_done[w] > 0) fail("a warp operation in warp " + std::to_string(w) + " after some of its lanes returned");
      for (int t = 32 * w; t < 32 * w + lanes(w); ++t) ready.push_back(t);
      warp_waiting[w] = 0;
    }
    if (block_waiting > 0 && block_waiting + done == nt) {
      if (done > 0) fail("__syncthreads reached after " + std::to_string(done) + " threads returned");
      for (int t = 0; t < nt; ++t) ready.push_back(t);
      block_waiting = 0;
    }
    if (ready.empty()) {
      std::string where;
      for (int t = 0; t < nt && where.size() < 300; ++t) {
        const Fiber& f = r.fibers[t];
        if (f.state == State::kDone) continue;
        where += " thread " + std::to_string(t) + (f.state == State::kBlockWait ? " at __syncthreads line " : " at warp op line ") +
                 std::to_string(f.line) + ";";
      }
      fail("deadlock:" + where);
    }
    for (const int t : ready) r.fibers[t].state = State::kReady;
  }
}

// Launches kernel_call over a grid of blocks, one block at a time. max_sweeps bounds the scheduler
// sweeps (one per synchronisation step of the block) over the whole launch.
inline void launch(unsigned grid, unsigned block, size_t smem_bytes, uint64_t seed, int64_t max_sweeps,
                   std::function<void()> kernel_call) {
  Runtime& r = rt();
  r.sweeps_left = max_sweeps;
  r.grid = dim3{grid, 1, 1};
  r.block = dim3{block, 1, 1};
  r.slots.assign(block, 0);
  r.seed = seed;
  r.rng.seed(seed);
  r.body = std::move(kernel_call);
  for (unsigned b = 0; b < grid; ++b) {
    r.block_idx = dim3{b, 1, 1};
    r.smem.resize(smem_bytes);
    for (unsigned char& c : r.smem) c = static_cast<unsigned char>(r.rng() | 1);  // never all-zero
    run_block();
  }
}

}  // namespace emu

// The CUDA vocabulary the kernels use, mapped onto the emulator.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static  // one block runs at a time, so function statics serve as shared memory
#define __align__(n) alignas(n)
#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::rt().block_idx)
#define blockDim (::emu::rt().block)
#define gridDim (::emu::rt().grid)
#define __syncthreads() ::emu::wait(::emu::State::kBlockWait, __LINE__)
#define __syncwarp(...) ::emu::wait(::emu::State::kWarpWait, __LINE__)
#define __shfl_down_sync(mask, v, delta) ::emu::shfl_down((v), (delta), __LINE__)
#define __shfl_sync(mask, v, src) ::emu::shfl_from((v), (src), __LINE__)
#define __shfl_xor_sync(mask, v, lane_mask) ::emu::shfl_xor((v), (lane_mask), __LINE__)
#define __reduce_min_sync(mask, v) ::emu::reduce_min((v), __LINE__)
#define __ballot_sync(mask, pred) ::emu::ballot((pred), __LINE__)

inline int __popc(unsigned x) { return __builtin_popcount(x); }

inline unsigned char* dynamic_smem() { return emu::rt().smem.data(); }

struct uint4 {
  unsigned x, y, z, w;
};
struct uint2 {
  unsigned x, y;
};

template <typename T>
T __ldg(const T* p) {
  return *p;
}

// Fibers switch only at synchronisation points, so a read-modify-write is atomic as written.
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline int atomicExch(int* p, int v) {
  const int old = *p;
  *p = v;
  return old;
}
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = std::max(old, v);
  return old;
}
