// The CUDA feature-norms kernel (csrc/cuda/frame_similarities_cuda.cu), compiled for the CPU
// emulator (cuda_emulator.h) from its own source, behind a C interface that
// tests/test_cuda_emulated.py loads with ctypes. The entry point picks the access width and grid
// as the launcher does; max_grid can shrink the grid to exercise the grid-stride loop.
#define ATA_EXT_CUDA_EMULATOR
#include "cuda_emulator.h"

#include "cuda/frame_similarities_cuda.cu"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdio>

namespace {

template <typename scalar_t, typename acc_t>
void run(const void* key, const ata_ext::KeyStrides& s, void* norms, int64_t rows, int64_t T, int64_t N,
         int64_t row_bytes, int vec, int grid, uint64_t seed) {
  namespace k = ata_ext;
  k::with_entry_vector_bytes<scalar_t>(vec, [&](auto width) {
    emu::launch(grid, k::kNormThreads, 0, seed, 1 << 20, [&] {
      k::feature_norms_kernel<scalar_t, acc_t, decltype(width)::value>(
          static_cast<const char*>(key), s, static_cast<acc_t*>(norms), rows, T, N, row_bytes / vec);
    });
  });
}

}  // namespace

// key (B, T, N, D) of dtype code (0 float32, 1 float64, 2 float16, 3 bfloat16) at element strides
// (sb, st, sn), rows contiguous -> norms (B, T, N), float32 (float64 for float64). Writes the
// access width it used to *vec. Returns 0, or 1 with the emulator's error in err.
extern "C" int emu_feature_norms(const void* key, int dtype, int64_t B, int64_t T, int64_t N, int64_t D, int64_t sb,
                                 int64_t st, int64_t sn, void* norms, int max_grid, uint64_t seed, int* vec, char* err,
                                 int errlen) {
  namespace k = ata_ext;
  const int64_t e = dtype == 1 ? 8 : dtype == 0 ? 4 : 2, rows = B * T * N;
  const k::KeyStrides s{sb * e, st * e, sn * e};
  *vec = k::vector_bytes(D * e, reinterpret_cast<uintptr_t>(key) | static_cast<uintptr_t>(s.b | s.t | s.n));
  int grid = k::grid_for(rows * 32, k::kNormThreads);
  if (max_grid > 0) grid = std::min(grid, max_grid);
  try {
    switch (dtype) {
      case 0: run<float, float>(key, s, norms, rows, T, N, D * e, *vec, grid, seed); break;
      case 1: run<double, double>(key, s, norms, rows, T, N, D * e, *vec, grid, seed); break;
      case 2: run<c10::Half, float>(key, s, norms, rows, T, N, D * e, *vec, grid, seed); break;
      default: run<c10::BFloat16, float>(key, s, norms, rows, T, N, D * e, *vec, grid, seed); break;
    }
  } catch (const std::exception& ex) {
    std::snprintf(err, errlen, "%s", ex.what());
    return 1;
  }
  return 0;
}
