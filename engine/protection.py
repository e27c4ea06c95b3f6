"""Position protection (SPEC §3, §5): each print of a symbol climbs its positions up their
schedules — the stop ladder, the partial milestones, the protection states — in the same step
(P1-P8, P20, P28), and clock events re-check every position for stale prices (P29)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.books import store
from engine.budget import next_step
from engine.commands import Alert, Command
from engine.config import ProtectionConfig
from engine.events import Clock, Tick
from engine.goal import check_goal
from engine.hours import watched_exit
from engine.ladder import round_in_favour, tranche_sizes
from engine.model import Position
from engine.orders import is_better_stop, is_through
from engine.records import partial_ordered, position_state, stop_moved
from engine.state import EngineState, Transition

__all__ = ["climb", "on_clock", "on_tick"]

_ZERO = Decimal(0)


def on_tick(state: EngineState, tick: Tick) -> Transition:
    """A print: record the mark, follow the day's P&L, and climb every position of the symbol
    whose next trigger the price reached (the others cost nothing)."""
    symbol = tick.symbol
    marks = state.marks.set(symbol, tick)
    book = state.books.get(symbol)
    price = tick.price
    state = state.evolve(marks=marks)
    if book is None:
        return Transition(state)
    out: list[Command] = []
    if book.tracked:
        # The day's P&L follows every print of a symbol with open positions (SPEC §7).
        u = price * book.q - book.c
        daily = evolve(state.daily, unrealized=state.daily.unrealized + u - book.u)
        daily, goal_records = check_goal(daily, state.config.goal, tick.ts)
        out.extend(goal_records)
        state = state.evolve(books=state.books.set(symbol, evolve(book, u=u)), daily=daily)
    cfg = state.config.protection
    watch = state.watching
    for key in book.keys:
        pos = state.positions[key]
        trigger = pos.ladder.trigger
        long = pos.long
        climbs = trigger is not None and (price >= trigger if long else price <= trigger)
        # Market hours: outside the regular session the engine watches the stop itself, and a
        # limit sale the market left behind is priced again.
        watched = watch and pos.close_reason is None and is_through(price, pos.ladder.stop, long)
        sale = pos.orders.sell
        limit = sale.limit_price if sale is not None else None
        away = limit is not None and (price < limit if long else price > limit)
        if not (climbs or watched or away):
            continue
        if climbs:
            pos, records = climb(pos, price, tick.ts, cfg)
            out.extend(records)
        if watched:
            pos, records = watched_exit(pos, price, tick.ts)
            out.extend(records)
        if state.link.open_for(pos):
            pos, sent = next_step(state, pos, price, tick.ts)
            out.extend(sent)
        state, more = store(state, pos, tick.ts)
        out.extend(more)
    return Transition(state, tuple(out))


def climb(
    pos: Position, price: Decimal, ts: datetime, cfg: ProtectionConfig, *, sell: bool = True
) -> tuple[Position, list[Command]]:
    """Pass every schedule level `price` reaches, in order, with each level's actions: its
    protection state (P34), its stop (never against the position, P2), its tranche from the
    original size (P8); then trail, if on. Return the position and the records. With `sell`
    off (a position adopted mid-way, SPEC §6) milestones already passed are journaled as
    passed and nothing is sold for them."""
    long = pos.long
    r = pos.r_at(price)
    ladder = pos.ladder
    levels = ladder.schedule
    i = ladder.next_level
    stop, protection, lock_r, gap_r = ladder.stop, ladder.protection, ladder.lock_r, ladder.gap_r
    orders = pos.orders
    to_sell = orders.to_sell
    milestones = list(orders.milestones)
    sizes = tranche_sizes(pos.fills.original, cfg)
    last = len(cfg.partials) - 1
    in_flight = orders.sell.open_qty if orders.sell is not None else _ZERO
    records: list[Command] = []
    while i < len(levels) and (price >= levels[i].price if long else price <= levels[i].price):
        level = levels[i]
        reason = f"reached {level.r}R" if sell else f"reached {level.r}R before adoption"
        if level.protection is not None:
            records.append(position_state(pos, protection, level.protection, reason, r, ts))
            protection = level.protection
        if level.stop is not None and level.lock_r is not None:
            lock_r, gap_r = level.lock_r, level.r - level.lock_r
            if is_better_stop(level.stop, stop, long):
                why = f"{reason}: lock {lock_r}R"
                records.append(stop_moved(pos, stop, level.stop, r, why, ts))
                stop = level.stop
        if level.tranche is not None and sell:
            available = pos.fills.remaining - to_sell - in_flight
            if level.tranche == last and cfg.sells_everything:
                qty = available  # P7: the last tranche takes the rest.
            else:
                qty = min(sizes[level.tranche], available)
            if qty > 0:
                records.append(partial_ordered(pos, level.r, level.tranche + 1, qty, r, ts))
                to_sell += qty
                milestones.append((level.r, qty))
        i += 1
    if cfg.trail and gap_r is not None:
        trailed = round_in_favour(price - gap_r * pos.risk * pos.side.sign, pos.side, cfg)
        if is_better_stop(trailed, stop, long):
            records.append(stop_moved(pos, stop, trailed, r, f"trail {gap_r}R below best", ts))
            stop = trailed
    trigger = levels[i].price if i < len(levels) else None
    if cfg.trail and gap_r is not None:
        # The trailed stop next rises when price passes stop + gap.
        trail_at = stop + gap_r * pos.risk * pos.side.sign
        if trigger is None or (trail_at < trigger if long else trail_at > trigger):
            trigger = trail_at
    pos = evolve(
        pos,
        ladder=evolve(
            ladder,
            stop=stop,
            protection=protection,
            lock_r=lock_r,
            gap_r=gap_r,
            next_level=i,
            trigger=trigger,
        ),
        orders=evolve(orders, to_sell=to_sell, milestones=tuple(milestones)),
    )
    return pos, records


def on_clock(state: EngineState, clock: Clock) -> Transition:
    """SPEC §5: every clock event re-checks every open position; a position whose last price
    is older than `stale_after` raises one `stale_price` alert per stale price."""
    limit = state.config.stale_after
    out: list[Command] = []
    stale = state.stale
    for symbol in sorted(state.books.keys()):
        book = state.books[symbol]
        mark = state.marks.get(symbol)
        since = mark.ts if mark is not None else min(state.positions[k].opened for k in book.keys)
        age = clock.ts - since
        if age > limit and stale.get(symbol) != since:
            stale = stale.set(symbol, since)
            out.append(
                Alert(
                    clock.ts,
                    "stale_price",
                    {
                        "symbol": symbol,
                        "last_price": mark.price if mark is not None else None,
                        "last_ts": since,
                        "age_s": age.total_seconds(),
                        "positions": list(book.keys),
                    },
                )
            )
    return Transition(state.evolve(stale=stale) if out else state, tuple(out))
