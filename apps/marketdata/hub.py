"""The per-process /ws/market/ fan-out hub: one Redis subscription, conflated delivery.

Why a hub and not one channel-layer message per client: with ``group_send`` every delivery to
every socket is a Redis round trip in the server, and the layer drops silently past its capacity;
500 clients at 50 ticks/s lost most messages that way (bench/ws_fanout.py measures both). Here:

* every ASGI process runs ONE hub (started lazily by the first /ws/market/ socket) holding ONE
  Redis ``SUBSCRIBE`` to :func:`apps.marketdata.ticks.channel_name` (reconnected with backoff);
* the hub keeps the latest state per symbol: its quote and, per timeframe, its forming bar.
  Coarser bars are aggregated here from 1m bar ticks, session-aligned as
  :mod:`apps.marketdata.resample` does (5m/15m/1h buckets anchored at the session open, a daily
  bar is the session; crypto sessions are UTC days). A bucket first seen after its start is seeded
  from the stored 1m bars, so a process that starts mid-hour still shows the right hourly bar;
* at most once per conflation interval (``MARKET_WS_INTERVAL``, default 50 ms) it builds, for each
  client, ONE ``market`` message with only the symbols (and parts: quote, timeframes) that changed
  for it since its last message, latest state wins. Clients with the same pending changes get the
  same text, serialized once;
* a client whose previous send has not finished (its socket buffer is full) is skipped that round;
  its pending changes merge (one dict: symbol -> changed parts, at most its subscriptions), and it
  gets the latest state when it drains. Memory per client is bounded; there is no queue.

Pure state handling (``ingest``, ``flush``) is synchronous and runs on the event loop; only the
Redis reader, the sends and the database reads (instruments, bar seeding) await.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Protocol

import redis.asyncio
import redis.exceptions
from channels.db import database_sync_to_async
from django.conf import settings

from apps.marketdata import calendars, quotes, ticks

log = logging.getLogger(__name__)

QUOTE = 1
TF_BITS = {"1m": 2, "5m": 4, "15m": 8, "1h": 16, "1d": 32}
COARSE_SECONDS = {"5m": 300, "15m": 900, "1h": 3600, "1d": None}
DEFAULT_INTERVAL = 0.05
INSTRUMENTS_TTL = 30.0
BACKOFF_MAX = 10.0


def tf_mask(timeframes: Iterable[str]) -> int:
    mask = 0
    for tf in timeframes:
        mask |= TF_BITS[tf]
    return mask


def mask_timeframes(mask: int) -> list[str]:
    return [tf for tf, bit in TF_BITS.items() if mask & bit]


# --------------------------------------------------------------------------------- buckets (pure)


@lru_cache(maxsize=256)
def _sessions_around(exchange: str, day: date) -> tuple[tuple[float, float, float], ...]:
    """(open, close, daily label) epoch seconds of the sessions from day-1 to day+1."""
    tz = calendars.get_calendar(exchange).tz
    rows = calendars.sessions(exchange, day - timedelta(days=1), day + timedelta(days=1))
    return tuple(
        (s.open.timestamp(), s.close.timestamp(), datetime(s.day.year, s.day.month, s.day.day, tzinfo=tz).timestamp())
        for s in rows
    )


def bucket_bounds(exchange: str, minute: float, timeframe: str) -> tuple[float, float] | None:
    """The [start, end) epoch seconds of the ``timeframe`` bucket holding the 1m bar opening at
    ``minute``, or None when that minute is outside every session (as resample drops it)."""
    try:
        sessions = _sessions_around(exchange, datetime.fromtimestamp(minute, UTC).date())
    except ValueError:  # unknown exchange or outside the calendar
        return None
    for open_, close, label in sessions:
        if open_ <= minute < close:
            step = COARSE_SECONDS[timeframe]
            if step is None:
                return label, close
            start = open_ + (minute - open_) // step * step
            return start, min(start + step, close)
    return None


def _combine(a: list[float] | None, b: list[float]) -> list[float]:
    """OHLCV of a followed by b (lists [o, h, l, c, v])."""
    if a is None:
        return list(b)
    return [a[0], max(a[1], b[1]), min(a[2], b[2]), b[3], a[4] + b[4]]


@dataclass
class Bucket:
    """A forming coarse bar: the final minutes so far plus the forming minute."""

    start: float
    end: float
    done: list[float] | None = None  # OHLCV of the final 1m bars seen
    minutes: set[float] = field(default_factory=set)  # final minutes included (redelivery-safe)
    forming: tuple[float, list[float]] | None = None  # (minute, OHLCV) not final yet
    seeded: bool = True

    last: float = float("-inf")  # the latest final minute

    def add(self, minute: float, ohlcv: list[float], final: bool) -> None:
        """Ticks arrive in order per symbol; a repeated or late minute is ignored (never double-counted)."""
        if minute in self.minutes or minute < self.last:
            return
        if final:
            self.minutes.add(minute)
            self.last = minute
            self.done = _combine(self.done, ohlcv)
            if self.forming is not None and self.forming[0] <= minute:
                self.forming = None
        elif self.forming is None or minute >= self.forming[0]:
            self.forming = (minute, ohlcv)

    def seed(self, rows: list[tuple[float, list[float]]]) -> None:
        """Stored final minutes before the first one this hub saw (order-independent merge)."""
        before = None
        for minute, ohlcv in sorted(rows):
            if minute not in self.minutes:
                self.minutes.add(minute)
                before = _combine(before, ohlcv)
        if before is not None:
            self.done = before if self.done is None else _combine(before, self.done)
        self.seeded = True

    def ohlcv(self) -> list[float] | None:
        if self.forming is None:
            return self.done
        return _combine(self.done, self.forming[1])

    def is_final(self) -> bool:
        return self.forming is None and self.last + 60 >= self.end


def _bar_message(start: float, ohlcv: list[float], final: bool) -> dict:
    return {"t": datetime.fromtimestamp(start, UTC).isoformat(), "o": ohlcv[0], "h": ohlcv[1], "l": ohlcv[2],
            "c": ohlcv[3], "v": ohlcv[4], "final": final}


@dataclass
class SymbolState:
    quote: dict | None = None  # the message's quote fields without "stale", plus the exchange under "x"
    bars: dict[str, dict] = field(default_factory=dict)  # timeframe -> bar message
    buckets: dict[str, Bucket] = field(default_factory=dict)


# --------------------------------------------------------------------------------- the hub


class HubClient(Protocol):
    """A socket the hub delivers to (MarketConsumer). ``subscriptions``: symbol -> QUOTE | timeframe bits."""

    subscriptions: dict[str, int]

    async def send_market(self, text: str) -> None: ...

    async def hub_lost(self) -> None: ...


class _Slot:
    __slots__ = ("client", "indexed", "pending", "task")

    def __init__(self, client: HubClient):
        self.client = client
        self.indexed: set[str] = set()  # the symbols this slot is filed under in the hub's index
        self.pending: dict[str, int] = {}  # symbol -> changed parts not yet sent
        self.task: asyncio.Future | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


@dataclass
class HubStats:
    ticks: int = 0
    flushes: int = 0
    messages: int = 0
    serializations: int = 0
    skipped_busy: int = 0
    send_errors: int = 0
    reconnects: int = 0


class MarketHub:
    def __init__(self, *, interval: float | None = None, redis_url: str | None = None, channel: str | None = None,
                 autoflush: bool = True):
        self.interval = float(getattr(settings, "MARKET_WS_INTERVAL", DEFAULT_INTERVAL) if interval is None
                              else interval)
        self.redis_url = redis_url or settings.CACHES["default"]["LOCATION"]
        self.channel = channel or ticks.channel_name()
        self.autoflush = autoflush
        self.loop = asyncio.get_running_loop()
        self.state: dict[str, SymbolState] = {}
        self.stats = HubStats()
        self.connected = asyncio.Event()
        self._slots: dict[HubClient, _Slot] = {}
        self._by_symbol: dict[str, set[_Slot]] = {}
        self._changes: dict[str, int] = {}
        self._dirty: set[_Slot] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._instruments: dict[str, tuple[int, str]] = {}
        self._instruments_at = -INSTRUMENTS_TTL
        self._instruments_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None

    # --- lifecycle

    def start(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = self.loop.create_task(self._read_forever())

    async def ready(self, timeout: float) -> bool:
        """Whether the Redis subscription is up (waiting up to ``timeout`` s for it)."""
        self.start()
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for task in [self._reader, *self._tasks]:
            if task is not None:
                task.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    async def _read_forever(self) -> None:
        backoff = 0.5
        while True:
            client = redis.asyncio.from_url(self.redis_url, socket_connect_timeout=2, health_check_interval=30)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.connected.set()
                backoff = 0.5
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "message":
                        self.ingest_payload(message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.exceptions.RedisError, OSError) as exc:
                was_connected = self.connected.is_set()
                self.connected.clear()
                self.stats.reconnects += 1
                log.warning("market hub: Redis subscription lost (%s: %s); retrying in %.1f s",
                            type(exc).__name__, exc, backoff)
                if was_connected:
                    self._drop_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except (redis.exceptions.RedisError, OSError):
                    pass

    def _drop_all(self) -> None:
        """The subscription broke: the state may have missed ticks. Close every socket (1013); they
        reconnect and get fresh snapshots once Redis is back."""
        self.state.clear()
        for slot in list(self._slots.values()):
            self._spawn(slot.client.hub_lost())

    def _spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- instruments (global; validated symbols and exchanges for bucketing)

    async def instruments(self) -> dict[str, tuple[int, str]]:
        """symbol -> (instrument id, exchange) of every active instrument, cached for a short TTL."""
        if time.monotonic() - self._instruments_at >= INSTRUMENTS_TTL:
            async with self._instruments_lock:
                if time.monotonic() - self._instruments_at >= INSTRUMENTS_TTL:
                    self._instruments = await database_sync_to_async(_load_instruments)()
                    self._instruments_at = time.monotonic()
        return self._instruments

    def instruments_age(self) -> float:
        return time.monotonic() - self._instruments_at

    def forget_instruments(self) -> None:
        self._instruments_at = -INSTRUMENTS_TTL

    # --- clients

    def register(self, client: HubClient) -> None:
        self._slots.setdefault(client, _Slot(client))
        self.update(client)

    def unregister(self, client: HubClient) -> None:
        slot = self._slots.pop(client, None)
        if slot is None:
            return
        self._reindex(slot, set())
        self._dirty.discard(slot)

    def update(self, client: HubClient) -> None:
        """Re-index after the client changed ``subscriptions``; pending parts no longer wanted go."""
        slot = self._slots[client]
        wanted = client.subscriptions
        self._reindex(slot, set(wanted))
        slot.pending = {s: bits & wanted[s] for s, bits in slot.pending.items() if bits & wanted.get(s, 0)}

    def _reindex(self, slot: _Slot, symbols: set[str]) -> None:
        for symbol in slot.indexed - symbols:
            subs = self._by_symbol.get(symbol)
            if subs is not None:
                subs.discard(slot)
                if not subs:
                    del self._by_symbol[symbol]
        for symbol in symbols - slot.indexed:
            self._by_symbol.setdefault(symbol, set()).add(slot)
        slot.indexed = symbols

    def sent_snapshot(self, client: HubClient, symbols: Iterable[str]) -> None:
        """The consumer just sent these symbols' full state: nothing of theirs is pending any more."""
        slot = self._slots.get(client)
        if slot is not None:
            for s in symbols:
                slot.pending.pop(s, None)

    def pending_of(self, client: HubClient) -> dict[str, int]:
        slot = self._slots.get(client)
        return dict(slot.pending) if slot else {}

    # --- ticks in

    def ingest_payload(self, payload: bytes | str) -> None:
        try:
            batch_quotes, batch_bars = ticks.decode(payload)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("market hub: malformed tick payload ignored: %s", exc)
            return
        self.ingest(batch_quotes, batch_bars)

    def ingest(self, batch_quotes: Iterable[quotes.QuoteIn], batch_bars: Iterable[ticks.BarTick]) -> None:
        for q in batch_quotes:
            st = self.state.setdefault(q.symbol, SymbolState())
            if st.quote is not None and q.ts < st.quote["t"]:
                continue  # an older quote arriving late never replaces a newer one
            st.quote = {"b": q.bid, "a": q.ask, "l": q.last, "bs": q.bid_size, "as": q.ask_size, "t": q.ts,
                        "x": q.exchange}
            self._changed(q.symbol, QUOTE)
            self.stats.ticks += 1
        for b in batch_bars:
            self._ingest_bar(b)
            self.stats.ticks += 1
        if self._changes:
            self._schedule()

    def _ingest_bar(self, b: ticks.BarTick) -> None:
        st = self.state.setdefault(b.symbol, SymbolState())
        start = b.ts.timestamp()
        ohlcv = [b.open, b.high, b.low, b.close, b.volume]
        current = st.bars.get(b.timeframe)
        if current is not None and current["t"] > datetime.fromtimestamp(start, UTC).isoformat():
            return  # a late tick of an older bar
        st.bars[b.timeframe] = _bar_message(start, ohlcv, b.final)
        self._changed(b.symbol, TF_BITS[b.timeframe])
        if b.timeframe != "1m":
            return
        exchange = self._exchange_of(b.symbol, st)
        if exchange is None:
            return
        for tf in COARSE_SECONDS:
            bounds = bucket_bounds(exchange, start, tf)
            if bounds is None:
                continue
            bucket = st.buckets.get(tf)
            if bucket is None or bucket.start != bounds[0]:
                if bucket is not None and bucket.start > bounds[0]:
                    continue  # late minute of a bucket already closed
                bucket = st.buckets[tf] = Bucket(start=bounds[0], end=bounds[1], seeded=start <= bounds[0])
                if not bucket.seeded:
                    self._spawn(self._seed(b.symbol, tf, bucket, first_minute=start))
            bucket.add(start, ohlcv, b.final)
            merged = bucket.ohlcv()
            if merged is not None:
                st.bars[tf] = _bar_message(bucket.start, merged, bucket.is_final())
                self._changed(b.symbol, TF_BITS[tf])

    def _exchange_of(self, symbol: str, st: SymbolState) -> str | None:
        known = self._instruments.get(symbol)
        if known is not None:
            return known[1]
        return st.quote["x"] if st.quote else None

    async def _seed(self, symbol: str, tf: str, bucket: Bucket, first_minute: float) -> None:
        known = (await self.instruments()).get(symbol)
        if known is None:
            bucket.seeded = True
            return
        try:
            rows = await database_sync_to_async(_stored_minutes)(known[0], bucket.start, first_minute)
        except Exception as exc:  # noqa: BLE001 - a seed is best effort; the live minutes still flow
            log.warning("market hub: could not seed %s %s from stored bars: %s", symbol, tf, exc)
            return
        st = self.state.get(symbol)
        if st is None or st.buckets.get(tf) is not bucket:
            return  # the bucket rolled over meanwhile
        bucket.seed(rows)
        merged = bucket.ohlcv()
        if merged is not None:
            st.bars[tf] = _bar_message(bucket.start, merged, bucket.is_final())
            self._changed(symbol, TF_BITS[tf])
            self._schedule()

    def _changed(self, symbol: str, bits: int) -> None:
        self._changes[symbol] = self._changes.get(symbol, 0) | bits

    # --- messages out

    def _schedule(self) -> None:
        if not self.autoflush or self._flush_handle is not None:
            return
        delay = max(0.0, self._last_flush + self.interval - self.loop.time())
        self._flush_handle = self.loop.call_later(delay, self.flush)

    def snapshot(self, symbols: Iterable[str], masks: dict[str, int], redis_quotes: dict | None = None) -> dict:
        """A market message with the full current state of ``symbols`` (quote from the hub, else Redis)."""
        now = time.time()
        out_quotes, out_bars = {}, {}
        for s in symbols:
            st = self.state.get(s)
            quote = st.quote if st and st.quote else None
            view = (redis_quotes or {}).get(s)
            if view is not None and (quote is None or view.ts.timestamp() > quote["t"]):
                quote = {"b": view.bid, "a": view.ask, "l": view.last, "bs": view.bid_size, "as": view.ask_size,
                         "t": view.ts.timestamp(), "x": view.exchange}
            if quote is not None:
                out_quotes[s] = _quote_out(quote, now)
            if st:
                bars = {tf: st.bars[tf] for tf in mask_timeframes(masks.get(s, 0)) if tf in st.bars}
                if bars:
                    out_bars[s] = bars
        return {"type": "market", "at": now, "quotes": out_quotes, "bars": out_bars}

    def flush(self) -> None:
        """Send each client one message with what changed for it (skipping clients still sending)."""
        self._flush_handle = None
        self._last_flush = self.loop.time()
        changes, self._changes = self._changes, {}
        for symbol, bits in changes.items():
            for slot in self._by_symbol.get(symbol, ()):
                wanted = bits & slot.client.subscriptions.get(symbol, 0)
                if wanted:
                    slot.pending[symbol] = slot.pending.get(symbol, 0) | wanted
                    self._dirty.add(slot)
        if not self._dirty:
            return
        self.stats.flushes += 1
        now = time.time()
        texts: dict[frozenset, str] = {}
        quote_cache: dict[str, dict] = {}
        waiting: set[_Slot] = set()
        for slot in self._dirty:
            if slot.busy:
                waiting.add(slot)
                self.stats.skipped_busy += 1
                continue
            key = frozenset(slot.pending.items())
            text = texts.get(key)
            if text is None:
                text = texts[key] = self._render(slot.pending, now, quote_cache)
                self.stats.serializations += 1
            slot.pending = {}
            slot.task = self.loop.create_task(self._deliver(slot, text))
            self.stats.messages += 1
        self._dirty = waiting

    def _render(self, pending: dict[str, int], now: float, quote_cache: dict[str, dict]) -> str:
        out_quotes, out_bars = {}, {}
        for symbol, bits in pending.items():
            st = self.state.get(symbol)
            if st is None:
                continue
            if bits & QUOTE and st.quote is not None:
                q = quote_cache.get(symbol)
                if q is None:
                    q = quote_cache[symbol] = _quote_out(st.quote, now)
                out_quotes[symbol] = q
            bars = {tf: st.bars[tf] for tf in mask_timeframes(bits) if tf in st.bars}
            if bars:
                out_bars[symbol] = bars
        return _dumps({"type": "market", "at": round(now, 3), "quotes": out_quotes, "bars": out_bars})

    async def _deliver(self, slot: _Slot, text: str) -> None:
        try:
            await slot.client.send_market(text)
        except Exception as exc:  # noqa: BLE001 - a socket gone mid-send; its disconnect unregisters it
            self.stats.send_errors += 1
            log.debug("market hub: send failed: %s", exc)
        if slot.pending and slot in self._dirty:
            self._schedule()  # it was skipped while sending: give it the merged latest state now


