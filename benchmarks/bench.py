"""The main job: ata_ext's batched assignment solver against a Python loop over scipy and lapx's
threaded batch solver, then problems of different sizes (linear_sum_assignment_ragged against
loops of scipy, lapx and ata_ext) and partial assignment with a cost limit (tracking-like). Every answer is checked against scipy before any time is
reported.

    python benchmarks/bench.py            # quick, representative subset (about a minute)
    python benchmarks/bench.py --full     # N in 49/196/784, batch 1..1024
    python benchmarks/bench.py --tiny     # seconds; used by the test suite

Prints a table of times and speedups and writes results.json and plot.png to --out.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

import ata_ext
from ata_ext.compat import lapjv
from ata_ext.testing import detr_costs, limited_tolerance, stream_size, tolerance, tracking_costs, video_similarity


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def make(kind, batch, n, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return torch.rand(batch, n, m, generator=g), False
    if kind == "video":
        return video_similarity(batch, n, generator=g), True
    if kind == "detr":  # n queries x m targets, predictions clustered (a model early in training)
        return detr_costs(batch, n, m, 0.1, generator=g), False
    raise ValueError(kind)


# Each timed pass solves several different inputs of a case (ata_ext.testing.stream_size says how
# many and why), one call each, and reports the time per call.
def timeit(name, fn, inputs, budget=1.0, max_reps=50):
    """Seconds per call of fn(input): the min over passes, each pass every input once, in turn (min:
    the least noisy estimate on a shared machine). The scipy loop, the slowest, gets half the budget
    and may stop after one pass."""
    min_reps, budget = (1, budget / 2) if name == "scipy loop" else (3, budget)
    fn(inputs[0])  # warm-up (and CUDA context / allocator)
    times, start = [], time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget and len(times) < max_reps):
        t = time.perf_counter()
        for inp in inputs:
            fn(inp)
        times.append((time.perf_counter() - t) / len(inputs))
    return min(times)


def solvers(threads):
    """name -> (prepare(cost, maximize) -> input, solve(input, maximize) -> answer, columns(answer)
    -> (B, N) columns, -1 for rows left unassigned). Only solve is timed: each solver runs on the
    input it likes best and answers in its own format (scipy and lapx give (rows, cols) pairs)."""
    from scipy.optimize import linear_sum_assignment as scipy_lsa

    out = {
        "scipy loop": (lambda c, mx: c.numpy(), lambda a, mx: [scipy_lsa(x, maximize=mx) for x in a], pairs_to_rows),
        "ata_ext cpu": (lambda c, mx: c, lambda c, mx: ata_ext.linear_sum_assignment(c, maximize=mx), lambda r, n: r),
    }
    try:
        import lap

        out[f"lapx batch ({threads} thr)"] = (
            lambda c, mx: np.ascontiguousarray(-c.numpy() if mx else c.numpy()),
            # extend_cost pads rectangular problems (square ones are left as they are).
            lambda a, mx: lap.lapjvx_batch(a, extend_cost=True, return_cost=False, n_threads=threads),
            lambda r, n: pairs_to_rows(zip(*r), n),  # (all rows, all cols) -> per-problem pairs
        )
    except ImportError:
        print("lapx is not installed: skipping it", file=sys.stderr)
    if torch.cuda.is_available():

        def cuda_solve(c, mx):
            r = ata_ext.linear_sum_assignment(c, maximize=mx)
            torch.cuda.synchronize()
            return r

        out["ata_ext cuda"] = (lambda c, mx: c.cuda(), cuda_solve, lambda r, n: r)
    return out


def algorithm(name):
    """The solver whose documented tolerance (ata_ext.testing.tolerance) a column's answers are held
    to: the CUDA columns run the auction, which quantises costs; the others are exact up to float
    noise, as Jonker-Volgenant."""
    return "auction" if "cuda" in name else "jv"


def pairs_to_rows(pairs, n):
    """Per-problem (row indices, column indices) -> (B, N) columns, -1 where unassigned."""
    out = []
    for rows, cols in pairs:
        full = np.full(n, -1, dtype=np.int64)
        full[rows] = cols
        out.append(full)
    return np.stack(out)


def objectives(cost, cols):
    c = cost.double().numpy()
    cols = np.asarray(cols.cpu() if isinstance(cols, torch.Tensor) else cols)
    totals = []
    for b in range(c.shape[0]):
        rows = np.flatnonzero(cols[b] >= 0)
        if len(rows) != min(c.shape[1:]):
            raise AssertionError(f"problem {b}: {len(rows)} rows assigned, expected {min(c.shape[1:])}")
        totals.append(c[b][rows, cols[b][rows]].sum())
    return np.array(totals)


def run(cases, threads, budget):
    rows = []
    fns = solvers(threads)
    for kind, batch, n, m in cases:
        made = [make(kind, batch, n, m, seed) for seed in range(stream_size(batch, n, m))]
        costs, mx = [c for c, _ in made], made[0][1]
        refs = None
        row = {"case": kind, "batch": batch, "n": n, "m": m, "maximize": mx, "inputs": len(costs), "seconds": {}}
        for name, (prepare, solve, columns) in fns.items():
            inputs = [prepare(c, mx) for c in costs]
            got = [objectives(c, columns(solve(inp, mx), n)) for c, inp in zip(costs, inputs)]
            if refs is None:  # scipy comes first: the oracle
                refs = got
            for c, g, ref in zip(costs, got, refs):
                tol = [tolerance(p, algorithm(name), mx) for p in c]
                if np.any(np.abs(g - ref) > tol):
                    raise AssertionError(f"{name}: objective differs from scipy's on {kind} batch={batch} N={n}")
            row["seconds"][name] = timeit(name, lambda inp: solve(inp, mx), inputs, budget)
        rows.append(row)
        print_row(row, len(rows) == 1)
    return rows


def ragged_detr(images, queries, max_targets, seed=0):
    """DETR-like costs of different sizes: image k has queries x T_k, T_k in 1..max_targets."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, max_targets + 1, (images,), generator=g).tolist()
    full = detr_costs(images, queries, max_targets, 0.1, generator=g)
    return [full[k, :, :t] for k, t in enumerate(sizes)]


