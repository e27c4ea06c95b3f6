"""Numbers a trader reads: realized P&L counts every share sold, entries add up to the
intents, partials are counted per tranche, text shows money to the cent, R to two places and
ratios to three (JSON keeps the exact decimals), and NaN or infinity in a setting is refused."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from attrs import evolve
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from engine import (
    CancelOrder,
    EngineState,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderType,
    Record,
    Side,
    SubmitOrder,
    Tick,
    fold,
    step,
)
from engine.ids import key_of
from engine.model import CloseReason
from engine.records import _average, milliseconds, position_closed, trade_closed
from shell.broker.simulated import Faults, SimulatedBroker
from shell.cli import main
from shell.config import ENV_GIVEBACK, ENV_TARGET, ConfigError, parse_settings
from shell.figures import money, plain, price, qty, r_multiple, ratio, signed_money
from shell.report import render_summary, summary_to_json
from shell.simulate import run_simulation
from tests.strategies import T0, fault_models, histories, interleave
from tests.unit.test_timeouts import _opened, _sec

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"


@st.composite
def books(draw: st.DrawFn) -> list[Event]:
    """Two symbols' histories (lots included), interleaved in time order."""
    one = draw(histories(symbol="AAA"))
    two = draw(histories(symbol="BBB"))
    merged = interleave(list(one.events), list(two.events), draw(st.lists(st.booleans())))
    return sorted(merged, key=lambda e: e.ts)  # stable: each symbol keeps its own order


def _simulate(events: list[Event], faults: Faults):
    """The summary, the final state and, computed independently from the broker's fills, the
    profit of every share sold: for a closed position, what its exits brought minus what its
    entries cost; for one still open, each exit fill against the entry at that moment."""
    running: dict[str, D] = {}
    cost: dict[str, D] = {}
    proceeds: dict[str, D] = {}
    sign: dict[str, int] = {}

    def watch(event, before, _transition) -> None:
        if not isinstance(event, OrderFilled):
            return
        key = key_of(event.order_id)
        if event.order_id.endswith("-entry"):
            cost[key] = cost.get(key, D(0)) + event.price * event.qty
        for pos in before.positions.values():
            if event.order_id in {o.id for o in (pos.orders.exit, pos.orders.sell) if o}:
                q = min(event.qty, pos.fills.remaining)
                sign[pos.key] = pos.side.sign
                running[pos.key] = running.get(pos.key, D(0)) + (
                    (event.price - pos.ladder.entry) * q * pos.side.sign
                )
                proceeds[pos.key] = proceeds.get(pos.key, D(0)) + event.price * q

    state, summary = run_simulation(
        events, EngineState.empty(), SimulatedBroker(faults=faults), on_step=watch
    )
    sold = D(0)
    for key, banked in running.items():
        closed = key not in state.positions and key in cost
        sold += (proceeds[key] - cost[key]) * sign[key] if closed else banked
    return summary, state, sold


@given(events=books(), faults=fault_models().filter(lambda f: f.drop == 0))
def test_realized_pnl_counts_every_share_sold(events, faults):
    """Realized P&L = the profit of every fill of every exit, whether its position closed or
    not (banked partials of open positions included), and closed + banked = total. (Without
    dropped connections: a fill learned from a reconnect snapshot is no OrderFilled event for
    this oracle to see.)"""
    summary, _, sold = _simulate(events, faults)
    # Equal up to the 28th digit (a lot's averaged entry price is summed in another order).
    assert abs(summary.realized_total - sold) < D("1e-18")
    assert summary.realized_pnl == sum((t.pnl for t in summary.trades), D(0))
    assert summary.realized_pnl + summary.banked_open_pnl == summary.realized_total
    data = summary_to_json(summary)
    assert D(data["realized_pnl"]) == summary.realized_total == D(data["realized"]["total"])


@given(events=books(), faults=fault_models())
def test_entries_add_up_to_the_intents(events, faults):
    """Every intent is counted once: accepted, blocked by the gate, or refused by the broker;
    the accepted ones opened a position or are still pending."""
    summary, state, _ = _simulate(events, faults)
    intents = sum(isinstance(e, EntryIntent) for e in events)
    entries = summary_to_json(summary)["entries"]
    assert entries["intents"] == intents
    assert entries["accepted"] + entries["blocked"] + entries["refused_by_broker"] == intents
    assert entries["accepted"] == summary.positions_opened + len(state.entries)
    assert sum(entries["refused_reasons"].values()) == entries["refused_by_broker"]
    text = render_summary(summary)
    assert f"entries       {intents} intents: {entries['accepted']} accepted" in text


