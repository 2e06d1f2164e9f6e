// CPU registration of ata_ext::frame_similarities (common/frame_similarities.h). The output comes
// from the host block cache (cpu/host_cache_cpu.cpp), as the gathers' do, so a training loop
// reuses one block instead of faulting in a fresh one each step (17 MB for (16, 8, 196, 768)
// features; in an A/B on the 2-core machine the difference was within its noise).
#include <ATen/ops/linalg_vector_norm.h>
#include <torch/library.h>

#include "common/frame_similarities.h"
#include "cpu/host_cache.h"

namespace ata_ext {
namespace {

at::Tensor frame_similarities_cpu(const at::Tensor& key) {
  return frame_similarities_impl(
      key, [](at::IntArrayRef sizes, at::ScalarType dtype) { return empty_cached_cpu(sizes, dtype); },
      [](const at::Tensor& k, at::ScalarType acc) { return at::linalg_vector_norm(k, 2, {-1}, false, acc); });
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("frame_similarities", &frame_similarities_cpu);
}

}  // namespace ata_ext
