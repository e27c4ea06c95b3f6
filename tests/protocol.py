"""A ledger of what the broker has answered, kept beside a fold, that checks the order
protocol's laws at the moment each command is sent (P10, P22) and each operation ends (P13,
P21, P23). Written from the broker's side: it never asks the engine what it believes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from engine import (
    BrokerSnapshot,
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    CloseReason,
    EngineState,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderStatus,
    Record,
    SubmitOrder,
)
from engine.commands import Command

PROTECTIVE = ("protect", "restore")


def key_of(order_id: str) -> str:
    """`rt-SYM-3-7-stop` -> `SYM-3`."""
    return order_id.split("-", 1)[1].rsplit("-", 2)[0]


class Ledger:
    """Orders as the broker answered them; `event` before each step, `step` after it."""

    def __init__(self) -> None:
        self.orders: dict[str, SubmitOrder] = {}
        self.filled: dict[str, Decimal] = defaultdict(Decimal)
        self.live: dict[str, set[str]] = defaultdict(set)  # key -> protective orders working
        self.waiting: dict[str, set[str]] = defaultdict(set)  # key -> commands not answered
        self.accepted: dict[str, list[SubmitOrder]] = defaultdict(list)  # protective, in order
        self.operations: list[Record] = []
        self.rollbacks: list[tuple[SubmitOrder, SubmitOrder]] = []

    # --- the broker's answers ---------------------------------------------------------------

    def event(self, event: Event) -> None:
        if isinstance(event, BrokerSnapshot):
            self._snapshot(event)
            return
        oid = getattr(event, "order_id", None)
        if oid is None or oid not in self.orders:
            return
        key, order = key_of(oid), self.orders[oid]
        match event:
            case OrderAccepted():
                self.waiting[key].discard(oid)
                if order.purpose in PROTECTIVE:
                    self.live[key].add(oid)
                    self.accepted[key].append(order)
            case OrderRejected():
                self.waiting[key].discard(oid)
                # A duplicate id: the first send got there, unless it already filled.
                done = self.filled[oid] >= order.qty
                if (
                    event.kind is OrderRefusal.DUPLICATE
                    and order.purpose in PROTECTIVE
                    and not done
                ):
                    self.live[key].add(oid)
                    self.accepted[key].append(order)
            case OrderCanceled() | CancelRejected():
                self.waiting[key].discard(oid)
                if isinstance(event, OrderCanceled) or event.kind in (
                    CancelRefusal.CANCELED,
                    CancelRefusal.NOT_FOUND,
                ):
                    self.live[key].discard(oid)  # the broker says it no longer works
            case OrderFilled():
                self.filled[oid] += event.qty
                if self.filled[oid] >= order.qty:
                    self.live[key].discard(oid)
                    self.waiting[key].discard(oid)

    def _snapshot(self, snap: BrokerSnapshot) -> None:
        """After a dropped link the snapshot answers every request still open."""
        self.waiting.clear()
        working = {o.order_id for o in snap.orders if o.status == "open"}
        for live in self.live.values():
            live.intersection_update(working)
        for oid in working:
            order = self.orders.get(oid)
            if order is not None and order.purpose in PROTECTIVE:
                key = key_of(oid)
                if oid not in self.live[key]:
                    self.live[key].add(oid)
                    self.accepted[key].append(order)

    # --- the engine's commands -------------------------------------------------------------

    def step(self, after: EngineState, commands: Iterable[Command]) -> None:
        commands = list(commands)
        # Positions the broker's snapshot re-counted in this step (after an operation it
        # applied may have ended: the state at the end of the step is the re-counted one).
        recounted = {
            c["key"] for c in commands
            if isinstance(c, Record) and c.kind == "position.reconciled"
        }  # fmt: skip
        for command in commands:
            if isinstance(command, SubmitOrder) and command.purpose != "entry":
                self._sent(command.order_id, command)
            elif isinstance(command, CancelOrder) and key_of(command.order_id) in after.positions:
                self._sent(command.order_id, None)
            elif isinstance(command, Record) and command.kind == "operation.done":
                self._done(after, command, command["key"] in recounted)
            elif (
                isinstance(command, Record)
                and command.kind == "order.timeout"
                and command["action"] == "alerted"
            ):
                # Its answer is overdue and the operator told: no longer in flight.
                self.waiting[key_of(str(command["order_id"]))].discard(command["order_id"])

    def _sent(self, oid: str, order: SubmitOrder | None) -> None:
        key = key_of(oid)
        # P22: one operation per position, one step of it at a time (a cancel whose answer
        # timed out may be sent again: the same request).
        others = self.waiting[key] - ({oid} if order is None else set())
        assert not others, f"{oid} sent while {others} unanswered"
        if order is not None:
            self.orders.setdefault(oid, order)
            if order.purpose in PROTECTIVE:
                # P10: no new stop while another protective order of the position still works.
                others = self.live[key] - {oid}
                assert not others, f"{oid} sent while {others} not yet canceled"
        self.waiting[key].add(oid)

    def _done(self, after: EngineState, record: Record, recounted: bool = False) -> None:
        self.operations.append(record)
        key, outcome = record["key"], record["outcome"]
        assert outcome in ("applied", "rolled_back", "closed"), record  # P13
        # P23: done only once every order it touched has its answer...
        for oid in record["order_ids"]:
            assert oid not in self.waiting[key], (record, oid)
        pos = after.positions.get(key)
        if outcome == "closed":
            assert pos is None, record
            return
        if recounted:
            return  # the snapshot changed its count after: re-arming it is a new operation
        # ...and the protection is confirmed working for every remaining share.
        assert pos is not None, record
        order = pos.orders.exit
        if pos.fills.remaining == 0:  # all sold while its entry order still works
            if pos.close_reason is CloseReason.CLOSED_OUTSIDE:
                return  # the broker's snapshot closed it in the same step: its cancels follow
            assert order is None and pos.orders.sell is None, record
            return
        assert order is not None and order.status is OrderStatus.LIVE, record
        assert order.id in self.live[key], (record, order.id)
        assert order.open_qty == pos.fills.remaining, record
        if outcome == "applied":
            assert (order.stop_price, order.limit_price) == (
                pos.ladder.stop,
                pos.ladder.take_profit,
            )
        elif pos.halted:
            # P13: the broker would not cancel the pre-operation order: it is still there.
            assert order.id == self.accepted[key][-1].order_id, record
        else:
            # P13: rolled back = the protection accepted before the refused step, as it was.
            before, last = self.restored_pairs(key)
            assert last.order_id == order.id and last.purpose == "restore", record
            assert (last.type, last.stop_price, last.limit_price) == (
                before.type,
                before.stop_price,
                before.limit_price,
            ), (before, last)
            self.rollbacks.append((before, last))

    def restored_pairs(self, key: str) -> tuple[SubmitOrder, SubmitOrder]:
        """The protective order accepted before the last one, and the last one."""
        *_, before, last = self.accepted[key]
        return before, last
