"""Corporate actions: the pure core on the tax-lot engine, then the services against PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.portfolios import corporate_core as cc
from apps.portfolios.lots import Fill, Method, Side
from apps.portfolios.wash import Policy, TaxLotEngine

D = Decimal


def _ts(day: str) -> datetime:
    return datetime.fromisoformat(day + "T15:00:00").replace(tzinfo=UTC)


def _fill(fid, pid, inst, side, qty, price, day):
    return Fill(fid, pid, inst, Side(side), D(qty), D(price), _ts(day))


# -- pure core --------------------------------------------------------------------------------------


def test_two_for_one_split_doubles_quantity_and_keeps_cost():
    engine = TaxLotEngine()
    engine.apply(_fill("b1", 1, 7, "buy", "100", "50", "2025-03-03"))
    lots = cc.apply_split(engine, 7, D(1), D(2))
    assert [(lot.lot_id, lot.quantity, lot.cost) for lot in lots] == [("b1", D(200), D(5000))]
    assert lots[0].cost_per_unit == D(25)
    assert engine.position(1, 7) == D(200)
    # a later sale of 50 post-split shares at $30 relieves 50 x $25 of basis: gain 1,500 - 1,250 = 250
    result = engine.apply(_fill("s1", 1, 7, "sell", "50", "30", "2025-04-01"))
    assert result.gains[0].cost_basis == D("1250.00") and result.gains[0].gain == D("250.00")


def test_split_keeps_basis_adjustment_holding_period_and_other_instruments():
    engine = TaxLotEngine()
    engine.apply(_fill("b1", 1, 7, "buy", "10", "100", "2025-01-02"))
    engine.apply(_fill("s1", 1, 7, "sell", "10", "90", "2025-01-10"))  # loss 100
    engine.apply(_fill("b2", 1, 7, "buy", "10", "91", "2025-01-15"))  # washes it: +100 basis
    engine.apply(_fill("o1", 1, 8, "buy", "3", "10", "2025-01-15"))
    engine.apply(_fill("b3", 2, 7, "buy", "4", "10", "2025-01-16"))
    lots = cc.apply_split(engine, 7, D(1), D(3), portfolio_ids=[1])
    assert len(lots) == 1
    lot = lots[0]
    assert lot.quantity == 30 and lot.cost == D(910) and lot.basis_adjustment == D(100)
    assert lot.holding_start == date(2025, 1, 7)  # tacked on: held 8 days before
    assert engine.position(1, 8) == 3 and engine.position(2, 7) == 4  # untouched


def test_reverse_split_and_cash_in_lieu_picks_the_fractional_lot():
    engine = TaxLotEngine()
    engine.apply(_fill("b1", 1, 7, "buy", "50", "2", "2025-01-02"))
    engine.apply(_fill("b2", 1, 7, "buy", "55", "3", "2025-01-03"))
    lots = cc.apply_split(engine, 7, D(10), D(1))
    assert [(lot.quantity, lot.cost) for lot in lots] == [(D(5), D(100)), (D("5.5"), D(165))]
    assert engine.position(1, 7) == D("10.5")
    assert cc.cash_in_lieu(engine, 7) == [cc.CashInLieu(1, 7, D("0.5"), "sell", "b2")]


def test_cash_in_lieu_of_a_short_position_buys_back():
    engine = TaxLotEngine({1: Policy(Method.FIFO, allow_short=True)})
    engine.apply(_fill("s1", 1, 7, "sell", "25", "4", "2025-01-02"))
    cc.apply_split(engine, 7, D(10), D(1))
    assert engine.position(1, 7) == D("-2.5")
    assert cc.cash_in_lieu(engine, 7) == [cc.CashInLieu(1, 7, D("0.5"), "buy", "s1")]


def test_non_terminating_ratio_rounds_each_lot():
    assert cc.scale_quantity(D(100), D(3), D(1)) == D("33.3333333333")
    assert cc.scale_quantity(D(105), D(10), D(1)) == D("10.5")


@pytest.mark.parametrize("ratio_from, ratio_to, field", [
    (D(0), D(2), "ratio_from"), (D(1), D(-2), "ratio_to"), (D(2), D(2), "ratio_to"), (D("NaN"), D(1), "ratio_from"),
])
def test_bad_ratio_is_refused_and_nothing_changes(ratio_from, ratio_to, field):
    engine = TaxLotEngine()
    engine.apply(_fill("b1", 1, 7, "buy", "100", "50", "2025-03-03"))
    with pytest.raises(cc.CorporateActionError) as err:
        cc.apply_split(engine, 7, ratio_from, ratio_to)
    assert field in err.value.fields
    assert engine.position(1, 7) == 100


def test_symbol_change_moves_lots_but_not_unwashed_losses():
    engine = TaxLotEngine()
    engine.apply(_fill("b1", 1, 7, "buy", "10", "100", "2025-01-02"))
    engine.apply(_fill("s1", 1, 7, "sell", "5", "90", "2025-01-10"))  # loss 50, unwashed
    moved = cc.change_symbol(engine, 7, 9)
    assert [(lot.lot_id, lot.instrument, lot.quantity, lot.cost) for lot in moved] == [("b1", 9, D(5), D(500))]
    assert engine.position(1, 7) == 0 and engine.position(1, 9) == 5
    # a documented limit, the same as the booking service's: buying the new symbol does not wash a loss
    # sold under the old one (pending losses are found by the instrument of their records)
    result = engine.apply(_fill("b2", 1, 9, "buy", "5", "95", "2025-01-20"))
    assert result.updated_gains == () and engine.gains["s1:b1"].disallowed == 0
    # the history record stays on the old instrument
    assert engine.gains["s1:b1"].instrument == 7
    # and a sale of the moved shares works on the new key
    sale = engine.apply(_fill("s2", 1, 9, "sell", "5", "101", "2025-02-25"))
    assert sale.gains[0].lot_id == "b1" and sale.gains[0].cost_basis == D("500.00")


def test_symbol_change_refuses_to_merge_holdings():
    engine = TaxLotEngine()
    engine.apply(_fill("b1", 1, 7, "buy", "10", "100", "2025-01-02"))
    engine.apply(_fill("b2", 1, 9, "buy", "1", "100", "2025-01-02"))
    with pytest.raises(cc.CorporateActionError) as err:
        cc.change_symbol(engine, 7, 9)
    assert err.value.fields == {"new_symbol": ["1"]}
    assert engine.position(1, 7) == 10


# -- services against PostgreSQL --------------------------------------------------------------------

from apps.audit.models import AuditEvent  # noqa: E402
from apps.core.errors import DomainError  # noqa: E402
from apps.core.tenancy import firm_scope, unscoped  # noqa: E402
from apps.marketdata.models import Instrument  # noqa: E402
from apps.portfolios import corporate, selectors, services  # noqa: E402
from apps.portfolios.models import (  # noqa: E402
    Account,
    CorporateAction,
    CorporateActionApplication,
    JournalEntry,
    Lot,
    Position,
    RealizedGain,
)
from apps.portfolios.models import Fill as FillRow  # noqa: E402


def _create(portfolio, system, **kw):
    return corporate.corporate_action_create(firm_id=portfolio.firm_id, actor=system, **kw)


def _position(portfolio, instrument):
    with unscoped():
        return Position.objects.get(portfolio=portfolio, instrument=instrument)


def _lots(portfolio, instrument):
    with unscoped():
        return list(Lot.objects.filter(portfolio=portfolio, instrument=instrument).exclude(quantity=0)
                    .order_by("origin_fill_id", "part").values_list("lot_id", "quantity", "cost"))


@pytest.mark.django_db
def test_two_for_one_split_of_100_shares_at_50(portfolio, stocks, book, system):
    aapl = stocks["AAPL"]
    book(portfolio, aapl, "buy", "100", "50", "2025-05-01", fill_id="B1")
    action = _create(portfolio, system, kind="split", instrument=aapl, ex_date=date(2025, 6, 2),
                     ratio_from=D(1), ratio_to=D(2))
    made = corporate.corporate_action_apply(action=action, actor=system)
    assert len(made) == 1 and made[0].summary["quantity_after"] == "200"
    assert _lots(portfolio, aapl) == [("B1", D(200), D(5000))]
    position = _position(portfolio, aapl)
    assert position.quantity == 200 and position.cost == D(5000) and position.cost / position.quantity == D(25)
    # applying again is a no-op
    assert corporate.corporate_action_apply(action=action, actor=system) == []
    assert _lots(portfolio, aapl) == [("B1", D(200), D(5000))]
    with unscoped():
        assert CorporateActionApplication.objects.count() == 1
        assert AuditEvent.objects.filter(action="corporate_action.applied").count() == 1
        assert CorporateAction.objects.get(pk=action.pk).applied_at is not None
    # a sale after the split relieves $25 a share: 60 @ $27 -> gain 60 x 2 = 120
    sold = book(portfolio, aapl, "sell", "60", "27", "2025-06-03")
    assert sold.realized == D(120)


@pytest.mark.django_db
def test_reverse_split_of_non_fractionable_pays_cash_in_lieu(portfolio, book, system):
    rsx = Instrument.objects.create(symbol="RSX", asset_class="equity", exchange="NYSE", fractionable=False)
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("1000"), actor=system, on=date(2025, 4, 1))
    book(portfolio, rsx, "buy", "105", "2", "2025-05-01", fill_id="R1")  # cost 210
    action = _create(portfolio, system, kind="split", instrument=rsx, ex_date=date(2025, 6, 2),
                     ratio_from=D(10), ratio_to=D(1), cash_in_lieu_price=D(23))
    [application] = corporate.corporate_action_apply(action=action, actor=system)
    # 105 / 10 = 10.5 shares costing 210 ($20 each); 0.5 sold at $23 = 11.50 for a basis of 10.00: gain 1.50
    assert application.summary["cash_in_lieu_quantity"] == "0.5"
    assert D(application.summary["realized"]) == D("1.50")
    assert _lots(portfolio, rsx) == [("R1", D(10), D(200))]
    position = _position(portfolio, rsx)
    assert position.quantity == 10 and position.cost == D(200) and position.realized == D("1.50")
    with unscoped():
        fill = FillRow.objects.get(fill_id=f"ca:{action.pk}:{portfolio.pk}")
        gain = RealizedGain.objects.get(portfolio=portfolio)
    assert fill.source == "manual" and fill.order_ref == f"ca:{action.pk}" and fill.trade_date == date(2025, 6, 2)
    assert (gain.quantity, gain.proceeds, gain.cost_basis, gain.gain) == (D("0.5"), D("11.50"), D("10.00"), D("1.50"))
    with firm_scope(portfolio.firm_id):
        assert selectors.cash_balance(portfolio.pk) == D(1000) - D(210) + D("11.50")
        assert sum(selectors.account_balances(portfolio.pk).values()) == 0


@pytest.mark.django_db
def test_reverse_split_without_cash_in_lieu_price_is_refused(portfolio, book, system):
    rsx = Instrument.objects.create(symbol="RSX", asset_class="equity", exchange="NYSE", fractionable=False)
    book(portfolio, rsx, "buy", "105", "2", "2025-05-01", fill_id="R1")
    action = _create(portfolio, system, kind="split", instrument=rsx, ex_date=date(2025, 6, 2),
                     ratio_from=D(10), ratio_to=D(1))
    with pytest.raises(DomainError) as err:
        corporate.corporate_action_apply(action=action, actor=system)
    assert err.value.code == "CASH_IN_LIEU_PRICE_REQUIRED" and "cash_in_lieu_price" in err.value.fields
    assert _lots(portfolio, rsx) == [("R1", D(105), D(210))]
    with unscoped():
        assert not CorporateActionApplication.objects.exists()


@pytest.mark.django_db
def test_dividend_of_24_cents_on_150_shares(portfolio, stocks, book, system, firm_a):
    msft = stocks["MSFT"]
    book(portfolio, msft, "buy", "150", "400", "2025-05-01")
    book(portfolio, msft, "buy", "50", "401", "2025-05-15")  # bought on the ex-date: no dividend for these
    short = services.portfolio_create(firm_id=firm_a.firm.pk, name="Shorts", actor=system, allow_short=True,
                                      tax_entity=services.tax_entity_create(firm_id=firm_a.firm.pk, name="T2",
                                                                            actor=system))
    book(short, msft, "sell", "10", "400", "2025-05-02")
    action = _create(portfolio, system, kind="cash_dividend", instrument=msft, ex_date=date(2025, 5, 15),
                     record_date=date(2025, 5, 15), pay_date=date(2025, 6, 12), cash_per_share=D("0.24"))
    made = corporate.corporate_action_apply(action=action, actor=system)
    assert sorted(a.summary["amount"] for a in made) == ["-2.40", "36.00"]
    with unscoped():
        entry = JournalEntry.objects.get(portfolio=portfolio, kind="dividend")
        lines = sorted((line.account, line.amount) for line in entry.lines.all())
    assert entry.trade_date == date(2025, 6, 12) and entry.idempotency_key == f"ca:{action.pk}"
    assert lines == [(Account.CASH, D("36.00")), (Account.DIVIDENDS, D("-36.00"))]
    assert corporate.corporate_action_apply(action=action, actor=system) == []
    with unscoped():
        assert JournalEntry.objects.filter(kind="dividend").count() == 2


@pytest.mark.django_db
def test_dividend_counts_shares_split_adjusted(portfolio, stocks, book, system):
    aapl = stocks["AAPL"]
    book(portfolio, aapl, "buy", "75", "50", "2025-05-01")
    split = _create(portfolio, system, kind="split", instrument=aapl, ex_date=date(2025, 6, 2),
                    ratio_from=D(1), ratio_to=D(2))
    corporate.corporate_action_apply(action=split, actor=system)
    dividend = _create(portfolio, system, kind="cash_dividend", instrument=aapl, ex_date=date(2025, 7, 1),
                       pay_date=date(2025, 7, 10), cash_per_share=D("0.24"))
    [made] = corporate.corporate_action_apply(action=dividend, actor=system)
    assert made.summary["quantity"] == "150" and made.summary["amount"] == "36.00"


@pytest.mark.django_db
def test_dividend_not_yet_payable(portfolio, stocks, book, system):
    book(portfolio, stocks["MSFT"], "buy", "1", "400", "2025-05-01")
    action = _create(portfolio, system, kind="cash_dividend", instrument=stocks["MSFT"], ex_date=date(2025, 5, 15),
                     pay_date=date(2099, 1, 2), cash_per_share=D("0.24"))
    with pytest.raises(DomainError) as err:
        corporate.corporate_action_apply(action=action, actor=system)
    assert err.value.code == "NOT_YET_PAYABLE" and "pay_date" in err.value.fields


@pytest.mark.django_db
@pytest.mark.parametrize("kw, field", [
    ({"kind": "split", "ratio_from": D(0), "ratio_to": D(2)}, "ratio_from"),
    ({"kind": "split", "ratio_from": D(1), "ratio_to": D(-2)}, "ratio_to"),
    ({"kind": "cash_dividend", "cash_per_share": D(0), "pay_date": date(2025, 6, 1)}, "cash_per_share"),
    ({"kind": "cash_dividend", "cash_per_share": D(1)}, "pay_date"),
    ({"kind": "symbol_change"}, "new_symbol"),
    ({"kind": "split", "ratio_from": D(1), "ratio_to": D(2), "cash_per_share": D(1)}, "cash_per_share"),
])
def test_invalid_actions_are_refused_and_nothing_written(portfolio, stocks, system, kw, field):
    with pytest.raises(DomainError) as err:
        _create(portfolio, system, instrument=stocks["AAPL"], ex_date=date(2025, 6, 2), **kw)
    assert field in err.value.fields
    with unscoped():
        assert not CorporateAction.objects.exists()
        assert not AuditEvent.objects.filter(action="corporate_action.created").exists()


@pytest.mark.django_db
def test_duplicate_reference_is_409(portfolio, stocks, system):
    kw = {"kind": "split", "instrument": stocks["AAPL"], "ex_date": date(2025, 6, 2), "ratio_from": D(1),
          "ratio_to": D(2)}
    first = _create(portfolio, system, **kw)
    assert first.reference == "split:AAPL:2025-06-02"
    with pytest.raises(DomainError) as err:
        _create(portfolio, system, **kw)
    assert err.value.status_code == 409


@pytest.mark.django_db
def test_split_refused_when_later_fills_are_booked(portfolio, stocks, book, system):
    aapl = stocks["AAPL"]
    book(portfolio, aapl, "buy", "100", "50", "2025-05-01")
    book(portfolio, aapl, "buy", "10", "26", "2025-06-03", fill_id="LATE")
    action = _create(portfolio, system, kind="split", instrument=aapl, ex_date=date(2025, 6, 2),
                     ratio_from=D(1), ratio_to=D(2))
    with pytest.raises(DomainError) as err:
        corporate.corporate_action_apply(action=action, actor=system)
    assert err.value.code == "OUT_OF_ORDER" and "LATE" in err.value.message
    assert _position(portfolio, aapl).quantity == 110


@pytest.mark.django_db
def test_symbol_change_moves_lots_and_position(portfolio, stocks, book, system):
    xyz = stocks["XYZ"]
    book(portfolio, xyz, "buy", "30", "10", "2025-05-01", fill_id="X1")
    action = _create(portfolio, system, kind="symbol_change", instrument=xyz, ex_date=date(2025, 6, 2),
                     new_symbol="xyzn")
    new = action.new_instrument
    assert new.symbol == "XYZN" and new.exchange == "NYSE" and new.asset_class == "equity"
    corporate.corporate_action_apply(action=action, actor=system)
    assert _lots(portfolio, new) == [("X1", D(30), D(300))]
    assert _lots(portfolio, xyz) == []
    assert _position(portfolio, new).quantity == 30 and _position(portfolio, new).cost == D(300)
    assert _position(portfolio, xyz).quantity == 0
    with unscoped():
        assert FillRow.objects.get(fill_id="X1").instrument_id == xyz.pk  # history keeps the old symbol
    sold = book(portfolio, new, "sell", "30", "12", "2025-06-05")
    assert sold.realized == D(60)


@pytest.mark.django_db
def test_import_all_or_nothing_and_reimport_is_noop(portfolio, stocks, system):
    firm_id = portfolio.firm_id
    good = ("kind,symbol,ex_date,pay_date,ratio_from,ratio_to,cash_per_share,reference\n"
            "split,AAPL,2025-06-02,,1,2,,S-1\n"
            "cash_dividend,MSFT,2025-05-15,2025-06-12,,,0.24,D-1\n")
    bad = good + "split,AAPL,2025-07-01,,0,2,,S-2\nsplit,NOPE,2025-07-01,,1,2,,S-3\n"
    with pytest.raises(DomainError) as err:
        corporate.corporate_actions_import(firm_id=firm_id, text=bad, actor=system)
    assert err.value.fields == {"row 4": ["ratio_from: Must be a positive number."],
                                "row 5": ["symbol: Unknown symbol."]}
    with unscoped():
        assert not CorporateAction.objects.exists()
    report = corporate.corporate_actions_import(firm_id=firm_id, text=good, actor=system)
    assert (report["created"], report["existing"]) == (2, 0)
    again = corporate.corporate_actions_import(firm_id=firm_id, text=good, actor=system)
    assert (again["created"], again["existing"]) == (0, 2)
    with unscoped():
        assert CorporateAction.objects.count() == 2


@pytest.mark.django_db
def test_apply_due_applies_effective_actions_once(portfolio, stocks, book, system):
    aapl = stocks["AAPL"]
    book(portfolio, aapl, "buy", "100", "50", "2025-05-01")
    _create(portfolio, system, kind="split", instrument=aapl, ex_date=date(2025, 6, 2), ratio_from=D(1),
            ratio_to=D(2))
    _create(portfolio, system, kind="cash_dividend", instrument=aapl, ex_date=date(2099, 1, 2),
            pay_date=date(2099, 1, 9), cash_per_share=D(1))
    report = corporate.apply_due()
    assert report == {"applied": 1, "applications": 1, "errors": []}
    assert _position(portfolio, aapl).quantity == 200
    assert corporate.apply_due() == {"applied": 0, "applications": 0, "errors": []}


@pytest.mark.django_db
def test_import_command_imports_and_applies(portfolio, stocks, book, firm_a, tmp_path):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    book(portfolio, stocks["MSFT"], "buy", "150", "400", "2025-05-01")
    path = tmp_path / "ca.csv"
    path.write_text("kind,symbol,ex_date,record_date,pay_date,cash_per_share,reference\n"
                    "cash_dividend,MSFT,2025-05-15,2025-05-15,2025-06-12,0.24,MSFT-DIV-2025Q2\n")
    out = StringIO()
    call_command("corporate_actions_import", str(path), "--firm", firm_a.firm.slug, "--apply", stdout=out)
    assert "1 created, 0 already present." in out.getvalue()
    assert "applied 1 action(s), 1 portfolio application(s); 0 refused." in out.getvalue()
    with firm_scope(portfolio.firm_id):
        assert selectors.account_balance(portfolio.pk, Account.DIVIDENDS) == D("-36.00")
    path.write_text("kind,symbol,ex_date\nsplit,MSFT,2025-07-01\n")
    with pytest.raises(CommandError, match="nothing imported"):
        call_command("corporate_actions_import", str(path), "--firm", firm_a.firm.slug, stdout=StringIO(),
                     stderr=StringIO())


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("buy"), st.integers(1, 50), st.integers(1, 200)),
    st.tuples(st.just("sell"), st.integers(1, 50), st.integers(1, 200)),
    st.tuples(st.just("split"), st.integers(1, 10), st.integers(1, 10)),
), max_size=25))
def test_splits_conserve_cost_and_lots_sum_to_position(steps):
    engine = TaxLotEngine()
    day = date(2025, 1, 2)
    for i, (op, a, b) in enumerate(steps):
        day = date.fromordinal(day.toordinal() + 1)
        ts = datetime(day.year, day.month, day.day, 15, tzinfo=UTC)
        book = engine.books.get((1, 7))
        cost_before = sum((lot.cost for lot in book.lots), D(0)) if book else D(0)
        if op == "split":
            if a == b:
                continue
            position = engine.position(1, 7)
            cc.apply_split(engine, 7, D(a), D(b))
            book = engine.books.get((1, 7))
            assert sum((lot.cost for lot in book.lots), D(0)) == cost_before if book else True
            if position and book and all(cc.scale_quantity(lot.quantity, D(a), D(b)) for lot in book.lots):
                assert abs(engine.position(1, 7) - position * b / a) < D("1e-8") * max(len(book.lots), 1)
        else:
            held = engine.position(1, 7)
            qty = D(a) if op == "buy" else min(D(a), held)
            if qty <= 0:
                continue
            engine.apply(Fill(f"f{i}", 1, 7, Side(op), qty, D(b), ts))
        book = engine.books.get((1, 7))
        if book:
            assert sum((lot.quantity for lot in book.lots), D(0)) == book.position
