"""linear_sum_assignment against scipy: a table of devices x solvers x dtypes x inputs."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ata_ext
from conftest import fuzz_seeds
from ata_ext.testing import (FLOAT_DTYPES, INT_DTYPES, assert_optimal, assert_optimal_limited, devices, objective,
                             random_problems, scipy_objective, solver_families, tolerance,
                             tracking_costs, video_similarity)

# (device, algorithm) pairs: every CPU solver, and the default solver on each GPU.
SOLVERS = [("cpu", "jv"), ("cpu", "auction")] + [(d, "auto") for d in devices() if d != "cpu"]
SOLVER_IDS = [f"{d}-{a}" for d, a in SOLVERS]


def solve(cost, maximize=False, device="cpu", algorithm="auto", **kw):
    return ata_ext.linear_sum_assignment(cost.to(device), maximize, algorithm=algorithm, **kw).cpu()


def check_optimal(device, algorithm, cost, cols, maximize=False):
    """Optimal within the tolerance documented for the solver that ran (the auction on CUDA)."""
    jv = algorithm == "jv" or (algorithm == "auto" and device == "cpu")
    assert_optimal(cost, cols, maximize, algorithm="jv" if jv else "auction")


def gen(kind, n, m, g):
    """Adversarial and structured problem families, float64 (n, m)."""
    if kind == "uniform":
        return torch.rand(n, m, generator=g, dtype=torch.float64)
    if kind == "ties":
        return torch.randint(0, 3, (n, m), generator=g).double()
    if kind == "constant":
        return torch.full((n, m), 7.0, dtype=torch.float64)
    if kind == "duplicate_rows":
        return torch.rand(1, m, generator=g, dtype=torch.float64).expand(n, m).clone()
    if kind == "huge_range":
        exponent = torch.randint(-150, 150, (n, m), generator=g).double()
        return torch.rand(n, m, generator=g, dtype=torch.float64) * torch.pow(10.0, exponent)
    if kind == "tiny_values":
        return torch.rand(n, m, generator=g, dtype=torch.float64) * 1e-300
    if kind == "tiny_gaps":
        return 1.0 + 1e-12 * torch.rand(n, m, generator=g, dtype=torch.float64)
    if kind == "integer":
        return torch.randint(-10**6, 10**6, (n, m), generator=g).double()
    if kind == "negative":
        return -1e3 * torch.rand(n, m, generator=g, dtype=torch.float64)
    if kind == "video":
        return video_similarity(1, n, generator=g)[0, :, :m].double()
    raise ValueError(kind)


KINDS = ["uniform", "ties", "constant", "duplicate_rows", "huge_range", "tiny_values", "tiny_gaps", "integer", "negative",
         "video"]
SHAPES = [(1, 1), (2, 2), (5, 5), (17, 17), (49, 49), (8, 13), (13, 8), (1, 9), (9, 1), (100, 100)]


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("maximize", [False, True])
def test_matches_scipy(device, algorithm, kind, maximize):
    # A fixed seed per case (hash() of a str changes from process to process).
    g = torch.Generator().manual_seed(KINDS.index(kind) * 2 + int(maximize))
    for n, m in SHAPES:
        cost = gen(kind, n, m, g)
        check_optimal(device, algorithm, cost, solve(cost, maximize, device, algorithm), maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + INT_DTYPES, ids=str)
def test_dtypes(device, algorithm, dtype):
    g = torch.Generator().manual_seed(1)
    if dtype.is_floating_point:
        cost = (torch.rand(4, 30, 30, generator=g) * 100).to(dtype)
    elif dtype == torch.bool:
        cost = torch.rand(4, 30, 30, generator=g) > 0.5
    else:
        cost = torch.randint(0, 100, (4, 30, 30), generator=g).to(dtype)
    for mx in (False, True):
        out = solve(cost, mx, device, algorithm)
        assert out.dtype == torch.int64 and out.shape == (4, 30)
        # Optimal for the values as stored in this dtype (compared in float64).
        check_optimal(device, algorithm, cost.double(), out, mx)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_batch_dims_and_strides(device, algorithm):
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(2, 3, 20, 20, generator=g, dtype=torch.float64)
    out = solve(cost, device=device, algorithm=algorithm)
    assert out.shape == (2, 3, 20)
    check_optimal(device, algorithm, cost, out)
    # Batched equals one by one.
    for i in range(2):
        for j in range(3):
            assert torch.equal(out[i, j], solve(cost[i, j], device=device, algorithm=algorithm))
    # Non-contiguous: a transposed view, a strided slice, an expanded (stride-0) batch.
    t = cost.transpose(-1, -2)
    check_optimal(device, algorithm, t, solve(t, device=device, algorithm=algorithm))
    s = torch.rand(40, 50, generator=g, dtype=torch.float64)[::2, ::3]
    check_optimal(device, algorithm, s, solve(s, device=device, algorithm=algorithm))
    e = cost[0, 0].expand(5, 20, 20)
    out = solve(e, device=device, algorithm=algorithm)
    assert all(torch.equal(out[0], out[k]) for k in range(5))
    # No batch dims at all.
    check_optimal(device, algorithm, cost[1, 2], solve(cost[1, 2], device=device, algorithm=algorithm))


@pytest.mark.parametrize("algorithm", ["jv", "auction"])
def test_cpu_answers_independent_of_threads(algorithm):
    """Threads claim problems dynamically and reuse their scratch from problem to problem: the
    answers (ties included) must not depend on the thread count or on which problems a thread
    solved before."""
    g = torch.Generator().manual_seed(9)
    cost = torch.cat([torch.randint(0, 3, (8, 64, 64), generator=g).double(),  # tie-heavy
                      torch.rand(8, 64, 64, generator=g, dtype=torch.float64)])
    cost = cost[torch.randperm(16, generator=g)]
    # Problems under 1024 entries are claimed in chunks (here 40 at a time), and the first
    # invalid one is named whichever thread met it first.
    small = torch.randint(0, 3, (1001, 5, 5), generator=g).double()  # a partial last chunk
    small[[37, 521, 998], 2, 3] = math.nan
    one_by_one = [torch.stack([solve(c, algorithm=algorithm) for c in cost]),
                  torch.stack([solve(c, algorithm=algorithm, check=False) for c in small])]
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            for _ in range(3):
                assert torch.equal(solve(cost, algorithm=algorithm), one_by_one[0])
                assert torch.equal(solve(small, algorithm=algorithm, check=False), one_by_one[1])
                with pytest.raises(ValueError, match="problem 37 of the batch"):
                    solve(small, algorithm=algorithm)
    finally:
        torch.set_num_threads(threads)


def test_large_problem_copies_are_not_kept(rss_mib):
    """Threads keep their scratch from problem to problem and call to call, but not the copies as
    large as a problem: the padded copy of a nearly square one and the scaled copy of one with
    huge costs. Two 2000 x 2100 problems (the second also scaled) on two threads leave the resident
    set less than half a copy larger; when kept, each thread held one. The copies (34 MiB and
    more) are above glibc's largest mmap threshold (32 MiB), so a freed one goes back to the system
    at once, and the resident set shows it."""
    g = torch.Generator().manual_seed(3)
    cost = torch.rand(2, 2000, 2100, generator=g, dtype=torch.float64)
    cost[1] *= 1e300
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        solve(torch.rand(4, 50, 50, generator=g))  # the threads' small scratch, before the baseline
        before = rss_mib()
        out = solve(cost)
        assert rss_mib() - before < 2100 * 2100 * 8 / 2**20 / 2
    finally:
        torch.set_num_threads(threads)
    for b in range(2):
        check_optimal("cpu", "jv", cost[b], out[b])


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_rectangular_unassigned_rows(device, algorithm):
    cost = torch.tensor([[5.0, 1.0], [0.0, 9.0], [2.0, 2.0], [1.0, 0.5]])
    out = solve(cost, device=device, algorithm=algorithm)
    assert out.tolist() == [-1, 0, -1, 1]
    out = solve(cost, True, device, algorithm)
    assert out.tolist() == [0, 1, -1, -1]


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("shape", [(0, 5, 5), (3, 0, 4), (3, 4, 0), (0, 0), (2, 0), (0, 2), (2, 3, 0, 0)])
def test_empty(device, algorithm, shape):
    out = solve(torch.rand(shape), device=device, algorithm=algorithm)
    assert out.shape == shape[:-1] and out.dtype == torch.int64
    assert bool((out == -1).all())
    assert_optimal(torch.rand(shape), out.cpu(), algorithm=algorithm)  # the helper copes too


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_forbidden_pairs(device, algorithm):
    g = torch.Generator().manual_seed(3)
    for n, m in [(10, 10), (6, 12), (12, 6), (40, 40)]:
        cost = torch.rand(n, m, generator=g, dtype=torch.float64)
        mask = torch.rand(n, m, generator=g) < 0.5
        # Keep a feasible assignment: the diagonal stays allowed.
        k = min(n, m)
        mask[torch.arange(k), torch.arange(k)] = False
        for mx, bad in ((False, float("inf")), (True, float("-inf"))):
            c = cost.masked_fill(mask, bad)
            out = solve(c, mx, device, algorithm)
            rows = (out >= 0).nonzero().flatten()
            assert not bool(mask[rows, out[rows]].any()), "a forbidden pair was assigned"
            check_optimal(device, algorithm, c, out, mx)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_infeasible(device, algorithm):
    inf = float("inf")
    cases = [
        (torch.tensor([[inf, inf], [1.0, 2.0]]), False),
        (torch.tensor([[1.0, inf, inf], [2.0, inf, inf]]), False),  # two rows share one column
        (torch.tensor([[-inf, -inf], [1.0, 2.0]]), True),
        (torch.full((3, 3), inf), False),
    ]
    for cost, mx in cases:
        # The error names the function the user called, whichever solver ran.
        with pytest.raises(ValueError, match="^linear_sum_assignment.*: cost matrix is infeasible"):
            solve(cost, mx, device, algorithm)
        # check=False: no exception, the failed problem comes back all -1; others still solved.
        batch = torch.stack([cost, torch.zeros_like(cost)])
        out = solve(batch, mx, device, algorithm, check=False)
        assert bool((out[0] == -1).all())
        assert (out[1] >= 0).sum() == min(cost.shape)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_invalid_entries(device, algorithm):
    nan, inf = float("nan"), float("inf")
    for cost, mx in [
        (torch.tensor([[nan, 1.0], [1.0, 1.0]]), False),
        (torch.tensor([[nan, 1.0], [1.0, 1.0]]), True),
        (torch.tensor([[-inf, 1.0], [1.0, 1.0]]), False),
        (torch.tensor([[inf, 1.0], [1.0, 1.0]]), True),
    ]:
        with pytest.raises(ValueError, match="^linear_sum_assignment.*: matrix contains invalid numeric entries"):
            solve(cost, mx, device, algorithm)
        with pytest.raises(ValueError, match="problem 1 of the batch"):
            solve(torch.stack([torch.zeros(2, 2), cost]), mx, device, algorithm)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("n,m", [(3, 5), (4, 4), (5, 3), (9, 40), (40, 9)])
def test_invalid_entry_anywhere(device, algorithm, n, m):
    """A bad entry is reported wherever it sits, whichever way the problem lies in memory (rows
    or columns contiguous; a problem with N > M is loaded transposed): problem k of the batch has
    its bad entry at flat position k."""
    nan, inf = float("nan"), float("inf")
    g = torch.Generator().manual_seed(100 * n + m)
    for bad, mx in ((nan, False), (nan, True), (-inf, False), (inf, True)):
        cost = torch.rand(n * m, n, m, generator=g)
        cost.view(n * m, n * m).fill_diagonal_(bad)
        for view in (cost, cost.mT.contiguous().mT):
            for limit in (None, 0.5):  # a cost limit makes every problem feasible, not a NaN valid
                assert bool((solve(view, mx, device, algorithm, check=False, cost_limit=limit) == -1).all())
                with pytest.raises(ValueError, match="invalid numeric entries .*problem 0 of the batch"):
                    solve(view, mx, device, algorithm, cost_limit=limit)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        ata_ext.linear_sum_assignment(torch.rand(5))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        ata_ext.linear_sum_assignment(torch.tensor(1.0))
    with pytest.raises(TypeError, match="complex"):
        ata_ext.linear_sum_assignment(torch.rand(3, 3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ata_ext.linear_sum_assignment(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="algorithm"):
        ata_ext.linear_sum_assignment(torch.rand(3, 3), algorithm="hungarian")
    # check= is a bool: "no" or 0 is an error, not read as its truth value (nor left to the
    # dispatcher's RuntimeError); likewise for the ragged solver and dealign.
    for flag in ("no", 0, None, np.bool_(False)):
        with pytest.raises(TypeError, match="linear_sum_assignment: check must be True or False"):
            ata_ext.linear_sum_assignment(torch.rand(3, 3), check=flag)
        with pytest.raises(TypeError, match="linear_sum_assignment_ragged: check must be True or False"):
            ata_ext.linear_sum_assignment_ragged([torch.rand(3, 3)], check=flag)
        with pytest.raises(TypeError, match="dealign: check must be True or False"):
            ata_ext.dealign(torch.rand(2, 3, 4), torch.arange(3).expand(2, 3), check=flag)
    # So is maximize=: "no" is true, and maximising where the caller meant not to is a wrong answer
    # with no error. Every path: each device's default, the auction, a cost limit, the ragged solver.
    for flag in ("no", 1, None, np.bool_(True)):
        for kw in ({}, {"algorithm": "auction"}, {"cost_limit": 0.5}):
            with pytest.raises(TypeError, match="linear_sum_assignment: maximize must be True or False"):
                ata_ext.linear_sum_assignment(torch.rand(3, 3), maximize=flag, **kw)
        with pytest.raises(TypeError, match="linear_sum_assignment_ragged: maximize must be True or False"):
            ata_ext.linear_sum_assignment_ragged([torch.rand(3, 3)], maximize=flag)
    for sparse in (torch.rand(3, 3).to_sparse(), torch.rand(3, 3).to_sparse_csr()):
        with pytest.raises(TypeError, match=r"cost must be a dense \(strided\) tensor, got layout torch.sparse"):
            ata_ext.linear_sum_assignment(sparse)
    # The raw ops check too, for callers that bypass the Python wrapper.
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        torch.ops.ata_ext.linear_sum_assignment(torch.rand(5))
    # dtypes the kernels are not built for: a TypeError that says so, from the wrapper (also on
    # meta tensors, where no kernel runs) and from each op.
    for dtype in (torch.float8_e4m3fn, torch.uint16, torch.uint32, torch.uint64):
        cost = torch.zeros(3, 3).to(dtype)
        for call in (
            lambda: ata_ext.linear_sum_assignment(cost),
            lambda: ata_ext.linear_sum_assignment(torch.empty(3, 3, dtype=dtype, device="meta")),
            lambda: torch.ops.ata_ext.linear_sum_assignment(cost, False, True),
            lambda: torch.ops.ata_ext.lsa_auction(cost, False, True),
        ):
            with pytest.raises(TypeError, match="dtype .* is not supported"):
                call()


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("transpose", [False, True], ids=["pad-columns", "pad-rows"])
def test_ragged_batch_padded_with_a_constant(device, algorithm, transpose):
    # The README's recipe for problems of different sizes in one batch (DETR: each image has its
    # own number of targets): pad the shorter side with a constant. Each real part must come out
    # optimal for its own problem, and every padding line go to a real line.
    from ata_ext.testing import detr_costs, objective, scipy_objective, tolerance

    g = torch.Generator().manual_seed(17)
    Q, M = 40, 12
    cost = detr_costs(10, Q, M, 0.2, generator=g).double()
    sizes = [int(k) for k in torch.randint(0, M + 1, (10,), generator=g)]
    sizes[:2] = [0, M]
    padded = cost.clone()
    for b, k in enumerate(sizes):
        padded[b, :, k:] = 0.0
    if transpose:  # targets x queries: the rows are padded
        cost, padded = cost.transpose(1, 2), padded.transpose(1, 2)
    cols = solve(padded, device=device, algorithm=algorithm)
    jv = algorithm == "jv" or (algorithm == "auto" and device == "cpu")
    for b, k in enumerate(sizes):
        if transpose:  # row i of the real k x Q problem keeps its column; padding rows took the rest
            sub, real = cost[b, :k], cols[b, :k]
            assert (real >= 0).all() and len(set(cols[b].tolist())) == M
        else:  # a query matched to a padding column is unmatched in its own Q x k problem
            sub, real = cost[b, :, :k], torch.where(cols[b] < k, cols[b], -1)
            assert sorted(c for c in cols[b].tolist() if c >= 0) == list(range(M))
        # The padded problem's range bounds the auction's quantisation error.
        t = tolerance(padded[b], "jv" if jv else "auction")
        assert abs(objective(sub, real) - scipy_objective(sub, False)) <= t, (b, k)


def ragged_problems(g, dtype=torch.float64):
    """Problems of many shapes: both orientations, squares, empty ones, a DETR-like run of one
    longer side (Q queries x 1-12 targets), forbidden pairs in some, integer costs in others."""
    from ata_ext.testing import detr_costs

    out = [torch.rand(int(n), int(m), generator=g, dtype=dtype) for n, m in torch.randint(0, 9, (30, 2), generator=g)]
    out += [detr_costs(1, 40, int(k), 0.2, generator=g)[0].to(dtype) for k in torch.randint(1, 13, (12,), generator=g)]
    out += [torch.rand(7, 40, generator=g, dtype=dtype), torch.rand(40, 40, generator=g, dtype=dtype)]
    for c in out[::5]:
        if c.numel() and min(c.shape) > 1:
            c[torch.rand(c.shape, generator=g) < 0.2] = float("inf")  # feasible: the diagonal stays
            c.diagonal().copy_(torch.rand(min(c.shape), generator=g, dtype=dtype))
    out.append(torch.randint(-5, 6, (6, 9), generator=g).to(dtype))  # integer-valued, with ties
    out.append(torch.full((5, 3), 2.5, dtype=dtype))  # flat
    return out


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("maximize", [False, True])
def test_ragged_matches_scipy(device, algorithm, maximize):
    # linear_sum_assignment_ragged answers each problem as scipy does: the same pairs (the optimum
    # of random float64 costs is unique) for the exact CPU solver, an optimal set of pairs within
    # the problem's own tolerance for the auction; row_ind increasing either way.
    from scipy.optimize import linear_sum_assignment as scipy_lsa

    from ata_ext.testing import tolerance

    g = torch.Generator().manual_seed(23 + maximize)
    costs = ragged_problems(g)
    if maximize:
        costs = [torch.where(torch.isinf(c), float("-inf"), c) for c in costs]
    answers = ata_ext.linear_sum_assignment_ragged([c.to(device) for c in costs], maximize, algorithm=algorithm)
    assert len(answers) == len(costs)
    jv = algorithm == "jv" or (algorithm == "auto" and device == "cpu")
    for k, (c, (r, col)) in enumerate(zip(costs, answers)):
        assert r.dtype == col.dtype == torch.long and r.device.type == col.device.type == device
        r, col = r.cpu().numpy(), col.cpu().numpy()
        assert len(r) == len(col) == min(c.shape), k
        assert np.all(np.diff(r) > 0) and len(set(col.tolist())) == len(col), k
        assert np.all(np.isfinite(c.numpy()[r, col])), k
        sr, sc = scipy_lsa(c.numpy(), maximize=maximize)
        if jv and k < 30:  # uniform random: a unique optimum
            assert np.array_equal(r, sr) and np.array_equal(col, sc), k
        got, best = c.numpy()[r, col].sum(), c.numpy()[sr, sc].sum()
        assert abs(got - best) <= tolerance(c, "jv" if jv else "auction"), (k, got, best)


def test_ragged_groups_and_padding(monkeypatch):
    # The auction gets one padded batch per group (longer side, and which side it is): DETR's
    # Q x T_k costs are one. (The CPU solver takes the list as it is, in one op.)
    # Each problem is padded with a cost of its own, not 0: costs near 1000 whose optimum is decided
    # by 1e-6 differences come out exact on the auction (padded with 0, the range it quantises
    # would grow 1000-fold, its step past those differences).
    from ata_ext import _solver

    calls = []
    solve_batch = _solver.linear_sum_assignment
    monkeypatch.setattr(_solver, "linear_sum_assignment", lambda c, *a, **kw: calls.append(tuple(c.shape)) or solve_batch(c, *a, **kw))
    g = torch.Generator().manual_seed(5)
    detr = [torch.rand(30, k, generator=g) for k in (3, 1, 7, 30, 5)]
    ata_ext.linear_sum_assignment_ragged(detr, algorithm="auction")
    assert calls == [(5, 30, 30)]
    calls.clear()
    ata_ext.linear_sum_assignment_ragged(detr + [c.t() for c in detr] + [torch.rand(9, 4, generator=g), torch.rand(0, 3)],
                                         algorithm="auction")
    assert sorted(calls) == [(1, 9, 4), (4, 7, 30), (6, 30, 30)]  # the square one stays with the tall ones
    calls.clear()
    ata_ext.linear_sum_assignment_ragged(detr)
    assert calls == []
    costs = [1000 + 1e-6 * torch.randperm(k * 12, generator=g).double().view(12, k) for k in (2, 5, 9)]
    for c, (r, col) in zip(costs, ata_ext.linear_sum_assignment_ragged(costs, algorithm="auction")):
        assert objective(c, torch.full((12,), -1).index_put_((r,), col)) == scipy_objective(c)


def test_ragged_inputs():
    g = torch.Generator().manual_seed(6)
    assert ata_ext.linear_sum_assignment_ragged([]) == []
    (r0, c0), (r1, c1), (r2, c2) = ata_ext.linear_sum_assignment_ragged([torch.rand(0, 4), torch.rand(3, 0), torch.rand(2, 3)])
    assert r0.numel() == c0.numel() == r1.numel() == c1.numel() == 0 and r2.tolist() == [0, 1]
    # Mixed dtypes are promoted (int8 and float32: float32); a tuple, a generator's output, grad.
    mixed = (torch.randint(-3, 4, (4, 6), generator=g, dtype=torch.int8), torch.rand(5, 6, generator=g, requires_grad=True))
    for algorithm in ("jv", "auction"):
        for c, (r, col) in zip(mixed, ata_ext.linear_sum_assignment_ragged(mixed, algorithm=algorithm)):
            assert float(c.detach().double()[r, col].sum()) == pytest.approx(scipy_objective(c), abs=1e-6)
    meta = ata_ext.linear_sum_assignment_ragged([torch.empty(5, 3, device="meta"), torch.empty(2, 7, device="meta")])
    assert [(r.shape, c.shape, r.device.type) for r, c in meta] == [((3,), (3,), "meta"), ((2,), (2,), "meta")]
    bools = [torch.rand(4, k, generator=g) > 0.5 for k in (1, 3, 4)]
    for algorithm in ("jv", "auction"):
        for c, (r, col) in zip(bools, ata_ext.linear_sum_assignment_ragged(bools, maximize=True, algorithm=algorithm)):
            assert int(c[r, col].sum()) == scipy_objective(c, maximize=True)


def test_ragged_errors():
    lsa = ata_ext.linear_sum_assignment_ragged
    ok = torch.rand(3, 4)
    with pytest.raises(TypeError, match="list or tuple of 2-D tensors"):
        lsa(torch.rand(2, 3, 4))
    with pytest.raises(TypeError, match=r"costs\[1\] must be a torch.Tensor"):
        lsa([ok, np.ones((2, 2))])
    with pytest.raises(ValueError, match=r"costs\[1\] must be 2-D"):
        lsa([ok, torch.rand(2, 2, 2)])
    with pytest.raises(ValueError, match=r"costs\[1\] is on meta"):
        lsa([ok, torch.rand(2, 2, device="meta")])
    with pytest.raises(TypeError, match=r"costs\[0\] has dtype torch.complex64"):
        lsa([torch.ones(2, 2, dtype=torch.complex64)])
    with pytest.raises(ValueError, match="algorithm must be one of"):
        lsa([ok], algorithm="hungarian")
    with pytest.raises(TypeError, match=r"costs\[1\] must be a dense \(strided\) tensor"):
        lsa([ok, ok.to_sparse()])
    infeasible = torch.tensor([[1.0, float("inf")], [2.0, float("inf")]])
    nan = torch.tensor([[1.0, float("nan")]])
    for bad, what in ((infeasible, r"infeasible \(costs\[2\] has no complete"), (nan, r"invalid numeric .* in costs\[2\]")):
        for sense, c in ((False, bad), (True, -bad)):
            for algorithm in ("jv", "auction"):
                with pytest.raises(ValueError, match=what):
                    lsa([ok, ok.t(), c], maximize=sense, algorithm=algorithm)
        for algorithm in ("jv", "auction"):  # check=False: the failed problem's pairs are -1
            answers = lsa([ok, bad, ok.t()], check=False, algorithm=algorithm)
            assert all((x == -1).all() for x in answers[1]) and len(answers[1][0]) == min(bad.shape)
            assert answers[0][0].tolist() == [0, 1, 2] and (answers[2][1] >= 0).all()
    with pytest.raises(ValueError, match=r"invalid numeric .* in costs\[0\]"):  # +inf when maximising
        lsa([torch.tensor([[float("inf"), 1.0]])], maximize=True)


def limited_families(g):
    """(cost, limit) problems for cost_limit: uniform, tracking-like distances (two point sets that
    moved a little), integer ties with whole and fractional limits, forbidden pairs (rows with none
    allowed), constant and huge-range costs, both orientations and several batch shapes."""
    yield torch.rand(4, 12, 12, generator=g), 0.3
    c = tracking_costs(3, 30, 24, generator=g)
    yield c, 0.05  # tracking: 30 tracks, 24 detections
    yield c.mT, 0.05  # and the other way round
    yield torch.randint(0, 6, (3, 9, 14), generator=g), 3  # ties at the limit
    yield torch.randint(0, 6, (3, 14, 9), generator=g).float(), 2.5
    c = torch.rand(3, 10, 16, generator=g).double()
    c[torch.rand(c.shape, generator=g) < 0.6] = float("inf")
    c[:, 0] = float("inf")  # a row with no allowed pair: unmatched, not infeasible
    yield c, 0.7
    yield torch.full((2, 6, 6), 2.0), 2.0  # every pair at the limit: nothing matched
    yield torch.full((2, 6, 6), 2.0), 2.5  # every pair below it: all matched
    yield torch.rand(2, 8, 8, generator=g).double() * 1e12 - 5e11, 0.0
    yield torch.rand(2, 3, 4, 5, generator=g).half(), 0.4  # batch dims; the limit is not a float16
    yield torch.rand(1, 40, 40, generator=g).bfloat16(), 0.0625


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("maximize", [False, True])
def test_cost_limit_matches_scipy(device, algorithm, maximize):
    g = torch.Generator().manual_seed(21)
    for cost, limit in limited_families(g):
        if maximize:  # the same problems, mirrored: benefits above -limit
            cost, limit = -cost, -limit
        out = solve(cost, maximize, device, algorithm, cost_limit=limit)
        jv = algorithm == "jv" or (algorithm == "auto" and device == "cpu")
        assert_optimal_limited(cost, out, limit, maximize, algorithm="jv" if jv else "auction")
        # The same problems through linear_sum_assignment_ragged: scipy's pairs of matched rows.
        flat = cost.reshape(-1, *cost.shape[-2:]).to(device)
        for c, (r, k) in zip(flat, ata_ext.linear_sum_assignment_ragged(list(flat), maximize, cost_limit=limit,
                                                                         algorithm=algorithm)):
            cols = torch.full((c.shape[0],), -1, dtype=torch.long)
            cols[r.cpu()] = k.cpu()
            assert bool((r.diff() > 0).all()) and len(r) == len(k)
            assert_optimal_limited(c.cpu(), cols, limit, maximize, algorithm="jv" if jv else "auction")


def test_cost_limit_answers():
    inf = float("inf")
    lsa = ata_ext.linear_sum_assignment
    cost = torch.tensor([[1.0, 9.0, 9.0], [9.0, 3.0, 9.0], [9.0, 9.0, 5.0]])
    assert lsa(cost, cost_limit=4.0).tolist() == [0, 1, -1]
    assert lsa(cost, cost_limit=3.0).tolist() == [0, -1, -1]  # a pair at the limit stays unmatched
    assert lsa(cost, cost_limit=0.5).tolist() == [-1, -1, -1]
    assert lsa(cost, cost_limit=100).tolist() == [0, 1, 2]
    assert lsa(cost, True, cost_limit=8.0).tolist() == [1, 2, 0]
    # Not "solve, then drop the pairs beyond the limit": with a limit of 2.5 the plain optimum
    # (1 + 1, both pairs below it) is best, with 1.5 one pair of 0 beats it (0 - 1.5 < 2 * (1 - 1.5)).
    cost = torch.tensor([[1.0, 0.0], [inf, 1.0]])
    assert lsa(cost, cost_limit=2.5).tolist() == [0, 1]
    assert lsa(cost, cost_limit=1.5).tolist() == [1, -1]
    # Finite costs, one pair beyond the limit: the plain optimum (the diagonal, both pairs below the
    # limit) is not the answer. (The CPU op solves the plain problem when every pair is below the
    # limit, as at 2.2: that must not be taken here.)
    cost = torch.tensor([[1.0, 0.0], [2.1, 1.0]])
    assert lsa(cost, cost_limit=1.8).tolist() == [1, -1]
    assert lsa(cost, cost_limit=2.2).tolist() == [0, 1]
    # A problem that is infeasible without a limit, and the transposed shape.
    cost = torch.tensor([[inf, inf], [1.0, 2.0]])
    assert lsa(cost, cost_limit=5).tolist() == [-1, 0]
    assert lsa(cost.T, cost_limit=5).tolist() == [1, -1]
    # Every solver and both ops agree with the ones above, and with lapx's cost_limit.
    lap = pytest.importorskip("lap")
    g = torch.Generator().manual_seed(5)
    for n, m in ((7, 7), (5, 11), (11, 5)):
        c = torch.rand(n, m, generator=g).double()
        _, x, _ = lap.lapjv(c.numpy(), extend_cost=True, cost_limit=0.25)
        got = lsa(c, cost_limit=0.25)
        rows = (got >= 0).nonzero().flatten()
        lap_rows = np.flatnonzero(x >= 0)
        assert math.isclose(float((c[rows, got[rows]] - 0.25).sum()), float((c.numpy()[lap_rows, x[lap_rows]] - 0.25).sum()),
                            abs_tol=1e-12)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_cost_limit_dtypes_and_exactness(device, algorithm):
    g = torch.Generator().manual_seed(22)
    for dtype in FLOAT_DTYPES + INT_DTYPES:
        hi = 2 if dtype == torch.bool else 9
        cost = torch.randint(0, hi, (3, 10, 13), generator=g).to(dtype)
        for limit in (1, 4, 4.5, hi):
            out = solve(cost, device=device, algorithm=algorithm, cost_limit=limit)
            assert_optimal_limited(cost, out, limit, algorithm="jv")  # small integers: exact on every solver
    # int64 costs far beyond float precision and an integer limit: pairs near the limit are told apart.
    big = 2**40
    cost = torch.tensor([[big - 1, big + 1], [big + 1, big]])
    assert solve(cost, device=device, algorithm=algorithm, cost_limit=big).tolist() == [0, -1]


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_cost_limit_errors_and_edges(device, algorithm):
    def lsa(cost, **kw):
        return solve(cost, device=device, algorithm=algorithm, **kw)

    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="cost_limit must be finite"):
            lsa(torch.rand(3, 3), cost_limit=bad)
    for bad in ("0.5", True, torch.ones(2), 1j, [0.5]):
        with pytest.raises(TypeError, match="cost_limit must be a real number"):
            lsa(torch.rand(3, 3), cost_limit=bad)
    if device == "cpu":  # the raw CPU ops check too, for callers that bypass the Python wrapper
        for call in (lambda: torch.ops.ata_ext.linear_sum_assignment(torch.rand(3, 3), False, True, float("nan")),
                     lambda: torch.ops.ata_ext.linear_sum_assignment_ragged([torch.rand(3, 3)], False, True, float("inf"))):
            with pytest.raises(ValueError, match="cost_limit must be finite"):
                call()
    c = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lsa(c, cost_limit=torch.tensor(0.5)), lsa(c, cost_limit=0.5))  # a one-element tensor is a number
    cost = torch.tensor([[float("nan"), 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="invalid numeric entries.*problem 1 of the batch"):
        lsa(torch.stack([torch.zeros(2, 2), cost]), cost_limit=0.5)
    out = lsa(torch.stack([torch.zeros(2, 2), cost]), cost_limit=0.5, check=False)
    assert out.tolist() == [[0, 1], [-1, -1]]
    with pytest.raises(ValueError, match=r"invalid numeric entries.*costs\[1\]"):
        ata_ext.linear_sum_assignment_ragged([torch.zeros(2, 3).to(device), cost.to(device)], cost_limit=0.5,
                                             algorithm=algorithm)
    pairs = ata_ext.linear_sum_assignment_ragged([torch.zeros(2, 3).to(device), cost.to(device)], cost_limit=0.5,
                                                 algorithm=algorithm, check=False)
    assert pairs[1][0].tolist() == pairs[1][1].tolist() == [-1, -1]  # a failed problem, as without a limit
    assert pairs[0][0].tolist() == [0, 1] and pairs[0][1].tolist() == [0, 1]
    for shape in ((0, 4), (4, 0), (2, 0, 0), (3, 0, 5)):
        out = lsa(torch.rand(shape), cost_limit=0.5)
        assert out.shape == shape[:-1] and bool((out == -1).all())
    # Strided input (a transposed view) answers as its contiguous copy.
    c = torch.rand(3, 9, 6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(lsa(c.mT, cost_limit=0.4), lsa(c.mT.contiguous(), cost_limit=0.4))


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_large_and_tie_heavy_terminate(device, algorithm):
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(1024, 1024, generator=g, dtype=torch.float64)
    check_optimal(device, algorithm, cost, solve(cost, device=device, algorithm=algorithm))
    # Massive ties at a size where a poorly guarded solver would crawl or loop.
    for c in (torch.zeros(300, 300), torch.randint(0, 2, (300, 300), generator=g).float()):
        check_optimal(device, algorithm, c, solve(c, device=device, algorithm=algorithm))


@pytest.mark.parametrize("maximize", [False, True])
def test_jv_long_tied_searches(maximize):
    """From 2048 columns a JV search that has scanned 16 rows at a distance several columns share
    finishes on lists, scanning equal distances in the order found (augment_by_lists in
    csrc/cpu/linear_sum_assignment_cpu.cpp). Small-integer costs at that size, square (after the
    initialisation), rectangular (augmentation from zero duals), with forbidden pairs, with a
    limit (the extended problem is wider), and infeasible through a long search: scipy's objective."""
    g = torch.Generator().manual_seed(11)
    cases = [torch.randint(0, 1000, (2100, 2100), generator=g).double(),
             torch.randint(0, 20, (2050, 2050), generator=g).double(),
             torch.randint(0, 50, (300, 2100), generator=g).double(),
             torch.randint(0, 50, (2100, 300), generator=g).double()]
    forbidden = torch.randint(0, 30, (2050, 2050), generator=g).double()
    forbidden[torch.rand(2050, 2050, generator=g) < 0.3] = math.inf
    forbidden.fill_diagonal_(1.0)
    cases.append(forbidden)
    for cost in cases:
        cost = -cost if maximize else cost
        if maximize:
            cost = torch.where(torch.isinf(cost), -math.inf, cost)
        check_optimal("cpu", "jv", cost, solve(cost, maximize, algorithm="jv"), maximize)
    limit = -25.0 if maximize else 25.0
    cost = cases[2][:, :1800] * (-1 if maximize else 1)
    assert_optimal_limited(cost, solve(cost, maximize, algorithm="jv", cost_limit=limit), limit, maximize)
    # 20 rows that can take only 19 columns (the same ones): the last search scans them all first.
    cost = torch.randint(0, 5, (2100, 2100), generator=g).double()
    cost[:20, 19:] = math.inf
    with pytest.raises(ValueError, match="infeasible"):
        solve(cost, algorithm="jv")


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("kind", ["flat_sample_rows", "half_constant_rows", "random_cosine"])
def test_row_reduction_candidate_lists(device, algorithm, kind):
    """From n = 32 the JV row reduction scans short per-row candidate lists whose margin comes from
    five evenly spaced sample rows (docs/solvers.md, "The CPU solver"). Inputs that break that estimate
    must still be solved exactly: sample rows almost constant (a margin of ~1e-10, so lists hold
    one or two columns and rows fall back to the augmentation), constant rows (lists too long:
    whole-row scans), and the random cosine similarities align solves on random features."""
    g = torch.Generator().manual_seed(["flat_sample_rows", "half_constant_rows", "random_cosine"].index(kind))
    for n, m in [(196, 196), (150, 196), (196, 150), (64, 64), (32, 32)]:
        k = max(n, m)
        cost = torch.rand(k, k, generator=g, dtype=torch.float64)
        if kind == "flat_sample_rows":
            rows = torch.tensor([q * k // 5 for q in range(5)])
            cost[rows] = 1.0 + 1e-9 * torch.rand(5, k, generator=g, dtype=torch.float64)
        elif kind == "half_constant_rows":
            cost[1::2] = 0.5
        else:
            f = torch.nn.functional.normalize(torch.randn(2, k, 768, generator=g), dim=-1)
            cost = (f[0] @ f[1].T).double()
        cost = cost[:n, :m].contiguous()
        for maximize in (False, True):
            check_optimal(device, algorithm, cost, solve(cost, maximize, device, algorithm), maximize)


@given(
    st.integers(32, 90),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uniform", "small_integers", "cosine", "hot_columns", "row_scales", "flat_sample_rows"]),
    st.booleans(),
)
def test_property_jv_row_reduction_sizes(n, seed, kind, maximize):
    """The sizes where the row reduction's candidate lists are on (n >= 32), with the same
    structured families as above drawn at random: the objective is scipy's."""
    g = torch.Generator().manual_seed(seed)
    m = n + int(torch.randint(0, n // 3 + 1, (), generator=g))  # square or nearly square (padded)
    cost = torch.rand(n, m, generator=g, dtype=torch.float64)
    if kind == "small_integers":
        cost = torch.randint(0, 4, (n, m), generator=g).double()
    elif kind == "cosine":
        f = torch.nn.functional.normalize(torch.randn(n + m, 96, generator=g, dtype=torch.float64), dim=-1)
        cost = f[:n] @ f[n:].T
    elif kind == "hot_columns":  # a few columns every row wants: the prices there move a lot
        cost[:, torch.randperm(m, generator=g)[: max(1, m // 10)]] -= 5.0
    elif kind == "row_scales":
        cost *= torch.rand(n, 1, generator=g, dtype=torch.float64) * 1e3
    elif kind == "flat_sample_rows":
        cost[[q * n // 5 for q in range(5)]] = 1.0 + 1e-9 * torch.rand(5, m, generator=g, dtype=torch.float64)
    check_optimal("cpu", "jv", cost, solve(cost, maximize, algorithm="jv"), maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_batch_of_video_problems(device, algorithm):
    cost = video_similarity(16, 49, generator=torch.Generator().manual_seed(5))
    out = solve(cost, True, device, algorithm)
    check_optimal(device, algorithm, cost, out, maximize=True)


@pytest.mark.parametrize("algorithm", ["jv", "auction"])
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    st.booleans(),
)
def test_property_objective_equals_scipy(algorithm, a, maximize):
    cost = torch.from_numpy(a)
    check_optimal("cpu", algorithm, cost, solve(cost, maximize, algorithm=algorithm), maximize)


@pytest.mark.parametrize("algorithm", ["jv", "auction"])
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=10),
        elements=st.one_of(st.integers(-3, 3).map(float), st.floats(-5, 5)),  # ties, also at the limit
    ),
    st.one_of(st.integers(-3, 3), st.floats(-5, 5)),
    st.booleans(),
)
def test_property_cost_limit(algorithm, a, limit, maximize):
    cost = torch.from_numpy(a)
    assert_optimal_limited(cost, solve(cost, maximize, algorithm=algorithm, cost_limit=limit), limit, maximize, algorithm)


@pytest.mark.parametrize("algorithm", ["jv", "auction"])
@given(
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=10), elements=st.integers(-5, 5)),
    st.booleans(),
)
def test_property_integer_costs_exact(algorithm, a, maximize):
    from scipy.optimize import linear_sum_assignment as scipy_lsa

    cost = torch.from_numpy(a)
    r, c = scipy_lsa(a, maximize=maximize)
    assert objective(cost, solve(cost, maximize, algorithm=algorithm)) == a[r, c].sum()


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("op", ["linear_sum_assignment", "lsa_auction"])
def test_opcheck(device, op):
    g = torch.Generator().manual_seed(6)
    for args in [
        (torch.rand(3, 7, 7, generator=g), False, True),
        (torch.rand(2, 5, 9, generator=g).double(), True, True),
        (torch.rand(9, 5, generator=g), False, False),
    ]:
        args = (args[0].to(device),) + args[1:]
        torch.library.opcheck(getattr(torch.ops.ata_ext, op).default, args)
    if op == "linear_sum_assignment" and device == "cpu":  # cost_limit: the CPU op's argument
        for args in [(torch.rand(3, 7, 5, generator=g), False, True, 0.4),
                     (torch.rand(3, 5, 7, generator=g).double(), True, False, 0.6)]:
            torch.library.opcheck(torch.ops.ata_ext.linear_sum_assignment.default, args)


@pytest.mark.parametrize("cost_limit,algorithm", [(None, "auto"), (1.5, "auto"), (1.5, "auction")])
def test_torch_compile_fullgraph(cost_limit, algorithm):
    # With a limit the CPU op takes it; the auction's path builds the extended problem in Python
    # (traced too), shown here on both orientations.
    def f(c):
        return ata_ext.linear_sum_assignment(c * 2.0, maximize=True, cost_limit=cost_limit, algorithm=algorithm) + 1

    for c in (torch.rand(4, 10, 12), torch.rand(4, 12, 10)):
        assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(c), f(c))


def test_ragged_opcheck_and_compile():
    # The CPU op behind linear_sum_assignment_ragged: its fake kernel and schema (opcheck), and
    # torch.compile(fullgraph=True) through the public function.
    g = torch.Generator().manual_seed(8)
    costs = [torch.rand(5, 3, generator=g), torch.rand(2, 6, generator=g).double(), torch.rand(0, 4)]
    for maximize, check in ((False, True), (True, False)):
        torch.library.opcheck(torch.ops.ata_ext.linear_sum_assignment_ragged.default, (costs, maximize, check))
        # With a cost limit the number of pairs depends on the data (the fake kernel's dynamic sizes).
        torch.library.opcheck(torch.ops.ata_ext.linear_sum_assignment_ragged.default, (costs, maximize, check, 0.3))

    for limit in (None, 0.5):
        def f(cs):
            return [(r + 1, c) for r, c in ata_ext.linear_sum_assignment_ragged([x * 2.0 for x in cs], cost_limit=limit)]

        for (r, c), (er, ec) in zip(torch.compile(f, fullgraph=True, backend="aot_eager")(costs), f(costs)):
            assert torch.equal(r, er) and torch.equal(c, ec)


def test_auction_size_limit():
    with pytest.raises(ValueError, match=r"^linear_sum_assignment\(algorithm='auction'\): N and M must be at most 65535"):
        ata_ext.linear_sum_assignment(torch.rand(1, 65536), algorithm="auction")


def test_auction_twin_deterministic():
    cost = video_similarity(8, 49, generator=torch.Generator().manual_seed(7))
    first = solve(cost, True, algorithm="auction")
    assert all(torch.equal(first, solve(cost, True, algorithm="auction")) for _ in range(3))


def test_auction_quantisation_bound_is_honest():
    # Costs whose differences sit far below the quantisation step: the auction may pick a
    # different assignment than scipy, but never by more than the documented bound.
    g = torch.Generator().manual_seed(8)
    cost = 1e6 + torch.rand(30, 30, generator=g, dtype=torch.float64) * 1e-3
    cost[0, 0] = 0.0  # stretches the range so one quantisation step is ~0.06
    check_optimal("cpu", "auction", cost, solve(cost, algorithm="auction"))


@pytest.mark.parametrize("scale", [1e-300, 1e-307, 1e300])
@pytest.mark.parametrize("maximize", [False, True])
def test_auction_extreme_magnitudes(scale, maximize):
    # Ranges near the double limits: quantisation must neither overflow nor turn entries into
    # the forbidden level (a tiny range once made levels/range infinite and feasible problems
    # "infeasible").
    for seed in range(20):
        cost = torch.rand(7, 9, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
        check_optimal("cpu", "auction", cost, solve(cost, maximize, algorithm="auction"), maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("maximize", [False, True])
def test_subnormal_costs_exact(device, algorithm, maximize):
    # Costs that are small multiples of the smallest double (subnormals): sums of them are exact,
    # and so must the optimum be. The auction once halved every benefit before quantising (for
    # ranges that overflow), which drops a subnormal's last bit: 4 and 5 units shared a level, and
    # the optimum was missed by a unit (found by fuzzing).
    unit = 2.0**-1074
    pair = torch.tensor([[4.0, 5.0]], dtype=torch.float64) * unit
    assert solve(pair if maximize else -pair, maximize, device, algorithm=algorithm).tolist() == [1]
    g = torch.Generator().manual_seed(3)
    for shape in ((8, 6, 6), (8, 5, 9), (2, 40, 40)):
        cost = torch.randint(0, 64, shape, generator=g).double() * unit
        cols = solve(cost, maximize, device, algorithm=algorithm)
        for k in range(shape[0]):
            # In units, where the objectives are exact integers.
            assert objective(cost[k] / unit, cols[k]) == scipy_objective(cost[k] / unit, maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("maximize", [False, True])
def test_first_choices_are_exact(device, algorithm, maximize):
    # Every row's unique best column, all distinct, is the exact optimum (auction.h, "First
    # choices"), found on the raw values before the auction quantises anything. Here each row's
    # two values are 0.1 apart on a range of 1e7, closer than a quantisation step (about 0.6), so
    # they share a level: the quantised problem ties, and its first round ended the solve with
    # [0, 1], 0.2 short of the optimum [1, 0] (within the auction's tolerance, but not exact).
    d = 0.1
    benefit = torch.tensor([[[0.0, d], [1e7, 1e7 - d]]], dtype=torch.float64)
    sign = 1 if maximize else -1
    assert solve(sign * benefit, maximize, device, algorithm=algorithm).tolist() == [[1, 0]]
    # Rectangular: the real rows' first choices, with columns to spare (transposed when N > M).
    wide = torch.tensor([[0.0, d, -1e7], [1e7, 1e7 - d, 0.0]], dtype=torch.float64)
    assert solve(sign * wide, maximize, device, algorithm=algorithm).tolist() == [1, 0]
    assert solve(sign * wide.T, maximize, device, algorithm=algorithm).tolist() == [1, 0, -1]


def distinct_best_problems(g, dtype, B=6, n=7, m=9):
    """(benefit, best, hi): B problems of n x m float64 benefits in which row i's best value, hi,
    sits in column best[b, i] alone (distinct within a problem) and the others are integers below
    it; hi is 1 for bool costs, else 5."""
    hi = 1 if dtype == torch.bool else 5
    best = torch.stack([torch.randperm(m, generator=g)[:n] for _ in range(B)])
    benefit = torch.randint(0, hi, (B, n, m), generator=g).double().scatter_(2, best[..., None], float(hi))
    return benefit, best, hi


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + INT_DTYPES, ids=str)
def test_first_choices_and_near_misses(device, algorithm, dtype):
    # The CPU batch driver answers a problem whose rows (contiguous, not transposed) each have a
    # unique best column, all distinct, before loading it (lsa_batch_cpu.h, lsa_first_choices);
    # everything else must reach the solver unharmed: a tie at a row's best, two rows sharing a
    # best column, a forbidden pair, NaN, +0.0 against -0.0, strided rows, transposes.
    g = torch.Generator().manual_seed(21)
    benefit, best, hi = distinct_best_problems(g, dtype)
    B, n, m = benefit.shape
    tie = benefit.clone()
    tie[:, 3].scatter_(1, (best[:, 3, None] + 1) % m, float(hi))
    shared = benefit.clone()
    shared[:, 2] = benefit[:, 1]
    for maximize in (False, True):
        for name, b in {"distinct": benefit, "tie": tie, "shared": shared}.items():
            cost = (b if maximize else hi - b).to(dtype)  # non-negative: fits the unsigned types
            for view in (cost, cost.transpose(-1, -2), torch.cat([cost, cost], -1)[..., :m]):
                cols = solve(view, maximize, device, algorithm=algorithm)
                check_optimal(device, algorithm, view, cols, maximize)
                if name == "distinct" and view.shape[-1] == m:
                    assert torch.equal(cols, best)
        if not dtype.is_floating_point:
            continue
        # A forbidden pair beside every row's first choice leaves it the optimum; a NaN there, or a
        # first choice of the wrong infinity, is reported.
        cost = (benefit if maximize else -benefit).to(dtype)
        forbidden = cost.clone()
        forbidden[:, 0].scatter_(1, (best[:, 0, None] + 1) % m, -math.inf if maximize else math.inf)
        assert torch.equal(solve(forbidden, maximize, device, algorithm=algorithm), best)
        bad = cost.clone()
        bad[3, n - 1, (best[3, n - 1] + 1) % m] = math.nan
        bad[1, 0, best[1, 0]] = math.inf if maximize else -math.inf  # a first choice of the wrong sign
        with pytest.raises(ValueError, match=r"invalid numeric entries .*problem 1 of the batch"):
            solve(bad, maximize, device, algorithm=algorithm)
        bad[1, 0, best[1, 0]] = cost[1, 0, best[1, 0]]
        with pytest.raises(ValueError, match=r"invalid numeric entries .*problem 3 of the batch"):
            solve(bad, maximize, device, algorithm=algorithm)
        signed_zero = torch.tensor([[0.0, -0.0, -1.0], [-1.0, -1.0, 0.0]], dtype=dtype)  # row 0: a tie
        cols = solve(signed_zero if maximize else -signed_zero, maximize, device, algorithm=algorithm)
        assert cols.tolist() in ([0, 2], [1, 2])


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES + INT_DTYPES, ids=str)
def test_first_choices_with_flat_rows(device, algorithm, dtype):
    # Flat rows (one finite value in every column: zero tokens in video-like similarities) may sit
    # among first choices (auction.h, "First choices"): the other rows take their best columns, the
    # flat ones the columns left, lowest row first, lowest column first. What is not quite that
    # reaches the solver: a flat row with one other value, or with a forbidden pair, and a row of
    # forbidden pairs only (infeasible).
    g = torch.Generator().manual_seed(22)
    benefit, best, hi = distinct_best_problems(g, dtype)
    B, n, m = benefit.shape
    flat = [1, 4, 5]
    benefit[:, flat] = torch.randint(0, hi + 1, (B, len(flat), 1), generator=g).double()  # a value per row
    expected = best.clone()
    for b in range(B):
        left = sorted(set(range(m)) - {int(best[b, i]) for i in range(n) if i not in flat})
        expected[b, flat] = torch.tensor(left[: len(flat)])
    one_off = benefit.clone()
    one_off[:, 4, 0] = 1 - one_off[:, 4, 0]  # row 4: one value differs (its best is tied, or unique)
    for maximize in (False, True):
        to_cost = lambda b: (b if maximize else hi - b).to(dtype)  # non-negative: fits the unsigned types
        cost = to_cost(benefit)
        for view in (cost, torch.cat([cost, cost], -1)[..., :m]):  # contiguous and strided rows
            cols = solve(view, maximize, device, algorithm=algorithm)
            assert torch.equal(cols, expected), (maximize, view.stride())
        for view in (cost.transpose(-1, -2), to_cost(one_off)):
            check_optimal(device, algorithm, view, solve(view, maximize, device, algorithm=algorithm), maximize)
        if not dtype.is_floating_point:
            continue
        forbidden = cost.clone()
        forbidden[:, 4, 2] = -math.inf if maximize else math.inf
        check_optimal(device, algorithm, forbidden, solve(forbidden, maximize, device, algorithm=algorithm), maximize)
        forbidden[2, 5] = -math.inf if maximize else math.inf
        with pytest.raises(ValueError, match=r"infeasible.*problem 2 of the batch"):
            solve(forbidden, maximize, device, algorithm=algorithm)


def test_flat_rows_need_exact_values():
    # A row counts as flat only where its value, as a double, stands for one input value: int64
    # costs beyond 2^53 round to shared doubles. At 2^60, row 0's costs 2^60 + 1 and 2^60 are one
    # double, but the row is not flat: taken as flat it would get column 0, the lowest left after
    # row 1's first choice (column 1), one more than the optimum. So the first-choice check must
    # not pass there (the auction's twin then runs rounds), where at 2^40 a flat row 0 passes.
    from ata_ext.testing import auction_rounds

    for big, delta, passes in ((2**40, 0, True), (2**60, 1, False)):
        cost = torch.full((1, 2, 8), big, dtype=torch.int64)
        cost[0, 0, 0] += delta
        cost[0, 1] = (torch.arange(8) - 1).abs() * (big // 16)  # row 1: column 1 is its unique cheapest
        assert bool(auction_rounds(cost).sum() == 0) == passes, big
        if passes:
            for algorithm in ("jv", "auction"):
                assert solve(cost, algorithm=algorithm).tolist() == [[0, 1]]


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("maximize", [False, True])
def test_costs_near_the_double_limit(device, algorithm, maximize):
    # Finite costs up to +-1.7e308: their differences overflow a double. The JV solver's duals
    # overflowed to inf and NaN here, and it reported feasible problems as infeasible and wrote out
    # of bounds (it now scales such problems down by a power of two).
    g = torch.Generator().manual_seed(5)
    for shape in ((16, 6, 6), (16, 5, 9), (16, 9, 5), (4, 40, 40)):
        cost = (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * 1.7e308
        forbidden = cost.clone()
        forbidden[torch.rand(shape, generator=g) < 0.2] = -float("inf") if maximize else float("inf")
        forbidden[..., torch.arange(min(shape[1:])), torch.arange(min(shape[1:]))] = 1e308  # feasible
        for c in (cost, forbidden):
            cols = solve(c, maximize, device, algorithm=algorithm)
            # Checked on the cost scaled by 2^-64 (exact here), whose objectives do not overflow.
            check_optimal(device, algorithm, c * 2.0**-64, cols, maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("max_n,seed", [pytest.param(48, s, id=f"small-seed{s}") for s in fuzz_seeds(11)]
                         + [pytest.param(300, s, id=f"large-seed{s}") for s in fuzz_seeds(12)])
def test_random_problems_match_scipy(device, algorithm, max_n, seed):
    # Fuzzing (ata_ext.testing.random_problems): random shapes, dtypes, senses and kinds of values,
    # forbidden pairs. Checked on the cost scaled by a power of two so that no objective overflows.
    # The large ones reach the solvers' paths for bigger problems (the JV's candidate lists and
    # its step cap, the auction's 1024-thread blocks); a longer run of such problems found the
    # auction's subnormal bug (test_subnormal_costs_exact).
    for cost, maximize in random_problems(seed=seed, count=150, max_n=max_n):
        cols = solve(cost, maximize, device, algorithm=algorithm)
        c = cost.double()
        finite = c[torch.isfinite(c)]
        shift = max(0, math.frexp(float(finite.abs().max()))[1] - 1000) if finite.numel() else 0
        check_optimal(device, algorithm, c * 2.0**-shift, cols, maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_flat_rows_in_square_problems(device, algorithm):
    # The JV initialisation (square problems from 42) takes each row's minimum off it before the
    # column reduction, and reduces flat rows (one value everywhere) last: they tie with every
    # column's minimum; up to three flat rows sit it out, for the augmentation to place. Flat rows
    # at the top, the bottom, scattered, all rows flat, one, two, three, four, each with its own
    # value; integer costs, so the objective is exact. Maximising flips which rows are cheap.
    g = torch.Generator().manual_seed(23)
    n = 64
    for rows in (range(10), range(n - 10, n), range(0, n, 5), range(n), [0], [n // 2], [3, n - 1], [5, 9, 40], range(4)):
        cost = torch.randint(0, 40, (4, n, n), generator=g).double()
        cost[:, list(rows)] = torch.randint(-5, 45, (4, len(rows), 1), generator=g).double()
        for maximize in (False, True):
            cols = solve(cost, maximize, device, algorithm=algorithm)
            for k in range(cost.shape[0]):
                assert objective(cost[k], cols[k]) == scipy_objective(cost[k], maximize), (rows, maximize, k)


def test_tolerance_is_zero_only_where_sums_are_exact():
    # The testing helper's tolerance: 0 for integer-valued costs only while N * max|cost| < 2**53
    # (then float64 sums of any assignment are exact); beyond that, two optimal assignments may sum
    # to totals a rounding apart. Costs like +-1e300 are all integers as doubles: a fuzz of nearly
    # square problems of them found solver and scipy a last bit apart, against a tolerance of 0.
    small = torch.randint(-1000, 1000, (50, 60)).double()
    assert tolerance(small) == 0
    huge = (torch.rand(50, 60, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * 1e300
    assert bool((huge == huge.round()).all())
    assert tolerance(huge) == pytest.approx(1e-9 * 60 * float(huge.abs().max()))
    assert tolerance(torch.full((3, 3), 2.0**60)) > 0  # int64-sized values too
    # The auction's integer shortcut (range at most Q: no quantisation) still needs the float sum's.
    levels = torch.full((3, 3), 2.0**60) + 1024 * torch.eye(3)  # a range of 1024 <= Q
    assert tolerance(levels, "auction") == pytest.approx(1e-9 * 3 * float(levels.max()))


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_nearly_square_problems(device, algorithm):
    # One to a few rows (or columns) short of square, from 64 columns: JV pads them with flat rows
    # to square; with up to three the padding sits its initialisation out. Integer costs (exact),
    # uniform ones, and cosine similarities maximised, both orientations.
    g = torch.Generator().manual_seed(31)
    for m in (64, 100, 197):
        for k in (1, 2, 3, 5):
            for kind in ("int", "uniform", "cosine"):
                if kind == "int":
                    cost, maximize = torch.randint(0, 30, (3, m - k, m), generator=g).double(), False
                elif kind == "uniform":
                    cost, maximize = torch.rand(3, m - k, m, generator=g, dtype=torch.float64), False
                else:
                    f = torch.nn.functional.normalize(torch.randn(3, 2 * m - k, 32, generator=g), dim=-1)
                    cost, maximize = (f[:, : m - k] @ f[:, m - k :].mT).double(), True
                for c in (cost, cost.mT):
                    cols = solve(c, maximize, device, algorithm)
                    for b in range(c.shape[0]):
                        check_optimal(device, algorithm, c[b], cols[b], maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_solver_families_optimal(device, algorithm):
    # The batches the CUDA kernel is checked on against its twin (test_lsa_cuda, the emulator):
    # every solver must be optimal on them as well.
    for cost, mx in solver_families(torch.Generator().manual_seed(8), large=True):
        cols = solve(cost, mx, device, algorithm)
        for k in range(cost.shape[0]):
            check_optimal(device, algorithm, cost[k].double(), cols[k], mx)


def test_auction_pools_past_their_cap():
    # At most 1,024 pools a problem (auction.h, kMaxPools: their state sits in the kernel's shared
    # memory); the rows of groups past that bid alone. 1,050 pairs of equal rows, integer costs
    # (exact): the last 27 pairs are past the cap.
    g = torch.Generator().manual_seed(5)
    cost = torch.randint(0, 1000, (1, 1050, 2100), generator=g).double().repeat_interleave(2, 1)
    for maximize in (False, True):
        cols = ata_ext.linear_sum_assignment(cost, maximize, algorithm="auction")
        assert objective(cost[0], cols[0]) == scipy_objective(cost[0], maximize)


def test_auction_turns_equal_columns_into_rows():
    # A square problem whose columns repeat more than its rows is solved transposed (auction.h,
    # "Orientation"): the same levels, rounds and answer (inverted) as its transpose, which is
    # solved as given, wherever neither ends at its first choices (which are each orientation's
    # own). Equal columns in groups, some flat columns, some forbidden pairs, some equal rows too
    # (fewer than the columns), integer costs with ties everywhere.
    from ata_ext.testing import auction_rounds

    def repeats(cost):  # per problem: rows less their distinct classes, every flat row one class
        out = []
        for p in cost:
            lines = ["flat" if row.isfinite().all() and (row == row[0]).all() else tuple(row.tolist()) for row in p]
            out.append(len(lines) - len(set(lines)))
        return torch.tensor(out)

    g = torch.Generator().manual_seed(9)
    compared = 0
    for k, n in enumerate((3, 8, 12, 30, 64)):
        proto = torch.randint(0, 5, (8, n, n // 3), generator=g).double()
        group = torch.randint(0, n // 3, (8, 1, n), generator=g)
        cost = proto.gather(2, group.expand(-1, n, -1)).clone()
        cost[:, :, 1::7] = 2.0  # flat columns
        cost[:, n // 2 :: 6] = cost[:, n // 2 : n // 2 + 1]  # equal rows
        if k % 2:  # the first quarter of the rows cannot take group 0 (as a group: its columns stay equal)
            cost[(torch.arange(n)[:, None] < n // 4) & (group == 0)] = float("inf")
        for mx in (False, True):
            c = torch.where(cost.isinf(), -cost, cost) if mx else cost
            cols = ata_ext.linear_sum_assignment(c, mx, algorithm="auction")
            rows = ata_ext.linear_sum_assignment(c.mT, mx, algorithm="auction")
            counts, counts_t = auction_rounds(c, mx), auction_rounds(c.mT, mx)
            bid = (counts.sum(-1) > 0) & (counts_t.sum(-1) > 0) & (repeats(c.mT) > repeats(c))
            assert torch.equal(counts[bid], counts_t[bid]), (n, mx)
            assert torch.equal(cols[bid].argsort(-1), rows[bid]), (n, mx)
            compared += int(bid.sum())
            for b in range(c.shape[0]):
                assert_optimal(c[b], cols[b], mx, algorithm="auction")
    assert compared >= 40


def test_auction_last_bidders_by_path():
    # The last one or two bidders of a phase (rows, or a pool with one member unassigned), or up to
    # eight once their count has stalled for 16 rounds, are placed by shortest augmenting paths
    # (auction.h, "Last bidders"): each settles a column a pass, so at most n + 1 passes a bidder,
    # where a single-bid chain can revisit rows without bound. The price update after each search
    # is what keeps every row within eps of its best, which the optimum needs: square problems
    # large enough for long searches, of several kinds, against scipy (test_auction_keeps_eps_cs
    # checks the invariant itself).
    from ata_ext.testing import auction_rounds, detr_costs, point_distances

    g = torch.Generator().manual_seed(11)
    n = 160
    points = point_distances(24, n, generator=g)
    forbidden = torch.rand(24, n, n, generator=g)
    forbidden[torch.rand(forbidden.shape, generator=g) < 0.3] = float("inf")
    forbidden[:, range(n), range(n)] = 0.5  # feasible
    kinds = [
        (torch.rand(48, n, n, generator=g), False),
        (torch.randint(0, 100, (24, n, n), generator=g).float(), True),  # ties
        (points, False),
        (forbidden, False),
        (1 + 1e-9 * torch.rand(8, n, n, generator=g).double(), True),  # tiny gaps
    ]
    for k, (cost, mx) in enumerate(kinds):
        counts = auction_rounds(cost, mx)
        # Phases: at most 10 (9, and one restart from the start prices), each with at most eight
        # searches of at most n + 1 passes (one for the bidder's best value, one a settled column).
        assert int(counts[:, 1].max()) <= 10 * 8 * (n + 2), cost.dtype
        assert_optimal(cost, ata_ext.linear_sum_assignment(cost, mx, algorithm="auction"), mx, algorithm="auction")
        if k == 2:
            # Distances between points: a handful of bidders displace one another round after round
            # until the stalled ones are searched for. Rounds in which several rows bid: 171 on
            # average over these 24 problems (479 when only the last two were searched for).
            assert float(counts[:, 0].float().mean()) < 250, counts[:, 0].float().mean()
    # Uniform random 196 x 196, rounds with several bidders and search passes: 386 on average over
    # these 64 problems, the slowest 666 (369 and 584 searching only for the last two bidders;
    # with single-bid chains in the searches' place, 519 and 969; the chains of the Euclidean
    # batch above reached 4,393 steps).
    counts = auction_rounds(torch.rand(64, 196, 196, generator=g)).sum(-1)
    assert float(counts.float().mean()) < 420 and int(counts.max()) < 800
    # With pools: DETR-like 300 x 50 (the dummies' pool; chains: 864 on average, the slowest 2,465)
    # and 196 x 196 whose first 10 rows and columns are equal (a pool of rows fighting over equal
    # columns; chains: 6,363 and 13,525); the searches pass over the pools' own columns.
    g = torch.Generator().manual_seed(21)
    detr = auction_rounds(detr_costs(16, 300, 50, 0.1, generator=g)).sum(-1).float()
    dup = torch.rand(16, 196, 196, generator=g)
    dup[:, :10] = dup[:, :1]
    dup[:, :, :10] = dup[:, :, :1]
    dup = auction_rounds(dup).sum(-1).float()
    assert float(detr.mean()) < 350 and float(detr.max()) < 800, (detr.mean(), detr.max())  # 234, 432
    # 831 and 1,229: stalled bidders' searches trade rounds for passes here (564 and 746 searching
    # only for the last two; by the model in auction.h 1.25 and 1.67 ms against 1.11 and 1.73).
    assert float(dup.mean()) < 1000 and float(dup.max()) < 1500, (dup.mean(), dup.max())


def test_auction_keeps_eps_cs():
    # Counting rounds, the twin also checks eps-complementary slackness at every phase's end (every
    # row, and every pool, holds columns within eps of its best), on which the rounds, the pools'
    # bids and the path searches all rest, and raises where it fails: a check of the logic that an
    # optimal answer alone can miss (the searches once left some columns' prices behind, and the
    # answers stayed optimal on every input tried). Every family and fuzzed kind, and rectangular
    # problems with equal rows and columns, flat rows and DETR-like costs.
    from ata_ext.testing import auction_rounds, detr_costs

    g = torch.Generator().manual_seed(12)
    batches = list(solver_families(g)) + list(random_problems(seed=13, count=60))
    for n, m in ((18, 42), (68, 102), (111, 60), (40, 40)):
        c = torch.rand(8, n, m, generator=g)
        c[:, : n // 4] = c[:, :1]
        c[:, :, : m // 4] = c[:, :, :1]
        c[:, -1] = 0.3
        batches += [(c, False), (c.double(), True), (detr_costs(8, n, m, 0.1, generator=g), False)]
    for cost, mx in batches:
        try:
            ata_ext.linear_sum_assignment(cost, mx, algorithm="auction")
        except ValueError:  # invalid or infeasible: no phase to check
            continue
        auction_rounds(cost, mx)  # raises if eps-CS fails


def test_auction_round_counts():
    # The twin counts the kernel's rounds (ata_ext.testing.auction_rounds): the shortcuts of
    # auction.h must keep doing their job. Video-like costs end at their first choices, before any
    # round; rows whose values tie bid on distinct columns, and the solve ends in its first round;
    # the dummies' pool keeps very rectangular problems to a few rounds (one by one they took
    # thousands).
    from ata_ext.testing import auction_rounds, detr_costs

    g = torch.Generator().manual_seed(1)
    assert torch.equal(auction_rounds(video_similarity(16, 196, generator=g), maximize=True),
                       torch.zeros(16, 2, dtype=torch.long))
    tied = torch.ones(2, 40, 40)
    tied[:, range(40), range(40)] = float("inf")
    assert torch.equal(auction_rounds(tied), torch.tensor([[1, 0]]).expand(2, 2))
    for shape in ((64, 7, 100), (64, 100, 7)):
        assert int(auction_rounds(torch.rand(*shape, generator=g)).sum(-1).max()) < 50
    # Flat rows (one value in every column) bid with the dummies' pool (auction.h, "Flat rows").
    # When every row is flat nobody bids: 0 rounds (with lowest-index-first bids a constant 40 x 40
    # took 40 rounds, 300 identical queries x 50 targets about 13,800).
    flat = [torch.full((2, 40, 40), 3.0), torch.rand(2, 1, 50, generator=g).expand(-1, 300, -1),
            torch.rand(2, 196, 1, generator=g).expand(-1, -1, 196), torch.rand(2, 1, 7, generator=g).expand(-1, 20, -1)]
    for cost in flat:
        assert torch.equal(auction_rounds(cost), torch.zeros(2, 2, dtype=torch.long)), cost.shape
    # Some rows flat: zero tokens in video-like similarities (their rows and columns all 0), and
    # DETR-like costs padded with zero columns (README, "Problems of different sizes"). Bidding one
    # by one, such rows took about 2,000 rounds and steps on average, the slowest over 5,000.
    zeros = video_similarity(16, 196, generator=g)
    zeros[:, :14] = 0
    zeros[:, :, :14] = 0
    padded = detr_costs(16, 100, 30, 0.1, generator=g)
    padded[:, :, 10:] = 0
    for cost, mx in ((zeros, True), (padded, False)):
        counts = auction_rounds(cost, maximize=mx).sum(-1).float()
        assert float(counts.mean()) < 200 and float(counts.max()) < 1000, counts
    # Equal rows bid as one pool a group (auction.h, "Pools"); one by one they fought for the same
    # columns eps at a time. Half the rows of 196 x 196 equal: 387 rounds and steps on average
    # (63,028 one by one); groups of 4 equal rows 300 (2,968); a flat region of 40 equal tokens in
    # a video-like frame 2 (3,626); a 200 x 100 problem whose columns come in groups of 5, 53
    # (1,270); a square problem of equal rows 0 (2).
    half = torch.rand(16, 196, 196, generator=g)
    half[:, 1:98] = half[:, :1]
    groups = torch.rand(16, 49, 196, generator=g).repeat_interleave(4, 1)
    sky = video_similarity(16, 196, generator=g, repeated=40)
    tall = torch.rand(16, 200, 20, generator=g).repeat_interleave(5, 2)
    for cost, mx, mean in ((half, False, 800), (groups, False, 600), (sky, True, 10), (tall, False, 150)):
        counts = auction_rounds(cost, maximize=mx).sum(-1).float()
        assert float(counts.mean()) < mean, (cost.shape, counts)
    equal = torch.rand(2, 1, 40, generator=g).expand(-1, 40, -1)
    assert torch.equal(auction_rounds(equal), torch.zeros(2, 2, dtype=torch.long))
    # Equal columns of a square problem: solved transposed, as equal rows (auction.h,
    # "Orientation", where 64 such problems took 583 and 542 rounds and steps on average with
    # their first 10 or 40 columns equal, 5,831 and 25,477 as given; with 10 flat columns 440 and 6,145;
    # a scene cut, a frame with a flat region of 40 equal tokens after one without, 1 and 3,517).
    for copies in (10, 40):
        cols = torch.rand(16, 196, 196, generator=g)
        cols[:, :, 1:copies] = cols[:, :, :1]
        assert float(auction_rounds(cols).sum(-1).float().mean()) < 1200, copies
    cut = video_similarity(16, 196, generator=g, repeated=40).mT
    assert float(auction_rounds(cut, maximize=True).sum(-1).float().mean()) < 10
    flat = torch.rand(16, 196, 196, generator=g)
    flat[:, :, :10] = torch.linspace(0.3, 0.7, 10)  # flat columns, each of its own value
    assert float(auction_rounds(flat).sum(-1).float().mean()) < 1200
    # Exact ties (auction.h, "Ties"): each row ranks equal values from its own column. Rows equal
    # but for a forbidden diagonal are not flat; they bid on distinct columns and the solve ends in
    # its first round (lowest-index-first: all on column 0 or 1, 40 rounds).
    diag = torch.full((2, 40, 40), 3.0)
    diag[:, range(40), range(40)] = float("inf")
    assert torch.equal(auction_rounds(diag), torch.tensor([[1, 0]]).expand(2, 2))
    uniform = auction_rounds(torch.rand(64, 196, 196, generator=g)).float().mean(0)
    # A few hundred rounds and chain steps; start prices (auction.h) brought this batch's average
    # from 641 (from zero prices) to 478.
    assert 100 < float(uniform.sum()) < 560
    # Forbidden pairs: eps starts from the finite benefits' range, not from one that counts the
    # forbidden level (auction.h, the schedule): 100 x 100 with 20% forbidden took 281 Jacobi
    # rounds on average when it did, 135 now.
    g4 = torch.Generator().manual_seed(4)
    forbidden = torch.rand(16, 100, 100, generator=g4)
    forbidden[torch.rand(forbidden.shape, generator=g4) < 0.2] = float("inf")
    forbidden[:, range(100), range(100)] = 0.5  # feasible
    assert float(auction_rounds(forbidden)[:, 0].float().mean()) < 200
    counts = auction_rounds(torch.rand(2, 3, 9, 9, generator=g).double(), maximize=True)
    assert counts.shape == (2, 3, 2) and counts.dtype == torch.long
    torch.library.opcheck(torch.ops.ata_ext.lsa_auction_rounds.default, (torch.rand(3, 6, 5, generator=g), False))
    bad = torch.rand(2, 4, 4, generator=g)
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="lsa_auction_rounds"):
        auction_rounds(bad)
