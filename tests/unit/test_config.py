"""ratchet.toml: defaults, valid overrides, and refusals that name key, value and range."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from engine import Config, ProtectionConfig, Rung, Tranche
from shell.config import ConfigError, load_settings, parse_settings


def test_no_file_means_spec_defaults():
    """Without a file every value is SPEC §3's default."""
    settings = load_settings(None)
    assert settings.config.protection == ProtectionConfig()
    assert settings.market_fill == "next"


def test_a_valid_file_overrides_what_it_names(tmp_path):
    """Both table and pair forms work; decimals come through exactly."""
    path = tmp_path / "ratchet.toml"
    path.write_text(
        "[protection]\n"
        "ladder = [{ at_r = 1.0, lock_r = 0 }, [2, 0.75]]\n"
        "partials = [{ at_r = 2, fraction = 0.5 }, { at_r = 3, fraction = 0.5 }]\n"
        "trail = true\n"
        'lot_step = "0.001"\n'
        "[simulation]\n"
        'market_fill = "same"\n'
    )
    settings = load_settings(path)
    p = settings.config.protection
    assert p.ladder == (Rung(D("1.0"), D("0")), Rung(D("2"), D("0.75")))
    assert p.partials == (Tranche(D("2"), D("0.5")), Tranche(D("3"), D("0.5")))
    assert p.trail is True and p.lot_step == D("0.001") and settings.market_fill == "same"


def test_orders_section_sets_timeouts_retries_and_breaker(tmp_path):
    """`[orders]` in seconds; what it does not name keeps SPEC §4's value."""
    path = tmp_path / "ratchet.toml"
    path.write_text(
        "[orders]\ncancel_timeout = 3\nretry_delays = [0.25, 0.5]\nbreaker_failures = 8\n"
    )
    config = load_settings(path).config
    assert config.cancel_timeout == timedelta(seconds=3)
    assert config.retry_delays == (timedelta(milliseconds=250), timedelta(milliseconds=500))
    assert config.breaker_failures == 8
    assert config.fill_timeout == Config().fill_timeout == timedelta(seconds=5)
    assert config.breaker_cooldown == timedelta(seconds=300)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[protection]\nlot_step = 0\n", "protection.lot_step = 0: allowed > 0"),
        ("[protection]\nladder = [[1, 1]]\n", "protection.ladder[0].lock_r = 1: allowed < at_r"),
        ("[protection]\nladder = [[2, 1], [1, 0]]\n", "protection.ladder[1] = (1, 0)"),
        ("[protection]\npartials = [[2, 0.7], [3, 0.7]]\n", "fractions sum to 1.4: allowed <= 1"),
        ("[protection]\npartials = [[2, 1.5]]\n",
         "protection.partials[0].fraction = 1.5: allowed 0 < fraction <= 1"),
        ("[protection]\ntrail = 1\n", "protection.trail = 1: allowed true or false"),
        ("[protection]\nladdr = []\n", "unknown key(s) protection.laddr"),
        ("[protectoin]\n", "unknown section(s): protectoin"),
        ('[simulation]\nmarket_fill = "later"\n', "simulation.market_fill = 'later'"),
        ("[protection\n", "not valid TOML"),
        ("[orders]\ncancel_timeout = 0\n", "cancel_timeout = 0: allowed more than 0 and at most 6"),
        ("[orders]\nretry_delays = []\n", "orders.retry_delays = []: expected a list of 1 to 10"),
        ('[orders]\nretry_delays = [1, "x"]\n', "orders.retry_delays[1] = 'x': not a number"),
        ("[orders]\nbreaker_failures = 0\n", "orders.breaker_failures = 0: allowed a whole"),
        ("[orders]\ntimeout = 2\n", "unknown key(s) orders.timeout"),
        ("[goal]\non_trigger = []\n", "goal.on_trigger = []: allowed 'block_entries'"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_key_value_and_range(tmp_path, toml, message):
    """Each refusal names the file, the key, the value and what is allowed."""
    path = tmp_path / "ratchet.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_the_readme_configuration_example_is_valid_and_says_the_defaults_of_orders():
    """The `ratchet.toml` shown in the README loads, and its `[orders]` values are SPEC's."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("```toml", 1)[1].split("```", 1)[0]
    config = parse_settings(tomllib.loads(example)).config
    defaults = Config()
    for name in ("cancel_timeout", "fill_timeout", "retry_delays", "breaker_failures",
                 "breaker_cooldown", "stale_after"):  # fmt: skip
        assert getattr(config, name) == getattr(defaults, name), name
