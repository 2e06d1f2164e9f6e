// Index math of the alignment gathers, shared by the CPU and CUDA kernels.
//
// x is (B, T, N, C) (batch dims flattened into B), perm is (B, T, N). The aligned tensor y holds
// the same rows in "tn" layout (B, T, N, C) or "nt" layout (B, N, T, C), the latter being what
// temporal attention consumes (each aligned position's T tokens contiguous):
//     y[b, t, i] (or y[b, i, t]) = x[b, t, perm[b, t, i]]
// align_gather copies x rows into y, align_scatter copies them back: one is the other's inverse
// and its gradient, and both move each row exactly once (perm holds permutations).
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace ata_ext {

struct RowPair {
  int64_t x_row, y_row;
};

// k is the flat (b, t, i) index into perm, p = perm[k].
C10_HOST_DEVICE inline RowPair align_rows(int64_t k, int64_t p, int64_t T, int64_t N, bool nt) {
  const int64_t bt = k / N, i = k % N;
  const int64_t b = bt / T, t = bt % T;
  return RowPair{bt * N + p, nt ? (b * N + i) * T + t : k};
}

}  // namespace ata_ext
