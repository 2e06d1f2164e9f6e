"""GPU benchmarks of the batched auction (run by benchmarks/gpu_check.sh, needs a GPU).

Measures, answers checked against scipy on a sample first:
  - batch sweep at N=196 (1, 8, 64, 224, 4096), uniform and video-like, CUDA vs CPU solver vs scipy
  - N sweep (49 to 2048) at a fixed amount of work, to show where the CPU path wins
  - 4096 x 196x196 and 64 x 784x784: time and problems per second
  - rectangular batches (DETR-style 100 queries x 10 targets, 300 x 20, 150 x 196)
  - the shared-memory path against global levels behind candidate lists (ATA_EXT_AUCTION_LEVELS)
    at 224 and 4096 x 196^2 and 1024 x 98^2
  - video-like costs with 14 zero tokens ("video0": flat rows, which bid with the dummies' pool),
    and with 14 padding tokens, zero in both frames ("video_pad": flat rows among first choices)
  - uniform costs with 10% of pairs forbidden ("forbid10"; eps starts from the finite range)
  - tracking-like partial assignment with cost_limit=0.05 ("track_lim", ata_ext.testing.tracking_costs;
    the auction on the problem extended with the limit, _solver.py), against the CPU path
  - equal rows, which bid as pools (auction.h, "Pools"): uniform costs whose first 10 rows and
    columns are copies ("dup10"), whose rows 0-97 are equal ("dup_half"), and video-like costs
    whose first frame has a flat region of 40 equal tokens ("sky"); and equal columns, which a
    square problem solves transposed (auction.h, "Orientation"): the same flat region in the
    second frame only, as after a scene cut ("cut")
  - the auction's weak spot: DETR-style costs whose predictions cluster but differ
    ("detr", ata_ext.testing.detr_costs, spread 0.1)
  - distances between points in the unit square ("points"): stalled bidders' path searches
    (auction.h, "Last bidders"), about 1,000 passes and 200 rounds a 196^2 problem by the twin's
    count, against about 300 and 100 for uniform costs: the two rows together fit a pass's cost
  - for N <= 256, the CPU twin's round counts (ata_ext.testing.auction_rounds), the unit of the
    README's per-round cost model: mean Jacobi rounds and steps (passes of the last bidders' path
    searches) per problem, and the slowest problem's 2.9 us * rounds + 1.15 us * steps, to check
    the model against the kernel (a search pass is costed as the single-bid chain step it replaced).
  - the share of the op's time spent in the solver's kernels (first choices and the auction; the
    rest: validation sync, allocation, launch) and the cost tensor's size over their time.
Writes a JSON file and prints a table.
"""
import argparse
import json
import os
import time

import numpy as np
import torch

import ata_ext
from ata_ext.testing import (assert_optimal, assert_optimal_limited, auction_rounds, detr_costs, point_distances,
                             tracking_costs, video_similarity)


