// Per-problem outcome codes shared by every solver, CPU and CUDA (device code writes them into a
// status tensor; the host turns the first failure into a Python exception).
#pragma once

#include <cstdint>

namespace ata_ext {

enum LsaStatus : int32_t {
  kOk = 0,
  kInvalid = 1,        // NaN, or an infinity of the sign that cannot mark a forbidden pair
  kInfeasible = 2,     // forbidden pairs leave no complete assignment
  kOverflow = 3,       // auction prices left their 47-bit range (a bug: the scaling prevents it)
  kNoConvergence = 4,  // auction round limit reached (a bug: it terminates on every input)
  kBrokenInvariant = 5,  // eps-CS failed at a phase's end (a bug; only the twin's lsa_auction_rounds checks)
};

}  // namespace ata_ext
