"""Multi-object tracking on synthetic videos: the per-frame association step of a tracker, solved
for many videos at once with one batched call, against the per-video loops trackers run today.

Each video has objects moving at constant velocity in the unit square; every frame, each object is
detected with a little noise unless it is missed, and false detections appear anywhere. The
tracker (the same for every solver) predicts each track's position, scores every (track,
detection) pair by distance, and associates with a gate: a pair at the gate distance or beyond is
never matched (`cost_limit`, lapx's semantics). Unmatched detections start tracks; tracks unseen
for a few frames end.

    python examples/track_synthetic.py                  # 256 videos, 100 frames
    python examples/track_synthetic.py --videos 1       # one video: the per-frame call alone

Association, per frame, with every solver on the same costs:
  ata_ext batched  one ata_ext.linear_sum_assignment(cost, cost_limit=gate) for all videos
  ata_ext lapjv    a loop of ata_ext.compat.lapjv, the drop-in for lapx's lap.lapjv
  lapx lapjv       a loop of lap.lapjv(cost, extend_cost=True, cost_limit=gate) (if lapx is installed)
  scipy            a loop of scipy's linear_sum_assignment on the cost with one gate column per track
The tracks must come out the same whichever solver associates (distances have no ties); the
script checks it and prints, per solver, the association time per frame and the tracking quality
(identity switches, detections of real objects left unmatched).
"""
import argparse
import math
import sys
import time

import numpy as np
import torch

import ata_ext
from ata_ext.compat import lapjv

INF = math.inf


def simulate(videos, objects, frames, miss, clutter, generator):
    """Per frame, (detections (V, D, 2), ids (V, D)): positions padded to the frame's most
    detections with NaN, and each detection's object (-1 for a false detection or padding)."""
    g = generator
    pos = torch.rand(videos, objects, 2, generator=g)
    vel = 0.01 * torch.randn(videos, objects, 2, generator=g)
    out = []
    for _ in range(frames):
        pos = pos + vel
        vel = torch.where((pos < 0) | (pos > 1), -vel, vel)  # bounce off the borders
        seen = torch.rand(videos, objects, generator=g) >= miss
        per_video = []
        for v in range(videos):
            det = pos[v][seen[v]] + 0.002 * torch.randn(int(seen[v].sum()), 2, generator=g)
            ids = torch.nonzero(seen[v]).squeeze(1)
            fp = int(torch.poisson(torch.tensor(float(clutter)), generator=g))
            det = torch.cat([det, torch.rand(fp, 2, generator=g)])
            ids = torch.cat([ids, torch.full((fp,), -1)])
            order = torch.randperm(len(ids), generator=g)
            per_video.append((det[order], ids[order]))
        d = max(len(i) for _, i in per_video)
        dets = torch.full((videos, d, 2), float("nan"))
        ids = torch.full((videos, d), -1)
        for v, (p, i) in enumerate(per_video):
            dets[v, : len(i)], ids[v, : len(i)] = p, i
        out.append((dets, ids))
    return out


def solvers(gate):
    """{name: associate(cost (V, S, D) float64) -> (V, S) column of each track, -1 unmatched}."""

    def batched(cost):
        return ata_ext.linear_sum_assignment(cost, cost_limit=gate)

    def loop(solve):
        return lambda cost: torch.from_numpy(np.stack([solve(c) for c in cost.numpy()])).long()

    def scipy_one(c):
        from scipy.optimize import linear_sum_assignment

        s, d = c.shape
        rows, cols = linear_sum_assignment(np.concatenate([c, np.full((s, s), gate)], 1))
        x = np.full(s, -1)
        real = (cols < d) & (c[rows, np.minimum(cols, d - 1)] < gate)
        x[rows[real]] = cols[real]
        return x

    out = {"ata_ext batched": batched,
           "ata_ext lapjv": loop(lambda c: lapjv(c, extend_cost=True, cost_limit=gate, return_cost=False)[0])}
    try:
        import lap

        out["lapx lapjv"] = loop(lambda c: lap.lapjv(c, extend_cost=True, cost_limit=gate, return_cost=False)[0])
    except ImportError:
        pass
    try:
        import scipy  # noqa: F401

        out["scipy"] = loop(scipy_one)
    except ImportError:
        pass
    return out


