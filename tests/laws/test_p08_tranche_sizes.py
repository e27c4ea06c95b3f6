"""P8 Tranche from original size."""

from collections import defaultdict
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine import ProtectionConfig
from engine.ladder import tranche_sizes
from tests.harness import all_records, trace
from tests.oracle import SPEC_PARTIALS, tranche
from tests.strategies import configs, histories, market_fills

LOTS = [Decimal(1), Decimal("0.1"), Decimal("0.001")]


@given(st.integers(1, 10**7), st.sampled_from(LOTS))
def test_p08_tranches_come_from_the_original_and_sum_to_it(units, lot):
    """Each tranche but the last is its SPEC fraction of the original, lot-rounded down;
    the last takes the rest; none is negative and together they are the original."""
    original = Decimal(units) * lot
    sizes = tranche_sizes(original, ProtectionConfig(lot_step=lot))
    expected = [tranche(original, fraction, lot) for _, fraction in SPEC_PARTIALS]
    assert list(sizes[:-1]) == expected
    assert sum(sizes) == original
    assert all(size >= 0 for size in sizes)
    assert all(size % lot == 0 for size in sizes)


@given(histories(), configs(), market_fills())
def test_p08_ordered_tranches_never_exceed_the_original(history, config, fill):
    """Across a position's life the tranches ordered never add up to more than its original
    quantity; a position sold out by tranches alone sold exactly its original."""
    steps = trace(history.events, config, fill)
    original = {r["key"]: r["qty"] for r in all_records(steps, "position.opened")}
    ordered = defaultdict(Decimal)
    for record in all_records(steps, "partial.ordered"):
        ordered[record["key"]] += record["qty"]
        assert ordered[record["key"]] <= original[record["key"]]
    for record in all_records(steps, "position.closed"):
        if record["reason"] == "final_target":
            assert ordered[record["key"]] == original[record["key"]]
