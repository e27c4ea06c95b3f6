"""Order reconciliation: bring a position's broker orders to what its protection calls for.

One step at a time and never two in flight (SPEC §4): cancel confirmed before a new order,
sells never above the shares no open order holds (P11), the stop re-armed after each tranche.
Each function returns the position as it now stands and the commands it calls for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from attrs import evolve, frozen

from engine.commands import CancelOrder, Command, OrderAction, OrderType, SubmitOrder
from engine.config import PriceGrid
from engine.ids import order_id
from engine.model import CloseReason, Order, OrderRole, Orders, OrderStatus, Position
from engine.operations import touch
from engine.records import conflict, order_record

__all__ = [
    "Extended",
    "cancel",
    "exit_action",
    "exit_unprotectable",
    "extended_limit",
    "is_better_stop",
    "is_through",
    "reconcile",
    "roll_back",
    "submit",
    "submit_command",
]

_ZERO = Decimal(0)
_NOTHING: list[Command] = []
_SUFFIX = {
    OrderRole.PROTECT: "stop",
    OrderRole.PARTIAL: "partial",
    OrderRole.EXIT: "exit",
    OrderRole.RESTORE: "restore",
}


@frozen
class Extended:
    """How sales go out while the regular session is closed: as extended-hours
    limits `offset` (a share of the print) through the last print, on the price `grid`;
    tranches wait for the open instead when `defer_partials`."""

    offset: Decimal
    grid: PriceGrid
    defer_partials: bool = False


def extended_limit(price: Decimal, long: bool, ext: Extended) -> Decimal:
    """The limit of an extended-hours exit of a long (a sale) or a short (a buy back): `offset`
    through `price`, rounded on the grid toward the market so that it stays marketable."""
    through = price * (1 - ext.offset) if long else price * (1 + ext.offset)
    step = ext.grid.increment(through)
    rounding = "ROUND_FLOOR" if long else "ROUND_CEILING"
    limit = ((through / step).to_integral_value(rounding) * step).quantize(step)
    return limit if limit > 0 else step


def exit_action(pos: Position) -> OrderAction:
    """The action that reduces the position: sell a long, buy back a short."""
    return OrderAction.SELL if pos.long else OrderAction.BUY


def is_better_stop(new: Decimal, old: Decimal, long: bool) -> bool:
    """True when `new` locks more than `old` (higher for a long, lower for a short)."""
    return new > old if long else new < old


def is_through(price: Decimal, stop: Decimal, long: bool) -> bool:
    """True when the market at `price` is already at or beyond `stop`."""
    return price <= stop if long else price >= stop


def submit_command(key: str, symbol: str, order: Order, ts: datetime, paper: bool) -> list[Command]:
    """The order and its `order.submitted` record."""
    return [
        SubmitOrder(
            ts=ts,
            order_id=order.id,
            symbol=symbol,
            action=order.action,
            type=order.type,
            qty=order.qty,
            stop_price=order.stop_price,
            limit_price=order.limit_price,
            purpose=order.role.value,
            paper=paper,
            extended_hours=order.extended,
        ),
        order_record("order.submitted", key, symbol, order, ts),
    ]


def submit(pos: Position, order: Order, ts: datetime) -> tuple[Position, list[Command]]:
    """Send one of the position's exit-side orders; it joins the operation in flight."""
    commands = submit_command(pos.key, pos.symbol, order, ts, pos.paper)
    return touch(pos, order.id, ts), commands


def cancel(pos: Position, order: Order, ts: datetime) -> tuple[Position, Order, list[Command]]:
    """Ask for `order` to be canceled; return it marked as awaiting the confirmation."""
    command = CancelOrder(ts=ts, order_id=order.id, symbol=pos.symbol)
    return touch(pos, order.id, ts), evolve(order, status=OrderStatus.PENDING_CANCEL), [command]


