"""The bundled sample is exactly what its documented, seeded generator writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bundled_sample_is_reproducible_from_its_generator():
    """Regenerating with tools/make_sample.py gives the committed file byte for byte."""
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "tools" / "make_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "samples" / "synthetic.jsonl").read_text(encoding="utf-8")
    assert committed == "\n".join(module.lines()) + "\n"
