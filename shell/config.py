"""`ratchet.toml`: read, validated and turned into the engine's Config; a bad value is refused
with its key, the value and what is allowed."""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import field, frozen

from engine import Config, PriceGrid, ProtectionConfig, Rung, Tranche
from engine.analytics import Targets
from engine.config import SessionConfig
from engine.goal import GoalConfig, OnTrigger
from engine.phase import Phase, PhaseConfig
from shell.errors import UserError
from shell.secret import Secret

__all__ = [
    "ENV_GIVEBACK",
    "ENV_PAGERDUTY_KEY",
    "ENV_SMTP_PASSWORD",
    "ENV_STORE_URL",
    "ENV_TARGET",
    "ENV_WEBHOOK_URL",
    "PAGERDUTY_ENDPOINT",
    "SEVERITIES",
    "AlertSettings",
    "ConfigError",
    "EmailSink",
    "PagerDutySink",
    "Settings",
    "StoreSettings",
    "WebhookSink",
    "has_password",
    "load_settings",
    "parse_settings",
    "zone",
]


class ConfigError(UserError, ValueError):
    """A configuration value ratchet refuses to start with."""


ENV_WEBHOOK_URL = "RATCHET_ALERT_WEBHOOK_URL"
ENV_PAGERDUTY_KEY = "RATCHET_PAGERDUTY_ROUTING_KEY"
ENV_SMTP_PASSWORD = "RATCHET_SMTP_PASSWORD"
ENV_STORE_URL = "RATCHET_STORE_URL"
PAGERDUTY_ENDPOINT = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")


@frozen
class WebhookSink:
    """A Slack-compatible incoming webhook; its URL is the secret."""

    url: Secret


@frozen
class PagerDutySink:
    """PagerDuty Events API v2: the integration's routing key is the secret."""

    routing_key: Secret
    endpoint: str = PAGERDUTY_ENDPOINT
    severity: str = "critical"


@frozen
class EmailSink:
    """Email over SMTP; the password (when the server wants a login) is the secret."""

    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password: Secret | None = None


@frozen
class AlertSettings:
    """`[alerts]`: the sinks, and how often one alert may reach them."""

    webhook: WebhookSink | None = None
    pagerduty: PagerDutySink | None = None
    email: EmailSink | None = None
    source: str = "ratchet"
    dedup_window: timedelta = timedelta(minutes=10)
    rate_limit: int = 10  # deliveries per reason per rate_window; 0: no limit
    rate_window: timedelta = timedelta(minutes=1)
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0)
    timeout: float = 10.0
    queue_size: int = 1000

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret the sinks hold (to scrub them out of error text)."""
        found = (
            self.webhook.url if self.webhook else None,
            self.pagerduty.routing_key if self.pagerduty else None,
            self.email.password if self.email else None,
        )
        return tuple(s for s in found if s is not None)


@frozen
class StoreSettings:
    """`[store]`: the PostgreSQL database that keeps a copy of the journal's records."""

    url: Secret | None = None  # None: no store; the URL may carry a password from the env
    schema: str = "public"
    batch_size: int = 500
    buffer: int = 100_000


@frozen
class Settings:
    """The engine's Config plus the shell's own options."""

    config: Config = field(factory=Config)
    market_fill: str = "next"
    performance_timezone: str = "America/New_York"
    targets: Targets = field(factory=Targets)
    alerts: AlertSettings = field(factory=AlertSettings)
    store: StoreSettings = field(factory=StoreSettings)
    # `[broker] hours`: the market calendar a run builds `Config.hours` from.
    hours: str = "us_equity"


