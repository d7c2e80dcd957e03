"""The portfolio API: tax entities, portfolios, positions, lots, realized gains, journal, cash and grants,
on a history with hand-computed numbers."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.tenancy import firm_scope, unscoped
from apps.portfolios import services
from apps.portfolios.models import JournalEntry, Portfolio, TaxEntity

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def history(firm_a, stocks, portfolio, book, system):
    """Main (FIFO) in firm A:
    2022-01-03 deposit 30,000; buy 10 XYZ @ 50 (cost 500)
    2024-01-03 buy 100 AAPL @ 150, fee 1 (cost 15,001)
    2024-01-05 sell 10 XYZ @ 60 -> long-term gain 100 (held > 1 year)
    2024-01-10 buy 10 MSFT @ 300 (cost 3,000)
    2024-02-01 buy 50 AAPL @ 160 (cost 8,000)
    2024-02-15 sell 10 MSFT @ 280 -> loss -200 ...
    2024-03-01 buy 10 MSFT @ 285 -> ... washed: 200 disallowed, added to the new lot's basis (2,850 + 200)
    2024-03-04 sell 120 AAPL @ 170 -> FIFO: 100 from lot 1 (17,000 - 15,001 = 1,999), 20 from lot 2 (3,400 - 3,200 = 200)
    2024-03-05 fee 25.50
    Cash: 30,000 - 500 - 15,001 + 600 - 3,000 - 8,000 + 2,800 - 2,850 + 20,400 - 25.50 = 24,423.50
    """
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("30000"), actor=system, on=date(2022, 1, 3))
    book(portfolio, stocks["XYZ"], "buy", "10", "50", "2022-01-03", fill_id="X1")
    book(portfolio, stocks["AAPL"], "buy", "100", "150", "2024-01-03", fill_id="A1", fees="1")
    book(portfolio, stocks["XYZ"], "sell", "10", "60", "2024-01-05", fill_id="X2")
    book(portfolio, stocks["MSFT"], "buy", "10", "300", "2024-01-10", fill_id="M1")
    book(portfolio, stocks["AAPL"], "buy", "50", "160", "2024-02-01", fill_id="A2")
    book(portfolio, stocks["MSFT"], "sell", "10", "280", "2024-02-15", fill_id="M2")
    book(portfolio, stocks["MSFT"], "buy", "10", "285", "2024-03-01", fill_id="M3")
    book(portfolio, stocks["AAPL"], "sell", "120", "170", "2024-03-04", fill_id="A3")
    services.cash_post(portfolio=portfolio, kind="fee", amount=D("25.50"), actor=system, on=date(2024, 3, 5),
                       memo="custody")
    return portfolio


def url(portfolio, tail=""):
    return f"/api/v1/portfolios/{portfolio.pk}/{tail}"


def test_detail_shows_settings_cash_and_permissions(firm_a, history, api_client_for):
    body = api_client_for(firm_a.member("trader")).get(url(history)).json()
    assert body["name"] == "Main"
    assert body["cost_basis_method"] == "fifo"
    assert body["tax_entity"]["name"] == "Firm"
    assert body["cash"] == "24423.5"  # exact decimal strings, without the ledger's trailing zeros
    assert body["settled_cash"] == "24423.5"
    assert body["permissions"] == ["view", "trade"]
    owner = api_client_for(firm_a.member("owner")).get(url(history)).json()
    assert owner["permissions"] == ["view", "trade", "manage"]


def test_settled_cash_excludes_a_trade_that_settles_tomorrow(firm_a, portfolio, stocks, book, system, api_client_for):
    services.cash_post(portfolio=portfolio, kind="deposit", amount=D("1000"), actor=system,
                       on=timezone.localdate() - timedelta(days=10))
    book(portfolio, stocks["SPY"], "buy", "2", "400", timezone.now() - timedelta(minutes=1), fill_id="S1")
    body = api_client_for(firm_a.member("analyst")).get(url(portfolio)).json()
    assert D(body["cash"]) == D("200")  # 1,000 - 800
    assert D(body["settled_cash"]) == D("1000")  # the buy settles T+1


def test_positions(firm_a, history, api_client_for):
    body = api_client_for(firm_a.member("analyst")).get(url(history, "positions/")).json()
    assert body["count"] == 2  # XYZ is closed
    rows = {r["symbol"]: r for r in body["results"]}
    assert D(rows["AAPL"]["quantity"]) == 30
    assert rows["AAPL"]["cost"] == "4800"  # 30 x 160 left of lot 2
    assert D(rows["AAPL"]["realized"]) == D("2199")
    assert D(rows["MSFT"]["quantity"]) == 10
    assert D(rows["MSFT"]["cost"]) == D("2850")


def test_lots_open_closed_all_and_symbol(firm_a, history, api_client_for):
    client = api_client_for(firm_a.member("analyst"))
    open_lots = client.get(url(history, "lots/")).json()
    assert [(r["lot_id"], D(r["quantity"])) for r in open_lots["results"]] == [("A2", 30), ("M3", 10)]
    msft = open_lots["results"][1]
    assert D(msft["cost"]) == D("2850") and D(msft["basis_adjustment"]) == D("200") and D(msft["basis"]) == D("3050")
    # the washed lot's holding period (2024-01-10 .. 2024-02-15, 36 days) is added: 2024-03-01 - 36 days
    assert msft["holding_start"] == "2024-01-25"
    closed = client.get(url(history, "lots/"), {"status": "closed"}).json()
    assert sorted(r["lot_id"] for r in closed["results"]) == ["A1", "M1", "X1"]
    assert client.get(url(history, "lots/"), {"status": "all"}).json()["count"] == 5
    only = client.get(url(history, "lots/"), {"status": "all", "symbol": "aapl"}).json()
    assert [r["lot_id"] for r in only["results"]] == ["A1", "A2"]


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "shut"}, "status"), ({"symbol": "A B"}, "symbol"),
])
def test_lots_bad_params_are_400_naming_them(firm_a, history, api_client_for, params, field):
    response = api_client_for(firm_a.member("analyst")).get(url(history, "lots/"), params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_realized_gains_with_form_8949_totals(firm_a, history, api_client_for):
    client = api_client_for(firm_a.member("compliance"))
    body = client.get(url(history, "realized-gains/"), {"year": "2024"}).json()
    assert body["count"] == 4
    by_lot = {r["lot_id"]: r for r in body["results"]}
    assert D(by_lot["M1"]["gain"]) == D("-200")
    assert by_lot["M1"]["wash_code"] == "W"
    assert D(by_lot["M1"]["disallowed"]) == D("200") and D(by_lot["M1"]["adjusted_gain"]) == 0
    assert by_lot["X1"]["term"] == "long"
    short, long_, total = body["totals"]["short"], body["totals"]["long"], body["totals"]["all"]
    assert short["count"] == 3
    assert (D(short["proceeds"]), D(short["cost_basis"]), D(short["gain"])) == (D("23200"), D("21201"), D("1999"))
    assert (D(short["disallowed"]), D(short["adjusted_gain"])) == (D("200"), D("2199"))
    assert (long_["count"], D(long_["proceeds"]), D(long_["cost_basis"]), D(long_["gain"])) == (1, 600, 500, 100)
    assert D(total["adjusted_gain"]) == D("2299")
    only_long = client.get(url(history, "realized-gains/"), {"year": "2024", "term": "long"}).json()
    assert [r["lot_id"] for r in only_long["results"]] == ["X1"]
    assert only_long["totals"]["short"]["count"] == 0
    assert client.get(url(history, "realized-gains/"), {"year": "2023"}).json()["count"] == 0


@pytest.mark.parametrize(("params", "field"), [
    ({"year": "20x4"}, "year"), ({"year": "99999"}, "year"), ({"term": "medium"}, "term"),
])
def test_realized_gains_bad_params(firm_a, history, api_client_for, params, field):
    response = api_client_for(firm_a.member("analyst")).get(url(history, "realized-gains/"), params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_journal_entries_with_lines_and_filters(firm_a, history, api_client_for):
    client = api_client_for(firm_a.member("analyst"))
    body = client.get(url(history, "journal/")).json()
    assert body["count"] == 10  # 2 cash postings + 8 trades
    fee = body["results"][0]  # newest first
    assert (fee["kind"], fee["trade_date"], fee["memo"]) == ("fee", "2024-03-05", "custody")
    assert {(line["account"], D(line["amount"])) for line in fee["lines"]} == {
        ("cash", D("-25.50")), ("fees", D("25.50"))}
    for entry in body["results"]:
        assert sum(D(line["amount"]) for line in entry["lines"]) == 0
    trades = client.get(url(history, "journal/"), {"kind": "trade", "start": "2024-02-01", "end": "2024-03-01"}).json()
    assert [e["fill_id"] for e in trades["results"]] == ["M3", "M2", "A2"]
    page = client.get(url(history, "journal/"), {"page_size": "3", "page": "2"}).json()
    assert len(page["results"]) == 3 and page["next"] and page["previous"]


@pytest.mark.parametrize(("params", "field"), [
    ({"kind": "gift"}, "kind"), ({"start": "2024-13-01"}, "start"), ({"end": "yesterday"}, "end"),
    ({"start": "2024-03-01", "end": "2024-02-01"}, "start"),
])
def test_journal_bad_params(firm_a, history, api_client_for, params, field):
    response = api_client_for(firm_a.member("analyst")).get(url(history, "journal/"), params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_cash_post_and_idempotency(firm_a, portfolio, api_client_for):
    client = api_client_for(firm_a.member("admin"))
    body = {"kind": "deposit", "amount": "1000.25", "on": "2024-05-01"}
    first = client.post(url(portfolio, "cash/"), body, format="json", HTTP_IDEMPOTENCY_KEY="wire-77")
    assert first.status_code == 201, first.content
    assert first.json()["created"] is True and D(first.json()["cash"]) == D("1000.25")
    entry = first.json()["entry"]
    assert (entry["kind"], entry["trade_date"], entry["idempotency_key"]) == ("deposit", "2024-05-01", "wire-77")
    again = client.post(url(portfolio, "cash/"), {**body, "idempotency_key": "wire-77"}, format="json")
    assert again.status_code == 200
    assert again.json()["created"] is False and again.json()["entry"]["id"] == entry["id"]
    out = client.post(url(portfolio, "cash/"), {"kind": "withdrawal", "amount": "400"}, format="json")
    assert out.status_code == 201 and D(out.json()["cash"]) == D("600.25")
    with firm_scope(firm_a.firm.pk):
        assert JournalEntry.objects.filter(portfolio=portfolio).count() == 2
        assert AuditEvent.objects.filter(action="portfolio.cash_deposit").count() == 1


@pytest.mark.parametrize(("body", "field", "status"), [
    ({"kind": "deposit", "amount": "0"}, "amount", 400),
    ({"kind": "deposit", "amount": "-5"}, "amount", 400),
    ({"kind": "gift", "amount": "5"}, "kind", 400),
    ({"kind": "adjustment", "amount": "5"}, "memo", 400),
    ({"kind": "withdrawal", "amount": "1"}, "amount", 400),  # nothing deposited
    ({"kind": "deposit", "amount": "5", "on": "2999-01-01"}, "on", 400),
    ({"kind": "deposit", "amount": "5", "extra": 1}, "extra", 400),
])
def test_cash_bad_input_writes_nothing(firm_a, portfolio, api_client_for, body, field, status):
    response = api_client_for(firm_a.member("owner")).post(url(portfolio, "cash/"), body, format="json")
    assert response.status_code == status, response.content
    assert field in response.json()["error"]["fields"]
    with firm_scope(firm_a.firm.pk):
        assert not JournalEntry.objects.filter(portfolio=portfolio).exists()


def test_tax_entities_and_portfolio_create(firm_a, stocks, api_client_for):
    owner = api_client_for(firm_a.member("owner"))
    made = owner.post("/api/v1/tax-entities/", {"name": "Family trust"}, format="json")
    assert made.status_code == 201
    assert owner.post("/api/v1/tax-entities/", {"name": "Family trust"}, format="json").status_code == 409
    response = owner.post("/api/v1/portfolios/", {
        "name": "Trust growth", "mode": "live", "cost_basis_method": "hifo", "allow_short": True,
        "benchmark": "spy", "tax_entity": made.json()["id"], "restricted": True}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["mode"], body["cost_basis_method"], body["benchmark"], body["restricted"]) == (
        "live", "hifo", "SPY", True)
    assert body["tax_entity"]["name"] == "Family trust" and D(body["cash"]) == 0
    plain = owner.post("/api/v1/portfolios/", {"name": "Plain"}, format="json").json()
    assert plain["tax_entity"]["name"] == "Firm" and plain["cost_basis_method"] == "fifo"
    names = [e["name"] for e in owner.get("/api/v1/tax-entities/").json()["results"]]
    assert names == ["Family trust", "Firm"]


@pytest.mark.parametrize(("body", "field", "status"), [
    ({"name": "X", "base_currency": "EUR"}, "base_currency", 400),
    ({"name": "X", "benchmark": "NOPE"}, "benchmark", 400),
    ({"name": "X", "mode": "demo"}, "mode", 400),
    ({"name": "X", "cost_basis_method": "random"}, "cost_basis_method", 400),
    ({"name": "  "}, "name", 400),
    ({"name": "Main"}, "name", 409),
])
def test_portfolio_create_refusals(firm_a, portfolio, stocks, api_client_for, body, field, status):
    response = api_client_for(firm_a.member("admin")).post("/api/v1/portfolios/", body, format="json")
    assert response.status_code == status, response.content
    assert field in response.json()["error"]["fields"]
    with firm_scope(firm_a.firm.pk):
        assert Portfolio.objects.count() == 1


def test_portfolio_create_refuses_another_firms_tax_entity(firm_a, firm_b, api_client_for):
    theirs = services.tax_entity_create(firm_id=firm_b.firm.pk, name="beta_secret entity",
                                        actor=services.Actor.system("t"))
    response = api_client_for(firm_a.member("owner")).post(
        "/api/v1/portfolios/", {"name": "X", "tax_entity": theirs.pk}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["tax_entity"]
    with unscoped():
        assert not Portfolio.objects.filter(firm=firm_a.firm).exists()


def test_traders_cannot_create_portfolios_or_tax_entities(firm_a, api_client_for):
    trader = api_client_for(firm_a.member("trader"))
    assert trader.post("/api/v1/portfolios/", {"name": "Mine"}, format="json").status_code == 403
    assert trader.post("/api/v1/tax-entities/", {"name": "Me"}, format="json").status_code == 403
    with unscoped():
        assert not TaxEntity.objects.filter(firm=firm_a.firm, name="Me").exists()


def test_update_and_frozen_method_once_fills_exist(firm_a, history, stocks, api_client_for):
    owner = api_client_for(firm_a.member("owner"))
    response = owner.patch(url(history), {"name": "Main book", "benchmark": "SPY"}, format="json")
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["benchmark"]) == ("Main book", "SPY")
    frozen = owner.patch(url(history), {"cost_basis_method": "lifo"}, format="json")
    assert frozen.status_code == 409
    assert frozen.json()["error"]["code"] == "PORTFOLIO_HAS_FILLS"
    assert list(frozen.json()["error"]["fields"]) == ["cost_basis_method"]
    assert owner.patch(url(history), {}, format="json").status_code == 400
    cleared = owner.patch(url(history), {"benchmark": None}, format="json")
    assert cleared.json()["benchmark"] is None
    history.refresh_from_db()
    assert (history.name, history.cost_basis_method, history.benchmark_id) == ("Main book", "fifo", None)


def test_scopes_reads_need_read_and_writes_need_admin(firm_a, portfolio, api_client_for):
    trade_only = api_client_for(firm_a.member("owner"), scopes=("trade",))
    assert trade_only.get(url(portfolio)).status_code == 403
    read_trade = api_client_for(firm_a.member("owner"), scopes=("read", "trade"))
    assert read_trade.get(url(portfolio)).status_code == 200
    response = read_trade.post(url(portfolio, "cash/"), {"kind": "deposit", "amount": "5"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This token lacks the 'admin' scope."
    assert read_trade.patch(url(portfolio), {"name": "Z"}, format="json").status_code == 403
