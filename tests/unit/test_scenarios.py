"""Scenarios worked out by hand from SPEC §3, checked to the cent and to the share."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from engine import Config, EngineState, EntryIntent, ProtectionConfig, Record, Side, Tick
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0


def _run(symbol, side, qty, stop, prices, config=None, fill="same"):
    """A mark at prices[0], the entry, then one tick per later price; returns records, summary."""
    events = [Tick(T0, symbol, D(prices[0])), EntryIntent(T0, symbol, side, D(stop), D(qty))]
    events += [Tick(T0 + timedelta(seconds=i), symbol, D(p)) for i, p in enumerate(prices[1:], 1)]
    records: list[Record] = []
    state, summary = run_simulation(
        events,
        EngineState.empty(config),
        SimulatedBroker(market_fill=fill),
        sink=lambda c: records.append(c) if isinstance(c, Record) else None,
    )
    return records, summary, state


def _kind(records, kind):
    return [r for r in records if r.kind == kind]


def test_long_walks_the_whole_ladder_and_exits_at_the_take_profit():
    """Long 100 @ 50.00, stop 49.00: stops 50.00, 50.50, 51.00, 51.50; 50 sold at 2R, 25 at 3R,
    25 by the take-profit at 54.00; P&L 100 + 75 + 100 = 275, 2.75R."""
    records, summary, state = _run(
        "ABC", Side.LONG, "100", "49.00", ["50.00", "51.00", "51.50", "52.00", "53.00", "54.00"]
    )
    assert [r["new"] for r in _kind(records, "stop.moved")] == [
        D("50.00"), D("50.50"), D("51.00"), D("51.50")
    ]  # fmt: skip
    assert [(r["milestone"], r["qty"]) for r in _kind(records, "partial.ordered")] == [
        (D("2"), D(50)), (D("3"), D(25))
    ]  # fmt: skip
    assert [(r["qty"], r["price"], r["profit"]) for r in _kind(records, "partial.filled")] == [
        (D(50), D("52.00"), D("100.00")),
        (D(25), D("53.00"), D("75.00")),
        (D(25), D("54.00"), D("100.00")),
    ]
    [closed] = _kind(records, "trade.closed")
    assert closed["pnl"] == D("275.00") and closed["r"] == D("2.75")
    assert closed["reason"] == "take_profit"
    assert [r["new"] for r in _kind(records, "position.state")] == [
        "BREAKEVEN_PROTECTED", "PARTIAL_PROFIT_TAKEN", "ADVANCED_PROFIT_TAKEN",
        "FINAL_PROFIT_TAKEN",
    ]  # fmt: skip
    assert summary.realized_pnl == D("275.00") and not state.positions


def test_short_with_odd_quantity_gaps_through_three_levels_then_stops_out():
    """Short 7 @ 20.00, stop 20.30 (R = 0.30); take-profit off. A gap to 19.05 (3.17R) passes
    1R, 1.5R, 2R and 3R in order: stop 20.00 -> 19.85 -> 19.70 -> 19.55, tranches 3 and 1
    (50% and 25% of 7, rounded down) bought back together at 19.05; the rest (3) is stopped at
    19.80 on a gap through 19.55. P&L 4 x 0.95 + 3 x 0.20 = 4.40 = 2.0952...R."""
    config = Config(ProtectionConfig(take_profit=False))
    records, _, state = _run("XYZ", Side.SHORT, "7", "20.30", ["20.00", "19.05", "19.80"], config)
    assert [r["new"] for r in _kind(records, "stop.moved")] == [
        D("20.00"), D("19.85"), D("19.70"), D("19.55")
    ]  # fmt: skip
    assert [r["qty"] for r in _kind(records, "partial.ordered")] == [D(3), D(1)]
    sells = [r for r in _kind(records, "order.submitted") if r["purpose"] == "partial"]
    assert [(s["side"], s["qty"]) for s in sells] == [("buy", D(4))]
    [closed] = _kind(records, "trade.closed")
    assert closed["qty"] == D(7) and closed["pnl"] == D("4.40")
    # The average exit, to 1/100 of a cent: 135.6 / 7 = 19.371428...
    assert closed["exit"] == D("19.3714")
    assert closed["reason"] == "stop" and not state.positions
    [close] = _kind(records, "position.closed")
    assert (close["qty"], close["price"], close["pnl"]) == (D(3), D("19.80"), D("4.40"))


def test_a_gap_down_through_the_stop_fills_at_the_gap_price():
    """Long 10 @ 100.00, stop 99.00; the next print is 98.50: the stop fills there, -1.5R."""
    records, summary, _ = _run("GAP", Side.LONG, "10", "99.00", ["100.00", "99.60", "98.50"])
    [closed] = _kind(records, "position.closed")
    assert (closed["price"], closed["pnl"], closed["r"]) == (D("98.50"), D("-15.00"), D("-1.5"))
    assert closed["reason"] == "stop"
    assert summary.trades[0].r == D("-1.5")


def test_stop_prices_round_in_the_positions_favour_on_both_grids():
    """Locks land on the grid rounded toward more protection: 10.015 -> 10.02 for a long,
    0.50615 -> 0.5062 below a dollar, and 9.985 -> 9.98 for a short."""
    records, _, _ = _run("RND", Side.LONG, "100", "9.97", ["10.00", "10.03", "10.045"])
    assert [r["new"] for r in _kind(records, "stop.moved")] == [D("10.00"), D("10.02")]
    records, _, _ = _run("SUB", Side.LONG, "1000", "0.4877", ["0.5000", "0.5123", "0.51845"])
    assert [r["new"] for r in _kind(records, "stop.moved")] == [D("0.5000"), D("0.5062")]
    records, _, _ = _run("SHO", Side.SHORT, "100", "10.03", ["10.00", "9.97", "9.955"])
    assert [r["new"] for r in _kind(records, "stop.moved")] == [D("10.00"), D("9.98")]


def test_next_tick_fills_and_the_stop_is_rearmed_for_the_rest():
    """With market orders filled at the next tick, the 2R tranche of 101 (50) fills at the
    following print and the stop comes back for exactly the 51 left."""
    records, _, state = _run(
        "NXT", Side.LONG, "101", "9.00", ["10.00", "10.00", "11.00", "12.00", "12.05"], fill="next"
    )
    [partial] = _kind(records, "partial.filled")
    assert (partial["qty"], partial["price"]) == (D(50), D("12.05"))
    protect = [r for r in _kind(records, "order.submitted") if r["purpose"] == "protect"]
    assert (protect[-1]["qty"], protect[-1]["stop_price"]) == (D(51), D("11.00"))
    assert state.positions["NXT-1"].fills.remaining == D(51)


def test_trailing_keeps_the_stop_the_rungs_gap_below_the_best_price():
    """With trail on, past 1.5R (gap 1R) a new best of 11.80 on R=1 trails the stop to 10.80."""
    config = Config(ProtectionConfig(trail=True, take_profit=False))
    records, _, state = _run(
        "TRL", Side.LONG, "10", "9.00", ["10.00", "11.50", "11.80", "11.60"], config
    )
    assert [r["new"] for r in _kind(records, "stop.moved")] == [
        D("10.00"), D("10.50"), D("10.80")
    ]  # fmt: skip
    assert state.positions["TRL-1"].ladder.stop == D("10.80")


def test_a_fill_that_leaves_no_risk_is_closed_at_once_with_an_alert():
    """A market entry filled beyond its stop (next print 9.40 under a 9.50 stop) cannot be
    protected as asked: ratchet alerts and exits at market, at the print after."""
    events = [
        Tick(T0, "BAD", D("10.00")),
        EntryIntent(T0, "BAD", Side.LONG, D("9.50"), D(5)),
        Tick(T0 + timedelta(seconds=1), "BAD", D("9.40")),
        Tick(T0 + timedelta(seconds=2), "BAD", D("9.45")),
    ]
    records: list = []
    state, summary = run_simulation(events, EngineState.empty(), sink=records.append)
    alerts = [c for c in records if not isinstance(c, Record)]
    assert any(getattr(a, "reason", "") == "initial_risk_not_positive" for a in alerts)
    assert not state.positions and summary.closes == 1
    [closed] = [c for c in records if isinstance(c, Record) and c.kind == "position.closed"]
    assert (closed["price"], closed["pnl"]) == (D("9.45"), D("0.25"))


def test_a_gap_to_the_take_profit_is_journaled_as_every_level_it_passed():
    """Long 10 @ 100.00, stop 99.00; a print at 105.00 (5R) hits the OCO take-profit at 104.00
    before the engine sees it. The journal still passes BREAKEVEN..FINAL in order and splits
    the fill 5 / 2 / 3 across the 2R, 3R and 4R milestones, all at 104.00."""
    records, summary, state = _run("JMP", Side.LONG, "10", "99.00", ["100.00", "100.50", "105.00"])
    assert [r["new"] for r in _kind(records, "position.state")] == [
        "BREAKEVEN_PROTECTED", "PARTIAL_PROFIT_TAKEN", "ADVANCED_PROFIT_TAKEN",
        "FINAL_PROFIT_TAKEN",
    ]  # fmt: skip
    assert [(r["milestone"], r["qty"], r["price"]) for r in _kind(records, "partial.filled")] == [
        (D("2"), D(5), D("104.00")), (D("3"), D(2), D("104.00")), (D("4"), D(3), D("104.00"))
    ]  # fmt: skip
    [closed] = _kind(records, "trade.closed")
    assert (closed["pnl"], closed["r"], closed["reason"]) == (D("40.00"), D("4"), "take_profit")
    assert not state.positions and summary.partials_filled == 3
