// CUDA registration of ata_ext::frame_similarities (common/frame_similarities.h): its output from
// PyTorch's caching allocator. Every step is launched from C++ on the current stream: one call
// from Python instead of nine (T = 8), which counts where align's eager time is launch overhead.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/frame_similarities.h"

namespace ata_ext {
namespace {

at::Tensor frame_similarities_cuda(const at::Tensor& key) {
  const c10::cuda::CUDAGuard guard(key.device());
  return frame_similarities_impl(key, [&](at::IntArrayRef sizes, at::ScalarType dtype) {
    return at::empty(sizes, key.options().dtype(dtype));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CUDA, m) {
  m.impl("frame_similarities", &frame_similarities_cuda);
}

}  // namespace ata_ext
