"""The daily profit goal and the session calendar, worked by hand to the second."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from attrs import evolve
from click.testing import CliRunner

from engine import (
    CancelOrder,
    CloseReason,
    Config,
    EngineState,
    EntryIntent,
    Record,
    Side,
    SubmitOrder,
    Tick,
    Transition,
)
from engine.calendar import session_of
from engine.config import SessionConfig
from engine.goal import GoalConfig, OnTrigger
from engine.session import flatten
from engine.state import BreakerState, Market
from shell.broker.simulated import SimulatedBroker
from shell.cli import main
from shell.codec import event_to_json
from shell.config import ConfigError, load_settings
from shell.simulate import run_simulation
from tests.unit.test_timeouts import _opened, _sec, _tranche_sent

NY = ZoneInfo("America/New_York")
GOAL = Config(goal=GoalConfig(D(500), D("0.5")), session=SessionConfig(NY, time(4)))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def scenario() -> list:
    """Long 100 ABC @ 100 (stop 90: 1R = $1,000, far from the ladder); +600 peak at 106;
    103.01 gives back 299/600 (< 50%); 103.00 gives back exactly 50%: protection."""
    return [
        Tick(at("2024-03-04T14:30:00"), "ABC", D("100.00")),
        EntryIntent(at("2024-03-04T14:30:00"), "ABC", Side.LONG, D("90.00"), D(100)),
        Tick(at("2024-03-04T14:31:00"), "ABC", D("106.00")),
        Tick(at("2024-03-04T14:32:00"), "ABC", D("103.01")),
        Tick(at("2024-03-04T14:33:00"), "ABC", D("103.00")),
        Tick(at("2024-03-04T14:34:00"), "XYZ", D("50.00")),
        EntryIntent(at("2024-03-04T14:34:00"), "XYZ", Side.LONG, D("49.00"), D(10)),
        Tick(at("2024-03-05T08:59:59"), "XYZ", D("50.10")),
        EntryIntent(at("2024-03-05T08:59:59"), "XYZ", Side.LONG, D("49.00"), D(10)),
        Tick(at("2024-03-05T09:00:00"), "XYZ", D("50.20")),  # 04:00 EST: a new session
        EntryIntent(at("2024-03-05T09:00:00"), "XYZ", Side.LONG, D("49.00"), D(10)),
    ]


def _records(events, config=GOAL):
    records: list[Record] = []
    state, summary = run_simulation(
        events, EngineState.empty(config), SimulatedBroker(market_fill="same"),
        sink=lambda c: records.append(c) if isinstance(c, Record) else None,
    )  # fmt: skip
    return records, state, summary


def test_protection_triggers_on_the_exact_tick_blocks_entries_and_resets_at_0400():
    """Trigger at 14:33:00 (peak 600, current 300); entries blocked until 09:00:00Z
    (04:00 New York), when goal.reset comes and the next entry is accepted."""
    records, state, _ = _records(scenario())
    [trigger] = [r for r in records if r.kind == "goal.triggered"]
    assert trigger.ts == at("2024-03-04T14:33:00")
    assert trigger.data == {
        "session": "2024-03-04", "peak": D(600), "current": D(300), "drawdown": D("0.5"),
        "threshold": D("0.5"), "target": D(500), "action": "block_entries",
    }  # fmt: skip
    blocked = [r for r in records if r.kind == "entry.blocked"]
    assert [(r.ts, r["reason"]) for r in blocked] == [
        (at("2024-03-04T14:34:00"), "daily_profit_protection"),
        (at("2024-03-05T08:59:59"), "daily_profit_protection"),
    ]
    [reset] = [r for r in records if r.kind == "goal.reset"]
    assert reset.ts == at("2024-03-05T09:00:00") and reset["session"] == "2024-03-05"
    accepted = [r for r in records if r.kind == "entry.accepted"]
    assert [r.ts for r in accepted] == [at("2024-03-04T14:30:00"), at("2024-03-05T09:00:00")]
    assert state.daily.peak == 0 or state.daily.session.isoformat() == "2024-03-05"


def test_no_trigger_while_the_peak_is_small_against_the_target():
    """A $200 peak is not above 50% of a $500 target: giving it all back triggers nothing."""
    events = [
        *scenario()[:2],
        Tick(at("2024-03-04T14:31:00"), "ABC", D("102.00")),
        Tick(at("2024-03-04T14:32:00"), "ABC", D("100.00")),
    ]
    records, state, _ = _records(events)
    assert not [r for r in records if r.kind == "goal.triggered"]
    assert state.daily.peak == D(200) and not state.daily.triggered


def test_a_peak_of_exactly_the_giveback_share_of_the_target_triggers_nothing():
    """Peak $250 is not above 50% of $500: giving all of it back triggers nothing; a peak of
    $251 (102.51) and the same fall trigger."""
    events = [
        *scenario()[:2],
        Tick(at("2024-03-04T14:31:00"), "ABC", D("102.50")),
        Tick(at("2024-03-04T14:32:00"), "ABC", D("100.00")),
    ]
    records, state, _ = _records(events)
    assert not [r for r in records if r.kind == "goal.triggered"]
    assert state.daily.peak == D(250)
    events[2] = Tick(at("2024-03-04T14:31:00"), "ABC", D("102.51"))
    records, state, _ = _records(events)
    [trigger] = [r for r in records if r.kind == "goal.triggered"]
    assert (trigger["peak"], trigger["current"]) == (D(251), D(0))


def test_flatten_closes_everything_at_market_when_configured():
    """on_trigger = flatten: the triggering tick cancels the stop and sells all at market."""
    config = Config(goal=GoalConfig(D(500), D("0.5"), OnTrigger.FLATTEN), session=GOAL.session)
    records, state, _ = _records(scenario()[:5], config)
    [closed] = [r for r in records if r.kind == "position.closed"]
    assert (closed["reason"], closed["qty"], closed["price"]) == ("flatten", D(100), D("103.00"))
    assert not state.positions


@pytest.mark.parametrize(
    ("ts", "session", "next_reset"),
    [
        ("2024-03-09T08:59:59", "2024-03-08", "2024-03-09T09:00:00"),  # EST
        ("2024-03-09T09:00:00", "2024-03-09", "2024-03-10T08:00:00"),  # the DST night: 23 h
        ("2024-03-10T07:59:59", "2024-03-09", "2024-03-10T08:00:00"),
        ("2024-03-10T08:00:00", "2024-03-10", "2024-03-11T08:00:00"),  # EDT
        ("2024-11-02T08:00:00", "2024-11-02", "2024-11-03T09:00:00"),  # back to EST: 25 h
        ("2024-11-03T08:59:59", "2024-11-02", "2024-11-03T09:00:00"),
        ("2024-11-03T09:00:00", "2024-11-03", "2024-11-04T09:00:00"),
    ],
)
def test_sessions_start_at_0400_new_york_across_both_dst_changes(ts, session, next_reset):
    """The session of a moment and the next boundary, in UTC, around March and November."""
    day, reset = session_of(at(ts), NY, time(4))
    assert (day.isoformat(), reset) == (session, at(next_reset))


def test_env_overrides_toml_and_bad_values_name_their_source(tmp_path):
    """PROFIT_TARGET_DAILY / PROFIT_GIVEBACK_THRESHOLD win over [goal]; a bad one is named."""
    config = tmp_path / "ratchet.toml"
    config.write_text('[goal]\ntarget = 100\ngiveback = 0.3\non_trigger = "flatten"\n')
    env = {"PROFIT_TARGET_DAILY": "500", "PROFIT_GIVEBACK_THRESHOLD": "0.5"}
    goal = load_settings(config, env).config.goal
    assert (goal.target, goal.giveback, goal.on_trigger) == (D(500), D("0.5"), OnTrigger.FLATTEN)
    assert load_settings(config, {}).config.goal.target == D(100)
    for name, value, message in [
        ("PROFIT_TARGET_DAILY", "5", "PROFIT_TARGET_DAILY = '5': allowed 0 (off) or 10 to 10000"),
        ("PROFIT_TARGET_DAILY", "20000", "PROFIT_TARGET_DAILY = '20000'"),
        ("PROFIT_GIVEBACK_THRESHOLD", "0.95", "PROFIT_GIVEBACK_THRESHOLD = '0.95': allowed 0.10"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_settings(None, {name: value})


def test_simulate_with_the_environment_set(tmp_path):
    """ratchet simulate honours PROFIT_TARGET_DAILY and shows the trigger in its summary."""
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(event_to_json(e)) for e in scenario()) + "\n")
    # About the goal, not market hours: every print of the scenario is a regular one.
    always = tmp_path / "ratchet.toml"
    always.write_text('[broker]\nhours = "always"\n')
    env = {"PROFIT_TARGET_DAILY": "500", "PROFIT_GIVEBACK_THRESHOLD": "0.5"}
    result = CliRunner(env=env).invoke(main, ["simulate", str(path), "--json", "--config",
                                              str(always), "--market-fill", "same"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    [trigger] = summary["goal"]["triggered"]
    assert trigger["ts"] == "2024-03-04T14:33:00Z" and trigger["peak"] == "600.00"
    assert summary["entries"]["blocked_reasons"] == {"daily_profit_protection": 2}
    text = CliRunner(env=env).invoke(
        main, ["simulate", str(path), "--config", str(always), "--market-fill", "same"]
    )
    assert "goal          protection at 2024-03-04 14:33:00Z: peak +$600.00" in text.stdout


def test_a_flatten_beside_a_sale_in_flight_queues_only_the_shares_it_does_not_sell():
    """AAA long 10 at 2R: the stop is canceled and 5 are being sold at market when the goal
    flattens. The other 5 are queued for sale (not 10: the sale in flight sells its own), the
    ladder stops and its milestones are dropped; the sale goes on, nothing else is sent."""
    state = _tranche_sent()
    assert state.positions["AAA-1"].orders.milestones != ()
    out = flatten(Transition(state), _sec(2))
    pos = out.state.positions["AAA-1"]
    assert (pos.orders.to_sell, pos.orders.milestones) == (D(5), ())
    assert pos.orders.sell is not None and pos.orders.sell.open_qty == D(5)
    assert (pos.ladder.trigger, pos.close_reason) == (None, CloseReason.FLATTEN)
    # AAA sends nothing more; BBB, with only its stop, has it canceled to sell all 10
    sent = [c for c in out.commands if isinstance(c, SubmitOrder | CancelOrder)]
    assert sent == [CancelOrder(_sec(2), "rt-BBB-1-1-stop", "BBB")]
    other = out.state.positions["BBB-1"]
    assert (other.orders.to_sell, other.close_reason) == (D(10), CloseReason.FLATTEN)


def test_the_days_realized_profit_counts_each_step_of_a_position_once():
    """Goal on. AAA long 10 @ 100 (stop 99) sells 5 at 2R (102: +$10), then the other 5 at
    its stop's fill (101 after 2R): the day has realized $15, each fill counted once, and
    nothing is unrealized; a mark in between counts the open half at its price."""
    seen = {}
    state, _ = run_simulation(
        [
            Tick(_sec(0), "AAA", D("100")),
            EntryIntent(_sec(0), "AAA", Side.LONG, D("99"), D(10)),
            Tick(_sec(1), "AAA", D("102")),
            Tick(_sec(2), "AAA", D("102.40")),
            Tick(_sec(3), "AAA", D("100.90")),
            Tick(_sec(4), "AAA", D("100.90")),
        ],
        EngineState.empty(GOAL),
        SimulatedBroker(market_fill="same"),
        on_step=lambda e, before, t: seen.setdefault(e, t.state),
    )
    mid = seen[Tick(_sec(2), "AAA", D("102.40"))]
    pos = mid.positions["AAA-1"]
    assert pos.fills.remaining == D(5) and pos.fills.realized == D(10)
    assert mid.daily.realized == D(10)
    assert mid.daily.unrealized == D("12.00")  # 5 x 2.40
    assert mid.daily.pnl == D("22.00") and mid.daily.peak == D("22.00")
    assert "AAA-1" not in state.positions
    fill = state.daily.realized - D(10)
    assert fill == D(5) * (D("100.90") - D(100))  # the stop at 101 filled at the print, 100.90
    assert state.daily.unrealized == 0 and state.daily.peak == D("22.00")


def test_a_flatten_outside_the_session_sells_bare_shares_by_a_limit_through_the_last_print():
    """`flatten` by hand: AAA-1 with no stop at the broker while the regular session is
    closed: its 10 shares go as an extended-hours limit 0.2 % through the last print; with the
    breaker open a covered position's flatten is queued, not sent."""
    state = _opened()
    pos = state.positions["AAA-1"]
    bare = evolve(pos, orders=evolve(pos.orders, exit=None), exposed_since=_sec(0))
    closed = state.evolve(positions=state.positions.set(pos.key, bare), market=Market(False))
    t = flatten(Transition(closed), _sec(1))
    sales = [c for c in t.commands if isinstance(c, SubmitOrder) and c.symbol == "AAA"]
    assert [(c.type.value, c.qty, c.limit_price, c.extended_hours) for c in sales] == [
        ("limit", D(10), D("99.80"), True)
    ]
    assert t.state.positions["AAA-1"].close_reason is CloseReason.FLATTEN
    breaker = evolve(state.link, breaker=BreakerState.OPEN, reopen_at=_sec(300))
    held = flatten(Transition(state.evolve(link=breaker)), _sec(1))
    assert not [c for c in held.commands if isinstance(c, SubmitOrder | CancelOrder)]
    for key in ("AAA-1", "BBB-1"):
        after = held.state.positions[key]
        assert after.orders.to_sell == D(10) and after.close_reason is CloseReason.FLATTEN
        assert after.ladder.trigger is None and after.orders.milestones == ()
