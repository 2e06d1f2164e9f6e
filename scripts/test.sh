#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the whole test suite, including the other
# builds (a wheel built from the source distribution and installed; CMake against libtorch; the
# CPU module with AddressSanitizer and UBSan, and with Clang where installed), and every
# pytest-benchmark case once (--benchmark-disable), so the benchmarks and their checks against
# scipy cannot rot. CUDA tests run when a GPU is visible and skip otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ATA_EXT_TEST_BUILDS=1 python -m pytest -q -ra tests benchmarks --benchmark-disable "$@"
