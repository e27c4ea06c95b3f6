"""Order reconciliation: bring a position's broker orders to what its protection calls for.

One step at a time and never two in flight (SPEC §4): cancel confirmed before a new order,
sells never above the shares no open order holds (P11), the stop re-armed after each tranche.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.commands import CancelOrder, Command, OrderAction, OrderType, Record, SubmitOrder
from engine.ids import order_id
from engine.model import Order, OrderRole, OrderStatus, Position

__all__ = [
    "cancel",
    "exit_action",
    "is_better_stop",
    "is_through",
    "reconcile",
    "roll_back",
    "submit",
]

_ZERO = Decimal(0)


def exit_action(pos: Position) -> OrderAction:
    """The action that reduces the position: sell a long, buy back a short."""
    return OrderAction.SELL if pos.long else OrderAction.BUY


def is_better_stop(new: Decimal, old: Decimal, long: bool) -> bool:
    """True when `new` locks more than `old` (higher for a long, lower for a short)."""
    return new > old if long else new < old


def is_through(price: Decimal, stop: Decimal, long: bool) -> bool:
    """True when the market at `price` is already at or beyond `stop`."""
    return price <= stop if long else price >= stop


def order_record(kind: str, key: str, symbol: str, order: Order, ts: datetime) -> Record:
    """The `order.submitted` / `order.canceled` record of an order."""
    price = order.stop_price if order.stop_price is not None else order.limit_price
    return Record(
        kind,
        ts,
        {
            "symbol": symbol,
            "key": key,
            "order_id": order.id,
            "type": order.type.value,
            "side": order.action.value,
            "qty": order.qty,
            "price": price,
            "stop_price": order.stop_price,
            "limit_price": order.limit_price,
            "purpose": order.role.value,
        },
    )


def submit(
    key: str, symbol: str, order: Order, ts: datetime, out: list[Command], paper: bool = False
) -> None:
    """Emit the order and its `order.submitted` record."""
    out.append(
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
        )
    )
    out.append(order_record("order.submitted", key, symbol, order, ts))


def cancel(order: Order, ts: datetime, symbol: str, out: list[Command]) -> Order:
    """Emit a cancel and return the order marked as awaiting its confirmation."""
    out.append(CancelOrder(ts=ts, order_id=order.id, symbol=symbol))
    return evolve(order, status=OrderStatus.PENDING_CANCEL)


def _new_order(
    pos: Position,
    role: OrderRole,
    kind: OrderType,
    qty: Decimal,
    stop: Decimal | None = None,
    limit: Decimal | None = None,
) -> tuple[Position, Order]:
    seq = pos.seq + 1
    suffix = {
        OrderRole.PROTECT: "stop",
        OrderRole.PARTIAL: "partial",
        OrderRole.EXIT: "exit",
        OrderRole.RESTORE: "restore",
    }
    order = Order(
        id=order_id(pos.key, seq, suffix.get(role, role.value)),
        role=role,
        action=exit_action(pos),
        type=kind,
        qty=qty,
        stop_price=stop,
        limit_price=limit,
    )
    return evolve(pos, seq=seq), order


def reconcile(pos: Position, price: Decimal | None, ts: datetime, out: list[Command]) -> Position:
    """Take the next order step toward the protection `pos` calls for; append its commands."""
    if pos.halted:
        return pos
    eo, so = pos.exit_order, pos.sell_order
    # SPEC §4: one operation per position; wait for every acknowledgement in flight.
    if so is not None or (eo is not None and eo.status is not OrderStatus.LIVE):
        return pos
    if pos.remaining_qty <= 0:
        if eo is not None:
            return evolve(pos, exit_order=cancel(eo, ts, pos.symbol, out))
        return pos
    if pos.to_sell > 0:
        if eo is not None:
            # The protective order holds the shares: free them first (shares_locked avoided).
            return evolve(pos, exit_order=cancel(eo, ts, pos.symbol, out))
        qty = min(pos.to_sell, pos.remaining_qty - pos.held_by_sells())
        role = OrderRole.PARTIAL if pos.milestones else OrderRole.EXIT
        pos, order = _new_order(pos, role, OrderType.MARKET, qty)
        submit(pos.key, pos.symbol, order, ts, out, pos.paper)
        return evolve(pos, sell_order=order, to_sell=pos.to_sell - qty)
    tp = pos.take_profit
    if eo is not None:
        if eo.open_qty == pos.remaining_qty and (
            (eo.stop_price == pos.stop and eo.limit_price == tp)
            # Rolled back: the restored protection stands until a new trigger asks for more.
            or (eo.role is OrderRole.RESTORE and pos.refused == (pos.stop, tp))
        ):
            return pos
        return evolve(pos, exit_order=cancel(eo, ts, pos.symbol, out))
    if price is not None and is_through(price, pos.stop, pos.long):
        return _exit_through(pos, pos.stop, price, ts, out)
    kind = OrderType.STOP if tp is None else OrderType.OCO
    pos, order = _new_order(pos, OrderRole.PROTECT, kind, pos.remaining_qty, pos.stop, tp)
    submit(pos.key, pos.symbol, order, ts, out, pos.paper)
    return evolve(pos, exit_order=order)


def _exit_through(
    pos: Position, stop: Decimal, price: Decimal, ts: datetime, out: list[Command]
) -> Position:
    """The market is already at or beyond the stop: a stop order there would be refused or
    fill at once, so exit now at market and say so."""
    out.append(
        Record(
            "conflict.detected",
            ts,
            {
                "symbol": pos.symbol,
                "key": pos.key,
                "type": "invalid_price",
                "order_ids": [],
                "resolution": "exit_at_market",
                "stop": stop,
                "price": price,
            },
        )
    )
    pos = evolve(pos, to_sell=pos.remaining_qty, close_reason="stop_through_market")
    return reconcile(pos, price, ts, out)


def exit_unprotectable(
    pos: Position, price: Decimal | None, ts: datetime, out: list[Command]
) -> Position:
    """The broker refuses every protection it is offered (the first stop, or the restore of
    the last one): sell the shares at market, with the reason, instead of holding them bare."""
    pos = evolve(pos, to_sell=pos.remaining_qty, close_reason="protection_refused", refused=None)
    return reconcile(pos, price, ts, out)


def roll_back(pos: Position, price: Decimal | None, ts: datetime, out: list[Command]) -> Position:
    """The broker refused a step of the operation for good: put back the last protection it
    accepted (stop and take-profit together, for the shares left) and keep the refused target
    from being asked again until a new trigger changes it. Tranches not yet sold are dropped.

    Nothing to put back (the first stop itself refused) leaves no protection the broker will
    take: the shares are sold at market rather than left unprotected (`protection_refused`).
    """
    pos = evolve(pos, refused=(pos.stop, pos.take_profit), to_sell=_ZERO, milestones=())
    old = pos.restore
    if pos.remaining_qty <= 0 or pos.exit_order is not None or pos.sell_order is not None:
        return pos
    if old is None or old.stop_price is None:
        return exit_unprotectable(pos, price, ts, out)
    if price is not None and is_through(price, old.stop_price, pos.long):
        return _exit_through(pos, old.stop_price, price, ts, out)
    pos, order = _new_order(
        pos, OrderRole.RESTORE, old.type, pos.remaining_qty, old.stop_price, old.limit_price
    )
    submit(pos.key, pos.symbol, order, ts, out, pos.paper)
    return evolve(pos, exit_order=order)
