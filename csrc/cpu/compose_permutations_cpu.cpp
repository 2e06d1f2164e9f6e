// CPU implementation of ata_ext::compose_permutations: every (clip, position) chain of
// common/gather.h's compose_chain, in parallel, with indices out of range reported.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>

#include "common/gather.h"
#include "common/gather_common.h"

namespace ata_ext {
namespace {

at::Tensor compose_permutations_cpu(const at::Tensor& steps_in) {
  int64_t B, T, N;
  compose_prepare(steps_in, B, T, N);
  const at::Tensor steps = steps_in.contiguous();
  at::Tensor perm = at::empty({B, T, N}, steps.options());
  const int64_t* s = steps.const_data_ptr<int64_t>();
  int64_t* p = perm.data_ptr<int64_t>();
  std::atomic<bool> bad{false};
  at::parallel_for(0, B * N, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      if (!compose_chain(s, p, k / N, k % N, B, T, N)) bad = true;
    }
  });
  TORCH_CHECK_VALUE(!bad, "compose_permutations: steps holds an index outside 0..", N - 1,
                    " (a problem the solver left unassigned?)");
  return perm;
}

}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CPU, m) {
  m.impl("compose_permutations", &compose_permutations_cpu);
}

}  // namespace ata_ext
