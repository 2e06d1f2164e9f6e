"""pytest-benchmark microbenchmarks: ata_ext vs a scipy loop vs lapx, N in 49/196/784, batch 1 to
1024, DETR-like 64 x (100 queries x 30 targets, 300 x 50), one 3072 x 3072 problem of small
integers, 64 x 196 x 196 point distances, 64 x 195 x 196 uniform, problems of different sizes,
partial assignment with a cost limit (tracking-like), and loops of one call per problem (the scipy
drop-in against scipy), CPU (and CUDA when present). Each benchmark checks its answer against
scipy first.

    pytest benchmarks/test_bench_lsa.py --benchmark-group-by=param:n,param:batch
"""
import numpy as np
import pytest
import torch

import ata_ext
from ata_ext.testing import (detr_costs, devices, point_distances, scipy_limited_assignment, stream_size,
                             tracking_costs, video_similarity)

# (kind, N, M, batch): square uniform and video-like, then DETR-like (queries x targets, clustered
# predictions: ata_ext.testing.detr_costs with spread 0.1).
CASES = [(k, n, n, b) for k in ("uniform", "video") for n in (49, 196, 784) for b in (1, 8, 64, 224, 1024)
         if b * n * n <= 64 * 784 * 784]
CASES += [("detr", 100, 30, 64), ("detr", 300, 50, 64)]
# One large tie-heavy problem (integers in [0, 1000)), where lapx's order of scanning equal
# distances once made it 5x faster than ata_ext (docs/solvers.md, "The CPU solver").
CASES += [("integers", 3072, 3072, 1)]
# Euclidean distances between random points (tracking, point-set matching), the family with the
# longest Dijkstra searches, and a problem one row short of square (padded with a flat row).
CASES += [("points", 196, 196, 64), ("uniform", 195, 196, 64)]


def problems(kind, n, m, batch, seed=0):
    g = torch.Generator().manual_seed(n * 7919 + batch + 1_000_003 * seed)
    if kind == "video":
        return video_similarity(batch, n, generator=g), True
    if kind == "detr":
        return detr_costs(batch, n, m, 0.1, generator=g), False
    if kind == "integers":
        return torch.randint(0, 1000, (batch, n, m), generator=g).double(), False
    if kind == "points":
        return point_distances(batch, n, m, generator=g), False
    return torch.rand(batch, n, m, generator=g), False


def synced(fn, cuda):
    """fn, waiting for the device after each call when it runs on CUDA (so the time is the work's)."""
    def run():
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        return out

    return run


def scipy_objectives(cost, mx):
    from scipy.optimize import linear_sum_assignment

    c = cost.double().numpy()
    return np.array([x[linear_sum_assignment(x, maximize=mx)].sum() for x in c])


def assert_matches_scipy(cost, cols, mx):
    c = cost.double().numpy()
    cols = cols.cpu().numpy()
    got = np.array([c[b][cols[b] >= 0, cols[b][cols[b] >= 0]].sum() for b in range(c.shape[0])])
    ref = scipy_objectives(cost, mx)
    assert np.allclose(got, ref, rtol=0, atol=1e-9 * c.shape[1] * np.abs(c).max())


