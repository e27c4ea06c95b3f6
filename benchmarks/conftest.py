"""Shared fixtures for the benchmarks: the real data read in place from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("RATCHET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPY_WEEK = DATA / "ticks" / "spy_trades_2013-10-07_2013-10-11.csv.gz"


@pytest.fixture(scope="session")
def spy_week() -> Path:
    if not SPY_WEEK.exists():
        pytest.fail(f"the SPY week is not at {SPY_WEEK} (set RATCHET_DATA to ../shared/data)")
    return SPY_WEEK
