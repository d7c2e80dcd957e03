"""Trade-import API: preview, upload (202), the report; who may; another firm's objects are 404;
and one import end to end through a real Celery worker."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.grants import object_grant
from apps.core.tenancy import firm_scope
from apps.portfolios import services
from apps.portfolios.models import Fill, Lot, Position, TradeImport
from apps.portfolios.selectors import MANAGE, cash_balance
from apps.portfolios.trade_import import run_import
from apps.portfolios.trade_import_core import digest
from tests.celery_support import wait_for
from tests.portfolios.test_trade_import import GOOD

SCHWAB = (b'"Date","Action","Symbol","Description","Quantity","Price","Fees & Comm","Amount"\n'
          b'"01/05/2024","Buy","AAPL","APPLE INC","10","$185.50","$0.65","-$1,855.65"\n'
          b'"01/08/2024","MoneyLink Transfer","","Tfr BANK","","","","$5,000.00"\n')
D = Decimal


def upload(content=GOOD, name="history.csv", **fields):
    return {"file": SimpleUploadedFile(name, content, content_type="text/csv"), **fields}


def imports_of(portfolio):
    with firm_scope(portfolio.firm_id):
        return list(TradeImport.objects.filter(portfolio=portfolio).order_by("pk"))


@pytest.fixture
def admin_api(firm_a, api_client_for):
    return api_client_for(firm_a.member("admin"))


@pytest.mark.django_db
def test_preview_answers_headers_guess_and_first_rows_and_stores_nothing(portfolio, admin_api):
    response = admin_api.post(f"/api/v1/portfolios/{portfolio.pk}/imports/preview/", upload(SCHWAB),
                              format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["format"] == "Schwab transactions"
    assert body["mapping"]["executed_at"] == "Date" and body["mapping"]["fees"] == "Fees & Comm"
    assert body["rows_total"] == 2 and body["sha256"] == digest(SCHWAB)
    assert body["sample"][0] == {"row": 2, "values": {
        "Date": "01/05/2024", "Action": "Buy", "Symbol": "AAPL", "Description": "APPLE INC", "Quantity": "10",
        "Price": "$185.50", "Fees & Comm": "$0.65", "Amount": "-$1,855.65"}}
    assert imports_of(portfolio) == []


@pytest.mark.django_db
def test_upload_is_202_then_the_run_books_and_the_report_shows(portfolio, stocks, firm_a, admin_api):
    response = admin_api.post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(SCHWAB, name="schwab.csv"),
                              format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["rows_total"], body["rows_done"], body["report"]["stage"]) == ("pending", 2, 0,
                                                                                              "queued")
    assert body["mapping"]["side"] == "Action" and "text" not in json.dumps(body["report"])
    assert body["created_by"] == firm_a.member("admin").user.email

    run_import(firm_id=firm_a.firm.pk, import_id=body["id"])
    detail = admin_api.get(f"/api/v1/trade-imports/{body['id']}/").json()
    assert (detail["status"], detail["rows_booked"], detail["rows_done"]) == ("succeeded", 2, 2)
    assert detail["report"]["outcome"] == "imported" and detail["report"]["issues"] == []
    with firm_scope(firm_a.firm.pk):
        (lot,) = Lot.objects.filter(portfolio=portfolio)
        assert (lot.quantity, lot.cost) == (D(10), D("1855.65"))  # 10 x 185.50 + 0.65
        assert cash_balance(portfolio.pk) == D("3144.35")  # 5000 - 1855.65

    listed = admin_api.get(f"/api/v1/portfolios/{portfolio.pk}/imports/").json()
    assert [r["id"] for r in listed["results"]] == [body["id"]] and "report" not in listed["results"][0]


@pytest.mark.django_db
def test_a_bad_row_is_reported_by_row_and_field_and_nothing_is_written(portfolio, stocks, firm_a, admin_api):
    bad = GOOD + b"2024-04-02,AAPL,buy,1,-3,,,,\n"
    body = admin_api.post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(bad), format="multipart").json()
    run_import(firm_id=firm_a.firm.pk, import_id=body["id"])
    detail = admin_api.get(f"/api/v1/trade-imports/{body['id']}/").json()
    assert detail["status"] == "failed"
    assert detail["report"]["issues"] == [{"row": 7, "field": "price", "code": "INVALID_VALUE",
                                           "message": "negative price -3"}]
    with firm_scope(firm_a.firm.pk):
        assert not Fill.objects.filter(portfolio=portfolio).exists()


@pytest.mark.django_db
def test_mapping_and_options_from_the_form(portfolio, stocks, firm_a, admin_api):
    content = b"When,Ticker,Qty,Px\n2024-01-02,AAPL,-0,10\n2024-01-03,AAPL,5,10\n"
    mapping = {"executed_at": "When", "symbol": "Ticker", "quantity": "Qty", "price": "Px"}
    bad = admin_api.post(f"/api/v1/portfolios/{portfolio.pk}/imports/",
                         upload(content, mapping=json.dumps({**mapping, "price": "Price"})), format="multipart")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"mapping.price": ["no column 'Price' in the file"]}
    not_json = admin_api.post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(content, mapping="{"),
                              format="multipart")
    assert not_json.json()["error"]["fields"] == {"mapping": ["Not JSON."]}
    assert imports_of(portfolio) == []
    body = admin_api.post(f"/api/v1/portfolios/{portfolio.pk}/imports/",
                          upload(content, mapping=json.dumps(mapping), all_or_nothing="false"),
                          format="multipart").json()
    run_import(firm_id=firm_a.firm.pk, import_id=body["id"])
    detail = admin_api.get(f"/api/v1/trade-imports/{body['id']}/").json()
    # row 2: zero quantity; row 3: no side column and a positive quantity
    assert [(i["row"], i["field"]) for i in detail["report"]["issues"]] == [(2, "quantity"), (3, "side")]
    assert (detail["status"], detail["report"]["outcome"]) == ("failed", "rejected")


@pytest.mark.django_db
def test_file_over_20_mb_is_413(portfolio, admin_api):
    big = b"a,b,c\n" + b"1,2,3\n" * 3_500_001
    response = admin_api.post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(big), format="multipart")
    assert response.status_code == 413
    assert response.json()["error"]["fields"] == {"file": ["the file is larger than 20 MB"]}
    assert imports_of(portfolio) == []


@pytest.mark.django_db
def test_who_may_import(portfolio, stocks, firm_a, api_client_for, system):
    for role in ("analyst", "trader", "compliance"):
        client = api_client_for(firm_a.member(role))
        assert client.get(f"/api/v1/portfolios/{portfolio.pk}/imports/").status_code == 200
        response = client.post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(), format="multipart")
        assert response.status_code == 403, role
        assert client.post(f"/api/v1/portfolios/{portfolio.pk}/imports/preview/", upload(),
                           format="multipart").status_code == 403
    assert imports_of(portfolio) == []
    # a trader with the manage grant on this portfolio may
    trader = firm_a.member("trader")
    object_grant(perm=MANAGE, user=trader.user, obj=portfolio, actor=system)
    response = api_client_for(trader).post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(),
                                           format="multipart")
    assert response.status_code == 202
    # the token needs the admin scope
    read_trade = api_client_for(firm_a.member("owner"), scopes=("read", "trade"))
    assert read_trade.post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(),
                           format="multipart").status_code == 403
    # a restricted portfolio is invisible to an analyst without a grant
    hidden = services.portfolio_create(firm_id=firm_a.firm.pk, name="Hidden", actor=system, restricted=True)
    assert api_client_for(firm_a.member("analyst")).get(f"/api/v1/portfolios/{hidden.pk}/imports/").status_code == 404


@pytest.mark.django_db
def test_another_firms_portfolio_and_import_are_404_with_no_side_effect(firm_a, firm_b, api_client_for, system):
    theirs = services.portfolio_create(firm_id=firm_b.firm.pk, name="Theirs", actor=system)
    with firm_scope(firm_b.firm.pk):
        their_import = TradeImport.objects.create(firm_id=firm_b.firm.pk, portfolio=theirs, filename="b.csv")
    client = api_client_for(firm_a.member("owner"))
    assert client.get(f"/api/v1/portfolios/{theirs.pk}/imports/").status_code == 404
    assert client.post(f"/api/v1/portfolios/{theirs.pk}/imports/", upload(), format="multipart").status_code == 404
    assert client.post(f"/api/v1/portfolios/{theirs.pk}/imports/preview/", upload(),
                       format="multipart").status_code == 404
    assert client.get(f"/api/v1/trade-imports/{their_import.pk}/").status_code == 404
    assert imports_of(theirs) == [their_import]


@pytest.mark.django_db(transaction=True)
def test_an_upload_is_imported_by_a_celery_worker(celery_worker, firm_a, api_client_for, system):
    from apps.marketdata.models import Instrument

    Instrument.objects.create(symbol="AAPL", asset_class="equity", exchange="NASDAQ", shortable=True)
    portfolio = services.portfolio_create(firm_id=firm_a.firm.pk, name="Worker", actor=system)
    client = api_client_for(firm_a.member("owner"))
    response = client.post(f"/api/v1/portfolios/{portfolio.pk}/imports/", upload(), format="multipart")
    assert response.status_code == 202
    import_id = response.json()["id"]
    done = wait_for(lambda: (lambda b: b if b["status"] in ("succeeded", "failed") else None)(
        client.get(f"/api/v1/trade-imports/{import_id}/").json()), timeout=60)
    assert (done["status"], done["rows_booked"], done["rows_done"]) == ("succeeded", 5, 5), celery_worker.log()
    with firm_scope(firm_a.firm.pk):
        position = Position.objects.get(portfolio=portfolio)
        assert (position.quantity, position.cost) == (D(5), D("550.50"))
        assert cash_balance(portfolio.pk) == D("9698.90")
