"""align against its floor and against the seed: times the bare batched similarity matmul that
alignment needs, ata_ext.align (both layouts) and a literal Algorithm 1 (a Python loop over
frames with scipy), on random features and on a temporally coherent clip.

    python benchmarks/bench_align.py                 # CPU: (16, 8, 196, 768) float32
    python benchmarks/bench_align.py --device cuda   # GPU: (32, 8, 196, 768) bfloat16
    --parts: align's pieces timed alone; --kernels (CUDA): calls timed back to back in a stream
    (and the host's time to enqueue them), then the profiler's kernel times, the gather against a copy_
"""
import argparse
import json
import os
import sys
import time

import torch

import ata_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def clip(kind, shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, T, N, C = shape
    if kind == "random":
        x = torch.randn(B, T, N, C, generator=g)
    else:  # each frame a shuffled, noisy copy of the previous one: what video features look like
        frames = [torch.randn(B, N, C, generator=g)]
        for _ in range(T - 1):
            idx = torch.argsort(torch.rand(B, N, generator=g), dim=1)
            frames.append(frames[-1].gather(1, idx[..., None].expand(-1, -1, C)) + 0.3 * torch.randn(B, N, C, generator=g))
        x = torch.stack(frames, 1)
    return x.to(device, dtype)


def padded_products(flat):
    """The frame pairs' products as align computes them on CUDA (csrc/common/frame_similarities.h):
    one bmm over the B*T frames (flat, (B*T, N, C)), each product row padded to 16 bytes by taking
    the rows before a frame into the second operand (cuBLAS's kernels for rows of N = 196 entries
    ran 2.9x slower on an H200). The fastest way we know to compute the similarity matmul on a GPU."""
    F, N, C = flat.shape
    a = 16 // flat.element_size()
    P = -(-N // a) * a
    P = P if P <= 2 * N else N
    prev_and_next = flat.as_strided((F - 1, P, C), (N * C, C, 1), flat.storage_offset() + (2 * N - P) * C)
    return torch.bmm(flat[:-1], prev_and_next.transpose(1, 2))


def timed(fns, device, reps=7):
    """{name: fn} -> {name: minimum seconds}. The functions take turns, one call each per round:
    this machine's speed drifts by 10% and more over seconds, and timing them in turns lets a
    slow stretch hit the floor and align alike instead of skewing their ratio."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def parts(x, device):
    """align taken apart, each piece timed alone like the rest ({name: seconds}), the similarities and
    align with each way of computing the products (ATA_EXT_SIMILARITY_BMM: one bmm, the default on
    CUDA, or one per frame pair, the default on the CPU); on CUDA also align replayed as one CUDA
    graph (eager time minus this is launch overhead). The gathers' yardstick, a copy_'s bandwidth,
    is measured by kernel time in kernel_times()."""
    from ata_ext._align import alignment_permutations, frame_similarities

    k = x.float() if device == "cpu" and x.dtype in (torch.float16, torch.bfloat16) else x
    sim = frame_similarities(k)
    perm = ata_ext.align(x)[1]

    def bmm(mode, fn):  # fn with ATA_EXT_SIMILARITY_BMM=mode ("one" or "pair"), then as before
        def call():
            before = os.environ.get("ATA_EXT_SIMILARITY_BMM")
            os.environ["ATA_EXT_SIMILARITY_BMM"] = mode
            try:
                return fn()
            finally:
                if before is None:
                    del os.environ["ATA_EXT_SIMILARITY_BMM"]
                else:
                    os.environ["ATA_EXT_SIMILARITY_BMM"] = before
        return call

    fns = {
        "similarities, one bmm": bmm("one", lambda: frame_similarities(k)),
        "similarities, bmm per pair": bmm("pair", lambda: frame_similarities(k)),
        "align, one bmm": bmm("one", lambda: ata_ext.align(x)),
        "align, bmm per pair": bmm("pair", lambda: ata_ext.align(x)),
        "solver": lambda: ata_ext.linear_sum_assignment(sim, maximize=True, check=False),
        "permutations": lambda: alignment_permutations(x),
        "gather": lambda: torch.ops.ata_ext.align_gather(x, perm, False, False),
    }
    out = timed(fns, device, reps=9)
    if device == "cuda":
        graph, side = torch.cuda.CUDAGraph(), torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up off the default stream, as capture requires
            for _ in range(3):
                ata_ext.align(x)
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(graph):
            ata_ext.align(x)
        out["align as one CUDA graph"] = timed({"graph": graph.replay}, device, reps=9)["graph"]
    return out


def kernel_fns(x):
    """CUDA only. What --kernels times: align (also in the nt layout, and replayed as a CUDA graph,
    what torch.compile's "reduce-overhead" mode runs: no host work a call but the replay's), the
    similarity matmul both ways, align's gather, PyTorch's norms (for align's own norms kernel to
    be read against), and copy_ of x's size and of 256 MiB (the bandwidth yardsticks)."""
    flat = x.flatten(0, 1)
    perm = ata_ext.align(x)[1]
    big = torch.empty(256 << 20, dtype=torch.uint8, device=x.device)
    dst, same = torch.empty_like(big), torch.empty_like(x)
    graph, side = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up off the default stream, as capture requires
        ata_ext.align(x)
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        ata_ext.align(x)
    return {
        "matmul, one bmm": lambda: torch.bmm(flat[:-1], flat[1:].transpose(1, 2)),
        "matmul, padded": lambda: padded_products(flat),
        "align": lambda: ata_ext.align(x),
        "align nt": lambda: ata_ext.align(x, layout="nt"),
        "align, CUDA graph": graph.replay,
        "gather": lambda: torch.ops.ata_ext.align_gather(x, perm, False, False),
        "norms, torch.linalg.vector_norm": lambda: torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32),
        "copy_ of x": lambda: same.copy_(x),
        "copy_ 256 MiB": lambda: dst.copy_(big),
    }


def stream_times(fns, reps=10):
    """Each function's time a call in a stream of `reps` calls back to back between two CUDA events
    (a training loop's case: the host enqueues ahead, no call waits on the last one's sync), and the
    host's own time a call to enqueue them: where the two are equal, the host bounds the stream.
    Run before any profiler in the process, so that nothing a profiler leaves behind can reach it
    (CUPTI's callbacks slowed every later launch where PyTorch did not tear CUPTI down after a run,
    pytorch/pytorch#146604; torch 2.14's profiler does, except with inductor's CUDA graphs on CUDA
    older than 12.6). The stream times of code f505a92 (align 0.326 ms a call on an H200 for
    0.219 ms of kernels) were taken after profiling."""
    out = {"stream time per call (s)": {}, "host time per call (s)": {}}
    for name, fn in fns.items():
        fn()
        torch.cuda.synchronize()
        best = best_host = float("inf")
        for _ in range(5):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best_host = min(best_host, (time.perf_counter() - t0) / reps)
            stop.record()
            stop.synchronize()
            best = min(best, start.elapsed_time(stop) * 1e-3 / reps)
        out["stream time per call (s)"][name] = best
        out["host time per call (s)"][name] = best_host
    return out


def kernel_times(x, fns, reps=10):
    """The device's own view, from the profiler's kernel times: each function's kernels per call
    (align's one by one), their sum, the gather kernel's and copy_'s bandwidth (bytes read +
    written per second of kernel time), and align's host ops with the most CPU time of their own."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    out = {"kernels per call (us)": {}, "kernel time per call (s)": {}}
    for name, fn in fns.items():
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                fn()
            torch.cuda.synchronize()
        per_kernel = {}
        for evt in prof.key_averages():
            if evt.device_type == DeviceType.CUDA:
                us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
                per_kernel[evt.key[:90]] = us / reps
        out["kernels per call (us)"][name] = per_kernel
        out["kernel time per call (s)"][name] = sum(per_kernel.values()) * 1e-6
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            ata_ext.align(x)
        torch.cuda.synchronize()
    host = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
    out["align host ops, self us per call"] = {e.key[:60]: e.self_cpu_time_total / reps for e in host}
    k = out["kernel time per call (s)"]
    nbytes = 2 * x.numel() * x.element_size()
    out["gather kernel GB/s"] = nbytes / k["gather"] / 1e9
    out["copy_ of x kernel GB/s"] = nbytes / k["copy_ of x"] / 1e9
    out["copy_ 256 MiB kernel GB/s"] = 2 * (256 << 20) / k["copy_ 256 MiB"] / 1e9
    return out


def print_kernels(kt):
    for what, key in (("kernel time per call", "kernel time per call (s)"), ("in a stream of calls", "stream time per call (s)"),
                      ("host's time per call", "host time per call (s)")):
        d = kt[key]
        print(f"    {what}: " + "   ".join(f"{n} {v * 1e3:.3f} ms" for n, v in d.items())
              + f"   (align {d['align'] / d['matmul, one bmm']:.2f}x, nt {d['align nt'] / d['matmul, one bmm']:.2f}x,"
              f" graph {d['align, CUDA graph'] / d['matmul, one bmm']:.2f}x the one-bmm matmul;"
              f" {d['align'] / d['matmul, padded']:.2f}x, {d['align nt'] / d['matmul, padded']:.2f}x the padded one)")
    print(f"    kernel GB/s: gather {kt['gather kernel GB/s']:.0f}, copy_ of x {kt['copy_ of x kernel GB/s']:.0f},"
          f" copy_ 256 MiB {kt['copy_ 256 MiB kernel GB/s']:.0f}"
          f" (gather {kt['gather kernel GB/s'] / kt['copy_ 256 MiB kernel GB/s']:.0%} of the big copy)")
    for n, v in kt["kernels per call (us)"]["align"].items():
        print(f"      align kernel {v:8.1f} us  {n}")
    for n, v in kt["align host ops, self us per call"].items():
        print(f"      align host   {v:8.1f} us  {n}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--literal-clips", type=int, default=2, help="clips timed for the literal Algorithm 1 (scaled up)")
    p.add_argument("--parts", action="store_true", help="also time align's pieces (see parts())")
    p.add_argument("--features", default="random,coherent", help="which clips: random, coherent or both (comma-separated)")
    p.add_argument("--kernels", action="store_true", help="CUDA: also stream timing and the profiler's kernel times (see kernel_fns())")
    p.add_argument("--shape", default=None, help="B,T,N,C (default: 16,8,196,768 on the CPU, 32,8,196,768 on CUDA)")
    a = p.parse_args()
    cuda = a.device == "cuda"
    shape = tuple(map(int, a.shape.split(","))) if a.shape else (32, 8, 196, 768) if cuda else (16, 8, 196, 768)
    dtype = torch.bfloat16 if cuda else torch.float32
    from reference_ata import literal_align

    results, profiled = [], []
    print(f"align on {shape} {dtype} ({a.device}, {torch.get_num_threads()} threads)")
    for kind in a.features.split(","):
        x = clip(kind, shape, dtype, a.device)
        flat = x.flatten(0, 1)  # (B*T, N, C), a view
        fns = {
            # The floor: the frame-pair Gram matrices, one bmm per frame pair on strided views (the
            # fastest way on the CPU; a 4-D matmul of the slices copies both operands first).
            "mm": lambda: [torch.bmm(x[:, t], x[:, t + 1].transpose(1, 2)) for t in range(shape[1] - 1)],
            # The same in one launch: the B*T frames as one batch, each with the next, so B - 1 of
            # the B*T - 1 products pair the last frame of a clip with the first of the next (work
            # thrown away). Where launches dominate (a GPU) this beats the floor above, and align
            # computes its similarities this way on CUDA (--parts times both ways).
            "mm1": lambda: torch.bmm(flat[:-1], flat[1:].transpose(1, 2)),
            # And with the rows padded, as align does it on CUDA (see padded_products).
            "mm1p": lambda: padded_products(flat),
            # Any op that returns a new tensor of x's size pays this (on the CPU mostly page faults).
            "clone": lambda: x.clone(),
            # Steady state: each output block is the previous call's, back from the host cache (a
            # training loop's case).
            "tn": lambda: ata_ext.align(x),
            "nt": lambda: ata_ext.align(x, layout="nt"),
        }
        if not cuda:
            # Cold (CPU): the cache emptied first, so the output is fresh memory. On CUDA PyTorch's
            # own caching allocator always reuses: no cold case to time.
            fns["cold"] = lambda: (ata_ext.empty_host_cache(), ata_ext.align(x))
        t = timed(fns, a.device, reps=9)
        mm, mm1, mm1p, clone, tn, nt, cold = t["mm"], t["mm1"], t["mm1p"], t["clone"], t["tn"], t["nt"], t.get("cold")
        xs = x[: a.literal_clips].float().cpu()
        lit = timed({"lit": lambda: [literal_align(c) for c in xs]}, "cpu", reps=2)["lit"] * shape[0] / a.literal_clips
        row = {"features": kind, "shape": list(shape), "dtype": str(dtype), "device": a.device,
               "matmul_s": mm, "matmul_one_bmm_s": mm1, "matmul_padded_s": mm1p, "clone_s": clone, "align_s": tn, "align_cold_s": cold, "align_nt_s": nt, "literal_s": lit}
        results.append(row)
        print(f"  {kind:<9} matmul {mm * 1e3:6.1f} ms (as one bmm {mm1 * 1e3:6.1f} ms, padded {mm1p * 1e3:6.1f} ms)   x.clone() {clone * 1e3:6.1f} ms   align {tn * 1e3:8.1f} ms ({tn / mm:4.2f}x matmul, {tn / mm1:4.2f}x one bmm, {tn / mm1p:4.2f}x padded)"
              + (f"   cold {cold * 1e3:6.1f} ms ({cold / mm:4.2f}x)" if cold else "") + f"   align nt {nt * 1e3:8.1f} ms ({nt / mm:4.2f}x)   literal Algorithm 1 {lit * 1e3:9.1f} ms"
              f" ({lit / tn:5.1f}x slower than align)")
        if a.parts:
            row["parts_s"] = parts(x, a.device)
            gather_bytes = 2 * x.numel() * x.element_size()
            print("    parts: " + "   ".join(f"{k} {v * 1e3:.3f} ms" for k, v in row["parts_s"].items())
                  + f"   (gather moves {gather_bytes / row['parts_s']['gather'] / 1e9:.0f} GB/s)")
        if a.kernels and cuda:
            fns = kernel_fns(x)
            row["kernels"] = stream_times(fns)
            profiled.append((kind, x, fns, row["kernels"]))
    # The profiler only now, after every wall and stream timing above (see stream_times).
    for kind, x, fns, kt in profiled:
        print(f"  {kind} (--kernels):")
        try:
            kt.update(kernel_times(x, fns))
        except Exception as e:  # a diagnostic: its failure must not cost the rows above
            print(f"    kernels: failed: {type(e).__name__}: {e}")
            continue
        print_kernels(kt)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
