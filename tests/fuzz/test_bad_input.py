"""`ratchet simulate`, `report` and `phase` on generated bad input, through the real CLI.

Every example damages real input the way files get damaged (random bytes, invalid UTF-8 at
any offset and across the readers' 64 KiB blocks, a cut, a gzip stream cut or corrupted, a
field set to NaN / infinity / 1e30 / a time out of range, a line of junk, an output pointed at
an input, reversed or boundless date ranges, malformed phase history) and checks what a user
would: no traceback and no internal error, the documented exit status, one line on stderr
for a refusal, and every input file byte for byte as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import assume, given
from hypothesis import strategies as st

from shell.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
BLOCK = 1 << 16

INVALID_UTF8 = [
    b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff",
]  # fmt: skip
ODD_VALUES = [
    "nan", "NaN", "inf", "-Infinity", "sNaN", "1e30", "-1e30", "1e999999", "-1", "0", "",
    " ", "1,5", "0x10", "１２", None, True, 1e400, -(10**40), [], {}, "2024-03-04T14:30:00",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "x" * 300,
]  # fmt: skip


# --- running the CLI and checking what the user sees -------------------------------------


def _invoke(args: list[object], env: dict[str, str] | None = None, stdin: str | None = None):
    return CliRunner().invoke(
        main, [str(a) for a in args], catch_exceptions=False, env=env, input=stdin
    )


def _checked(result: Result, allowed: set[int]) -> Result:
    """No traceback, no internal error, an allowed status, and a refusal is one line."""
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything, everything[-2000:]
    assert "internal error" not in everything, result.stderr
    assert result.exit_code in allowed, (result.exit_code, result.stderr[-2000:])
    if result.exit_code == 1:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-2000:]
    if result.exit_code == 2:
        assert result.stderr.splitlines()[-1].startswith("Error: "), result.stderr
    return result


def _fingerprint(root: Path) -> dict[str, str]:
    """sha256 of every file under root (by relative path)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@contextmanager
def _inputs() -> Iterator[Path]:
    """A fresh directory for the inputs of one example."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        root.mkdir()
        yield root


# --- damage ------------------------------------------------------------------------------


class Blob(bytes):
    """Bytes that show as their size and digest (a failing example's report stays readable)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes, sha256 {hashlib.sha256(self).hexdigest()[:12]}>"


def offsets(size: int) -> st.SearchStrategy[int]:
    """Anywhere in `size` bytes, often right around a 64 KiB block boundary."""
    near = [b + d for b in range(BLOCK, size, BLOCK) for d in range(-4, 5) if 0 <= b + d <= size]
    return st.one_of(st.integers(0, size), st.sampled_from(near or [0]))


@st.composite
def damaged(draw: st.DrawFn, data: bytes, json_lines: bool) -> tuple[str, bytes]:
    """(what was done, the damaged bytes) for a text file; never the bytes as they were."""
    how, spoiled = draw(_damage(Blob(data), json_lines))
    assume(spoiled != data)
    return how, Blob(spoiled)


@st.composite
def _damage(draw: st.DrawFn, data: bytes, json_lines: bool) -> tuple[str, bytes]:
    how = draw(st.sampled_from(["utf8", "bytes", "cut", "junk_line", "field", "swap"]))
    if how == "utf8":
        at = draw(offsets(len(data)))
        return how, data[:at] + draw(st.sampled_from(INVALID_UTF8)) + data[at:]
    if how == "bytes":
        at = draw(offsets(len(data)))
        return how, data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if how == "cut":
        return how, data[: draw(st.integers(0, len(data)))]
    lines = data.split(b"\n")
    i = draw(st.integers(0, max(0, len(lines) - 2)))
    if how == "junk_line":
        junk = draw(st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)))
        lines[i] = junk.replace(b"\n", b" ")
    elif how == "field" and json_lines:
        try:
            record = json.loads(lines[i])
        except ValueError:
            record = {}
        if isinstance(record, dict) and record:
            key = draw(st.sampled_from(sorted(record)))
            record[key] = draw(st.sampled_from(ODD_VALUES))
            lines[i] = json.dumps(record, ensure_ascii=False).encode()
    elif how == "field":  # a CSV row: one field
        fields = lines[i].split(b",")
        j = draw(st.integers(0, len(fields) - 1))
        fields[j] = str(draw(st.sampled_from(ODD_VALUES))).encode()
        lines[i] = b",".join(fields)
    else:  # swap two lines: time may go backwards
        j = draw(st.integers(0, max(0, len(lines) - 2)))
        lines[i], lines[j] = lines[j], lines[i]
    return how, b"\n".join(lines)


