// CPU implementation of ata_ext::linear_sum_assignment: a Jonker-Volgenant shortest augmenting
// path solver in float64, parallel over the batch (the batch driver is lsa_batch_cpu.h).
#include <torch/library.h>

#include <algorithm>

#include "lsa_batch_cpu.h"

namespace ata_ext {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The O(n^2) passes of the initialisation are plain compare-and-select loops that vectorise well
// with AVX2 but not with the x86-64 baseline; GCC builds both and picks one when the library
// loads, so the binary still runs on any x86-64.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ATA_EXT_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ATA_EXT_AVX2_CLONES
#endif

// Per-thread scratch, reused across the problems one thread solves.
struct JvState {
  std::vector<double> v, d;             // column duals, shortest-path lengths
  std::vector<int64_t> y, pred, todo;   // row of column (-1 free), path predecessor, unscanned columns
  std::vector<int64_t> free_rows;
  std::vector<double> padded;           // nearly square problems, padded to square
  std::vector<int64_t> x;               // row -> column for the padded problem
};

// Jonker-Volgenant initialisation for square, all-finite problems: column reduction, reduction
// transfer and two passes of augmenting row reduction. It typically assigns most rows in O(n^2),
// leaving few for the O(n^2)-per-row augmentation. Invariant kept throughout (and relied upon by
// augment): every assigned row's column minimises c[i][j] - v[j] over j.
ATA_EXT_AVX2_CLONES void jv_init(const double* c, int64_t n, int64_t* x, JvState& s) {
  // Column reduction: v[j] = min_i c[i][j], computed row by row so memory is read in order.
  std::vector<int64_t> matches(n, 0), imin(n, 0);
  double* __restrict v = s.v.data();  // restrict lets the compiler vectorise the select below
  int64_t* __restrict im = imin.data();
  std::copy(c, c + n, v);
  for (int64_t i = 1; i < n; ++i) {
    const double* __restrict ci = c + i * n;
    for (int64_t j = 0; j < n; ++j) {
      const bool lower = ci[j] < v[j];
      v[j] = lower ? ci[j] : v[j];
      im[j] = lower ? i : im[j];
    }
  }
  // A row that is the minimum of several columns keeps only the last (highest) one.
  for (int64_t j = n - 1; j >= 0; --j) {
    if (++matches[imin[j]] == 1) { x[imin[j]] = j; s.y[j] = imin[j]; }
  }
  s.free_rows.clear();
  for (int64_t i = 0; i < n; ++i) {  // reduction transfer
    if (matches[i] == 0) { s.free_rows.push_back(i); continue; }
    if (matches[i] != 1 || n < 2) continue;
    const int64_t j1 = x[i];
    double mn = kInf;
    const double* ci = c + i * n;
    // An exact min in any order: the simd reduction lets it vectorise without -ffast-math.
#pragma omp simd reduction(min : mn)
    for (int64_t j = 0; j < n; ++j) {
      const double h = j == j1 ? kInf : ci[j] - v[j];
      mn = h < mn ? h : mn;
    }
    v[j1] -= mn - (ci[j1] - v[j1]);
  }
  if (n < 2) return;
  // Augmenting row reduction. A step that lowers a price re-queues the displaced row at once; on
  // float data such steps can shrink geometrically, so the total is capped: rows still free at
  // the cap simply go to the augmentation phase, which is exact.
  for (int pass = 0; pass < 2 && !s.free_rows.empty(); ++pass) {
    std::vector<int64_t>& fr = s.free_rows;
    const int64_t nfree = static_cast<int64_t>(fr.size());
    int64_t k = 0, nnew = 0, steps = 0;
    const int64_t max_steps = 2 * n;
    while (k < nfree && steps++ < max_steps) {
      const int64_t i = fr[k++];
      const double* ci = c + i * n;
      double u1 = ci[0] - v[0], u2 = kInf;
      int64_t j1 = 0, j2 = -1;
      for (int64_t j = 1; j < n; ++j) {
        const double h = ci[j] - v[j];
        if (h < u2) {
          if (h >= u1) { u2 = h; j2 = j; }
          else { u2 = u1; j2 = j1; u1 = h; j1 = j; }
        }
      }
      int64_t i0 = s.y[j1];
      if (u1 < u2) {
        v[j1] -= u2 - u1;
      } else if (i0 >= 0) {  // tie: take the second-best column instead of displacing i0
        j1 = j2;
        i0 = s.y[j1];
      }
      if (i0 >= 0) {
        x[i0] = -1;
        if (u1 < u2) fr[--k] = i0;  // its best column just got dearer: retry it immediately
        else fr[nnew++] = i0;
      }
      x[i] = j1;
      s.y[j1] = i;
    }
    // Rows never reached because of the cap stay free.
    while (k < nfree) fr[nnew++] = fr[k++];
    fr.resize(nnew);
  }
}

// Dijkstra from free row f over reduced costs; augments along the shortest path to a free column
// and updates the duals so the invariant above keeps holding. Infeasible iff no finite path.
bool jv_augment(const double* c, int64_t cols, int64_t f, int64_t* x, JvState& s) {
  double* d = s.d.data();
  double* v = s.v.data();
  int64_t* todo = s.todo.data();
  int64_t* pred = s.pred.data();
  const double* cf = c + f * cols;
  double best = kInf;
  int64_t best_t = -1;
  for (int64_t j = 0; j < cols; ++j) {
    todo[j] = j;
    pred[j] = f;
    d[j] = cf[j] - v[j];
    // Among equal distances prefer a free column: the path ends sooner.
    if (d[j] < best || (d[j] == best && best_t >= 0 && s.y[j] < 0 && s.y[todo[best_t]] >= 0)) {
      best = d[j];
      best_t = j;
    }
  }
  int64_t ntodo = cols;  // todo[0, ntodo) unscanned; todo[ntodo, cols) scanned, in scan order
  int64_t sink = -1;
  while (true) {
    if (best_t < 0 || best == kInf) return false;
    const int64_t j = todo[best_t];
    todo[best_t] = todo[--ntodo];
    todo[ntodo] = j;
    if (s.y[j] < 0) { sink = j; break; }
    const int64_t i = s.y[j];
    const double* ci = c + i * cols;
    const double h = ci[j] - v[j] - best;  // row i's dual relative to the path length so far
    double nbest = kInf;
    int64_t nbest_t = -1;
    for (int64_t t = 0; t < ntodo; ++t) {
      const int64_t k = todo[t];
      const double nd = ci[k] - v[k] - h;
      if (nd < d[k]) { d[k] = nd; pred[k] = i; }
      if (d[k] < nbest || (d[k] == nbest && nbest_t >= 0 && s.y[k] < 0 && s.y[todo[nbest_t]] >= 0)) {
        nbest = d[k];
        nbest_t = t;
      }
    }
    best = nbest;
    best_t = nbest_t;
  }
  // Scanned columns other than the sink move their duals by how much shorter their path was.
  const double dsink = d[sink];
  for (int64_t t = ntodo + 1; t < cols; ++t) {
    const int64_t j = todo[t];
    v[j] += d[j] - dsink;
  }
  for (int64_t j = sink;;) {  // flip the path
    const int64_t i = pred[j];
    s.y[j] = i;
    const int64_t prev = x[i];
    x[i] = j;
    if (i == f) break;
    j = prev;
  }
  return true;
}

LsaStatus jv_solve(const DenseProblem& p, int64_t* x_out, JvState& s) {
  const int64_t m = p.cols;
  int64_t n = p.rows;
  const double* c = p.c.data();
  int64_t* x = x_out;
  // A nearly square problem is padded with rows of constant cost 0 (which shifts every complete
  // assignment's total by the same amount, so the real rows' optimum is unchanged): that lets the
  // square initialisation run: 2.8x faster on 64 problems of 180 x 196. Very rectangular ones (a
  // few rows, like DETR's targets x queries) are cheaper to augment row by row.
  if (n < m && 2 * n >= m && p.all_finite) {
    s.padded.assign(m * m, 0.0);
    std::copy(p.c.begin(), p.c.end(), s.padded.begin());
    s.x.resize(m);
    c = s.padded.data();
    x = s.x.data();
    n = m;
  }
  s.v.assign(m, 0.0);
  s.d.resize(m);
  s.y.assign(m, -1);
  s.pred.resize(m);
  s.todo.resize(m);
  std::fill(x, x + n, -1);
  if (n == m && p.all_finite) {
    jv_init(c, n, x, s);
  } else {
    // Rectangular or with forbidden pairs: plain augmentation from zero duals. Free columns must
    // keep v = 0 for the rectangular optimum, which the initialisation would break.
    s.free_rows.resize(n);
    for (int64_t i = 0; i < n; ++i) s.free_rows[i] = i;
  }
  const std::vector<int64_t> rows = s.free_rows;
  for (int64_t f : rows) {
    if (!jv_augment(c, m, f, x, s)) return kInfeasible;
  }
  if (x != x_out) std::copy(x, x + p.rows, x_out);
  return kOk;
}

at::Tensor linear_sum_assignment_cpu(const at::Tensor& cost, bool maximize, bool check) {
  return lsa_run_batch(cost, maximize, check, "linear_sum_assignment",
                       [](const DenseProblem& p, int64_t* x) {
                         thread_local JvState s;
                         return jv_solve(p, x, s);
                       });
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("linear_sum_assignment", &linear_sum_assignment_cpu);
}

}  // namespace ata_ext