@given(events=books(), seed=st.integers(0, 1000))
def test_a_tranche_filled_in_parts_is_counted_once(events, seed):
    """With every market order filled in two parts, partial.filled records outnumber the
    tranches; the summary counts tranches (at most one per milestone of each position)."""
    summary, _, _ = _simulate(events, Faults(partial=1.0, seed=seed))
    partials = summary_to_json(summary)["partials"]
    assert partials["fills"] == summary.partials_filled >= partials["filled"]
    assert partials["filled"] == len(summary.tranches_filled) <= 3 * summary.positions_opened
    assert partials["filled_by_take_profit"] <= partials["filled"]
    assert f"{partials['ordered']} ordered, {partials['filled']} tranches filled" in (
        render_summary(summary)
    )


_LONG_DECIMAL = re.compile(r"\d\.\d{5,}|\d[eE][+-]?\d")


@given(events=books(), faults=fault_models())
def test_text_never_shows_a_long_decimal_and_json_keeps_them_exact(events, faults):
    """Lots average their entry price to 28 digits; the text shows at most four decimals and
    no exponent, the JSON the exact value."""
    summary, _, _ = _simulate(events, faults)
    text = render_summary(summary)
    assert not _LONG_DECIMAL.search(text), _LONG_DECIMAL.search(text)
    data = summary_to_json(summary)
    for trade, shown in zip(summary.trades, data["trades"], strict=True):
        assert D(shown["entry"]) == trade.entry and D(shown["r"]) == trade.r
        assert "E" not in shown["r"] + shown["entry"] + shown["pnl"]


def test_figures_round_as_a_trader_reads_them():
    """Money to the cent, R to two places, ratios to three, prices as traded, no -0."""
    assert money(D("1234.5")) == "$1,234.50" and money(D("-3.333333")) == "-$3.33"
    assert signed_money(D("-0.004")) == "+$0.00" and signed_money(D("12")) == "+$12.00"
    assert r_multiple(D("0E+2")) == "+0.00R" and r_multiple(D("-1.005")) == "-1.00R"
    assert r_multiple(D("2.745")) == "+2.74R"  # banker's rounding, as Decimal does
    assert ratio(D(2) / D(3)) == "0.667" and ratio(D("1E+1")) == "10.000"
    assert price(D("167.9")) == "167.90" and price(D("51.3725")) == "51.3725"
    assert price(D("78.03333333333333333333333333")) == "78.0333"
    assert qty(D("1E+2")) == "100" and qty(D("0.5000")) == "0.5"
    assert plain(D("0E+2")) == "0" and plain(D("1.2E+3")) == "1200" and plain(D("-0")) == "0"


