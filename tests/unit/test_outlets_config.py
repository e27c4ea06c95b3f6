"""`[alerts]` and `[store]`: secrets from the environment only and never echoed; bad values
refused with key, value and what is allowed; the alert gate's windows."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine import Alert
from shell.alerts import Gate, dedup_key
from shell.config import ConfigError, parse_settings
from shell.secret import Secret, redact

HOOK = "https://hooks.example.com/services/T0/B0/whsec-4f1c9d2e7b"
PD_KEY = "pdkey-93ab17c0e5"
SMTP_PW = "smtp-pw-5e0a8c41"
ENV = {
    "RATCHET_ALERT_WEBHOOK_URL": HOOK,
    "RATCHET_PAGERDUTY_ROUTING_KEY": PD_KEY,
    "RATCHET_SMTP_PASSWORD": SMTP_PW,
}
EMAIL = {"host": "smtp.example.com", "from": "ratchet@example.com", "to": "ops@example.com"}


def _refusal(data: dict[str, object], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(data, ENV if env is None else env)
    return str(info.value)


def test_every_sink_is_built_from_its_table_and_the_environment():
    """Tables switch sinks on; the secrets come from the environment and print as <secret>."""
    settings = parse_settings(
        {"alerts": {"webhook": {}, "pagerduty": {"severity": "error"},
                    "email": {**EMAIL, "username": "ratchet", "port": 2525, "starttls": False}}},
        ENV,
    ).alerts  # fmt: skip
    assert settings.webhook is not None and settings.webhook.url.reveal() == HOOK
    assert settings.pagerduty is not None and settings.pagerduty.routing_key.reveal() == PD_KEY
    assert settings.pagerduty.severity == "error"
    assert settings.email is not None and settings.email.password is not None
    assert settings.email.password.reveal() == SMTP_PW
    assert (settings.email.port, settings.email.starttls, settings.email.to) == (
        2525, False, ("ops@example.com",)
    )  # fmt: skip
    shown = f"{settings!r} {settings} {settings.email.password:>20}"
    for secret in (HOOK, PD_KEY, SMTP_PW, "whsec-4f1c9d2e7b"):
        assert secret not in shown
    assert "<secret>" in shown


def test_no_table_no_sink_and_enabled_false_turns_one_off():
    """Without [alerts] nothing is delivered; `enabled = false` needs no secret at all."""
    assert parse_settings({}, ENV).alerts.secrets() == ()
    off = parse_settings({"alerts": {"webhook": {"enabled": False}}}, {}).alerts
    assert off.webhook is None


@pytest.mark.parametrize(
    ("sink", "key", "value", "variable"),
    [
        ("webhook", "url", HOOK, "RATCHET_ALERT_WEBHOOK_URL"),
        ("pagerduty", "routing_key", PD_KEY, "RATCHET_PAGERDUTY_ROUTING_KEY"),
        ("email", "password", SMTP_PW, "RATCHET_SMTP_PASSWORD"),
    ],
)
def test_a_secret_in_the_file_is_refused_without_echoing_it(sink, key, value, variable):
    """A secret named directly in ratchet.toml is refused, naming the variable to use."""
    table = {**EMAIL, "username": "u"} if sink == "email" else {}
    message = _refusal({"alerts": {sink: {**table, key: value}}})
    assert f"alerts.{sink}.{key}" in message
    assert variable in message
    assert value not in message
    assert "whsec" not in message


@pytest.mark.parametrize(
    ("data", "variable"),
    [
        ({"alerts": {"webhook": {}}}, "RATCHET_ALERT_WEBHOOK_URL"),
        ({"alerts": {"pagerduty": {}}}, "RATCHET_PAGERDUTY_ROUTING_KEY"),
        ({"alerts": {"email": {**EMAIL, "username": "u"}}}, "RATCHET_SMTP_PASSWORD"),
    ],
)
def test_a_sink_without_its_secret_names_the_variable(data, variable):
    """An enabled sink whose secret is not in the environment is refused at start."""
    message = _refusal(data, {})
    assert f"{variable} is not set" in message


def test_a_malformed_webhook_url_is_refused_without_showing_it():
    """The webhook URL is checked, and the message never quotes it."""
    message = _refusal({"alerts": {"webhook": {}}}, {"RATCHET_ALERT_WEBHOOK_URL": "whsec-bare"})
    assert message == "RATCHET_ALERT_WEBHOOK_URL: not an http(s) URL (the value is not shown)"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"rate_limit": -1}, "alerts.rate_limit = -1: allowed a whole number 0 to 10000"),
        ({"dedup_window": "soon"}, "alerts.dedup_window = 'soon': not a number"),
        ({"rate_window": 0}, "alerts.rate_window = 0: allowed more than 0 to 86400 seconds"),
        ({"timeout": 500}, "alerts.timeout = 500: allowed more than 0 to 120 seconds"),
        ({"retry_delays": [0.5, 90]}, "alerts.retry_delays[1] = 90: allowed 0 to 60 seconds"),
        ({"queue_size": 0}, "alerts.queue_size = 0: allowed a whole number 1 to 1000000"),
        ({"source": ""}, "alerts.source = '': allowed a name of 1 to 255 characters"),
        ({"pagerduty": {"severity": "loud"}},
         "alerts.pagerduty.severity = 'loud': allowed critical, error, warning, info"),
        ({"pagerduty": {"endpoint": "ftp://x"}},
         "alerts.pagerduty.endpoint = 'ftp://x': expected an http(s) URL"),
        ({"email": {**EMAIL, "port": 70000}},
         "alerts.email.port = 70000: allowed a whole number 1 to 65535"),
        ({"email": {**EMAIL, "to": ["ops@example.com", "nobody"]}},
         "alerts.email.to[1] = 'nobody': expected an email address"),
        ({"webhook": {"channel": "#ops"}}, "unknown key(s) alerts.webhook.channel"),
    ],
)  # fmt: skip
def test_bad_alert_values_name_key_value_and_range(data, expected):
    """Each bad [alerts] value is refused with its key, its value and what is allowed."""
    assert expected in _refusal({"alerts": data})


def test_store_url_with_a_password_in_the_file_is_refused_unseen():
    """A password in [store] url is refused, and the URL is not shown."""
    for url in (
        "postgresql://ratchet:hunter2-pw@db.example.com/ratchet",
        "postgresql://ratchet@db.example.com/ratchet?password=hunter2-pw",
    ):
        message = _refusal({"store": {"url": url}}, {})
        assert message.startswith("store.url: holds a password")
        assert "PGPASSWORD" in message and "RATCHET_STORE_URL" in message
        assert "hunter2-pw" not in message


def test_store_url_from_the_environment_wins_and_may_carry_a_password():
    """RATCHET_STORE_URL overrides [store] url; it may hold a password, kept as a Secret."""
    url = "postgresql://ratchet:hunter2-pw@db.example.com:6432/ratchet"
    store = parse_settings(
        {"store": {"url": "postgresql://postgres@127.0.0.1/test", "schema": "bot_1"}},
        {"RATCHET_STORE_URL": url},
    ).store
    assert store.url is not None and store.url.reveal() == url
    assert store.schema == "bot_1"
    assert "hunter2-pw" not in repr(store)
    assert parse_settings({}, {}).store.url is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"url": "mysql://x@y/z"}, "store.url = 'mysql://x@y/z': expected postgresql://"),
        ({"schema": "drop table"}, "store.schema = 'drop table': allowed a PostgreSQL name"),
        ({"batch_size": 0}, "store.batch_size = 0: allowed a whole number 1 to 10000"),
        ({"buffer": True}, "store.buffer = True: allowed a whole number 1 to 10000000"),
    ],
)
def test_bad_store_values_name_key_value_and_range(data, expected):
    """Each bad [store] value is refused with its key, its value and what is allowed."""
    assert expected in _refusal({"store": data}, {})


def test_redact_removes_a_secret_url_and_its_path():
    """Error text quoting a secret URL, or only its path, comes out scrubbed."""
    secret = Secret(HOOK)
    text = f"failed: {HOOK}; then /services/T0/B0/whsec-4f1c9d2e7b refused"
    assert redact(text, [secret, None]) == "failed: <secret>; then <secret> refused"


T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


def _alert(seconds: float, reason: str = "stale_price", key: str = "SPY-1") -> Alert:
    return Alert(T0 + timedelta(seconds=seconds), reason, {"symbol": key[:3], "key": key})


def test_gate_lets_one_alert_per_reason_and_position_through_per_window():
    """Repeats inside the dedup window are duplicates; at the window's end one goes again."""
    gate = Gate(timedelta(seconds=600), 0, timedelta(seconds=60))
    verdicts = [gate.admit(a, dedup_key(a)) for a in (_alert(0), _alert(1), _alert(599),
                                                      _alert(600), _alert(601))]  # fmt: skip
    assert verdicts == [None, "duplicate", "duplicate", None, "duplicate"]
    other = _alert(2, key="SPY-2")
    assert gate.admit(other, dedup_key(other)) is None


