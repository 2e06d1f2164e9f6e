"""Shared test configuration: a fixed hypothesis profile so CI runs are bounded and repeatable;
ATA_EXT_HYPOTHESIS_PROFILE=long runs the property tests much longer, on fresh random examples
(a fuzzing campaign, not for CI). Likewise ATA_EXT_FUZZ=START:COUNT runs the fuzz tests over
ata_ext.testing.random_problems (against scipy, and the CUDA kernel on the emulator against its
twin) from seeds START .. START+COUNT-1 instead of CI's one each (fuzz_seeds). And a fixture,
rss_mib, reads the process's resident set size."""
import os

import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("ATA_EXT_HYPOTHESIS_PROFILE", "ci"))


def fuzz_seeds(*ci_seeds):
    """The random_problems seeds a fuzz test runs: ci_seeds, or ATA_EXT_FUZZ's range (a failing
    seed shows in the test's id)."""
    spec = os.environ.get("ATA_EXT_FUZZ")
    if not spec:
        return list(ci_seeds)
    start, count = (int(v) for v in spec.split(":"))
    return list(range(start, start + count))


@pytest.fixture
def rss_mib():
    """A function giving this process's resident set size in MiB (Linux: /proc)."""
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("reads the resident set size from /proc")
    if "libasan" in os.environ.get("LD_PRELOAD", ""):  # the sanitized build's run (test_builds.py)
        pytest.skip("AddressSanitizer's allocator keeps freed memory in quarantine, resident")

    def read():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return read
