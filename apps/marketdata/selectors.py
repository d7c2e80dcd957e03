"""Reads for market data. Instruments and bars are global; watchlists are firm-scoped."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from apps.marketdata.models import Bar, Instrument, Watchlist, WatchlistItem

SEARCH_LIMIT = 50


def instrument_search(*, query: str, asset_class: str | None = None, active_only: bool = True,
                      limit: int = SEARCH_LIMIT) -> list[Instrument]:
    """Symbols starting with ``query`` first (shortest first), then names containing it."""
    text = (query or "").strip()
    if not text:
        return []
    base = Instrument.objects.filter(active=True) if active_only else Instrument.objects.filter(pk__isnull=False)
    if asset_class:
        base = base.filter(asset_class=asset_class)
    limit = max(1, min(limit, SEARCH_LIMIT))
    by_symbol = list(base.filter(symbol__startswith=text.upper()).order_by("symbol")[:limit])
    by_symbol.sort(key=lambda i: (len(i.symbol), i.symbol))
    seen = {i.pk for i in by_symbol}
    if len(by_symbol) < limit:
        by_name = base.filter(Q(name__icontains=text)).exclude(pk__in=seen).order_by("symbol")
        by_symbol += list(by_name[: limit - len(by_symbol)])
    return by_symbol


def instrument_get(*, symbol: str, asset_class: str | None = None) -> Instrument:
    """One instrument by symbol (Instrument.DoesNotExist / MultipleObjectsReturned when ambiguous)."""
    qs = Instrument.objects.filter(symbol=symbol.strip().upper())
    if asset_class:
        qs = qs.filter(asset_class=asset_class)
    return qs.get()


def bar_list(*, instrument: Instrument, timeframe: str, start: datetime, end: datetime) -> QuerySet[Bar]:
    """Bars in [start, end), oldest first: one range scan of the primary key."""
    return Bar.objects.filter(instrument=instrument, timeframe=timeframe, ts__gte=start, ts__lt=end).order_by("ts")


def watchlist_list() -> QuerySet[Watchlist]:
    """The current firm's watchlists (the firm scope filters; no scope raises)."""
    return Watchlist.objects.order_by("name")


def watchlist_items(*, watchlist: Watchlist) -> list[WatchlistItem]:
    return list(watchlist.items.select_related("instrument").order_by("position"))
