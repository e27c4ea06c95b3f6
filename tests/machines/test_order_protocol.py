"""The engine against a simulated broker that refuses orders at random (seeded), as a
Hypothesis state machine: the invariants hold after every rule."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from engine import (
    Alert,
    BrokerSnapshot,
    CancelOrder,
    Clock,
    Config,
    Connectivity,
    EngineState,
    EntryIntent,
    Event,
    LinkMode,
    OrderAction,
    OrderRefusal,
    OrderRejected,
    OrderRole,
    OrderStatus,
    ProtectionConfig,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from engine.ids import key_of
from shell.broker.simulated import Faults, SimulatedBroker
from tests.protocol import Ledger
from tests.strategies import T0, fault_models

SYMBOLS = {"AAA": Side.LONG, "BBB": Side.SHORT}
CENT = Decimal("0.01")
# An order the broker still works: accepted, and any cancel of it not yet confirmed.
WORKING = (OrderStatus.LIVE, OrderStatus.PENDING_CANCEL, OrderStatus.CANCEL_WAIT)


class OrderProtocol(RuleBasedStateMachine):
    """Ticks, entries and clock events; the broker refuses a share of submissions."""

    @initialize(
        faults=fault_models(),
        take_profit=st.booleans(),
        fill=st.sampled_from(["next", "same"]),
    )
    def start(self, faults: Faults, take_profit: bool, fill: str) -> None:
        self.broker = SimulatedBroker(market_fill=fill, faults=faults)  # type: ignore[arg-type]
        self.ledger = Ledger()
        self.state = EngineState.empty(Config(ProtectionConfig(take_profit=take_profit)))
        self.ts = T0
        self.price = dict.fromkeys(SYMBOLS, Decimal("100.00"))
        self.orders: dict[str, SubmitOrder] = {}
        self.commands_per_key: list[dict[str, int]] = []
        self.journal: list[Record | Alert] = []
        # Broker-side exposure: since when each symbol holds shares that no working exit-side
        # order covers, and when the engine last sent an order command for the symbol.
        self.bare_since: dict[str, datetime] = {}
        self.last_sent: dict[str, datetime] = {}
        # Symbols the broker silently forgot, until a broker snapshot reaches the engine.
        self.forgotten: set[str] = set()
        # Symbols the owner or the broker changed behind ratchet's back, until a snapshot.
        self.outside: set[str] = set()
        # Per position, when its order requests went out, and which of them protection forced
        # past the budget (a sale of bare shares at the deadline, cancels of orders for shares
        # the broker no longer holds, the previous stop put back after a refusal).
        self.requests: dict[str, deque[tuple[datetime, bool]]] = defaultdict(deque)
        for symbol in SYMBOLS:
            self.feed(Tick(self.ts, symbol, self.price[symbol]))

    def feed(self, event: Event) -> None:
        queue = [event]
        while queue:
            current = queue.pop(0)
            self.ledger.event(current)
            t = step(self.state, current)
            self.state = t.state
            self.ledger.step(t.state, t.commands)
            self.journal.extend(c for c in t.commands if isinstance(c, Record | Alert))
            if isinstance(current, BrokerSnapshot):
                self.check_reconciled(current)
            self.count_requests(current, t.commands)
            per_key: dict[str, int] = defaultdict(int)
            for command in t.commands:
                if isinstance(command, SubmitOrder):
                    self.check_share_availability(command)
                    first = self.orders.setdefault(command.order_id, command)
                    assert (first.symbol, first.action, first.type, first.qty) == (
                        command.symbol, command.action, command.type, command.qty
                    ), f"client order id {command.order_id} reused for another order"  # fmt: skip
                if isinstance(command, SubmitOrder | CancelOrder):
                    per_key[key_of(command.order_id)] += 1
                if isinstance(command, SubmitOrder | CancelOrder):
                    self.last_sent[command.symbol] = current.ts
            self.commands_per_key.append(per_key)
            queue.extend(self.broker.execute(t.commands))
            self.observe_exposure(current.ts)

    def check_reconciled(self, snap: BrokerSnapshot) -> None:
        """Divergence: one snapshot round trip reconciles: once applied, the engine counts in
        every symbol what the broker said it holds, and no position still waits for it."""
        self.forgotten.clear()
        self.outside.clear()
        told = dict(snap.positions)
        for symbol, side in SYMBOLS.items():
            engine = sum((p.fills.remaining for p in self.state.in_symbol(symbol)), Decimal(0))
            assert engine * side.sign == told.get(symbol, Decimal(0)), (symbol, engine, told)
        assert all(p.reconciling is None for p in self.state.positions.values())

    def count_requests(self, event: Event, commands: Sequence[object]) -> None:
        """The request budget: no position sends more than `max_requests_per_minute` order
        requests in any minute, beyond those protection forces (see `requests`)."""
        budget = self.state.config.max_requests_per_minute
        forced_keys = {
            str(c["key"]) for c in commands
            if isinstance(c, Record) and c.kind == "conflict.detected"
            and c["type"] == "no_stop_in_time"
        }  # fmt: skip
        snapshot = isinstance(event, BrokerSnapshot)
        rollback = isinstance(event, OrderRejected) and event.kind is OrderRefusal.PERMANENT
        for command in commands:
            if isinstance(command, SubmitOrder) and command.purpose == "entry":
                continue
            if not isinstance(command, SubmitOrder | CancelOrder):
                continue
            key = key_of(command.order_id)
            forced = snapshot or rollback or key in forced_keys
            window = self.requests[key]
            window.append((event.ts, forced))
            while window and event.ts - window[0][0] >= timedelta(seconds=60):
                window.popleft()
            free = sum(1 for _, f in window if not f)
            assert free <= budget, (key, free, budget, list(window))

    def advance(self, to: datetime) -> None:
        """Time passes until `to`: whatever falls due meanwhile fires at its instant, as the
        live loop's heartbeat and `simulate` make it."""
        while self.state.due < to:
            due = self.state.due
            self.feed(Clock(due))
            if self.state.due <= due:
                break

    def observe_exposure(self, now: datetime) -> None:
        """Per symbol, from the broker's own books: shares held beyond what working exit-side
        orders (stops, take-profits, market sells) cover. Not counted while the link is down
        (nothing can be sent)."""
        for symbol, side in SYMBOLS.items():
            held = abs(self.broker.positions.get(symbol, Decimal(0)))
            exit_side = OrderAction.SELL if side is Side.LONG else OrderAction.BUY
            covered = self.broker.held(symbol, exit_side)
            # Shares queued for sale behind a market sale the broker works go with the next
            # print, right after it: a position on its way out, not one left resting.
            for pos in self.state.in_symbol(symbol):
                sell = pos.orders.sell
                if sell is not None and self.broker.working_qty(symbol, sell.id) > 0:
                    covered += pos.orders.to_sell
            bare = held - covered > 0
            if not bare or not self.state.link.up:
                self.bare_since.pop(symbol, None)
            else:
                self.bare_since.setdefault(symbol, now)

    def check_share_availability(self, order: SubmitOrder) -> None:
        """P11, at the moment of sending: an order that reduces the position never asks for
        more than the position minus the shares open orders already hold."""
        held_position = self.broker.positions.get(order.symbol, Decimal(0))
        reducing = (order.action.value == "sell" and held_position > 0) or (
            order.action.value == "buy" and held_position < 0
        )
        if not reducing or order.purpose == "entry":
            return
        if self.broker.created(order.order_id):
            return  # a resend the broker refuses as a duplicate id: it can hold no shares
        if order.symbol in self.outside:
            return  # the owner changed it behind ratchet's back: the broker's refusal tells
        # What ratchet's own orders hold (an order of the owner's is not ratchet's to know
        # of before the broker says so: it refuses, and that is evidence).
        held = sum(
            (self.broker.working_qty(order.symbol, o.order_id)
             for o in self.broker.open_orders(order.symbol)
             if o.action is order.action and o.order_id.startswith("rt-")),
            Decimal(0),
        )  # fmt: skip
        assert held + order.qty <= abs(held_position), (order, held, held_position)

    @rule(symbol=st.sampled_from(list(SYMBOLS)), cents=st.integers(-150, 250))
    def tick(self, symbol: str, cents: int) -> None:
        self.ts += timedelta(milliseconds=700)
        self.advance(self.ts)
        side = SYMBOLS[symbol]
        self.price[symbol] = max(Decimal("1.00"), self.price[symbol] + cents * CENT * side.sign)
        tick = Tick(self.ts, symbol, self.price[symbol])
        for fill in self.broker.on_tick(tick):
            self.feed(fill)
        self.feed(tick)

    @rule(symbol=st.sampled_from(list(SYMBOLS)), qty=st.integers(1, 300),
          risk=st.integers(20, 300))  # fmt: skip
    def entry(self, symbol: str, qty: int, risk: int) -> None:
        side = SYMBOLS[symbol]
        stop = self.price[symbol] - risk * CENT * side.sign
        self.feed(EntryIntent(self.ts, symbol, side, stop, Decimal(qty)))

    @rule(seconds=st.integers(1, 90))
    def clock(self, seconds: int) -> None:
        self.ts += timedelta(seconds=seconds)
        self.advance(self.ts)
        self.feed(Clock(self.ts))

    @rule(symbol=st.sampled_from(list(SYMBOLS)), whole=st.booleans())
    def closed_by_hand(self, symbol: str, whole: bool) -> None:
        """The account's owner closes half or all of the symbol by hand, as Alpaca's
        close-position does: ratchet's orders in it are canceled (their updates are told),
        and the owner's market order fills like any other (a fill ratchet does not know)."""
        held = abs(self.broker.positions.get(symbol, Decimal(0)))
        qty = held if whole else (held / 2).to_integral_value(ROUND_FLOOR)
        if qty > 0:
            self.outside.add(symbol)
        for event in self.broker.close_by_hand(symbol, qty, self.ts):
            self.feed(event)

    @rule(symbol=st.sampled_from(list(SYMBOLS)))
    def forgotten_by_the_broker(self, symbol: str) -> None:
        """The broker silently drops the symbol's shares and orders (an account restored from
        long ago): nothing is told; the engine finds out when the broker next contradicts
        it, and its snapshot settles the matter."""
        self.broker.forget(symbol)
        self.forgotten.add(symbol)
        self.outside.add(symbol)

    @rule()
    def drop(self) -> None:
        """The link drops now, with whatever is in flight: answers are lost until the broker
        is back (at the first print a second later) with its snapshot, which replays them."""
        self.broker.disconnect(self.ts)
        self.feed(Connectivity(self.ts, False))

    @invariant()
    def no_shares_go_without_a_working_stop_past_the_protect_deadline(self) -> None:
        """SPEC §4, halted or not, breaker open or not: shares the broker holds with no
        working stop (or market sale) get one within `protect_deadline` plus one retry cycle
        of event time; past that only while the broker refuses every request for them, and
        the engine keeps sending them (one at least every longest retry delay)."""
        cfg = self.state.config
        limit = cfg.protect_deadline + sum(cfg.retry_delays, timedelta(0))
        for symbol, since in self.bare_since.items():
            if self.ts - since <= limit:
                continue
            last = self.last_sent.get(symbol)
            assert last is not None and self.ts - last <= max(cfg.retry_delays), (
                symbol, since, last, self.ts
            )  # fmt: skip

    @invariant()
    def p11_never_sells_more_than_is_held(self) -> None:
        assert self.broker.oversells == 0

    @invariant()
    def the_engine_counts_the_shares_the_broker_holds(self) -> None:
        if self.state.link.mode is not LinkMode.NORMAL:
            return  # fills are not told while the link is down; the snapshot catches up
        for symbol, side in SYMBOLS.items():
            if symbol in self.forgotten:
                continue  # not told: the engine cannot know before the broker contradicts it
            engine = (
                sum((p.fills.remaining for p in self.state.in_symbol(symbol)), Decimal(0))
                * side.sign
            )
            assert engine == self.broker.positions.get(symbol, Decimal(0)), symbol

    @invariant()
    def p22_one_order_command_per_position_per_step(self) -> None:
        for per_key in self.commands_per_key:
            assert all(count <= 1 for count in per_key.values()), per_key
        self.commands_per_key.clear()

    @invariant()
    def every_idle_position_holds_a_live_stop_for_its_shares(self) -> None:
        """A position with nothing in flight holds the stop it wants for every share. Shares
        without one are timed (`exposed_since`): the protect-deadline invariant bounds them,
        whatever the breaker says."""
        for pos in self.state.positions.values():
            busy = pos.halted or pos.orders.sell is not None or pos.orders.to_sell > 0
            busy = busy or pos.fills.remaining == 0  # all sold; its entry order still works
            busy = busy or pos.bare
            order = pos.orders.exit
            if not self.state.link.sending and not busy:
                # Breaker open: a step not settled, in flight or due for retry is queued.
                settled = (
                    order is not None
                    and order.status is OrderStatus.LIVE
                    and order.open_qty == pos.fills.remaining
                    and (
                        order.stop_price == pos.ladder.stop
                        or (order.role is OrderRole.RESTORE and pos.orders.refused is not None)
                    )
                )
                in_flight = order is not None and order.status is not OrderStatus.LIVE
                queued = pos.key in self.state.link.waiting or (
                    pos.retry is not None and pos.retry.due is not None
                )
                assert settled or in_flight or queued, pos.key
                continue
            order = pos.orders.exit
            if busy or (order is not None and order.status is not OrderStatus.LIVE):
                continue
            assert order is not None, pos.key
            assert order.open_qty == pos.fills.remaining, pos.key
            if order.role is OrderRole.RESTORE:  # rolled back until a new trigger
                assert pos.orders.refused == (pos.ladder.stop, pos.ladder.take_profit), pos.key
            else:
                assert order.stop_price == pos.ladder.stop, pos.key

    @invariant()
    def shares_without_working_protection_are_inside_a_measured_window(self) -> None:
        """Every position is protected, except inside one unprotected window the engine is
        timing (or halted, after an alert, when nothing can be put back)."""
        for pos in self.state.positions.values():
            order = pos.orders.exit
            covered = (
                order is not None
                and order.status in WORKING
                and order.open_qty >= pos.fills.remaining
            )
            if pos.fills.remaining > 0 and not covered:
                assert pos.exposed_since is not None or pos.halted, pos.key


def test_p11_no_order_ever_asks_for_shares_another_order_holds():
    """P11 (and the other invariants above) over random ticks, entries, clock events and a
    broker that refuses a share of submissions."""
    run_state_machine_as_test(OrderProtocol)
