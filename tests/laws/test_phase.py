"""Laws of phase progression (specs: PH1-PH4)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

from attrs import evolve
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from engine import (
    BreakerAck,
    Config,
    EngineState,
    PhaseAdvance,
    PhaseOverride,
    Record,
    step,
)
from engine.phase import (
    PHASE_ORDER,
    Gate,
    Phase,
    PhaseConfig,
    PhaseState,
    TradeMark,
    acknowledged,
    advanced,
    after_trade,
    next_phase,
    overridden,
    trades_left,
)
from shell.cli import main

T0 = datetime(2024, 3, 4, 15, tzinfo=UTC)


def small_gates() -> st.SearchStrategy[PhaseConfig]:
    """SPEC's rules with small gates, so generated histories cross them often."""
    gate = st.builds(
        Gate,
        min_sessions=st.integers(0, 4),
        min_profitable_sessions=st.integers(0, 3),
        min_win_rate=st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("0.6")]),
        over_trades=st.integers(0, 6),
        min_trades=st.integers(0, 6),
        min_reward_risk=st.sampled_from([Decimal(0), Decimal(1), Decimal("1.5")]),
        max_drawdown=st.sampled_from([None, Decimal("0.05"), Decimal("0.5")]),
    )
    return st.builds(
        lambda g1, g2, g3, equity, start: PhaseConfig(
            enabled=True,
            start=start,
            equity=Decimal(equity),
            gates={Phase.EXPERIENCE: g1, Phase.PROOF_OF_CONCEPT: g2, Phase.TRIAL: g3},
        ),
        gate, gate, gate, st.integers(1_000, 50_000), st.sampled_from(PHASE_ORDER),
    )  # fmt: skip


operations = st.lists(
    st.one_of(
        st.just("advance"),
        st.tuples(st.integers(0, 6), st.integers(-300, 400)),  # (day, pnl) of a closed trade
    ),
    max_size=60,
)


def _run(cfg: PhaseConfig, ops):
    """Fold the operations; yield (before, after, commands or trigger) per operation."""
    state = EngineState.empty(Config(phase=cfg))
    for op in ops:
        before = state.phase
        if op == "advance":
            t = step(state, PhaseAdvance(T0))
            state = t.state
            yield before, state.phase, "advance", t.commands
        else:
            day, pnl = op
            mark = TradeMark(date(2024, 3, 4) + timedelta(days=day), Decimal(pnl))
            new, lower, _ = after_trade(before, cfg, mark)
            state = state.evolve(phase=new)
            yield before, new, "downgrade" if lower else "trade", ()


@given(small_gates(), operations)
def test_ph1_a_phase_never_skips(cfg, ops):
    """Every change moves exactly one step: up through the gates, down on a downgrade."""
    for before, after, kind, _ in _run(cfg, ops):
        delta = PHASE_ORDER.index(after.phase) - PHASE_ORDER.index(before.phase)
        assert delta in (0, 1, -1)
        assert delta != 1 or kind == "advance"
        assert delta != -1 or kind == "downgrade"


def _independent_failures(phase: PhaseState, cfg: PhaseConfig) -> set[str]:
    """The failed gate criteria, computed here from the definitions (not the engine's code)."""
    gate = cfg.gates[phase.phase]
    trades = [t.pnl for t in phase.trades]
    window = trades[-gate.over_trades :] if gate.over_trades else trades
    decided = [p for p in window if p != 0]
    rate = Decimal(sum(1 for p in decided if p > 0)) / len(decided) if decided else Decimal(0)
    wins, losses = [p for p in trades if p > 0], [-p for p in trades if p < 0]
    rr = Decimal(0)
    if wins:
        rr = Decimal("Infinity")
        if losses:
            rr = (sum(wins) / len(wins)) / (sum(losses) / len(losses))
    equity = peak = worst = Decimal(0)
    for p in trades:
        equity += p
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    failed = {"breaker"} if phase.breaker_open else set()
    if len(phase.sessions) < gate.min_sessions:
        failed.add("sessions")
    if sum(1 for s in phase.sessions if s.pnl > 0) < gate.min_profitable_sessions:
        failed.add("profitable_sessions")
    if len(trades) < gate.min_trades:
        failed.add("trades")
    if rate < gate.min_win_rate:
        failed.add("win_rate")
    if rr < gate.min_reward_risk:
        failed.add("reward_risk")
    if gate.max_drawdown is not None and not worst / cfg.equity < gate.max_drawdown:
        failed.add("max_drawdown")
    return failed


