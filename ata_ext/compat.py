"""Drop-ins backed by ata_ext's CPU solver, for code written against other libraries:
`linear_sum_assignment` for scipy.optimize's (same arguments, return types, error types and
messages), `lapjv` for lapx's `lap.lapjv` (what multi-object trackers call once per frame)."""
import math

import numpy as np
import torch

from . import _C


def _as_matrix(cost_matrix, shape_message):
    """cost_matrix as a C-contiguous float64 numpy matrix, converted as scipy (1.17) converts:
    an array is cast with the 'safe' rule (a TypeError for complex, object and string arrays),
    anything else goes through float() entry by entry (so a list of numeric strings works, and
    "abc" is a ValueError). Then the shape is checked: shape_message(ndim) for anything not 2-D."""
    if isinstance(cost_matrix, torch.Tensor):
        cost_matrix = cost_matrix.numpy(force=True)  # detached, on the CPU, conjugate and negation resolved
    if isinstance(cost_matrix, np.ndarray):
        a = cost_matrix.astype(np.float64, casting="safe", copy=False)
    else:
        a = np.asarray(cost_matrix, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(shape_message(a.ndim))
    return np.ascontiguousarray(a)


def _solve(a, maximize, cost_limit=None):
    """The matched pairs (rows increasing) of a C-contiguous float64 matrix, with scipy's messages.

    The CPU solver is called straight on the array's memory (_C.lsa_pairs, csrc/cpu/lsa_dense.h),
    not through the operator: callers of these drop-ins solve one small problem a call, and the
    op's tensors and dispatcher cost several microseconds, more than a 5 x 5 or 100 x 5 solve."""
    k = min(a.shape)
    rows = np.empty(k, dtype=np.int64)
    cols = np.empty(k, dtype=np.int64)
    t = _C.lsa_pairs(a, rows, cols, maximize, cost_limit)
    if t == -_C.STATUS_INVALID:
        raise ValueError("matrix contains invalid numeric entries")
    if t == -_C.STATUS_INFEASIBLE:
        raise ValueError("cost matrix is infeasible")
    if t < 0:  # pragma: no cover - the solver's other statuses are the auction's
        raise RuntimeError(f"linear_sum_assignment: internal error {-t}; please report it with the input")
    return (rows, cols) if t == k else (rows[:t], cols[:t])


def linear_sum_assignment(cost_matrix, maximize=False):
    """Solve the linear sum assignment problem, as scipy.optimize.linear_sum_assignment does.

    Accepts anything numpy can turn into a 2-D real array (lists, arrays, bool arrays, matrices)
    and torch tensors. Returns (row_ind, col_ind), int64 numpy arrays with row_ind sorted, such
    that cost_matrix[row_ind, col_ind].sum() is optimal.
    """
    a = _as_matrix(cost_matrix, lambda ndim: f"expected a matrix (2-D array), got a {ndim!r} array")
    return _solve(a, bool(maximize))


def lapjv(cost, extend_cost=False, cost_limit=np.inf, return_cost=True):
    """Solve a (partial) assignment problem as lapx's `lap.lapjv` (0.11) does, minimising.

    cost: (N, M), anything `linear_sum_assignment` above accepts. A rectangular matrix needs
    extend_cost=True or a finite cost_limit (else ValueError, as lapx). With a finite cost_limit a
    row or column may stay unmatched: the matched pairs minimise the sum of (cost - cost_limit) over
    them (lapx's reject cost of cost_limit / 2 for each unmatched row and column), so each is below
    the limit. +inf marks a forbidden pair.

    Returns (total_cost, x, y), or (x, y) with return_cost=False: x (N,) int32 is each row's column
    and y (M,) int32 each column's row, -1 where unmatched; total_cost is the float64 sum of the
    matched pairs' costs. The assignment is optimal; where several are, it may differ from lapx's.

    Unlike lapx, whose answer is then undefined, NaN or -inf in cost raises ValueError("matrix
    contains invalid numeric entries"), and so does a problem with no complete assignment avoiding
    the forbidden pairs (no finite cost_limit), as ValueError("cost matrix is infeasible").
    """
    a = _as_matrix(cost, lambda ndim: "2-dimensional array expected")
    if isinstance(cost_limit, (str, bytes)):  # float() would parse them; lapx takes numbers only
        raise TypeError(f"cost_limit must be a real number, got {type(cost_limit).__name__}")
    limit = float(cost_limit)
    if math.isnan(limit) or limit == -math.inf:
        raise ValueError("cost_limit must be finite or positive infinity")
    n, m = a.shape
    if n != m and not extend_cost and limit == math.inf:
        raise ValueError("Square cost array expected. If cost is intentionally non-square, "
                         "pass extend_cost=True or set a finite cost_limit.")
    rows, cols = _solve(a, False, None if limit == math.inf else limit)
    x = np.full(n, -1, dtype=np.int32)
    x[rows] = cols
    y = np.full(m, -1, dtype=np.int32)
    y[cols] = rows
    if not return_cost:
        return x, y
    return float(a[rows, cols].sum()), x, y
