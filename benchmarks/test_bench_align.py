"""pytest-benchmark microbenchmarks of alignment: align (both layouts) and dealign against the
similarity matmul they need, on the CPU (and CUDA when present).

    pytest benchmarks/test_bench_align.py --benchmark-group-by=param:shape
"""
import pytest
import torch

import ata_ext
from ata_ext.testing import devices

SHAPES = [(4, 8, 196, 192), (16, 8, 196, 768)]


def features(shape, device):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("what", ["similarity", "align", "align_nt", "dealign"])
def test_align(benchmark, device, shape, what):
    x = features(shape, device)
    benchmark.group = f"{device} {'x'.join(map(str, shape))}"
    if what == "similarity":
        fn = lambda: ata_ext._align.frame_similarities(x)  # noqa: E731
    elif what == "dealign":
        aligned, perm = ata_ext.align(x)
        assert torch.equal(ata_ext.dealign(aligned, perm), x)
        fn = lambda: ata_ext.dealign(aligned, perm, check=False)  # noqa: E731
    else:
        layout = "nt" if what == "align_nt" else "tn"
        aligned, perm = ata_ext.align(x, layout=layout)
        ref = x.gather(-2, perm.unsqueeze(-1).expand_as(x))
        assert torch.equal(aligned, ref.transpose(-2, -3) if layout == "nt" else ref)
        fn = lambda: ata_ext.align(x, layout=layout)  # noqa: E731

    def run():
        out = fn()
        sync(device)
        return out

    benchmark(run)
