"""engine/ is pure: no clock, randomness, logging, files, network, threads or shell."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
BANNED_MODULES = {
    "time", "random", "secrets", "uuid", "logging", "os", "io", "pathlib", "shutil", "tempfile",
    "sys", "socket", "http", "urllib", "requests", "httpx", "threading", "asyncio", "concurrent",
    "multiprocessing", "subprocess", "shell", "zoneinfo",
}  # fmt: skip
BANNED_CALLS = {"open", "print", "input", "now", "utcnow", "today", "eval", "exec"}


def _violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in BANNED_MODULES:
                found.append(node.module or "")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in BANNED_CALLS:
                found.append(f"{name}()")
        elif isinstance(node, ast.Global):
            found.append("global")
    return found


def test_engine_imports_and_calls_nothing_effectful():
    """No module under engine/ imports an effectful module or calls the clock or files."""
    problems = {
        str(path): bad
        for path in ENGINE.rglob("*.py")
        if (bad := _violations(path.read_text(encoding="utf-8")))
    }
    assert problems == {}


def test_the_checker_sees_effects():
    """The checker itself flags each kind of effect (so the test above can fail)."""
    assert _violations("import time") == ["time"]
    assert _violations("from shell.cli import main") == ["shell.cli"]
    assert _violations("import datetime\ndatetime.datetime.now()") == ["now()"]
    assert _violations("open('x')") == ["open()"]
    assert _violations("def f():\n    global X") == ["global"]
