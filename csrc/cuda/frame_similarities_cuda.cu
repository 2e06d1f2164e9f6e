// CUDA registration of ata_ext::frame_similarities (common/frame_similarities.h): its output from
// PyTorch's caching allocator, and the feature norms from this file's kernel. Every step is
// launched from C++ on the current stream: one call from Python instead of nine (T = 8), which
// counts where align's eager time is launch overhead.
#ifndef ATA_EXT_CUDA_EMULATOR  // tests/emulator runs the device code below on the CPU
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/frame_similarities.h"
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/row_vectors.h"

namespace ata_ext {
namespace {

constexpr int kNormThreads = 256;

// The byte strides of key (B, T, N, D) along B, T and N; its rows (D) are contiguous.
struct KeyStrides {
  int64_t b, t, n;
};

// The Euclidean norm of each (b, t, i) row of key in acc_t, norms[(b * T + t) * N + i]: a warp a
// row, each lane summing the squares of its vectors (for_each_row_vector), then the warp the
// lanes' sums. PyTorch's reduction (at::linalg_vector_norm, which the CPU uses) ran at half the
// copy bandwidth on align's features: 37 of align's 219 us of kernels, 2.1 TB/s, for (32, 8, 196,
// 768) bfloat16 on an H200.
template <typename scalar_t, typename acc_t, int kBytes>
__global__ void feature_norms_kernel(const char* __restrict__ key, KeyStrides s, acc_t* __restrict__ norms,
                                     int64_t rows, int64_t T, int64_t N, int64_t vecs_per_row) {
  using V = typename Vec<kBytes>::type;
  constexpr int kPerVec = kBytes / sizeof(scalar_t);
  static_assert(kPerVec >= 1, "a vector holds whole entries");
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t{gridDim.x} * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32; r < rows; r += warps) {
    const int64_t i = r % N, bt = r / N;
    const V* row = reinterpret_cast<const V*>(key + (bt / T) * s.b + (bt % T) * s.t + i * s.n);
    acc_t sum = 0;
    for_each_row_vector(row, vecs_per_row, lane, [&](int64_t, const V& v) {
      scalar_t e[kPerVec];
      std::memcpy(e, &v, kBytes);  // the vector's entries (registers, not memory)
#pragma unroll
      for (int k = 0; k < kPerVec; ++k) {
        const acc_t a = static_cast<acc_t>(e[k]);
        sum += a * a;
      }
    });
    for (int mask = 16; mask > 0; mask >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, mask);
    if (lane == 0) norms[r] = std::sqrt(sum);
  }
}

// Calls f(std::integral_constant<int, vec>{}) for an access width of whole scalar_t entries (a
// row's bytes and its addresses are multiples of the entry's size, so vector_bytes never gives
// less).
template <typename scalar_t, typename F>
void with_entry_vector_bytes(int vec, F&& f) {
  with_vector_bytes(vec, [&](auto width) {
    if constexpr (decltype(width)::value >= sizeof(scalar_t)) f(width);
  });
}

#ifndef ATA_EXT_CUDA_EMULATOR
// key (B, T, N, D), rows contiguous (else copied) -> norms (B, T, N) in acc.
at::Tensor feature_norms_cuda(const at::Tensor& key_in, at::ScalarType acc) {
  const at::Tensor key = key_in.stride(3) == 1 || key_in.size(3) <= 1 ? key_in : key_in.contiguous();
  const int64_t B = key.size(0), T = key.size(1), N = key.size(2), D = key.size(3);
  at::Tensor norms = at::empty({B, T, N}, key.options().dtype(acc));
  const int64_t rows = norms.numel();
  if (rows == 0) return norms;
  const int64_t e = key.element_size();
  const KeyStrides s{key.stride(0) * e, key.stride(1) * e, key.stride(2) * e};
  const int vec = vector_bytes(D * e, reinterpret_cast<uintptr_t>(key.const_data_ptr()) |
                                          static_cast<uintptr_t>(s.b | s.t | s.n));
  const int grid = grid_for(rows * 32, kNormThreads);  // a warp per row
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, key.scalar_type(), "feature_norms", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    TORCH_INTERNAL_ASSERT(acc == c10::CppTypeToScalarType<acc_t>::value);
    with_entry_vector_bytes<scalar_t>(vec, [&](auto width) {
      feature_norms_kernel<scalar_t, acc_t, decltype(width)::value><<<grid, kNormThreads, 0, stream>>>(
          static_cast<const char*>(key.const_data_ptr()), s, norms.data_ptr<acc_t>(), rows, T, N, D * e / vec);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return norms;
}

at::Tensor frame_similarities_cuda(const at::Tensor& key) {
  const c10::cuda::CUDAGuard guard(key.device());
  return frame_similarities_impl(
      key, [&](at::IntArrayRef sizes, at::ScalarType dtype) { return at::empty(sizes, key.options().dtype(dtype)); },
      feature_norms_cuda);
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace

#ifndef ATA_EXT_CUDA_EMULATOR
TORCH_LIBRARY_IMPL(ata_ext, CUDA, m) {
  m.impl("frame_similarities", &frame_similarities_cuda);
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace ata_ext
