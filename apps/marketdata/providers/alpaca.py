"""Alpaca market data through alpaca-py: historical bars (REST) and live quotes/bars (WebSocket).

Historical: ``StockHistoricalDataClient`` (``GET /v2/stocks/bars``, feed iex/sip, raw prices) and
``CryptoHistoricalDataClient`` (``GET /v1beta3/crypto/{location}/bars``). alpaca-py follows
``next_page_token`` itself and retries 429/504 (``retry_attempts`` times, ``retry_wait`` apart);
we ask for raw dicts (``raw_data=True``) and turn them into the interface's frame in one pass.
Alpaca labels a daily bar with midnight New York time for stocks and midnight UTC for crypto,
which is exactly how Octopus labels daily bars, so 1d is fetched as 1Day.

Live: ``StockDataStream`` / ``CryptoDataStream`` (msgpack over a WebSocket: ``connected``, the
``auth`` action -> ``authenticated``, a ``subscribe`` -> ``subscription``, then arrays of
``{"T": "q"|"b"|"u", ...}``). alpaca-py reconnects forever on every error, including refused keys;
:class:`_Stream` stops instead when authentication is refused, and :meth:`AlpacaProvider.stream`
raises :class:`ProviderAuthError` with Alpaca's reason, so a bad key is one clear error, not a
reconnect loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgpack
import pandas as pd
from alpaca.common.exceptions import APIError
from alpaca.data.enums import CryptoFeed, DataFeed
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.live import CryptoDataStream, StockDataStream
from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from requests.exceptions import RequestException

from apps.marketdata.providers.base import (
    LiveBar,
    OnBar,
    OnQuote,
    ProviderAuthError,
    ProviderError,
    check_request,
    empty_frame,
    frame_from_records,
    validated_frame,
)
from apps.marketdata.quotes import QuoteIn

log = logging.getLogger(__name__)

ALPACA_TIMEFRAMES = {
    "1m": TimeFrame(1, TimeFrameUnit.Minute),
    "5m": TimeFrame(5, TimeFrameUnit.Minute),
    "15m": TimeFrame(15, TimeFrameUnit.Minute),
    "1h": TimeFrame(1, TimeFrameUnit.Hour),
    "1d": TimeFrame(1, TimeFrameUnit.Day),
}
BAR_FIELDS = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v", "vwap": "vw", "trade_count": "n"}
STOCK_TZ = "America/New_York"  # Alpaca's (and Octopus's) daily-bar label for US equities
AUTH_STATUSES = {401, 403}

MSG_AUTH = "Alpaca refused the keys ({status}: {reason}). Check the key id and secret, and that they are live-data keys."
MSG_RATE = "Alpaca kept answering 429 (rate limited) after {attempts} retries; try again later or narrow the request."
MSG_HTTP = "Alpaca answered {status}: {reason}"
MSG_NETWORK = "Could not reach Alpaca: {error}"
MSG_STREAM_AUTH = "Alpaca refused the stream's authentication: {reason}"


def is_crypto(symbol: str) -> bool:
    """Alpaca's crypto symbols are pairs ("BTC/USD"); stock symbols never contain a slash."""
    return "/" in symbol


def _reason(error: APIError) -> str:
    try:
        return str(json.loads(str(error)).get("message") or error)
    except (ValueError, AttributeError):
        return str(error)[:200] or "no reason given"


