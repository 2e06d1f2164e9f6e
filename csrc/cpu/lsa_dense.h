// The CPU solver on one plain float64 matrix, without tensors or the dispatcher: the way in for
// the scipy and lapx drop-ins (ata_ext.compat, through the Python module in csrc/ata_ext.cpp),
// whose callers solve one small problem a call, where the op's fixed cost was most of the time.
#pragma once

#include <cstdint>
#include <optional>

namespace ata_ext {

// Solves the n x m row-major problem c (+inf forbidden; -inf when maximising) as the
// linear_sum_assignment op does with these arguments, and writes its matched pairs, rows
// increasing, into rows and cols (min(n, m) entries each). Returns how many pairs there are
// (fewer than min(n, m) only with a cost limit), or minus the problem's LsaStatus when it failed.
int64_t lsa_dense_pairs(const double* c, int64_t n, int64_t m, bool maximize, std::optional<double> cost_limit,
                        int64_t* rows, int64_t* cols);

}  // namespace ata_ext
