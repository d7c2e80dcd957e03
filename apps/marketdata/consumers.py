"""The live market stream at /ws/market/ (global market data; the socket still authenticates).

Authentication is exactly /ws/events/'s (:class:`apps.core.consumers.AuthenticatedConsumer`):
session cookie past 2FA, ``Authorization: Bearer`` header, or a first message
``{"type": "auth", "token": ...}`` (a token needs the ``read`` scope); failure closes 4401/4403.
Once authenticated the server says ``{"type": "hello", "max_symbols": 200, "timeframes": [...]}``.

Client messages (JSON text frames):

- ``{"type": "subscribe", "symbols": [...], "timeframes": ["1m", ...]}`` -> ``{"type": "subscribed",
  "symbols": [every subscribed symbol, sorted], "timeframes": [every timeframe subscribed]}`` and
  at once a ``market`` message with the current state of the symbols just (re)subscribed: the quote
  (from Redis, or the hub when newer) and the forming bar of each subscribed timeframe the hub knows.
  ``timeframes`` given: those are the named symbols' timeframes from now on (``[]``: quotes only);
  absent: new symbols get quotes only and symbols already subscribed keep theirs.
- ``{"type": "unsubscribe", "symbols": [...]}`` -> ``{"type": "unsubscribed", "symbols": [still subscribed]}``.
- ``{"type": "ping"}`` -> ``{"type": "pong"}``.

Errors leave the socket open and change nothing: ``{"type": "error", "error": {"code", "message",
"fields": {"symbols": [...]}}}`` with codes UNKNOWN_SYMBOL, UNKNOWN_TIMEFRAME, NOT_SUBSCRIBED,
SUBSCRIPTION_LIMIT (more than 200 symbols on one socket), INVALID_MESSAGE, UNKNOWN_TYPE.

Server pushes (at most one per conflation interval, only what changed since this socket's last
message, latest state wins; see :mod:`apps.marketdata.hub`)::

    {"type": "market", "at": <epoch s>, "quotes": {"AAPL": {"b", "a", "l", "bs", "as", "t", "stale"}},
     "bars": {"AAPL": {"1m": {"t": <bar open ISO>, "o", "h", "l", "c", "v", "final"}}}}

Redis unavailable (the hub cannot subscribe, or loses its subscription): close 1013.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from channels.exceptions import StopConsumer
from channels.utils import await_many_dispatch

from apps.core.consumers import AuthenticatedConsumer
from apps.marketdata import quotes
from apps.marketdata.hub import QUOTE, TF_BITS, get_hub, mask_timeframes, tf_mask

MAX_SYMBOLS = 200
UNKNOWN_REFRESH_SECONDS = 1.0


class MarketConsumer(AuthenticatedConsumer):
    log_name = "ws/market"
    invalid_json_code = "INVALID_MESSAGE"
    ready_timeout = 3.0  # seconds to wait for the hub's Redis subscription before closing 1013

    async def __call__(self, scope, receive, send):
        # As AsyncConsumer.__call__ without a channel layer: ticks come through the process's hub.
        self._reset_state()
        self.subscriptions: dict[str, int] = {}  # symbol -> QUOTE | timeframe bits (read by the hub)
        self.hub = None
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            await await_many_dispatch([receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            self._cancel_tasks()
            if self.hub is not None:
                self.hub.unregister(self)

    async def disconnect(self, code):
        self._closed = True
        if self.hub is not None:
            self.hub.unregister(self)

    async def on_authenticated(self) -> None:
        hub = get_hub()
        if not await hub.ready(self.ready_timeout):
            raise ConnectionError("the market hub has no Redis subscription")
        await hub.instruments()
        hub.register(self)
        self.hub = hub
        await self.send_json({"type": "hello", "max_symbols": MAX_SYMBOLS, "timeframes": list(TF_BITS)})

    # --- the hub's side

    async def send_market(self, text: str) -> None:
        if not self._closed:
            await self.base_send({"type": "websocket.send", "text": text})

    async def hub_lost(self) -> None:
        await self._unavailable(ConnectionError("the market hub lost its Redis subscription"))

    # --- client messages

    async def on_message(self, kind, content: dict) -> None:
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "subscribe":
            await self._subscribe(content)
        elif kind == "unsubscribe":
            await self._unsubscribe(content)
        else:
            await self._error("UNKNOWN_TYPE", f"Unknown message type {kind!r}.", field="type")

    async def _symbols_of(self, content: dict) -> list[str] | None:
        raw = content.get("symbols")
        if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s.strip() for s in raw):
            await self._error("INVALID_MESSAGE", "symbols must be a non-empty list of symbols.", field="symbols")
            return None
        return list(dict.fromkeys(s.strip().upper() for s in raw))

    async def _subscribe(self, content: dict) -> None:
        symbols = await self._symbols_of(content)
        if symbols is None:
            return
        timeframes = content.get("timeframes")
        if timeframes is not None:
            if not isinstance(timeframes, list) or not all(isinstance(t, str) for t in timeframes):
                await self._error("INVALID_MESSAGE", "timeframes must be a list of timeframes.", field="timeframes")
                return
            unknown_tf = [t for t in timeframes if t not in TF_BITS]
            if unknown_tf:
                await self._error("UNKNOWN_TIMEFRAME", f"Unknown timeframe(s): {', '.join(unknown_tf)}; known: "
                                  f"{', '.join(TF_BITS)}.", field="timeframes")
                return
        known = await self.hub.instruments()
        unknown = [s for s in symbols if s not in known]
        if unknown and self.hub.instruments_age() >= UNKNOWN_REFRESH_SECONDS:
            self.hub.forget_instruments()  # an instrument created a moment ago
            known = await self.hub.instruments()
            unknown = [s for s in symbols if s not in known]
        if unknown:
            await self._error("UNKNOWN_SYMBOL", f"Unknown symbol(s): {', '.join(unknown)}.", field="symbols")
            return
        if len(self.subscriptions.keys() | set(symbols)) > MAX_SYMBOLS:
            await self._error("SUBSCRIPTION_LIMIT", f"At most {MAX_SYMBOLS} symbols per connection "
                              f"({len(self.subscriptions)} subscribed now).", field="symbols")
            return
        fresh = []
        for s in symbols:
            before = self.subscriptions.get(s)
            if before is not None and timeframes is None:
                continue
            mask = QUOTE | tf_mask(timeframes or ())
            self.subscriptions[s] = mask
            if before is None or mask & ~before:
                fresh.append(s)
        self.hub.update(self)
        union = 0
        for mask in self.subscriptions.values():
            union |= mask
        await self.send_json({"type": "subscribed", "symbols": sorted(self.subscriptions),
                              "timeframes": mask_timeframes(union)})
        stored = await sync_to_async(quotes.quote_many, thread_sensitive=False)(fresh) if fresh else {}
        self.hub.sent_snapshot(self, fresh)
        await self.send_json(self.hub.snapshot(fresh, self.subscriptions, stored))

    async def _unsubscribe(self, content: dict) -> None:
        symbols = await self._symbols_of(content)
        if symbols is None:
            return
        missing = [s for s in symbols if s not in self.subscriptions]
        if missing:
            await self._error("NOT_SUBSCRIBED", f"Not subscribed to: {', '.join(missing)}.", field="symbols")
            return
        for s in symbols:
            del self.subscriptions[s]
        self.hub.update(self)
        await self.send_json({"type": "unsubscribed", "symbols": sorted(self.subscriptions)})
