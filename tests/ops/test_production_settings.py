"""Production settings (DEBUG=0): deploy checks clean, refusal without real secrets, and the
security headers on pages, the API and the admin (reliability targets 35 and 41)."""

from __future__ import annotations

import importlib.util
import os
import secrets
from http.cookies import SimpleCookie
from unittest import mock

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings

from tests.ops.support import ROOT, clean_env, manage

PROD_HOST = "octopus.example.com"
REAL_KEY = secrets.token_urlsafe(64)
FIELD_KEY = "5hWkFqC0sZ0zq1b0M3mB0VQk7b8mY6yHn2cJ9pX4tLw="  # a well-formed Fernet key (test only)


def prod_env(**overrides: str) -> dict[str, str]:
    env = clean_env(None, DEBUG="0", SECRET_KEY=REAL_KEY, ALLOWED_HOSTS=PROD_HOST, OCTOPUS_FIELD_KEYS=FIELD_KEY,
                    DATABASE_URL=settings.DATABASE_URL, REDIS_URL=settings.REDIS_URL)
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_check_deploy_reports_no_security_warning():
    result = manage("check", "--deploy", env=prod_env())
    output = result.stdout + result.stderr
    assert "security.W" not in output, output
    assert "csp." not in output.lower(), output


def test_check_deploy_with_fail_level_warning_exits_0():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=prod_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY must be set to a random value of 50+ characters when DEBUG=0."),
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set to a random value of 50+ characters when DEBUG=0."),
        ({"SECRET_KEY": "dev-insecure-octopus-key-do-not-use-in-production-0123456789abcdef"},
         "SECRET_KEY must be set to a random value of 50+ characters when DEBUG=0."),
        ({"SECRET_KEY": "short-but-not-empty"}, "SECRET_KEY must be set to a random value of 50+ characters"),
        ({"REDIS_URL": None}, "REDIS_URL must be set when DEBUG=0 (production never uses the embedded services)."),
        ({"DATABASE_URL": None}, "DATABASE_URL must be set when DEBUG=0"),
        ({"REDIS_URL": "redis://:changeme@127.0.0.1:6379"}, "REDIS_URL uses a default password"),
        ({"DATABASE_URL": "postgres://octopus:postgres@db:5432/octopus"}, "DATABASE_URL uses a default password"),
        ({"OCTOPUS_FIELD_KEYS": None}, "OCTOPUS_FIELD_KEYS must be set when DEBUG=0 (comma-separated Fernet keys)."),
        ({"OCTOPUS_FIELD_KEYS": f"{FIELD_KEY},not-a-key"}, "OCTOPUS_FIELD_KEYS entry 2 is not a Fernet key"),
    ],
)
def test_production_refuses_to_start_without_real_secrets(overrides, message):
    result = manage("check", env=prod_env(**overrides), timeout=60)
    assert result.returncode == 1
    assert "django.core.exceptions.ImproperlyConfigured: " + message in result.stderr


# --- response headers under the production settings ---------------------------------------------


def production_settings() -> dict:
    """octopus/settings.py evaluated with DEBUG=0 (a fresh module; the running settings stay)."""
    spec = importlib.util.spec_from_file_location("octopus_settings_production", ROOT / "octopus" / "settings.py")
    module = importlib.util.module_from_spec(spec)
    env = {"DEBUG": "0", "SECRET_KEY": REAL_KEY, "ALLOWED_HOSTS": PROD_HOST, "OCTOPUS_FIELD_KEYS": FIELD_KEY,
           "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL}
    with mock.patch.dict(os.environ, env):
        spec.loader.exec_module(module)
    keys = [k for k in dir(module) if k.startswith(("SECURE_", "SESSION_COOKIE_", "CSRF_COOKIE_"))]
    keys += ["DEBUG", "ALLOWED_HOSTS", "X_FRAME_OPTIONS", "CONTENT_SECURITY_POLICY", "SECRET_KEY"]
    return {k: getattr(module, k) for k in keys}


@pytest.fixture
def prod(db):
    values = production_settings()
    assert values["DEBUG"] is False
    with override_settings(**values):
        yield values


def _assert_security_headers(response):
    hsts = response["Strict-Transport-Security"]
    assert "includeSubDomains" in hsts
    max_age = int(hsts.split("max-age=")[1].split(";")[0])
    assert max_age >= 365 * 24 * 3600
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/api/v1/me/", "/api/schema/", "/admin/login/",
                                  "/healthz"])
def test_security_headers_on_pages_api_and_admin(prod, path):
    response = Client().get(path, secure=True, HTTP_HOST=PROD_HOST)
    assert response.status_code < 500
    _assert_security_headers(response)


def test_plain_http_is_redirected_to_https(prod):
    response = Client().get("/admin/login/", HTTP_HOST=PROD_HOST)
    assert response.status_code == 301
    assert response["Location"] == f"https://{PROD_HOST}/admin/login/"


def test_login_page_sets_a_secure_httponly_lax_csrf_cookie(prod):
    from django.urls import reverse

    response = Client().get(reverse("accounts:login"), secure=True, HTTP_HOST=PROD_HOST)
    assert response.status_code == 200
    cookie = response.cookies[settings.CSRF_COOKIE_NAME]
    assert (bool(cookie["secure"]), bool(cookie["httponly"]), cookie["samesite"]) == (True, True, "Lax")


def test_session_cookie_is_secure_httponly_lax(prod):
    from django.contrib.sessions.middleware import SessionMiddleware

    def view(request):
        request.session["seen"] = True
        return HttpResponse("ok")

    request = RequestFactory().get("/", secure=True, HTTP_HOST=PROD_HOST)
    response = SessionMiddleware(view)(request)
    cookie = SimpleCookie(response.cookies.output(header=""))[settings.SESSION_COOKIE_NAME]
    assert (bool(cookie["secure"]), bool(cookie["httponly"]), cookie["samesite"]) == (True, True, "Lax")
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE
