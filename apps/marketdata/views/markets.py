"""The Markets page: a firm's watchlist with live quotes, a chart with indicators, symbol search.

The page renders the watchlist with the quotes of the moment (``selectors.quote_board``);
static/js/markets.js then keeps it live over /ws/market/ and draws the chart from the REST API
(bars, indicators). Adding and removing symbols are small HTMX posts here that call the
watchlist services and answer with the re-rendered watchlist table.
"""

from __future__ import annotations

import math
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.models import TRADE_ROLES
from apps.audit.services import Actor, RequestMeta
from apps.core.errors import DomainError
from apps.marketdata import quotes, selectors, services
from apps.marketdata.models import Instrument, Timeframe, Watchlist

MSG_NO_FIRM = "You are not a member of any firm."
MSG_READ_ONLY = "Your role can read watchlists but not change them."
MSG_UNKNOWN_SYMBOL = "Unknown symbol: {symbol}."
TIMEFRAMES = [tf.value for tf in Timeframe]
DEFAULT_TIMEFRAME = Timeframe.M1.value


def _member_page(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs):
        if getattr(request, "membership", None) is None:
            return render(request, "marketdata/markets_forbidden.html", {"message": MSG_NO_FIRM}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


def _can_write(request: HttpRequest) -> bool:
    return request.membership.role in TRADE_ROLES


def _watchlist_get(raw: str | None) -> Watchlist:
    """The current firm's watchlist with that id; another firm's (or a malformed id) is a 404."""
    if not raw or not raw.isdigit():
        raise Http404
    found = selectors.watchlist_list().filter(pk=int(raw)).first()
    if found is None:
        raise Http404
    return found


def _instrument(symbol: str | None) -> Instrument | None:
    """The tradable-data instrument for a symbol typed or chosen by the user (first asset class wins)."""
    symbol = (symbol or "").strip().upper()
    if not symbol or len(symbol) > 32:
        return None
    return selectors.instrument_search(query=symbol).filter(symbol=symbol).first()


def price_text(value: float | None) -> str:
    """Prices as traders read them: 2 decimals, 4 below 1 (static/js/markets.js formats the same way)."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{2 if abs(value) >= 1 else 4}f}"


def change_text(value: float | None, pct: bool = False, price: float | None = None) -> str:
    """A signed change: percent with 2 decimals; in price terms with the price's decimals
    (2 when the price is 1 or more, 4 below; by the change's own size when no price is known)."""
    if value is None or not math.isfinite(value):
        return "—"
    if pct:
        return f"{value:+,.2f}%"
    size = abs(price) if price is not None and math.isfinite(price) else abs(value)
    return f"{value:+,.{2 if size >= 1 or value == 0 else 4}f}"


def watchlist_rows(watchlist: Watchlist | None) -> list[dict]:
    """One row per watchlist item with its quote (None when the symbol has no quote yet)."""
    if watchlist is None:
        return []
    items = selectors.watchlist_items(watchlist=watchlist)
    symbols = [item.instrument.symbol for item in items]
    board = {q["symbol"]: q for q in selectors.quote_board(symbols=symbols)} if symbols else {}
    rows = []
    for item in items:
        quote = board.get(item.instrument.symbol)
        change = quote.get("change") if quote else None
        rows.append({
            "instrument": item.instrument,
            "quote": quote,
            "direction": "" if change is None or change == 0 else ("up" if change > 0 else "down"),
            "last": price_text(quote["last"]) if quote else "—",
            "bid": price_text(quote["bid"]) if quote else "—",
            "ask": price_text(quote["ask"]) if quote else "—",
            "change": change_text(change, price=quote.get("last") if quote else None),
            "change_pct": change_text(quote.get("change_pct") if quote else None, pct=True),
        })
    return rows


def _table_context(request: HttpRequest, watchlist: Watchlist | None, message: str = "", ok: bool = True) -> dict:
    return {"watchlist": watchlist, "rows": watchlist_rows(watchlist), "can_write": _can_write(request),
            "message": message, "message_class": "good" if ok else "bad"}


@_member_page
@require_GET
def markets(request: HttpRequest) -> HttpResponse:
    watchlists = list(selectors.watchlist_list())
    if request.GET.get("watchlist"):
        watchlist = _watchlist_get(request.GET["watchlist"])
    else:
        watchlist = watchlists[0] if watchlists else None
    context = _table_context(request, watchlist)
    notice = ""
    chart = None
    if request.GET.get("symbol"):
        chart = _instrument(request.GET["symbol"])
        if chart is None:
            notice = MSG_UNKNOWN_SYMBOL.format(symbol=request.GET["symbol"].strip()[:32])
    if chart is None and context["rows"]:
        chart = context["rows"][0]["instrument"]
    timeframe = request.GET.get("timeframe") if request.GET.get("timeframe") in TIMEFRAMES else DEFAULT_TIMEFRAME
    config = {
        "watchlist": watchlist.pk if watchlist else None,
        "symbols": [row["instrument"].symbol for row in context["rows"]],
        "maxQuoteAge": quotes.MAX_AGE_SECONDS,
        "chart": {"symbol": chart.symbol, "name": chart.name, "assetClass": chart.asset_class} if chart else None,
        "timeframe": timeframe,
        "timeframes": TIMEFRAMES,
        "canWrite": context["can_write"],
        "urls": {
            "bars": reverse("api-bar-list"),
            "indicators": reverse("api-indicator"),
            "catalog": reverse("api-indicator-catalog"),
            "instruments": reverse("api-instrument-list"),
            "ws": "/ws/market/",
        },
    }
    context.update({"watchlists": watchlists, "chart": chart, "timeframe": timeframe, "notice": notice,
                    "config": config, "timeframes": TIMEFRAMES})
    return render(request, "marketdata/markets.html", context)


def _watchlist_change(request: HttpRequest, change) -> HttpResponse:
    """Shared by add and remove: look up (404 across firms), check the role, call the service."""
    watchlist = _watchlist_get(request.POST.get("watchlist"))
    symbol = (request.POST.get("symbol") or "").strip().upper()[:32]
    status, ok = 200, True
    if not _can_write(request):
        message, ok, status = MSG_READ_ONLY, False, 403
    elif (instrument := _instrument(symbol)) is None:
        message, ok, status = MSG_UNKNOWN_SYMBOL.format(symbol=symbol or "(none)"), False, 400
    else:
        actor, meta = Actor.for_user(request.user), RequestMeta.from_request(request)
        try:
            message = change(watchlist=watchlist, instrument=instrument, actor=actor, meta=meta)
        except DomainError as exc:
            message, ok, status = exc.message, False, exc.status_code
    if request.headers.get("HX-Request"):
        # HTMX swaps the table; a refusal is still a 200 for the swap, its message says why.
        response = render(request, "marketdata/partials/watchlist_table.html",
                          _table_context(request, watchlist, message, ok))
        response["X-Markets-Status"] = str(status)
        return response
    if status == 403:
        return render(request, "marketdata/markets_forbidden.html", {"message": message}, status=403)
    (messages.success if ok else messages.error)(request, message)
    return redirect(f"{reverse('marketdata:markets')}?watchlist={watchlist.pk}")


@_member_page
@require_POST
def watchlist_item_add(request: HttpRequest) -> HttpResponse:
    def add(*, watchlist, instrument, actor, meta) -> str:
        services.watchlist_add(watchlist=watchlist, instrument=instrument, actor=actor, meta=meta)
        return f"{instrument.symbol} added to {watchlist.name}."

    return _watchlist_change(request, add)


@_member_page
@require_POST
def watchlist_item_remove(request: HttpRequest) -> HttpResponse:
    def remove(*, watchlist, instrument, actor, meta) -> str:
        services.watchlist_remove(watchlist=watchlist, instrument=instrument, actor=actor, meta=meta)
        return f"{instrument.symbol} removed from {watchlist.name}."

    return _watchlist_change(request, remove)
