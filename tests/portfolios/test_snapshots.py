"""End-of-day snapshots: upsert, backfill (service and command), the beat task across firms, and
the accounting invariant between snapshots."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.core.tenancy import firm_scope, unscoped
from apps.marketdata.models import Bar
from apps.portfolios import services, valuation
from apps.portfolios.booking import post_entry
from apps.portfolios.models import Account, EntryKind, Snapshot

D = Decimal


def daily(instrument, day: date, close: str) -> None:
    px = D(close)
    Bar.objects.create(instrument=instrument, timeframe="1d", ts=datetime(day.year, day.month, day.day, 5, tzinfo=UTC),
                       open=px, high=px, low=px, close=px, volume=D(1))


@pytest.fixture
def history(portfolio, stocks, book, system):
    """Deposit 10,000 on Mon 3 Mar 2025; buy 10 AAPL @ 100 (fee 1) on Tue; a 2,000 deposit on Sat 8 Mar;
    sell 5 @ 120 (fee 1) on Mon 10 Mar; a 5 dividend on Tue 11 Mar. AAPL closes 100, 105, 110, 108, 104,
    120 (Mon 10), 121 (Tue 11); SPY (the benchmark) 500 .. 530."""
    aapl, spy = stocks["AAPL"], stocks["SPY"]
    portfolio = services.portfolio_update(portfolio=portfolio, actor=system, benchmark=spy)
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("10000"), actor=system, on=date(2025, 3, 3))
    book(portfolio, aapl, "buy", "10", "100", "2025-03-04T15:00:00", fees="1")
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("2000"), actor=system, on=date(2025, 3, 8))
    book(portfolio, aapl, "sell", "5", "120", "2025-03-10T15:00:00", fees="1")
    with firm_scope(portfolio.firm_id):
        post_entry(firm_id=portfolio.firm_id, portfolio_id=portfolio.pk, kind=EntryKind.DIVIDEND,
                   trade_date=date(2025, 3, 11), settle_date=date(2025, 3, 11), now=datetime.now(UTC),
                   instrument_id=aapl.pk, lines=[(Account.CASH, D("5"), ""), (Account.DIVIDENDS, D("-5"), "")])
    closes = {3: "100", 4: "105", 5: "110", 6: "108", 7: "104", 10: "120", 11: "121"}
    for n, (day, close) in enumerate(closes.items()):
        daily(aapl, date(2025, 3, day), close)
        daily(spy, date(2025, 3, day), str(500 + 5 * n))
    return portfolio


def test_backfill_writes_one_snapshot_per_session_with_hand_computed_values(history):
    assert valuation.snapshots_backfill(history, date(2025, 3, 3), date(2025, 3, 11)) == 7  # no weekend
    with firm_scope(history.firm_id):
        snaps = {s.date.day: s for s in Snapshot.objects.filter(portfolio=history)}
    assert sorted(snaps) == [3, 4, 5, 6, 7, 10, 11]
    assert snaps[3].equity == D("10000") and snaps[3].net_flow == D("10000") and snaps[3].market_value == 0
    assert (snaps[4].cash, snaps[4].market_value, snaps[4].equity) == (D("8999"), D("1050"), D("10049"))
    assert snaps[4].unrealized == D("49") and snaps[4].net_flow == 0
    assert snaps[7].equity == D("8999") + D("1040")
    # Monday carries Saturday's deposit; sold 5 @ 120 - 1 = 599 against 500.50 of cost: realized 98.50
    assert snaps[10].net_flow == D("2000")
    assert snaps[10].cash == D("8999") + D("2000") + D("599") and snaps[10].realized == D("98.50")
    assert snaps[10].market_value == D("600") and snaps[10].unrealized == D("600") - D("500.50")
    assert snaps[11].realized == D("103.50") and snaps[11].equity == D("11603") + D("605")
    assert snaps[11].benchmark_close == D("530") and snaps[3].benchmark_close == D("500")
    assert not any(s.stale for s in snaps.values())
    # the invariant, snapshot to snapshot: equity change - flows = change in realized + unrealized
    days = sorted(snaps)
    for a, b in zip(days, days[1:], strict=False):
        pnl = snaps[b].equity - snaps[a].equity - snaps[b].net_flow
        assert pnl == (snaps[b].realized + snaps[b].unrealized) - (snaps[a].realized + snaps[a].unrealized)
    assert snaps[11].equity - D("12000") == snaps[11].realized + snaps[11].unrealized


def test_snapshot_take_is_an_idempotent_upsert(history):
    first = valuation.snapshot_take(history, date(2025, 3, 4))
    again = valuation.snapshot_take(history, date(2025, 3, 4))
    assert first.pk == again.pk and again.equity == D("10049")
    with firm_scope(history.firm_id):
        assert Snapshot.objects.filter(portfolio=history).count() == 1


def test_a_missing_price_makes_the_snapshot_stale(history, stocks, book):
    book(history, stocks["XYZ"], "buy", "2", "10", "2025-03-05T15:00:00")
    snap = valuation.snapshot_take(history, date(2025, 3, 5))
    assert snap.stale and snap.market_value == D("1100") + D("20")  # XYZ at cost


def test_snapshots_at_close_covers_every_firm_once(history, firm_b, system, stocks):
    other = services.portfolio_create(firm_id=firm_b.firm.pk, name="beta_secret portfolio", actor=system)
    services.cash_post(portfolio=other, kind="deposit", amount=D("500"), actor=system, on=date(2025, 3, 3))
    now = datetime(2025, 3, 7, 22, 0, tzinfo=UTC)  # Friday after the close
    out = valuation.snapshots_at_close(now=now)
    assert out["session"] == "2025-03-07" and out["taken"] == 2 and out["failed"] == 0
    with unscoped():
        rows = {s.portfolio_id: s for s in Snapshot.objects.filter(date=date(2025, 3, 7))}
    assert rows[history.pk].equity == D("10039") and rows[history.pk].firm_id == history.firm_id
    assert rows[other.pk].equity == D("500") and rows[other.pk].firm_id == firm_b.firm.pk
    # a second run finds nothing missing; during the next session the last completed one is still Friday
    assert valuation.snapshots_at_close(now=now)["taken"] == 0
    assert valuation.snapshots_at_close(now=datetime(2025, 3, 10, 15, tzinfo=UTC))["session"] == "2025-03-07"


def test_backfill_command_prints_progress_and_refuses_bad_input(history):
    out = StringIO()
    call_command("snapshots_backfill", str(history.pk), "--start", "2025-03-03", "--end", "2025-03-11", stdout=out)
    text = out.getvalue()
    assert "snapshots: 7/7 (2025-03-11)" in text and "7 snapshot(s)" in text
    with firm_scope(history.firm_id):
        assert Snapshot.objects.filter(portfolio=history).count() == 7
    with pytest.raises(CommandError, match="--start"):
        call_command("snapshots_backfill", str(history.pk), "--start", "March")
    with pytest.raises(CommandError, match="after --end"):
        call_command("snapshots_backfill", str(history.pk), "--start", "2025-03-11", "--end", "2025-03-03")
    with pytest.raises(CommandError, match="No portfolio"):
        call_command("snapshots_backfill", "999999", "--start", "2025-03-03", "--end", "2025-03-04")


def test_stale_snapshots_are_repaired_once_their_prices_arrive(portfolio, stocks, book, system):
    """History booked before its bars exist gives stale snapshots (priced at cost); the beat task
    re-takes them once the bars are there (and only snapshots older than REPAIR_AFTER)."""
    from datetime import timedelta

    from django.utils import timezone

    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("1000"), actor=system, on=date(2025, 3, 3))
    book(portfolio, stocks["AAPL"], "buy", "2", "100", "2025-03-04T15:00:00")
    valuation.snapshots_backfill(portfolio, date(2025, 3, 4), date(2025, 3, 5))
    with firm_scope(portfolio.firm_id):
        assert [(s.stale, s.equity) for s in Snapshot.objects.filter(portfolio=portfolio)] == [
            (True, D("1000")), (True, D("1000"))]
    daily(stocks["AAPL"], date(2025, 3, 4), "110")
    daily(stocks["AAPL"], date(2025, 3, 5), "120")
    assert valuation.snapshots_at_close()["repaired"] == 0  # too fresh: taken moments ago
    with firm_scope(portfolio.firm_id):
        Snapshot.objects.filter(portfolio=portfolio).update(created_at=timezone.now() - timedelta(hours=1))
    out = valuation.snapshots_at_close()
    assert out["repaired"] == 2
    with firm_scope(portfolio.firm_id):
        repaired = {s.date: (s.stale, s.equity) for s in Snapshot.objects.filter(portfolio=portfolio,
                                                                                  date__lt=date(2025, 3, 6))}
    assert repaired == {date(2025, 3, 4): (False, D("1020")), date(2025, 3, 5): (False, D("1040"))}