def _new_order(
    pos: Position,
    role: OrderRole,
    kind: OrderType,
    qty: Decimal,
    stop: Decimal | None = None,
    limit: Decimal | None = None,
    extended: bool = False,
) -> tuple[Position, Order]:
    seq = pos.orders.seq + 1
    order = Order(
        id=order_id(pos.key, seq, _SUFFIX.get(role, role.value)),
        role=role,
        action=exit_action(pos),
        type=kind,
        qty=qty,
        stop_price=stop,
        limit_price=limit,
        extended=extended,
    )
    return evolve(pos, orders=evolve(pos.orders, seq=seq)), order


def _with_orders(pos: Position, orders: Orders) -> Position:
    return evolve(pos, orders=orders)


def reconcile(
    pos: Position,
    price: Decimal | None,
    ts: datetime,
    spare: Callable[[], Decimal] | None = None,
    extended: Extended | None = None,
) -> tuple[Position, list[Command]]:
    """Take the next order step toward the protection `pos` calls for (at the last known
    `price`): at most one order command. `spare`, when given, says how many shares of the
    symbol the position's orders may hold, other lots' orders considered: a sale is never
    for more. `extended`, outside the regular session, says how sales go out then (market hours:
    a market order would wait for the open)."""
    orders = pos.orders
    eo, so = orders.exit, orders.sell
    remaining = pos.fills.remaining
    if so is not None:
        if so.type is OrderType.LIMIT and so.status is OrderStatus.LIVE:
            # A limit sale (an extended-hours exit) is sent again when it cannot fill where
            # it is: the market left it by a whole offset more (not at every print: the request
            # budget is the protection's too), or the regular session opened (then at market).
            limit = so.limit_price
            away = False
            if extended is not None and price is not None and limit is not None:
                slack = limit * extended.offset
                away = price < limit - slack if pos.long else price > limit + slack
            if extended is None or away:
                return _cancel_sale(pos, so, ts)
        waited = pos.awaited
        overdue = waited is not None and waited.order_id == so.id and waited.timeouts > 0
        if overdue and so.status is OrderStatus.LIVE:
            return _beside_overdue_sale(pos, so, price, ts)
        return pos, _NOTHING
    # SPEC §4: one operation per position; wait for every acknowledgement in flight.
    if eo is not None and eo.status is not OrderStatus.LIVE:
        waited = pos.awaited
        overdue = (
            eo.status is OrderStatus.PENDING_CANCEL
            and waited is not None
            and waited.order_id == eo.id
            and waited.due is None  # its confirmation never came, the operator was told
        )
        if overdue and orders.to_sell > 0 and remaining - orders.held_by_sells() > 0:
            # Shares the stuck order does not hold are sold, not left waiting on it.
            return _sell(pos, ts, spare, price, extended)
        return pos, _NOTHING
    if pos.halted and eo is not None:
        # The broker will not cancel this stop: it stays as the protection (the ladder is
        # frozen); only shares it does not hold may still be sold.
        if orders.to_sell > 0 and remaining - orders.held_by_sells() > 0:
            return _sell(pos, ts, spare, price, extended)
        return pos, _NOTHING
    if remaining <= 0:
        if eo is not None:
            return _cancel_exit(pos, eo, ts)
        return pos, _NOTHING
    # Outside the regular session tranches may wait for the open (the stop keeps their shares).
    deferred = extended is not None and extended.defer_partials and pos.close_reason is None
    if orders.to_sell > 0 and not deferred:
        if extended is not None and price is None:
            return pos, _NOTHING  # no print to price an extended-hours limit by yet
        if eo is not None and remaining - orders.held_by_sells() < orders.to_sell:
            # The protective order holds the shares: free them first (shares_locked avoided).
            return _cancel_exit(pos, eo, ts)
        return _sell(pos, ts, spare, price, extended)
    ladder = pos.ladder
    tp = ladder.take_profit
    if eo is not None:
        if eo.open_qty == remaining and (
            (eo.stop_price == ladder.stop and eo.limit_price == tp)
            # Rolled back: the restored protection stands until a new trigger asks for more.
            or (eo.role is OrderRole.RESTORE and orders.refused == (ladder.stop, tp))
        ):
            return pos, _NOTHING
        return _cancel_exit(pos, eo, ts)
    if price is not None and is_through(price, ladder.stop, pos.long):
        return _exit_through(pos, ladder.stop, price, ts, extended)
    return _arm(pos, remaining, ts)


