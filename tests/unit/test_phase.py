"""Phase progression worked by hand: gates, denials, downgrades, limits, sizing, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from engine import (
    Alert,
    BreakerAck,
    Config,
    EngineState,
    EntryIntent,
    PhaseAdvance,
    PhaseOverride,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from engine.config import SessionConfig
from engine.phase import (
    Gate,
    Phase,
    PhaseConfig,
    PhaseState,
    SessionResult,
    TradeMark,
    after_trade,
    evaluate_gate,
)
from shell.cli import main

NY = ZoneInfo("America/New_York")
ON = Config(phase=PhaseConfig(enabled=True), session=SessionConfig(NY, time(4)))
T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)


def _state(phase: Phase, config: Config = ON) -> EngineState:
    state = EngineState.empty(config)
    return state._replace(phase=PhaseState(phase=phase, size=config.phase.sizes[phase]))


def _records(commands, kind):
    return [c for c in commands if isinstance(c, Record) and c.kind == kind]


def test_a_denial_lists_every_failed_gate_with_actual_and_required():
    """A fresh Experience account fails profitable sessions, win rate and reward:risk."""
    result = step(_state(Phase.EXPERIENCE), PhaseAdvance(T0))
    [denied] = _records(result.commands, "phase.denied")
    assert (denied.ts, denied["phase"]) == (T0, "experience")
    assert [(f["criterion"], f["actual"], f["required"]) for f in denied["failures"]] == [
        ("profitable_sessions", "0", ">= 20"),
        ("win_rate", "0", ">= 0.6"),
        ("reward_risk", "0", ">= 1.5"),
    ]
    assert result.state.phase.phase is Phase.EXPERIENCE


def test_advance_happens_one_step_when_every_gate_holds():
    """20 profitable sessions, 3 wins of $300 per loss of $100 (75%, R:R 3): on to PoC, $100."""
    trades = []
    for i in range(20):
        day = date(2024, 1, 1) + timedelta(days=i)
        trades += [TradeMark(day, D(300)), TradeMark(day, D(300)), TradeMark(day, D(300)),
                   TradeMark(day, D(-100))]  # fmt: skip
    sessions = tuple(SessionResult(t.session, 4, D(800)) for t in trades[::4])
    phase = PhaseState(Phase.EXPERIENCE, D(100), trades=tuple(trades), sessions=sessions)
    assert evaluate_gate(phase, ON.phase).unwrap() is Phase.PROOF_OF_CONCEPT
    state = EngineState.empty(ON)._replace(phase=phase)
    t = step(state, PhaseAdvance(T0))
    [changed] = _records(t.commands, "phase.changed")
    assert changed.ts == T0
    assert (changed["from"], changed["to"], changed["trigger"], changed["reason"]) == (
        "experience", "proof_of_concept", "gates", "every gate holds"
    )  # fmt: skip
    assert (t.state.phase.phase, t.state.phase.size) == (Phase.PROOF_OF_CONCEPT, D(100))


def test_three_straight_losses_downgrade_halve_the_size_and_open_the_breaker():
    """Trial ($200) loses three in a row: Proof of Concept at $100, breaker open until ack."""
    phase = PhaseState(Phase.TRIAL, D(200))
    for _ in range(2):
        phase, lower, _ = after_trade(phase, ON.phase, TradeMark(date(2024, 3, 4), D(-10)))
        assert lower is None
    phase, lower, reason = after_trade(phase, ON.phase, TradeMark(date(2024, 3, 4), D(-10)))
    assert lower is Phase.PROOF_OF_CONCEPT and reason == "3 losing trades in a row"
    assert (phase.phase, phase.size, phase.breaker_open) == (Phase.PROOF_OF_CONCEPT, D(100), True)
    state = EngineState.empty(ON)._replace(phase=phase)
    state = step(state, Tick(T0, "ABC", D("20.00"))).state
    blocked = step(state, EntryIntent(T0, "ABC", Side.LONG, D("19"), D(1)))
    assert _records(blocked.commands, "entry.blocked")[0]["reason"] == "phase_breaker"
    acked = step(state, BreakerAck(T0))
    assert list(acked.commands) == [Record("breaker.closed", T0, {"phase": "proof_of_concept"})]
    assert not acked.state.phase.breaker_open
    assert step(acked.state, BreakerAck(T0)).commands == ()  # nothing open: nothing to close


def test_proof_of_concept_allows_one_trade_per_session_and_says_when_the_next_is():
    """The second entry in a session is refused with the next session's start; after 04:00
    New York it is accepted."""
    state = step(_state(Phase.PROOF_OF_CONCEPT), Tick(T0, "ABC", D("20.00"))).state
    first = step(state, EntryIntent(T0, "ABC", Side.LONG, D("19"), None))
    assert _records(first.commands, "entry.accepted")
    priced = step(first.state, Tick(T0, "XYZ", D("20.00"))).state
    second = step(priced, EntryIntent(T0, "XYZ", Side.LONG, D("19"), D(1)))
    [blocked] = _records(second.commands, "entry.blocked")
    assert blocked["reason"] == "phase_trade_limit"
    assert "next trade allowed at 2024-03-05T09:00:00+00:00" in blocked["detail"]
    later = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    third = step(second.state, Tick(later, "XYZ", D("20.00")))
    fourth = step(third.state, EntryIntent(later, "XYZ", Side.LONG, D("19"), None))
    assert _records(fourth.commands, "entry.accepted")


def test_size_comes_from_the_phase_and_caps_a_given_qty_experience_is_paper():
    """$100 at $20.00 buys 5 shares; asking for 10 gets 5; Experience orders are paper."""
    state = step(_state(Phase.EXPERIENCE), Tick(T0, "ABC", D("20.00"))).state
    sized = step(state, EntryIntent(T0, "ABC", Side.LONG, D("19"), None))
    [order] = [c for c in sized.commands if isinstance(c, SubmitOrder)]
    assert (order.qty, order.paper) == (D(5), True)
    assert _records(sized.commands, "entry.accepted")[0]["paper"] is True
    capped = step(state, EntryIntent(T0, "ABC", Side.LONG, D("19"), D(10)))
    assert [c.qty for c in capped.commands if isinstance(c, SubmitOrder)] == [D(5)]
    trial = step(_state(Phase.TRIAL), Tick(T0, "ABC", D("20.00"))).state
    real = step(trial, EntryIntent(T0, "ABC", Side.LONG, D("19"), None))
    assert [(c.qty, c.paper) for c in real.commands if isinstance(c, SubmitOrder)] == [
        (D(10), False)
    ]


def test_scaling_grows_by_100_after_5_straight_wins_capped_at_5_percent_of_equity():
    """Scaling $200: five wins make $300; with $4,000 equity (+$5 won) the cap of 5% holds it
    at $200.25."""
    phase = PhaseState(Phase.SCALING, D(200))
    for _ in range(5):
        phase, _, _ = after_trade(phase, ON.phase, TradeMark(date(2024, 3, 4), D(10)))
    assert phase.size == D(300)
    small = PhaseConfig(enabled=True, equity=D(4_000))
    phase = PhaseState(Phase.SCALING, D(200))
    for _ in range(5):
        phase, _, _ = after_trade(phase, small, TradeMark(date(2024, 3, 4), D(1)))
    assert phase.size == D("200.25")


def test_the_phase_cli_end_to_end_from_a_fresh_state_directory(tmp_path):
    """status, a denied advance (exit 1), a refused and an accepted override, export: every
    attempt is in phase-history.jsonl and the password is nowhere."""
    state_dir = tmp_path / "state"
    run = CliRunner(env={"PHASE_OVERRIDE_PASSWORD": "correct horse"}).invoke
    status = run(main, ["phase", "status", "--state-dir", str(state_dir), "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout)["phase"] == "experience"
    denied = run(main, ["phase", "advance", "--state-dir", str(state_dir)])
    assert denied.exit_code == 1 and "profitable_sessions: 0 (required >= 20)" in denied.stdout
    wrong = run(main, ["phase", "override", "--state-dir", str(state_dir), "--to", "trial"],
                input="battery staple\n")  # fmt: skip
    assert wrong.exit_code == 1 and "wrong password" in wrong.stderr
    right = run(main, ["phase", "override", "--state-dir", str(state_dir), "--to", "trial",
                       "--reason", "desk"], input="correct horse\n")  # fmt: skip
    assert right.exit_code == 0 and "experience -> trial" in right.stdout
    history = (state_dir / "phase-history.jsonl").read_text()
    kinds = [json.loads(line)["kind"] for line in history.splitlines()]
    assert kinds == ["phase.denied", "phase.override_attempt", "phase.override_attempt",
                     "phase.changed"]  # fmt: skip
    assert "correct horse" not in history and "battery staple" not in history
    assert "correct horse" not in right.output + wrong.output
    exported = run(main, ["phase", "export", "--state-dir", str(state_dir)])
    assert exported.stdout.splitlines()[0].startswith("ts,kind,from,to")
    assert len(exported.stdout.splitlines()) == 5
    after = json.loads(run(main, ["phase", "status", "--state-dir", str(state_dir),
                                  "--json"]).stdout)  # fmt: skip
    assert (after["phase"], after["size"]) == ("trial", "200")


def test_override_without_a_configured_password_is_refused(tmp_path):
    """No PHASE_OVERRIDE_PASSWORD: overrides are off, and the attempt is journaled."""
    result = CliRunner(env={"PHASE_OVERRIDE_PASSWORD": ""}).invoke(
        main, ["phase", "override", "--state-dir", str(tmp_path), "--to", "scaling"], input="x\n"
    )
    assert result.exit_code == 1 and "PHASE_OVERRIDE_PASSWORD is not set" in result.stderr
    assert "phase.override_attempt" in (tmp_path / "phase-history.jsonl").read_text()


def test_regression_one_days_loss_downgrades_once_and_a_frozen_account_cannot_advance():
    """Found by PH3: Scaling $200 loses $48 of $1,000 equity (> 5%), then a breakeven trade
    the same day must not step down again, and `advance` with the breaker open is denied
    (it once jumped $50 -> $200)."""
    cfg = PhaseConfig(enabled=True, start=Phase.SCALING, equity=D(1000),
                      gates={p: Gate() for p in (Phase.EXPERIENCE, Phase.PROOF_OF_CONCEPT,
                                                  Phase.TRIAL)})  # fmt: skip
    state = EngineState.empty(Config(phase=cfg))
    phase, lower, _ = after_trade(state.phase, cfg, TradeMark(date(2024, 3, 4), D(-48)))
    assert (lower, phase.size) == (Phase.TRIAL, D(100))
    phase, lower, _ = after_trade(phase, cfg, TradeMark(date(2024, 3, 4), D(0)))
    assert lower is None and phase.phase is Phase.TRIAL
    t = step(state._replace(phase=phase), PhaseAdvance(T0))
    [denied] = _records(t.commands, "phase.denied")
    assert denied["failures"][0]["criterion"] == "breaker"
    acked = step(t.state, BreakerAck(T0)).state
    [changed] = _records(step(acked, PhaseAdvance(T0)).commands, "phase.changed")
    assert (changed["to"], changed["size_from"], changed["size_to"]) == ("scaling", D(100), D(200))


def test_an_override_to_a_phase_that_does_not_exist_is_refused_naming_the_phases():
    """The shell checked the password; the engine still refuses a phase it does not know,
    alerting with every phase allowed, and changes nothing. A known phase is taken with its
    own size and a fresh losing streak, journaled with the operator's reason."""
    state = _state(Phase.TRIAL)._replace(phase=PhaseState(Phase.TRIAL, D(150), loss_streak=2))
    t = step(state, PhaseOverride(T0, "expert", "promote"))
    assert list(t.commands) == [
        Alert(T0, "phase_override_refused", {
            "to": "expert", "allowed": "experience, proof_of_concept, trial, scaling"
        })
    ]  # fmt: skip
    assert t.state.phase == state.phase
    t = step(state, PhaseOverride(T0, "scaling", "promote"))
    [changed] = _records(t.commands, "phase.changed")
    assert changed.ts == T0
    assert (changed["from"], changed["to"], changed["trigger"], changed["reason"]) == (
        "trial", "scaling", "override", "promote"
    )  # fmt: skip
    assert (changed["size_from"], changed["size_to"]) == (D(150), D(200))
    assert (t.state.phase.phase, t.state.phase.size, t.state.phase.loss_streak) == (
        Phase.SCALING, D(200), 0
    )  # fmt: skip
