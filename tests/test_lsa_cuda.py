"""The CUDA auction: bit-identical to its CPU twin, deterministic, capturable, large batches and
the global-memory path. Skipped without a GPU, except the check that the kernels were compiled."""
import pytest
import torch

import ata_ext
from ata_ext.testing import assert_optimal, assert_optimal_limited, solver_families, tracking_costs, video_similarity

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_kernels_registered_when_built_with_cuda():
    if not ata_ext.built_with_cuda:
        pytest.skip("CPU-only build")
    for op in ("ata_ext::lsa_auction", "ata_ext::linear_sum_assignment"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), op


def twin_and_gpu(cost, maximize=False):
    cpu = ata_ext.linear_sum_assignment(cost.cpu(), maximize, algorithm="auction")
    gpu = ata_ext.linear_sum_assignment(cost.cuda(), maximize).cpu()
    return cpu, gpu


@cuda
def test_bit_identical_to_twin():
    g = torch.Generator().manual_seed(0)
    for cost, mx in solver_families(g, large=True):
        cpu, gpu = twin_and_gpu(cost, mx)
        assert torch.equal(cpu, gpu), (cost.shape, cost.dtype, mx)
        assert_optimal(cost.double(), gpu, mx, algorithm="auction")
    # One launch where most problems end at their first choices (auction.h) and one, whose two
    # equal columns make rows tie, goes through the rounds.
    mixed = video_similarity(8, 196, generator=g)
    mixed[3, :, 10] = mixed[3, :, 11]
    cpu, gpu = twin_and_gpu(mixed, True)
    assert torch.equal(cpu, gpu)


@cuda
def test_deterministic():
    # Video-like costs end at their first choices; uniform ones go through contested rounds.
    g = torch.Generator().manual_seed(1)
    video, uniform = video_similarity(224, 196, generator=g), torch.rand(224, 196, 196, generator=g)
    for cost, mx in ((video.cuda(), True), (uniform.cuda(), False)):
        first = ata_ext.linear_sum_assignment(cost, maximize=mx)
        for _ in range(5):
            assert torch.equal(first, ata_ext.linear_sum_assignment(cost, maximize=mx))


@cuda
def test_errors_match_cpu():
    inf = float("inf")
    with pytest.raises(ValueError, match="infeasible"):
        ata_ext.linear_sum_assignment(torch.tensor([[inf, inf], [1.0, 2.0]], device="cuda"))
    with pytest.raises(ValueError, match="invalid numeric entries"):
        ata_ext.linear_sum_assignment(torch.tensor([[float("nan"), 1.0], [1.0, 2.0]], device="cuda"))
    with pytest.raises(ValueError, match="invalid numeric entries"):  # the diagonal's first choices would do
        ata_ext.linear_sum_assignment(torch.tensor([[0.0, 5.0, float("nan")], [5.0, 0.0, 5.0], [5.0, 5.0, 0.0]], device="cuda"))
    out = ata_ext.linear_sum_assignment(torch.tensor([[[inf, inf], [1.0, 2.0]]] * 2, device="cuda"), check=False)
    assert bool((out == -1).all())


@cuda
def test_cuda_graph_capture_sync_free():
    cost = torch.rand(64, 49, 49, device="cuda")
    expected = ata_ext.linear_sum_assignment(cost, check=False)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ata_ext.linear_sum_assignment(cost, check=False)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ata_ext.linear_sum_assignment(cost, check=False)
    cost.copy_(torch.rand(64, 49, 49, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, ata_ext.linear_sum_assignment(cost, check=False))
    assert_optimal(cost.cpu(), out.cpu(), algorithm="auction")


@cuda
def test_cost_limit():
    # On CUDA the auction solves the problem extended with the limit (_solver.py): bit-identical to
    # the twin on the same extension, optimal, the same through linear_sum_assignment_ragged, and
    # sync-free with check=False (captured in a CUDA graph). The CUDA op itself takes no limit.
    g = torch.Generator().manual_seed(7)
    cases = [(tracking_costs(64, 50, 40, generator=g), 0.05), (tracking_costs(8, 30, 45, generator=g), 0.05),
             (torch.randint(0, 9, (16, 20, 20), generator=g), 4), (torch.rand(4, 30, 30, generator=g).half(), 0.3)]
    for cost, limit in cases:
        for mx in (False, True):
            c, lim = (-cost, -limit) if mx else (cost, limit)
            gpu = ata_ext.linear_sum_assignment(c.cuda(), mx, cost_limit=lim).cpu()
            assert torch.equal(gpu, ata_ext.linear_sum_assignment(c, mx, cost_limit=lim, algorithm="auction"))
            assert_optimal_limited(c, gpu, lim, mx, algorithm="auction")
            for x, (r, k) in zip(gpu, ata_ext.linear_sum_assignment_ragged(list(c.cuda()), mx, cost_limit=lim)):
                assert r.tolist() == (x >= 0).nonzero().flatten().tolist() and k.tolist() == x[x >= 0].tolist()
    with pytest.raises(NotImplementedError, match="cost_limit"):
        torch.ops.ata_ext.linear_sum_assignment(torch.rand(3, 3, device="cuda"), False, True, 0.5)
    cost = tracking_costs(64, 50, 40, generator=g).cuda()
    ata_ext.linear_sum_assignment(cost, check=False, cost_limit=0.05)  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ata_ext.linear_sum_assignment(cost, check=False, cost_limit=0.05)
    cost.copy_(tracking_costs(64, 50, 40, generator=g))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, ata_ext.linear_sum_assignment(cost, cost_limit=0.05))


@cuda
def test_large_batch():
    cost = torch.rand(4096, 196, 196, device="cuda")
    out = ata_ext.linear_sum_assignment(cost)
    idx = torch.randint(0, 4096, (16,))
    assert_optimal(cost[idx].cpu(), out[idx].cpu(), algorithm="auction")
    assert bool((out.sort(-1).values == torch.arange(196, device="cuda")).all())


@cuda
@pytest.mark.parametrize("n", [1024, 2048])
def test_global_memory_path(n):
    cost = torch.rand(2, n, n, device="cuda")
    cpu, gpu = twin_and_gpu(cost)
    assert torch.equal(cpu, gpu)
    assert_optimal(cost.cpu(), gpu, algorithm="auction")


@cuda
def test_global_levels_with_candidate_lists(monkeypatch):
    # ATA_EXT_AUCTION_LEVELS=global moves every problem's levels to global memory, behind
    # candidate lists (the path of N > 236): the same assignments as the twin's.
    monkeypatch.setenv("ATA_EXT_AUCTION_LEVELS", "global")
    g = torch.Generator().manual_seed(3)
    for cost, mx in solver_families(g, large=True):
        cpu, gpu = twin_and_gpu(cost, mx)
        assert torch.equal(cpu, gpu), (cost.shape, cost.dtype, mx)
    cost = torch.rand(224, 196, 196, generator=g)
    assert torch.equal(*twin_and_gpu(cost))


@cuda
def test_compile_reduce_overhead():
    def f(c):
        return ata_ext.linear_sum_assignment(c, maximize=True, check=False)

    cost = video_similarity(8, 49, generator=torch.Generator().manual_seed(2)).cuda()
    compiled = torch.compile(f, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        out = compiled(cost)
    assert torch.equal(out, f(cost))
