"""The admin site: 2FA, who gets in, read-only compliance, audited role changes, audit events, exports."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from apps.accounts.models import ApiToken, Firm, Membership
from apps.accounts.services.members import MSG_LAST_OWNER, MSG_OWNER_ONLY
from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

INDEX = "/admin/"


def events(firm, action):
    return list(AuditEvent.objects.unscoped().filter(firm=firm, action=action).order_by("seq"))


# --- who gets in ------------------------------------------------------------------------------------


@pytest.mark.parametrize("enrolled", [False, True], ids=["not-enrolled", "enrolled-not-verified"])
def test_logged_in_but_unverified_staff_superuser_is_refused(client, superuser, enrolled):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if enrolled:
        TOTPDevice.objects.create(user=superuser, name="default", confirmed=True)
    client.force_login(superuser)
    step = "/accounts/2fa/verify/" if enrolled else "/accounts/2fa/enrol/"
    for url in (INDEX, reverse("admin:accounts_firm_changelist"), reverse("admin:audit_auditevent_changelist")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(step), response["Location"]


@pytest.mark.parametrize("who", ["superuser", "owner"])
def test_the_site_itself_requires_a_verified_session(superuser, firm_a, who):
    """Independent of the 2FA middleware: the admin site's own permission needs is_verified()."""
    request = RequestFactory().get(INDEX)
    if who == "superuser":
        request.user, request.membership = superuser, None
    else:
        request.membership = firm_a.member("owner")
        request.user, request.firm = request.membership.user, firm_a.firm
    request.user.is_verified = lambda: False
    assert admin.site.has_permission(request) is False
    request.user.is_verified = lambda: True
    assert admin.site.has_permission(request) is True


@pytest.mark.parametrize("role", ["trader", "analyst"])
def test_roles_without_admin_access_are_sent_to_the_admin_login(firm_a, verified_client_for, role):
    response = verified_client_for(firm_a.member(role)).get(INDEX)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("role", ["owner", "admin", "compliance"])
