"""A small CUDA workload for compute-sanitizer (memcheck, racecheck): every kernel path once, on
inputs small enough that the sanitizer's slowdown stays bearable. Exits non-zero on a wrong answer."""
import os

import torch

import ata_ext
from ata_ext.testing import assert_optimal, point_distances, video_similarity


def mixed_first_choices(g):
    """Video-like problems, one of which has two equal columns: its rows tie, so that problem goes
    through the auction's rounds while the others end at their first choices (auction.h)."""
    sim = video_similarity(4, 196, generator=g)
    sim[1, :, 3] = sim[1, :, 4]
    return sim


def equal_rows(g):
    """Rows in groups of equal ones (auction.h, "Pools"), some flat, with dummies (N < M): every
    pool's bookkeeping runs, its Jacobi bids, and path searches that pass over its columns."""
    cost = torch.randint(0, 5, (3, 5, 40), generator=g).float().repeat_interleave(6, 1)
    cost[:, ::7] = 2.0
    return cost


def equal_columns(g):
    """Square problems whose columns repeat more than their rows (auction.h, "Orientation"): the
    kernel transposes their levels in place and the answer back."""
    cost = torch.randint(0, 5, (3, 30, 10), generator=g).float().repeat_interleave(3, 2)
    cost[:, :, ::7] = 2.0
    return cost


def main():
    assert torch.cuda.is_available(), "needs a GPU"
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.rand(4, 49, 49, generator=g), False),           # shared-memory levels; rounds, then path searches
        (video_similarity(4, 196, generator=g), True),        # the ATA case: ends at its first choices
        (mixed_first_choices(g), True),                       # first choices for some problems, rounds for one
        (video_similarity(4, 196, generator=g, padding=14), True),  # first choices with flat rows (zero tokens)
        (torch.rand(3, 7, 12, generator=g).half(), False),    # N < M, fp16
        (torch.rand(3, 12, 7, generator=g).double(), True),   # N > M
        (video_similarity(1, 250, generator=g), True),        # global-memory levels (n > ~237)
        (torch.rand(1, 240, 240, generator=g), False),        # global levels, many rounds, then path searches
        (equal_rows(g), False),                               # pools of equal rows, next to dummies
        (equal_columns(g), True),                             # equal columns: solved transposed
        (point_distances(4, 64, generator=g), False),         # stalled bidders: up to eight path searches in a row
    ]
    # The first four, the pools, the equal columns and the point distances once more with global
    # levels behind candidate lists (the n > ~237 path) where they would fit in shared memory:
    # smaller blocks, several an SM (ATA_EXT_AUCTION_LEVELS).
    again = cases[:4] + cases[-3:]
    for levels, cost, mx in [("auto", c, m) for c, m in cases] + [("global", c, m) for c, m in again]:
        os.environ["ATA_EXT_AUCTION_LEVELS"] = levels
        out = ata_ext.linear_sum_assignment(cost.cuda(), maximize=mx)
        assert_optimal(cost.double(), out.cpu(), mx, algorithm="auction")
    os.environ["ATA_EXT_AUCTION_LEVELS"] = "auto"
    bad = torch.tensor([[[float("inf")] * 3] * 3, [[1.0] * 3] * 3], device="cuda")
    out = ata_ext.linear_sum_assignment(bad, check=False)
    assert bool((out[0] == -1).all()) and bool((out[1] >= 0).all())
    for name in ("align", "dealign"):  # the gathers, once they exist
        if not hasattr(ata_ext, name):
            break
    else:
        x = torch.randn(2, 4, 49, 32, device="cuda")
        aligned, perm = ata_ext.align(x)
        assert torch.equal(ata_ext.dealign(aligned, perm), x)
        # A key whose rows start one entry into x's: the feature norms read it strided, in
        # 4-byte vectors.
        _, perm = ata_ext.align(x, key=x[..., 1:])
        assert torch.equal(perm.sort(-1).values, torch.arange(49, device="cuda").expand(2, 4, 49))
        x[1, 2, 5] = float("nan")  # a token matched last; bfloat16 and float16 similarities
        for dtype in (torch.bfloat16, torch.float16):
            aligned, perm = ata_ext.align(x.to(dtype))
            assert torch.equal(perm.sort(-1).values, torch.arange(49, device="cuda").expand(2, 4, 49))
    torch.cuda.synchronize()
    print("sanitizer workload: ok")


if __name__ == "__main__":
    main()
