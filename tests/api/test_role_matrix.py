"""Who may do what in their own firm: roles (target 34) and token scopes (target 39)."""

from __future__ import annotations

import pytest

from apps.accounts.models import ApiToken, Role

ROLES = list(Role.values)
MANAGERS = {"owner", "admin"}


def _request(client, method: str, path: str, body=None):
    return getattr(client, method.lower())(path, body, format="json") if body is not None else getattr(
        client, method.lower()
    )(path)


def operations(world):
    """(name, method, path, body, roles allowed) for every accounts operation on firm A's own objects."""
    analyst = world.member("analyst")
    return [
        ("me", "GET", "/api/v1/me/", None, set(ROLES)),
        ("firm-read", "GET", "/api/v1/firm/", None, set(ROLES)),
        ("firm-patch", "PATCH", "/api/v1/firm/", {"base_currency": "EUR"}, MANAGERS),
        ("members-list", "GET", "/api/v1/members/", None, set(ROLES)),
        ("member-read", "GET", f"/api/v1/members/{analyst.pk}/", None, set(ROLES)),
        ("member-role", "PATCH", f"/api/v1/members/{analyst.pk}/", {"role": "analyst"}, MANAGERS),
        ("invitations-list", "GET", "/api/v1/invitations/", None, MANAGERS),
        ("invite", "POST", "/api/v1/invitations/", {"email": "n@example.com", "role": "analyst"}, MANAGERS),
        ("tokens-list", "GET", "/api/v1/tokens/", None, set(ROLES)),
        ("token-create", "POST", "/api/v1/tokens/", {"name": "t", "scopes": ["read"]}, set(ROLES)),
    ]


OK = {"GET": 200, "PATCH": 200, "POST": 201, "DELETE": 204}


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(firm_a, api_client_for, role):
    client = api_client_for(firm_a.member(role), scopes=("read", "trade", "admin"))
    outcome = {}
    for name, method, path, body, allowed in operations(firm_a):
        response = _request(client, method, path, body)
        outcome[name] = response.status_code
        expected = OK[method] if role in allowed else 403
        assert response.status_code == expected, (name, role, response.content)
        if expected == 403:
            assert response.json()["error"]["code"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("role", ["analyst", "compliance", "trader"])
def test_read_only_and_trader_roles_cannot_remove_members(firm_a, api_client_for, role):
    target = firm_a.member("admin")
    response = api_client_for(firm_a.member(role)).delete(f"/api/v1/members/{target.pk}/")
    assert response.status_code == 403
    assert target.__class__.objects.filter(pk=target.pk).exists()


@pytest.mark.parametrize(
    ("scopes", "write_status"),
    [(("read",), 403), (("read", "trade"), 403), (("read", "admin"), 200)],
)
def test_token_scope_decides_writes(firm_a, api_client_for, scopes, write_status):
    client = api_client_for(firm_a.member("owner"), scopes=scopes)
    assert client.get("/api/v1/firm/").status_code == 200
    response = client.patch("/api/v1/firm/", {"base_currency": "EUR"}, format="json")
    assert response.status_code == write_status
    if write_status == 403:
        assert response.json()["error"]["message"] == "This token lacks the 'admin' scope."


def test_read_scoped_token_cannot_post(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"), scopes=("read",))
    response = client.post("/api/v1/tokens/", {"name": "escalate", "scopes": ["admin"]}, format="json")
    assert response.status_code == 403
    response = client.post("/api/v1/invitations/", {"email": "n@example.com", "role": "owner"}, format="json")
    assert response.status_code == 403
    assert ApiToken.objects.count() == 1


def test_token_without_read_scope_cannot_read(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"), scopes=("trade",))
    response = client.get("/api/v1/members/")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This token lacks the 'read' scope."


def test_session_owing_2fa_is_refused(firm_a, client):
    trader = firm_a.member("trader")  # 2FA required for traders; this session never verified
    client.force_login(trader.user)
    response = client.get("/api/v1/me/")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Two-factor verification is required for this session."


def test_session_writes_need_csrf(firm_a, verified_client_for):
    from django.test import Client

    verified = verified_client_for(firm_a.member("owner"))
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = verified.cookies
    response = strict.patch("/api/v1/firm/", {"base_currency": "EUR"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
