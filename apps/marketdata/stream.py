"""Running a live provider: its quotes and bars into Redis, the bars table and the /ws/market/ hubs.

The provider's ``stream`` runs in a thread of its own (alpaca-py runs an asyncio loop there, where
Django's ORM may not be called); its callbacks only enqueue. The calling thread drains the queue
every ``flush_interval`` seconds and writes one batch: the latest quote per symbol
(``quotes.quotes_set``, one pipeline) and the final 1m bars (``bars_upsert``, one transaction),
then publishes the batch with ``ticks_publish`` after commit. So a burst of quotes costs one Redis
round trip per interval, and a slow database never blocks the socket.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
from django.db import transaction

from apps.marketdata import quotes as quote_cache
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.providers.base import LiveBar, LiveProvider
from apps.marketdata.quotes import QuoteIn

log = logging.getLogger(__name__)


def bar_tick(bar: LiveBar):
    """A provider's LiveBar as the /ws/market/ contract's BarTick."""
    from apps.marketdata.ticks import BarTick

    return BarTick(symbol=bar.symbol, timeframe=bar.timeframe, ts=bar.ts, open=bar.open, high=bar.high, low=bar.low,
                   close=bar.close, volume=bar.volume, final=bar.final)


def bars_frame(bars: list[LiveBar]) -> pd.DataFrame:
    """One symbol's bars (latest version per minute wins) as the frame bars_upsert takes."""
    latest = {b.ts: b for b in bars}
    rows = [latest[ts] for ts in sorted(latest)]
    return pd.DataFrame({
        "ts": pd.DatetimeIndex([b.ts for b in rows]).tz_convert("UTC"),
        "open": [b.open for b in rows], "high": [b.high for b in rows], "low": [b.low for b in rows],
        "close": [b.close for b in rows], "volume": [b.volume for b in rows],
        "vwap": [float("nan") if b.vwap is None else b.vwap for b in rows],
        "trade_count": pd.array([b.trade_count for b in rows], dtype="Int64"),
    })


@dataclass
class StreamStats:
    received: int = 0  # messages from the provider
    quotes: int = 0  # quotes written (the latest per symbol per flush)
    bars: int = 0
    flushes: int = 0


class StreamRunner:
    """Drive ``provider.stream`` and write what it sends. ``instruments`` maps symbol -> instrument id."""

    def __init__(self, *, provider: LiveProvider, instruments: dict[str, int], flush_interval: float = 0.25,
                 publish: Callable | None = None):
        self.provider = provider
        self.instruments = instruments
        self.flush_interval = flush_interval
        self._publish = publish
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self.stats = StreamStats()

    def publish(self, *, quotes: Iterable[QuoteIn] = (), bars: Iterable = ()) -> None:
        if self._publish is not None:
            self._publish(quotes=quotes, bars=bars)
            return
        from apps.marketdata.ticks import ticks_publish

        ticks_publish(quotes=quotes, bars=bars)

    def _stream(self, symbols: list[str]) -> None:
        try:
            self.provider.stream(symbols, self._queue.put, self._queue.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises it
            self._error = exc

    def run(self, *, until: Callable[[], bool] | None = None) -> StreamStats:
        """Stream until the provider stops (``stop()``, an error) or ``until()`` is true; re-raises its error."""
        thread = threading.Thread(target=self._stream, args=(sorted(self.instruments),), name="market-stream",
                                  daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                self.flush(self._drain(self.flush_interval))
                if until is not None and until():
                    break
        finally:
            self.provider.stop()
            thread.join(timeout=15)
            self.flush(self._drain(0))
        if self._error is not None:
            raise self._error
        return self.stats

    def stop(self) -> None:
        self.provider.stop()

    def _drain(self, wait: float) -> list:
        items = []
        deadline = time.monotonic() + wait
        while True:
            timeout = deadline - time.monotonic()
            try:
                items.append(self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait())
            except queue.Empty:
                return items

    def flush(self, items: list) -> None:
        """Write one batch: latest quote per symbol to Redis, final bars to the table, then publish."""
        self.stats.received += len(items)
        latest: dict[str, QuoteIn] = {}
        bars: dict[str, list[LiveBar]] = {}
        for item in items:
            if isinstance(item, QuoteIn):
                if item.symbol in self.instruments:
                    latest[item.symbol] = item
            elif isinstance(item, LiveBar) and item.symbol in self.instruments:
                bars.setdefault(item.symbol, []).append(item)
        if not latest and not bars:
            return
        quotes = list(latest.values())
        ticks = [bar_tick(b) for group in bars.values() for b in group]
        with transaction.atomic():
            for symbol, group in bars.items():
                final = [b for b in group if b.final and b.timeframe == "1m"]
                if final:
                    bars_upsert(instrument_id=self.instruments[symbol], timeframe="1m", bars=bars_frame(final))

            def after_commit():
                if quotes:
                    quote_cache.quotes_set(quotes)
                try:
                    self.publish(quotes=quotes, bars=ticks)
                except Exception as exc:  # noqa: BLE001 - a lost broadcast must not stop the stream
                    log.warning("ticks not published: %s: %s", type(exc).__name__, exc)

            transaction.on_commit(after_commit)
        self.stats.quotes += len(quotes)
        self.stats.bars += len(ticks)
        self.stats.flushes += 1
