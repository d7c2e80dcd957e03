"""Reads for market data. Instruments and bars are global; watchlists are firm-scoped."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Length

from apps.marketdata.models import Bar, Instrument, Timeframe, Watchlist, WatchlistItem
from apps.marketdata.resample import resample

MAX_SOURCE_ROWS = 500_000  # 1m bars one on-the-fly resample may read
BAR_FIELDS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")


def instrument_search(*, query: str = "", asset_class: str | None = None) -> QuerySet[Instrument]:
    """Active instruments, ranked: symbols starting with ``query`` first (shortest first), then names
    containing it. An empty query lists every active instrument by symbol. One query; paginate it."""
    qs = Instrument.objects.filter(active=True).select_related("underlying")
    if asset_class:
        qs = qs.filter(asset_class=asset_class)
    text = (query or "").strip()
    if not text:
        return qs.order_by("symbol", "asset_class")
    prefix = Q(symbol__startswith=text.upper())
    return (
        qs.filter(prefix | Q(name__icontains=text))
        .annotate(
            rank=Case(When(prefix, then=Value(0)), default=Value(1), output_field=IntegerField()),
            symbol_len=Length("symbol"),
        )
        .order_by("rank", "symbol_len", "symbol", "asset_class")
    )


def instrument_get(*, symbol: str, asset_class: str | None = None) -> Instrument:
    """One instrument by symbol (Instrument.DoesNotExist / MultipleObjectsReturned when ambiguous)."""
    qs = Instrument.objects.filter(symbol=symbol.strip().upper())
    if asset_class:
        qs = qs.filter(asset_class=asset_class)
    return qs.get()


def bar_list(*, instrument: Instrument, timeframe: str, start: datetime, end: datetime) -> QuerySet[Bar]:
    """Bars in [start, end), oldest first: one range scan of the primary key."""
    return Bar.objects.filter(instrument=instrument, timeframe=timeframe, ts__gte=start, ts__lt=end).order_by("ts")


class RangeTooLarge(ValueError):
    """Resampling the range on the fly would read more 1m bars than one request may."""


def bars_frame(*, instrument: Instrument, timeframe: str, start: datetime, end: datetime) -> tuple[pd.DataFrame, str]:
    """Bars in [start, end) as a float64 frame, and where they came from.

    Stored bars of the timeframe when any exist in the range ("stored"); otherwise stored 1m bars
    resampled on the fly, session-aligned ("resampled"), refusing more than MAX_SOURCE_ROWS of them.
    """
    rows = list(bar_list(instrument=instrument, timeframe=timeframe, start=start, end=end).values_list(*BAR_FIELDS))
    if rows or timeframe == Timeframe.M1:
        return bars_to_frame(rows), "stored"
    source = bar_list(instrument=instrument, timeframe=Timeframe.M1, start=start, end=end)
    if source[MAX_SOURCE_ROWS:MAX_SOURCE_ROWS + 1].exists():
        raise RangeTooLarge(MAX_SOURCE_ROWS)
    minute = bars_to_frame(list(source.values_list(*BAR_FIELDS)))
    out = resample(minute, timeframe, exchange=instrument.exchange)
    # A session-aligned bucket may start before `start` (e.g. a daily label at midnight ET): keep [start, end).
    out = out[(out["ts"] >= pd.Timestamp(start)) & (out["ts"] < pd.Timestamp(end))].reset_index(drop=True)
    return out, "resampled"


def bars_to_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of BAR_FIELDS (Decimals, None) -> a frame of float64 columns (NaN for None) and UTC ts."""
    frame = pd.DataFrame(rows, columns=list(BAR_FIELDS))
    for col in BAR_FIELDS[1:]:
        frame[col] = np.array([np.nan if v is None else float(v) for v in frame[col]], dtype="float64")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def watchlist_list() -> QuerySet[Watchlist]:
    """The current firm's watchlists (the firm scope filters; no scope raises)."""
    return Watchlist.objects.order_by("name")


def watchlist_items(*, watchlist: Watchlist) -> list[WatchlistItem]:
    return list(watchlist.items.select_related("instrument").order_by("position"))
