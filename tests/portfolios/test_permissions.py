"""Per-portfolio permissions: role defaults, restricted portfolios, django-guardian grants (issue #4 point 1)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.grants import object_grant
from apps.core.tenancy import firm_scope, unscoped
from apps.portfolios import selectors, services
from apps.portfolios.models import JournalEntry, Portfolio

pytestmark = pytest.mark.django_db

ROUTES = ("", "positions/", "lots/", "realized-gains/", "journal/", "cash/", "grants/")


@pytest.fixture
def books(firm_a, system):
    """Open (unrestricted), and two restricted portfolios: Desk A and Desk B."""
    make = lambda name, restricted: services.portfolio_create(  # noqa: E731
        firm_id=firm_a.firm.pk, name=name, actor=system, restricted=restricted)
    return make("Open", False), make("Desk A", True), make("Desk B", True)


def grant(world, role, perm, portfolio):
    member = world.member(role)
    object_grant(perm=perm, user=member.user, obj=portfolio, actor=Actor.for_user(world.member("owner").user))


def visible(membership) -> list[str]:
    with firm_scope(membership.firm_id):
        return sorted(p.name for p in selectors.portfolios_visible(membership))


def test_role_defaults_on_an_unrestricted_portfolio(firm_a, books):
    open_ = books[0]
    expected = {
        "owner": {"view_portfolio", "trade_portfolio", "manage_portfolio"},
        "admin": {"view_portfolio", "trade_portfolio", "manage_portfolio"},
        "trader": {"view_portfolio", "trade_portfolio"},
        "analyst": {"view_portfolio"},
        "compliance": {"view_portfolio"},
    }
    for role, perms in expected.items():
        with firm_scope(firm_a.firm.pk):
            assert selectors.portfolio_perms(firm_a.member(role), open_) == perms, role


def test_restricted_portfolios_need_a_grant(firm_a, books):
    grant(firm_a, "trader", "trade_portfolio", books[1])
    assert visible(firm_a.member("trader")) == ["Desk A", "Open"]
    assert visible(firm_a.member("analyst")) == ["Open"]
    assert visible(firm_a.member("compliance")) == ["Open"]
    assert visible(firm_a.member("owner")) == ["Desk A", "Desk B", "Open"]
    with firm_scope(firm_a.firm.pk):
        trader = firm_a.member("trader")
        assert selectors.portfolio_for(trader, books[1].pk, selectors.TRADE) == books[1]
        with pytest.raises(Http404):
            selectors.portfolio_for(trader, books[2].pk)
        with pytest.raises(PermissionDenied):
            selectors.portfolio_for(trader, books[1].pk, selectors.MANAGE)


def test_trader_with_a_grant_sees_one_restricted_portfolio_over_the_api(firm_a, books, api_client_for):
    grant(firm_a, "trader", "trade_portfolio", books[1])
    client = api_client_for(firm_a.member("trader"))
    listed = client.get("/api/v1/portfolios/").json()
    assert [p["name"] for p in listed["results"]] == ["Desk A", "Open"]
    detail = client.get(f"/api/v1/portfolios/{books[1].pk}/").json()
    assert detail["permissions"] == ["view", "trade"]
    for tail in ROUTES[:5]:
        assert client.get(f"/api/v1/portfolios/{books[2].pk}/{tail}").status_code == 404, tail
        assert client.get(f"/api/v1/portfolios/{books[1].pk}/{tail}").status_code == 200, tail


def test_analyst_cannot_post_cash_but_a_manage_grant_allows_it(firm_a, books, api_client_for):
    open_ = books[0]
    client = api_client_for(firm_a.member("analyst"))
    body = {"kind": "deposit", "amount": "500"}
    response = client.post(f"/api/v1/portfolios/{open_.pk}/cash/", body, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert client.patch(f"/api/v1/portfolios/{open_.pk}/", {"name": "Mine"}, format="json").status_code == 403
    with firm_scope(firm_a.firm.pk):
        assert not JournalEntry.objects.exists()
    grant(firm_a, "analyst", "manage_portfolio", open_)
    response = client.post(f"/api/v1/portfolios/{open_.pk}/cash/", body, format="json")
    assert response.status_code == 201
    assert Decimal(response.json()["cash"]) == Decimal("500")


def test_trader_cannot_post_cash_or_manage_grants(firm_a, books, api_client_for):
    client = api_client_for(firm_a.member("trader"))
    assert client.post(f"/api/v1/portfolios/{books[0].pk}/cash/", {"kind": "deposit", "amount": "1"},
                       format="json").status_code == 403
    assert client.get(f"/api/v1/portfolios/{books[0].pk}/grants/").status_code == 403


def test_grants_api_grants_lists_and_revokes(firm_a, books, api_client_for):
    owner = api_client_for(firm_a.member("owner"))
    desk = books[2]
    path = f"/api/v1/portfolios/{desk.pk}/grants/"
    response = owner.post(path, {"user": "TRADER@alpha.example.com", "perm": "trade"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json() == [{"user": "trader@alpha.example.com", "role": "trader", "perms": ["trade"]}]
    owner.post(path, {"user": "analyst@alpha.example.com", "perm": "view"}, format="json")
    assert [g["user"] for g in owner.get(path).json()] == ["analyst@alpha.example.com", "trader@alpha.example.com"]
    assert visible(firm_a.member("trader")) == ["Desk B", "Open"]
    assert owner.delete(f"{path}?user=trader@alpha.example.com&perm=trade").status_code == 204
    assert visible(firm_a.member("trader")) == ["Open"]
    with firm_scope(firm_a.firm.pk):
        actions = list(AuditEvent.objects.filter(action__startswith="grant.").values_list("action", flat=True))
    assert sorted(actions) == ["grant.added", "grant.added", "grant.removed"]


def test_grants_refuse_non_members_and_bad_perms(firm_a, firm_b, books, api_client_for):
    owner = api_client_for(firm_a.member("owner"))
    path = f"/api/v1/portfolios/{books[2].pk}/grants/"
    outsider = owner.post(path, {"user": "trader@beta.example.com", "perm": "trade"}, format="json")
    assert outsider.status_code == 400 and list(outsider.json()["error"]["fields"]) == ["user"]
    bad = owner.post(path, {"user": "trader@alpha.example.com", "perm": "own"}, format="json")
    assert bad.status_code == 400 and list(bad.json()["error"]["fields"]) == ["perm"]
    assert owner.delete(f"{path}?perm=trade").json()["error"]["fields"] == {"user": ["This field is required."]}
    assert owner.get(path).json() == []


def test_firm_b_portfolio_is_404_on_every_route_with_no_side_effect(firm_a, firm_b, api_client_for):
    theirs = services.portfolio_create(firm_id=firm_b.firm.pk, name="beta_secret book",
                                       actor=Actor.system("beta-system"))
    with unscoped():
        b_events = AuditEvent.objects.unscoped().filter(firm=firm_b.firm).count()
    bodies = {"": {"name": "hijacked"}, "cash/": {"kind": "deposit", "amount": "5"},
              "grants/": {"user": "trader@alpha.example.com", "perm": "manage"}}
    for role in ("owner", "admin", "trader", "analyst", "compliance"):
        client = api_client_for(firm_a.member(role))
        for tail in ROUTES:
            path = f"/api/v1/portfolios/{theirs.pk}/{tail}"
            for method in ("get", "post", "patch", "delete"):
                response = client.generic(method.upper(), path, json.dumps(bodies.get(tail, {})),
                                          content_type="application/json")
                assert response.status_code == 404, (role, method, tail, response.status_code)
        assert "beta_secret" not in client.get("/api/v1/portfolios/").content.decode()
    with unscoped():
        assert Portfolio.objects.unscoped().get(pk=theirs.pk).name == "beta_secret book"
        assert not JournalEntry.objects.unscoped().filter(portfolio=theirs).exists()
        assert AuditEvent.objects.unscoped().filter(firm=firm_b.firm).count() == b_events
