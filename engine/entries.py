"""The entry gate (SPEC §4, §7, §8): an entry intent is taken only when it can be protected at
once and the day, the phase and the inputs allow it; its order goes out under a deterministic
id, and the position opens when it fills."""

from __future__ import annotations

from decimal import Decimal

from attrs import evolve, frozen
from returns.result import Failure, Result, Success

from engine.commands import OrderAction, OrderType
from engine.events import EntryIntent, Side
from engine.ids import entry_order_id, position_key
from engine.ladder import floor_to_lot
from engine.model import Order, OrderRole, PendingEntry
from engine.orders import submit_command
from engine.phase import Phase, position_qty
from engine.records import entry_accepted, entry_blocked
from engine.state import BreakerState, EngineState, Transition

__all__ = ["Refusal", "on_entry", "validate_entry"]


@frozen
class Refusal:
    """Why an entry was not taken."""

    reason: str
    detail: str = ""


def validate_entry(state: EngineState, intent: EntryIntent) -> Result[Decimal, Refusal]:
    """Check an entry intent; the quantity to buy on success, the reason on failure."""
    cfg = state.config.protection
    symbol = intent.symbol
    if intent.id is not None:
        taken = state.intents.get(intent.id)
        if taken is not None:
            outcome = f"opened {taken}" if taken else "was refused"
            return Failure(Refusal("duplicate_entry", f"entry id {intent.id!r} {outcome} before"))
    if not symbol:
        return Failure(Refusal("invalid_symbol", "symbol is empty"))
    # The broker nets a symbol: lots in one symbol must all be on one side.
    opposite = any(p.side is not intent.side for p in state.in_symbol(symbol)) or any(
        e.side is not intent.side for e in state.entries.values() if e.symbol == symbol
    )
    if opposite:
        other = "short" if intent.side is Side.LONG else "long"
        return Failure(Refusal("opposite_side_open", f"{symbol} has open {other} positions"))
    # The link first: nothing is entered that could not be protected at once (P26).
    link = state.link
    if not link.up:
        return Failure(Refusal("broker_offline", "the broker connection is down"))
    if link.recovering:
        return Failure(
            Refusal("recovery_mode", "reconnected; waiting for a reconciled broker snapshot")
        )
    if link.breaker is BreakerState.OPEN:
        return Failure(
            Refusal(
                "order_breaker_open", f"order requests keep failing; retry after {link.reopen_at}"
            )
        )
    # The gate, in order: breaker, daily goal, open-position cap, inputs, trade limit, size.
    phases = state.config.phase
    if phases.enabled and state.phase.breaker_open:
        return Failure(
            Refusal("phase_breaker", "downgraded; an operator must acknowledge the breaker")
        )
    if state.daily.triggered:
        return Failure(
            Refusal(
                "daily_profit_protection",
                f"the day gave back {state.config.goal.giveback:%} of its peak "
                f"{state.daily.peak}; entries resume next session",
            )
        )
    cap = state.config.max_open
    if cap and len(state.positions) + len(state.entries) >= cap:
        return Failure(Refusal("max_open_positions", f"{cap} positions are open or pending"))
    if intent.qty is None and not phases.enabled:
        return Failure(Refusal("no_quantity", "the entry has no qty and no phase sizes it"))
    qty = intent.qty if intent.qty is not None else Decimal(1)
    if not qty.is_finite() or qty <= 0:
        return Failure(Refusal("invalid_qty", f"qty must be > 0, got {qty}"))
    if floor_to_lot(qty, cfg.lot_step) != qty:
        return Failure(Refusal("invalid_qty", f"qty {qty} is not a multiple of {cfg.lot_step}"))
    if not intent.stop.is_finite() or intent.stop <= 0:
        return Failure(Refusal("invalid_stop", f"stop must be > 0, got {intent.stop}"))
    reference = intent.entry if intent.entry is not None else state.last_price(symbol)
    if reference is None:
        return Failure(Refusal("no_price", f"no price seen for {symbol} and no entry price"))
    if not reference.is_finite() or reference <= 0:
        return Failure(Refusal("invalid_entry", f"entry must be > 0, got {reference}"))
    if (reference - intent.stop) * intent.side.sign <= 0:
        return Failure(
            Refusal(
                "initial_risk_not_positive",
                f"stop {intent.stop} is not on the loss side of {reference}",
            )
        )
    if phases.enabled:
        per_session = phases.trade_limits.get(state.phase.phase)
        if per_session is not None and state.daily.trades >= per_session:
            when = state.daily.reset_at
            return Failure(
                Refusal(
                    "phase_trade_limit",
                    f"{state.phase.phase.value} allows {per_session} trade(s) per session; next "
                    f"trade allowed at {when.isoformat() if when else 'the next session'}",
                )
            )
        sized = position_qty(state.phase.size, reference, cfg.lot_step)
        if sized <= 0:
            return Failure(
                Refusal(
                    "phase_size", f"${state.phase.size} buys no {cfg.lot_step} lot at {reference}"
                )
            )
        qty = sized if intent.qty is None else min(intent.qty, sized)
    # Pre-trade checks (INTERFACES [entries]): nothing larger than the operator allows.
    limits = state.config
    if limits.max_qty and qty > limits.max_qty:
        return Failure(Refusal("max_qty", f"qty {qty} is over the limit of {limits.max_qty}"))
    notional = qty * reference
    if limits.max_notional and notional > limits.max_notional:
        return Failure(
            Refusal(
                "max_notional",
                f"{qty} x {reference} = {notional} is over the limit of {limits.max_notional}",
            )
        )
    return Success(qty)


def on_entry(state: EngineState, intent: EntryIntent) -> Transition:
    """An entry intent: through the gate, its order goes out (market, or limit at the given
    entry price) and the entry waits for its fill; refused, `entry.blocked` says why."""
    ts = intent.ts
    match validate_entry(state, intent):
        case Failure(refusal):
            if intent.id is not None and refusal.reason != "duplicate_entry":
                state = state.evolve(intents=state.intents.set(intent.id, ""))
            blocked = entry_blocked(intent.symbol, refusal.reason, refusal.detail, ts, intent.id)
            return Transition(state, (blocked,))
        case Success(qty):
            pass
    symbol = intent.symbol
    count = state.counts.get(symbol, 0) + 1
    key = position_key(symbol, count)
    action = OrderAction.BUY if intent.side is Side.LONG else OrderAction.SELL
    kind = OrderType.MARKET if intent.entry is None else OrderType.LIMIT
    order = Order(
        id=entry_order_id(key),
        role=OrderRole.ENTRY,
        action=action,
        type=kind,
        qty=qty,
        limit_price=intent.entry,
    )
    paper = state.config.phase.enabled and state.phase.phase is Phase.EXPERIENCE
    pending = PendingEntry(
        key, symbol, intent.side, intent.stop, qty, order, ts, paper, client_id=intent.id
    )
    accepted = entry_accepted(
        symbol, key, intent.side.value, qty, intent.stop, intent.entry, paper, ts, intent.id
    )
    intents = state.intents if intent.id is None else state.intents.set(intent.id, key)
    new = state.evolve(
        intents=intents,
        entries=state.entries.set(key, pending),
        counts=state.counts.set(symbol, count),
        routes=state.routes.set(order.id, key),
        daily=evolve(state.daily, trades=state.daily.trades + 1),
    )
    return Transition(new, (accepted, *submit_command(key, symbol, order, ts, paper)))
