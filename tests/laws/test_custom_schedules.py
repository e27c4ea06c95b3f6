"""Non-default ladders and partial schedules (mutation testing found the laws only ever saw
SPEC's): tranches stay within their own fractions of the original, a schedule short of one
never sells the rest nor sets a take-profit, and stops never move against the position."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from hypothesis import given

from engine.ladder import floor_to_lot
from tests.harness import all_records, trace
from tests.strategies import histories, market_fills, schedules


@given(histories(lots=False), schedules(), market_fills())
def test_custom_schedules_sell_their_own_fractions_and_protect_monotonically(history, config, fill):
    """For any ladder and schedule: each tranche ordered is at most its fraction of the
    original (lot-rounded down), except the last of a schedule that sums to one, which takes
    the rest; together they never pass the original; a protective order has a take-profit
    only when the schedule sells everything and take-profit is on; and a position's stop
    never moves against it."""
    cfg = config.protection
    steps = trace(history.events, config, fill)
    original = {r["key"]: r["qty"] for r in all_records(steps, "position.opened")}
    ordered: dict[str, Decimal] = defaultdict(Decimal)
    last = len(cfg.partials)
    for record in all_records(steps, "partial.ordered"):
        key, n, qty = record["key"], record["tranche"], record["qty"]
        ordered[key] += qty
        assert ordered[key] <= original[key]
        if not (n == last and cfg.sells_everything):
            cap = floor_to_lot(original[key] * cfg.partials[n - 1].fraction, cfg.lot_step)
            assert qty <= cap, (record, cap)
    with_tp = cfg.take_profit and cfg.sells_everything
    for s in steps:
        for order in s.submits():
            if order.purpose in ("protect", "restore"):
                assert (order.limit_price is not None) == with_tp, order
    sign = 1 if history.side.value == "long" else -1
    for record in all_records(steps, "stop.moved"):
        assert (record["new"] - record["old"]) * sign > 0, record
