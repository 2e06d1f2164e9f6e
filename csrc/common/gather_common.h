// Host-side argument checks and output shapes for the alignment ops (align_gather, align_scatter,
// compose_permutations, normalize_similarities_), shared by the CPU and CUDA backends so their
// errors match.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>

namespace ata_ext {

// What align_scatter's errors call it: dealign, the function through which a user's perm reaches
// it (align_gather's perm comes from align's own solve, so its errors keep the op's name).
constexpr const char* kScatterOpName = "dealign";

// src is x (..., T, N, C) for a gather, y for a scatter ((..., N, T, C) when nt). Returns the
// output's sizes and fills T, N, and the flattened batch B.
inline std::vector<int64_t> gather_prepare(const at::Tensor& src, const at::Tensor& perm, bool nt, bool scatter,
                                 const char* op, int64_t& B, int64_t& T, int64_t& N) {
  TORCH_CHECK_VALUE(src.dim() >= 3, op, ": expected features of shape (..., T, N, C), got ", src.sizes());
  TORCH_CHECK_TYPE(perm.scalar_type() == at::kLong, op, ": perm must be int64, got ", perm.scalar_type());
  TORCH_CHECK_VALUE(perm.device() == src.device(), op, ": perm is on ", perm.device(), " but the features are on ",
                    src.device());
  auto sizes = src.sizes().vec();
  const int64_t d = src.dim();
  // The (T, N) shape perm must have, read off src in its own layout.
  auto expect = std::vector<int64_t>(sizes.begin(), sizes.end() - 1);
  const bool src_nt = scatter && nt;
  if (src_nt) std::swap(expect[d - 3], expect[d - 2]);
  TORCH_CHECK_VALUE(perm.sizes().vec() == expect, op, ": perm must have shape ", at::IntArrayRef(expect),
                    " (the features' (..., T, N)), got ", perm.sizes());
  T = expect[d - 3];
  N = expect[d - 2];
  B = T * N == 0 ? 0 : perm.numel() / (T * N);
  auto out_sizes = sizes;
  if (nt) std::swap(out_sizes[d - 3], out_sizes[d - 2]);  // a gather into nt, or a scatter out of it
  return out_sizes;
}

// steps is (T-1, B, N) int64, the frame-pair assignments; fills B, T, N (perm is (B, T, N)).
inline void compose_prepare(const at::Tensor& steps, int64_t& B, int64_t& T, int64_t& N) {
  TORCH_CHECK_VALUE(steps.dim() == 3, "compose_permutations: steps must have shape (T-1, B, N), got ", steps.sizes());
  TORCH_CHECK_TYPE(steps.scalar_type() == at::kLong, "compose_permutations: steps must be int64, got ",
                   steps.scalar_type());
  T = steps.size(0) + 1;
  B = steps.size(1);
  N = steps.size(2);
}

// gram (T-1, B, N, N), contiguous, floating; norms (B, T, N), float32 (float64 for float64 gram),
// or undefined; products, if given, gram's shape, dtype and device, rows contiguous (any other
// strides), not overlapping gram (unless it is gram). Fills B, T, N.
inline void similarities_prepare(const at::Tensor& gram, const c10::optional<at::Tensor>& norms,
                                 const c10::optional<at::Tensor>& products, int64_t& B, int64_t& T, int64_t& N) {
  const char* op = "normalize_similarities_";
  TORCH_CHECK_VALUE(gram.dim() == 4 && gram.size(2) == gram.size(3), op,
                    ": gram must have shape (T-1, B, N, N), got ", gram.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(gram.scalar_type()), op, ": gram must be floating-point, got ",
                   gram.scalar_type());
  TORCH_CHECK_VALUE(gram.is_contiguous(), op, ": gram must be contiguous");
  T = gram.size(0) + 1;
  B = gram.size(1);
  N = gram.size(2);
  if (products.has_value() && !products->is_same(gram)) {
    TORCH_CHECK_VALUE(products->sizes() == gram.sizes(), op, ": products must have gram's shape ", gram.sizes(),
                      ", got ", products->sizes());
    TORCH_CHECK_TYPE(products->scalar_type() == gram.scalar_type(), op, ": products must be ", gram.scalar_type(),
                     " like gram, got ", products->scalar_type());
    TORCH_CHECK_VALUE(products->device() == gram.device(), op, ": products is on ", products->device(),
                      " but gram is on ", gram.device());
    TORCH_CHECK_VALUE(products->stride(3) == 1 || products->size(3) <= 1, op,
                      ": products' rows must be contiguous (stride 1 along the last dim), got strides ",
                      products->strides());
    at::assert_no_overlap(gram, *products);
  }
  if (!norms.has_value()) return;
  const auto acc = gram.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_TYPE(norms->scalar_type() == acc, op, ": norms must be ", acc, " for ", gram.scalar_type(),
                   " similarities, got ", norms->scalar_type());
  TORCH_CHECK_VALUE(norms->sizes() == at::IntArrayRef({B, T, N}), op, ": norms must have shape (B, T, N) = (", B,
                    ", ", T, ", ", N, "), got ", norms->sizes());
  TORCH_CHECK_VALUE(norms->device() == gram.device(), op, ": norms is on ", norms->device(), " but gram is on ",
                    gram.device());
}

}  // namespace ata_ext
