"""The public batched assignment solver."""
import math
import numbers

import torch

from ._ops import ops

_ALGORITHMS = ("auto", "jv", "auction")
# The dtypes the kernels are built for (csrc/common/lsa_common.h checks the same list).
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
           torch.int32, torch.int64, torch.bool)
_DTYPE_NAMES = ", ".join(str(d).removeprefix("torch.") for d in _DTYPES)  # for error messages


def linear_sum_assignment(cost, maximize=False, *, cost_limit=None, algorithm="auto", check=True):
    """Solves a batch of dense linear assignment problems exactly.

    Args:
        cost: tensor of shape (..., N, M), any number of batch dims, any real dtype (float16,
            bfloat16, float32, float64, uint8, int8, int16, int32, int64 or bool), any strides, on the CPU or a CUDA device.
            +inf (when minimising) or -inf (when maximising) marks a forbidden pair.
        maximize: True to maximise the total instead of minimising it. maximize and check must be
            bools: any other value (a string "no", say) raises instead of counting by its truth.
        cost_limit: a finite number, or None (the default). If given, rows may stay unmatched
            (-1): the matched pairs are those that minimise the sum of (cost - cost_limit) over
            them (maximise it, when maximising), so each is below the limit (above it) and a pair
            at the limit is never matched; forbidden pairs cannot make a problem infeasible. That
            is lapx's cost_limit (every unmatched row and column costs cost_limit / 2). Solved as
            one extended problem (README, "Partial assignment").
        algorithm: "auto" (the default: Jonker-Volgenant on the CPU, the auction on CUDA),
            "jv" (CPU only) or "auction" (the CUDA kernel, or on the CPU its serial twin, which
            returns bit-identical assignments).
        check: validate the input and raise on bad problems (default). On CUDA validation costs
            one host sync; with check=False nothing syncs (CUDA-graph capturable) and a problem
            that is invalid or infeasible comes back with every row -1 instead of raising.

    Returns:
        int64 tensor of shape (..., N) on cost's device: entry i is the column assigned to row i.
        When N > M exactly M rows are assigned and the others hold -1; when M = 0 all hold -1.

    Raises:
        ValueError: rank < 2; "invalid numeric entries" for NaN or an infinity of the wrong sign;
            "infeasible" when forbidden pairs leave no complete assignment.
        TypeError: non-tensor input, a dtype not listed above (complex, float8, uint16-64), or
            maximize or check not a bool.

    Problems of different sizes (DETR: a different number of targets per image): see
    linear_sum_assignment_ragged, or pad each on its shorter side with a constant, which is exact
    (README, "Problems of different sizes"); solve such batches on the CPU.

    Optimality: the CPU solver works in float64 on the exact input values. For integer-valued
    costs (any dtype) with N * max|cost| < 2**53 the assignment is exactly optimal (the same
    objective as scipy.optimize.linear_sum_assignment). For other float costs its objective is
    within 1e-9 * N * max|cost| of scipy's. The auction (CUDA, and algorithm="auction" on the CPU)
    quantises each problem's finite costs to Q integer levels over their range R and solves that
    integer problem exactly (epsilon-scaling down to 1 on benefits scaled by n+1): its objective is
    within min(N, M) * R / Q of the optimum, Q = min(2**24, 2**40 // (n+1)) for n = max(N, M)
    (about 2**40 / (n+1)**2 when some pair is forbidden). Integer costs with R <= Q are not
    quantised, so they are solved exactly, as is any problem whose rows each have a unique best
    column, all distinct (then that is the answer, found before anything is quantised).
    ata_ext.testing.tolerance computes both bounds.
    The auction handles max(N, M) <= 65535 on the CPU; on CUDA up to what one block's shared
    memory holds (about 7,200 on an H100), and it pads rectangular problems to square.

    Speed: on CUDA the auction wins on large batches of small problems, above all video-like
    ones. Where many rows want the same few columns (DETR-style matching early in training) it
    slows down; its last bidders' path searches are modelled to have narrowed that gap, not yet
    measured on a GPU, so time the CPU solver (cost.cpu()) there too. The CPU solver was the
    faster choice for N >= 392 (docs/solvers.md, "Where the auction is slow").
    """
    # One test for the usual case, the detailed ones only when it fails: a call on a small problem
    # (a tracker's frame) is mostly this function's and the dispatcher's fixed cost.
    if not (isinstance(cost, torch.Tensor) and cost.dtype in _DTYPES and cost.layout == torch.strided
            and cost.dim() >= 2 and algorithm in _ALGORITHMS and (check is True or check is False)
            and (maximize is True or maximize is False)):
        _raise_bad_input(cost, algorithm, check, maximize)
    if algorithm == "jv" and not cost.is_cpu:
        raise ValueError("linear_sum_assignment: algorithm='jv' runs on the CPU only; move the tensor with .cpu()")
    if cost_limit is not None:
        limit = _check_limit(cost_limit, "linear_sum_assignment")
        if algorithm != "auction" and (cost.is_cpu or cost.is_meta):  # JV takes the limit natively
            return ops.linear_sum_assignment.default(cost, maximize, check, float(limit))
        if cost.shape[-1] and cost.shape[-2]:  # otherwise there is nothing to match: the plain answer
            return _solve_limited(cost, maximize, limit, algorithm, check)
    if algorithm == "auction":
        return ops.lsa_auction.default(cost, maximize, check)
    return ops.linear_sum_assignment.default(cost, maximize, check)


