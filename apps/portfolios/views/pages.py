"""Portfolio pages: the list of the member's portfolios and one page per portfolio.

The portfolio page renders its header and holdings server-side (valuation at request time);
static/js/portfolio.js keeps them live over /ws/market/ (recomputing each row from the quantity,
cost and previous close embedded as data attributes), reloads the holdings partial when a
``portfolio.fill`` event of this portfolio arrives on /ws/events/, and draws the charts from the
``charts`` JSON. Lots, realized gains and the journal are HTMX partials. Every door goes through
``selectors.portfolio_for``: another firm's portfolio, or a restricted one the member may not
view, is a 404 everywhere.

The Dashboard (apps/core/views.dashboard) takes its context from :func:`dashboard_context`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.models import AUDIT_ROLES, MANAGE_ROLES, Membership
from apps.marketdata import quotes as market_quotes
from apps.portfolios import selectors
from apps.portfolios.lots import holding_term
from apps.portfolios.models import Fill, Portfolio

MSG_NO_FIRM = "You are not a member of any firm."
MSG_BAD_YEAR = "year: give a tax year such as 2024."
MSG_BAD_TERM = "term: choose short or long."
MSG_BAD_PAGE = "page: give a page number."
JOURNAL_PAGE_SIZE = 25
TOP_MOVERS = 5
RECENT_ACTIVITY = 10
DASH = "—"
ZERO = Decimal(0)


# --- formatting (static/js/portfolio.js formats the same way) -----------------------------------


def _finite(value) -> bool:
    return value is not None and (not isinstance(value, float) or math.isfinite(value))


def money(value) -> str:
    """Amounts with two decimals and grouping; negative with a minus sign; unknown as a dash."""
    if not _finite(value):
        return DASH
    return f"{Decimal(str(value)):,.2f}".replace("-0.00", "0.00")


def signed(value) -> str:
    """A change: always signed (+1,234.50 / -12.00)."""
    if not _finite(value):
        return DASH
    text = money(value)
    return text if text.startswith("-") else f"+{text}"


def percent(value, *, fraction: bool = True) -> str:
    """A signed percentage with two decimals; ``fraction``: the value is 0.0123 for 1.23%."""
    if not _finite(value):
        return DASH
    number = float(value) * (100 if fraction else 1)
    text = f"{number:+,.2f}%"
    return "+0.00%" if text == "-0.00%" else text


def price(value) -> str:
    """Prices as traders read them: 2 decimals, 4 below 1 (as the Markets page)."""
    if not _finite(value):
        return DASH
    number = float(value)
    return f"{number:,.{2 if abs(number) >= 1 else 4}f}"


def quantity(value) -> str:
    """Quantities as booked: no trailing zeros, grouping (0.5, 1,200, 0.00012345)."""
    if not _finite(value):
        return DASH
    amount = Decimal(str(value)).normalize()
    if amount == amount.to_integral():
        return f"{amount.quantize(Decimal(1)):,}"
    return f"{amount:,f}"


def tone(value) -> str:
    """The CSS class of a P&L number: ``pos``, ``neg`` or nothing."""
    if not _finite(value) or value == 0:
        return ""
    return "pos" if value > 0 else "neg"


def raw(value) -> str:
    """A number for a data attribute (plain, dot decimal; empty when unknown)."""
    return "" if not _finite(value) else str(value)


# --- access ----------------------------------------------------------------------------------------


def _member_page(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs):
        if getattr(request, "membership", None) is None:
            return render(request, "portfolios/forbidden.html", {"message": MSG_NO_FIRM}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


def _portfolio(request: HttpRequest, pk: int) -> Portfolio:
    return selectors.portfolio_for(request.membership, pk)


class BadFilter(ValueError):
    """A filter or page parameter the ledger tabs cannot use; the message names the field."""


# --- valuation (apps.portfolios.valuation) --------------------------------------------------------


def _valuation():
    from apps.portfolios import valuation

    return valuation


@dataclass(frozen=True)
class HoldingRow:
    """A holding as the table shows it, with the raw numbers portfolio.js recomputes from."""

    holding: object
    instrument_id: int
    symbol: str
    asset_class: str
    multiplier: int
    stale: bool
    cells: dict
    data: dict


def holding_rows(holdings) -> list[HoldingRow]:
    rows = []
    for h in holdings:
        rows.append(HoldingRow(
            holding=h, instrument_id=h.instrument_id, symbol=h.symbol, asset_class=h.asset_class,
            multiplier=getattr(h, "multiplier", 1), stale=bool(h.stale),
            cells={
                "quantity": quantity(h.quantity), "avg_cost": price(h.avg_cost), "cost": money(h.cost),
                "last": price(h.last), "prev_close": price(h.prev_close), "market_value": money(h.market_value),
                "unrealized": signed(h.unrealized), "unrealized_pct": percent(h.unrealized_pct, fraction=False),
                "day_pnl": signed(h.day_pnl), "weight": percent(h.weight, fraction=False).lstrip("+"),
                "realized": signed(h.realized),
                "unrealized_tone": tone(h.unrealized), "day_tone": tone(h.day_pnl), "realized_tone": tone(h.realized),
                "price_ts": h.price_ts,
            },
            data={
                "qty": raw(h.quantity), "cost": raw(h.cost), "last": raw(h.last), "prev_close": raw(h.prev_close),
                "market_value": raw(h.market_value), "day_pnl": raw(h.day_pnl),
                "price_ts": h.price_ts.timestamp() if isinstance(h.price_ts, datetime) else raw(h.price_ts),
            },
        ))
    return rows


def header_cells(summary) -> dict:
    return {
        "equity": money(summary.equity), "cash": money(summary.cash), "settled_cash": money(summary.settled_cash),
        "market_value": money(summary.market_value), "unrealized": signed(summary.unrealized),
        "realized": signed(summary.realized), "day_pnl": signed(summary.day_pnl),
        "unrealized_tone": tone(summary.unrealized), "realized_tone": tone(summary.realized),
        "day_tone": tone(summary.day_pnl), "net_flows": money(summary.net_flows),
    }


def holdings_context(portfolio: Portfolio) -> dict:
    """The holdings partial's context (header metrics and rows); the Trade page shows the same."""
    valuation = _valuation()
    summary = valuation.summary(portfolio)
    rows = holding_rows(summary.holdings)
    return {
        "portfolio": portfolio,
        "summary": summary,
        "header": header_cells(summary),
        "rows": rows,
        "symbols": sorted({row.symbol for row in rows}),
        "summary_data": {"cash": raw(summary.cash), "equity": raw(summary.equity),
                         "market_value": raw(summary.market_value), "unrealized": raw(summary.unrealized),
                         "day_pnl": raw(summary.day_pnl)},
    }


