"""Alpaca's refusals, classified by HTTP status and message (never by code alone: 40310000 is
shared by held shares, buying power and wash trades; 42210000 by every 422).

A refusal becomes the engine's `OrderRefusal` / `CancelRefusal` with a one-line reason that
quotes the broker's words (its status, code and message), the way the simulated broker words
them, so journals read the same whichever broker answered.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from attrs import frozen

from engine import CancelRefusal, OrderRefusal
from shell.broker.alpaca.orders import decimal_or_none
from shell.errors import one_line

__all__ = [
    "Answer",
    "CancelVerdict",
    "SubmitVerdict",
    "classify_cancel",
    "classify_submit",
    "read_answer",
]

_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_LONGEST_BODY = 200


@frozen
class Answer:
    """An HTTP refusal as the adapter read it: the status (None: no answer at all, a
    timeout or a cut connection), Alpaca's code and message when the body is its JSON, and
    the body's other fields (the 403's `available`, `existing_qty`, `held_for_orders`)."""

    status: int | None
    code: int | None = None
    message: str = ""
    fields: dict[str, Any] | None = None

    @property
    def reason(self) -> str:
        """One line: `HTTP 403 code 40310000 insufficient qty ...`, or what happened."""
        if self.status is None:
            return one_line(self.message or "no answer")
        code = f" code {self.code}" if self.code is not None else ""
        text = f" {self.message}" if self.message else ""
        return one_line(f"HTTP {self.status}{code}{text}")


def read_answer(status: int, text: str) -> Answer:
    """An error answer's body: Alpaca's `{"code", "message", ...}` when it is JSON (alpaca-py's
    `.code` and `.message` raise on anything else: a proxy's plain-text 503, an empty 429)."""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return Answer(status, None, one_line(text.strip(), _LONGEST_BODY))
    code = body.get("code")
    message = body.get("message")
    return Answer(
        status,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        one_line(str(message), _LONGEST_BODY) if message is not None else "",
        body,
    )


@frozen
class SubmitVerdict:
    """How a refused order is reported to the engine."""

    kind: OrderRefusal
    reason: str
    available: Decimal | None = None
    existing: Decimal | None = None


@frozen
class CancelVerdict:
    """How a refused cancel is reported to the engine."""

    kind: CancelRefusal
    reason: str


def classify_submit(answer: Answer) -> SubmitVerdict:
    """A refused POST /v2/orders. No answer: UNKNOWN (it may have landed; the caller looks
    it up by client order id first). 429 and 5xx: TRANSIENT. 403 "insufficient qty
    available": SHARES_LOCKED with the shares the body says are free and held. 422 "client
    order id must be unique": DUPLICATE. Anything else (buying power, wash trade, bad
    parameters, unauthorized): PERMANENT."""
    reason = answer.reason
    status = answer.status
    if status is None:
        return SubmitVerdict(OrderRefusal.UNKNOWN, reason)
    if status in _TRANSIENT_STATUSES:
        return SubmitVerdict(OrderRefusal.TRANSIENT, reason)
    message = answer.message.lower()
    fields = answer.fields or {}
    if status == 403 and (message.startswith("insufficient qty") or "held_for_orders" in fields):
        available = decimal_or_none(fields.get("available"))
        existing = decimal_or_none(fields.get("existing_qty"))
        return SubmitVerdict(OrderRefusal.SHARES_LOCKED, reason, available, existing)
    if status == 422 and "client_order_id" in message and "unique" in message:
        return SubmitVerdict(OrderRefusal.DUPLICATE, reason)
    return SubmitVerdict(OrderRefusal.PERMANENT, reason)


def classify_cancel(answer: Answer) -> CancelVerdict:
    """A refused DELETE /v2/orders/{id}. 404: NOT_FOUND. 422 'order is already in "filled"
    state': FILLED; in "canceled" (or "expired") state: CANCELED; while a replace is pending:
    TRANSIENT. No answer, 429, 5xx: TRANSIENT. Anything else (not cancelable): PERMANENT."""
    reason = answer.reason
    status = answer.status
    if status is None or status in _TRANSIENT_STATUSES:
        return CancelVerdict(CancelRefusal.TRANSIENT, reason)
    if status == 404:
        return CancelVerdict(CancelRefusal.NOT_FOUND, reason)
    message = answer.message.lower()
    if status == 422:
        if '"filled"' in message or "already filled" in message:
            return CancelVerdict(CancelRefusal.FILLED, reason)
        if '"canceled"' in message or '"expired"' in message or "already canceled" in message:
            return CancelVerdict(CancelRefusal.CANCELED, reason)
        if "pending_replace" in message:
            return CancelVerdict(CancelRefusal.TRANSIENT, reason)
    return CancelVerdict(CancelRefusal.PERMANENT, reason)
