// The batch driver shared by the CPU assignment solvers: it walks (..., N, M) problems in parallel,
// loads each into a dense float64 minimisation problem with rows <= columns, validates it, calls
// the solver and scatters the answer back. Keeping this in one place is what makes every CPU
// solver honour the same contract (shapes, -1 rows, errors).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/auction.h"
#include "common/lsa_common.h"

// Plain compare-and-select loops over whole rows vectorise well with AVX2 but not with the x86-64
// baseline; GCC builds a function marked with this twice and picks one when the library loads,
// so the binary still runs on any x86-64. A third, AVX-512 clone was slower where AVX-512 exists
// (the development machine's AMD EPYC, one thread, streams of batches, three rounds): uniform
// 64 x 196^2 1-6%, video-like 224 x 196^2 7-10%, 2048 x 10^2 17-21%, 4 x 784^2 mixed (-15 to +3%).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ATA_EXT_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ATA_EXT_AVX2_CLONES
#endif

namespace ata_ext {

// One problem in minimisation form: c is rows x cols, row-major, rows <= cols, +inf = forbidden.
struct DenseProblem {
  std::vector<double> c;
  int64_t rows = 0, cols = 0;
  bool all_finite = true;
  double max_abs = 0;  // the largest |c| over finite entries
  double min = 0;      // the smallest c (set only when all_finite)
  std::vector<uint8_t> taken;  // lsa_first_choices' scratch: the columns chosen so far
};

// Loads problem `src` (n x m with strides s0, s1) into p: transposed when n > m, negated when
// maximising, so p is always a minimisation with rows <= cols. Returns kInvalid on NaN or an
// infinity of the wrong sign (-inf when minimising, +inf when maximising).
// AVX2 clones: the conversion to double with its finiteness and range reductions was 40% of
// a video-like solve in baseline SSE2 code; with AVX2 a video-like 196 x 196 problem took 15-30%
// less (alternating builds, one thread).
template <typename scalar_t>
ATA_EXT_AVX2_CLONES LsaStatus lsa_load(const scalar_t* src, int64_t n, int64_t m, int64_t s0, int64_t s1,
                                       bool maximize, DenseProblem& p) {
  const bool transpose = n > m;
  p.rows = transpose ? m : n;
  p.cols = transpose ? n : m;
  p.c.resize(p.rows * p.cols);
  const int64_t rs = transpose ? s1 : s0, cs = transpose ? s0 : s1;
  const double sign = maximize ? -1.0 : 1.0;
  // probe stays 0 while every entry is finite (inf * 0 and NaN * 0 are NaN): a finiteness test
  // that vectorises, where a count of finite entries did not. amax is inf when
  // some entry is (then recomputed below); mn, the smallest entry, is only used when none is.
  double probe = 0, amax = 0, mn = std::numeric_limits<double>::infinity();
  // Each row is copied, then reduced while it is in L1: a row read with a stride (a transposed
  // problem, N > M, as DETR's queries x targets; or a column-major view) cannot be loaded in
  // vector registers, and reducing it in the same scalar loop made every entry wait on the last
  // one's min, max and sum (64 DETR-like 300 x 50 problems took 1.5x as long as the same costs
  // laid out column-major, one thread).
  // Contiguous short rows go several at a time, as one segment of at least 512 entries: each loop
  // has its set-up cost (streams of batches, one thread, old and new builds alternating: uniform
  // 5 x 5 problems took 8-18% less time, 20 x 20 5-9%; 196 x 196 unchanged).
  const int64_t step = cs == 1 && rs == p.cols ? std::max<int64_t>(1, 512 / p.cols) : 1;
  for (int64_t i = 0; i < p.rows; i += step) {
    const scalar_t* row = src + i * rs;
    double* dst = p.c.data() + i * p.cols;
    const int64_t len = std::min(step, p.rows - i) * p.cols;
    if (cs == 1) {  // the common contiguous case, kept separate so it vectorises
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) dst[j] = sign * static_cast<double>(row[j]);
    } else {
      for (int64_t j = 0; j < len; ++j) dst[j] = sign * static_cast<double>(row[j * cs]);
    }
#pragma omp simd reduction(+ : probe) reduction(max : amax) reduction(min : mn)
    for (int64_t j = 0; j < len; ++j) {
      probe += dst[j] * 0.0;
      const double a = std::abs(dst[j]);
      amax = a > amax ? a : amax;
      mn = dst[j] < mn ? dst[j] : mn;
    }
  }
  // Only when something is not finite: NaN and -inf are invalid, +inf is a forbidden pair.
  const double big = std::numeric_limits<double>::max();
  p.all_finite = probe == 0;
  p.max_abs = amax;
  p.min = mn;
  if (!p.all_finite) {
    p.max_abs = 0;
    for (const double v : p.c) {
      if (std::isnan(v) || v < -big) return kInvalid;
      if (v <= big) p.max_abs = std::max(p.max_abs, std::abs(v));
    }
  }
  return kOk;
}