def run_ragged(images, queries, max_targets, threads, budget):
    """Problems of different sizes (README, "Problems of different sizes"): a scipy loop, a loop of
    lapx's lapjvx, a loop of ata_ext calls, and one linear_sum_assignment_ragged call (on CUDA too
    where there is a GPU). Every answer's total is checked against scipy's first."""
    from scipy.optimize import linear_sum_assignment as scipy_lsa

    cuda = torch.cuda.is_available()
    inputs = []  # each: the torch costs, as numpy arrays, and on the GPU
    for seed in range(stream_size(images, queries, max_targets)):
        costs = ragged_detr(images, queries, max_targets, seed)
        inputs.append({"costs": costs, "arrays": [c.numpy() for c in costs],
                       "gpu": [c.cuda() for c in costs] if cuda else None})
    fns = {"scipy loop": lambda d: [scipy_lsa(a) for a in d["arrays"]],
           "ata_ext cpu loop": lambda d: [ata_ext.linear_sum_assignment(c) for c in d["costs"]],
           "ata_ext cpu ragged": lambda d: ata_ext.linear_sum_assignment_ragged(d["costs"])}
    try:
        import lap

        fns["lapx loop"] = lambda d: [lap.lapjvx(a, extend_cost=True, return_cost=False) for a in d["arrays"]]
    except ImportError:
        pass
    if cuda:

        def cuda_ragged(d):
            out = ata_ext.linear_sum_assignment_ragged(d["gpu"])
            torch.cuda.synchronize()
            return out

        fns["ata_ext cuda ragged"] = cuda_ragged

    def totals(arrays, answer):  # in float64: float32 sums depend on the order
        return np.array([a.astype(np.float64)[np.asarray(r.cpu() if isinstance(r, torch.Tensor) else r),
                                              np.asarray(k.cpu() if isinstance(k, torch.Tensor) else k)].sum()
                         for a, (r, k) in zip(arrays, answer)])

    refs = [totals(d["arrays"], [scipy_lsa(a.astype(np.float64)) for a in d["arrays"]]) for d in inputs]
    row = {"case": "detr ragged", "batch": images, "n": queries, "m": f"1-{max_targets}", "inputs": len(inputs),
           "seconds": {}}
    for name, fn in fns.items():
        for d, ref in zip(inputs, refs):
            answer = fn(d)
            if name == "ata_ext cpu loop":
                answer = [(np.flatnonzero(x >= 0), x[x >= 0]) for x in (r.numpy() for r in answer)]
            if np.any(np.abs(totals(d["arrays"], answer) - ref) > [tolerance(c, algorithm(name)) for c in d["costs"]]):
                raise AssertionError(f"{name}: objective differs from scipy's on the ragged DETR-like batch")
        row["seconds"][name] = timeit(name, fn, inputs, budget)
    t = row["seconds"]
    print(f"detr, {images} images x {queries} queries x 1-{max_targets} targets (different sizes): "
          + "  ".join(f"{k} {v * 1e3:.2f} ms" for k, v in t.items())
          + f"  (ragged vs scipy {t['scipy loop'] / t['ata_ext cpu ragged']:.1f}x, vs own loop"
          f" {t['ata_ext cpu loop'] / t['ata_ext cpu ragged']:.2f}x)", flush=True)
    return row


