"""`ratchet.toml`: read, validated and turned into the engine's Config; a bad value is refused
with its key, the value and what is allowed."""

from __future__ import annotations

import itertools
import os
import tomllib
from collections.abc import Mapping
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import field, frozen

from engine import Config, PriceGrid, ProtectionConfig, Rung, Tranche
from engine.analytics import Targets
from engine.config import SessionConfig
from engine.goal import GoalConfig, OnTrigger
from engine.phase import DEFAULT_SIZES, DEFAULT_TRADE_LIMITS, Phase, PhaseConfig
from shell.errors import UserError

__all__ = ["ConfigError", "Settings", "load_settings", "parse_settings"]


class ConfigError(UserError, ValueError):
    """A configuration value ratchet refuses to start with."""


@frozen
class Settings:
    """The engine's Config plus the shell's own options."""

    config: Config = field(factory=Config)
    market_fill: str = "next"
    performance_timezone: str = "America/New_York"
    targets: Targets = field(factory=Targets)


_PROTECTION_KEYS = {
    "ladder",
    "partials",
    "levels",
    "trail",
    "lot_step",
    "take_profit",
    "price_increment",
    "sub_dollar_increment",
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
    the environment (`PROFIT_TARGET_DAILY`, `PROFIT_GIVEBACK_THRESHOLD`)."""
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
    config = Config(
        protection=_protection(protection), goal=goal, session=session, phase=phase, **orders
    )
    return Settings(
        config,
        market_fill,
        timezone,
        _targets(performance),
    )


_ORDERS_KEYS = {
    "cancel_timeout",
    "fill_timeout",
    "retry_delays",
    "breaker_failures",
    "breaker_cooldown",
    "stale_after",
    "protect_deadline",
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
    return out


def _goal(table: Mapping[str, Any], env: Mapping[str, str]) -> GoalConfig:
    target_raw: object = table.get("target", "0")
    target_key = "goal.target"
    if env.get(ENV_TARGET, "").strip():
        target_raw, target_key = env[ENV_TARGET].strip(), ENV_TARGET
    giveback_raw: object = table.get("giveback", "0.50")
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
    on_trigger = table.get("on_trigger", "block_entries")
    if on_trigger not in ("block_entries", "flatten"):
        raise ConfigError(f"goal.on_trigger = {on_trigger!r}: allowed 'block_entries' or 'flatten'")
    return GoalConfig(target=target, giveback=giveback, on_trigger=OnTrigger(on_trigger))


def _phase(table: Mapping[str, Any]) -> PhaseConfig:
    names = ", ".join(p.value for p in Phase)
    enabled = table.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"phase.enabled = {enabled!r}: allowed true or false")
    start_raw = table.get("start", Phase.EXPERIENCE.value)
    try:
        start = Phase(start_raw)
    except ValueError:
        raise ConfigError(f"phase.start = {start_raw!r}: allowed {names}") from None
    equity = _decimal("phase.equity", table.get("equity", "10000"), low=Decimal(0),
                      low_open=True, allowed="> 0 dollars")  # fmt: skip
    sizes = dict(DEFAULT_SIZES)
    for name, value in _phase_table(table, "sizes", names).items():
        sizes[name] = _decimal(f"phase.sizes.{name.value}", value, low=Decimal(1),
                               high=Decimal(1_000_000), allowed="1 to 1000000 dollars")  # fmt: skip
    limits = dict(DEFAULT_TRADE_LIMITS)
    for name, value in _phase_table(table, "trade_limits", names).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"phase.trade_limits.{name.value} = {value!r}: allowed a whole number >= 0 "
                "(0: no trade)"
            )
        limits[name] = value
    scaling_max = _decimal("phase.scaling_max", table.get("scaling_max", "2000"),
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


def _table(data: Mapping[str, Any], name: str, keys: set[str]) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name} must be a table")
    unknown = set(table) - keys
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{name}.{k}' for k in sorted(unknown))}; "
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
        table.get("lot_step", "1"),
        low=Decimal(0),
        low_open=True,
        allowed="> 0 (1 for whole shares, e.g. 0.001 for fractions)",
    )
    coarse = _decimal(
        "protection.price_increment",
        table.get("price_increment", "0.01"),
        low=Decimal(0),
        low_open=True,
        allowed="> 0",
    )
    fine = _decimal(
        "protection.sub_dollar_increment",
        table.get("sub_dollar_increment", "0.0001"),
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