// A cost limit (linear_sum_assignment's cost_limit), `bound` in p's minimisation form: p gets
// p.rows more columns, each holding the bound in every row, so a row either takes a real column
// or pays the limit, the optimum minimises the sum of (cost - limit) over the real pairs, and p
// is always feasible. Rows move in place, the last first.
inline void lsa_extend(DenseProblem& p, double bound) {
  const int64_t real = p.cols, cols = real + p.rows;
  p.c.resize(p.rows * cols);
  for (int64_t i = p.rows - 1; i >= 0; --i) {
    double* dst = p.c.data() + i * cols;
    std::memmove(dst, p.c.data() + i * real, real * sizeof(double));
    std::fill(dst + real, dst + cols, bound);
  }
  p.cols = cols;
  p.max_abs = std::max(p.max_abs, std::abs(bound));
  p.min = std::min(p.min, bound);
}

// First choices (the rule of csrc/common/auction.h, FirstChoice): when every row of src has one
// column of its highest benefit (the cost itself when maximising, its negation when minimising),
// compared as doubles, and no two rows share it, each row taking it is optimal: no assignment
// beats the sum of row maxima. Flat rows (one finite value, below 2^53 in magnitude, in every
// column) may sit among them: they take the columns left, lowest row first, lowest column first
// (any columns give them the same sum). A benefit of -inf (a forbidden pair) may sit beside the
// first choices; NaN or a benefit of +inf (invalid: the load reports it) fails the check, as does
// a row with no finite benefit. Returns false, having written nothing that counts, at the first
// row that fails; else sol[i] is row i's column. Needs n <= m. The batch driver runs it on the
// input before loading, for problems whose rows are contiguous and not transposed
// (lsa_solve_one): a solved problem is then never converted to float64, nor reduced. The
// auction's twin runs it on every loaded problem, as the kernel checks every problem.
// Two vectorised passes a row: its highest value (and a validity count), then how many columns
// hold it and the first of them. Video-like similarities pass: 224 of 196 x 196 took 2.5x less
// time than loading and column-reducing them (alternating builds, 1 and 2 threads); problems that
// fail do so within a few rows (uniform costs: no change measurable). With flat rows allowed, the
// same with 14 zero (padding) tokens in each frame (testing.video_similarity, padding=14) went
// from 5.4-6.0 to 1.3-1.7 ms on 2 threads, 9.5-9.9 to 2.4-2.5 ms on one (alternating builds).
template <typename scalar_t>
ATA_EXT_AVX2_CLONES bool lsa_first_choices(const scalar_t* src, int64_t n, int64_t m, int64_t s0, bool maximize,
                                           int64_t* sol, std::vector<uint8_t>& taken) {
  // Floats hold every value of the 1- and 2-byte types and of float itself exactly, so comparing
  // them as floats is comparing them as doubles, at twice the vector width.
  using cmp_t = std::conditional_t<sizeof(scalar_t) <= 2 || std::is_same_v<scalar_t, float>, float, double>;
  const cmp_t sign = maximize ? 1 : -1, big = std::numeric_limits<cmp_t>::max();
  const cmp_t flat_limit = static_cast<cmp_t>(auction::kFlatLimit);  // exact in float too
  const int32_t cols = static_cast<int32_t>(m);  // 32-bit indices vectorise with 32-bit compares
  taken.assign(m, 0);
  bool any_flat = false;
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t* row = src + i * s0;
    cmp_t best = -std::numeric_limits<cmp_t>::infinity();
    int32_t invalid = 0;  // NaN and +inf: "b <= big" is false for both, true for -inf
#pragma omp simd reduction(max : best) reduction(+ : invalid)
    for (int32_t j = 0; j < cols; ++j) {
      const cmp_t b = sign * static_cast<cmp_t>(row[j]);
      invalid += !(b <= big);
      best = b > best ? b : best;
    }
    if (invalid != 0 || !(best >= -big)) return false;
    int32_t count = 0, at = cols;
#pragma omp simd reduction(+ : count) reduction(min : at)
    for (int32_t j = 0; j < cols; ++j) {
      const bool top = sign * static_cast<cmp_t>(row[j]) == best;
      count += top;
      at = std::min(at, top ? j : cols);
    }
    if (count == cols && count > 1 && best < flat_limit && best > -flat_limit) {  // a flat row
      sol[i] = -1;
      any_flat = true;
      continue;
    }
    if (count != 1 || taken[at]) return false;
    taken[at] = 1;
    sol[i] = at;
  }
  for (int64_t i = 0, j = 0; any_flat && i < n; ++i) {
    if (sol[i] >= 0) continue;
    while (taken[j]) ++j;
    sol[i] = j++;
  }
  return true;
}

