"""The API docs in real Chromium under the production CSP: they render, with no CSP violation and
no request leaving our origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import browser, page  # noqa: F401 - shared Playwright fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def _external_requests(pg, live_url: str) -> list[str]:
    seen: list[str] = []
    pg.on("request", lambda r: seen.append(r.url) if not r.url.startswith((live_url, "data:", "blob:")) else None)
    return seen


def test_swagger_ui_renders_under_the_csp(page, live_server):  # noqa: F811
    external = _external_requests(page, live_server.url)
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Octopus API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("text=/api/v1/members/{id}/")
    assert page.locator(".opblock").count() >= 14
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "api_docs_swagger.png"), full_page=False)
    assert [e for e in page.console_errors if "Content Security Policy" in e or "Refused" in e] == []
    assert [e for e in page.console_errors if e.startswith("404 ")] == []
    assert external == []


def test_redoc_renders_under_the_csp(page, live_server):  # noqa: F811
    external = _external_requests(page, live_server.url)
    page.goto("/api/redoc/")
    page.wait_for_selector("h1:has-text('Octopus API')")
    page.wait_for_selector("h2:has-text(\"Change a member's role\")")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "api_docs_redoc.png"), full_page=False)
    # Redoc's sidebar always tries its vendor logo from a CDN; the CSP blocks it (the <img> then
    # removes itself). That one refusal is expected: it proves the policy holds, and nothing is fetched.
    violations = [e for e in page.console_errors if "Content Security Policy" in e or "Refused" in e]
    assert [v for v in violations if REDOC_LOGO not in v] == []
    assert [u for u in external if u != REDOC_LOGO] == []
