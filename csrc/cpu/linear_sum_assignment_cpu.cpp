// CPU implementation of ata_ext::linear_sum_assignment: a Jonker-Volgenant shortest augmenting
// path solver in float64, parallel over the batch (the batch driver is lsa_batch_cpu.h). The
// docs/solvers.md ("The CPU solver") describes its phases and what makes them fast.
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "lsa_batch_cpu.h"
#include "lsa_dense.h"

namespace ata_ext {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Finite costs are kept below 2^kMaxCostExp in magnitude (jv_solve), which leaves a factor 2^64
// below the double limit for the duals, which move by sums of reduced costs.
constexpr int kMaxCostExp = 960;
// Rectangular problems with at least 0.9 as many rows as columns, and this many columns, are
// padded to square (jv_solve).
constexpr int64_t kMinPadCols = 64;
// Square problems from this size get the initialisation (jv_init); smaller ones augment row by
// row from zero duals. Which is faster below it depends on the costs: timed on a stream of
// different batches (224 problems, one thread; one batch timed over and over, as first measured,
// favoured the augmentation), at n = 37-41 the initialisation took 15-20% less time on uniform and
// random cosine costs, but 40-50% more on integers in [0, 5) and 20-40% more on point distances
// (integers in [0, 100) alike); from 42 to 64 it took 17-31% less on uniform and cosine costs.
constexpr int64_t kMinInitN = 42;
// Flat rows (one value in every column: a padding row, a zero token's similarities) tie at 0 in
// every column of the column reduction (jv_init), so every column's dual stays 0 and tells the
// other rows nothing: a problem one row short of square took 1.3-1.7x as long as the square one
// (64 to 784 columns, uniform costs). Up to this many are left out of the initialisation and
// placed at the end by the Dijkstra search, which walks other rows off the columns they took.
// The walks grow with their number: deferring 3 measured 1.06-1.73x as fast (128 to 1024
// columns), 4 0.93-1.21x, 5 0.91-1.08x, 6 0.86-0.95x (one thread, alternating runs).
constexpr int64_t kMaxDeferredFlatRows = 3;

// The full-row passes (column reduction, row minima, the Dijkstra relaxation) are compiled twice,
// for AVX2 and the x86-64 baseline (ATA_EXT_AVX2_CLONES, lsa_batch_cpu.h).

// Per-thread scratch, reused across the problems one thread solves.
struct JvState {
  std::vector<double> v;                // column duals
  std::vector<double> w, d;             // augment: tentative distances (-inf once scanned), final ones
  std::vector<int64_t> y, pred, scanned;  // row of column (-1 free), path predecessor, scan order
  std::vector<int64_t> todo, ready;     // augment_by_lists: columns above the current distance, at it
  std::vector<int64_t> free_rows;
  std::vector<int64_t> matches, imin;   // init: columns whose minimum each row is, each column's row of minimum
  std::vector<double> padded;           // nearly square problems, padded to square
  std::vector<double> scaled;           // problems with huge costs, scaled down (jv_solve)
  std::vector<int64_t> x;               // row -> column for the padded problem
  // Augmenting row reduction's per-row candidate lists (see arr_best_two): row i's columns are
  // cand_col[cand_begin[i], cand_end[i]); every column left out costs more than cand_bound[i]. cand_begin[i] = kUnbuilt until the row is first visited,
  // kWholeRow for a row that scans all columns.
  std::vector<int64_t> cand_begin, cand_end;
  std::vector<double> cand_bound;
  std::vector<int32_t> cand_col;
  double cand_theta = 0;                // the margin above a row's minimum that is kept
};

// Augmenting row reduction (below) asks for the two cheapest columns of a row, by reduced cost
// c[i][j] - v[j], some 3.5n times per problem; scanning whole rows made it half of all the work
// on random data. So on its first visit a row keeps a short list: its columns within theta of
// its minimum, theta chosen so that a typical row keeps kCandidates. The phase only ever lowers
// prices v, which makes every column dearer, so a column left out stays above the row's bound
// (minimum + theta at build time) for the rest of the phase. Rows whose list would be long (ties)
// scan the whole row. (Lists won from n = 40 and lost below 28; jv_init runs from kMinInitN.)
// 6 rather than 12, measured side by side on one thread: 5-15% faster on uniform costs from 40^2
// to 1024^2, random cosine similarities and 180 x 196, 27% with 30 duplicated rows and columns;
// 4 was slower at 784^2.
constexpr int64_t kCandidates = 6;
constexpr int64_t kMaxCandidates = 64;
constexpr int64_t kUnbuilt = -1, kWholeRow = -2;

// min over j in [begin, end) of ci[j] - v[j]. An exact min in any order: the simd reduction lets
// it vectorise without -ffast-math (inlined into the AVX2 clones below, it uses AVX2).
inline double min_reduced(const double* __restrict ci, const double* __restrict v, int64_t begin, int64_t end) {
  double mn = kInf;
#pragma omp simd reduction(min : mn)
  for (int64_t j = begin; j < end; ++j) {
    const double h = ci[j] - v[j];
    mn = h < mn ? h : mn;
  }
  return mn;
}

// The smallest and largest of ci[0, n), vectorised as min_reduced is.
inline void row_range(const double* __restrict ci, int64_t n, double& lo, double& hi) {
  double mn = kInf, mx = -kInf;
#pragma omp simd reduction(min : mn) reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) {
    mn = ci[j] < mn ? ci[j] : mn;
    mx = ci[j] > mx ? ci[j] : mx;
  }
  lo = mn;
  hi = mx;
}

