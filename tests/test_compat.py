"""ata_ext.compat.linear_sum_assignment behaves like scipy.optimize.linear_sum_assignment, and
ata_ext.compat.lapjv like lapx's lap.lapjv."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import linear_sum_assignment as scipy_lsa

import ata_ext.testing
from ata_ext.compat import lapjv
from ata_ext.compat import linear_sum_assignment as lsa

inf, nan = np.inf, np.nan

# scipy's documented and tested cases: rectangular both ways, maximize, forbidden, constant, empty.
GOOD = [
    [[4, 1, 3], [2, 0, 5], [3, 2, 2]],
    [[400, 150, 400], [400, 450, 600], [300, 225, 300]],
    [[400, 150, 400, 1], [400, 450, 600, 2], [300, 225, 300, 3]],
    [[10, 10, 8], [9, 8, 1], [9, 7, 4]],
    [[10, 10, 8, 11], [9, 8, 1, 1], [9, 7, 4, 10]],
    [[10, float(inf), float(inf)], [float(inf), float(inf), 1], [float(inf), 7, float(inf)]],
    [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    [[1, 2], [3, 4], [5, 6], [0, 0]],
    np.zeros((0, 3)),
    np.zeros((3, 0)),
    np.zeros((0, 0)),
    np.array([[True, False], [False, True]]),
    np.matrix([[1, 2], [3, 4]]),
    np.arange(12.0).reshape(3, 4)[:, ::-1],
    np.random.default_rng(0).random((7, 11)),
    np.random.default_rng(1).integers(0, 3, (9, 6)),
    [["4", "1", "3"], ["2", "0", "5"]],  # a list goes through float(), as in scipy
]


@pytest.mark.parametrize("case", range(len(GOOD)))
@pytest.mark.parametrize("maximize", [False, True])
def test_same_answer_as_scipy(case, maximize):
    a = GOOD[case]
    if maximize and np.isinf(np.asarray(a, dtype=float)).any():
        a = np.where(np.isinf(np.asarray(a, dtype=float)), -inf, np.asarray(a, dtype=float))
    r, c = lsa(a, maximize=maximize)
    rs, cs = scipy_lsa(a, maximize=maximize)
    arr = np.asarray(a, dtype=float)
    assert r.dtype == rs.dtype and c.dtype == cs.dtype
    assert np.array_equal(r, np.sort(r)) and len(r) == len(rs)
    assert arr[r, c].sum() == pytest.approx(arr[rs, cs].sum(), rel=1e-12)


def test_tensor_input():
    """Tensors as DETR's matcher passes them (float32 column blocks of one matrix, each a strided
    view), one that requires grad, and a lazily negated view: scipy's optimum on their values."""
    C = torch.rand(100, 12)
    views = list(C.split([5, 7], -1)) + [torch.rand(5, 7, dtype=torch.float64, requires_grad=True),
                                         torch._neg_view(torch.rand(6, 6, dtype=torch.float64))]
    for t in views:
        a = t.detach().resolve_neg().numpy()
        r, c = lsa(t)
        rs, cs = scipy_lsa(a)
        assert isinstance(r, np.ndarray) and a[r, c].sum() == pytest.approx(a[rs, cs].sum(), rel=1e-12)


def _problems(seed):
    """Problems of every orientation and kind: uniform, integer ties, forbidden pairs, video-like
    (whose rows end at their first choices) and transposed views."""
    rng = np.random.default_rng(seed)
    for n, m in [(1, 1), (2, 7), (7, 2), (5, 5), (20, 20), (100, 5), (5, 100), (60, 61), (64, 64)]:
        yield rng.random((n, m))
        yield rng.integers(0, 3, (n, m)).astype(np.float64)
        c = rng.random((n, m))
        c[rng.random((n, m)) < 0.2] = inf
        c[np.arange(min(n, m)), np.arange(min(n, m))] = rng.random(min(n, m))  # stays feasible
        yield c
        yield rng.random((m, n)).T  # not C-contiguous: converted
    yield ata_ext.testing.video_similarity(1, 49, generator=torch.Generator().manual_seed(seed))[0].double().numpy()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("maximize", [False, True])
def test_same_pairs_as_the_op(seed, maximize):
    """The drop-in calls the CPU solver on the array's memory (not through the op): same pairs as
    the op, in scipy's form, and scipy's optimum."""
    for a in _problems(seed):
        if maximize:
            a = np.where(np.isinf(a), -inf, a)
        r, c = lsa(a, maximize=maximize)
        cols = ata_ext.linear_sum_assignment(torch.from_numpy(np.ascontiguousarray(a)), maximize=maximize).numpy()
        assert r.dtype == c.dtype == np.int64 and np.array_equal(r, np.flatnonzero(cols >= 0))
        assert np.array_equal(c, cols[r])
        rs, cs = scipy_lsa(a, maximize=maximize)
        assert a[r, c].sum() == pytest.approx(a[rs, cs].sum(), rel=1e-12)


