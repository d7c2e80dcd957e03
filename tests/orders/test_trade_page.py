"""The Trade page (/trade/): roles, the ticket's preview and send through the one order path, field errors
that write nothing, cancel and replace from the blotter, tenant isolation, and the dashboard's order panels."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.orders.checks import CHECK_ORDER
from apps.orders.core import Status
from apps.orders.models import Order, OrderEvent, Origin
from apps.orders.routing import order_route
from apps.orders.services import order_submit
from apps.orders.validation import UNKNOWN_SYMBOL
from tests.orders.conftest import funded, spec

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
TRADE = "/trade/"


def ticket_url(portfolio) -> str:
    return reverse("orders:ticket", args=[portfolio.pk])


def limit_ticket(**overrides) -> dict:
    data = {"symbol": "BTC/USD", "side": "buy", "type": "limit", "time_in_force": "gtc", "amount_in": "qty",
            "qty": "0.5", "limit_price": "60000", "order_class": "simple", "action": "preview"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def orders_of(portfolio) -> list[Order]:
    with firm_scope(portfolio.firm_id):
        return list(Order.objects.filter(portfolio=portfolio))


def event_count(firm_id) -> int:
    with firm_scope(firm_id):
        return OrderEvent.objects.count()


@pytest.fixture
def trader(firm_a, verified_client_for):
    return verified_client_for(firm_a.member("trader"))


# --- the page, per role -----------------------------------------------------------------------------


@pytest.mark.parametrize("role, can_trade", [("owner", True), ("admin", True), ("trader", True),
                                             ("analyst", False), ("compliance", False)])
def test_page_loads_for_each_role(role, can_trade, firm_a, paper, verified_client_for):
    client = verified_client_for(firm_a.member(role))
    response = client.get(TRADE)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-portfolio="{paper.pk}"' in html
    assert 'id="blotter"' in html and 'id="positions"' in html and "Paper A" in html
    assert ('id="ticket-form"' in html) is can_trade
    assert ('id="read-only"' in html) is not can_trade
    assert 'id="trade-config"' in html


def test_nav_links_to_the_trade_page(trader, paper):
    assert 'href="/trade/"' in trader.get("/").content.decode()


def test_restricted_portfolio_without_a_grant_is_invisible(firm_a, paper, trader):
    hidden = funded(firm_a.firm.pk, "Hidden book", restricted=True)
    page = trader.get(TRADE).content.decode()
    assert "Hidden book" not in page
    assert trader.get(TRADE, {"portfolio": hidden.pk}).status_code == 404
    assert trader.post(ticket_url(hidden), limit_ticket(), **HTMX).status_code == 404
    assert trader.get(reverse("orders:blotter", args=[hidden.pk])).status_code == 404


def test_owners_see_restricted_portfolios(firm_a, paper, verified_client_for):
    hidden = funded(firm_a.firm.pk, "Hidden book", restricted=True)
    owner = verified_client_for(firm_a.member("owner"))
    assert "Hidden book" in owner.get(TRADE).content.decode()
    assert 'id="ticket-form"' in owner.get(TRADE, {"portfolio": hidden.pk}).content.decode()


def test_another_firms_portfolio_is_404(trader, paper, paper_b):
    assert trader.get(TRADE, {"portfolio": paper_b.pk}).status_code == 404
    assert trader.post(ticket_url(paper_b), limit_ticket(action="send"), **HTMX).status_code == 404
    assert orders_of(paper_b) == []


# --- preview -------------------------------------------------------------------------------------


def test_preview_shows_the_estimate_and_every_check(trader, paper, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    response = trader.post(ticket_url(paper), limit_ticket(), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="preview"' in html and 'data-ok="true"' in html
    assert 'id="pv-price">60,000.00<' in html
    assert 'id="pv-notional">30,000.00<' in html
    assert 'id="pv-bp">70,000.00<' in html  # 100,000 cash - 30,000
    assert "All pre-trade checks pass." in html
    for code in CHECK_ORDER:
        assert f'data-code="{code}" data-ok="true"' in html
    assert 'id="t-send"' in html and 'name="ticket_key" value="' in html
    assert orders_of(paper) == []  # a preview writes nothing


def test_preview_shows_rejections_with_code_and_message(trader, paper, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    html = trader.post(ticket_url(paper), limit_ticket(qty="5"), **HTMX).content.decode()  # 300k > 100k
    assert 'data-ok="false"' in html
    assert '<li data-code="INSUFFICIENT_BUYING_POWER"><span class="mono code">INSUFFICIENT_BUYING_POWER</span>' in html
    assert 'data-code="INSUFFICIENT_BUYING_POWER" data-ok="false"' in html
    assert 'id="pv-bp">-200,000.00<' in html
    assert orders_of(paper) == []


# --- send ----------------------------------------------------------------------------------------


def test_send_creates_exactly_one_received_order(firm_a, trader, paper, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    preview = trader.post(ticket_url(paper), limit_ticket(), **HTMX).content.decode()
    key = preview.split('name="ticket_key" value="')[1].split('"')[0]
    response = trader.post(ticket_url(paper), limit_ticket(action="send", ticket_key=key), **HTMX)
    assert response.status_code == 201
    assert response["HX-Trigger"] == "orders-changed"
    [order] = orders_of(paper)
    assert order.status == Status.RECEIVED  # nothing routes it inside a test transaction
    assert (order.symbol, order.side, order.type, order.qty, order.limit_price) == (
        "BTC/USD", "buy", "limit", Decimal("0.5"), Decimal("60000"))
    assert order.origin == Origin.UI and order.source == "ui"
    assert order.entered_by_id == firm_a.member("trader").user_id
    assert order.client_order_id == f"ui-{key}"
    html = response.content.decode()
    assert f'data-order="{order.pk}"' in html and "received" in html
    # a double click sends the same ticket again: the same order, not a second one
    again = trader.post(ticket_url(paper), limit_ticket(action="send", ticket_key=key), **HTMX)
    assert again.status_code == 200
    assert len(orders_of(paper)) == 1


def test_send_keeps_the_members_client_order_id(trader, paper, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    trader.post(ticket_url(paper), limit_ticket(action="send", client_order_id="my-key-1"), **HTMX)
    [order] = orders_of(paper)
    assert order.client_order_id == "my-key-1"


def test_a_risk_rejected_send_shows_its_code_and_reason(trader, paper, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    response = trader.post(ticket_url(paper), limit_ticket(action="send", qty="5"), **HTMX)
    assert response.status_code == 200
    [order] = orders_of(paper)
    assert order.status == Status.RISK_REJECTED and order.reject_code == "INSUFFICIENT_BUYING_POWER"
    html = response.content.decode()
    assert 'data-code="INSUFFICIENT_BUYING_POWER"' in html
    assert "INSUFFICIENT_BUYING_POWER" in html and order.reject_reason.split(" ")[0] in html


def test_bracket_order_sends_its_legs(trader, paper, instruments, quote):
    quote("AAPL", "199.9", "200.1", "200", exchange="NASDAQ")
    data = limit_ticket(symbol="AAPL", qty="10", limit_price="200", time_in_force="day", order_class="bracket",
                        action="send", **{"take_profit.limit_price": "210", "stop_loss.stop_price": "190"})
    response = trader.post(ticket_url(paper), data, **HTMX)
    assert response.status_code == 201, response.content.decode()
    orders = orders_of(paper)
    assert sorted(o.leg for o in orders) == ["", "stop_loss", "take_profit"]


@pytest.mark.parametrize("overrides, field, message", [
    ({"limit_price": None}, "limit_price", "limit_price is required on limit orders."),
    ({"symbol": "ZZZZ"}, "symbol", UNKNOWN_SYMBOL),
    ({"qty": "-1"}, "qty", "qty must be greater than 0."),
    ({"qty": "abc"}, "qty", "A valid number is required."),
    ({"type": "stop", "limit_price": None}, "stop_price", "stop_price is required on stop orders."),
    ({"order_class": "bracket", "time_in_force": "day"}, "take_profit.limit_price",
     "take_profit is required on bracket orders."),
])
@pytest.mark.parametrize("action", ["preview", "send"])
def test_bad_input_rerenders_the_field_error_and_writes_nothing(overrides, field, message, action, trader, paper,
                                                                 quote):
    quote("BTC/USD", 59990, 60010, 60000)
    events = event_count(paper.firm_id)
    response = trader.post(ticket_url(paper), limit_ticket(action=action, **overrides), **HTMX)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'<ul class="errorlist" data-error-for="{field}"><li>{message}</li>' in html
    assert 'id="ticket-form"' in html
    assert orders_of(paper) == [] and event_count(paper.firm_id) == events


def test_without_htmx_the_ticket_renders_the_whole_page(trader, paper, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    response = trader.post(ticket_url(paper), limit_ticket(limit_price=None))
    assert response.status_code == 400
    html = response.content.decode()
    assert "<title>Trade" in html and 'id="blotter"' in html
    assert "limit_price is required on limit orders." in html


# --- the blotter: cancel and replace ------------------------------------------------------------------


def working_order(paper, trader_entry, quote, **kw):
    quote("BTC/USD", 59990, 60010, 60000)
    return order_submit(portfolio=paper, spec=spec(type="limit", limit_price=Decimal("59000"), **kw),
                        entry=trader_entry).order


def test_blotter_lists_working_and_todays_orders(trader, paper, trader_entry, quote):
    order = working_order(paper, trader_entry, quote)
    html = trader.get(reverse("orders:blotter", args=[paper.pk])).content.decode()
    working = html.split('id="working-table"')[1].split("</table>")[0]
    assert f'data-order="{order.pk}"' in working and "o-cancel" in working
    today = html.split('id="today-table"')[1].split("</table>")[0]
    assert f'data-order="{order.pk}"' in today


def test_cancel_from_the_blotter(trader, paper, trader_entry, quote):
    order = working_order(paper, trader_entry, quote)
    response = trader.post(reverse("orders:cancel", args=[order.pk]), **HTMX)
    assert response.status_code == 200
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
    assert order.status == Status.CANCELED
    html = response.content.decode()
    assert 'id="no-working"' in html and "Cancel requested" in html
    # canceling again: 409 with the reason, nothing changes
    again = trader.post(reverse("orders:cancel", args=[order.pk]), **HTMX)
    assert again.status_code == 409 and "cannot be canceled" in again.content.decode()


def test_cancel_without_htmx_redirects_back_to_the_page(trader, paper, trader_entry, quote):
    order = working_order(paper, trader_entry, quote)
    response = trader.post(reverse("orders:cancel", args=[order.pk]))
    assert response.status_code == 302 and response["Location"] == f"/trade/?portfolio={paper.pk}"


def test_replace_from_the_blotter(trader, paper, trader_entry, quote):
    order = working_order(paper, trader_entry, quote)
    order_route(firm_id=paper.firm_id, order_id=order.pk)  # the paper broker accepts it: new
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
    assert order.status == Status.NEW
    html = trader.get(reverse("orders:blotter", args=[paper.pk])).content.decode()
    assert reverse("orders:replace", args=[order.pk]) in html
    response = trader.post(reverse("orders:replace", args=[order.pk]),
                           {"qty": "0.5", "limit_price": "59500"}, **HTMX)
    assert response.status_code == 200, response.content.decode()
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
        replace = OrderEvent.objects.filter(order=order, event="replace_requested").get()
    assert order.status == Status.PENDING_REPLACE
    changes = replace.detail["changes"]
    assert list(changes) == ["limit_price"]  # the unchanged qty is not a change
    assert Decimal(changes["limit_price"]) == Decimal("59500")


def test_replace_with_a_bad_price_shows_the_error(trader, paper, trader_entry, quote):
    order = working_order(paper, trader_entry, quote)
    order_route(firm_id=paper.firm_id, order_id=order.pk)
    response = trader.post(reverse("orders:replace", args=[order.pk]), {"limit_price": "-3"}, **HTMX)
    assert response.status_code == 400
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
    assert order.status == Status.NEW


def test_another_firms_order_is_404_and_unchanged(firm_b, trader, paper, paper_b, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    from apps.orders.services import Entry

    b_trader = firm_b.member("trader").user
    theirs = order_submit(portfolio=paper_b, spec=spec(type="limit", limit_price=Decimal("59000")),
                          entry=Entry(actor=Actor.for_user(b_trader), origin=Origin.UI)).order
    for name, data in (("orders:cancel", {}), ("orders:replace", {"limit_price": "58000"})):
        assert trader.post(reverse(name, args=[theirs.pk]), data, **HTMX).status_code == 404
    with firm_scope(paper_b.firm_id):
        theirs.refresh_from_db()
    assert theirs.status == Status.RECEIVED and theirs.limit_price == Decimal("59000")


@pytest.mark.parametrize("role", ["analyst", "compliance"])
def test_read_only_roles_get_403_on_every_write(role, firm_a, paper, trader_entry, quote, verified_client_for):
    order = working_order(paper, trader_entry, quote)
    client = verified_client_for(firm_a.member(role))
    assert client.post(ticket_url(paper), limit_ticket(action="send"), **HTMX).status_code == 403
    assert client.post(ticket_url(paper), limit_ticket(), **HTMX).status_code == 403
    assert client.post(reverse("orders:cancel", args=[order.pk]), **HTMX).status_code == 403
    assert client.post(reverse("orders:replace", args=[order.pk]), {"limit_price": "1"}, **HTMX).status_code == 403
    assert len(orders_of(paper)) == 1
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
    assert order.status == Status.RECEIVED
    html = client.get(reverse("orders:blotter", args=[paper.pk])).content.decode()
    assert f'data-order="{order.pk}"' in html and "o-cancel" not in html


def test_positions_partial_shows_the_holdings(trader, paper, trader_entry, quote):
    quote("BTC/USD", 59990, 60010, 60000)
    market = order_submit(portfolio=paper, spec=spec(qty="0.5"), entry=trader_entry).order
    order_route(firm_id=paper.firm_id, order_id=market.pk)  # fills at the ask
    html = trader.get(reverse("orders:positions", args=[paper.pk])).content.decode()
    assert 'data-symbol="BTC/USD"' in html and 'id="h-cash">69,995.00<' in html
    blotter = trader.get(reverse("orders:blotter", args=[paper.pk])).content.decode()
    fills = blotter.split('id="fills-table"')[1].split("</table>")[0]
    assert f'data-order="{market.pk}"' in fills and "60,010.00" in fills


# --- the dashboard ------------------------------------------------------------------------------------


def test_dashboard_shows_open_orders_and_recent_fills_of_visible_portfolios(firm_a, firm_b, trader, paper, paper_b,
                                                                           trader_entry, quote):
    from apps.orders.services import Entry

    quote("BTC/USD", 59990, 60010, 60000)
    working = working_order(paper, trader_entry, quote)
    filled = order_submit(portfolio=paper, spec=spec(qty="0.1"), entry=trader_entry).order
    order_route(firm_id=paper.firm_id, order_id=filled.pk)
    hidden = funded(firm_a.firm.pk, "Hidden book", restricted=True)
    secret = order_submit(portfolio=hidden, spec=spec(type="limit", limit_price=Decimal("59000")),
                          entry=trader_entry).order
    theirs = order_submit(portfolio=paper_b, spec=spec(type="limit", limit_price=Decimal("59000")),
                          entry=Entry(actor=Actor.for_user(firm_b.member("trader").user), origin=Origin.UI)).order
    html = trader.get("/").content.decode()
    open_orders = html.split('id="open-orders-table"')[1].split("</table>")[0]
    assert f'data-order="{working.pk}"' in open_orders
    assert str(secret.pk) not in html and str(theirs.pk) not in html
    fills = html.split('id="recent-fills-table"')[1].split("</table>")[0]
    assert "BTC/USD" in fills and "60,010.00" in fills
