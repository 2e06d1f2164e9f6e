#!/usr/bin/env bash
# Every GPU check, for a machine with a CUDA GPU and no network:
#   bash benchmarks/gpu_check.sh OUTDIR [STAGE...]      STAGE: tests sanitizer align bench (default: all)
# Builds ata_ext in place against that machine's own torch and nvcc (incremental: a second call
# reuses ./build), then per stage:
#   tests      the whole test suite with the CUDA tests active          -> tests.log
#              (PYTEST_ARGS adds pytest arguments: PYTEST_ARGS='-k cuda' runs the tests on CUDA
#              tensors alone, when GPU time is short: the whole suite took five minutes on an H200 machine)
#   sanitizer  compute-sanitizer memcheck and racecheck on a small solver
#              and gather workload (benchmarks/sanitizer_workload.py)  -> sanitizer.log
#   align      bench_align.py: align against the similarity matmul, its pieces, its kernels
#              (about a minute)                                         -> align.json
#   bench      gpu_bench.py, bench.py (CPU vs scipy vs CUDA), bench_block.py
#                                                                       -> bench.json, bench.png,
#                                                                          gpu_bench.json
# summary.txt gets the device, versions, pass/fail counts, sanitizer verdicts and the benchmark
# tables, each stage with its wall time; build.log the build's tail. Stages run in the order
# given and can run in separate calls (each writes its own files) when one call has a time limit:
# `align tests sanitizer` (the build, about 2.5 minutes on 16 cores, then about 4) fits in one.
# The logs name paths relative to the checkout, so they can be kept in the repository as they
# are. Without a GPU it says so and exits non-zero. On a machine without network, WHEELS=DIR installs the wheels in DIR first (for
# example lapx, which the benchmarks compare with and skip when it is missing).
set -uo pipefail
OUTDIR=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR [tests] [sanitizer] [align] [bench]}
shift
STAGES=${*:-tests sanitizer align bench}
for stage in $STAGES; do
  case $stage in tests | sanitizer | align | bench) ;; *) echo "gpu_check: unknown stage '$stage' (tests, sanitizer, align, bench)" >&2; exit 2 ;; esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the in-place build, not an installed copy
summary="$OUTDIR/summary.txt"

# Prints the summary and exits with $1, after turning the machine's own paths in the logs (this
# checkout, the output folder, the Python library folder) into relative names.
finish() {
  local lib f
  lib=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" 2>/dev/null)
  for f in "$OUTDIR"/*.log "$summary"; do
    [ -f "$f" ] || continue
    sed -i -e "s#$PWD/##g" -e "s#$OUTDIR/##g" ${lib:+-e "s#$lib/#site-packages/#g"} "$f"
  done
  cat "$summary"
  exit "$1"
}

if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl >> "$summary" 2>&1 || echo "wheels from $WHEELS: install FAILED" >> "$summary"
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU is visible to $PY: nothing was checked" | tee "$summary"
  exit 1
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)   stages: $STAGES"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu: /'
  "$PY" -c "import torch; print('torch:', torch.__version__, 'cuda:', torch.version.cuda)"
  echo "nvcc: $(nvcc --version | tail -n 1)"
} >> "$summary"

export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export FORCE_CUDA=1
t0=$SECONDS
if ! "$PY" setup.py build_ext --inplace > "$OUTDIR/build.log" 2>&1; then
  echo "build: FAILED (see build.log)" >> "$summary"
  tail -n 80 "$OUTDIR/build.log" > "$OUTDIR/build.tail" && mv "$OUTDIR/build.tail" "$OUTDIR/build.log"
  finish 1
fi
tail -n 30 "$OUTDIR/build.log" > "$OUTDIR/build.tail" && mv "$OUTDIR/build.tail" "$OUTDIR/build.log"
echo "build: ok ($("$PY" -c 'import ata_ext; print("CUDA kernels included" if ata_ext.built_with_cuda else "CPU only!")'), $((SECONDS - t0)) s)" >> "$summary"

status=0

run_tests() {
  # pytest-xdist, where installed, spreads the suite over up to 8 processes (they share the GPU):
  # about 2 minutes on a 16-core H100 machine instead of several times that.
  local t0=$SECONDS par=""
  if "$PY" -c "import xdist" 2>/dev/null; then par="-n $(( $(nproc) < 8 ? $(nproc) : 8 ))"; fi
  # PYTEST_ARGS is split into words on purpose.
  "$PY" -m pytest -q -ra -p no:cacheprovider $par ${PYTEST_ARGS:-} tests > "$OUTDIR/tests.log" 2>&1 || status=1
  echo "tests: $(tail -n 1 "$OUTDIR/tests.log") ($((SECONDS - t0)) s)" >> "$summary"
}

run_sanitizer() {
  local t0 tool
  : > "$OUTDIR/sanitizer.log"
  for tool in memcheck racecheck; do
    t0=$SECONDS
    echo "=== compute-sanitizer --tool $tool" >> "$OUTDIR/sanitizer.log"
    if compute-sanitizer --tool "$tool" --error-exitcode 99 "$PY" benchmarks/sanitizer_workload.py >> "$OUTDIR/sanitizer.log" 2>&1; then
      echo "sanitizer $tool: clean ($((SECONDS - t0)) s)" >> "$summary"
    else
      echo "sanitizer $tool: ERRORS (see sanitizer.log)" >> "$summary"
      status=1
    fi
  done
}

# Each benchmark prints its rows into summary.txt as it measures them, so a run cut short by a
# time limit still has the rows before the cut.
run_align() {
  local t0=$SECONDS
  "$PY" benchmarks/bench_align.py --device cuda --parts --kernels --out "$OUTDIR/align.json" >> "$summary" 2>&1 || { echo "bench_align: FAILED" >> "$summary"; status=1; }
  echo "align stage: $((SECONDS - t0)) s" >> "$summary"
}

run_bench() {
  local t0=$SECONDS
  "$PY" benchmarks/gpu_bench.py --out "$OUTDIR/gpu_bench.json" >> "$summary" 2>&1 || { echo "gpu_bench: FAILED" >> "$summary"; status=1; }
  echo "gpu_bench: $((SECONDS - t0)) s" >> "$summary"
  if "$PY" benchmarks/bench.py --out "$OUTDIR/bench" > "$OUTDIR/bench.txt" 2>&1; then
    mv "$OUTDIR/bench/results.json" "$OUTDIR/bench.json"
    mv "$OUTDIR/bench/plot.png" "$OUTDIR/bench.png" 2>/dev/null
    rmdir "$OUTDIR/bench" 2>/dev/null
    { echo "bench (CPU vs scipy vs CUDA):"; cat "$OUTDIR/bench.txt"; } >> "$summary"
  else
    { echo "bench: FAILED"; cat "$OUTDIR/bench.txt"; } >> "$summary"; status=1
  fi
  rm -f "$OUTDIR/bench.txt"
  "$PY" benchmarks/bench_block.py --device cuda --reps 10 >> "$summary" 2>&1 || { echo "bench_block: FAILED" >> "$summary"; status=1; }
  echo "bench stage: $((SECONDS - t0)) s" >> "$summary"
}

for stage in $STAGES; do "run_$stage"; done

finish "$status"
