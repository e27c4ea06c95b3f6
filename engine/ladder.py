"""The arithmetic of protection: schedules of R levels, stop prices, tranche sizes, rounding."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.config import ProtectionConfig
from engine.events import Side
from engine.model import NEXT_PROTECTION, Level, Protection

__all__ = [
    "floor_to_lot",
    "level_price",
    "round_in_favour",
    "schedule",
    "take_profit_price",
    "tranche_sizes",
]


# Run once, at import: mutation testing cannot run it with a mutant active (its result is
# checked by tests/unit/test_protection_table.py instead).
def _successors(state: Protection) -> tuple[Protection, ...]:  # pragma: no mutate block
    """Every state after `state`, in the order the protection table walks them."""
    after: list[Protection] = []
    while state in NEXT_PROTECTION:
        state = NEXT_PROTECTION[state]
        after.append(state)
    return tuple(after)


# The states a schedule's levels (`ProtectionConfig.levels`, 1R to 4R) lead to, in order.
_PROTECTIONS = _successors(Protection.INITIAL_RISK)


def round_in_favour(price: Decimal, side: Side, cfg: ProtectionConfig) -> Decimal:
    """Round an order price to the grid in the position's favour (long up, short down)."""
    step = cfg.grid.increment(price)
    rounding = ROUND_CEILING if side is Side.LONG else ROUND_FLOOR
    return ((price / step).to_integral_value(rounding) * step).quantize(step)


def floor_to_lot(qty: Decimal, lot: Decimal) -> Decimal:
    """Largest multiple of `lot` not above `qty`."""
    return (qty / lot).to_integral_value(ROUND_FLOOR) * lot


def level_price(entry: Decimal, risk: Decimal, side: Side, r: Decimal) -> Decimal:
    """The exact price at which a position reaches `r` R."""
    return entry + r * risk * side.sign


def tranche_sizes(original: Decimal, cfg: ProtectionConfig) -> tuple[Decimal, ...]:
    """Tranche quantities from the ORIGINAL size, lot-rounded down; when the schedule sums to
    one, the last tranche takes the remainder so the tranches sum to `original` (P8)."""
    sizes = [floor_to_lot(original * t.fraction, cfg.lot_step) for t in cfg.partials]
    if sizes and cfg.sells_everything:
        sizes[-1] = original - sum(sizes[:-1], Decimal(0))
    return tuple(sizes)


def take_profit_price(
    entry: Decimal, risk: Decimal, side: Side, cfg: ProtectionConfig
) -> Decimal | None:
    """The OCO take-profit at the final milestone, or None when not configured."""
    if not (cfg.take_profit and cfg.partials and cfg.sells_everything):
        return None
    return round_in_favour(level_price(entry, risk, side, cfg.partials[-1].at_r), side, cfg)


def schedule(entry: Decimal, risk: Decimal, side: Side, cfg: ProtectionConfig) -> tuple[Level, ...]:
    """Every R level at which something happens, in order, with what happens there."""
    rs = sorted(
        {rung.at_r for rung in cfg.ladder}
        | {t.at_r for t in cfg.partials}
        | set(cfg.levels[: len(_PROTECTIONS)])
    )
    rows = []
    for r in rs:
        protection = None
        for level_r, state in zip(cfg.levels, _PROTECTIONS, strict=False):
            if level_r == r:
                protection = state
        lock = next((rung.lock_r for rung in cfg.ladder if rung.at_r == r), None)
        stop = (
            None
            if lock is None
            else round_in_favour(level_price(entry, risk, side, lock), side, cfg)
        )
        tranche = next((i for i, t in enumerate(cfg.partials) if t.at_r == r), None)
        rows.append(
            Level(
                r=r,
                price=level_price(entry, risk, side, r),
                protection=protection,
                stop=stop,
                lock_r=lock,
                tranche=tranche,
            )
        )
    return tuple(rows)
