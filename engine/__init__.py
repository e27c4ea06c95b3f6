"""ratchet's pure rules engine: `step(state, event) -> Transition(state, commands)`.

No I/O, no clock, no randomness, no logging: time enters only as the `ts` of events.
"""

from engine.commands import (
    RECORD_KINDS,
    Alert,
    CancelOrder,
    Command,
    OrderAction,
    OrderType,
    Record,
    SubmitOrder,
)
from engine.config import Config, PriceGrid, ProtectionConfig, Rung, Tranche
from engine.events import (
    BreakerAck,
    BrokerOrder,
    BrokerSnapshot,
    CancelRejected,
    Clock,
    Connectivity,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    PhaseAdvance,
    PhaseOverride,
    Side,
    Tick,
)
from engine.model import EngineState, Order, OrderRole, OrderStatus, Position, Protection
from engine.step import Refusal, Transition, fold, step, validate_entry

__all__ = [
    "RECORD_KINDS",
    "Alert",
    "BreakerAck",
    "BrokerOrder",
    "BrokerSnapshot",
    "CancelOrder",
    "CancelRejected",
    "Clock",
    "Command",
    "Config",
    "Connectivity",
    "EngineState",
    "EntryIntent",
    "Event",
    "Order",
    "OrderAccepted",
    "OrderAction",
    "OrderCanceled",
    "OrderFilled",
    "OrderRejected",
    "OrderRole",
    "OrderStatus",
    "OrderType",
    "PhaseAdvance",
    "PhaseOverride",
    "Position",
    "PriceGrid",
    "Protection",
    "ProtectionConfig",
    "Record",
    "Refusal",
    "Rung",
    "Side",
    "SubmitOrder",
    "Tick",
    "Tranche",
    "Transition",
    "fold",
    "step",
    "validate_entry",
]
