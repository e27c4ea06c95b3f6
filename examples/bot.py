"""A small trading bot written with plain alpaca-py: it knows nothing of ratchet.

It watches one symbol's trades, buys when the price has risen three prints in a row, and
protects the position with a stop 1% under its fill. The environment says where to trade, so
the same file runs against Alpaca's paper account or against `ratchet exchange`:

    APCA_API_BASE_URL, APCA_API_KEY_ID, APCA_API_SECRET_KEY   (Alpaca's own variables)
    RATCHET_DATA_STREAM_URL    the stock data stream (default: Alpaca's IEX feed)
    RATCHET_TRADE_STREAM_URL   the trade_updates stream (default: BASE_URL's /stream)

    python examples/bot.py --symbol SYNA --qty 10 --trades 40
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from decimal import ROUND_DOWN, Decimal

from alpaca.data.live import StockDataStream
from alpaca.data.models import Trade
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import MarketOrderRequest, StopOrderRequest
from alpaca.trading.stream import TradingStream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="SYNA")
    parser.add_argument("--qty", type=int, default=10)
    parser.add_argument("--trades", type=int, default=40, help="stop after this many trades")
    args = parser.parse_args(argv)

    base_url = os.environ.get("APCA_API_BASE_URL", "https://paper-api.alpaca.markets")
    key, secret = os.environ["APCA_API_KEY_ID"], os.environ["APCA_API_SECRET_KEY"]
    trade_stream_url = os.environ.get(
        "RATCHET_TRADE_STREAM_URL", base_url.replace("http", "ws", 1) + "/stream"
    )
    trading = TradingClient(key, secret, url_override=base_url)
    print(f"account {trading.get_account().account_number}, trading {args.symbol}", flush=True)

    updates = TradingStream(key, secret, url_override=trade_stream_url)
    data = StockDataStream(key, secret, url_override=os.environ.get("RATCHET_DATA_STREAM_URL"))
    prices: list[float] = []
    state = {"bought": False, "protected": False}

    async def on_update(update: TradeUpdate) -> None:
        order = update.order
        print(f"{update.event}: {order.side.value} {order.qty} {order.symbol}", flush=True)
        if update.event == "fill" and order.client_order_id == f"bot-{args.symbol}-entry":
            fill = Decimal(str(update.price))
            stop = (fill * Decimal("0.99")).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            trading.submit_order(
                StopOrderRequest(
                    symbol=args.symbol,
                    qty=args.qty,
                    side=OrderSide.SELL,
                    time_in_force=TimeInForce.GTC,
                    stop_price=float(stop),
                    client_order_id=f"bot-{args.symbol}-stop",
                )
            )
            state["protected"] = True
            print(f"bought {args.qty} at {fill}, stop at {stop}", flush=True)

    async def on_trade(trade: Trade) -> None:
        prices.append(trade.price)
        rising = len(prices) >= 4 and prices[-4] < prices[-3] < prices[-2] < prices[-1]
        if rising and not state["bought"]:
            state["bought"] = True
            trading.submit_order(
                MarketOrderRequest(
                    symbol=args.symbol,
                    qty=args.qty,
                    side=OrderSide.BUY,
                    time_in_force=TimeInForce.DAY,
                    client_order_id=f"bot-{args.symbol}-entry",
                )
            )
        if len(prices) >= args.trades:
            await data.stop_ws()

    updates.subscribe_trade_updates(on_update)
    data.subscribe_trades(on_trade, args.symbol)
    listener = threading.Thread(target=updates.run, daemon=True)
    listener.start()
    data.run()  # until enough trades were seen
    updates.stop()
    listener.join(timeout=10)
    print(f"saw {len(prices)} trades; bought: {state['bought']}; protected: {state['protected']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
