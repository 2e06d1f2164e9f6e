// Every ata_ext operator schema, in one TORCH_LIBRARY block, and the Python module init.
// Backends (csrc/cpu/*_cpu.cpp, csrc/cuda/*_cuda.cu) only register implementations; the
// dispatcher routes by device. Fake (meta) kernels and autograd live in ata_ext/_ops.py.
#include <torch/library.h>

#include <string_view>

#include "cpu/host_cache.h"

#ifndef ATA_EXT_TORCH_VERSION
#define ATA_EXT_TORCH_VERSION "unknown"
#endif
#ifndef ATA_EXT_CUDA_VERSION
#define ATA_EXT_CUDA_VERSION "cpu"
#endif

TORCH_LIBRARY(ata_ext, m) {
  // Batched dense linear assignment. cost (..., N, M) -> (..., N) int64 column per row, -1 for
  // rows left unassigned when N > M. `check` turns on the input validation that raises on NaN,
  // wrong-sign infinities and infeasible problems (one host sync on CUDA). `cost_limit` (CPU
  // only; on CUDA ata_ext.linear_sum_assignment extends the problem itself): only pairs below
  // it (above, when maximising) are matched, those that save most against it.
  m.def("linear_sum_assignment(Tensor cost, bool maximize=False, bool check=True, float? cost_limit=None) -> Tensor");
  // The same for a list of 2-D problems of different shapes, each solved at its own size (CPU
  // only: ata_ext.linear_sum_assignment_ragged batches them padded for the auction): per problem
  // (rows, cols) int64 of its min(N, M) matched pairs (fewer with cost_limit), rows increasing,
  // as scipy returns them; a failed problem's min(N, M) pairs are -1 when check is off.
  m.def("linear_sum_assignment_ragged(Tensor[] costs, bool maximize=False, bool check=True, float? cost_limit=None) "
        "-> (Tensor[], Tensor[])");
  // The auction solver: the CUDA kernel, and on the CPU its serial twin with the same integer
  // arithmetic (bit-identical results). Same contract as linear_sum_assignment.
  m.def("lsa_auction(Tensor cost, bool maximize=False, bool check=True) -> Tensor");
  // What the auction's solve of each problem costs, counted by the CPU twin (CPU only: a testing
  // and tuning aid, ata_ext.testing.auction_rounds): (..., 2) int64, [rounds in which several rows
  // bid, steps of single-bid chains]. Raises on bad problems as lsa_auction with check=True.
  m.def("lsa_auction_rounds(Tensor cost, bool maximize=False) -> Tensor");
  // The alignment gathers. x (..., T, N, C), perm (..., T, N) of permutations; the aligned tensor
  // y is (..., T, N, C), or (..., N, T, C) with nt=True (the layout temporal attention reads):
  //   y[..., t, i, :] (or y[..., i, t, :]) = x[..., t, perm[..., t, i], :]
  // align_gather makes y from x, align_scatter x from y: each is the other's inverse and gradient.
  // `check` validates perm (one host sync on CUDA). Without it an index out of range still never
  // reads or writes outside the tensors: a ValueError on the CPU, a device-side assert on CUDA
  // (as PyTorch's own index ops); repeated indices leave output rows unwritten.
  m.def("align_gather(Tensor x, Tensor perm, bool nt=False, bool check=True) -> Tensor");
  m.def("align_scatter(Tensor y, Tensor perm, bool nt=False, bool check=True) -> Tensor");
  // Frame-pair Gram matrices to cosine similarities, in place (align's step after the matmuls):
  // gram (T-1, B, N, N), gram[t, b, i, j] = <k[b, t, i], k[b, t+1, j]>, norms (B, T, N) the
  // feature norms (float32; float64 for float64 gram), or None when gram already holds cosines.
  // Each entry is divided by both norms (each clamped to at least 1e-12, as normalize does); an
  // entry that is not finite becomes -2, below every cosine similarity (common/similarity.h).
  m.def("normalize_similarities_(Tensor(a!) gram, Tensor? norms) -> ()");
  // align's similarities: key (B, T, N, D) float16/bfloat16/float32/float64 -> (T-1, B, N, N) in
  // key's dtype, the cosine similarities of frame t's tokens (rows) with frame t+1's (columns),
  // -2 where that is not finite: the norms, one bmm per frame pair and normalize_similarities_.
  m.def("frame_similarities(Tensor key) -> Tensor");
  // The composition that turns frame-pair assignments into alignment permutations (align's last
  // step before the gather): steps (T-1, B, N), steps[t-1, b] frame t-1's column per row in frame
  // t; perm (B, T, N) with perm[b, 0, i] = i, perm[b, t, i] = steps[t-1, b, perm[b, t-1, i]].
  // Indices outside 0..N-1 raise on the CPU; on CUDA (no sync) they turn the rest of that chain -1.
  m.def("compose_permutations(Tensor steps) -> Tensor");
  // The host block cache that CPU gather outputs come from (csrc/cpu/host_cache_cpu.cpp):
  // {cached free bytes, limit in bytes}, and a call that frees the cached blocks.
  m.def("host_cache_info() -> int[]", &ata_ext::host_cache_info);
  m.def("empty_host_cache() -> ()", &ata_ext::empty_host_cache);
  // Reports what the binary was built against, so Python can refuse a stale build clearly.
  m.def("build_info() -> str[]", [] {
    return std::vector<std::string>{ATA_EXT_TORCH_VERSION, ATA_EXT_CUDA_VERSION};
  });
}

// A build without the CUDA kernels still answers a CUDA tensor
// with an error that says why and what to do, not the dispatcher's "could not run ... with
// arguments from the 'CUDA' backend". The names are the ops csrc/cuda/ registers.
namespace {
void no_cuda_kernels(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, op.schema().name(),
                              ": this build of ata_ext has no CUDA kernels (it was compiled without nvcc, or "
                              "with USE_CUDA=0). Reinstall it with the CUDA toolkit present (or FORCE_CUDA=1): "
                              "pip install --no-build-isolation . ; or move the tensors to the CPU.");
}
}  // namespace

TORCH_LIBRARY_IMPL(ata_ext, CUDA, m) {
  if (std::string_view(ATA_EXT_CUDA_VERSION) != "cpu") return;
  for (const char* name : {"linear_sum_assignment", "lsa_auction", "align_gather", "align_scatter",
                           "normalize_similarities_", "frame_similarities", "compose_permutations"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&no_cuda_kernels>());
  }
}

#ifdef ATA_EXT_PYTHON_MODULE
// Importing ata_ext._C runs the static registrations above; the module itself stays empty, so no
// translation unit needs pybind11 or torch/extension.h (they dominate compile time).
#include <Python.h>
PyMODINIT_FUNC PyInit__C(void) {  // PyMODINIT_FUNC includes extern "C" in C++
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&def);
}
#endif
