"""Shared test configuration: a fixed hypothesis profile so CI runs are bounded and repeatable;
ATA_EXT_HYPOTHESIS_PROFILE=long runs the property tests much longer, on fresh random examples
(a fuzzing campaign, not for CI). Likewise ATA_EXT_FUZZ=START:COUNT runs the fuzz tests over
ata_ext.testing.random_problems (against scipy, and the CUDA kernel on the emulator against its
twin) from seeds START .. START+COUNT-1 instead of CI's one each (fuzz_seeds)."""
import os

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