@given(small_gates(), operations)
def test_ph2_every_denial_lists_all_failed_gates(cfg, ops):
    """A denial names exactly the criteria that fail; an advance happens only when none does."""
    for before, _, kind, commands in _run(cfg, ops):
        if kind != "advance" or before.phase is Phase.SCALING:
            continue
        expected = _independent_failures(before, cfg)
        denials = [c for c in commands if isinstance(c, Record) and c.kind == "phase.denied"]
        if expected:
            [denied] = denials
            assert {f["criterion"] for f in denied["failures"]} == expected
        else:
            assert not denials


@given(small_gates(), operations)
def test_ph3_size_never_more_than_doubles_and_a_downgrade_halves_it(cfg, ops):
    """Each change of size is at most x2; a downgrade takes exactly half (to the cent)."""
    for before, after, kind, _ in _run(cfg, ops):
        if after.size != before.size:
            assert after.size <= 2 * before.size, (before.size, after.size)
        if kind == "downgrade":
            assert after.size == (before.size / 2).quantize(Decimal("0.01"), ROUND_FLOOR)


# Every drawn password starts with a marker that nothing ratchet writes contains, so finding a
# password in the output can only mean it leaked (a random draw such as "phase.over" could
# otherwise be part of an honest record kind).
_MARK = "~pw~"
passwords = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=6, max_size=26
).map(lambda body: _MARK + body)


@given(passwords, passwords)
def test_ph4_the_override_password_never_appears_anywhere(right, wrong):
    """Wrong and right attempts: the password is in no record, file or output."""
    if right == wrong:
        return
    with TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        run = CliRunner(env={"PHASE_OVERRIDE_PASSWORD": right}).invoke
        args = ["phase", "override", "--state-dir", tmp, "--to", "trial"]
        refused = run(main, args, input=wrong + "\n")
        accepted = run(main, args, input=right + "\n")
        assert refused.exit_code == 1 and accepted.exit_code == 0
        history = (state_dir / "phase-history.jsonl").read_text()
        assert _MARK not in history + refused.output + accepted.output
        for secret in (right, wrong):
            assert secret not in history
            assert secret not in refused.output + accepted.output
        assert [json.loads(x)["accepted"] for x in history.splitlines()[:2]] == [False, True]


phase_states = st.builds(
    PhaseState,
    phase=st.sampled_from(PHASE_ORDER),
    size=st.integers(1, 400).map(lambda n: Decimal(n) * 5),
    breaker_open=st.booleans(),
    win_streak=st.integers(0, 9),
    loss_streak=st.integers(0, 9),
)


@given(small_gates(), phase_states, st.sampled_from(PHASE_ORDER), st.integers(0, 5))
def test_ph5_operator_transitions_are_the_engines_own(cfg, state, target, taken):
    """An override sets the phase, its own size and a fresh losing streak; an acknowledgement
    closes the breaker; an advance by the gates moves one step at most doubling the size;
    nothing else changes. The engine's operator events produce exactly these states, and the
    shell rebuilds history with the same functions; trades left are never negative."""
    engine = EngineState.empty(Config(phase=cfg)).evolve(phase=state)
    new = overridden(state, target, cfg)
    assert new == evolve(state, phase=target, size=cfg.sizes[target], loss_streak=0)
    assert step(engine, PhaseOverride(T0, target.value)).state.phase == new
    acked = acknowledged(state)
    assert acked == evolve(state, breaker_open=False)
    assert step(engine, BreakerAck(T0)).state.phase == (acked if state.breaker_open else state)
    nxt = next_phase(state.phase)
    moved = step(engine, PhaseAdvance(T0)).state.phase
    if moved != state:
        assert nxt is not None and moved == advanced(state, nxt, cfg)
        assert moved.size == min(cfg.sizes[nxt], 2 * state.size)
    limit = cfg.trade_limits.get(state.phase)
    left = trades_left(state, cfg, taken)
    assert left == (None if limit is None else max(limit - taken, 0))
