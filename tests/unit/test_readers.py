"""Readers on generated bad input: UTF-8 decoded line by line (a character may straddle any
block), an undecodable line is a bad line like any other, and a .gz that is not gzip or is cut
short is refused whole, whatever --skip-bad-lines says."""

from __future__ import annotations

import gzip
import json
import tempfile
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Tick
from shell.codec import BadFile, BadLine, read_events
from shell.performance import read_trades

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
BLOCK = 1 << 16  # the readers' block size: boundaries worth aiming at

# Bytes that are never valid UTF-8 wherever they are put: a lone continuation byte, a lead
# byte without its continuation, an overlong form, a surrogate, bytes UTF-8 never uses.
INVALID_UTF8 = [
    b"\x80", b"\xbf", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\xaf", b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff",
]  # fmt: skip
MULTIBYTE = ["é", "€", "𝄞"]  # 2, 3 and 4 bytes


def _tick_line(symbol: str, second: int = 0, price: str = "1.00") -> str:
    ts = f"2024-03-04T14:30:{second:02d}Z"
    tick = {"type": "tick", "ts": ts, "symbol": symbol, "price": price}
    return json.dumps(tick, ensure_ascii=False) + "\n"


def offsets(size: int) -> st.SearchStrategy[int]:
    """Anywhere in a file of `size` bytes, often right around a block boundary."""
    near = [b + d for b in range(BLOCK, size, BLOCK) for d in range(-4, 5) if 0 <= b + d <= size]
    return st.one_of(st.integers(0, size), st.sampled_from(near or [0]))


@given(
    char=st.sampled_from(MULTIBYTE),
    boundary=st.sampled_from([BLOCK, 2 * BLOCK]),
    into=st.integers(1, 3),
    packed=st.booleans(),
)
def test_a_character_straddling_a_block_boundary_is_read_whole(char, boundary, into, packed):
    """A valid file whose multi-byte character starts 1 to 3 bytes before a 64 KiB boundary
    reads exactly as written (plain and gzip)."""
    width = len(char.encode())
    into = min(into, width - 1)  # bytes of the character before the boundary
    at = boundary - into  # where its first byte must land
    symbol = f"{char}X"
    body = _tick_line(symbol, 1).encode()
    pad = at - body.index(char.encode()) - len(_tick_line("").encode())
    data = _tick_line("P" * pad).encode() + body
    assert data[at : at + width].decode() == char
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("t.jsonl.gz" if packed else "t.jsonl")
        path.write_bytes(gzip.compress(data) if packed else data)
        ticks = list(read_events(path))
    assert [t.symbol for t in ticks] == ["P" * pad, symbol]


def _sample_lines() -> list[bytes]:
    return SAMPLE.read_bytes().splitlines(keepends=True)


@given(data=st.data(), bad=st.sampled_from(INVALID_UTF8), packed=st.booleans())
def test_undecodable_bytes_anywhere_make_exactly_their_line_bad(data, bad, packed):
    """Invalid UTF-8 put at any offset (around block boundaries too) is reported as that line,
    `FILE:LINE: not UTF-8`, refused without --skip-bad-lines and skipped with it; every other
    line is read exactly as before."""
    original = SAMPLE.read_bytes()
    at = data.draw(offsets(len(original)), label="offset")
    spoiled = original[:at] + bad + original[at:]
    line = original.count(b"\n", 0, at) + 1
    lines = _sample_lines()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("events.jsonl.gz" if packed else "events.jsonl")
        path.write_bytes(gzip.compress(spoiled) if packed else spoiled)
        with pytest.raises(BadLine) as caught:
            list(read_events(path))
        assert caught.value.line == line and caught.value.reason.startswith("not UTF-8")
        assert str(caught.value).startswith(f"{path}:{line}: not UTF-8")
        skipped: list[BadLine] = []
        kept = list(read_events(path, skip_bad=True, bad=skipped))
        expected_path = Path(tmp) / "expected.jsonl"
        expected_path.write_bytes(b"".join(lines[: line - 1] + lines[line:]))
        expected = list(read_events(expected_path))
    assert [(b.line, b.reason[:9]) for b in skipped] == [(line, "not UTF-8")]
    assert kept == expected