def _check_flag(value, name):
    """A keyword that must be a bool (check=): any other value, a string "no" say, is an error
    rather than read as its truth value."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def _raise_bad_input(cost, algorithm, check, maximize):
    """The error for linear_sum_assignment's arguments when its one-line test of them failed."""
    _check_flag(check, "linear_sum_assignment: check")
    _check_flag(maximize, "linear_sum_assignment: maximize")
    if not isinstance(cost, torch.Tensor):
        raise TypeError(
            f"linear_sum_assignment: cost must be a torch.Tensor, got {type(cost).__name__} "
            "(use ata_ext.compat.linear_sum_assignment for numpy arrays and lists)"
        )
    _check_dense(cost, "linear_sum_assignment: cost")
    if cost.dim() < 2:
        raise ValueError(
            f"linear_sum_assignment: cost must have at least 2 dimensions (..., N, M), got shape {tuple(cost.shape)}"
        )
    if cost.is_complex():
        raise TypeError(f"linear_sum_assignment: complex cost matrices are not supported (got {cost.dtype})")
    if cost.dtype not in _DTYPES:
        raise TypeError(f"linear_sum_assignment: cost dtype {cost.dtype} is not supported (supported: {_DTYPE_NAMES})")
    raise ValueError(f"linear_sum_assignment: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")


def _check_limit(limit, name):
    """cost_limit as a Python number (int kept exact for int64 costs), or a clear error."""
    if type(limit) is float and math.isfinite(limit):  # the usual case, before the general tests
        return limit
    if isinstance(limit, torch.Tensor) and limit.numel() == 1 and not limit.is_complex():
        limit = limit.item()
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real):
        raise TypeError(f"{name}: cost_limit must be a real number or None, got {type(limit).__name__}")
    if isinstance(limit, numbers.Integral) and -2**63 <= limit < 2**63:
        return int(limit)  # exact, for int64 costs
    limit = float(limit)
    if not math.isfinite(limit):
        raise ValueError(f"{name}: cost_limit must be finite (None for no limit), got {limit}")
    return limit


def _limit_dtype(dtype, limit):
    """The dtype of the extended problem: the cost's own where it holds the limit exactly (so
    integer costs stay integers, which both solvers solve exactly), float64 otherwise (which holds
    every cost of the float types and integers up to 2**53 exactly, as the CPU solver works)."""
    dtype = torch.uint8 if dtype == torch.bool else dtype
    info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
    if info.min <= limit <= info.max and torch.tensor(limit, dtype=dtype).item() == limit:
        return dtype
    return torch.float64


