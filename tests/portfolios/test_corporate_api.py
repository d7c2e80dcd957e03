"""Corporate actions over the API: roles, validation, apply, import, isolation."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.audit.services import Actor
from apps.core.tenancy import unscoped
from apps.portfolios import corporate
from apps.portfolios.models import CorporateAction, Lot, Position

D = Decimal
BASE = "/api/v1/corporate-actions/"
SPLIT = {"kind": "split", "symbol": "AAPL", "ex_date": "2025-06-02", "ratio_from": "1", "ratio_to": "2"}


@pytest.mark.django_db
def test_admin_creates_and_applies_a_split_members_read(firm_a, portfolio, stocks, book, api_client_for):
    book(portfolio, stocks["AAPL"], "buy", "100", "50", "2025-05-01", fill_id="B1")
    admin = api_client_for(firm_a.member("admin"))
    created = admin.post(BASE, SPLIT, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["ratio_to"] == "2" and body["reference"] == "split:AAPL:2025-06-02" and body["applications"] == []
    applied = admin.post(f"{BASE}{body['id']}/apply/", {}, format="json")
    assert applied.status_code == 200, applied.json()
    assert applied.json()["applied"] == 1
    [application] = applied.json()["action"]["applications"]
    assert application["portfolio"] == portfolio.pk and application["summary"]["quantity_after"] == "200"
    with unscoped():
        assert Lot.objects.get(lot_id="B1").quantity == 200 and Lot.objects.get(lot_id="B1").cost == D(5000)
    again = admin.post(f"{BASE}{body['id']}/apply/", {}, format="json")
    assert again.status_code == 200 and again.json()["applied"] == 0
    analyst = api_client_for(firm_a.member("analyst"), scopes=("read",))
    listed = analyst.get(BASE)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()["results"]] == [body["id"]]
    assert analyst.get(f"{BASE}{body['id']}/").json()["applied_at"] is not None
    assert analyst.get(BASE, {"kind": "cash_dividend"}).json()["count"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_non_admins_cannot_write(firm_a, stocks, api_client_for, role):
    response = api_client_for(firm_a.member(role)).post(BASE, SPLIT, format="json")
    assert response.status_code == 403
    with unscoped():
        assert not CorporateAction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("change, field", [
    ({"ratio_from": "0"}, "ratio_from"),
    ({"ratio_to": "-1"}, "ratio_to"),
    ({"symbol": "NOPE"}, "symbol"),
    ({"cash_per_share": "1"}, "cash_per_share"),
    ({"colour": "red"}, "colour"),
])
def test_bad_input_is_400_naming_the_field_and_nothing_written(firm_a, stocks, api_client_for, change, field):
    response = api_client_for(firm_a.member("owner")).post(BASE, {**SPLIT, **change}, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    with unscoped():
        assert not CorporateAction.objects.exists()


@pytest.mark.django_db
def test_dividend_not_yet_payable_is_409(firm_a, portfolio, stocks, book, api_client_for):
    book(portfolio, stocks["MSFT"], "buy", "150", "400", "2025-05-01")
    admin = api_client_for(firm_a.member("owner"))
    body = admin.post(BASE, {"kind": "cash_dividend", "symbol": "MSFT", "ex_date": "2025-05-15",
                             "pay_date": "2099-06-12", "cash_per_share": "0.24"}, format="json").json()
    response = admin.post(f"{BASE}{body['id']}/apply/", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "NOT_YET_PAYABLE"


@pytest.mark.django_db
def test_import_csv_all_or_nothing_then_noop(firm_a, stocks, api_client_for):
    admin = api_client_for(firm_a.member("admin"))
    good = ("kind,symbol,ex_date,pay_date,ratio_from,ratio_to,cash_per_share,reference\n"
            "split,AAPL,2025-06-02,,1,2,,S-1\n"
            "cash_dividend,MSFT,2025-05-15,2025-06-12,,,0.24,D-1\n")
    bad = good + "cash_dividend,MSFT,2025-05-15,,,,0.24,D-2\n"
    response = admin.post(f"{BASE}import/", {"file": SimpleUploadedFile("ca.csv", bad.encode())}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"row 4": ["pay_date: Required (YYYY-MM-DD)."]}
    with unscoped():
        assert not CorporateAction.objects.exists()
    response = admin.post(f"{BASE}import/", {"file": SimpleUploadedFile("ca.csv", good.encode())}, format="multipart")
    assert response.status_code == 201 and response.json()["created"] == 2
    response = admin.post(f"{BASE}import/", {"file": SimpleUploadedFile("ca.csv", good.encode())}, format="multipart")
    assert response.status_code == 201 and (response.json()["created"], response.json()["existing"]) == (0, 2)


@pytest.mark.django_db
def test_another_firms_action_is_404_and_untouched(firm_a, firm_b, stocks, book, api_client_for, system):
    from apps.portfolios import services

    beta = services.portfolio_create(firm_id=firm_b.firm.pk, name="Beta", actor=system)
    book(beta, stocks["AAPL"], "buy", "10", "50", "2025-05-01")
    action = corporate.corporate_action_create(firm_id=firm_b.firm.pk, kind="split", instrument=stocks["AAPL"],
                                               ex_date=date(2025, 6, 2), ratio_from=D(1), ratio_to=D(2),
                                               reference="beta_secret-1", actor=Actor.system("beta"))
    owner = api_client_for(firm_a.member("owner"))
    assert owner.get(f"{BASE}{action.pk}/").status_code == 404
    assert owner.post(f"{BASE}{action.pk}/apply/", {}, format="json").status_code == 404
    assert "beta_secret" not in owner.get(BASE).content.decode()
    with unscoped():
        assert Position.objects.get(portfolio=beta).quantity == 10
