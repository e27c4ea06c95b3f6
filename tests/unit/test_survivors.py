"""Mutants that once survived the laws, each killed by a worked case (specs/mutation.md).

Every test names the mutant it kills (module: the original -> the mutant) and the input that
tells the two apart; each was checked by applying the mutant by hand: the test fails on it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from engine import (
    BrokerOrder,
    BrokerSnapshot,
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    Clock,
    Command,
    Config,
    Connectivity,
    EngineState,
    EntryIntent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    ProtectionConfig,
    Record,
    Side,
    SubmitOrder,
    Tick,
    Tranche,
    fold,
    step,
)
from engine.goal import GoalConfig, OnTrigger
from engine.ids import entry_order_id, key_of, order_id, position_key, symbol_of
from engine.phase import Phase, PhaseConfig, PhaseState
from tests.strategies import T0

BUSY = "HTTP 503 service unavailable"
LOCKED = "HTTP 403 insufficient qty available for order"


def _records(commands: list[Command] | tuple[Command, ...], kind: str) -> list[Record]:
    return [c for c in commands if isinstance(c, Record) and c.kind == kind]


def _submits(commands: list[Command] | tuple[Command, ...]) -> list[SubmitOrder]:
    return [c for c in commands if isinstance(c, SubmitOrder)]


def _opened(
    qty: int = 100,
    side: Side = Side.LONG,
    config: Config | None = None,
    entry: str = "100",
    stop: str | None = None,
) -> tuple[EngineState, list[Command]]:
    """AAA `qty` @ `entry` with its stop 1.00 away (or `stop`), the entry filled; the stop
    (or OCO) sent, not yet answered."""
    stop_price = D(stop) if stop is not None else D(entry) - side.sign
    return fold(
        EngineState.empty(config),
        [
            Tick(T0, "AAA", D(entry)),
            EntryIntent(T0, "AAA", side, stop_price, D(qty)),
            OrderAccepted(T0, "rt-AAA-1-entry"),
            OrderFilled(T0, "rt-AAA-1-entry", D(qty), D(entry)),
        ],
    )


def _protected(qty: int = 100, config: Config | None = None) -> EngineState:
    """AAA long `qty` @ 100, stop 99 (OCO with the take-profit at 104 by default), accepted."""
    state, _ = _opened(qty, config=config)
    return step(state, OrderAccepted(T0, "rt-AAA-1-1-stop")).state


def test_a_sale_is_capped_by_the_shares_neither_sold_nor_held():
    """orders._sell: `min(to_sell, remaining - held_by_sells())` -> `to_sell` (and, behind that
    cap, protection.climb's `available` without the sale in flight, and its tranche without
    `min(size, available)`). Input: lot AAA-1, 100 shares, reaches 2R: 50 are queued and its
    OCO's cancel goes out; the stop fills 70 while its cancel is pending. A second lot AAA-2
    (50 shares, stop 90) has its stop refused (503) and waiting to be sent again, so the
    symbol's spare shares (80) do not cap AAA-1's sale. Once the cancel is confirmed AAA-1 has
    30 shares: its tranche sale is for 30, never 50 (P9, P11: the other lot's shares are not
    its to sell); at 3R nothing is left that no order holds, so no tranche is ordered."""
    t1 = T0 + timedelta(seconds=0.2)
    state, _ = fold(
        _protected(100),
        [
            EntryIntent(T0, "AAA", Side.LONG, D(90), D(50)),
            OrderAccepted(T0, "rt-AAA-2-entry"),
            OrderFilled(T0, "rt-AAA-2-entry", D(50), D("100")),
            OrderRejected(T0, "rt-AAA-2-1-stop", BUSY, OrderRefusal.TRANSIENT),
        ],
    )
    state, out = fold(
        state,
        [
            Tick(t1, "AAA", D("102")),
            OrderFilled(t1, "rt-AAA-1-1-stop", D(70), D("99.50")),
            OrderCanceled(t1, "rt-AAA-1-1-stop"),
        ],
    )
    assert [r["qty"] for r in _records(out, "partial.ordered")] == [D(50)]
    [sale] = _submits(out)
    assert (sale.order_id, sale.purpose, sale.qty) == ("rt-AAA-1-2-partial", "partial", D(30))
    t2 = t1 + timedelta(seconds=0.1)
    state, later = fold(state, [OrderAccepted(t2, sale.order_id), Tick(t2, "AAA", D("103"))])
    assert not _records(later, "partial.ordered")
    assert not _submits(later)
    pos = state.positions["AAA-1"]
    assert pos.fills.remaining == D(30) and pos.orders.held_by_sells() == D(30)


def test_a_fill_larger_than_what_remains_counts_only_what_remains():
    """fills._apply_fill: `q = min(fill.qty, remaining)` -> `q = fill.qty`. Input: 10 shares,
    their stop (for 10) reported filled for 12 at 98.90: the position's count stops at zero
    (P9: never negative), the fill record says 10 and the trade closes with 10 shares' P&L."""
    state = _protected(10)
    t1 = T0 + timedelta(seconds=1)
    t = step(state, OrderFilled(t1, "rt-AAA-1-1-stop", D(12), D("98.90")))
    [told] = _records(t.commands, "order.filled")
    assert (told["qty"], told["position_qty"]) == (D(10), D(0))
    [closed] = _records(t.commands, "trade.closed")
    assert closed["pnl"] == D("-11.00")
    assert "AAA-1" not in t.state.positions


