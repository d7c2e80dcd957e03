"""The Trade page (/trade/): a portfolio picker, the order ticket (preview, then send), the blotter
(working orders with cancel and replace, today's orders, today's fills) and the portfolio's positions.

Thin: the ticket's POST is checked with the API's own ``OrderInput`` (so the browser and the API build
the same ``OrderSpec``) and handed to ``services.order_preview`` / ``services.order_submit``; cancel and
replace call ``services.order_cancel`` / ``services.order_replace``. A ``DomainError`` comes back as form
errors on the fields it names, never a 500. Every door resolves the portfolio through
``apps.portfolios.selectors.portfolio_for``: another firm's portfolio or order, or a restricted one the
member may not view, is a 404; a portfolio the member may view but not trade is a 403 on every write
(analysts and compliance see the page read-only).

static/js/trade.js shows only the fields the chosen type and class use, mirrors the server's required
fields, and reloads the blotter and positions partials when a kind "order" event of this portfolio
arrives on /ws/events/ (debounced). The Dashboard's "Open orders" and "Recent fills" panels come from
:func:`dashboard_orders`.

The Algos panel (under the blotter) lists the portfolio's TWAP/VWAP parents with their progress (filled qty of
the children vs qty, slices sent) from ``algo_selectors.portfolio_algos``; pause, resume and cancel call
``algo_services.algo_pause`` / ``algo_resume`` / ``algo_cancel``, and its "New TWAP / VWAP" form calls
``algo_services.algo_create`` (a ``DomainError`` re-renders the form with the error on its field). The same
access rules as the blotter: another firm's algo is a 404, a read-only member's POST a 403. trade.js reloads
the list on an order event of the portfolio (children are orders) and every 5 s while an algo runs.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.models import Membership
from apps.audit.services import Actor, RequestMeta
from apps.core.errors import DomainError
from apps.marketdata import quotes as market_quotes
from apps.orders import algo_selectors, algo_services, selectors, services
from apps.orders.checks import CHECK_ORDER
from apps.orders.core import OrderClass, OrderType, Side, TimeInForce
from apps.orders.models import AlgoKind, AlgoOrder, AlgoStatus, Order, OrderEvent, Origin
from apps.portfolios import selectors as portfolio_selectors
from apps.portfolios.models import Portfolio

MSG_NO_FIRM = "You are not a member of any firm."
MSG_STALE_TICKET = "The ticket changed after its preview: preview it again before sending."
MSG_SENT = "Order {id} received: {side} {amount} {symbol} {type}."
MSG_REJECTED = "Order rejected by the pre-trade checks: {code} — {reason}"
MSG_CANCELED = "Cancel requested for order {id} ({status})."
MSG_REPLACED = "Replace requested for order {id} ({status})."
BLOTTER_ROWS = 200  # a day's blotter, bounded
DASHBOARD_ROWS = 8
DASH = "—"

ORDER_TYPES = [t.value for t in OrderType]
TIFS = [t.value for t in TimeInForce]
CLASSES = [c.value for c in OrderClass]
SIDES = [s.value for s in Side]
# the ticket's inputs (a leg's fields keep the API's dotted names: errors name them the same way)
PLAIN_FIELDS = ("symbol", "side", "type", "time_in_force", "qty", "notional", "limit_price", "stop_price",
                "trail_price", "trail_percent", "order_class", "client_order_id")
LEG_FIELDS = {"take_profit": ("limit_price",), "stop_loss": ("stop_price", "limit_price")}
TICKET_FIELDS = (*PLAIN_FIELDS, "extended_hours", "take_profit.limit_price", "stop_loss.stop_price",
                 "stop_loss.limit_price")
LEG_INPUTS = {"take_profit": "take_profit.limit_price", "stop_loss": "stop_loss.stop_price"}  # a missing leg's input
REPLACE_FIELDS = ("qty", "limit_price", "stop_price")

# the Algos panel
MSG_ALGO_STARTED = "{kind} {side} {qty} {symbol} started: {slices} slices until {end} UTC."
MSG_ALGO_REPLAYED = "This form was already sent: algo {id} is in the list."
MSG_ALGO_FORM_SENT = "This form was already sent with other terms: check the list before starting another algo."
MSG_ALGO_DONE = {"pause": "Algo {id} paused: no slice is sent until it is resumed.",
                 "resume": "Algo {id} resumed ({status}).",
                 "cancel": "Algo {id} canceled: its working child orders are being canceled."}
MSG_DURATION = "duration: a number of minutes greater than 0, at most {max} (a week)."
MSG_WHEN = "A date and time in UTC, e.g. 2025-03-10 14:30."
MAX_ALGO_MINUTES = 7 * 24 * 60
ALGO_FIELDS = ("symbol", "side", "qty", "kind", "duration", "start_at", "end_at", "slices", "limit_price")
ALGO_KEPT = ("symbol", "side", "kind", "duration", "slices")  # a fresh form after a start keeps these
ALGO_DEFAULTS = {"side": "buy", "kind": AlgoKind.TWAP.value, "duration": "30", "slices": "10"}
ALGO_KINDS = [(k.value, k.label) for k in AlgoKind]
ALGO_ACTIONS = {"pause": algo_services.algo_pause, "resume": algo_services.algo_resume,
                "cancel": algo_services.algo_cancel}
FORM_KEY = re.compile(r"^[0-9a-f]{32}$")


def _fmt():
    from apps.portfolios.views import pages

    return pages


# --- access ----------------------------------------------------------------------------------------


def _member_page(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs):
        if getattr(request, "membership", None) is None:
            return render(request, "orders/forbidden.html", {"message": MSG_NO_FIRM}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


def _portfolio(request: HttpRequest, pk, perm: str = portfolio_selectors.VIEW) -> Portfolio:
    return portfolio_selectors.portfolio_for(request.membership, pk, perm)


def _order(request: HttpRequest, pk) -> Order:
    """An order of the member's firm in a portfolio the member may view (else 404, whoever owns it),
    which the member may trade (else 403)."""
    visible = portfolio_selectors.portfolios_visible(request.membership).values("pk")
    order = (Order.objects.for_firm(request.firm.pk).filter(pk=pk, portfolio_id__in=visible)
             .select_related("portfolio", "instrument").first())
    if order is None:
        raise Http404("No such order.")
    _portfolio(request, order.portfolio_id, portfolio_selectors.TRADE)
    return order


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _meta(request: HttpRequest) -> RequestMeta:
    return RequestMeta.from_request(request)


# --- rows as the tables show them -----------------------------------------------------------------


def _amount(order: Order) -> str:
    f = _fmt()
    return f.quantity(order.qty) if order.qty is not None else f"${f.money(order.notional)}"


def _order_prices(order: Order) -> str:
    f = _fmt()
    parts = []
    if order.limit_price is not None:
        parts.append(f"lmt {f.price(order.limit_price)}")
    if order.stop_price is not None:
        parts.append(f"stp {f.price(order.stop_price)}")
    if order.trail_price is not None:
        parts.append(f"trail {f.price(order.trail_price)}")
    if order.trail_percent is not None:
        parts.append(f"trail {f.quantity(order.trail_percent)}%")
    return " · ".join(parts) or "mkt"


def order_row(order: Order, *, can_trade: bool = False) -> dict:
    from apps.orders.core import CANCELABLE, REPLACEABLE, Status

    f = _fmt()
    status = Status(order.status)
    return {
        "order": order, "id": str(order.pk), "short_id": str(order.pk)[:8], "symbol": order.symbol,
        "side": order.side, "type": order.type.replace("_", " "), "tif": order.time_in_force,
        "order_class": order.order_class, "leg": order.get_leg_display() if order.leg else "",
        "amount": _amount(order), "prices": _order_prices(order),
        "filled": f.quantity(order.filled_qty) if order.filled_qty else "",
        "avg": f.price(order.filled_avg_price) if order.filled_qty else "",
        "status": order.status.replace("_", " "), "status_key": order.status,
        "reject": f"{order.reject_code}: {order.reject_reason}" if order.reject_code else "",
        "when": order.created_at.astimezone(UTC).strftime("%H:%M:%S"),
        "portfolio": order.portfolio,
        "can_cancel": can_trade and status in CANCELABLE,
        "can_replace": can_trade and status in REPLACEABLE and order.type != OrderType.MARKET,
        "qty_raw": "" if order.qty is None else str(order.qty),
        "limit_raw": "" if order.limit_price is None else str(order.limit_price),
        "stop_raw": "" if order.stop_price is None else str(order.stop_price),
        "uses_limit": order.limit_price is not None, "uses_stop": order.stop_price is not None,
    }


def fill_row(event: OrderEvent) -> dict:
    f = _fmt()
    terms = event.terms or {}
    return {
        "event": event, "order_id": str(event.order_id), "short_id": str(event.order_id)[:8],
        "symbol": terms.get("symbol", ""), "side": terms.get("side", ""),
        "qty": f.quantity(event.fill_qty), "price": f.price(event.fill_price),
        "fee": f.money(event.fee) if event.fee else "", "exec_id": event.exec_id,
        "when": event.event_at.astimezone(UTC).strftime("%H:%M:%S"),
        "when_full": event.event_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        "portfolio": event.portfolio,
    }


def _today_start() -> datetime:
    return datetime.combine(timezone.now().astimezone(UTC).date(), time.min, UTC)


def blotter_context(portfolio: Portfolio, *, can_trade: bool) -> dict:
    """Working orders (open), today's orders (every status) and today's fills of one portfolio."""
    since = _today_start()
    working = selectors.portfolio_orders(portfolio, working=True, limit=BLOTTER_ROWS)
    today = selectors.portfolio_orders(portfolio, since=since, limit=BLOTTER_ROWS)
    fills = selectors.executions(portfolio.firm_id, portfolio_ids=[portfolio.pk], since=since, limit=BLOTTER_ROWS)
    return {
        "portfolio": portfolio, "can_trade": can_trade,
        "working": [order_row(o, can_trade=can_trade) for o in working],
        "today": [order_row(o) for o in today],
        "fills": [fill_row(e) for e in fills],
    }


def positions_context(portfolio: Portfolio) -> dict:
    """The Portfolio page's holdings partial, as it renders it (header metrics and holdings)."""
    return _fmt().holdings_context(portfolio)


