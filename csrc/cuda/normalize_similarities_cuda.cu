// CUDA implementation of ata_ext::normalize_similarities_: turns frame-pair Gram matrices into
// cosine similarities (in place, or read from strided products), with common/similarity.h's
// arithmetic (the CPU kernel's bits).
// One pass where eager PyTorch took five kernels (clamp, reciprocal, two broadcast multiplies and
// nan_to_num), each reading and writing the whole tensor or launching for a tiny one.
#ifndef ATA_EXT_CUDA_EMULATOR  // tests/emulator runs the device code below on the CPU
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/gather_common.h"
#endif

#include <cstdint>
#include <type_traits>

#include "common/similarity.h"
#include "cuda/row_vectors.h"

namespace ata_ext {
namespace {

constexpr int kSimilarityThreads = 256;

// Entries a lane loads before it stores any: a row of 196 is 7 a lane.
constexpr int kSimilarityLoads = 8;

// A warp per row of N entries: the row's index math and its own inverse norm are done once, and
// the lanes read and write consecutive entries (coalesced where products' rows are), each with
// its column's norm. products may be gram itself (no __restrict__ on either), so the compiler
// cannot move a load above an earlier store: a loop of load, compute, store waited on every load
// in turn (one 64-byte load in flight a warp; on an H200 the kernel moved its bytes at 1.6 TB/s).
// Each lane loads up to kSimilarityLoads entries first, then writes them; an entry is read and
// written by the same lane, so this is right in place too.
template <typename scalar_t, typename acc_t>
__global__ void normalize_similarities_kernel(const scalar_t* products, ProductStrides ps, scalar_t* gram,
                                              const acc_t* __restrict__ norms, int64_t B, int64_t T, int64_t N) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = (T - 1) * B * N;
  const int64_t warps = int64_t{gridDim.x} * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32; r < rows; r += warps) {
    const SimilarityRow s = similarity_row(r, B, T, N, ps);
    const acc_t ia = inverse_norm(norms, s.row_norm);
    const scalar_t* pr = products + s.product;
    scalar_t* gr = gram + r * N;
    for (int64_t j0 = lane; j0 < N; j0 += 32 * kSimilarityLoads) {
      acc_t p[kSimilarityLoads], ib[kSimilarityLoads];
#pragma unroll
      for (int u = 0; u < kSimilarityLoads; ++u) {
        const int64_t j = j0 + 32 * u;
        if (j < N) {
          p[u] = static_cast<acc_t>(pr[j]);
          ib[u] = inverse_norm(norms, s.col_norms + j);
        }
      }
#pragma unroll
      for (int u = 0; u < kSimilarityLoads; ++u) {
        const int64_t j = j0 + 32 * u;
        if (j < N) gr[j] = static_cast<scalar_t>(cosine(p[u], ia, ib[u]));
      }
    }
  }
}

#ifndef ATA_EXT_CUDA_EMULATOR
void normalize_similarities_cuda(const at::Tensor& gram, const c10::optional<at::Tensor>& norms_in,
                                 const c10::optional<at::Tensor>& products_in) {
  const c10::cuda::CUDAGuard guard(gram.device());
  int64_t B, T, N;
  similarities_prepare(gram, norms_in, products_in, B, T, N);
  if (gram.numel() == 0) return;
  const at::Tensor norms = norms_in.has_value() ? norms_in->contiguous() : at::Tensor();
  const at::Tensor& products = products_in.has_value() ? *products_in : gram;
  const ProductStrides ps{products.stride(0), products.stride(1), products.stride(2)};
  const int blocks = grid_for((T - 1) * B * N * 32, kSimilarityThreads);  // a warp per row
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gram.scalar_type(), "normalize_similarities_", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    normalize_similarities_kernel<scalar_t, acc_t><<<blocks, kSimilarityThreads, 0, stream>>>(
        products.const_data_ptr<scalar_t>(), ps, gram.data_ptr<scalar_t>(),
        norms.defined() ? norms.const_data_ptr<acc_t>() : nullptr, B, T, N);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace

#ifndef ATA_EXT_CUDA_EMULATOR
TORCH_LIBRARY_IMPL(ata_ext, CUDA, m) {
  m.impl("normalize_similarities_", &normalize_similarities_cuda);
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace ata_ext
