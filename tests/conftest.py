"""Shared test configuration: a fixed hypothesis profile so CI runs are bounded and repeatable."""
from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.load_profile("ci")
