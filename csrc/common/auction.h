// The auction solver's arithmetic, shared verbatim by the CUDA kernel (csrc/cuda/lsa_auction_cuda.cu)
// and its serial CPU twin (csrc/cpu/lsa_auction_cpu.cpp), so the two give bit-identical answers.
//
// The algorithm (Bertsekas' auction with epsilon-scaling, Jacobi rounds):
//  1. A problem with r <= n rows after transposing (n = cols) is a square n x n maximisation with
//     n - r added rows of constant benefit 0 ("dummies"). Benefits are quantised to integers B in
//     [0, Q]; a forbidden pair gets B = -(n*Q + 1), so any assignment that uses one is worse than
//     every assignment that does not: the optimum uses one only if the problem is infeasible.
//  2. Integer benefits are multiplied by n+1: with eps = 1 in the last phase the assignment is
//     then exactly optimal for B (eps-complementary slackness with eps < 1/n).
//  3. Each round every unassigned real row i bids on its best column j1 (among equal values the
//     first at or after column i, cyclically: see "Ties" below) the price p[j1] + (v1 - v2) + eps,
//     v1/v2 the best and second-best values B'[i][j] - p[j], all read from the prices at the
//     start of the round. Each column takes the highest packed (bid << kRowBits | row) word
//     (ties go to the higher row), which on the GPU is one 64-bit atomicMax: the outcome of a
//     round does not depend on thread timing.
//     Pools (Bertsekas' "similar persons"): rows that value every column alike bid as one pool.
//     Pool 0 is the dummies, which are identical, and the flat rows (below); each group of two or
//     more real rows with equal levels (found by a hash of each row, then compared in full:
//     make_pools) is a pool too. Pool k bids under the id r + k, above every real row. With u of
//     its members unassigned, let L be the value B'[g][j] - p[j] (B' = 0 for pool 0) of the
//     (u+1)-th column in its order (higher value first; among equal values the first at or after
//     its origin, cyclically: column r for pool 0, its lowest row for the others) of the columns
//     it does not hold. The pool bids B'[g][j] - L + eps on the u columns it does not hold that
//     come before that one, and on every column it holds valued above L (there a member displaces
//     a member: only the price moves): each is left at value L - eps. Every member then holds a
//     column within eps of its best, as single bids would leave it, but in one round: bidding one
//     by one, equal rows outbid each other for the same columns eps at a time. (For the dummies:
//     L + eps, L the price of the (u+1)-th cheapest column, on the u cheapest.) At the end each
//     pool's members, lowest row first, take its columns, lowest first (any is optimal for them).
//     Rounds (single bids included) on uniform random costs, dummies one by one vs as this pool:
//     7 x 100 14,745 vs 10; 100 x 7 18,458 vs 10; 150 x 196 45,322 vs 261. Equal rows one by one
//     vs as pools, the mean of 16 problems: 196 x 196 with half the rows equal 63,028 vs 387;
//     groups of 4 equal rows 2,968 vs 300; a flat region of 40 equal tokens in a video-like frame
//     3,626 vs 1; 200 x 100 with columns in groups of 5 (rows, once transposed) 1,270 vs 53; a
//     square problem of equal rows 2 vs 0 (a pool of n members holds every column: nobody bids).
//     Costs without equal rows (levels, not values: magnitudes that span hundreds of decades can
//     quantise two rows alike) get the same answers and round counts as before pools existed.
//     Orientation: pools take in equal and flat rows, not equal or flat columns, over which rows
//     still outbid each other eps at a time (flat columns of different values too: once their
//     prices have evened out their values, every row values them alike). So a square problem whose
//     columns repeat more than its rows (columns_first) is solved transposed, its columns bidding
//     for its rows, and the answer turned back at the end: its equal and flat columns are then
//     pooled rows. Lines repeat n less their distinct classes (orient_class: all flat lines are
//     one, the others their hash) times: hashes alone, as a collision only misguides the choice,
//     never the answer. Twin counts (rounds and single bids, the mean of 64 problems, as given vs
//     transposed): uniform 196 x 196 whose first 10 columns are equal 5,831 vs 583, 40 equal 25,477
//     vs 542; 10 flat columns of values 0.3 to 0.7 6,145 vs 440; a video-like frame with a flat
//     region of 40 equal tokens after one without (a scene cut) 3,517 vs 1. Equal columns still
//     fought where rows repeat as much (the first 10 rows and columns of uniform 196 x 196 equal:
//     5,885) and where rows are fewer than columns (no transposing those: 150 x 196 whose first 10
//     columns are equal, 732), until the last bidders' searches (below) ended that. Square
//     problems whose columns repeat no more than their rows get the same answers and counts as
//     before.
//     Last bidders: once a round's bidders are at most kPathBidders real rows and no pool, or a
//     single pool with one member unassigned, each is placed in turn (the pool, or the rows lowest
//     first) by a shortest augmenting path (Dijkstra over the columns, as in Jonker-Volgenant),
//     which ends the phase. Bidding on alone, a last bidder displaces one row (or pool member),
//     which displaces another: a chain of single bids that can revisit the same rows without
//     bound, each bid raising a price by a gap plus eps. A search settles each column at most
//     once, one pass over a row a column (a pass of its own for the bidder's best value).
//     Lengths: a row or pool member reached at its column c, of value vc, moves to column k at
//     the length of its value drop, vc - v(k), clipped at 0 (eps-CS lets v(k) exceed vc by up to
//     eps); the bidder starts from its best value. The search stops at the first free column it
//     settles, at distance D; each settled column k rises by D - d(k) and the holders move along
//     the path. Every row and pool then still holds columns within eps of its best (eps-CS): for
//     settled k and c, d(k) <= d(c) + vc - v(k) + eps, and unsettled columns lie at D or beyond.
//     A free column keeps its price, so the phase's price bound holds as for bids, and prices only
//     rise (the candidate lists rely on that). A pool's columns reached from the pool itself are
//     passed over, not settled one pass each (path_passes_over): the same distances, paths and
//     prices, where a 7 x 100 problem's 93 dummies cost up to 120 passes. The twin checks eps-CS
//     at every phase's end when counting rounds (lsa_auction_rounds), as the tests' oracle.
//     Twin counts weighted by the model below (a search pass costed as a chain step: both are one
//     warp's pass over a row and a warp reduction; not yet measured on a GPU), chains vs searches,
//     the mean of 224 problems and the makespan of the 224 on 132 SMs: uniform random 196^2 966 vs
//     623 us and 2,634 vs 1,595 us; 49^2 213 vs 148, 572 vs 389; 256^2 1,289 vs 851, 3,507 vs
//     2,126; integer costs of range 100 1,281 vs 690; 30% of pairs forbidden 930 vs 584; random
//     cosine similarities 705 vs 441; Euclidean distances 4,920 vs 2,283; 16 of 784^2, the slowest
//     7,131 vs 4,166 (global path: its costs per pass differ). Three batches of 64, the mean and
//     the slowest: DETR-like 300 x 50 (predictions within 0.1) 1.37-1.62 vs 0.38-0.43 ms and
//     4.7-6.0 vs 0.75-0.81 ms, 100 x 30 0.55-0.69 vs 0.19-0.22 and 1.5-2.4 vs 0.52-0.54; 196^2
//     with 10 equal rows and 10 equal columns 7.8-8.4 vs 1.1 ms and 23-27 vs 1.9-2.0; 150 x 196
//     with 10 equal columns 1.1-1.2 vs 0.5; 180 x 196 0.77-0.86 vs 0.52-0.55; 7 x 100 and 100 x 7
//     alike (5-7 us, the slowest 52-60). kPathBidders 1 saved about half as much on square costs
//     (196^2: 730 and 1,409 us, mean and slowest of 448), 3 and 4 within 3% of 2 there and
//     longer on rectangular ones (measured before pools joined the searches).
//     Stalled bidders: where rows value columns alike by degrees (distances between points), a few
//     bidders can displace one another for hundreds of rounds, each bid one hop of a long path
//     (a Euclidean 196^2 problem's first phase: 456 rounds, most of them with 3 to 8 bidders).
//     So up to kStalledBidders rows are searched for too, lowest first, once their count has not
//     fallen for kStallRounds rounds of the phase (next_stall). Twin counts, model as above, two
//     samples of 224 problems (64 for DETR-like and equal lines), the mean and the makespan, before
//     vs after: Euclidean 196^2 2,228-2,306 vs 1,786-1,815 us and 6.1-6.7 vs 4.7-4.9 ms (in
//     another sample rounds 576 vs 202 a problem, passes 436 vs 1,013: a gain while a pass costs
//     under 1.9 us); DETR-like 300 x 50 380-384 vs 363-374 us, the slowest 0.85-1.04 vs
//     0.71-0.78 ms; integer costs of range 100 2% less; uniform 49^2 and 196^2, 30% forbidden,
//     cosine and low-rank costs within 1% (196^2: rounds 116 vs 101, passes 256 vs 298, even at
//     1.06 us a pass); uniform 256^2, 180 x 196 and 150 x 196 with 10 equal
//     columns 1-3% more; 196^2 with 10 equal rows and 10 equal columns from 0.5% less to 12% more
//     (three samples). Tried: 4 to 32 bidders after 4 to 24 rounds; more bidders searched one
//     after another cost Euclidean costs more, shorter stalls uniform 256^2 and rectangular ones.
//     Early end: in the first round of a phase everyone bids, every pool for all its members. If no
//     two bids meet on a column, every column is taken, each row on its own gets a column of its
//     highest value B'[i][j] - p[j] at the round's prices and each pool the u best for it. No
//     assignment can beat that sum of row maxima and pool top-u sums (a pool's members need
//     distinct columns), and every complete assignment pays the same total price, so the
//     assignment is optimal: the solve ends there, whatever eps is. (Video-like
//     costs ended in this round, the first of the first phase, 1 round instead of 5; they now end
//     before any round, at their first choices: see FirstChoice below.)
//     Ties: row i ranks equal values from column i on (i, i+1, ..., n-1, 0, ...), and a pool from
//     its origin, so rows whose values tie (a constant matrix with a forbidden diagonal, say) bid
//     on distinct columns (the pools, if any, on the rest), and the early end applies in the first
//     round.
//     With "lowest index first" all rows bid on column 0 and push the prices of equal columns up
//     eps at a time: a constant 40 x 40 took 40 rounds, 50 targets x 300 identical queries about
//     13,800 (modelled 22 ms on an H100); both took 1 with this order, and take 0 now that their
//     rows count as flat (below). On costs without exact ties the order changes nothing.
//     Flat rows: a real row with one value in every column (and no forbidden pair) values every
//     column alike, as a dummy does (its constant adds the same to every assignment), so it joins
//     pool 0 instead of bidding on its own: pool 0 has n - r + f members for f flat rows, and at
//     the end the flat rows, lowest first, take its columns, lowest first (any is optimal).
//     With every real row flat nobody bids (0 rounds). Bidding one by one, flat rows outbid each
//     other as the dummies did: in video-like similarities with 14 zero tokens (their rows and
//     columns all 0) the twin counted about 2,100 rounds and steps a problem, 62 as pool members;
//     DETR-like costs padded with zero target columns (README, "Problems of different sizes")
//     2,000 and 40.
//     Start prices: a square problem without a pool (no dummies, flat or equal rows) whose first
//     round does not end the solve starts over, the same phase, from better prices than zero. Each row's
//     values are reduced by its highest one (every row then values its favourite at 0), and column
//     j starts at the second highest reduced value in it (clamped at minus the finite range
//     Q(n+1)), plus Q(n+1), so every start price lies in [0, Q(n+1)]: the price at which only the
//     row that wants j most would still take it, as a second-price auction would set it (start_price).
//     Any prices are correct starting points (the phase builds its assignment from scratch); these
//     are closer to the final ones than zero is. By the twin's counts, modelled as below (the mean
//     time of a problem; the makespan of a batch of 224 on 132 SMs, drawn from 256 to 1,024
//     problems a family), against zero prices: uniform random 49^2 to 256^2 13-31% less on
//     average and 12-31% off the makespan, 392^2 11% and 6%; 196^2 with 30% of pairs forbidden 19%
//     and 22%; integer costs of range 100 and 1000 11-19% and 9-15%; random cosine similarities
//     15% and 19%; noisy video-like costs 15% and 16%; Euclidean distances 5-26% and 10-23%;
//     rank one plus noise 39% and 32%. Slower: outer products a_i * b_j, 2% on average and 10% on
//     the makespan; a few huge entries, 2% and 2%. Video-like costs (which then ended in their first
//     round, at zero prices) paid nothing for this.
//  4. Phases start from eps = Q(n+1)/256 and divide it by 16 (see the schedule below) until it
//     reaches 1; prices carry over, assignments restart. A phase raises any price by at most
//     2(C + eps), so from start prices of at most C, over the at most 9 phases that C <= 2^40
//     allows, prices stay below 2^45.
// C is the scaled benefit range; Q is chosen per problem (make_scale) so that C <= 2^40 and every
// price fits the 47 bits of the packed word.
#pragma once

