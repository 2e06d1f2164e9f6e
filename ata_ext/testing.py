"""Helpers shared by the test suite and the benchmarks: device lists, problem generators and the
scipy-backed optimality check. scipy is imported lazily: it is a test dependency only."""
import numpy as np
import torch


def devices():
    """'cpu', plus 'cuda' when a GPU is visible: tests parametrize over this."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]


def video_similarity(batch, n, channels=64, noise=0.3, generator=None):
    """Cosine similarities of consecutive 'frames' whose patch features are a shuffled, noisy copy
    of the previous frame: the matrices ATA solves (maximize). Returns (batch, n, n) float32."""
    g = generator
    x0 = torch.randn(batch, n, channels, generator=g)
    perm = torch.argsort(torch.rand(batch, n, generator=g), dim=1)
    x1 = torch.gather(x0, 1, perm[..., None].expand(-1, -1, channels))
    x1 = x1 + noise * torch.randn(batch, n, channels, generator=g)
    a = torch.nn.functional.normalize(x0, dim=-1)
    b = torch.nn.functional.normalize(x1, dim=-1)
    return a @ b.transpose(1, 2)


def objective(cost, cols):
    """Total of cost[i, cols[i]] over assigned rows, in float64 on the CPU. Checks that cols is a
    valid partial assignment covering min(N, M) rows with distinct columns."""
    c = cost.detach().cpu().double().numpy()
    s = cols.cpu().numpy()
    n, m = c.shape
    assert s.shape == (n,), f"solution shape {s.shape} for a {n}x{m} problem"
    rows = np.flatnonzero(s >= 0)
    assert len(rows) == min(n, m), f"{len(rows)} rows assigned, expected {min(n, m)}"
    assert np.all(s[s < 0] == -1) and np.all(s < m), "column index out of range"
    assert len(np.unique(s[rows])) == len(rows), "a column is assigned twice"
    return float(c[rows, s[rows]].sum())


def scipy_objective(cost, maximize=False):
    """scipy's optimal total for one 2-D problem (float64 on the CPU)."""
    from scipy.optimize import linear_sum_assignment

    c = cost.detach().cpu().double().numpy()
    r, k = linear_sum_assignment(c, maximize=maximize)
    return float(c[r, k].sum())


def tolerance(cost, algorithm="jv", maximize=False):
    """The documented objective tolerance for one 2-D problem.

    jv (CPU): 1e-9 * N * max|finite cost|, and 0 for integer-valued costs.
    auction (CUDA and its CPU twin): costs are quantised to Q integer levels over their finite
    range R, so the objective is within min(N, M) * R / Q of the optimum; Q = min(2**24,
    2**40 // (n+1)) with n = max(N, M), or about 2**40 / (n+1)**2 when a pair is forbidden. Integer
    costs whose range is at most Q are not quantised: exact.
    """
    c = cost.detach().cpu().double()
    finite = c[torch.isfinite(c)]
    if finite.numel() == 0:
        return 0.0
    integral = bool((finite == finite.round()).all())
    float_noise = 0.0 if integral else 1e-9 * max(c.shape) * float(finite.abs().max())
    if algorithm == "jv":
        return float_noise
    n1 = max(c.shape) + 1
    forbidden = finite.numel() < c.numel()
    cap = ((2**40 // n1) - 1) // n1 if forbidden else 2**40 // n1
    q = max(1, min(2**24, cap))
    r = float(finite.max() - finite.min())
    if r == 0 or (integral and r <= q):
        return float_noise
    return min(c.shape) * r / q + float_noise


def assert_optimal(cost, cols, maximize=False, algorithm="jv"):
    """Asserts that cols (..., N) solves every problem of cost (..., N, M) as well as scipy, within
    the documented tolerance of `algorithm` ("jv", or "auction" for the CUDA solver and its twin)."""
    n, m = cost.shape[-2:]
    assert cols.shape == cost.shape[:-1], f"cols has shape {tuple(cols.shape)}, expected {tuple(cost.shape[:-1])}"
    batch = cost.shape[:-2].numel()  # not reshape(-1, ...): ambiguous when N or M is 0
    flat_c = cost.reshape(batch, n, m)
    flat_s = cols.reshape(batch, n)
    for b in range(flat_c.shape[0]):
        got = objective(flat_c[b], flat_s[b])
        ref = scipy_objective(flat_c[b], maximize)
        t = tolerance(flat_c[b], algorithm, maximize)
        assert abs(got - ref) <= t, f"problem {b}: objective {got!r}, scipy {ref!r} (tolerance {t})"
