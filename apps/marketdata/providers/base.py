"""The one interface every market-data provider implements (simulated, files, Alpaca).

* Historical: ``bars(symbol, timeframe, start, end) -> DataFrame`` with exactly the columns
  :func:`apps.marketdata.ingest.bars_upsert` takes (``ts`` tz-aware UTC bar open, open, high, low,
  close, volume, vwap (float, NaN unknown), trade_count (Int64, <NA> unknown)), sorted by ``ts``,
  unique, ``start <= ts < end``; an empty frame when there is no data. Rows have passed
  :func:`apps.marketdata.validation.validate_bars` (OHLC consistency, the timeframe grid), so a
  provider's bad row is a :class:`ProviderError`, never a bad row in the database.
* Live: ``stream(symbols, on_quote, on_bar)`` blocks, calling ``on_quote(QuoteIn)`` and
  ``on_bar(LiveBar)`` as data arrives, until ``stop()`` (from another thread) or a fatal error
  (:class:`ProviderAuthError` for refused keys: reconnecting would only be refused again).

Providers are plain Python (no ORM): the shell (services, tasks, the stream command) resolves
instruments, writes bars and quotes and publishes ticks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from apps.marketdata import validation
from apps.marketdata.quotes import QuoteIn

COLUMNS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")
TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")


class ProviderError(Exception):
    """The provider could not deliver (bad data, a refused request, a plan limit). ``message`` is for people."""

    code = "PROVIDER_ERROR"

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (or the plan does not include the feed asked for)."""

    code = "PROVIDER_AUTH_FAILED"


@dataclass(frozen=True)
class LiveBar:
    """A bar from a live stream; ``final`` False while the bar is still forming."""

    symbol: str
    timeframe: str
    ts: datetime  # bar open, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None = None
    trade_count: int | None = None
    final: bool = True


OnQuote = Callable[[QuoteIn], None]
OnBar = Callable[[LiveBar], None]


@runtime_checkable
class HistoricalProvider(Protocol):
    name: str

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame: ...


@runtime_checkable
class LiveProvider(Protocol):
    name: str

    def stream(self, symbols: Iterable[str], on_quote: OnQuote, on_bar: OnBar) -> None: ...

    def stop(self) -> None: ...


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "ts": pd.Series(dtype="datetime64[ns, UTC]"),
        **{c: pd.Series(dtype="float64") for c in ("open", "high", "low", "close", "volume", "vwap")},
        "trade_count": pd.Series(dtype="Int64"),
    })


def check_request(timeframe: str, start: datetime, end: datetime) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes")
    if start >= end:
        raise ValueError("start must be before end")


def validated_frame(frame: pd.DataFrame, *, symbol: str, timeframe: str, tz: str, exchange: str | None,
                    start: datetime, end: datetime, source: str, sort: bool = True) -> pd.DataFrame:
    """Raw provider rows (COLUMNS, any order) -> the checked, sorted frame of the interface.

    With ``sort`` (API providers: pages may overlap or arrive newest-first) rows are sorted and exact
    repeats dropped first; a file keeps its order, so out-of-order rows are errors as in an import.
    A duplicate timestamp with different values, an inconsistent bar or one off the grid is a
    ProviderError naming the first offending row, and nothing of the symbol is returned.
    """
    if frame.empty:
        return empty_frame()
    if sort:
        frame = frame.sort_values("ts", kind="stable").drop_duplicates(keep="first").reset_index(drop=True)
    report = validation.validate_bars(frame, timeframe=timeframe, tz=tz, exchange=exchange)
    if report.errors:
        first = report.errors[0]
        when = frame["ts"].iloc[first.row - 1]
        raise ProviderError(f"{source} has an invalid {timeframe} bar for {symbol} (row {first.row}, {when}): "
                            f"{first.field}: {first.reason}; {len(report.errors)} problem(s) in all")
    bars = report.bars.drop(columns=["row"])
    lo, hi = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    bars = bars[(bars["ts"] >= lo) & (bars["ts"] < hi)].reset_index(drop=True)
    bars["vwap"] = bars["vwap"].astype("float64")
    bars["volume"] = bars["volume"].astype("float64")
    return bars[list(COLUMNS)]


def frame_from_records(records: list[dict], *, ts: str = "t", fields: dict[str, str] | None = None) -> pd.DataFrame:
    """Provider records (dicts) -> a raw frame of COLUMNS (``ts`` parsed as UTC)."""
    fields = fields or {}
    if not records:
        return empty_frame()
    raw = pd.DataFrame.from_records(records)
    out = pd.DataFrame({"ts": pd.to_datetime(raw[ts], utc=True, format="ISO8601")})
    for column in COLUMNS[1:]:
        source = fields.get(column, column)
        out[column] = raw[source] if source in raw else np.nan
    return out
