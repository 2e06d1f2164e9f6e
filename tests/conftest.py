"""Shared test configuration: a fixed hypothesis profile so CI runs are bounded and repeatable;
ATA_EXT_HYPOTHESIS_PROFILE=long runs the property tests much longer, on fresh random examples
(a fuzzing campaign, not for CI)."""
import os

from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("ATA_EXT_HYPOTHESIS_PROFILE", "ci"))
