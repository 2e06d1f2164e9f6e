"""The divided space-time encoder block with aligned vs plain temporal attention, forward +
backward, and where the aligned block's extra time goes (similarity matmul, solver, gathers).

    python benchmarks/bench_block.py                  # (B=8, T=8, N=196, C=768) on the CPU
    python benchmarks/bench_block.py --device cuda    # same shape on a GPU, bf16 autocast
"""
import argparse
import json
import time

import torch

from ata_ext.nn import DividedSpaceTimeBlock

PARTS = {"similarity matmul": ("ata_ext::similarity",), "solver": ("ata_ext::linear_sum_assignment",),
         "gathers": ("ata_ext::align_gather", "ata_ext::align_scatter")}


def step(blk, x, device):
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        out = blk(x)
    out.float().square().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", default="8,8,196,768")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    B, T, N, C = map(int, a.shape.split(","))
    torch.manual_seed(0)
    x = torch.randn(B, T, N, C, device=a.device, requires_grad=True)
    times, shares = {}, {}
    blocks = {}
    for variant in ("plain", "aligned"):
        torch.manual_seed(0)
        blocks[variant] = DividedSpaceTimeBlock(C, C // 64, align=variant == "aligned", first_block=True).to(a.device)
    for variant, blk in blocks.items():
        step(blk, x, a.device)  # warm-up
        ts = []
        for _ in range(a.reps):
            t = time.perf_counter()
            step(blk, x, a.device)
            ts.append(time.perf_counter() - t)
        times[variant] = min(ts)
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
    with profile(activities=acts) as prof:
        step(blocks["aligned"], x, a.device)
    ev = prof.key_averages()
    # Host time under each label: on the CPU that is the work itself; on CUDA it is launch cost
    # plus any sync, not kernel time (gpu_bench.py measures the solver's kernel time).
    for part, keys in PARTS.items():
        shares[part] = sum(e.cpu_time_total for e in ev if e.key in keys) * 1e-6
    total = times["aligned"]
    print(f"block fwd+bwd at (B={B}, T={T}, N={N}, C={C}) on {a.device}, {torch.get_num_threads()} threads:")
    print(f"  plain   {times['plain'] * 1e3:9.1f} ms")
    print(f"  aligned {times['aligned'] * 1e3:9.1f} ms   ({times['aligned'] / times['plain']:.3f}x plain)")
    for part, s in shares.items():
        print(f"    {part:<18} {s * 1e3:8.1f} ms  ({100 * s / total:4.1f}% of the aligned block, profiled step)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"shape": [B, T, N, C], "device": a.device, "seconds": times, "parts_seconds": shares}, f, indent=1)


if __name__ == "__main__":
    main()
