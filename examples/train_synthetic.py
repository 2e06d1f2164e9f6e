"""Trains a small video transformer on a synthetic task, once with aligned (ATA) and once with
plain divided temporal attention, and compares them.

The task, generated on the fly (no downloads): a textured square moves across a textured,
slowly panning background; the class is the square's direction of motion (8 directions).

    python examples/train_synthetic.py                        # CPU, a few minutes
    python examples/train_synthetic.py --steps 50 --resume    # continue from the checkpoints
    torchrun --nproc_per_node=2 examples/train_synthetic.py   # DistributedDataParallel
                                                              # (gloo on CPU, nccl on GPU)

Writes checkpoints, results.json and loss.png to --out and prints a table: accuracy, time per
step and the time spent in alignment (from profiler labels on ata_ext.align / dealign).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import ata_ext
from ata_ext.nn import DividedSpaceTimeBlock

DIRECTIONS = [(math.cos(a), math.sin(a)) for a in [k * math.pi / 4 for k in range(8)]]


def make_batch(batch, frames, size, generator, device):
    """(B, T, 3, size, size) clips and (B,) labels, built with tensor indexing (no Python loop
    over pixels or frames)."""
    g = generator
    B, T, S, obj = batch, frames, size, size // 4
    labels = torch.randint(0, len(DIRECTIONS), (B,), generator=g)
    bg = torch.rand(B, 3, 2 * S, 2 * S, generator=g) * 0.5
    tex = torch.rand(B, 3, obj, obj, generator=g) * 0.5 + 0.5
    t = torch.arange(T, dtype=torch.float32)
    # The camera drifts up to a pixel per frame; its window starts mid-way into the background.
    pan = (torch.rand(B, 2, generator=g) - 0.5) * 2
    oy = (S / 2 + pan[:, :1] * t).long()
    ox = (S / 2 + pan[:, 1:] * t).long()
    # The square moves at 1 to 2.5 pixels a frame in its class's direction, centred on the clip.
    d = torch.tensor(DIRECTIONS)[labels]
    speed = 1.0 + torch.rand(B, 1, generator=g) * 1.5
    py = ((S - obj) / 2 + d[:, 1:] * speed * (t - T / 2)).round().long().clamp(0, S - obj)
    px = ((S - obj) / 2 + d[:, :1] * speed * (t - T / 2)).round().long().clamp(0, S - obj)
    ar = torch.arange(S)
    bi = torch.arange(B)[:, None, None, None]
    ys, xs = (oy[..., None] + ar)[..., :, None], (ox[..., None] + ar)[..., None, :]
    clips = bg[bi, :, ys, xs]  # (B, T, S, S, 3)
    ry, rx = ar - py[..., None], ar - px[..., None]  # position inside the square
    inside = ((ry >= 0) & (ry < obj))[..., :, None] & ((rx >= 0) & (rx < obj))[..., None, :]
    square = tex[bi, :, ry.clamp(0, obj - 1)[..., :, None], rx.clamp(0, obj - 1)[..., None, :]]
    clips = torch.where(inside[..., None], square, clips).permute(0, 1, 4, 2, 3).contiguous()
    return clips.to(device), labels.to(device)


class VideoTransformer(nn.Module):
    """Patch embedding, space and time embeddings, a class token, divided space-time blocks in
    TimeSformer's token layout, and a linear head on the class token."""

    def __init__(self, frames=8, size=32, patch=8, dim=64, depth=3, heads=4, classes=8, align=True):
        super().__init__()
        self.frames, n = frames, (size // patch) ** 2
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, n, 1, dim) * 0.02)
        self.time = nn.Parameter(torch.randn(1, 1, frames, dim) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(
            DividedSpaceTimeBlock(dim, heads, align=align, first_block=(i == 0)) for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, video):
        B, T = video.shape[:2]
        x = self.embed(video.flatten(0, 1)).flatten(2).transpose(1, 2)  # (B*T, N, C)
        x = x.reshape(B, T, -1, x.shape[-1]).transpose(1, 2) + self.pos + self.time  # (B, N, T, C)
        x = torch.cat((self.cls.expand(B, -1, -1), x.flatten(1, 2)), dim=1)  # 'b (h w t) m'
        for blk in self.blocks:
            x = blk(x, T=T)
        return self.head(self.norm(x[:, 0]))


def progress(step, total, loss, width=30):
    done = int(width * step / total)
    sys.stderr.write(f"\r  [{'#' * done}{'.' * (width - done)}] {step}/{total} loss {loss:.3f}")
    if step == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


ALIGN_LABELS = ("ata_ext::align", "ata_ext::dealign", "ata_ext::gather_backward")


def alignment_seconds(model, batch, device, steps=3):
    """Seconds per training step inside ata_ext's profiler labels: align (similarities, solver,
    gather) and dealign in the forward, the gathers in the backward."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    x, y = batch
    with profile(activities=acts) as prof:
        for _ in range(steps):
            F.cross_entropy(model(x), y).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    return sum(e.cpu_time_total for e in prof.key_averages() if e.key in ALIGN_LABELS) * 1e-6 / steps


def train(variant, a, device, rank, world):
    torch.manual_seed(a.seed)
    model = VideoTransformer(frames=a.frames, size=a.size, align=(variant == "aligned")).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.05)
    ckpt = os.path.join(a.out, f"ckpt_{variant}.pt")
    state = {"step": 0, "losses": [], "seconds": 0.0}
    if a.resume and os.path.exists(ckpt):
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        (model.module if world > 1 else model).load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
    g = torch.Generator().manual_seed(a.seed * 1000 + rank + 7919 * state["step"])
    if rank == 0:
        print(f"{variant}: training steps {state['step']}..{a.steps}")
    while state["step"] < a.steps:
        x, y = make_batch(a.batch, a.frames, a.size, g, device)
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:  # small transformers diverge without a warm-up
            group["lr"] = a.lr * min(1.0, (state["step"] + 1) / max(1, a.warmup))
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        state["seconds"] += time.perf_counter() - t
        state["step"] += 1
        state["losses"].append(float(loss))
        if rank == 0:
            progress(state["step"], a.steps, float(loss))
        if rank == 0 and (state["step"] % a.ckpt_every == 0 or state["step"] == a.steps):
            net = model.module if world > 1 else model
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt)
    net = model.module if world > 1 else model
    net.eval()
    vg = torch.Generator().manual_seed(12345)
    correct = total = 0
    with torch.no_grad():
        for _ in range(a.eval_batches):
            x, y = make_batch(a.batch, a.frames, a.size, vg, device)
            correct += int((net(x).argmax(-1) == y).sum())
            total += len(y)
    net.train()
    steps_timed = max(1, len(state["losses"]))
    align_s = alignment_seconds(net, make_batch(a.batch, a.frames, a.size, vg, device), device) if variant == "aligned" else 0.0
    return net, {"variant": variant, "accuracy": correct / total, "step_ms": 1e3 * state["seconds"] / steps_timed,
                 "align_ms": 1e3 * align_s, "losses": state["losses"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=40, help="linear learning-rate warm-up steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--variants", default="aligned,plain")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--out", default=os.path.join("examples", "runs", "synthetic"))
    p.add_argument("--dump-params", default=None, help="save each rank's final parameters to PATH.rank<r>.pt")
    a = p.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() else torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads() // world))
    os.makedirs(a.out, exist_ok=True)
    results = []
    for variant in a.variants.split(","):
        net, r = train(variant, a, device, rank, world)
        results.append(r)
        if a.dump_params:
            torch.save([q.detach().cpu() for q in net.parameters()], f"{a.dump_params}.{variant}.rank{rank}.pt")
    if rank == 0:
        print(f"\n{'variant':<8} {'accuracy':>9} {'ms/step':>9} {'align ms/step':>14}")
        for r in results:
            share = f" ({100 * r['align_ms'] / r['step_ms']:.0f}%)" if r["align_ms"] else ""
            print(f"{r['variant']:<8} {r['accuracy']:>9.3f} {r['step_ms']:>9.1f} {r['align_ms']:>9.1f}{share}")
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump({"args": vars(a), "device": str(device), "world": world, "results": results}, f, indent=1)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
            for r in results:
                k = max(1, len(r["losses"]) // 50)
                smooth = torch.tensor(r["losses"]).unfold(0, k, 1).mean(1) if len(r["losses"]) >= k else torch.tensor(r["losses"])
                ax.plot(range(k, k + len(smooth)), smooth, label=r["variant"])
            ax.set(xlabel="step", ylabel="training loss", title="synthetic motion-direction task")
            ax.legend()
            fig.tight_layout()
            fig.savefig(os.path.join(a.out, "loss.png"), dpi=110)
        except ImportError:
            print("matplotlib is not installed: no plot")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
