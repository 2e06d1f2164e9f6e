"""pytest-benchmark microbenchmarks: ata_ext vs a scipy loop vs lapx, N in 49/196/784, batch 1 to
1024, CPU (and CUDA when present). Each benchmark checks its answer against scipy first.

    pytest benchmarks/test_bench_lsa.py --benchmark-group-by=param:n,param:batch
"""
import numpy as np
import pytest
import torch

import ata_ext
from ata_ext.testing import devices, video_similarity

SIZES = [(n, b) for n in (49, 196, 784) for b in (1, 8, 64, 224, 1024) if b * n * n <= 64 * 784 * 784]


def problems(kind, n, batch):
    g = torch.Generator().manual_seed(n * 7919 + batch)
    if kind == "video":
        return video_similarity(batch, n, generator=g), True
    return torch.rand(batch, n, n, generator=g), False


def scipy_objectives(cost, mx):
    from scipy.optimize import linear_sum_assignment

    c = cost.double().numpy()
    return np.array([x[linear_sum_assignment(x, maximize=mx)].sum() for x in c])


def assert_matches_scipy(cost, cols, mx):
    c = cost.double().numpy()
    cols = cols.cpu().numpy()
    got = np.array([c[b][np.arange(c.shape[1]), cols[b]].sum() for b in range(c.shape[0])])
    ref = scipy_objectives(cost, mx)
    assert np.allclose(got, ref, rtol=0, atol=1e-9 * c.shape[1] * np.abs(c).max())


@pytest.mark.parametrize("kind", ["uniform", "video"])
@pytest.mark.parametrize("n,batch", SIZES)
@pytest.mark.parametrize("solver", ["ata_ext"] + [f"ata_ext-{d}" for d in devices() if d != "cpu"] + ["scipy", "lapx"])
def test_lsa(benchmark, solver, kind, n, batch):
    cost, mx = problems(kind, n, batch)
    benchmark.group = f"{kind} N={n} batch={batch}"
    if solver == "scipy":
        from scipy.optimize import linear_sum_assignment

        a = cost.numpy()
        benchmark(lambda: [linear_sum_assignment(x, maximize=mx) for x in a])
        return
    if solver == "lapx":
        lap = pytest.importorskip("lap")
        a = np.ascontiguousarray(-cost.numpy() if mx else cost.numpy())
        cols = torch.from_numpy(np.stack(lap.lapjvx_batch(a, return_cost=False, n_threads=torch.get_num_threads())[1]))
        assert_matches_scipy(cost, cols, mx)
        benchmark(lambda: lap.lapjvx_batch(a, return_cost=False, n_threads=torch.get_num_threads()))
        return
    dev = cost.to("cuda" if solver.endswith("cuda") else "cpu")
    assert_matches_scipy(cost, ata_ext.linear_sum_assignment(dev, maximize=mx), mx)

    def run():
        out = ata_ext.linear_sum_assignment(dev, maximize=mx)
        if dev.is_cuda:
            torch.cuda.synchronize()
        return out

    benchmark(run)
