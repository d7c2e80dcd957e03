"""Bar-file imports as jobs: synchronous validation of the request, the run (direct service calls),
the REST endpoints, and one end-to-end import through a real Celery worker."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope, unscoped
from apps.marketdata.models import Bar, ImportJob, Instrument
from apps.marketdata.services import import_job_create, import_job_run, instrument_create
from tests.celery_support import wait_for

HEADER = "ts,open,high,low,close,volume\n"
GOOD_ROWS = [f"2024-07-04T00:{m:02d}:00Z,{100 + m},{101 + m},{99 + m},{100.5 + m},{10 * m}" for m in range(5)]
BAD_ROW = "2024-07-04T00:05:00Z,105,104,103,106,1"  # high below open and close
GOOD = (HEADER + "\n".join(GOOD_ROWS) + "\n").encode()
ONE_BAD = (HEADER + "\n".join([*GOOD_ROWS, BAD_ROW]) + "\n").encode()


def create(world, content=GOOD, **overrides):
    params = {"file_name": "btc.csv", "content": content, "symbol": "BTCUSD", "timeframe": "1m", "tz": "UTC"}
    params.update(overrides)
    member = world.member("admin")
    with firm_scope(world.firm.pk):
        return import_job_create(firm_id=world.firm.pk, created_by=member, actor=Actor.for_user(member.user),
                                 **params)


def run(world, job):
    with firm_scope(world.firm.pk):
        import_job_run(job_id=job.pk)
        return ImportJob.objects.get(pk=job.pk)


def bar_rows(symbol="BTCUSD"):
    return list(Bar.objects.filter(instrument__symbol=symbol).order_by("ts")
                .values_list("ts", "open", "high", "low", "close", "volume"))


def audit(firm):
    with unscoped():
        return list(AuditEvent.objects.unscoped().filter(firm=firm, action__startswith="bars.")
                    .order_by("seq").values_list("action", flat=True))


@pytest.fixture
def btc(db):
    return instrument_create(symbol="BTCUSD", asset_class="crypto")


# --- the service ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reimporting_the_same_file_leaves_identical_rows(firm_a, btc):
    first = run(firm_a, create(firm_a))
    assert (first.status, first.progress, first.rows, first.accepted, first.rejected, first.inserted, first.updated) \
        == ("succeeded", 100, 5, 5, 0, 5, 0)
    rows = bar_rows()
    second = run(firm_a, create(firm_a))
    assert (second.status, second.inserted, second.updated) == ("succeeded", 0, 0)
    assert bar_rows() == rows and len(rows) == 5
    assert second.report == {"rows": 5, "accepted": 5, "rejected": 0, "errors": [], "warnings": []}
    assert audit(firm_a.firm) == ["bars.import_queued", "bars.imported", "bars.import_queued", "bars.imported"]


@pytest.mark.django_db
def test_one_bad_row_writes_nothing_and_reports_it(firm_a, btc):
    job = run(firm_a, create(firm_a, content=ONE_BAD))
    assert (job.status, job.error_code, job.rows, job.accepted, job.rejected, job.inserted) == (
        "failed", "REJECTED_ROWS", 6, 5, 1, 0)
    assert job.report["errors"] == [
        {"row": 6, "field": "high", "reason": "high 104 is below open 105"},
        {"row": 6, "field": "high", "reason": "high 104 is below close 106"},
    ]
    assert job.error_message == ("1 of 6 rows rejected; nothing was written (tick 'skip bad rows' to import the "
                                 "5 good rows)")
    assert bar_rows() == []
    assert audit(firm_a.firm) == ["bars.import_queued", "bars.import_failed"]


@pytest.mark.django_db
def test_skip_bad_rows_writes_the_good_ones(firm_a, btc):
    job = run(firm_a, create(firm_a, content=ONE_BAD, skip_bad_rows=True))
    assert (job.status, job.accepted, job.rejected, job.inserted) == ("succeeded", 5, 1, 5)
    assert len(bar_rows()) == 5


@pytest.mark.django_db
def test_create_instrument_and_column_map(firm_a):
    content = b"Date,O,H,L,C,V\n2024-07-03 09:30,10,11,9,10.5,100\n2024-07-03 09:31,10.5,11,10,10.75,50\n"
    job = run(firm_a, create(firm_a, content=content, symbol="newco", tz="America/New_York",
                             columns="ts=Date,open=O,high=H,low=L,close=C,volume=V", create_instrument=True,
                             asset_class="equity"))
    assert (job.status, job.inserted, job.instrument_created) == ("succeeded", 2, True)
    assert Instrument.objects.get(symbol="NEWCO").asset_class == "equity"
    assert [r[0].isoformat() for r in bar_rows("NEWCO")] == ["2024-07-03T13:30:00+00:00", "2024-07-03T13:31:00+00:00"]


@pytest.mark.django_db
def test_an_unreadable_file_fails_the_job_with_a_message(firm_a, btc):
    job = run(firm_a, create(firm_a, content=b"when,price\n1,2\n"))
    assert (job.status, job.error_code) == ("failed", "INVALID_FILE")
    assert job.error_message.startswith("missing column(s) ts, open, high, low, close, volume")
    assert bar_rows() == []


@pytest.mark.django_db
def test_a_finished_job_is_not_run_again(firm_a, btc):
    job = run(firm_a, create(firm_a))
    again = run(firm_a, job)
    assert (again.status, again.finished_at) == ("succeeded", job.finished_at)
    assert audit(firm_a.firm).count("bars.imported") == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("overrides", "field", "code"), [
    ({"symbol": "NOPE"}, "symbol", "UNKNOWN_SYMBOL"),
    ({"symbol": "NOPE", "create_instrument": True}, "asset_class", "INVALID_ASSET_CLASS"),
    ({"symbol": "NOPE", "create_instrument": True, "asset_class": "option"}, "asset_class", "INVALID_ASSET_CLASS"),
    ({"timeframe": "2m"}, "timeframe", "INVALID_TIMEFRAME"),
    ({"tz": "Mars/Olympus"}, "tz", "INVALID_TZ"),
    ({"columns": "ts=Date,price=P"}, "columns", "INVALID_COLUMNS"),
    ({"columns": "ts"}, "columns", "INVALID_COLUMNS"),
    ({"file_name": "bars.xlsx"}, "file", "INVALID_FILE"),
    ({"content": b""}, "file", "INVALID_FILE"),
    ({"symbol": "A B"}, "symbol", "INVALID_SYMBOL"),
])
def test_bad_requests_name_the_field_and_store_nothing(firm_a, btc, overrides, field, code):
    with pytest.raises(DomainError) as caught:
        create(firm_a, **overrides)
    assert (caught.value.code, list(caught.value.fields), caught.value.status_code) == (code, [field], 400)
    with firm_scope(firm_a.firm.pk):
        assert ImportJob.objects.count() == 0
    assert audit(firm_a.firm) == []


@pytest.mark.django_db
def test_a_file_over_the_cap_is_413(firm_a, btc, monkeypatch):
    monkeypatch.setattr("apps.marketdata.services.IMPORT_MAX_BYTES", 10)
    with pytest.raises(DomainError) as caught:
        create(firm_a)
    assert (caught.value.code, list(caught.value.fields), caught.value.status_code) == ("FILE_TOO_LARGE", ["file"], 413)


# --- the API ------------------------------------------------------------------------------------


def upload(content=GOOD, name="btc.csv", **fields):
    return {"file": SimpleUploadedFile(name, content, content_type="text/csv"), "symbol": "BTCUSD",
            "timeframe": "1m", **fields}


@pytest.mark.django_db
def test_api_upload_answers_202_and_the_job_shows_the_report(firm_a, btc, api_client_for):
    client = api_client_for(firm_a.member("admin"), scopes=("read", "admin"))
    response = client.post("/api/v1/imports/", upload(ONE_BAD, skip_bad_rows="true"), format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert {k: body[k] for k in ("status", "progress", "file_name", "symbol", "timeframe", "tz", "skip_bad_rows",
                                 "report", "created_by")} == {
        "status": "queued", "progress": 0, "file_name": "btc.csv", "symbol": "BTCUSD", "timeframe": "1m",
        "tz": "UTC", "skip_bad_rows": True, "report": None, "created_by": "admin@alpha.example.com"}
    run(firm_a, ImportJob(pk=body["id"]))
    detail = client.get(f"/api/v1/imports/{body['id']}/").json()
    assert (detail["status"], detail["accepted"], detail["rejected"], detail["inserted"]) == ("succeeded", 5, 1, 5)
    assert detail["report"]["errors"][0] == {"row": 6, "field": "high", "reason": "high 104 is below open 105"}
    listing = client.get("/api/v1/imports/").json()
    assert (listing["count"], [j["id"] for j in listing["results"]]) == (1, [body["id"]])
    assert "report" not in listing["results"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "field"), [
    ({"symbol": "NOPE"}, "symbol"),
    ({"timeframe": "2m"}, "timeframe"),
    ({"tz": "Nowhere/Land"}, "tz"),
    ({"columns": "when=Date"}, "columns"),
    ({"create_instrument": "true", "symbol": "NEWCO"}, "asset_class"),
    ({"unexpected": "1"}, "unexpected"),
])
def test_api_refusals_name_the_field(firm_a, btc, api_client_for, fields, field):
    client = api_client_for(firm_a.member("owner"), scopes=("read", "admin"))
    response = client.post("/api/v1/imports/", upload(**fields), format="multipart")
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    with firm_scope(firm_a.firm.pk):
        assert ImportJob.objects.count() == 0


@pytest.mark.django_db
def test_api_refuses_a_missing_or_wrong_file(firm_a, btc, api_client_for, monkeypatch):
    client = api_client_for(firm_a.member("owner"), scopes=("read", "admin"))
    no_file = client.post("/api/v1/imports/", {"symbol": "BTCUSD", "timeframe": "1m"}, format="multipart")
    assert (no_file.status_code, list(no_file.json()["error"]["fields"])) == (400, ["file"])
    xlsx = client.post("/api/v1/imports/", upload(name="bars.xlsx"), format="multipart")
    assert (xlsx.status_code, list(xlsx.json()["error"]["fields"])) == (400, ["file"])
    monkeypatch.setattr("apps.marketdata.api.IMPORT_MAX_BYTES", 10)
    big = client.post("/api/v1/imports/", upload(), format="multipart")
    assert (big.status_code, big.json()["error"]["code"], list(big.json()["error"]["fields"])) == (
        413, "FILE_TOO_LARGE", ["file"])
    as_json = client.post("/api/v1/imports/", {"symbol": "BTCUSD"}, format="json")
    assert as_json.status_code == 415


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["owner", "admin", "trader", "analyst", "compliance"])
def test_api_roles(firm_a, btc, api_client_for, role):
    client = api_client_for(firm_a.member(role), scopes=("read", "trade", "admin"))
    response = client.post("/api/v1/imports/", upload(), format="multipart")
    assert response.status_code == (202 if role in {"owner", "admin"} else 403)
    assert client.get("/api/v1/imports/").status_code == 200


@pytest.mark.django_db
def test_api_another_firms_job_is_404(firm_a, firm_b, btc, api_client_for):
    theirs = create(firm_b)
    client = api_client_for(firm_a.member("owner"))
    assert client.get(f"/api/v1/imports/{theirs.pk}/").status_code == 404
    assert client.get("/api/v1/imports/").json()["count"] == 0


# --- end to end through a real worker -------------------------------------------------------------------


def test_upload_is_imported_by_a_celery_worker(celery_worker, firm_a, api_client_for):
    instrument_create(symbol="BTCUSD", asset_class="crypto")
    client = api_client_for(firm_a.member("admin"), scopes=("read", "admin"))
    response = client.post("/api/v1/imports/", upload(), format="multipart")
    assert response.status_code == 202
    job_id = response.json()["id"]
    done = wait_for(lambda: (lambda b: b if b["status"] in ("succeeded", "failed") else None)(
        client.get(f"/api/v1/imports/{job_id}/").json()), timeout=60)
    assert (done["status"], done["progress"], done["inserted"], done["accepted"]) == ("succeeded", 100, 5, 5), \
        celery_worker.log()
    assert len(bar_rows()) == 5
    assert audit(firm_a.firm) == ["bars.import_queued", "bars.imported"]
