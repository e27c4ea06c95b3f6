"""P16 R recomputed, P17 Unrealized P/L maintained, P18 State freshness."""

from hypothesis import given

from tests.harness import trace
from tests.oracle import r_of
from tests.strategies import configs, histories, market_fills


def _priced(history, config, fill):
    for step in trace(history.events, config, fill):
        tick = step.tick
        if tick is None:
            continue
        for pos in step.after.in_symbol(tick.symbol):
            view = step.after.view(pos.key)
            if pos.risk > 0:
                yield tick, view


@given(histories(), configs(), market_fills())
def test_p16_r_follows_every_tick(history, config, fill):
    """After any tick of a symbol, its position's R is SPEC's formula at that tick's price."""
    for tick, view in _priced(history, config, fill):
        pos = view.position
        assert view.r == r_of(tick.price, pos.ladder.entry, pos.ladder.initial_stop, pos.side)


@given(histories(), configs(), market_fills())
def test_p17_unrealized_pnl_follows_every_tick(history, config, fill):
    """After any tick, unrealized P/L = (price - entry) x remaining qty x side."""
    for tick, view in _priced(history, config, fill):
        pos = view.position
        assert (
            view.unrealized == (tick.price - pos.ladder.entry) * pos.fills.remaining * pos.side.sign
        )


@given(histories(), configs(), market_fills())
def test_p18_as_of_is_the_last_tick(history, config, fill):
    """A position's as-of time is the ts of the last tick that priced it."""
    for tick, view in _priced(history, config, fill):
        assert view.as_of == tick.ts
        assert view.price == tick.price
