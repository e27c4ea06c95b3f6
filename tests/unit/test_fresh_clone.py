"""A clone with nothing beside it: the data tests skip with one line naming RATCHET_DATA, and CI
refuses to run rather than skip them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_TESTS = "tests/integration/test_real_ticks.py"  # the tests that read ../shared/data


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return {**env, **extra}


def test_without_the_data_the_data_tests_skip_saying_why(tmp_path):
    """No data where RATCHET_DATA points: the module skips, and the summary (pytest -rs, from
    pyproject's addopts) says so in one line that names RATCHET_DATA."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", DATA_TESTS, "-p", "no:cacheprovider"],
        cwd=ROOT, env=_env(RATCHET_DATA=str(tmp_path)), capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode in (0, 5), run.stdout[-2000:]  # 5: the module skipped whole
    skipped = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1 and "set RATCHET_DATA" in skipped[0], run.stdout[-2000:]
    assert "passed" not in run.stdout and "1 skipped" in run.stdout


def test_under_ci_missing_data_fails_instead_of_skipping(tmp_path):
    """With RATCHET_REQUIRE_DATA=1 (CI) a data test without its data fails the run."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", DATA_TESTS, "-p", "no:cacheprovider"],
        cwd=ROOT, env=_env(RATCHET_DATA=str(tmp_path), RATCHET_REQUIRE_DATA="1"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode != 0 and "real market data not found" in run.stdout


def test_ci_refuses_to_run_without_the_data(tmp_path):
    """.ci/run without the data: exit 1 with one line saying what is missing and where to put
    it, before it installs anything."""
    run = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")],
        env=_env(RATCHET_DATA=str(tmp_path), RATCHET_VENV=str(tmp_path / "venv")),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 1 and run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("ci: the real market data is missing") and "RATCHET_DATA" in line
    assert not (tmp_path / "venv").exists()