def _arm(pos: Position, qty: Decimal, ts: datetime) -> tuple[Position, list[Command]]:
    """Submit the stop the ladder wants (OCO with the take-profit when set) for `qty`."""
    ladder = pos.ladder
    tp = ladder.take_profit
    kind = OrderType.STOP if tp is None else OrderType.OCO
    pos, order = _new_order(pos, OrderRole.PROTECT, kind, qty, ladder.stop, tp)
    pos, commands = submit(pos, order, ts)
    return _with_orders(pos, evolve(pos.orders, exit=order)), commands


def _beside_overdue_sale(
    pos: Position, so: Order, price: Decimal | None, ts: datetime
) -> tuple[Position, list[Command]]:
    """A sale the broker took has not filled within its timeout (a quiet market): the shares
    it does not sell get their stop now rather than after its fill (never more than no order
    holds, P11), those still queued for sale included; a stop that covers fewer (shares added
    since) is replaced. Where no stop can be placed (through the market, or a halted ladder
    whose stop the broker will not cancel, or a stop the broker refused) the uncovered shares
    follow the sale out."""
    orders = pos.orders
    eo = orders.exit
    rest = pos.fills.remaining - so.open_qty
    covered = eo.open_qty if eo is not None else Decimal(0)
    uncovered = rest - covered - orders.to_sell
    if uncovered <= 0:
        return pos, _NOTHING
    through = price is not None and is_through(price, pos.ladder.stop, pos.long)
    refused = orders.refused == (pos.ladder.stop, pos.ladder.take_profit)
    if not through and not pos.halted and not refused:
        if eo is None:
            return _arm(pos, rest, ts)
        if eo.status is OrderStatus.LIVE:
            return _cancel_exit(pos, eo, ts)
        return pos, _NOTHING  # its answer comes first
    records: list[Command] = []
    close_reason = pos.close_reason
    if through and eo is None:
        records.append(
            conflict(
                ts,
                pos.key,
                "invalid_price",
                [],
                "exit_at_market",
                f"stop {pos.ladder.stop} is at or through the market at {price}",
                stop=pos.ladder.stop,
                price=price,
            )
        )
        close_reason = CloseReason.STOP_THROUGH_MARKET
    queued = evolve(
        pos,
        ladder=evolve(pos.ladder, trigger=None),
        orders=evolve(orders, to_sell=orders.to_sell + uncovered, milestones=()),
        close_reason=close_reason,
    )
    return queued, records


def _sell(
    pos: Position,
    ts: datetime,
    spare: Callable[[], Decimal] | None,
    price: Decimal | None = None,
    extended: Extended | None = None,
) -> tuple[Position, list[Command]]:
    """Sell what is queued, never more than the shares no open order holds (P11): a tranche
    (allotted to its milestones on fill) or an exit; at market in the regular session,
    outside it as an extended-hours limit through the last `price`."""
    orders = pos.orders
    qty = min(orders.to_sell, pos.fills.remaining - orders.held_by_sells())
    if spare is not None:
        qty = min(qty, spare() - orders.held_by_sells())
        if qty <= 0:
            return pos, _NOTHING  # another lot's order holds them: its answer comes first
    role = OrderRole.PARTIAL if orders.milestones else OrderRole.EXIT
    if extended is not None and price is not None:
        limit = extended_limit(price, pos.long, extended)
        pos, order = _new_order(pos, role, OrderType.LIMIT, qty, limit=limit, extended=True)
    else:
        pos, order = _new_order(pos, role, OrderType.MARKET, qty)
    pos, commands = submit(pos, order, ts)
    return _with_orders(pos, evolve(pos.orders, sell=order, to_sell=orders.to_sell - qty)), commands


