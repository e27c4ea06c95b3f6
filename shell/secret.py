"""Secrets (webhook URLs, routing keys, passwords): read from the environment only, never shown.

A `Secret` prints as `<secret>` in reprs, f-strings and logs; only `reveal()` gives the value,
at the one place that sends it. `redact` scrubs known secret values out of any text (an
error message from a library, say) before ratchet shows or writes it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["Secret", "redact"]

_SHOWN = "<secret>"


class Secret:
    """A value that must never be printed, logged or written."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the request that needs it."""
        return self._value

    def fragments(self) -> tuple[str, ...]:
        """The value and, for a URL, the parts an error message might quote on their own."""
        parts = [self._value]
        if "://" in self._value:
            split = urlsplit(self._value)
            tail = split.path + (f"?{split.query}" if split.query else "")
            if len(tail) > 1:
                parts.append(tail)
            if split.password:
                parts.append(split.password)
        return tuple(p for p in parts if len(p) >= 4)

    def __repr__(self) -> str:
        return _SHOWN

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _SHOWN

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)


def redact(text: str, secrets: Iterable[Secret | None]) -> str:
    """`text` with every fragment of every secret replaced by `<secret>`."""
    fragments = sorted(
        {f for s in secrets if s is not None for f in s.fragments()}, key=len, reverse=True
    )
    for fragment in fragments:
        text = text.replace(fragment, _SHOWN)
    return text
