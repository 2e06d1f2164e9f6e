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
// (each a block-wide step with barriers on the GPU), and steps of single-bid chains and passes of
// the last bidders' path searches (one warp each).
struct RoundCounts {
  int64_t jacobi = 0, steps = 0;
};

// Places row i of a problem without pools (so square: no dummies) by a shortest augmenting path
// (auction.h, "Last bidders"), as the kernel's place_by_path does in one warp: the same passes,
// each a row's relaxation of the unsettled columns and the choice of the next to settle.
LsaStatus place_by_path(AuctionState& s, int64_t n, const au::Scale& sc, int32_t i, int64_t& rounds,
                        RoundCounts& counts) {
  const auto levels = [&](int32_t row) { return s.lv.data() + static_cast<int64_t>(row) * n; };
  s.dist.assign(n, 0);
  s.pred.resize(n);
  const int32_t* row = levels(i);
  int64_t vc = INT64_MIN;  // the bidder starts at its best value: a pass of its own
  ++counts.steps;
  for (int64_t j = 0; j < n; ++j) vc = std::max(vc, au::pool_value(row, s.price.data(), j, sc));
  int64_t dc = 0;
  int32_t c = -1;  // the column just settled (-1: the bidder itself)
  for (;;) {
    if (++rounds > au::kMaxRounds) return kNoConvergence;
    ++counts.steps;
    unsigned long long next = ~0ull;
    for (int64_t j = 0; j < n; ++j) {
      if (au::path_settled(s.dist[j])) continue;
      const int64_t d = au::path_relax(dc, vc, au::pool_value(row, s.price.data(), j, sc));
      if (c < 0 || d < s.dist[j]) {
        s.dist[j] = d;
        s.pred[j] = c;
      }
      next = std::min(next, au::path_key(s.dist[j], j));
    }
    c = static_cast<int32_t>(next & au::kRowMask);
    dc = au::path_distance(next);
    s.dist[c] = ~dc;
    if (s.owner[c] < 0) break;  // a free column: the path ends here
    row = levels(s.owner[c]);
    vc = au::pool_value(row, s.price.data(), c, sc);
  }
  for (int64_t j = 0; j < n; ++j) {
    if (!au::path_settled(s.dist[j])) continue;
    s.price[j] += dc - ~s.dist[j];
    if (s.price[j] >= au::kPriceLimit) return kOverflow;
  }
  for (int32_t k = c;;) {  // the holders move along the path, back from the free column c
    const int32_t from = s.pred[k];
    const int32_t mover = from < 0 ? i : s.owner[from];
    s.owner[k] = mover;
    s.col_of[mover] = k;
    if (from < 0) return kOk;
    k = from;
  }
}

LsaStatus auction_solve(const DenseProblem& p, int64_t* x, AuctionState& s, RoundCounts& counts) {
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
  int64_t rounds = 0;
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
  const bool pooled = npools > 1 || s.pool_size[0] > 0;
  bool start_pending = !pooled && n >= 2;
  for (int64_t eps = sc.eps0; !solved;) {
    std::fill(s.owner.begin(), s.owner.end(), -1);
    std::fill(s.held.begin(), s.held.end(), 0);
    for (int64_t i = 0; i < r; ++i) s.col_of[i] = s.col_of[i] >= -1 ? -1 : s.col_of[i];
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
      if (au::path_bidders(pooled, static_cast<int64_t>(s.bidders.size()))) {
        // The last bidders (auction.h), lowest row first, each by a shortest augmenting path.
        for (const int32_t i : s.bidders) {
          const LsaStatus st = place_by_path(s, n, sc, i, rounds, counts);
          if (st != kOk) return st;
        }
        break;
      }
      if (s.bidders.size() + s.active.size() == 1 &&
          (s.active.empty() || s.pool_size[s.active[0]] - s.held[s.active[0]] == 1)) {
        // The chain of single bids that ends the phase (auction.h).
        for (int32_t i = s.active.empty() ? s.bidders[0] : static_cast<int32_t>(r + s.active[0]); i >= 0;) {
          if (++rounds > au::kMaxRounds) return kNoConvergence;
          ++counts.steps;
          const int32_t k = i >= r ? static_cast<int32_t>(i - r) : -1;  // the bidder's pool, if it is one
          const int32_t* levels = k >= 0 ? pool_levels(k) : row(i);
          const int64_t origin = k >= 0 ? au::pool_origin(k, s.pool_row[k], r) : i;
          const au::Top2 t = au::row_top2(levels, s.price.data(), n, sc, 0, 1, s.owner.data(), k >= 0 ? i : -1, origin);
          const int32_t j1 = au::top2_column(t, origin, n);
          const int64_t b = au::bid(t, s.price[j1], eps);
          if (b >= au::kPriceLimit) return kOverflow;
          if (k >= 0) {  // the pool's bid with u = 1: also on its columns above its level
            const int64_t level = au::chain_level(t);
            for (int64_t j = 0; j < n; ++j) {
              if (s.owner[j] != i || au::pool_value(levels, s.price.data(), j, sc) <= level) continue;
              s.price[j] = au::pool_bid(levels, j, level, eps, sc);
              if (s.price[j] >= au::kPriceLimit) return kOverflow;
            }
          }
          i = au::award(s.price.data(), s.owner.data(), s.col_of.data(), static_cast<int32_t>(r), j1, i, b);
        }
        break;
      }
      if (++rounds > au::kMaxRounds) return kNoConvergence;
      ++counts.jacobi;
      bool contested = false;  // two bids met: no early end (auction.h)
      for (const int32_t i : s.bidders) {  // every bid reads the prices of the round's start
        const au::Top2 t = au::row_top2(row(i), s.price.data(), n, sc, 0, 1, s.owner.data(), -1, i);
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

at::Tensor lsa_auction_cpu(const at::Tensor& cost, bool maximize, bool check) {
  check_auction_size(cost, "lsa_auction");
  return lsa_run_batch(cost, maximize, check, "lsa_auction", [](const DenseProblem& p, int64_t* x, int64_t) {
    thread_local AuctionState s;
    RoundCounts counts;
    return auction_solve(p, x, s, counts);
  });
}

// The twin's round counts per problem: (..., 2) int64, [Jacobi rounds, chain steps and path-search
// passes]. Raises on bad problems as lsa_auction does with check=True.
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
    thread_local AuctionState s;
    RoundCounts counts;
    const LsaStatus st = auction_solve(p, x, s, counts);
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
