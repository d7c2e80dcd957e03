"""Alpaca's ``trade_updates`` stream: the parser (pure) and a reconnecting client.

Protocol (wss://paper-api.alpaca.markets/stream or wss://api.alpaca.markets/stream, as alpaca-py 0.44's
``TradingStream`` speaks it): send ``{"action": "authenticate", "data": {"key_id", "secret_key"}}``, receive
``{"stream": "authorization", "data": {"status": "authorized"}}``; send ``{"action": "listen", "data":
{"streams": ["trade_updates"]}}``, receive ``{"stream": "listening", ...}``; then ``{"stream": "trade_updates",
"data": {"event", "timestamp", "order", and on fills "execution_id", "price", "qty", "position_qty"}}``.
Alpaca sends JSON in **binary** frames on this endpoint (text frames on the data stream); both are read.

Threading: :class:`TradeUpdatesStream` runs an asyncio loop in its own daemon thread (``start``/``stop``),
or in the caller's thread (``run``, blocking). The callbacks never run inside the event loop: they run,
in order, one at a time, in a single dedicated worker thread, so they may use the Django ORM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import websockets
from alpaca.common.enums import BaseURL
from alpaca.common.utils import reconnect_delay
from websockets.asyncio.client import connect

from apps.orders.brokers.alpaca import order_state, parse_decimal, parse_time
from apps.orders.brokers.base import TradeUpdate
from apps.orders.core import Execution

log = logging.getLogger(__name__)

PAPER_STREAM_URL = BaseURL.TRADING_STREAM_PAPER.value  # wss://paper-api.alpaca.markets/stream
LIVE_STREAM_URL = BaseURL.TRADING_STREAM_LIVE.value  # wss://api.alpaca.markets/stream
STREAM = "trade_updates"
FILL_EVENTS = frozenset({"fill", "partial_fill"})


class MalformedTradeUpdate(ValueError):
    """A ``trade_updates`` message that cannot be read; the stream logs it and carries on."""


class StreamAuthError(RuntimeError):
    """Alpaca refused the keys on the stream; reconnecting would not help."""


# --- the parser -----------------------------------------------------------------------------------------


def fill_exec_id(order_id: str, filled_qty: Decimal) -> str:
    """The execution key of an Alpaca fill: the order id and its cumulative filled quantity after the fill.
    Unique per fill, the same on every redelivery, and — unlike the stream's ``execution_id``, which the FILL
    account activities do not carry — the same whether the fill came over the stream or from the activities
    that recover a gap (``AlpacaBroker.list_fills``), so a fill seen both ways is booked once."""
    return f"{order_id}:{format(filled_qty, 'f')}"


def parse_trade_update(message: dict) -> TradeUpdate:
    """One ``{"stream": "trade_updates", "data": {...}}`` message (or its ``data`` alone) -> ``TradeUpdate``.

    ``event`` stays Alpaca's event name (``fill``, ``partial_fill``, ...); ``order`` is the order object after
    it (status ``filled``, ``partially_filled``, ...). Fills carry an ``Execution`` of *this* fill: ``qty`` is
    the event's ``qty``, not the order's cumulative ``filled_qty``. Raises ``MalformedTradeUpdate``.
    """
    if not isinstance(message, dict):
        raise MalformedTradeUpdate("not a JSON object")
    data = message.get("data") if "stream" in message else message
    if "stream" in message and message.get("stream") != STREAM:
        raise MalformedTradeUpdate(f"not a {STREAM} message: {message.get('stream')!r}")
    if not isinstance(data, dict) or not data.get("event") or not isinstance(data.get("order"), dict):
        raise MalformedTradeUpdate("a trade update needs an event and an order object")
    event = str(data["event"])
    try:
        order = order_state(data["order"])
        at = parse_time(data.get("timestamp")) or order.updated_at
        position_qty = parse_decimal(data.get("position_qty"))
        execution = None
        if event in FILL_EVENTS:
            qty, price = parse_decimal(data.get("qty")), parse_decimal(data.get("price"))
            if qty is None or price is None or qty <= 0 or at is None:
                raise MalformedTradeUpdate(f"a {event} needs qty, price and timestamp")
            execution = Execution(exec_id=fill_exec_id(order.broker_order_id, order.filled_qty), order_id=order.broker_order_id, qty=qty, price=price, at=at)
    except MalformedTradeUpdate:
        raise
    except (ValueError, TypeError) as exc:
        raise MalformedTradeUpdate(str(exc)) from None
    if at is None:
        raise MalformedTradeUpdate("a trade update needs a timestamp")
    return TradeUpdate(event=event, order=order, at=at, execution=execution, position_qty=position_qty)


def decode_frame(frame: str | bytes) -> Any:
    """A frame of the trading stream (binary on /stream, text elsewhere) -> the decoded JSON."""
    return json.loads(frame.decode("utf-8") if isinstance(frame, bytes | bytearray) else frame)


# --- the client -------------------------------------------------------------------------------------------


class TradeUpdatesStream:
    """Listens to ``trade_updates`` of one account, reconnecting with backoff after a drop.

    ``on_update(update)`` gets every parsed update; ``on_reconnect()`` is called after every re-established
    subscription (not the first one), so the caller can poll ``list_orders(status="all", after=...)`` for
    what happened while disconnected (RELIABILITY_TARGETS 22). A malformed message is logged and skipped;
    an exception from a callback is logged and the stream carries on. Refused keys stop the stream
    (``auth_error`` says why) instead of reconnecting forever.
    """

    def __init__(self, api_key: str, secret_key: str, paper: bool = True, url_override: str | None = None, *,
                 on_update: Callable[[TradeUpdate], None], on_reconnect: Callable[[], None],
                 min_backoff: float = 1.0, max_backoff: float = 30.0, open_timeout: float = 10.0,
                 ping_interval: float = 10.0, ping_timeout: float = 30.0):
        self.url = url_override or (PAPER_STREAM_URL if paper else LIVE_STREAM_URL)
        self._key, self._secret = api_key, secret_key
        self.on_update, self.on_reconnect = on_update, on_reconnect
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.open_timeout, self.ping_interval, self.ping_timeout = open_timeout, ping_interval, ping_timeout
        self.auth_error: str | None = None
        self.connections = 0  # successful subscriptions so far
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._ws = None
        self._listening = False

    def __repr__(self) -> str:  # never the keys
        return f"TradeUpdatesStream(url={self.url!r})"

    # --- lifecycle (thread-safe) ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the stream in a daemon thread; returns at once."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_requested.clear()
        self._thread = threading.Thread(target=self.run, name="alpaca-trade-updates", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Run the stream in this thread until :meth:`stop` (or refused keys); blocks."""
        asyncio.run(self._main())

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection and end the loop; waits for the thread started by :meth:`start`."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        # from inside a callback (the worker thread) joining would wait for ourselves
        if self._thread is not None and not threading.current_thread().name.startswith("alpaca-trade-updates"):
            self._thread.join(timeout)

    # --- the loop ---------------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested.is_set():
            return
        closer = asyncio.create_task(self._close_on_stop())
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alpaca-trade-updates-cb")
        failures = 0
        try:
            while not self._stop.is_set():
                self._listening = False
                try:
                    await self._session(worker)
                except StreamAuthError as exc:
                    self.auth_error = str(exc)
                    log.error("alpaca trade_updates: authentication refused: %s; the stream stops", exc)
                    return
                except (OSError, TimeoutError, websockets.WebSocketException, ValueError) as exc:
                    log.warning("alpaca trade_updates: connection lost (%s); reconnecting", type(exc).__name__)
                if self._stop.is_set():
                    break
                # a drop after listening retries soon; failing to get that far backs off further each time
                failures = 1 if self._listening else failures + 1
                delay = reconnect_delay(failures, self.min_backoff, self.max_backoff)
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            closer.cancel()
            worker.shutdown(wait=True)
            self._loop = None

    async def _close_on_stop(self) -> None:
        await self._stop.wait()
        if self._ws is not None:
            await self._ws.close()

    async def _session(self, worker: ThreadPoolExecutor) -> None:
        """One connection: authenticate, listen, dispatch until it drops. Resets the backoff once listening."""
        async with connect(self.url, open_timeout=self.open_timeout, ping_interval=self.ping_interval,
                           ping_timeout=self.ping_timeout, max_size=2**22) as ws:
            self._ws = ws
            if self._stop.is_set():  # stop() came during the handshake
                return
            try:
                await self._subscribe(ws)
                self._listening = True
                first = self.connections == 0
                self.connections += 1
                log.info("alpaca trade_updates: listening on %s", self.url)
                if not first:
                    await self._call(worker, self.on_reconnect)
                async for frame in ws:
                    await self._handle(frame, worker)
            finally:
                self._ws = None

    async def _subscribe(self, ws) -> None:
        await ws.send(json.dumps({"action": "authenticate",
                                  "data": {"key_id": self._key, "secret_key": self._secret}}))
        reply = await self._reply(ws, "authorization")
        if reply.get("status") != "authorized":
            raise StreamAuthError(str(reply.get("message") or reply.get("status") or "unauthorized"))
        await ws.send(json.dumps({"action": "listen", "data": {"streams": [STREAM]}}))
        reply = await self._reply(ws, "listening")
        if STREAM not in (reply.get("streams") or []):
            raise ValueError(f"Alpaca did not confirm the {STREAM} stream")

    async def _reply(self, ws, stream: str) -> dict:
        """The next message of ``stream`` (within ``open_timeout``); other messages are skipped."""
        async with asyncio.timeout(self.open_timeout):
            while True:
                try:
                    message = decode_frame(await ws.recv())
                except (ValueError, UnicodeDecodeError):
                    log.warning("alpaca trade_updates: unreadable frame while subscribing; skipped")
                    continue
                if isinstance(message, dict) and message.get("stream") == stream:
                    data = message.get("data")
                    return data if isinstance(data, dict) else {}

    async def _handle(self, frame: str | bytes, worker: ThreadPoolExecutor) -> None:
        try:
            message = decode_frame(frame)
        except (ValueError, UnicodeDecodeError):
            log.warning("alpaca trade_updates: unreadable frame skipped: %r", frame[:200])
            return
        if not isinstance(message, dict) or message.get("stream") != STREAM:
            log.debug("alpaca trade_updates: ignored %r", message)
            return
        try:
            update = parse_trade_update(message)
        except MalformedTradeUpdate as exc:
            log.warning("alpaca trade_updates: malformed update skipped (%s): %r", exc, frame[:500])
            return
        await self._call(worker, self.on_update, update)

    async def _call(self, worker: ThreadPoolExecutor, callback: Callable, *args: Any) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(worker, callback, *args)
        except Exception:  # a failing callback must not kill the stream
            log.exception("alpaca trade_updates: %s failed", getattr(callback, "__name__", "callback"))
