"""Rendering a simulation summary as text for people and as JSON for programs."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from shell.codec import format_ts
from shell.figures import plain, price, qty, r_multiple, signed_money
from shell.simulate import BROKER_REFUSALS as _BROKER
from shell.simulate import Summary

__all__ = ["render_summary", "summary_to_json"]


def _exact(value: object) -> object:
    """Decimals as exact strings without exponent, times as ISO-8601 UTC, recursively."""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, Enum):
        return _exact(value.value)
    if isinstance(value, dict):
        return {str(k): _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    return value


def summary_to_json(summary: Summary, *, bad_lines: int = 0) -> dict[str, Any]:
    """The summary as one JSON object (decimals as exact strings)."""
    s = summary
    gate = {k: v for k, v in sorted(s.blocked_reasons.items()) if k not in _BROKER}
    broker = {k: v for k, v in sorted(s.blocked_reasons.items()) if k in _BROKER}
    data = {
        "events": s.events,
        "ticks": s.ticks,
        "bad_lines": bad_lines,
        "entries": {
            "intents": s.entry_intents,
            "accepted": s.entries_kept,
            "blocked": s.entries_gate_blocked,
            "blocked_reasons": gate,
            "refused_by_broker": s.entries_refused,
            "refused_reasons": broker,
        },
        "positions": {
            "opened": s.positions_opened,
            "closed": s.closes,
            "open": len(s.open_positions),
            "unprotected": sum(1 for p in s.open_positions if not p["protected"]),
        },
        "stop_moves": s.stop_moves,
        "partials": {
            "ordered": s.partials_ordered,
            "filled": len(s.tranches_filled),
            "filled_by_take_profit": s.tranches_by_take_profit,
            "fills": s.partials_filled,
        },
        "orders_submitted": s.orders_submitted,
        "retries": s.retries,
        "conflicts": s.conflicts,
        "alerts": s.alerts,
        "oversells": s.oversells,
        "exposure": {
            "windows": s.exposure.windows,
            "over_limit": s.exposure.over_limit,
            "limit_s": _seconds(s.exposure.limit),
            "longest_s": _seconds(s.exposure.longest),
            "longest": s.exposure.worst,
        },
        "goal": {"triggered": s.goal_triggers, "session_resets": s.session_resets},
        "hours": {
            "calendar": s.hours,
            "stops_waited_for_open": s.stops_waited,
            "orders_waited_for_open": s.orders_waited,
            "watched_stop_triggers": s.watched_triggers,
            "protection_mode_changes": s.mode_changes,
            "exits_by_mode": s.exits_by_mode,
            "wash_trades_refused": s.wash_trades_refused,
        },
        "realized_pnl": s.realized_total,
        "realized": {
            "closed_trades": s.realized_pnl,
            "banked_open_positions": s.banked_open_pnl,
            "total": s.realized_total,
        },
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
            for t in s.trades
        ],
        "open_positions": s.open_positions,
    }
    result = _exact(data)
    assert isinstance(result, dict)
    return result


def _seconds(span: timedelta) -> Decimal:
    """A span in seconds, exact to the microsecond."""
    return Decimal(span // timedelta(microseconds=1)) / 1_000_000


def _reasons(counts: dict[str, int]) -> str:
    return " (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")" if counts else ""


def _exposure_line(s: Summary) -> str:
    """How long shares went without a working stop, from the broker's own books."""
    e = s.exposure
    if not e.windows:
        return "exposure      every share held always had a working stop or sale"
    over = f", {e.over_limit} over {_seconds(e.limit):.0f} s" if e.over_limit else ""
    return (
        f"exposure      {e.windows} windows without a working stop, longest "
        f"{_seconds(e.longest):.3f} s ({e.worst}){over}"
    )


