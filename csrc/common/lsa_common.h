// Host-side pieces of the linear_sum_assignment contract shared by every backend: argument
// checks, the output tensor, and the exceptions raised for failed problems.
#pragma once

// Here and in every source: ATen/core/Tensor.h plus the per-op headers used, not ATen/ATen.h,
// which declares every ATen op and took about a third of each file's compile time.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <cstdint>

#include "common/status.h"

namespace ata_ext {

// What the lsa_auction op's errors call it: the name a user of ata_ext.linear_sum_assignment(...,
// algorithm="auction") wrote, not the op's internal one.
constexpr const char* kAuctionOpName = "linear_sum_assignment(algorithm='auction')";

inline void lsa_check_input(const at::Tensor& cost, const char* op) {
  TORCH_CHECK_VALUE(cost.dim() >= 2, op, ": cost must have at least 2 dimensions (..., N, M), got shape ",
                    cost.sizes());
  TORCH_CHECK_TYPE(!cost.is_complex(), op, ": complex cost matrices are not supported (got ",
                   cost.scalar_type(), ")");
  // The kernels dispatch on AT_DISPATCH_ALL_TYPES_AND3(Half, BFloat16, Bool); ata_ext/_solver.py
  // checks the same list.
  const auto t = cost.scalar_type();
  const bool supported = t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble ||
                         t == at::kByte || t == at::kChar || t == at::kShort || t == at::kInt || t == at::kLong ||
                         t == at::kBool;
  TORCH_CHECK_TYPE(supported, op, ": cost dtype ", t, " is not supported (supported: float16, bfloat16, float32, "
                   "float64, uint8, int8, int16, int32, int64, bool)");
}

// (..., N) int64 filled with -1: the answer for rows that get no column. filled = false leaves it
// unset, for a kernel that writes every entry itself (one launch fewer on CUDA).
inline at::Tensor lsa_output(const at::Tensor& cost, bool filled = true) {
  auto sizes = cost.sizes().vec();
  sizes.pop_back();
  const auto options = cost.options().dtype(at::kLong);
  return filled ? at::full(sizes, -1, options) : at::empty(sizes, options);
}

// Raises for the first failed problem, or returns. A problem is named `before` b `after`:
// "problem 3 of the batch" by default, "costs[3]" for a list of problems.
inline void lsa_raise(const int32_t* status, int64_t batch, const char* op, const char* before = "problem ",
                      const char* after = " of the batch") {
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK_VALUE(status[b] != kInvalid, op,
                      ": matrix contains invalid numeric entries (NaN, or an infinity of the sign "
                      "that cannot mark a forbidden pair) in ", before, b, after);
    TORCH_CHECK_VALUE(status[b] != kInfeasible, op, ": cost matrix is infeasible (", before, b, after,
                      " has no complete assignment avoiding forbidden pairs)");
    TORCH_CHECK(status[b] == kOk, op, ": internal error ", status[b], " in ", before, b, after,
                " (auction price overflow, round limit or broken invariant); please report it with the input");
  }
}

}  // namespace ata_ext
