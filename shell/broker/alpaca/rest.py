"""Alpaca's REST API through alpaca-py's `TradingClient`, made safe to call from a loop's
worker threads: every request has a timeout (alpaca-py sets none), alpaca-py's own retry of
429 and 504 (blocking sleeps, a re-POST of an order) is off in favour of the engine's, a
token bucket keeps the account under its 200 requests a minute, and every refusal comes out
as one `BrokerError` carrying the `Answer` read from the wire, with the keys scrubbed from
anything a library said.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest, OrderRequest

from shell.broker.alpaca.classify import Answer, read_answer
from shell.broker.alpaca.settings import AlpacaSettings
from shell.errors import one_line
from shell.secret import redact

__all__ = ["BrokerError", "Rest", "TokenBucket"]

_PAGE = 500  # Alpaca's largest page of orders


class BrokerError(Exception):
    """A request the broker refused (`answer.status` set) or never answered (None)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.reason)
        self.answer = answer


class TokenBucket:
    """At most `per_minute` requests in any minute: `burst` at once, then one every
    60/`per_minute` seconds (the burst comes out of the minute's allowance)."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError(f"requests_per_minute {per_minute}: allowed 1 or more")
        self.burst = max(1, per_minute // 20)
        self.rate = (per_minute - self.burst) / 60.0 if per_minute > self.burst else 1 / 60
        self._tokens = float(self.burst)
        self._clock, self._sleep = clock, sleep
        self._at = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting for a token, in all

    def take(self) -> None:
        """Spend a token, waiting for it when there is none (it is reserved at once, so
        waiting callers are served in turn)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self.waited += wait
            self._sleep(wait)

    def drain(self) -> None:
        """The broker said 429: spend what is left, so the next requests wait."""
        with self._lock:
            self._tokens = min(self._tokens, 0.0)
            self._at = self._clock()


class Rest:
    """One account's Trading API: the calls the adapter makes, each with a timeout, through
    the bucket, refused as `BrokerError`."""

    def __init__(self, settings: AlpacaSettings) -> None:
        self.settings = settings
        self._client = TradingClient(
            settings.key_id.reveal(),
            settings.secret_key.reveal(),
            paper=settings.paper,
            raw_data=True,
            url_override=settings.base_url,
        )
        self._client._retry = 0  # the engine retries, on its own schedule (ALPACA.md §4)
        session = self._client._session
        send = session.request
        timeout = settings.timeout

        def timed(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            return send(*args, **kwargs)

        session.request = timed  # type: ignore[method-assign]
        per_minute = settings.requests_per_minute
        self.bucket = TokenBucket(per_minute) if per_minute is not None else None
        self.requests = 0

    # --- the calls -------------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> dict[str, Any]:
        """POST /v2/orders: the order as the broker took it (legs nested)."""
        return self._dict(self._call(lambda c: c.submit_order(request)))

    def by_client_id(self, client_id: str) -> dict[str, Any] | None:
        """GET /v2/orders:by_client_order_id: the order, or None when the broker has none."""
        try:
            return self._dict(self._call(lambda c: c.get_order_by_client_id(client_id)))
        except BrokerError as error:
            if error.answer.status == 404:
                return None
            raise

    def cancel(self, order_id: str) -> None:
        """DELETE /v2/orders/{id}: 204, the cancel is on its way (the stream says when)."""
        self._call(lambda c: c.cancel_order_by_id(order_id))

    def open_orders(self) -> list[dict[str, Any]]:
        """GET /v2/orders?status=open&nested=true, oldest first, every page."""
        found: list[dict[str, Any]] = []
        after = None
        while True:
            query = GetOrdersRequest(
                status=QueryOrderStatus.OPEN, limit=_PAGE, nested=True, direction=Sort.ASC,
                after=after,
            )  # fmt: skip
            page = self._call(lambda c, q=query: c.get_orders(q))  # type: ignore[misc]
            orders = [o for o in page or () if isinstance(o, dict)]
            found.extend(orders)
            if len(orders) < _PAGE:
                break
            after = orders[-1]["submitted_at"]
        unique = {o["id"]: o for o in found}
        return list(unique.values())

    def positions(self) -> list[dict[str, Any]]:
        """GET /v2/positions."""
        answer = self._call(lambda c: c.get_all_positions())
        return [p for p in answer or () if isinstance(p, dict)]

    def account(self) -> dict[str, Any]:
        """GET /v2/account."""
        return self._dict(self._call(lambda c: c.get_account()))

    def close(self) -> None:
        self._client._session.close()

    # --- the plumbing ----------------------------------------------------------------------

    def _call(self, call: Callable[[TradingClient], Any]) -> Any:
        if self.bucket is not None:
            self.bucket.take()
        self.requests += 1
        try:
            return call(self._client)
        except APIError as error:
            status = error.status_code
            text = redact(str(error), self.settings.secrets())
            if status == 429 and self.bucket is not None:
                self.bucket.drain()
            raise BrokerError(read_answer(status or 0, text)) from None
        except requests.Timeout:
            message = f"no answer within {self.settings.timeout:g} s"
            raise BrokerError(Answer(None, message=message)) from None
        except requests.RequestException as error:
            message = redact(f"{type(error).__name__}: {error}", self.settings.secrets())
            raise BrokerError(Answer(None, message=one_line(message, 200))) from None

    @staticmethod
    def _dict(answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise BrokerError(
                Answer(200, message=f"unexpected answer {one_line(repr(answer), 80)}")
            )
        return answer