_PROTECTION_KEYS = {
    "ladder",
    "partials",
    "levels",
    "trail",
    "lot_step",
    "take_profit",
    "price_increment",
    "sub_dollar_increment",
    "extended_exit",
    "extended_offset",
    "extended_partials",
}
_SIMULATION_KEYS = {"market_fill"}
_GOAL_KEYS = {"target", "giveback", "on_trigger"}
_SESSION_KEYS = {"timezone", "reset"}
_PHASE_KEYS = {"enabled", "start", "equity", "sizes", "trade_limits", "scaling_max"}
ENV_TARGET = "PROFIT_TARGET_DAILY"
ENV_GIVEBACK = "PROFIT_GIVEBACK_THRESHOLD"
_PERFORMANCE_KEYS = {
    "timezone",
    "min_win_rate",
    "min_avg_r",
    "min_profit_factor",
    "min_expectancy",
    "max_drawdown",
}


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from a TOML file (every key optional; defaults without one), overridden by
    the environment (`PROFIT_TARGET_DAILY`, `PROFIT_GIVEBACK_THRESHOLD`, `RATCHET_STORE_URL`),
    which alone holds the secrets of [alerts] and [store]."""
    env = os.environ if env is None else env
    if path is None:
        return parse_settings({}, env)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start]
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{byte:02x}); TOML is UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    try:
        return parse_settings(data, env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_settings(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed TOML document (and the environment, which wins)."""
    env = {} if env is None else env
    known = {"protection", "orders", "simulation", "performance", "goal", "session", "phase"}
    known |= {"alerts", "store", "entries", "adopt", "broker"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    protection = _table(data, "protection", _PROTECTION_KEYS)
    simulation = _table(data, "simulation", _SIMULATION_KEYS)
    market_fill = simulation.get("market_fill", "next")
    if market_fill not in ("next", "same"):
        raise ConfigError(f"simulation.market_fill = {market_fill!r}: allowed 'next' or 'same'")
    performance = _table(data, "performance", _PERFORMANCE_KEYS)
    timezone = performance.get("timezone", "America/New_York")
    zone(timezone, "performance.timezone")
    goal = _goal(_table(data, "goal", _GOAL_KEYS), env)
    session = _session(_table(data, "session", _SESSION_KEYS))
    phase = _phase(_table(data, "phase", _PHASE_KEYS))
    orders = _orders(_table(data, "orders", _ORDERS_KEYS))
    entries = _entries(_table(data, "entries", _ENTRIES_KEYS))
    adopt = _adopt(_table(data, "adopt", _ADOPT_KEYS))
    hours = _hours(_table(data, "broker", _BROKER_KEYS))
    config = Config(
        protection=_protection(protection),
        goal=goal,
        session=session,
        phase=phase,
        **orders,
        **entries,
        **adopt,
        **_extended(protection),
    )
    return Settings(
        config,
        market_fill,
        timezone,
        _targets(performance),
        alerts=_alerts(data, env),
        store=_store(data, env),
        hours=hours,
    )


_BROKER_KEYS = {"hours"}


def _hours(table: Mapping[str, Any]) -> str:
    """`[broker] hours`: "us_equity" (NYSE sessions: stops and market orders only in the
    regular session) or "always" (crypto, tests)."""
    raw = table.get("hours", "us_equity")
    if raw not in ("us_equity", "always"):
        raise ConfigError(f"broker.hours = {_shown(raw)}: allowed 'us_equity' or 'always'")
    return str(raw)


def _extended(table: Mapping[str, Any]) -> dict[str, Any]:
    """`[protection]`'s keys for outside the regular session."""
    out: dict[str, Any] = {}
    for key, allowed in (("extended_exit", ("watch", "wait")),
                         ("extended_partials", ("limit", "open"))):  # fmt: skip
        if key in table:
            raw = table[key]
            if raw not in allowed:
                words = " or ".join(repr(a) for a in allowed)
                raise ConfigError(f"protection.{key} = {_shown(raw)}: allowed {words}")
            out[key] = raw
    if "extended_offset" in table:
        out["extended_offset"] = _decimal(
            "protection.extended_offset", table["extended_offset"], low=Decimal(0),
            high=Decimal("0.05"), allowed="0 to 0.05 (share of the print, e.g. 0.002)",
        )  # fmt: skip
    return out


_ENTRIES_KEYS = {"max_notional", "max_qty", "max_open", "wash_trade"}


def _entries(table: Mapping[str, Any]) -> dict[str, Any]:
    """`[entries]`: the pre-trade checks every entry intent passes (0 turns one off)."""
    out: dict[str, Any] = {}
    for key in ("max_notional", "max_qty"):
        if key in table:
            out[key] = _decimal(f"entries.{key}", table[key], low=Decimal(0),
                                allowed="0 (off) or a positive amount")  # fmt: skip
    if "max_open" in table:
        raw = table["max_open"]
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 100_000:
            raise ConfigError(
                f"entries.max_open = {_shown(raw)}: allowed a whole number 0 (off) to 100000"
            )
        out["max_open"] = raw
    if "wash_trade" in table:
        raw = table["wash_trade"]
        if raw not in ("limit", "wait", "refuse"):
            raise ConfigError(
                f"entries.wash_trade = {_shown(raw)}: allowed 'limit', 'wait' or 'refuse'"
            )
        out["wash_trade"] = raw
    return out


_ORDERS_KEYS = {
    "cancel_timeout",
    "fill_timeout",
    "retry_delays",
    "breaker_failures",
    "breaker_cooldown",
    "stale_after",
    "protect_deadline",
    "max_requests_per_minute",
}


def _orders(table: Mapping[str, Any]) -> dict[str, Any]:
    """`[orders]`: answer timeouts, retry delays and the breaker, in seconds (SPEC §4)."""
    out: dict[str, Any] = {}

    def seconds(key: str, value: object, low: str, high: str) -> timedelta:
        allowed = f"more than {low} and at most {high} seconds"
        number = _decimal(f"orders.{key}", value, low=Decimal(low), high=Decimal(high),
                          low_open=True, allowed=allowed)  # fmt: skip
        return timedelta(seconds=float(number))

    for key, high in (("cancel_timeout", "60"), ("fill_timeout", "300"),
                      ("breaker_cooldown", "3600"), ("stale_after", "3600"),
                      ("protect_deadline", "300")):  # fmt: skip
        if key in table:
            out[key] = seconds(key, table[key], "0", high)
    if "retry_delays" in table:
        raw = table["retry_delays"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= 10:
            raise ConfigError(
                f"orders.retry_delays = {raw!r}: expected a list of 1 to 10 delays in seconds"
            )
        out["retry_delays"] = tuple(
            seconds(f"retry_delays[{i}]", v, "0", "60") for i, v in enumerate(raw)
        )
    if "breaker_failures" in table:
        raw = table["breaker_failures"]
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 100:
            raise ConfigError(f"orders.breaker_failures = {raw!r}: allowed a whole number 1 to 100")
        out["breaker_failures"] = raw
    if "max_requests_per_minute" in table:
        raw = table["max_requests_per_minute"]
        if isinstance(raw, bool) or not isinstance(raw, int) or not 6 <= raw <= 200:
            raise ConfigError(
                f"orders.max_requests_per_minute = {_shown(raw)}: allowed a whole number 6 to 200"
            )
        out["max_requests_per_minute"] = raw
    return out


_ADOPT_KEYS = {"default_risk", "foreign_orders"}


def _adopt(table: Mapping[str, Any]) -> dict[str, Any]:
    """`[adopt]`: how positions ratchet did not open are protected (SPEC §6)."""
    out: dict[str, Any] = {}
    if "default_risk" in table:
        allowed = "0.001 to 0.5 (share of the entry price)"
        out["default_risk"] = _decimal("adopt.default_risk", table["default_risk"],
                                       low=Decimal("0.001"), high=Decimal("0.5"),
                                       allowed=allowed)  # fmt: skip
    if "foreign_orders" in table:
        raw = table["foreign_orders"]
        if raw not in ("cancel", "leave"):
            raise ConfigError(f"adopt.foreign_orders = {_shown(raw)}: allowed 'cancel' or 'leave'")
        out["foreign_orders"] = raw
    return out


_GOAL = GoalConfig()  # the engine's defaults: a key not given keeps them
_PHASE = PhaseConfig()
_PROTECTION = ProtectionConfig()


def _goal(table: Mapping[str, Any], env: Mapping[str, str]) -> GoalConfig:
    target_raw: object = table.get("target", str(_GOAL.target))
    target_key = "goal.target"
    if env.get(ENV_TARGET, "").strip():
        target_raw, target_key = env[ENV_TARGET].strip(), ENV_TARGET
    giveback_raw: object = table.get("giveback", str(_GOAL.giveback))
    giveback_key = "goal.giveback"
    if env.get(ENV_GIVEBACK, "").strip():
        giveback_raw, giveback_key = env[ENV_GIVEBACK].strip(), ENV_GIVEBACK
    allowed_target = "0 (off) or 10 to 10000 dollars"
    target = _decimal(target_key, target_raw, low=Decimal(0), high=Decimal(10_000),
                      allowed=allowed_target)  # fmt: skip
    if 0 < target < 10:
        raise ConfigError(f"{target_key} = {target_raw!r}: allowed {allowed_target}")
    giveback = _decimal(giveback_key, giveback_raw, low=Decimal("0.10"), high=Decimal("0.90"),
                        allowed="0.10 to 0.90 (share of the peak)")  # fmt: skip
    on_trigger = table.get("on_trigger", _GOAL.on_trigger.value)
    if not isinstance(on_trigger, str) or on_trigger not in {t.value for t in OnTrigger}:
        allowed = " or ".join(repr(t.value) for t in OnTrigger)
        raise ConfigError(f"goal.on_trigger = {on_trigger!r}: allowed {allowed}")
    return GoalConfig(target=target, giveback=giveback, on_trigger=OnTrigger(on_trigger))


def _phase(table: Mapping[str, Any]) -> PhaseConfig:
    names = ", ".join(p.value for p in Phase)
    enabled = table.get("enabled", _PHASE.enabled)
    if not isinstance(enabled, bool):
        raise ConfigError(f"phase.enabled = {enabled!r}: allowed true or false")
    start_raw = table.get("start", _PHASE.start.value)
    try:
        start = Phase(start_raw)
    except ValueError:
        raise ConfigError(f"phase.start = {start_raw!r}: allowed {names}") from None
    equity = _decimal("phase.equity", table.get("equity", str(_PHASE.equity)), low=Decimal(0),
                      low_open=True, allowed="> 0 dollars")  # fmt: skip
    sizes = dict(_PHASE.sizes)
    for name, value in _phase_table(table, "sizes", names).items():
        sizes[name] = _decimal(f"phase.sizes.{name.value}", value, low=Decimal(1),
                               high=Decimal(1_000_000), allowed="1 to 1000000 dollars")  # fmt: skip
    limits = dict(_PHASE.trade_limits)
    for name, value in _phase_table(table, "trade_limits", names).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"phase.trade_limits.{name.value} = {value!r}: allowed a whole number >= 0 "
                "(0: no trade)"
            )
        limits[name] = value
    scaling_max = _decimal("phase.scaling_max", table.get("scaling_max", str(_PHASE.scaling_max)),
                           low=Decimal(1), allowed=">= 1 dollars")  # fmt: skip
    return PhaseConfig(enabled=enabled, start=start, equity=equity, sizes=sizes,
                       trade_limits=limits, scaling_max=scaling_max)  # fmt: skip


def _phase_table(table: Mapping[str, Any], key: str, names: str) -> dict[Phase, Any]:
    raw = table.get(key, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"phase.{key} must be a table of {names}")
    out = {}
    for name, value in raw.items():
        try:
            out[Phase(name)] = value
        except ValueError:
            raise ConfigError(f"phase.{key}.{name}: unknown phase; allowed {names}") from None
    return out


def _session(table: Mapping[str, Any]) -> SessionConfig:
    tz = zone(table.get("timezone", "America/New_York"), "session.timezone")
    raw = table.get("reset", "04:00")
    if isinstance(raw, time):
        boundary = raw
    else:
        try:
            boundary = time.fromisoformat(str(raw))
        except ValueError:
            raise ConfigError(
                f"session.reset = {raw!r}: allowed a time of day, e.g. 04:00"
            ) from None
    return SessionConfig(tz=tz, boundary=boundary.replace(tzinfo=None))


def zone(name: object, key: str) -> ZoneInfo:
    """A time zone by IANA name, or a ConfigError naming the key."""
    if not isinstance(name, str):
        raise ConfigError(f"{key} = {name!r}: expected an IANA zone name, e.g. America/New_York")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory, e.g. "America"
        raise ConfigError(
            f"{key} = {name!r}: not a known time zone (e.g. America/New_York, UTC)"
        ) from None


def _targets(table: Mapping[str, Any]) -> Targets:
    def opt(name: str, low: Decimal, high: Decimal | None, allowed: str) -> Decimal | None:
        if name not in table:
            return None
        return _decimal(f"performance.{name}", table[name], low=low, high=high, allowed=allowed)

    big = Decimal("1e12")
    return Targets(
        min_win_rate=opt("min_win_rate", Decimal(0), Decimal(1), "0 to 1 (e.g. 0.55)"),
        min_avg_r=opt("min_avg_r", -big, big, "a number of R (e.g. 0.3)"),
        min_profit_factor=opt("min_profit_factor", Decimal(0), big, ">= 0 (e.g. 1.5)"),
        min_expectancy=opt("min_expectancy", -big, big, "dollars per trade"),
        max_drawdown=opt("max_drawdown", Decimal(0), big, ">= 0 dollars"),
    )


def _table(
    data: Mapping[str, Any], name: str, keys: set[str], where: str = ""
) -> Mapping[str, Any]:
    label = f"{where}.{name}" if where else name
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{label} must be a table")
    unknown = set(table) - keys
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{label}.{k}' for k in sorted(unknown))}; "
            f"allowed: {', '.join(sorted(keys))}"
        )
    return table