def test_the_report_table_rounds_r_ratios_and_money(tmp_path):
    """report's text: avg R to two places, profit factor and win rate to three figures,
    money to the cent; its JSON export keeps the exact values."""
    trades = tmp_path / "t.jsonl"
    rows = []
    for i, (pnl, r) in enumerate([("10", "0.3333333333"), ("-3", "-0.1"), ("4", "0.2")]):
        closed = f"2024-03-04T15:0{i}:00Z"
        rows.append(json.dumps({
            "kind": "trade.closed", "ts": closed, "symbol": "A", "key": f"A-{i}", "side": "long",
            "qty": "1", "entry": "1", "exit": "2", "opened": closed, "closed": closed,
            "pnl": pnl, "r": r, "risk": "30"}))  # fmt: skip
    trades.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(
        main, ["report", "--window", "daily", "--trades", str(trades)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("| 2024-03-04"))
    # 3 trades, 2/1/0, win rate 66.7%, streak 1, avg win 7.00, avg loss -3.00, avg R
    # 0.4333/3 = 0.14, PF 14/3 = 4.667, expectancy 11/3 = 3.67, P&L 11.00, max DD 3.00
    assert row == (
        "| 2024-03-04 | 3 | 2/1/0 | 66.7% | 1 | 7.00 | -3.00 | 0.14 | 4.667 | 3.67 | 11.00 | 3.00 |"
    )
    exported = CliRunner().invoke(
        main, ["report", "--window", "daily", "--trades", str(trades), "--export", "json"]
    )
    assert json.loads(exported.stdout)["total"]["profit_factor"] == str(D(14) / D(3))


_NUMERIC_KEYS = [
    ("goal", "target"), ("goal", "giveback"), ("phase", "equity"), ("phase", "scaling_max"),
    ("protection", "lot_step"), ("protection", "price_increment"), ("orders", "fill_timeout"),
    ("orders", "cancel_timeout"), ("performance", "min_win_rate"), ("performance", "min_avg_r"),
    ("performance", "max_drawdown"),
]  # fmt: skip
_ABSURD = st.sampled_from(
    [float("nan"), float("inf"), float("-inf"), "nan", "NaN", "inf", "-Infinity", "sNaN",
     "1e999999", "-1e999999", 1e300, -1e300, -(10**18), "", "1,5", True, [1], {"a": 1}]
)  # fmt: skip


@given(where=st.sampled_from(_NUMERIC_KEYS), value=_ABSURD)
def test_nan_infinity_and_absurd_settings_are_refused_with_key_and_value(where, value):
    """NaN, infinities, numbers beyond a trillion, wrong types: refused, naming the key and the
    value, never a traceback (a NaN cannot even be compared with a bound)."""
    section, key = where
    with pytest.raises(ConfigError) as caught:
        parse_settings({section: {key: value}})
    message = str(caught.value)
    assert message.startswith(f"{section}.{key} = ") and "\n" not in message
    assert repr(value)[:20] in message


@given(
    name=st.sampled_from([ENV_TARGET, ENV_GIVEBACK]),
    value=st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "sNaN", "1e999999", "abc"]),
)
def test_nan_in_the_goal_environment_is_refused_in_one_line(name, value):
    """PROFIT_TARGET_DAILY / PROFIT_GIVEBACK_THRESHOLD = nan (or inf): exit 1, one line naming
    the variable and the value."""
    result = CliRunner().invoke(
        main, ["simulate", str(SAMPLE)], env={name: value}, catch_exceptions=False
    )
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {name} = {value!r}: ") and "allowed " in line


# --- An entry order that fills in parts (SPEC §3, §4): the first fill opens the position and
# protects it at once; each later fill grows it, the entry becomes the average price paid,
# the ladder (1R, the take-profit) is measured from that average and the initial stop, the
# journal says how many shares were added, and the stop is re-armed for every share.

ENTRY = "rt-AAA-1-entry"


def _first_fill(side: Side, stop: str) -> EngineState:
    """AAA 10 @ 100 asked; 4 fill at 100 and their stop is accepted."""
    state, _ = fold(EngineState.empty(), [
        Tick(T0, "AAA", D("100")),
        EntryIntent(T0, "AAA", side, D(stop), D(10)),
        OrderAccepted(T0, ENTRY),
        OrderFilled(T0, ENTRY, D(4), D("100")),
        OrderAccepted(T0, "rt-AAA-1-1-stop"),
    ])  # fmt: skip
    return state


def test_a_long_entry_filled_again_is_measured_from_its_average_price():
    t = step(_first_fill(Side.LONG, "99"), OrderFilled(T0, ENTRY, D(6), D("101")))
    [opened] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.opened"]
    assert opened == Record("position.opened", T0, {
        "symbol": "AAA", "key": "AAA-1", "side": "long", "qty": D(10), "entry": D("100.6"),
        "stop": D(99), "added": D(6),
    })  # fmt: skip
    pos = t.state.positions["AAA-1"]
    # (4 x 100 + 6 x 101) / 10 = 100.60; 1R = 1.60: 1R at 102.20, 4R at 107.00
    assert (pos.ladder.entry, pos.ladder.trigger, pos.ladder.take_profit) == (
        D("100.6"), D("102.2"), D("107")
    )  # fmt: skip
    assert (pos.fills.original, pos.fills.remaining, pos.fills.cost) == (D(10), D(10), D(1006))
    assert pos.orders.entry is None  # every share of the entry order has filled
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == ["rt-AAA-1-1-stop"]
    t = step(t.state, OrderCanceled(T0, "rt-AAA-1-1-stop"))
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (stop.type, stop.qty, stop.stop_price, stop.limit_price) == (
        OrderType.OCO, D(10), D("99.00"), D("107.00")
    )  # fmt: skip


