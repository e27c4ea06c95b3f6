"""`ratchet exchange`: a local exchange that speaks Alpaca's Trading API and its two streams."""

from shell.exchange.server import KEY_ID, SECRET_KEY, Endpoints, Exchange
from shell.exchange.venue import Venue

__all__ = ["KEY_ID", "SECRET_KEY", "Endpoints", "Exchange", "Venue"]
