"""Exact values of the performance report's parts (engine.analytics): the period a trade
belongs to, windows listed between two days, the last N trades, one trade's summary and every
target a window misses with its severity. The laws (A1-A6) check the summaries against a naive
computation over generated trades; these pin the edges: a week across a year's end, an empty
window inside a range, a target missed by exactly a quarter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

from engine.analytics import (
    Breach,
    Stats,
    Targets,
    TradeResult,
    Window,
    _Run,
    by_window,
    canonical,
    check_targets,
    group_days,
    period_of,
    rolling,
)

NY = ZoneInfo("America/New_York")


def _trade(pnl: str, closed: datetime, r: str = "0", key: str = "AAA-1") -> TradeResult:
    return TradeResult(
        "AAA", "long", D(10), D(100), D(100), closed - timedelta(minutes=5), closed, D(pnl),
        D(r), D(10), key,
    )  # fmt: skip


def test_a_moment_belongs_to_the_day_week_and_month_of_its_zone():
    late = datetime(2024, 3, 5, 3, 30, tzinfo=UTC)  # 22:30 on the 4th in New York
    assert period_of(late, Window.DAILY, NY) == ("2024-03-04", date(2024, 3, 4))
    assert period_of(late, Window.DAILY, UTC) == ("2024-03-05", date(2024, 3, 5))
    assert period_of(late, Window.WEEKLY, NY) == ("2024-W10", date(2024, 3, 4))
    sunday = datetime(2024, 3, 10, 18, tzinfo=NY)
    assert period_of(sunday, Window.WEEKLY, NY) == ("2024-W10", date(2024, 3, 4))
    # ISO weeks: 2024-12-31 is in the first week of 2025, which began on Monday the 30th
    assert period_of(datetime(2024, 12, 31, 12, tzinfo=NY), Window.WEEKLY, NY) == (
        "2025-W01", date(2024, 12, 30)
    )  # fmt: skip
    assert period_of(datetime(2024, 1, 3, 12, tzinfo=NY), Window.WEEKLY, NY) == (
        "2024-W01", date(2024, 1, 1)
    )  # fmt: skip
    assert period_of(late, Window.MONTHLY, NY) == ("2024-03", date(2024, 3, 1))
    assert period_of(datetime(2024, 9, 30, 23, tzinfo=NY), Window.MONTHLY, NY) == (
        "2024-09", date(2024, 9, 1)
    )  # fmt: skip


def test_one_trade_summarizes_as_itself():
    closed = datetime(2024, 3, 4, 15, tzinfo=NY)
    win = Stats.of(_trade("12.50", closed, r="1.25"))
    assert win == Stats(
        trades=1, wins=1, gross_profit=D("12.50"), r_sum=D("1.25"), peak=D("12.50"),
        first=_Run(1, 1), last=_Run(1, 1), longest_win=1,
    )  # fmt: skip
    loss = Stats.of(_trade("-4", closed, r="-0.4"))
    assert loss == Stats(
        trades=1, losses=1, gross_loss=D(-4), r_sum=D("-0.4"), trough=D(-4), drawdown=D(4),
        first=_Run(-1, 1), last=_Run(-1, 1), longest_loss=1,
    )  # fmt: skip
    assert Stats.of(_trade("0", closed)) == Stats(trades=1, breakevens=1)
    assert (win + loss).max_drawdown == D(4)
    assert (loss + win).current_streak == 1
    assert (win + Stats.of(_trade("0", closed)) + win).current_streak == 2


def test_the_last_n_trades_are_the_latest_closed():
    day = datetime(2024, 3, 4, 10, tzinfo=NY)
    trades = [_trade(p, day + timedelta(minutes=i), key=f"AAA-{i}")
              for i, p in enumerate(["5", "-1", "3", "-2"])]  # fmt: skip
    assert rolling(list(reversed(trades)), 2).pnl == D(1)
    assert rolling(trades, 3).trades == 3
    assert rolling(trades, 3).pnl == D(0)
    assert rolling(trades, 10).pnl == D(5)
    assert rolling(trades, 0) == Stats()
    assert rolling(trades, -1) == Stats()


def test_periods_are_listed_in_time_order_with_their_first_day():
    trades = [
        _trade("3", datetime(2024, 3, 12, 11, tzinfo=NY), key="AAA-2"),
        _trade("-1", datetime(2024, 3, 4, 11, tzinfo=NY), key="AAA-1"),
        _trade("2", datetime(2024, 3, 13, 11, tzinfo=NY), key="AAA-3"),
    ]
    weeks = by_window(trades, Window.WEEKLY, NY)
    assert list(weeks) == ["2024-W10", "2024-W11"]
    assert weeks["2024-W10"] == (date(2024, 3, 4), Stats.of(trades[1]))
    assert weeks["2024-W11"][0] == date(2024, 3, 11)
    assert weeks["2024-W11"][1].pnl == D(5)


def test_days_merge_into_windows_and_a_range_lists_every_window_traded_or_not():
    d1, d2, d3 = date(2024, 2, 28), date(2024, 3, 1), date(2024, 3, 20)
    s1 = Stats.of(_trade("2", datetime(2024, 2, 28, 11, tzinfo=NY)))
    s2 = Stats.of(_trade("-3", datetime(2024, 3, 1, 11, tzinfo=NY)))
    s3 = Stats.of(_trade("7", datetime(2024, 3, 20, 11, tzinfo=NY)))
    days = {d3: s3, d1: s1, d2: s2}
    assert group_days(days, Window.MONTHLY, NY) == [
        ("2024-02", date(2024, 2, 1), s1),
        ("2024-03", date(2024, 3, 1), s2 + s3),
    ]
    assert group_days(days, Window.WEEKLY, NY) == [
        ("2024-W09", date(2024, 2, 26), s1 + s2),
        ("2024-W12", date(2024, 3, 18), s3),
    ]
    # between two days: every week in the range, the empty ones too, nothing outside it
    ranged = group_days(days, Window.WEEKLY, NY, start=d2, end=date(2024, 3, 18))
    assert ranged == [
        ("2024-W09", date(2024, 2, 26), s2),
        ("2024-W10", date(2024, 3, 4), Stats()),
        ("2024-W11", date(2024, 3, 11), Stats()),
        ("2024-W12", date(2024, 3, 18), Stats()),
    ]
    # the bounds are inclusive, and one bound alone only filters
    assert group_days(days, Window.DAILY, NY, start=d1, end=d1) == [
        ("2024-02-28", d1, s1)
    ]  # fmt: skip
    assert group_days(days, Window.DAILY, NY, start=d2) == [
        ("2024-03-01", d2, s2), ("2024-03-20", d3, s3)
    ]  # fmt: skip
    assert group_days(days, Window.DAILY, NY, end=d2) == [
        ("2024-02-28", d1, s1), ("2024-03-01", d2, s2)
    ]  # fmt: skip


def _period(*pnls: str, r: str = "0") -> Stats:
    day = datetime(2024, 3, 4, 10, tzinfo=NY)
    total = Stats()
    for i, p in enumerate(pnls):
        total = total + Stats.of(_trade(p, day + timedelta(minutes=i), r=r))
    return total


def test_every_missed_target_is_a_breach_critical_when_missed_by_more_than_a_quarter():
    # win rate 1/4, avg R -0.5, profit factor 6/12 = 0.5, expectancy -6/4 = -1.5,
    # drawdown 12 (after the first win of 6)
    week = _period("6", "-4", "-4", "-4", r="-0.5")
    targets = Targets(
        min_win_rate=D("0.3"), min_avg_r=D("0.5"), min_profit_factor=D("0.6"),
        min_expectancy=D(-2), max_drawdown=D(10),
    )  # fmt: skip
    assert check_targets({"2024-W10": week}, targets) == [
        Breach("2024-W10", "win_rate", D("0.25"), D("0.3"), "warning"),
        Breach("2024-W10", "avg_r", D("-0.5"), D("0.5"), "critical"),
        Breach("2024-W10", "profit_factor", D("0.5"), D("0.6"), "warning"),
        Breach("2024-W10", "max_drawdown", D(12), D(10), "warning"),
    ]
    # missed by exactly a quarter is a warning, by more critical
    assert check_targets({"w": week}, Targets(max_drawdown=D("9.6"))) == [
        Breach("w", "max_drawdown", D(12), D("9.6"), "warning")
    ]  # fmt: skip
    assert check_targets({"w": week}, Targets(max_drawdown=D("9.5"))) == [
        Breach("w", "max_drawdown", D(12), D("9.5"), "critical")
    ]  # fmt: skip
    # a target of zero: the gap is judged against 1
    assert check_targets({"w": week}, Targets(min_expectancy=D(0))) == [
        Breach("w", "expectancy", D("-1.5"), D(0), "critical")
    ]  # fmt: skip
    assert check_targets({"w": _period("-0.2")}, Targets(min_expectancy=D(0))) == [
        Breach("w", "expectancy", D("-0.2"), D(0), "warning")
    ]  # fmt: skip
    # met exactly is met; a switched-off target is not checked
    met = Targets(min_win_rate=D("0.25"), min_avg_r=D("-0.5"), max_drawdown=D(12))
    assert check_targets({"w": week}, met) == []
    assert check_targets({"w": week}, Targets()) == []


def test_a_window_without_trades_or_without_losses_breaches_only_what_it_has():
    everything = Targets(
        min_win_rate=D(1), min_avg_r=D(5), min_profit_factor=D(9), min_expectancy=D(100),
        max_drawdown=D(-1),
    )  # fmt: skip
    assert check_targets({"quiet": Stats()}, everything) == []
    # only wins: no profit factor (nothing lost); a drawdown of 0 still counts
    wins = _period("2", "3", r="1")
    assert [(b.metric, b.actual) for b in check_targets({"w": wins}, everything)] == [
        ("avg_r", D(1)), ("expectancy", D("2.5")), ("max_drawdown", D(0)),
    ]  # fmt: skip
    # several periods, each judged alone, in the order given
    two = check_targets({"b": _period("-1"), "a": wins}, Targets(min_expectancy=D(0)))
    assert [(b.period, b.metric) for b in two] == [("b", "expectancy")]


def test_lots_are_ordered_by_their_number_even_in_symbols_with_a_dash():
    """Trades closed and opened at the same instants: lot 2 before lot 11 (a number, not
    text), in a symbol with a dash too (BRK-B-2 before BRK-B-11), and a key without a lot
    number before the numbered ones of its symbol."""
    at = datetime(2024, 3, 4, 15, tzinfo=NY)

    def lot(key: str, symbol: str) -> TradeResult:
        return TradeResult(symbol, "long", D(1), D(1), D(1), at, at, D(1), D(0), D(1), key)

    keys = ["AAA-11", "AAA-2", "BRK-B-11", "BRK-B-2", "AAA-0", "AAA-x"]
    trades = [lot(k, k.rsplit("-", 1)[0]) for k in keys]
    assert [t.key for t in canonical(trades)] == [
        "AAA-x", "AAA-0", "AAA-2", "AAA-11", "BRK-B-2", "BRK-B-11",
    ]  # fmt: skip


def test_a_trade_of_cents_counts_as_won_or_lost_like_any_other():
    """Sub-dollar results are wins and losses (not breakevens); exactly 0 is a breakeven."""
    at = datetime(2024, 3, 4, 15, tzinfo=UTC)
    win = Stats.of(_trade("0.50", at))
    assert (win.wins, win.losses, win.breakevens, win.gross_profit, win.gross_loss) == (
        1, 0, 0, D("0.50"), D(0)
    )  # fmt: skip
    assert (win.first, win.last, win.longest_win, win.drawdown) == (_Run(1, 1), _Run(1, 1), 1, 0)
    one = Stats.of(_trade("1", at))
    assert (one.wins, one.gross_profit) == (1, D(1))
    loss = Stats.of(_trade("-0.50", at))
    assert (loss.wins, loss.losses, loss.gross_profit, loss.gross_loss, loss.drawdown) == (
        0, 1, D(0), D("-0.50"), D("0.50")
    )  # fmt: skip
    assert (loss.trough, loss.peak, loss.longest_loss) == (D("-0.50"), D(0), 1)
    flat = Stats.of(_trade("0", at))
    assert (flat.wins, flat.losses, flat.breakevens, flat.gross_profit, flat.gross_loss) == (
        0, 0, 1, D(0), D(0)
    )  # fmt: skip
    assert (flat.drawdown, flat.first, flat.longest_win, flat.longest_loss) == (0, _Run(), 0, 0)
    seq = Stats.of_sequence([_trade("0.50", at), _trade("0", at), _trade("-0.25", at)])
    assert (seq.wins, seq.losses, seq.breakevens, seq.gross_profit, seq.gross_loss) == (
        1, 1, 1, D("0.50"), D("-0.25")
    )  # fmt: skip
    assert (seq.peak, seq.trough, seq.drawdown) == (D("0.50"), D(0), D("0.25"))
