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


def _bound_and_public(path: Path) -> tuple[list[str] | None, set[str], set[str]]:
    """A module's __all__, every name it binds at module level, and the public names it
    defines itself (click commands, registered by their decorators, excepted)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    listed: list[str] | None = None
    bound: set[str] = set()
    public: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    if target.id == "__all__":
                        listed = list(ast.literal_eval(node.value))  # type: ignore[arg-type]
                    bound.add(target.id)
                    public.add(target.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            commands = any(
                isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                and d.func.attr in {"command", "group"}
                for d in node.decorator_list
            )  # fmt: skip
            if not commands:
                public.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            bound |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
    public = {name for name in public if not name.startswith("_")}
    return listed, bound, public


def test_every_module_lists_exactly_its_public_names_in_all():
    """Each engine and shell module has an __all__ naming every public name it defines, and
    nothing it does not bind (re-exports are deliberate imports)."""
    root = ENGINE.parent
    for path in sorted([*root.glob("engine/*.py"), *root.glob("shell/**/*.py")]):
        if path.name == "__init__.py":
            continue
        listed, bound, public = _bound_and_public(path)
        name = path.relative_to(root).as_posix()
        assert listed is not None, f"{name} has no __all__"
        assert public <= set(listed), (name, sorted(public - set(listed)))
        assert set(listed) <= bound, (name, sorted(set(listed) - bound))