class AlpacaProvider:
    """Historical and live data for one set of keys (a firm's connection)."""

    name = "alpaca"

    def __init__(
        self,
        *,
        key_id: str,
        secret: str,
        data_feed: str = "iex",
        crypto_location: str = "us",
        url_override: str | None = None,
        stock_stream_url: str | None = None,
        crypto_stream_url: str | None = None,
        retry_attempts: int = 3,
        retry_wait: float = 3.0,
    ):
        self.key_id = key_id
        self._secret = secret
        self.data_feed = DataFeed(data_feed)
        self.crypto_location = CryptoFeed(crypto_location)
        self.url_override = url_override
        self.stock_stream_url = stock_stream_url
        self.crypto_stream_url = crypto_stream_url
        self.retry_attempts = retry_attempts
        self.retry_wait = retry_wait
        self._streams: list[_Stream] = []
        self._stopping = threading.Event()

    def __repr__(self) -> str:  # never the secret
        return f"AlpacaProvider(key_id={self.key_id!r}, data_feed={self.data_feed.value!r})"

    # --- historical -----------------------------------------------------------------------------

    def _client(self, cls):
        client = cls(api_key=self.key_id, secret_key=self._secret, raw_data=True, url_override=self.url_override)
        # The data clients' constructors do not expose alpaca-py's RESTClient retry settings.
        client._retry = self.retry_attempts
        client._retry_wait = self.retry_wait
        return client

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        check_request(timeframe, start, end)
        crypto = is_crypto(symbol)
        params = {"symbol_or_symbols": symbol, "timeframe": ALPACA_TIMEFRAMES[timeframe], "start": start, "end": end}
        try:
            if crypto:
                raw = self._client(CryptoHistoricalDataClient).get_crypto_bars(
                    CryptoBarsRequest(**params), feed=self.crypto_location)
            else:
                raw = self._client(StockHistoricalDataClient).get_stock_bars(
                    StockBarsRequest(**params, feed=self.data_feed, adjustment="raw"))
        except APIError as exc:
            status = exc.status_code
            if status in AUTH_STATUSES:
                raise ProviderAuthError(MSG_AUTH.format(status=status, reason=_reason(exc)), status=status) from None
            if status == 429:
                raise ProviderError(MSG_RATE.format(attempts=self.retry_attempts), status=status) from None
            raise ProviderError(MSG_HTTP.format(status=status, reason=_reason(exc)), status=status) from None
        except RequestException as exc:
            raise ProviderError(MSG_NETWORK.format(error=type(exc).__name__)) from None
        records = (raw or {}).get(symbol) or []
        if not records:
            return empty_frame()
        frame = frame_from_records(records, fields=BAR_FIELDS)
        return validated_frame(frame, symbol=symbol, timeframe=timeframe, tz="UTC" if crypto else STOCK_TZ,
                               exchange="CRYPTO" if crypto else None, start=start, end=end, source="Alpaca")

    # --- live -----------------------------------------------------------------------------------

    def stream(self, symbols: Iterable[str], on_quote: OnQuote, on_bar: OnBar,
               exchanges: dict[str, str] | None = None) -> None:
        """Stream quotes and minute bars of ``symbols`` until :meth:`stop`; blocks.

        Stocks and crypto are two Alpaca connections (two endpoints), run in one event loop.
        ``exchanges`` maps symbols to the exchange recorded with their quotes (default NYSE/CRYPTO).
        Raises ProviderAuthError when Alpaca refuses the keys on either connection.
        """
        symbols = sorted(set(symbols))
        mapper = AlpacaTickMapper(exchanges or {})
        groups = {
            "stocks": [s for s in symbols if not is_crypto(s)],
            "crypto": [s for s in symbols if is_crypto(s)],
        }

        async def handle_quote(msg: dict) -> None:
            quote = mapper.quote(msg)
            if quote is not None:
                on_quote(quote)

        async def handle_bar(msg: dict) -> None:
            bar = mapper.bar(msg)
            if bar is not None:
                on_bar(bar)

        self._streams = []
        for kind, group in groups.items():
            if not group:
                continue
            if kind == "stocks":
                stream = _Stream(StockDataStream, api_key=self.key_id, secret_key=self._secret, raw_data=True,
                                 feed=self.data_feed, url_override=self.stock_stream_url)
            else:
                stream = _Stream(CryptoDataStream, api_key=self.key_id, secret_key=self._secret, raw_data=True,
                                 feed=self.crypto_location, url_override=self.crypto_stream_url)
            stream.subscribe_quotes(handle_quote, *group)
            stream.subscribe_bars(handle_bar, *group)
            stream.subscribe_updated_bars(handle_bar, *group)
            self._streams.append(stream)
        if not self._streams or self._stopping.is_set():
            return
        asyncio.run(self._run_all())

    async def _run_all(self) -> None:
        tasks = [asyncio.create_task(s.inner._run_forever()) for s in self._streams]
        watcher = asyncio.create_task(self._watch_stop())
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._close_all()
            await asyncio.gather(*tasks, return_exceptions=True)
            watcher.cancel()
        for stream in self._streams:
            if stream.auth_error:
                raise ProviderAuthError(MSG_STREAM_AUTH.format(reason=stream.auth_error))

    async def _watch_stop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(0.05)
        while True:  # repeated: alpaca-py forgets a stop requested before its loop has started
            await self._close_all()
            await asyncio.sleep(0.1)

    async def _close_all(self) -> None:
        # stop_ws alone is noticed only when a receive times out (5 s); closing the socket too
        # ends the pending receive at once.
        for stream in self._streams:
            await stream.inner.stop_ws()
            await stream.inner.close()

    def stop(self) -> None:
        """Ask :meth:`stream` to close its connections and return (thread-safe)."""
        self._stopping.set()


