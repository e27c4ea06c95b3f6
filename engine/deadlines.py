"""Deadlines (SPEC §4): a cancel's confirmation is awaited 2 s, then the cancel is sent again
(as many times as there are retry delays); a market sell's fill is awaited 5 s, then the
operator is alerted (a market sell is never sent twice); and shares that have had no working
stop for `protect_deadline` (10 s) are sold at market."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.budget import coalesce
from engine.commands import Alert, CancelOrder, Command, OrderType
from engine.config import Config
from engine.model import Awaited, AwaitedKind, CloseReason, Order, OrderStatus, Position
from engine.records import conflict, milliseconds, order_timeout

__all__ = ["arm", "awaited", "next_due", "protect_due", "timed_out", "unprotected"]


def awaited(pos: Position) -> tuple[AwaitedKind, str] | None:
    """The broker answer the position waits for and times: a cancel's confirmation or a
    sale's fill (at market, or an extended-hours limit), with the order's id; None for none."""
    orders = pos.orders
    for order in (orders.exit, orders.sell):
        if order is not None and order.status is OrderStatus.PENDING_CANCEL:
            return AwaitedKind.CANCEL, order.id
    sell = orders.sell
    if (
        sell is not None
        # an extended-hours limit sale too: the shares it does not sell get their
        # stop back when it has not filled in time
        and (sell.type is OrderType.MARKET or sell.extended)
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
    alert = Alert(now, "ack_timeout", {k: v for k, v in data.items() if k != "action"})
    pos, told = coalesce(evolve(pos, awaited=evolve(waiting, timeouts=attempt, due=None)), alert)
    return pos, [*commands, *told]


def protect_due(pos: Position, cfg: Config) -> datetime | None:
    """When the position's shares without a working stop are sold if none covers them by
    then (None: every share is covered, or a sale is already on its way)."""
    orders = pos.orders
    if pos.exposed_since is None or orders.sell is not None:
        return None  # a sale on its way: its fill, or its timeout, decides (`reconcile`)
    if orders.to_sell > 0 and _uncovered(pos) <= 0:
        return None  # every share no stop holds is queued for sale
    return pos.exposed_since + cfg.protect_deadline


def _standing_exit(pos: Position) -> Order | None:
    """The position's stop as far as the broker may hold it: one refused and waiting for its
    retry is not at the broker (unless its answer was lost)."""
    eo = pos.orders.exit
    maybe_there = pos.retry is not None and pos.retry.uncertain
    if eo is not None and eo.status is OrderStatus.RETRY_WAIT and not maybe_there:
        return None
    return eo


def _uncovered(pos: Position) -> Decimal:
    """Shares that neither the stop, nor a sale on its way, nor the queue for sale covers
    (shares the position gained while a sale of its bare ones was already queued)."""
    eo, so = _standing_exit(pos), pos.orders.sell
    held = eo.open_qty if eo is not None else Decimal(0)
    selling = (so.open_qty if so is not None else Decimal(0)) + pos.orders.to_sell
    return pos.fills.remaining - held - selling


def next_due(pos: Position, cfg: Config) -> datetime | None:
    """The earliest of the position's due times: the end of a budget hold, a retry or an
    answer deadline (neither before that end), protection."""
    held = pos.held_until
    times = [held, protect_due(pos, cfg)]
    for when in (
        pos.retry.due if pos.retry is not None else None,
        pos.awaited.due if pos.awaited is not None else None,
    ):
        times.append(when if when is None or held is None else max(when, held))
    return min((t for t in times if t is not None), default=None)


def unprotected(
    pos: Position, now: datetime, cfg: Config, spare: Decimal | None = None
) -> tuple[Position, list[Command]]:
    """No stop covered these shares within `protect_deadline`: queue them for sale at market
    (the sale is pursued until it fills), dropping a stop that waits for its retry after a
    refusal (it is not at the broker) and any tranche not yet sold. A stop the broker works,
    or may work (its answer was lost), keeps its shares; so do `spare` shares another lot's
    order still holds in the symbol (an order of a lot the broker closed, not yet canceled)."""
    orders = pos.orders
    eo = _standing_exit(pos)  # a stop refused and waiting for its retry frees its shares
    held = eo.open_qty if eo is not None else Decimal(0)
    free = _uncovered(pos)
    if spare is not None:
        free = min(free, spare - (pos.fills.remaining - free))
    if free <= 0:
        return pos, []  # a stop or a sale on its way holds every share: its answer decides
    since = pos.exposed_since if pos.exposed_since is not None else now
    reason = f"no working stop for {free} shares in {milliseconds(now - since)} ms"
    ids = [eo.id] if eo is not None else []
    commands: list[Command] = [
        conflict(now, pos.key, "no_stop_in_time", ids, "sold_at_market", reason),
        Alert(
            now,
            "protect_deadline",
            {
                "symbol": pos.symbol,
                "key": pos.key,
                "qty": free,
                "bare_since": since,
                "stop": pos.ladder.stop,
            },
        ),
    ]
    whole = held == 0
    pos = evolve(
        pos,
        ladder=evolve(pos.ladder, trigger=None) if whole else pos.ladder,
        orders=evolve(orders, exit=eo, to_sell=orders.to_sell + free, milestones=()),
        retry=pos.retry if eo is not None else None,
        close_reason=CloseReason.PROTECT_DEADLINE if whole else pos.close_reason,
    )
    return pos, commands
