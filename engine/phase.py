"""Phase progression (SPEC §8): earn the right to trade real money and larger size.

Experience (paper only) -> Proof of Concept -> Trial -> Scaling. Advancing is one step at a
time, only when every gate holds (a denial lists every failed criterion with actual and
required values). A losing streak, a poor 20-trade win rate or a large daily loss downgrades
one step, halves the size and opens the phase breaker until an operator acknowledges it.
Everything here is pure: the statistics come from the engine's own closed trades.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from enum import Enum

from attrs import evolve, frozen
from returns.result import Failure, Result, Success

from engine.commands import Record
from engine.records import breaker_opened, phase_changed

__all__ = [
    "DEFAULT_GATES",
    "DEFAULT_SIZES",
    "DEFAULT_TRADE_LIMITS",
    "PHASE_ORDER",
    "Check",
    "Criterion",
    "Gate",
    "Phase",
    "PhaseConfig",
    "PhaseState",
    "SessionResult",
    "TradeMark",
    "acknowledged",
    "advanced",
    "after_trade",
    "downgrade_reason",
    "evaluate_gate",
    "gate_criteria",
    "next_phase",
    "on_session_end",
    "overridden",
    "phase_record",
    "position_qty",
    "record_trade",
    "size_for",
    "stepped_size",
    "trades_left",
]

_ZERO = Decimal(0)


class Phase(Enum):
    """The four phases, in order."""

    EXPERIENCE = "experience"
    PROOF_OF_CONCEPT = "proof_of_concept"
    TRIAL = "trial"
    SCALING = "scaling"


PHASE_ORDER = list(Phase)


@frozen
class Gate:
    """What a phase must show before the next one (None: not required)."""

    min_sessions: int = 0
    min_profitable_sessions: int = 0
    min_win_rate: Decimal = _ZERO
    over_trades: int = 0  # the win rate is measured over the last N trades (0: all)
    min_trades: int = 0
    min_reward_risk: Decimal = _ZERO  # average win / average loss
    max_drawdown: Decimal | None = None  # share of equity


DEFAULT_GATES: dict[Phase, Gate] = {
    Phase.EXPERIENCE: Gate(
        min_profitable_sessions=20, min_win_rate=Decimal("0.60"), min_reward_risk=Decimal("1.5")
    ),
    Phase.PROOF_OF_CONCEPT: Gate(
        min_sessions=30,
        min_win_rate=Decimal("0.65"),
        over_trades=50,
        min_trades=50,
        min_reward_risk=Decimal("1.8"),
    ),
    Phase.TRIAL: Gate(
        min_sessions=60,
        min_win_rate=Decimal("0.70"),
        over_trades=100,
        min_trades=100,
        min_reward_risk=Decimal("2.0"),
        max_drawdown=Decimal("0.05"),
    ),
}
DEFAULT_SIZES: dict[Phase, Decimal] = {
    Phase.EXPERIENCE: Decimal(100),
    Phase.PROOF_OF_CONCEPT: Decimal(100),
    Phase.TRIAL: Decimal(200),
    Phase.SCALING: Decimal(200),
}
DEFAULT_TRADE_LIMITS: dict[Phase, int] = {Phase.PROOF_OF_CONCEPT: 1}


@frozen
class PhaseConfig:
    """Phase rules as data, with SPEC §8's defaults; off unless `enabled`."""

    enabled: bool = False
    start: Phase = Phase.EXPERIENCE
    equity: Decimal = Decimal(10_000)  # account equity at the start, for the % rules
    gates: dict[Phase, Gate] = DEFAULT_GATES
    sizes: dict[Phase, Decimal] = DEFAULT_SIZES
    trade_limits: dict[Phase, int] = DEFAULT_TRADE_LIMITS  # trades per session (absent: no cap)
    scaling_max: Decimal = Decimal(2_000)
    scaling_equity_cap: Decimal = Decimal("0.05")
    win_streak_step: tuple[int, Decimal] = (5, Decimal(100))
    session_rate_step: tuple[int, Decimal, Decimal] = (10, Decimal("0.70"), Decimal(200))
    downgrade_losses: int = 3
    downgrade_window: tuple[int, Decimal] = (20, Decimal("0.55"))
    downgrade_daily_loss: Decimal = Decimal("0.05")  # share of equity, Trial and Scaling