// theta: the median, over five evenly spaced rows, of the gap between a row's minimum and its
// kCandidates-th smallest reduced cost. Anything but a non-negative number (overflowing ranges)
// turns the lists off.
double arr_theta(const double* c, int64_t n, const double* v, JvState& s) {
  constexpr int kSamples = 5;
  double gap[kSamples];
  std::vector<double>& tmp = s.w;  // augment's scratch, free during the initialisation
  for (int q = 0; q < kSamples; ++q) {
    const double* ci = c + (q * n / kSamples) * n;
    for (int64_t j = 0; j < n; ++j) tmp[j] = ci[j] - v[j];
    std::nth_element(tmp.begin(), tmp.begin() + kCandidates, tmp.begin() + n);
    gap[q] = tmp[kCandidates] - *std::min_element(tmp.begin(), tmp.begin() + kCandidates);
  }
  std::nth_element(gap, gap + kSamples / 2, gap + kSamples);
  const double theta = gap[kSamples / 2];
  return theta >= 0 ? theta : kInf;
}

ATA_EXT_AVX2_CLONES void arr_build_row(const double* c, int64_t n, int64_t i, const double* v, JvState& s,
                                       int64_t& top) {
  const double* __restrict ci = c + i * n;
  const double bound = min_reduced(ci, v, 0, n) + s.cand_theta;
  // Compaction: the kept columns are marked 64 at a time in a bit mask (a compare loop that
  // vectorises), then only the set bits (a dozen a row, typically) are walked. Writing every
  // column and advancing the end on kept ones serialised on that end index: this measured the
  // build 20% faster and the whole solve 3-5% on random 196 x 196 problems.
  int32_t* col = s.cand_col.data();
  int64_t end = top;
  for (int64_t j0 = 0; j0 < n && end - top <= kMaxCandidates; j0 += 64) {
    const int64_t len = std::min<int64_t>(64, n - j0);
    uint64_t bits = 0;
    for (int64_t k = 0; k < len; ++k) bits |= static_cast<uint64_t>(ci[j0 + k] - v[j0 + k] <= bound) << k;
    for (; bits != 0; bits &= bits - 1) col[end++] = static_cast<int32_t>(j0 + __builtin_ctzll(bits));
  }
  if (end - top > kMaxCandidates || !(bound < kInf)) {
    s.cand_begin[i] = kWholeRow;
    return;
  }
  // The two cheapest first: best_two's branches are then mostly not taken, and predictable.
  for (int64_t front = top; front < std::min(top + 2, end); ++front) {
    int64_t k = front;
    for (int64_t t = front + 1; t < end; ++t) {
      if (ci[col[t]] - v[col[t]] < ci[col[k]] - v[col[k]]) k = t;
    }
    std::swap(col[front], col[k]);
  }
  s.cand_begin[i] = top;
  s.cand_end[i] = end;
  s.cand_bound[i] = bound;
  top = end;
}

