"""The Portfolio pages and the Dashboard: content with hand-computed numbers, roles, tenancy (404)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from django.urls import reverse

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.portfolios import services
from apps.portfolios.models import Snapshot
from apps.portfolios.views.pages import money, percent, price, quantity, signed

pytestmark = pytest.mark.django_db

ROUTES = ("detail", "holdings", "lots", "gains", "journal", "charts")


def put_close(instrument, ts: datetime, close: float) -> None:
    frame = pd.DataFrame([(ts, close, close, close, close, 1.0, close, 1)],
                         columns=["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    bars_upsert(instrument_id=instrument.pk, timeframe="1m", bars=frame)


@pytest.fixture
def btc_market(stocks):
    """BTCUSD: a live quote at 51,000 and a close of 50,000 a day earlier (the previous close)."""
    now = time.time()
    minute = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
    put_close(stocks["BTCUSD"], minute - timedelta(hours=24, minutes=1), 50000.0)
    quotes_set([QuoteIn("BTCUSD", "CRYPTO", 50999.0, 51001.0, 51000.0, 1, 1, now - 2)])
    return stocks


@pytest.fixture
def crypto(firm_a, system, btc_market, book):
    """Deposit 100,000, buy 2 BTCUSD at 40,000 three days ago: cash 20,000, value 102,000."""
    p = services.portfolio_create(firm_id=firm_a.firm.pk, name="Crypto", actor=system)
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    services.cash_post(portfolio=p, kind="deposit", amount=Decimal("100000"), actor=system,
                       on=three_days_ago.date())
    book(p, btc_market["BTCUSD"], "buy", "2", "40000", three_days_ago.replace(microsecond=0))
    return p


@pytest.fixture
def taxable(firm_a, system, stocks, book):
    """AAPL: 10 @ 100 (2023-01-03), 5 sold @ 150 (2024-06-03): long-term gain 250.
    XYZ: 10 @ 50 (2024-03-01), sold @ 40 (2024-03-15), 10 bought back @ 42 (2024-03-20): the 100 loss is
    a wash sale (code W, 100 disallowed, added to the replacement lot's basis: 420 + 100 = 520)."""
    p = services.portfolio_create(firm_id=firm_a.firm.pk, name="Taxable", actor=system)
    services.cash_post(portfolio=p, kind="deposit", amount=Decimal("10000"), actor=system, on=date(2023, 1, 2))
    book(p, stocks["AAPL"], "buy", "10", "100", "2023-01-03")
    book(p, stocks["XYZ"], "buy", "10", "50", "2024-03-01")
    book(p, stocks["XYZ"], "sell", "10", "40", "2024-03-15")
    book(p, stocks["XYZ"], "buy", "10", "42", "2024-03-20")
    book(p, stocks["AAPL"], "sell", "5", "150", "2024-06-03")
    return p


def url(name: str, portfolio) -> str:
    return reverse(f"portfolios:{name}", args=[portfolio.pk])


def row_of(html: str, attr: str, value: str) -> str:
    match = re.search(rf'<tr[^>]*{attr}="{re.escape(value)}".*?</tr>', html, re.S)
    assert match, f"no row {attr}={value}"
    return match.group(0)


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, f"no #{element_id}"
    return match.group(1).strip()


def cell(row: str, cls: str) -> str:
    match = re.search(rf'<td class="[^"]*\b{cls}\b[^"]*">(.*?)</td>', row, re.S)
    assert match, f"no cell {cls}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


# --- formatting ------------------------------------------------------------------------------------


def test_number_formats():
    assert money(Decimal("1234567.891")) == "1,234,567.89"
    assert money(Decimal("-0.001")) == "0.00"
    assert money(None) == "—"
    assert signed(Decimal("2000")) == "+2,000.00"
    assert signed(Decimal("-12.5")) == "-12.50"
    assert percent(0.0123) == "+1.23%"
    assert percent(-5.5, fraction=False) == "-5.50%"
    assert price(51000.0) == "51,000.00" and price(0.5) == "0.5000"
    assert quantity(Decimal("2.000")) == "2" and quantity(Decimal("0.00012300")) == "0.000123"
    assert quantity(Decimal("1200")) == "1,200"


# --- the portfolio page ---------------------------------------------------------------------------


def test_detail_shows_header_and_live_ready_holdings(crypto, firm_a, verified_client_for):
    response = verified_client_for(firm_a.member("analyst")).get(url("detail", crypto))

    assert response.status_code == 200
    html = response.content.decode()
    # cash 100,000 - 80,000; value 2 x 51,000; day 2 x (51,000 - 50,000); unrealized 102,000 - 80,000
    assert text_of(html, "h-equity") == "122,000.00"
    assert text_of(html, "h-cash") == "20,000.00"
    assert text_of(html, "h-settled") == "20,000.00"  # crypto settles the same day
    assert text_of(html, "h-mv") == "102,000.00"
    assert text_of(html, "h-day") == "+2,000.00"
    assert text_of(html, "h-unrealized") == "+22,000.00"
    assert text_of(html, "h-realized") == "+0.00"
    assert re.search(r'id="h-day">', html) and 'class="value mono pos" id="h-day"' in html
    row = row_of(html, "data-symbol", "BTCUSD")
    assert cell(row, "c-qty") == "2"
    assert cell(row, "c-avg") == "40,000.00"
    assert cell(row, "c-last") == "51,000.00"
    assert cell(row, "c-mv") == "102,000.00"
    assert cell(row, "c-unr") == "+22,000.00"
    assert cell(row, "c-unr-pct") == "+27.50%"  # 22,000 / 80,000
    assert cell(row, "c-day") == "+2,000.00"
    assert cell(row, "c-weight") == "83.61%"  # 102,000 / 122,000
    # the raw numbers portfolio.js recomputes from
    assert 'data-qty="2"' in row and 'data-cost="80000"' in row and 'data-mult="1"' in row
    assert 'data-prev-close="50000' in row and 'data-day-pnl="2000' in row
    assert re.search(r'class="badge stale-badge" hidden', row)  # a live quote: no stale badge
    config = json.loads(re.search(r'<script id="portfolio-config" type="application/json">(.*?)</script>',
                                  html, re.S).group(1))
    assert config["symbols"] == ["BTCUSD"] and config["portfolio"] == crypto.pk
    assert config["urls"]["holdings"] == url("holdings", crypto)
    assert "css/portfolio.css" in html and "js/portfolio.js" in html
    assert "<script>" not in html  # strict CSP: no inline script


def test_a_holding_without_a_live_price_is_shown_stale(crypto, firm_a, verified_client_for):
    quotes_set([QuoteIn("BTCUSD", "CRYPTO", 50999.0, 51001.0, 51000.0, 1, 1, time.time() - 3600)])

    html = verified_client_for(firm_a.member("trader")).get(url("detail", crypto)).content.decode()

    row = row_of(html, "data-symbol", "BTCUSD")
    assert 'class="h-row stale"' in row
    assert re.search(r'class="badge stale-badge" title', row)
    assert re.search(r'class="badge stale-badge" id="h-stale" title', html)  # the header says so too
    assert cell(row, "c-last") == "51,000.00"  # the last known price, muted, never presented as live


def test_holdings_partial_is_the_book_alone(crypto, firm_a, verified_client_for):
    response = verified_client_for(firm_a.member("analyst")).get(url("holdings", crypto), HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="book"')
    assert "<html" not in html
    assert text_of(html, "h-equity") == "122,000.00"


def test_lots_show_the_wash_sale_basis_adjustment(taxable, firm_a, verified_client_for):
    html = verified_client_for(firm_a.member("analyst")).get(url("lots", taxable)).content.decode()

    assert re.findall(r'<tr data-lot="([^"]+)"', html) == ["F1", "F4"]
    aapl, xyz = row_of(html, "data-lot", "F1"), row_of(html, "data-lot", "F4")
    assert re.findall(r'<td class="num mono">([^<]*)</td>', aapl) == ["5", "500.00", "500.00", "100.00"]
    assert "long" in aapl  # held since 2023-01-03
    assert cell(xyz, "c-adj") == "100.00"
    assert re.findall(r'<td class="num mono">([^<]*)</td>', xyz) == ["10", "420.00", "520.00", "52.00"]


def test_realized_gains_with_wash_code_and_filters(taxable, firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("analyst"))

    html = client.get(url("gains", taxable)).content.decode()
    rows = re.findall(r'<tr data-gain="[^"]+"( class="washed")?>(.*?)</tr>', html, re.S)
    assert len(rows) == 2
    washed = [r for flag, r in rows if flag][0]
    assert cell(washed, "c-code") == "W"
    assert cell(washed, "c-gain") == "-100.00"
    assert cell(washed, "c-disallowed") == "100.00"
    assert cell(washed, "c-adjusted") == "+0.00"
    assert "short" in washed
    assert text_of(html, "gains-total") == "+150.00"  # 250 - 100
    assert text_of(html, "gains-disallowed") == "100.00"
    assert text_of(html, "gains-adjusted") == "+250.00"
    assert re.findall(r'<option value="(\d{4})"', html) == ["2024"]

    long_only = client.get(url("gains", taxable), {"term": "long"}).content.decode()
    assert text_of(long_only, "gains-total") == "+250.00"
    assert "wash-badge" not in long_only
    assert "No realized gains for this filter." in client.get(url("gains", taxable), {"year": "2023"}).content.decode()

    bad = client.get(url("gains", taxable), {"year": "soon"})
    assert bad.status_code == 400 and "year:" in bad.content.decode()
    bad = client.get(url("gains", taxable), {"term": "medium"})
    assert bad.status_code == 400 and "term:" in bad.content.decode()

    page = client.get(url("detail", taxable), {"tab": "gains", "year": "soon"})
    assert page.status_code == 400 and "year: give a tax year" in page.content.decode()
    assert 'id="h-equity"' in page.content.decode()  # the whole page, with the message in the ledger

    # the tab server-rendered on the page (no JavaScript)
    page = client.get(url("detail", taxable), {"tab": "gains", "term": "long"}).content.decode()
    assert 'data-tab="gains" aria-selected="true"' in page
    assert text_of(page, "gains-total") == "+250.00"


def test_journal_pages(taxable, firm_a, system, verified_client_for):
    for n in range(24):
        services.cash_post(portfolio=taxable, kind="interest", amount=Decimal(n + 1), actor=system,
                           on=date(2024, 7, 1) + timedelta(days=n))
    client = verified_client_for(firm_a.member("compliance"))

    first = client.get(url("journal", taxable)).content.decode()
    second = client.get(url("journal", taxable), {"page": "2"}).content.decode()

    # 1 deposit + 5 trades + 24 interest postings = 30 entries, newest first, 25 a page
    assert len(re.findall(r"<tr data-entry=", first)) == 25
    assert len(re.findall(r"<tr data-entry=", second)) == 5
    assert "Page 2 of 2" in second
    assert re.search(r"2024-07-24</td>.*?Interest.*?\+24\.00", first, re.S)
    assert re.search(r"2023-01-03</td>.*?buy 10 AAPL @ 100\.00.*?-1,000\.00", second, re.S)
    assert re.search(r"Deposit.*?\+10,000\.00", second, re.S)
    assert client.get(url("journal", taxable), {"page": "x"}).status_code == 400


def test_charts_json_has_growth_benchmark_drawdown_and_allocation(crypto, firm_a, btc_market, verified_client_for):
    with firm_scope(firm_a.firm.pk):
        for day, equity, bench in ((date(2024, 5, 1), "1000", "50"), (date(2024, 5, 2), "1100", "55"),
                                   (date(2024, 5, 3), "990", "60")):
            Snapshot.objects.create(firm_id=firm_a.firm.pk, portfolio=crypto, date=day, cash=equity,
                                    settled_cash=equity, market_value=0, equity=equity, benchmark_close=bench)
    crypto.benchmark = btc_market["SPY"]
    crypto.save(update_fields=["benchmark"])

    body = verified_client_for(firm_a.member("analyst")).get(url("charts", crypto)).json()

    assert [p["time"] for p in body["equity"]] == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert [p["value"] for p in body["equity"]] == pytest.approx([100.0, 110.0, 99.0])  # growth of 100
    assert [p["value"] for p in body["benchmark"]] == pytest.approx([100.0, 110.0, 120.0])  # 50, 55, 60 rebased
    assert [p["value"] for p in body["drawdown"]] == pytest.approx([0.0, 0.0, -0.1])
    assert body["allocation"]["by_instrument"] == [{"label": "BTCUSD", "value": 102000.0, "share": 1.0}]
    assert body["allocation"]["by_class"] == [{"label": "crypto", "value": 102000.0, "share": 1.0}]
    metrics = {m["key"]: m["value"] for m in body["metrics"]}
    assert metrics["max_drawdown"].startswith("-10.00%")
    assert metrics["twr"] == "-1.00%"
    assert body["benchmarkSymbol"] == "SPY"


# --- the list -------------------------------------------------------------------------------------------


def test_list_shows_each_visible_portfolio_with_totals(crypto, taxable, firm_a, system, verified_client_for):
    secret = services.portfolio_create(firm_id=firm_a.firm.pk, name="Secret book", actor=system, restricted=True)

    html = verified_client_for(firm_a.member("analyst")).get(reverse("portfolios:list")).content.decode()

    assert "Secret book" not in html  # restricted, no grant
    crypto_row = row_of(html, "data-portfolio", str(crypto.pk))
    assert cell(crypto_row, "c-equity") == "122,000.00"
    assert cell(crypto_row, "c-day") == "+2,000.00"
    assert cell(crypto_row, "c-cash") == "20,000.00"
    assert f'href="{url("detail", crypto)}"' in crypto_row
    taxable_row = row_of(html, "data-portfolio", str(taxable.pk))
    # 10,000 - 1,000 - 500 + 400 - 420 + 750 = 9,230 cash; AAPL and XYZ unpriced: at cost 500 + 420
    assert cell(taxable_row, "c-cash") == "9,230.00"
    assert cell(taxable_row, "c-equity") == "10,150.00"
    assert "stale-badge" in taxable_row

    owner_html = verified_client_for(firm_a.member("owner")).get(reverse("portfolios:list")).content.decode()
    assert "Secret book" in owner_html and f'data-portfolio="{secret.pk}"' in owner_html


# --- tenancy and grants -------------------------------------------------------------------------------------


def test_another_firms_portfolio_is_404_on_every_page(firm_a, firm_b, verified_client_for):
    theirs = services.portfolio_create(firm_id=firm_b.firm.pk, name="Beta book", actor=Actor.system("t"))
    client = verified_client_for(firm_a.member("owner"))
    for name in ROUTES:
        assert client.get(url(name, theirs)).status_code == 404, name
    assert "Beta book" not in client.get(reverse("portfolios:list")).content.decode()
    assert "Beta book" not in client.get(reverse("dashboard")).content.decode()


def test_restricted_portfolio_is_404_without_a_grant_and_visible_with_one(firm_a, system, verified_client_for):
    from guardian.shortcuts import assign_perm

    secret = services.portfolio_create(firm_id=firm_a.firm.pk, name="Secret book", actor=system, restricted=True)
    analyst = firm_a.member("analyst")
    client = verified_client_for(analyst)
    for name in ROUTES:
        assert client.get(url(name, secret)).status_code == 404, name

    assign_perm("view_portfolio", analyst.user, secret)

    assert client.get(url("detail", secret)).status_code == 200
    assert "Secret book" in client.get(reverse("portfolios:list")).content.decode()


def test_pages_need_a_login(crypto, client):
    response = client.get(url("detail", crypto))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the dashboard ---------------------------------------------------------------------------------------


def test_dashboard_totals_movers_and_activity(crypto, taxable, firm_a, verified_client_for):
    html = verified_client_for(firm_a.member("trader")).get(reverse("dashboard")).content.decode()

    # 122,000 + 10,150 equity; day P&L: Taxable has unpriced holdings (unknown), so only Crypto's counts
    assert text_of(html, "d-equity") == "132,150.00"
    assert text_of(html, "d-cash") == "29,230.00"
    assert text_of(html, "d-day") == "+2,000.00"
    assert 'id="d-day-partial"' in html
    assert re.findall(r'<tr data-portfolio="(\d+)"', html) == [str(crypto.pk), str(taxable.pk)]
    mover = row_of(html, "data-symbol", "BTCUSD")
    assert cell(mover, "c-chg") == "+2.00%"  # 51,000 against 50,000
    assert f'href="{url("detail", crypto)}"' in mover
    activity = [(kind, cell(row, "c-what"))
                for kind, row in re.findall(r'<tr data-kind="(\w+)">(.*?)</tr>', html, re.S)]
    assert activity[0] == ("buy", "Buy 2 BTCUSD @ 40,000.00")
    assert "-80,000.00" in row_of(html, "data-kind", "buy")
    assert ("deposit", "Deposit") in activity
    assert "dash-audit" not in html  # traders do not read the audit trail

    compliance = verified_client_for(firm_a.member("compliance")).get(reverse("dashboard")).content.decode()
    assert 'id="dash-audit"' in compliance and "portfolio.fill_booked" in compliance


def test_dashboard_empty_state_points_owners_to_create(firm_a, verified_client_for):
    owner = verified_client_for(firm_a.member("owner")).get(reverse("dashboard")).content.decode()
    assert 'id="no-portfolios"' in owner and "Create a portfolio" in owner

    analyst = verified_client_for(firm_a.member("analyst")).get(reverse("dashboard")).content.decode()
    assert 'id="no-portfolios"' in analyst and "Ask an owner or admin" in analyst


def test_the_nav_points_at_the_portfolios(firm_a, verified_client_for):
    html = verified_client_for(firm_a.member("analyst")).get(reverse("dashboard")).content.decode()
    assert f'<a href="{reverse("portfolios:list")}">Portfolio</a>' in html


def test_charts_without_snapshots_are_empty_not_an_error(crypto, firm_a, verified_client_for):
    body = verified_client_for(firm_a.member("analyst")).get(url("charts", crypto)).json()
    assert (body["equity"], body["benchmark"], body["drawdown"]) == ([], [], [])
    assert body["allocation"]["gross"] == 102000.0
    assert {m["key"]: m["value"] for m in body["metrics"]}["twr"] == "—"
