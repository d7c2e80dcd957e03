"""Performance over snapshots: a hand-built series (TWR with a mid-period deposit, drawdown, beta)
and P&L attribution from real fills, prices and a dividend."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.core.tenancy import firm_scope
from apps.marketdata.models import Bar
from apps.portfolios import services, valuation
from apps.portfolios.booking import post_entry
from apps.portfolios.models import Account, EntryKind, Snapshot

D = Decimal
DAYS = [date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5), date(2025, 3, 6), date(2025, 3, 7)]


@pytest.fixture
def series(portfolio):
    """Equity 1000, 1100, 2100 (1000 deposited that morning), 1890, 2268: daily returns +10 %, 0,
    -10 %, +20 %. The benchmark returns exactly half of that each day: 100, 105, 105, 99.75, 109.725."""
    equity = ["1000", "1100", "2100", "1890", "2268"]
    flows = ["1000", "0", "1000", "0", "0"]
    bench = ["100", "105", "105", "99.75", "109.725"]
    with firm_scope(portfolio.firm_id):
        for day, e, f, b in zip(DAYS, equity, flows, bench, strict=True):
            Snapshot.objects.create(firm_id=portfolio.firm_id, portfolio=portfolio, date=day, cash=D(e),
                                    settled_cash=D(e), market_value=0, equity=D(e), net_flow=D(f),
                                    benchmark_close=D(b))
    return portfolio


def test_equity_series_frame(series):
    frame = valuation.equity_series(series, start=DAYS[1], end=DAYS[3])
    assert [d.date() for d in frame.index] == DAYS[1:4]
    assert list(frame.columns) == ["equity", "net_flow", "benchmark_close", "cash", "market_value"]
    assert frame["equity"].tolist() == [1100.0, 2100.0, 1890.0] and frame["net_flow"].tolist() == [0, 1000, 0]


def test_performance_of_a_hand_built_series(series):
    perf = valuation.performance(series)
    # TWR chains the daily returns; the deposit is not a gain (equity alone grew 126.8 %)
    assert perf["time_weighted_return"] == pytest.approx(1.1 * 1.0 * 0.9 * 1.2 - 1)  # 0.188
    assert perf["cumulative_return"] == pytest.approx(0.188)
    dd = perf["max_drawdown"]
    assert dd["depth"] == pytest.approx(-0.1)
    assert (dd["peak"], dd["trough"], dd["recovery"]) == ("2025-03-05", "2025-03-06", "2025-03-07")
    assert perf["beta"] == pytest.approx(2.0) and perf["alpha"] == pytest.approx(0.0, abs=1e-12)
    # Sharpe: mean 0.05 over the sample std of (0.1, 0, -0.1, 0.2) = sqrt(0.05 / 3), annualized by sqrt(252)
    assert perf["sharpe"] == pytest.approx(0.05 / math.sqrt(0.05 / 3) * math.sqrt(252))
    assert perf["best_day"] == {"day": "2025-03-07", "value": pytest.approx(0.2)}
    assert perf["worst_day"] == {"day": "2025-03-06", "value": pytest.approx(-0.1)}
    assert perf["observations"] == 5 and perf["start"] == "2025-03-03" and perf["end"] == "2025-03-07"
    curves = perf["curves"]
    assert curves["dates"] == [d.isoformat() for d in DAYS]
    assert curves["growth"] == pytest.approx([100, 110, 110, 99, 118.8])
    assert curves["benchmark"] == pytest.approx([100, 105, 105, 99.75, 109.725])
    assert curves["drawdown"] == pytest.approx([0, 0, 0, -0.1, 0])
    assert curves["equity"] == [1000, 1100, 2100, 1890, 2268]


def test_performance_of_a_sub_period_and_of_nothing(series, firm_a, system):
    perf = valuation.performance(series, start=DAYS[2], end=DAYS[4])
    assert perf["time_weighted_return"] == pytest.approx(0.9 * 1.2 - 1)
    empty = services.portfolio_create(firm_id=firm_a.firm.pk, name="Empty", actor=system)
    nothing = valuation.performance(empty)
    assert nothing["observations"] == 0 and nothing["time_weighted_return"] is None
    assert nothing["curves"]["dates"] == [] and nothing["attribution"]["by_instrument"] == {}


def daily(instrument, day: date, close: str) -> None:
    px = D(close)
    Bar.objects.create(instrument=instrument, timeframe="1d", ts=datetime(day.year, day.month, day.day, 5, tzinfo=UTC),
                       open=px, high=px, low=px, close=px, volume=D(1))


def test_attribution_by_instrument_and_asset_class(portfolio, stocks, book, system):
    aapl, spy = stocks["AAPL"], stocks["SPY"]
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("10000"), actor=system, on=date(2025, 3, 3))
    book(portfolio, aapl, "buy", "10", "100", "2025-03-04T15:00:00", fees="1")
    book(portfolio, spy, "buy", "1", "500", "2025-03-05T15:00:00")
    book(portfolio, aapl, "sell", "5", "120", "2025-03-06T15:00:00", fees="1")
    with firm_scope(portfolio.firm_id):
        post_entry(firm_id=portfolio.firm_id, portfolio_id=portfolio.pk, kind=EntryKind.DIVIDEND,
                   trade_date=date(2025, 3, 7), settle_date=date(2025, 3, 7), now=datetime.now(UTC),
                   instrument_id=aapl.pk, lines=[(Account.CASH, D("5"), ""), (Account.DIVIDENDS, D("-5"), "")])
    for day, a, s in zip(DAYS, ["100", "105", "110", "118", "121"], ["500", "505", "510", "520", "530"], strict=True):
        daily(aapl, day, a)
        daily(spy, day, s)
    valuation.snapshots_backfill(portfolio, DAYS[0], DAYS[-1])
    attribution = valuation.performance(portfolio)["attribution"]
    # AAPL: 5 x 121 at the end - 1,000 paid - 1 fee + 600 received - 1 fee + 5 dividend = 208; SPY: 530 - 500 = 30
    assert attribution["by_instrument"] == {"AAPL": 208.0, "SPY": 30.0}
    assert attribution["by_asset_class"] == {"equity": 208.0, "etf": 30.0}
    assert attribution["total"] == 238.0
    with firm_scope(portfolio.firm_id):
        last = Snapshot.objects.get(portfolio=portfolio, date=DAYS[-1])
    assert last.equity - D("10000") == D("238") == last.realized + last.unrealized
    # a period inside the history: from the 5th's close (AAPL 10 x 110, SPY 510) to the 7th's
    pnl = valuation.instrument_pnl(portfolio, DAYS[2], DAYS[4])
    assert pnl == {aapl.pk: D("605") - D("1100") + D("599") + D("5"), spy.pk: D("20")}
