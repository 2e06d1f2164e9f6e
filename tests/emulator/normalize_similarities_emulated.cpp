// The CUDA similarity kernel (csrc/cuda/normalize_similarities_cuda.cu), compiled for the CPU
// emulator (cuda_emulator.h) from its own source, behind a C interface that
// tests/test_cuda_emulated.py loads with ctypes; max_grid can shrink the grid to exercise the
// grid-stride loop.
#define ATA_EXT_CUDA_EMULATOR
#include "cuda_emulator.h"

#include "cuda/normalize_similarities_cuda.cu"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdio>

namespace {

template <typename scalar_t, typename acc_t>
void run(const void* products, const ata_ext::ProductStrides& ps, void* gram, const void* norms, int64_t B, int64_t T,
         int64_t N, int blocks, uint64_t seed) {
  namespace k = ata_ext;
  emu::launch(blocks, k::kSimilarityThreads, 0, seed, 1 << 20, [&] {
    k::normalize_similarities_kernel<scalar_t, acc_t>(static_cast<const scalar_t*>(products), ps,
                                                      static_cast<scalar_t*>(gram), static_cast<const acc_t*>(norms),
                                                      B, T, N);
  });
}

}  // namespace

// gram (T-1, B, N, N) of dtype code (0 float32, 1 float64, 2 float16, 3 bfloat16), norms (B, T, N)
// float32 (float64 for float64) or null; products null (in place) or the Gram matrices at element
// strides (st, sb, si) with contiguous rows, as the launcher does. Returns 0, or 1 with the
// emulator's error in err.
extern "C" int emu_normalize_similarities(void* gram, int dtype, const void* norms, const void* products, int64_t st,
                                          int64_t sb, int64_t si, int64_t B, int64_t T, int64_t N,
                                          int max_grid, uint64_t seed, char* err, int errlen) {
  namespace k = ata_ext;
  int grid = k::grid_for((T - 1) * B * N * 32, k::kSimilarityThreads);  // as the launcher
  if (max_grid > 0) grid = std::min(grid, max_grid);
  const k::ProductStrides ps = products ? k::ProductStrides{st, sb, si} : k::ProductStrides{B * N * N, N * N, N};
  const void* src = products ? products : gram;
  try {
    switch (dtype) {
      case 0: run<float, float>(src, ps, gram, norms, B, T, N, grid, seed); break;
      case 1: run<double, double>(src, ps, gram, norms, B, T, N, grid, seed); break;
      case 2: run<c10::Half, float>(src, ps, gram, norms, B, T, N, grid, seed); break;
      default: run<c10::BFloat16, float>(src, ps, gram, norms, B, T, N, grid, seed); break;
    }
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
    return 1;
  }
  return 0;
}
