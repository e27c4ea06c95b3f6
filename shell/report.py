"""Rendering a simulation summary as text for people and as JSON for programs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shell.codec import to_jsonable
from shell.simulate import Summary

__all__ = ["render_summary", "summary_to_json"]

_CENT = Decimal("0.01")


def summary_to_json(summary: Summary, *, bad_lines: int = 0) -> dict[str, Any]:
    """The summary as one JSON object (decimals as strings)."""
    data = {
        "events": summary.events,
        "ticks": summary.ticks,
        "bad_lines": bad_lines,
        "entries": {
            "accepted": summary.entries_accepted,
            "blocked": summary.entries_blocked,
            "blocked_reasons": dict(sorted(summary.blocked_reasons.items())),
        },
        "positions": {
            "opened": summary.positions_opened,
            "closed": summary.closes,
            "open": len(summary.open_positions),
            "unprotected": sum(1 for p in summary.open_positions if not p["protected"]),
        },
        "stop_moves": summary.stop_moves,
        "partials": {"ordered": summary.partials_ordered, "filled": summary.partials_filled},
        "orders_submitted": summary.orders_submitted,
        "retries": summary.retries,
        "conflicts": summary.conflicts,
        "alerts": summary.alerts,
        "oversells": summary.oversells,
        "goal": {"triggered": summary.goal_triggers, "session_resets": summary.session_resets},
        "realized_pnl": summary.realized_pnl,
        "trades": [
            {
                "symbol": t.symbol,
                "key": t.key,
                "side": t.side,
                "qty": t.qty,
                "entry": t.entry,
                "exit": t.exit,
                "pnl": t.pnl,
                "r": t.r,
                "reason": t.reason,
            }
            for t in summary.trades
        ],
        "open_positions": summary.open_positions,
    }
    result = to_jsonable(data)
    assert isinstance(result, dict)
    return result


def _money(value: Decimal) -> str:
    sign = "-" if value < 0 else "+"
    return f"{sign}${abs(value).quantize(_CENT):,}"


def _r(value: object) -> str:
    assert isinstance(value, Decimal)
    return f"{value.quantize(_CENT):+}R"


def render_summary(summary: Summary, *, bad_lines: int = 0) -> str:
    """A short, aligned text report."""
    s = summary
    blocked = ", ".join(f"{k} {v}" for k, v in sorted(s.blocked_reasons.items()))
    unprotected = sum(1 for p in s.open_positions if not p["protected"])
    lines = [
        f"events        {s.events:,} ({s.ticks:,} ticks)"
        + (f", {bad_lines} bad lines skipped" if bad_lines else ""),
        f"entries       {s.entries_accepted} accepted, {s.entries_blocked} blocked"
        + (f" ({blocked})" if blocked else ""),
        f"positions     {s.positions_opened} opened, {s.closes} closed, "
        f"{len(s.open_positions)} open" + (f" ({unprotected} UNPROTECTED)" if unprotected else ""),
        f"stop moves    {s.stop_moves}",
        f"partials      {s.partials_ordered} ordered, {s.partials_filled} filled",
        f"orders        {s.orders_submitted} submitted, {s.retries} retries, {s.conflicts} "
        f"conflicts, {s.alerts} alerts, {s.oversells} oversells",
        f"realized P&L  {_money(s.realized_pnl)}",
    ]
    for trigger in s.goal_triggers:
        lines.append(
            f"goal          protection at {trigger['ts']:%Y-%m-%d %H:%M:%S}Z: peak "
            f"{_money(trigger['peak'])}, then {_money(trigger['current'])} "
            f"({trigger['action']})"
        )
    if s.session_resets:
        lines.append(f"sessions      {s.session_resets} reset(s)")
    if s.trades:
        lines.append("")
        lines.append("trades")
        for t in s.trades:
            lines.append(
                f"  {t.key:<12} {t.side:<5} {t.qty:>8} @ {t.entry:<10} -> "
                f"{t.exit.quantize(Decimal('0.0001')).normalize():<10} "
                f"{_money(t.pnl):>12} {_r(t.r):>8}  {t.reason}"
            )
    if s.open_positions:
        lines.append("")
        lines.append("open positions")
        for p in s.open_positions:
            lines.append(
                f"  {p['key']:<12} {p['side']:<5} {p['qty']:>8} @ {p['entry']:<10} "
                f"last {p['price']:<10} {_r(p['r']):>8}  {p['state']:<22} stop {p['stop']}"
                + (
                    ""
                    if not p["protected"] or p["working_stop"] == p["stop"]
                    else f" (working {p['working_stop']})"
                )
                + ("" if p["protected"] else "  UNPROTECTED")
                + ("  halted" if p["halted"] else "")
            )
    return "\n".join(lines)
