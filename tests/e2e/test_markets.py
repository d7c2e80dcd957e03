"""The Markets page in a real browser against the ASGI server: watchlist, chart, indicators, live ticks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.marketdata.services import instrument_create, watchlist_add, watchlist_create
from apps.marketdata.ticks import BarTick, ticks_publish
from tests.factories import FirmFactory, MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
BARS = 120


@pytest.fixture
def world():
    """A firm with a trader, a 'Crypto' watchlist (BTC/USD, ETH/USD), two hours of BTC/USD 1m bars and quotes:
    BTC/USD live, ETH/USD ten minutes old (stale). Crypto trades 24/7, so this holds on any day."""
    firm = FirmFactory(name="Squid Fund", slug="squid")
    trader = MembershipFactory(firm=firm, role="trader", user__email="tom@squid.example")
    btc = instrument_create(symbol="BTC/USD", name="Bitcoin", asset_class="crypto")
    eth = instrument_create(symbol="ETH/USD", name="Ether", asset_class="crypto")
    instrument_create(symbol="SOL/USD", name="Solana", asset_class="crypto")
    now = time.time()
    minute = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
    closes = 60000 + np.cumsum(np.sin(np.arange(BARS) / 7.0) * 40)
    ts = [minute - timedelta(minutes=BARS - i) for i in range(BARS)]
    frame = pd.DataFrame({"ts": pd.to_datetime(ts, utc=True), "open": closes - 10, "high": closes + 25,
                          "low": closes - 30, "close": closes, "volume": 5.0, "vwap": closes, "trade_count": 9})
    bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame)
    quotes_set([QuoteIn("BTC/USD", "CRYPTO", 60010.0, 60012.0, 60011.0, 1, 2, now),
                QuoteIn("ETH/USD", "CRYPTO", 3000.0, 3001.0, 3000.5, 1, 2, now - 600)])
    actor = Actor.for_user(trader.user)
    with firm_scope(firm.pk):
        watchlist = watchlist_create(firm_id=firm.pk, name="Crypto", actor=actor)
        watchlist_add(watchlist=watchlist, instrument=btc, actor=actor)
        watchlist_add(watchlist=watchlist, instrument=eth, actor=actor)
    five_minute_buckets = len({t.replace(minute=t.minute - t.minute % 5) for t in ts})
    return {"trader": trader, "minute": minute, "last_close": float(closes[-1]), "buckets_5m": five_minute_buckets}


def log_in(page, base_url: str, membership) -> None:
    """A session past 2FA, as the login flow leaves it (tests/e2e/test_accounts_flow.py covers the flow)."""
    from django.conf import settings
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from apps.core.middleware import SESSION_FIRM_KEY

    device, _ = TOTPDevice.objects.get_or_create(user=membership.user, name="default", defaults={"confirmed": True})
    client = Client()
    client.force_login(membership.user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[SESSION_FIRM_KEY] = membership.firm_id
    session.save()
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session.session_key,
                               "url": f"{base_url}/"}])


def open_markets(page, base_url, world):
    log_in(page, base_url, world["trader"])
    page.goto("/markets/")
    page.wait_for_selector("#chart[data-loaded=true]")
    page.wait_for_function("() => window.octopusMarkets.stream.subscribed.includes('BTC/USD')")


def test_page_draws_the_watchlist_chart_and_indicators(asgi_page, asgi_live_server, world):
    page = asgi_page
    open_markets(page, asgi_live_server, world)

    assert page.locator("#watchlist-table tr.wl-row").evaluate_all("rows => rows.map(r => r.dataset.symbol)") == [
        "BTC/USD", "ETH/USD"]
    assert page.inner_text("#live-state") == "Live"
    btc = page.locator("tr.wl-row[data-symbol='BTC/USD']")
    assert btc.locator(".c-last").inner_text() == "60,011.00"
    assert btc.locator(".stale-badge").is_hidden()
    eth = page.locator("tr.wl-row[data-symbol='ETH/USD']")
    assert eth.locator(".stale-badge").is_visible()  # a ten-minute-old quote is never shown as live
    assert "stale" in eth.get_attribute("class")

    assert page.inner_text("#chart-symbol") == "BTC/USD"
    assert page.get_attribute("#chart", "data-bars") == str(BARS)
    assert page.locator("#chart canvas").count() >= 2  # lightweight-charts draws on canvases
    drawn = page.evaluate("""() => [...document.querySelectorAll('#chart canvas')].some(c => {
        const ctx = c.getContext('2d'); const d = ctx.getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
        return false; })""")
    assert drawn
    last = page.evaluate("() => window.octopusMarkets.chart.lastBar()")
    assert last["close"] == pytest.approx(world["last_close"])

    # The default overlays, then an oscillator in a pane of its own.
    page.wait_for_selector("#indicator-chips li[data-indicator^='EMA']")
    assert page.locator("#indicator-chips .chip-label").all_inner_texts() == ["SMA 20", "EMA 50"]
    page.wait_for_selector("#chart[data-panes='1']")
    page.select_option("#indicator-select", "MACD")
    assert page.is_disabled("#indicator-period")  # MACD has no timeperiod
    page.click("#indicator-add")
    page.wait_for_selector("#chart[data-panes='2']")
    page.select_option("#indicator-select", "RSI")
    assert page.input_value("#indicator-period") == "14"
    page.fill("#indicator-period", "10")
    page.click("#indicator-add")
    page.wait_for_selector("#chart[data-panes='3']")
    assert page.locator("#indicator-chips .chip-label").all_inner_texts() == ["SMA 20", "EMA 50", "MACD 12,26,9", "RSI 10"]
    page.click("#indicator-chips li[data-indicator^='MACD'] button")
    page.wait_for_selector("#chart[data-panes='2']")

    # Symbol search: choose another symbol; the trader may add it to the watchlist.
    page.fill("#symbol-search", "sol")
    page.wait_for_selector("#search-results li[data-symbol='SOL/USD']")
    page.click("#search-results li[data-symbol='SOL/USD'] button.add")
    page.wait_for_selector("tr.wl-row[data-symbol='SOL/USD']")
    assert "SOL/USD added to Crypto." in page.inner_text("#watchlist-table")
    page.wait_for_function("() => window.octopusMarkets.stream.subscribed.includes('SOL/USD')")

    page.click("button[data-timeframe='5m']")
    page.wait_for_selector("#chart[data-loaded=true]")
    assert page.get_attribute("button[data-timeframe='5m']", "aria-pressed") == "true"
    assert page.get_attribute("#chart", "data-bars") == str(world["buckets_5m"])  # resampled from the 1m bars

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "markets.png"), full_page=True)
    assert page.console_errors == []


def test_a_published_tick_updates_the_row_and_the_last_candle(asgi_page, asgi_live_server, world):
    page = asgi_page
    open_markets(page, asgi_live_server, world)
    row = page.locator("tr.wl-row[data-symbol='BTC/USD']")
    assert row.locator(".c-last").inner_text() == "60,011.00"
    bars_before = page.evaluate("() => window.octopusMarkets.chart.barCount")

    now = time.time()
    forming = world["minute"]  # the minute after the last stored bar
    quotes_set([QuoteIn("BTC/USD", "CRYPTO", 61233.5, 61235.5, 61234.5, 1, 2, now)])
    ticks_publish(
        quotes=[QuoteIn("BTC/USD", "CRYPTO", 61233.5, 61235.5, 61234.5, 1, 2, now)],
        bars=[BarTick(symbol="BTC/USD", timeframe="1m", ts=forming, open=61000.0, high=61300.0, low=60990.0,
                      close=61234.5, volume=3.0, final=False)],
    )

    page.wait_for_function("() => document.querySelector(\"tr.wl-row[data-symbol='BTC/USD'] .c-last\")"
                           ".textContent === '61,234.50'")
    assert row.locator(".c-bid").inner_text() == "61,233.50"
    assert row.locator(".c-ask").inner_text() == "61,235.50"
    assert row.locator(".stale-badge").is_hidden()
    page.wait_for_function("() => window.octopusMarkets.chart.lastBar()?.close === 61234.5")
    last = page.evaluate("() => window.octopusMarkets.chart.lastBar()")
    assert (last["time"], last["open"], last["high"], last["low"]) == (
        int(forming.timestamp()), 61000.0, 61300.0, 60990.0)
    assert page.evaluate("() => window.octopusMarkets.chart.barCount") == bars_before + 1  # appended

    # The same minute again: the forming candle is replaced, not appended.
    ticks_publish(bars=[BarTick(symbol="BTC/USD", timeframe="1m", ts=forming, open=61000.0, high=61400.0,
                                low=60990.0, close=61390.0, volume=4.0, final=False)])
    page.wait_for_function("() => window.octopusMarkets.chart.lastBar()?.close === 61390")
    assert page.evaluate("() => window.octopusMarkets.chart.barCount") == bars_before + 1
    assert page.inner_text("#chart-last") == "61,234.50"  # the quote, not the bar, sets the last price
    assert page.console_errors == []
