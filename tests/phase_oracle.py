"""An independent model of SPEC §8's downgrades and Scaling sizes, written from the text (as
tests/oracle.py is for the ladder), not from engine/phase.py: plain lists, one trade at a time.

Readings of the text it encodes (each a choice the engine must share):
- a trade wins when its P&L is above zero and loses below; a breakeven does neither: it is
  not counted in a win rate and neither extends nor breaks a streak;
- "20-trade win rate" is wins / (wins + losses) over the last 20 closed trades, and applies
  once 20 trades are closed; the downgrade needs it strictly under 55%;
- "daily loss > 5%" (Trial and Scaling only) is the session's net loss over the account's
  equity now (starting equity plus every realized P&L); strictly over 5%; it fires at most
  once per session;
- a downgrade steps one phase down, halves the size (down to the cent), opens the breaker
  and starts the losing streak afresh; while the breaker is open nothing downgrades again;
- Scaling: +$100 at every 5th win in a row, +$200 at a session's end when at least 70% of
  the last 10 sessions with trades were profitable; never past $2,000 nor 5% of equity, and a
  cap never takes size away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal

PHASES = ("experience", "proof_of_concept", "trial", "scaling")
CENT = Decimal("0.01")


@dataclass
class Rules:
    """SPEC §8's numbers."""

    equity: Decimal = Decimal(10_000)
    losses_in_a_row: int = 3
    window: int = 20
    window_floor: Decimal = Decimal("0.55")
    daily_loss: Decimal = Decimal("0.05")
    streak_wins: int = 5
    streak_step: Decimal = Decimal(100)
    session_window: int = 10
    session_bar: Decimal = Decimal("0.70")
    session_step: Decimal = Decimal(200)
    size_max: Decimal = Decimal(2_000)
    equity_share: Decimal = Decimal("0.05")


@dataclass
class PhaseOracle:
    """The account, one closed trade, one session end, one acknowledgement at a time."""

    rules: Rules
    phase: str
    size: Decimal
    breaker: bool = False
    pnls: list[Decimal] = field(default_factory=list)
    days: list[date] = field(default_factory=list)  # the session of each trade
    wins_in_a_row: int = 0
    losses_in_a_row: int = 0
    daily_rule_fired: set[date] = field(default_factory=set)
    downgrades: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, rule)

    def equity(self) -> Decimal:
        return self.rules.equity + sum(self.pnls, Decimal(0))

    def _capped(self, proposed: Decimal) -> Decimal:
        cap = min(self.rules.size_max, self.equity() * self.rules.equity_share)
        return min(proposed, max(self.size, cap))

    def trade(self, day: date, pnl: Decimal) -> str | None:
        """A closed trade; the rule that downgraded the account, if one did."""
        self.pnls.append(pnl)
        self.days.append(day)
        if pnl > 0:
            self.wins_in_a_row += 1
            self.losses_in_a_row = 0
            every = self.rules.streak_wins
            if self.phase == "scaling" and self.wins_in_a_row % every == 0:
                self.size = self._capped(self.size + self.rules.streak_step)
        elif pnl < 0:
            self.losses_in_a_row += 1
            self.wins_in_a_row = 0
        if self.breaker or self.phase == "experience":
            return None
        rule = self._broken_rule(day)
        if rule is None:
            return None
        lower = PHASES[PHASES.index(self.phase) - 1]
        self.downgrades.append((self.phase, lower, rule))
        if rule == "daily_loss":
            self.daily_rule_fired.add(day)
        self.phase = lower
        self.size = (self.size / 2).quantize(CENT, ROUND_FLOOR)
        self.breaker = True
        self.losses_in_a_row = 0
        return rule

    def _broken_rule(self, day: date) -> str | None:
        r = self.rules
        if self.losses_in_a_row >= r.losses_in_a_row:
            return "losing_streak"
        if len(self.pnls) >= r.window:
            last = self.pnls[-r.window :]
            wins = len([p for p in last if p > 0])
            losses = len([p for p in last if p < 0])
            rate = Decimal(wins) / Decimal(wins + losses) if wins + losses else Decimal(0)
            if rate < r.window_floor:
                return "win_rate"
        if self.phase in ("trial", "scaling") and day not in self.daily_rule_fired:
            today = sum((p for p, d in zip(self.pnls, self.days, strict=True) if d == day),
                        Decimal(0))  # fmt: skip
            equity = self.equity()
            if equity > 0 and -today > r.daily_loss * equity:
                return "daily_loss"
        return None

    def session_end(self) -> None:
        """The session ended: Scaling grows when enough recent sessions were profitable."""
        if self.phase != "scaling":
            return
        results: dict[date, Decimal] = {}
        for pnl, day in zip(self.pnls, self.days, strict=True):
            results[day] = results.get(day, Decimal(0)) + pnl
        recent = [results[d] for d in sorted(results)][-self.rules.session_window :]
        if len(recent) < self.rules.session_window:
            return
        profitable = len([p for p in recent if p > 0])
        if Decimal(profitable) >= self.rules.session_bar * self.rules.session_window:
            self.size = self._capped(self.size + self.rules.session_step)

    def acknowledge(self) -> None:
        self.breaker = False