def track(frames_data, slots, gate, max_age, associate):
    """Runs the tracker over every video at once. Returns (seconds spent associating, identity
    switches (a track matching another object than it last did), tracks started, and each frame's
    association (V, slots))."""
    videos = frames_data[0][0].shape[0]
    pos = torch.zeros(videos, slots, 2, dtype=torch.float64)
    vel = torch.zeros_like(pos)
    alive = torch.zeros(videos, slots, dtype=torch.bool)
    age = torch.zeros(videos, slots, dtype=torch.long)  # frames since the track was last matched
    who = torch.full((videos, slots), -1)  # the object a track last matched (for scoring only)
    spent, switches, started, history = 0.0, 0, 0, []
    for dets, ids in frames_data:
        dets = dets.double()
        pred = pos + vel
        cost = torch.cdist(pred, torch.nan_to_num(dets, nan=0.0))
        cost = cost.masked_fill(~alive[:, :, None] | dets[:, None, :, 0].isnan(), INF)  # forbidden pairs
        t = time.perf_counter()
        cols = associate(cost)  # (V, S): each track's detection, -1 unmatched
        spent += time.perf_counter() - t
        history.append(cols)
        matched = cols >= 0
        d = dets.gather(1, cols.clamp(min=0)[..., None].expand(-1, -1, 2))
        obj = ids.gather(1, cols.clamp(min=0))
        switches += int((matched & (who >= 0) & (obj != who)).sum())
        vel = torch.where(matched[..., None], 0.5 * vel + 0.5 * (d - pos), vel)
        pos = torch.where(matched[..., None], d, pred)
        who = torch.where(matched, obj, who)
        age = torch.where(matched, 0, age + 1)
        alive &= age <= max_age
        # Detections no track took start tracks in free slots, in order (a loop over videos: births
        # are rare and not what is timed).
        taken = torch.zeros_like(ids, dtype=torch.bool).scatter_(1, cols.clamp(min=0), matched)
        fresh = ~taken & ~dets[..., 0].isnan()
        for v in torch.nonzero(fresh.any(1)).squeeze(1).tolist():
            new = torch.nonzero(fresh[v]).squeeze(1)
            free = torch.nonzero(~alive[v]).squeeze(1)[: len(new)]
            new = new[: len(free)]
            pos[v, free], vel[v, free], alive[v, free], age[v, free], who[v, free] = dets[v, new], 0.0, True, 0, ids[v, new]
            started += len(free)
    return spent, switches, started, history


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=256)
    p.add_argument("--objects", type=int, default=20)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--miss", type=float, default=0.1, help="probability that an object is not detected")
    p.add_argument("--clutter", type=float, default=2.0, help="false detections per frame (mean)")
    p.add_argument("--gate", type=float, default=0.05, help="cost_limit: no match at this distance or beyond")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = simulate(a.videos, a.objects, a.frames, a.miss, a.clutter, torch.Generator().manual_seed(0))
    slots = 2 * a.objects
    print(f"{a.videos} videos x {a.frames} frames, {a.objects} objects, {slots} track slots, gate {a.gate}, "
          f"{a.threads} threads")
    print(f"{'solver':<16} {'association / frame':>20} {'id switches':>12} {'tracks started':>14}"
          f"  ({a.videos * a.objects} objects; every false detection starts a track)")
    ref = None
    for name, associate in solvers(a.gate).items():
        associate(torch.rand(a.videos, slots, 4, dtype=torch.float64))  # the first call's one-time set-up, untimed
        spent, switches, started, history = track(data, slots, a.gate, 3, associate)
        same = ref is None or all(torch.equal(x, y) for x, y in zip(history, ref))
        ref = history if ref is None else ref
        print(f"{name:<16} {spent / a.frames * 1e3:17.3f} ms {switches:12d} {started:14d}"
              + ("" if same else "  DIFFERENT TRACKS"), flush=True)
        if not same:
            sys.exit(f"{name} associated differently from the first solver")
    print("every solver gave the same tracks")


if __name__ == "__main__":
    main()
