"""The journal's contract, as the README's "Journal records" table states it: the fields of
every record kind and of every alert the engine emits, and the instant they carry.

Users read the journal (`ratchet report`, the PostgreSQL store, their own tools), so a field
renamed or dropped, or a record stamped with another time than the event that caused it, is
a broken interface. `tests/conftest.py` puts `check` behind every `engine.step` the tests
take, so every history any test builds is held to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from engine import Alert, CancelOrder, Event, OrderType, Record, SubmitOrder
from engine.commands import RequestSnapshot

_F = frozenset

_POSITION = {"symbol", "key"}
_ORDER = _POSITION | {"order_id", "type", "side", "qty", "price", "stop_price", "limit_price",
                      "purpose"}  # fmt: skip

# kind -> every field set a record of that kind may have (one per form it takes)
RECORDS: dict[str, tuple[frozenset[str], ...]] = {
    "entry.accepted": (
        _F({"symbol", "key", "side", "qty", "entry", "stop", "paper", "reason"}),
        _F({"symbol", "key", "side", "qty", "entry", "stop", "paper", "reason", "id"}),
    ),
    "entry.blocked": (_F({"symbol", "reason", "detail"}), _F({"symbol", "reason", "detail", "id"})),
    "position.opened": (
        _F(
            _POSITION
            | {"side", "qty", "entry", "stop", "order_stop", "take_profit", "protection", "opened"}
        ),
        _F(_POSITION | {"side", "qty", "entry", "stop", "added"}),  # an entry filled again
    ),
    "position.state": (_F(_POSITION | {"old", "new", "reason", "r"}),),
    "stop.moved": (_F(_POSITION | {"old", "new", "r", "reason"}),),
    "partial.ordered": (_F(_POSITION | {"milestone", "tranche", "qty", "r"}),),
    "partial.filled": (_F(_POSITION | {"milestone", "qty", "price", "r", "profit"}),),
    "position.closed": (_F(_POSITION | {"qty", "price", "reason", "pnl", "r"}),),
    "trade.closed": (
        _F(
            _POSITION
            | {
                "side",
                "qty",
                "entry",
                "exit",
                "opened",
                "closed",
                "pnl",
                "r",
                "risk",
                "risk_per_share",
                "reason",
            }
        ),
    ),
    "protection.mode": (_F(_POSITION | {"mode", "previous", "session", "stop"}),),
    "protection.triggered": (_F(_POSITION | {"mode", "stop", "price", "qty", "action"}),),
    "order.submitted": (_F(_ORDER), _F(_ORDER | {"extended_hours"})),
    "order.canceled": (_F(_ORDER), _F(_ORDER | {"extended_hours"})),
    "order.filled": (
        _F(
            _POSITION
            | {
                "order_id",
                "purpose",
                "qty",
                "price",
                "order_filled",
                "order_open",
                "position_qty",
                "executed",
            }
        ),
    ),
    "order.retry": (_F(_POSITION | {"order_id", "attempt", "delay", "due", "reason", "command"}),),
    "order.rejected": (_F(_POSITION | {"order_id", "reason"}),),
    "order.timeout": (_F(_POSITION | {"order_id", "awaited", "waited_ms", "attempt", "action"}),),
    "operation.done": (
        _F(
            _POSITION
            | {"operation", "outcome", "started", "order_ids", "duration_ms", "unprotected_ms"}
        ),
    ),
    "conflict.detected": (
        _F(_POSITION | {"type", "order_ids", "resolution", "reason"}),
        _F(_POSITION | {"type", "order_ids", "resolution", "reason", "stop", "price"}),
    ),
    "divergence.detected": (_F(_POSITION | {"evidence", "believed", "broker"}),),
    "position.reconciled": (_F(_POSITION | {"change", "from", "to", "price"}),),
    "position.adopted": (
        _F(
            _POSITION
            | {
                "side",
                "qty",
                "entry",
                "initial_stop",
                "stop_source",
                "stop",
                "r",
                "protection",
                "order_adopted",
            }
        ),
    ),
    "mode.changed": (_F({"from", "to", "reason"}), _F({"from", "to", "reason", "positions"})),
    "goal.triggered": (
        _F({"session", "peak", "current", "drawdown", "threshold", "target", "action"}),
    ),
    "goal.reset": (
        _F({"session", "previous_session", "previous_peak", "previous_pnl", "was_triggered"}),
    ),
    "phase.changed": (_F({"from", "to", "trigger", "reason", "size_from", "size_to"}),),
    "phase.denied": (_F({"phase", "failures"}),),
    "breaker.opened": (_F({"breaker", "failures", "reopen_at"}), _F({"reason", "phase"})),
    "breaker.half_open": (_F({"breaker"}),),
    "breaker.closed": (_F({"breaker"}), _F({"phase"})),
}

_REFUSAL = _POSITION | {"order_id", "reason", "kind", "attempts", "failures", "remaining_qty",
                        "resolution"}  # fmt: skip
# reason -> its context's field sets (`count`, added when an alert repeats, may join any)
ALERTS: dict[str, tuple[frozenset[str], ...]] = {
    "ack_timeout": (_F(_POSITION | {"order_id", "awaited", "waited_ms", "attempt"}),),
    "cancel_rejected": (_F(_REFUSAL | {"command"}),),
    "retries_exhausted": (
        _F(_REFUSAL | {"stop"}),
        _F(_REFUSAL | {"stop", "halted"}),
        _F(_REFUSAL | {"command"}),  # a cancel's retries
    ),
    "order_rejected": (
        _F(_REFUSAL | {"stop", "halted"}),
        _F(
            _REFUSAL
            | {"stop", "halted", "restored_order_id", "restored_stop", "restored_take_profit"}
        ),
    ),
    "initial_risk_not_positive": (_F({"symbol", "entry", "stop"}),),
    "market_hours_unknown": (_F({"calendar", "last_close"}),),
    "order_breaker_open": (_F({"failures", "reopen_at"}),),
    "phase_override_refused": (_F({"to", "allowed"}),),
    "position_mismatch": (_F({"positions"}),),
    "protect_deadline": (_F(_POSITION | {"qty", "bare_since", "stop"}),),
    "stale_price": (_F({"symbol", "last_price", "last_ts", "age_s", "positions"}),),
    "unknown_order": (_F({"order_id", "event"}),),
    "wash_trade": (_F(_POSITION | {"order_id", "reason", "resolution"}),),
    "watched_stop": (_F(_POSITION | {"mode", "stop", "price", "qty", "action"}),),
}


def check(event: Event, commands: Iterable[object]) -> None:
    """Every command of one step carries the instant of the event that caused it; every
    record and alert has the fields its kind is documented with; every order sent is
    well-formed and journaled as sent (`order.submitted` with the same terms)."""
    commands = list(commands)
    submitted = {
        c["order_id"]: c for c in commands if isinstance(c, Record) and c.kind == "order.submitted"
    }
    for command in commands:
        assert getattr(command, "ts", None) == event.ts, f"{command!r}: not at {event.ts}"
        if isinstance(command, SubmitOrder):
            _check_order(command, submitted.get(command.order_id))
            continue
        if isinstance(command, CancelOrder):
            assert isinstance(command.order_id, str) and command.order_id, command
            assert isinstance(command.symbol, str) and command.symbol, command
            continue
        if isinstance(command, RequestSnapshot):
            assert isinstance(command.reason, str) and command.reason, command
            assert all(isinstance(s, str) and s for s in command.symbols), command
            continue
        if isinstance(command, Record):
            what, fields, forms = command.kind, command.data, RECORDS.get(command.kind)
        else:
            assert isinstance(command, Alert), f"not a command: {command!r}"
            what, fields, forms = (
                f"alert {command.reason}",
                command.context,
                ALERTS.get(command.reason),
            )
            if isinstance(fields, Mapping) and "count" in fields:
                fields = {k: v for k, v in fields.items() if k != "count"}
        assert forms is not None, f"{what}: not in the journal's contract (tests/journal.py)"
        assert isinstance(fields, Mapping), f"{what}: fields {fields!r}"
        assert frozenset(fields) in forms, f"{what}: fields {sorted(fields)} not as documented"
        _check_values(what, fields)


# Which prices each order type carries.
_PRICES = {
    OrderType.MARKET: (False, False),
    OrderType.LIMIT: (False, True),
    OrderType.STOP: (True, False),
    OrderType.OCO: (True, True),
}


def _check_order(order: SubmitOrder, record: Record | None) -> None:
    assert order.order_id.startswith(f"rt-{order.symbol}-"), order
    assert isinstance(order.qty, Decimal) and order.qty > 0, order
    stop, limit = _PRICES[order.type]
    assert (order.stop_price is not None) is stop, order
    assert (order.limit_price is not None) is limit, order
    assert order.purpose, order
    assert isinstance(order.paper, bool) and isinstance(order.extended_hours, bool), order
    assert not order.extended_hours or order.type is OrderType.LIMIT, order
    assert record is not None, f"{order.order_id} sent without an order.submitted record"
    terms = (record["symbol"], record["type"], record["side"], record["qty"],
             record["stop_price"], record["limit_price"], record["purpose"])  # fmt: skip
    sent = (order.symbol, order.type.value, order.action.value, order.qty,
            order.stop_price, order.limit_price, order.purpose)  # fmt: skip
    assert terms == sent, (order, record)
    assert record.data.get("extended_hours", False) == order.extended_hours, (order, record)


def _check_values(what: str, fields: Mapping[str, object]) -> None:
    """The fields every reader relies on: a position's symbol and key agree (`SYMBOL-n`), an
    order id and a reason are text, quantities are decimals."""
    symbol, key = fields.get("symbol"), fields.get("key")
    if "symbol" in fields:
        assert isinstance(symbol, str), f"{what}: symbol {symbol!r}"
    if key:
        assert isinstance(key, str) and key.rpartition("-")[0] == symbol, f"{what}: key {key!r}"
    for name in ("order_id", "reason", "resolution", "evidence", "type", "command"):
        if name in fields:
            assert isinstance(fields[name], str), f"{what}: {name} {fields[name]!r}"
    if what == "mode.changed" and "positions" in fields:
        assert isinstance(fields["positions"], int), f"{what}: positions {fields['positions']!r}"
    for name in ("qty", "remaining_qty", "position_qty"):
        if name in fields:
            assert isinstance(fields[name], Decimal), f"{what}: {name} {fields[name]!r}"
