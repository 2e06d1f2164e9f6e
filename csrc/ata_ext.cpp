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
  // products, if given, are the Gram matrices in a strided (T-1, B, N, N) layout with contiguous
  // rows, read instead of gram's own entries (one pass instead of a copy into gram and another
  // over it).
  m.def("normalize_similarities_(Tensor(a!) gram, Tensor? norms, Tensor? products=None) -> ()");
  // align's similarities: key (B, T, N, D) float16/bfloat16/float32/float64 -> (T-1, B, N, N) in
  // key's dtype, the cosine similarities of frame t's tokens (rows) with frame t+1's (columns),
  // -2 where that is not finite: the norms, the products (one bmm per frame pair on the CPU, one
  // over all frames on CUDA: common/frame_similarities.h) and normalize_similarities_.
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
// Importing ata_ext._C runs the static registrations above. The module's one function is the
// drop-ins' way into the CPU solver (cpu/lsa_dense.h), written against the C API and the buffer
// protocol, so no translation unit needs pybind11, numpy's headers or torch/extension.h (they
// dominate compile time).
#include <Python.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <optional>
#include <string>

#include "common/status.h"
#include "cpu/lsa_dense.h"

namespace {

// Fills view with obj's buffer if it is C-contiguous, ndim-dimensional and of 8-byte items whose
// format is one of `formats` (numpy's native float64 is "d", int64 "l" or "q"); else raises.
bool get_buffer(PyObject* obj, Py_buffer* view, int ndim, const char* formats, bool writable, const char* name) {
  const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj, view, flags) != 0) return false;
  const char* f = view->format != nullptr ? view->format : "B";
  if (*f == '@' || *f == '=' || *f == '<') ++f;  // native order (these builds are little-endian)
  if (view->ndim != ndim || view->itemsize != 8 || f[0] == '\0' || f[1] != '\0' || !std::strchr(formats, f[0])) {
    PyErr_Format(PyExc_TypeError, "lsa_pairs: %s must be a C-contiguous %d-D array of 8-byte '%s' items", name, ndim,
                 formats);
    PyBuffer_Release(view);
    return false;
  }
  return true;
}

// lsa_pairs(cost, rows, cols, maximize, cost_limit) -> int: cost a C-contiguous float64 matrix,
// rows and cols writable int64 arrays of at least min(N, M) entries, cost_limit a float or None.
// Returns lsa_dense_pairs' answer (the number of pairs written, or minus the failed status).
PyObject* lsa_pairs(PyObject*, PyObject* args) {
  PyObject *cost_obj, *rows_obj, *cols_obj, *limit_obj;
  int maximize;
  if (!PyArg_ParseTuple(args, "OOOpO:lsa_pairs", &cost_obj, &rows_obj, &cols_obj, &maximize, &limit_obj)) {
    return nullptr;
  }
  std::optional<double> limit;
  if (limit_obj != Py_None) {
    limit = PyFloat_AsDouble(limit_obj);
    if (*limit == -1.0 && PyErr_Occurred()) return nullptr;
    if (!std::isfinite(*limit)) {
      PyErr_SetString(PyExc_ValueError, "lsa_pairs: cost_limit must be finite (None for no limit)");
      return nullptr;
    }
  }
  Py_buffer cost, rows, cols;
  if (!get_buffer(cost_obj, &cost, 2, "d", false, "cost")) return nullptr;
  if (!get_buffer(rows_obj, &rows, 1, "lq", true, "rows")) {
    PyBuffer_Release(&cost);
    return nullptr;
  }
  if (!get_buffer(cols_obj, &cols, 1, "lq", true, "cols")) {
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cost);
    return nullptr;
  }
  const int64_t n = cost.shape[0], m = cost.shape[1];
  int64_t result = 0;
  bool no_memory = false;
  std::optional<std::string> error;  // any other C++ exception's message: none may cross into Python
  if (rows.shape[0] < std::min(n, m) || cols.shape[0] < std::min(n, m)) {
    PyErr_SetString(PyExc_ValueError, "lsa_pairs: rows and cols need min(N, M) entries");
  } else if (n > 0 && m > 0) {
    Py_BEGIN_ALLOW_THREADS  // a large problem takes milliseconds; other Python threads run meanwhile
    try {
      result = ata_ext::lsa_dense_pairs(static_cast<const double*>(cost.buf), n, m, maximize != 0, limit,
                                        static_cast<int64_t*>(rows.buf), static_cast<int64_t*>(cols.buf));
    } catch (const std::bad_alloc&) {  // the solver's scratch vectors
      no_memory = true;
    } catch (const std::exception& e) {
      error = e.what();
    }
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&cols);
  PyBuffer_Release(&rows);
  PyBuffer_Release(&cost);
  if (no_memory) return PyErr_NoMemory();
  if (error) {
    PyErr_SetString(PyExc_RuntimeError, error->c_str());
    return nullptr;
  }
  return PyErr_Occurred() ? nullptr : PyLong_FromLongLong(result);
}

PyMethodDef methods[] = {
    {"lsa_pairs", lsa_pairs, METH_VARARGS, "The CPU solver on one float64 matrix, for ata_ext.compat."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) {  // PyMODINIT_FUNC includes extern "C" in C++
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  PyObject* module = PyModule_Create(&def);
  // The failure statuses lsa_pairs returns negated, for the drop-ins to name (common/status.h).
  if (module != nullptr && (PyModule_AddIntConstant(module, "STATUS_INVALID", ata_ext::kInvalid) != 0 ||
                            PyModule_AddIntConstant(module, "STATUS_INFEASIBLE", ata_ext::kInfeasible) != 0)) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
#endif
