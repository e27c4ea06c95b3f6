"""SPEC §3's numbers written out independently of the engine's defaults: the laws compare the
engine with these, so changing a default in engine/config.py turns them red."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine import Protection, Side

# (at R, lock R): at 1R the stop goes to entry, 1.5R -> +0.5R, 2R -> +1R, 3R -> +1.5R, 4R -> +2R.
SPEC_LADDER = [
    (Decimal("1"), Decimal("0")),
    (Decimal("1.5"), Decimal("0.5")),
    (Decimal("2"), Decimal("1")),
    (Decimal("3"), Decimal("1.5")),
    (Decimal("4"), Decimal("2")),
]
# (at R, fraction of the ORIGINAL quantity); the last takes the rest.
SPEC_PARTIALS = [(Decimal("2"), Decimal("0.5")), (Decimal("3"), Decimal("0.25"))]
SPEC_FINAL_R = Decimal("4")
SPEC_STATES = [
    (Decimal("1"), Protection.BREAKEVEN_PROTECTED),
    (Decimal("2"), Protection.PARTIAL_PROFIT_TAKEN),
    (Decimal("3"), Protection.ADVANCED_PROFIT_TAKEN),
    (Decimal("4"), Protection.FINAL_PROFIT_TAKEN),
]
ORDER = list(Protection)


def increment(price: Decimal) -> Decimal:
    """US price grid: a cent at or above $1, a hundredth of a cent below."""
    return Decimal("0.01") if price >= 1 else Decimal("0.0001")


def favour(price: Decimal, side: Side) -> Decimal:
    """Round to the grid in the position's favour (long up, short down)."""
    step = increment(price)
    mode = ROUND_CEILING if side is Side.LONG else ROUND_FLOOR
    return (price / step).to_integral_value(mode) * step


def r_of(price: Decimal, entry: Decimal, stop: Decimal, side: Side) -> Decimal:
    """SPEC §3's R multiple."""
    sign = side.sign
    return (price - entry) * sign / ((entry - stop) * sign)


def ladder_stop(best_r: Decimal, entry: Decimal, stop: Decimal, side: Side) -> Decimal | None:
    """The stop the ladder calls for once `best_r` has been reached (None below 1R)."""
    risk = (entry - stop) * side.sign
    locks = [lock for at, lock in SPEC_LADDER if best_r >= at]
    if not locks:
        return None
    return favour(entry + max(locks) * risk * side.sign, side)


def better(a: Decimal, b: Decimal, side: Side) -> bool:
    """a is at least as protective as b."""
    return a >= b if side is Side.LONG else a <= b


def tranche(original: Decimal, fraction: Decimal, lot: Decimal = Decimal(1)) -> Decimal:
    """A tranche of the original quantity, rounded down to the lot."""
    return (original * fraction / lot).to_integral_value(ROUND_FLOOR) * lot


def state_for(r: Decimal) -> Protection:
    """The protection state SPEC §3 assigns to a best R of `r`."""
    current = Protection.INITIAL_RISK
    for at, state in SPEC_STATES:
        if r >= at:
            current = state
    return current
