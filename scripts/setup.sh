#!/usr/bin/env bash
# Creates .venv, installs torch and the build, test and benchmark dependencies into it, and builds
# ata_ext from source (editable). CUDA kernels are compiled when nvcc is found (see setup.py).
# Sourced by scripts/bench.sh and scripts/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
python -m pip install -q --disable-pip-version-check --no-build-isolation -e .
python -c "import ata_ext; print('ata_ext built:', 'CUDA kernels included' if ata_ext.built_with_cuda else 'CPU only')"
