"""Deterministic client order ids: derived from state, so a replay produces the same ids."""

from __future__ import annotations

__all__ = ["entry_order_id", "order_id", "position_key"]


def position_key(symbol: str, count: int) -> str:
    """The key of the `count`-th position ever opened in `symbol` (1-based)."""
    return f"{symbol}-{count}"


def entry_order_id(key: str) -> str:
    """Client order id of a position's entry order."""
    return f"rt-{key}-entry"


def order_id(key: str, seq: int, purpose: str) -> str:
    """Client order id of the `seq`-th exit-side order of a position."""
    return f"rt-{key}-{seq}-{purpose}"