# --- the list ---------------------------------------------------------------------------------------


def portfolio_overview(membership: Membership) -> list[dict]:
    """One row per portfolio the member may view: the portfolio, its summary and holdings."""
    valuation = _valuation()
    out = []
    for portfolio in selectors.portfolios_visible(membership).order_by("name"):
        summary = valuation.summary(portfolio)
        out.append({"portfolio": portfolio, "summary": summary, "header": header_cells(summary),
                    "holdings": summary.holdings})
    return out


def _totals(overview: list[dict]) -> dict:
    equity = sum((row["summary"].equity for row in overview), ZERO)
    day = sum((row["summary"].day_pnl or ZERO for row in overview), ZERO)
    cash = sum((row["summary"].cash for row in overview), ZERO)
    # A portfolio whose day P&L is unknown (a holding without a previous close) is left out, and said so.
    return {"equity": money(equity), "day_pnl": signed(day), "day_tone": tone(day), "cash": money(cash),
            "day_partial": any(row["summary"].day_pnl is None for row in overview),
            "stale": any(row["summary"].stale for row in overview), "count": len(overview)}


@_member_page
@require_GET
def portfolio_list(request: HttpRequest) -> HttpResponse:
    overview = portfolio_overview(request.membership)
    return render(request, "portfolios/list.html", {
        "overview": overview, "totals": _totals(overview),
        "can_create": request.membership.role in MANAGE_ROLES,
    })


# --- the portfolio page -------------------------------------------------------------------------------

LEDGER_TABS = ("lots", "gains", "journal")


