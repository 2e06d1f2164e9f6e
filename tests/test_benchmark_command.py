"""The README's main job (benchmarks/bench.py) runs, checks against scipy and writes its outputs; the GPU
check script's Python parts run too (on the CPU, torch.cuda faked)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_tiny(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--tiny", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "speedup vs scipy" in r.stdout
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["results"] and all("ata_ext cpu" in row["seconds"] for row in data["results"])
    # Every case is timed on a stream of different inputs (ata_ext.testing.stream_size), not one.
    assert all(row["inputs"] >= 2 for row in data["results"] + data["ragged"] + data["tracking"])
    assert data["tracking"] and "tracking, 4 x 10 tracks x 8 detections, cost_limit 0.1" in r.stdout
    assert (tmp_path / "plot.png").stat().st_size > 0


# torch.cuda faked on the CPU, so the scripts' CUDA code runs end to end: a "CUDA" tensor is a view
# of the CPU tensor marked as such, and the solvers given marked tensors run the CUDA kernel's CPU
# twin (algorithm="auction", bit-identical to the kernel), so the scripts' checks of the CUDA
# answers meet the auction's answers and tolerance. The GPU scripts otherwise run only on the rare
# machine with a GPU, where a script broken since its last run would waste that time.
FAKE_CUDA = """
import sys, runpy, torch, ata_ext
torch.cuda.is_available = lambda: True
torch.cuda.synchronize = lambda *a: None
torch.cuda.get_device_name = lambda *a: "fake"
def to_fake_gpu(self, *a, **k):
    view = self.view_as(self)
    view.on_fake_gpu = True
    return view
torch.Tensor.cuda = to_fake_gpu
def twin_on_fake_gpu(solve):
    def wrapped(cost, *a, **k):
        first = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
        if getattr(first, "on_fake_gpu", False):
            k.setdefault("algorithm", "auction")
        return solve(cost, *a, **k)
    return wrapped
ata_ext.linear_sum_assignment = twin_on_fake_gpu(ata_ext.linear_sum_assignment)
ata_ext.linear_sum_assignment_ragged = twin_on_fake_gpu(ata_ext.linear_sum_assignment_ragged)
"""


def run_faked(code, tmp_path):
    r = subprocess.run([sys.executable, "-c", FAKE_CUDA + code], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_bench_cuda_column_with_cuda_faked(tmp_path):
    out = run_faked(f"sys.argv = ['bench.py', '--tiny', '--out', '.']\n"
                    f"runpy.run_path({os.path.join(ROOT, 'benchmarks', 'bench.py')!r}, run_name='__main__')", tmp_path)
    assert "GPU fake" in out and "ata_ext cuda ragged" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert all("ata_ext cuda" in row["seconds"] for row in data["results"] + data["tracking"])


def test_gpu_bench_with_cuda_faked(tmp_path):
    """gpu_bench.py's every case, each problem cut to 40 x 40 at most (the batch sizes as they are),
    its answers checked against scipy as on a GPU; the profiler's kernel time stubbed."""
    out = run_faked(f"sys.path.insert(0, {os.path.join(ROOT, 'benchmarks')!r})\n"
                    "import gpu_bench\n"
                    "full = gpu_bench.problems\n"
                    "gpu_bench.problems = lambda kind, batch, n, m=None, seed=0: full(kind, batch, min(n, 40), m and min(m, 40), seed)\n"
                    "gpu_bench.kernel_time = lambda *a, **k: 1e-3\n"
                    "sys.argv = ['gpu_bench.py', '--out', 'gpu_bench.json']\n"
                    "gpu_bench.main()", tmp_path)
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert data["device"] == "fake" and len(data["rows"]) == out.count(" problems/s") >= 30
    assert {"video", "uniform", "track_lim", "detr", "points"} <= {row["case"] for row in data["rows"]}


def test_sanitizer_workload_with_cuda_faked(tmp_path):
    src = open(os.path.join(ROOT, "benchmarks", "sanitizer_workload.py")).read()
    assert src.count('device="cuda"') >= 2
    (tmp_path / "workload.py").write_text(src.replace('device="cuda"', 'device="cpu"'))
    assert "sanitizer workload: ok" in run_faked("runpy.run_path('workload.py', run_name='__main__')", tmp_path)


def test_bench_align_and_block_run(tmp_path):
    """The align and encoder-block benchmarks (the GPU check runs them too) at a tiny shape: every
    part is timed, and the profiler labels the block benchmark splits its time by still exist."""
    for script, args in (("bench_align.py", ["--shape", "2,3,16,8", "--parts", "--literal-clips", "1"]),
                         ("bench_block.py", ["--shape", "1,2,16,64", "--reps", "1"])):
        out = tmp_path / (script + ".json")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args, "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((tmp_path / "bench_align.py.json").read_text())
    assert [row["features"] for row in rows] == ["random", "coherent"]
    assert all({"solver", "gather", "similarities, one bmm", "align, bmm per pair"} <= set(row["parts_s"]) for row in rows)
    block = json.loads((tmp_path / "bench_block.py.json").read_text())
    assert all(seconds > 0 for seconds in block["parts_seconds"].values()), block
