// Index math of the alignment ops (the gathers and the composition of frame-pair assignments),
// shared by the CPU and CUDA kernels.
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

// compose_permutations for one position i of clip b: steps is (T-1, B, N), steps[t-1, b] the
// assignment of frame t-1's tokens to frame t's (a column per row); perm is (B, T, N).
//     perm[b, 0, i] = i,   perm[b, t, i] = steps[t-1, b, perm[b, t-1, i]]
// Each position is followed through the frames independently, so positions run in parallel.
// Returns false when the chain meets an index outside 0..N-1 (the -1 of a problem the solver
// left unassigned): that entry and the rest of the chain are written as -1, and nothing is read
// out of bounds.
C10_HOST_DEVICE inline bool compose_chain(const int64_t* steps, int64_t* perm, int64_t b, int64_t i, int64_t B,
                                          int64_t T, int64_t N) {
  int64_t p = i;
  bool ok = true;
  perm[b * T * N + i] = i;
  for (int64_t t = 1; t < T; ++t) {
    if (ok) {
      p = steps[((t - 1) * B + b) * N + p];
      ok = p >= 0 && p < N;
    }
    perm[(b * T + t) * N + i] = ok ? p : -1;
  }
  return ok;
}

}  // namespace ata_ext
