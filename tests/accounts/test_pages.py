import re

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import ApiToken, Firm, Invitation, Membership, User
from apps.accounts.services import invitation_create
from apps.core.middleware import SESSION_FIRM_KEY
from tests.accounts.conftest import events
from tests.factories import DEFAULT_PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough passphrase 42"


# --- sign-up -------------------------------------------------------------------------------------------------


def test_signup_page_creates_firm_and_sends_owner_to_enrolment(client, db):
    response = client.post("/accounts/signup/", {
        "firm_name": "Acme Capital", "full_name": "Ann", "email": "ann@acme.example", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/enrol/"
    firm = Firm.objects.get()
    assert client.session[SESSION_FIRM_KEY] == firm.pk
    assert client.get("/")["Location"] == "/accounts/2fa/enrol/?next=/"


def test_signup_page_shows_field_errors(client, db):
    response = client.post("/accounts/signup/", {
        "firm_name": "", "email": "ann@acme.example", "password": "short"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "This field is required." in html
    response = client.post("/accounts/signup/", {
        "firm_name": "Acme", "email": "ann@acme.example", "password": "short"})
    assert "This password is too short. It must contain at least 12 characters." in response.content.decode()
    assert Firm.objects.count() == 0


# --- members -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_member_management_is_403_for_other_roles(verified_client_for, firm_a, role):
    client = verified_client_for(firm_a.member(role))
    response = client.get("/accounts/members/")
    assert response.status_code == 403
    assert "Only owners and admins of Alpha Capital can manage members." in response.content.decode()
    pk = firm_a.member("trader").pk
    assert client.post(f"/accounts/members/{pk}/remove/").status_code == 403
    assert client.post(f"/accounts/members/{pk}/role/", {"role": "owner"}).status_code == 403
    assert Membership.objects.get(pk=pk).role == "trader"


def test_members_page_lists_only_own_firm(verified_client_for, firm_a, firm_b):
    client = verified_client_for(firm_a.member("admin"))
    html = client.get("/accounts/members/").content.decode()
    assert "trader@alpha.example.com" in html
    assert "beta.example.com" not in html


def test_invite_from_page_shows_link_and_errors(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("admin"))
    response = client.post("/accounts/members/", {"email": "new@p.example", "role": "trader"}, follow=True)
    html = response.content.decode()
    assert "Invitation sent to new@p.example. Link: http://testserver/accounts/invite/" in html
    assert Invitation.objects.get().role == "trader"
    response = client.post("/accounts/members/", {"email": "new@p.example", "role": "owner"})
    assert response.status_code == 200
    assert "Select a valid choice. owner is not one of the available choices." in response.content.decode()
    response = client.post("/accounts/members/", {"email": "bad", "role": "trader"})
    assert "Enter a valid email address." in response.content.decode()
    assert Invitation.objects.count() == 1


def test_role_change_and_remove_from_page(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("owner"))
    trader = firm_a.member("trader")
    response = client.post(f"/accounts/members/{trader.pk}/role/", {"role": "analyst"}, follow=True)
    assert "trader@alpha.example.com is now analyst." in response.content.decode()
    assert Membership.objects.get(pk=trader.pk).role == "analyst"
    response = client.post(f"/accounts/members/{firm_a.member('owner').pk}/remove/", follow=True)
    assert "A firm needs at least one owner" in response.content.decode()
    response = client.post(f"/accounts/members/{trader.pk}/remove/", follow=True)
    assert "trader@alpha.example.com was removed from Alpha Capital." in response.content.decode()
    assert not Membership.objects.filter(pk=trader.pk).exists()


def test_other_firms_members_and_invitations_are_404(verified_client_for, firm_a, firm_b):
    client = verified_client_for(firm_a.member("owner"))
    target = firm_b.member("trader")
    assert client.post(f"/accounts/members/{target.pk}/role/", {"role": "analyst"}).status_code == 404
    assert client.post(f"/accounts/members/{target.pk}/remove/").status_code == 404
    invitation, _ = invitation_create(firm=firm_b.firm, email="x@y.example", role="analyst",
                                      invited_by=firm_b.member("owner"))
    assert client.post(f"/accounts/invitations/{invitation.pk}/revoke/").status_code == 404
    assert Membership.objects.get(pk=target.pk).role == "trader"
    invitation.refresh_from_db()
    assert invitation.revoked_at is None
    assert events("member.role_changed") == [] and events("invitation.revoked") == []


def test_revoke_invitation_from_page(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("admin"))
    invitation, _ = invitation_create(firm=firm_a.firm, email="x@y.example", role="analyst",
                                      invited_by=firm_a.member("owner"))
    response = client.post(f"/accounts/invitations/{invitation.pk}/revoke/", follow=True)
    assert "Invitation for x@y.example revoked." in response.content.decode()
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None


# --- invitation accept page ----------------------------------------------------------------------------------------


def test_new_person_accepts_invitation_on_page(client, firm_a):
    _, path = invitation_create(firm=firm_a.firm, email="new@p.example", role="analyst",
                                invited_by=firm_a.member("owner"))
    page = client.get(path)
    assert page.status_code == 200
    assert "You are invited as <strong>Analyst</strong> (new@p.example)." in page.content.decode()
    bad = client.post(path, {"full_name": "N", "password": "short"})
    assert "This password is too short." in bad.content.decode()
    response = client.post(path, {"full_name": "New Person", "password": PASSWORD})
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert Membership.objects.get(user__email="new@p.example").role == "analyst"
    assert client.get(path).status_code == 400  # used


def test_existing_user_must_log_in_then_accepts(client, firm_a, firm_b):
    _, path = invitation_create(firm=firm_a.firm, email="analyst@beta.example.com", role="trader",
                                invited_by=firm_a.member("owner"))
    page = client.get(path).content.decode()
    assert "An account with this email exists" in page
    assert client.post(path, {"password": PASSWORD}).status_code == 200
    assert not Membership.objects.filter(firm=firm_a.firm, user__email="analyst@beta.example.com").exists()
    client.post("/accounts/login/", {"username": "analyst@beta.example.com", "password": DEFAULT_PASSWORD})
    assert client.post(path)["Location"] == "/"
    assert client.session[SESSION_FIRM_KEY] == firm_a.firm.pk


def test_wrong_logged_in_user_gets_403(verified_client_for, firm_a, firm_b):
    _, path = invitation_create(firm=firm_a.firm, email="someone@else.example", role="trader",
                                invited_by=firm_a.member("owner"))
    client = verified_client_for(firm_b.member("analyst"))
    assert client.get(path).status_code == 403
    assert client.post(path).status_code == 403
    assert not User.objects.filter(email="someone@else.example").exists()


def test_tampered_link_page_is_400(client, db):
    response = client.get("/accounts/invite/not-a-token/")
    assert response.status_code == 400
    assert "This invitation link is invalid, expired, revoked or already used." in response.content.decode()


# --- firm switcher --------------------------------------------------------------------------------------------------


def test_switch_firm_only_to_own_firms(verified_client_for, firm_a, firm_b):
    member = firm_a.member("analyst")
    MembershipFactory(firm=firm_b.firm, user=member.user, role="analyst")
    client = verified_client_for(member)
    html = client.get("/").content.decode()
    assert f'<option value="{firm_b.firm.pk}">Beta Capital</option>' in html
    response = client.post("/accounts/switch-firm/", {"firm_id": firm_b.firm.pk, "next": "/"})
    assert response["Location"] == "/"
    assert client.session[SESSION_FIRM_KEY] == firm_b.firm.pk
    other = Firm.objects.create(name="Gamma", slug="gamma")
    assert client.post("/accounts/switch-firm/", {"firm_id": other.pk}).status_code == 404
    assert client.post("/accounts/switch-firm/", {"firm_id": "x"}).status_code == 404
    assert client.session[SESSION_FIRM_KEY] == firm_b.firm.pk
    assert client.get("/accounts/switch-firm/").status_code == 405


# --- settings -------------------------------------------------------------------------------------------------------


def test_admin_changes_firm_settings_with_field_errors(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("admin"))
    data = {"name": "Alpha Capital", "base_currency": "usd", "timezone": "Europe/London", "two_factor_policy": "all"}
    response = client.post("/accounts/settings/", data)
    assert "Use a three-letter ISO 4217 code in capitals, e.g. USD." in response.content.decode()
    response = client.post("/accounts/settings/", {**data, "timezone": "Nowhere/Town"})
    assert "Select a valid choice." in response.content.decode()
    response = client.post("/accounts/settings/", {**data, "base_currency": "GBP"}, follow=True)
    assert "Firm settings saved." in response.content.decode()
    firm_a.firm.refresh_from_db()
    assert (firm_a.firm.base_currency, firm_a.firm.timezone, firm_a.firm.two_factor_policy) == (
        "GBP", "Europe/London", "all")
    [event] = events("firm.settings_changed")
    assert event.after == {"base_currency": "GBP", "timezone": "Europe/London", "two_factor_policy": "all"}


def test_trader_sees_settings_but_cannot_change_them(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("trader"))
    assert client.get("/accounts/settings/").status_code == 200
    response = client.post("/accounts/settings/", {"name": "Hijacked", "base_currency": "EUR",
                                                   "timezone": "UTC", "two_factor_policy": "all"})
    assert response.status_code == 403
    firm_a.firm.refresh_from_db()
    assert firm_a.firm.name == "Alpha Capital"


# --- API tokens -------------------------------------------------------------------------------------------------------


def test_token_created_on_page_is_shown_once(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("trader"))
    response = client.post("/accounts/tokens/", {"name": "bot", "scopes": ["read", "trade"], "expires_days": "30"})
    assert response.status_code == 200
    html = response.content.decode()
    secret = re.search(r'id="token-secret">(oct_[0-9a-f]{12}_[^<]+)<', html).group(1)
    token = ApiToken.objects.get()
    assert (token.name, token.scopes, token.membership_id) == ("bot", ["read", "trade"], firm_a.member("trader").pk)
    assert secret.startswith(f"oct_{token.prefix}_")
    assert secret not in client.get("/accounts/tokens/").content.decode()


def test_token_form_errors(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("trader"))
    response = client.post("/accounts/tokens/", {"name": "", "scopes": ["root"], "expires_days": "0"})
    html = response.content.decode()
    assert "This field is required." in html
    assert "Select a valid choice. root is not one of the available choices." in html
    assert "Ensure this value is greater than or equal to 1." in html
    assert ApiToken.objects.count() == 0


def test_creating_a_token_needs_a_verified_session(client, firm_a):
    client.post("/accounts/login/", {"username": "analyst@alpha.example.com", "password": DEFAULT_PASSWORD})
    assert client.get("/accounts/tokens/").status_code == 200
    response = client.post("/accounts/tokens/", {"name": "x", "scopes": ["read"]})
    assert response.status_code == 403
    assert ApiToken.objects.count() == 0


def test_token_lists_and_revocation_respect_roles_and_firms(verified_client_for, firm_a, firm_b, make_token):
    make_token(firm_a.member("trader"), ["read"])
    make_token(firm_a.member("analyst"), ["read"])
    make_token(firm_b.member("trader"), ["read"])
    trader_token = ApiToken.objects.get(membership=firm_a.member("trader"))
    analyst_token = ApiToken.objects.get(membership=firm_a.member("analyst"))
    beta_token = ApiToken.objects.get(firm=firm_b.firm)

    analyst = verified_client_for(firm_a.member("analyst"))
    assert [t.pk for t in analyst.get("/accounts/tokens/").context["tokens"]] == [analyst_token.pk]
    assert analyst.post(f"/accounts/tokens/{trader_token.pk}/revoke/").status_code == 404
    assert analyst.post(f"/accounts/tokens/{beta_token.pk}/revoke/").status_code == 404

    owner = verified_client_for(firm_a.member("owner"))
    assert sorted(t.pk for t in owner.get("/accounts/tokens/").context["tokens"]) == sorted(
        [trader_token.pk, analyst_token.pk])
    assert owner.post(f"/accounts/tokens/{beta_token.pk}/revoke/").status_code == 404
    assert owner.post(f"/accounts/tokens/{trader_token.pk}/revoke/")["Location"] == "/accounts/tokens/"
    trader_token.refresh_from_db()
    beta_token.refresh_from_db()
    assert trader_token.revoked_at is not None and beta_token.revoked_at is None
    assert len(events("token.revoked")) == 1


# --- passwords --------------------------------------------------------------------------------------------------------


def test_password_change_logs_out_other_sessions(verified_client_for, firm_a):
    member = firm_a.member("trader")
    other = Client()
    other.force_login(member.user)
    other_key = other.session.session_key
    client = verified_client_for(member)
    response = client.post("/accounts/password/change/", {
        "old_password": DEFAULT_PASSWORD, "new_password1": PASSWORD, "new_password2": PASSWORD})
    assert response["Location"] == "/accounts/settings/"
    assert client.get("/accounts/settings/").status_code == 200  # this session survives
    assert other.get("/").status_code == 302  # the other one is logged out
    assert not Session.objects.filter(session_key=other_key).exists()  # flushed: its auth hash no longer matches


def test_password_reset_sends_a_working_link(client, firm_a, mailoutbox):
    response = client.post("/accounts/password/reset/", {"email": "analyst@alpha.example.com"})
    assert response["Location"] == "/accounts/password/reset/done/"
    [mail] = mailoutbox
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.body).group(1)
    page = client.get(link, follow=True)
    assert page.status_code == 200
    set_url = page.redirect_chain[-1][0]
    response = client.post(set_url, {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert response["Location"] == "/accounts/password/reset/complete/"
    assert User.objects.get(email="analyst@alpha.example.com").check_password(PASSWORD)


def test_device_of_verified_fixture_exists(verified_client_for, firm_a):
    verified_client_for(firm_a.member("owner"))
    assert TOTPDevice.objects.filter(user=firm_a.member("owner").user, confirmed=True).count() == 1


@pytest.mark.parametrize("role", ["owner", "admin", "trader", "analyst", "compliance"])
def test_every_role_gets_404_for_another_firms_member_objects(verified_client_for, firm_a, firm_b, role):
    client = verified_client_for(firm_a.member(role))
    target = firm_b.member("analyst")
    invitation, _ = invitation_create(firm=firm_b.firm, email="x@y.example", role="analyst",
                                      invited_by=firm_b.member("owner"))
    assert client.post(f"/accounts/members/{target.pk}/role/", {"role": "owner"}).status_code == 404
    assert client.post(f"/accounts/members/{target.pk}/remove/").status_code == 404
    assert client.post(f"/accounts/invitations/{invitation.pk}/revoke/").status_code == 404
    assert Membership.objects.get(pk=target.pk).role == "analyst"


def test_logged_in_user_owing_2fa_verifies_before_accepting(client, firm_a, firm_b, enrolled):
    enrolled(firm_b.member("trader").user)
    _, path = invitation_create(firm=firm_a.firm, email="trader@beta.example.com", role="analyst",
                                invited_by=firm_a.member("owner"))
    client.post("/accounts/login/", {"username": "trader@beta.example.com", "password": DEFAULT_PASSWORD})
    response = client.post(path)
    from urllib.parse import quote
    assert response["Location"] == f"/accounts/2fa/verify/?next={quote(path, safe='')}"
    assert not Membership.objects.filter(firm=firm_a.firm, user__email="trader@beta.example.com").exists()


def test_role_change_over_htmx_returns_the_row(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("owner"))
    trader = firm_a.member("trader")
    response = client.post(f"/accounts/members/{trader.pk}/role/", {"role": "analyst"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith(f'<tr id="member-{trader.pk}">')
    assert '<option value="analyst" selected>Analyst</option>' in html
    assert '<span class="row-msg good" role="status">Saved.</span>' in html
    owner = firm_a.member("owner")
    response = client.post(f"/accounts/members/{owner.pk}/role/", {"role": "admin"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "A firm needs at least one owner: make someone else an owner first." in html
    assert '<option value="owner" selected>Owner</option>' in html