def _decimal(
    key: str,
    value: object,
    *,
    low: Decimal | None = None,
    high: Decimal | None = None,
    low_open: bool = False,
    allowed: str = "",
) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{key} = {_shown(value)}: expected a number; allowed {allowed}")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{key} = {_shown(value)}: not a number; allowed {allowed}") from None
    # NaN and infinities first: a NaN cannot even be compared with the bounds.
    if not number.is_finite() or abs(number) > _LARGEST:
        raise ConfigError(f"{key} = {_shown(value)}: allowed {allowed}")
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and number > high
    if too_low or too_high:
        raise ConfigError(f"{key} = {_shown(value)}: allowed {allowed}")
    return number


_LARGEST = Decimal("1e12")  # no setting is a number beyond a trillion


def _shown(value: object) -> str:
    """A value as the user wrote it, for a message (cut when long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _pairs(key: str, value: object, names: tuple[str, str]) -> list[tuple[object, object]]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} = {value!r}: expected a non-empty list of {names}")
    pairs = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if isinstance(item, dict) and set(item) == set(names):
            pairs.append((item[names[0]], item[names[1]]))
        elif isinstance(item, list) and len(item) == 2:
            pairs.append((item[0], item[1]))
        else:
            raise ConfigError(f"{where} = {item!r}: expected {{ {names[0]} = …, {names[1]} = … }}")
    return pairs


def _protection(table: Mapping[str, Any]) -> ProtectionConfig:
    defaults = ProtectionConfig()
    ladder = defaults.ladder
    if "ladder" in table:
        rungs: list[Rung] = []
        for i, (at, lock) in enumerate(
            _pairs("protection.ladder", table["ladder"], ("at_r", "lock_r"))
        ):
            at_r = _decimal(
                f"protection.ladder[{i}].at_r", at, low=Decimal(0), low_open=True, allowed="> 0"
            )
            lock_r = _decimal(
                f"protection.ladder[{i}].lock_r",
                lock,
                low=Decimal(-1),
                allowed=f">= -1 and < at_r ({at_r})",
            )
            if lock_r >= at_r:
                raise ConfigError(
                    f"protection.ladder[{i}].lock_r = {lock}: allowed < at_r ({at_r})"
                )
            if rungs and (at_r <= rungs[-1].at_r or lock_r < rungs[-1].lock_r):
                raise ConfigError(
                    f"protection.ladder[{i}] = ({at}, {lock}): rungs must rise in at_r and never "
                    "lower lock_r"
                )
            rungs.append(Rung(at_r, lock_r))
        ladder = tuple(rungs)
    partials = defaults.partials
    if "partials" in table:
        tranches: list[Tranche] = []
        pairs = _pairs("protection.partials", table["partials"], ("at_r", "fraction"))
        for i, (at, fraction) in enumerate(pairs):
            at_r = _decimal(
                f"protection.partials[{i}].at_r", at, low=Decimal(0), low_open=True, allowed="> 0"
            )
            frac = _decimal(
                f"protection.partials[{i}].fraction",
                fraction,
                low=Decimal(0),
                low_open=True,
                high=Decimal(1),
                allowed="0 < fraction <= 1",
            )
            if tranches and at_r <= tranches[-1].at_r:
                raise ConfigError(f"protection.partials[{i}].at_r = {at}: milestones must rise")
            tranches.append(Tranche(at_r, frac))
        total = sum((t.fraction for t in tranches), Decimal(0))
        if total > 1:
            raise ConfigError(f"protection.partials: fractions sum to {total}: allowed <= 1")
        partials = tuple(tranches)
    levels = defaults.levels
    if "levels" in table:
        raw = table["levels"]
        if not isinstance(raw, list) or len(raw) != 4:
            raise ConfigError(
                f"protection.levels = {raw!r}: expected 4 R values (breakeven, "
                "partial, advanced, final)"
            )
        levels = tuple(
            _decimal(f"protection.levels[{i}]", v, low=Decimal(0), low_open=True, allowed="> 0")
            for i, v in enumerate(raw)
        )
        if any(b <= a for a, b in itertools.pairwise(levels)):
            raise ConfigError(f"protection.levels = {raw!r}: allowed strictly rising values")
    trail = table.get("trail", defaults.trail)
    take_profit = table.get("take_profit", defaults.take_profit)
    for key, flag in (("trail", trail), ("take_profit", take_profit)):
        if not isinstance(flag, bool):
            raise ConfigError(f"protection.{key} = {flag!r}: allowed true or false")
    lot = _decimal(
        "protection.lot_step",
        table.get("lot_step", str(_PROTECTION.lot_step)),
        low=Decimal(0),
        low_open=True,
        allowed="> 0 (1 for whole shares, e.g. 0.001 for fractions)",
    )
    coarse = _decimal(
        "protection.price_increment",
        table.get("price_increment", str(_PROTECTION.grid.coarse)),
        low=Decimal(0),
        low_open=True,
        allowed="> 0",
    )
    fine = _decimal(
        "protection.sub_dollar_increment",
        table.get("sub_dollar_increment", str(_PROTECTION.grid.fine)),
        low=Decimal(0),
        low_open=True,
        allowed="> 0",
    )
    return ProtectionConfig(
        ladder=ladder,
        partials=partials,
        levels=levels,
        trail=trail,
        lot_step=lot,
        take_profit=take_profit,
        grid=PriceGrid(coarse=coarse, fine=fine),
    )


# --- [alerts] and [store]: where alerts are delivered and where records are kept -----------

_ALERTS_KEYS = {
    "source",
    "dedup_window",
    "rate_limit",
    "rate_window",
    "retry_delays",
    "timeout",
    "queue_size",
    "webhook",
    "pagerduty",
    "email",
}
_WEBHOOK_KEYS = {"enabled"}
_PAGERDUTY_KEYS = {"enabled", "endpoint", "severity"}
_EMAIL_KEYS = {"enabled", "host", "port", "from", "to", "starttls", "username"}
_STORE_KEYS = {"url", "schema", "batch_size", "buffer"}
# Keys that would hold a secret in the file: refused, naming the variable to use instead.
_SECRET_KEYS = {
    ("webhook", "url"): ENV_WEBHOOK_URL,
    ("pagerduty", "routing_key"): ENV_PAGERDUTY_KEY,
    ("email", "password"): ENV_SMTP_PASSWORD,
}


def _alerts(data: Mapping[str, Any], env: Mapping[str, str]) -> AlertSettings:
    table = _table(data, "alerts", _ALERTS_KEYS)
    for (sink, key), variable in _SECRET_KEYS.items():
        sub = table.get(sink)
        if isinstance(sub, dict) and key in sub:
            raise ConfigError(
                f"alerts.{sink}.{key}: secrets are not read from the config file (the value "
                f"is not shown); remove the key and set {variable} in the environment"
            )
    out: dict[str, Any] = {}
    source = table.get("source", "ratchet")
    if not isinstance(source, str) or not 0 < len(source) <= 255:
        raise ConfigError(f"alerts.source = {source!r}: allowed a name of 1 to 255 characters")
    out["source"] = source

    def seconds(key: str, low: str, high: str, *, open_low: bool = False) -> float:
        allowed = f"{'more than' if open_low else 'from'} {low} to {high} seconds"
        number = _decimal(f"alerts.{key}", table[key], low=Decimal(low), high=Decimal(high),
                          low_open=open_low, allowed=allowed)  # fmt: skip
        return float(number)

    if "dedup_window" in table:
        out["dedup_window"] = timedelta(seconds=seconds("dedup_window", "0", "86400"))
    if "rate_window" in table:
        out["rate_window"] = timedelta(seconds=seconds("rate_window", "0", "86400", open_low=True))
    if "timeout" in table:
        out["timeout"] = seconds("timeout", "0", "120", open_low=True)
    for key, high in (("rate_limit", 10_000), ("queue_size", 1_000_000)):
        if key in table:
            raw = table[key]
            low = 0 if key == "rate_limit" else 1
            if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
                note = " (0: no limit)" if key == "rate_limit" else ""
                raise ConfigError(
                    f"alerts.{key} = {raw!r}: allowed a whole number {low} to {high}{note}"
                )
            out[key] = raw
    if "retry_delays" in table:
        raw = table["retry_delays"]
        if not isinstance(raw, list) or len(raw) > 10:
            raise ConfigError(
                f"alerts.retry_delays = {raw!r}: expected a list of 0 to 10 delays in seconds"
            )
        out["retry_delays"] = tuple(
            float(_decimal(f"alerts.retry_delays[{i}]", v, low=Decimal(0), high=Decimal(60),
                           allowed="0 to 60 seconds"))
            for i, v in enumerate(raw)
        )  # fmt: skip
    webhook = _table(table, "webhook", _WEBHOOK_KEYS, "alerts")
    if "webhook" in table and _enabled(webhook, "alerts.webhook"):
        url = _secret_from_env(env, ENV_WEBHOOK_URL, "alerts.webhook", "the webhook URL")
        if not _is_http_url(url.reveal()):
            raise ConfigError(f"{ENV_WEBHOOK_URL}: not an http(s) URL (the value is not shown)")
        out["webhook"] = WebhookSink(url)
    pagerduty = _table(table, "pagerduty", _PAGERDUTY_KEYS, "alerts")
    if "pagerduty" in table and _enabled(pagerduty, "alerts.pagerduty"):
        out["pagerduty"] = _pagerduty(pagerduty, env)
    email = _table(table, "email", _EMAIL_KEYS, "alerts")
    if "email" in table and _enabled(email, "alerts.email"):
        out["email"] = _email(email, env)
    return AlertSettings(**out)


def _enabled(table: Mapping[str, Any], where: str) -> bool:
    """A sink whose table is there is on unless it says `enabled = false`."""
    flag = table.get("enabled", True)
    if not isinstance(flag, bool):
        raise ConfigError(f"{where}.enabled = {flag!r}: allowed true or false")
    return flag


def _secret_from_env(env: Mapping[str, str], variable: str, where: str, what: str) -> Secret:
    value = env.get(variable, "").strip()
    if not value:
        raise ConfigError(
            f"{where}: {variable} is not set ({what} is a secret: it is read from the "
            "environment only)"
        )
    return Secret(value)


def _is_http_url(text: str) -> bool:
    try:
        split = urlsplit(text)
    except ValueError:
        return False
    return split.scheme in ("http", "https") and bool(split.hostname)


def _pagerduty(table: Mapping[str, Any], env: Mapping[str, str]) -> PagerDutySink:
    key = _secret_from_env(env, ENV_PAGERDUTY_KEY, "alerts.pagerduty", "the routing key")
    endpoint = table.get("endpoint", PAGERDUTY_ENDPOINT)
    if not isinstance(endpoint, str) or not _is_http_url(endpoint):
        raise ConfigError(
            f"alerts.pagerduty.endpoint = {endpoint!r}: expected an http(s) URL "
            f"(default {PAGERDUTY_ENDPOINT})"
        )
    severity = table.get("severity", "critical")
    if severity not in SEVERITIES:
        raise ConfigError(
            f"alerts.pagerduty.severity = {severity!r}: allowed {', '.join(SEVERITIES)}"
        )
    return PagerDutySink(key, endpoint, severity)


def _address(key: str, value: object) -> str:
    if not isinstance(value, str) or value.count("@") != 1 or any(c in value for c in " ,<>"):
        raise ConfigError(f"{key} = {value!r}: expected an email address, e.g. ops@example.com")
    return value


def _email(table: Mapping[str, Any], env: Mapping[str, str]) -> EmailSink:
    host = table.get("host")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"alerts.email.host = {host!r}: expected the SMTP server's host name")
    port = table.get("port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"alerts.email.port = {port!r}: allowed a whole number 1 to 65535")
    sender = _address("alerts.email.from", table.get("from"))
    raw_to = table.get("to")
    to_list = [raw_to] if isinstance(raw_to, str) else raw_to
    if not isinstance(to_list, list) or not to_list:
        raise ConfigError(f"alerts.email.to = {raw_to!r}: expected an address or a list of them")
    to = tuple(_address(f"alerts.email.to[{i}]", a) for i, a in enumerate(to_list))
    starttls = table.get("starttls", True)
    if not isinstance(starttls, bool):
        raise ConfigError(f"alerts.email.starttls = {starttls!r}: allowed true or false")
    username = table.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        raise ConfigError(f"alerts.email.username = {username!r}: expected a login name")
    password = None
    if username is not None:
        password = _secret_from_env(env, ENV_SMTP_PASSWORD, "alerts.email", "the SMTP password")
    return EmailSink(host.strip(), sender, to, port, starttls, username, password)


_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DSN_PASSWORD = re.compile(r"(^|\s)password\s*=", re.IGNORECASE)


def has_password(url: str) -> bool:
    """Whether a PostgreSQL URL or key=value connection string carries a password."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            split = urlsplit(url)
            return bool(split.password) or "password" in parse_qs(split.query)
        except ValueError:
            return False
    return bool(_DSN_PASSWORD.search(url))


