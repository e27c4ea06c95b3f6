"""Laws of the performance summaries (specs: A1-A6)."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from engine.analytics import Stats, Window, by_window, canonical, group_days, summarize
from tests.reference_analytics import of_stats, reference
from tests.strategies import trade_results

NY = ZoneInfo("America/New_York")


@given(trade_results(), st.sampled_from([Window.WEEKLY, Window.MONTHLY]))
def test_a1_days_add_up_to_their_week(trades, window):
    """The days of a week (or month), merged in order by group_days as the report does, equal
    the window summarised straight from the trades: P&L and every other metric."""
    days = dict(by_window(trades, Window.DAILY, NY).values())
    direct = by_window(trades, window, NY)
    grouped = group_days(days, window, NY)
    assert [(label, first) for label, first, _ in grouped] == [
        (label, first) for label, (first, _) in direct.items()
    ]
    for label, _, stats in grouped:
        assert stats == direct[label][1]
        assert stats.pnl == direct[label][1].pnl


@given(trade_results())
def test_a2_win_rate_is_wins_over_decided_trades(trades):
    """Win rate lies in [0, 1] and equals wins / (wins + losses); breakevens are counted apart."""
    stats = summarize(trades)
    assert stats.wins + stats.losses + stats.breakevens == stats.trades == len(trades)
    if stats.decided:
        assert stats.win_rate == Decimal(stats.wins) / stats.decided
        assert 0 <= stats.win_rate <= 1
    else:
        assert stats.win_rate is None


@given(trade_results())
def test_a3_max_drawdown_is_between_zero_and_the_sum_of_losses(trades):
    """0 <= max drawdown <= total of the losing trades."""
    stats = summarize(trades)
    assert 0 <= stats.max_drawdown <= -stats.gross_loss


@given(trade_results(), st.integers(0, 60))
def test_a4_splitting_and_merging_gives_the_same_summary(trades, cut):
    """Summarising the trades before and after any cut and adding the two is the whole."""
    ordered = canonical(trades)
    cut = min(cut, len(ordered))
    assert summarize(ordered[:cut]) + summarize(ordered[cut:]) == summarize(ordered)


@given(trade_results(), st.randoms())
def test_a5_the_order_trades_are_read_in_does_not_matter(trades, rnd):
    """Any permutation of the input gives the same summary."""
    shuffled = list(trades)
    rnd.shuffle(shuffled)
    assert summarize(shuffled) == summarize(trades)


@given(trade_results())
def test_a6_summaries_agree_with_a_naive_computation(trades):
    """Every metric agrees with the long-hand computation over the trades in time order:
    counts, streaks and money exactly, ratios to 1e-9 (the naive sums round at 28 digits)."""
    ours, theirs = of_stats(summarize(trades)), reference(canonical(trades))
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        other = theirs[name]
        if value is None or other is None or name not in _RATIOS:
            assert value == other, name
        else:
            assert abs(value - other) <= Decimal("1e-9"), (name, value, other)


_RATIOS = {"win_rate", "avg_win", "avg_loss", "avg_r", "profit_factor", "expectancy"}


@given(trade_results())
def test_a4_the_one_pass_fold_equals_adding_trade_by_trade(trades):
    """Stats.of_sequence (one pass) is the same value as Stats.of(t1) + Stats.of(t2) + ..."""
    total = Stats()
    for trade in canonical(trades):
        total = total + Stats.of(trade)
    assert Stats.of_sequence(canonical(trades)) == total
