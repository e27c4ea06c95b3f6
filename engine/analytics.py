"""Performance analytics over closed trades: per window summaries that merge exactly.

`Stats` is a monoid: `Stats.of(trade)` for one trade, `a + b` for "a, then b". Everything a
report shows (win rate, streaks, profit factor, max drawdown of the closed-trade equity curve)
is derived from it, so a week is exactly the sum of its days and a summary can be rebuilt from
cached parts. Pure: time zones come in as `tzinfo` objects, never looked up here.

Breakeven trades (pnl == 0) count as trades and in the averages of R and expectancy, but are
neither wins nor losses: the win rate is wins / (wins + losses), and a breakeven trade neither
extends nor breaks a streak.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, tzinfo
from decimal import Context, Decimal, localcontext
from enum import Enum

from attrs import frozen

__all__ = [
    "Breach",
    "Stats",
    "Targets",
    "TradeResult",
    "Window",
    "by_window",
    "canonical",
    "check_targets",
    "group_days",
    "period_of",
    "rolling",
    "summarize",
]

_ZERO = Decimal(0)
_EXACT = Context(prec=400)


@frozen
class TradeResult:
    """One closed trade (the `trade.closed` record)."""

    symbol: str
    side: str
    qty: Decimal
    entry: Decimal
    exit: Decimal
    opened: datetime
    closed: datetime
    pnl: Decimal
    r: Decimal
    risk: Decimal
    key: str = ""
    reason: str = ""


def canonical(trades: Iterable[TradeResult]) -> list[TradeResult]:
    """Trades in the one order every summary uses: by close time, then open time, symbol and
    lot number (SPY-11 after SPY-2, not between SPY-1 and SPY-2), then the values."""
    return sorted(trades, key=_order)


def _order(t: TradeResult) -> tuple[object, ...]:
    symbol, _, lot = t.key.rpartition("-")
    number = int(lot) if lot.isdigit() else -1
    return (t.closed, t.opened, t.symbol, symbol, number, t.key, t.pnl, t.r)


@frozen
class _Run:
    """A streak: +1 wins, -1 losses, 0 none."""

    sign: int = 0
    length: int = 0


@frozen
class Stats:
    """Summary of a sequence of trades; `+` concatenates two sequences in time order."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    breakevens: int = 0
    gross_profit: Decimal = _ZERO
    gross_loss: Decimal = _ZERO  # <= 0
    r_sum: Decimal = _ZERO
    # The closed-trade equity curve from 0: total, highest and lowest prefix (both including
    # the empty prefix 0) and the largest peak-to-trough fall inside the sequence.
    peak: Decimal = _ZERO
    trough: Decimal = _ZERO
    drawdown: Decimal = _ZERO
    # Streak runs over decided trades: the first, the last, the longest of each sign.
    first: _Run = _Run()
    last: _Run = _Run()
    longest_win: int = 0
    longest_loss: int = 0

    @classmethod
    def of(cls, trade: TradeResult) -> Stats:
        """The summary of one trade."""
        pnl = trade.pnl
        sign = 1 if pnl > 0 else -1 if pnl < 0 else 0
        run = _Run(sign, 1) if sign else _Run()
        return cls(
            trades=1,
            wins=int(sign > 0),
            losses=int(sign < 0),
            breakevens=int(sign == 0),
            gross_profit=pnl if pnl > 0 else _ZERO,
            gross_loss=pnl if pnl < 0 else _ZERO,
            r_sum=trade.r,
            peak=max(pnl, _ZERO),
            trough=min(pnl, _ZERO),
            drawdown=-pnl if pnl < 0 else _ZERO,
            first=run,
            last=run,
            longest_win=int(sign > 0),
            longest_loss=int(sign < 0),
        )

    def __add__(self, later: Stats) -> Stats:
        # Exact sums (R values carry 28 digits; at the default precision addition would round
        # and a week summed by days could differ from the same week summed by trades).
        with localcontext(_EXACT):
            return self._add(later)

    def _add(self, later: Stats) -> Stats:
        a, b = self, later
        total_a = a.pnl
        # Joining runs: a's last run continues into b's first run when the signs agree.
        joined = a.last.length + b.first.length if a.last.sign == b.first.sign != 0 else 0
        first = a.first if a.first.sign else b.first
        if a.first.sign and a.first.length == a.wins + a.losses and a.first.sign == b.first.sign:
            first = _Run(a.first.sign, joined)  # a was one run, and b continues it
        last = b.last if b.last.sign else a.last
        if b.last.sign and b.last.length == b.wins + b.losses and a.last.sign == b.last.sign:
            last = _Run(b.last.sign, joined)
        longest_win = max(a.longest_win, b.longest_win, joined if a.last.sign > 0 else 0)
        longest_loss = max(a.longest_loss, b.longest_loss, joined if a.last.sign < 0 else 0)
        return Stats(
            trades=a.trades + b.trades,
            wins=a.wins + b.wins,
            losses=a.losses + b.losses,
            breakevens=a.breakevens + b.breakevens,
            gross_profit=a.gross_profit + b.gross_profit,
            gross_loss=a.gross_loss + b.gross_loss,
            r_sum=a.r_sum + b.r_sum,
            peak=max(a.peak, total_a + b.peak),
            trough=min(a.trough, total_a + b.trough),
            drawdown=max(a.drawdown, b.drawdown, a.peak - total_a - b.trough),
            first=first,
            last=last,
            longest_win=longest_win,
            longest_loss=longest_loss,
        )

    @classmethod
    def of_sequence(cls, trades: Iterable[TradeResult]) -> Stats:
        """The summary of trades taken in the order given, in one pass (equal to adding
        `Stats.of` of each, and much cheaper)."""
        n = wins = losses = 0
        gross_profit = gross_loss = r_sum = equity = peak = trough = drawdown = _ZERO
        first_sign = first_len = cur_sign = cur_len = 0
        first_done = False
        longest = {1: 0, -1: 0}
        with localcontext(_EXACT):
            for trade in trades:
                pnl = trade.pnl
                n += 1
                r_sum += trade.r
                equity += pnl
                if equity > peak:
                    peak = equity
                elif equity < trough:
                    trough = equity
                drawdown = max(drawdown, peak - equity)
                if pnl == 0:
                    continue
                if pnl > 0:
                    wins += 1
                    gross_profit += pnl
                    sign = 1
                else:
                    losses += 1
                    gross_loss += pnl
                    sign = -1
                if sign == cur_sign:
                    cur_len += 1
                else:
                    first_done = first_done or cur_sign != 0
                    cur_sign, cur_len = sign, 1
                if not first_done:
                    first_sign, first_len = cur_sign, cur_len
                longest[sign] = max(longest[sign], cur_len)
        return cls(
            trades=n,
            wins=wins,
            losses=losses,
            breakevens=n - wins - losses,
            gross_profit=gross_profit,
            gross_loss=gross_loss,
            r_sum=r_sum,
            peak=peak,
            trough=trough,
            drawdown=drawdown,
            first=_Run(first_sign, first_len),
            last=_Run(cur_sign, cur_len),
            longest_win=longest[1],
            longest_loss=longest[-1],
        )

    # --- derived -------------------------------------------------------------------------

    @property
    def pnl(self) -> Decimal:
        """Realized P&L."""
        return self.gross_profit + self.gross_loss

    @property
    def decided(self) -> int:
        """Trades that were won or lost (breakevens excluded)."""
        return self.wins + self.losses

    @property
    def win_rate(self) -> Decimal | None:
        """wins / decided trades, None when none was decided."""
        return Decimal(self.wins) / self.decided if self.decided else None

    @property
    def avg_win(self) -> Decimal | None:
        return self.gross_profit / self.wins if self.wins else None

    @property
    def avg_loss(self) -> Decimal | None:
        """Average losing trade (a negative amount)."""
        return self.gross_loss / self.losses if self.losses else None

    @property
    def avg_r(self) -> Decimal | None:
        return self.r_sum / self.trades if self.trades else None

    @property
    def profit_factor(self) -> Decimal | None:
        """gross profit / gross loss; None when nothing was lost."""
        return self.gross_profit / -self.gross_loss if self.gross_loss else None

    @property
    def expectancy(self) -> Decimal | None:
        """Average P&L per trade."""
        return self.pnl / self.trades if self.trades else None

    @property
    def max_drawdown(self) -> Decimal:
        """Largest fall of the closed-trade equity curve from a previous high (>= 0)."""
        return self.drawdown

    @property
    def current_streak(self) -> int:
        """Length of the streak at the end: positive for wins, negative for losses."""
        return self.last.sign * self.last.length