@frozen
class TradeMark:
    """What the phase rules keep of one closed trade."""

    session: date
    pnl: Decimal


@frozen
class SessionResult:
    """One session's trading: trades and P&L."""

    session: date
    trades: int
    pnl: Decimal


@frozen
class PhaseState:
    """Where the account stands: phase, position size, breaker, and the record it is judged on."""

    phase: Phase = Phase.EXPERIENCE
    size: Decimal = Decimal(100)
    breaker_open: bool = False
    trades: tuple[TradeMark, ...] = ()  # the last 200 closed trades
    sessions: tuple[SessionResult, ...] = ()  # every session with a trade (last 400)
    realized: Decimal = _ZERO  # all realized P&L, for equity
    win_streak: int = 0
    loss_streak: int = 0
    loss_rule_session: date | None = None  # the session the daily-loss rule last fired in


@frozen
class Criterion:
    """One gate criterion that failed: its name, the actual and the required value."""

    name: str
    actual: str
    required: str


def _decided(trades: Sequence[TradeMark]) -> tuple[int, int]:
    wins = sum(1 for t in trades if t.pnl > 0)
    losses = sum(1 for t in trades if t.pnl < 0)
    return wins, losses


def _win_rate(trades: Sequence[TradeMark]) -> Decimal:
    wins, losses = _decided(trades)
    return Decimal(wins) / (wins + losses) if wins + losses else _ZERO


def _reward_risk(trades: Sequence[TradeMark]) -> Decimal:
    wins = [t.pnl for t in trades if t.pnl > 0]
    losses = [-t.pnl for t in trades if t.pnl < 0]
    if not wins:
        return _ZERO
    if not losses:
        return Decimal("Infinity")
    return (sum(wins, _ZERO) / len(wins)) / (sum(losses, _ZERO) / len(losses))


def _drawdown_share(trades: Sequence[TradeMark], equity: Decimal) -> Decimal:
    running = peak = worst = _ZERO
    for t in trades:
        running += t.pnl
        peak = max(peak, running)
        worst = max(worst, peak - running)
    return worst / equity if equity > 0 else _ZERO


@frozen
class Check:
    """One gate criterion with its actual value, what is required, and whether it holds."""

    name: str
    actual: Decimal
    required: Decimal
    minimum: bool  # True: actual >= required; False: actual < required

    @property
    def ok(self) -> bool:
        return self.actual >= self.required if self.minimum else self.actual < self.required

    def as_criterion(self) -> Criterion:
        sign = ">=" if self.minimum else "<"
        return Criterion(self.name, _show(self.actual), f"{sign} {_show(self.required)}")


def gate_criteria(state: PhaseState, cfg: PhaseConfig) -> list[Check]:
    """Every criterion of the current phase's gate, measured on the account's record."""
    gate = cfg.gates.get(state.phase, Gate())
    window = list(state.trades[-gate.over_trades :]) if gate.over_trades else list(state.trades)
    profitable = sum(1 for s in state.sessions if s.pnl > 0)
    checks = [
        Check("sessions", Decimal(len(state.sessions)), Decimal(gate.min_sessions), True),
        Check("profitable_sessions", Decimal(profitable),
              Decimal(gate.min_profitable_sessions), True),
        Check("trades", Decimal(len(state.trades)), Decimal(gate.min_trades), True),
        Check("win_rate", _win_rate(window), gate.min_win_rate, True),
        Check("reward_risk", _reward_risk(state.trades), gate.min_reward_risk, True),
    ]  # fmt: skip
    if gate.max_drawdown is not None:
        dd = _drawdown_share(state.trades, cfg.equity)
        checks.append(Check("max_drawdown", dd, gate.max_drawdown, False))
    return checks