# --- the ticket -----------------------------------------------------------------------------------


def _flatten_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in _flatten_errors(value, name).items():
                out.setdefault(field, []).extend(messages)
    elif isinstance(detail, list | tuple):
        for item in detail:
            for field, messages in _flatten_errors(item, prefix).items():
                out.setdefault(field, []).extend(messages)
    else:
        out.setdefault(prefix or "__all__", []).append(str(detail))
    return out


def ticket_values(post) -> dict[str, str]:
    """What the member typed, as typed (to fill the form again)."""
    values = {name: (post.get(name) or "").strip() for name in TICKET_FIELDS}
    values["extended_hours"] = "on" if post.get("extended_hours") in ("on", "true", "1") else ""
    values["amount_in"] = "notional" if post.get("amount_in") == "notional" else "qty"
    for name in TICKET_FIELDS:  # templates cannot look up dotted keys
        if "." in name:
            values[name.replace(".", "__")] = values[name]
    return values


def ticket_input(values: dict[str, str], portfolio: Portfolio) -> dict:
    """The ticket as the API's OrderInput takes it. Only what was sent goes in (the page disables the
    inputs the type and class do not use), so a stray price is refused by the same rule as in the API."""
    data: dict = {"portfolio": portfolio.pk}
    for name in PLAIN_FIELDS:
        if values.get(name):
            data[name] = values[name]
    data.pop("notional" if values.get("amount_in") != "notional" else "qty", None)
    if values.get("extended_hours"):
        data["extended_hours"] = True
    for leg, names in LEG_FIELDS.items():
        leg_values = {name: values[f"{leg}.{name}"] for name in names if values.get(f"{leg}.{name}")}
        if leg_values:
            data[leg] = leg_values
    return data


