"""The request budget (SPEC §4): however refusals arrive, one position
never sends more than `max_requests_per_minute` order requests in any minute, and a position
the broker disagreed about sends nothing until the broker's snapshot is applied.

Protection comes first: a position whose every share is covered keeps `RESERVE` requests of
its budget back, so that an operation it starts (a stop move, a tranche) can always put its
stop back; only a position with bare shares spends the whole budget, and the sale of shares
left bare past `protect_deadline` is never held. Alerts for the same cause are coalesced: the
operator hears of it at its 1st, 2nd, 4th, 8th ... occurrence, with the count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from attrs import evolve

from engine.commands import Alert, CancelOrder, Command, OrderAction, OrderType, SubmitOrder
from engine.config import Config
from engine.events import Side
from engine.model import OrderStatus, PendingEntry, Position
from engine.orders import Extended, reconcile
from engine.state import EngineState

__all__ = ["RESERVE", "coalesce", "extended_rules", "gate", "next_step", "requests", "spare"]

_MINUTE = timedelta(seconds=60)
RESERVE = 4  # requests a covered position leaves for the protection of an operation it starts


def requests(commands: Sequence[Command]) -> int:
    """The order requests among `commands` (submits and cancels)."""
    return sum(1 for c in commands if isinstance(c, SubmitOrder | CancelOrder))


def _limit(pos: Position, cfg: Config) -> int:
    budget = cfg.max_requests_per_minute
    return budget if pos.bare else max(1, budget - RESERVE)


def _free_at(pos: Position, now: datetime, n: int, cfg: Config) -> datetime | None:
    """When `n` more requests fit the position's budget (None: now)."""
    recent = tuple(t for t in pos.sent if now - t < _MINUTE)
    over = len(recent) + n - _limit(pos, cfg)
    if over <= 0 or not recent:
        return None
    return recent[min(over, len(recent)) - 1] + _MINUTE


def gate(
    state: EngineState,
    before: Position,
    after: Position,
    commands: list[Command],
    now: datetime,
    force: bool = False,
) -> tuple[Position, list[Command]]:
    """Let the step from `before` to `after` (with its `commands`) go, counting its requests,
    or keep `before`, held until it may go:

    - a position awaiting its broker snapshot sends nothing;
    - an order that takes shares goes only when the other lots of its symbol leave them free
      (P11 across lots: after the broker's snapshot closed one lot, its stop must be gone
      before another takes the shares); it is tried again after the first retry delay;
    - the requests must fit the budget, unless `force`d (a sale of bare shares)."""
    n = requests(commands)
    if not n:
        return after, commands
    if before.reconciling is not None:
        return before, []
    cfg = state.config
    # (a forced sale is sized to what is spare already: `deadlines.unprotected`)
    wanted = sum(
        (c.qty for c in commands
         if isinstance(c, SubmitOrder) and c.action is _EXIT[after.side]
         and not (force and c.purpose == "exit")),
        _ZERO,
    )  # fmt: skip
    if wanted:
        # ...with what the position's own orders already hold at the broker
        submitted = {c.order_id for c in commands if isinstance(c, SubmitOrder)}
        wanted += sum(
            (o.open_qty for o in (after.orders.exit, after.orders.sell)
             if o is not None and o.id not in submitted and o.status is not OrderStatus.RETRY_WAIT),
            _ZERO,
        )  # fmt: skip
    if wanted and wanted > spare(state, after):
        return evolve(before, held_until=now + cfg.retry_delays[0]), []
    overdue = after.exposed_since is not None and now >= after.exposed_since + cfg.protect_deadline
    if not force and not overdue and _entries_in_the_way(state, after, commands):
        # Market hours: the sale could trade against an entry of another lot still working at the
        # broker (Alpaca would refuse it as a potential wash trade). Entries go only in the
        # regular session, where a market entry fills at the next print: the sale waits that
        # long (a sale of bare shares past their deadline does not wait).
        return evolve(before, held_until=now + cfg.retry_delays[0]), []
    free = None if force else _free_at(before, now, n, cfg)
    if free is not None:
        return evolve(before, held_until=free), []
    sent = (*(t for t in after.sent if now - t < _MINUTE), *([now] * n))
    return evolve(after, sent=sent, held_until=None), commands


def next_step(
    state: EngineState,
    pos: Position,
    price: Decimal | None,
    now: datetime,
    force: bool = False,
) -> tuple[Position, list[Command]]:
    """The position's next order step (`orders.reconcile`), through the `gate`."""
    if pos.reconciling is not None:
        return pos, []
    after, commands = reconcile(pos, price, now, lambda: spare(state, pos), extended_rules(state))
    return gate(state, pos, after, commands, now, force)


def extended_rules(state: EngineState) -> Extended | None:
    """How sales go out now: None in the regular session (at market), else as extended-hours
    limits (market hours: a market order outside it would wait for the open)."""
    if state.market.regular:
        return None
    cfg = state.config
    return Extended(cfg.extended_offset, cfg.protection.grid, cfg.extended_partials == "open")


_EXIT = {Side.LONG: OrderAction.SELL, Side.SHORT: OrderAction.BUY}
_ZERO = Decimal(0)
_WORKING = frozenset({OrderStatus.LIVE, OrderStatus.PENDING_NEW})


def _entries_in_the_way(
    state: EngineState, pos: Position, commands: list[Command]
) -> list[PendingEntry]:
    """Entries of the symbol working at the broker that a sale among `commands` could trade
    against (a market order on either side crosses anything; limits when they overlap)."""
    if not state.entries:
        return []
    exit_action = _EXIT[pos.side]
    sales = [
        c for c in commands
        if isinstance(c, SubmitOrder) and c.action is exit_action
        and c.type in (OrderType.MARKET, OrderType.LIMIT)
    ]  # fmt: skip
    if not sales:
        return []
    found: list[PendingEntry] = []
    for entry in sorted(state.entries.values(), key=lambda e: e.key):
        order = entry.order
        if entry.symbol != pos.symbol or order.status not in _WORKING:
            continue
        for sale in sales:
            if _could_cross(sale.limit_price, order.limit_price, pos.long):
                found.append(entry)
                break
    return found


def _could_cross(sale: Decimal | None, entry: Decimal | None, long: bool) -> bool:
    """A sale (of a long; a buy back of a short) priced `sale` and an entry priced `entry`
    could trade against each other (None: at market, any price)."""
    if sale is None or entry is None:
        return True
    return entry >= sale if long else entry <= sale


def spare(state: EngineState, pos: Position) -> Decimal:
    """Shares of the position's symbol its own orders may take: what the lots hold, less what
    the other lots' orders hold at the broker (or may: sent, cancel not confirmed)."""
    spare = pos.fills.remaining
    for lot in state.in_symbol(pos.symbol):
        if lot.key == pos.key:
            continue
        spare += lot.fills.remaining
        for order in (lot.orders.exit, lot.orders.sell):
            if order is not None and order.status is not OrderStatus.RETRY_WAIT:
                spare -= order.open_qty
    return spare


def coalesce(pos: Position, alert: Alert) -> tuple[Position, list[Command]]:
    """An alert about the position, coalesced by reason within one refusal episode (until an
    order step gets through): raised at its 1st, 2nd, 4th, 8th ... occurrence, with `count`;
    the others are counted only."""
    counts = dict(pos.alerted)
    count = counts.get(alert.reason, 0) + 1
    counts[alert.reason] = count
    pos = evolve(pos, alerted=tuple(sorted(counts.items())))
    if count & (count - 1):
        return pos, []
    return pos, [Alert(alert.ts, alert.reason, {**alert.context, "count": count})]