def test_threads_solve_at_once():
    """The solver runs without the GIL, on per-thread scratch: threads solving at the same time
    get the answers they get alone."""
    problems = [a for seed in range(4) for a in _problems(seed)]
    alone = [lsa(a) for a in problems]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lsa, problems * 4))
    for (r, c), (r2, c2) in zip(alone * 4, together):
        assert np.array_equal(r, r2) and np.array_equal(c, c2)


def test_large_problem_memory_is_returned(rss_mib):
    """The solver's copy of a large problem is not kept in the caller's thread after the call (a
    loop of small ones keeps its scratch): one 2100 x 2100 solve leaves the resident set less than
    half its 34 MiB float64 copy larger (it stayed 34 MiB larger when kept). The copy is above
    glibc's largest mmap threshold (32 MiB), so once freed it goes back to the system at once."""
    a = np.random.default_rng(0).random((2100, 2100))
    lsa(a[:50, :50])  # the thread's small scratch, allocated before the baseline
    before = rss_mib()
    r, c = lsa(a)
    assert len(r) == 2100 and rss_mib() - before < a.nbytes / 2**20 / 2


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("args, err, msg", [
    ((np.ones((2, 2), np.float32), np.empty(2, np.int64), np.empty(2, np.int64), False, None), TypeError, "cost"),
    ((np.ones((2, 4))[:, ::2], np.empty(2, np.int64), np.empty(2, np.int64), False, None), ValueError, "contiguous"),
    ((np.ones(4), np.empty(2, np.int64), np.empty(2, np.int64), False, None), TypeError, "cost"),
    ((np.ones((2, 2)), np.empty(2, np.int32), np.empty(2, np.int64), False, None), TypeError, "rows"),
    ((np.ones((2, 2)), np.empty(2, np.int64), np.empty(2, np.float64), False, None), TypeError, "cols"),
    ((np.ones((2, 2)), np.empty(1, np.int64), np.empty(2, np.int64), False, None), ValueError, "min"),
    ((np.ones((2, 2)), np.empty(2, np.int64), np.empty(2, np.int64), False, nan), ValueError, "finite"),
    ((np.ones((2, 2)), np.empty(2, np.int64), np.empty(2, np.int64), False, "1"), TypeError, "real number"),
    ((np.ones((2, 2)), np.empty(2, np.int64), _read_only(np.zeros(2, np.int64)), False, None), ValueError, "read-only"),
])
def test_solver_entry_rejects_bad_buffers(args, err, msg):
    """The drop-ins' way into the solver (ata_ext._C.lsa_pairs) raises on what would make it read
    or write the wrong memory, instead of crashing."""
    with pytest.raises(err, match=msg):
        ata_ext._C.lsa_pairs(*args)


