"""apps.core.api: the base classes later apps build on (target 26 by construction)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from rest_framework import serializers

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.core.api import (
    FirmScopedPrimaryKeyRelatedField,
    FirmScopedSlugRelatedField,
    StrictInputSerializer,
)
from apps.core.tenancy import unscoped

pytestmark = pytest.mark.urls("tests.api.base_urls")


def _event(firm, action: str) -> AuditEvent:
    with transaction.atomic():
        return audit_record(firm_id=firm.pk, action=action, actor=Actor.system())


def test_viewset_with_model_lists_only_the_firm(firm_a, firm_b, api_client_for):
    _event(firm_a.firm, "test.a")
    _event(firm_b.firm, "test.b")
    response = api_client_for(firm_a.member("compliance")).get("/api/test/events/")
    assert response.status_code == 200
    actions = [e["action"] for e in response.json()["results"]]
    assert "test.a" in actions and "test.b" not in actions


def test_viewset_another_firms_object_is_404_before_role_and_scope(firm_a, firm_b, api_client_for):
    event_b = _event(firm_b.firm, "test.b")
    for role, scopes in [("trader", ("read",)), ("analyst", ("trade",)), ("owner", ("read", "trade", "admin"))]:
        client = api_client_for(firm_a.member(role), scopes=scopes)
        for method in ("get", "delete", "options"):
            response = getattr(client, method)(f"/api/test/events/{event_b.pk}/")
            assert response.status_code == 404, (role, method)
    with unscoped():
        assert AuditEvent.objects.unscoped().filter(pk=event_b.pk).exists()


def test_viewset_own_object_still_gets_403_for_the_wrong_role(firm_a, api_client_for):
    event_a = _event(firm_a.firm, "test.a")
    response = api_client_for(firm_a.member("trader")).get(f"/api/test/events/{event_a.pk}/")
    assert response.status_code == 403
    response = api_client_for(firm_a.member("compliance")).get(f"/api/test/events/{event_a.pk}/")
    assert response.status_code == 200 and response.json()["action"] == "test.a"


def test_viewset_non_integer_id_is_404_not_500(firm_a, api_client_for):
    assert api_client_for(firm_a.member("owner")).get("/api/test/events/abc/").status_code == 404


def test_apiview_object_for_runs_before_role_checks(firm_a, firm_b, api_client_for):
    b_member = firm_b.member("trader")
    a_member = firm_a.member("trader")
    analyst = api_client_for(firm_a.member("analyst"))
    for method in ("get", "post", "options"):
        assert getattr(analyst, method)(f"/api/test/members/{b_member.pk}/note/").status_code == 404
    assert analyst.post(f"/api/test/members/{a_member.pk}/note/").status_code == 403
    assert analyst.get(f"/api/test/members/{a_member.pk}/note/").json() == {"email": "trader@alpha.example.com"}
    owner = api_client_for(firm_a.member("owner"))
    assert owner.post(f"/api/test/members/{a_member.pk}/note/").json() == {"noted": a_member.pk}


def test_view_without_model_or_queryset_for_refuses(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    client.raise_request_exception = True
    with pytest.raises(ImproperlyConfigured):
        client.get("/api/test/unscoped/")


def test_strict_input_rejects_unknown_keys_and_keeps_known_ones():
    class OrderInput(StrictInputSerializer):
        symbol = serializers.CharField()
        note = serializers.CharField(read_only=True)

    bad = OrderInput(data={"symbol": "AAPL", "qty": 1, "note": "x"})
    assert not bad.is_valid()
    assert bad.errors == {"note": ["Unknown field."], "qty": ["Unknown field."]}
    good = OrderInput(data={"symbol": "AAPL"})
    assert good.is_valid() and good.validated_data == {"symbol": "AAPL"}


def test_scoped_field_needs_a_model_and_refuses_a_queryset():
    from apps.accounts.models import Membership

    with pytest.raises(ImproperlyConfigured):
        FirmScopedPrimaryKeyRelatedField()
    with pytest.raises(ImproperlyConfigured):
        FirmScopedPrimaryKeyRelatedField(model=Membership, queryset=Membership.objects.all())


def test_scoped_slug_field_and_queryset_for(firm_a, firm_b):
    from rest_framework.test import APIRequestFactory

    from apps.accounts.models import Membership

    class ByEmail(serializers.Serializer):
        member = FirmScopedSlugRelatedField(
            slug_field="user__email", queryset_for=lambda firm: Membership.objects.filter(firm=firm)
        )
        event = FirmScopedPrimaryKeyRelatedField(model=AuditEvent)

    request = APIRequestFactory().post("/")
    request.firm = firm_a.firm
    a_event, b_event = _event(firm_a.firm, "test.a"), _event(firm_b.firm, "test.b")
    ok = ByEmail(data={"member": "trader@alpha.example.com", "event": a_event.pk}, context={"request": request})
    assert ok.is_valid(), ok.errors
    bad = ByEmail(data={"member": "trader@beta.example.com", "event": b_event.pk}, context={"request": request})
    assert not bad.is_valid()
    assert sorted(bad.errors) == ["event", "member"]
