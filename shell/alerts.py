"""Alert delivery: every engine `Alert` is appended to `alerts.jsonl` in the state directory and
sent to the sinks of `[alerts]` — a Slack-compatible webhook, PagerDuty Events v2 and email
over SMTP — deduplicated and rate-limited per reason, retried with backoff, beside the engine
loop (`submit` returns at once).

Secrets (the webhook URL, the routing key, the SMTP password) live in `Secret`s from the
environment; they are revealed only to the request that needs them, and every error text is
scrubbed of them before it is logged.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from engine import Alert, Command
from shell.background import Worker
from shell.codec import command_to_json, format_ts, to_jsonable
from shell.config import AlertSettings, EmailSink, PagerDutySink
from shell.secret import redact

__all__ = [
    "SINKS",
    "AlertDispatcher",
    "DeliveryError",
    "Gate",
    "dedup_key",
    "describe_error",
    "email_message",
    "pagerduty_payload",
    "post_json",
    "send_email",
    "summary",
    "webhook_payload",
]

SINKS = ("webhook", "pagerduty", "email")
_log = logging.getLogger("ratchet.alerts")
_SUMMARY_MAX = 1024  # PagerDuty's limit for payload.summary


# --- what each sink receives (pure) -------------------------------------------------------


def _position(alert: Alert) -> tuple[str, str]:
    """(symbol, position key) named in the alert's context, '' when none."""
    symbol = alert.context.get("symbol")
    key = alert.context.get("key")
    return (symbol if isinstance(symbol, str) else "", key if isinstance(key, str) else "")


def dedup_key(alert: Alert) -> str:
    """One key per alert reason and position (or symbol, or nothing): `ratchet:REASON:WHERE`."""
    symbol, key = _position(alert)
    return f"ratchet:{alert.reason}:{key or symbol or '-'}"


def _plain(value: object) -> str:
    data = to_jsonable(value)
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


def summary(alert: Alert, source: str) -> str:
    """One line for a human: who, what, which position, when, and the context."""
    symbol, key = _position(alert)
    where = key or symbol
    head = f"[{source}] {alert.reason}{f' {where}' if where else ''} at {format_ts(alert.ts)}"
    details = ", ".join(
        f"{name}={_plain(value)}"
        for name, value in alert.context.items()
        if name not in ("symbol", "key")
    )
    text = f"{head}: {details}" if details else head
    return text if len(text) <= _SUMMARY_MAX else text[: _SUMMARY_MAX - 1] + "…"


def webhook_payload(alert: Alert, source: str) -> dict[str, Any]:
    """Slack-compatible: `text` for the channel, and the alert's fields for other receivers."""
    symbol, key = _position(alert)
    return {
        "text": summary(alert, source),
        "source": source,
        "reason": alert.reason,
        "ts": format_ts(alert.ts),
        "symbol": symbol or None,
        "key": key or None,
        "dedup_key": dedup_key(alert),
        "context": to_jsonable(dict(alert.context)),
    }