@st.composite
def packed(draw: st.DrawFn, text: bytes) -> tuple[str, bytes]:
    """(what was done, bytes) for a .gz file: intact, cut, corrupted, trailed, or not gzip."""
    how, body = draw(_pack(Blob(text)))
    return how, Blob(body)


@st.composite
def _pack(draw: st.DrawFn, text: bytes) -> tuple[str, bytes]:
    stream = gzip.compress(text, mtime=0)
    how = draw(st.sampled_from(["intact", "gz_cut", "gz_flip", "gz_junk", "not_gzip"]))
    if how == "gz_cut":
        return how, stream[: draw(st.integers(0, len(stream) - 1))]
    if how == "gz_flip":
        at = draw(st.integers(0, len(stream) - 1))
        flipped = bytes([stream[at] ^ draw(st.integers(1, 255))])
        return how, stream[:at] + flipped + stream[at + 1 :]
    if how == "gz_junk":
        return how, stream + draw(st.binary(min_size=1, max_size=20).filter(lambda b: b[0] != 0))
    if how == "not_gzip":
        return how, text
    return how, stream


# Inputs, built once: the sample as JSONL, its ticks as CSV with its entries beside them.
_SAMPLE = SAMPLE.read_bytes()
_RECORDS = [json.loads(line) for line in _SAMPLE.splitlines()]
_TICKS_CSV = (
    "ts,symbol,price,size\n"
    + "".join(
        f"{r['ts']},{r['symbol']},{r['price']},{r.get('size', '0')}\n"
        for r in _RECORDS
        if r["type"] == "tick"
    )
).encode()
_ENTRIES = "".join(json.dumps(r) + "\n" for r in _RECORDS if r["type"] == "entry").encode()


# --- simulate ----------------------------------------------------------------------------


@given(
    data=st.data(),
    kind=st.sampled_from(["jsonl", "csv", "csv.gz", "jsonl.gz"]),
    skip=st.booleans(),
    as_json=st.booleans(),
    journal=st.sampled_from(["none", "nested", "same", "symlink", "hardlink", "file_in_way"]),
)
def test_simulate_on_bad_input(data, kind, skip, as_json, journal):
    """simulate: exit 0 or 1; damaged gzip always refused whole (skip or not); undecodable
    bytes refused unless skipped; an output onto an input refused; inputs never changed."""
    text = _TICKS_CSV if kind.startswith("csv") else _SAMPLE
    how, body = data.draw(
        damaged(Blob(text), json_lines=not kind.startswith("csv")), label="damage"
    )
    gz = "intact"
    if kind.endswith(".gz"):
        gz, body = data.draw(packed(Blob(body)), label="gzip")
    with _inputs() as root:
        events = root / f"events.{kind}"
        events.write_bytes(body)
        args: list[object] = ["simulate", events]
        if kind.startswith("csv"):
            (root / "entries.jsonl").write_bytes(_ENTRIES)
            args += ["--entries", root / "entries.jsonl"]
        out = root.parent / "out"
        target = {
            "none": None,
            "nested": out / "a" / "b" / "journal.jsonl",
            "same": events,
            "symlink": root / "link.jsonl",
            "hardlink": root / "hard.jsonl",
            "file_in_way": root / "events.jsonl.d" / "j.jsonl",
        }[journal]
        if journal == "symlink":
            (root / "link.jsonl").symlink_to(events)
        elif journal == "hardlink":
            os.link(events, root / "hard.jsonl")
        elif journal == "file_in_way":
            (root / "events.jsonl.d").write_text("a file, not a directory")
        if target is not None:
            args += ["--journal", target]
        args += ["--skip-bad-lines"] if skip else []
        args += ["--json"] if as_json else []
        before = _fingerprint(root)
        result = _checked(_invoke(args), {0, 1})
        assert _fingerprint(root) == before
        if journal in ("same", "symlink", "hardlink"):
            assert result.exit_code == 1 and "would overwrite the input" in result.stderr
        elif journal == "file_in_way":
            assert result.exit_code == 1 and "is a file, not a directory" in result.stderr
        elif gz in ("gz_cut", "not_gzip", "gz_junk"):
            # Refused whole (the reason may be a damaged line met before the stream's end).
            assert result.exit_code == 1
        elif how == "utf8" and not skip and gz == "intact":
            assert result.exit_code == 1 and "not UTF-8" in result.stderr
        if result.exit_code == 0:
            assert result.stdout.strip(), "a summary"
            if journal == "nested" and target is not None:
                assert target.exists()
        elif journal == "nested" and target is not None:
            assert not target.exists(), "no half journal"


