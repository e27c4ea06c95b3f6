"""Per-module mutation scores of the last `just mutate` run, from mutmut's own result files
(mutants/engine/*.py.meta): a markdown table on stdout and the survivors' names in
mutants/survivors.txt.

    ./dev python tools/mutation_report.py [mutants]

The score is what the laws caught: (killed + timeout) / (killed + timeout + survived +
no tests); mutants not yet run are counted apart. A timeout is a mutant that made a test
run past its time limit (an endless loop): caught.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

_CAUGHT = ("killed", "timeout")
_MISSED = ("survived", "no tests")


def main(root: Path) -> None:
    rows: list[tuple[str, Counter[str]]] = []
    survivors: list[str] = []
    for meta in sorted((root / "engine").glob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts: Counter[str] = Counter()
        for name, code in sorted(codes.items()):
            status = status_by_exit_code[code]
            counts[status] += 1
            if status in _MISSED:
                survivors.append(f"{name}: {status}")
        if codes:
            rows.append((meta.name.removesuffix(".py.meta"), counts))
    total: Counter[str] = Counter()
    print("| module | mutants | killed | timeout | survived | no tests | not run | score |")
    print("|---|---|---|---|---|---|---|---|")
    for name, counts in [*rows, ("**engine/**", total)]:
        if name != "**engine/**":
            total.update(counts)
        caught = sum(counts[s] for s in _CAUGHT)
        judged = caught + sum(counts[s] for s in _MISSED)
        score = f"{100 * caught / judged:.1f} %" if judged else "-"
        cells = [name, sum(counts.values()), counts["killed"], counts["timeout"],
                 counts["survived"], counts["no tests"], counts["not checked"], score]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    (root / "survivors.txt").write_text("".join(f"{s}\n" for s in survivors))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("mutants"))
