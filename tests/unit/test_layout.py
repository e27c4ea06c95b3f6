"""The engine's modules import one another one way only: the dispatcher at the top, the state
and its vocabulary at the bottom, no handler calling back into `step`."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def _imports() -> dict[str, set[str]]:
    """engine module -> the engine modules it imports at run time (not for type checking)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ENGINE.glob("*.py")):
        name = path.stem
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in tree.body:  # module level only; `if TYPE_CHECKING:` blocks are skipped
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engine."):
                found.add(node.module.split(".")[1])  # type: ignore[union-attr]
        graph[name] = found - {name}
    return graph


def test_the_engine_import_graph_has_no_cycle():
    """A topological order of the engine's modules exists."""
    try:
        order = list(TopologicalSorter(_imports()).static_order())
    except CycleError as exc:  # pragma: no cover - the failure message names the cycle
        raise AssertionError(f"import cycle: {exc.args[1]}") from None
    assert order[-1] in {"__init__", "step"}


def test_only_the_package_imports_the_dispatcher():
    """No handler module imports `engine.step`: handlers never call back into the dispatch."""
    importers = sorted(m for m, deps in _imports().items() if "step" in deps)
    assert importers == ["__init__"]
