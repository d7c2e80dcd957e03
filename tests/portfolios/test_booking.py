"""The booking service against real PostgreSQL: journal, lots, gains, positions, audit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.audit.models import AuditEvent
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope, unscoped
from apps.portfolios import selectors, services
from apps.portfolios.models import Account, Fill, JournalLine, Lot, Position, RealizedGain

D = Decimal


def test_buy_then_sell_books_everything(portfolio, stocks, book, system):
    aapl = stocks["AAPL"]
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("10000"), actor=system, on=date(2025, 3, 1))
    book(portfolio, aapl, "buy", "10", "100", "2025-03-03", fees="1")
    booked = book(portfolio, aapl, "sell", "4", "110", "2025-03-10", fees="1")
    assert booked.realized == D("4") * 110 - 1 - D("400.40")
    with unscoped():
        position = Position.objects.get(portfolio=portfolio, instrument=aapl)
        lot = Lot.objects.get(portfolio=portfolio, instrument=aapl)
        gain = RealizedGain.objects.get(portfolio=portfolio)
        actions = list(AuditEvent.objects.filter(firm_id=portfolio.firm_id).values_list("action", flat=True))
    assert position.quantity == 6 and position.cost == D("600.60")
    assert lot.quantity == 6 and lot.cost == D("600.60") and lot.original_quantity == 10
    assert gain.proceeds == D("439") and gain.cost_basis == D("400.40") and gain.term == "short"
    assert actions.count("portfolio.fill_booked") == 2
    with firm_scope(portfolio.firm_id):
        balances = selectors.account_balances(portfolio.pk)
        settled = selectors.cash_balance(portfolio.pk, settled_on=date(2025, 3, 10))
    assert balances[Account.CASH] == D("10000") - D("1001") + D("439")
    assert balances[Account.SECURITIES] == D("600.60")
    assert -balances[Account.REALIZED] == position.realized == D("38.60")
    assert sum(balances.values()) == 0
    # settlement: T+1 for US equities
    with unscoped():
        sell = Fill.objects.get(fill_id="F2")
    assert str(sell.settle_date) == "2025-03-11"
    assert sell.trade_date == date(2025, 3, 10)
    assert settled == D("10000") - D("1001")  # the sale's cash arrives on the 11th


def test_duplicate_fill_is_refused_and_nothing_written(portfolio, stocks, book):
    book(portfolio, stocks["AAPL"], "buy", "1", "100", "2025-03-03", fill_id="X-1")
    with pytest.raises(DomainError) as err:
        book(portfolio, stocks["AAPL"], "buy", "1", "100", "2025-03-04", fill_id="X-1")
    assert err.value.code == "DUPLICATE_FILL" and err.value.status_code == 409
    with unscoped():
        assert Fill.objects.count() == 1 and Lot.objects.count() == 1
        assert JournalLine.objects.count() == 2


@pytest.mark.parametrize("kwargs, field", [
    ({"price": "-1"}, "price"),
    ({"quantity": "0"}, "quantity"),
])
def test_bad_fill_names_the_field(portfolio, stocks, book, kwargs, field):
    args = {"quantity": "1", "price": "10", **kwargs}
    with pytest.raises(DomainError) as err:
        book(portfolio, stocks["AAPL"], "buy", args["quantity"], args["price"], "2025-03-03")
    assert field in err.value.fields
    with unscoped():
        assert not Fill.objects.exists() and not JournalLine.objects.exists()


def test_selling_more_than_held_without_shorts_is_refused(portfolio, stocks, book):
    book(portfolio, stocks["AAPL"], "buy", "5", "100", "2025-03-03")
    with pytest.raises(DomainError) as err:
        book(portfolio, stocks["AAPL"], "sell", "6", "100", "2025-03-04")
    assert err.value.code == "SHORT_NOT_ALLOWED"
    with unscoped():
        assert Fill.objects.count() == 1 and Position.objects.get().quantity == 5


def test_short_and_cover(firm_a, stocks, book, system):
    p = services.portfolio_create(firm_id=firm_a.firm.pk, name="Shorts", allow_short=True, actor=system)
    book(p, stocks["XYZ"], "sell", "10", "100", "2025-03-03", fees="1")
    with unscoped():
        assert Position.objects.get(portfolio=p).cost == D("-999")
    booked = book(p, stocks["XYZ"], "buy", "10", "90", "2025-03-05", fees="1")
    assert booked.realized == D("98")
    with firm_scope(p.firm_id):
        assert selectors.account_balance(p.pk, Account.SECURITIES) == 0


def test_wash_sale_across_portfolios_of_one_tax_entity(firm_a, stocks, book, system):
    a = services.portfolio_create(firm_id=firm_a.firm.pk, name="A", actor=system)
    b = services.portfolio_create(firm_id=firm_a.firm.pk, name="B", actor=system)
    xyz = stocks["XYZ"]
    book(a, xyz, "buy", "100", "50", "2025-01-02")
    book(a, xyz, "sell", "100", "40", "2025-06-02")  # loss 1,000
    book(b, xyz, "buy", "100", "42", "2025-06-20")  # within 30 days, other portfolio, same taxpayer
    with unscoped():
        gain = RealizedGain.objects.get(portfolio=a)
        lot = Lot.objects.get(portfolio=b)
        washed = AuditEvent.objects.filter(action="portfolio.gain_washed").count()
    assert gain.wash_code == "W" and gain.disallowed == D("1000") and gain.adjusted_gain == 0
    assert lot.basis_adjustment == D("1000") and lot.basis == D("5200")
    assert str(lot.holding_start) == "2025-01-20"  # 151 days held tacked on
    assert washed == 1


def test_specific_lot_of_another_portfolio_is_not_found(firm_a, stocks, book, system):
    a = services.portfolio_create(firm_id=firm_a.firm.pk, name="A", actor=system)
    b = services.portfolio_create(firm_id=firm_a.firm.pk, name="B", actor=system)
    book(a, stocks["AAPL"], "buy", "1", "100", "2025-03-03", fill_id="LOT-A")
    book(b, stocks["AAPL"], "buy", "1", "100", "2025-03-03", fill_id="LOT-B")
    with pytest.raises(DomainError) as err:
        book(b, stocks["AAPL"], "sell", "1", "100", "2025-03-04", lot_ids=["LOT-A"])
    assert err.value.code == "LOT_NOT_FOUND"


def test_ledger_rows_cannot_be_updated_or_deleted(portfolio, stocks, book):
    from django.db import DatabaseError, transaction

    book(portfolio, stocks["AAPL"], "buy", "1", "100", "2025-03-03")
    with unscoped():
        for qs in (Fill.objects.all(), JournalLine.objects.all()):
            with pytest.raises(DatabaseError), transaction.atomic():
                qs.update(memo="x") if qs.model is JournalLine else qs.update(price=1)
            with pytest.raises(DatabaseError), transaction.atomic():
                qs.delete()


def test_fills_of_a_restricted_portfolio_are_published_to_managers_only(firm_a, stocks, book, system,
                                                                        django_capture_on_commit_callbacks):
    open_p = services.portfolio_create(firm_id=firm_a.firm.pk, name="Open", actor=system)
    closed_p = services.portfolio_create(firm_id=firm_a.firm.pk, name="Closed", restricted=True, actor=system)
    with django_capture_on_commit_callbacks() as callbacks:
        book(open_p, stocks["AAPL"], "buy", "1", "100", "2025-03-03")
        book(closed_p, stocks["AAPL"], "buy", "1", "100", "2025-03-04")
    fills = [c.keywords for c in callbacks if getattr(c, "keywords", {}).get("kind") == "portfolio.fill"]
    pairs = zip(fills, (open_p, closed_p), strict=True)
    assert [(f["roles"], f"\"portfolio\":{p.pk}," in f["payload_json"]) for f, p in pairs] == [
        (None, True), (["admin", "owner"], True)]


def test_a_fifo_booking_is_three_round_trips(portfolio, stocks, book, django_assert_num_queries):
    """Lean on purpose (issue #4 aims at 1,000 fills/s per writer): one round trip takes the lock and
    reads, one writes every row (and reads the audit chain's head), one appends the audit event.
    Inside the test's transaction the service's atomic block is a savepoint (two more)."""
    book(portfolio, stocks["AAPL"], "buy", "10", "100", "2025-03-03")
    with django_assert_num_queries(5):
        book(portfolio, stocks["AAPL"], "buy", "10", "101", "2025-03-04")
    with django_assert_num_queries(5):
        book(portfolio, stocks["AAPL"], "sell", "15", "99", "2025-03-05")


def test_lot_and_gain_history_cannot_be_deleted(portfolio, stocks, book):
    """Reliability target 12: closed lots, realized gains and positions stay (no purge job exists;
    the database refuses DELETE), while booking still updates them in place."""
    from django.db import DatabaseError, transaction

    book(portfolio, stocks["AAPL"], "buy", "1", "100", "2025-03-03")
    book(portfolio, stocks["AAPL"], "sell", "1", "90", "2025-03-04")
    with unscoped():
        assert Lot.objects.get().quantity == 0 and RealizedGain.objects.count() == 1
        for qs in (Lot.objects.all(), RealizedGain.objects.all(), Position.objects.all()):
            with pytest.raises(DatabaseError, match="keeps its history"), transaction.atomic():
                qs.delete()
        assert Lot.objects.count() == 1 and RealizedGain.objects.count() == 1 and Position.objects.count() == 1