@_member_page
@require_GET
def portfolio_detail(request: HttpRequest, pk: int) -> HttpResponse:
    portfolio = _portfolio(request, pk)
    context = holdings_context(portfolio)
    tab = request.GET.get("tab") if request.GET.get("tab") in LEDGER_TABS else "lots"
    status = 200
    try:
        ledger = {"lots": _lots_context, "gains": _gains_context, "journal": _journal_context}[tab](request, portfolio)
    except BadFilter as exc:
        ledger, status = {"ledger_error": str(exc)}, 400
    perms = selectors.portfolio_perms(request.membership, portfolio)
    config = {
        "portfolio": portfolio.pk,
        "symbols": context["symbols"],
        "maxQuoteAge": market_quotes.MAX_AGE_SECONDS,
        "benchmark": portfolio.benchmark.symbol if portfolio.benchmark_id else None,
        "urls": {
            "ws": "/ws/market/",
            "holdings": reverse("portfolios:holdings", args=[portfolio.pk]),
            "charts": reverse("portfolios:charts", args=[portfolio.pk]),
        },
    }
    context.update(ledger)
    context.update({"tab": tab, "tabs": LEDGER_TABS, "config": config,
                    "can_manage": selectors.MANAGE in perms, "can_trade": selectors.TRADE in perms})
    return render(request, "portfolios/detail.html", context, status=status)


@_member_page
@require_GET
def holdings_partial(request: HttpRequest, pk: int) -> HttpResponse:
    portfolio = _portfolio(request, pk)
    return render(request, "portfolios/partials/holdings.html", holdings_context(portfolio))


def _lots_context(request: HttpRequest, portfolio: Portfolio) -> dict:
    today = timezone.localdate()
    lots = list(selectors.lots_open(portfolio.pk))
    rows = []
    for lot in lots:
        per_unit = lot.basis / abs(lot.quantity) if lot.quantity else None
        rows.append({
            "lot": lot, "symbol": lot.instrument.symbol, "quantity": quantity(lot.quantity),
            "side": "short" if lot.quantity < 0 else "long", "acquired": lot.acquired,
            "holding_start": lot.holding_start, "cost": money(lot.cost),
            "adjustment": money(lot.basis_adjustment) if lot.basis_adjustment else "",
            "basis": money(lot.basis), "per_unit": price(per_unit),
            "term": holding_term(lot.holding_start, today),
        })
    return {"lots": rows}


def _gains_context(request: HttpRequest, portfolio: Portfolio) -> dict:
    year_raw, term = request.GET.get("year", "").strip(), request.GET.get("term", "").strip()
    year = None
    if year_raw:
        if not year_raw.isdigit() or not 1900 <= int(year_raw) <= 2999:
            raise BadFilter(MSG_BAD_YEAR)
        year = int(year_raw)
    if term and term not in ("short", "long"):
        raise BadFilter(MSG_BAD_TERM)
    gains = list(selectors.realized_gains(portfolio.pk, year=year, term=term or None))
    totals = {"proceeds": ZERO, "cost_basis": ZERO, "gain": ZERO, "disallowed": ZERO, "adjusted": ZERO}
    rows = []
    for g in gains:
        totals["proceeds"] += g.proceeds
        totals["cost_basis"] += g.cost_basis
        totals["gain"] += g.gain
        totals["disallowed"] += g.disallowed
        totals["adjusted"] += g.adjusted_gain
        rows.append({
            "gain": g, "symbol": g.instrument.symbol, "quantity": quantity(g.quantity),
            "acquired": g.holding_start, "sold": g.sold_date, "proceeds": money(g.proceeds),
            "cost_basis": money(g.cost_basis), "amount": signed(g.gain), "tone": tone(g.gain),
            "code": g.wash_code, "disallowed": money(g.disallowed) if g.disallowed else "",
            "adjusted": signed(g.adjusted_gain), "adjusted_tone": tone(g.adjusted_gain), "term": g.term,
        })
    years = selectors.gain_years(portfolio.pk)
    return {
        "gains": rows, "years": years, "year": year, "term": term,
        "gain_totals": {"proceeds": money(totals["proceeds"]), "cost_basis": money(totals["cost_basis"]),
                        "gain": signed(totals["gain"]), "gain_tone": tone(totals["gain"]),
                        "disallowed": money(totals["disallowed"]),
                        "adjusted": signed(totals["adjusted"]), "adjusted_tone": tone(totals["adjusted"])},
    }


def _journal_context(request: HttpRequest, portfolio: Portfolio) -> dict:
    page_raw = request.GET.get("page", "1").strip() or "1"
    if not page_raw.isdigit() or int(page_raw) < 1:
        raise BadFilter(MSG_BAD_PAGE)
    entries = selectors.journal_with_cash(portfolio.pk)
    page = Paginator(entries, JOURNAL_PAGE_SIZE).get_page(int(page_raw))
    rows = []
    for entry in page.object_list:
        fill = entry.fill
        rows.append({
            "entry": entry, "kind": entry.get_kind_display(), "trade_date": entry.trade_date,
            "settle_date": entry.settle_date,
            "detail": (f"{fill.side} {quantity(fill.quantity)} {fill.instrument.symbol} @ {price(fill.price)}"
                       if fill else entry.memo),
            "cash": signed(entry.cash) if entry.cash is not None else "", "tone": tone(entry.cash),
        })
    return {"journal": rows, "journal_page": page}


