"""Shared fixtures for the benchmarks: the real data, read in place (tests/data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data import data_file


@pytest.fixture(scope="session")
def spy_week() -> Path:
    """The week of SPY trades; without it the benchmark skips (fails under CI), naming
    RATCHET_DATA."""
    return data_file("ticks/spy_trades_2013-10-07_2013-10-11.csv.gz")
