"""Authenticated pages load the event-stream client as a module (no inline script: strict CSP)."""

from __future__ import annotations

from django.urls import reverse

WS_SCRIPT = '<script type="module" src="/static/js/ws.js"></script>'


def test_authenticated_pages_load_the_ws_client(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("trader"))
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    assert response.content.decode().count(WS_SCRIPT) == 1


def test_anonymous_pages_do_not(client, db):
    response = client.get(reverse("accounts:login"))
    assert response.status_code == 200
    assert "js/ws.js" not in response.content.decode()