@pytest.mark.parametrize("kind,n,m,batch", CASES)
@pytest.mark.parametrize("solver", ["ata_ext"] + [f"ata_ext-{d}" for d in devices() if d != "cpu"] + ["scipy", "lapx"])
def test_lsa(benchmark, solver, kind, n, m, batch):
    # Each round solves a stream of different batches, one call each (ata_ext.testing.stream_size:
    # one batch solved over and over runs faster than new ones), so the times are of a pass.
    made = [problems(kind, n, m, batch, seed) for seed in range(stream_size(batch, n, m))]
    costs, mx = [c for c, _ in made], made[0][1]
    benchmark.group = f"{kind} {n}x{m} batch={batch}, a pass over {len(costs)} batches"
    if solver == "scipy":
        from scipy.optimize import linear_sum_assignment

        arrays = [c.numpy() for c in costs]
        benchmark(lambda: [[linear_sum_assignment(x, maximize=mx) for x in a] for a in arrays])
        return
    if solver == "lapx":
        lap = pytest.importorskip("lap")
        arrays = [np.ascontiguousarray(-c.numpy() if mx else c.numpy()) for c in costs]
        # extend_cost pads rectangular problems (square ones are left as they are).
        solve = lambda a: lap.lapjvx_batch(a, extend_cost=True, return_cost=False, n_threads=torch.get_num_threads())  # noqa: E731
        for c, a in zip(costs, arrays):
            rows, cols = solve(a)
            got = np.full((batch, n), -1)
            for b in range(batch):
                got[b][rows[b]] = cols[b]
            assert_matches_scipy(c, torch.from_numpy(got), mx)
        benchmark(lambda: [solve(a) for a in arrays])
        return
    dev = [c.to("cuda" if solver.endswith("cuda") else "cpu") for c in costs]
    for c, d in zip(costs, dev):
        assert_matches_scipy(c, ata_ext.linear_sum_assignment(d, maximize=mx), mx)
    benchmark(synced(lambda: [ata_ext.linear_sum_assignment(d, maximize=mx) for d in dev], dev[0].is_cuda))


@pytest.mark.parametrize("solver", ["ata_ext ragged", "ata_ext loop"] + [f"ata_ext-{d} ragged" for d in devices() if d != "cpu"]
                         + ["scipy"])
def test_lsa_ragged(benchmark, solver):
    # Problems of different sizes: 64 DETR-like images, 300 queries x 1-50 targets each.
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(3)
    sizes = torch.randint(1, 51, (64,), generator=g).tolist()
    full = detr_costs(64, 300, 50, 0.1, generator=g)
    costs = [full[k, :, :t] for k, t in enumerate(sizes)]
    benchmark.group = "detr ragged 64 x 300x(1-50)"
    ref = [c.double().numpy()[linear_sum_assignment(c.numpy())].sum() for c in costs]
    if solver == "scipy":
        arrays = [c.numpy() for c in costs]
        benchmark(lambda: [linear_sum_assignment(a) for a in arrays])
        return
    if solver == "ata_ext loop":
        cols = [ata_ext.linear_sum_assignment(c) for c in costs]
        got = [c.double()[(k >= 0).nonzero()[:, 0], k[k >= 0]].sum().item() for c, k in zip(costs, cols)]
        assert np.allclose(got, ref, rtol=0, atol=1e-9)
        benchmark(lambda: [ata_ext.linear_sum_assignment(c) for c in costs])
        return
    dev = [c.to("cuda" if "cuda" in solver else "cpu") for c in costs]
    from ata_ext.testing import tolerance

    for c, best, (r, k) in zip(costs, ref, ata_ext.linear_sum_assignment_ragged(dev)):
        got = c.double()[r.cpu(), k.cpu()].sum().item()
        assert abs(got - best) <= tolerance(c, "auction" if "cuda" in solver else "jv") + 1e-12
    benchmark(synced(lambda: ata_ext.linear_sum_assignment_ragged(dev), "cuda" in solver))


@pytest.mark.parametrize("batch,tracks,detections", [(1, 30, 25), (64, 50, 40)])
@pytest.mark.parametrize("solver", ["ata_ext"] + [f"ata_ext-{d}" for d in devices() if d != "cpu"]
                         + ["ata_ext-lapjv", "scipy", "lapx"])
