"""OpenAPI: the schema validates, every operation is described and typed (errors included), and the
interactive docs load only our own static assets under the strict CSP (target 16)."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def test_schema_validates_with_no_warnings(db, tmp_path):
    # --fail-on-warn turns any drf-spectacular warning (unresolvable field, name collision) into an error
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3.0.3")


def test_schema_is_valid_openapi(schema):
    validate_schema(schema)
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_schema_endpoint_serves_json(db, client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/v1/members/{id}/" in response.json()["paths"]


def test_accounts_operations_are_all_present(schema):
    found = {(path, method) for path, method, _ in operations(schema)}
    assert {
        ("/api/v1/me/", "get"),
        ("/api/v1/firm/", "get"),
        ("/api/v1/firm/", "patch"),
        ("/api/v1/members/", "get"),
        ("/api/v1/members/{id}/", "get"),
        ("/api/v1/members/{id}/", "patch"),
        ("/api/v1/members/{id}/", "delete"),
        ("/api/v1/invitations/", "get"),
        ("/api/v1/invitations/", "post"),
        ("/api/v1/invitations/{id}/", "delete"),
        ("/api/v1/tokens/", "get"),
        ("/api/v1/tokens/", "post"),
        ("/api/v1/tokens/{id}/", "get"),
        ("/api/v1/tokens/{id}/", "delete"),
    } <= found


def _base_class_docs() -> set[str]:
    import inspect

    from apps.core import api

    return {inspect.cleandoc(c.__doc__) for c in vars(api).values() if inspect.isclass(c) and c.__doc__}


def test_every_operation_has_summary_description_and_typed_responses(schema):
    problems = []
    inherited = _base_class_docs()
    for path, method, op in operations(schema):
        where = f"{method.upper()} {path}"
        if not op.get("summary"):
            problems.append(f"{where}: no summary")
        if not op.get("description"):
            problems.append(f"{where}: no description")
        elif op["description"].strip() in inherited:
            problems.append(f"{where}: description is a base class's docstring, not the operation's")
        responses = op.get("responses", {})
        successes = [code for code in responses if code.startswith("2")]
        if not successes:
            problems.append(f"{where}: no 2xx response")
        for code in successes:
            if code != "204" and not responses[code].get("content"):
                problems.append(f"{where}: {code} has no typed content")
        for code in ("401", "403"):
            content = responses.get(code, {}).get("content", {})
            if content.get("application/json", {}).get("schema", {}).get("$ref") != ERROR_REF:
                problems.append(f"{where}: {code} is not an ErrorResponse")
        if "{" in path and "404" not in responses:
            problems.append(f"{where}: object route without a 404")
        if method in {"post", "put", "patch"} and "400" not in responses:
            problems.append(f"{where}: write without a 400")
    assert problems == []


def test_error_response_component(schema):
    components = schema["components"]["schemas"]
    assert components["ErrorResponse"]["properties"]["error"]["$ref"] == "#/components/schemas/ErrorDetail"
    assert set(components["ErrorDetail"]["required"]) == {"code", "message", "fields"}


def test_input_and_output_components_are_separate(schema):
    components = schema["components"]["schemas"]
    assert "TokenCreateInputRequest" in components and "TokenCreatedOutput" in components
    assert "token" not in components["TokenOutput"]["properties"]
    assert components["TokenCreatedOutput"]["properties"]["token"]["type"] == "string"


# --- docs pages -----------------------------------------------------------------------------------

ASSET_RE = re.compile(r'(?:src|href)="([^"]+)"')


def _page_assets(html: str) -> list[str]:
    return ASSET_RE.findall(html)


@pytest.fixture
def static_client(db):
    # whitenoise reads the finders only when told to; a fresh Client builds a fresh middleware chain
    with override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True):
        yield Client()


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_use_only_our_static_assets(static_client, path):
    response = static_client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assets = _page_assets(html)
    assert assets, html
    for url in assets:
        assert url.startswith("/static/") or url.startswith(f"{path}?"), url
    assert "<style" not in html
    assert re.search(r"<script>[^<]", html) is None, "inline script"
    assert "googleapis" not in html
    for url in assets:
        if url.startswith("/static/"):
            asset = static_client.get(url)
            assert asset.status_code == 200, url
            b"".join(asset.streaming_content) if asset.streaming else asset.content


def test_swagger_init_script_is_served_separately_as_javascript(static_client):
    html = static_client.get("/api/docs/").content.decode()
    script_url = next(u for u in _page_assets(html) if u.startswith("/api/docs/?"))
    response = static_client.get(script_url.replace("&amp;", "&"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in response.content
    assert b"/api/schema/" in response.content


def test_docs_csp_keeps_scripts_self_only(static_client):
    swagger = static_client.get("/api/docs/")
    redoc = static_client.get("/api/redoc/")
    for response in (swagger, redoc):
        policy = response["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]*)", policy).group(1)
        assert script_src.strip() == "'self'"
    assert "unsafe-inline" not in swagger["Content-Security-Policy"]
    # Redoc's styled-components needs inline <style> and its search a blob: worker; on that page only
    assert re.search(r"style-src [^;]*'unsafe-inline'", redoc["Content-Security-Policy"])
    assert re.search(r"worker-src 'self' blob:", redoc["Content-Security-Policy"])
    assert "blob:" not in swagger["Content-Security-Policy"]