def test_a_short_entry_filled_again_is_measured_from_its_average_price():
    t = step(_first_fill(Side.SHORT, "101"), OrderFilled(T0, ENTRY, D(6), D("99")))
    pos = t.state.positions["AAA-1"]
    # (4 x 100 + 6 x 99) / 10 = 99.40; 1R = 1.60: 1R at 97.80, 4R at 93.00
    assert (pos.ladder.entry, pos.ladder.trigger, pos.ladder.take_profit) == (
        D("99.4"), D("97.8"), D("93")
    )  # fmt: skip


def test_an_entry_still_open_after_a_second_fill_stays_the_positions_entry_order():
    t = step(_first_fill(Side.LONG, "99"), OrderFilled(T0, ENTRY, D(3), D("100")))
    pos = t.state.positions["AAA-1"]
    assert pos.orders.entry is not None and pos.orders.entry.id == ENTRY
    assert pos.orders.entry.filled == D(7) and pos.orders.entry.open_qty == D(3)
    [opened] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.opened"]
    assert (opened["qty"], opened["added"], opened["entry"]) == (D(7), D(3), D(100))


def test_an_entry_filled_again_through_its_stop_has_no_ladder():
    """A long whose average falls to its stop or below has no risk left to measure R by: no
    milestones, no take-profit; a risk under a dollar is a risk all the same."""
    t = step(_first_fill(Side.LONG, "99"), OrderFilled(T0, ENTRY, D(6), D("98")))
    pos = t.state.positions["AAA-1"]
    # (400 + 588) / 10 = 98.80: below the stop at 99
    assert pos.ladder.entry == D("98.8")
    assert (pos.ladder.schedule, pos.ladder.trigger, pos.ladder.take_profit) == ((), None, None)
    # (400 + 594) / 10 = 99.40: exactly the stop
    t = step(_first_fill(Side.LONG, "99.40"), OrderFilled(T0, ENTRY, D(6), D("99")))
    ladder = t.state.positions["AAA-1"].ladder
    assert (ladder.schedule, ladder.trigger, ladder.take_profit) == ((), None, None)
    # (400 + 601.20) / 10 = 100.12 over a stop at 99.50: 1R = 0.62, at 100.74; 4R at 102.60
    t = step(_first_fill(Side.LONG, "99.50"), OrderFilled(T0, ENTRY, D(6), D("100.20")))
    ladder = t.state.positions["AAA-1"].ladder
    assert (ladder.trigger, ladder.take_profit) == (D("100.74"), D("102.60"))


def test_record_numbers_by_hand_averages_spans_and_a_trades_r():
    assert str(_average(D("100.1234"))) == "100.1234"  # as traded: shown as it is
    assert str(_average(D("100.12345"))) == "100.1234"  # an average: to 1/100 of a cent
    assert str(_average(D("100.12355"))) == "100.1236"
    assert str(_average(D("100"))) == "100"
    assert milliseconds(timedelta(microseconds=1500)) == D("1.5")
    assert milliseconds(timedelta(seconds=2, microseconds=1)) == D("2000.001")
    pos = _opened().positions["AAA-1"]
    # 4 sold at 102 and 6 at 101: realized $14 on a $10 risk
    done = evolve(pos, fills=evolve(pos.fills, remaining=D(0), exited=D(10),
                                    exit_value=D(4) * D(102) + D(6) * D(101), realized=D(14),
                                    last_qty=D(6), last_price=D(101)))  # fmt: skip
    trade = trade_closed(done, _sec(9))
    assert (trade["exit"], trade["pnl"], trade["r"], trade["risk"], trade["risk_per_share"]) == (
        D("101.4"), D(14), D("1.4"), D(10), D(1)
    )  # fmt: skip
    assert trade["reason"] == "exit" and trade["opened"] == _sec(0) and trade["closed"] == _sec(9)
    closed = position_closed(evolve(done, close_reason=CloseReason.STOP), _sec(9))
    assert (closed["qty"], closed["price"], closed["reason"], closed["r"]) == (
        D(6), D(101), "stop", D("1.4")
    )  # fmt: skip
    even = trade_closed(evolve(done, fills=evolve(done.fills, realized=D("0.00"))), _sec(9))
    assert str(even["r"]) == "0"  # never "0E+2"
    unsold = trade_closed(evolve(done, fills=evolve(done.fills, exited=D(0))), _sec(9))
    assert unsold["exit"] == D(100)  # nothing exited: the entry
    gapped = evolve(done, ladder=evolve(done.ladder, initial_stop=D(101)))
    trade = trade_closed(gapped, _sec(9))
    assert (trade["risk"], trade["r"], trade["risk_per_share"]) == (0, 0, 0)
