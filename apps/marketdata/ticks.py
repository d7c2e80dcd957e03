"""Publishing live ticks (quotes and bar updates) to every ASGI process's /ws/market/ hub.

A batch is serialized once and PUBLISHed on one Redis pub/sub channel (``md:ticks`` under the
cache's key prefix); each ASGI process holds one subscription (:mod:`apps.marketdata.hub`) and
fans the ticks out to its own sockets, conflated. Nothing is written anywhere else: the caller
keeps the quote cache (:func:`apps.marketdata.quotes.quotes_set`) and the bars table up to date,
and calls this after commit. Market data is global, so the payload carries no firm.

Wire format (compact JSON, decoded only by :func:`decode`)::

    {"q": [[symbol, exchange, bid, ask, last, bid_size, ask_size, ts], ...],
     "b": [[symbol, timeframe, bar_open_epoch_s, open, high, low, close, volume, final], ...]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache

from apps.marketdata.quotes import QuoteIn

log = logging.getLogger(__name__)

CHANNEL_KEY = "md:ticks"
TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")


@dataclass(frozen=True)
class BarTick:
    """One update of a bar: ``final=False`` while it forms (open, high/low so far, last as close)."""

    symbol: str
    timeframe: str
    ts: datetime  # bar open, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    final: bool


def channel_name() -> str:
    """The pub/sub channel (pub/sub ignores Redis db numbers, so the cache's prefix namespaces it)."""
    return cache.make_key(CHANNEL_KEY)


def encode(quotes: Iterable[QuoteIn] = (), bars: Iterable[BarTick] = ()) -> str | None:
    q = [[x.symbol.upper(), x.exchange.upper(), float(x.bid), float(x.ask), float(x.last), float(x.bid_size),
          float(x.ask_size), float(x.ts)] for x in quotes]
    b = []
    for x in bars:
        if x.timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {x.timeframe!r}; known: {', '.join(TIMEFRAMES)}")
        if x.ts.tzinfo is None:
            raise ValueError("BarTick.ts must be an aware datetime (UTC)")
        b.append([x.symbol.upper(), x.timeframe, x.ts.timestamp(), float(x.open), float(x.high), float(x.low),
                  float(x.close), float(x.volume), bool(x.final)])
    if not q and not b:
        return None
    return json.dumps({"q": q, "b": b}, separators=(",", ":"), allow_nan=False)


def decode(payload: str | bytes) -> tuple[list[QuoteIn], list[BarTick]]:
    data = json.loads(payload)
    quotes = [QuoteIn(symbol=s, exchange=e, bid=b, ask=a, last=last, bid_size=bs, ask_size=as_, ts=t)
              for s, e, b, a, last, bs, as_, t in data.get("q", ())]
    bars = [BarTick(symbol=s, timeframe=tf, ts=datetime.fromtimestamp(t, UTC), open=o, high=h, low=lo, close=c,
                    volume=v, final=bool(f))
            for s, tf, t, o, h, lo, c, v, f in data.get("b", ())]
    return quotes, bars


def ticks_publish(*, quotes: Iterable[QuoteIn] = (), bars: Iterable[BarTick] = ()) -> None:
    """Fan a batch of ticks out to the /ws/market/ hubs: one serialization, one Redis PUBLISH.

    Writes nothing (no PostgreSQL, no quote cache). Call it after commit. A Redis outage is logged
    and swallowed: a lost live tick is superseded by the next one, and must not fail the producer.
    """
    payload = encode(quotes, bars)
    if payload is None:
        return
    try:
        cache._cache.get_client(write=True).publish(channel_name(), payload)  # Django's RedisCache client
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("market ticks not published: %s: %s", type(exc).__name__, exc)
