"""engine/phase.py against an independent model of SPEC §8 (tests/phase_oracle.py): downgrades
(losing streak, 20-trade win rate, daily loss, once per session, none while the breaker is
open) and Scaling's size steps, trade by trade; and the boundaries worked by hand."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from engine.phase import (
    PHASE_ORDER,
    Phase,
    PhaseConfig,
    PhaseState,
    TradeMark,
    acknowledged,
    after_trade,
    on_session_end,
)
from tests.phase_oracle import PhaseOracle, Rules

DAY0 = date(2024, 3, 4)
CFG = PhaseConfig(enabled=True)  # SPEC §8's numbers, which Rules() repeats

# Dollar results near the rules' edges ($500 is 5% of the starting equity) and exact zeros.
pnls = st.one_of(
    st.sampled_from([-501, -500, -250, -100, -1, 0, 0, 1, 100, 250, 500]),
    st.integers(-600, 600),
).map(D)
operations = st.lists(
    st.one_of(
        pnls.map(lambda p: ("trade", p)),
        pnls.map(lambda p: ("trade", p)),
        st.just(("session", None)),
        st.just(("ack", None)),
    ),
    max_size=80,
)
starts = st.tuples(
    st.sampled_from(PHASE_ORDER), st.integers(2, 40).map(lambda n: D(n) * 50)
)  # fmt: skip


def _rule(reason: str | None) -> str | None:
    """The engine's downgrade reason, by rule."""
    if reason is None:
        return None
    if "losing trades in a row" in reason:
        return "losing_streak"
    if reason.startswith("win rate"):
        return "win_rate"
    assert reason.startswith("lost "), reason
    return "daily_loss"


def _run(start: Phase, size: D, ops, cfg: PhaseConfig = CFG) -> tuple[PhaseState, list[str]]:
    """Fold the engine and the model side by side, checking after every operation that they
    agree (phase, size, breaker, streaks) and downgrade together for the same rule; return
    the engine's last state and the rules that downgraded it."""
    state = PhaseState(phase=start, size=size)
    model = PhaseOracle(Rules(equity=cfg.equity), start.value, size)
    day = DAY0
    fired = []
    for kind, pnl in ops:
        if kind == "trade":
            state, _, reason = after_trade(state, cfg, TradeMark(day, pnl))
            got, expected = _rule(reason), model.trade(day, pnl)
            assert got == expected, (kind, pnl, got, expected, model.downgrades)
            if got is not None:
                fired.append(got)
        elif kind == "session":
            state = on_session_end(state, cfg)
            model.session_end()
            day += timedelta(days=1)
        else:
            state = acknowledged(state)
            model.acknowledge()
        _agree(state, model)
    return state, fired


def _agree(state: PhaseState, model: PhaseOracle) -> None:
    assert (state.phase.value, state.size, state.breaker_open) == (
        model.phase,
        model.size,
        model.breaker,
    )
    assert (state.win_streak, state.loss_streak) == (model.wins_in_a_row, model.losses_in_a_row)


@given(starts, operations)
def test_ph6_downgrades_and_scaling_sizes_follow_the_spec(start, ops):
    """Any start and any run of trades (breakevens, exact 5% losses), session ends and
    acknowledgements: after every step the engine's phase, size, breaker and streaks are
    the model's, and it downgrades exactly when the model does, for the same rule."""
    _run(*start, ops)


def _trades(*pnls: int) -> list[tuple[str, D | None]]:
    return [("trade", D(p)) for p in pnls]


def _last(start: Phase, size: int, ops) -> tuple[PhaseState, list[str]]:
    return _run(start, D(size), ops)


def test_ph6_the_win_rate_boundary_is_11_wins_to_9_over_the_last_20_trades():
    """Trial, 20 trades alternating so no 3 losses come in a row: 11 wins and 9 losses is
    55%, not under it (no downgrade); 10 and 10 downgrades. Breakevens count for neither: 11
    wins, 9 losses and a breakeven among the last 20 (the oldest win pushed out of the
    window) is 10 to 9; 10 wins, 8 losses and 2 breakevens is 10 to 8."""
    pattern = [100, -100] * 9 + [100, 100]  # 11 wins, 9 losses
    _, fired = _last(Phase.TRIAL, 200, _trades(*pattern))
    assert fired == []
    _, fired = _last(Phase.TRIAL, 200, _trades(*([100, -100] * 10)))
    assert fired == ["win_rate"]
    # Breakevens are not wins: 10 wins, 9 losses, 1 breakeven is 10/19 (under 55%).
    _, fired = _last(Phase.TRIAL, 200, _trades(*([100, -100] * 9), 100, 0))
    assert fired == ["win_rate"]
    # Nor losses: 10 wins, 8 losses, 2 breakevens is 10/18 (over).
    _, fired = _last(Phase.TRIAL, 200, _trades(*([100, -100] * 8), 100, 0, 100, 0))
    assert fired == []
    # The window is the last 20, not every trade: 20 wins, then losses two to one. Over all
    # 50 trades the rate stays at 60% or more; over the last 20 it falls under 55%.
    state, fired = _last(Phase.PROOF_OF_CONCEPT, 100, _trades(*[100] * 20, *[-100, -100, 100] * 10))
    assert fired == ["win_rate"] and state.phase is Phase.EXPERIENCE