def _quote_out(quote: dict, now: float) -> dict:
    return {"b": quote["b"], "a": quote["a"], "l": quote["l"], "bs": quote["bs"], "as": quote["as"],
            "t": quote["t"], "stale": quotes.is_stale(ts=quote["t"], exchange=quote["x"], now=now)}


def _dumps(message: dict) -> str:
    import json

    return json.dumps(message, separators=(",", ":"))


def _load_instruments() -> dict[str, tuple[int, str]]:
    from apps.marketdata.models import Instrument

    return {sym: (pk, exch) for pk, sym, exch in
            Instrument.objects.filter(active=True).values_list("id", "symbol", "exchange")}


def _stored_minutes(instrument_id: int, start: float, before: float) -> list[tuple[float, list[float]]]:
    from apps.marketdata.models import Bar

    rows = Bar.objects.filter(
        instrument_id=instrument_id, timeframe="1m",
        ts__gte=datetime.fromtimestamp(start, UTC), ts__lt=datetime.fromtimestamp(before, UTC),
    ).values_list("ts", "open", "high", "low", "close", "volume")
    return [(ts.timestamp(), [float(o), float(h), float(lo), float(c), float(v)]) for ts, o, h, lo, c, v in rows]


# --------------------------------------------------------------------------------- one per process

_hub: MarketHub | None = None


def get_hub() -> MarketHub:
    """This process's hub (one per event loop: tests run each in its own loop), started lazily."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop or loop.is_closed():
        _hub = MarketHub()
    _hub.start()
    return _hub


def install(hub: MarketHub | None) -> None:
    """Tests: use ``hub`` (e.g. with ``autoflush=False``) as this process's hub."""
    global _hub
    _hub = hub
