#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the main job: ata_ext's solver against a
# scipy loop and lapx, printing a table; results.json and plot.png go to benchmarks/results/latest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python benchmarks/bench.py "$@"
