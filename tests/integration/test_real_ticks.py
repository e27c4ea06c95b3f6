"""The engine on real recorded trades (../shared/data, read in place, never copied)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from decimal import Decimal as D

import pytest

from engine import RECORD_KINDS, EntryIntent, OrderFilled, OrderStatus, Record, Side, Tick
from shell.codec import read_events
from tests.data import data_file
from tests.harness import trace

FOUR_SYMBOLS = data_file("ticks/us_equity_trades_2013-10-07.csv")


def _with_entries(ticks, every=1_500, stop_pct=D("0.002")):
    """Real ticks with an entry intent every `every` ticks, alternating long and short."""
    for i, tick in enumerate(ticks):
        yield tick
        if i % every == every // 2:
            side = Side.LONG if (i // every) % 2 == 0 else Side.SHORT
            offset = (tick.price * stop_pct).quantize(D("0.01"))
            yield EntryIntent(tick.ts, tick.symbol, side, tick.price - offset * side.sign, D(37))


@pytest.fixture(scope="module")
def day():
    ticks = itertools.islice(read_events(FOUR_SYMBOLS), 150_000)
    return trace(_with_entries(ticks))


def test_real_day_never_oversells_and_pnl_matches_the_fills(day):
    """On a real day of four symbols: every record kind is known, no position ever has more
    sold than it holds, and each trade's P&L equals the sum over its own fills."""
    pnl_from_fills = defaultdict(D)
    for step in day:
        for command in step.commands:
            if isinstance(command, Record):
                assert command.kind in RECORD_KINDS, command.kind
        if isinstance(step.event, OrderFilled):
            for pos in step.before.positions.values():
                ids = {o.id for o in (pos.orders.exit, pos.orders.sell) if o is not None}
                if step.event.order_id in ids:
                    move = (step.event.price - pos.ladder.entry) * step.event.qty * pos.side.sign
                    pnl_from_fills[pos.key] += move
        for pos in step.after.positions.values():
            assert 0 <= pos.orders.held_by_sells() <= pos.fills.remaining
    trades = [
        c for s in day for c in s.commands if isinstance(c, Record) and c.kind == "trade.closed"
    ]
    assert len(trades) >= 10
    for trade in trades:
        assert trade["pnl"] == pnl_from_fills[trade["key"]], trade["key"]


def test_real_day_leaves_every_open_position_protected(day):
    """At the end, every open position holds a live stop for exactly its remaining shares."""
    final = day[-1].after
    assert final.positions
    for pos in final.positions.values():
        order = pos.orders.exit
        assert order is not None and order.status is OrderStatus.LIVE, pos.key
        assert order.open_qty == pos.fills.remaining and order.stop_price == pos.ladder.stop
    assert isinstance(day[-1].event, Tick | OrderFilled)


def test_real_day_trade_log_summaries_agree_with_a_naive_computation(day):
    """The report metrics of the real day's trades agree with the long-hand computation:
    money to the cent (exactly, in fact), ratios to 0.001."""
    from engine.analytics import TradeResult, canonical, summarize  # noqa: PLC0415
    from tests.reference_analytics import of_stats, reference  # noqa: PLC0415

    trades = [
        TradeResult(
            **{
                k: c[k]
                for k in (
                    "symbol",
                    "side",
                    "qty",
                    "entry",
                    "exit",
                    "opened",
                    "closed",
                    "pnl",
                    "r",
                    "risk",
                    "key",
                )
            }
        )
        for s in day
        for c in s.commands
        if isinstance(c, Record) and c.kind == "trade.closed"
    ]
    ours, theirs = of_stats(summarize(trades)), reference(canonical(trades))
    for name, value in ours.items():
        other = theirs[name]
        if isinstance(value, D) and isinstance(other, D):
            assert abs(value - other) <= D("0.001"), name
        else:
            assert value == other, name
    assert ours["trades"] == len(trades) >= 10
