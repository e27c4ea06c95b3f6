"""The daily profit goal (SPEC §7): stop opening positions once the day gives back too much.

Daily P&L is the mark-to-market change since the session began: realized today plus the
change in unrealized P&L of what is open (so it is 0 at every session start, as the goal's
reset says). The peak is the highest daily P&L this session. Protection triggers when
peak > giveback x target and (peak - current) / peak >= giveback.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum

from attrs import evolve, frozen

from engine.commands import Record
from engine.records import goal_reset, goal_triggered

__all__ = ["Daily", "GoalConfig", "OnTrigger", "check_goal", "roll_session"]

_ZERO = Decimal(0)


class OnTrigger(Enum):
    """What protection does when it triggers (SPEC §10: block entries unless told to flatten)."""

    BLOCK_ENTRIES = "block_entries"
    FLATTEN = "flatten"


@frozen
class GoalConfig:
    """Target in dollars (0 = off) and the share of the peak that may be given back."""

    target: Decimal = _ZERO
    giveback: Decimal = Decimal("0.50")
    on_trigger: OnTrigger = OnTrigger.BLOCK_ENTRIES

    @property
    def enabled(self) -> bool:
        return self.target > 0


@frozen
class Daily:
    """This session's counters: when it ends, the P&L base, the peak, whether protection holds."""

    session: date | None = None
    reset_at: datetime | None = None  # None: before the first event (starts a session)
    base: Decimal = _ZERO  # realized + unrealized at the session start
    realized: Decimal = _ZERO  # all realized P&L so far (all sessions)
    unrealized: Decimal = _ZERO  # unrealized P&L of open positions at their marks
    peak: Decimal = _ZERO
    triggered: bool = False
    trades: int = 0  # positions opened this session

    @property
    def pnl(self) -> Decimal:
        """Daily P&L: the change of realized + unrealized since the session began."""
        return self.realized + self.unrealized - self.base


def roll_session(
    daily: Daily, session: date, reset_at: datetime, ts: datetime
) -> tuple[Daily, list[Record]]:
    """Start a new session at `ts`; a `goal.reset` record when one ends."""
    records = []
    if daily.session is not None:
        records.append(
            goal_reset(
                ts,
                {
                    "session": session.isoformat(),
                    "previous_session": daily.session.isoformat(),
                    "previous_peak": daily.peak,
                    "previous_pnl": daily.pnl,
                    "was_triggered": daily.triggered,
                },
            )
        )
    new = evolve(
        daily,
        session=session,
        reset_at=reset_at,
        base=daily.realized + daily.unrealized,
        peak=_ZERO,
        triggered=False,
        trades=0,
    )
    return new, records


def check_goal(daily: Daily, cfg: GoalConfig, ts: datetime) -> tuple[Daily, list[Record]]:
    """Raise the peak; trigger protection the first time SPEC §7's condition holds."""
    current = daily.pnl
    peak = current if current > daily.peak else daily.peak
    if daily.triggered or not cfg.enabled:
        return (daily if peak == daily.peak else evolve(daily, peak=peak)), []
    threshold = cfg.giveback
    if peak > threshold * cfg.target and (peak - current) / peak >= threshold:
        record = goal_triggered(
            ts,
            {
                "session": daily.session.isoformat() if daily.session else None,
                "peak": peak,
                "current": current,
                "drawdown": (peak - current) / peak,
                "threshold": threshold,
                "target": cfg.target,
                "action": cfg.on_trigger.value,
            },
        )
        return evolve(daily, peak=peak, triggered=True), [record]
    return (daily if peak == daily.peak else evolve(daily, peak=peak)), []
