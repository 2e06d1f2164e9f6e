// The CUDA auction kernel (csrc/cuda/lsa_auction_cuda.cu), compiled for the CPU emulator
// (cuda_emulator.h) from its own source, behind a C interface that tests/test_cuda_emulated.py
// loads with ctypes. The .cu's host launcher is left out (it needs a GPU); this entry point does
// what it does: the first-choice kernel, then the auction kernel with the same grid, block,
// shared-memory size and arguments.
#define ATA_EXT_CUDA_EMULATOR
#include "cuda_emulator.h"

#include <cstdint>

// Where the kernel reports each problem's count of rounds and search passes (its
// ATA_EXT_EMULATOR_ROUNDS hook; problems that end at their first choices or fail early report
// nothing): set for the duration of one emu_auction call.
static int64_t* emu_rounds_out = nullptr;
#define ATA_EXT_EMULATOR_ROUNDS(b, n) (emu_rounds_out[b] = (n))

#include "cuda/lsa_auction_cuda.cu"

#include "common/static_switch.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdio>

namespace {

template <typename scalar_t>
int auction(const void* cost, int64_t batch, int64_t N, int64_t M, int64_t sb, int64_t s0, int64_t s1, int maximize,
            int shared_levels, int wide, int list_cap, uint64_t seed, int64_t max_sweeps, int64_t* out, int32_t* status,
            int64_t* rounds, char* err, int errlen) {
  namespace k = ata_ext;
  const int64_t n = std::max(N, M), r = std::min(N, M);
  std::vector<int32_t> workspace(shared_levels ? 0 : batch * r * n), first(batch * r, -7);
  const auto* src = static_cast<const scalar_t*>(cost);
  std::fill(rounds, rounds + batch, 0);
  emu_rounds_out = rounds;
  try {
    // Half the blocks the rows need where there are several, so that the grid-stride loop runs.
    const int64_t rows_per_block = k::kFirstChoiceRowsPerBlock;
    const int64_t blocks = std::max<int64_t>(1, (batch * r + rows_per_block - 1) / rows_per_block / 2);
    emu::launch(blocks, k::kFirstChoiceThreads, 0, seed, max_sweeps, [&] {
      k::first_choice_kernel<scalar_t>(src, batch, N, M, sb, s0, s1, maximize != 0, first.data());
    });
    BOOL_SWITCH(shared_levels != 0, kShared, [&] {
      BOOL_SWITCH(wide != 0, kWide, [&] {
        emu::launch(batch, k::block_threads(kWide), k::smem_bytes(r, n, kShared, list_cap), seed, max_sweeps, [&] {
          k::auction_kernel<scalar_t, kShared, kWide>(src, N, M, sb, s0, s1, maximize != 0, first.data(),
                                                      kShared ? nullptr : workspace.data(), list_cap, out, status);
        });
      });
    });
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

// cost: (batch, N, M) float32, float64, float16 or bfloat16 (dtype 0, 1, 2, 3) with element
// strides sb, s0, s1; out: batch * N int64 filled with -1 by the caller (as the CUDA launcher
// does); status and rounds (each problem's rounds and search passes, as the twin's
// lsa_auction_rounds sums them; 0 where none ran): batch. shared_levels and wide pick the kernel
// instantiation the launcher would pick from the device's shared memory; list_cap the candidate
// lists' length (global-memory levels only; 0: none). max_sweeps bounds the emulation (a kernel
// that would spin). Returns 0, or 1 with the emulator's error in err (a hang, a divergent
// barrier, the budget spent).
extern "C" int emu_auction(const void* cost, int dtype, int64_t batch, int64_t N, int64_t M, int64_t sb, int64_t s0,
                           int64_t s1, int maximize, int shared_levels, int wide, int list_cap, uint64_t seed,
                           int64_t max_sweeps, int64_t* out, int32_t* status, int64_t* rounds, char* err,
                           int errlen) {
  const auto run = [&](auto tag) {
    return auction<decltype(tag)>(cost, batch, N, M, sb, s0, s1, maximize, shared_levels, wide, list_cap, seed,
                                  max_sweeps, out, status, rounds, err, errlen);
  };
  switch (dtype) {
    case 0: return run(float{});
    case 1: return run(double{});
    case 2: return run(c10::Half{});
    default: return run(c10::BFloat16{});
  }
}
