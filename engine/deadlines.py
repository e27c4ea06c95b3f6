"""Answer deadlines (SPEC §4): a cancel's confirmation is awaited 2 s, then the cancel is sent
again (as many times as there are retry delays); a market sell's fill is awaited 5 s, then the
operator is alerted. A market sell is never sent twice."""

from __future__ import annotations

from datetime import datetime

from attrs import evolve

from engine.commands import Alert, CancelOrder, Command, OrderType
from engine.config import Config
from engine.model import Awaited, AwaitedKind, OrderStatus, Position
from engine.records import milliseconds, order_timeout

__all__ = ["arm", "awaited", "timed_out"]


def awaited(pos: Position) -> tuple[AwaitedKind, str] | None:
    """The broker answer the position waits for and times: a cancel's confirmation or a
    market sell's fill, with the order's id; None for none."""
    orders = pos.orders
    for order in (orders.exit, orders.sell):
        if order is not None and order.status is OrderStatus.PENDING_CANCEL:
            return AwaitedKind.CANCEL, order.id
    sell = orders.sell
    if (
        sell is not None
        and sell.type is OrderType.MARKET
        and sell.status in (OrderStatus.PENDING_NEW, OrderStatus.LIVE)
    ):
        return AwaitedKind.FILL, sell.id
    return None


def arm(pos: Position, ts: datetime, cfg: Config) -> Position:
    """Start the deadline of the answer the position now waits for (or drop the old one)."""
    wanted = awaited(pos)
    current = pos.awaited
    if wanted == (None if current is None else (current.kind, current.order_id)):
        return pos
    if wanted is None:
        return evolve(pos, awaited=None)
    kind, order_id = wanted
    wait = cfg.cancel_timeout if kind is AwaitedKind.CANCEL else cfg.fill_timeout
    return evolve(pos, awaited=Awaited(kind, order_id, ts, ts + wait))


def timed_out(pos: Position, now: datetime, cfg: Config) -> tuple[Position, list[Command]]:
    """An answer did not come in time. A cancel is sent again every cancel timeout, as many
    times as there are retry delays (the broker treats a repeated cancel as the same request);
    then, or at once for a fill that does not come, the operator is alerted and the position
    keeps waiting."""
    waiting = pos.awaited
    assert waiting is not None
    attempt = waiting.timeouts + 1
    cancel = waiting.kind is AwaitedKind.CANCEL
    resend = cancel and attempt <= len(cfg.retry_delays)
    data: dict[str, object] = {
        "symbol": pos.symbol,
        "key": pos.key,
        "order_id": waiting.order_id,
        "awaited": "cancel_confirmation" if cancel else "fill",
        "waited_ms": milliseconds(now - waiting.since),
        "attempt": attempt,
        "action": "cancel_resent" if resend else "alerted",
    }
    commands: list[Command] = [order_timeout(data, now)]
    if resend:
        commands.append(CancelOrder(now, waiting.order_id, pos.symbol))
        again = evolve(waiting, timeouts=attempt, due=now + cfg.cancel_timeout)
        return evolve(pos, awaited=again), commands
    commands.append(Alert(now, "ack_timeout", {k: v for k, v in data.items() if k != "action"}))
    return evolve(pos, awaited=evolve(waiting, timeouts=attempt, due=None)), commands