def _limit_extension(cost, limit):
    """(ext, flipped): one problem per problem of cost (..., N, M) that may leave lines unmatched.
    Its rows are cost's shorter side, s, and its columns the longer side, l, followed by s columns
    of the limit: a row either takes a real column or pays the limit, so the extended problem's
    objective is the sum of (cost - limit) over the real pairs plus a constant, s * limit. It is
    always feasible, and an optimum never needs a pair beyond the limit (a free limit column
    is as cheap). The shorter side as rows keeps the extension small: s x (l + s)."""
    flipped = cost.shape[-2] > cost.shape[-1]
    c = cost.mT if flipped else cost
    s, l = c.shape[-2:]
    ext = c.new_full((*c.shape[:-1], l + s), limit, dtype=_limit_dtype(cost.dtype, limit))
    ext[..., :l].copy_(c)
    return ext, flipped


def _solve_limited(cost, maximize, limit, algorithm, check):
    """linear_sum_assignment with a cost limit where the solver cannot take one (the auction):
    the extended problem (_limit_extension) solved, and its answer mapped back to cost's rows."""
    n, m = cost.shape[-2:]
    ext, flipped = _limit_extension(cost, limit)
    l = m if not flipped else n
    cols = linear_sum_assignment(ext, maximize, algorithm=algorithm, check=check)  # -1: a failed problem
    # A real pair exactly at the limit ties with a limit column: leave its row unmatched (as
    # optimal), so every matched pair beats the limit. (The auction, within its tolerance, could
    # even pick one beyond it: dropped the same way, which only lowers the total.)
    value = ext.gather(-1, cols.clamp(0, l - 1).unsqueeze(-1)).squeeze(-1)
    matched = (cols >= 0) & (cols < l) & ((value > limit) if maximize else (value < limit))
    if not flipped:
        return cols.masked_fill(~matched, -1)
    # cols[..., j] is column j's row: scatter j into its row; unmatched columns write to a spare
    # slot, n, cut off after.
    out = torch.full((*cost.shape[:-1],), -1, dtype=torch.long, device=cost.device)
    out = torch.cat([out, out[..., :1]], -1)
    j = torch.arange(m, device=cost.device).expand(cols.shape)
    return out.scatter_(-1, torch.where(matched, cols, n), j)[..., :n]


