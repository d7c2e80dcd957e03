"""The audit REST API: list/filters/pagination, detail, export with manifest, roles and bad input."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.audit.chain import verify_chain
from apps.audit.models import AuditEvent
from apps.audit.params import MSG_BAD_BOUND, MSG_TO_BEFORE_FROM, MSG_TO_IN_FUTURE
from tests.audit.helpers import record

pytestmark = pytest.mark.django_db

LIST = "/api/v1/audit/events/"
EXPORT = "/api/v1/audit/export/"
MANIFEST = "/api/v1/audit/export/manifest/"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def events_of(firm) -> list[AuditEvent]:
    return list(AuditEvent.objects.unscoped().filter(firm=firm).order_by("seq"))


@pytest.mark.parametrize("role", ["owner", "admin", "compliance"])
def test_readers_list_only_their_firms_events_newest_first(firm_a, firm_b, api_client_for, role):
    client = api_client_for(firm_a.member(role), scopes=("read",))
    record(firm_a.firm.pk, n=3)
    record(firm_b.firm.pk, action="beta.only", n=2)
    ours = events_of(firm_a.firm)  # token.created by the fixture + 3
    response = client.get(LIST)
    assert response.status_code == 200
    body = response.json()
    assert [e["seq"] for e in body["results"]] == [e.seq for e in reversed(ours)]
    assert all(e["action"] != "beta.only" for e in body["results"])
    first = body["results"][0]
    assert set(first) == {
        "id",
        "seq",
        "created_at",
        "actor_type",
        "actor_user_id",
        "actor_token_id",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "before",
        "after",
        "ip",
        "user_agent",
        "request_id",
        "prev_hash",
        "hash",
    }
    assert first["hash"] == ours[-1].hash and first["after"] == {"i": 2}


@pytest.mark.parametrize("role", ["trader", "analyst"])
def test_other_roles_are_refused(firm_a, api_client_for, role):
    client = api_client_for(firm_a.member(role))
    event = record(firm_a.firm.pk)[0]
    today = timezone.now().date().isoformat()
    for url in (
        LIST,
        f"{LIST}{event.pk}/",
        f"{EXPORT}?from=2026-01-01&to={today}",
        f"{MANIFEST}?from=2026-01-01&to={today}",
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert not AuditEvent.objects.unscoped().filter(action="audit.exported").exists()


def test_unauthenticated_is_401(client, firm_a):
    assert client.get(LIST, HTTP_AUTHORIZATION="Bearer oct_000000000000_nope").status_code == 401


def test_filters(firm_a, api_client_for):
    client = api_client_for(firm_a.member("compliance"))
    record(firm_a.firm.pk, action="member.role_changed", n=2)
    record(firm_a.firm.pk, action="member.removed")
    record(firm_a.firm.pk, action="invitation.created")

    def actions(**params):
        response = client.get(LIST, params)
        assert response.status_code == 200, response.json()
        return [e["action"] for e in response.json()["results"]]

    assert actions(action="member.role_changed") == ["member.role_changed"] * 2
    assert actions(action="member.") == ["member.removed", "member.role_changed", "member.role_changed"]
    assert actions(actor="compliance@alpha") == ["token.created"]
    assert actions(actor_type="token") == []
    assert actions(target_type="thing", target_id="1", action="member.role_changed") == ["member.role_changed"]
    now = timezone.now()
    assert actions(**{"from": iso(now + timedelta(seconds=1))}) == []
    assert len(actions(**{"from": iso(now - timedelta(hours=1)), "to": iso(now + timedelta(seconds=1))})) == 5


def test_cursor_pagination_walks_every_event_once(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    record(firm_a.firm.pk, n=7)
    seen, url = [], f"{LIST}?page_size=3"
    while url:
        body = client.get(url).json()
        seen += [e["seq"] for e in body["results"]]
        url = body["next"]
    assert seen == list(range(8, 0, -1))


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"from": "yesterday"}, "from", MSG_BAD_BOUND),
        ({"to": "2026-13-01"}, "to", MSG_BAD_BOUND),
        ({"to": "2026-11-01T10:00:00"}, "to", MSG_BAD_BOUND),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "to", MSG_TO_BEFORE_FROM),
        ({"actor_type": "robot"}, "actor_type", '"robot" is not a valid choice.'),
    ],
)
def test_bad_list_params_are_400_naming_the_field(firm_a, api_client_for, params, field, message):
    response = api_client_for(firm_a.member("owner")).get(LIST, params)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: [message]}


def test_detail_and_other_firms_event_is_404(firm_a, firm_b, api_client_for):
    client = api_client_for(firm_a.member("admin"))
    ours = record(firm_a.firm.pk)[0]
    theirs = record(firm_b.firm.pk)[0]
    body = client.get(f"{LIST}{ours.pk}/").json()
    assert (body["id"], body["seq"], body["hash"], body["prev_hash"]) == (ours.pk, ours.seq, ours.hash, ours.prev_hash)
    response = client.get(f"{LIST}{theirs.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert client.get(f"{LIST}999999999/").status_code == 404


def _export(client, fmt: str, start: str, end: str):
    return client.get(EXPORT, {"from": start, "to": end, "format": fmt})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_is_byte_identical_with_manifest_and_audited(firm_a, firm_b, api_client_for, fmt):
    client = api_client_for(firm_a.member("compliance"))
    record(firm_a.firm.pk, n=3, before={"b": "é", "a": [1, 2]})
    record(firm_b.firm.pk, n=2)
    start, end = "2020-01-01", iso(timezone.now())
    first = _export(client, fmt, start, end)
    assert first.status_code == 200
    second = _export(client, fmt, start, end)
    assert first.content == second.content  # the first export's own audit event is after `to`
    sha = hashlib.sha256(first.content).hexdigest()
    assert first["X-Export-Rows"] == "4" and first["X-Export-SHA256"] == sha
    assert first["Content-Type"].startswith("text/csv" if fmt == "csv" else "application/x-ndjson")
    assert 'attachment; filename="audit-alpha-capital-20200101T000000Z-' in first["Content-Disposition"]
    manifest = client.get(MANIFEST, {"from": start, "to": end, "format": fmt}).json()
    assert (manifest["rows"], manifest["sha256"], manifest["bytes"]) == (4, sha, len(first.content))
    exports = AuditEvent.objects.unscoped().filter(firm=firm_a.firm, action="audit.exported").order_by("seq")
    assert [e.after["sha256"] for e in exports] == [sha, sha]  # manifest is not audited
    assert exports[0].after["rows"] == 4 and exports[0].after["format"] == fmt
    assert exports[0].actor_type == "token" and exports[0].actor_user_id == firm_a.member("compliance").user_id


def test_csv_export_has_every_field_and_reverifies_offline(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    record(firm_a.firm.pk, n=2, before={"x": 1})
    db = events_of(firm_a.firm)
    content = _export(client, "csv", "2020-01-01", iso(timezone.now())).content.decode()
    assert content.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(content)))
    assert list(rows[0]) == [
        "id",
        "firm_id",
        "seq",
        "created_at",
        "actor_type",
        "actor_user_id",
        "actor_token_id",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "before",
        "after",
        "ip",
        "user_agent",
        "request_id",
        "prev_hash",
        "hash",
    ]
    assert [r["hash"] for r in rows] == [e.hash for e in db]
    assert rows[1]["before"] == '{"x":1}' and rows[1]["after"] == '{"i":0}' and rows[1]["ip"] == ""


def test_jsonl_export_reverifies_with_the_chain_code(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    record(firm_a.firm.pk, n=3, after={"nested": {"z": 1, "a": None}})
    content = _export(client, "jsonl", "2020-01-01", iso(timezone.now())).content.decode()
    rows = [json.loads(line) for line in content.splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert verify_chain(rows) is None
    rows[2]["action"] = "forged"
    assert verify_chain(rows).seq == 3


def test_export_range_is_from_inclusive_to_exclusive(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    events = record(firm_a.firm.pk, n=3)
    response = _export(client, "jsonl", iso(events[1].created_at), iso(events[2].created_at))
    assert [json.loads(line)["seq"] for line in response.content.decode().splitlines()] == [events[1].seq]
    empty = _export(client, "csv", "2020-01-01", "2020-01-02")
    assert empty["X-Export-Rows"] == "0"
    assert (
        empty.content
        == b"id,firm_id,seq,created_at,actor_type,actor_user_id,actor_token_id,actor_label,action,target_type,target_id,target_label,before,after,ip,user_agent,request_id,prev_hash,hash\r\n"
    )


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"to": "2026-01-02"}, {"from": ["This field is required."]}),
        ({"from": "2026-01-01"}, {"to": ["This field is required."]}),
        ({"from": "2026-01-05", "to": "2026-01-01"}, {"to": [MSG_TO_BEFORE_FROM]}),
        ({"from": "2026-01-01", "to": "2026-01-01"}, {"to": [MSG_TO_BEFORE_FROM]}),
        ({"from": "01/01/2026", "to": "2026-01-02"}, {"from": [MSG_BAD_BOUND]}),
        ({"from": "2026-01-01", "to": "2026-01-02", "format": "xml"}, {"format": ['"xml" is not a valid choice.']}),
        ({"from": "2026-01-01", "to": "2999-01-01"}, {"to": [MSG_TO_IN_FUTURE]}),
    ],
)
def test_bad_export_params_are_400_naming_the_field_and_not_audited(firm_a, api_client_for, params, fields):
    client = api_client_for(firm_a.member("compliance"))
    for url in (EXPORT, MANIFEST):
        response = client.get(url, params)
        assert response.status_code == 400, url
        assert response.json()["error"]["fields"] == fields
    assert not AuditEvent.objects.unscoped().filter(action="audit.exported").exists()


def test_schema_validates_and_describes_the_audit_operations(client):
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    export = schema["paths"]["/api/v1/audit/export/"]["get"]
    assert set(export["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
    assert export["responses"]["200"]["content"]["text/csv"]["schema"] == {"type": "string", "format": "binary"}
    for path in (
        "/api/v1/audit/events/",
        "/api/v1/audit/events/{id}/",
        "/api/v1/audit/export/",
        "/api/v1/audit/export/manifest/",
    ):
        operation = schema["paths"][path]["get"]
        assert operation["description"]
        assert {"200", "400", "403"} <= set(operation["responses"])


@pytest.mark.parametrize("role", ["owner", "admin", "trader", "analyst", "compliance"])
def test_another_firms_event_is_404_for_every_role(firm_a, firm_b, api_client_for, role):
    theirs = record(firm_b.firm.pk)[0]
    response = api_client_for(firm_a.member(role)).get(f"{LIST}{theirs.pk}/")
    assert response.status_code == 404


def test_a_forged_cursor_is_a_documented_404(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).get(LIST, {"cursor": "not-a-cursor"})
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "NOT_FOUND", "message": "Invalid cursor", "fields": {}}