def problems(kind, batch, n, m=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "video":
        return video_similarity(batch, n, generator=g), True
    if kind == "video0":  # 14 zero tokens (their rows and columns all 0): flat rows (auction.h)
        sim = video_similarity(batch, n, generator=g)
        sim[:, :14] = 0
        sim[:, :, :14] = 0
        return sim, True
    if kind == "video_pad":  # 14 padding tokens, zero in both frames: flat rows among first choices
        return video_similarity(batch, n, generator=g, padding=14), True
    if kind == "sky":  # a flat region of 40 equal tokens in the first frame: 40 equal rows, one pool
        return video_similarity(batch, n, generator=g, repeated=40), True
    if kind == "cut":  # the flat region in the second frame only: 40 equal columns, solved transposed
        return video_similarity(batch, n, generator=g, repeated=40).mT.contiguous(), True
    if kind == "track_lim":  # n tracks x m detections, solved with a cost limit
        return tracking_costs(batch, n, m, generator=g), False
    if kind == "detr":  # n queries x m targets (docs/solvers.md, "Where the auction is slow")
        return detr_costs(batch, n, m, 0.1, generator=g), False
    if kind == "points":  # distances between points: stalled bidders (auction.h, "Last bidders")
        return point_distances(batch, n, m, generator=g), False
    cost = torch.rand(batch, n, m or n, generator=g)
    if kind == "forbid10":  # 10% of pairs forbidden, the diagonal kept (feasible): eps starts from the finite range
        cost[torch.rand(cost.shape, generator=g) < 0.1] = float("inf")
        cost[:, range(n), range(n)] = torch.rand(batch, n, generator=g)
    if kind == "dup10":  # equal rows wanting equal columns (one by one: a price war; as a pool: one bidder)
        cost[:, :10] = cost[:, :1]
        cost[:, :, :10] = cost[:, :, :1]
    if kind == "dup_half":  # half the rows equal: one pool of n / 2 members
        cost[:, : n // 2] = cost[:, :1]
    return cost, False


def cuda_time(fn, reps=20):
    """Median wall time of fn() with the device synchronised around each call."""
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def cpu_time(fn, reps=3):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(min(ts))


def scipy_time(cost, mx, max_problems=256):
    """A scipy loop over the batch; above max_problems, timed on a slice and scaled (said so)."""
    from scipy.optimize import linear_sum_assignment

    a = cost.numpy()
    k = min(len(a), max_problems)
    t = time.perf_counter()
    for x in a[:k]:
        linear_sum_assignment(x, maximize=mx)
    return (time.perf_counter() - t) * len(a) / k, k < len(a)


def kernel_time(cost, mx, **kw):
    """The solver kernels' device time in one call with validation on (the default), from the
    profiler (which inflates the call's wall time: the op's time is timed without it): the
    first-choice kernel, which reads every cost, and the auction kernel."""
    from torch.profiler import ProfilerActivity, profile

    ata_ext.linear_sum_assignment(cost, maximize=mx, **kw)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        ata_ext.linear_sum_assignment(cost, maximize=mx, **kw)
        torch.cuda.synchronize()
    kernel_us = 0.0
    for evt in prof.key_averages():
        if "auction_kernel" in evt.key or "first_choice_kernel" in evt.key:
            kernel_us += getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
    return kernel_us * 1e-6


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_bench.json")
    a = p.parse_args()
    assert torch.cuda.is_available(), "gpu_bench needs a CUDA device"
    dev = torch.cuda.get_device_name()
    rows = []

    def record(kind, batch, n, m=None, scipy_too=True, levels="auto", limit=None):
        # levels="global": the levels in global memory behind candidate lists even where they fit
        # in shared memory (ATA_EXT_AUCTION_LEVELS, read at every call): to see which is faster.
        # limit: solve with cost_limit=limit (no scipy loop or round model: another problem).
        os.environ["ATA_EXT_AUCTION_LEVELS"] = levels
        cost, mx = problems(kind, batch, n, m)
        gpu = cost.cuda()
        kw = {} if limit is None else {"cost_limit": limit}
        out = ata_ext.linear_sum_assignment(gpu, maximize=mx, **kw).cpu()
        sample = torch.arange(0, batch, max(1, batch // 8))
        if limit is None:
            assert_optimal(cost[sample].double(), out[sample], mx, algorithm="auction")
        else:
            assert_optimal_limited(cost[sample].double(), out[sample], limit, mx, algorithm="auction")
        row = {"case": kind, "batch": batch, "n": n, "m": m or n, "levels": levels, "cost_limit": limit}
        row["cuda_s"] = cuda_time(lambda: ata_ext.linear_sum_assignment(gpu, maximize=mx, **kw))
        row["cuda_nocheck_s"] = cuda_time(lambda: ata_ext.linear_sum_assignment(gpu, maximize=mx, check=False, **kw))
        row["cpu_s"] = cpu_time(lambda: ata_ext.linear_sum_assignment(cost, maximize=mx, **kw))
        if scipy_too:
            row["scipy_s"], row["scipy_extrapolated"] = scipy_time(cost, mx)
        kern = row["kernel_s"] = kernel_time(gpu, mx, **kw)
        # The rest of the op's (unprofiled) time is validation, allocation and launch.
        row["kernel_share"] = kern / row["cuda_s"]
        # The cost tensor's size over the kernels' time: a floor on their read bandwidth (the
        # first-choice kernel reads every cost once; where first choices do not end a problem the
        # auction kernel reads its costs again, once for 4-byte types, twice for the others).
        row["kernel_read_GBps"] = gpu.numel() * gpu.element_size() / kern / 1e9 if kern else None
        row["problems_per_s"] = batch / row["cuda_s"]
        model = ""
        if max(n, m or n) <= 256 and limit is None:
            counts = auction_rounds(cost, mx).double()
            row["twin_jacobi_mean"], row["twin_steps_mean"] = counts.mean(0).tolist()
            row["twin_model_slowest_s"] = float((2.9e-6 * counts[:, 0] + 1.15e-6 * counts[:, 1]).max())
            model = (f"  twin: {row['twin_jacobi_mean']:.0f} rounds + {row['twin_steps_mean']:.0f} steps,"
                     f" slowest {row['twin_model_slowest_s'] * 1e3:.2f} ms by the model")
        rows.append(row)
        os.environ["ATA_EXT_AUCTION_LEVELS"] = "auto"
        sp = f"{row['scipy_s'] / row['cuda_s']:8.1f}x" if scipy_too else "       -"
        label = kind + ("/glob" if levels == "global" else "")
        print(f"{label:<13}{batch:>6}{n:>6}{m or n:>6} cuda {row['cuda_s'] * 1e3:9.3f} ms (no check {row['cuda_nocheck_s'] * 1e3:8.3f})"
              f"  cpu {row['cpu_s'] * 1e3:9.2f} ms  vs scipy {sp}  cpu/cuda {row['cpu_s'] / row['cuda_s']:6.2f}x"
              f"  kernel {100 * (row['kernel_share'] or 0):5.1f}%  {row['problems_per_s']:10.0f} problems/s{model}", flush=True)

    print(f"device: {dev}, torch {torch.__version__}")
    for kind in ("video", "uniform"):
        for batch in (1, 8, 64, 224, 4096):
            record(kind, batch, 196)
    # Shared-memory levels (one 196^2 problem an SM) against global levels behind candidate lists
    # (several an SM): same problems, same answers.
    for kind, batch in (("uniform", 224), ("uniform", 4096), ("video", 224)):
        record(kind, batch, 196, scipy_too=False, levels="global")
    record("uniform", 1024, 98, scipy_too=False, levels="global")
    record("video0", 224, 196)
    record("video_pad", 224, 196)
    record("forbid10", 224, 196)
    for batch, n, m in ((1, 30, 25), (64, 50, 40), (16, 300, 280)):
        record("track_lim", batch, n, m, scipy_too=False, limit=0.05)
    for kind in ("dup10", "dup_half", "sky", "cut", "points"):
        record(kind, 224, 196)
    for n, batch in ((49, 1024), (98, 512), (392, 64), (784, 64), (1024, 8), (2048, 2)):
        record("uniform", batch, n)
    for batch, n, m in ((64, 100, 10), (256, 300, 20), (64, 150, 196)):
        record("uniform", batch, n, m)
    for batch, n, m in ((64, 100, 30), (64, 300, 50)):
        record("detr", batch, n, m)
    with open(a.out, "w") as f:
        json.dump({"device": dev, "torch": torch.__version__, "cuda": torch.version.cuda, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
