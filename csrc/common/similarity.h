// The per-element arithmetic of ata_ext::normalize_similarities_, shared by its CPU and CUDA
// kernels so that both give the same bits.
//
// gram (T-1, B, N, N) holds the Gram matrices of consecutive frames, gram[t, b, i, j] =
// <k[b, t, i], k[b, t+1, j]>, and norms (B, T, N) the feature norms |k[b, t, i]|. In place (or
// read from products, the same matrices in any strided layout, and written to gram), each
// entry becomes the cosine similarity as torch.nn.functional.normalize defines it (each norm
// clamped to at least 1e-12), and an entry that is not finite (NaN or infinite features) becomes
// kNonFiniteSimilarity, below every cosine similarity: such tokens are matched after all others.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace ata_ext {

constexpr double kNonFiniteSimilarity = -2.0;
constexpr double kNormEps = 1e-12;

// acc_t: float, or double for double features. norms == nullptr: gram already holds cosines
// (features normalised before the matmul); only the non-finite entries are replaced.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t inverse_norm(const acc_t* norms, int64_t k) {
  if (norms == nullptr) return acc_t(1);
  const acc_t n = norms[k];
  return acc_t(1) / (n < acc_t(kNormEps) ? acc_t(kNormEps) : n);  // a NaN norm stays NaN
}

template <typename acc_t>
C10_HOST_DEVICE inline acc_t cosine(acc_t gram, acc_t inv_row, acc_t inv_col) {
  const acc_t c = gram * inv_row * inv_col;
  // c - c is 0 exactly when c is finite (NaN for NaN and for infinities).
  return c - c == acc_t(0) ? c : acc_t(kNonFiniteSimilarity);
}

// The element strides of the (T-1, B, N, N) products the entries are read from, along t, b and i
// (their rows are contiguous): gram's own in place, or those of a view (align's one bmm leaves its
// products in (B, T) order, each row padded; csrc/common/frame_similarities.h).
struct ProductStrides {
  int64_t t, b, i;
};

// Row (t, b, i) of gram (flat index row = (t * B + b) * N + i): the norms its entries divide by
// are norms[b, t, i] (one) and norms[b, t+1, :] (a contiguous row of N); its products start at
// product (an offset in elements, for strides s).
struct SimilarityRow {
  int64_t row_norm, col_norms, product;
};

C10_HOST_DEVICE inline SimilarityRow similarity_row(int64_t row, int64_t B, int64_t T, int64_t N,
                                                    const ProductStrides& s) {
  const int64_t i = row % N, tb = row / N;
  const int64_t b = tb % B, t = tb / B;
  return SimilarityRow{(b * T + t) * N + i, (b * T + t + 1) * N, t * s.t + b * s.b + i * s.i};
}

}  // namespace ata_ext
