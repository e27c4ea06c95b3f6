"""The entry gate (SPEC §4, §7, §8): an entry intent is taken only when it can be protected at
once and the day, the phase and the inputs allow it; its order goes out under a deterministic
id, and the position opens when it fills."""

from __future__ import annotations

from decimal import Decimal

from attrs import evolve, frozen
from returns.result import Failure, Result, Success

from engine.commands import Command, OrderAction, OrderType
from engine.events import EntryIntent, Side
from engine.ids import entry_order_id, position_key
from engine.ladder import floor_to_lot
from engine.model import Order, OrderRole, OrderStatus, PendingEntry, Retry
from engine.orders import submit_command
from engine.phase import Phase, position_qty
from engine.records import conflict, entry_accepted, entry_blocked
from engine.state import BreakerState, EngineState, Transition

__all__ = ["Refusal", "on_entry", "resting_exits", "validate_entry"]


def resting_exits(state: EngineState, symbol: str) -> tuple[list[Decimal], list[str]]:
    """Ratchet's exit orders in `symbol` an entry could trade against, as the limit prices
    among them and all their ids: a take-profit or a limit sale (at the broker or on its way
    there), and any sale at market in flight, waiting for its retry or queued (it could trade
    at any price; a queued one is named by its position's key). What Alpaca's wash-trade rule
    compares a new entry with; stops rest off the book until triggered."""
    prices: list[Decimal] = []
    ids: list[str] = []
    for pos in state.in_symbol(symbol):
        orders = pos.orders
        for order in (orders.exit, orders.sell):
            if order is None:
                continue
            if order.limit_price is not None or order.type is OrderType.MARKET:
                ids.append(order.id)
                if order.limit_price is not None:
                    prices.append(order.limit_price)
        if orders.to_sell > 0 and orders.sell is None:
            ids.append(pos.key)  # a sale about to go, at market or at a price not known yet
    return prices, ids


def _wash_price(
    state: EngineState, symbol: str, side: Side, limit: Decimal | None
) -> tuple[Decimal | None, list[str], bool]:
    """The entry's limit so that it cannot trade against ratchet's own exit orders
    resting in the symbol (Alpaca would refuse it as a potential wash trade), the ids of the
    orders in the way, and whether no price avoids them (a sale is in flight or queued)."""
    prices, ids = resting_exits(state, symbol)
    if not ids:
        return limit, [], False
    if len(prices) < len(ids):
        return limit, ids, True  # a market exit could trade at any price
    cfg = state.config.protection.grid
    if side is Side.LONG:
        lowest = min(prices)
        safe = lowest - cfg.increment(lowest)
        crosses = limit is None or limit >= lowest
        return (safe if limit is None else min(limit, safe)), ids if crosses else [], safe <= 0
    highest = max(prices)
    safe = highest + cfg.increment(highest)
    crosses = limit is None or limit <= highest
    return (safe if limit is None else max(limit, safe)), ids if crosses else [], False


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
    if not state.market.regular:
        return Failure(
            Refusal(
                "market_closed",
                "outside the regular session an entry would wait for the open, unprotected "
                "by any stop until it fills",
            )
        )
    if state.config.wash_trade == "refuse" and resting_exits(state, symbol)[1]:
        return Failure(
            Refusal(
                "wash_trade_risk",
                f"exit orders of {symbol} rest at the broker; an entry could trade against them",
            )
        )
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
    waits = state.config.wash_trade == "wait" and bool(resting_exits(state, symbol)[1])
    if waits:
        limit, in_the_way, unpriceable = intent.entry, resting_exits(state, symbol)[1], False
    else:
        limit, in_the_way, unpriceable = _wash_price(state, symbol, intent.side, intent.entry)
    if unpriceable:
        if intent.id is not None:
            state = state.evolve(intents=state.intents.set(intent.id, ""))
        detail = f"an exit of {symbol} is selling; an entry could trade against it"
        return Transition(state, (entry_blocked(symbol, "wash_trade_risk", detail, ts, intent.id),))
    count = state.counts.get(symbol, 0) + 1
    key = position_key(symbol, count)
    action = OrderAction.BUY if intent.side is Side.LONG else OrderAction.SELL
    kind = OrderType.MARKET if limit is None else OrderType.LIMIT
    order = Order(
        id=entry_order_id(key),
        role=OrderRole.ENTRY,
        action=action,
        type=kind,
        qty=qty,
        limit_price=limit,
    )
    guarded: list[Command] = []
    retry = None
    if waits:
        # `wash_trade = "wait"`: the entry is not sent while exits of the symbol rest; it is
        # looked at again every first retry delay (engine.retries) and goes once none does.
        order = evolve(order, status=OrderStatus.RETRY_WAIT)
        retry = Retry(0, ts + state.config.retry_delays[0])
        guarded.append(
            conflict(
                ts, key, "wash_trade_risk", in_the_way, "entry_waits",
                f"exit orders rest in {symbol}: the entry waits until none does",
            )
        )  # fmt: skip
    elif in_the_way:
        # Alpaca refuses an order that could trade against the account's own opposite orders
        # (a wash trade): the entry goes as a limit that cannot reach them.
        guarded.append(
            conflict(
                ts, key, "wash_trade_risk", in_the_way, "entry_as_limit",
                f"exit orders rest in {symbol}: the entry buys no higher than {limit}"
                if intent.side is Side.LONG
                else f"exit orders rest in {symbol}: the entry sells no lower than {limit}",
            )
        )  # fmt: skip
    paper = state.config.phase.enabled and state.phase.phase is Phase.EXPERIENCE
    pending = PendingEntry(
        key, symbol, intent.side, intent.stop, qty, order, ts, paper, retry, intent.id
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
        due=state.due if retry is None or retry.due is None else min(state.due, retry.due),
    )
    sent = [] if waits else submit_command(key, symbol, order, ts, paper)
    return Transition(new, (accepted, *guarded, *sent))
