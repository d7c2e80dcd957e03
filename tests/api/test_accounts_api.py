"""The accounts API: /me/, /firm/, /members/, /invitations/, /tokens/ — behaviour per role and scope."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.accounts.models import ApiToken, Firm, Invitation, Membership, Role
from apps.audit.models import AuditEvent
from apps.core.tenancy import unscoped
from tests.factories import MembershipFactory


def audit_actions(firm) -> list[str]:
    with unscoped():
        return list(AuditEvent.objects.unscoped().filter(firm=firm).order_by("seq").values_list("action", flat=True))


# --- /me/ -----------------------------------------------------------------------------------------


def test_me_with_token_shows_user_firm_role_and_scopes(firm_a, api_client_for):
    trader = firm_a.member("trader")
    client = api_client_for(trader, scopes=("read", "trade"))
    response = client.get("/api/v1/me/")
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": trader.user_id, "email": "trader@alpha.example.com", "full_name": trader.user.full_name}
    assert body["firm"]["id"] == firm_a.firm.pk
    assert body["firm"]["name"] == "Alpha Capital"
    assert body["role"] == "trader"
    assert body["token"]["scopes"] == ["read", "trade"]
    assert body["token"]["prefix"] == ApiToken.objects.get(membership=trader).prefix
    assert body["memberships"] == [{"firm_id": firm_a.firm.pk, "firm_name": "Alpha Capital", "role": "trader"}]


def test_me_with_verified_session_has_no_token(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    response = client.get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["token"] is None
    assert response.json()["role"] == "owner"


def test_me_without_credentials_is_401_in_the_error_shape(db, client):
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "NOT_AUTHENTICATED"
    assert response["WWW-Authenticate"] == "Bearer"


# --- /firm/ ---------------------------------------------------------------------------------------


def test_any_member_reads_the_firm(firm_a, api_client_for):
    response = api_client_for(firm_a.member("analyst"), scopes=("read",)).get("/api/v1/firm/")
    assert response.status_code == 200
    assert response.json() == {
        "id": firm_a.firm.pk,
        "name": "Alpha Capital",
        "slug": "alpha-capital",
        "base_currency": "USD",
        "timezone": "America/New_York",
        "two_factor_policy": "default",
        "created_at": response.json()["created_at"],
    }


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_manager_patches_firm_settings_and_it_is_audited(firm_a, api_client_for, role):
    client = api_client_for(firm_a.member(role))
    response = client.patch(
        "/api/v1/firm/", {"name": "Alpha Partners", "timezone": "Europe/London", "two_factor_policy": "all"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Alpha Partners"
    firm = Firm.objects.get(pk=firm_a.firm.pk)
    assert (firm.name, firm.timezone, firm.two_factor_policy, firm.base_currency) == (
        "Alpha Partners", "Europe/London", "all", "USD"
    )
    assert audit_actions(firm)[-1] == "firm.settings_changed"


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_non_manager_cannot_patch_firm(firm_a, api_client_for, role):
    response = api_client_for(firm_a.member(role)).patch("/api/v1/firm/", {"name": "Hacked"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert Firm.objects.get(pk=firm_a.firm.pk).name == "Alpha Capital"


def test_firm_patch_with_bad_timezone_names_the_field(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).patch("/api/v1/firm/", {"timezone": "Mars/Base"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["timezone"]
    assert Firm.objects.get(pk=firm_a.firm.pk).timezone == "America/New_York"


def test_firm_patch_with_nothing_to_change_is_400(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).patch("/api/v1/firm/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "non_field_errors": ["Send at least 1 of: base_currency, name, timezone, two_factor_policy."]
    }


def test_firm_patch_slug_is_an_unknown_field(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).patch("/api/v1/firm/", {"slug": "mine"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"slug": ["Unknown field."]}


# --- /members/ ------------------------------------------------------------------------------------


def test_members_list_is_the_firm_only_ordered_by_email(firm_a, firm_b, api_client_for):
    response = api_client_for(firm_a.member("analyst"), scopes=("read",)).get("/api/v1/members/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5
    assert [m["email"] for m in body["results"]] == [f"{r}@alpha.example.com" for r in sorted(Role.values)]


def test_member_detail(firm_a, api_client_for):
    trader = firm_a.member("trader")
    response = api_client_for(firm_a.member("analyst"), scopes=("read",)).get(f"/api/v1/members/{trader.pk}/")
    assert response.status_code == 200
    assert response.json()["role"] == "trader"
    assert response.json()["email"] == "trader@alpha.example.com"


def test_owner_changes_a_role_audited(firm_a, api_client_for):
    analyst = firm_a.member("analyst")
    response = api_client_for(firm_a.member("owner")).patch(
        f"/api/v1/members/{analyst.pk}/", {"role": "trader"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["role"] == "trader"
    assert Membership.objects.get(pk=analyst.pk).role == "trader"
    assert audit_actions(firm_a.firm)[-1] == "member.role_changed"


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_non_manager_cannot_change_roles_or_remove(firm_a, api_client_for, role):
    target = firm_a.member("analyst" if role != "analyst" else "trader")
    client = api_client_for(firm_a.member(role))
    response = client.patch(f"/api/v1/members/{target.pk}/", {"role": "owner"}, format="json")
    assert response.status_code == 403
    response = client.delete(f"/api/v1/members/{target.pk}/")
    assert response.status_code == 403
    assert Membership.objects.get(pk=target.pk).role == target.role


def test_role_change_with_invalid_role_names_the_field(firm_a, api_client_for):
    analyst = firm_a.member("analyst")
    response = api_client_for(firm_a.member("owner")).patch(
        f"/api/v1/members/{analyst.pk}/", {"role": "emperor"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["role"]


def test_last_owner_cannot_be_demoted_409(firm_a, api_client_for):
    owner = firm_a.member("owner")
    response = api_client_for(owner).patch(f"/api/v1/members/{owner.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "LAST_OWNER"
    assert Membership.objects.get(pk=owner.pk).role == "owner"


def test_admin_removes_a_member_audited(firm_a, api_client_for):
    analyst = firm_a.member("analyst")
    response = api_client_for(firm_a.member("admin")).delete(f"/api/v1/members/{analyst.pk}/")
    assert response.status_code == 204
    assert not Membership.objects.filter(pk=analyst.pk).exists()
    assert audit_actions(firm_a.firm)[-1] == "member.removed"


def test_put_on_a_member_is_405(firm_a, api_client_for):
    analyst = firm_a.member("analyst")
    response = api_client_for(firm_a.member("owner")).put(f"/api/v1/members/{analyst.pk}/", {"role": "trader"})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


# --- /invitations/ --------------------------------------------------------------------------------


def test_owner_invites_and_gets_the_link_once(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).post(
        "/api/v1/invitations/", {"email": "New.Person@Example.com", "role": "analyst"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "new.person@example.com"
    assert body["role"] == "analyst"
    assert body["is_open"] is True
    assert body["invited_by"] == "owner@alpha.example.com"
    assert "/accounts/" in body["url"]
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.firm_id == firm_a.firm.pk
    assert audit_actions(firm_a.firm)[-1] == "invitation.created"
    listed = api_client_for(firm_a.member("admin")).get("/api/v1/invitations/").json()
    assert [i["email"] for i in listed["results"]] == ["new.person@example.com"]
    assert "url" not in listed["results"][0]


def test_invitation_email_is_sent_after_commit(firm_a, api_client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(firm_a.member("owner")).post(
            "/api/v1/invitations/", {"email": "x@example.com", "role": "trader"}, format="json"
        )
    assert response.status_code == 201
    assert [m.to for m in mail.outbox] == [["x@example.com"]]


def test_admin_cannot_invite_an_owner(firm_a, api_client_for):
    response = api_client_for(firm_a.member("admin")).post(
        "/api/v1/invitations/", {"email": "boss@example.com", "role": "owner"}, format="json"
    )
    assert response.status_code == 403
    assert not Invitation.objects.filter(email="boss@example.com").exists()


def test_invite_missing_fields_names_each(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).post("/api/v1/invitations/", {}, format="json")
    assert response.status_code == 400
    assert sorted(response.json()["error"]["fields"]) == ["email", "role"]
    assert response.json()["error"]["message"] == "Invalid input: email, role."


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_non_manager_cannot_list_or_create_invitations(firm_a, api_client_for, role):
    client = api_client_for(firm_a.member(role))
    assert client.get("/api/v1/invitations/").status_code == 403
    response = client.post("/api/v1/invitations/", {"email": "y@example.com", "role": "analyst"}, format="json")
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_revoke_invitation(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    created = client.post("/api/v1/invitations/", {"email": "z@example.com", "role": "analyst"}, format="json").json()
    response = client.delete(f"/api/v1/invitations/{created['id']}/")
    assert response.status_code == 204
    assert Invitation.objects.get(pk=created["id"]).revoked_at is not None
    assert audit_actions(firm_a.firm)[-1] == "invitation.revoked"


# --- /tokens/ -------------------------------------------------------------------------------------


def test_create_token_returns_secret_once_and_stores_only_a_hash(firm_a, api_client_for):
    trader = firm_a.member("trader")
    client = api_client_for(trader, scopes=("read", "admin"))
    response = client.post(
        "/api/v1/tokens/", {"name": "my bot", "scopes": ["trade", "read"], "expires_days": 30}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["token"]
    assert secret.startswith(f"oct_{body['prefix']}_")
    assert body["scopes"] == ["read", "trade"]
    assert body["member_email"] == "trader@alpha.example.com"
    assert body["expires_at"] is not None
    row = ApiToken.objects.get(pk=body["id"])
    stored = list(ApiToken.objects.filter(pk=row.pk).values().get().values())
    secret_part = secret.rsplit("_", 1)[1]
    assert all(secret_part not in str(value) for value in stored)
    assert row.secret_hash != secret_part and len(row.secret_hash) == 64
    # it works, and it is never shown again
    new_client = type(client)()
    new_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert new_client.get("/api/v1/me/").json()["token"]["id"] == row.pk
    detail = client.get(f"/api/v1/tokens/{row.pk}/").json()
    listed = client.get("/api/v1/tokens/").json()
    assert "token" not in detail
    assert secret_part not in str(listed) and secret_part not in str(detail)
    assert audit_actions(firm_a.firm)[-1] == "token.created"


def test_create_token_bad_input_names_fields(firm_a, api_client_for):
    client = api_client_for(firm_a.member("trader"))
    response = client.post("/api/v1/tokens/", {"scopes": ["root"], "expires_days": 0, "colour": "red"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"colour": ["Unknown field."]}
    response = client.post("/api/v1/tokens/", {"scopes": ["root"], "expires_days": 0}, format="json")
    assert response.status_code == 400
    assert sorted(response.json()["error"]["fields"]) == ["expires_days", "name", "scopes"]
    response = client.post("/api/v1/tokens/", {"name": "x", "scopes": []}, format="json")
    assert list(response.json()["error"]["fields"]) == ["scopes"]
    assert ApiToken.objects.filter(membership=firm_a.member("trader")).count() == 1  # only the client's own


def test_create_token_needs_admin_scope_with_a_token(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"), scopes=("read", "trade"))
    response = client.post("/api/v1/tokens/", {"name": "x", "scopes": ["read"]}, format="json")
    assert response.status_code == 403
    assert ApiToken.objects.count() == 1


def test_create_token_with_verified_session(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("trader"))
    response = client.post("/api/v1/tokens/", {"name": "web", "scopes": ["read"]}, content_type="application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["token"].startswith("oct_")


def test_create_token_with_unverified_session_is_403(firm_a, client):
    analyst = firm_a.member("analyst")  # 2FA not required for analysts by default: session is not OTP-verified
    client.force_login(analyst.user)
    response = client.post("/api/v1/tokens/", {"name": "web", "scopes": ["read"]}, content_type="application/json")
    assert response.status_code == 403
    assert "two-factor" in response.json()["error"]["message"]
    assert not ApiToken.objects.exists()


def test_token_list_visibility_by_role(firm_a, api_client_for, make_token):
    make_token(firm_a.member("analyst"))
    make_token(firm_a.member("trader"))
    trader_view = api_client_for(firm_a.member("trader")).get("/api/v1/tokens/").json()
    assert {t["member_email"] for t in trader_view["results"]} == {"trader@alpha.example.com"}
    assert trader_view["count"] == 2  # the one made above + the client's own
    admin_view = api_client_for(firm_a.member("admin")).get("/api/v1/tokens/").json()
    assert admin_view["count"] == 4
    assert set(admin_view["results"][0]) == {
        "id", "name", "prefix", "scopes", "member_id", "member_email", "created_at", "expires_at",
        "last_used_at", "revoked_at", "is_active",
    }


def test_token_list_member_filter(firm_a, firm_b, api_client_for, make_token):
    make_token(firm_a.member("analyst"))
    make_token(firm_b.member("analyst"))
    client = api_client_for(firm_a.member("owner"))
    own = client.get(f"/api/v1/tokens/?member={firm_a.member('analyst').pk}").json()
    assert own["count"] == 1 and own["results"][0]["member_email"] == "analyst@alpha.example.com"
    smuggled = client.get(f"/api/v1/tokens/?member={firm_b.member('analyst').pk}")
    assert smuggled.status_code == 200 and smuggled.json()["count"] == 0
    bad = client.get("/api/v1/tokens/?member=abc")
    assert bad.status_code == 400 and list(bad.json()["error"]["fields"]) == ["member"]


def test_trader_cannot_see_or_revoke_anothers_token_404(firm_a, api_client_for, make_token):
    make_token(firm_a.member("analyst"))
    analyst_token = ApiToken.objects.get(membership=firm_a.member("analyst"))
    client = api_client_for(firm_a.member("trader"))
    assert client.get(f"/api/v1/tokens/{analyst_token.pk}/").status_code == 404
    assert client.delete(f"/api/v1/tokens/{analyst_token.pk}/").status_code == 404
    assert ApiToken.objects.get(pk=analyst_token.pk).revoked_at is None


def test_admin_revokes_any_token_of_the_firm_and_it_is_401_next(firm_a, api_client_for, make_token):
    secret = make_token(firm_a.member("trader"), scopes=("read",))
    token = ApiToken.objects.get(membership=firm_a.member("trader"))
    victim = type(api_client_for(firm_a.member("admin")))()
    victim.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert victim.get("/api/v1/me/").status_code == 200
    response = api_client_for(firm_a.member("admin")).delete(f"/api/v1/tokens/{token.pk}/")
    assert response.status_code == 204
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert audit_actions(firm_a.firm)[-1] == "token.revoked"
    after = victim.get("/api/v1/me/")
    assert after.status_code == 401
    assert after.json()["error"] == {"code": "NOT_AUTHENTICATED", "message": "This token has been revoked.", "fields": {}}


def test_revoke_own_token(firm_a, api_client_for):
    client = api_client_for(firm_a.member("analyst"))
    token = ApiToken.objects.get(membership=firm_a.member("analyst"))
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert client.get("/api/v1/me/").status_code == 401


# --- query counts: lists do not grow with their rows ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "add_rows", "expected"),
    [
        ("/api/v1/members/", lambda world, n: [
            MembershipFactory(firm=world.firm, role="analyst") for _ in range(n)], 3),
        ("/api/v1/tokens/", lambda world, n: [
            make_token_row(world.member("analyst")) for _ in range(n)], 3),
        ("/api/v1/invitations/", lambda world, n: [
            Invitation.objects.create(firm=world.firm, email=f"i{i}@example.com", role="analyst",
                                      invited_by=world.member("owner").user,
                                      expires_at=timezone.now() + timedelta(days=1)) for i in range(n)], 3),
    ],
)
def test_list_query_count_is_constant(firm_a, api_client_for, path, add_rows, expected):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api_client_for(firm_a.member("owner"), scopes=("read",))
    client.get(path)  # warm up: the token's last_used_at write happens on the first request only

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(path).status_code == 200
        return len(ctx.captured_queries)

    add_rows(firm_a, 1)  # an empty page skips its fetch: compare one row against nine
    small = count()
    add_rows(firm_a, 8)
    assert count() == small
    assert small == expected  # token lookup, count, page (related rows joined, never per row)


def make_token_row(membership):
    from apps.accounts.services import token_create
    from apps.audit.services import Actor

    return token_create(membership=membership, name="x", scopes=["read"], actor=Actor.for_user(membership.user))


def test_inviting_twice_is_409_conflict(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    body = {"email": "twice@example.com", "role": "analyst"}
    assert client.post("/api/v1/invitations/", body, format="json").status_code == 201
    response = client.post("/api/v1/invitations/", body, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVITATION_EXISTS"
    assert list(response.json()["error"]["fields"]) == ["email"]
    assert Invitation.objects.filter(email="twice@example.com").count() == 1


def test_inviting_a_member_is_409(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).post(
        "/api/v1/invitations/", {"email": "trader@alpha.example.com", "role": "analyst"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ALREADY_MEMBER"
