"""The Portfolio page and the Dashboard in a real browser against the ASGI server: holdings, charts,
a live tick revaluing a row, a booked fill reloading the holdings, the dashboard's portfolio row."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.marketdata.services import instrument_create
from apps.marketdata.ticks import ticks_publish
from apps.portfolios import services
from apps.portfolios.booking import book_fill
from apps.portfolios.models import Snapshot
from tests.e2e.test_markets import log_in
from tests.factories import FirmFactory, MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
DRAWN = """(selector) => [...document.querySelectorAll(selector + ' canvas')].some(c => {
    const ctx = c.getContext('2d'); const d = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 4; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
    return false; })"""


@pytest.fixture
def world():
    """A trader's firm with one portfolio: 100,000 deposited, 2 BTC/USD bought at 40,000 three days
    ago, 1 ETH/USD at 2,000; BTC/USD quoted live at 51,000 against a previous close of 50,000; three
    end-of-day snapshots for the equity curve. Crypto trades 24/7, so this holds on any day."""
    firm = FirmFactory(name="Squid Fund", slug="squid")
    trader = MembershipFactory(firm=firm, role="trader", user__email="tom@squid.example")
    btc = instrument_create(symbol="BTC/USD", name="Bitcoin", asset_class="crypto")
    eth = instrument_create(symbol="ETH/USD", name="Ether", asset_class="crypto")
    now = time.time()
    minute = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
    for instrument, close in ((btc, 50000.0), (eth, 2100.0)):
        frame = pd.DataFrame([(minute - timedelta(hours=24, minutes=1), close, close, close, close, 1.0, close, 1)],
                             columns=["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        bars_upsert(instrument_id=instrument.pk, timeframe="1m", bars=frame)
    quotes_set([QuoteIn("BTC/USD", "CRYPTO", 50999.0, 51001.0, 51000.0, 1, 1, now),
                QuoteIn("ETH/USD", "CRYPTO", 2199.0, 2201.0, 2200.0, 1, 1, now)])
    actor = Actor.for_user(trader.user)
    opened = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    portfolio = services.portfolio_create(firm_id=firm.pk, name="Crypto book", actor=actor)
    with firm_scope(firm.pk):
        services.cash_post(portfolio=portfolio, kind="deposit", amount=Decimal("100000"), actor=actor, on=opened.date())
        book_fill(portfolio=portfolio, instrument=btc, side="buy", quantity=Decimal(2), price=Decimal(40000),
                  executed_at=opened, fill_id="E1", actor=actor)
        book_fill(portfolio=portfolio, instrument=eth, side="buy", quantity=Decimal(1), price=Decimal(2000),
                  executed_at=opened, fill_id="E2", actor=actor)
        for day, equity in ((date(2024, 5, 1), "100000"), (date(2024, 5, 2), "104000"), (date(2024, 5, 3), "101000")):
            Snapshot.objects.create(firm=firm, portfolio=portfolio, date=day, cash=equity, settled_cash=equity,
                                    market_value=0, equity=equity)
    return {"trader": trader, "portfolio": portfolio, "btc": btc, "actor": actor}


def open_portfolio(page, base_url, world):
    log_in(page, base_url, world["trader"])
    page.goto(f"/portfolios/{world['portfolio'].pk}/")
    page.wait_for_selector("#equity-chart[data-loaded=true]")
    page.wait_for_function("() => window.octopusPortfolio.stream.subscribed.includes('BTC/USD')")


def cell(page, symbol: str, cls: str) -> str:
    return page.locator(f"tr.h-row[data-symbol='{symbol}'] .{cls}").inner_text()


def test_portfolio_page_draws_holdings_and_charts(asgi_page, asgi_live_server, world):
    page = asgi_page
    open_portfolio(page, asgi_live_server, world)

    # cash 100,000 - 80,000 - 2,000 = 18,000; value 102,000 + 2,200; day 2 x 1,000 + 100
    assert page.inner_text("#live-state") == "Live"
    assert page.inner_text("#h-equity") == "122,200.00"
    assert page.inner_text("#h-day") == "+2,100.00"
    assert page.inner_text("#h-cash") == "18,000.00"
    assert page.locator("#holdings-table tr.h-row").evaluate_all("rows => rows.map(r => r.dataset.symbol)") == [
        "BTC/USD", "ETH/USD"]
    assert cell(page, "BTC/USD", "c-mv") == "102,000.00"
    assert cell(page, "BTC/USD", "c-unr") == "+22,000.00"
    assert page.locator("tr.h-row[data-symbol='BTC/USD'] .stale-badge").is_hidden()
    assert "pos" in page.get_attribute("tr.h-row[data-symbol='BTC/USD'] .c-unr", "class")

    assert page.get_attribute("#equity-chart", "data-points") == "3"
    assert page.evaluate(DRAWN, "#equity-chart") and page.evaluate(DRAWN, "#drawdown-chart")
    assert page.locator("#allocation svg circle[data-label]").evaluate_all(
        "cs => cs.map(c => c.dataset.label)") == ["BTC/USD", "ETH/USD"]
    assert page.locator("#allocation li[data-label='BTC/USD'] .share").inner_text() == "97.9%"  # 102,000 / 104,200
    page.click("button[data-alloc=by_class]")
    assert page.locator("#allocation li[data-label='crypto'] .share").inner_text() == "100.0%"
    assert page.locator("#metrics [data-metric=twr] dd").inner_text() == "+1.00%"

    # ledger tabs over HTMX
    assert page.locator("#lots-table tr[data-lot]").count() == 2
    page.click(".tabs [data-tab=journal]")
    page.wait_for_selector("#journal-table")
    assert page.get_attribute(".tabs [data-tab=journal]", "aria-selected") == "true"
    assert page.locator("#journal-table tr[data-entry]").count() == 3

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "portfolio.png"), full_page=True)
    assert page.console_errors == []


def test_a_quote_for_a_held_symbol_revalues_the_row_and_header_live(asgi_page, asgi_live_server, world):
    page = asgi_page
    open_portfolio(page, asgi_live_server, world)
    assert cell(page, "BTC/USD", "c-mv") == "102,000.00"

    tick = QuoteIn("BTC/USD", "CRYPTO", 51999.0, 52001.0, 52000.0, 1, 1, time.time())
    quotes_set([tick])
    ticks_publish(quotes=[tick])

    page.wait_for_function("() => document.querySelector(\"tr.h-row[data-symbol='BTC/USD'] .c-last\")"
                           ".textContent === '52,000.00'")
    # 2 x 52,000; against cost 80,000; day 2 x (52,000 - 50,000)
    assert cell(page, "BTC/USD", "c-mv") == "104,000.00"
    assert cell(page, "BTC/USD", "c-unr") == "+24,000.00"
    assert cell(page, "BTC/USD", "c-unr-pct") == "+30.00%"
    assert cell(page, "BTC/USD", "c-day") == "+4,000.00"
    assert page.inner_text("#h-equity") == "124,200.00"
    assert page.inner_text("#h-day") == "+4,100.00"
    assert page.inner_text("#h-unrealized") == "+24,200.00"
    assert page.locator("tr.h-row[data-symbol='BTC/USD'] .stale-badge").is_hidden()
    assert cell(page, "ETH/USD", "c-mv") == "2,200.00"  # untouched
    assert page.console_errors == []


def test_a_booked_fill_reloads_the_holdings(asgi_page, asgi_live_server, world):
    page = asgi_page
    open_portfolio(page, asgi_live_server, world)
    page.wait_for_function("() => window.octopusEvents && window.octopusEvents.lastSeq !== null")

    with firm_scope(world["portfolio"].firm_id):
        book_fill(portfolio=world["portfolio"], instrument=world["btc"], side="buy", quantity=Decimal(1),
                  price=Decimal(51000), executed_at=datetime.now(UTC) - timedelta(minutes=1), fill_id="E3",
                  actor=world["actor"])

    page.wait_for_function("() => window.octopusPortfolio.state.reloads >= 1")
    assert cell(page, "BTC/USD", "c-qty") == "3"
    assert cell(page, "BTC/USD", "c-mv") == "153,000.00"
    assert page.inner_text("#h-cash") == "-33,000.00"
    assert page.console_errors == []


def test_dashboard_shows_the_portfolio(asgi_page, asgi_live_server, world):
    page = asgi_page
    log_in(page, asgi_live_server, world["trader"])
    page.goto("/")
    row = page.locator(f"#dash-portfolio-table tr[data-portfolio='{world['portfolio'].pk}']")
    assert row.locator("a").inner_text() == "Crypto book"
    assert row.locator(".c-equity").inner_text() == "122,200.00"
    assert page.inner_text("#d-day") == "+2,100.00"
    assert page.locator("#movers-table tr[data-symbol]").evaluate_all("rs => rs.map(r => r.dataset.symbol)") == [
        "ETH/USD", "BTC/USD"]  # +4.76% before +2.00%
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    # a fill in one of the shown portfolios reloads the dashboard: cash -50,000, value +51,000
    page.wait_for_function("() => window.octopusEvents && window.octopusEvents.lastSeq !== null")
    with firm_scope(world["portfolio"].firm_id):
        book_fill(portfolio=world["portfolio"], instrument=world["btc"], side="buy", quantity=Decimal(1),
                  price=Decimal(50000), executed_at=datetime.now(UTC) - timedelta(minutes=1), fill_id="E4",
                  actor=world["actor"])
    page.wait_for_function("() => window.octopusDashboard.reloads >= 1")
    assert page.locator(f"#dash-portfolio-table tr[data-portfolio='{world['portfolio'].pk}'] .c-equity").inner_text() \
        == "123,200.00"
    assert page.locator("#activity-table tbody tr").first.locator(".c-what").inner_text() == "Buy 1 BTC/USD @ 50,000.00"

    page.locator(f"#dash-portfolio-table tr[data-portfolio='{world['portfolio'].pk}'] a").click()
    page.wait_for_url(f"**/portfolios/{world['portfolio'].pk}/")
    assert page.console_errors == []

