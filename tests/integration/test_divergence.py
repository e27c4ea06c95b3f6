"""When the broker disagrees (SPEC §4, §6): evidence, one snapshot, the
broker's truth adopted, and a bounded number of requests however the refusals come."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine import (
    BrokerSnapshot,
    CancelOrder,
    Config,
    EngineState,
    EntryIntent,
    Event,
    ProtectionConfig,
    Record,
    RequestSnapshot,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from engine.ids import key_of
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
STEPS = [Decimal(c) / 100 for c in (-3, -2, -1, -1, 0, 0, 1, 1, 2, 3, 4)]


def _book(n: int, broker: SimulatedBroker) -> EngineState:
    """n open long positions, one per symbol, at 100.00 with their stops at 99.00."""
    events: list[Event] = []
    for i in range(n):
        symbol = f"S{i:04d}"
        events.append(Tick(T0, symbol, Decimal("100.00")))
        events.append(EntryIntent(T0, symbol, Side.LONG, Decimal("99.00"), Decimal(100)))
    state, _ = run_simulation(events, EngineState.empty(), broker)
    assert len(state.positions) == n
    return state


def _walk(
    state: EngineState, broker: SimulatedBroker, ticks: int, every: int = 5, symbols: int = 0
) -> tuple[EngineState, list]:
    """Seeded random walks over `symbols` symbols (the positions' by default) from 100.00,
    every event stepped and its commands carried out by `broker`; every step's (event,
    commands) is returned."""
    rng = random.Random(7)
    names = [f"S{i:04d}" for i in range(symbols or len(state.positions))]
    prices = dict.fromkeys(names, Decimal("100.00"))
    ts = T0
    steps = []
    for i in range(ticks):
        ts += timedelta(milliseconds=every)
        symbol = names[i % len(names)]
        prices[symbol] = max(Decimal("1.00"), prices[symbol] + rng.choice(STEPS))
        queue: list[Event] = [*broker.on_tick(tick := Tick(ts, symbol, prices[symbol])), tick]
        while queue:
            event = queue.pop(0)
            t = step(state, event)
            state = t.state
            steps.append((event, t.commands))
            queue.extend(broker.execute(t.commands))
    return state, steps


def test_positions_stepped_against_a_broker_that_never_saw_them_close_outside_at_once():
    """The old benchmark's mistake, as live meets it when an account is restored from long
    ago: 100 positions built against one broker are stepped against another that holds
    nothing. The first contradiction (a cancel answered 404) asks for the broker's snapshot;
    applying it closes every position `closed_outside`, at once, and nothing more is sent:
    a handful of requests in all, where retrying blindly sent 18,367."""
    state = _book(100, SimulatedBroker(market_fill="same"))
    state, steps = _walk(state, SimulatedBroker(market_fill="next"), 60_000)
    assert not state.positions
    records = [c for _, commands in steps for c in commands if isinstance(c, Record)]
    closed = Counter(r["reason"] for r in records if r.kind == "position.closed")
    assert closed == {"closed_outside": 100}
    asked = [c for _, commands in steps for c in commands if isinstance(c, RequestSnapshot)]
    snapshots = [e for e, _ in steps if isinstance(e, BrokerSnapshot)]
    assert len(asked) == len(snapshots) == 1
    [divergence] = [r for r in records if r.kind == "divergence.detected"]
    assert divergence["evidence"] == "order not found at the broker"
    requests = [
        c for _, commands in steps for c in commands if isinstance(c, SubmitOrder | CancelOrder)
    ]
    assert len(requests) <= state.config.max_requests_per_minute
    assert not [r for r in records if r.kind == "order.retry"]


def test_a_position_sold_by_hand_is_shrunk_and_its_stop_rearmed_for_what_is_left():
    """The owner sells 40 of 100 AAA by hand (Alpaca's close-position: the stop is canceled,
    told by its update; the owner's sale fills). ratchet re-arms at once, the broker refuses
    (403: 60 held, 100 asked), the fill of an order it does not know is evidence, the
    snapshot shrinks the lot to 60, and a stop for exactly 60 goes out."""
    broker = SimulatedBroker(market_fill="same")
    events: list[Event] = [
        Tick(T0, "AAA", Decimal("100.00")),
        EntryIntent(T0, "AAA", Side.LONG, Decimal("99.00"), Decimal(100)),
    ]
    state, _ = run_simulation(events, EngineState.empty(), broker)
    out = []
    queue = broker.close_by_hand("AAA", Decimal(40), T0 + timedelta(seconds=1))
    while queue:
        event = queue.pop(0)
        t = step(state, event)
        state = t.state
        out.extend(t.commands)
        queue.extend(broker.execute(t.commands))
    [pos] = state.positions.values()
    assert pos.fills.remaining == 60 and pos.reconciling is None
    [change] = [c for c in out if getattr(c, "kind", "") == "position.reconciled"]
    assert (change["change"], change["from"], change["to"]) == ("shrunk", 100, 60)
    stops = [c for c in out if isinstance(c, SubmitOrder) and c.purpose == "protect"]
    assert stops[-1].qty == 60
    assert broker.open_orders("AAA") == [stops[-1]]
    assert broker.positions["AAA"] == 60


def test_refusals_however_they_come_stay_within_the_request_budget():
    """A broker that refuses half of everything for passing reasons, over a minute of fast
    ticks that move stops: no position sends more than `max_requests_per_minute` requests
    in any 60 s (sales of bare shares past the deadline excepted), and the same
    refusal's alerts are coalesced."""
    from shell.broker.simulated import Faults  # noqa: PLC0415

    broker = SimulatedBroker(market_fill="same", faults=Faults(transient=0.5, seed=3))
    events: list[Event] = []
    for i in range(5):
        symbol = f"S{i:04d}"
        events.append(Tick(T0, symbol, Decimal("100.00")))
        events.append(EntryIntent(T0, symbol, Side.LONG, Decimal("99.00"), Decimal(100)))
    # A stop move at nearly every new high; the breaker kept shut to watch the budget alone.
    trail = Config(ProtectionConfig(trail=True), breaker_failures=100)
    state, _ = run_simulation(events, EngineState.empty(trail), broker)
    state, steps = _walk(state, broker, 20_000, every=15, symbols=5)
    budget = state.config.max_requests_per_minute
    sent: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    for event, commands in steps:
        forced = {
            str(c["key"]) for c in commands
            if isinstance(c, Record) and c.kind == "conflict.detected"
            and c["type"] == "no_stop_in_time"
        }  # fmt: skip
        for command in commands:
            if isinstance(command, CancelOrder) or (
                isinstance(command, SubmitOrder) and command.purpose != "entry"
            ):
                key = key_of(command.order_id)
                sent[key].append((event.ts, key in forced))
    assert sum(len(t) for t in sent.values()) > 5 * budget, "the walk kept them busy"
    for key, times in sent.items():
        for i, (start, _) in enumerate(times):
            window = [f for t, f in times[i:] if t - start < timedelta(seconds=60)]
            assert sum(1 for f in window if not f) <= budget, key
