// CPU implementation of ata_ext::align_gather and ata_ext::align_scatter: row copies (memcpy of
// C elements, any dtype) in parallel over rows, after checking that perm holds permutations (or,
// with check=False, only that its indices are in range), into outputs from the host block cache.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "common/gather.h"
#include "common/gather_common.h"
#include "cpu/host_cache.h"

namespace ata_ext {
namespace {

// Every (b, t) row of perm must be a permutation of 0..N-1: the copies rely on it (a repeated
// index would leave output rows unwritten).
void check_permutations(const int64_t* perm, int64_t rows, int64_t N, const char* op) {
  std::vector<int64_t> bad(at::get_num_threads() + 1, -1);
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    std::vector<char> seen(N);
    for (int64_t r = begin; r < end; ++r) {
      std::fill(seen.begin(), seen.end(), 0);
      const int64_t* p = perm + r * N;
      for (int64_t i = 0; i < N; ++i) {
        if (p[i] < 0 || p[i] >= N || seen[p[i]]) {
          bad[at::get_thread_num()] = r;
          return;
        }
        seen[p[i]] = 1;
      }
    }
  });
  for (const int64_t r : bad) {
    TORCH_CHECK_VALUE(r < 0, op, ": perm[", r, "] (flattened over (..., T)) is not a permutation of 0..", N - 1,
                      ": indices out of range or repeated");
  }
}

at::Tensor copy_rows_cpu(const at::Tensor& src_in, const at::Tensor& perm_in, bool nt, bool scatter, bool check,
                         const char* op) {
  int64_t B, T, N;
  // The output comes from the host block cache: see cpu/host_cache_cpu.cpp for why.
  at::Tensor out = empty_cached_cpu(gather_prepare(src_in, perm_in, nt, scatter, op, B, T, N), src_in.scalar_type());
  if (perm_in.numel() == 0) return out;
  const at::Tensor src = src_in.contiguous();
  const at::Tensor perm = perm_in.contiguous();
  const int64_t* p = perm.const_data_ptr<int64_t>();
  const int64_t rows = B * T * N;
  if (check) check_permutations(p, B * T, N, op);
  if (out.numel() == 0) return out;  // C = 0: perm was checked, nothing to copy
  const int64_t row_bytes = src.size(-1) * src.element_size();
  const char* from = static_cast<const char*>(src.const_data_ptr());
  char* to = static_cast<char*>(out.data_ptr());
  // Grain: about 64 KiB of copying per task.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(row_bytes, 1));
  // Indices are range-checked even with check=False (one compare a row, against a copy of C
  // elements): an unchecked perm must never make the copies read or write outside the tensors.
  std::atomic<int64_t> out_of_range{-1};
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      if (static_cast<uint64_t>(p[k]) >= static_cast<uint64_t>(N)) {
        out_of_range.store(k, std::memory_order_relaxed);
        continue;
      }
      const RowPair r = align_rows(k, p[k], T, N, nt);
      const int64_t src_row = scatter ? r.y_row : r.x_row, dst_row = scatter ? r.x_row : r.y_row;
      std::memcpy(to + dst_row * row_bytes, from + src_row * row_bytes, row_bytes);
    }
  });
  const int64_t bad = out_of_range.load();
  TORCH_CHECK_VALUE(bad < 0, op, ": perm[", bad / N, "] (flattened over (..., T)) holds ", p[bad < 0 ? 0 : bad],
                    ", outside 0..", N - 1, " (check=False skips the test for repeated indices, not this one)");
  return out;
}

at::Tensor align_gather_cpu(const at::Tensor& x, const at::Tensor& perm, bool nt, bool check) {
  return copy_rows_cpu(x, perm, nt, /*scatter=*/false, check, "align_gather");
}

at::Tensor align_scatter_cpu(const at::Tensor& y, const at::Tensor& perm, bool nt, bool check) {
  return copy_rows_cpu(y, perm, nt, /*scatter=*/true, check, kScatterOpName);
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("align_gather", &align_gather_cpu);
  m.impl("align_scatter", &align_scatter_cpu);
}

}  // namespace ata_ext
