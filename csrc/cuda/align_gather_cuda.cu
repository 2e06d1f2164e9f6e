// CUDA implementation of ata_ext::align_gather and ata_ext::align_scatter: one grid-stride kernel
// that moves rows in the widest aligned vector (16 bytes for any dtype when rows allow), dtype-
// agnostic, plus an optional permutation check (one flag read back: the documented sync).
#ifndef ATA_EXT_CUDA_EMULATOR  // tests/emulator runs the device code below on the CPU
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/gather_common.h"
#endif

#include <cstdint>

#include "common/gather.h"
#include "cuda/row_vectors.h"

namespace ata_ext {
namespace {

constexpr int kThreads = 256;

// A warp per row: the row's index math (64-bit divisions) and its perm entry are done once, and
// the lanes copy consecutive vectors of it, so reads and writes are coalesced whatever the
// permutation.
template <int kBytes>
__global__ void copy_rows_kernel(const char* __restrict__ src, char* __restrict__ dst, const int64_t* __restrict__ perm,
                                 int64_t rows, int64_t vecs_per_row, int64_t T, int64_t N, bool nt, bool scatter) {
  using V = typename Vec<kBytes>::type;
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t{gridDim.x} * (blockDim.x / 32);
  for (int64_t k = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32; k < rows; k += warps) {
    const int64_t p = __ldg(perm + k);
    // Even with check=False (no validation pass, no sync), an index out of range must not move
    // bytes from or to outside the tensors: a device-side assert, as PyTorch's index ops raise.
    CUDA_KERNEL_ASSERT(p >= 0 && p < N);
    const RowPair r = align_rows(k, p, T, N, nt);
    const V* from = reinterpret_cast<const V*>(src) + (scatter ? r.y_row : r.x_row) * vecs_per_row;
    V* to = reinterpret_cast<V*>(dst) + (scatter ? r.x_row : r.y_row) * vecs_per_row;
    for_each_row_vector(from, vecs_per_row, lane, [to](int64_t v, V value) { to[v] = value; });
  }
}

// Flags (b, t) rows of perm that are not permutations: seen counts each index; a second visit or
// an index out of range sets *bad.
__global__ void check_perm_kernel(const int64_t* __restrict__ perm, int64_t total, int64_t N, int32_t* seen, int32_t* bad) {
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < total; k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = perm[k];
    if (p < 0 || p >= N || atomicAdd(seen + (k / N) * N + p, 1) != 0) atomicExch(bad, 1);
  }
}

#ifndef ATA_EXT_CUDA_EMULATOR
at::Tensor copy_rows_cuda(const at::Tensor& src_in, const at::Tensor& perm_in, bool nt, bool scatter, bool check,
                          const char* op) {
  const c10::cuda::CUDAGuard guard(src_in.device());
  int64_t B, T, N;
  at::Tensor out = at::empty(gather_prepare(src_in, perm_in, nt, scatter, op, B, T, N), src_in.options());
  if (perm_in.numel() == 0) return out;
  const at::Tensor src = src_in.contiguous();
  const at::Tensor perm = perm_in.contiguous();
  const int64_t rows = B * T * N;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (check) {
    at::Tensor seen = at::zeros({rows}, perm.options().dtype(at::kInt));
    at::Tensor bad = at::zeros({1}, perm.options().dtype(at::kInt));
    check_perm_kernel<<<grid_for(rows, kThreads), kThreads, 0, stream>>>(
        perm.const_data_ptr<int64_t>(), rows, N, seen.data_ptr<int32_t>(), bad.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    TORCH_CHECK_VALUE(bad.item<int32_t>() == 0, op, ": perm is not a permutation of 0..", N - 1,
                      " in every (..., t) row: indices out of range or repeated");
  }
  if (out.numel() == 0) return out;  // C = 0: perm was checked, nothing to copy
  const int64_t row_bytes = src.size(-1) * src.element_size();
  const int vec = vector_bytes(row_bytes, reinterpret_cast<uintptr_t>(src.const_data_ptr()) |
                                              reinterpret_cast<uintptr_t>(out.data_ptr()));
  const int64_t vecs = row_bytes / vec;
  const char* from = static_cast<const char*>(src.const_data_ptr());
  char* to = static_cast<char*>(out.data_ptr());
  const int grid = grid_for(rows * 32, kThreads);  // a warp per row
  const int64_t* p = perm.const_data_ptr<int64_t>();
  with_vector_bytes(vec, [&](auto width) {
    copy_rows_kernel<decltype(width)::value><<<grid, kThreads, 0, stream>>>(from, to, p, rows, vecs, T, N, nt, scatter);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor align_gather_cuda(const at::Tensor& x, const at::Tensor& perm, bool nt, bool check) {
  return copy_rows_cuda(x, perm, nt, /*scatter=*/false, check, "align_gather");
}

at::Tensor align_scatter_cuda(const at::Tensor& y, const at::Tensor& perm, bool nt, bool check) {
  return copy_rows_cuda(y, perm, nt, /*scatter=*/true, check, kScatterOpName);
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace

#ifndef ATA_EXT_CUDA_EMULATOR
TORCH_LIBRARY_IMPL(ata_ext, CUDA, m) {
  m.impl("align_gather", &align_gather_cuda);
  m.impl("align_scatter", &align_scatter_cuda);
}
#endif  // ATA_EXT_CUDA_EMULATOR

}  // namespace ata_ext
