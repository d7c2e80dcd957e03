"""The import pages: upload form -> job page polling with HTMX -> the validation report."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.tenancy import firm_scope
from apps.marketdata.models import ImportJob
from apps.marketdata.services import import_job_run, instrument_create
from tests.marketdata.test_imports_api import ONE_BAD, create

pytestmark = pytest.mark.django_db


@pytest.fixture
def btc():
    return instrument_create(symbol="BTCUSD", asset_class="crypto")


def form_data(content=ONE_BAD, **fields):
    return {"file": SimpleUploadedFile("btc.csv", content, content_type="text/csv"), "symbol": "BTCUSD",
            "timeframe": "1m", "tz": "UTC", "columns": "", "asset_class": "", **fields}


def jobs(world):
    with firm_scope(world.firm.pk):
        return list(ImportJob.objects.order_by("pk"))


def test_upload_then_poll_then_report(firm_a, btc, verified_client_for):
    client = verified_client_for(firm_a.member("admin"))
    page = client.get("/markets/imports/")
    assert page.status_code == 200
    assert b'id="import-form"' in page.content
    response = client.post("/markets/imports/", form_data())
    (job,) = jobs(firm_a)
    assert response.status_code == 302
    assert response["Location"] == f"/markets/imports/{job.pk}/"

    waiting = client.get(f"/markets/imports/{job.pk}/").content.decode()
    assert f'hx-get="/markets/imports/{job.pk}/" hx-trigger="every 1s" hx-swap="outerHTML"' in waiting
    assert '<progress id="import-progress" max="100" value="0">' in waiting

    with firm_scope(firm_a.firm.pk):
        import_job_run(job_id=job.pk)
    fragment = client.get(f"/markets/imports/{job.pk}/", HTTP_HX_REQUEST="true")
    html = fragment.content.decode()
    assert "<html" not in html and "hx-trigger" not in html  # a fragment, and the polling stops
    assert 'data-status="failed"' in html
    assert "Rows 6 · accepted 5 · rejected 1 · warnings 0" in html
    assert '<tr><td>6</td><td class="mono">high</td><td>high 104 is below open 105</td></tr>' in html
    assert '<tr><td>6</td><td class="mono">high</td><td>high 104 is below close 106</td></tr>' in html
    assert "nothing was written" in html


def test_bad_input_is_shown_on_the_form_and_stores_nothing(firm_a, btc, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    cases = [
        ({"symbol": "NOPE"}, "symbol"),
        ({"tz": "Mars/Base"}, "tz"),
        ({"columns": "ts"}, "columns"),
        ({"symbol": "NEWCO", "create_instrument": "on"}, "asset_class"),
    ]
    for fields, field in cases:
        response = client.post("/markets/imports/", form_data(**fields))
        assert response.status_code == 400
        assert list(response.context["form"].errors) == [field], fields
    no_file = client.post("/markets/imports/", {"symbol": "BTCUSD", "timeframe": "1m", "tz": "UTC"})
    assert (no_file.status_code, list(no_file.context["form"].errors)) == (400, ["file"])
    assert jobs(firm_a) == []


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_roles_that_may_not_import_see_jobs_but_not_the_form(firm_a, btc, verified_client_for, role):
    job = create(firm_a)
    client = verified_client_for(firm_a.member(role))
    page = client.get("/markets/imports/")
    assert page.status_code == 200
    assert b'id="import-form"' not in page.content
    assert f'href="/markets/imports/{job.pk}/"'.encode() in page.content
    assert client.get(f"/markets/imports/{job.pk}/").status_code == 200
    refused = client.post("/markets/imports/", form_data())
    assert refused.status_code == 403
    assert len(jobs(firm_a)) == 1


def test_another_firms_job_page_is_404(firm_a, firm_b, btc, verified_client_for):
    theirs = create(firm_b)
    client = verified_client_for(firm_a.member("owner"))
    assert client.get(f"/markets/imports/{theirs.pk}/").status_code == 404
    assert b"No imports yet." in client.get("/markets/imports/").content