@given(data=st.data(), skip=st.booleans())
def test_a_gzip_stream_cut_anywhere_refuses_the_whole_file(data, skip):
    """A .csv.gz cut at any byte is refused as a whole (never read up to the cut and called
    complete), with or without --skip-bad-lines."""
    rows = "".join(
        f"2024-03-04T14:30:{i % 60:02d}Z,SPY,{100 + i / 100:.2f},100\n" for i in range(60)
    )
    packed = gzip.compress(("ts,symbol,price,size\n" + rows).encode())
    cut = data.draw(st.integers(1, len(packed) - 1), label="cut")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ticks.csv.gz"
        path.write_bytes(packed[:cut])
        with pytest.raises(BadFile) as caught:
            list(read_events(path, skip_bad=skip, bad=[]))
    assert str(caught.value).startswith(f"{path}: ")
    assert "cut short" in caught.value.reason or "not gzip" in caught.value.reason


@given(junk=st.binary(min_size=1, max_size=40).filter(lambda b: b[0] != 0))
def test_a_corrupt_or_foreign_gz_is_refused_with_its_reason(junk):
    """Not gzip at all, a CRC that does not match, or junk after the stream: refused whole."""
    good = gzip.compress(b"ts,symbol,price,size\n2024-03-04T14:30:00Z,A,1.00,1\n")
    crc = bytearray(good)
    crc[-8] ^= 0xFF
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"plain.csv.gz": b"ts,symbol,price,size\n", "crc.csv.gz": bytes(crc),
                 "junk.csv.gz": good + junk}  # fmt: skip
        reasons = {}
        for name, content in cases.items():
            path = Path(tmp) / name
            path.write_bytes(content)
            with pytest.raises(BadFile) as caught:
                list(read_events(path, skip_bad=True, bad=[]))
            reasons[name] = caught.value.reason
    assert reasons["plain.csv.gz"].startswith("not gzip")
    assert "CRC check failed" in reasons["crc.csv.gz"]
    assert reasons["junk.csv.gz"].startswith(("corrupt gzip", "cut short"))


def test_gzip_members_padding_and_a_byte_order_mark_are_read(tmp_path):
    """Two gzip members, zero padding after the stream and a UTF-8 BOM: all ordinary."""
    one = "\ufeffts,symbol,price,size\n2024-03-04T14:30:00Z,A,1.00,1\n".encode()
    two = b"2024-03-04T14:30:01Z,A,1.01,1\n"
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(one) + gzip.compress(two) + b"\0" * 16)
    assert [t.price for t in read_events(path)] == [D("1.00"), D("1.01")]


def test_csv_rows_that_csv_itself_refuses_are_bad_lines(tmp_path):
    """A field over csv's size limit and an unbalanced quote are bad lines; the lines after
    them are read, never swallowed into the broken row."""
    path = tmp_path / "t.csv"
    path.write_text(
        "ts,symbol,price,size\n"
        "2024-03-04T14:30:00Z,A,1.00,1\n"
        f"2024-03-04T14:30:01Z,{'B' * 200_000},1.00,1\n"
        '2024-03-04T14:30:02Z,"A,1.00,1\n'
        "2024-03-04T14:30:03Z,A,1.03,1\n"
        '2024-03-04T14:30:04Z,A,1.04,"1\n'
        "2024-03-04T14:30:05Z,A,1.05,1\n"
    )
    bad: list[BadLine] = []
    ticks = list(read_events(path, skip_bad=True, bad=bad))
    assert [t.price for t in ticks] == [D("1.00"), D("1.03"), D("1.05")]
    assert [b.line for b in bad] == [3, 4, 6]
    assert "field larger than field limit" in bad[0].reason


