"""Target 31: every registered ModelAdmin is firm-scoped for firm members or closed to them.

Iterates ``admin.site._registry`` so a model registered later is covered the day it is added.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from apps.core.admin import FirmScopedAdmin, OctopusAdminSite, SuperuserOnlyAdminMixin

pytestmark = pytest.mark.django_db

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
IDS = [model._meta.label for model, _ in REGISTRY]


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_the_default_site_is_the_2fa_firm_scoped_site():
    assert isinstance(admin.site._wrapped if hasattr(admin.site, "_wrapped") else admin.site, OctopusAdminSite)
    assert admin.site.name == "admin"


def test_every_registration_is_firm_scoped_or_superuser_only():
    for model, model_admin in REGISTRY:
        assert isinstance(model_admin, FirmScopedAdmin | SuperuserOnlyAdminMixin), model._meta.label


def test_the_expected_models_are_firm_scoped():
    scoped = {m._meta.label for m, a in REGISTRY if isinstance(a, FirmScopedAdmin)}
    assert scoped == {
        "accounts.Firm",
        "accounts.Membership",
        "accounts.Invitation",
        "accounts.ApiToken",
        "audit.AuditEvent",
        "portfolios.TaxEntity",
        "portfolios.Portfolio",
        "portfolios.Fill",
        "portfolios.JournalEntry",
        "portfolios.Lot",
        "portfolios.RealizedGain",
        "portfolios.Position",
        "portfolios.Snapshot",
        "portfolios.CorporateAction",
        "portfolios.TradeImport",
        "orders.Order",
        "orders.OrderEvent",
        "orders.TradingControl",
        "orders.AlgoOrder",
        "orders.PortfolioHalt",
    }
    closed = {m._meta.label for m, a in REGISTRY if isinstance(a, SuperuserOnlyAdminMixin)}
    assert {
        "auth.Group",
        "django_celery_beat.PeriodicTask",
        "otp_totp.TOTPDevice",
        "otp_static.StaticDevice",
        "axes.AccessAttempt",
    } <= closed


@pytest.mark.parametrize("role", ["owner", "admin", "compliance"])
@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=IDS)
def test_firm_a_member_sees_no_firm_b_row_and_gets_404_on_its_urls(
    populated, verified_client_for, role, model, model_admin
):
    firm_a, firm_b = populated
    client = verified_client_for(firm_a.member(role))
    response = client.get(url(model, "changelist"))
    if isinstance(model_admin, SuperuserOnlyAdminMixin):
        assert response.status_code == 404
        others = list(model._default_manager.all()[:3]) or []
        for obj in others:
            assert client.get(url(model, "change", obj.pk)).status_code == 404
        assert client.get(url(model, "change", 1)).status_code == 404
        assert client.get(url(model, "add")).status_code == 404
        return
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert rows, "firm A should see its own rows"
    assert {model_admin.firm_id_of(obj) for obj in rows} == {firm_a.firm.pk}
    theirs = list(model_admin.base_queryset().filter(**{model_admin.firm_lookup: firm_b.firm.pk}))
    assert theirs, "firm B must have rows for the probe to mean something"
    for obj in theirs:
        for view in ("change", "history", "delete"):
            probe = client.get(url(model, view, obj.pk))
            assert probe.status_code == 404, (view, obj)
        assert client.post(url(model, "change", obj.pk), {}).status_code == 404
    # a firm B id that is also passed through the changelist's filters shows nothing
    assert firm_b.firm.name not in client.get(url(model, "changelist")).content.decode()


@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=IDS)
def test_superuser_sees_every_firm(populated, superuser_client, model, model_admin):
    firm_a, firm_b = populated
    response = superuser_client.get(url(model, "changelist"))
    assert response.status_code == 200
    if isinstance(model_admin, FirmScopedAdmin):
        firms = {model_admin.firm_id_of(obj) for obj in response.context["cl"].result_list}
        assert {firm_a.firm.pk, firm_b.firm.pk} <= firms