def evaluate_gate(state: PhaseState, cfg: PhaseConfig) -> Result[Phase, list[Criterion]]:
    """The next phase when every gate of the current one holds; else every failed criterion."""
    index = PHASE_ORDER.index(state.phase)
    if index == len(PHASE_ORDER) - 1:
        return Failure([Criterion("phase", state.phase.value, "a phase to advance to")])
    failed = [c.as_criterion() for c in gate_criteria(state, cfg) if not c.ok]
    if state.breaker_open:
        failed.insert(0, Criterion("breaker", "open", "closed (ratchet phase ack)"))
    if failed:
        return Failure(failed)
    return Success(PHASE_ORDER[index + 1])


def _show(value: Decimal) -> str:
    if not value.is_finite():
        return "inf"
    return f"{value.quantize(Decimal('0.0001')).normalize():f}"


def downgrade_reason(state: PhaseState, cfg: PhaseConfig, today: date | None) -> str | None:
    """Why the account must step down a phase now, or None (SPEC §8)."""
    if state.phase is Phase.EXPERIENCE:
        return None
    if state.loss_streak >= cfg.downgrade_losses:
        return f"{state.loss_streak} losing trades in a row"
    n, floor = cfg.downgrade_window
    if len(state.trades) >= n:
        rate = _win_rate(state.trades[-n:])
        if rate < floor:
            return f"win rate {_show(rate)} over the last {n} trades is under {floor}"
    daily_rule = state.phase in (Phase.TRIAL, Phase.SCALING) and today is not None
    if daily_rule and state.loss_rule_session != today:  # at most once per session
        lost = -sum((t.pnl for t in state.trades if t.session == today), _ZERO)
        equity = cfg.equity + state.realized
        if equity > 0 and lost / equity > cfg.downgrade_daily_loss:
            return f"lost {_show(lost / equity * 100)}% of equity today"
    return None


def after_trade(
    state: PhaseState, cfg: PhaseConfig, mark: TradeMark
) -> tuple[PhaseState, Phase | None, str | None]:
    """Record a closed trade; return the new state and, when it forces one, the phase it
    downgrades to with the reason (the size halves and the breaker opens)."""
    win, loss = mark.pnl > 0, mark.pnl < 0
    sessions = list(state.sessions)
    if sessions and sessions[-1].session == mark.session:
        last = sessions[-1]
        sessions[-1] = SessionResult(last.session, last.trades + 1, last.pnl + mark.pnl)
    else:
        sessions.append(SessionResult(mark.session, 1, mark.pnl))
    new = evolve(
        state,
        trades=(*state.trades, mark)[-200:],
        sessions=tuple(sessions[-400:]),
        realized=state.realized + mark.pnl,
        win_streak=state.win_streak + 1 if win else 0 if loss else state.win_streak,
        loss_streak=state.loss_streak + 1 if loss else 0 if win else state.loss_streak,
    )
    if new.phase is Phase.SCALING and win:
        streak, step = cfg.win_streak_step
        if new.win_streak and new.win_streak % streak == 0:
            new = evolve(new, size=_scaling_cap(new.size + step, new, cfg))
    # While the breaker is open the account is already stepped down and frozen until an
    # operator acknowledges it: trades closing meanwhile do not step it down again.
    reason = None if new.breaker_open else downgrade_reason(new, cfg, mark.session)
    if reason is None:
        return new, None, None
    lower = PHASE_ORDER[PHASE_ORDER.index(new.phase) - 1]
    size = (new.size / 2).quantize(Decimal("0.01"), ROUND_FLOOR)
    loss_rule = mark.session if reason.startswith("lost ") else new.loss_rule_session
    downgraded = evolve(
        new, phase=lower, size=size, breaker_open=True, loss_streak=0, loss_rule_session=loss_rule
    )
    return downgraded, lower, reason


