// CPU implementation of ata_ext::lsa_auction: the serial twin of the CUDA auction kernel. It runs
// the same Jacobi rounds with the same integer arithmetic (csrc/common/auction.h), one problem at
// a time, so its assignments are bit-identical to the GPU's; it is how the GPU algorithm's logic
// is tested on machines without a GPU. Batches run in parallel through lsa_batch_cpu.h.
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>

#include "common/auction.h"
#include "lsa_batch_cpu.h"

namespace ata_ext {
namespace {

namespace au = auction;

struct AuctionState {
  std::vector<int32_t> lv;               // r x n quantised levels of the real rows
  std::vector<int64_t> price;
  std::vector<int32_t> owner, col_of;    // holder of each column (a row, or r + k for pool k); column of each real row
  std::vector<unsigned long long> best;  // highest packed bid per column this round (0: none)
  std::vector<int32_t> bidders;          // unassigned real rows that bid on their own
  std::vector<int32_t> active;           // pools with members unassigned
  std::vector<int32_t> order;            // columns a pool does not hold, in its order (auction.h)
  std::vector<int32_t> rep;              // each row's lowest equal row (auction.h, make_pools)
  std::vector<uint64_t> hash;            // each row's level hash
  std::vector<int32_t> pool_row, pool_size, held;  // per pool (auction.h, "Pools")
  std::vector<int64_t> row_best;         // each real row's highest scaled benefit, for the start prices
  std::vector<uint8_t> taken;            // lsa_first_choices' scratch
  std::vector<int64_t> dist;             // a path search's distance of each column (~d once settled)
  std::vector<int32_t> pred;             // the column a path reaches each column from (-1: the bidder)
};

// What a solve cost, in the kernel's units of work (auction.h): rounds in which several rows bid
// (each a block-wide step with barriers on the GPU), and passes of the last bidders' path searches
// (one warp each).
struct RoundCounts {
  int64_t jacobi = 0, steps = 0;
  // Counts one more of either (which): false once the two together pass au::kMaxRounds, the
  // kernel's limit on its count of both.
  bool add(int64_t& which) {
    ++which;
    return jacobi + steps <= au::kMaxRounds;
  }
};

// Places bidder id (a real row, or r + k for pool k with one member unassigned) by a shortest
// augmenting path (auction.h, "Last bidders"), as the kernel's place_by_path does in one warp:
// the same passes, each a holder's relaxation of the columns not yet settled and the choice of
// the next to settle.
LsaStatus place_by_path(AuctionState& s, int64_t r, int64_t n, const au::Scale& sc, int32_t id,
                        RoundCounts& counts) {
  const auto levels = [&](int32_t holder) {  // nullptr for pool 0 (benefits 0)
    return holder >= r ? au::pool_levels(s.lv.data(), static_cast<int32_t>(holder - r), s.pool_row[holder - r], n)
                       : s.lv.data() + static_cast<int64_t>(holder) * n;
  };
  // Whether column j is passed over (au::path_passes_over).
  const auto passed = [&](int64_t j) {
    return au::path_passes_over(s.owner[j], s.pred[j] < 0 ? id : s.owner[s.pred[j]], r);
  };
  s.dist.assign(n, 0);
  s.pred.resize(n);
  const int32_t* row = levels(id);
  int64_t vc = INT64_MIN;  // the bidder starts at its best value: a pass of its own
  if (!counts.add(counts.steps)) return kNoConvergence;
  for (int64_t j = 0; j < n; ++j) vc = std::max(vc, au::pool_value(row, s.price.data(), j, sc));
  int64_t dc = 0;
  int32_t c = -1;  // the column just settled (-1: the bidder itself)
  for (;;) {
    if (!counts.add(counts.steps)) return kNoConvergence;
    unsigned long long next = ~0ull;
    for (int64_t j = 0; j < n; ++j) {
      if (au::path_settled(s.dist[j])) continue;
      const int64_t d = au::path_relax(dc, vc, au::pool_value(row, s.price.data(), j, sc));
      if (c < 0 || d < s.dist[j]) {
        s.dist[j] = d;
        s.pred[j] = c;
      }
      if (!passed(j)) next = std::min(next, au::path_key(s.dist[j], j));
    }
    c = static_cast<int32_t>(next & au::kRowMask);
    dc = au::path_distance(next);
    s.dist[c] = ~dc;
    if (s.owner[c] < 0) break;  // a free column: the path ends here
    row = levels(s.owner[c]);
    vc = au::pool_value(row, s.price.data(), c, sc);
  }
  for (int64_t j = 0; j < n; ++j) {  // the settled columns rise, those passed over before c too
    s.price[j] += au::path_rise(s.dist[j], passed(j), j, dc, c);
    if (s.price[j] >= au::kPriceLimit) return kOverflow;
  }
  for (int32_t k = c;;) {  // the holders move along the path, back from the free column c
    const int32_t from = s.pred[k];
    const int32_t mover = from < 0 ? id : s.owner[from];
    s.owner[k] = mover;
    if (mover < r) s.col_of[mover] = k;
    if (from < 0) return kOk;
    k = from;
  }
}

// eps-complementary slackness (auction.h, points 2-4), what a phase must leave: every real row
// bidding alone holds a column within eps of its best value, and every pool's held columns are
// within eps of the pool's best. The rounds' and the searches' correctness rests on it; the twin
// checks it at each phase's end when counting rounds (the tests' oracle), the solvers do not.
bool eps_cs_holds(const AuctionState& s, int64_t r, int64_t n, const au::Scale& sc, int64_t eps, int32_t npools) {
  const auto slack_ok = [&](const int32_t* row, const auto& held) {  // row == nullptr: pool 0
    int64_t best = INT64_MIN, worst = INT64_MAX;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t v = au::pool_value(row, s.price.data(), j, sc);
      best = std::max(best, v);
      if (held(j)) worst = std::min(worst, v);
    }
    return worst == INT64_MAX || best - worst <= eps;
  };
  for (int64_t i = 0; i < r; ++i) {
    if (s.col_of[i] < 0) continue;  // a pool's member
    if (!slack_ok(s.lv.data() + i * n, [&](int64_t j) { return j == s.col_of[i]; })) return false;
  }
  for (int32_t k = 0; k < npools; ++k) {
    const int32_t* row = au::pool_levels(s.lv.data(), k, s.pool_row[k], n);
    if (!slack_ok(row, [&](int64_t j) { return s.owner[j] == r + k; })) return false;
  }
  return true;
}

LsaStatus auction_solve(const DenseProblem& p, int64_t* x, AuctionState& s, RoundCounts& counts,
                        bool verify = false) {
  const int64_t r = p.rows, n = p.cols;  // r real rows; n - r dummies
  // First choices (auction.h): every real row's unique best column, all distinct, is the optimum.
  // Checked on every problem, as the kernel does (the batch driver checks only some layouts).
  if (lsa_first_choices(p.c.data(), r, n, n, /*maximize=*/false, x, s.taken)) return kOk;
  au::Stats st = au::stats_init();
  for (const double c : p.c) au::stats_add(st, -c);  // benefits; validity was checked on load
  const au::Scale sc = au::make_scale(st, n);
  s.lv.resize(r * n);
  for (int64_t k = 0; k < r * n; ++k) s.lv[k] = au::level(-p.c[k], sc);
  // Orientation (auction.h): a square problem whose columns repeat more than its rows is solved
  // transposed. Repeats counted as lines less distinct classes (orient_class), by sorting: the
  // kernel counts the lines with an equal class below them instead, which is the same number.
  bool flipped = false;
  if (r == n) {
    int64_t repeats[2];  // rows, columns
    s.hash.resize(n);
    for (int side = 0; side < 2; ++side) {
      for (int64_t i = 0; i < n; ++i) {
        s.hash[i] = au::orient_class(side == 0 ? au::row_summary(s.lv.data() + i * n, n, 0, 1)
                                               : au::row_summary(s.lv.data() + i, n, 0, 1, n));
      }
      std::sort(s.hash.begin(), s.hash.end());
      repeats[side] = n - (std::unique(s.hash.begin(), s.hash.end()) - s.hash.begin());
    }
    flipped = au::columns_first(repeats[0], repeats[1]);
    for (int64_t i = 0; flipped && i < n; ++i) {
      for (int64_t j = i + 1; j < n; ++j) std::swap(s.lv[i * n + j], s.lv[j * n + i]);
    }
  }
  // Pools (auction.h): the flat rows join pool 0; each group of equal other rows is a pool.
  s.col_of.assign(r, -1);
  s.hash.resize(r);
  int64_t nflat = 0;
  for (int64_t i = 0; i < r; ++i) {
    const au::RowSummary rs = au::row_summary(s.lv.data() + i * n, n, 0, 1);
    s.hash[i] = rs.hash;
    if (rs.flat) {
      s.col_of[i] = au::pool_mark(0);
      ++nflat;
    }
  }
  // Each row's lowest equal row, by sorting the rows on (hash, index): the kernel compares every
  // pair of hashes instead, which finds the same rows.
  s.order.resize(r);
  std::iota(s.order.begin(), s.order.end(), 0);
  std::sort(s.order.begin(), s.order.end(), [&](int32_t a, int32_t b) {
    return s.hash[a] < s.hash[b] || (s.hash[a] == s.hash[b] && a < b);
  });
  s.rep.resize(r);
  for (int64_t q = 0; q < r; ++q) {
    const int32_t i = s.order[q];
    s.rep[i] = i;
    for (int64_t e = q - 1; e >= 0 && s.hash[s.order[e]] == s.hash[i]; --e) {
      const int32_t k = s.order[e];  // visited from the highest row down: the last match is the lowest
      if (s.col_of[k] == -1 && std::equal(s.lv.begin() + k * n, s.lv.begin() + (k + 1) * n, s.lv.begin() + i * n)) {
        s.rep[i] = k;
      }
    }
  }
  s.pool_row.resize(au::pool_slots(r));
  s.pool_size.resize(au::pool_slots(r));
  const int32_t npools =
      au::make_pools(s.rep.data(), r, n, nflat, s.col_of.data(), s.pool_row.data(), s.pool_size.data());
  s.held.resize(npools);
  s.price.assign(n, 0);
  s.owner.resize(n);
  s.order.reserve(n);
  s.best.assign(n, 0ull);  // each round clears the words it used, as the kernel does
  // A pool of n members (every real row flat, or all equal in a square problem) holds every
  // column, which is optimal: nobody bids.
  int32_t whole = -1;
  for (int32_t k = 0; k < npools; ++k) whole = s.pool_size[k] == n ? k : whole;
  bool solved = whole >= 0;
  std::fill(s.owner.begin(), s.owner.end(), solved ? static_cast<int32_t>(r + whole) : -1);
  const auto row = [&](int32_t i) { return s.lv.data() + static_cast<int64_t>(i) * n; };
  const auto pool_levels = [&](int32_t k) { return au::pool_levels(s.lv.data(), k, s.pool_row[k], n); };
  // Start prices (auction.h): set once, after the first round, where there is no pool
  // (start_pending); the phase then starts again from them.
  bool start_pending = npools == 1 && s.pool_size[0] == 0 && n >= 2;
  for (int64_t eps = sc.eps0; !solved;) {
    std::fill(s.owner.begin(), s.owner.end(), -1);
    std::fill(s.held.begin(), s.held.end(), 0);
    for (int64_t i = 0; i < r; ++i) s.col_of[i] = s.col_of[i] >= -1 ? -1 : s.col_of[i];
    int32_t low = 0;    // the fewest bidders of a round so far this phase
    int32_t stall = 0;  // rounds since that count last fell (au::next_stall)
    for (bool first = true;; first = false) {  // first: the phase's first round, in which everyone bids
      s.bidders.clear();
      for (int64_t i = 0; i < r; ++i) {
        if (s.col_of[i] == -1) s.bidders.push_back(static_cast<int32_t>(i));
      }
      s.active.clear();
      for (int32_t k = 0; k < npools; ++k) {
        if (s.held[k] < s.pool_size[k]) s.active.push_back(k);
      }
      if (s.bidders.empty() && s.active.empty()) break;
      const int64_t nb = static_cast<int64_t>(s.bidders.size());
      stall = au::next_stall(first, nb, low, stall);
      low = au::next_low(first, nb, low);
      if (au::path_bidders(nb, static_cast<int64_t>(s.active.size()),
                           s.active.empty() ? 0 : s.pool_size[s.active[0]] - s.held[s.active[0]], stall)) {
        // The last bidders (auction.h), each by a shortest augmenting path: real rows, lowest
        // first (the list is in row order), or one pool.
        if (!s.active.empty()) s.bidders.push_back(static_cast<int32_t>(r + s.active[0]));
        for (const int32_t i : s.bidders) {
          const LsaStatus st = place_by_path(s, r, n, sc, i, counts);
          if (st != kOk) return st;
        }
        break;
      }
      if (!counts.add(counts.jacobi)) return kNoConvergence;
      bool contested = false;  // two bids met: no early end (auction.h)
      for (const int32_t i : s.bidders) {  // every bid reads the prices of the round's start
        const au::Top2 t = au::row_top2(row(i), s.price.data(), n, sc, 0, 1, i);
        const int32_t j1 = au::top2_column(t, i, n);
        const int64_t b = au::bid(t, s.price[j1], eps);
        if (b >= au::kPriceLimit) return kOverflow;
        contested = contested || s.best[j1] != 0;
        s.best[j1] = std::max(s.best[j1], au::pack_bid(b, i));
      }
      for (const int32_t k : s.active) {  // the pools' bids (auction.h)
        const int32_t id = static_cast<int32_t>(r + k);
        const int32_t* levels = pool_levels(k);
        const int64_t origin = au::pool_origin(k, s.pool_row[k], r);
        const int64_t u = s.pool_size[k] - s.held[k];
        const auto value = [&](int64_t j) { return au::pool_value(levels, s.price.data(), j, sc); };
        s.order.clear();  // the columns the pool does not hold: at least u + 1 of them
        for (int64_t j = 0; j < n; ++j) {
          if (s.owner[j] != id) s.order.push_back(static_cast<int32_t>(j));
        }
        std::nth_element(s.order.begin(), s.order.begin() + u, s.order.end(), [&](int32_t a, int32_t b) {
          return au::ranks_before(value(a), au::tie_key(a, origin, n), value(b), au::tie_key(b, origin, n));
        });
        const int64_t level = value(s.order[u]);
        const int32_t key = au::tie_key(s.order[u], origin, n);
        for (int64_t j = 0; j < n; ++j) {
          if (!au::pool_takes(s.owner[j] == id, value(j), au::tie_key(j, origin, n), level, key)) continue;
          const int64_t b = au::pool_bid(levels, j, level, eps, sc);
          if (b >= au::kPriceLimit) return kOverflow;
          contested = contested || s.best[j] != 0;
          s.best[j] = std::max(s.best[j], au::pack_bid(b, id));
        }
      }
      for (int64_t j = 0; j < n; ++j) {  // each column goes to its highest bidder
        if (s.best[j] == 0) continue;
        au::award(s.price.data(), s.owner.data(), s.col_of.data(), static_cast<int32_t>(r), static_cast<int32_t>(j),
                  static_cast<int32_t>(au::bid_row(s.best[j])), au::bid_price(s.best[j]));
        s.best[j] = 0;
      }
      std::fill(s.held.begin(), s.held.end(), 0);
      for (int64_t j = 0; j < n; ++j) {
        if (s.owner[j] >= r) ++s.held[s.owner[j] - r];
      }
      if (first && !contested) {
        solved = true;
        break;
      }
      if (start_pending) break;  // only ever set during the first round
    }
    if (solved) break;
    if (start_pending) {
      s.row_best.resize(r);
      for (int64_t i = 0; i < r; ++i) s.row_best[i] = au::row_best(row(static_cast<int32_t>(i)), n, sc, 0, 1);
      for (int64_t j = 0; j < n; ++j) s.price[j] = au::start_price(s.lv.data(), s.row_best.data(), r, n, j, sc);
      start_pending = false;
      continue;  // the same phase again, from the start prices
    }
    if (verify && !eps_cs_holds(s, r, n, sc, eps, npools)) return kBrokenInvariant;
    if (eps == 1) break;
    eps = au::next_eps(eps);
  }
  // The members of each pool, lowest row first, take its columns, lowest first (any is optimal
  // for them: they value the pool's columns alike).
  s.held.assign(npools, 0);  // now each pool's next column
  for (int64_t i = 0; i < r; ++i) {
    if (s.col_of[i] >= -1) continue;
    const int32_t k = au::pool_of_mark(s.col_of[i]);
    int32_t j = s.held[k];
    while (s.owner[j] != r + k) ++j;
    s.col_of[i] = j;
    s.held[k] = j + 1;
  }
  for (int64_t i = 0; i < r; ++i) {
    if (s.lv[i * n + s.col_of[i]] == au::kForbidden) return kInfeasible;
    x[flipped ? s.col_of[i] : i] = flipped ? i : s.col_of[i];
  }
  return kOk;
}

// The twin's row ids have kRowBits bits (auction.h).
void check_auction_size(const at::Tensor& cost, const char* op) {
  TORCH_CHECK_VALUE(cost.dim() < 2 || std::max(cost.size(-1), cost.size(-2)) <= au::kMaxN, op,
                    ": N and M must be at most ", au::kMaxN, ", got shape ", cost.sizes());
}

// auction_solve with this thread's scratch, less its problem-sized levels (release_if_large).
LsaStatus twin_solve(const DenseProblem& p, int64_t* x, RoundCounts& counts, bool verify = false) {
  thread_local AuctionState s;
  const LsaStatus st = auction_solve(p, x, s, counts, verify);
  release_if_large(s.lv);
  return st;
}

at::Tensor lsa_auction_cpu(const at::Tensor& cost, bool maximize, bool check) {
  check_auction_size(cost, kAuctionOpName);
  return lsa_run_batch(cost, maximize, check, kAuctionOpName, [](const DenseProblem& p, int64_t* x, int64_t) {
    RoundCounts counts;
    return twin_solve(p, x, counts);
  });
}

// The twin's round counts per problem: (..., 2) int64, [Jacobi rounds, path-search passes]. Raises
// on bad problems as lsa_auction does with check=True, and where eps-CS fails at a phase's end.
at::Tensor lsa_auction_rounds_cpu(const at::Tensor& cost, bool maximize) {
  lsa_check_input(cost, "lsa_auction_rounds");
  check_auction_size(cost, "lsa_auction_rounds");
  auto sizes = cost.sizes().vec();
  sizes.resize(sizes.size() - 2);
  const int64_t batch = c10::multiply_integers(sizes);
  sizes.push_back(2);
  at::Tensor rounds = at::zeros({batch, 2}, cost.options().dtype(at::kLong));
  int64_t* r = rounds.data_ptr<int64_t>();
  lsa_run_batch(cost, maximize, /*check=*/true, "lsa_auction_rounds", [r](const DenseProblem& p, int64_t* x, int64_t b) {
    RoundCounts counts;
    const LsaStatus st = twin_solve(p, x, counts, /*verify=*/true);
    r[2 * b] = counts.jacobi;
    r[2 * b + 1] = counts.steps;
    return st;
  });
  return rounds.view(sizes);
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("lsa_auction", &lsa_auction_cpu);
  m.impl("lsa_auction_rounds", &lsa_auction_rounds_cpu);
}

}  // namespace ata_ext