// Asks for the next problem's cost to be brought into cache while this one is solved: the solver
// works from its own float64 copy, so loading that copy is the one pass that reads the input, and
// from memory it is bandwidth-bound (on a 196 x 196 video-like problem, about a third of the
// solve). Only for a contiguous problem; a hint, with no effect on results.
template <typename scalar_t>
inline void prefetch_problem(const scalar_t* src, int64_t n, int64_t m, int64_t s0, int64_t s1) {
  if (s1 != 1 || s0 != m) return;
  const char* p = reinterpret_cast<const char*>(src);
  const int64_t bytes = n * m * static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t k = 0; k < bytes; k += 64) __builtin_prefetch(p + k, 0, 2);
}

// Loads problem src (n x m, strides s0, s1) and solves it: sol gets p.rows entries, the column of
// each row of the loaded problem (the transpose when n > m), -1 for a row that a cost limit
// leaves unmatched. Returns the problem's status.
template <typename scalar_t, typename Solver>
int32_t lsa_solve_one(const scalar_t* src, int64_t n, int64_t m, int64_t s0, int64_t s1, bool maximize, int64_t b,
                      Solver& solve, DenseProblem& p, std::vector<int64_t>& sol, std::optional<double> limit = {}) {
  // Rows shorter than 8 skip the check. On a stream of batches (2048 problems, one thread), the
  // check at n = 5 and 7 took 22-30% more time on uniform costs and 22-23% less on video-like
  // ones; at n = 10 and 14 it takes 9% more on uniform costs and 40% less on video-like ones.
  if (!limit && n <= m && s1 == 1 && m >= 8 && m <= std::numeric_limits<int32_t>::max()) {
    sol.resize(n);
    if (lsa_first_choices(src, n, m, s0, maximize, sol.data(), p.taken)) return kOk;
  }
  int32_t st = lsa_load(src, n, m, s0, s1, maximize, p);
  const int64_t real_cols = p.cols;
  const double bound = limit ? (maximize ? -1.0 : 1.0) * *limit : 0.0;
  // Where every pair beats the limit (and none is forbidden) the plain optimum is the answer: any
  // partial assignment grows into a complete one by pairs that each lower the sum of (cost -
  // limit), and among complete ones that sum is the plain total less a constant. Checked as
  // max |cost| < bound in p's minimisation form: exact where the costs and the limit have one
  // sign (distances and a positive limit), otherwise the extended problem is solved anyway.
  if (st == kOk && limit && !(p.all_finite && p.max_abs < bound)) lsa_extend(p, bound);
  if (st == kOk) {
    sol.assign(p.rows, -1);
    st = solve(p, sol.data(), b);
  }
  if (st == kOk && limit) {
    // A row on a limit column stays unmatched (-1), as does one on a real pair exactly at the
    // limit (it ties with a free limit column, of which there is always one, so that is optimal
    // too): every matched pair beats the limit.
    for (int64_t i = 0; i < p.rows; ++i) {
      const int64_t j = sol[i];
      if (j >= real_cols || !(p.c[i * p.cols + j] < bound)) sol[i] = -1;
    }
  }
  return st;
}