struct BestTwo {
  double u1, u2;   // the smallest and second smallest reduced cost of the row
  int64_t j1, j2;  // their columns; j2 = -1 when u2 is only the bound on the columns left out
};

// The two smallest of ci[j] - v[j] over j = col(t), t < len. Branchy on purpose: for random rows
// the branches are predictable, and it measured faster than a vectorised top-2.
template <typename Col>
inline BestTwo best_two(const double* ci, const double* v, int64_t len, Col col) {
  double u1 = kInf, u2 = kInf;
  int64_t j1 = -1, j2 = -1;
  for (int64_t t = 0; t < len; ++t) {
    const int64_t j = col(t);
    const double h = ci[j] - v[j];
    if (h < u2) {
      if (h >= u1) { u2 = h; j2 = j; }
      else { u2 = u1; j2 = j1; u1 = h; j1 = j; }
    }
  }
  return {u1, u2, j1, j2};
}

// Returns false when row i's list cannot tell its cheapest column: the row is then left for the
// augmentation, which is exact.
inline bool arr_best_two(const double* c, int64_t n, int64_t i, const double* v, JvState& s,
                         int64_t& top, BestTwo& r) {
  if (s.cand_begin[i] == kUnbuilt) arr_build_row(c, n, i, v, s, top);
  const double* ci = c + i * n;
  const int64_t b = s.cand_begin[i];
  if (b == kWholeRow) {
    r = best_two(ci, v, n, [](int64_t t) { return t; });
    return true;
  }
  const int32_t* col = s.cand_col.data() + b;
  r = best_two(ci, v, s.cand_end[i] - b, [col](int64_t t) { return int64_t{col[t]}; });
  // Columns left out cost more than bound. So if u2 <= bound both are exact; otherwise the
  // cheapest is exact only if u1 < bound, and the second is somewhere above bound.
  const double bound = s.cand_bound[i];
  if (bound < r.u2) {
    if (!(r.u1 < bound)) return false;
    r.u2 = bound;
    r.j2 = -1;
  }
  return true;
}