def test_a_confirmed_cancel_starts_the_retries_of_the_next_step_from_zero():
    """answers.on_canceled: `reset_attempts(pos)` dropped. Input: at 1R the stop's cancel is
    refused once (503) and sent again after 0.5 s, then confirmed; the new stop is refused
    with 503 four times. Its step must get its own three retries (0.5, 1, 2 s) before the
    alert, not two: the cancel's attempt was spent on another request."""
    t1 = T0 + timedelta(seconds=1)
    t = step(_protected(10), Tick(t1, "AAA", D("101")))
    [cancel] = [c for c in t.commands if isinstance(c, CancelOrder)]
    t = step(t.state, CancelRejected(t1, cancel.order_id, BUSY, CancelRefusal.TRANSIENT))
    state, out = fold(t.state, [Clock(t.state.due), OrderCanceled(t.state.due, cancel.order_id)])
    [stop] = _submits(out)
    delays, journal = [], []
    for _ in range(4):
        t = step(state, OrderRejected(stop.ts, stop.order_id, BUSY, OrderRefusal.TRANSIENT))
        journal += t.commands
        delays += [r["delay"] for r in _records(t.commands, "order.retry")]
        if not _submits(t.commands):  # sent again when due; once spent, at once
            t = step(t.state, Clock(t.state.due))
        [stop] = _submits(t.commands)
        state = t.state
    assert delays[:3] == [D("0.5"), D("1.0"), D("2.0")]
    exhausted = [c for c in journal if getattr(c, "reason", "") == "retries_exhausted"]
    assert len(exhausted) == 1 and exhausted[0].context["attempts"] == 3


def test_the_fourth_held_shares_refusal_is_journaled_as_a_new_operation():
    """answers.on_rejected: `spent = attempts(pos) >= len(retry_delays)` -> `>`. Input: the
    first stop of 10 shares is refused four times with Alpaca's 403 (shares held). P14: the
    first three `shares_locked` conflicts say `retry_after_backoff`, the fourth (retries
    spent) `new_operation_after_alert`."""
    state, out = _opened(10)
    [stop] = [s for s in _submits(out) if s.purpose == "protect"]
    resolutions = []
    for _ in range(4):
        t = step(state, OrderRejected(stop.ts, stop.order_id, LOCKED, OrderRefusal.SHARES_LOCKED))
        resolutions += [r["resolution"] for r in _records(t.commands, "conflict.detected")]
        if not _submits(t.commands):  # sent again when due; once spent, at once
            t = step(t.state, Clock(t.state.due))
        [stop] = _submits(t.commands)
        state = t.state
    assert resolutions == [*["retry_after_backoff"] * 3, "new_operation_after_alert"]