// Frees v if it holds more than 2^20 entries (8 MB of doubles). For thread-local scratch as large
// as a problem: kept, each thread (a pool thread, or the caller's) would hold the largest copy it
// ever made for good. Allocating it afresh costs page faults, small beside the solve of a problem
// that size.
template <typename T>
void release_if_large(std::vector<T>& v) {
  if (v.capacity() > (size_t{1} << 20)) std::vector<T>().swap(v);
}

// Writes a solved n x m problem's matched pairs as scipy returns them, rows increasing, into rows
// and cols (min(n, m) entries each) and returns how many there are (fewer with a cost limit).
// sol is lsa_solve_one's: the column of each row, or of the transpose's rows when n > m.
inline int64_t lsa_write_pairs(const std::vector<int64_t>& sol, int64_t n, int64_t m, int64_t* rows, int64_t* cols) {
  int64_t t = 0;
  if (n <= m) {
    for (int64_t i = 0; i < n; ++i) {
      if (sol[i] >= 0) rows[t] = i, cols[t++] = sol[i];
    }
    return t;
  }
  // Solved the transpose: sol[j] is column j's row (or -1); list the rows in order.
  std::vector<int64_t> col_of_row(n, -1);
  for (int64_t j = 0; j < m; ++j) {
    if (sol[j] >= 0) col_of_row[sol[j]] = j;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (col_of_row[i] >= 0) rows[t] = i, cols[t++] = col_of_row[i];
  }
  return t;
}

// Runs `task(b, p, sol)` for every b in [0, count) in parallel, p and sol being the task's
// scratch. Problems are uneven in cost (a random 196 x 196 one takes about 7x a video-like one),
// and at::parallel_for splits its range statically: so each task claims problems from a shared
// counter until none are left, whatever range it was given, `chunk` at a time (tiny problems
// claimed one by one spent much of their time on that counter's cache line: with chunks, 2 x 2
// and 3 x 20 problems took about half the time on 2 threads, 5 x 5 and 10 x 10 15-25% less).
// `ahead(b)` is called with the next chunk's first problem before the current chunk is solved
// (to prefetch it).
template <typename Task, typename Ahead>
void lsa_parallel(int64_t count, Task task, Ahead ahead, int64_t chunk = 1) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, count, 1, [&](int64_t, int64_t) {
    DenseProblem p;
    std::vector<int64_t> sol;
    for (int64_t b = next.fetch_add(chunk); b < count;) {
      const int64_t b_next = next.fetch_add(chunk);
      if (b_next < count) ahead(b_next);
      for (int64_t e = std::min(b + chunk, count); b < e; ++b) task(b, p, sol);
      b = b_next;
    }
  });
}

