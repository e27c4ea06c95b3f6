"""specs/property_map.toml and the laws in tests/ agree, number for number."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = tomllib.loads((ROOT / "specs" / "property_map.toml").read_text(encoding="utf-8"))
LAW = re.compile(r"^test_(p\d{2}|a\d+|g\d+|ph\d+)_")


def _test_functions() -> dict[str, set[str]]:
    """Every test function under tests/, by file path relative to the project."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def test_every_property_from_1_to_38_is_in_the_map_once():
    """The map holds p01..p38, each proven or pending with who will prove it."""
    numbered = sorted(k for k in MAP if re.fullmatch(r"p\d{2}", k))
    assert numbered == [f"p{n:02d}" for n in range(1, 39)]
    for key in numbered:
        entry = MAP[key]
        assert entry["status"] in {"proven", "pending"}, key
        assert entry["name"] and entry["requirements"], key
        if entry["status"] == "pending":
            assert entry["by"], key


def test_every_proven_property_names_laws_that_exist_and_carry_its_number():
    """Each listed test exists, and its name starts with test_pNN_ for that property."""
    functions = _test_functions()
    for key, entry in MAP.items():
        if entry.get("status") != "proven":
            continue
        assert entry["tests"], key
        for ref in entry["tests"]:
            path, name = ref.split("::")
            assert name in functions.get(path, set()), f"{key}: {ref} does not exist"
            match = LAW.match(name)
            assert match and match.group(1) == key, f"{key}: {name} names another number"


def test_every_law_is_listed_under_its_property():
    """No law test_pNN_... (or test_aN_...) exists that the map does not list under its key."""
    listed = {ref for entry in MAP.values() for ref in entry.get("tests", [])}
    for path, names in _test_functions().items():
        for name in names:
            if LAW.match(name):
                assert f"{path}::{name}" in listed, f"{path}::{name} is not in the map"


def test_requirements_cited_by_the_map_exist_in_the_requirements():
    """Every requirement number the map cites is defined in specs/requirements.md."""
    text = (ROOT / "specs" / "requirements.md").read_text(encoding="utf-8")
    defined = set(re.findall(r"\*\*(\d+\.\d+)\*\*", text))
    for key, entry in MAP.items():
        for requirement in entry.get("requirements", []):
            assert requirement in defined, f"{key} cites {requirement}"