def _error_fields(errors: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Errors on the ticket's inputs (keys with '.' as '__' for the template) and the rest."""
    fields, other = {}, []
    for name, messages in errors.items():
        name = LEG_INPUTS.get(name, name)
        if name in TICKET_FIELDS:
            fields[name.replace(".", "__")] = messages
        else:
            other.extend(messages if name in ("__all__", "non_field_errors") else [f"{name}: {m}" for m in messages])
    return fields, other


def _preview_rows(result) -> list[dict]:
    by_code: dict[str, list] = {}
    for rejection in result.rejections:
        by_code.setdefault(rejection.code, []).append(rejection)
    rows = []
    for code in CHECK_ORDER:
        found = by_code.pop(code, [])
        rows.append({"code": code, "ok": not found, "messages": [r.message for r in found]})
    for code, found in by_code.items():  # a check added later still shows
        rows.append({"code": code, "ok": False, "messages": [r.message for r in found]})
    return rows


def _preview(result) -> dict:
    f = _fmt()
    return {
        "ok": result.ok, "checks": _preview_rows(result),
        "rejections": [{"code": r.code, "message": r.message, "field": r.field} for r in result.rejections],
        "estimated_price": f.price(result.estimated_price), "estimated_notional": f.money(result.estimated_notional),
        "buying_power_after": f.money(result.buying_power_after),
        "buying_power_tone": "neg" if result.buying_power_after is not None and result.buying_power_after < 0 else "",
        "estimated_qty": f.quantity(result.estimated_qty) if result.estimated_qty is not None else DASH,
    }


def _ticket_context(portfolio: Portfolio, values: dict | None = None) -> dict:
    values = values or {"side": "buy", "type": "limit", "time_in_force": "day", "order_class": "simple",
                        "amount_in": "qty"}
    return {"portfolio": portfolio, "values": values, "errors": {}, "form_errors": [], "preview": None,
            "message": None, "ticket_key": "", "order_types": ORDER_TYPES, "tifs": TIFS, "classes": CLASSES,
            "sides": SIDES}


# --- pages ------------------------------------------------------------------------------------------


def _page_context(request: HttpRequest, portfolio: Portfolio | None, portfolios: list[Portfolio]) -> dict:
    context: dict = {"portfolios": portfolios, "portfolio": portfolio, "can_trade": False}
    if portfolio is None:
        return context
    perms = portfolio_selectors.portfolio_perms(request.membership, portfolio)
    can_trade = portfolio_selectors.TRADE in perms
    context.update({
        "can_trade": can_trade,
        "ticket": _ticket_context(portfolio),
        "blotter": blotter_context(portfolio, can_trade=can_trade),
        "positions": positions_context(portfolio),
        "algos": algos_context(portfolio, can_trade=can_trade),
        "algo_form": _algo_form_context(),
        "config": {
            "portfolio": portfolio.pk, "canTrade": can_trade, "maxQuoteAge": market_quotes.MAX_AGE_SECONDS,
            "urls": {"blotter": reverse("orders:blotter", args=[portfolio.pk]),
                     "positions": reverse("orders:positions", args=[portfolio.pk]),
                     "algos": reverse("orders:algos", args=[portfolio.pk]), "ws": "/ws/market/"},
        },
    })
    return context


@_member_page
@require_GET
def trade(request: HttpRequest) -> HttpResponse:
    portfolios = list(portfolio_selectors.portfolios_visible(request.membership).order_by("name", "pk"))
    chosen = request.GET.get("portfolio", "").strip()
    if chosen:
        portfolio = _portfolio(request, chosen)  # another firm's, restricted, malformed: 404
    else:
        tradable = [p for p in portfolios
                    if portfolio_selectors.TRADE in portfolio_selectors.portfolio_perms(request.membership, p)]
        portfolio = (tradable or portfolios or [None])[0]
    return render(request, "orders/trade.html", _page_context(request, portfolio, portfolios))


def _render_ticket(request: HttpRequest, portfolio: Portfolio, ticket: dict, *, status: int = 200,
                   trigger: bool = False) -> HttpResponse:
    if _is_htmx(request):
        response = render(request, "orders/partials/ticket.html", {"ticket": ticket, "portfolio": portfolio},
                          status=status)
    else:
        portfolios = list(portfolio_selectors.portfolios_visible(request.membership).order_by("name", "pk"))
        context = _page_context(request, portfolio, portfolios)
        context["ticket"] = ticket
        response = render(request, "orders/trade.html", context, status=status)
    if trigger:
        response["HX-Trigger"] = "orders-changed"
    return response


@_member_page
@require_POST
def ticket(request: HttpRequest, pk: int) -> HttpResponse:
    """Preview (``action=preview``) or send (``action=send``) the ticket for portfolio ``pk``: a bad field
    re-renders the ticket with its error (400, nothing written); a pre-trade rejection on send shows the
    stored order's code and reason."""
    from apps.orders.api import OrderInput

    portfolio = _portfolio(request, pk, portfolio_selectors.TRADE)
    values = ticket_values(request.POST)
    action = "send" if request.POST.get("action") == "send" else "preview"
    context = _ticket_context(portfolio, values)
    data = OrderInput(data=ticket_input(values, portfolio))
    if not data.is_valid():
        context["errors"], context["form_errors"] = _error_fields(_flatten_errors(data.errors))
        return _render_ticket(request, portfolio, context, status=400)
    key = (request.POST.get("ticket_key") or "").strip()
    try:
        if action == "preview":
            spec = data.to_spec()
            context["preview"] = _preview(services.order_preview(portfolio=portfolio, spec=spec))
            context["ticket_key"] = uuid.uuid4().hex  # the send that follows is idempotent on it
            return _render_ticket(request, portfolio, context)
        spec = data.to_spec(f"ui-{key}" if key and len(key) <= 64 else None)
        entry = services.Entry(actor=Actor.for_user(request.user), origin=Origin.UI, source="ui",
                               meta=_meta(request))
        result = services.order_submit(portfolio=portfolio, spec=spec, entry=entry)
    except DomainError as exc:
        if exc.code == services.IDEMPOTENCY_MISMATCH and not values.get("client_order_id"):
            context["form_errors"] = [MSG_STALE_TICKET]
        else:
            context["errors"], context["form_errors"] = _error_fields(exc.fields or {"__all__": [exc.message]})
            if not context["form_errors"] and not context["errors"]:
                context["form_errors"] = [exc.message]
        return _render_ticket(request, portfolio, context, status=exc.status_code if exc.status_code < 500 else 400)
    order = result.order
    # the next ticket keeps the instrument and the order's shape; amounts, prices and the key start empty
    kept = ("symbol", "side", "type", "time_in_force", "order_class", "amount_in", "extended_hours")
    fresh = _ticket_context(portfolio, {name: values[name] for name in kept})
    if result.rejected:
        context["message"] = {"tone": "bad", "code": order.reject_code,
                              "text": MSG_REJECTED.format(code=order.reject_code, reason=order.reject_reason),
                              "order_id": str(order.pk)}
        return _render_ticket(request, portfolio, context, status=200, trigger=True)
    fresh["message"] = {"tone": "good", "code": order.status, "order_id": str(order.pk),
                        "text": MSG_SENT.format(id=str(order.pk)[:8], side=order.side, amount=_amount(order),
                                                symbol=order.symbol, type=order.type.replace("_", " "))}
    return _render_ticket(request, portfolio, fresh, status=201 if result.created else 200, trigger=True)


def _render_blotter(request: HttpRequest, portfolio: Portfolio, *, message: dict | None = None,
                    status: int = 200) -> HttpResponse:
    if not _is_htmx(request):
        if message is not None:
            from django.contrib import messages

            (messages.success if message["tone"] == "good" else messages.error)(request, message["text"])
        return redirect(f"{reverse('orders:trade')}?portfolio={portfolio.pk}")
    perms = portfolio_selectors.portfolio_perms(request.membership, portfolio)
    context = blotter_context(portfolio, can_trade=portfolio_selectors.TRADE in perms)
    return render(request, "orders/partials/blotter_action.html", {"blotter": context, "message": message},
                  status=status)


@_member_page
@require_GET
def blotter_partial(request: HttpRequest, pk: int) -> HttpResponse:
    portfolio = _portfolio(request, pk)
    perms = portfolio_selectors.portfolio_perms(request.membership, portfolio)
    return render(request, "orders/partials/blotter.html",
                  {"blotter": blotter_context(portfolio, can_trade=portfolio_selectors.TRADE in perms)})


@_member_page
@require_GET
def positions_partial(request: HttpRequest, pk: int) -> HttpResponse:
    portfolio = _portfolio(request, pk)
    return render(request, "orders/partials/positions.html", {"positions": positions_context(portfolio)})


@_member_page
@require_POST
def order_cancel(request: HttpRequest, pk) -> HttpResponse:
    order = _order(request, pk)
    try:
        order = services.order_cancel(order=order, actor=Actor.for_user(request.user), meta=_meta(request))
    except DomainError as exc:
        return _render_blotter(request, order.portfolio, message={"tone": "bad", "text": exc.message},
                               status=exc.status_code)
    text = MSG_CANCELED.format(id=str(order.pk)[:8], status=order.status.replace("_", " "))
    return _render_blotter(request, order.portfolio, message={"tone": "good", "text": text})


@_member_page
@require_POST
def order_replace(request: HttpRequest, pk) -> HttpResponse:
    """Replace a working order's qty, limit price or stop price (the fields left blank keep their value)."""
    from apps.orders.api import ReplaceInput

    order = _order(request, pk)
    changes = {name: request.POST[name].strip() for name in REPLACE_FIELDS if (request.POST.get(name) or "").strip()}
    # unchanged values are not changes (the form is filled with the current terms)
    current = {"qty": order.qty, "limit_price": order.limit_price, "stop_price": order.stop_price}
    data = ReplaceInput(data=changes)
    if not data.is_valid():
        errors = _flatten_errors(data.errors)
        text = "; ".join(f"{name}: {' '.join(messages)}" if name != "__all__" else " ".join(messages)
                         for name, messages in errors.items())
        return _render_blotter(request, order.portfolio, message={"tone": "bad", "text": text, "order": str(order.pk)},
                               status=400)
    validated = {k: v for k, v in data.validated_data.items() if current.get(k) != v}
    if not validated:
        return _render_blotter(request, order.portfolio, status=400,
                               message={"tone": "bad", "text": "Change the quantity or a price to replace the order.",
                                        "order": str(order.pk)})
    try:
        order = services.order_replace(order=order, changes=validated, actor=Actor.for_user(request.user),
                                       meta=_meta(request))
    except DomainError as exc:
        detail = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in exc.fields.items() if k != "status")
        return _render_blotter(request, order.portfolio, status=exc.status_code,
                               message={"tone": "bad", "text": exc.message + (f" ({detail})" if detail else ""),
                                        "order": str(order.pk)})
    text = MSG_REPLACED.format(id=str(order.pk)[:8], status=order.status.replace("_", " "))
    return _render_blotter(request, order.portfolio, message={"tone": "good", "text": text})


