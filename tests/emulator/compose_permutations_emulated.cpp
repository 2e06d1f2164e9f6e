// The CUDA composition kernel (csrc/cuda/compose_permutations_cuda.cu), compiled for the CPU
// emulator (cuda_emulator.h) from its own source, behind a C interface that
// tests/test_cuda_emulated.py loads with ctypes; max_grid can shrink the grid to exercise the
// grid-stride loop.
#define ATA_EXT_CUDA_EMULATOR
#include "cuda_emulator.h"

#include "cuda/compose_permutations_cuda.cu"

#include <algorithm>
#include <cstdio>

// steps (T-1, B, N) -> perm (B, T, N), as the launcher does. Returns 0, or 1 with the emulator's
// error in err.
extern "C" int emu_compose(const int64_t* steps, int64_t* perm, int64_t B, int64_t T, int64_t N, int max_grid,
                           uint64_t seed, char* err, int errlen) {
  namespace k = ata_ext;
  int64_t blocks = std::max<int64_t>((B * N + k::kComposeThreads - 1) / k::kComposeThreads, 1);
  if (max_grid > 0) blocks = std::min<int64_t>(blocks, max_grid);
  try {
    emu::launch(static_cast<int>(blocks), k::kComposeThreads, 0, seed, 1 << 20,
                [&] { k::compose_kernel(steps, perm, B, T, N); });
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
    return 1;
  }
  return 0;
}
