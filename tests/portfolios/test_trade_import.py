"""Trade import: the pure parsing and mapping guess, and the service on real PostgreSQL (all or
nothing, non-atomic, duplicates, booking refusals reported on their row)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.audit.models import AuditEvent
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.marketdata.models import Instrument
from apps.portfolios import trade_import_core as core
from apps.portfolios.models import Fill, JournalEntry, Lot, Position, RealizedGain, TradeImport
from apps.portfolios.selectors import account_balance, cash_balance
from apps.portfolios.trade_import import (
    MSG_FILE_TOO_LARGE,
    trade_import_create,
    trade_import_file,
    trade_import_preview,
)

D = Decimal
NOW = datetime(2025, 6, 2, 18, 0, tzinfo=UTC)

GOOD = b"""executed_at,symbol,side,quantity,price,commission,fees,type,amount
2024-01-02,,,,,,,deposit,10000
2024-01-03 10:00,AAPL,Bought,10,100,1,0.5,,
2024-02-01 10:00,AAPL,Buy,10,110,1,,,
2024-03-15,AAPL,,,,,,dividend,2.40
2024-03-01 10:00,AAPL,Sold,15,120,1,,,
"""


def imported(portfolio, system, content, **kw):
    return trade_import_file(portfolio=portfolio, filename="history.csv", content=content, actor=system, **kw)


def ledger(portfolio):
    with firm_scope(portfolio.firm_id):
        return {
            "fills": Fill.objects.filter(portfolio=portfolio).count(),
            "entries": JournalEntry.objects.filter(portfolio=portfolio).count(),
            "lots": Lot.objects.filter(portfolio=portfolio).count(),
            "gains": RealizedGain.objects.filter(portfolio=portfolio).count(),
            "positions": Position.objects.filter(portfolio=portfolio).count(),
        }


def issues(imp):
    return [(i["row"], i["field"], i["code"]) for i in imp.report["issues"]]


# --- the pure part --------------------------------------------------------------------------------


def test_read_table_skips_title_footer_and_blank_lines_and_keeps_file_line_numbers():
    content = (b'"Transactions for account XXXX-1234 as of 06/01/2025"\n'
               b'"Date","Action","Symbol","Description","Quantity","Price","Fees & Comm","Amount"\n'
               b'"01/05/2024 as of 01/04/2024","Buy","AAPL","APPLE INC","10","$185.50","$0.65","-$1,855.65"\n'
               b'\n'
               b'"01/08/2024","Qualified Dividend","MSFT","MICROSOFT","","","","$7.50"\n'
               b'"Transactions Total","","","","","","","-$1,848.15"\n')
    table = core.read_table(content)
    assert table.headers[:3] == ["Date", "Action", "Symbol"]
    assert [line for line, _ in table.rows] == [3, 5]
    fmt, mapping = core.guess_mapping(table.headers)
    assert fmt == "Schwab transactions"
    assert mapping == {"executed_at": "Date", "symbol": "Symbol", "side": "Action", "type": "Action",
                       "quantity": "Quantity", "price": "Price", "fees": "Fees & Comm", "amount": "Amount",
                       "memo": "Description"}
    parsed = core.parse_rows(table, mapping, file_digest="f" * 64, now=NOW)
    assert parsed.issues == []
    buy, dividend = parsed.rows
    assert (buy.kind, buy.side, buy.quantity, buy.price, buy.fees) == ("trade", "buy", D(10), D("185.50"), D("0.65"))
    assert buy.executed_at == datetime(2024, 1, 5, 21, 0, tzinfo=UTC)  # 16:00 New York (EST)
    assert buy.fill_id == "imp:" + "f" * 64 + ":3"
    assert (dividend.kind, dividend.amount, dividend.symbol) == ("dividend", D("7.50"), "MSFT")


def test_guess_for_interactive_brokers_flex_and_alpaca():
    ib = ["ClientAccountID", "AssetClass", "Symbol", "Description", "DateTime", "TradeDate", "Quantity",
          "TradePrice", "IBCommission", "Buy/Sell", "TradeID", "IBExecID"]
    assert core.guess_mapping(ib) == ("Interactive Brokers Flex trades", {
        "executed_at": "DateTime", "symbol": "Symbol", "side": "Buy/Sell", "quantity": "Quantity",
        "price": "TradePrice", "commission": "IBCommission", "fill_id": "TradeID", "asset_class": "AssetClass",
        "memo": "Description"})
    alpaca = ["id", "activity_type", "transaction_time", "type", "price", "qty", "side", "symbol", "leaves_qty",
              "order_id", "cum_qty", "order_status", "date", "net_amount", "description"]
    assert core.guess_mapping(alpaca) == ("Alpaca activities", {
        "executed_at": "transaction_time", "symbol": "symbol", "side": "side", "quantity": "qty", "price": "price",
        "fill_id": "id", "type": "activity_type", "amount": "net_amount", "memo": "description", "date": "date"})
    assert core.guess_mapping(["Trade Date", "Ticker", "Shares", "Fill Price", "Commission"]) == ("generic", {
        "executed_at": "Trade Date", "symbol": "Ticker", "quantity": "Shares", "price": "Fill Price",
        "commission": "Commission"})


def test_ib_rows_signed_quantity_negative_commission_and_compact_datetime():
    content = (b"AssetClass,Symbol,DateTime,Quantity,TradePrice,IBCommission,Buy/Sell,TradeID,TradePrice2\n"
               b"STK,AAPL,20240105;093015,-20,185.5,-1.0035,SELL,T77,x\n")
    table = core.read_table(content)
    parsed = core.parse_rows(table, core.guess_mapping(table.headers)[1], file_digest="0" * 64, now=NOW)
    (row,) = parsed.rows
    assert (row.side, row.quantity, row.fees, row.fill_id, row.asset_class) == (
        "sell", D(20), D("1.0035"), "T77", "equity")
    assert row.executed_at == datetime(2024, 1, 5, 14, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(("line", "field", "message"), [
    ("2024-13-01,AAPL,buy,1,1", "executed_at", "not a date or date-time: '2024-13-01'"),
    ("2030-01-01,AAPL,buy,1,1", "executed_at", "in the future (2030-01-01T16:00:00-05:00)"),
    ("0001-01-01T00:00:00+14:00,AAPL,buy,1,1", "executed_at", "before 1900: '0001-01-01T00:00:00+14:00'"),
    ("2024-01-02,AAPL,buy,1e400,1", "quantity", "out of range: '1e400' (below 10^15, at most 10 decimal places)"),
    ("2024-01-02,AAPL,buy,1,0.00000000001", "price",
     "out of range: '0.00000000001' (below 10^15, at most 10 decimal places)"),
    ("2024-01-02,AAPL,buy,0,1", "quantity", "zero quantity"),
    ("2024-01-02,AAPL,buy,abc,1", "quantity", "not a number: 'abc'"),
    ("2024-01-02,AAPL,buy,1,-5", "price", "negative price -5"),
    ("2024-01-02,AAPL,hold,1,5", "side", "not a side: 'hold' (buy, sell, Bought, Sold, Buy to Open, Sell to Close...)"),
    ("2024-01-02,AAPL,buy,-1,5", "quantity", "a buy with a negative quantity -1"),
    ("2024-01-02,AAPL,,1,5", "side", "no side: map a side column or give sells a negative quantity"),
    ("2024-01-02,,buy,1,5", "symbol", "required"),
])
def test_bad_values_name_row_and_field(line, field, message):
    table = core.read_table(f"executed_at,symbol,side,quantity,price\n{line}\n".encode())
    mapping = {f: f for f in ("executed_at", "symbol", "side", "quantity", "price")}
    parsed = core.parse_rows(table, mapping, file_digest="0" * 64, now=NOW)
    assert parsed.rows == []
    assert [(i.row, i.field, i.message) for i in parsed.issues] == [(2, field, message)]


def test_side_words_and_row_types():
    assert [core.parse_side(w) for w in ("Bought", "SLD", "Buy to Open", "Sell to Close", "sell_short", "YOU BOUGHT X",
                                         "Reinvest Shares")] == ["buy", "sell", "buy", "sell", "sell", "buy", "buy"]
    assert [core.parse_kind(w) for w in ("FILL", "DIV", "CSD", "CSW", "INT", "FEE", "Qualified Dividend",
                                         "MoneyLink Transfer", "Credit Interest", "", "bogus")] == [
        "trade", "dividend", "deposit", "withdrawal", "interest", "fee", "dividend", "transfer", "interest",
        "trade", None]


def test_number_formats():
    assert [core.parse_number(t) for t in ("$1,234.50", "(12.34)", "-1,000", "+5", "", "--")] == [
        D("1234.50"), D("-12.34"), D("-1000"), D("5"), None, None]
    with pytest.raises(ValueError):
        core.parse_number("NaN")


# --- the service ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_good_file_books_lots_gains_and_cash(portfolio, stocks, system):
    imp = imported(portfolio, system, GOOD)
    assert (imp.status, imp.rows_total, imp.rows_booked, imp.report["outcome"], imp.report["issues"]) == (
        "succeeded", 5, 5, "imported", [])
    assert imp.report["message"] == "5 rows imported"
    with firm_scope(portfolio.firm_id):
        fills = list(Fill.objects.filter(portfolio=portfolio).order_by("seq"))
        # booked by time: the 03-01 sale before the 03-15 dividend, whatever the file order
        assert [(f.side, f.quantity, f.price, f.fees, f.source) for f in fills] == [
            ("buy", D(10), D(100), D("1.5"), "import"), ("buy", D(10), D(110), D(1), "import"),
            ("sell", D(15), D(120), D(1), "import")]
        assert fills[0].fill_id == f"imp:{core.digest(GOOD)}:3"
        # FIFO: 10 from the first lot (cost 1001.50), 5 from the second (1101 x 5/10 = 550.50);
        # proceeds 1800 - 1 = 1799 split 10:5
        gains = list(RealizedGain.objects.filter(portfolio=portfolio).order_by("id").values_list(
            "quantity", "proceeds", "cost_basis", "gain", "term"))
        assert gains == [(D(10), D("1199.33"), D("1001.50"), D("197.83"), "short"),
                         (D(5), D("599.67"), D("550.50"), D("49.17"), "short")]
        (lot,) = Lot.objects.filter(portfolio=portfolio).exclude(quantity=0)
        assert (lot.quantity, lot.cost) == (D(5), D("550.50"))
        # 10000 - 1001.50 - 1101 + 1799 + 2.40
        assert cash_balance(portfolio.pk) == D("9698.90")
        assert account_balance(portfolio.pk, "dividends") == D("-2.40")
        assert account_balance(portfolio.pk, "realized") == D("-247.00")
        event = AuditEvent.objects.filter(firm_id=portfolio.firm_id, action="portfolio.trades_imported").get()
        assert (event.after["rows"], event.after["booked"], event.after["sha256"]) == (5, 5, core.digest(GOOD))


@pytest.mark.django_db
def test_bad_rows_write_nothing_and_the_report_lists_every_problem(portfolio, stocks, system):
    content = GOOD + b"2024-04-01,NOPE,buy,1,10,,,,\n2024-04-02,AAPL,buy,1,-3,,,,\n"
    imp = imported(portfolio, system, content)
    assert imp.status == "failed" and imp.rows_booked == 0
    assert issues(imp) == [(7, "symbol", "UNKNOWN_SYMBOL"), (8, "price", "INVALID_VALUE")]
    assert imp.report["issues"][0]["message"] == "unknown symbol 'NOPE' (tick 'create missing instruments' to create it)"
    assert imp.report["message"] == ("2 of 7 rows have problems; nothing was written (untick 'all or nothing' to "
                                     "import the 5 good rows)")
    assert ledger(portfolio) == {"fills": 0, "entries": 0, "lots": 0, "gains": 0, "positions": 0}


@pytest.mark.django_db
def test_non_atomic_books_the_good_rows_and_reports_the_bad(portfolio, stocks, system):
    content = GOOD + b"2024-04-01,NOPE,buy,1,10,,,,\n"
    imp = imported(portfolio, system, content, all_or_nothing=False)
    assert (imp.status, imp.rows_booked, imp.report["outcome"], issues(imp)) == (
        "succeeded", 5, "partial", [(7, "symbol", "UNKNOWN_SYMBOL")])
    assert imp.report["message"] == "5 of 6 rows imported; 1 rejected"
    assert ledger(portfolio)["fills"] == 3
    with firm_scope(portfolio.firm_id):
        assert cash_balance(portfolio.pk) == D("9698.90")


@pytest.mark.django_db
def test_reimporting_the_same_file_is_refused_as_duplicate(portfolio, stocks, system):
    assert imported(portfolio, system, GOOD).status == "succeeded"
    again = imported(portfolio, system, GOOD)
    assert again.status == "failed"
    assert issues(again) == [(r, "fill_id", "DUPLICATE_FILL") for r in (2, 3, 4, 5, 6)]
    assert again.report["issues"][1]["message"] == f"fill id 'imp:{core.digest(GOOD)}:3' is already booked"
    assert ledger(portfolio)["fills"] == 3
    with firm_scope(portfolio.firm_id):
        assert cash_balance(portfolio.pk) == D("9698.90")


@pytest.mark.django_db
def test_duplicate_fill_ids_within_the_file(portfolio, stocks, system):
    content = b"time,symbol,side,qty,price,exec id\n2024-01-02,AAPL,buy,1,10,X1\n2024-01-03,AAPL,buy,1,10,X1\n"
    imp = imported(portfolio, system, content)
    assert issues(imp) == [(3, "fill_id", "DUPLICATE_FILL")]
    assert imp.report["issues"][0]["message"] == "fill id 'X1' also on row 2"
    assert ledger(portfolio)["fills"] == 0


@pytest.mark.django_db
def test_a_sale_beyond_the_position_is_reported_on_its_row_and_rolls_back(portfolio, stocks, system):
    content = b"executed_at,symbol,side,quantity,price\n2024-01-02,AAPL,buy,5,10\n2024-01-03,AAPL,sell,8,11\n"
    imp = imported(portfolio, system, content)
    assert (imp.status, issues(imp)) == ("failed", [(3, "quantity", "SHORT_NOT_ALLOWED")])
    assert imp.report["issues"][0]["message"] == (
        "Selling 8 AAPL exceeds the long position of 5; this portfolio does not allow short positions.")
    assert imp.report["message"] == "row 3 was refused when booking; nothing was written"
    assert ledger(portfolio) == {"fills": 0, "entries": 0, "lots": 0, "gains": 0, "positions": 0}


@pytest.mark.django_db
def test_a_fill_before_the_last_booked_one_is_refused_on_its_row(portfolio, stocks, system, book):
    book(portfolio, stocks["AAPL"], "buy", "1", "10", "2024-06-03T15:00:00")
    content = b"executed_at,symbol,side,quantity,price\n2024-06-04,MSFT,buy,1,10\n2024-05-01,AAPL,buy,1,10\n"
    imp = imported(portfolio, system, content, all_or_nothing=False)
    assert (imp.rows_booked, issues(imp)) == (1, [(3, "executed_at", "FILL_OUT_OF_ORDER")])
    assert "before the last booked fill" in imp.report["issues"][0]["message"]


@pytest.mark.django_db
def test_create_missing_instruments(portfolio, stocks, system):
    content = b"executed_at,symbol,side,quantity,price,asset_class\n2024-01-02,NEWCO,buy,3,7.5,equity\n"
    imp = imported(portfolio, system, content, create_missing=True)
    assert (imp.status, imp.report["instruments_created"]) == ("succeeded", ["NEWCO (equity)"])
    newco = Instrument.objects.get(symbol="NEWCO")
    with firm_scope(portfolio.firm_id):
        assert Position.objects.get(portfolio=portfolio, instrument=newco).quantity == D(3)


@pytest.mark.django_db
def test_created_instruments_are_rolled_back_with_a_failed_import(portfolio, stocks, system):
    content = (b"executed_at,symbol,side,quantity,price\n2024-01-02,NEWCO,buy,3,7.5\n"
               b"2024-01-03,NEWCO,sell,4,8\n")
    imp = imported(portfolio, system, content, create_missing=True)
    assert issues(imp) == [(3, "quantity", "SHORT_NOT_ALLOWED")]
    assert not Instrument.objects.filter(symbol="NEWCO").exists()


@pytest.mark.django_db
def test_file_and_mapping_errors_name_the_field_and_store_nothing(portfolio, system):
    with pytest.raises(DomainError) as exc:
        trade_import_create(portfolio=portfolio, filename="x.csv", content=b"", actor=system)
    assert exc.value.fields == {"file": ["the file is empty"]}
    with pytest.raises(DomainError) as exc:
        trade_import_create(portfolio=portfolio, filename="x.csv", content=b"a,b,c\n" + b"1,2,3\n" * 4_000_000,
                            actor=system)
    assert (exc.value.status_code, exc.value.fields) == (413, {"file": [MSG_FILE_TOO_LARGE]})
    with pytest.raises(DomainError) as exc:
        trade_import_create(portfolio=portfolio, filename="x.csv", content=GOOD, actor=system,
                            mapping={"executed_at": "when", "colour": "symbol"})
    assert exc.value.fields == {"mapping.executed_at": ["no column 'when' in the file"],
                                "mapping.colour": ["not a field we import"]}
    with firm_scope(portfolio.firm_id):
        assert TradeImport.objects.count() == 0


@pytest.mark.django_db
def test_preview_guesses_and_shows_first_rows():
    preview = trade_import_preview(content=GOOD, sample_rows=2)
    assert preview["format"] == "generic"
    assert preview["mapping"] == {f: f for f in ("executed_at", "symbol", "side", "quantity", "price", "commission",
                                                 "fees", "type", "amount")}
    assert preview["rows_total"] == 5
    assert preview["sample"][1] == {"row": 3, "values": {
        "executed_at": "2024-01-03 10:00", "symbol": "AAPL", "side": "Bought", "quantity": "10", "price": "100",
        "commission": "1", "fees": "0.5", "type": "", "amount": ""}}


ALPACA = b"""id,activity_type,transaction_time,type,price,qty,side,symbol,leaves_qty,order_id,cum_qty,order_status,date,net_amount,description
20240102000000000::a1,CSD,,,,,,,,,,,2024-01-02,5000,ACH deposit
20240103143000000::f1,FILL,2024-01-03T14:30:00Z,fill,100,20,buy,MSFT,0,o1,20,filled,,,
20240201143000000::f2,FILL,2024-02-01T14:30:00Z,partial_fill,90,5,sell_short,MSFT,15,o2,5,partially_filled,,,
20240215000000000::d1,DIV,,,,,,MSFT,,,,,2024-02-15,11.25,Cash DIV @ 0.75
20240301000000000::w1,CSW,,,,,,,,,,,2024-03-01,-9000,ACH withdrawal
"""


@pytest.mark.django_db
def test_alpaca_activities_with_cash_rows_non_atomic(portfolio, stocks, system):
    imp = imported(portfolio, system, ALPACA, all_or_nothing=False)
    # the withdrawal exceeds the cash: 5000 - 2000 + 450 + 11.25 = 3461.25
    assert (imp.status, imp.rows_booked, issues(imp)) == ("succeeded", 4, [(6, "amount", "INSUFFICIENT_CASH")])
    with firm_scope(portfolio.firm_id):
        assert cash_balance(portfolio.pk) == D("3461.25")
        assert Position.objects.get(portfolio=portfolio).quantity == D(15)
        # FIFO: 5 of the 20 bought at 100 sold at 90: a loss of 50
        assert list(RealizedGain.objects.filter(portfolio=portfolio).values_list("gain", flat=True)) == [D(-50)]
        entry = JournalEntry.objects.get(portfolio=portfolio, kind="dividend")
        assert (entry.idempotency_key, entry.memo) == ("20240215000000000::d1", "Cash DIV @ 0.75")
        assert Fill.objects.get(portfolio=portfolio, side="buy").fill_id == "20240103143000000::f1"


@pytest.mark.django_db(transaction=True)
def test_a_run_another_worker_holds_is_left_alone(firm_a, stocks, system):
    import threading

    from django.db import connection

    from apps.portfolios import services
    from apps.portfolios.trade_import import RUN_LOCK_SPACE, run_import

    portfolio = services.portfolio_create(firm_id=firm_a.firm.pk, name="Main", actor=system)
    imp = trade_import_create(portfolio=portfolio, filename="h.csv", content=GOOD, actor=system, enqueue=False)
    held, release = threading.Event(), threading.Event()

    def other_worker():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", [RUN_LOCK_SPACE, imp.pk])
            held.set()
            release.wait(10)
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_SPACE, imp.pk])
        connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert held.wait(10)
        assert run_import(firm_id=firm_a.firm.pk, import_id=imp.pk) == {"import": imp.pk, "status": "running"}
        assert ledger(portfolio)["fills"] == 0
    finally:
        release.set()
        thread.join()
    assert run_import(firm_id=firm_a.firm.pk, import_id=imp.pk)["status"] == "succeeded"
    assert ledger(portfolio)["fills"] == 3
