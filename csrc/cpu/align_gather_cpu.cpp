// CPU implementation of ata_ext::align_gather and ata_ext::align_scatter: row copies (memcpy of
// C elements, any dtype) in parallel over rows, after checking that perm holds permutations.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "common/gather.h"
#include "common/gather_common.h"

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

// A large fresh output comes straight from mmap: every 4 KiB page faults on its first write, and
// on the development machine those faults cost 3-4x the copy itself (a 77 MB clone: ~20 ms of
// faults, ~5 ms of copying). MADV_POPULATE_WRITE (Linux 5.14) maps a whole range in one call per
// thread: align_gather of (16, 8, 196, 768) float32 went from 31 to 24 ms (medians, 2 threads).
// Best effort: on older kernels, or if it fails, the copy faults the pages in as before.
void prefault(void* ptr, int64_t bytes) {
#if defined(__linux__)
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE; older libc headers lack the name
  static const int64_t page = sysconf(_SC_PAGESIZE);
  if (bytes < (int64_t{1} << 20) || page <= 0) return;  // small blocks come from reused heap pages
  const int64_t start = (reinterpret_cast<int64_t>(ptr) + page - 1) / page * page;
  const int64_t pages = (reinterpret_cast<int64_t>(ptr) + bytes - start) / page;
  static std::atomic<bool> unsupported{false};
  at::parallel_for(0, pages, 256, [&](int64_t begin, int64_t end) {
    if (unsupported.load(std::memory_order_relaxed)) return;
    if (madvise(reinterpret_cast<void*>(start + begin * page), (end - begin) * page, kPopulateWrite) != 0 &&
        errno == EINVAL) {
      unsupported.store(true, std::memory_order_relaxed);
    }
  });
#else
  (void)ptr;
  (void)bytes;
#endif
}

at::Tensor copy_rows_cpu(const at::Tensor& src_in, const at::Tensor& perm_in, bool nt, bool scatter, bool check,
                         const char* op) {
  int64_t B, T, N;
  at::Tensor out = gather_prepare(src_in, perm_in, nt, scatter, op, B, T, N);
  if (out.numel() == 0) return out;
  const at::Tensor src = src_in.contiguous();
  const at::Tensor perm = perm_in.contiguous();
  const int64_t* p = perm.const_data_ptr<int64_t>();
  const int64_t rows = B * T * N;
  if (check) check_permutations(p, B * T, N, op);
  const int64_t row_bytes = src.size(-1) * src.element_size();
  const char* from = static_cast<const char*>(src.const_data_ptr());
  char* to = static_cast<char*>(out.data_ptr());
  prefault(to, rows * row_bytes);
  // Grain: about 64 KiB of copying per task.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(row_bytes, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const RowPair r = align_rows(k, p[k], T, N, nt);
      const int64_t src_row = scatter ? r.y_row : r.x_row, dst_row = scatter ? r.x_row : r.y_row;
      std::memcpy(to + dst_row * row_bytes, from + src_row * row_bytes, row_bytes);
    }
  });
  return out;
}

at::Tensor align_gather_cpu(const at::Tensor& x, const at::Tensor& perm, bool nt, bool check) {
  return copy_rows_cpu(x, perm, nt, /*scatter=*/false, check, "align_gather");
}

at::Tensor align_scatter_cpu(const at::Tensor& y, const at::Tensor& perm, bool nt, bool check) {
  return copy_rows_cpu(y, perm, nt, /*scatter=*/true, check, "align_scatter");
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("align_gather", &align_gather_cpu);
  m.impl("align_scatter", &align_scatter_cpu);
}

}  // namespace ata_ext
