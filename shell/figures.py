"""Numbers as a trader reads them in text: money to the cent, R to two places, ratios to three,
prices as traded; never a 28-digit decimal or an exponent. (JSON keeps the exact decimals.)"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "cents",
    "metric_text",
    "money",
    "plain",
    "price",
    "qty",
    "r_multiple",
    "ratio",
    "signed_money",
    "two_places",
]

_PRICE_PLACES = Decimal("0.0001")
_QTY_PLACES = Decimal("0.000001")


def _fixed(value: Decimal, places: int) -> str:
    """`value` rounded to `places` decimals, with thousands separators and no negative zero."""
    text = f"{value:,.{places}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text


def cents(value: Decimal) -> str:
    """An amount of dollars to the cent, without the sign of the currency: `1,234.50`."""
    return _fixed(value, 2)


def two_places(value: Decimal) -> str:
    """A number to two places (an average R in a table column): `0.14`."""
    return _fixed(value, 2)


def money(value: Decimal) -> str:
    """Dollars to the cent: `$1,234.50`, `-$3.33`."""
    text = _fixed(value, 2)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def signed_money(value: Decimal) -> str:
    """Dollars to the cent with a sign: `+$1,234.50`, `-$3.33`, `+$0.00`."""
    text = money(value)
    return text if text.startswith("-") else f"+{text}"


def r_multiple(value: Decimal) -> str:
    """An R multiple to two places with its sign: `+2.74R`, `-1.00R`."""
    text = _fixed(value, 2)
    return f"{text}R" if text.startswith("-") else f"+{text}R"


def ratio(value: Decimal) -> str:
    """A ratio (win rate, profit factor, reward to risk) to three places: `0.667`."""
    return _fixed(value, 3)


def price(value: Decimal) -> str:
    """A price as traded: at least two decimals, up to four (`167.90`, `51.3725`, `0.1234`)."""
    text = _fixed(value.quantize(_PRICE_PLACES) if abs(value) < 10**20 else value, 4)
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.rstrip('0').ljust(2, '0')}"


def qty(value: Decimal) -> str:
    """A quantity: whole shares without decimals, fractions to at most six places."""
    text = _fixed(value.quantize(_QTY_PLACES) if abs(value) < 10**20 else value, 6)
    return text.rstrip("0").rstrip(".")


def plain(value: Decimal) -> str:
    """An exact decimal without exponent (`"0E+2"` is `"0"`), for files programs read."""
    text = format(value, "f")
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


# How each performance metric reads (targets and their misses).
_METRICS = {
    "win_rate": ratio,
    "profit_factor": ratio,
    "avg_r": two_places,
    "expectancy": money,
    "max_drawdown": money,
}


def metric_text(metric: str, value: Decimal) -> str:
    """A performance metric's value as text: ratios to three places, R to two, money to the
    cent."""
    return _METRICS.get(metric, ratio)(value)