def _store(data: Mapping[str, Any], env: Mapping[str, str]) -> StoreSettings:
    table = _table(data, "store", _STORE_KEYS)
    out: dict[str, Any] = {}
    if "url" in table:
        raw = table["url"]
        if isinstance(raw, str) and has_password(raw):
            raise ConfigError(
                "store.url: holds a password (the URL is not shown); passwords are read from "
                f"the environment only: remove it and set PGPASSWORD, or give the whole URL in "
                f"{ENV_STORE_URL}"
            )
        if not isinstance(raw, str) or not raw.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"store.url = {raw!r}: expected postgresql://USER@HOST:PORT/DATABASE")
        out["url"] = Secret(raw)
    from_env = env.get(ENV_STORE_URL, "").strip()
    if from_env:
        out["url"] = Secret(from_env)
    schema = table.get("schema", "public")
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"store.schema = {schema!r}: allowed a PostgreSQL name (letters, digits, _; up to 63)"
        )
    out["schema"] = schema
    for key, low, high in (("batch_size", 1, 10_000), ("buffer", 1, 10_000_000)):
        if key in table:
            raw = table[key]
            if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
                raise ConfigError(f"store.{key} = {raw!r}: allowed a whole number {low} to {high}")
            out[key] = raw
    return StoreSettings(**out)