def test_firm_managers_and_compliance_get_in_without_is_staff(firm_a, verified_client_for, role):
    member = firm_a.member(role)
    assert member.user.is_staff is False
    response = verified_client_for(member).get(INDEX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/admin/accounts/membership/" in html and "/admin/audit/auditevent/" in html
    assert "/admin/django_celery_beat/" not in html and "/admin/otp_totp/" not in html and "/admin/axes/" not in html


# --- firm-scoped views --------------------------------------------------------------------------------


def test_firm_changelist_shows_only_the_own_firm_read_only(firm_a, firm_b, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    response = client.get(reverse("admin:accounts_firm_changelist"))
    assert list(response.context["cl"].result_list) == [firm_a.firm]
    change = client.get(reverse("admin:accounts_firm_change", args=[firm_a.firm.pk]))
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert client.post(reverse("admin:accounts_firm_change", args=[firm_a.firm.pk]), {"name": "X"}).status_code == 403
    firm_a.firm.refresh_from_db()
    assert firm_a.firm.name == "Alpha Capital"


def test_foreign_key_choices_are_firm_scoped(firm_a, firm_b):
    request = RequestFactory().get("/admin/accounts/membership/add/")
    request.user = firm_a.member("admin").user
    request.firm, request.membership = firm_a.firm, firm_a.member("admin")
    form = admin.site._registry[Membership].get_form(request)()
    assert list(form.fields["firm"].queryset) == [firm_a.firm]
    assert set(form.fields["user"].queryset) == {m.user for m in firm_a.members.values()}
    token_admin = admin.site._registry[ApiToken]
    field = ApiToken._meta.get_field("membership")
    formfield = token_admin.formfield_for_foreignkey(field, request)
    assert set(formfield.queryset) == set(firm_a.members.values())


# --- memberships: role changes through the service -------------------------------------------------


def _change_role(client, membership, role):
    url = reverse("admin:accounts_membership_change", args=[membership.pk])
    return client.post(url, {"role": role}, follow=True)


def test_admin_changes_a_role_through_the_audited_service(firm_a, verified_client_for):
    manager, target = firm_a.member("admin"), firm_a.member("trader")
    response = _change_role(verified_client_for(manager), target, "analyst")
    assert response.status_code == 200
    target.refresh_from_db()
    assert target.role == "analyst"
    [event] = events(firm_a.firm, "member.role_changed")
    assert (event.before, event.after, event.actor_user_id) == (
        {"role": "trader"},
        {"role": "analyst"},
        manager.user_id,
    )
    assert event.target_id == str(target.pk)


def test_last_owner_cannot_be_demoted_in_admin(firm_a, verified_client_for):
    owner = firm_a.member("owner")
    response = _change_role(verified_client_for(owner), owner, "admin")
    assert MSG_LAST_OWNER in response.content.decode().replace("&#x27;", "'")
    owner.refresh_from_db()
    assert owner.role == "owner"
    assert events(firm_a.firm, "member.role_changed") == []


def test_admin_cannot_make_an_owner_in_admin(firm_a, verified_client_for):
    target = firm_a.member("trader")
    response = _change_role(verified_client_for(firm_a.member("admin")), target, "owner")
    assert MSG_OWNER_ONLY in response.content.decode()
    target.refresh_from_db()
    assert target.role == "trader"


def test_compliance_is_read_only(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("compliance"))
    target = firm_a.member("trader")
    url = reverse("admin:accounts_membership_change", args=[target.pk])
    page = client.get(url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(url, {"role": "analyst"}).status_code == 403
    target.refresh_from_db()
    assert target.role == "trader"


def test_superuser_without_a_membership_cannot_bypass_the_role_rules(firm_a, superuser_client):
    target = firm_a.member("trader")
    response = _change_role(superuser_client, target, "analyst")
    assert "you need an owner or admin membership of that firm" in response.content.decode()
    target.refresh_from_db()
    assert target.role == "trader"


def test_nobody_deletes_memberships_in_admin(firm_a, verified_client_for, superuser_client):
    url = reverse("admin:accounts_membership_delete", args=[firm_a.member("trader").pk])
    assert verified_client_for(firm_a.member("owner")).post(url, {"post": "yes"}).status_code == 403
    assert superuser_client.post(url, {"post": "yes"}).status_code == 403
    assert Membership.objects.filter(pk=firm_a.member("trader").pk).exists()


# --- tokens ------------------------------------------------------------------------------------------


def test_token_pages_never_show_the_secret_hash_and_owners_revoke_through_the_service(
    firm_a, verified_client_for, make_token
):
    make_token(firm_a.member("trader"))
    token = ApiToken.objects.get(firm=firm_a.firm)
    client = verified_client_for(firm_a.member("owner"))
    for url in (
        reverse("admin:accounts_apitoken_changelist"),
        reverse("admin:accounts_apitoken_change", args=[token.pk]),
    ):
        html = client.get(url).content.decode()
        assert token.prefix in html and token.secret_hash not in html and "secret_hash" not in html
    response = client.post(
        reverse("admin:accounts_apitoken_changelist"), {"action": "revoke_selected", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    [event] = events(firm_a.firm, "token.revoked")
    assert event.actor_user_id == firm_a.member("owner").user_id


def test_compliance_has_no_revoke_action(firm_a, verified_client_for, make_token):
    make_token(firm_a.member("trader"))
    token = ApiToken.objects.get(firm=firm_a.firm)
    client = verified_client_for(firm_a.member("compliance"))
    assert "revoke_selected" not in client.get(reverse("admin:accounts_apitoken_changelist")).content.decode()
    client.post(
        reverse("admin:accounts_apitoken_changelist"), {"action": "revoke_selected", "_selected_action": [token.pk]}
    )
    token.refresh_from_db()
    assert token.revoked_at is None


# --- audit events --------------------------------------------------------------------------------------


def _audited(firm_a, make_token):
    make_token(firm_a.member("trader"))
    make_token(firm_a.member("admin"))
    return events(firm_a.firm, "token.created")


@pytest.mark.parametrize("who", ["compliance", "superuser"])
def test_audit_events_are_read_only_for_everyone(firm_a, make_token, verified_client_for, superuser_client, who):
    event = _audited(firm_a, make_token)[0]
    client = superuser_client if who == "superuser" else verified_client_for(firm_a.member(who))
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    change = reverse("admin:audit_auditevent_change", args=[event.pk])
    page = client.get(change)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(change, {"action": "forged"}).status_code == 403
    assert client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.unscoped().get(pk=event.pk).action == "token.created"
    listing = client.get(reverse("admin:audit_auditevent_changelist")).content.decode()
    assert "delete_selected" not in listing and "export_csv" in listing


def test_audit_event_filters(firm_a, make_token, verified_client_for):
    _audited(firm_a, make_token)
    client = verified_client_for(firm_a.member("compliance"))
    base = reverse("admin:audit_auditevent_changelist")

    def actions(query):
        return sorted(e.action for e in client.get(f"{base}?{query}").context["cl"].result_list)

    assert actions("action=token.created") == ["token.created", "token.created"]
    assert actions("actor_type__exact=system") == []
    assert actions("actor_type__exact=user") == ["token.created", "token.created"]
    assert (
        actions("created_at__gte=2000-01-01+00%3A00%3A00%2B00%3A00&created_at__lt=2000-01-02+00%3A00%3A00%2B00%3A00")
        == []
    )
    assert len(actions("created_at__gte=2000-01-01+00%3A00%3A00%2B00%3A00")) == 2


def test_export_selected_as_csv_is_audited(firm_a, make_token, verified_client_for):
    chosen = _audited(firm_a, make_token)
    client = verified_client_for(firm_a.member("compliance"))
    response = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": [e.pk for e in chosen]},
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["seq"], r["hash"]) for r in rows] == [(str(e.seq), e.hash) for e in chosen]
    [exported] = events(firm_a.firm, "audit.exported")
    assert exported.after == {"source": "admin", "format": "csv", "rows": 2, "sha256": response["X-Export-SHA256"]}


# --- superusers are audited ------------------------------------------------------------------------------


def test_superuser_change_views_are_audited_in_the_objects_firm(firm_a, firm_b, superuser, superuser_client):
    target = firm_b.member("trader")
    response = superuser_client.get(reverse("admin:accounts_membership_change", args=[target.pk]))
    assert response.status_code == 200
    [viewed] = events(firm_b.firm, "admin.viewed")
    assert (viewed.actor_user_id, viewed.target_type, viewed.target_id) == (
        superuser.pk,
        "accounts.membership",
        str(target.pk),
    )
    assert events(firm_a.firm, "admin.viewed") == []


def test_firm_members_views_are_not_audited_as_admin_views(firm_a, verified_client_for):
    verified_client_for(firm_a.member("owner")).get(
        reverse("admin:accounts_membership_change", args=[firm_a.member("trader").pk])
    )
    assert events(firm_a.firm, "admin.viewed") == []


def test_superuser_changes_are_audited_with_before_and_after(firm_b, superuser_client):
    url = reverse("admin:accounts_firm_change", args=[firm_b.firm.pk])
    data = {
        "name": "Beta Partners",
        "slug": "beta-capital",
        "base_currency": "USD",
        "timezone": "Europe/London",
        "two_factor_policy": "all",
    }
    response = superuser_client.post(url, data)
    assert response.status_code == 302
    firm = Firm.objects.get(pk=firm_b.firm.pk)
    assert (firm.name, firm.timezone) == ("Beta Partners", "Europe/London")
    [changed] = events(firm_b.firm, "admin.changed")
    assert changed.before == {"name": "Beta Capital", "timezone": "America/New_York", "two_factor_policy": "default"}
    assert changed.after == {"name": "Beta Partners", "timezone": "Europe/London", "two_factor_policy": "all"}


def test_superuser_only_models_open_for_superusers(superuser_client):
    assert superuser_client.get(reverse("admin:django_celery_beat_periodictask_changelist")).status_code == 200
    assert superuser_client.get(reverse("admin:otp_totp_totpdevice_changelist")).status_code == 200


def test_anonymous_is_sent_through_the_app_login_and_back(client):
    response = client.get(INDEX)
    assert response.status_code == 302 and response["Location"] == "/admin/login/?next=/admin/"
    login = client.get("/admin/login/?next=/admin/audit/auditevent/")
    assert login.status_code == 302
    assert login["Location"] == "/accounts/login/?next=%2Fadmin%2Faudit%2Fauditevent%2F"
    offsite = client.get("/admin/login/?next=https://evil.example.com/")
    assert offsite["Location"] == "/accounts/login/?next=%2Fadmin%2F"


def test_authenticated_member_without_admin_access_sees_the_not_authorized_page(firm_a, verified_client_for):
    response = verified_client_for(firm_a.member("trader")).get("/admin/login/")
    assert response.status_code == 200
    assert "not authorized to access this page" in response.content.decode()