def test_a_stop_exactly_at_the_market_is_through_it_long_and_short():
    """orders.is_through: `price <= stop` -> `price < stop` (and `>=` -> `>` for a short).
    Input: an entry fills at 100.00 with its stop at 99.995 (a long: rounds up onto 100.00)
    or 100.005 (a short: rounds down onto 100.00). A stop at the market would be refused, so
    it is a `stop_through_market` exit at market, not a stop order (SPEC §3)."""
    for side, stop in ((Side.LONG, "99.995"), (Side.SHORT, "100.005")):
        _, out = _opened(10, side=side, stop=stop)
        [conflict] = _records(out, "conflict.detected")
        assert (conflict["type"], conflict["resolution"]) == ("invalid_price", "exit_at_market")
        exits = [s for s in _submits(out) if s.purpose != "entry"]
        assert [(s.purpose, s.type.value, s.qty) for s in exits] == [("exit", "market", D(10))]


def test_the_last_tranche_of_a_schedule_short_of_one_sells_only_its_own_fraction():
    """protection.climb: `level.tranche == last and cfg.sells_everything` -> `... == last`, and
    ladder.take_profit_price without `sells_everything`. Input: partials 50% at 2R and 25% at
    3R (75% in all), 100 shares, a tick straight to 3R: the tranches are 50 and 25, 25 shares
    stay (protected by a plain stop: no take-profit may sell them at the final milestone)."""
    cfg = Config(ProtectionConfig(partials=(Tranche(D(2), D("0.50")), Tranche(D(3), D("0.25")))))
    state, out = _opened(100, config=cfg)
    [stop] = [s for s in _submits(out) if s.purpose == "protect"]
    assert (stop.type.value, stop.limit_price) == ("stop", None)
    state = step(state, OrderAccepted(T0, stop.order_id)).state
    t1 = T0 + timedelta(seconds=1)
    t = step(state, Tick(t1, "AAA", D("103")))
    assert [r["qty"] for r in _records(t.commands, "partial.ordered")] == [D(50), D(25)]
    assert t.state.positions["AAA-1"].ladder.take_profit is None


def test_an_operation_is_not_done_while_a_flatten_waits_to_sell():
    """operations.settled: the pending-sale clause (`sell is not None or to_sell > 0` ->
    settled) dropped. Input: a stop move is in flight (the old stop canceled, the new one sent)
    when the link drops; the daily goal, set to flatten, triggers while offline, queuing all
    10 shares for sale (P25). On reconnect the snapshot shows the new stop working: the stop
    move is not `applied` (P23: a sale is still owed), the stop is canceled to free the
    shares, and the operation ends `closed` once they are sold."""
    goal = GoalConfig(target=D(10), giveback=D("0.5"), on_trigger=OnTrigger.FLATTEN)
    state = _protected(10, Config(goal=goal))

    def at(n: int):
        return T0 + timedelta(seconds=n)

    new_stop = BrokerOrder("rt-AAA-1-2-stop", "AAA", "open", D(10))
    state, out = fold(
        state,
        [
            Tick(at(1), "AAA", D("101")),  # 1R: the stop moves to 100
            OrderCanceled(at(1), "rt-AAA-1-1-stop"),  # the new stop goes out
            Connectivity(at(2), False),
            Tick(at(3), "AAA", D("100.40")),  # $10 peak, $4 now: the goal flattens
            Connectivity(at(4), True),
            BrokerSnapshot(at(5), (("AAA", D(10)),), (new_stop,)),
        ],
    )
    assert [r["action"] for r in _records(out, "goal.triggered")] == ["flatten"]
    assert not _records(out, "operation.done")
    assert [c.order_id for c in out if isinstance(c, CancelOrder)][-1] == "rt-AAA-1-2-stop"
    state, out = fold(state, [OrderCanceled(at(6), "rt-AAA-1-2-stop")])
    [sale] = _submits(out)
    assert (sale.purpose, sale.qty) == ("exit", D(10))
    state, out = fold(
        state, [OrderAccepted(at(6), sale.order_id), OrderFilled(at(7), sale.order_id, D(10),
                                                                 D("100.40"))]
    )  # fmt: skip
    assert [r["outcome"] for r in _records(out, "operation.done")] == ["closed"]
    assert "AAA-1" not in state.positions


