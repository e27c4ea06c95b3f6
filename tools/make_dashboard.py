"""Write ratchet's Grafana dashboard (dashboards/ratchet.json) from the panels listed here.

The dashboard reads the metrics endpoint (`--metrics-port`) through a Prometheus data source
and the PostgreSQL store's tables through a PostgreSQL one; both are picked from datasource
variables, so the file imports as is. `tests/integration/test_dashboard.py` checks the
committed file against this generator, every Prometheus query against the names a real
scrape of the exporter shows, and every SQL query against the store's schema.

    python tools/make_dashboard.py dashboards/ratchet.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PROM = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
SQL = {"type": "grafana-postgresql-datasource", "uid": "${DS_POSTGRES}"}
RATE = "$__rate_interval"
ONE = 'symbol=~"$symbol"'  # the per-position panels follow the symbol variable


def _target(ref: str, expr: str, legend: str = "", *, instant: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": PROM, "refId": ref, "expr": expr, "range": True}
    if legend:
        target["legendFormat"] = legend
    if instant:
        target.update(range=False, instant=True, format="table")
    return target


def _queries(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    """(expr, legend) pairs as targets A, B, C, …"""
    return [_target(chr(ord("A") + i), e, legend) for i, (e, legend) in enumerate(pairs)]


def _with_state(metric: str) -> str:
    """A per-position metric with its position's `state` label, so that the rows of a table
    of several such queries merge (one row per position)."""
    return (
        f"{metric}{{{ONE}}} + on (symbol, key) group_left (state) "
        f"(0 * ratchet_position_state{{{ONE}}})"
    )


class _Board:
    """Panels, numbered in the order they are added."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []

    def add(self, kind: str, title: str, grid: tuple[int, int, int, int], **extra: Any) -> None:
        """A panel of `kind` at grid (x, y, w, h)."""
        x, y, w, h = grid
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "datasource": extra.pop("datasource", PROM),
        }
        panel.update(extra)
        self.panels.append(panel)

    def stat(
        self, title: str, grid: tuple[int, int, int, int], expr: str, legend: str = "",
        **extra: Any,
    ) -> None:  # fmt: skip
        """One number (or, with text_mode="name", the label of the series that is 1)."""
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": extra.pop("text_mode", "value"),
        }
        defaults: dict[str, Any] = {"unit": extra.pop("unit", "short")}
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": extra.pop("steps", [{"color": "green", "value": None}]),
        }
        if "mappings" in extra:
            defaults["mappings"] = extra.pop("mappings")
        self.add(
            "stat",
            title,
            grid,
            targets=[_target("A", expr, legend)],
            options=options,
            fieldConfig={"defaults": defaults, "overrides": []},
            **extra,
        )

    def series(
        self, title: str, grid: tuple[int, int, int, int], *pairs: tuple[str, str],
        unit: str = "short", description: str = "",
    ) -> None:  # fmt: skip
        """A time series panel of (expr, legend) queries."""
        extra: dict[str, Any] = {"description": description} if description else {}
        self.add(
            "timeseries",
            title,
            grid,
            targets=_queries(*pairs),
            fieldConfig={"defaults": {"unit": unit, "custom": {"lineWidth": 1}}, "overrides": []},
            options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "none"}},
            **extra,
        )  # fmt: skip

    def sql_table(
        self, title: str, grid: tuple[int, int, int, int], sql: str, description: str
    ) -> None:
        """A table of one SQL query on the store."""
        self.add(
            "table",
            title,
            grid,
            datasource=SQL,
            description=description,
            targets=[{"datasource": SQL, "refId": "A", "format": "table", "rawQuery": True,
                      "editorMode": "code", "rawSql": sql}],
            fieldConfig={"defaults": {}, "overrides": []},
            options={"showHeader": True},
        )  # fmt: skip