#include <c10/macros/Macros.h>

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "common/status.h"

namespace ata_ext {
namespace auction {

constexpr int kRowBits = 16;                        // rows per problem < 2^16 (n <= 65535)
constexpr int64_t kMaxN = (int64_t{1} << kRowBits) - 1;
constexpr int64_t kRowMask = (int64_t{1} << kRowBits) - 1;
constexpr int64_t kScaledRangeMax = int64_t{1} << 40;  // C <= 2^40 keeps every price < 2^47
constexpr int64_t kPriceLimit = int64_t{1} << 47;   // a bid above this is reported, never wrapped
constexpr int64_t kLevelsMax = int64_t{1} << 24;    // quantisation levels when nothing limits them
// Epsilon schedule: eps0 = Q(n+1) / kEps0Div, divided by kEpsDiv a phase. Q(n+1) is the range of
// the finite benefits; C also counts the forbidden level, about n times further down, and
// starting from C / kEps0Div (as it once did) spent two phases on bids far above any difference
// between real values. By the twin's counts and the model below, on 196^2 costs with 2-60% of
// pairs forbidden that took 2.3-2.8 ms a problem on average (the slowest 3.7-4.7 ms) where
// eps0 from Q(n+1) takes 1.1-1.2 ms (2.0-2.7 ms); 100 x 120 and 120 x 100 with 30% forbidden
// 0.9-1.0 -> 0.35 ms. A row that must take a forbidden pair still gets there in one bid (its
// bid jumps by the penalty-sized gap to its second best): on the infeasible and nearly infeasible
// batches tried, the twin took no longer. kEps0Div and kEpsDiv were chosen from the twin's round
// counts, each problem's time modelled with the H100's measured costs (2.9 us a Jacobi round,
// 1.15 us a step of a single-bid chain; the model reproduced five measured batch sizes within 2%).
// Against (512, 64), on uniform random square costs, (256, 16) takes 0-10% less time on average
// from 49^2 to 236^2, 25% at 784^2, 13-65% with integer costs of range 100, and the slowest of 224
// (what a batch waits for) 8-24% less, 44% at 392^2; on structured 196^2 costs 13% (forbidden
// pairs) to 58% (a few huge entries) less, 54% with duplicate rows, 35% low-rank or distance
// costs; video-like costs end in their first round either way. Rectangular problems (dummies
// bidding as a pool), 64 a family: DETR-like costs (L1 box distance minus class probability) whose
// predictions cluster within 0.1 of one point, 300 x 50 and 100 x 30, the slowest 36-67% and the
// mean 35-53% less; uniform random 150-180 x 196 the slowest 7-25% less but the mean up to 27%
// more, 90 x 196 33% more; problems that end in tens of us (well-spread predictions, 20 x 300)
// take 10-16 us more on average, their slowest up to 50 us more.
constexpr int64_t kEps0Div = 256, kEpsDiv = 16;
constexpr int64_t kMaxRounds = int64_t{1} << 24;    // per problem; reached only on a bug


// Summary of one problem's benefits (maximisation form), gathered in one pass.
struct Stats {
  double lo, hi;        // min and max over finite entries (lo > hi when there are none)
  bool invalid;         // NaN, or +inf (a benefit of +inf is never meaningful)
  bool forbidden;       // some -inf: a forbidden pair
  bool integral;        // every finite entry is an integer
};

C10_HOST_DEVICE inline Stats stats_init() {
  return Stats{INFINITY, -INFINITY, false, false, true};
}

C10_HOST_DEVICE inline void stats_add(Stats& s, double b) {
  if (b != b || b == INFINITY) {
    s.invalid = true;
  } else if (b == -INFINITY) {
    s.forbidden = true;
  } else {
    s.lo = b < s.lo ? b : s.lo;
    s.hi = b > s.hi ? b : s.hi;
    s.integral = s.integral && (b == floor(b));
  }
}

C10_HOST_DEVICE inline Stats stats_merge(Stats a, const Stats& b) {
  a.lo = b.lo < a.lo ? b.lo : a.lo;
  a.hi = b.hi > a.hi ? b.hi : a.hi;
  a.invalid = a.invalid || b.invalid;
  a.forbidden = a.forbidden || b.forbidden;
  a.integral = a.integral && b.integral;
  return a;
}

// First choices. Each real row's column of highest benefit, on the raw values, when no other
// column of the row has that value. If every real row has one and no two rows share it, each row
// holds its best column: no assignment beats that sum of row maxima, so it is the optimum, exactly
// (of the values as given, not of their levels), and no round is needed. Video-like similarities
// are such problems. Flat rows (one finite value in every column) may sit among them: such a row
// values every column alike, so whichever columns they take the sum is the same, and the maxima
// of the others are still reached when the flat rows, lowest first, take the columns left, lowest
// first (in video-like similarities, the rows of zero tokens, such as padding: with them every
// such problem once failed the check). Both solvers check this before anything
// else (the twin, and the CPU batch driver for the JV solver too, with lsa_first_choices in
// csrc/cpu/lsa_batch_cpu.h, the same rule in CPU vector loops; the emulator tests hold the two to
// the same answers): on the GPU a kernel of its own (first_choice_kernel, many warps an SM) reads
// the costs at memory speed, where the auction's load pass, one block an SM for a 196 x 196
// problem, is bound by memory latency. Benefits are compared as doubles in both (exact for every
// float input; for int64 beyond 2^53 two values can round to one double, which only makes a row
// fail the uniqueness check; a row counts as flat only if its value is below 2^53 in magnitude,
// where no other int64 rounds to it).
struct FirstChoice {
  double v;       // the highest benefit so far
  int32_t j;      // its column (-1: none yet)
  int32_t count;  // columns seen that have v
  bool invalid;   // NaN or +inf seen: the auction reports the problem, the check never passes
};

constexpr int32_t kFlatChoice = -2;           // first_choice_of's answer for a flat row
constexpr double kFlatLimit = 9007199254740992.0;  // 2^53: a flat row's value lies strictly within +-this

C10_HOST_DEVICE inline FirstChoice first_choice_init() {
  return FirstChoice{-INFINITY, -1, 0, false};
}

C10_HOST_DEVICE inline void first_choice_add(FirstChoice& f, double b, int32_t j) {
  if (b != b || b == INFINITY) {
    f.invalid = true;
  } else if (b > f.v) {
    f.v = b;
    f.j = j;
    f.count = 1;
  } else if (b == f.v) {
    ++f.count;
  }
}

// Any order of merges gives the same answer where it matters: the column of a unique maximum, and
// how many columns hold the maximum.
C10_HOST_DEVICE inline FirstChoice first_choice_merge(FirstChoice a, const FirstChoice& b) {
  const bool invalid = a.invalid || b.invalid;
  if (b.v > a.v) {
    a = b;
  } else if (b.v == a.v) {
    a.count += b.count;
  }
  a.invalid = invalid;
  return a;
}

// The first choice of a row of n columns: its column, kFlatChoice for a flat row, or -1 (no unique
// finite maximum, or an invalid entry).
C10_HOST_DEVICE inline int32_t first_choice_of(const FirstChoice& f, int64_t n) {
  if (f.invalid || !(f.v > -INFINITY)) return -1;
  if (f.count == 1) return f.j;
  return f.count == n && f.v < kFlatLimit && f.v > -kFlatLimit ? kFlatChoice : -1;
}

// How finite benefits map to integers: B = rint((h*b - h*lo) / div * scale), B in [0, levels],
// div = h*hi - h*lo. h is 1, or 1/2 when hi - lo overflows a double (finite inputs near +-DBL_MAX):
// halving keeps the difference finite, and is exact except below 2^-1021, where it drops the last
// bit of a subnormal, so it is used only when needed (halving always, two subnormal costs one unit
// apart shared a level, and the optimum was missed by that unit). Dividing by the range before
// multiplying keeps the factor finite for tiny ranges (levels / range overflows once the range is
// below about 1e-301).
struct Scale {
  double lo, h, div, scale;
  int64_t levels;    // Q
  int64_t penalty;   // B of a forbidden pair: -(n*Q + 1)
  int64_t n1;        // n + 1, the multiplier that makes eps = 1 exact
  int64_t eps0;      // first phase's eps
};

// Q: as many levels as the price bound allows. Integer-valued benefits whose range fits are kept
// as they are (B = b - lo, exactly), so integer problems are solved exactly.
C10_HOST_DEVICE inline Scale make_scale(const Stats& s, int64_t n) {
  Scale sc;
  sc.n1 = n + 1;
  int64_t q = kLevelsMax;
  // Scaled range C = (Q + |penalty|) * (n + 1) with forbidden pairs, Q * (n + 1) without.
  const int64_t cap = s.forbidden ? (kScaledRangeMax / sc.n1 - 1) / sc.n1 : kScaledRangeMax / sc.n1;
  q = cap < q ? cap : q;
  q = q < 1 ? 1 : q;
  const bool any = s.hi >= s.lo;
  sc.lo = any ? s.lo : 0.0;
  sc.h = any && !(s.hi - s.lo <= DBL_MAX) ? 0.5 : 1.0;
  const double range = any ? sc.h * s.hi - sc.h * s.lo : 0.0;
  if (range == 0.0) {
    sc.div = 1.0;
    sc.scale = 0.0;
    q = 0;
  } else if (s.integral && s.hi - s.lo <= static_cast<double>(q)) {
    sc.div = 1.0;  // h = 1 here: B = b - lo, exactly
    sc.scale = 1.0;
    q = static_cast<int64_t>(s.hi - s.lo);
  } else {
    sc.div = range;
    sc.scale = static_cast<double>(q);
  }
  sc.levels = q;
  sc.penalty = -(n * q + 1);
  const int64_t finite_range = q * sc.n1;  // not C: see the schedule above
  sc.eps0 = finite_range / kEps0Div > 1 ? finite_range / kEps0Div : 1;
  return sc;
}

// Quantised level of one benefit (maximisation form): an int32 in [0, Q], or kForbidden. The
// solvers store levels (4 bytes an entry, so a 196 x 196 problem fits in shared memory) and
// scale them on the fly.
constexpr int32_t kForbidden = INT32_MIN;

C10_HOST_DEVICE inline int32_t level(double b, const Scale& sc) {
  if (b == -INFINITY) return kForbidden;
  return static_cast<int32_t>(rint((sc.h * b - sc.h * sc.lo) / sc.div * sc.scale));
}

// The integer benefit the auction works with.
C10_HOST_DEVICE inline int64_t scaled(int32_t lv, const Scale& sc) {
  return (lv == kForbidden ? sc.penalty : static_cast<int64_t>(lv)) * sc.n1;
}

// Best and second-best value of a row's columns. j1 is the best column's tie key (column - origin,
// mod n: see row_top2), and among equal values the lower key is best, which makes the merge
// associative and commutative, so any reduction order gives one answer. top2_column turns the
// key back into the column once the reduction is done.
struct Top2 {
  int64_t v1, v2;
  int32_t j1;
};

C10_HOST_DEVICE inline Top2 top2_init() {
  return Top2{INT64_MIN, INT64_MIN, -1};
}

C10_HOST_DEVICE inline void top2_add(Top2& t, int64_t v, int32_t j) {
  if (v > t.v1 || (v == t.v1 && j < t.j1)) {
    t.v2 = t.v1;
    t.v1 = v;
    t.j1 = j;
  } else if (v > t.v2) {
    t.v2 = v;
  }
}

C10_HOST_DEVICE inline Top2 top2_merge(Top2 a, const Top2& b) {
  if (b.v1 > a.v1 || (b.v1 == a.v1 && b.j1 >= 0 && (a.j1 < 0 || b.j1 < a.j1))) {
    const int64_t other = a.v1 > b.v2 ? a.v1 : b.v2;
    return Top2{b.v1, other, b.j1};
  }
  const int64_t other = b.v1 > a.v2 ? b.v1 : a.v2;
  return Top2{a.v1, other, a.j1};
}

// The tie key of column j for a bidder whose equal values rank from column origin on (auction.h,
// "Ties"): (j - origin) mod n, for 0 <= j, origin < n. origin is the row (r for the dummies).
C10_HOST_DEVICE inline int32_t tie_key(int64_t j, int64_t origin, int64_t n) {
  // 32-bit arithmetic (n <= kMaxN): 64-bit ones cost the large-problem kernel 20 registers.
  const int32_t d = static_cast<int32_t>(j) - static_cast<int32_t>(origin);
  return d < 0 ? d + static_cast<int32_t>(n) : d;
}

// The column whose tie key is Top2::j1 (-1: none).
C10_HOST_DEVICE inline int32_t top2_column(const Top2& t, int64_t origin, int64_t n) {
  if (t.j1 < 0) return -1;
  return static_cast<int32_t>(t.j1 + origin < n ? t.j1 + origin : t.j1 + origin - n);
}

// Top2 of a real row's values scaled(row[j]) - price[j] over the columns j = first, first + stride,
// ... (a lane's share on the GPU, the whole row on the CPU), j1 as a tie key from origin (the row).
template <int kBatch = 1>
C10_HOST_DEVICE inline Top2 row_top2(const int32_t* row, const int64_t* price, int64_t n, const Scale& sc,
                                     int64_t first, int64_t stride, int64_t origin) {
  Top2 t = top2_init();
  if constexpr (kBatch == 1) {
    // The plain loop, kept as it was for the twin and the shared-memory kernels: with the batched
    // form below (even at kBatch = 1), ptxas spilled registers in several of those kernels.
    for (int64_t j = first; j < n; j += stride) top2_add(t, scaled(row[j], sc) - price[j], tie_key(j, origin, n));
  } else {
    // kBatch entries are loaded before any is compared, so that on the GPU their loads overlap
    // instead of each waiting for the comparison before it (the levels of the large-problem path
    // are in global memory). They are still compared in order of j: kBatch never changes the
    // result, it trades registers for loads in flight.
    for (int64_t j = first; j < n; j += kBatch * stride) {
      int32_t lv[kBatch];
      int64_t p[kBatch];
      for (int u = 0; u < kBatch; ++u) {
        if (j + u * stride < n) {
          lv[u] = row[j + u * stride];
          p[u] = price[j + u * stride];
        }
      }
      for (int u = 0; u < kBatch; ++u) {
        if (j + u * stride < n) top2_add(t, scaled(lv[u], sc) - p[u], tie_key(j + u * stride, origin, n));
      }
    }
  }
  return t;
}

// Pools (see "Pools" above). Pool k bids under the id r + k, above every real row; pool 0 is the
// dummies and the flat rows (benefit 0), pool k >= 1 a group of identical other rows. A member of
// pool k is marked pool_mark(k) in col_of, which it never uses otherwise (the pool holds its
// columns); a row that bids on its own has col_of >= -1.
C10_HOST_DEVICE inline int32_t pool_mark(int32_t k) { return -2 - k; }
C10_HOST_DEVICE inline int32_t pool_of_mark(int32_t mark) { return -2 - mark; }

// A row's hash is the sum of level_hash over its entries (so any order of summing gives one
// answer). Rows of equal hashes are compared in full before they are pooled: a collision costs
// only time.
C10_HOST_DEVICE inline uint64_t level_hash(int32_t lv, int64_t j) {
  uint64_t z = (static_cast<uint64_t>(static_cast<uint32_t>(lv)) << 32 | static_cast<uint64_t>(j)) +
               0x9e3779b97f4a7c15ull;  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The most pools a problem of r real rows can have: pool 0 and one per two other rows, up to
// kMaxPools in all (rows past that bid alone: correct, only slower where so many groups of equal
// rows meet). The kernel keeps each pool's state in shared memory, 28 bytes a pool: uncapped, its
// largest square problem on an H100 would be 5,509 columns, not 7,241 (7,232 before pools).
constexpr int64_t kMaxPools = 1024;
C10_HOST_DEVICE constexpr int64_t pool_slots(int64_t r) {
  return r / 2 + 1 < kMaxPools ? r / 2 + 1 : kMaxPools;
}

// The pools of an r x n problem with nflat flat rows, from col_of (pool_mark(0) for a flat row, -1
// for the others) and rep (for each other row, the lowest row of the same levels: itself if none).
// Rows are visited in order and a pool is made when a group's second row is reached, so its id
// follows that order. Marks the pooled rows in col_of, fills pool_row (the group's lowest row; -1
// for pool 0) and pool_size (its members; pool 0: the n - r dummies and the flat rows), and returns
// the number of pools: at most pool_slots(r), with ids below kMaxN + 1 (the packed words' row
// bits); rows past either bound bid alone. Serial: one GPU thread runs it, once a problem, and
// only where some rows are equal.
C10_HOST_DEVICE inline int32_t make_pools(const int32_t* rep, int64_t r, int64_t n, int64_t nflat, int32_t* col_of,
                                          int32_t* pool_row, int32_t* pool_size) {
  pool_row[0] = -1;
  pool_size[0] = static_cast<int32_t>(n - r + nflat);
  int32_t pools = 1;
  for (int64_t i = 0; i < r; ++i) {
    if (col_of[i] != -1 || rep[i] == i) continue;
    const int32_t k = rep[i];
    if (col_of[k] == -1) {
      if (pools == pool_slots(r) || r + pools > kMaxN) continue;
      pool_row[pools] = k;
      pool_size[pools] = 1;
      col_of[k] = pool_mark(pools++);
    }
    ++pool_size[pool_of_mark(col_of[k])];
    col_of[i] = col_of[k];
  }
  return pools;
}

// Where pool k (lowest row row) ranks equal values from (see "Ties"): column r for pool 0 (r = n
// only where pool 0 has no dummies, and then key j - n + n = j), its lowest row for the others.
C10_HOST_DEVICE inline int64_t pool_origin(int32_t k, int32_t row, int64_t r) {
  return k == 0 ? r : row;
}

// The levels pool k (lowest row row) bids with: nullptr for pool 0, whose benefits are 0.
C10_HOST_DEVICE inline const int32_t* pool_levels(const int32_t* lv, int32_t k, int32_t row, int64_t n) {
  return k == 0 ? nullptr : lv + static_cast<int64_t>(row) * n;
}

// Value of column j to a bidder of levels row (a real row, or a pool's: nullptr for pool 0, whose
// benefits are 0): its benefit less the price.
C10_HOST_DEVICE inline int64_t pool_value(const int32_t* row, const int64_t* price, int64_t j, const Scale& sc) {
  return (row ? scaled(row[j], sc) : 0) - price[j];
}

// A pool's order of columns: the higher value first, among equal values the lower tie key.
C10_HOST_DEVICE inline bool ranks_before(int64_t va, int32_t ka, int64_t vb, int32_t kb) {
  return va > vb || (va == vb && ka < kb);
}

// Whether a pool bids on column j (value v, tie key kj), given the value level and tie key key of
// the (u+1)-th in its order of the columns it does not hold (u: members unassigned): on the ones
// it does not hold that rank before that one, and on the ones it holds of a higher value. It bids
// pool_bid on each, which leaves every one of them at value level - eps.
C10_HOST_DEVICE inline bool pool_takes(bool held, int64_t v, int32_t kj, int64_t level, int32_t key) {
  return held ? v > level : ranks_before(v, kj, level, key);
}

C10_HOST_DEVICE inline int64_t pool_bid(const int32_t* row, int64_t j, int64_t level, int64_t eps, const Scale& sc) {
  return (row ? scaled(row[j], sc) : 0) - level + eps;
}

// Last bidders (see "Last bidders" above): whether a round's bidders, nb real rows bidding alone
// and na pools with members unassigned (pool_left of them where na == 1), are placed by path
// searches instead of another round: at most kPathBidders rows, or at most kStalledBidders once
// their count has stalled for kStallRounds rounds (stall: see next_stall). The caller has at least
// one bidder.
constexpr int64_t kPathBidders = 2, kStalledBidders = 8, kStallRounds = 16;

C10_HOST_DEVICE inline bool path_bidders(int64_t nb, int64_t na, int64_t pool_left, int64_t stall) {
  if (na > 0) return na == 1 && nb == 0 && pool_left == 1;
  return nb <= kPathBidders || (nb <= kStalledBidders && stall >= kStallRounds);
}

// A round's stall: how many rounds of its phase before it have passed since the count of bidders
// last fell to a new low, from the phase's lowest count before the round (low) and the previous
// round's stall; 0 in the phase's first round (first), when low is not yet set. next_low is the
// lowest count once the round's nb bidders are counted.
C10_HOST_DEVICE inline int32_t next_stall(bool first, int64_t nb, int64_t low, int32_t stall) {
  return first || nb < low ? 0 : stall + 1;
}

C10_HOST_DEVICE inline int32_t next_low(bool first, int64_t nb, int64_t low) {
  return static_cast<int32_t>(first || nb < low ? nb : low);
}

// Whether a search passes over column j, held by holder (a pool when >= r), and last reached from
// a column held by reached_from (the bidder, for its first pass): a pool reached from itself.
// Moving one member to another's column gains nothing, and relaxing from j could shorten no
// distance (its holder's values were relaxed from where it was reached, at a distance that makes
// every value j could offer no closer), so j is neither processed nor a candidate to settle; it
// counts as settled at the end if its key comes before the free column's. The distances, paths
// and price rises are those of settling it (one pass each: a pool of the dummies can hold
// hundreds of columns).
C10_HOST_DEVICE inline bool path_passes_over(int32_t holder, int32_t reached_from, int64_t r) {
  return holder >= r && reached_from == holder;
}

// A path search's distance to column k through a row reached at distance dc on its column of
// value vc, whose value of k is v: its value drop, clipped at 0.
C10_HOST_DEVICE inline int64_t path_relax(int64_t dc, int64_t vc, int64_t v) {
  return dc + (vc > v ? vc - v : 0);
}

// The order in which a search settles columns: the lower distance, then the lower column, as one
// word (a column needs 16 bits). Distances are clipped at 2^48 - 1, which none that settles
// reaches: the search stops at a free column f no further than the bidder's first step to it,
// its best value (at most 2^40) less its value of f (a price below kPriceLimit less a benefit
// of at least -2^40), so below 2^41 + kPriceLimit.
C10_HOST_DEVICE inline unsigned long long path_key(int64_t d, int64_t j) {
  constexpr int64_t kFar = (int64_t{1} << 48) - 1;
  return static_cast<unsigned long long>(d < kFar ? d : kFar) << kRowBits | static_cast<unsigned long long>(j);
}

// The distance of the column a key settles: exact (below the clip).
C10_HOST_DEVICE inline int64_t path_distance(unsigned long long key) { return static_cast<int64_t>(key >> kRowBits); }

// A settled column's distance is stored as ~d (negative; distances are >= 0), so one word says both.
C10_HOST_DEVICE inline bool path_settled(int64_t stored) { return stored < 0; }

// How far column j rises after a search that settled the free column c at distance dc, from its
// stored distance: dc - d if j was settled, or passed over (passed) with a key before c's; else 0.
C10_HOST_DEVICE inline int64_t path_rise(int64_t stored, bool passed, int64_t j, int64_t dc, int64_t c) {
  if (path_settled(stored)) return dc - ~stored;
  return passed && path_key(stored, j) < path_key(dc, c) ? dc - stored : 0;
}

// What a real row brings to the pools (see "Pools"), over the columns j = first, first + stride, ...
// (a lane's share on the GPU, whose lanes then and flat and sum hash; the whole row on the CPU):
// whether it is flat (one value in every column, no forbidden pair: it values every column alike,
// as the dummies do, so it joins pool 0), and its hash, the sum of level_hash over its entries.
// The entries of a row are step apart: 1 for a row, n for a column of a square problem (a line
// of the levels, either way: see "Orientation").
struct RowSummary {
  bool flat;
  uint64_t hash;
};

C10_HOST_DEVICE inline RowSummary row_summary(const int32_t* row, int64_t n, int64_t first, int64_t stride,
                                              int64_t step = 1) {
  RowSummary s{row[0] != kForbidden, 0};
  for (int64_t j = first; j < n; j += stride) {
    s.flat = s.flat && row[j * step] == row[0];
    s.hash += level_hash(row[j * step], j);
  }
  return s;
}

// Orientation (see "Orientation" above): a line's class, from its row_summary: every flat line is
// one class, the others their hash. A square problem's rows (columns) repeat n less the number of
// distinct classes among them times, and it is solved transposed where its columns repeat more
// (columns_first): otherwise as given.
C10_HOST_DEVICE inline uint64_t orient_class(const RowSummary& s) { return s.flat ? 0 : s.hash; }

C10_HOST_DEVICE inline bool columns_first(int64_t row_repeats, int64_t col_repeats) {
  return col_repeats > row_repeats;
}

// The highest scaled benefit of a row over the columns j = first, first + stride, ... (a lane's
// share on the GPU, the whole row on the CPU): the reduction of its values for start_price.
C10_HOST_DEVICE inline int64_t row_best(const int32_t* row, int64_t n, const Scale& sc, int64_t first, int64_t stride) {
  int64_t m = INT64_MIN;
  for (int64_t j = first; j < n; j += stride) {
    const int64_t v = scaled(row[j], sc);
    m = v > m ? v : m;
  }
  return m;
}

// Column j's start price (see "Start prices" above) for the r x n levels lv whose rows have the
// highest scaled benefits best_of_row: the second highest of scaled(lv[i][j]) - best_of_row[i]
// over the rows, clamped at -Q(n+1) (a column whose runner-up pair is forbidden would otherwise
// start a penalty below the rest), plus Q(n+1). In [0, Q(n+1)].
C10_HOST_DEVICE inline int64_t start_price(const int32_t* lv, const int64_t* best_of_row, int64_t r, int64_t n,
                                           int64_t j, const Scale& sc) {
  int64_t v1 = INT64_MIN, v2 = INT64_MIN;
  for (int64_t i = 0; i < r; ++i) {
    const int64_t v = scaled(lv[i * n + j], sc) - best_of_row[i];
    if (v > v1) {
      v2 = v1;
      v1 = v;
    } else if (v > v2) {
      v2 = v;
    }
  }
  const int64_t range = sc.levels * sc.n1;
  return range + (v2 > -range ? v2 : -range);
}

// The price row i bids for its best column, from that column's current price p1. A single column
// (n = 1) has no second best: the bid raises the price by eps.
C10_HOST_DEVICE inline int64_t bid(const Top2& t, int64_t p1, int64_t eps) {
  const int64_t gap = t.v2 == INT64_MIN ? 0 : t.v1 - t.v2;
  return p1 + gap + eps;
}

// Bids below kPriceLimit pack with their row into one word that orders by price, then row.
C10_HOST_DEVICE inline unsigned long long pack_bid(int64_t price, int64_t row) {
  return (static_cast<unsigned long long>(price) << kRowBits) | static_cast<unsigned long long>(row);
}

C10_HOST_DEVICE inline int64_t bid_price(unsigned long long packed) {
  return static_cast<int64_t>(packed >> kRowBits);
}

C10_HOST_DEVICE inline int64_t bid_row(unsigned long long packed) {
  return static_cast<int64_t>(packed & kRowMask);
}

// Column j goes to row i at price p; rows >= r are dummies (they have no col_of entry). Returns the
// row that held j (now unassigned; r for a dummy), or -1. A displaced real row held only j, so
// concurrent awards of distinct columns touch distinct entries.
C10_HOST_DEVICE inline int32_t award(int64_t* price, int32_t* owner, int32_t* col_of, int32_t r, int32_t j, int32_t i,
                                     int64_t p) {
  const int32_t displaced = owner[j];
  price[j] = p;
  if (displaced >= 0 && displaced < r) col_of[displaced] = -1;
  owner[j] = i;
  if (i < r) col_of[i] = j;
  return displaced;
}

// The next phase's eps.
C10_HOST_DEVICE inline int64_t next_eps(int64_t eps) {
  const int64_t e = eps / kEpsDiv;
  return e > 1 ? e : 1;
}

}  // namespace auction
}  // namespace ata_ext