def test_an_operation_is_not_done_while_its_sale_is_still_open():
    """operations.settled: `sell is not None or to_sell > 0` -> `to_sell > 0`. Input: 10
    shares reach 2R; the tranche of 5 is sold at market but does not fill within its 5 s, so
    the other 5 get a stop of their own beside it; that stop is then reported filled for 10
    (an overfill, P9): no share is left but the sale is still open at the broker. The partial
    exit is not `applied` while its sale is open (P23); it ends `closed` when the broker
    confirms the sale canceled."""
    state = _protected(10)

    def at(n: int):
        return T0 + timedelta(seconds=n)

    state, _ = fold(
        state,
        [
            Tick(at(1), "AAA", D("102")),
            OrderCanceled(at(1), "rt-AAA-1-1-stop"),
            OrderAccepted(at(1), "rt-AAA-1-2-partial"),
        ],
    )
    state, out = fold(state, [Clock(at(3)), Clock(at(6))])  # the sale's 5 s run out
    [stop] = _submits(out)
    assert (stop.purpose, stop.qty) == ("protect", D(5))
    state, out = fold(
        state,
        [OrderAccepted(at(7), stop.order_id), OrderFilled(at(8), stop.order_id, D(10), D(101))],
    )
    assert not _records(out, "operation.done")
    pos = state.positions["AAA-1"]
    assert pos.fills.remaining == 0 and pos.orders.sell is not None
    state, out = fold(state, [OrderCanceled(at(9), "rt-AAA-1-2-partial")])
    assert [r["outcome"] for r in _records(out, "operation.done")] == ["closed"]
    assert "AAA-1" not in state.positions


def test_losing_trades_closed_by_the_engine_downgrade_with_their_records():
    """phase.record_trade (every mutant of it once had no test: the laws call after_trade, and
    no engine history closed a trade with phases on). Input: Trial at $200, three positions
    of 1 share each stopped out one after the other through `step`: the third close journals
    `phase.changed` (trial -> proof_of_concept, downgrade, the reason, $200 -> $100) and
    `breaker.opened` with the same reason, and entries are then refused by the phase breaker."""
    cfg = Config(phase=PhaseConfig(enabled=True))
    state = EngineState.empty(cfg).evolve(phase=PhaseState(Phase.TRIAL, D(200)))
    journal: list[Command] = []
    for n in range(1, 4):
        at = T0 + timedelta(minutes=n)
        state, out = fold(
            state,
            [
                Tick(at, "AAA", D("100")),
                EntryIntent(at, "AAA", Side.LONG, D("99"), D(1)),
                OrderAccepted(at, f"rt-AAA-{n}-entry"),
                OrderFilled(at, f"rt-AAA-{n}-entry", D(1), D("100")),
                OrderAccepted(at, f"rt-AAA-{n}-1-stop"),
                OrderFilled(at, f"rt-AAA-{n}-1-stop", D(1), D("99")),
            ],
        )
        journal += out
    [changed] = _records(journal, "phase.changed")
    assert (changed["from"], changed["to"], changed["trigger"]) == (
        "trial",
        "proof_of_concept",
        "downgrade",
    )
    assert changed["reason"] == "3 losing trades in a row"
    [opened] = _records(journal, "breaker.opened")
    assert opened["reason"] == changed["reason"] and opened["phase"] == "proof_of_concept"
    assert (state.phase.phase, state.phase.size, state.phase.breaker_open) == (
        Phase.PROOF_OF_CONCEPT,
        D(100),
        True,
    )


def test_order_ids_and_keys_of_symbols_with_a_dash_read_back_exactly():
    """engine.ids: a symbol may hold a dash (BRK-B): keys and ids are read from the right."""
    key = position_key("BRK-B", 3)
    assert key == "BRK-B-3" and symbol_of(key) == "BRK-B" and symbol_of("SPY-12") == "SPY"
    assert key_of(order_id(key, 2, "stop")) == "BRK-B-3"
    assert key_of(entry_order_id(key)) == "BRK-B-3"
    assert key_of("rt-SPY-12-entry") == "SPY-12"
    assert key_of("rt-SPY-12-x-stop") == ""  # not a sequence number
    assert key_of("rt-SPY-stop") == ""
    assert key_of("bot-7") == "" and key_of("RT-SPY-1-entry") == ""