# --- the Algos panel (TWAP / VWAP) ------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    """A decimal as an HTML attribute takes it: no exponent, no trailing zeros (10, 0.4)."""
    return format(value.normalize(), "f")


def _algo_window(algo: AlgoOrder) -> tuple[str, str]:
    """The window as the table shows it (UTC, like the blotter): times alone within today, else with the date."""
    start, end = algo.start_at.astimezone(UTC), algo.end_at.astimezone(UTC)
    today = timezone.now().astimezone(UTC).date()
    start_text = start.strftime("%H:%M" if start.date() == today else "%Y-%m-%d %H:%M")
    end_text = end.strftime("%H:%M" if end.date() == start.date() else "%Y-%m-%d %H:%M")
    return f"{start_text}–{end_text}", f"{start:%Y-%m-%d %H:%M:%S} – {end:%Y-%m-%d %H:%M:%S} UTC"


def algo_row(algo: AlgoOrder, *, can_trade: bool = False) -> dict:
    f = _fmt()
    progress = algo_selectors.algo_progress(algo)
    moves = algo_services.ALGO_TRANSITIONS[algo.status]
    window, window_full = _algo_window(algo)
    return {
        "algo": algo, "id": str(algo.pk), "short_id": str(algo.pk)[:8], "kind": algo.get_kind_display(),
        "symbol": algo.symbol, "side": algo.side, "qty": f.quantity(algo.qty), "window": window,
        "window_full": window_full,
        "prices": f"lmt {f.price(algo.limit_price)}" if algo.limit_price is not None else "mkt",
        "status": algo.status,
        "filled": f.quantity(progress.filled_qty), "sent": f.quantity(progress.sent_qty),
        "pct": f.quantity(progress.filled_pct),
        "qty_raw": _plain(algo.qty), "filled_raw": _plain(progress.filled_qty),
        "slices": progress.slices, "slices_sent": progress.slices_sent, "refused": progress.slices_refused,
        "open": progress.open_children,
        "next_at": progress.next_slice_at.astimezone(UTC).strftime("%H:%M:%S") if progress.next_slice_at else "",
        "can_pause": can_trade and AlgoStatus.PAUSED in moves,
        "can_resume": can_trade and AlgoStatus.RUNNING in moves,
        "can_cancel": can_trade and AlgoStatus.CANCELED in moves,
    }


