"""Loads the compiled operators and registers what Python adds to them: fake kernels (so
torch.compile can trace through every op) and autograd formulas."""
import contextlib

import torch

try:
    from . import _C  # noqa: F401  (importing it registers the torch.ops.ata_ext operators)
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "ata_ext's compiled extension ata_ext._C could not be loaded "
        f"({e}). Build it from source against the installed torch with "
        "`pip install --no-build-isolation .`; if it was built against another torch, rebuild."
    ) from e

_built_torch, _built_cuda = torch.ops.ata_ext.build_info()
if _built_torch.split("+")[0] != torch.__version__.split("+")[0]:  # pragma: no cover
    raise ImportError(
        f"ata_ext was built against torch {_built_torch} but torch {torch.__version__} is installed: "
        "rebuild with `pip install --no-build-isolation .`"
    )
if _built_cuda != "cpu" and torch.version.cuda is not None and _built_cuda != torch.version.cuda:  # pragma: no cover
    raise ImportError(
        f"ata_ext was built with CUDA {_built_cuda} but torch uses CUDA {torch.version.cuda}: rebuild it"
    )

#: True when the CUDA kernels were compiled into this build (a GPU may still be absent).
built_with_cuda = _built_cuda != "cpu"

ops = torch.ops.ata_ext


@torch.library.register_fake("ata_ext::linear_sum_assignment")
def _lsa_fake(cost, maximize=False, check=True):
    return cost.new_empty(cost.shape[:-1], dtype=torch.long)


@torch.library.register_fake("ata_ext::linear_sum_assignment_ragged")
def _lsa_ragged_fake(costs, maximize=False, check=True):
    for k, c in enumerate(costs):
        torch._check(c.dim() == 2, lambda: f"linear_sum_assignment_ragged: costs[{k}] must be 2-D (N, M)")
    pairs = [c.new_empty(min(c.shape), dtype=torch.long) for c in costs]
    return pairs, [p.new_empty(p.shape) for p in pairs]


@torch.library.register_fake("ata_ext::lsa_auction")
def _lsa_auction_fake(cost, maximize=False, check=True):
    return cost.new_empty(cost.shape[:-1], dtype=torch.long)


@torch.library.register_fake("ata_ext::lsa_auction_rounds")
def _lsa_auction_rounds_fake(cost, maximize=False):
    return cost.new_empty((*cost.shape[:-2], 2), dtype=torch.long)


def _check_same_device(op, a_name, a, b_name, b):
    # The real kernels check this too (a ValueError); the fake ones must, or a meta tensor mixed
    # with a real one (the Meta kernel wins the dispatch) gives an uninitialised real tensor.
    torch._check_value(a.device == b.device, lambda: f"{op}: {b_name} is on {b.device} but {a_name} is on {a.device}")


@torch.library.register_fake("ata_ext::normalize_similarities_")
def _normalize_similarities_fake(gram, norms):
    torch._check(gram.dim() == 4, lambda: "normalize_similarities_: gram must have shape (T-1, B, N, N)")
    if norms is not None:
        _check_same_device("normalize_similarities_", "gram", gram, "norms", norms)
    return None


@torch.library.register_fake("ata_ext::frame_similarities")
def _frame_similarities_fake(key):
    torch._check(key.dim() == 4 and key.shape[1] >= 1, lambda: "frame_similarities: key must have shape (B, T, N, D)")
    B, T, N, _ = key.shape
    return key.new_empty((T - 1, B, N, N))


@torch.library.register_fake("ata_ext::compose_permutations")
def _compose_permutations_fake(steps):
    torch._check(steps.dim() == 3, lambda: "compose_permutations: steps must have shape (T-1, B, N)")
    torch._check(steps.dtype == torch.long, lambda: "compose_permutations: steps must be int64")
    T1, B, N = steps.shape
    return steps.new_empty((B, T1 + 1, N))


def _aligned_shape(src, nt):
    """A gather into, or a scatter out of, the nt layout swaps the (T, N) dims."""
    shape = list(src.shape)
    if nt:
        shape[-3], shape[-2] = shape[-2], shape[-3]
    return shape


@torch.library.register_fake("ata_ext::align_gather")
def _align_gather_fake(x, perm, nt=False, check=True):
    torch._check(x.dim() >= 3, lambda: "align_gather: expected features of shape (..., T, N, C)")
    torch._check(perm.shape == x.shape[:-1], lambda: "align_gather: perm must have the features' (..., T, N) shape")
    _check_same_device("align_gather", "the features", x, "perm", perm)
    return x.new_empty(_aligned_shape(x, nt))


@torch.library.register_fake("ata_ext::align_scatter")
def _align_scatter_fake(y, perm, nt=False, check=True):
    torch._check(y.dim() >= 3, lambda: "align_scatter: expected features of shape (..., T, N, C)")
    _check_same_device("align_scatter", "the features", y, "perm", perm)
    return y.new_empty(_aligned_shape(y, nt))


# Whether a profiler is running (torch's own rpc and datapipes ask the same); a private function,
# so without it every label is entered, as before.
_profiler_enabled = getattr(torch.autograd, "_profiler_enabled", lambda: True)


def profile_label(name):
    """A profiler label around eager code (torch.profiler.record_function) while a profiler runs.
    Otherwise nothing: entering and leaving a label costs about 10-25 us of host time even with
    no profiler to see it, which for align on a small input was a quarter of the call, and on
    CUDA is time the GPU may wait on. Nothing inside torch.compile either, which would drop it
    with a warning on every compile."""
    if torch.compiler.is_compiling() or not _profiler_enabled():
        return contextlib.nullcontext()
    return torch.profiler.record_function(name)


def _setup_perm_context(ctx, inputs, output):
    _, perm, nt, _ = inputs
    ctx.save_for_backward(perm)
    ctx.nt = nt


def _align_gather_backward(ctx, grad):
    # The gradient of a permutation gather is the inverse permutation: the scatter. perm was
    # validated (or produced) by the forward, so the backward skips the check and its sync.
    (perm,) = ctx.saved_tensors
    with profile_label("ata_ext::gather_backward"):
        return ops.align_scatter(grad.contiguous(), perm, ctx.nt, False), None, None, None


def _align_scatter_backward(ctx, grad):
    (perm,) = ctx.saved_tensors
    with profile_label("ata_ext::gather_backward"):
        return ops.align_gather(grad.contiguous(), perm, ctx.nt, False), None, None, None


torch.library.register_autograd("ata_ext::align_gather", _align_gather_backward, setup_context=_setup_perm_context)
torch.library.register_autograd("ata_ext::align_scatter", _align_scatter_backward, setup_context=_setup_perm_context)