def linear_sum_assignment_ragged(costs, maximize=False, *, cost_limit=None, algorithm="auto", check=True):
    """Solves problems of different shapes (DETR: one Q x T_k cost per image) in one call, and
    answers per problem as scipy does.

    On the CPU (Jonker-Volgenant) each problem is solved at its own size, in parallel, by one op.
    The auction (CUDA, or algorithm="auction") solves batches of one shape, so problems that share
    their longer side L, and which side that is, form a group: one batched call, each problem
    padded on its shorter side to the group's widest with a constant. That is exact: a constant
    line costs the same whichever line takes it, and the longer side leaves enough lines for it
    (README, "Problems of different sizes"). DETR's costs, Q queries x T_k targets with T_k <= Q,
    make one group. Each problem's constant is a cost of its own (the smallest finite one of its
    first short line), so the padding keeps its range, which sets the auction's quantisation step:
    the tolerance of linear_sum_assignment applies to each problem as given.

    Args:
        costs: a sequence of 2-D tensors (N_k, M_k), all on one device, any dtype
            linear_sum_assignment takes (mixed dtypes are promoted); +inf (-inf when maximising)
            marks a forbidden pair.
        maximize, algorithm: as for linear_sum_assignment.
        cost_limit: as for linear_sum_assignment: only pairs below the limit (above it when
            maximising) are matched, as few as the optimum has. Their number depends on the data,
            so on CUDA finding it costs a host sync.
        check: raise on an invalid or infeasible problem, naming its index in costs (on CUDA a host
            sync). With check=False such a problem's pairs hold -1, and nothing syncs.

    Returns:
        A list with one (row_ind, col_ind) pair per problem, int64 tensors of length min(N_k, M_k)
        (fewer with cost_limit) on the problems' device, row_ind increasing, as
        scipy.optimize.linear_sum_assignment returns them.
    """
    if isinstance(costs, torch.Tensor) or not hasattr(costs, "__len__"):
        raise TypeError("linear_sum_assignment_ragged: costs must be a list or tuple of 2-D tensors, got "
                        f"{type(costs).__name__} (for one batch of equal shapes use linear_sum_assignment)")
    costs = list(costs)
    device = costs[0].device if costs and isinstance(costs[0], torch.Tensor) else None
    # One cheap test a problem; the detailed ones, which name the problem, only when it fails.
    if not all(isinstance(c, torch.Tensor) and c.dtype in _DTYPES and c.layout == torch.strided and c.dim() == 2
               and c.device == device for c in costs):
        _raise_bad_ragged(costs)
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"linear_sum_assignment_ragged: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    _check_flag(check, "linear_sum_assignment_ragged: check")
    _check_flag(maximize, "linear_sum_assignment_ragged: maximize")
    if algorithm == "jv" and costs and not costs[0].is_cpu:
        raise ValueError("linear_sum_assignment_ragged: algorithm='jv' runs on the CPU only; move the tensors with .cpu()")
    if not costs:
        return []
    limit = None if cost_limit is None else _check_limit(cost_limit, "linear_sum_assignment_ragged")
    if algorithm == "jv" or (algorithm == "auto" and (device.type == "cpu" or device.type == "meta")):
        # Jonker-Volgenant solves each problem at its own size, in parallel: no padding. (Meta
        # tensors go to the op's fake kernel: the shapes of the answer follow from the inputs'.)
        rows, cols = ops.linear_sum_assignment_ragged.default(costs, maximize, check,
                                                              None if limit is None else float(limit))
        return list(zip(rows, cols))
    if limit is not None:
        return _ragged_limited(costs, maximize, limit, algorithm, check)
    # The auction (CUDA, or its CPU twin) solves one padded batch per group, as its kernel needs.
    dtype = costs[0].dtype
    for c in costs[1:]:
        dtype = torch.promote_types(dtype, c.dtype)
    empty = torch.empty(0, dtype=torch.long, device=device)
    out = [(empty, empty)] * len(costs)
    groups = {}  # (longer side, whether the rows are the shorter side) -> indices into costs
    for k, c in enumerate(costs):
        n, m = c.shape
        if n and m:
            groups.setdefault((max(n, m), n < m), []).append(k)
    for (L, wide), ks in groups.items():
        # The group's problems in one (G, L, S) batch, or (G, S, L) where the rows are the shorter
        # side, each padded to S on that side with its constant (_pad_value): one pass writes the
        # constants, one copy a problem its costs.
        short = [min(costs[k].shape) for k in ks]
        G, S, d = len(ks), max(short), 0 if wide else 1  # d: the shorter side's dim in a problem
        shape = (G, S, L) if wide else (G, L, S)
        probs = [costs[k].detach().to(dtype) for k in ks]
        if min(short) < S:
            padded = _pad_value(torch.stack([c.select(d, 0) for c in probs]))[:, None, None].expand(shape).contiguous()
        else:
            padded = torch.empty(shape, dtype=dtype, device=device)
        for g, c in enumerate(probs):
            padded[g].narrow(d, 0, short[g]).copy_(c)
        cols = linear_sum_assignment(padded, maximize, algorithm=algorithm, check=False)  # -1: no column
        failed = (cols < 0).all(dim=1)  # a solved problem matches s_k >= 1 rows
        if check and bool(failed.any()):  # on CUDA this reads the flags back: the one sync
            k = ks[int(failed.nonzero()[0, 0])]
            _raise_failed(costs[k], k, maximize)
        counts = torch.as_tensor(short, device=device)
        if wide:  # every row of the problem is matched: rows 0..s_k-1, in order
            real = torch.arange(S, device=device) < counts[:, None]
        else:  # exactly s_k rows are matched to real columns (not padding)
            real = (cols >= 0) & (cols < counts[:, None])
        if not check:  # a failed problem answers s_k pairs of -1
            real |= failed[:, None] & (torch.arange(cols.shape[1], device=device) < counts[:, None])
        # The matched rows of every problem, in order: one nonzero (sized from shapes: no sync).
        at = real.view(-1).nonzero_static(size=sum(short)).view(-1)
        row_ind, col_ind = at % cols.shape[1], cols.view(-1)[at]
        if not check:
            lost = failed.repeat_interleave(counts, output_size=sum(short))
            row_ind, col_ind = row_ind.masked_fill(lost, -1), col_ind.masked_fill(lost, -1)
        for k, r, c in zip(ks, row_ind.split(short), col_ind.split(short)):
            out[k] = (r, c)
    return out


