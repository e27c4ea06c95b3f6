"""P12 Exponential backoff, P24 Exhausted retry alert."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from engine import Alert, OrderRefusal, OrderRejected, SubmitOrder
from shell.broker.simulated import Faults
from tests.harness import trace
from tests.strategies import configs, histories, market_fills

DELAYS = [Decimal("0.5"), Decimal("1"), Decimal("2")]  # SPEC §4, written out
faults = st.builds(Faults, st.sampled_from([0.3, 0.6, 0.9]), st.integers(0, 10_000))


@given(histories(), configs(), market_fills(), faults)
def test_p12_a_failing_order_is_retried_at_most_3_times_after_half_1_and_2_seconds(
    history, config, fill, broken
):
    """Per order step: at most 3 order.retry records, attempt k waiting DELAYS[k-1]; the
    order goes out again with the same id, at the first event at or after its due time."""
    steps = trace(history.events, config, fill, broken)
    retries = defaultdict(list)
    due: dict[str, object] = {}
    last_ts = None
    for step in steps:
        for record in step.records("order.retry"):
            retries[record["order_id"]].append(record)
            assert record["delay"] == DELAYS[record["attempt"] - 1], record
            assert record["due"] == record.ts + timedelta(seconds=float(record["delay"]))
            due[record["order_id"]] = record["due"]
        for command in step.commands:
            if isinstance(command, SubmitOrder) and command.order_id in due:
                when = due.pop(command.order_id)
                assert step.event.ts >= when, (command.order_id, step.event.ts, when)
                assert last_ts is None or last_ts < when, "sent at the first event due"
        last_ts = step.event.ts
    for order_id, records in retries.items():
        attempts = [r["attempt"] for r in records]
        # A later step of the same order id starts again at 1 after it got through.
        for previous, current in pairwise(attempts):
            assert current in (previous + 1, 1), (order_id, attempts)
        assert max(attempts) <= 3


@given(histories(), configs(), market_fills(), faults)
def test_p24_when_retries_run_out_an_alert_carries_the_full_context(history, config, fill, broken):
    """A transient refusal after 3 retries raises retries_exhausted with the symbol, the
    position, the order, 3 attempts and every reason given."""
    used = defaultdict(int)
    for step in trace(history.events, config, fill, broken):
        for record in step.records("order.retry"):
            used[record["order_id"]] = record["attempt"]
        event = step.event
        if not (isinstance(event, OrderRejected) and event.kind is OrderRefusal.TRANSIENT):
            continue
        # (the breaker's own alert may come in the same step: it is not about this order)
        alerts = [
            c for c in step.commands
            if isinstance(c, Alert) and c.reason != "order_breaker_open"
        ]  # fmt: skip
        if used[event.order_id] == 3 and not step.records("order.retry"):
            # Coalesced: a position's operator hears of it at the 1st, 2nd, 4th
            # ... exhaustion of one refusal episode, with the count; the others are counted.
            key = step.before.routes.get(event.order_id, "")
            pos = step.after.positions.get(key)
            count = dict(pos.alerted).get("retries_exhausted", 0) if pos is not None else 1
            if count & (count - 1):
                assert not alerts
            else:
                [alert] = alerts
                assert alert.reason == "retries_exhausted"
                context = alert.context
                assert context["order_id"] == event.order_id and context["attempts"] == 3
                assert len(context["failures"]) == 4 and context["symbol"] == history.symbol
                assert {"key", "remaining_qty", "stop"} <= set(context)
                assert context.get("count", 1) == count
            # ...and the shares are not left bare: a new operation (new id) starts at once,
            # a fresh stop, a tranche sale that came due meanwhile, or an exit at market.
            held = not step.after.link.sending  # the breaker opened: held, not dropped
            remaining = pos.fills.remaining if pos is not None else 0
            if event.order_id.endswith("-stop") and remaining > 0 and not held:
                fresh = [
                    c for c in step.commands
                    if isinstance(c, SubmitOrder) and c.purpose in ("protect", "exit", "partial")
                    and c.order_id != event.order_id and c.order_id.startswith(f"rt-{key}-")
                ]  # fmt: skip
                assert fresh, "nothing protects the shares after exhausted retries"
            used[event.order_id] = 0
        elif step.records("order.retry"):
            assert not alerts
