"""The JSON codec and the event readers: round trips, decimals as strings, bad lines named."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import (
    BreakerAck,
    CancelRejected,
    Clock,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    PhaseAdvance,
    PhaseOverride,
    Record,
    Side,
    Tick,
)
from shell.codec import (
    BadFile,
    BadLine,
    command_to_json,
    converter,
    event_from_json,
    event_to_json,
    merge_by_ts,
    read_events,
)

_ts = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_dec = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4)
_sym = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ.", min_size=1, max_size=6)
_id = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
events = st.one_of(
    st.builds(Tick, _ts, _sym, _dec, _dec),
    st.builds(
        EntryIntent, _ts, _sym, st.sampled_from(Side), _dec, st.none() | _dec, st.none() | _dec
    ),
    st.builds(OrderAccepted, _ts, _id),
    st.builds(OrderRejected, _ts, _id, st.text(max_size=30)),
    st.builds(OrderFilled, _ts, _id, _dec, _dec),
    st.builds(OrderCanceled, _ts, _id),
    st.builds(CancelRejected, _ts, _id, st.text(max_size=30)),
    st.builds(Clock, _ts),
    st.builds(PhaseAdvance, _ts),
    st.builds(PhaseOverride, _ts, st.sampled_from(["trial", "scaling"]), st.text(max_size=20)),
    st.builds(BreakerAck, _ts),
)


@given(events)
def test_events_round_trip_through_json(event):
    """structure(unstructure(e)) == e for every event type, through real JSON text."""
    text = json.dumps(event_to_json(event))
    assert event_from_json(json.loads(text)) == event
    assert converter.structure(converter.unstructure(event, Event), Event) == event


def test_decimals_are_strings_and_times_are_utc_z():
    """A tick's JSON has string decimals and a Z timestamp, as INTERFACES.md shows."""
    tick = Tick(datetime(2024, 3, 1, 14, 30, 0, 250000, tzinfo=UTC), "AAPL", D("179.62"), D(100))
    assert event_to_json(tick) == {
        "type": "tick",
        "ts": "2024-03-01T14:30:00.250000Z",
        "symbol": "AAPL",
        "price": "179.62",
        "size": "100",
    }


def test_offsets_are_converted_to_utc_and_naive_times_refused():
    """A +02:00 timestamp becomes UTC; a timestamp without offset is an error naming it."""
    tick = event_from_json(
        {"type": "tick", "ts": "2024-03-01T16:30:00+02:00", "symbol": "A", "price": "1"}
    )
    assert tick.ts == datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    assert tick.ts.tzinfo is UTC
    with pytest.raises(ValueError, match="no UTC offset"):
        event_from_json({"type": "tick", "ts": "2024-03-01T16:30:00", "symbol": "A", "price": "1"})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"type": "tick", "ts": "2024-03-01T14:30:00Z", "symbol": "A", "price": "x"}', "decimal"),
        ('{"type": "tick", "ts": "2024-03-01T14:30:00Z", "symbol": "A", "price": "-1"}', "> 0"),
        ('{"type": "tick", "ts": "2024-03-01T14:30:00Z", "symbol": "A"}', "missing 'price'"),
        ('{"type": "tick", "ts": "2024-03-01T14:30:00Z", "symbol": "A", "price": "1", "px": 1}',
         "unknown key"),
        ('{"type": "bogus", "ts": "2024-03-01T14:30:00Z"}', "unknown event type"),
        ('{"type": "entry", "ts": "2024-03-01T14:30:00Z", "symbol": "A", "side": "up", '
         '"stop": "1"}', "side"),
        ("not json", "Expecting value"),
        ("[1, 2]", "one JSON object"),
    ],
)  # fmt: skip
def test_a_bad_jsonl_line_is_reported_with_file_and_line(tmp_path, line, reason):
    """The error names the file, the line number and what is wrong."""
    path = tmp_path / "events.jsonl"
    good = '{"type": "tick", "ts": "2024-03-01T14:29:00Z", "symbol": "A", "price": "1"}'
    path.write_text(f"{good}\n{line}\n{good}\n")
    with pytest.raises(BadLine) as caught:
        list(read_events(path))
    assert str(caught.value).startswith(f"{path}:2: ")
    assert reason in str(caught.value)


def test_skip_bad_lines_keeps_every_good_line_and_reports_the_rest(tmp_path):
    """With skip_bad, nothing good is lost and every bad line is listed."""
    path = tmp_path / "ticks.csv"
    path.write_text(
        "ts,symbol,price,size\n"
        "2024-03-01T14:30:00Z,A,10.00,5\n"
        "2024-03-01T14:30:01Z,A,abc,5\n"
        "2024-03-01T14:30:02Z,A,10.10\n"
        "2024-03-01T14:29:00Z,A,10.10,1\n"
        "2024-03-01T14:30:03,A,10.10,1\n"
        "2024-03-01T14:30:04Z,A,10.20,1\n"
    )
    bad: list[BadLine] = []
    ticks = list(read_events(path, skip_bad=True, bad=bad))
    assert [t.price for t in ticks] == [D("10.00"), D("10.20")]
    assert [b.line for b in bad] == [3, 4, 5, 6]
    assert "not a decimal" in bad[0].reason
    assert "expected 4 fields" in bad[1].reason
    assert "back in time" in bad[2].reason
    assert "no UTC offset" in bad[3].reason


def test_csv_needs_its_header_and_reads_gzip(tmp_path):
    """A CSV without the ts,symbol,price,size header is refused; .csv.gz is read as well."""
    plain = tmp_path / "t.csv"
    plain.write_text("time,sym,px,qty\n")
    with pytest.raises(BadFile, match=":1: expected the header"):
        list(read_events(plain))
    packed = tmp_path / "t.csv.gz"
    with gzip.open(packed, "wt") as fh:
        fh.write("ts,symbol,price,size\n2024-03-01T14:30:00.464Z,SPY,167.41,100\n")
    [tick] = read_events(packed)
    assert tick == Tick(
        datetime(2024, 3, 1, 14, 30, 0, 464000, tzinfo=UTC), "SPY", D("167.41"), D(100)
    )


def test_merge_keeps_time_order_and_puts_ticks_first_on_ties():
    """Entries slot in between ticks by ts; on equal ts the tick comes first."""
    t = datetime(2024, 3, 1, tzinfo=UTC)
    ticks = [Tick(t + timedelta(seconds=i), "A", D(1)) for i in range(3)]
    entry = EntryIntent(t + timedelta(seconds=1), "A", Side.LONG, D("0.5"), D(1))
    assert list(merge_by_ts(ticks, [entry])) == [ticks[0], ticks[1], entry, ticks[2]]


def test_records_serialise_with_kind_ts_and_string_decimals():
    """A journal line is flat: kind, ts, then the fields, decimals as strings."""
    record = Record(
        "stop.moved",
        datetime(2024, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=-5))),
        {"symbol": "A", "old": D("9.50"), "new": D("10.00"), "r": D("1.0"), "reason": "1R"},
    )
    assert command_to_json(record) == {
        "kind": "stop.moved",
        "ts": "2024-03-01T19:30:00Z",
        "symbol": "A",
        "old": "9.50",
        "new": "10.00",
        "r": "1.0",
        "reason": "1R",
    }