def _raise_bad_ragged(costs):
    """The error for linear_sum_assignment_ragged's costs when its one test of each failed, naming
    the first problem at fault."""
    for k, c in enumerate(costs):
        if not isinstance(c, torch.Tensor):
            raise TypeError(f"linear_sum_assignment_ragged: costs[{k}] must be a torch.Tensor, got {type(c).__name__}")
        _check_dense(c, f"linear_sum_assignment_ragged: costs[{k}]")
        if c.dim() != 2:
            raise ValueError(f"linear_sum_assignment_ragged: costs[{k}] must be 2-D (N, M), got shape {tuple(c.shape)}")
        if c.device != costs[0].device:
            raise ValueError(f"linear_sum_assignment_ragged: costs[{k}] is on {c.device}, costs[0] on {costs[0].device}")
        if c.is_complex() or c.dtype not in _DTYPES:
            raise TypeError(f"linear_sum_assignment_ragged: costs[{k}] has dtype {c.dtype}, which is not supported "
                            f"(supported: {_DTYPE_NAMES})")


def _ragged_limited(costs, maximize, limit, algorithm, check):
    """linear_sum_assignment_ragged with a cost limit, for the auction: every problem extended as
    linear_sum_assignment extends it (_limit_extension), solved in one call, and its pairs that
    take a real column and beat the limit kept. How many that is per problem is the one host sync."""
    exts = [_limit_extension(c.detach(), limit) for c in costs]
    pairs = linear_sum_assignment_ragged([e for e, _ in exts], maximize, algorithm=algorithm, check=check)
    keeps = []
    for (ext, _), (r, c) in zip(exts, pairs):
        if not len(c):
            keeps.append(c >= 0)
            continue
        l = ext.shape[1] - ext.shape[0]  # >= 1: the problem has a row
        value = ext[r.clamp(min=0), c.clamp(0, l - 1)]
        keep = (c < l) & ((value > limit) if maximize else (value < limit))
        keeps.append(keep | (c[0] < 0))  # a failed problem (check=False) keeps its -1 pairs, as without a limit
    counts = torch.stack([k.sum() for k in keeps]).tolist()
    out = []
    for (_, flipped), (r, c), keep, count in zip(exts, pairs, keeps, counts):
        at = keep.nonzero_static(size=count).view(-1)
        r, c = r[at], c[at]
        if flipped:  # the rows were the problem's columns: swap back and order by row
            order = c.argsort()
            r, c = c[order], r[order]
        out.append((r, c))
    return out


def _check_dense(t, name):
    """The kernels read strided memory: a sparse or otherwise non-strided tensor gets a clear error
    rather than the dispatcher's "could not run ... with arguments from the 'SparseCPU' backend"."""
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}; convert it with .to_dense()")


def _pad_value(first):
    """The constant each problem is padded with, (G,), from its first short line (G, L): that line's
    smallest finite cost (0 if it has none: the problem is then infeasible or invalid anyway). A
    cost of the problem keeps its range, which sets the auction's quantisation step, and its
    integrality."""
    if not first.is_floating_point():
        return first.amin(dim=1)
    big = torch.finfo(first.dtype).max
    low = torch.where(torch.isfinite(first), first, big).amin(dim=1)
    return torch.where(low == big, 0, low)


def _raise_failed(cost, k, maximize):
    """Raises for costs[k], a problem the solver failed, as the CPU op words it: invalid entries,
    else infeasible."""
    forbidden = float("-inf") if maximize else float("inf")
    if cost.is_floating_point() and bool((cost.isnan() | (cost == -forbidden)).any()):
        raise ValueError("linear_sum_assignment_ragged: matrix contains invalid numeric entries (NaN, or an infinity "
                         f"of the sign that cannot mark a forbidden pair) in costs[{k}]")
    raise ValueError(f"linear_sum_assignment_ragged: cost matrix is infeasible (costs[{k}] has no complete "
                     "assignment avoiding forbidden pairs)")