BAD = [
    ([1, 2, 3], False),
    (np.zeros((2, 2, 2)), False),
    (5, False),
    (None, False),
    ([[nan, 1], [1, 1]], False),
    ([[-inf, 1], [1, 1]], False),
    ([[inf, 1], [1, 1]], True),
    ([[inf, inf], [1, 1]], False),
    ([[-inf, -inf], [1, 1]], True),
    (np.array([[1j, 1], [1, 1]]), False),
    (np.array([["a", "b"], ["c", "d"]]), False),
    (np.array([[1, 2], [3, 4]], dtype=object), False),
    ([[1, 2], [3]], False),
    # Not arrays: converted entry by entry with float(), not by the 'safe' cast.
    ([[1j, 1], [1, 1]], False),
    ([["a", "b"], ["c", "d"]], False),
    ("abc", False),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_same_errors_as_scipy(case):
    a, maximize = BAD[case]
    with pytest.raises(Exception) as ours:
        lsa(a, maximize=maximize)
    with pytest.raises(Exception) as theirs:
        scipy_lsa(a, maximize=maximize)
    assert ours.type is theirs.type
    assert str(ours.value) == str(theirs.value)


# ata_ext.compat.lapjv against lapx's lap.lapjv (0.11), the call multi-object trackers make.
@pytest.fixture
def lap():
    return pytest.importorskip("lap")


def _lapjv_cases():
    g = np.random.default_rng(7)
    track = lambda n, m, seed: ata_ext.testing.tracking_costs(1, n, m, torch.Generator().manual_seed(seed))[0].double().numpy()
    ints = g.integers(0, 5, (12, 9)).astype(float)
    forbidden = g.random((10, 10))
    forbidden[g.random((10, 10)) < 0.4] = inf
    forbidden[3] = inf  # a row with no allowed pair: only a cost limit makes it solvable
    return [
        # (cost, extend_cost, cost_limit, tie_free: the optimum is unique, so the answers are equal)
        (g.random((8, 8)), False, inf, True),
        (g.random((30, 30)), True, inf, True),
        (g.random((6, 11)), True, inf, True),
        (g.random((11, 6)), True, inf, True),
        (track(30, 25, 0), False, 0.05, True),
        (track(25, 30, 1), True, 0.05, True),
        (track(40, 40, 2), False, 0.1, True),
        (track(20, 20, 3), True, 10.0, True),  # a limit that cuts nothing
        (g.random((7, 9)), False, -1.0, True),  # a limit below every cost: nothing matched
        (ints, True, inf, False),
        (ints, False, 2.0, False),  # pairs at the limit (never matched) and ties
        (ints, True, 2.5, False),
        (forbidden, False, 0.5, False),
        (np.full((5, 5), 3.0), False, inf, False),
        (np.full((5, 4), 3.0), False, 3.0, False),  # every pair at the limit
        (g.random((6, 6)).astype(np.float32), False, inf, True),
        (g.integers(-50, 50, (9, 9)), False, inf, False),
        (np.eye(4, dtype=bool), False, inf, False),
        (g.random((1, 1)), False, inf, True),
        (np.zeros((0, 3)), True, inf, True),
        (np.zeros((3, 0)), False, 1.0, True),
        (np.zeros((0, 0)), False, inf, True),
    ]


LAPJV = _lapjv_cases()


@pytest.mark.parametrize("case", range(len(LAPJV)))
def test_lapjv_same_answer_as_lapx(case, lap):
    a, extend, limit, tie_free = LAPJV[case]
    total, x, y = lapjv(a, extend_cost=extend, cost_limit=limit)
    total_l, x_l, y_l = lap.lapjv(np.asarray(a, dtype=np.float64), extend_cost=extend, cost_limit=limit)
    arr = np.asarray(a, dtype=np.float64)
    n, m = arr.shape
    assert x.dtype == y.dtype == np.int32 and x.shape == (n,) and y.shape == (m,)
    rows = np.flatnonzero(x >= 0)
    assert np.array_equal(y[x[rows]], rows) and (y >= 0).sum() == len(rows)  # y is x's inverse
    assert isinstance(total, float) and total == arr[rows, x[rows]].sum()
    if limit == inf:
        assert len(rows) == min(n, m)
    else:
        assert (arr[rows, x[rows]] < limit).all()
    # The objective lapx minimises: the matched costs, each less the limit when there is one.
    shift = 0.0 if limit == inf else limit
    rows_l = np.flatnonzero(x_l >= 0)
    ours, theirs = (arr[rows, x[rows]] - shift).sum(), (arr[rows_l, x_l[rows_l]] - shift).sum()
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)
    if tie_free:
        assert np.array_equal(x, x_l) and np.array_equal(y, y_l) and total == pytest.approx(total_l, rel=1e-12)
    x2, y2 = lapjv(a, extend_cost=extend, cost_limit=limit, return_cost=False)
    assert np.array_equal(x2, x) and np.array_equal(y2, y)


def test_lapjv_tracker_loop(lap):
    """A tracker's association step (as ByteTrack writes it) gives the same matches and unmatched
    tracks and detections with lapjv from here as with lapx's, frame after frame."""
    for seed in range(20):
        cost = ata_ext.testing.tracking_costs(1, 12 + seed, 10 + seed % 7, torch.Generator().manual_seed(seed))[0]
        outs = []
        for solve in (lapjv, lap.lapjv):
            _, x, y = solve(cost.double().numpy(), extend_cost=True, cost_limit=0.05)
            matches = [(i, j) for i, j in enumerate(x) if j >= 0]
            outs.append((matches, np.where(x < 0)[0].tolist(), np.where(y < 0)[0].tolist()))
        assert outs[0] == outs[1]
    _, x, _ = lapjv(torch.rand(5, 3), extend_cost=True)  # a tensor works too
    assert sorted(x[x >= 0].tolist()) == [0, 1, 2]


