// The CUDA gather kernels (csrc/cuda/align_gather_cuda.cu), compiled for the CPU emulator
// (cuda_emulator.h) from their own source, behind a C interface that tests/test_cuda_emulated.py
// loads with ctypes. The entry points do what the .cu's host launcher does (same access width,
// grid and block); max_grid can shrink the grid to exercise the grid-stride loops.
#define ATA_EXT_CUDA_EMULATOR
#include "cuda_emulator.h"

#include "cuda/align_gather_cuda.cu"

#include <cstdio>

namespace {

constexpr int64_t kMaxSweeps = 1 << 20;  // the kernels have no barriers: one sweep per block

int grid(int64_t work, int max_grid) {
  const int g = ata_ext::grid_for(work, ata_ext::kThreads);
  return max_grid > 0 ? std::min(g, max_grid) : g;
}

}  // namespace

// Copies rows of src (a gather; a scatter if scatter != 0) into dst, (B, T, N) rows of row_bytes,
// as align_gather / align_scatter do. Writes the access width it used to *vec. Returns 0, or 1
// with the emulator's error in err.
extern "C" int emu_copy_rows(const void* src, void* dst, const int64_t* perm, int64_t B, int64_t T, int64_t N,
                             int64_t row_bytes, int nt, int scatter, int max_grid, uint64_t seed, int* vec, char* err,
                             int errlen) {
  namespace k = ata_ext;
  const int64_t rows = B * T * N;
  *vec = k::vector_bytes(row_bytes, reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst));
  try {
    k::with_vector_bytes(*vec, [&](auto width) {
      emu::launch(grid(rows * 32, max_grid), k::kThreads, 0, seed, kMaxSweeps, [&] {
        k::copy_rows_kernel<decltype(width)::value>(static_cast<const char*>(src), static_cast<char*>(dst), perm, rows,
                                                    row_bytes / *vec, T, N, nt != 0, scatter != 0);
      });
    });
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
    return 1;
  }
  return 0;
}

// The permutation check: seen (total int32) and *bad zeroed by the caller, as the launcher does.
extern "C" int emu_check_perm(const int64_t* perm, int64_t total, int64_t N, int32_t* seen, int32_t* bad, int max_grid,
                              uint64_t seed, char* err, int errlen) {
  namespace k = ata_ext;
  try {
    emu::launch(grid(total, max_grid), k::kThreads, 0, seed, kMaxSweeps,
                [&] { k::check_perm_kernel(perm, total, N, seen, bad); });
  } catch (const std::exception& e) {
    std::snprintf(err, errlen, "%s", e.what());
    return 1;
  }
  return 0;
}
