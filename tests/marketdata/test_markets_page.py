"""The Markets page: the firm's watchlist with server-rendered quotes, tenancy, roles, assets, CSP."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import WatchlistItem
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.marketdata.services import instrument_create, watchlist_add, watchlist_create
from apps.marketdata.views.markets import change_text, price_text

pytestmark = pytest.mark.django_db

PAGE = reverse("marketdata:markets")
ADD = reverse("marketdata:watchlist_add")
REMOVE = reverse("marketdata:watchlist_remove")
VENDOR = "vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"


@pytest.fixture
def market():
    return {
        "BTC/USD": instrument_create(symbol="BTC/USD", name="Bitcoin", asset_class="crypto"),
        "ETH/USD": instrument_create(symbol="ETH/USD", name="Ether", asset_class="crypto"),
        "SPY": instrument_create(symbol="SPY", name="SPDR S&P 500 ETF", asset_class="etf"),
    }


def watchlist_for(world, name, instruments):
    actor = Actor.for_user(world.member("owner").user)
    with firm_scope(world.firm.pk):
        watchlist = watchlist_create(firm_id=world.firm.pk, name=name, actor=actor)
        for instrument in instruments:
            watchlist_add(watchlist=watchlist, instrument=instrument, actor=actor)
    return watchlist


def put_close(instrument, ts: datetime, close: float) -> None:
    frame = pd.DataFrame([(ts, close, close, close, close, 1.0, close, 1)],
                         columns=["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    bars_upsert(instrument_id=instrument.pk, timeframe="1m", bars=frame)


def quote(symbol, exchange, ts, last, spread=1.0):
    return QuoteIn(symbol=symbol, exchange=exchange, bid=last - spread / 2, ask=last + spread / 2, last=last,
                   bid_size=2, ask_size=3, ts=ts)


def row_of(html: str, symbol: str) -> str:
    match = re.search(rf'<tr class="wl-row[^"]*" data-symbol="{re.escape(symbol)}".*?</tr>', html, re.S)
    assert match, f"no row for {symbol}"
    return match.group(0)


def cells(row: str) -> dict[str, str]:
    return dict(re.findall(r'<td class="num mono c-(\w+)">([^<]*)</td>', row))


def test_page_renders_the_firm_watchlist_with_server_rendered_quotes(market, firm_a, verified_client_for):
    watchlist = watchlist_for(firm_a, "Crypto", [market["BTC/USD"], market["ETH/USD"], market["SPY"]])
    now = time.time()
    minute = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
    # A minute before the 24 h mark: the quote below is 5 s old, so a bar opened exactly 24 h before
    # this minute would fall after the window whenever the clock reads under 5 s past the minute.
    put_close(market["BTC/USD"], minute - timedelta(hours=24, minutes=1), 60000.0)
    quotes_set([quote("BTC/USD", "CRYPTO", now - 5, 61234.5), quote("ETH/USD", "CRYPTO", now - 600, 0.5, 0.01)])

    response = verified_client_for(firm_a.member("analyst")).get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<h2 id="wl-title">Crypto</h2>' in html
    assert re.findall(r'data-symbol="([^"]+)"\s+data-prev-close', html) == ["BTC/USD", "ETH/USD", "SPY"]
    btc = row_of(html, "BTC/USD")
    assert cells(btc) == {"last": "61,234.50", "chg": "+1,234.50", "pct": "+2.06%", "bid": "61,234.00",
                          "ask": "61,235.00"}
    assert 'class="wl-row up"' in btc and 'data-prev-close="60000.0"' in btc
    assert re.search(r'class="badge stale-badge" hidden', btc)  # a live quote: no stale badge
    eth = row_of(html, "ETH/USD")  # ten minutes old: stale, shown as such, never as live
    assert 'class="wl-row  stale"' in eth
    assert re.search(r'class="badge stale-badge" title', eth)
    assert cells(eth) == {"last": "0.5000", "chg": "—", "pct": "—", "bid": "0.4950", "ask": "0.5050"}
    spy = row_of(html, "SPY")  # no quote yet
    assert 'class="wl-row  noquote stale"' in spy
    assert set(cells(spy).values()) == {"—"}
    config = re.search(r'<script id="markets-config" type="application/json">(.*?)</script>', html).group(1)
    assert f'"watchlist": {watchlist.pk}' in config
    assert '"symbols": ["BTC/USD", "ETH/USD", "SPY"]' in config
    assert '"chart": {"symbol": "BTC/USD"' in config and '"canWrite": false' in config
    assert f'<a href="{reverse("marketdata:imports")}">Import bars</a>' in html
    assert f'<a href="{reverse("marketdata:quality")}">Data quality</a>' in html


def test_choosing_a_watchlist_symbol_and_timeframe_by_query(market, firm_a, verified_client_for):
    watchlist_for(firm_a, "A first", [market["SPY"]])
    second = watchlist_for(firm_a, "B second", [market["ETH/USD"]])
    client = verified_client_for(firm_a.member("trader"))
    html = client.get(PAGE, {"watchlist": second.pk, "symbol": "btc/usd", "timeframe": "1h"}).content.decode()
    assert re.findall(r'data-symbol="([^"]+)"\s+data-prev-close', html) == ["ETH/USD"]
    assert f'<option value="{second.pk}" selected>B second</option>' in html
    assert '<strong id="chart-symbol">BTC/USD</strong>' in html
    assert 'class="tf active" data-timeframe="1h" aria-pressed="true"' in html
    html = client.get(PAGE, {"symbol": "NOPE", "timeframe": "7m"}).content.decode()
    assert "Unknown symbol: NOPE." in html
    assert '<strong id="chart-symbol">SPY</strong>' in html  # the first watchlist's first symbol
    assert 'class="tf active" data-timeframe="1m"' in html


@pytest.mark.parametrize("value", ["other-firm", "abc", "99999999"])
def test_another_firms_watchlist_is_a_404(value, market, firm_a, firm_b, verified_client_for):
    watchlist_for(firm_a, "Mine", [market["SPY"]])
    theirs = watchlist_for(firm_b, "Beta secret list", [market["BTC/USD"]])
    client = verified_client_for(firm_a.member("owner"))
    wid = theirs.pk if value == "other-firm" else value
    response = client.get(PAGE, {"watchlist": wid})
    assert response.status_code == 404
    assert "Beta secret list" not in response.content.decode()
    with firm_scope(firm_b.firm.pk):
        before = AuditEvent.objects.count()
    for url in (ADD, REMOVE):
        response = client.post(url, {"watchlist": wid, "symbol": "ETH/USD"}, headers={"HX-Request": "true"})
        assert response.status_code == 404
    with firm_scope(firm_b.firm.pk):
        assert [i.instrument.symbol for i in WatchlistItem.objects.all()] == ["BTC/USD"]
        assert AuditEvent.objects.count() == before


def test_analyst_sees_no_add_or_remove_controls_and_cannot_post(market, firm_a, verified_client_for):
    watchlist = watchlist_for(firm_a, "Demo", [market["SPY"]])
    client = verified_client_for(firm_a.member("analyst"))
    html = client.get(PAGE).content.decode()
    assert ADD not in html and REMOVE not in html and "Remove SPY" not in html
    response = client.post(ADD, {"watchlist": watchlist.pk, "symbol": "ETH/USD"})
    assert response.status_code == 403
    assert "Your role can read watchlists but not change them." in response.content.decode()
    response = client.post(REMOVE, {"watchlist": watchlist.pk, "symbol": "SPY"}, headers={"HX-Request": "true"})
    assert (response.status_code, response["X-Markets-Status"]) == (200, "403")
    with firm_scope(firm_a.firm.pk):
        assert [i.instrument.symbol for i in WatchlistItem.objects.all()] == ["SPY"]


@pytest.mark.parametrize("role", ["owner", "admin", "trader"])
def test_writers_add_and_remove_with_htmx(role, market, firm_a, verified_client_for):
    watchlist = watchlist_for(firm_a, "Demo", [market["SPY"]])
    client = verified_client_for(firm_a.member(role))
    html = client.get(PAGE).content.decode()
    assert f'hx-post="{ADD}"' in html and 'aria-label="Remove SPY"' in html

    response = client.post(ADD, {"watchlist": watchlist.pk, "symbol": " eth/usd "}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert (response.status_code, response["X-Markets-Status"]) == (200, "200")
    assert body.startswith('<div id="watchlist-table"')
    assert "ETH/USD added to Demo." in body
    assert re.findall(r'data-symbol="([^"]+)"\s+data-prev-close', body) == ["SPY", "ETH/USD"]

    again = client.post(ADD, {"watchlist": watchlist.pk, "symbol": "ETH/USD"}, headers={"HX-Request": "true"})
    assert again["X-Markets-Status"] == "409" and "ETH/USD is already on Demo" in again.content.decode()
    unknown = client.post(ADD, {"watchlist": watchlist.pk, "symbol": "ZZZ"}, headers={"HX-Request": "true"})
    assert unknown["X-Markets-Status"] == "400" and "Unknown symbol: ZZZ." in unknown.content.decode()

    response = client.post(REMOVE, {"watchlist": watchlist.pk, "symbol": "SPY"})  # without HTMX: redirect back
    assert (response.status_code, response["Location"]) == (302, f"{PAGE}?watchlist={watchlist.pk}")
    with firm_scope(firm_a.firm.pk):
        assert [i.instrument.symbol for i in WatchlistItem.objects.order_by("position")] == ["ETH/USD"]
        actions = list(AuditEvent.objects.filter(action__startswith="watchlist.item").order_by("seq")
                       .values_list("action", "after", "before"))
    assert actions[-2:] == [("watchlist.item_added", {"symbol": "ETH/USD"}, None),
                            ("watchlist.item_removed", None, {"symbol": "SPY"})]


def test_a_firm_without_watchlists_gets_an_empty_state(firm_a, verified_client_for):
    html = verified_client_for(firm_a.member("trader")).get(PAGE).content.decode()
    assert "Your firm has no watchlists yet." in html
    assert '"chart": null' in html


def test_login_required(client, db):
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


def test_nav_links_here_and_the_old_placeholder_is_gone(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("analyst"))
    html = client.get(reverse("dashboard")).content.decode()
    assert f'<a href="{PAGE}">Markets</a>' in html
    assert client.get("/area/markets/").status_code == 404


def test_the_page_loads_only_same_origin_assets(firm_a, verified_client_for):
    html = verified_client_for(firm_a.member("analyst")).get(PAGE).content.decode()
    resources = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="([^"]+)"', html)
    assert "/static/js/markets.js" in resources and "/static/css/markets.css" in resources
    assert [r for r in resources if re.match(r"^(https?:)?//", r)] == []
    # The one external URL is the attribution link the chart library's licence asks for.
    assert re.findall(r'https?://[^"\s<]+', html) == ["https://www.tradingview.com/"]
    assert "<script>" not in html and " style=" not in html  # strict CSP: no inline script or style


def test_the_vendored_chart_library_is_served_from_static(client, db):
    path = finders.find(VENDOR)
    assert path is not None
    vendor_dir = Path(path).parent
    assert {p.name for p in vendor_dir.iterdir()} >= {"LICENSE", "NOTICE", "README.txt"}
    assert "5.2.1" in (vendor_dir / "README.txt").read_text()
    response = client.get(f"{settings.STATIC_URL}{VENDOR}")
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"TradingView Lightweight Charts" in body[:300] and b"createChart" in body
    chart_js = Path(finders.find("js/chart.js")).read_text()
    assert "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs" in chart_js


@pytest.mark.parametrize(("value", "text"), [
    (61234.5, "61,234.50"), (1.0, "1.00"), (0.123456, "0.1235"), (None, "—"), (float("nan"), "—"),
])
def test_price_text(value, text):
    assert price_text(value) == text


def test_change_text():
    assert [change_text(1234.5), change_text(-0.01234), change_text(0.0), change_text(-2.5, pct=True),
            change_text(None)] == ["+1,234.50", "-0.0123", "+0.00", "-2.50%", "—"]
    # in price terms, the price's decimals: a $192 stock moving 86 cents, a $0.50 coin moving 0.0012
    assert [change_text(0.86, price=192.6), change_text(-0.0012, price=0.5)] == ["+0.86", "-0.0012"]
