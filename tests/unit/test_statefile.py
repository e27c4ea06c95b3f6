"""snapshot.json and the live journal's checkpoints hold the engine's state exactly."""

from __future__ import annotations

import json
from datetime import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Config, EngineState, GoalConfig
from engine.config import SessionConfig
from engine.phase import PhaseConfig
from shell.statefile import state_from_json, state_to_json
from tests.harness import trace
from tests.strategies import configs, fault_models, histories, market_fills


def _round_trip(state: EngineState) -> EngineState:
    text = json.dumps(state_to_json(state), sort_keys=True, separators=(",", ":"))
    back = state_from_json(json.loads(text))
    assert json.dumps(state_to_json(back), sort_keys=True, separators=(",", ":")) == text
    return back


@given(histories(), configs(), market_fills(), fault_models(), st.booleans())
def test_every_state_of_a_history_comes_back_equal_from_its_json(
    history, config, fill, faults, daily
):
    """Positions mid-operation, retries due, a breaker, pending entries, marks, sessions and
    phases: every state a history passes through is equal to itself read back, and writes
    the same bytes again."""
    if daily:  # sessions and phases on: their counters are part of the state too
        config = Config(
            config.protection,
            goal=GoalConfig(target=config.goal.target or 500),
            session=SessionConfig(ZoneInfo("America/New_York"), time(4)),
            phase=PhaseConfig(enabled=True),
        )
    for step in trace(history.events, config, fill, faults):
        assert _round_trip(step.after) == step.after


def test_a_state_that_is_not_one_is_refused_with_what_is_missing():
    """A snapshot from something else is refused naming what it lacks, never half-read."""
    with pytest.raises(ValueError, match="not an engine state: no positions"):
        state_from_json({"config": {}})
    bad = state_to_json(EngineState.empty())
    bad["due"] = "not a time"
    with pytest.raises(ValueError, match="not an engine state"):
        state_from_json(bad)