LAPJV_BAD = [
    # Raised as lapx raises them: same type, same message.
    (np.random.rand(3, 4), dict()),
    (np.zeros((2, 2, 2)), dict(cost_limit=1.0)),
    (np.zeros(3), dict(extend_cost=True)),
    (np.eye(3), dict(cost_limit=nan)),
    (np.eye(3), dict(cost_limit=-inf)),
]


@pytest.mark.parametrize("case", range(len(LAPJV_BAD)))
def test_lapjv_same_errors_as_lapx(case, lap):
    a, kw = LAPJV_BAD[case]
    with pytest.raises(Exception) as ours:
        lapjv(a, **kw)
    with pytest.raises(Exception) as theirs:
        lap.lapjv(a, **kw)
    assert ours.type is theirs.type and str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("a, kw, err, msg", [
    # lapx's answer is undefined for these (its docs); ours is an error, never garbage.
    ([[nan, 1], [1, 1]], dict(), ValueError, "matrix contains invalid numeric entries"),
    ([[-inf, 1], [1, 1]], dict(cost_limit=5.0), ValueError, "matrix contains invalid numeric entries"),
    ([[1, inf], [inf, inf]], dict(), ValueError, "cost matrix is infeasible"),
    ([[1, inf, inf], [inf, inf, inf]], dict(extend_cost=True), ValueError, "cost matrix is infeasible"),
    ([[1, 2], [3, 4]], dict(cost_limit="1"), TypeError, "cost_limit must be a real number, got str"),
    (np.array([[1j, 1], [1, 1]]), dict(), TypeError, "Cannot cast"),
])
def test_lapjv_errors_where_lapx_is_undefined(a, kw, err, msg):
    with pytest.raises(err, match=msg):
        lapjv(a, **kw)


def test_lapjv_limit_makes_infeasible_solvable():
    """With a cost limit a row with no allowed pair stays unmatched, and the rest are matched."""
    total, x, y = lapjv([[1, inf], [inf, inf]], cost_limit=5.0)
    assert total == 1.0 and x.tolist() == [0, -1] and y.tolist() == [0, -1]


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=10),
        elements=st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6), st.just(inf), st.just(nan)),
    ),
    st.booleans(),
)
def test_property_same_as_scipy(a, maximize):
    """On random small matrices with ties, forbidden pairs and NaN: the drop-in raises exactly
    where scipy does, with its message, and otherwise returns scipy's types, shapes and optimum."""
    if maximize:
        a = np.where(a == inf, -inf, a)
    try:
        rs, cs = scipy_lsa(a, maximize=maximize)
    except ValueError as e:
        with pytest.raises(ValueError, match=str(e)):
            lsa(a, maximize=maximize)
        return
    r, c = lsa(a, maximize=maximize)
    assert r.dtype == rs.dtype and c.dtype == cs.dtype and r.shape == rs.shape and c.shape == cs.shape
    assert np.array_equal(r, np.sort(r)) and len(set(c.tolist())) == len(c)
    assert a[r, c].sum() == pytest.approx(a[rs, cs].sum(), rel=1e-12, abs=1e-9)


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=10),
        elements=st.one_of(st.integers(-3, 3).map(float), st.floats(-5, 5), st.just(inf)),  # ties, forbidden pairs
    ),
    st.one_of(st.just(inf), st.integers(-3, 3).map(float), st.floats(-5, 5)),
)
def test_property_lapjv_objective_is_lapx(a, limit):
    """On random small matrices with ties and forbidden pairs, with or without a limit: lapjv's
    answer is consistent, every matched pair is allowed and below the limit, and its objective is
    lapx's (where lapx's answer is defined: a complete assignment exists, or there is a limit)."""
    lap = pytest.importorskip("lap")
    n, m = a.shape
    try:
        total, x, y = lapjv(a, extend_cost=True, cost_limit=limit)
    except ValueError as e:  # only for a problem with no complete assignment and no limit
        assert limit == inf and "infeasible" in str(e)
        return
    rows = np.flatnonzero(x >= 0)
    assert np.array_equal(y[x[rows]], rows) and (y >= 0).sum() == len(rows)
    assert np.isfinite(a[rows, x[rows]]).all() and total == a[rows, x[rows]].sum()
    shift = 0.0 if limit == inf else limit
    assert (a[rows, x[rows]] < limit).all() and (limit < inf or len(rows) == min(n, m))
    _, x_l, _ = lap.lapjv(a, extend_cost=True, cost_limit=limit)
    rows_l = np.flatnonzero(x_l >= 0)
    assert (a[rows, x[rows]] - shift).sum() == pytest.approx((a[rows_l, x_l[rows_l]] - shift).sum(), abs=1e-9)