def algos_context(portfolio: Portfolio, *, can_trade: bool) -> dict:
    """The portfolio's running and paused algos, then its last few finished ones, each with its progress."""
    rows = [algo_row(a, can_trade=can_trade) for a in algo_selectors.portfolio_algos(portfolio=portfolio)]
    return {"portfolio": portfolio, "can_trade": can_trade, "rows": rows,
            "running": sum(r["status"] == AlgoStatus.RUNNING for r in rows),
            "paused": sum(r["status"] == AlgoStatus.PAUSED for r in rows)}


def _algo_form_context(values: dict | None = None) -> dict:
    return {"values": values or dict(ALGO_DEFAULTS), "errors": {}, "form_errors": [], "message": None,
            "form_key": uuid.uuid4().hex, "kinds": ALGO_KINDS, "sides": SIDES}


def algo_form_values(post) -> dict[str, str]:
    return {name: (post.get(name) or "").strip() for name in ALGO_FIELDS}


def _when(text: str) -> datetime | None:
    """A datetime-local input's value (or an ISO instant); naive is UTC, like every time on the page."""
    try:
        value = parse_datetime(text.replace(" ", "T", 1))
    except ValueError:
        return None
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def _algo_window_input(values: dict[str, str], now: datetime) -> tuple[datetime | None, datetime | None, dict]:
    """start_at (None: now) and end_at from the form: the end given, else start (or now) + duration minutes."""
    errors: dict[str, list[str]] = {}
    start = end = None
    if values["start_at"]:
        start = _when(values["start_at"])
        if start is None:
            errors["start_at"] = [MSG_WHEN]
    if values["end_at"]:
        end = _when(values["end_at"])
        if end is None:
            errors["end_at"] = [MSG_WHEN]
    else:
        try:
            minutes = Decimal(values["duration"])
            ok = minutes.is_finite() and 0 < minutes <= MAX_ALGO_MINUTES
        except ArithmeticError:
            ok = False
        if not ok:
            errors["duration"] = [MSG_DURATION.format(max=MAX_ALGO_MINUTES)]
        elif "start_at" not in errors:
            end = (start or now) + timedelta(minutes=float(minutes))
    return start, end, errors