_CONFIG_KEYS = [
    "protection.lot_step", "protection.price_increment", "protection.trail",
    "protection.ladder", "protection.partials", "protection.levels", "goal.target",
    "goal.giveback", "goal.on_trigger", "session.timezone", "session.reset", "phase.enabled",
    "phase.equity", "phase.sizes", "orders.retry_delays", "orders.cancel_timeout",
    "orders.breaker_failures", "orders.max_requests_per_minute", "orders.protect_deadline",
    "entries.max_qty", "entries.max_notional", "entries.max_open", "adopt.default_risk",
    "adopt.foreign_orders", "simulation.market_fill", "performance.min_win_rate",
    "performance.timezone", "nonsense.key",
]  # fmt: skip


def _toml(value: object) -> str:
    """A TOML literal for `value` (floats include nan and inf, which TOML spells so)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"


_TOML_LEAVES = st.one_of(
    st.floats(),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(["nan", "inf", "1e999999", "-1", "0", "America", "../../etc", "25:99"]),
)
_TOML_VALUES = st.recursive(
    _TOML_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@given(
    key=st.sampled_from(_CONFIG_KEYS),
    value=_TOML_VALUES,
    raw=st.one_of(st.none(), st.binary(max_size=40)),
    target=st.one_of(st.none(), st.sampled_from(["nan", "inf", "-1", "1e999", "50", ""])),
    giveback=st.one_of(st.none(), st.sampled_from(["nan", "-inf", "0.5", "2", "x"])),
)
def test_simulate_with_bad_settings(key, value, raw, target, giveback):
    """Random values (NaN, infinities, huge, negative, wrong types) for any setting, raw junk
    bytes in the file, and the goal's environment variables: exit 0 or 1, a refusal naming
    the key (or the file and line), and the config file unchanged."""
    section, name = key.split(".")
    body = f"[{section}]\n{name} = {_toml(value)}\n".encode()
    if raw is not None:
        body += raw
    env = {}
    if target is not None:
        env["PROFIT_TARGET_DAILY"] = target
    if giveback is not None:
        env["PROFIT_GIVEBACK_THRESHOLD"] = giveback
    with _inputs() as root:
        config = root / "ratchet.toml"
        config.write_bytes(body)
        before = _fingerprint(root)
        result = _checked(_invoke(["simulate", SAMPLE, "--config", config], env=env), {0, 1})
        assert _fingerprint(root) == before
    if result.exit_code == 1:
        line = result.stderr
        assert str(config) in line or "PROFIT_" in line, line
    if isinstance(value, float) and math.isnan(value) and raw is None:
        assert result.exit_code == 1  # NaN is never a setting


# --- report ------------------------------------------------------------------------------


def _trades_journal() -> bytes:
    """A real journal's trade.closed records: the sample simulated, 6 trades."""
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "j.jsonl"
        result = _invoke(["simulate", SAMPLE, "--journal", journal])
        assert result.exit_code == 0, result.output
        return journal.read_bytes()


