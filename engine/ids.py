"""Deterministic client order ids: derived from state, so a replay produces the same ids."""

from __future__ import annotations

__all__ = ["entry_order_id", "key_of", "order_id", "position_key", "symbol_of"]


def position_key(symbol: str, count: int) -> str:
    """The key of the `count`-th position ever opened in `symbol` (1-based)."""
    return f"{symbol}-{count}"


def entry_order_id(key: str) -> str:
    """Client order id of a position's entry order."""
    return f"rt-{key}-entry"


def order_id(key: str, seq: int, purpose: str) -> str:
    """Client order id of the `seq`-th exit-side order of a position."""
    return f"rt-{key}-{seq}-{purpose}"


def key_of(client_order_id: str) -> str:
    """The position key inside one of ratchet's order ids ('' for any other id)."""
    if not client_order_id.startswith("rt-"):
        return ""
    if client_order_id.endswith("-entry"):
        return client_order_id[3 : -len("-entry")]
    parts = client_order_id[3:].rsplit("-", 2)
    return parts[0] if len(parts) == 3 and parts[1].isdigit() else ""


def symbol_of(key: str) -> str:
    """The symbol of a position key (`SPY-3` -> `SPY`)."""
    return key.rsplit("-", 1)[0]
