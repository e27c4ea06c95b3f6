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

# The journal's contract (tests/journal.py) behind every step any test takes: `engine.step`
# and the step `fold` and the shell's loops call are replaced, before any test module or the
# shell is imported, by the same function followed by the check.
import sys  # noqa: E402

import engine  # noqa: E402
from tests import journal  # noqa: E402

_engine_step = sys.modules["engine.step"]
_unchecked = _engine_step.step


def _checked_step(state, event):  # type: ignore[no-untyped-def]
    t = _unchecked(state, event)
    journal.check(event, t.commands)
    return t


engine.step = _checked_step  # type: ignore[assignment]
_engine_step.step = _checked_step  # type: ignore[assignment]
