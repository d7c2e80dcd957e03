"""The valuation API: holdings, valuation now and at a past date, snapshots, performance; tenancy."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.core.tenancy import firm_scope
from apps.marketdata.models import Bar
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.portfolios import services, valuation
from apps.portfolios.models import Snapshot

D = Decimal


def url(portfolio, what: str) -> str:
    return f"/api/v1/portfolios/{portfolio.pk}/{what}/"


def daily(instrument, day: date, close: str) -> None:
    px = D(close)
    Bar.objects.create(instrument=instrument, timeframe="1d", ts=datetime(day.year, day.month, day.day, 5, tzinfo=UTC),
                       open=px, high=px, low=px, close=px, volume=D(1))


@pytest.fixture
def booked(portfolio, stocks, book, system):
    """Deposit 10,000; buy 10 AAPL @ 100 with a fee of 1; AAPL quoted at 110; daily closes 102 and 104."""
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("10000"), actor=system, on=date(2025, 3, 3))
    book(portfolio, stocks["AAPL"], "buy", "10", "100", "2025-03-04T15:00:00", fees="1")
    quotes_set([QuoteIn("AAPL", "NASDAQ", 109.99, 110.01, 110.0, 1, 1, time.time() - 5)])
    daily(stocks["AAPL"], date(2025, 3, 4), "102")
    daily(stocks["AAPL"], date(2025, 3, 5), "104")
    return portfolio


def test_holdings_and_valuation_now(booked, firm_a, api_client_for):
    client = api_client_for(firm_a.member("analyst"), scopes=("read",))
    response = client.get(url(booked, "holdings"))
    assert response.status_code == 200, response.content
    [h] = response.json()["results"]
    assert h["symbol"] == "AAPL" and D(h["quantity"]) == 10 and D(h["cost"]) == D("1001")
    assert D(h["last"]) == 110 and D(h["market_value"]) == 1100 and D(h["unrealized"]) == 99
    assert D(h["avg_cost"]) == D("100.1") and isinstance(h["cost"], str)
    assert (h["market_value"], h["last"]) == ("1100", "110")  # exact strings, no float or exponent noise
    body = client.get(url(booked, "valuation")).json()
    assert D(body["cash"]) == D("8999") and D(body["equity"]) == D("10099") and D(body["market_value"]) == 1100
    assert D(body["unrealized"]) == 99 and D(body["realized"]) == 0 and D(body["total_pnl"]) == 99
    assert D(body["net_flows"]) == D("10000") and body["holdings_count"] == 1
    assert body["date"] == valuation.trade_date(timezone.now()).isoformat()


def test_valuation_at_a_past_date(booked, firm_a, api_client_for):
    client = api_client_for(firm_a.member("trader"), scopes=("read",))
    body = client.get(url(booked, "valuation"), {"date": "2025-03-04"}).json()
    assert body["date"] == "2025-03-04" and body["as_of"] == "2025-03-04T21:00:00Z"
    assert (body["market_value"], body["equity"], body["unrealized"]) == ("1020", "10019", "19")
    assert body["day_pnl"] is None and body["stale"] is False
    assert D(body["settled_cash"]) == D("10000")


@pytest.mark.parametrize("params, field", [
    ({"date": "yesterday"}, "date"),
    ({"date": "1969-12-31"}, "date"),
    ({"date": (date.today() + timedelta(days=3)).isoformat()}, "date"),
])
def test_valuation_refuses_bad_dates(booked, firm_a, api_client_for, params, field):
    response = api_client_for(firm_a.member("analyst"), scopes=("read",)).get(url(booked, "valuation"), params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_snapshots_and_performance(booked, firm_a, api_client_for):
    valuation.snapshots_backfill(booked, date(2025, 3, 3), date(2025, 3, 5))
    client = api_client_for(firm_a.member("analyst"), scopes=("read",))
    body = client.get(url(booked, "snapshots"), {"start": "2025-03-04"}).json()
    assert body["count"] == 2 and body["truncated"] is False
    assert [(s["date"], D(s["equity"])) for s in body["results"]] == [("2025-03-04", D("10019")),
                                                                       ("2025-03-05", D("10039"))]
    perf = client.get(url(booked, "performance")).json()
    assert perf["observations"] == 3
    assert perf["time_weighted_return"] == pytest.approx(10039 / 10000 - 1)
    assert perf["curves"]["dates"] == ["2025-03-03", "2025-03-04", "2025-03-05"]
    assert perf["attribution"]["by_instrument"] == {"AAPL": 39.0}
    bad = client.get(url(booked, "performance"), {"start": "2025-03-05", "end": "2025-03-04"})
    assert bad.status_code == 400 and list(bad.json()["error"]["fields"]) == ["start"]


def test_another_firms_or_a_restricted_portfolio_is_404(booked, firm_a, firm_b, api_client_for, system):
    other = services.portfolio_create(firm_id=firm_b.firm.pk, name="beta_secret portfolio", actor=system)
    with firm_scope(other.firm_id):
        Snapshot.objects.create(firm_id=other.firm_id, portfolio=other, date=date(2025, 3, 4), cash=1, settled_cash=1,
                                market_value=0, equity=1)
    hidden = services.portfolio_create(firm_id=firm_a.firm.pk, name="Hidden", actor=system, restricted=True)
    analyst = api_client_for(firm_a.member("analyst"), scopes=("read",))
    owner = api_client_for(firm_a.member("owner"), scopes=("read",))
    for what in ("holdings", "valuation", "snapshots", "performance"):
        response = owner.get(url(other, what))
        assert response.status_code == 404 and b"beta_secret" not in response.content
        assert analyst.get(url(hidden, what)).status_code == 404
        assert owner.get(url(hidden, what)).status_code == 200