_JOURNAL = _trades_journal()
_TRADES = [json.loads(x) for x in _JOURNAL.splitlines() if b'"trade.closed"' in x]
_CSV_FIELDS = ("symbol", "side", "qty", "entry", "exit", "opened", "closed", "pnl", "r", "risk",
               "key")  # fmt: skip
_TRADES_CSV = (
    ",".join(_CSV_FIELDS)
    + "\n"
    + "".join(",".join(str(t[k]) for k in _CSV_FIELDS) + "\n" for t in _TRADES)
).encode()
# Damaged caches of per-day summaries: not JSON, not an object, and entries this version
# never writes (a NaN count, a bad line that is no [path, line, reason]).
_CACHES = {
    "junk": b"\xff{not json",
    "json": b"[1, 2, 3]",
    "wrong": json.dumps({
        "version": 2, "timezone": "America/New_York", "files": {
            "2024-03-04.jsonl": {"sha256": "x", "days": {"bad": {}}, "bad": [1]},
            "2024-03-05.jsonl": {
                "sha256": hashlib.sha256(_JOURNAL).hexdigest(),
                "days": {"2024-03-04": {"trades": "NaN"}}, "bad": [[1, 2, 3]],
            },
        },
    }).encode(),
}  # fmt: skip
_DAYS = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)) | st.sampled_from(
    [date(2024, 3, 4), date(2024, 3, 1), date(2024, 3, 31), date(1900, 1, 1), date(2999, 12, 31)]
)


@given(
    data=st.data(),
    kind=st.sampled_from(["jsonl", "csv", "jsonl.gz", "csv.gz", "state"]),
    window=st.sampled_from(["daily", "weekly", "monthly"]),
    export=st.sampled_from(["md", "json", "csv"]),
    start=st.none() | _DAYS,
    end=st.none() | _DAYS,
    targets=st.booleans(),
    rolling=st.sampled_from([0, 3]),
    cache=st.sampled_from(["none", "junk", "json", "wrong"]),
)
def test_report_on_bad_input(data, kind, window, export, start, end, targets, rolling, cache):
    """report: exit 0, 1 (a file refused), 2 (--start after --end, a date outside 1900-2999,
    a range over 100 years) or 3 (a target missed); a damaged cache is rebuilt; trade files
    and journals never change."""
    text = Blob(_TRADES_CSV if kind.startswith("csv") else _JOURNAL)
    _, body = data.draw(damaged(text, json_lines=not kind.startswith("csv")), label="damage")
    gz = "intact"
    if kind.endswith(".gz"):
        gz, body = data.draw(packed(Blob(body)), label="gzip")
    with _inputs() as root:
        args: list[object] = ["report", "--window", window, "--export", export]
        state = root.parent / "state"
        if kind == "state":
            (root / "journal").mkdir()
            (root / "journal" / "2024-03-04.jsonl").write_bytes(body)
            (root / "journal" / "2024-03-05.jsonl").write_bytes(_JOURNAL)
            state = root
            args += ["--state-dir", state]
            if cache != "none":
                (root / "performance").mkdir()
                (root / "performance" / "daily-cache.json").write_bytes(_CACHES[cache])
        else:
            trades = root / f"trades.{kind}"
            trades.write_bytes(body)
            args += ["--trades", trades]
        if targets:
            config = root / "ratchet.toml"
            config.write_text("[performance]\nmin_win_rate = 0.9\nmax_drawdown = 1\n")
            args += ["--config", config]
        for option, day in (("--start", start), ("--end", end)):
            if day is not None:
                args += [option, f"{day.year:04d}-{day.month:02d}-{day.day:02d}"]
        if rolling:
            args += ["--rolling", rolling]
        journals = root / "journal"
        before = _fingerprint(journals if journals.is_dir() else root)
        result = _checked(_invoke(args), {0, 1, 2, 3})
        assert _fingerprint(journals if journals.is_dir() else root) == before
    in_range = all(d is None or date(1900, 1, 1) <= d <= date(2999, 12, 31) for d in (start, end))
    if not in_range or (start and end and (start > end or (end - start).days >= 36_525)):
        assert result.exit_code == 2
    elif gz in ("gz_cut", "not_gzip", "gz_junk"):
        assert result.exit_code == 1
    if result.exit_code == 0 and export == "json":
        json.loads(result.stdout)