def on_session_end(state: PhaseState, cfg: PhaseConfig) -> PhaseState:
    """Scaling: +step when the win rate of the last N sessions reaches the bar."""
    if state.phase is not Phase.SCALING:
        return state
    n, bar, step = cfg.session_rate_step
    recent = state.sessions[-n:]
    if len(recent) < n:
        return state
    rate = Decimal(sum(1 for s in recent if s.pnl > 0)) / n
    if rate >= bar:
        return evolve(state, size=_scaling_cap(state.size + step, state, cfg))
    return state


def _scaling_cap(proposed: Decimal, state: PhaseState, cfg: PhaseConfig) -> Decimal:
    """Scaling never grows past $2,000 nor 5% of equity (and a cap never shrinks it)."""
    cap = min(cfg.scaling_max, (cfg.equity + state.realized) * cfg.scaling_equity_cap)
    return min(proposed, max(state.size, cap))


def size_for(phase: Phase, cfg: PhaseConfig) -> Decimal:
    """The starting position size of a phase."""
    return cfg.sizes.get(phase, Decimal(100))


def stepped_size(current: Decimal, phase: Phase, cfg: PhaseConfig) -> Decimal:
    """The size on entering `phase` by advancing: its own size, but never more than double
    the current one (a downgraded account climbs back in steps)."""
    return min(size_for(phase, cfg), 2 * current)


def position_qty(size: Decimal, price: Decimal, lot: Decimal) -> Decimal:
    """Shares a dollar size buys at `price`, rounded down to the lot."""
    if price <= 0:
        return _ZERO
    return (size / price / lot).to_integral_value(ROUND_FLOOR) * lot


def phase_record(
    old: PhaseState, new: PhaseState, trigger: str, reason: str, ts: datetime
) -> Record:
    """The `phase.changed` record of a move from `old` to `new`."""
    return phase_changed(old.phase.value, new.phase.value, trigger, reason, old.size, new.size, ts)


def record_trade(
    state: PhaseState, cfg: PhaseConfig, mark: TradeMark, ts: datetime
) -> tuple[PhaseState, list[Record]]:
    """A closed trade joins the account's record; a downgrade it forces is journaled with the
    phase breaker it opens."""
    new, lower, reason = after_trade(state, cfg, mark)
    if lower is None:
        return new, []
    return new, [
        phase_record(state, new, "downgrade", reason or "", ts),
        breaker_opened(ts, {"reason": reason, "phase": lower.value}),
    ]


def next_phase(phase: Phase) -> Phase | None:
    """The phase one step up, or None from the last."""
    index = PHASE_ORDER.index(phase)
    return PHASE_ORDER[index + 1] if index + 1 < len(PHASE_ORDER) else None


def advanced(state: PhaseState, target: Phase, cfg: PhaseConfig) -> PhaseState:
    """The account after the gates let it into `target`: its size, at most double."""
    return evolve(state, phase=target, size=stepped_size(state.size, target, cfg))


def overridden(state: PhaseState, target: Phase, cfg: PhaseConfig) -> PhaseState:
    """The account after an authenticated override to `target`: that phase's own size and a
    fresh losing streak."""
    return evolve(state, phase=target, size=size_for(target, cfg), loss_streak=0)


def acknowledged(state: PhaseState) -> PhaseState:
    """The account after an operator acknowledged its downgrade: the breaker is closed."""
    return evolve(state, breaker_open=False)


def trades_left(state: PhaseState, cfg: PhaseConfig, taken: int) -> int | None:
    """Trades the phase still allows this session after `taken` (None: no limit)."""
    limit = cfg.trade_limits.get(state.phase)
    return None if limit is None else max(limit - taken, 0)
