"""The audit log page: roles, firm scope, filters, diff, pagination, and the CSV export link."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.db import transaction

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.audit.views import MSG_AUDIT_ROLES, change_rows
from tests.audit.helpers import record

pytestmark = pytest.mark.django_db

URL = "/audit/"


def role_change(firm, by, target, before, after, ip="203.0.113.7"):
    with transaction.atomic():
        return audit_record(
            firm_id=firm.pk,
            action="member.role_changed",
            actor=Actor.for_user(by.user),
            target_type="membership",
            target_id=target.pk,
            target_label=target.user.email,
            before={"role": before},
            after={"role": after},
            meta=RequestMeta(ip=ip),
        )


@pytest.mark.parametrize("role", ["owner", "admin", "compliance"])
def test_readers_see_their_firms_trail_with_the_diff(firm_a, firm_b, verified_client_for, role):
    role_change(firm_a.firm, firm_a.member("owner"), firm_a.member("trader"), "trader", "admin")
    record(firm_b.firm.pk, action="beta.secret")
    response = verified_client_for(firm_a.member(role)).get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Audit log of Alpha Capital" in html
    assert "member.role_changed" in html and "beta.secret" not in html
    assert (
        '<span class="mono">role</span>: <span class="before">trader</span> → <span class="after">admin</span>' in html
    )
    assert "203.0.113.7" in html and "trader@alpha.example.com" in html and "owner@alpha.example.com" in html


@pytest.mark.parametrize("role", ["trader", "analyst"])
def test_other_roles_get_403(firm_a, verified_client_for, role):
    response = verified_client_for(firm_a.member(role)).get(URL)
    assert response.status_code == 403
    assert MSG_AUDIT_ROLES.format(firm="Alpha Capital") in unescape(response.content.decode())


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_filters(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("compliance"))
    role_change(firm_a.firm, firm_a.member("owner"), firm_a.member("trader"), "trader", "analyst")
    record(firm_a.firm.pk, action="invitation.created")

    def seqs(**params):
        html = client.get(URL, params).content.decode()
        return [int(s) for s in re.findall(r'<tr id="event-(\d+)">', html)]

    assert seqs() == [2, 1]
    assert seqs(action="invitation.created") == [2]
    assert seqs(action="member.") == [1]
    assert seqs(actor="owner@alpha") == [1]
    assert seqs(actor_type="system") == [2]
    assert seqs(date_from="2000-01-01", date_to="2000-01-31") == []
    assert seqs(date_from="2000-01-01") == [2, 1]


def test_bad_filter_shows_a_form_error(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    response = client.get(URL, {"date_from": "2026-02-10", "date_to": "2026-02-01"})
    assert response.status_code == 200
    assert "&#x27;To&#x27; must be on or after &#x27;From&#x27;." in response.content.decode()
    response = client.get(URL, {"date_from": "soon"})
    assert response.status_code == 200 and "Enter a valid date." in response.content.decode()


def test_pagination_keeps_the_filters(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    record(firm_a.firm.pk, action="bulk.done", n=55)
    first = client.get(URL, {"action": "bulk.done"}).content.decode()
    assert len(re.findall(r'<tr id="event-', first)) == 50
    assert 'href="?action=bulk.done&amp;page=2" rel="next"' in first
    second = client.get(URL, {"action": "bulk.done", "page": "2"}).content.decode()
    assert re.findall(r'<tr id="event-(\d+)">', second) == ["5", "4", "3", "2", "1"]


def test_export_link_downloads_the_api_export_with_the_session_and_is_audited(firm_a, verified_client_for):
    member = firm_a.member("compliance")
    client = verified_client_for(member)
    record(firm_a.firm.pk, n=3)
    html = client.get(URL).content.decode()
    link = unescape(re.search(r'id="audit-export" href="([^"]+)"', html).group(1))
    assert link.startswith("/api/v1/audit/export/?from=")
    response = client.get(link)
    assert response.status_code == 200
    assert response["X-Export-Rows"] == "3"
    assert response.content.decode().count("\r\n") == 4
    exported = AuditEvent.objects.unscoped().get(firm=firm_a.firm, action="audit.exported")
    assert (exported.actor_type, exported.actor_user_id) == ("user", member.user_id)
    assert client.get(link).content == response.content


def test_page_has_no_inline_script_or_style(firm_a, verified_client_for):
    role_change(firm_a.firm, firm_a.member("owner"), firm_a.member("trader"), "trader", "admin")
    html = verified_client_for(firm_a.member("owner")).get(URL).content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert " style=" not in html and "<style" not in html


def test_change_rows():
    assert change_rows({"role": "a", "x": 1}, {"role": "b", "x": 1}) == [("role", "a", "b")]
    assert change_rows(None, {"k": 2}) == [("k", None, 2)]
    assert change_rows(None, None) == []
    assert change_rows("a", "b") == [("", "a", "b")]