def pagerduty_payload(alert: Alert, sink: PagerDutySink, source: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 trigger; repeats of one reason and position share an incident."""
    symbol, _ = _position(alert)
    payload: dict[str, Any] = {
        "summary": summary(alert, source),
        "severity": sink.severity,
        "source": source,
        "timestamp": format_ts(alert.ts),
        "class": alert.reason,
        "custom_details": to_jsonable(dict(alert.context)),
    }
    if symbol:
        payload["component"] = symbol
    return {
        "routing_key": sink.routing_key.reveal(),
        "event_action": "trigger",
        "dedup_key": dedup_key(alert),
        "payload": payload,
    }


def email_message(alert: Alert, sink: EmailSink, source: str) -> EmailMessage:
    """A plain-text email: the summary, each context field on its line, the dedup key."""
    symbol, key = _position(alert)
    message = EmailMessage()
    message["From"] = sink.sender
    message["To"] = ", ".join(sink.to)
    message["Subject"] = f"[{source}] {alert.reason}{f' {key or symbol}' if key or symbol else ''}"
    message["Date"] = format_datetime(alert.ts)
    lines = [summary(alert, source), ""]
    lines += [f"{name}: {_plain(value)}" for name, value in alert.context.items()]
    lines += ["", f"dedup key: {dedup_key(alert)}", f"at: {format_ts(alert.ts)}"]
    message.set_content("\n".join(lines) + "\n")
    return message


# --- which alerts go out ------------------------------------------------------------------


class Gate:
    """Deduplication per reason and position, and a rate limit per reason, both on the alerts'
    own timestamps (so a replay decides exactly as the live run did)."""

    def __init__(self, dedup_window: timedelta, rate_limit: int, rate_window: timedelta) -> None:
        self.dedup_window = dedup_window
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self._last: dict[str, datetime] = {}
        self._recent: dict[str, deque[datetime]] = {}

    def admit(self, alert: Alert, key: str) -> str | None:
        """None when the alert goes out; else why not (`duplicate`, `rate_limited`)."""
        last = self._last.get(key)
        if last is not None and self.dedup_window and alert.ts - last < self.dedup_window:
            return "duplicate"
        if self.rate_limit:
            recent = self._recent.setdefault(alert.reason, deque())
            while recent and alert.ts - recent[0] >= self.rate_window:
                recent.popleft()
            if len(recent) >= self.rate_limit:
                return "rate_limited"
            recent.append(alert.ts)
        self._last[key] = alert.ts
        if len(self._last) > 10_000:  # forget keys whose window has passed
            self._last = {
                k: ts for k, ts in self._last.items() if alert.ts - ts < self.dedup_window
            }
        return None


# --- how it is sent -----------------------------------------------------------------------


class DeliveryError(Exception):
    """A delivery attempt failed; `transient` says whether trying again may help."""

    def __init__(self, text: str, *, transient: bool) -> None:
        super().__init__(text)
        self.transient = transient


def describe_error(exc: BaseException) -> tuple[str, bool]:
    """(what went wrong in a few words, whether to retry), from the exception's type and codes
    only: never its message, which may quote a URL."""
    match exc:
        case DeliveryError():
            return str(exc), exc.transient
        case urllib.error.HTTPError():
            return f"HTTP {exc.code}", exc.code == 429 or exc.code >= 500
        case urllib.error.URLError():
            reason = exc.reason
            if isinstance(reason, BaseException):
                return describe_error(reason)
            return "unreachable", True
        case TimeoutError():
            return "timed out", True
        case smtplib.SMTPAuthenticationError():
            return f"SMTP {exc.smtp_code}: login refused", False
        case smtplib.SMTPRecipientsRefused():
            return "SMTP: every recipient refused", False
        case smtplib.SMTPResponseException():
            return f"SMTP {exc.smtp_code}", 400 <= exc.smtp_code < 500
        case smtplib.SMTPServerDisconnected():
            return "SMTP: server disconnected", True
        case smtplib.SMTPNotSupportedError():
            return "SMTP: the server does not support what the config asks (STARTTLS?)", False
        case ssl.SSLError():
            return f"TLS: {exc.reason or type(exc).__name__}", False
        case OSError():
            return (exc.strerror or type(exc).__name__).lower(), True
        case http.client.HTTPException():
            return f"HTTP: {type(exc).__name__}", True
        case _:
            return type(exc).__name__, False


def post_json(url: str, body: Mapping[str, Any], timeout: float) -> int:
    """POST one JSON body; the HTTP status on success (2xx), else an exception."""
    data = json.dumps(body, separators=(",", ":")).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "ratchet"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
        status: int = response.status
    return status


def send_email(message: EmailMessage, sink: EmailSink, timeout: float) -> None:
    """Send one message over SMTP (STARTTLS and a login when configured)."""
    with smtplib.SMTP(sink.host, sink.port, timeout=timeout) as smtp:
        if sink.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if sink.username is not None and sink.password is not None:
            smtp.login(sink.username, sink.password.reveal())
        smtp.send_message(message)


# --- the dispatcher -----------------------------------------------------------------------


class AlertDispatcher:
    """Appends every alert to `STATE_DIR/alerts.jsonl` and queues the admitted ones for each
    configured sink; one thread per sink delivers, retrying transient failures.

    Counters (by (sink, reason)) for a metrics exporter: `delivered`, `failed` (every attempt
    used, or refused for good), `suppressed` (duplicate or over the rate limit), `dropped`
    (the sink's queue was full), `retried` (attempts after the first). `lines` counts the
    lines written to alerts.jsonl; `file_errors` the batches it could not write.
    """

    def __init__(self, settings: AlertSettings, state_dir: Path) -> None:
        self.settings = settings
        self.path = state_dir / "alerts.jsonl"
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.delivered: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[tuple[str, str]] = Counter()
        self.suppressed: Counter[tuple[str, str]] = Counter()
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.retried: Counter[tuple[str, str]] = Counter()
        self.lines = 0
        self.file_errors = 0
        self._gate = Gate(settings.dedup_window, settings.rate_limit, settings.rate_window)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._secrets = settings.secrets()
        self._file: Worker[tuple[Alert, str, str | None]] = Worker(
            "ratchet-alerts-file", self._write, capacity=100_000, batch=512
        )
        senders: dict[str, Callable[[Alert], None]] = {}
        if settings.webhook is not None:
            senders["webhook"] = self._send_webhook
        if settings.pagerduty is not None:
            senders["pagerduty"] = self._send_pagerduty
        if settings.email is not None:
            senders["email"] = self._send_email
        self._sinks: dict[str, Worker[Alert]] = {
            name: Worker(
                f"ratchet-alerts-{name}",
                self._deliverer(name, send),
                capacity=settings.queue_size,
            )
            for name, send in senders.items()
        }

    @property
    def sinks(self) -> tuple[str, ...]:
        """The configured sinks, in SINKS order."""
        return tuple(self._sinks)

    def submit(self, command: Command) -> None:
        """Take any engine command; an Alert is queued for the file and the sinks. Returns at
        once: nothing here waits for a disk or a network."""
        if not isinstance(command, Alert):
            return
        key = dedup_key(command)
        with self._lock:
            why = self._gate.admit(command, key)
        if not self._file.put((command, key, why)):
            self._count(self.dropped, "file", command.reason)
        for name, worker in self._sinks.items():
            if why is not None:
                self._count(self.suppressed, name, command.reason)
            elif not worker.put(command):
                self._count(self.dropped, name, command.reason)

    def pending(self) -> dict[str, int]:
        """Alerts queued and not yet handled, per sink and for the file."""
        out = {name: worker.pending for name, worker in self._sinks.items()}
        out["file"] = self._file.pending
        return out

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is written and delivered (or failed)."""
        deadline = time.monotonic() + timeout
        done = True
        for worker in self._workers():
            done = worker.flush(max(0.0, deadline - time.monotonic())) and done
        return done

    def _workers(self) -> list[Worker[Any]]:
        return [*self._sinks.values(), self._file]

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued within `timeout` seconds, then stop; False (with a warning
        naming the count) when some alerts were left undelivered."""
        deadline = time.monotonic() + timeout
        done = True
        workers: list[tuple[str, Worker[Any]]] = [*self._sinks.items(), ("file", self._file)]
        for name, worker in workers:
            if not worker.close(max(0.0, deadline - time.monotonic())):
                done = False
                left = worker.abandoned + worker.pending
                _log.warning("alerts: %s: %d alert(s) left undelivered at shutdown", name, left)
        if self._fd is not None and self._file.pending == 0:
            os.close(self._fd)
            self._fd = None
        return done

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters as plain dicts keyed `sink/reason`, sorted (for reports and tests)."""
        with self._lock:
            return {
                name: {f"{s}/{r}": n for (s, r), n in sorted(counter.items())}
                for name, counter in (
                    ("delivered", self.delivered),
                    ("failed", self.failed),
                    ("suppressed", self.suppressed),
                    ("dropped", self.dropped),
                    ("retried", self.retried),
                )
            }

    def report(self) -> list[str]:
        """What became of the alerts, one line for the file and one per sink."""
        lines = [f"alerts: {self.lines} written to {self.path}"]
        for sink in self._sinks:
            counts = ", ".join(
                f"{sum(n for (s, _), n in counter.items() if s == sink)} {name}"
                for name, counter in (
                    ("delivered", self.delivered),
                    ("failed", self.failed),
                    ("suppressed", self.suppressed),
                    ("dropped", self.dropped),
                )
            )
            lines.append(f"alerts: {sink}: {counts}")
        return lines

    def _count(self, counter: Counter[tuple[str, str]], sink: str, reason: str) -> None:
        with self._lock:
            counter[(sink, reason)] += 1

    # alerts.jsonl ---------------------------------------------------------------------------

    def _write(self, items: list[tuple[Alert, str, str | None]]) -> None:
        lines = []
        for alert, key, why in items:
            line = {**command_to_json(alert), "dedup_key": key, "suppressed": why}
            lines.append(json.dumps(line, separators=(",", ":")) + "\n")
        data = "".join(lines).encode()
        try:
            fd = self._fd if self._fd is not None else self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            self.file_errors += 1
            _log.error("alerts: cannot write %s: %s", self.path, exc.strerror or exc)
            return
        self.lines += len(lines)

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size:  # a line torn by a crash is ended, so the next one starts clean
            with self.path.open("rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(fd, b"\n")
        self._fd = fd
        return fd

    # the sinks ------------------------------------------------------------------------------

    def _deliverer(self, name: str, send: Callable[[Alert], None]) -> Callable[[list[Alert]], None]:
        def deliver(alerts: list[Alert]) -> None:
            for alert in alerts:
                self._deliver(name, send, alert)

        return deliver

    def _deliver(self, name: str, send: Callable[[Alert], None], alert: Alert) -> None:
        delays = self.settings.retry_delays
        abandon = self._sinks[name].abandon
        for attempt in range(len(delays) + 1):
            try:
                send(alert)
            except Exception as exc:
                text, transient = describe_error(exc)
                text = redact(text, self._secrets)
                if transient and attempt < len(delays) and not abandon.is_set():
                    self._count(self.retried, name, alert.reason)
                    _log.info(
                        "alerts: %s: %s failed (%s); retry in %g s",
                        name,
                        dedup_key(alert),
                        text,
                        delays[attempt],
                    )
                    abandon.wait(delays[attempt])
                    continue
                self._count(self.failed, name, alert.reason)
                _log.warning(
                    "alerts: %s: %s not delivered after %d attempt(s): %s",
                    name,
                    dedup_key(alert),
                    attempt + 1,
                    text,
                )
                return
            self._count(self.delivered, name, alert.reason)
            return

    def _send_webhook(self, alert: Alert) -> None:
        assert self.settings.webhook is not None
        body = webhook_payload(alert, self.settings.source)
        post_json(self.settings.webhook.url.reveal(), body, self.settings.timeout)

    def _send_pagerduty(self, alert: Alert) -> None:
        sink = self.settings.pagerduty
        assert sink is not None
        post_json(sink.endpoint, pagerduty_payload(alert, sink, self.settings.source),
                  self.settings.timeout)  # fmt: skip

    def _send_email(self, alert: Alert) -> None:
        sink = self.settings.email
        assert sink is not None
        send_email(email_message(alert, sink, self.settings.source), sink, self.settings.timeout)