def test_gate_rate_limits_each_reason_on_its_own():
    """At most `rate_limit` alerts of one reason per window; other reasons are not counted."""
    gate = Gate(timedelta(0), 2, timedelta(seconds=60))
    keys = ["A-1", "B-1", "C-1"]
    stale = [gate.admit(a, dedup_key(a)) for a in (_alert(0, key=k) for k in keys)]
    assert stale == [None, None, "rate_limited"]
    rejected = _alert(1, "order_rejected", "D-1")
    assert gate.admit(rejected, dedup_key(rejected)) is None
    later = _alert(60, key="E-1")
    assert gate.admit(later, dedup_key(later)) is None


def test_the_readme_alerts_and_store_examples_load():
    """The README's [alerts] and [store] examples are valid configurations (with the secrets
    in the environment), and every sink in them is on."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```toml")[1:]]
    [alerts] = [b for b in blocks if b.startswith("\n[alerts]")]
    [store] = [b for b in blocks if b.startswith("\n[store]")]
    settings = parse_settings(tomllib.loads(alerts + store), ENV)
    assert settings.alerts.webhook and settings.alerts.pagerduty and settings.alerts.email
    assert settings.alerts.email.to == ("ops@example.com", "oncall@example.com")
    assert settings.store.url is not None
    assert settings.store.url.reveal() == "postgresql://ratchet@db.example.com:5432/ratchet"