// Runs `solve(const DenseProblem&, int64_t* col_of_row, int64_t b) -> LsaStatus` on every problem
// b of the batch. col_of_row has p.rows entries. With check=false a failed problem is left all -1 instead
// of raising, which is the contract of the sync-free CUDA path too. `limit`: the cost limit
// (lsa_load), finite.
template <typename Solver>
at::Tensor lsa_run_batch(const at::Tensor& cost_in, bool maximize, bool check, const char* op, Solver solve,
                         std::optional<double> limit = {}) {
  lsa_check_input(cost_in, op);
  const int64_t n = cost_in.size(-2), m = cost_in.size(-1);
  // Left unset where every row's entry is written below (a fill is one more dispatched op, a
  // share of a small problem's call).
  at::Tensor out = lsa_output(cost_in, /*filled=*/m == 0);
  if (out.numel() == 0 || m == 0) return out;
  // Views stay views for any strided input whose batch dims can be flattened; otherwise one copy.
  const at::Tensor cost = cost_in.reshape({-1, n, m});
  const int64_t batch = cost.size(0);
  int64_t* out_ptr = out.data_ptr<int64_t>();  // contiguous (batch, n)
  std::vector<int32_t> status(batch, kOk);
  AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, cost.scalar_type(), "linear_sum_assignment", [&] {
    const scalar_t* base = cost.const_data_ptr<scalar_t>();
    const int64_t sb = cost.stride(0), s0 = cost.stride(1), s1 = cost.stride(2);
    lsa_parallel(
        batch,
        [&](int64_t b, DenseProblem& p, std::vector<int64_t>& sol) {
          status[b] = lsa_solve_one(base + b * sb, n, m, s0, s1, maximize, b, solve, p, sol, limit);
          int64_t* o = out_ptr + b * n;
          if (status[b] != kOk || n > m) std::fill(o, o + n, -1);  // a failed problem, rows left out
          if (status[b] != kOk) return;
          if (n <= m) {
            for (int64_t i = 0; i < n; ++i) o[i] = sol[i];
          } else {  // solved the transpose: sol maps original columns to original rows (or -1)
            for (int64_t j = 0; j < m; ++j) {
              if (sol[j] >= 0) o[sol[j]] = j;
            }
          }
        },
        [&](int64_t b) { prefetch_problem(base + b * sb, n, m, s0, s1); },
        /*chunk=*/std::max<int64_t>(1, 1024 / (n * m)));  // problems of under 1024 entries in chunks
  });
  if (check) lsa_raise(status.data(), batch, op);
  return out;
}

// The same for a list of 2-D problems of any shapes and dtypes (linear_sum_assignment_ragged):
// each is solved at its own size, and answered as scipy does, (rows, cols) of its min(n, m)
// matched pairs (fewer with a cost limit) with rows increasing. A failed problem's min(n, m)
// pairs are -1 (check=false).
template <typename Solver>
std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> lsa_run_list(at::TensorList costs, bool maximize, bool check,
                                                                          const char* op, Solver solve,
                                                                          std::optional<double> limit = {}) {
  const int64_t count = static_cast<int64_t>(costs.size());
  std::vector<at::Tensor> rows(count), cols(count);
  for (int64_t k = 0; k < count; ++k) {
    lsa_check_input(costs[k], op);
    TORCH_CHECK_VALUE(costs[k].dim() == 2, op, ": costs[", k, "] must be 2-D (N, M), got shape ", costs[k].sizes());
    TORCH_CHECK_VALUE(costs[k].device().is_cpu(), op, ": costs[", k, "] must be on the CPU, got ", costs[k].device());
    const int64_t pairs = std::min(costs[k].size(0), costs[k].size(1));
    rows[k] = at::empty({pairs}, costs[k].options().dtype(at::kLong));
    cols[k] = at::empty({pairs}, costs[k].options().dtype(at::kLong));
  }
  std::vector<int32_t> status(count, kOk);
  std::vector<int64_t> matched(count);  // pairs written; fewer than min(n, m) only with a limit
  lsa_parallel(
      count,
      [&](int64_t k, DenseProblem& p, std::vector<int64_t>& sol) {
        const at::Tensor& c = costs[k];
        const int64_t n = c.size(0), m = c.size(1), pairs = std::min(n, m);
        int64_t* r = rows[k].data_ptr<int64_t>();
        int64_t* q = cols[k].data_ptr<int64_t>();
        matched[k] = pairs;
        if (pairs == 0) return;
        AT_DISPATCH_ALL_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, c.scalar_type(), "linear_sum_assignment", [&] {
          status[k] = lsa_solve_one(c.const_data_ptr<scalar_t>(), n, m, c.stride(0), c.stride(1), maximize, k, solve,
                                    p, sol, limit);
        });
        if (status[k] != kOk) {
          std::fill(r, r + pairs, -1);
          std::fill(q, q + pairs, -1);
        } else {
          matched[k] = lsa_write_pairs(sol, n, m, r, q);
        }
      },
      [](int64_t) {});
  if (check) lsa_raise(status.data(), count, op, "costs[", "]");
  for (int64_t k = 0; k < count; ++k) {
    if (matched[k] < rows[k].size(0)) {
      rows[k] = rows[k].narrow(0, 0, matched[k]);
      cols[k] = cols[k].narrow(0, 0, matched[k]);
    }
  }
  return {std::move(rows), std::move(cols)};
}

}  // namespace ata_ext
