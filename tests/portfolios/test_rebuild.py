"""Rebuild (issue #4, point 10): replaying a tax entity from scratch reproduces the stored books, and
every tampering with the stored rows is reported with the right kind, key, field and values."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.core.tenancy import unscoped
from apps.portfolios import services
from apps.portfolios.models import JournalEntry, RealizedGain
from apps.portfolios.rebuild import Difference, rebuild_check


@pytest.fixture
def history(firm_a, stocks, book, system):
    """Four portfolios of the firm's one tax entity: FIFO (shorts allowed), LIFO (and a specific-lot
    sale), HIFO and average cost; a loss sale in HIFO washed by two later buys in the average one."""
    firm = firm_a.firm.pk
    fifo = services.portfolio_create(firm_id=firm, name="Fifo", allow_short=True, actor=system)
    lifo = services.portfolio_create(firm_id=firm, name="Lifo", cost_basis_method="lifo", actor=system)
    hifo = services.portfolio_create(firm_id=firm, name="Hifo", cost_basis_method="hifo", actor=system)
    avg = services.portfolio_create(firm_id=firm, name="Avg", cost_basis_method="average", actor=system)
    for p in (fifo, lifo, hifo, avg):
        services.cash_post(portfolio=p, kind="deposit", amount=D("100000"), actor=system, on=date(2025, 1, 1))
    aapl, msft, xyz = stocks["AAPL"], stocks["MSFT"], stocks["XYZ"]
    # FIFO: 10 @100 (+1 fee) and 10 @120, sell 15 @130 (-1 fee)
    book(fifo, aapl, "buy", "10", "100", "2025-01-02", fill_id="F-A1", fees="1")
    book(fifo, aapl, "buy", "10", "120", "2025-02-03", fill_id="F-A2")
    book(fifo, aapl, "sell", "15", "130", "2025-03-03", fill_id="F-A3", fees="1")
    # a short, partly covered, then covered through into a long
    book(fifo, xyz, "sell", "10", "50", "2025-01-06", fill_id="F-S1", fees="1")
    book(fifo, xyz, "buy", "4", "45", "2025-01-08", fill_id="F-S2")
    book(fifo, xyz, "buy", "10", "40", "2025-01-10", fill_id="F-S3")
    # LIFO and a specific-lot sale
    book(lifo, msft, "buy", "10", "200", "2025-01-02", fill_id="F-L1")
    book(lifo, msft, "buy", "10", "210", "2025-01-03", fill_id="F-L2")
    book(lifo, msft, "sell", "5", "220", "2025-01-06", fill_id="F-L3")
    book(lifo, msft, "sell", "2", "220", "2025-01-07", fill_id="F-L4", lot_ids=["F-L1"])
    # HIFO
    book(hifo, msft, "buy", "5", "300", "2025-03-03", fill_id="F-H1")
    book(hifo, msft, "buy", "5", "250", "2025-03-04", fill_id="F-H2")
    book(hifo, msft, "buy", "5", "280", "2025-03-05", fill_id="F-H3")
    book(hifo, msft, "sell", "7", "310", "2025-03-06", fill_id="F-H4")
    # the wash sale across portfolios: HIFO sells 20 AAPL at a 200 loss, AVG buys 10 + 10 within 30 days
    book(hifo, aapl, "buy", "20", "150", "2025-04-01", fill_id="F-W1")
    book(hifo, aapl, "sell", "20", "140", "2025-05-01", fill_id="F-W2")
    book(avg, aapl, "buy", "10", "138", "2025-05-15", fill_id="F-W3")
    book(avg, aapl, "buy", "10", "140", "2025-05-20", fill_id="F-W4")
    book(avg, aapl, "sell", "5", "150", "2025-06-16", fill_id="F-W5")
    return {"fifo": fifo, "lifo": lifo, "hifo": hifo, "avg": avg}


def execute(sql: str, params=()) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params)


def test_clean_history_rebuilds_every_portfolio(history):
    counts = {}
    for name, p in history.items():
        report = rebuild_check(p)
        assert report.differences == [], name
        assert report.ok
        counts[name] = (report.fills, report.lots, report.closed_lots, report.gains, report.positions)
        assert report.entity_fills == 19
    assert counts == {
        # fills, open lots, closed lots, gains, open positions
        "fifo": (6, 2, 2, 4, 2),  # AAPL F-A2 (5), XYZ F-S3 (4); F-A1 and F-S1 closed
        "lifo": (4, 2, 0, 2, 1),  # F-L1 (8), F-L2 (5)
        "hifo": (6, 2, 2, 3, 1),  # MSFT F-H2 (5), F-H3 (3); F-H1 and AAPL F-W1 closed
        "avg": (3, 2, 0, 1, 1),  # AAPL F-W3 (5), F-W4 (10)
    }


def test_average_cost_rebuilds(firm_a, stocks, book, system):
    avg = services.portfolio_create(firm_id=firm_a.firm.pk, name="Avg", cost_basis_method="average", actor=system)
    spy = stocks["SPY"]
    book(avg, spy, "buy", "10", "400", "2025-01-02", fill_id="F-V1")
    book(avg, spy, "buy", "10", "420", "2025-01-03", fill_id="F-V2")  # pool: 8,200 over 20, 4,100 per lot
    book(avg, spy, "sell", "5", "430", "2025-01-06", fill_id="F-V3")  # 2,150 - 2,050 = 100
    assert rebuild_check(avg).differences == []
    # an opening buy re-averages every lot: a stored lot left at its own price is caught
    with unscoped():
        execute("UPDATE portfolios_lot SET cost = 4200 WHERE lot_id = 'F-V2'")
    assert rebuild_check(avg).differences == [Difference("lot", "F-V2", "cost", D("4200"), D("4100"))]


def test_the_wash_sale_is_rebuilt_with_its_numbers(history):
    """Hand-computed: loss 20 x (150 - 140) = 200; F-W3 replaces 10 shares (100 disallowed, holding
    period of 30 days tacked on: start Apr 15), F-W4 the other 10 (start Apr 20); average cost then
    pools 1,380 + 1,400 and the adjustments 100 + 100 over the two lots."""
    report = rebuild_check(history["avg"])
    assert report.ok
    with unscoped():
        execute("UPDATE portfolios_lot SET basis_adjustment = 0, holding_start = %s WHERE lot_id = 'F-W4'",
                [date(2025, 5, 20)])
    report = rebuild_check(history["avg"])
    assert report.differences == [
        Difference("lot", "F-W4", "basis_adjustment", D("0"), D("100")),
        Difference("lot", "F-W4", "holding_start", date(2025, 5, 20), date(2025, 4, 20)),
    ]


def test_tampered_lot_quantity_and_closed_lot_are_reported(history):
    with unscoped():
        execute("UPDATE portfolios_lot SET quantity = 6 WHERE lot_id = 'F-A2'")
        execute("UPDATE portfolios_lot SET quantity = 3 WHERE lot_id = 'F-A1'")  # closed by F-A3
        execute("UPDATE portfolios_lot SET cost = 599.99, replacement_used = true WHERE lot_id = 'F-S3'")
    report = rebuild_check(history["fifo"])
    assert not report.ok
    assert report.differences == [
        Difference("lot", "F-A1", "quantity", D("3"), D("0")),
        Difference("lot", "F-A2", "quantity", D("6"), D("5")),
        Difference("lot", "F-S3", "cost", D("599.99"), D("160")),  # 4 opened long @40 after covering 6
        Difference("lot", "F-S3", "replacement_used", True, False),
    ]
    # the other portfolios of the entity are untouched
    assert rebuild_check(history["lifo"]).ok


def test_a_missing_and_an_invented_lot_are_reported(history):
    with unscoped():
        execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks, so the table can be altered
        execute("ALTER TABLE portfolios_lot DISABLE TRIGGER portfolios_lot_no_delete")  # rolled back with the test
        execute("DELETE FROM portfolios_lot WHERE lot_id = 'F-L2'")
        execute("UPDATE portfolios_lot SET lot_id = 'F-L9' WHERE lot_id = 'F-L1'")
    report = rebuild_check(history["lifo"])
    assert report.differences == [
        Difference("lot", "F-L9", "missing", D("8"), None),
        Difference("lot", "F-L1", "missing", None, D("8")),
        Difference("lot", "F-L2", "missing", None, D("5")),
    ]


def test_tampered_positions_are_reported(history, stocks):
    with unscoped():
        execute("UPDATE portfolios_position SET realized = 350, cost = 601 WHERE portfolio_id = %s"
                " AND instrument_id = %s", [history["fifo"].pk, stocks["AAPL"].pk])
        execute("UPDATE portfolios_position SET quantity = 5 WHERE portfolio_id = %s AND instrument_id = %s",
                [history["fifo"].pk, stocks["XYZ"].pk])
    report = rebuild_check(history["fifo"])
    # AAPL: 15 x 130 - 1 = 1,949 received for 1,001 + 600 of cost: 348 realized, 600 still at cost
    assert report.differences == [
        Difference("position", "AAPL", "cost", D("601"), D("600")),
        Difference("position", "AAPL", "realized", D("350"), D("348")),
        Difference("position", "XYZ", "quantity", D("5"), D("4")),
    ]


def test_tampered_realized_gains_are_reported(history):
    with unscoped():
        execute("UPDATE portfolios_realizedgain SET wash_code = '', disallowed = 150 WHERE gain_id = 'F-W2:F-W1'")
        execute("UPDATE portfolios_realizedgain SET term = 'long', proceeds = 1299.34"
                " WHERE gain_id = 'F-A3:F-A1'")
        execute("SET CONSTRAINTS ALL IMMEDIATE")
        execute("ALTER TABLE portfolios_realizedgain DISABLE TRIGGER portfolios_realizedgain_no_delete")
        execute("DELETE FROM portfolios_realizedgain WHERE gain_id = 'F-H4:F-H3'")
    hifo = rebuild_check(history["hifo"])
    assert hifo.differences == [
        Difference("gain", "F-W2:F-W1", "wash_code", "", "W"),
        Difference("gain", "F-W2:F-W1", "disallowed", D("150"), D("200")),
        # HIFO sold 7 @310: 5 of F-H1 (300) and 2 of F-H3 (280): 2 x 310 - 560 = 60
        Difference("gain", "F-H4:F-H3", "missing", None, D("60.00")),
    ]
    fifo = rebuild_check(history["fifo"])
    # 1,949 of proceeds split 10/15: 1,299.33 and 649.67
    assert fifo.differences == [
        Difference("gain", "F-A3:F-A1", "proceeds", D("1299.34"), D("1299.33")),
        Difference("gain", "F-A3:F-A1", "term", "long", "short"),
    ]


def _insert_entry(portfolio, kind="adjustment", fill_seq=None) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO portfolios_journalentry (firm_id, portfolio_id, kind, trade_date, settle_date, posted_at,"
            " memo, fill_id, idempotency_key) VALUES (%s, %s, %s, '2025-07-01', '2025-07-01', now(), 'tamper',"
            " %s, '') RETURNING id", [portfolio.firm_id, portfolio.pk, kind, fill_seq])
        return cur.fetchone()[0]


def _insert_line(portfolio, entry_id: int, account: str, amount: str) -> None:
    execute("INSERT INTO portfolios_journalline (firm_id, entry_id, portfolio_id, account, amount, trade_date,"
            " settle_date, memo) VALUES (%s, %s, %s, %s, %s, '2025-07-01', '2025-07-01', '')",
            [portfolio.firm_id, entry_id, portfolio.pk, account, D(amount)])


def test_an_unbalanced_entry_is_reported(history):
    fifo = history["fifo"]
    entry = _insert_entry(fifo)
    _insert_line(fifo, entry, "cash", "5")
    report = rebuild_check(fifo)
    # a non-trade entry is taken as recorded, so the account totals agree; the entry itself does not balance
    assert report.differences == [Difference("balance", f"entry {entry}", "sum", D("5"), D("0"))]


def test_a_line_slipped_into_a_trade_entry_is_reported(history):
    fifo = history["fifo"]
    with unscoped():
        entry = JournalEntry.objects.get(fill__fill_id="F-A3").pk
    _insert_line(fifo, entry, "cash", "5")
    report = rebuild_check(fifo)
    # cash: deposit 100,000 - 1,001 - 1,200 + 1,949 (AAPL) + 499 - 180 - 400 (XYZ) = 99,667
    assert report.differences == [
        Difference("balance", f"entry {entry}", "sum", D("5"), D("0")),
        Difference("balance", "fill F-A3", "cash", D("1954"), D("1949")),
        Difference("balance", "cash", "total", D("99672"), D("99667")),
    ]


def test_a_trade_entry_without_its_fill_is_reported(history):
    fifo = history["fifo"]
    entry = _insert_entry(fifo, kind="trade")
    _insert_line(fifo, entry, "cash", "-10")
    _insert_line(fifo, entry, "securities", "10")
    report = rebuild_check(fifo)
    assert report.differences == [
        Difference("balance", f"entry {entry}", "fill", None, "a trade entry needs its fill"),
        # open lots at cost: AAPL 5 of F-A2 (600) + XYZ 4 @40 (160)
        Difference("balance", "securities", "book_cost", D("770"), D("760")),
    ]


def test_command_ok_json_and_progress(history, capsys):
    out = _call("rebuild_portfolio", str(history["fifo"].pk))
    assert out.strip() == "OK: 6 fills, 2 lots, 4 gains, balances agree"
    out = _call("rebuild_portfolio", "Lifo", "--firm", history["lifo"].firm.slug, "--json")
    data = json.loads(out)
    assert data["ok"] is True and data["fills"] == 4 and data["lots"] == 2 and data["differences"] == []
    out = _call("rebuild_portfolio", str(history["avg"].pk), "--progress-every", "10")
    assert out.splitlines() == ["replaying fills: 10/19", "replaying fills: 19/19",
                                "OK: 3 fills, 2 lots, 1 gains, balances agree"]


def test_command_reports_differences_with_exit_status_1(history):
    with unscoped():
        execute("UPDATE portfolios_lot SET quantity = 6 WHERE lot_id = 'F-A2'")
    with pytest.raises(CommandError) as err:
        _call("rebuild_portfolio", "Fifo", "--firm", history["fifo"].firm.slug)
    assert err.value.returncode == 1
    assert err.value.out.strip() == "lot F-A2 quantity: stored 6, rebuilt 5"
    with pytest.raises(CommandError) as err:
        _call("rebuild_portfolio", str(history["fifo"].pk), "--json")
    assert err.value.returncode == 1
    data = json.loads(err.value.out)
    assert data["ok"] is False
    assert data["differences"] == [{"kind": "lot", "key": "F-A2", "field": "quantity", "stored": "6",
                                    "rebuilt": "5"}]


def test_command_refuses_unknown_portfolios(history, firm_b):
    with pytest.raises(CommandError, match="No portfolio with id 999999"):
        _call("rebuild_portfolio", "999999")
    with pytest.raises(CommandError, match="No portfolio 'Fifo' in firm"):  # another firm's: not found
        _call("rebuild_portfolio", "Fifo", "--firm", firm_b.firm.slug)
    with pytest.raises(CommandError, match="by name with --firm"):
        _call("rebuild_portfolio", "Fifo")


def _call(*args) -> str:
    from io import StringIO

    out = StringIO()
    try:
        call_command(*args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        exc.out = out.getvalue()
        raise
    return out.getvalue()


def test_corporate_actions_replay_at_their_ex_date(firm_a, stocks, book, system):
    """A 1-for-2 reverse split of a non-fractionable stock (cash in lieu booked as sells), a loss sale
    after it washed by another portfolio's buy, a dividend, then a symbol change: both portfolios of
    the tax entity rebuild exactly."""
    from apps.marketdata.models import Instrument
    from apps.portfolios import corporate

    firm = firm_a.firm.pk
    p1 = services.portfolio_create(firm_id=firm, name="One", actor=system)
    p2 = services.portfolio_create(firm_id=firm, name="Two", cost_basis_method="lifo", actor=system)
    acme = Instrument.objects.create(symbol="ACME", asset_class="equity", exchange="NYSE", fractionable=False)

    def act(**kw):
        action = corporate.corporate_action_create(firm_id=firm, instrument=acme, actor=system, **kw)
        corporate.corporate_action_apply(action=action, actor=system)
        return action

    book(p1, acme, "buy", "10", "30", "2025-01-02", fill_id="C-1")
    book(p1, acme, "buy", "5", "33", "2025-01-03", fill_id="C-2")
    book(p2, acme, "buy", "7", "31", "2025-01-03", fill_id="C-3")
    act(kind="split", ex_date=date(2025, 2, 3), ratio_from=D("2"), ratio_to=D("1"),
                cash_in_lieu_price=D("64"))
    book(p1, acme, "buy", "2", "66", "2025-02-10", fill_id="C-4")
    # P2 holds 3 at 186 after selling its half share: a 1-share sale at 60 loses 2, washed by C-4
    book(p2, acme, "sell", "1", "60", "2025-02-11", fill_id="C-5")
    act(kind="cash_dividend", ex_date=date(2025, 2, 20), pay_date=date(2025, 2, 28), cash_per_share=D("0.5"))
    act(kind="symbol_change", ex_date=date(2025, 3, 3), new_symbol="ACMX")
    acmx = Instrument.objects.get(symbol="ACMX")
    book(p1, acmx, "sell", "3", "72", "2025-03-06", fill_id="C-6")

    for p in (p1, p2):
        report = rebuild_check(p)
        assert report.differences == [], p.name
        assert report.corporate_actions == 3 and report.entity_fills == 8  # 6 + 2 cash-in-lieu sells
    with unscoped():
        gain = RealizedGain.objects.get(gain_id="C-5:C-3")
    assert (gain.gain, gain.wash_code, gain.disallowed) == (D("-2.00"), "W", D("2.00"))
    # the replay applies the split at the ex-date: a lot left in pre-split shares is caught
    with unscoped():
        execute("UPDATE portfolios_lot SET quantity = 10 WHERE lot_id = 'C-1'")
    # (C-1: 10 shares, 5 after the split, 2 after C-6 sold 3 first-in-first-out)
    assert rebuild_check(p1).differences == [Difference("lot", "C-1", "quantity", D("10"), D("2"))]


def test_outside_a_transaction_it_reads_one_snapshot(transactional_db, portfolio, stocks, book):
    """Called with no transaction open (as the command is), the check runs in its own REPEATABLE READ,
    READ ONLY transaction and leaves none open."""
    book(portfolio, stocks["AAPL"], "buy", "3", "100", "2025-03-03", fill_id="T-1")
    book(portfolio, stocks["AAPL"], "sell", "1", "90", "2025-03-04", fill_id="T-2")
    assert not connection.in_atomic_block
    report = rebuild_check(portfolio)
    assert report.ok and (report.fills, report.lots, report.gains) == (2, 1, 1)
    assert not connection.in_atomic_block