def _panels() -> list[dict[str, Any]]:
    """Every panel, top to bottom."""
    b = _Board()
    step_rate = f"rate(ratchet_engine_step_seconds_bucket[{RATE}])"
    # --- now ------------------------------------------------------------------------------
    b.stat("Open positions", (0, 0, 3, 4), "sum(ratchet_positions)")
    b.stat(
        "Bare positions",
        (3, 0, 3, 4),
        "ratchet_positions_bare",
        steps=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
        description="Positions with shares that no accepted protective order covers.",
    )
    b.stat("Link", (6, 0, 3, 4), "ratchet_link_mode == 1", "{{mode}}", text_mode="name")
    b.stat("Breaker", (9, 0, 3, 4), "ratchet_breaker_state == 1", "{{state}}", text_mode="name")
    b.stat("Phase", (12, 0, 4, 4), "ratchet_phase == 1", "{{phase}}", text_mode="name")
    goal = {"0": {"text": "entries open", "color": "green"},
            "1": {"text": "triggered: entries blocked", "color": "red"}}  # fmt: skip
    b.stat(
        "Daily goal",
        (16, 0, 4, 4),
        "ratchet_goal_triggered",
        mappings=[{"type": "value", "options": goal}],
    )
    b.stat(
        "Heartbeat age",
        (20, 0, 4, 4),
        "ratchet_heartbeat_age_seconds",
        unit="s",
        steps=[
            {"color": "green", "value": None},
            {"color": "orange", "value": 2},
            {"color": "red", "value": 5},
        ],
        description="Seconds since the loop last stepped the engine.",
    )
    # --- positions ------------------------------------------------------------------------
    b.add(
        "bargauge",
        "Positions by state",
        (0, 4, 8, 8),
        targets=[_target("A", "ratchet_positions", "{{state}}")],
        options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        fieldConfig={"defaults": {"unit": "short", "min": 0, "decimals": 0}, "overrides": []},
    )  # fmt: skip
    b.series(
        "R per position",
        (8, 4, 16, 8),
        (f"ratchet_position_r{{{ONE}}}", "{{key}}"),
        description="R multiple of each open position at its last price.",
    )
    b.series(
        "Stops vs price",
        (0, 12, 24, 9),
        (f"ratchet_position_price{{{ONE}}}", "{{key}} price"),
        (f"ratchet_position_stop{{{ONE}}}", "{{key}} stop wanted"),
        (f"ratchet_position_working_stop{{{ONE}}}", "{{key}} stop working"),
        (f"ratchet_position_entry{{{ONE}}}", "{{key}} entry"),
        unit="currencyUSD",
        description="The last price, the stop the ladder wants, the stop the broker works "
        "and the entry of each open position.",
    )
    b.add(
        "table",
        "Open positions",
        (0, 21, 12, 8),
        targets=[
            _target("A", f"ratchet_position_state{{{ONE}}}", instant=True),
            _target("B", _with_state("ratchet_position_r"), instant=True),
            _target("C", _with_state("ratchet_position_unrealized_pnl"), instant=True),
            _target("D", _with_state("ratchet_position_price_age_seconds"), instant=True),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "instance": True, "job": True},
                "renameByName": {"Value #A": "state rank", "Value #B": "R",
                                 "Value #C": "unrealized P/L", "Value #D": "price age (s)"}}},
        ],
        fieldConfig={"defaults": {}, "overrides": []},
        options={"showHeader": True},
    )  # fmt: skip
    b.series(
        "Unrealized P/L per position",
        (12, 21, 12, 8),
        (f"ratchet_position_unrealized_pnl{{{ONE}}}", "{{key}}"),
        unit="currencyUSD",
    )
    # --- protection health ----------------------------------------------------------------
    b.series(
        "Unprotected seconds",
        (0, 29, 12, 8),
        (
            "histogram_quantile(0.5, sum by (le) "
            f"(rate(ratchet_unprotected_window_seconds_bucket[{RATE}])))",
            "p50 window",
        ),
        (
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(ratchet_unprotected_window_seconds_bucket[{RATE}])))",
            "p99 window",
        ),
        (f"increase(ratchet_unprotected_window_seconds_sum[{RATE}])", "unprotected s in interval"),
        unit="s",
        description="How long operations left shares without an accepted protective order "
        "(SPEC §3: at most one broker round trip).",
    )
    b.series(
        "Conflicts and retries",
        (12, 29, 12, 8),
        (f"sum by (type) (increase(ratchet_conflicts_total[{RATE}]))", "conflict {{type}}"),
        (f"increase(ratchet_retries_total[{RATE}])", "retries"),
    )
    # --- the day --------------------------------------------------------------------------
    b.series(
        "Daily P&L, peak and give-back line",
        (0, 37, 16, 9),
        ("ratchet_daily_pnl", "daily P&L"),
        ("ratchet_daily_peak", "peak"),
        ("ratchet_daily_peak * (1 - ratchet_goal_giveback)", "give-back line"),
        ("ratchet_goal_target > 0", "target"),
        unit="currencyUSD",
        description="The goal triggers when the peak is above giveback × target and the day's "
        "P&L falls to the give-back line, peak × (1 − giveback) (SPEC §7).",
    )
    b.add(
        "state-timeline",
        "Phase and breaker",
        (16, 37, 8, 9),
        targets=_queries(("ratchet_phase", "phase {{phase}}"),
                         ("ratchet_breaker_state", "breaker {{state}}"),
                         ("ratchet_link_mode", "link {{mode}}")),
        fieldConfig={"defaults": {"mappings": [{"type": "value", "options": {
            "0": {"text": " ", "color": "transparent"},
            "1": {"text": "current", "color": "green"}}}]}, "overrides": []},
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
    )  # fmt: skip
    # --- activity -------------------------------------------------------------------------
    b.series(
        "Orders by outcome",
        (0, 46, 8, 8),
        (f"sum by (outcome) (increase(ratchet_orders_total[{RATE}]))", "{{outcome}}"),
    )
    b.series(
        "Stop moves and partial fills",
        (8, 46, 8, 8),
        (f"increase(ratchet_stop_moves_total[{RATE}])", "stop moves"),
        (f"increase(ratchet_partial_fills_total[{RATE}])", "partial fills"),
    )
    b.series(
        "Alerts by reason",
        (16, 46, 8, 8),
        (f"sum by (reason) (increase(ratchet_alerts_total[{RATE}]))", "{{reason}}"),
    )
    # --- latency and outlets --------------------------------------------------------------
    b.series(
        "Engine step seconds",
        (0, 54, 8, 8),
        (f"histogram_quantile(0.5, sum by (le) ({step_rate}))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) ({step_rate}))", "p99"),
        unit="s",
    )
    b.series(
        "Order round trip seconds",
        (8, 54, 8, 8),
        (
            "histogram_quantile(0.5, sum by (le, request) "
            f"(rate(ratchet_order_round_trip_seconds_bucket[{RATE}])))",
            "p50 {{request}}",
        ),
        (
            "histogram_quantile(0.99, sum by (le, request) "
            f"(rate(ratchet_order_round_trip_seconds_bucket[{RATE}])))",
            "p99 {{request}}",
        ),
        unit="s",
    )
    b.series(
        "Alert delivery and the store",
        (16, 54, 8, 8),
        (
            f"sum by (sink, outcome) (increase(ratchet_alert_deliveries_total[{RATE}]))",
            "alerts {{sink}} {{outcome}}",
        ),
        (f"sum(increase(ratchet_store_written_total[{RATE}]))", "store rows written"),
        (f"increase(ratchet_store_errors_total[{RATE}])", "store errors"),
        ("ratchet_store_behind", "journals behind"),
    )
    # --- the PostgreSQL store -------------------------------------------------------------
    b.sql_table(
        "Stop history (PostgreSQL store)",
        (0, 62, 12, 9),
        'SELECT ts AS "time", symbol, key, old_stop, new_stop, r, reason\n'
        "FROM stop_loss_history\nWHERE $__timeFilter(ts)\nORDER BY ts DESC, line DESC\n"
        "LIMIT 200",
        "Every stop move, from the store's stop_loss_history table.",
    )
    b.sql_table(
        "Closed trades (PostgreSQL store)",
        (12, 62, 12, 9),
        'SELECT closed AS "time", symbol, key, side, qty, entry_price, exit_price, pnl, r, '
        "reason\nFROM trades\nWHERE $__timeFilter(closed)\nORDER BY closed DESC\nLIMIT 200",
        "Closed trades, from the store's trades table.",
    )
    return b.panels


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    return {
        "title": "ratchet",
        "uid": "ratchet",
        "description": "ratchet's profit protection: positions, stops, the day and its outlets.",
        "tags": ["ratchet", "trading"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                 "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
                 "options": []},
                {"name": "DS_POSTGRES", "label": "ratchet store (PostgreSQL)",
                 "type": "datasource", "query": "grafana-postgresql-datasource", "current": {},
                 "hide": 0, "refresh": 1, "regex": "", "options": []},
                {"name": "symbol", "label": "Symbol", "type": "query", "datasource": PROM,
                 "definition": "label_values(ratchet_position_r, symbol)",
                 "query": {"query": "label_values(ratchet_position_r, symbol)",
                           "refId": "symbols"},
                 "includeAll": True, "multi": True, "allValue": ".*", "current": {},
                 "refresh": 2, "sort": 1, "hide": 0, "options": []},
            ]
        },
        "panels": _panels(),
    }  # fmt: skip


def text() -> str:
    """The file's exact text."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/make_dashboard.py dashboards/ratchet.json")
    Path(sys.argv[1]).write_text(text(), encoding="utf-8")