def run_tracking(batch, tracks, detections, limit, threads, budget):
    """Partial assignment with a cost limit (README, "Partial assignment"): one
    linear_sum_assignment(cost_limit=...) call against a scipy loop on the problem extended with
    one limit column per track (the smallest exact construction for scipy), a loop of lapx's lapjv
    with its cost_limit (what trackers call once per frame), lapx's threaded batch solver, and a
    loop of ata_ext.compat.lapjv (the drop-in for lapx's, one call per frame as a tracker makes it).
    Every answer's sum of (cost - limit) is checked against scipy's first."""
    from scipy.optimize import linear_sum_assignment as scipy_lsa

    cuda = torch.cuda.is_available()
    inputs = []  # each: the torch costs, as float64 numpy arrays, extended for scipy, on the GPU
    for seed in range(stream_size(batch, tracks, detections)):
        cost = tracking_costs(batch, tracks, detections, generator=torch.Generator().manual_seed(seed))
        arrays = cost.double().numpy()
        short = arrays if tracks <= detections else arrays.transpose(0, 2, 1)
        s = short.shape[1]
        extended = np.concatenate([short, np.full((batch, s, s), limit)], 2)
        inputs.append({"cost": cost, "arrays": arrays, "extended": extended, "gpu": cost.cuda() if cuda else None})
    real = max(tracks, detections)  # the extended problems' first columns are the real ones

    def scipy_pairs(d):
        out = []
        for e in d["extended"]:
            r, k = scipy_lsa(e)
            keep = k < real
            out.append((r[keep], k[keep]) if tracks <= detections else (k[keep], r[keep]))
        return out

    fns = {"scipy loop": scipy_pairs,
           "ata_ext cpu": lambda d: ata_ext.linear_sum_assignment(d["cost"], cost_limit=limit),
           "ata_ext lapjv loop": lambda d: [lapjv(a, extend_cost=True, cost_limit=limit, return_cost=False)
                                            for a in d["arrays"]]}
    try:
        import lap

        fns["lapx loop"] = lambda d: [lap.lapjv(a, extend_cost=True, cost_limit=limit, return_cost=False)
                                      for a in d["arrays"]]
        fns[f"lapx batch ({threads} thr)"] = lambda d: lap.lapjvx_batch(d["arrays"], extend_cost=True, cost_limit=limit,
                                                                        return_cost=False, n_threads=threads)
    except ImportError:
        pass
    if cuda:

        def cuda_solve(d):
            out = ata_ext.linear_sum_assignment(d["gpu"], cost_limit=limit)
            torch.cuda.synchronize()
            return out

        fns["ata_ext cuda"] = cuda_solve

    def saving(name, arrays, answer):  # per problem: the sum of (cost - limit) over its matched pairs
        if name.endswith("loop") and name != "scipy loop":  # lapjv's (x, y): x[i] row i's column, -1 unmatched
            answer = [(np.flatnonzero(x >= 0), x[x >= 0]) for x, _ in answer]
        elif name.startswith("ata_ext"):
            answer = [(np.flatnonzero(x >= 0), x[x >= 0]) for x in answer.cpu().numpy()]
        elif name.startswith("lapx batch"):
            answer = list(zip(*answer))
        return np.array([(a[r, k] - limit).sum() for a, (r, k) in zip(arrays, answer)])

    refs = None
    row = {"case": "tracking", "batch": batch, "n": tracks, "m": detections, "cost_limit": limit,
           "inputs": len(inputs), "seconds": {}}
    for name, fn in fns.items():
        got = [saving(name, d["arrays"], fn(d)) for d in inputs]
        refs = got if refs is None else refs
        if any(np.any(np.abs(g - ref) > [limited_tolerance(c, limit, algorithm(name)) for c in d["cost"]])
               for g, ref, d in zip(got, refs, inputs)):
            raise AssertionError(f"{name}: sum of (cost - limit) differs from scipy's on the tracking batch")
        row["seconds"][name] = timeit(name, fn, inputs, budget)
    t = row["seconds"]
    lapx = [v for k, v in t.items() if k.startswith("lapx")]
    print(f"tracking, {batch} x {tracks} tracks x {detections} detections, cost_limit {limit}: "
          + "  ".join(f"{k} {v * 1e3:.3f} ms" for k, v in t.items())
          + f"  (vs scipy {t['scipy loop'] / t['ata_ext cpu']:.1f}x"
          + (f", vs lapx's best {min(lapx) / t['ata_ext cpu']:.1f}x)" if lapx else ")"), flush=True)
    return row


