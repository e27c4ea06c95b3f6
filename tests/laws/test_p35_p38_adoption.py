"""P35 Startup scan, P36 Self-healing, P37 Minimal disruption, P38 Post-migration verification:
a broker that already holds positions (the owner's bot's, a previous run's) and orders for
some of them, read by an engine that knows nothing, through its snapshot (SPEC §6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine import (
    CancelOrder,
    Config,
    EngineState,
    OrderAction,
    OrderType,
    ProtectionConfig,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from engine.model import Protection
from shell.broker.simulated import SimulatedBroker

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
CENT = Decimal("0.01")
# The default ladder (SPEC §3): at R -> lock R, and the protection state of each level.
RUNGS = ((Decimal(1), Decimal(0)), (Decimal("1.5"), Decimal("0.5")), (Decimal(2), Decimal(1)),
         (Decimal(3), Decimal("1.5")))  # fmt: skip
STATES = ((Decimal(1), Protection.BREAKEVEN_PROTECTED),
          (Decimal(2), Protection.PARTIAL_PROFIT_TAKEN),
          (Decimal(3), Protection.ADVANCED_PROFIT_TAKEN))  # fmt: skip


@dataclass(frozen=True)
class Held:
    """A position the broker holds before ratchet starts, and the owner's stop for it."""

    symbol: str
    side: Side
    qty: Decimal
    entry: Decimal
    risk: Decimal  # per share, to the owner's stop (or the default 2%)
    r_now: Decimal  # where the market is, in R
    # The owner's stop: "none", "initial" (on the loss side, for every share: it sets the
    # risk, and is right while the R is below the first rung), "short" (one share short of
    # covering: the default risk applies).
    stop: str


@st.composite
def holdings(draw) -> tuple[Held, ...]:
    symbols = draw(st.lists(st.sampled_from(["AAA", "BBB", "CCC"]), min_size=1, max_size=3,
                            unique=True))  # fmt: skip
    out = []
    for symbol in symbols:
        stop = draw(st.sampled_from(["none", "initial", "short"]))
        entry = Decimal(draw(st.sampled_from([20, 50, 100, 250])))
        risk = entry * Decimal("0.02") if stop != "initial" else draw(
            st.integers(1, 40).map(lambda k: Decimal(k) / 10)
        )  # fmt: skip
        out.append(Held(
            symbol, draw(st.sampled_from(list(Side))), Decimal(draw(st.integers(1, 500))), entry,
            risk, Decimal(draw(st.integers(-9, 39))) / 10, stop,
        ))  # fmt: skip
    return tuple(out)


def _wanted(held: Held) -> tuple[Decimal, Protection]:
    """The oracle: the stop and the state the current R calls for, from the ladder alone."""
    lock = None
    for at, lock_r in RUNGS:
        if held.r_now >= at:
            lock = lock_r
    state = Protection.INITIAL_RISK
    for at, name in STATES:
        if held.r_now >= at:
            state = name
    sign = held.side.sign
    initial = held.entry - held.risk * sign
    return (initial if lock is None else held.entry + lock * held.risk * sign), state


def _scan(holding: tuple[Held, ...], take_profit: bool):
    """The broker with the holdings and the owner's stops, the engine started empty, its
    snapshot applied and every command carried out until nothing more happens."""
    broker = SimulatedBroker(market_fill="same")
    owner = {}
    for i, h in enumerate(holding):
        price = h.entry + h.r_now * h.risk * h.side.sign
        broker.hold(h.symbol, h.qty * h.side.sign, h.entry)
        broker.on_tick(Tick(T0, h.symbol, price))
        exit_side = OrderAction.SELL if h.side is Side.LONG else OrderAction.BUY
        if h.stop != "none":
            at = h.entry - h.risk * h.side.sign
            qty = h.qty if h.stop != "short" else h.qty - 1
            if qty > 0:
                order = SubmitOrder(T0, f"owner-{i}", h.symbol, exit_side, OrderType.STOP, qty,
                                    stop_price=at)  # fmt: skip
                broker.place_for_owner(order)
                owner[h.symbol] = order
    config = Config(ProtectionConfig(take_profit=take_profit))
    state = EngineState.empty(config)
    out = []
    queue = [broker.snapshot(T0 + timedelta(seconds=1))]
    while queue:
        t = step(state, queue.pop(0))
        state = t.state
        out.extend(t.commands)
        queue.extend(broker.execute(t.commands))
    return broker, state, out, owner


