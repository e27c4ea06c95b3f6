"""Alert delivery against real local servers on 127.0.0.1: an HTTP receiver for the webhook and
PagerDuty, aiosmtpd for email. Exact payloads, deduplication, rate limits, retries, a hanging
receiver that must not hold up `submit`, and no secret anywhere it should not be."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import Alert
from shell.alerts import AlertDispatcher
from shell.cli import main
from shell.config import AlertSettings, ConfigError, load_settings
from tests.receivers import HTTPReceiver, Silent, SMTPReceiver, free_port

# The SMTP server asks for a login over plain TCP on 127.0.0.1 (no certificate to make).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
TOKEN = "whsec-4f1c9d2e7b"
PD_KEY = "pdkey-93ab17c0e5"
SMTP_PW = "smtp-pw-5e0a8c41"
SECRETS = (TOKEN, PD_KEY, SMTP_PW)
T0 = datetime(2024, 3, 4, 14, 30, 10, tzinfo=UTC)
ALERT = Alert(
    T0,
    "retries_exhausted",
    {"symbol": "SYNA", "key": "SYNA-1", "order_id": "rt-SYNA-1-1-stop", "attempts": 3,
     "failures": ["503", "429"], "stop": Decimal("49.50")},
)  # fmt: skip


@pytest.fixture
def hook() -> Iterator[HTTPReceiver]:
    receiver = HTTPReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def pager() -> Iterator[HTTPReceiver]:
    receiver = HTTPReceiver(default=202)
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SMTPReceiver]:
    receiver = SMTPReceiver("ratchet", SMTP_PW)
    yield receiver
    receiver.close()


def _env(webhook_url: str) -> dict[str, str]:
    return {
        "RATCHET_ALERT_WEBHOOK_URL": webhook_url,
        "RATCHET_PAGERDUTY_ROUTING_KEY": PD_KEY,
        "RATCHET_SMTP_PASSWORD": SMTP_PW,
    }


def _config(
    tmp_path: Path,
    *,
    pager: HTTPReceiver | None = None,
    smtp: SMTPReceiver | None = None,
    webhook: bool = True,
    timeout: float = 5,
    extra: str = "",
) -> Path:
    lines = ['[alerts]', 'source = "ratchet-test"', "retry_delays = [0.01, 0.01, 0.01]",
             f"timeout = {timeout}", extra]  # fmt: skip
    if webhook:
        lines.append("[alerts.webhook]")
    if pager is not None:
        lines += ["[alerts.pagerduty]", f'endpoint = "{pager.url("/v2/enqueue")}"']
    if smtp is not None:
        lines += [
            "[alerts.email]",
            'host = "127.0.0.1"',
            f"port = {smtp.port}",
            'from = "ratchet@example.com"',
            'to = ["ops@example.com", "oncall@example.com"]',
            "starttls = false",
            'username = "ratchet"',
        ]
    path = tmp_path / "ratchet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _settings(path: Path, webhook_url: str) -> AlertSettings:
    return load_settings(path, _env(webhook_url)).alerts


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


SUMMARY = (
    "[ratchet-test] retries_exhausted SYNA-1 at 2024-03-04T14:30:10Z: "
    'order_id=rt-SYNA-1-1-stop, attempts=3, failures=["503","429"], stop=49.50'
)
CONTEXT = {"symbol": "SYNA", "key": "SYNA-1", "order_id": "rt-SYNA-1-1-stop", "attempts": 3,
           "failures": ["503", "429"], "stop": "49.50"}  # fmt: skip


def test_each_sink_receives_its_exact_payload(tmp_path, hook, pager, smtp):
    """One alert: a Slack-compatible webhook body, a PagerDuty v2 trigger, an email."""
    url = hook.url(f"/services/T0/B0/{TOKEN}")
    settings = _settings(_config(tmp_path, pager=pager, smtp=smtp), url)
    dispatcher = AlertDispatcher(settings, tmp_path / "state")
    dispatcher.submit(ALERT)
    assert dispatcher.close(timeout=30)

    assert [r.path for r in hook.requests] == [f"/services/T0/B0/{TOKEN}"]
    assert hook.requests[0].headers["Content-Type"] == "application/json"
    assert hook.bodies() == [
        {
            "text": SUMMARY,
            "source": "ratchet-test",
            "reason": "retries_exhausted",
            "ts": "2024-03-04T14:30:10Z",
            "symbol": "SYNA",
            "key": "SYNA-1",
            "dedup_key": "ratchet:retries_exhausted:SYNA-1",
            "context": CONTEXT,
        }
    ]
    assert [r.path for r in pager.requests] == ["/v2/enqueue"]
    assert pager.bodies() == [
        {
            "routing_key": PD_KEY,
            "event_action": "trigger",
            "dedup_key": "ratchet:retries_exhausted:SYNA-1",
            "payload": {
                "summary": SUMMARY,
                "severity": "critical",
                "source": "ratchet-test",
                "timestamp": "2024-03-04T14:30:10Z",
                "class": "retries_exhausted",
                "custom_details": CONTEXT,
                "component": "SYNA",
            },
        }
    ]
    [mail] = smtp.mails
    assert mail.sender == "ratchet@example.com"
    assert mail.recipients == ("ops@example.com", "oncall@example.com")
    assert mail.login == "ratchet"
    assert mail.message["Subject"] == "[ratchet-test] retries_exhausted SYNA-1"
    assert mail.message["To"] == "ops@example.com, oncall@example.com"
    assert mail.message["Date"] == "Mon, 04 Mar 2024 14:30:10 +0000"
    assert mail.message.get_payload(decode=True).decode().splitlines() == [
        SUMMARY,
        "",
        "symbol: SYNA",
        "key: SYNA-1",
        "order_id: rt-SYNA-1-1-stop",
        "attempts: 3",
        'failures: ["503","429"]',
        "stop: 49.50",
        "",
        "dedup key: ratchet:retries_exhausted:SYNA-1",
        "at: 2024-03-04T14:30:10Z",
    ]
    assert _lines(tmp_path / "state" / "alerts.jsonl") == [
        {"kind": "alert", "ts": "2024-03-04T14:30:10Z", "reason": "retries_exhausted",
         "context": CONTEXT, "dedup_key": "ratchet:retries_exhausted:SYNA-1",
         "suppressed": None}
    ]  # fmt: skip
    assert dispatcher.stats()["delivered"] == {
        "email/retries_exhausted": 1,
        "pagerduty/retries_exhausted": 1,
        "webhook/retries_exhausted": 1,
    }


def test_identical_alerts_reach_each_sink_once_per_window(tmp_path, hook, pager, smtp):
    """Five identical alerts: one delivery per sink, four counted as suppressed, all five in
    alerts.jsonl; the same alert after the window goes out again."""
    settings = _settings(_config(tmp_path, pager=pager, smtp=smtp), hook.url("/h"))
    dispatcher = AlertDispatcher(settings, tmp_path)
    for _ in range(5):
        dispatcher.submit(ALERT)
    assert dispatcher.flush(timeout=30)
    assert (len(hook.requests), len(pager.requests), len(smtp.mails)) == (1, 1, 1)
    for sink in ("webhook", "pagerduty", "email"):
        assert dispatcher.suppressed[(sink, "retries_exhausted")] == 4
    later = Alert(T0 + settings.dedup_window, ALERT.reason, ALERT.context)
    dispatcher.submit(later)
    assert dispatcher.close(timeout=30)
    assert (len(hook.requests), len(pager.requests), len(smtp.mails)) == (2, 2, 2)
    verdicts = [line["suppressed"] for line in _lines(tmp_path / "alerts.jsonl")]
    assert verdicts == [None, "duplicate", "duplicate", "duplicate", "duplicate", None]


def test_one_reason_is_rate_limited_without_holding_up_others(tmp_path, hook):
    """rate_limit = 2 per minute: the third stale_price of the minute is suppressed, an
    order_rejected still goes, and a minute later stale_price goes again."""
    path = _config(tmp_path, extra="rate_limit = 2\nrate_window = 60")
    dispatcher = AlertDispatcher(_settings(path, hook.url("/h")), tmp_path)
    for i, symbol in enumerate("ABC"):
        dispatcher.submit(Alert(T0 + timedelta(seconds=i), "stale_price", {"symbol": symbol}))
    dispatcher.submit(Alert(T0, "order_rejected", {"symbol": "A", "key": "A-1"}))
    dispatcher.submit(Alert(T0 + timedelta(seconds=60), "stale_price", {"symbol": "D"}))
    assert dispatcher.close(timeout=30)
    sent = [(b["reason"], b["symbol"]) for b in hook.bodies()]
    assert sent == [("stale_price", "A"), ("stale_price", "B"), ("order_rejected", "A"),
                    ("stale_price", "D")]  # fmt: skip
    assert dispatcher.suppressed == {("webhook", "stale_price"): 1}
    assert [line["suppressed"] for line in _lines(tmp_path / "alerts.jsonl")] == [
        None, None, "rate_limited", None, None
    ]  # fmt: skip


def test_a_500_is_retried_until_it_succeeds_and_a_400_is_not(tmp_path):
    """The webhook answers 500 then 200: delivered on the second attempt, same body. PagerDuty
    answers 400 (bad request): counted failed after one attempt."""
    hook, pager = HTTPReceiver([500]), HTTPReceiver([400], default=202)
    try:
        settings = _settings(_config(tmp_path, pager=pager), hook.url("/h"))
        dispatcher = AlertDispatcher(settings, tmp_path)
        dispatcher.submit(ALERT)
        assert dispatcher.close(timeout=30)
    finally:
        hook.close()
        pager.close()
    assert len(hook.requests) == 2
    assert hook.requests[0].body == hook.requests[1].body
    assert len(pager.requests) == 1
    stats = dispatcher.stats()
    assert stats["delivered"] == {"webhook/retries_exhausted": 1}
    assert stats["retried"] == {"webhook/retries_exhausted": 1}
    assert stats["failed"] == {"pagerduty/retries_exhausted": 1}


def test_transient_failures_use_every_retry_then_count_a_failure(tmp_path):
    """A receiver that keeps answering 503 gets the first attempt and three retries; nothing
    listening on the port is retried the same way."""
    busy = HTTPReceiver(default=503)
    try:
        path = _config(tmp_path, pager=busy)
        dispatcher = AlertDispatcher(_settings(path, f"http://127.0.0.1:{free_port()}/h"), tmp_path)
        dispatcher.submit(ALERT)
        assert dispatcher.close(timeout=30)
    finally:
        busy.close()
    assert len(busy.requests) == 4
    stats = dispatcher.stats()
    assert stats["failed"] == {"pagerduty/retries_exhausted": 1, "webhook/retries_exhausted": 1}
    assert stats["retried"] == {"pagerduty/retries_exhausted": 3, "webhook/retries_exhausted": 3}
    assert stats["delivered"] == {}


def test_a_hanging_receiver_never_holds_up_submit(tmp_path, caplog):
    """A webhook that accepts and never answers: 200 submits all return while the sink is stuck
    on its first alert; its queue keeps at most queue_size, the rest are counted dropped, and
    alerts.jsonl still gets every alert."""
    silent = Silent()
    extra = "queue_size = 50\ndedup_window = 0\nrate_limit = 0"
    try:
        path = _config(tmp_path, timeout=60, extra=extra)
        dispatcher = AlertDispatcher(_settings(path, silent.url(f"/{TOKEN}")), tmp_path)
        for i in range(200):
            dispatcher.submit(Alert(T0, "stale_price", {"symbol": f"S{i:03d}"}))
        pending = dispatcher.pending()["webhook"]
        dropped = dispatcher.dropped[("webhook", "stale_price")]
        assert dispatcher.delivered[("webhook", "stale_price")] == 0
        assert 50 <= pending <= 51
        assert pending + dropped == 200
        assert dispatcher.flush(timeout=0.0) is False
        deadline = time.monotonic() + 30
        while dispatcher.pending()["file"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_lines(tmp_path / "alerts.jsonl")) == 200
        assert dispatcher.close(timeout=0.0) is False
    finally:
        silent.close()
    assert f"alerts: webhook: {pending} alert(s) left undelivered at shutdown" in caplog.text


def test_no_secret_is_written_logged_or_shown(tmp_path, caplog, capsys):
    """Failures of every sink (500s, a 400, a refused SMTP login) are logged and counted, and
    no secret value shows up in any file, log line, output, repr or error message."""
    caplog.set_level(logging.DEBUG)
    hook, pager = HTTPReceiver(default=500), HTTPReceiver(default=400)
    smtp = SMTPReceiver("ratchet", "another-password")
    state = tmp_path / "state"
    try:
        settings = _settings(_config(tmp_path, pager=pager, smtp=smtp), hook.url(f"/x/{TOKEN}"))
        dispatcher = AlertDispatcher(settings, state)
        dispatcher.submit(ALERT)
        dispatcher.submit(Alert(T0, "order_rejected", {"symbol": "SYNB", "key": "SYNB-1"}))
        assert dispatcher.close(timeout=30)
    finally:
        for server in (hook, pager, smtp):
            server.close()
    assert smtp.auth_attempts and all(not ok for _, ok in smtp.auth_attempts)
    stats = dispatcher.stats()
    assert stats["failed"] == {f"{sink}/{reason}": 1 for sink in ("email", "pagerduty", "webhook")
                               for reason in ("order_rejected", "retries_exhausted")}  # fmt: skip
    assert stats["retried"] == {"webhook/order_rejected": 3, "webhook/retries_exhausted": 3}
    assert "not delivered" in caplog.text
    refusals = []
    for text in ('[alerts.webhook]\nurl = "http://h/x/' + TOKEN + '"\n',
                 f'[alerts.pagerduty]\nrouting_key = "{PD_KEY}"\n',
                 f'[alerts.email]\npassword = "{SMTP_PW}"\n'):  # fmt: skip
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_settings(bad, {})
        refusals.append(f"{info.value} {info.value!r}")
    captured = capsys.readouterr()
    seen = [caplog.text, captured.out, captured.err, repr(vars(dispatcher)), repr(settings),
            str(dispatcher.stats()), "\n".join(dispatcher.report()), *refusals]  # fmt: skip
    seen += [
        p.read_text() for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.suffix != ".toml"
    ]
    for secret in SECRETS:
        for text in seen:
            assert secret not in text


def test_simulate_with_a_refusing_broker_delivers_each_distinct_alert_once(
    tmp_path, hook, pager, smtp
):
    """`ratchet simulate --faults permanent=1 --alerts DIR`: every alert is in alerts.jsonl;
    each distinct one (reason and position) reaches the webhook, PagerDuty and email exactly
    once; the output names no secret."""
    path = _config(tmp_path, pager=pager, smtp=smtp, extra="dedup_window = 86400\nrate_limit = 0")
    state = tmp_path / "state"
    result = CliRunner().invoke(
        main,
        ["simulate", str(SAMPLE), "--faults", "permanent=1", "--config", str(path),
         "--alerts", str(state)],
        env=_env(hook.url(f"/services/{TOKEN}")),
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = _lines(state / "alerts.jsonl")
    distinct = sorted({str(line["dedup_key"]) for line in lines})
    assert len(lines) > len(distinct) >= 2  # repeated refusals, a few distinct causes
    assert {"ratchet:order_rejected:SYNA-1", "ratchet:retries_exhausted:SYNA-1"} <= set(distinct)
    assert sorted(b["dedup_key"] for b in hook.bodies()) == distinct
    assert sorted(b["dedup_key"] for b in pager.bodies()) == distinct
    subjects = sorted(m.message["Subject"] for m in smtp.mails)
    assert len(subjects) == len(distinct) == len(set(subjects))
    suppressed = len(lines) - len(distinct)
    summary = f"alerts: webhook: {len(distinct)} delivered, 0 failed, {suppressed} suppressed"
    assert summary in result.output
    for secret in SECRETS:
        assert secret not in result.output
        assert secret not in (state / "alerts.jsonl").read_text()


def test_run_with_a_refusing_exchange_delivers_each_distinct_alert_once(
    tmp_path, hook, pager, smtp
):
    """`ratchet run --faults permanent=1` (the paper exchange refuses every exit): alerts.jsonl
    in the state directory holds every alert; each distinct one reaches the webhook,
    PagerDuty and email exactly once; neither the output nor the state directory holds a
    secret."""
    path = _config(tmp_path, pager=pager, smtp=smtp, extra="dedup_window = 86400\nrate_limit = 0")
    state = tmp_path / "state"
    result = CliRunner().invoke(
        main,
        ["run", "--faults", "permanent=1", "--config", str(path), "--state-dir", str(state)],
        env=_env(hook.url(f"/services/{TOKEN}")),
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = _lines(state / "alerts.jsonl")
    distinct = sorted({str(line["dedup_key"]) for line in lines})
    assert len(lines) > len(distinct) >= 2
    assert {"ratchet:order_rejected:SYNA-1", "ratchet:retries_exhausted:SYNA-1"} <= set(distinct)
    assert sorted(b["dedup_key"] for b in hook.bodies()) == distinct
    assert sorted(b["dedup_key"] for b in pager.bodies()) == distinct
    assert len({m.message["Subject"] for m in smtp.mails}) == len(smtp.mails) == len(distinct)
    everything = result.output + "".join(
        p.read_text(errors="replace") for p in state.rglob("*") if p.is_file()
    )
    for secret in SECRETS:
        assert secret not in everything
