"""One error shape everywhere: malformed JSON, missing/unknown fields, wrong types, auth, 404s."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.accounts.models import ApiToken, Invitation


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_malformed_json_is_400_malformed_request(firm_a, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    response = client.generic("POST", "/api/v1/invitations/", '{"email": "x@example.com", ', content_type="application/json")
    error = assert_error(response, 400, "MALFORMED_REQUEST")
    assert error["message"].startswith("JSON parse error")
    assert not Invitation.objects.exists()


def test_json_that_is_not_an_object_is_400(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).post("/api/v1/invitations/", [1, 2], format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert list(error["fields"]) == ["non_field_errors"]


def test_wrong_types_name_each_field(firm_a, api_client_for):
    response = api_client_for(firm_a.member("trader")).post(
        "/api/v1/tokens/", {"name": ["a"], "scopes": "read", "expires_days": "soon"}, format="json"
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert sorted(error["fields"]) == ["expires_days", "name", "scopes"]
    assert error["fields"]["expires_days"] == ["A valid integer is required."]


def test_unknown_fields_are_named(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).post(
        "/api/v1/invitations/", {"email": "x@example.com", "role": "analyst", "firm": 99, "is_admin": True},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["fields"] == {"firm": ["Unknown field."], "is_admin": ["Unknown field."]}
    assert not Invitation.objects.exists()


def test_non_json_body_is_415(firm_a, api_client_for):
    response = api_client_for(firm_a.member("owner")).post(
        "/api/v1/invitations/", "email=x@example.com&role=analyst", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_domain_error_keeps_its_status_and_code(firm_a, api_client_for):
    owner = firm_a.member("owner")
    response = api_client_for(owner).delete(f"/api/v1/members/{owner.pk}/")
    assert_error(response, 409, "LAST_OWNER")


def test_garbage_bearer_token_is_401(db, client):
    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert assert_error(response, 401, "NOT_AUTHENTICATED")["message"] == "Invalid token."


def test_wrong_secret_for_a_real_prefix_is_401(firm_a, make_token, client):
    secret = make_token(firm_a.member("trader"))
    forged = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert assert_error(response, 401, "NOT_AUTHENTICATED")["message"] == "Invalid token."


def test_expired_token_is_401(firm_a, make_token, client):
    secret = make_token(firm_a.member("trader"), expires_days=1)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert assert_error(response, 401, "NOT_AUTHENTICATED")["message"] == "This token has expired."


def test_unknown_api_route_is_json_404(db, client):
    response = client.get("/api/v1/no-such-thing/")
    error = assert_error(response, 404, "NOT_FOUND")
    assert error["message"] == "No such endpoint. The API lives under /api/v1/; see /api/docs/."
    assert response["Content-Type"] == "application/json"


def test_unknown_page_route_stays_html_404(db, client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_unknown_object_id_is_404_in_the_shape(firm_a, api_client_for):
    assert_error(api_client_for(firm_a.member("owner")).get("/api/v1/members/999999/"), 404, "NOT_FOUND")


@override_settings(DEBUG_PROPAGATE_EXCEPTIONS=False)
def test_unhandled_error_under_api_is_json_500(firm_a, api_client_for, monkeypatch):
    from apps.accounts import api as accounts_api

    def boom(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(accounts_api.selectors, "membership_list_for_user", boom)
    client = api_client_for(firm_a.member("owner"))
    client.raise_request_exception = False
    response = client.get("/api/v1/me/")
    error = assert_error(response, 500, "SERVER_ERROR")
    assert "boom" not in error["message"]
    assert response["X-Request-ID"] in error["message"]


@pytest.mark.parametrize("path", ["/api/v1/me/", "/api/v1/members/", "/api/v1/tokens/", "/api/v1/firm/"])
def test_authenticated_user_without_a_firm_is_403(db, client, path):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    assert_error(client.get(path), 403, "PERMISSION_DENIED")