def test_ph6_the_daily_loss_boundary_is_5_percent_once_per_session():
    """Trial, $10,000: +$500 one session, then -$500 the next: equity is $10,000 again and
    the day lost exactly 5%, not more (no downgrade); a cent more downgrades to Proof of
    Concept. From Scaling the same loss steps down to Trial once; acknowledged, a further
    loss that session does not step it down again by the daily rule."""
    ended = ("session", None)
    _, fired = _last(Phase.TRIAL, 200, [*_trades(500), ended, *_trades(-500)])
    assert fired == []
    state, fired = _last(Phase.TRIAL, 200, [*_trades(500), ended, ("trade", D("-500.01"))])
    assert fired == ["daily_loss"] and state.phase is Phase.PROOF_OF_CONCEPT
    ops = [*_trades(-600), ("ack", None), *_trades(100, -200)]
    state, fired = _last(Phase.SCALING, 400, ops)
    assert fired == ["daily_loss"] and state.phase is Phase.TRIAL
    # A downgrade by another rule does not use up the session's daily rule.
    streak = [*_trades(-10, -10, -10), ("ack", None), *_trades(-600)]
    state, fired = _last(Phase.SCALING, 400, streak)
    assert fired == ["losing_streak", "daily_loss"] and state.phase is Phase.PROOF_OF_CONCEPT
    # An account with no equity left has no daily percentage (and is never divided by zero).
    broke = PhaseConfig(enabled=True, equity=D(1_000))
    state, fired = _run(Phase.TRIAL, D(200), _trades(-1_000), broke)
    assert fired == [] and state.realized == D(-1_000)
    # The next session the rule applies again.
    state, fired = _last(Phase.SCALING, 400, [*ops, ended, *_trades(-600)])
    assert fired == ["daily_loss", "daily_loss"] and state.phase is Phase.PROOF_OF_CONCEPT


def test_ph6_no_second_downgrade_while_the_breaker_is_open():
    """Scaling, six losses in a row: one downgrade (to Trial, $200 -> $100) and the breaker
    opens; the next three losses would be a streak again but the account is frozen until an
    operator acknowledges; after that, three more losses step it down once more."""
    state, fired = _last(Phase.SCALING, 200, _trades(-10, -10, -10, -10, -10, -10))
    assert fired == ["losing_streak"]
    assert (state.phase, state.size, state.breaker_open) == (Phase.TRIAL, D(100), True)
    more = [*_trades(-10, -10, -10), ("ack", None), *_trades(-10, -10, -10)]
    state, fired = _last(Phase.SCALING, 200, more)
    assert fired == ["losing_streak", "losing_streak"] and state.phase is Phase.PROOF_OF_CONCEPT


def test_ph6_scaling_grows_at_the_session_end_when_7_of_10_sessions_were_profitable():
    """Scaling at $200: ten sessions, seven profitable (the 70% bar exactly), then the
    session ends: +$200 -> $400 (under 5% of $10,000+). Six of ten: no change. Five wins in a
    row add $100; breakevens neither extend nor break the streak. A size already over the cap
    stays where it is."""
    ended = ("session", None)
    week = []
    for pnl in [50, 50, -10, 50, 50, -10, 50, 50, -10, 50]:
        week += [*_trades(pnl), ended]
    state, _ = _last(Phase.SCALING, 200, week[:-1])
    assert state.size == D(200)
    state, _ = _last(Phase.SCALING, 200, week)
    assert state.size == D(400)
    six = [
        x for pnl in [50, 50, -10, 50, 50, -10, 50, 50, -10, -10] for x in (*_trades(pnl), ended)
    ]
    state, _ = _last(Phase.SCALING, 200, six)
    assert state.size == D(200)
    state, _ = _last(Phase.SCALING, 200, _trades(10, 10, 0, 10, 0, 10, 10))
    assert state.size == D(300)
    # Over the 5%-of-equity cap already (an override set it): a step never takes size away.
    state, _ = _last(Phase.SCALING, 600, _trades(10, 10, 10, 10, 10))
    assert state.size == D(600)
