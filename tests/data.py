"""Where the real market data is (read in place, never copied), and what a test does without it.

`RATCHET_DATA` names the data directory; by default it is `../shared/data` beside the clone.
Without the data a test skips with one reason naming RATCHET_DATA, except under CI
(`RATCHET_REQUIRE_DATA=1`, set by .ci/run), where missing data fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RATCHET_DATA") or ROOT.parent / "shared" / "data")


def data_file(relative: str) -> Path:
    """The data file at `relative` under the data directory; skip (fail under CI) without it.
    Called at a module's top level it skips the whole module, with one line in the summary."""
    path = DATA / relative
    if not path.is_file():
        reason = (
            f"real market data not found ({path}): set RATCHET_DATA to the data directory "
            "(by default ../shared/data beside the clone)"
        )
        if os.environ.get("RATCHET_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason, allow_module_level=True)
    return path
