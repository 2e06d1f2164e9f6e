"""linear_sum_assignment against scipy: a table of devices x solvers x dtypes x inputs."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ata_ext
from ata_ext.testing import (FLOAT_DTYPES, INT_DTYPES, assert_optimal, devices, objective, random_problems,
                             solver_families, video_similarity)

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
    one_by_one = torch.stack([solve(c, algorithm=algorithm) for c in cost])
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            for _ in range(3):
                assert torch.equal(solve(cost, algorithm=algorithm), one_by_one)
    finally:
        torch.set_num_threads(threads)


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
        with pytest.raises(ValueError, match="infeasible"):
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
        with pytest.raises(ValueError, match="invalid numeric entries"):
            solve(cost, mx, device, algorithm)
        with pytest.raises(ValueError, match="problem 1 of the batch"):
            solve(torch.stack([torch.zeros(2, 2), cost]), mx, device, algorithm)


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


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_large_and_tie_heavy_terminate(device, algorithm):
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(1024, 1024, generator=g, dtype=torch.float64)
    check_optimal(device, algorithm, cost, solve(cost, device=device, algorithm=algorithm))
    # Massive ties at a size where a poorly guarded solver would crawl or loop.
    for c in (torch.zeros(300, 300), torch.randint(0, 2, (300, 300), generator=g).float()):
        check_optimal(device, algorithm, c, solve(c, device=device, algorithm=algorithm))


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
@pytest.mark.parametrize("kind", ["flat_sample_rows", "half_constant_rows", "random_cosine"])
def test_row_reduction_candidate_lists(device, algorithm, kind):
    """From n = 32 the JV row reduction scans short per-row candidate lists whose margin comes from
    five evenly spaced sample rows (README, "The CPU solver"). Inputs that break that estimate
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


def test_torch_compile_fullgraph():
    def f(c):
        return ata_ext.linear_sum_assignment(c * 2.0, maximize=True) + 1

    c = torch.rand(4, 10, 10)
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(c), f(c))


def test_auction_size_limit():
    with pytest.raises(ValueError, match="at most 65535"):
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
def test_random_problems_match_scipy(device, algorithm):
    # Fuzzing (ata_ext.testing.random_problems): random shapes, dtypes, senses and kinds of values,
    # forbidden pairs. Checked on the cost scaled by a power of two so that no objective overflows.
    for cost, maximize in random_problems(seed=11, count=150):
        cols = solve(cost, maximize, device, algorithm=algorithm)
        c = cost.double()
        finite = c[torch.isfinite(c)]
        shift = max(0, math.frexp(float(finite.abs().max()))[1] - 1000) if finite.numel() else 0
        check_optimal(device, algorithm, c * 2.0**-shift, cols, maximize)


@pytest.mark.parametrize("device,algorithm", SOLVERS, ids=SOLVER_IDS)
def test_solver_families_optimal(device, algorithm):
    # The batches the CUDA kernel is checked on against its twin (test_lsa_cuda, the emulator):
    # every solver must be optimal on them as well.
    for cost, mx in solver_families(torch.Generator().manual_seed(8), large=True):
        cols = solve(cost, mx, device, algorithm)
        for k in range(cost.shape[0]):
            check_optimal(device, algorithm, cost[k].double(), cols[k], mx)


def test_auction_round_counts():
    # The twin counts the kernel's rounds (ata_ext.testing.auction_rounds): the shortcuts of
    # auction.h must keep doing their job. Video-like costs end in their first round; the dummies'
    # pool keeps very rectangular problems to a few rounds (one by one they took thousands).
    from ata_ext.testing import auction_rounds, detr_costs

    g = torch.Generator().manual_seed(1)
    assert torch.equal(auction_rounds(video_similarity(16, 196, generator=g), maximize=True),
                       torch.tensor([[1, 0]]).expand(16, 2))
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
    # Exact ties (auction.h, "Ties"): each row ranks equal values from its own column. Rows equal
    # but for a forbidden diagonal are not flat; they bid on distinct columns and the solve ends in
    # its first round (lowest-index-first: all on column 0 or 1, 40 rounds).
    diag = torch.full((2, 40, 40), 3.0)
    diag[:, range(40), range(40)] = float("inf")
    assert torch.equal(auction_rounds(diag), torch.tensor([[1, 0]]).expand(2, 2))
    uniform = auction_rounds(torch.rand(64, 196, 196, generator=g)).float().mean(0)
    assert 100 < float(uniform.sum()) < 1500  # a few hundred rounds and chain steps
    counts = auction_rounds(torch.rand(2, 3, 9, 9, generator=g).double(), maximize=True)
    assert counts.shape == (2, 3, 2) and counts.dtype == torch.long
    torch.library.opcheck(torch.ops.ata_ext.lsa_auction_rounds.default, (torch.rand(3, 6, 5, generator=g), False))
    bad = torch.rand(2, 4, 4, generator=g)
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="lsa_auction_rounds"):
        auction_rounds(bad)