# --- phase -------------------------------------------------------------------------------

_GOOD_HISTORY = [
    {"kind": "phase.override_attempt", "ts": "2024-03-01T12:00:00Z", "to": "trial",
     "accepted": False, "reason": "", "refusal": "wrong password"},
    {"kind": "phase.changed", "ts": "2024-03-01T12:00:01Z", "from": "experience",
     "to": "proof_of_concept", "trigger": "gates", "reason": "", "size_from": "0",
     "size_to": "100"},
    {"kind": "breaker.closed", "ts": "2024-03-02T12:00:00Z", "breaker": "phase"},
]  # fmt: skip


@st.composite
def malformed_lines(draw: st.DrawFn) -> bytes:
    """One history line that can never be read as a record."""
    record = dict(draw(st.sampled_from(_GOOD_HISTORY)))
    how = draw(st.sampled_from(["utf8", "prefix", "not_object", "no_ts", "bad_ts", "bad_to",
                                "bad_kind", "deep"]))  # fmt: skip
    line = json.dumps(record).encode()
    if how == "utf8":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.sampled_from(INVALID_UTF8)) + line[at:]
    if how == "prefix":  # a record cut short: a prefix of an object is never an object
        return line[: draw(st.integers(1, len(line) - 1))]
    if how == "not_object":
        return json.dumps(draw(st.one_of(st.lists(st.integers()), st.text(), st.integers()))
                          ).encode()  # fmt: skip
    if how == "no_ts":
        record.pop("ts")
    elif how == "bad_ts":
        record["ts"] = draw(st.sampled_from(["yesterday", "2024-13-01T00:00:00Z", 20240301,
                                             "2024-03-01T12:00:00", None,
                                             "0001-01-01T00:00:00+01:00"]))  # fmt: skip
    elif how == "bad_to":
        record = {**_GOOD_HISTORY[1], "to": draw(st.sampled_from(["", "gold", None, 3]))}
    elif how == "bad_kind":
        record["kind"] = draw(st.sampled_from([None, "", 7, ["phase.changed"]]))
    else:
        return b"[" * 100_000
    return json.dumps(record).encode()


@given(
    data=st.data(),
    command=st.sampled_from(["status", "status --json", "advance", "ack", "export", "override"]),
    journal_damage=st.booleans(),
)
def test_phase_on_a_malformed_history(data, command, journal_damage):
    """Every phase command refuses a phase-history.jsonl it cannot read, in one line naming
    FILE:LINE, before it decides or appends anything (exit 1; 2 for a reversed export range)."""
    good = [json.dumps(r).encode() for r in _GOOD_HISTORY]
    at = data.draw(st.integers(0, len(good)), label="at")
    lines = [*good[:at], data.draw(malformed_lines(), label="line"), *good[at:]]
    with _inputs() as state:
        history = state / "phase-history.jsonl"
        history.write_bytes(b"\n".join(lines) + b"\n")
        (state / "journal").mkdir()
        journal = _JOURNAL
        if journal_damage:
            _, journal = data.draw(damaged(Blob(_JOURNAL), json_lines=True), label="journal")
        (state / "journal" / "2024-03-04.jsonl").write_bytes(journal)
        args: list[object] = ["phase", *command.split(), "--state-dir", state]
        stdin = None
        env = {"PHASE_OVERRIDE_PASSWORD": "secret"}
        if command == "override":
            args += ["--to", "trial"]
            stdin = data.draw(st.sampled_from(["secret\n", "wrong\n", ""]), label="password")
        elif command == "export":
            for option in ("--start", "--end"):
                day = data.draw(st.none() | _DAYS, label=option)
                if day is not None:
                    args += [option, f"{day.year:04d}-{day.month:02d}-{day.day:02d}"]
        before = _fingerprint(state)
        result = _checked(_invoke(args, env=env, stdin=stdin), {1, 2})
        assert _fingerprint(state) == before
    if result.exit_code == 1:
        assert f"{history}:{at + 1}: " in result.stderr
