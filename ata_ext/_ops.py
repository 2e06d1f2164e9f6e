"""Loads the compiled operators and registers what Python adds to them: fake kernels (so
torch.compile can trace through every op), autograd formulas (with the autograd.Function that
align and dealign use under forward-mode AD and torch.func) and vmap rules."""
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
def _lsa_fake(cost, maximize=False, check=True, cost_limit=None):
    return cost.new_empty(cost.shape[:-1], dtype=torch.long)


@torch.library.register_fake("ata_ext::linear_sum_assignment_ragged")
def _lsa_ragged_fake(costs, maximize=False, check=True, cost_limit=None):
    for k, c in enumerate(costs):
        torch._check(c.dim() == 2, lambda: f"linear_sum_assignment_ragged: costs[{k}] must be 2-D (N, M)")
    if cost_limit is None:
        pairs = [c.new_empty(min(c.shape), dtype=torch.long) for c in costs]
    else:  # as many pairs as beat the limit (at most min(N, M)): known only from the data
        ctx = torch.library.get_ctx()
        pairs = [c.new_empty(ctx.new_dynamic_size(), dtype=torch.long) for c in costs]
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
def _normalize_similarities_fake(gram, norms, products=None):
    torch._check(gram.dim() == 4, lambda: "normalize_similarities_: gram must have shape (T-1, B, N, N)")
    if norms is not None:
        _check_same_device("normalize_similarities_", "gram", gram, "norms", norms)
    if products is not None:
        _check_same_device("normalize_similarities_", "gram", gram, "products", products)
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
    # Named as the kernels name it (csrc/common/gather_common.h, kScatterOpName).
    torch._check(y.dim() >= 3, lambda: "dealign: expected features of shape (..., T, N, C)")
    _check_same_device("dealign", "the features", y, "perm", perm)
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


# Autodiff beyond reverse mode. The formulas above reach loss.backward() and torch.autograd.grad
# (eager and torch.compile), but not forward-mode AD: register_autograd has no tangent rule, so
# a dual tensor passed through the op silently lost its tangent (torch.func.jvp returned zeros),
# and the torch.func transforms grad, vjp and jacrev raised PyTorch's "must override the
# setup_context staticmethod" (pytorch/pytorch#170834) from the function register_autograd
# generates. So while one of those is active, align and dealign go through _PermuteTokens, the
# same gathers as an autograd.Function with a tangent rule (a permutation is linear: the tangent
# is permuted like the values) that the torch.func transforms accept. Otherwise, the usual case,
# they call the ops directly, which costs no autograd.Function's host time.
_fwad = torch.autograd.forward_ad
# Private state, read defensively: where a torch lacks it, the transform path (correct either
# way, only slower) is always taken.
_interpreter_stack = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: True)


def _forward_ad_active():
    return getattr(_fwad, "_current_level", 0) >= 0


def autodiff_transform_active():
    """Whether forward-mode AD (a dual level) or a torch.func transform (grad, vjp, jvp, vmap, ...)
    is active. Inside torch.compile only forward AD counts: Dynamo traces the transforms itself
    (the interpreter stack is not empty there even without one), and takes the ops as they are."""
    if _forward_ad_active():
        return True
    return not torch.compiler.is_compiling() and _interpreter_stack() is not None


class _PermuteTokens(torch.autograd.Function):
    """align_gather (inverse=False) or align_scatter (inverse=True); each is the other's backward."""

    generate_vmap_rule = True  # runs forward under vmap, where the ops' own vmap rules apply

    @staticmethod
    def forward(x, perm, nt, inverse, check):
        return (ops.align_scatter if inverse else ops.align_gather)(x, perm, nt, check)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, perm, nt, inverse, _ = inputs
        ctx.save_for_backward(perm)
        ctx.save_for_forward(perm)
        ctx.nt, ctx.inverse = nt, inverse

    @staticmethod
    def backward(ctx, grad):
        (perm,) = ctx.saved_tensors
        # perm was validated (or produced) by the forward: no check. Through apply again, so that
        # the gradient is itself differentiable under the same transforms (jacrev of grad, say).
        return _PermuteTokens.apply(grad.contiguous(), perm, ctx.nt, not ctx.inverse, False), None, None, None, None

    @staticmethod
    def jvp(ctx, tangent, *_):
        (perm,) = ctx.saved_tensors
        return _PermuteTokens.apply(tangent.contiguous(), perm, ctx.nt, ctx.inverse, False)


def permute_tokens(x, perm, nt, inverse, check):
    """ops.align_gather(x, perm, nt, check), or align_scatter with inverse=True, differentiable in
    every autodiff mode (see _PermuteTokens)."""
    if not autodiff_transform_active():
        return (ops.align_scatter if inverse else ops.align_gather)(x, perm, nt, check)
    if torch.compiler.is_compiling():  # (forward AD: see autodiff_transform_active)
        # Dynamo inlines an autograd.Function's forward and drops its jvp (pytorch/pytorch#192985):
        # torch.func.jvp in a compiled function got a zero tangent. Leave the graph, so that the
        # gather runs eagerly, with its tangent (under fullgraph=True this raises instead).
        torch._dynamo.graph_break()
    return _PermuteTokens.apply(x, perm, nt, inverse, check)


# vmap rules. Every op takes any number of leading batch dims, so a vmapped dim moves to the front
# and the op runs once on the whole batch; without a rule PyTorch falls back to a loop of one call
# per sample, with a performance warning for each op.
def _to_front(t, dim, size):
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def _lsa_vmap(op):
    def rule(info, in_dims, cost, *flags):
        return op(_to_front(cost, in_dims[0], info.batch_size), *flags), 0

    return rule


torch.library.register_vmap("ata_ext::linear_sum_assignment", _lsa_vmap(ops.linear_sum_assignment))
torch.library.register_vmap("ata_ext::lsa_auction", _lsa_vmap(ops.lsa_auction))
torch.library.register_vmap("ata_ext::lsa_auction_rounds", _lsa_vmap(ops.lsa_auction_rounds))


def _gather_vmap(op):
    def rule(info, in_dims, x, perm, nt=False, check=True):
        size = info.batch_size
        return op(_to_front(x, in_dims[0], size), _to_front(perm, in_dims[1], size), nt, check), 0

    return rule


torch.library.register_vmap("ata_ext::align_gather", _gather_vmap(ops.align_gather))
torch.library.register_vmap("ata_ext::align_scatter", _gather_vmap(ops.align_scatter))


@torch.library.register_vmap("ata_ext::frame_similarities")
def _frame_similarities_vmap(info, in_dims, key):
    # (V, B, T, N, D) -> one call on V * B clips -> (T-1, V * B, N, N) -> (T-1, V, B, N, N)
    k = key.movedim(in_dims[0], 0)
    return ops.frame_similarities(k.flatten(0, 1)).unflatten(1, k.shape[:2]), 1


@torch.library.register_vmap("ata_ext::compose_permutations")
def _compose_permutations_vmap(info, in_dims, steps):
    # (T-1, V, B, N) -> one call on V * B clips -> (V * B, T, N) -> (V, B, T, N)
    s = steps.movedim(in_dims[0], 1)
    return ops.compose_permutations(s.flatten(1, 2)).unflatten(0, s.shape[1:3]), 0
