"""Exact values of the phase rules (SPEC §8): the texts an operator reads, the statistics the
gates are judged on, the windows kept and the rounding of sizes. The laws (PH1-PH6) compare
the engine with an oracle over generated histories; these pin the values at the edges a
generated history seldom lands on (a $0.50 win, an odd cent, the 201st trade)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

from attrs import evolve
from returns.result import Failure, Success

from engine import Config, EngineState, Tick, step
from engine.phase import (
    Check,
    Criterion,
    Gate,
    Phase,
    PhaseConfig,
    PhaseState,
    SessionResult,
    TradeMark,
    after_trade,
    downgrade_reason,
    evaluate_gate,
    gate_criteria,
    next_phase,
    on_session_end,
    position_qty,
    size_for,
    trades_left,
)

DAY = date(2026, 3, 2)
ON = PhaseConfig(enabled=True)


def _marks(*pnls: str, day: date = DAY) -> tuple[TradeMark, ...]:
    return tuple(TradeMark(day, D(p)) for p in pnls)


def _actual(state: PhaseState, cfg: PhaseConfig, name: str) -> D:
    return next(c.actual for c in gate_criteria(state, cfg) if c.name == name)


def test_a_denial_after_the_last_phase_and_with_the_breaker_open_says_so_in_words():
    assert evaluate_gate(PhaseState(phase=Phase.SCALING), ON) == Failure(
        [Criterion("phase", "scaling", "a phase to advance to")]
    )
    denied = evaluate_gate(PhaseState(breaker_open=True), ON)
    assert isinstance(denied, Failure)
    assert denied.failure() == [
        Criterion("breaker", "open", "closed (ratchet phase ack)"),
        Criterion("profitable_sessions", "0", ">= 20"),
        Criterion("win_rate", "0", ">= 0.6"),
        Criterion("reward_risk", "0", ">= 1.5"),
    ]


def test_a_criterion_shows_infinity_as_inf_and_a_ceiling_with_a_less_than_sign():
    assert Check("reward_risk", D("Infinity"), D("1.5"), True).as_criterion() == Criterion(
        "reward_risk", "inf", ">= 1.5"
    )
    assert Check("max_drawdown", D("0.06"), D("0.05"), False).as_criterion() == Criterion(
        "max_drawdown", "0.06", "< 0.05"
    )
    assert Check("max_drawdown", D("0.05"), D("0.05"), False).ok is False
    assert Check("max_drawdown", D("0.0499"), D("0.05"), False).ok is True
    assert Check("win_rate", D("0.6"), D("0.6"), True).ok is True


def test_fifty_cents_of_profit_is_a_win_and_a_profitable_session():
    state = PhaseState(
        trades=_marks("0.50", "0.50", "-0.50"),
        sessions=(SessionResult(DAY, 3, D("0.50")),),
    )
    assert _actual(state, ON, "win_rate") == D(2) / D(3)
    assert _actual(state, ON, "reward_risk") == D(1)
    assert _actual(state, ON, "profitable_sessions") == D(1)
    assert _actual(state, ON, "sessions") == D(1)
    assert _actual(state, ON, "trades") == D(3)


def test_reward_to_risk_is_the_average_win_over_the_average_loss():
    def rr(*pnls: str) -> D:
        return _actual(PhaseState(trades=_marks(*pnls)), ON, "reward_risk")

    assert rr("3", "1", "-1") == D(2)
    assert rr("3", "-1", "-3", "0") == D("1.5")
    assert rr("0.40", "-0.10") == D(4)
    assert rr("2") == D("Infinity")
    assert rr("-2") == D(0)
    assert rr("0") == D(0)


def test_the_drawdown_is_the_deepest_fall_from_a_running_peak_as_a_share_of_equity():
    cfg = PhaseConfig(enabled=True, equity=D(10_000))
    trial = Phase.TRIAL  # the only default gate with a drawdown ceiling

    def dd(*pnls: str, config: PhaseConfig = cfg) -> D:
        return _actual(PhaseState(phase=trial, trades=_marks(*pnls)), config, "max_drawdown")

    assert dd("100", "-300", "50", "-100") == D("0.035")
    assert dd("-200", "500", "-100") == D("0.02")
    assert dd("100", "200") == D(0)
    assert dd("-1", config=PhaseConfig(enabled=True, equity=D(0))) == D(0)
    assert dd("-1", config=PhaseConfig(enabled=True, equity=D("0.5"))) == D(2)


def test_the_win_rate_of_a_gate_is_measured_over_its_last_n_trades():
    gate = Gate(min_win_rate=D("0.5"), over_trades=4)
    cfg = PhaseConfig(enabled=True, gates={Phase.EXPERIENCE: gate})
    state = PhaseState(trades=_marks("-1", "-1", "-1", "1", "1", "-1", "1"))
    assert _actual(state, cfg, "win_rate") == D("0.75")
    # a phase without a gate of its own is measured against an empty one
    checks = gate_criteria(PhaseState(phase=Phase.SCALING), ON)
    assert [c.required for c in checks] == [D(0)] * 5


def test_trades_in_one_session_add_up_to_one_session_result():
    state = PhaseState(phase=Phase.PROOF_OF_CONCEPT)
    for pnl in ("40", "-15.50", "0"):
        state, lower, _ = after_trade(state, ON, TradeMark(DAY, D(pnl)))
        assert lower is None
    state, _, _ = after_trade(state, ON, TradeMark(DAY + timedelta(days=1), D("-3")))
    assert state.sessions == (SessionResult(DAY, 3, D("24.50")),
                              SessionResult(DAY + timedelta(days=1), 1, D("-3")))  # fmt: skip
    assert state.realized == D("21.50")
    assert (state.win_streak, state.loss_streak) == (0, 2)  # a breakeven leaves the streak


def test_the_record_keeps_the_last_200_trades_and_the_last_400_sessions():
    state = PhaseState(
        trades=_marks(*["1"] * 199, "-7"),
        sessions=tuple(SessionResult(DAY - timedelta(days=400 - i), 1, D(1)) for i in range(400)),
    )
    new, _, _ = after_trade(state, ON, TradeMark(DAY + timedelta(days=1), D(2)))
    assert len(new.trades) == 200
    assert new.trades[-2:] == (*_marks("-7"), TradeMark(DAY + timedelta(days=1), D(2)))
    assert len(new.sessions) == 400
    assert new.sessions[0] == state.sessions[1]
    assert new.sessions[-1] == SessionResult(DAY + timedelta(days=1), 1, D(2))


def test_a_downgrade_halves_the_size_rounding_down_to_the_cent():
    state = PhaseState(phase=Phase.TRIAL, size=D("100.03"), loss_streak=2)
    new, lower, reason = after_trade(state, ON, TradeMark(DAY, D("-1")))
    assert (lower, reason) == (Phase.PROOF_OF_CONCEPT, "3 losing trades in a row")
    assert new.size == D("50.01")
    assert new.breaker_open is True
    assert new.loss_streak == 0
    assert new.loss_rule_session is None


def test_the_downgrade_reasons_read_as_the_spec_words_them():
    window = PhaseState(phase=Phase.TRIAL, trades=_marks(*["1"] * 10, *["-1"] * 10))
    assert downgrade_reason(window, ON, None) == (
        "win rate 0.5 over the last 20 trades is under 0.55"
    )
    daily = PhaseState(phase=Phase.TRIAL, trades=_marks("-600"), realized=D(-600))
    assert downgrade_reason(daily, ON, DAY) == "lost 6.383% of equity today"
    # another day's losses do not count today
    assert downgrade_reason(daily, ON, DAY + timedelta(days=1)) is None
    # the daily rule is for Trial and Scaling only
    poc = PhaseState(phase=Phase.PROOF_OF_CONCEPT, trades=_marks("-600"), realized=D(-600))
    assert downgrade_reason(poc, ON, DAY) is None
    new, lower, reason = after_trade(
        PhaseState(phase=Phase.SCALING, size=D(500)), ON, TradeMark(DAY, D("-520"))
    )
    assert (lower, reason) == (Phase.TRIAL, "lost 5.4852% of equity today")
    assert new.loss_rule_session == DAY
    assert new.size == D(250)


def test_scaling_grows_at_a_session_end_only_on_7_of_the_last_10_sessions():
    def sessions(wins: int, n: int = 10) -> tuple[SessionResult, ...]:
        return tuple(
            SessionResult(DAY + timedelta(days=i), 1, D(1) if i < wins else D(-1)) for i in range(n)
        )

    scaling = PhaseState(phase=Phase.SCALING, size=D(200))
    assert on_session_end(evolve(scaling, sessions=sessions(7)), ON).size == D(400)
    assert on_session_end(evolve(scaling, sessions=sessions(6)), ON).size == D(200)
    assert on_session_end(evolve(scaling, sessions=sessions(9, n=9)), ON).size == D(200)
    # the last ten: three old losing sessions before seven winning ones count for nothing
    older = sessions(0, n=3) + sessions(7)
    assert on_session_end(evolve(scaling, sessions=older), ON).size == D(400)
    trial = PhaseState(phase=Phase.TRIAL, size=D(200), sessions=sessions(10))
    assert on_session_end(trial, ON).size == D(200)
    # never past 5% of equity, and the cap never shrinks a size already above it
    capped = PhaseState(phase=Phase.SCALING, size=D(450), sessions=sessions(10))
    assert on_session_end(capped, ON).size == D(500)
    above = PhaseState(phase=Phase.SCALING, size=D(600), sessions=sessions(10))
    assert on_session_end(above, ON).size == D(600)


def test_shares_for_a_size_round_down_to_the_lot_and_sub_dollar_prices_buy_shares():
    assert position_qty(D(100), D("0.50"), D(1)) == D(200)
    assert position_qty(D(100), D("0.30"), D(1)) == D(333)
    assert position_qty(D(1000), D(7), D(10)) == D(140)
    assert position_qty(D(1000), D(7), D("0.5")) == D("142.5")
    assert position_qty(D(100), D(0), D(1)) == D(0)
    assert position_qty(D(100), D(-5), D(1)) == D(0)


def test_trade_limits_next_phases_and_default_sizes():
    assert trades_left(PhaseState(phase=Phase.PROOF_OF_CONCEPT), ON, 0) == 1
    assert trades_left(PhaseState(phase=Phase.PROOF_OF_CONCEPT), ON, 1) == 0
    assert trades_left(PhaseState(phase=Phase.PROOF_OF_CONCEPT), ON, 3) == 0
    three = PhaseConfig(enabled=True, trade_limits={Phase.TRIAL: 3})
    assert trades_left(PhaseState(phase=Phase.TRIAL), three, 1) == 2
    assert trades_left(PhaseState(phase=Phase.TRIAL), ON, 5) is None
    assert [next_phase(p) for p in Phase] == [
        Phase.PROOF_OF_CONCEPT, Phase.TRIAL, Phase.SCALING, None,
    ]  # fmt: skip
    assert size_for(Phase.TRIAL, PhaseConfig(sizes={})) == D(100)
    assert size_for(Phase.TRIAL, ON) == D(200)


def test_an_advance_is_granted_when_the_last_criterion_holds_exactly():
    gate = Gate(min_sessions=2, min_profitable_sessions=1, min_win_rate=D("0.5"),
                min_trades=2, min_reward_risk=D(1))  # fmt: skip
    cfg = PhaseConfig(enabled=True, gates={Phase.EXPERIENCE: gate})
    state = PhaseState(
        trades=_marks("1", "-1"),
        sessions=(SessionResult(DAY, 1, D(1)), SessionResult(DAY, 1, D(-1))),
    )
    assert evaluate_gate(state, cfg) == Success(Phase.PROOF_OF_CONCEPT)


def test_a_breakeven_session_is_not_a_profitable_one():
    """A session that made exactly $0 counts as a session but not a profitable one, for the
    gate and for Scaling's session rule (6 profitable, 1 breakeven, 3 losing: no step)."""
    sessions = (
        *(SessionResult(DAY + timedelta(days=i), 1, D(1)) for i in range(6)),
        SessionResult(DAY + timedelta(days=6), 1, D(0)),
        *(SessionResult(DAY + timedelta(days=7 + i), 1, D(-1)) for i in range(3)),
    )
    state = PhaseState(sessions=sessions)
    assert _actual(state, ON, "profitable_sessions") == D(6)
    assert _actual(state, ON, "sessions") == D(10)
    scaling = PhaseState(phase=Phase.SCALING, size=D(200), sessions=sessions)
    assert on_session_end(scaling, ON).size == D(200)


def test_the_engine_applies_scalings_session_rule_when_a_session_ends():
    """Scaling, 7 of the last 10 sessions profitable: the first event of the next session
    (after 04:00 New York) ends the one before, and the size steps up by $200; the very first
    session of a run ends nothing."""
    cfg = Config(phase=PhaseConfig(enabled=True, start=Phase.SCALING))
    sessions = tuple(
        SessionResult(DAY - timedelta(days=10 - i), 1, D(1) if i < 7 else D(-1)) for i in range(10)
    )
    state = EngineState.empty(cfg)._replace(
        phase=PhaseState(phase=Phase.SCALING, size=D(200), sessions=sessions)
    )
    first = datetime(2026, 3, 2, 15, tzinfo=UTC)
    state = step(state, Tick(first, "AAA", D(10))).state
    assert state.phase.size == D(200)  # the run's first session: nothing ended
    state = step(state, Tick(first + timedelta(days=1), "AAA", D(10))).state
    assert state.phase.size == D(400)