def test_an_absurdly_long_line_is_one_bad_line(tmp_path):
    """A 'line' over 1 MiB is a bad line (not a reason to hold the file in memory)."""
    path = tmp_path / "e.jsonl"
    path.write_bytes(
        _tick_line("A", 0).encode() + b"x" * (3 << 20) + b"\n" + _tick_line("A", 1).encode()
    )
    bad: list[BadLine] = []
    ticks = list(read_events(path, skip_bad=True, bad=bad))
    assert len(ticks) == 2 and [(b.line, b.reason[:11]) for b in bad] == [(2, "longer than")]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("qty", "1e30", "qty: '1e30' is out of range: allowed at most 1e12"),
        ("qty", "NaN", "qty: not a finite decimal"),
        ("stop", "-1e13", "stop: '-1e13' is out of range"),
        ("ts", "0001-01-01T00:00:00+05:00", "allowed the years 1900 to 2999"),
        ("ts", "9999-12-31T23:59:59-05:00", "allowed the years 1900 to 2999"),
    ],
)
def test_absurd_numbers_and_times_are_refused_at_read_time(tmp_path, field, value, reason):
    """An entry's qty of 1e30, a NaN, a stop beyond a trillion, a time outside 1900-2999:
    `FILE:LINE: reason`, before the engine sees it."""
    entry = {"type": "entry", "ts": "2024-03-04T14:30:01Z", "symbol": "A", "side": "long",
             "stop": "0.90", "qty": "10", field: value}  # fmt: skip
    path = tmp_path / "e.jsonl"
    path.write_text(_tick_line("A") + json.dumps(entry) + "\n")
    with pytest.raises(BadLine) as caught:
        list(read_events(path))
    assert caught.value.line == 2 and reason in caught.value.reason


def test_trade_logs_get_the_same_readers(tmp_path):
    """report's trade logs: an undecodable line is a bad line and the rest is kept; a cut
    .jsonl.gz is refused whole."""
    trade = {"kind": "trade.closed", "ts": "2024-03-04T15:00:00Z", "symbol": "A", "key": "A-1",
             "side": "long", "qty": "10", "entry": "10", "exit": "11",
             "opened": "2024-03-04T14:00:00Z", "closed": "2024-03-04T15:00:00Z", "pnl": "10",
             "r": "1", "risk": "10"}  # fmt: skip
    line = (json.dumps(trade) + "\n").encode()
    path = tmp_path / "t.jsonl"
    path.write_bytes(line + b'{"kind": "trade.closed", "symbol": "\xff"}\n' + line)
    bad: list[BadLine] = []
    assert len(read_trades(path, bad)) == 2
    assert [(b.line, b.reason[:9]) for b in bad] == [(2, "not UTF-8")]
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(line * 50)[:-3])
    with pytest.raises(BadFile, match="cut short"):
        read_trades(packed, [])
    table = tmp_path / "t.csv.gz"
    header = "symbol,side,qty,entry,exit,opened,closed,pnl,r,risk\n"
    row = "A,long,10,10,11,2024-03-04T14:00:00Z,2024-03-04T15:00:00Z,10,1,10\n"
    table.write_bytes(gzip.compress((header + row).encode()))
    assert [t.pnl for t in read_trades(table, [])] == [D(10)]


def test_first_straddle_case_by_hand(tmp_path):
    """The case that was reported: '€' split 2 + 1 across the first 64 KiB block of a CSV."""
    head = "ts,symbol,price,size\n"
    filler = "".join(
        f"2024-03-04T14:30:00Z,F{i:05d},1.00,1\n" for i in range(2400)
    )  # 2400 * 31 bytes: past one block
    text = head + filler
    start = text.encode().rfind(b"\n", 0, BLOCK - 40) + 1
    row = "2024-03-04T14:30:01Z,"
    pad = BLOCK - 2 - start - len(row)  # '€' (3 bytes) starts 2 bytes before the boundary
    symbol = "Q" * pad + "€"
    data = text.encode()[:start] + f"{row}{symbol},1.00,1\n".encode()
    assert data[BLOCK - 2 : BLOCK + 1].decode() == "€"
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    ticks = list(read_events(path))
    assert isinstance(ticks[-1], Tick) and ticks[-1].symbol == symbol
