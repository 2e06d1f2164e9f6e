#!/usr/bin/env bash
# Every GPU check in one go, for a machine with a CUDA GPU and no network:
#   bash benchmarks/gpu_check.sh OUTDIR
# Builds ata_ext from source against that machine's own torch and nvcc, runs the whole test suite
# with the CUDA tests active, compute-sanitizer memcheck and racecheck on a small solver and gather
# workload, and the GPU benchmarks. OUTDIR gets a handful of small files fit to commit under
# benchmarks/results/: summary.txt (device, versions, pass/fail counts, sanitizer verdicts),
# tests.log, sanitizer.log, build.log, bench.json, bench.png, gpu_bench.json, align.json.
# Without a GPU it says so and exits non-zero.
set -uo pipefail
OUTDIR=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
summary="$OUTDIR/summary.txt"

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU is visible to $PY: nothing was checked" | tee "$summary"
  exit 1
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu: /'
  "$PY" -c "import torch; print('torch:', torch.__version__, 'cuda:', torch.version.cuda)"
  echo "nvcc: $(nvcc --version | tail -n 1)"
} > "$summary"

# Build from source; nothing to fetch (--no-deps), the machine's own torch.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
if ! "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUTDIR/build.log" 2>&1; then
  echo "build: FAILED (see build.log)" >> "$summary"
  tail -n 60 "$OUTDIR/build.log" > "$OUTDIR/build.tail" && mv "$OUTDIR/build.tail" "$OUTDIR/build.log"
  cat "$summary"
  exit 1
fi
echo "build: ok ($("$PY" -c 'import ata_ext; print("CUDA kernels included" if ata_ext.built_with_cuda else "CPU only!")'))" >> "$summary"
tail -n 40 "$OUTDIR/build.log" > "$OUTDIR/build.tail" && mv "$OUTDIR/build.tail" "$OUTDIR/build.log"

status=0
"$PY" -m pytest -q -ra -p no:cacheprovider tests > "$OUTDIR/tests.log" 2>&1 || status=1
echo "tests: $(tail -n 1 "$OUTDIR/tests.log")" >> "$summary"

: > "$OUTDIR/sanitizer.log"
for tool in memcheck racecheck; do
  echo "=== compute-sanitizer --tool $tool" >> "$OUTDIR/sanitizer.log"
  if compute-sanitizer --tool "$tool" --error-exitcode 99 "$PY" benchmarks/sanitizer_workload.py >> "$OUTDIR/sanitizer.log" 2>&1; then
    echo "sanitizer $tool: clean" >> "$summary"
  else
    echo "sanitizer $tool: ERRORS (see sanitizer.log)" >> "$summary"
    status=1
  fi
done

if "$PY" benchmarks/bench.py --out "$OUTDIR/bench" > "$OUTDIR/bench.txt" 2>&1; then
  mv "$OUTDIR/bench/results.json" "$OUTDIR/bench.json"
  mv "$OUTDIR/bench/plot.png" "$OUTDIR/bench.png" 2>/dev/null
  rmdir "$OUTDIR/bench" 2>/dev/null
  { echo "bench (CPU vs scipy vs lapx vs CUDA):"; cat "$OUTDIR/bench.txt"; } >> "$summary"
else
  echo "bench: FAILED" >> "$summary"; cat "$OUTDIR/bench.txt" >> "$summary"; status=1
fi
rm -f "$OUTDIR/bench.txt"

if "$PY" benchmarks/gpu_bench.py --out "$OUTDIR/gpu_bench.json" >> "$summary" 2>&1; then :; else
  echo "gpu_bench: FAILED" >> "$summary"; status=1
fi

if ! "$PY" benchmarks/bench_align.py --device cuda --out "$OUTDIR/align.json" >> "$summary" 2>&1; then
  echo "bench_align: FAILED" >> "$summary"; status=1
fi
if ! "$PY" benchmarks/bench_block.py --device cuda --reps 10 >> "$summary" 2>&1; then
  echo "bench_block: FAILED" >> "$summary"; status=1
fi

cat "$summary"
exit $status
