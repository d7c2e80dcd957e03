"""The Trade page in a real browser against the ASGI server (the firm event stream is live): a trader
fills a limit ticket, previews it, sends it, sees it in the blotter, cancels it and sees it leave."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.marketdata.services import instrument_create
from apps.orders.models import Order
from apps.portfolios import services
from tests.e2e.test_markets import log_in
from tests.factories import FirmFactory, MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def world():
    """A trader's firm with a paper portfolio holding 100,000 in cash; BTC/USD quoted live at 60,000."""
    firm = FirmFactory(name="Squid Fund", slug="squid")
    trader = MembershipFactory(firm=firm, role="trader", user__email="tom@squid.example")
    instrument_create(symbol="BTC/USD", name="Bitcoin", asset_class="crypto", fractionable=True,
                      lot_size="0.0001")
    quotes_set([QuoteIn("BTC/USD", "CRYPTO", 59990.0, 60010.0, 60000.0, 1, 1, time.time())])
    actor = Actor.for_user(trader.user)
    portfolio = services.portfolio_create(firm_id=firm.pk, name="Crypto book", actor=actor)
    with firm_scope(firm.pk):
        services.cash_post(portfolio=portfolio, kind="deposit", amount=Decimal("100000"), actor=actor)
    return {"trader": trader, "portfolio": portfolio, "firm": firm}


def test_trader_previews_sends_and_cancels_a_limit_order(asgi_page, asgi_live_server, world):
    page = asgi_page
    log_in(page, asgi_live_server, world["trader"])
    page.goto("/trade/")
    page.wait_for_selector("#live-state[data-state=open]")
    assert page.locator("#no-working").is_visible()

    # the ticket shows only what a limit order uses, and checks it before asking the server
    assert page.locator("#t-limit").is_visible() and page.locator("#t-stop").is_hidden()
    page.fill("#t-symbol", "BTC/USD")
    page.select_option("#t-tif", "gtc")
    page.fill("#t-qty", "0.5")
    page.click("#t-preview")
    assert page.locator("[data-error-for=limit_price] li").inner_text() == "limit_price is required on limit orders."
    page.select_option("#t-type", "stop_limit")
    assert page.locator("#t-stop").is_visible()
    page.select_option("#t-type", "limit")
    assert page.locator("#t-stop").is_hidden()

    page.fill("#t-limit", "59000")
    page.click("#t-preview")
    page.wait_for_selector("#preview[data-ok=true]")
    assert page.inner_text("#pv-notional") == "29,500.00"
    assert page.inner_text("#pv-bp") == "70,500.00"
    assert page.locator("#pv-checks li[data-ok=true]").count() == 14
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "trade-preview.png"), full_page=True, caret="initial")

    page.click("#t-send")
    page.wait_for_selector("#ticket-message.good")
    with firm_scope(world["firm"].pk):
        order = Order.objects.get(portfolio=world["portfolio"])
    assert (order.status, order.qty, order.limit_price, order.source) == ("received", Decimal("0.5"),
                                                                           Decimal("59000"), "ui")
    row = page.locator(f"#working-table tr[data-order='{order.pk}']")
    row.wait_for()
    assert "59,000.00" in row.inner_text()
    assert page.locator(f"#today-table tr[data-order='{order.pk}']").count() == 1

    assert page.input_value("#t-tif") == "gtc" and page.input_value("#t-qty") == ""  # the shape is kept
    page.screenshot(path=str(SHOTS / "trade.png"), full_page=True, caret="initial")

    row.locator(".o-cancel").click()
    page.wait_for_selector("#no-working")
    assert "Cancel requested" in page.inner_text("#trade-flash")
    assert page.locator(f"#today-table tr[data-order='{order.pk}'][data-status=canceled]").count() == 1
    with firm_scope(world["firm"].pk):
        order.refresh_from_db()
    assert order.status == "canceled"

    # the dashboard's order panels
    page.goto("/")
    page.wait_for_selector("#dash-open-orders")
    assert page.locator("#no-open-orders").is_visible() and page.locator("#no-recent-fills").is_visible()
    page.screenshot(path=str(SHOTS / "dashboard-orders.png"), full_page=True, caret="initial")
    assert page.console_errors == []


def test_trader_starts_a_twap_from_the_algos_panel_and_watches_its_progress(asgi_page, asgi_live_server, world):
    from apps.orders.algo_selectors import algo_children
    from apps.orders.algo_services import algo_pause, algo_tick
    from apps.orders.models import AlgoOrder
    from apps.orders.routing import order_route

    page = asgi_page
    log_in(page, asgi_live_server, world["trader"])
    page.goto("/trade/")
    page.wait_for_selector("#live-state[data-state=open]")
    assert page.locator("#no-algos").is_visible()

    page.fill("#t-symbol", "BTC/USD")  # the algo form's symbol follows the ticket's
    assert page.input_value("#a-symbol") == "BTC/USD"
    page.fill("#a-qty", "0.5")
    page.fill("#a-duration", "10")
    page.fill("#a-slices", "5")
    page.click("#a-start")
    page.wait_for_selector("#algo-message.good")
    with firm_scope(world["firm"].pk):
        algo = AlgoOrder.objects.get(portfolio=world["portfolio"])
    row = page.locator(f"#algo-table tr[data-algo='{algo.pk}'][data-status=running]")
    row.wait_for()
    assert "slices sent 0/5" in row.inner_text()
    assert row.locator("progress.algo-bar").get_attribute("max") == "0.5"

    # the beat sends the first slice and the paper broker fills it: the panel follows (order event, or its 5 s poll)
    algo_tick(firm_id=world["firm"].pk, algo_id=algo.pk)
    with firm_scope(world["firm"].pk):
        [child] = algo_children(algo)
    order_route(firm_id=world["firm"].pk, order_id=child.pk)
    page.locator(f"#algo-table tr[data-algo='{algo.pk}'] progress.algo-bar[value='0.1']").wait_for(timeout=10_000)
    assert "slices sent 1/5" in row.inner_text() and "0.1 / 0.5" in row.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "trade-algos.png"), full_page=True, caret="initial")

    # a change no order event announces (a pause through the service) shows within the 5 s poll
    algo_pause(algo=algo, actor=Actor.for_user(world["trader"].user))
    page.locator(f"#algo-table tr[data-algo='{algo.pk}'][data-status=paused]").wait_for(timeout=8_000)

    row = page.locator(f"#algo-table tr[data-algo='{algo.pk}']")
    row.locator(".a-resume").click()
    page.locator(f"#algo-table tr[data-algo='{algo.pk}'][data-status=running]").wait_for()
    assert "resumed" in page.inner_text("#trade-flash")
    row.locator(".a-cancel").click()
    page.locator(f"#algo-table tr[data-algo='{algo.pk}'][data-status=canceled]").wait_for()
    assert "canceled" in page.inner_text("#trade-flash")
    assert page.console_errors == []