@given(holdings(), st.booleans())
def test_p35_a_startup_scan_puts_each_position_under_the_protection_its_r_calls_for(
    holding, take_profit
):
    """Each position the broker holds is adopted (`position.adopted`) at the broker's average
    entry, its initial stop the owner's loss-side stop covering the shares, else 2% away;
    its stop and state are those the current R reached, each level passed journaled, and
    nothing is sold for milestones passed before adoption."""
    _, state, out, _ = _scan(holding, take_profit)
    adopted = {
        r["symbol"]: r for r in out if isinstance(r, Record) and r.kind == "position.adopted"
    }
    assert set(adopted) == {h.symbol for h in holding}
    for h in holding:
        [pos] = state.in_symbol(h.symbol)
        record = adopted[h.symbol]
        assert (pos.side, pos.fills.remaining, pos.ladder.entry) == (h.side, h.qty, h.entry)
        assert record["stop_source"] == ("own_stop" if h.stop == "initial" else "default_risk")
        stop, protection = _wanted(h)
        assert pos.ladder.stop == stop, (h, pos.ladder.stop, stop)
        assert pos.ladder.protection is protection
    sold = [c for c in out if isinstance(c, SubmitOrder) and c.purpose in ("partial", "exit")]
    assert not sold


@given(holdings(), st.booleans())
def test_p36_missing_or_wrong_exit_orders_are_corrected(holding, take_profit):
    """A position with no stop gets one; the owner's stop at the wrong level, of the wrong
    kind (no take-profit leg when one is configured) or for fewer shares is replaced (or
    canceled, when it does not cover the shares) by ratchet's own."""
    broker, state, out, owner = _scan(holding, take_profit)
    canceled = {c.order_id for c in out if isinstance(c, CancelOrder)}
    for h in holding:
        [pos] = state.in_symbol(h.symbol)
        exit_order = pos.orders.exit
        assert exit_order is not None and exit_order.stop_price == pos.ladder.stop
        theirs = owner.get(h.symbol)
        wrong = theirs is not None and (
            theirs.stop_price != pos.ladder.stop or take_profit or theirs.qty != h.qty
        )
        if wrong:
            assert theirs.order_id in canceled
            assert theirs not in broker.open_orders(h.symbol)


@given(holdings())
def test_p37_orders_already_correct_are_never_canceled_or_replaced(holding):
    """The owner's stop that is exactly what the position wants (every share, at the initial
    stop while the R is below the first rung, no take-profit configured) is kept as its
    protection: no cancel, no replacement; the position's protective order is that order."""
    _, state, out, owner = _scan(holding, take_profit=False)
    canceled = {c.order_id for c in out if isinstance(c, CancelOrder)}
    for h in holding:
        theirs = owner.get(h.symbol)
        if h.stop != "initial" or h.r_now >= 1 or theirs is None:
            continue  # (only then is the owner's stop what the position wants)
        [pos] = state.in_symbol(h.symbol)
        assert theirs.order_id not in canceled
        assert pos.orders.exit is not None and pos.orders.exit.id == theirs.order_id
        assert not [c for c in out if isinstance(c, SubmitOrder) and c.symbol == h.symbol]


@given(holdings(), st.booleans())
def test_p38_after_the_scan_every_position_holds_its_exit_orders_at_the_broker(
    holding, take_profit
):
    """Read from the broker's own books once the scan has settled: every symbol's shares are
    covered by exactly one working exit-side order, at the ladder's stop, with the
    take-profit leg when configured; no other order of the symbol works."""
    broker, state, _, _ = _scan(holding, take_profit)
    assert state.link.mode.value == "normal"
    for h in holding:
        [pos] = state.in_symbol(h.symbol)
        [order] = broker.open_orders(h.symbol)
        assert order.qty == h.qty and order.stop_price == pos.ladder.stop
        assert order.action is (OrderAction.SELL if h.side is Side.LONG else OrderAction.BUY)
        if take_profit:
            assert order.type is OrderType.OCO and order.limit_price == pos.ladder.take_profit
        else:
            assert order.type is OrderType.STOP