def _cancel_exit(pos: Position, eo: Order, ts: datetime) -> tuple[Position, list[Command]]:
    pos, pending, commands = cancel(pos, eo, ts)
    return _with_orders(pos, evolve(pos.orders, exit=pending)), commands


def _cancel_sale(pos: Position, so: Order, ts: datetime) -> tuple[Position, list[Command]]:
    """Withdraw a limit sale to send it again (its shares go back to be sold on confirmation)."""
    pos, pending, commands = cancel(pos, so, ts)
    return _with_orders(pos, evolve(pos.orders, sell=pending)), commands


def _exit_through(
    pos: Position, stop: Decimal, price: Decimal, ts: datetime, extended: Extended | None = None
) -> tuple[Position, list[Command]]:
    """The market is already at or beyond the stop: a stop order there would be refused or
    fill at once, so exit now at market and say so."""
    record = conflict(
        ts,
        pos.key,
        "invalid_price",
        [],
        "exit_at_market",
        f"stop {stop} is at or through the market at {price}",
        stop=stop,
        price=price,
    )
    pos = evolve(
        pos,
        ladder=evolve(pos.ladder, trigger=None),
        orders=evolve(pos.orders, to_sell=pos.fills.remaining),
        close_reason=CloseReason.STOP_THROUGH_MARKET,
    )
    pos, commands = reconcile(pos, price, ts, extended=extended)
    return pos, [record, *commands]


def exit_unprotectable(
    pos: Position, price: Decimal | None, ts: datetime, extended: Extended | None = None
) -> tuple[Position, list[Command]]:
    """The broker refuses every protection it is offered (the first stop, or the restore of
    the last one): sell the shares at market, with the reason, instead of holding them bare."""
    pos = evolve(
        pos,
        ladder=evolve(pos.ladder, trigger=None),
        orders=evolve(pos.orders, to_sell=pos.fills.remaining, refused=None),
        close_reason=CloseReason.PROTECTION_REFUSED,
    )
    return reconcile(pos, price, ts, extended=extended)


def roll_back(
    pos: Position, price: Decimal | None, ts: datetime, extended: Extended | None = None
) -> tuple[Position, list[Command]]:
    """The broker refused a step of the operation for good: put back the last protection it
    accepted (stop and take-profit together, for the shares left) and keep the refused target
    from being asked again until a new trigger changes it. Tranches not yet sold are dropped.

    Nothing to put back (the first stop itself refused) leaves no protection the broker will
    take: the shares are sold at market rather than left unprotected (`protection_refused`).
    """
    ladder = pos.ladder
    orders = evolve(
        pos.orders, refused=(ladder.stop, ladder.take_profit), to_sell=_ZERO, milestones=()
    )
    pos = evolve(pos, orders=orders)
    old = orders.restore
    if orders.sell is not None and orders.exit is None:
        # beside a sale: what its state calls for
        return reconcile(pos, price, ts, extended=extended)
    if pos.fills.remaining <= 0 or orders.exit is not None or orders.sell is not None:
        return pos, _NOTHING
    if old is None or old.stop_price is None:
        return exit_unprotectable(pos, price, ts, extended)
    if price is not None and is_through(price, old.stop_price, pos.long):
        return _exit_through(pos, old.stop_price, price, ts, extended)
    pos, order = _new_order(
        pos, OrderRole.RESTORE, old.type, pos.fills.remaining, old.stop_price, old.limit_price
    )
    pos, commands = submit(pos, order, ts)
    return _with_orders(pos, evolve(pos.orders, exit=order)), commands