def summarize(trades: Iterable[TradeResult]) -> Stats:
    """The summary of some trades, taken in canonical order."""
    return Stats.of_sequence(canonical(trades))


class Window(Enum):
    """Calendar windows of a report."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


def period_of(moment: datetime, window: Window, tz: tzinfo) -> tuple[str, date]:
    """The period label and first day of the window holding `moment`, in zone `tz`.

    Daily `2024-03-04`, weekly ISO `2024-W10` (weeks start on Monday), monthly `2024-03`.
    """
    day = moment.astimezone(tz).date()
    if window is Window.DAILY:
        return day.isoformat(), day
    if window is Window.WEEKLY:
        year, week, weekday = day.isocalendar()
        return f"{year}-W{week:02d}", day - timedelta(days=weekday - 1)
    return f"{day.year}-{day.month:02d}", day.replace(day=1)


def by_window(
    trades: Iterable[TradeResult], window: Window, tz: tzinfo
) -> dict[str, tuple[date, Stats]]:
    """Per period (label -> (first day, stats)), periods and trades in time order."""
    groups: dict[str, tuple[date, list[TradeResult]]] = {}
    for trade in canonical(trades):
        label, start = period_of(trade.closed, window, tz)
        groups.setdefault(label, (start, []))[1].append(trade)
    out = {label: (start, Stats.of_sequence(group)) for label, (start, group) in groups.items()}
    return dict(sorted(out.items(), key=lambda item: item[1][0]))


def group_days(
    days: Mapping[date, Stats],
    window: Window,
    tz: tzinfo,
    *,
    start: date | None = None,
    end: date | None = None,
) -> list[tuple[str, date, Stats]]:
    """Daily stats merged, in day order, into the windows that hold them, between `start` and
    `end` (inclusive); with both given, every window in the range is listed, traded or not."""
    periods: dict[str, tuple[date, Stats]] = {}

    def noon(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, 12, tzinfo=tz)

    if start is not None and end is not None:
        day = start
        while day <= end:
            label, first = period_of(noon(day), window, tz)
            periods.setdefault(label, (first, Stats()))
            day += timedelta(days=1)
    for day, stats in sorted(days.items()):
        if (start is not None and day < start) or (end is not None and day > end):
            continue
        label, first = period_of(noon(day), window, tz)
        first, total = periods.get(label, (first, Stats()))
        periods[label] = (first, total + stats)
    return sorted(((label, first, s) for label, (first, s) in periods.items()),
                  key=lambda item: item[1])  # fmt: skip


def rolling(trades: Iterable[TradeResult], n: int) -> Stats:
    """The summary of the last `n` trades."""
    return summarize(canonical(trades)[-n:] if n > 0 else [])


@frozen
class Targets:
    """What the operator expects of every window; None switches a target off."""

    min_win_rate: Decimal | None = None
    min_avg_r: Decimal | None = None
    min_profit_factor: Decimal | None = None
    min_expectancy: Decimal | None = None
    max_drawdown: Decimal | None = None


@frozen
class Breach:
    """A window that missed a target."""

    period: str
    metric: str
    actual: Decimal
    target: Decimal
    severity: str  # "warning", or "critical" when missed by more than a quarter


def check_targets(periods: Mapping[str, Stats], targets: Targets) -> list[Breach]:
    """Every target each period misses; a period with no decided trade breaches nothing."""
    breaches = []
    for period, stats in periods.items():
        checks: list[tuple[str, Decimal | None, Decimal | None, bool]] = [
            ("win_rate", stats.win_rate, targets.min_win_rate, True),
            ("avg_r", stats.avg_r, targets.min_avg_r, True),
            ("profit_factor", stats.profit_factor, targets.min_profit_factor, True),
            ("expectancy", stats.expectancy, targets.min_expectancy, True),
            ("max_drawdown", stats.max_drawdown if stats.trades else None,
             targets.max_drawdown, False),
        ]  # fmt: skip
        for metric, actual, target, minimum in checks:
            if actual is None or target is None:
                continue
            missed = actual < target if minimum else actual > target
            if missed:
                gap = abs(actual - target)
                scale = abs(target) if target else Decimal(1)
                severity = "critical" if gap > scale / 4 else "warning"
                breaches.append(Breach(period, metric, actual, target, severity))
    return breaches
