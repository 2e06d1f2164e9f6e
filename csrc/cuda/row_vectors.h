// Vector access for the CUDA kernels that give each row a warp and read it in the widest aligned
// vectors (the gathers in align_gather_cuda.cu, the feature norms in frame_similarities_cuda.cu):
// the vector types, a warp's walk over a row, and on the host the width a row and its addresses
// allow, and the grid. Compiled for tests/emulator as well.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace ata_ext {
namespace {

template <int kBytes>
struct Vec;
template <> struct Vec<16> { using type = uint4; };
template <> struct Vec<8> { using type = uint2; };
template <> struct Vec<4> { using type = uint32_t; };
template <> struct Vec<2> { using type = uint16_t; };
template <> struct Vec<1> { using type = uint8_t; };

// Vectors a lane loads before it uses any (for_each_row_vector).
constexpr int kRowLoads = 4;

// Calls f(k, v) for vectors k = lane, lane + 32, ... of a read-only row of `vecs` vectors, v its
// value, with up to kRowLoads of a lane's loaded before f sees any: a loop that waited for each
// load in turn had too few bytes in flight to keep HBM busy (a row of 768 bfloat16 is 3 vectors of
// 16 bytes a lane; on an H200 the gather kernel ran at 82% of a 256 MiB copy_'s bandwidth that
// way, 93% so: bench_align.py --kernels).
template <typename V, typename F>
__device__ __forceinline__ void for_each_row_vector(const V* row, int64_t vecs, int lane, F&& f) {
  for (int64_t v0 = lane; v0 < vecs; v0 += 32 * kRowLoads) {
    V buf[kRowLoads];
#pragma unroll
    for (int u = 0; u < kRowLoads; ++u) {
      if (v0 + 32 * u < vecs) buf[u] = __ldg(row + v0 + 32 * u);
    }
#pragma unroll
    for (int u = 0; u < kRowLoads; ++u) {
      if (v0 + 32 * u < vecs) f(v0 + 32 * u, buf[u]);
    }
  }
}

// Blocks for `work` threads, at least one, at most 65535 (the kernels' loops stride past it).
inline int grid_for(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535));
}

// The widest access (bytes) that divides the row and the base addresses (and byte strides) OR-ed
// into `bases`: a power of two divides each of them exactly when it divides their OR.
inline int vector_bytes(int64_t row_bytes, uintptr_t bases) {
  int vec = 16;
  while (vec > 1 && (row_bytes % vec != 0 || bases % vec != 0)) vec /= 2;
  return vec;
}

// Calls f(std::integral_constant<int, vec>{}): one kernel instantiation per access width.
template <typename F>
void with_vector_bytes(int vec, F&& f) {
  switch (vec) {
    case 16: f(std::integral_constant<int, 16>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
  }
}

}  // namespace
}  // namespace ata_ext