def render_summary(summary: Summary, *, bad_lines: int = 0) -> str:
    """A short, aligned text report: money to the cent, R to two places, prices as traded."""
    s = summary
    gate = {k: v for k, v in sorted(s.blocked_reasons.items()) if k not in _BROKER}
    broker = {k: v for k, v in sorted(s.blocked_reasons.items()) if k in _BROKER}
    unprotected = sum(1 for p in s.open_positions if not p["protected"])
    by_tp = s.tranches_by_take_profit
    realized = f"realized P&L  {signed_money(s.realized_total)}"
    if s.open_positions:
        realized += (
            f" (closed trades {signed_money(s.realized_pnl)}, banked partials of open "
            f"positions {signed_money(s.banked_open_pnl)})"
        )
    lines = [
        f"events        {s.events:,} ({s.ticks:,} ticks)"
        + (f", {bad_lines} bad lines skipped" if bad_lines else ""),
        f"entries       {s.entry_intents} intents: {s.entries_kept} accepted, "
        f"{s.entries_gate_blocked} blocked by the gate{_reasons(gate)}, "
        f"{s.entries_refused} refused by the broker{_reasons(broker)}",
        f"positions     {s.positions_opened} opened, {s.closes} closed, "
        f"{len(s.open_positions)} open" + (f" ({unprotected} UNPROTECTED)" if unprotected else ""),
        f"stop moves    {s.stop_moves}",
        f"partials      {s.partials_ordered} ordered, {len(s.tranches_filled)} tranches filled"
        + (f" ({by_tp} by the take-profit)" if by_tp else ""),
        f"orders        {s.orders_submitted} submitted, {s.retries} retries, {s.conflicts} "
        f"conflicts, {s.alerts} alerts, {s.oversells} oversells",
        _exposure_line(s),
        realized,
    ]
    for trigger in s.goal_triggers:
        lines.append(
            f"goal          protection at {trigger['ts']:%Y-%m-%d %H:%M:%S}Z: peak "
            f"{signed_money(trigger['peak'])}, then {signed_money(trigger['current'])} "
            f"({trigger['action']})"
        )
    if s.session_resets:
        lines.append(f"sessions      {s.session_resets} reset(s)")
    if s.hours != "always" or s.wash_trades_refused:
        modes = s.exits_by_mode
        lines.append(
            f"hours         {s.hours}: {s.stops_waited} stop triggers and {s.orders_waited} "
            f"orders waited for the open, {s.watched_triggers} watched stops triggered; exits "
            f"by broker stop {modes['broker_stop']}, watched {modes['watched']}, other "
            f"{modes['other']}; {s.wash_trades_refused} wash trades refused"
        )
    if s.trades:
        lines.append("")
        lines.append("trades")
        for t in s.trades:
            lines.append(
                f"  {t.key:<12} {t.side:<5} {qty(t.qty):>8} @ {price(t.entry):<10} -> "
                f"{price(t.exit):<10} {signed_money(t.pnl):>12} {r_multiple(t.r):>8}  {t.reason}"
            )
    if s.open_positions:
        lines.append("")
        lines.append("open positions")
        for p in s.open_positions:
            working = p["working_stop"]
            lines.append(
                f"  {p['key']:<12} {p['side']:<5} {qty(p['qty']):>8} @ {price(p['entry']):<10} "
                f"last {_price_or_dash(p['price']):<10} {_r_or_dash(p['r']):>8}  "
                f"{p['state']:<22} stop {price(p['stop'])}"
                + (
                    ""
                    if not p["protected"] or working == p["stop"]
                    else f" (working {price(working)})"
                )
                + ("" if p["protected"] else "  UNPROTECTED")
                + ("  halted" if p["halted"] else "")
                + (f"  banked {signed_money(p['realized'])}" if p["realized"] else "")
            )
    return "\n".join(lines)


def _price_or_dash(value: object) -> str:
    return price(value) if isinstance(value, Decimal) else "—"


def _r_or_dash(value: object) -> str:
    return r_multiple(value) if isinstance(value, Decimal) else "—"