def test_lsa_cost_limit(benchmark, solver, batch, tracks, detections):
    # Tracking-like association with cost_limit=0.05; scipy solves each problem extended with one
    # column of the limit per track (an exact construction; bench.py extends the shorter side, the
    # smallest one, which for 30 tracks x 25 detections is the detections), lapx loops its
    # lapjv(cost_limit=...), as trackers call it once per frame, and ata_ext-lapjv loops the
    # drop-in for it, ata_ext.compat.lapjv.
    from scipy.optimize import linear_sum_assignment

    limit = 0.05
    cost = tracking_costs(batch, tracks, detections, generator=torch.Generator().manual_seed(4))
    benchmark.group = f"tracking cost_limit {batch} x {tracks}x{detections}"
    c = cost.double().numpy()
    ref = [(x[scipy_limited_assignment(torch.from_numpy(x), limit)] - limit).sum() for x in c]

    def saving(cols):
        return [(x[np.flatnonzero(k >= 0), k[k >= 0]] - limit).sum() for x, k in zip(c, cols)]

    if solver == "scipy":
        ext = np.concatenate([c, np.full((batch, tracks, tracks), limit)], 2)
        solve = lambda: [linear_sum_assignment(e) for e in ext]  # noqa: E731
        cols = [np.where(k < detections, k, -1) for _, k in solve()]  # every row is matched, in order
        assert np.allclose(saving(cols), ref, rtol=0, atol=1e-9)
        benchmark(solve)
        return
    if solver in ("lapx", "ata_ext-lapjv"):
        lapjv = pytest.importorskip("lap").lapjv if solver == "lapx" else ata_ext.compat.lapjv
        solve = lambda: [lapjv(x, extend_cost=True, cost_limit=limit, return_cost=False)[0] for x in c]  # noqa: E731
        assert np.allclose(saving(solve()), ref, rtol=0, atol=1e-9)
        benchmark(solve)
        return
    dev = cost.to("cuda" if solver.endswith("cuda") else "cpu")
    tol = 1e-9 if dev.device.type == "cpu" else 1e-3 * tracks  # the auction's quantisation, loosely
    assert np.allclose(saving(ata_ext.linear_sum_assignment(dev, cost_limit=limit).cpu().numpy()), ref, rtol=0, atol=tol)
    benchmark(synced(lambda: ata_ext.linear_sum_assignment(dev, cost_limit=limit), dev.is_cuda))


@pytest.mark.parametrize("shape", ["5x5", "10x10", "20x20", "50x50", "100x100", "detr-100x5", "detr-100x20"])
@pytest.mark.parametrize("solver", ["ata_ext", "ata_ext-compat", "scipy"])
def test_lsa_single_problem(benchmark, solver, shape):
    # One problem a call, as code written against scipy calls it: what a call costs beyond the
    # solve (README, "Fixed cost of a call"). A loop over 64 different problems, because one
    # problem solved over and over is faster than a stream of different ones (the CPU's branch
    # predictor learns it: 20 x 20 in scipy took less than half the time). Uniform n x n costs as
    # float64 numpy arrays (tensors for ata_ext); and DETR's matcher's call as it makes it: one
    # batch's float32 cost matrix, 100 queries x every image's targets, split into one strided
    # column block per image, each passed as it is (clustered predictions).
    from scipy.optimize import linear_sum_assignment

    n, m = map(int, shape.split("-")[-1].split("x"))
    if shape.startswith("detr"):
        g = torch.Generator().manual_seed(m)
        inputs = list(ata_ext.testing.detr_costs(1, n, 64 * m, spread=0.1, generator=g)[0].split(m, -1))
        arrays = [c.double().numpy() for c in inputs]
    else:
        inputs = arrays = list(np.random.default_rng(n).random((64, n, n)))
    benchmark.group = f"one problem a call, 64 x {shape}"
    ref = [c[linear_sum_assignment(c)].sum() for c in arrays]
    if solver == "ata_ext":
        tensors = [torch.as_tensor(c) for c in inputs]
        solve = lambda: [ata_ext.linear_sum_assignment(t) for t in tensors]  # noqa: E731
        got = [c[np.flatnonzero(k >= 0), k[k >= 0]].sum() for c, k in zip(arrays, (k.numpy() for k in solve()))]
    else:
        f = ata_ext.compat.linear_sum_assignment if solver == "ata_ext-compat" else linear_sum_assignment
        solve = lambda: [f(c) for c in inputs]  # noqa: E731
        got = [c[rk].sum() for c, rk in zip(arrays, solve())]
    assert np.allclose(got, ref, rtol=0, atol=1e-12)
    benchmark(solve)
