"""The example training loop runs (tiny size, few steps), resumes from its checkpoints, and its
DistributedDataParallel variant keeps two CPU ranks' parameters identical; the tracking example
gets the same tracks from every solver."""
import json
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_synthetic.py")
TINY = ["--batch", "4", "--frames", "4", "--size", "16", "--eval-batches", "1", "--ckpt-every", "2"]


def run(args, env=None, launcher=None):
    cmd = (launcher or [sys.executable]) + [SCRIPT] + TINY + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_example_trains_and_resumes(tmp_path):
    out = str(tmp_path / "run")
    r = run(["--steps", "3", "--out", out])
    assert "accuracy" in r.stdout and "aligned" in r.stdout and "plain" in r.stdout
    data = json.loads(open(os.path.join(out, "results.json")).read())
    assert [len(x["losses"]) for x in data["results"]] == [3, 3]
    assert os.path.getsize(os.path.join(out, "loss.png")) > 0
    # Resume: continues at step 3 from the checkpoints instead of starting over.
    r = run(["--steps", "5", "--out", out, "--resume", "--variants", "aligned"])
    assert "training steps 3..5" in r.stdout
    data = json.loads(open(os.path.join(out, "results.json")).read())
    assert len(data["results"][0]["losses"]) == 5


def test_ddp_two_cpu_ranks_stay_identical(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    dump = str(tmp_path / "params")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    run(["--steps", "3", "--variants", "aligned", "--out", str(tmp_path / "ddp"), "--dump-params", dump],
        env=env, launcher=launcher)
    p0 = torch.load(f"{dump}.aligned.rank0.pt")
    p1 = torch.load(f"{dump}.aligned.rank1.pt")
    assert len(p0) == len(p1) > 0
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))
    # They trained: not every parameter still equals its initial value.
    torch.manual_seed(0)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from train_synthetic import VideoTransformer

    init = [q.detach() for q in VideoTransformer(frames=4, size=16).parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(p0, init))


def test_tracking_example_solvers_agree():
    """The batched call, compat.lapjv, lapx and scipy associate identically, frame after frame (the
    script exits non-zero otherwise), on a few small videos."""
    script = os.path.join(ROOT, "examples", "track_synthetic.py")
    r = subprocess.run([sys.executable, script, "--videos", "3", "--frames", "15", "--threads", "1"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "every solver gave the same tracks" in r.stdout
    # lapx is a test dependency, but a machine without network (a GPU check) may lack it.
    try:
        import lap  # noqa: F401

        lapx = True
    except ImportError:
        lapx = False
    for name in ("ata_ext batched", "ata_ext lapjv", "scipy") + (("lapx lapjv",) if lapx else ()):
        assert name in r.stdout