// Jonker-Volgenant initialisation for square, all-finite problems: row and column reduction,
// reduction transfer and two passes of augmenting row reduction. It typically assigns most rows in O(n^2),
// leaving few for the O(n^2)-per-row augmentation. Invariant kept throughout (and relied upon by
// augment): every assigned row's column minimises c[i][j] - v[j] over j. Runs for n >= kMinInitN
// (square problems, and nearly square ones padded to at least kMinPadCols).
ATA_EXT_AVX2_CLONES void jv_init(const double* c, int64_t n, int64_t* x, JvState& s) {
  // Row, then column reduction: v[j] = min_i (c[i][j] - r_i), r_i the minimum of row i (its
  // dual), computed row by row so memory is read in order. Column j then goes to a row whose
  // cheapest column it is, where there is one. With the plain column reduction (v[j] = min_i
  // c[i][j]) rows whose costs sit lower overall took many columns and kept one, leaving more rows
  // to the later phases: on 64 random cosine similarity problems of 196 x 196, 294 rows reached
  // the augmentation, whose Dijkstra scanned 24,249 rows, against 133 and 7,184 now, and the solve
  // took 25-30% less time (alternating builds, one thread); with a common direction in the
  // features 59,472 -> 34,125 scans, 25% less time; uniform costs 12,017 -> 10,611 scans, time
  // unchanged; square DETR-like costs with clustered predictions 85,054 -> 104,120 scans, 15-40%
  // more time. Among equal reduced costs the first row takes the column, and a flat row (one
  // value in every column) ties at 0 in all of them: flat rows go last, so they take only the
  // columns no other row wants as much (zero tokens first in video-like similarities took every
  // column, and every other row was left to the augmenting row reduction); up to
  // kMaxDeferredFlatRows of them sit the initialisation out instead.
  s.matches.assign(n, 0);
  s.imin.assign(n, 0);
  std::vector<int64_t>& matches = s.matches;
  const std::vector<int64_t>& imin = s.imin;
  double* __restrict v = s.v.data();  // restrict lets the compiler vectorise the select below
  int64_t* __restrict im = s.imin.data();
  std::fill(v, v + n, kInf);
  const auto reduce = [&](int64_t i, double ri) {
    const double* __restrict ci = c + i * n;
    for (int64_t j = 0; j < n; ++j) {
      const double cij = ci[j] - ri, vj = v[j];
      im[j] = cij < vj ? i : im[j];
      v[j] = vj <= cij ? vj : cij;  // a min, so GCC stores every element (see jv_augment)
    }
  };
  std::vector<int64_t>& flat = s.free_rows;  // filled below, after the reduction
  flat.clear();
  for (int64_t i = 0; i < n; ++i) {
    double lo, hi;
    row_range(c + i * n, n, lo, hi);
    if (lo == hi) {
      flat.push_back(i);
    } else {
      reduce(i, lo);
    }
  }
  // Deferred flat rows stay free (no column has them as its minimum) and the augmenting row
  // reduction passes them over, so the augmentation places them.
  std::array<int64_t, kMaxDeferredFlatRows> deferred;
  deferred.fill(-1);
  const size_t ndeferred = flat.size() <= deferred.size() && flat.size() < static_cast<size_t>(n) ? flat.size() : 0;
  std::copy(flat.begin(), flat.begin() + ndeferred, deferred.begin());
  for (size_t k = ndeferred; k < flat.size(); ++k) reduce(flat[k], c[flat[k] * n]);
  // A row that is the minimum of several columns keeps only the last (highest) one.
  for (int64_t j = n - 1; j >= 0; --j) {
    if (++matches[imin[j]] == 1) { x[imin[j]] = j; s.y[j] = imin[j]; }
  }
  s.free_rows.clear();
  for (int64_t i = 0; i < n; ++i) {
    if (matches[i] == 0) s.free_rows.push_back(i);
  }
  // Every row (but the deferred ones) the minimum of its own column: the sum of the duals (r_i
  // and v[j]), a lower bound on any assignment, is reached. Video-like similarities mostly ended
  // here (before the first-choice check took them), and skipping the transfer's pass over the
  // matrix took 224 of them from 8.3 to 6.7 ms on one thread.
  if (s.free_rows.size() == ndeferred) return;
  for (int64_t i = 0; i < n; ++i) {  // reduction transfer
    if (matches[i] != 1 || n < 2) continue;
    const int64_t j1 = x[i];
    const double* ci = c + i * n;
    // Two ranges around j1: a select on j == j1 inside one loop kept GCC from vectorising it.
    const double mn = std::min(min_reduced(ci, v, 0, j1), min_reduced(ci, v, j1 + 1, n));
    v[j1] -= mn - (ci[j1] - v[j1]);
  }
  if (n < 2) return;
  // Augmenting row reduction. A step that lowers a price re-queues the displaced row at once; on
  // float data such steps can shrink geometrically, so the total is capped: rows still free at
  // the cap simply go to the augmentation phase, which is exact. A step costs about a list's
  // length, an augmentation O(n^2), so the cap grows with n: 2n steps below n = 192, about n^2/64
  // from there (measured on uniform costs: n = 512 1.12 -> 0.82 ms, n = 2048 61 -> 13 ms; no change
  // at n <= 256).
  // theta = 0: the sampled rows' minima are tied 7 times or more. The reduction's price steps
  // are then 0, and it only moves rows between tied columns; the augmentation, which takes a
  // free column among equal distances, places them directly: skipping the reduction took 64
  // problems of 196 x 196 integers in [0, 5) 1.4-1.7x less time, in [0, 2) 1.5x (one thread).
  s.cand_theta = arr_theta(c, n, v, s);
  if (s.cand_theta == 0) return;
  s.cand_begin.assign(n, kUnbuilt);
  s.cand_end.resize(n);
  s.cand_bound.resize(n);
  s.cand_col.resize(n * (kMaxCandidates + 1));
  int64_t top = 0;
  for (int pass = 0; pass < 2 && !s.free_rows.empty(); ++pass) {
    std::vector<int64_t>& fr = s.free_rows;
    const int64_t nfree = static_cast<int64_t>(fr.size());
    int64_t k = 0, nnew = 0, steps = 0;
    const int64_t max_steps = n * std::max<int64_t>(2, n / 64);
    while (k < nfree && steps++ < max_steps) {
      const int64_t i = fr[k++];
      if (std::find(deferred.begin(), deferred.end(), i) != deferred.end()) {
        fr[nnew++] = i;
        continue;
      }
      BestTwo b;
      if (!arr_best_two(c, n, i, v, s, top, b)) {
        fr[nnew++] = i;
        continue;
      }
      int64_t j1 = b.j1, i0 = s.y[j1];
      if (b.u1 < b.u2) {
        v[j1] -= b.u2 - b.u1;
      } else if (i0 >= 0) {  // tie (so j2 is a real column): take it instead of displacing i0
        j1 = b.j2;
        i0 = s.y[j1];
      }
      if (i0 >= 0) {
        x[i0] = -1;
        if (b.u1 < b.u2) fr[--k] = i0;  // its best column just got dearer: retry it immediately
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

// Long searches on tie-heavy costs (large problems only). Among columns at the same distance, the
// order of scanning decides how soon a free one is reached, and lowest index first (the dense loop
// below) can be far from the best: on one 4000 x 4000 problem of integers in [0, 1000) the
// augmentation scanned 307,846 rows where scanning in the order the columns reached that distance
// (first found, first scanned, as Jonker and Volgenant's own code does) scanned 35,356. So a search that has scanned
// kListScans rows of a problem with at least kListMinCols columns, and whose current distance is
// held by several columns, is finished here: the columns above the current distance in a list
// (todo) that each scan relaxes and compacts, the columns at it in a queue (ready). The list also
// skips the scanned columns the dense pass still reads. Float costs rarely tie and stay dense.
// Measured on one thread (alternating builds, two or three rounds; this machine's noise is about
// 20%): integers in [0, 1000) at n = 4096 4.9-5.8x less time, at 3072 2.2-3.0x, at 2048 no
// difference; below that the lists' gathers and branches cost more than the order saves (1280^2
// and 1536^2 integers up to 2x slower, 1024^2 30%), hence kListMinCols. Integers in [0, 100) and
// float costs: no difference beyond the noise at any of these sizes.
constexpr int64_t kListScans = 16, kListMinCols = 2048;

// Whether two or more columns hold distance best (scanned ones hold -inf).
inline bool distance_tied(const double* w, int64_t cols, double best) {
  int64_t at = 0;
  for (int64_t k = 0; k < cols && at < 2; ++k) at += w[k] == best;
  return at >= 2;
}

// Finishes jv_augment's search from its state (w, pred, the nscanned columns scanned so far,
// best the current distance, no free column at it) by lists, as described above. Returns the free
// column the shortest path ends at (d set for it and for every scanned column), or -1 if none is
// reachable.
int64_t augment_by_lists(const double* c, int64_t cols, double best, int64_t& nscanned, JvState& s) {
  s.todo.resize(cols);  // sized here, not per problem: only long tied searches on large problems come here
  s.ready.resize(cols);
  double* w = s.w.data();
  double* d = s.d.data();
  const double* v = s.v.data();
  const int64_t* y = s.y.data();
  int64_t* pred = s.pred.data();
  int64_t* todo = s.todo.data();
  int64_t* ready = s.ready.data();
  int64_t ntodo = 0, head = 0, tail = 0;  // ready[head, tail) is the queue
  for (int64_t k = 0; k < cols; ++k) {
    if (w[k] == -kInf) continue;
    if (w[k] <= best) ready[tail++] = k;  // <=: a relaxation may round below best
    else todo[ntodo++] = k;
  }
  while (true) {
    if (head == tail) {  // the next distance: its columns join the queue, a free one ends the search
      double mn = kInf;
      for (int64_t t = 0; t < ntodo; ++t) mn = std::min(mn, w[todo[t]]);
      if (mn == kInf) return -1;
      best = mn;
      head = tail = 0;
      int64_t keep = 0;
      for (int64_t t = 0; t < ntodo; ++t) {
        const int64_t k = todo[t];
        if (w[k] > best) {
          todo[keep++] = k;
        } else if (y[k] < 0) {
          d[k] = w[k];
          return k;
        } else {
          ready[tail++] = k;
        }
      }
      ntodo = keep;
    }
    const int64_t j = ready[head++], i = y[j];
    d[j] = w[j];
    w[j] = -kInf;
    s.scanned[nscanned++] = j;
    const double* ci = c + i * cols;
    const double h = ci[j] - v[j] - d[j];  // row i's dual relative to the path length so far
    int64_t keep = 0;
    for (int64_t t = 0; t < ntodo; ++t) {
      const int64_t k = todo[t];
      const double nd = ci[k] - v[k] - h;
      if (nd < w[k]) {
        w[k] = nd;
        pred[k] = i;
        if (nd <= best) {  // at the current distance: a free column ends the search, others queue
          if (y[k] < 0) {
            d[k] = nd;
            return k;
          }
          ready[tail++] = k;
          continue;
        }
      }
      todo[keep++] = k;
    }
    ntodo = keep;
  }
}

// The first j with w[j] == value, which must exist. Sixteen entries are compared at a time (GCC's
// vector extensions: four AVX compares in the AVX2 clone; GCC makes scalar code of them for the
// x86-64 baseline), then the block holding it is walked. The Dijkstra search below looks up the
// column of its minimum once per scanned row; walking entry by entry there was about a third of
// the search's time on Euclidean-distance costs (perf), where searches scan many rows.
inline int64_t find_first(const double* w, int64_t n, double value) {
  // w is only 8-byte aligned; may_alias lets a double array be read through the vector type.
  typedef double v4d __attribute__((vector_size(32), aligned(8), may_alias));
  typedef int64_t v4l __attribute__((vector_size(32)));
  const v4d val = {value, value, value, value};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const v4d* p = reinterpret_cast<const v4d*>(w + j);
    const v4l hit = ((p[0] == val) | (p[1] == val)) | ((p[2] == val) | (p[3] == val));
    if ((hit[0] | hit[1]) | (hit[2] | hit[3])) break;
  }
  while (w[j] != value) ++j;
  return j;
}

// Dijkstra from free row f over reduced costs; augments along the shortest path to a free column
// and updates the duals so the invariant above keeps holding. Infeasible iff no finite path.
// Each scanned row relaxes every column in one vectorised pass (scanned columns hold -inf, so
// they never relax and drop out of the minimum): cheaper than walking a list of unscanned
// columns, whose gathers do not vectorise.
ATA_EXT_AVX2_CLONES bool jv_augment(const double* c, int64_t cols, int64_t f, int64_t* x, JvState& s) {
  // Every access to these arrays below goes through these pointers (as restrict requires).
  double* __restrict w = s.w.data();
  double* __restrict d = s.d.data();
  double* __restrict v = s.v.data();
  int64_t* __restrict y = s.y.data();
  int64_t* __restrict pred = s.pred.data();
  const double* __restrict cf = c + f * cols;
  // best: the smallest tentative distance; best_free: the smallest over free columns. Among equal
  // distances a free column is taken, which ends the path at once (tie-heavy inputs need this).
  double best = kInf, best_free = kInf;
#pragma omp simd reduction(min : best, best_free)
  for (int64_t j = 0; j < cols; ++j) {
    w[j] = cf[j] - v[j];
    pred[j] = f;
    best = w[j] < best ? w[j] : best;
    const double wf = y[j] < 0 ? w[j] : kInf;
    best_free = wf < best_free ? wf : best_free;
  }
  int64_t nscanned = 0, sink = -1;
  while (true) {
    // No finite path left. Tested as best >= the largest finite double, not best == inf: the
    // minima come from omp simd reductions, whose private copies start at the identity, +inf
    // with GCC but the largest finite double with Clang, which is then the minimum of columns
    // that are all at +inf (taking it for a distance, the search ran off its arrays: a segfault
    // on every infeasible problem). Real distances stay far below it (costs are scaled below
    // 2^kMaxCostExp).
    if (best >= std::numeric_limits<double>::max()) return false;
    int64_t j = 0;
    if (best_free == best) {
      while (!(w[j] == best && y[j] < 0)) ++j;
      d[j] = best;
      sink = j;
      break;
    }
    if (nscanned == kListScans && cols >= kListMinCols && distance_tied(w, cols, best)) {
      sink = augment_by_lists(c, cols, best, nscanned, s);
      if (sink < 0) return false;
      break;
    }
    j = find_first(w, cols, best);
    d[j] = best;
    w[j] = -kInf;
    s.scanned[nscanned++] = j;
    const int64_t i = y[j];
    const double* __restrict ci = c + i * cols;
    const double h = ci[j] - v[j] - best;  // row i's dual relative to the path length so far
    double nbest = kInf, nbest_free = kInf;
#pragma omp simd reduction(min : nbest, nbest_free)
    for (int64_t k = 0; k < cols; ++k) {
      const double nd = ci[k] - v[k] - h, old = w[k];
      // Written as a min, not as "shorter ? nd : old": GCC turns the latter into a masked store,
      // which measured slower than storing every element.
      const double wk = old < nd ? old : nd;
      w[k] = wk;
      pred[k] = nd < old ? i : pred[k];
      const double m = wk == -kInf ? kInf : wk;
      nbest = m < nbest ? m : nbest;
      const double mf = y[k] < 0 ? m : kInf;
      nbest_free = mf < nbest_free ? mf : nbest_free;
    }
    best = nbest;
    best_free = nbest_free;
  }
  // Scanned columns move their duals by how much shorter their path was than the sink's.
  const double dsink = d[sink];
  for (int64_t t = 0; t < nscanned; ++t) {
    const int64_t j = s.scanned[t];
    v[j] += d[j] - dsink;
  }
  for (int64_t j = sink;;) {  // flip the path
    const int64_t i = pred[j];
    y[j] = i;
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
  // Costs beyond 2^960 in magnitude are scaled down by a power of two, which keeps every finite
  // cost exact (bar subnormals, far below such costs' resolution) and the optimum the same. The
  // reduced costs and duals are differences and sums of costs: unscaled, costs near the double
  // limit overflowed them to inf and NaN, and the solver then reported an infeasible problem and
  // wrote out of bounds (found with +-1.7e308 costs).
  int shift = 0;
  if (p.max_abs > std::ldexp(1.0, kMaxCostExp)) {
    shift = std::ilogb(p.max_abs) - kMaxCostExp + 1;
    s.scaled.resize(p.c.size());
    for (size_t k = 0; k < p.c.size(); ++k) s.scaled[k] = std::ldexp(p.c[k], -shift);  // inf stays inf
    c = s.scaled.data();
  }
  // A nearly square problem is padded with rows of one constant (which shifts every complete
  // assignment's total by the same amount, so the real rows' optimum is unchanged): that lets the
  // square initialisation run: 2.8x faster on 64 problems of 180 x 196. Others are cheaper to
  // augment row by row from zero duals: measured on one thread, uniform and random cosine costs,
  // padding lost below about 0.9 m rows (m = 98 to 784; 150 x 196 took 1.7x as long padded,
  // 100 x 196 4x), and at m = 49 at every r < m. The constant is the smallest cost: padding rows
  // then hold every column's minimum and tie among themselves, so the row reduction spreads them
  // over columns without a fight; padded with a constant above some costs (it was 0), identical
  // rows outbid each other: 64 problems of 150 x 196 uniform costs in [-5, -4) took 3x as long
  // as in [0, 1).
  if (n < m && 10 * n >= 9 * m && m >= kMinPadCols && p.all_finite) {
    s.padded.assign(m * m, std::ldexp(p.min, -shift));
    std::copy(c, c + n * m, s.padded.begin());
    s.x.resize(m);
    c = s.padded.data();
    x = s.x.data();
    n = m;
  }
  s.v.assign(m, 0.0);
  s.w.resize(m);
  s.d.resize(m);
  s.y.assign(m, -1);
  s.pred.resize(m);
  s.scanned.resize(m);
  std::fill(x, x + n, -1);
  if (n == m && n >= kMinInitN && p.all_finite) {
    jv_init(c, n, x, s);
  } else {
    // Rectangular or with forbidden pairs: plain augmentation from zero duals. Free columns must
    // keep v = 0 for the rectangular optimum, which the initialisation would break.
    s.free_rows.resize(n);
    for (int64_t i = 0; i < n; ++i) s.free_rows[i] = i;
  }
  for (const int64_t f : s.free_rows) {  // jv_augment leaves free_rows alone
    if (!jv_augment(c, m, f, x, s)) return kInfeasible;
  }
  if (x != x_out) std::copy(x, x + p.rows, x_out);
  return kOk;
}

LsaStatus jv_solve_threaded(const DenseProblem& p, int64_t* x, int64_t) {
  thread_local JvState s;
  const LsaStatus st = jv_solve(p, x, s);
  release_if_large(s.padded);
  release_if_large(s.scaled);
  return st;
}

void check_limit(std::optional<double> cost_limit, const char* op) {
  TORCH_CHECK_VALUE(!cost_limit || std::isfinite(*cost_limit), op, ": cost_limit must be finite (None for no limit), got ",
                    *cost_limit);
}

at::Tensor linear_sum_assignment_cpu(const at::Tensor& cost, bool maximize, bool check,
                                     std::optional<double> cost_limit) {
  check_limit(cost_limit, "linear_sum_assignment");
  return lsa_run_batch(cost, maximize, check, "linear_sum_assignment", jv_solve_threaded, cost_limit);
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> linear_sum_assignment_ragged_cpu(
    at::TensorList costs, bool maximize, bool check, std::optional<double> cost_limit) {
  check_limit(cost_limit, "linear_sum_assignment_ragged");
  return lsa_run_list(costs, maximize, check, "linear_sum_assignment_ragged", jv_solve_threaded, cost_limit);
}

}  // namespace

int64_t lsa_dense_pairs(const double* c, int64_t n, int64_t m, bool maximize, std::optional<double> cost_limit,
                        int64_t* rows, int64_t* cols) {
  // Kept between calls, as the batch's per-thread scratch is kept between its problems: a loop of
  // small problems then allocates nothing. Not the copy of a large problem (release_if_large):
  // one 3000 x 3000 call left 69 MiB resident.
  thread_local DenseProblem p;
  thread_local std::vector<int64_t> sol;
  const int32_t st = lsa_solve_one(c, n, m, m, 1, maximize, 0, jv_solve_threaded, p, sol, cost_limit);
  const int64_t pairs = st == kOk ? lsa_write_pairs(sol, n, m, rows, cols) : -st;
  release_if_large(p.c);
  return pairs;
}

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("linear_sum_assignment", &linear_sum_assignment_cpu);
  m.impl("linear_sum_assignment_ragged", &linear_sum_assignment_ragged_cpu);
}

}  // namespace ata_ext
