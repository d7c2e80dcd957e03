"""The trade-import pages: upload -> mapping form with the guesses -> progress polled with HTMX ->
the report of rows and messages; who sees the forms; another firm's portfolio or import is 404."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.tenancy import firm_scope
from apps.portfolios import services
from apps.portfolios.models import Fill, TradeImport
from apps.portfolios.trade_import import run_import
from tests.portfolios.test_trade_import import GOOD

pytestmark = pytest.mark.django_db

IB = (b"ClientAccountID,AssetClass,Symbol,DateTime,Quantity,TradePrice,IBCommission,Buy/Sell,TradeID\n"
      b"U1,STK,AAPL,20240105;093015,10,100,-1,BUY,T1\n"
      b"U1,STK,AAPL,20240106;093015,-20,101,-1,SELL,T2\n")


def imports(portfolio):
    with firm_scope(portfolio.firm_id):
        return list(TradeImport.objects.filter(portfolio=portfolio).order_by("pk"))


def mapping_post(**overrides):
    data = {f"map_{k}": v for k, v in {
        "executed_at": "DateTime", "symbol": "Symbol", "side": "Buy/Sell", "quantity": "Quantity",
        "price": "TradePrice", "commission": "IBCommission", "fill_id": "TradeID", "asset_class": "AssetClass",
    }.items()}
    data.update(overrides)
    return data


def test_upload_map_poll_report(portfolio, stocks, firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("admin"))
    page = client.get(f"/portfolios/{portfolio.pk}/import/")
    assert page.status_code == 200 and b'id="import-form"' in page.content

    response = client.post(f"/portfolios/{portfolio.pk}/import/",
                           {"file": SimpleUploadedFile("ib.csv", IB, content_type="text/csv")})
    (imp,) = imports(portfolio)
    assert response.status_code == 302 and response["Location"] == f"/portfolios/imports/{imp.pk}/"

    mapping_page = client.get(f"/portfolios/imports/{imp.pk}/").content.decode()
    assert 'id="mapping-form"' in mapping_page
    assert "format: Interactive Brokers Flex trades" in mapping_page
    # the guesses are preselected
    assert '<option value="TradePrice" selected>TradePrice</option>' in mapping_page
    assert '<option value="IBCommission" selected>IBCommission</option>' in mapping_page
    assert "<td>20240105;093015</td>" in mapping_page  # the first rows of the file

    # a required field left out is a form error on it, and nothing starts
    bad = client.post(f"/portfolios/imports/{imp.pk}/", mapping_post(map_executed_at=""))
    assert bad.status_code == 400 and imports(portfolio)[0].report["stage"] == "mapping"

    confirmed = client.post(f"/portfolios/imports/{imp.pk}/", mapping_post(all_or_nothing="on"))
    assert confirmed.status_code == 302
    waiting = client.get(f"/portfolios/imports/{imp.pk}/").content.decode()
    assert f'hx-get="/portfolios/imports/{imp.pk}/" hx-trigger="every 1s" hx-swap="outerHTML"' in waiting
    assert '<progress id="import-progress" max="2" value="0">' in waiting

    run_import(firm_id=firm_a.firm.pk, import_id=imp.pk)
    html = client.get(f"/portfolios/imports/{imp.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html and "hx-trigger" not in html
    assert 'data-status="failed"' in html
    assert "Rows 2 · booked 0 · rejected 1" in html
    assert '<tr><td>3</td><td class="mono">quantity</td><td class="mono">SHORT_NOT_ALLOWED</td>' in html
    assert "row 3 was refused when booking; nothing was written" in html
    with firm_scope(firm_a.firm.pk):
        assert not Fill.objects.filter(portfolio=portfolio).exists()


def test_a_good_file_through_the_pages(portfolio, stocks, firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    client.post(f"/portfolios/{portfolio.pk}/import/",
                {"file": SimpleUploadedFile("h.csv", GOOD, content_type="text/csv")})
    (imp,) = imports(portfolio)
    data = {f"map_{f}": f for f in ("executed_at", "symbol", "side", "quantity", "price", "commission", "fees",
                                     "type", "amount")}
    assert client.post(f"/portfolios/imports/{imp.pk}/", {**data, "all_or_nothing": "on"}).status_code == 302
    run_import(firm_id=firm_a.firm.pk, import_id=imp.pk)
    html = client.get(f"/portfolios/imports/{imp.pk}/").content.decode()
    assert 'data-status="succeeded"' in html and "5 rows imported" in html
    listing = client.get(f"/portfolios/{portfolio.pk}/import/").content.decode()
    assert f'<tr id="import-{imp.pk}">' in listing and "<td>h.csv</td>" in listing


def test_bad_upload_is_shown_on_the_form(portfolio, firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("admin"))
    response = client.post(f"/portfolios/{portfolio.pk}/import/",
                           {"file": SimpleUploadedFile("x.csv", b"just one line\n", content_type="text/csv")})
    assert response.status_code == 400
    assert "no header row found: the file needs a row of column names" in response.content.decode()
    assert imports(portfolio) == []


def test_viewers_see_imports_but_no_forms(portfolio, firm_a, verified_client_for, system):
    from apps.portfolios.trade_import import trade_import_create

    imp = trade_import_create(portfolio=portfolio, filename="w.csv", content=IB, actor=system, start=False)
    client = verified_client_for(firm_a.member("analyst"))
    page = client.get(f"/portfolios/{portfolio.pk}/import/").content.decode()
    assert 'id="import-form"' not in page and 'id="import-read-only"' in page
    detail = client.get(f"/portfolios/imports/{imp.pk}/").content.decode()
    assert 'id="mapping-form"' not in detail and 'id="import-waiting"' in detail
    assert client.post(f"/portfolios/{portfolio.pk}/import/",
                       {"file": SimpleUploadedFile("h.csv", GOOD)}).status_code == 403
    assert client.post(f"/portfolios/imports/{imp.pk}/", mapping_post()).status_code == 403
    assert imports(portfolio)[0].report["stage"] == "mapping" and len(imports(portfolio)) == 1


def test_another_firms_portfolio_and_import_are_404(firm_a, firm_b, verified_client_for, system):
    theirs = services.portfolio_create(firm_id=firm_b.firm.pk, name="Theirs", actor=system)
    from apps.portfolios.trade_import import trade_import_create

    their_import = trade_import_create(portfolio=theirs, filename="b.csv", content=IB, actor=system, start=False)
    client = verified_client_for(firm_a.member("owner"))
    assert client.get(f"/portfolios/{theirs.pk}/import/").status_code == 404
    assert client.post(f"/portfolios/{theirs.pk}/import/",
                       {"file": SimpleUploadedFile("h.csv", GOOD)}).status_code == 404
    assert client.get(f"/portfolios/imports/{their_import.pk}/").status_code == 404
    assert client.post(f"/portfolios/imports/{their_import.pk}/", mapping_post()).status_code == 404
    assert imports(theirs)[0].report["stage"] == "mapping"