def _ledger_partial(builder, template: str):
    @_member_page
    @require_GET
    def view(request: HttpRequest, pk: int) -> HttpResponse:
        portfolio = _portfolio(request, pk)
        try:
            context = builder(request, portfolio)
        except BadFilter as exc:
            return render(request, "portfolios/partials/error.html", {"message": str(exc)}, status=400)
        return render(request, template, {"portfolio": portfolio, **context})

    view.__name__ = view.__qualname__ = template.rsplit("/", 1)[-1].removesuffix(".html") + "_partial"
    return view


lots_partial = _ledger_partial(_lots_context, "portfolios/partials/lots.html")
gains_partial = _ledger_partial(_gains_context, "portfolios/partials/gains.html")
journal_partial = _ledger_partial(_journal_context, "portfolios/partials/journal.html")


# --- the charts -----------------------------------------------------------------------------------------


def _num(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _series(dates, values) -> list[dict]:
    out = []
    for day, value in zip(dates, values, strict=False):
        number = _num(value)
        if number is not None:
            out.append({"time": day.isoformat() if isinstance(day, date) else str(day)[:10], "value": number})
    return out


def allocation(holdings) -> dict:
    """Shares of the gross market value by instrument and by asset class (short positions count by
    their absolute value, so the parts add up to 100%). Unpriced holdings are left out."""
    priced = [(h.symbol, h.asset_class, abs(Decimal(h.market_value))) for h in holdings if h.market_value is not None]
    gross = sum((value for *_, value in priced), ZERO)
    if not gross:
        return {"by_instrument": [], "by_class": [], "gross": 0.0}
    by_class: dict[str, Decimal] = {}
    for _, asset_class, value in priced:
        by_class[asset_class] = by_class.get(asset_class, ZERO) + value

    def parts(items):
        ordered = sorted(items, key=lambda kv: (-kv[1], kv[0]))
        return [{"label": label, "value": float(value), "share": float(value / gross)} for label, value in ordered]

    return {"by_instrument": parts((symbol, value) for symbol, _, value in priced),
            "by_class": parts(by_class.items()), "gross": float(gross)}


def _ratio(value) -> str:
    return f"{value:,.2f}" if _finite(value) else DASH


def performance_metrics(performance: dict) -> list[dict]:
    """The headline metrics of ``valuation.performance`` as label/text pairs (fractions as percents)."""
    drawdown = performance.get("max_drawdown") or {}
    best, worst = performance.get("best_day") or {}, performance.get("worst_day") or {}
    drawdown_text = DASH
    if drawdown:
        drawdown_text = f"{percent(drawdown.get('depth'))} ({drawdown.get('duration_days')} d)"
    return [
        {"key": "twr", "label": "Time-weighted return", "value": percent(performance.get("time_weighted_return"))},
        {"key": "mwr", "label": "Money-weighted (XIRR)", "value": percent(performance.get("money_weighted_return"))},
        {"key": "annualized", "label": "Annualized return", "value": percent(performance.get("annualized_return"))},
        {"key": "volatility", "label": "Volatility (ann.)",
         "value": percent(performance.get("annualized_volatility")).lstrip("+")},
        {"key": "sharpe", "label": "Sharpe", "value": _ratio(performance.get("sharpe"))},
        {"key": "sortino", "label": "Sortino", "value": _ratio(performance.get("sortino"))},
        {"key": "max_drawdown", "label": "Max drawdown", "value": drawdown_text},
        {"key": "calmar", "label": "Calmar", "value": _ratio(performance.get("calmar"))},
        {"key": "beta", "label": "Beta", "value": _ratio(performance.get("beta"))},
        {"key": "alpha", "label": "Alpha (ann.)", "value": percent(performance.get("alpha"))},
        {"key": "best_day", "label": "Best day",
         "value": f"{percent(best.get('value'))} {best.get('day')}" if best else DASH},
        {"key": "worst_day", "label": "Worst day",
         "value": f"{percent(worst.get('value'))} {worst.get('day')}" if worst else DASH},
    ]


@_member_page
@require_GET
def charts_data(request: HttpRequest, pk: int) -> JsonResponse:
    """Equity growth against the benchmark, drawdown and allocation, for static/js/portfolio.js."""
    portfolio = _portfolio(request, pk)
    valuation = _valuation()
    performance = valuation.performance(portfolio)
    curves = performance.get("curves") or {}
    dates = curves.get("dates") or []
    metrics = performance_metrics(performance)
    return JsonResponse({
        "equity": _series(dates, curves.get("growth") or []),
        "benchmark": _series(dates, curves.get("benchmark") or []),
        "drawdown": _series(dates, curves.get("drawdown") or []),
        "allocation": allocation(valuation.summary(portfolio).holdings),
        "metrics": metrics,
        "benchmarkSymbol": portfolio.benchmark.symbol if portfolio.benchmark_id else None,
    }, json_dumps_params={"default": str})


# --- the dashboard ----------------------------------------------------------------------------------------


def _movers(overview: list[dict]) -> list[dict]:
    """Held instruments by the size of their day change, largest first, with the portfolios holding them."""
    seen: dict[str, dict] = {}
    for row in overview:
        for h in row["holdings"]:
            entry = seen.get(h.symbol)
            if entry is None:
                change = None
                if h.last is not None and h.prev_close:
                    change = (Decimal(str(h.last)) - Decimal(str(h.prev_close))) / Decimal(str(h.prev_close))
                entry = seen[h.symbol] = {"symbol": h.symbol, "last": price(h.last), "change": change,
                                          "change_text": percent(change), "tone": tone(change), "stale": h.stale,
                                          "portfolios": []}
            entry["portfolios"].append(row["portfolio"])
    movers = [m for m in seen.values() if m["change"] is not None]
    movers.sort(key=lambda m: (-abs(m["change"]), m["symbol"]))
    return movers[:TOP_MOVERS]


def _fill_cash(fill: Fill) -> Decimal:
    """The cash a fill moved: proceeds of a sale, minus the cost of a purchase, less fees."""
    gross = fill.quantity * fill.price * fill.multiplier
    return (gross if fill.side == "sell" else -gross) - fill.fees


def _activity(portfolio_ids: list[int]) -> list[dict]:
    """The latest fills and non-trade journal entries (deposits, dividends, fees...) of these portfolios."""
    if not portfolio_ids:
        return []
    fills = selectors.recent_fills(portfolio_ids, RECENT_ACTIVITY)
    entries = selectors.recent_cash_entries(portfolio_ids, RECENT_ACTIVITY)
    # Entries count from the start of their trade date (imports post history long after it happened),
    # fills at their execution time.
    items = [{"at": f.executed_at, "when": f.executed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
              "portfolio": f.portfolio, "kind": f.side,
              "text": f"{f.side.capitalize()} {quantity(f.quantity)} {f.instrument.symbol} @ {price(f.price)}",
              "amount": signed(_fill_cash(f)), "tone": tone(_fill_cash(f))} for f in fills]
    items += [{"at": datetime.combine(e.trade_date, dt_time.min, UTC), "when": e.trade_date.isoformat(),
               "portfolio": e.portfolio, "kind": e.kind,
               "text": e.get_kind_display() + (f" · {e.memo}" if e.memo else ""),
               "amount": signed(e.cash) if e.cash is not None else "", "tone": tone(e.cash)} for e in entries]
    items.sort(key=lambda item: item["at"], reverse=True)
    return items[:RECENT_ACTIVITY]


def _audit_recent(membership: Membership) -> list:
    if membership.role not in AUDIT_ROLES:
        return []
    from apps.audit.selectors import audit_event_list

    return list(audit_event_list(firm_id=membership.firm_id, action="portfolio.")[:5])


def dashboard_context(membership: Membership | None) -> dict:
    """Totals and one row per portfolio the member may view, top movers, recent activity."""
    if membership is None:
        return {}
    overview = portfolio_overview(membership)
    return {
        "overview": overview,
        "totals": _totals(overview),
        "movers": _movers(overview),
        "activity": _activity([row["portfolio"].pk for row in overview]),
        "audit_events": _audit_recent(membership),
        "can_create": membership.role in MANAGE_ROLES,
    }


urls = [
    path("", portfolio_list, name="list"),
    path("<int:pk>/", portfolio_detail, name="detail"),
    path("<int:pk>/holdings/", holdings_partial, name="holdings"),
    path("<int:pk>/lots/", lots_partial, name="lots"),
    path("<int:pk>/gains/", gains_partial, name="gains"),
    path("<int:pk>/journal/", journal_partial, name="journal"),
    path("<int:pk>/charts/", charts_data, name="charts"),
]
