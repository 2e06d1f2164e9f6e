// CPU implementation of ata_ext::normalize_similarities_: turns frame-pair Gram matrices into
// cosine similarities (in place, or read from strided products), in parallel over rows, with
// common/similarity.h's arithmetic.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/gather_common.h"
#include "common/similarity.h"

namespace ata_ext {
namespace {

void normalize_similarities_cpu(const at::Tensor& gram, const c10::optional<at::Tensor>& norms_in,
                                const c10::optional<at::Tensor>& products_in) {
  int64_t B, T, N;
  similarities_prepare(gram, norms_in, products_in, B, T, N);
  if (gram.numel() == 0) return;
  const at::Tensor norms = norms_in.has_value() ? norms_in->contiguous() : at::Tensor();
  const at::Tensor& products = products_in.has_value() ? *products_in : gram;
  const ProductStrides ps{products.stride(0), products.stride(1), products.stride(2)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gram.scalar_type(), "normalize_similarities_", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    scalar_t* g = gram.data_ptr<scalar_t>();
    const scalar_t* src = products.const_data_ptr<scalar_t>();
    const acc_t* nm = norms.defined() ? norms.const_data_ptr<acc_t>() : nullptr;
    // The inverse norms once each (B*T*N of them), not once per entry.
    std::vector<acc_t> inv(nm ? B * T * N : 0);
    for (int64_t k = 0; k < static_cast<int64_t>(inv.size()); ++k) inv[k] = inverse_norm(nm, k);
    const int64_t rows = (T - 1) * B * N;
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / N), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const SimilarityRow s = similarity_row(r, B, T, N, ps);
        const acc_t ia = nm ? inv[s.row_norm] : acc_t(1);
        const acc_t* ib = nm ? inv.data() + s.col_norms : nullptr;
        const scalar_t* pr = src + s.product;
        scalar_t* gr = g + r * N;
        for (int64_t j = 0; j < N; ++j) {
          gr[j] = static_cast<scalar_t>(cosine(static_cast<acc_t>(pr[j]), ia, ib ? ib[j] : acc_t(1)));
        }
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("normalize_similarities_", &normalize_similarities_cpu);
}

}  // namespace ata_ext