def print_row(row, header):
    names = list(row["seconds"])
    if header:
        print(f"{'case':<8} {'batch':>5} {'N x M':>9}  " + "  ".join(f"{n:>20}" for n in names) + "  speedup vs scipy / lapx")
    t = row["seconds"]
    ours = t["ata_ext cpu"]
    lapx = next((v for k, v in t.items() if k.startswith("lapx")), None)
    sp = f"{t['scipy loop'] / ours:6.1f}x" + (f" / {lapx / ours:4.2f}x" if lapx else "")
    if "ata_ext cuda" in t:
        sp += f"   cuda: {t['scipy loop'] / t['ata_ext cuda']:6.1f}x"
    print(f"{row['case']:<8} {row['batch']:>5} {row['n']:>4}x{row['m']:<4}  " + "  ".join(f"{v * 1e3:17.2f} ms" for v in t.values()) + f"  {sp}", flush=True)


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind in zip(axes, ("uniform", "video")):
        sel = [r for r in rows if r["case"] == kind and r["n"] == r["m"] == 196]
        if len({r["batch"] for r in sel}) < 2:
            ax.set_visible(False)
            continue
        for name in sel[0]["seconds"]:
            pts = sorted((r["batch"], r["seconds"][name]) for r in sel)
            ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="batch size (problems of 196x196)", ylabel="time (ms)",
               title=f"{kind} costs" + (" (maximize)" if kind == "video" else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# 64 rectangular problems each: DETR-like (queries x targets; uniform, then DETR-style costs with
# clustered predictions), nearly square both ways, wide.
RECTANGULAR = [("uniform", 64, 100, 10), ("detr", 64, 100, 30), ("detr", 64, 300, 50), ("uniform", 64, 180, 196),
               ("uniform", 64, 196, 150), ("uniform", 64, 90, 196)]


# Problems of different sizes, DETR-like: (images, queries, most targets an image has).
RAGGED = [(8, 100, 20), (64, 300, 50)]

# Partial assignment, tracking-like: (batch, tracks, detections, cost_limit). One frame of one
# video (the per-frame call a tracker makes), a batch of videos, crowded scenes.
TRACKING = [(1, 30, 25, 0.05), (64, 50, 40, 0.05), (16, 300, 280, 0.02)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the whole grid (several minutes)")
    size.add_argument("--tiny", action="store_true", help="a few small cases (seconds)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads for lapx and ata_ext")
    p.add_argument("--budget", type=float, default=1.0, help="seconds of repeats per measurement")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latest"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.tiny:
        cases = [("uniform", 4, 49, 49), ("video", 8, 49, 49), ("uniform", 2, 30, 30), ("uniform", 3, 12, 5),
                 ("detr", 8, 100, 30)]
        a.budget = min(a.budget, 0.05)
    elif a.full:
        cases = [(k, b, n, n) for k in ("uniform", "video") for n in (49, 196, 784)
                 for b in (1, 8, 64, 224, 1024) if b * n * n <= 64 * 784 * 784]
        cases += RECTANGULAR
    else:  # the three headline cases, a batch sweep at N=196 for the plot, rectangles
        cases = [("uniform", 224, 196, 196), ("uniform", 16, 784, 784), ("video", 224, 196, 196)]
        cases += [(k, b, 196, 196) for k in ("uniform", "video") for b in (1, 8, 64)]
        cases += RECTANGULAR
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {a.threads} threads"
          + (f", GPU {info['gpu']}" if "gpu" in info else ""))
    print("time per call: for each case, the minimum over passes through 2 to 16 different inputs (ata_ext.testing.stream_size)")
    rows = run(cases, a.threads, a.budget)
    ragged = [run_ragged(*shape, a.threads, a.budget) for shape in ([(8, 30, 6)] if a.tiny else RAGGED)]
    tracking = [run_tracking(*shape, a.threads, a.budget) for shape in ([(4, 10, 8, 0.1)] if a.tiny else TRACKING)]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"machine": info, "results": rows, "ragged": ragged, "tracking": tracking}, f, indent=1)
    plot(rows, os.path.join(a.out, "plot.png"))
    print(f"wrote {os.path.join(a.out, 'results.json')} and plot.png")


if __name__ == "__main__":
    main()
