// CUDA implementation of ata_ext::compose_permutations: a thread per (clip, position) chain of
// common/gather.h's compose_chain. No check and no sync: an index out of range (a problem the
// solver left unassigned) makes the rest of its chain -1, and nothing is read out of bounds.
#ifndef ATA_EXT_CUDA_EMULATOR  // tests/emulator runs the device code below on the CPU
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "common/gather_common.h"
#endif

#include <cstdint>

#include "common/gather.h"

namespace ata_ext {
namespace {

constexpr int kComposeThreads = 256;

__global__ void compose_kernel(const int64_t* __restrict__ steps, int64_t* __restrict__ perm, int64_t B, int64_t T,
                               int64_t N) {
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < B * N; k += int64_t{gridDim.x} * blockDim.x) {
    compose_chain(steps, perm, k / N, k % N, B, T, N);
  }
}

#ifndef ATA_EXT_CUDA_EMULATOR
at::Tensor compose_permutations_cuda(const at::Tensor& steps_in) {
  const c10::cuda::CUDAGuard guard(steps_in.device());
  int64_t B, T, N;
  compose_prepare(steps_in, B, T, N);
  const at::Tensor steps = steps_in.contiguous();
  at::Tensor perm = at::empty({B, T, N}, steps.options());
  if (perm.numel() == 0) return perm;
  const int64_t blocks = std::min<int64_t>((B * N + kComposeThreads - 1) / kComposeThreads, 65535);
  compose_kernel<<<static_cast<unsigned>(blocks), kComposeThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      steps.const_data_ptr<int64_t>(), perm.data_ptr<int64_t>(), B, T, N);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return perm;
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace

#ifndef ATA_EXT_CUDA_EMULATOR
TORCH_LIBRARY_IMPL(ata_ext, CUDA, m) {
  m.impl("compose_permutations", &compose_permutations_cuda);
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace ata_ext
