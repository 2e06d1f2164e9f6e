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
  std::vector<int32_t> owner, col_of;    // row holding each column (r: a dummy), column of each real row
  std::vector<unsigned long long> best;  // highest packed bid per column this round (0: none)
  std::vector<int32_t> bidders;          // unassigned real rows
  std::vector<int32_t> order;            // columns the pool does not hold, in its order (auction.h)
  std::vector<char> flat;                // real rows of one value, which bid with the pool (auction.h)
  std::vector<int64_t> row_best;         // each real row's highest scaled benefit, for the start prices
  std::vector<uint8_t> taken;            // lsa_first_choices' scratch
};

// What a solve cost, in the kernel's units of work (auction.h): rounds in which several rows bid
// (each a block-wide step with barriers on the GPU), and steps of single-bid chains (one warp).
struct RoundCounts {
  int64_t jacobi = 0, chain = 0;
};

LsaStatus auction_solve(const DenseProblem& p, int64_t* x, AuctionState& s, RoundCounts& counts) {
  const int64_t r = p.rows, n = p.cols;  // r real rows; the n - r dummies bid as a pool
  const int32_t dummy = static_cast<int32_t>(r);
  // First choices (auction.h): every real row's unique best column, all distinct, is the optimum.
  // Checked on every problem, as the kernel does (the batch driver checks only some layouts).
  if (lsa_first_choices(p.c.data(), r, n, n, /*maximize=*/false, x, s.taken)) return kOk;
  au::Stats st = au::stats_init();
  for (const double c : p.c) au::stats_add(st, -c);  // benefits; validity was checked on load
  const au::Scale sc = au::make_scale(st, n);
  s.lv.resize(r * n);
  for (int64_t k = 0; k < r * n; ++k) s.lv[k] = au::level(-p.c[k], sc);
  s.flat.assign(r, 0);
  int64_t nflat = 0;
  for (int64_t i = 0; i < r; ++i) {
    s.flat[i] = au::flat_row(s.lv.data() + i * n, n, 0, 1);
    nflat += s.flat[i];
  }
  const int64_t pool_size = n - r + nflat;  // the dummies and the flat rows
  s.price.assign(n, 0);
  s.owner.resize(n);
  s.col_of.resize(r);
  s.order.reserve(n);
  s.best.assign(n, 0ull);  // each round clears the words it used, as the kernel does
  int64_t rounds = 0;
  // With every real row flat nobody bids: the pool holds every column, which is optimal.
  bool solved = nflat == r;
  std::fill(s.owner.begin(), s.owner.end(), solved ? dummy : -1);
  const auto row = [&](int32_t i) { return i < r ? s.lv.data() + static_cast<int64_t>(i) * n : nullptr; };
  // Start prices (auction.h): set once, after the first round, where there is no pool
  // (start_pending); the phase then starts again from them.
  bool start_pending = pool_size == 0 && n >= 2;
  for (int64_t eps = sc.eps0; !solved;) {
    std::fill(s.owner.begin(), s.owner.end(), -1);
    std::fill(s.col_of.begin(), s.col_of.end(), -1);
    s.bidders.clear();
    for (int64_t i = 0; i < r; ++i) {
      if (!s.flat[i]) s.bidders.push_back(static_cast<int32_t>(i));
    }
    int64_t u = pool_size;  // unassigned pool members
    while (!s.bidders.empty() || u > 0) {
      if (s.bidders.size() + (u > 0) == 1 && u <= 1) {  // the chain of single bids that ends the phase
        for (int32_t i = u > 0 ? dummy : s.bidders[0]; i >= 0;) {
          if (++rounds > au::kMaxRounds) return kNoConvergence;
          ++counts.chain;
          const au::Top2 t = au::row_top2(row(i), s.price.data(), n, sc, 0, 1, s.owner.data(), dummy, i);
          const int32_t j1 = au::top2_column(t, i, n);  // a bidder's tie origin is its row id
          const int64_t b = au::bid(t, s.price[j1], eps);
          if (b >= au::kPriceLimit) return kOverflow;
          if (i == dummy) {  // the pool's bid with u = 1: also its columns below L = b - eps
            for (int64_t j = 0; j < n; ++j) {
              if (s.owner[j] == dummy && s.price[j] < b - eps) s.price[j] = b;
            }
          }
          i = au::award(s.price.data(), s.owner.data(), s.col_of.data(), dummy, j1, i, b);
        }
        break;
      }
      if (++rounds > au::kMaxRounds) return kNoConvergence;
      ++counts.jacobi;
      const bool first = static_cast<int64_t>(s.bidders.size()) == r - nflat && u == pool_size;  // the phase's first round
      bool contested = false, pool_flat = true;  // for the early end (auction.h)
      for (const int32_t i : s.bidders) {  // every bid reads the prices of the round's start
        const au::Top2 t = au::row_top2(row(i), s.price.data(), n, sc, 0, 1, s.owner.data(), dummy, i);
        const int32_t j1 = au::top2_column(t, i, n);
        const int64_t b = au::bid(t, s.price[j1], eps);
        if (b >= au::kPriceLimit) return kOverflow;
        contested = contested || s.best[j1] != 0;
        s.best[j1] = std::max(s.best[j1], au::pack_bid(b, i));
      }
      if (u > 0) {  // the dummies' pool bid (auction.h)
        s.order.clear();  // the columns the pool does not hold: u + r of them
        for (int64_t j = 0; j < n; ++j) {
          if (s.owner[j] != dummy) s.order.push_back(static_cast<int32_t>(j));
        }
        std::nth_element(s.order.begin(), s.order.begin() + u, s.order.end(),
                         [&](int32_t a, int32_t b) { return au::cheaper(s.price.data(), a, b, r, n); });
        const int64_t level = s.price[s.order[u]], b = level + eps;
        if (b >= au::kPriceLimit) return kOverflow;
        const unsigned long long pool = au::pack_bid(b, dummy);
        for (int64_t k = 0; k < u; ++k) {
          const int32_t j = s.order[k];
          contested = contested || s.best[j] != 0;
          pool_flat = pool_flat && s.price[j] == s.price[s.order[0]];
          s.best[j] = std::max(s.best[j], pool);
        }
        for (int64_t j = 0; j < n; ++j) {
          if (s.owner[j] == dummy && s.price[j] < level) s.best[j] = std::max(s.best[j], pool);
        }
      }
      for (int64_t j = 0; j < n; ++j) {  // each column goes to its highest bidder
        if (s.best[j] == 0) continue;
        au::award(s.price.data(), s.owner.data(), s.col_of.data(), dummy, static_cast<int32_t>(j),
                  static_cast<int32_t>(au::bid_row(s.best[j])), au::bid_price(s.best[j]));
        s.best[j] = 0;
      }
      s.bidders.clear();
      for (int64_t i = 0; i < r; ++i) {
        if (!s.flat[i] && s.col_of[i] < 0) s.bidders.push_back(static_cast<int32_t>(i));
      }
      u = pool_size - std::count(s.owner.begin(), s.owner.end(), dummy);
      if (first && !contested && pool_flat) {
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
  // The flat rows take the pool's columns in order, lowest row first (any is optimal for them).
  for (int64_t i = 0, j = 0; i < r; ++i) {
    if (!s.flat[i]) continue;
    while (s.owner[j] != dummy) ++j;
    s.col_of[i] = static_cast<int32_t>(j++);
  }
  for (int64_t i = 0; i < r; ++i) {
    x[i] = s.col_of[i];
    if (s.lv[i * n + x[i]] == au::kForbidden) return kInfeasible;
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

// The twin's round counts per problem: (..., 2) int64, [Jacobi rounds, chain steps]. Raises on bad
// problems as lsa_auction does with check=True.
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
    r[2 * b + 1] = counts.chain;
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
