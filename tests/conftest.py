"""Hypothesis profiles, picked once by RATCHET_PROFILE (dev by default; ci in CI; soak, mutate by
hand)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("dev", max_examples=40, **_COMMON)
# CI: the same 200 examples on every run (derandomized), so that a red CI is the change's
# doing and replays as is; new inputs are searched for by `just soak` (random, 10,000).
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_COMMON)
settings.register_profile("soak", max_examples=10_000, **_COMMON)
# `just mutate`: few, repeatable examples per law (every mutant runs the laws that reach it).
settings.register_profile("mutate", max_examples=15, derandomize=True, database=None, **_COMMON)
settings.load_profile(os.environ.get("RATCHET_PROFILE", "dev"))
