"""Latest quote per instrument, cached in Redis (global: market data is firm-independent).

One Redis hash per symbol at ``md:quote:<SYMBOL>`` (under the cache's key prefix) with bid, ask,
last, their sizes, the quote time (``ts``, epoch seconds) and the instrument's exchange. A batch
is written with one pipeline. Readers get a :class:`QuoteView` whose ``stale`` flag is computed
at read time, so a quote is never presented as live when it is not:

* older than :data:`MAX_AGE_SECONDS`, or
* its exchange is not in session right now (crypto trades 24/7 and is exempt).

The simulated feed publishes one closing quote per 1-minute bar, a few seconds after the bar ends,
so a healthy feed's quote is at most ~65 s old; 90 s (1.5 bars) therefore means "the feed stopped".
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache

from apps.marketdata import calendars

KEY = "md:quote:{symbol}"
MAX_AGE_SECONDS = 90.0
ALWAYS_OPEN = frozenset({"CRYPTO"})
_FIELDS = ("bid", "ask", "last", "bid_size", "ask_size", "ts", "exchange")


@dataclass(frozen=True)
class QuoteIn:
    symbol: str
    exchange: str
    bid: float
    ask: float
    last: float
    bid_size: float
    ask_size: float
    ts: float  # epoch seconds (UTC) of the quote


@dataclass(frozen=True)
class QuoteView:
    symbol: str
    exchange: str
    bid: float
    ask: float
    last: float
    bid_size: float
    ask_size: float
    ts: datetime
    age_seconds: float
    stale: bool

    def as_dict(self) -> dict:
        return {"symbol": self.symbol, "bid": self.bid, "ask": self.ask, "last": self.last,
                "bid_size": self.bid_size, "ask_size": self.ask_size, "ts": self.ts.isoformat(),
                "stale": self.stale}


def _client():
    return cache._cache.get_client(write=True)  # Django's RedisCache: the raw redis-py client


def quote_key(symbol: str) -> str:
    return cache.make_key(KEY.format(symbol=symbol.upper()))


def quotes_set(quotes: Iterable[QuoteIn]) -> int:
    """Write a batch of quotes (one hash each) in one pipeline; returns how many were written."""
    pipe = _client().pipeline(transaction=False)
    n = 0
    for q in quotes:
        pipe.hset(quote_key(q.symbol), mapping={
            "bid": repr(float(q.bid)), "ask": repr(float(q.ask)), "last": repr(float(q.last)),
            "bid_size": repr(float(q.bid_size)), "ask_size": repr(float(q.ask_size)),
            "ts": repr(float(q.ts)), "exchange": q.exchange.upper(),
        })
        n += 1
    if n:
        pipe.execute()
    return n


def is_stale(*, ts: float, exchange: str, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    if now - ts > MAX_AGE_SECONDS:
        return True
    if exchange.upper() in ALWAYS_OPEN:
        return False
    try:
        return not calendars.is_open(exchange, datetime.fromtimestamp(now, UTC))
    except ValueError:  # unknown exchange or outside the calendar: cannot vouch for it
        return True


def _view(symbol: str, raw: dict, now: float) -> QuoteView | None:
    if not raw:
        return None
    data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}
    if any(f not in data for f in _FIELDS):
        return None
    ts = float(data["ts"])
    return QuoteView(
        symbol=symbol.upper(), exchange=data["exchange"], bid=float(data["bid"]), ask=float(data["ask"]),
        last=float(data["last"]), bid_size=float(data["bid_size"]), ask_size=float(data["ask_size"]),
        ts=datetime.fromtimestamp(ts, UTC), age_seconds=max(0.0, now - ts),
        stale=is_stale(ts=ts, exchange=data["exchange"], now=now),
    )


def quote_many(symbols: Iterable[str], *, now: float | None = None) -> dict[str, QuoteView]:
    """Quotes of the symbols that have one (symbols without a quote are absent), in one round trip."""
    symbols = [s.upper() for s in symbols]
    if not symbols:
        return {}
    pipe = _client().pipeline(transaction=False)
    for s in symbols:
        pipe.hgetall(quote_key(s))
    now = time.time() if now is None else now
    out: dict[str, QuoteView] = {}
    for s, raw in zip(symbols, pipe.execute(), strict=True):
        view = _view(s, raw, now)
        if view is not None:
            out[s] = view
    return out


def quote_get(symbol: str, *, now: float | None = None) -> QuoteView | None:
    """The symbol's quote or None; ``now`` (epoch s) only for judging staleness, default the clock."""
    return quote_many([symbol], now=now).get(symbol.upper())