class _Stream:
    """An alpaca-py data stream that gives up (instead of reconnecting forever) when auth is refused."""

    def __init__(self, cls, **kwargs: Any):
        self.auth_error: str | None = None
        wrapper = self

        class Refusing(cls):
            async def _auth(self) -> None:
                try:
                    await super()._auth()
                except ValueError as exc:
                    wrapper.auth_error = str(exc) or "auth failed"
                    await self.stop_ws()  # the run loop then returns instead of reconnecting
                    raise

        self.inner = Refusing(**kwargs)

    def subscribe_quotes(self, handler, *symbols: str) -> None:
        self.inner.subscribe_quotes(handler, *symbols)

    def subscribe_bars(self, handler, *symbols: str) -> None:
        self.inner.subscribe_bars(handler, *symbols)

    def subscribe_updated_bars(self, handler, *symbols: str) -> None:
        self.inner.subscribe_updated_bars(handler, *symbols)


def _epoch(value: Any) -> float:
    """Alpaca's ``t``: a msgpack Timestamp on the wire (raw mode), an RFC 3339 string in JSON."""
    if isinstance(value, msgpack.Timestamp):
        return value.to_unix()
    if isinstance(value, datetime):
        return value.timestamp()
    return pd.Timestamp(value).timestamp()


class AlpacaTickMapper:
    """Alpaca stream messages (raw dicts) -> QuoteIn / LiveBar. Pure: no I/O.

    Alpaca's quote carries bid and ask but no last trade, so ``last`` is the close of the symbol's
    latest minute bar, or the mid-price until a bar has been seen.
    """

    def __init__(self, exchanges: dict[str, str]):
        self.exchanges = {k.upper(): v for k, v in exchanges.items()}
        self._last: dict[str, float] = {}

    def _exchange(self, symbol: str) -> str:
        return self.exchanges.get(symbol.upper()) or ("CRYPTO" if is_crypto(symbol) else "NYSE")

    def quote(self, msg: dict) -> QuoteIn | None:
        try:
            symbol = msg["S"]
            bid, ask = float(msg["bp"]), float(msg["ap"])
            bid_size, ask_size = float(msg.get("bs", 0)), float(msg.get("as", 0))
            ts = _epoch(msg["t"])
        except (KeyError, TypeError, ValueError):
            log.warning("alpaca: malformed quote dropped: %r", msg)
            return None
        if bid > 0 and ask > 0:
            mid = (bid + ask) / 2
        else:
            mid = bid or ask
        last = self._last.get(symbol, mid)
        return QuoteIn(symbol=symbol, exchange=self._exchange(symbol), bid=bid, ask=ask, last=last,
                       bid_size=bid_size, ask_size=ask_size, ts=ts)

    def bar(self, msg: dict) -> LiveBar | None:
        try:
            symbol = msg["S"]
            o, h, lo, c, v = (float(msg[k]) for k in ("o", "h", "l", "c", "v"))
            ts = datetime.fromtimestamp(_epoch(msg["t"]), UTC)
        except (KeyError, TypeError, ValueError):
            log.warning("alpaca: malformed bar dropped: %r", msg)
            return None
        if not (lo <= min(o, c) and h >= max(o, c) and v >= 0):
            log.warning("alpaca: inconsistent bar dropped: %r", msg)
            return None
        self._last[symbol] = c
        vwap = msg.get("vw")
        count = msg.get("n")
        # "b" is a minute bar sent once the minute is over; "u" re-sends it corrected by late trades.
        return LiveBar(symbol=symbol, timeframe="1m", ts=ts, open=o, high=h, low=lo, close=c, volume=v,
                       vwap=float(vwap) if vwap is not None else None,
                       trade_count=int(count) if count is not None else None, final=True)
