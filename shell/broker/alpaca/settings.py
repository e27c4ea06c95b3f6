"""Where the Alpaca adapter connects and with which keys: from the environment only.

Alpaca's own variables choose the account (`APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`,
`APCA_API_BASE_URL`, paper unless told otherwise). The two stream URLs follow from the base
URL (Alpaca's trade_updates live at `<base>/stream`; its stock data at
`wss://stream.data.alpaca.markets/v2/iex`; a `ratchet exchange` serves both on its own port)
or come from `RATCHET_TRADE_STREAM_URL` / `RATCHET_DATA_STREAM_URL`, which `ratchet exchange`
prints. The keys are `Secret`s: they show as `<secret>` in every repr, message and log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from attrs import field, frozen

from shell.errors import UserError
from shell.secret import Secret

__all__ = [
    "LIVE_URL",
    "PAPER_URL",
    "AlpacaSettings",
    "base_url",
    "data_stream_of",
    "trade_stream_of",
]

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
_DATA_URL = "wss://stream.data.alpaca.markets/v2"
_ALPACA_HOSTS = frozenset({"paper-api.alpaca.markets", "api.alpaca.markets"})
_FEEDS = ("iex", "sip")


@frozen
class AlpacaSettings:
    """One Alpaca account's endpoints and keys, and how the adapter paces itself there.

    `timeout` bounds every HTTP request (alpaca-py sets none); `requests_per_minute` is the
    client-side token bucket, under Alpaca's 200 a minute (None: no bucket, for a local
    exchange started with a higher limit); `reconnect` is the streams' backoff, first and
    longest wait in seconds."""

    key_id: Secret = field(repr=False)
    secret_key: Secret = field(repr=False)
    base_url: str = PAPER_URL
    trade_stream_url: str = ""
    data_stream_url: str = ""
    timeout: float = 10.0
    requests_per_minute: int | None = 190
    reconnect: tuple[float, float] = (1.0, 30.0)

    def __attrs_post_init__(self) -> None:
        if not self.trade_stream_url:
            object.__setattr__(self, "trade_stream_url", trade_stream_of(self.base_url))
        if not self.data_stream_url:
            object.__setattr__(self, "data_stream_url", data_stream_of(self.base_url))

    @property
    def paper(self) -> bool:
        """True unless the base URL is Alpaca's live endpoint."""
        return urlsplit(self.base_url).hostname != urlsplit(LIVE_URL).hostname

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        prefix: str = "APCA_API_",
        default_url: str = PAPER_URL,
        timeout: float = 10.0,
        requests_per_minute: int | None = 190,
        reconnect: tuple[float, float] = (1.0, 30.0),
    ) -> AlpacaSettings:
        """Read `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY` and `APCA_API_BASE_URL` (another
        `prefix` reads a second account's, e.g. `APCA_PAPER_API_`), and the stream URLs.
        A missing key or a malformed URL is a `UserError` naming the variable (never a key's
        value)."""
        env = os.environ if env is None else env
        keys = []
        for name in (f"{prefix}KEY_ID", f"{prefix}SECRET_KEY"):
            value = env.get(name, "").strip()
            if not value:
                raise UserError(f"{name} is not set: the Alpaca adapter reads its keys from it")
            keys.append(Secret(value))
        url_name = f"{prefix}BASE_URL"
        base = base_url(env.get(url_name) or default_url, url_name)
        main = prefix == "APCA_API_"
        trade = env.get("RATCHET_TRADE_STREAM_URL", "") if main else ""
        data = env.get("RATCHET_DATA_STREAM_URL", "") if main else ""
        for name, url in (("RATCHET_TRADE_STREAM_URL", trade), ("RATCHET_DATA_STREAM_URL", data)):
            if url and urlsplit(url).scheme not in ("ws", "wss"):
                raise UserError(f"{name}={url}: expected a ws:// or wss:// URL")
        return cls(keys[0], keys[1], base, trade, data, timeout, requests_per_minute, reconnect)

    @classmethod
    def paper_from_env(
        cls, env: Mapping[str, str] | None = None, *, timeout: float = 10.0
    ) -> AlpacaSettings | None:
        """The paper account for Experience-phase orders when the main account is live:
        `APCA_PAPER_API_KEY_ID` / `APCA_PAPER_API_SECRET_KEY` (and `APCA_PAPER_API_BASE_URL`,
        Alpaca's paper endpoint by default); None when they are not set."""
        env = os.environ if env is None else env
        if not env.get("APCA_PAPER_API_KEY_ID"):
            return None
        return cls.from_env(env, prefix="APCA_PAPER_API_", timeout=timeout)

    def secrets(self) -> tuple[Secret, Secret]:
        """The keys, for `redact`."""
        return self.key_id, self.secret_key


def base_url(raw: str, name: str = "APCA_API_BASE_URL") -> str:
    """The bare origin alpaca-py wants (`url_override`): no `/v2`, no trailing slash."""
    url = raw.strip().rstrip("/")
    url = url.removesuffix("/v2")
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise UserError(f"{name}={raw}: expected an http(s) URL such as {PAPER_URL}")
    if split.path or split.query:
        raise UserError(f"{name}={raw}: expected the bare origin, such as {PAPER_URL}")
    return url


def trade_stream_of(base: str) -> str:
    """Alpaca's trade_updates stream lives at the base URL's `/stream`."""
    return "ws" + base.removeprefix("http") + "/stream"


def data_stream_of(base: str, feed: str = "iex") -> str:
    """Alpaca's stock data stream for Alpaca's endpoints; a local exchange's own `/v2/iex`."""
    if feed not in _FEEDS:
        raise UserError(f"data feed {feed}: allowed {', '.join(_FEEDS)}")
    if urlsplit(base).hostname in _ALPACA_HOSTS:
        return f"{_DATA_URL}/{feed}"
    return "ws" + base.removeprefix("http") + f"/v2/{feed}"
