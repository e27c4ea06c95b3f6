"""dashboards/ratchet.json: what its generator writes, a Grafana dashboard model that imports as
is (datasources from variables), whose Prometheus queries name only metrics a real scrape of
the exporter shows and whose SQL names only tables and columns the store creates."""

from __future__ import annotations

import importlib.util
import json
import re
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine import Config, EngineState
from shell.alerts import AlertDispatcher
from shell.broker.simulated import Faults, SimulatedBroker
from shell.config import AlertSettings, StoreSettings
from shell.metrics import Metrics
from shell.secret import Secret
from shell.simulate import run_simulation
from shell.store import MIGRATIONS, StoreWriter
from tests import portfolio
from tests.receivers import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "ratchet.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
# PromQL words that are not metric names (functions are recognised by the "(" after them).
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
SQL_WORDS = {"select", "as", "from", "where", "order", "by", "desc", "asc", "limit", "and",
             "or", "not", "null", "is", "group", "distinct", "on", "in", "between"}  # fmt: skip


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_dashboard", ROOT / "tools" / "make_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _targets(model: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in model["panels"] for target in panel.get("targets", [])]


def exported_names(tmp_path: Path) -> set[str]:
    """Every name the endpoint shows, with the suffixes of counters and histograms, after a
    session with positions open, faults, an alert dispatcher and a store writer attached."""
    metrics = Metrics()
    host, port = metrics.serve("127.0.0.1", 0)
    dispatcher = AlertDispatcher(AlertSettings(), tmp_path)
    writer = StoreWriter(
        StoreSettings(url=Secret(f"postgresql://postgres@127.0.0.1:{free_port()}/test")),
        max_backoff=0.05,
    )
    try:
        metrics.attach_alerts(dispatcher)
        metrics.attach_store(writer)

        def sink(command: Any) -> None:
            metrics.observe(command)
            dispatcher.submit(command)

        broker = SimulatedBroker(faults=Faults.parse("high,seed=1"))
        run_simulation(portfolio.events(), EngineState.empty(Config()), broker, sink,
                       metrics.on_step)  # fmt: skip
        metrics.step_seconds(0.0001)
        metrics.order_sent("o", 1.0)
        metrics.order_answered("o", 1.1)
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            text = response.read().decode("utf-8")
    finally:
        writer.close(timeout=0.2)
        dispatcher.close(timeout=5)
        metrics.close()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    assert "ratchet_position_r" in names and "ratchet_store_written_total" in names
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if re.match(r"\s*\(", expr[match.end() :]):
            continue  # a function call
        if match.group().lower() not in PROMQL_WORDS:
            found.add(match.group())
    return found


def store_columns() -> dict[str, set[str]]:
    """Each table the store's migrations create, with its columns (read from the SQL)."""
    tables: dict[str, set[str]] = {}
    for _, _, text in MIGRATIONS:
        for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS \{s\}\.(\w+) \((.*?)\);", text,
                                     flags=re.S):  # fmt: skip
            columns = set()
            for part in body.split(","):
                word = part.strip().split()[0] if part.strip() else ""
                if word and word.upper() != "PRIMARY" and not word.endswith(")"):
                    columns.add(word)
            tables[name] = columns
    return tables


def sql_names(query: str) -> tuple[set[str], set[str]]:
    """(tables, other identifiers) of a panel's SQL, without keywords, Grafana's macros, quoted
    aliases and the aliases given with AS."""
    query = re.sub(r'"[^"]*"', "", query)
    query = re.sub(r"'[^']*'", "", query)
    query = re.sub(r"\$__\w+", "", query)
    aliases = set(re.findall(r"\bAS\s+(\w+)", query, flags=re.I))
    tables = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", query, flags=re.I))
    words = {w for w in re.findall(r"[A-Za-z_]\w*", query) if w.lower() not in SQL_WORDS}
    return tables, words - tables - aliases


def test_the_dashboard_is_what_its_generator_writes():
    """tools/make_dashboard.py gives the committed file byte for byte."""
    assert DASHBOARD.read_text(encoding="utf-8") == _generator().text()


def test_the_dashboard_imports_as_is():
    """A Grafana dashboard model: title, uid, unique panel ids inside the 24-column grid, and
    every panel and query on a datasource picked by a datasource variable (no __inputs)."""
    model = _model()
    assert model["title"] == "ratchet" and model["uid"] and "__inputs" not in model
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["DS_POSTGRES"]["type"] == "datasource"
    assert variables["DS_POSTGRES"]["query"] == "grafana-postgresql-datasource"
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and refs, panel["title"]
    for panel, target in _targets(model):
        uid = target["datasource"]["uid"]
        assert uid in ("${DS_PROMETHEUS}", "${DS_POSTGRES}"), panel["title"]
        assert uid == panel["datasource"]["uid"], panel["title"]
    titles = " | ".join(p["title"] for p in model["panels"])
    for wanted in ("Positions by state", "R per position", "Stops vs price", "Unprotected",
                   "Conflicts and retries", "give-back", "Phase and breaker"):  # fmt: skip
        assert wanted in titles


def test_every_prometheus_query_names_only_metrics_the_endpoint_exports(tmp_path):
    """Each query's metric names are among those a real scrape of the exporter shows; the
    symbol variable reads a per-position series."""
    names = exported_names(tmp_path)
    model = _model()
    queried: set[str] = set()
    for panel, target in _targets(model):
        if target["datasource"]["uid"] != "${DS_PROMETHEUS}":
            continue
        used = metric_names(target["expr"])
        assert used, (panel["title"], target["expr"])
        assert used <= names, (panel["title"], sorted(used - names))
        queried |= used
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            metric = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
            assert metric is not None and metric.group(1) in names
    assert len(queried) >= 25  # the panels cover the exporter, not a corner of it


def test_the_name_extraction_sees_what_it_must():
    """The PromQL reader keeps metric names and drops functions, labels, ranges, keywords."""
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$s"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert metric_names("b * (1 - c) > 0 and d == 1") == {"b", "c", "d"}
    assert metric_names("nope_total") == {"nope_total"}


def test_the_sql_panels_name_only_tables_and_columns_the_store_creates():
    """Each SQL query reads tables of the store's schema and only their columns."""
    tables = store_columns()
    assert tables["stop_loss_history"] >= {"ts", "key", "new_stop"}
    sql_panels = 0
    for panel, target in _targets(_model()):
        if target["datasource"]["uid"] != "${DS_POSTGRES}":
            continue
        sql_panels += 1
        used_tables, words = sql_names(target["rawSql"])
        assert used_tables and used_tables <= set(tables), (panel["title"], used_tables)
        columns = set().union(*(tables[t] for t in used_tables))
        assert words <= columns, (panel["title"], sorted(words - columns))
    assert sql_panels >= 1
    assert sql_names("SELECT nope AS x FROM trades WHERE $__timeFilter(ts)") == (
        {"trades"},
        {"nope", "ts"},
    )