def _algo_errors(fields: dict, values: dict[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """A DomainError's fields on the form's inputs (the window's end is the duration when no end was typed)."""
    errors: dict[str, list[str]] = {}
    other: list[str] = []
    for name, messages in fields.items():
        messages = [str(m) for m in messages]
        if name == "end_at" and not values["end_at"]:
            name = "duration"
        if name in ALGO_FIELDS:
            errors.setdefault(name, []).extend(messages)
        else:
            other.extend(messages if name in ("__all__", "non_field_errors") else [f"{name}: {m}" for m in messages])
    return errors, other


def _render_algos(request: HttpRequest, portfolio: Portfolio, *, message: dict | None = None, status: int = 200,
                  trigger: bool = False) -> HttpResponse:
    if not _is_htmx(request):
        if message is not None:
            from django.contrib import messages

            (messages.success if message["tone"] == "good" else messages.error)(request, message["text"])
        return redirect(f"{reverse('orders:trade')}?portfolio={portfolio.pk}")
    perms = portfolio_selectors.portfolio_perms(request.membership, portfolio)
    context = algos_context(portfolio, can_trade=portfolio_selectors.TRADE in perms)
    response = render(request, "orders/partials/algo_action.html", {"algos": context, "message": message},
                      status=status)
    if trigger:
        response["HX-Trigger"] = "orders-changed"  # canceled children leave the blotter
    return response


def _render_algo_form(request: HttpRequest, portfolio: Portfolio, form: dict, *, status: int = 200) -> HttpResponse:
    if _is_htmx(request):
        # a start also refreshes the list (out of band)
        algos = algos_context(portfolio, can_trade=True) if status < 300 else None
        return render(request, "orders/partials/algo_form.html",
                      {"algo_form": form, "portfolio": portfolio, "algos": algos, "oob": True}, status=status)
    if status < 300:
        from django.contrib import messages

        messages.success(request, form["message"]["text"])
        return redirect(f"{reverse('orders:trade')}?portfolio={portfolio.pk}")
    portfolios = list(portfolio_selectors.portfolios_visible(request.membership).order_by("name", "pk"))
    context = _page_context(request, portfolio, portfolios)
    context["algo_form"] = form
    return render(request, "orders/trade.html", context, status=status)


@_member_page
@require_GET
def algos_partial(request: HttpRequest, pk: int) -> HttpResponse:
    portfolio = _portfolio(request, pk)
    perms = portfolio_selectors.portfolio_perms(request.membership, portfolio)
    return render(request, "orders/partials/algo_list.html",
                  {"algos": algos_context(portfolio, can_trade=portfolio_selectors.TRADE in perms)})


@_member_page
@require_POST
def algo_start(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a TWAP or VWAP algo in portfolio ``pk`` from the panel's form: a bad field re-renders the form
    with its error (400, nothing written). Idempotent on the form's key (a double submit starts one algo)."""
    portfolio = _portfolio(request, pk, portfolio_selectors.TRADE)
    values = algo_form_values(request.POST)
    form = _algo_form_context(values)
    form["form_key"] = key = (request.POST.get("form_key") or "").strip()
    now = timezone.now()
    start, end, errors = _algo_window_input(values, now)
    if errors:
        form["errors"] = errors
        return _render_algo_form(request, portfolio, form, status=400)
    slices = int(values["slices"]) if values["slices"].isdigit() else values["slices"]  # the service names it
    entry = services.Entry(actor=Actor.for_user(request.user), origin=Origin.UI, source="ui", meta=_meta(request))
    try:
        algo = algo_services.algo_create(
            portfolio=portfolio, symbol=values["symbol"], side=values["side"], qty=values["qty"],
            kind=values["kind"], start_at=start or now, end_at=end, slices=slices,
            limit_price=values["limit_price"] or None,
            client_order_id=f"ui-algo-{key}" if FORM_KEY.match(key) else None, entry=entry, now=now)
    except DomainError as exc:
        if exc.code == services.IDEMPOTENCY_MISMATCH:
            form["form_errors"] = [MSG_ALGO_FORM_SENT]
        else:
            form["errors"], form["form_errors"] = _algo_errors(exc.fields or {"__all__": [exc.message]}, values)
            if not form["errors"] and not form["form_errors"]:
                form["form_errors"] = [exc.message]
        return _render_algo_form(request, portfolio, form, status=exc.status_code if exc.status_code < 500 else 400)
    fresh = _algo_form_context({**ALGO_DEFAULTS, **{name: values[name] for name in ALGO_KEPT}})
    text = (MSG_ALGO_REPLAYED.format(id=str(algo.pk)[:8]) if algo.replayed else MSG_ALGO_STARTED.format(
        kind=algo.get_kind_display(), side=algo.side, qty=_fmt().quantity(algo.qty), symbol=algo.symbol,
        slices=algo.slices, end=algo.end_at.astimezone(UTC).strftime("%H:%M")))
    fresh["message"] = {"tone": "good", "text": text, "algo": str(algo.pk)}
    return _render_algo_form(request, portfolio, fresh, status=200 if algo.replayed else 201)


@_member_page
@require_POST
def algo_action(request: HttpRequest, pk, action: str) -> HttpResponse:
    """Pause, resume or cancel an algo of a portfolio the member may trade (another firm's: 404; a read-only
    member: 403). An illegal move (e.g. resuming a running algo) shows the service's message (409)."""
    visible = portfolio_selectors.portfolios_visible(request.membership).values("pk")
    algo = algo_selectors.algo_for(firm_id=request.firm.pk, pk=pk, portfolio_ids=visible)
    portfolio = _portfolio(request, algo.portfolio_id, portfolio_selectors.TRADE)
    try:
        algo = ALGO_ACTIONS[action](algo=algo, actor=Actor.for_user(request.user), meta=_meta(request))
    except DomainError as exc:
        return _render_algos(request, portfolio, message={"tone": "bad", "text": exc.message},
                             status=exc.status_code)
    text = MSG_ALGO_DONE[action].format(id=str(algo.pk)[:8], status=algo.status)
    return _render_algos(request, portfolio, message={"tone": "good", "text": text}, trigger=action == "cancel")


# --- the dashboard's panels ---------------------------------------------------------------------------


def dashboard_orders(membership: Membership | None) -> dict:
    """Open orders and the latest fills across the portfolios the member may view (firm-scoped)."""
    if membership is None:
        return {}
    orders = selectors.visible_open_orders(membership, limit=DASHBOARD_ROWS)
    visible = portfolio_selectors.portfolios_visible(membership).values("pk")
    fills = selectors.executions(membership.firm_id, portfolio_ids=visible, limit=DASHBOARD_ROWS)
    return {"open_orders": [order_row(o) for o in orders], "recent_fills": [fill_row(e) for e in fills]}


urls = [
    path("", trade, name="trade"),
    path("<int:pk>/ticket/", ticket, name="ticket"),
    path("<int:pk>/blotter/", blotter_partial, name="blotter"),
    path("<int:pk>/positions/", positions_partial, name="positions"),
    path("orders/<uuid:pk>/cancel/", order_cancel, name="cancel"),
    path("orders/<uuid:pk>/replace/", order_replace, name="replace"),
    path("<int:pk>/algos/", algos_partial, name="algos"),
    path("<int:pk>/algos/new/", algo_start, name="algo_create"),
    path("algos/<uuid:pk>/pause/", algo_action, {"action": "pause"}, name="algo_pause"),
    path("algos/<uuid:pk>/resume/", algo_action, {"action": "resume"}, name="algo_resume"),
    path("algos/<uuid:pk>/cancel/", algo_action, {"action": "cancel"}, name="algo_cancel"),
]
