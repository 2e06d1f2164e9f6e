"""The README's main job (benchmarks/bench.py) runs, checks against scipy and writes its outputs."""
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
