// ata_ext::frame_similarities, the same on every device: the feature norms, the frame pairs'
// products (bmm) and ata_ext::normalize_similarities_. Backends register it with their own allocator for
// the output (csrc/cpu/frame_similarities_cpu.cpp: the host block cache, since a fresh (T-1, B, N,
// N) tensor faults in every page on the CPU; csrc/cuda/frame_similarities_cuda.cu: PyTorch's) and
// their own norms (the CPU at::linalg_vector_norm, CUDA a kernel of its own).
#pragma once

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mul.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace ata_ext {

// key (B, T, N, D) -> (T-1, B, N, N) in key's dtype; `empty(sizes, dtype)` allocates the output,
// `norms_of(key, acc)` returns the (B, T, N) Euclidean norms of key's rows in dtype acc.
template <typename Empty, typename NormsOf>
at::Tensor frame_similarities_impl(const at::Tensor& key, Empty empty, NormsOf norms_of) {
  const char* op = "frame_similarities";
  TORCH_CHECK_VALUE(key.dim() == 4 && key.size(1) >= 1, op, ": key must have shape (B, T, N, D) with T >= 1, got ",
                    key.sizes());
  const auto dtype = key.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat || dtype == at::kDouble, op,
                   ": key must be float16, bfloat16, float32 or float64, got ", dtype);
  const int64_t B = key.size(0), T = key.size(1), N = key.size(2);
  // Not differentiated (the op has no autograd formula): the ops below run under the autograd
  // layer. Otherwise a key that requires grad, with grad mode on (a traced model: torch.jit.trace
  // records no no_grad blocks), made bmm_out raise that out= functions do not support autograd,
  // and a dual key (forward-mode AD) raised the same for tangents.
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  // Norms in float32 (float64 for float64 features): the inverse of a small norm does not fit in
  // float16.
  at::Tensor norms = norms_of(key, dtype == at::kDouble ? at::kDouble : at::kFloat);
  at::Tensor k = key;
  std::optional<at::Tensor> scale = norms;
  if (dtype == at::kHalf || key.size(3) == 1) {
    // float16 Gram matrices overflow once norms pass 256 and lose their digits when norms are
    // small: normalise the features first (computed in float32, stored once), then the Gram
    // matrices are cosines already. So do single-channel features in every dtype: their norm is
    // |x|, finite up to the dtype's maximum (F.normalize makes +-1 of them), while the product
    // of two raw values overflows from the square root of it on.
    k = at::empty_like(key);
    at::mul_out(k, key, norms.clamp_min(1e-12).reciprocal().unsqueeze(-1));
    scale = std::nullopt;
  }
  at::Tensor sim = empty({T - 1, B, N, N}, dtype);
  // Every frame pair's products in one bmm, or one bmm per pair. One bmm takes the B * T frames as
  // one batch, each with the next: B - 1 of its B * T - 1 products pair a clip's last frame with
  // the next clip's first and are dropped (14% more work at T = 8), and normalize_similarities_
  // reads the rest in their (B, T) order into sim's (T - 1, B). On a GPU the T - 1 launches cost
  // more than that work: on an H200 align on (32, 8, 196, 768) bfloat16 took 0.35 instead of 0.44
  // ms on coherent features (2.23 instead of 2.32 on random ones; bench_align.py --parts). On the
  // CPU, with no launches to save, one bmm measured 4-15% slower ((16, 8, 196, 768) float32, 2
  // cores). So the default is one bmm on CUDA and one a pair elsewhere; ATA_EXT_SIMILARITY_BMM=one
  // or =pair (read at every call) picks one, for benchmarks/bench_align.py to time both.
  std::optional<at::Tensor> products;  // where the Gram matrices are, when not in sim
  const char* bmm_env = std::getenv("ATA_EXT_SIMILARITY_BMM");
  const std::string_view bmm = bmm_env != nullptr ? bmm_env : (key.is_cuda() ? "one" : "pair");
  TORCH_CHECK_VALUE(bmm == "one" || bmm == "pair", op, ": ATA_EXT_SIMILARITY_BMM must be 'one' or 'pair', got '",
                    std::string(bmm), "'");
  if (T > 2 && k.is_contiguous() && bmm == "one") {
    // Each product row padded to P columns, a multiple of 16 bytes: with N = 196 (not a multiple
    // of 8), cuBLAS took a kernel for 4-byte-aligned rows that ran 2.9x slower on an H200 (102
    // instead of 35.5 us for (32, 8, 196, 768) bfloat16, 2% more work). The second operand of
    // each product is a frame's N rows after the P - N rows before them (a strided view, no copy;
    // the first frame's own last rows, or for P = N none), so its first P - N columns are dropped
    // with the products across clips. Only where P - N rows fit in a frame.
    const int64_t D = k.size(3), F = B * T, align = 16 / static_cast<int64_t>(k.element_size());
    const int64_t padded = (N + align - 1) / align * align, P = padded <= 2 * N ? padded : N;
    const at::Tensor frames = k.view({F, N, D});
    const at::Tensor next = k.as_strided({F - 1, P, D}, {N * D, D, 1}, k.storage_offset() + (2 * N - P) * D);
    at::Tensor pairs = at::empty({B, T, N, P}, sim.options());
    at::Tensor out = pairs.view({F, N, P}).narrow(0, 0, F - 1);
    at::bmm_out(out, frames.narrow(0, 0, F - 1), next.transpose(1, 2));
    // Normalised straight from pairs (below): a copy into sim's (T - 1, B) order first cost a
    // pass over the similarities (25 us of 219 in align's kernels on an H200, (32, 8, 196, 768)).
    products = pairs.narrow(1, 0, T - 1).narrow(3, P - N, N).transpose(0, 1);
  } else {
    // One bmm per frame pair on strided views: a 4-D matmul of the frame slices would copy both
    // operands first (they are not one strided batch), which measured 2.2x slower on the CPU.
    for (int64_t t = 0; t + 1 < T; ++t) {
      at::Tensor out = sim.select(0, t);
      at::bmm_out(out, k.select(1, t), k.select(1, t + 1).transpose(1, 2));
    }
  }
  static const auto normalize = c10::Dispatcher::singleton()
                                    .findSchemaOrThrow("ata_ext::normalize_similarities_", "")
                                    .typed<void(const at::Tensor&, const std::optional<at::Tensor>&,
                                                const std::optional<at::Tensor>&)>();
  normalize.call(sim, scale, products);
  return sim;
}

}  // namespace ata_ext
