"""Watchlists over REST: firm-owned, read by every member, written by owner/admin/trader with 'trade'."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.tenancy import firm_scope, unscoped
from apps.marketdata.models import Watchlist, WatchlistItem
from apps.marketdata.services import instrument_create, watchlist_add, watchlist_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def instruments():
    return {s: instrument_create(symbol=s, name=f"{s} Inc", asset_class=c)
            for s, c in [("AAPL", "equity"), ("MSFT", "equity"), ("SPY", "etf"), ("BTC/USD", "crypto")]}


def make_list(world, name, symbols, instruments):
    actor = Actor.for_user(world.member("owner").user)
    with firm_scope(world.firm.pk):
        watchlist = watchlist_create(firm_id=world.firm.pk, name=name, actor=actor)
        for s in symbols:
            watchlist_add(watchlist=watchlist, instrument=instruments[s], actor=actor)
    return watchlist


def symbols_of(body):
    return [i["symbol"] for i in body["items"]]


def audit_actions(firm):
    with unscoped():
        return list(AuditEvent.objects.unscoped().filter(firm=firm, action__startswith="watchlist.")
                    .order_by("seq").values_list("action", flat=True))


def test_crud_items_and_order(firm_a, api_client_for, instruments):
    client = api_client_for(firm_a.member("trader"), scopes=("read", "trade"))
    created = client.post("/api/v1/watchlists/", {"name": "Tech"}, format="json")
    assert created.status_code == 201
    pk = created.json()["id"]
    assert created.json()["items"] == []
    for symbol in ("aapl", "BTC/USD", "SPY"):
        assert client.post(f"/api/v1/watchlists/{pk}/items/", {"symbol": symbol}, format="json").status_code == 201
    detail = client.get(f"/api/v1/watchlists/{pk}/").json()
    assert detail["items"] == [
        {"symbol": "AAPL", "name": "AAPL Inc", "asset_class": "equity", "position": 0},
        {"symbol": "BTC/USD", "name": "BTC/USD Inc", "asset_class": "crypto", "position": 1},
        {"symbol": "SPY", "name": "SPY Inc", "asset_class": "etf", "position": 2},
    ]
    ordered = client.post(f"/api/v1/watchlists/{pk}/order/", {"symbols": ["SPY", "aapl", "BTC/USD"]}, format="json")
    assert (ordered.status_code, symbols_of(ordered.json())) == (200, ["SPY", "AAPL", "BTC/USD"])
    assert client.delete(f"/api/v1/watchlists/{pk}/items/BTC/USD/").status_code == 204
    assert symbols_of(client.get(f"/api/v1/watchlists/{pk}/").json()) == ["SPY", "AAPL"]
    assert [i["position"] for i in client.get(f"/api/v1/watchlists/{pk}/").json()["items"]] == [0, 1]
    renamed = client.patch(f"/api/v1/watchlists/{pk}/", {"name": "Core"}, format="json")
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Core")
    listing = client.get("/api/v1/watchlists/").json()
    assert (listing["count"], [w["name"] for w in listing["results"]]) == (1, ["Core"])
    assert client.delete(f"/api/v1/watchlists/{pk}/").status_code == 204
    with firm_scope(firm_a.firm.pk):
        assert (Watchlist.objects.count(), WatchlistItem.objects.count()) == (0, 0)
    assert audit_actions(firm_a.firm) == [
        "watchlist.created", "watchlist.item_added", "watchlist.item_added", "watchlist.item_added",
        "watchlist.reordered", "watchlist.item_removed", "watchlist.renamed", "watchlist.deleted",
    ]


def test_refusals_name_the_field_and_write_nothing(firm_a, api_client_for, instruments):
    watchlist = make_list(firm_a, "Tech", ["AAPL", "MSFT"], instruments)
    client = api_client_for(firm_a.member("admin"), scopes=("read", "trade"))
    base = f"/api/v1/watchlists/{watchlist.pk}"
    before = audit_actions(firm_a.firm)
    cases = [
        (client.post(f"{base}/items/", {"symbol": "AAPL"}, format="json"), 409, {"symbol"}),  # already listed
        (client.post(f"{base}/items/", {"symbol": "NOPE"}, format="json"), 400, {"symbol"}),
        (client.post(f"{base}/items/", {"symbol": "AAPL", "extra": 1}, format="json"), 400, {"extra"}),
        (client.post(f"{base}/order/", {"symbols": ["AAPL"]}, format="json"), 400, {"symbols"}),  # one missing
        (client.post(f"{base}/order/", {"symbols": ["AAPL", "MSFT", "MSFT"]}, format="json"), 400, {"symbols"}),
        (client.post(f"{base}/order/", {"symbols": ["AAPL", "SPY"]}, format="json"), 400, {"symbols"}),  # not listed
        (client.post("/api/v1/watchlists/", {"name": "Tech"}, format="json"), 409, {"name"}),
        (client.post("/api/v1/watchlists/", {"name": "  "}, format="json"), 400, {"name"}),
        (client.patch(f"{base}/", {"name": ""}, format="json"), 400, {"name"}),
    ]
    for response, status, fields in cases:
        assert (response.status_code, set(response.json()["error"]["fields"])) == (status, fields), response.content
    unchanged = client.patch(f"{base}/", {}, format="json")  # PATCH without a field changes nothing
    assert (unchanged.status_code, unchanged.json()["name"]) == (200, "Tech")
    missing = client.delete(f"{base}/items/SPY/")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")
    assert audit_actions(firm_a.firm) == before
    assert symbols_of(client.get(f"{base}/").json()) == ["AAPL", "MSFT"]


@pytest.mark.parametrize("role", ["owner", "admin", "trader", "analyst", "compliance"])
def test_roles(firm_a, api_client_for, instruments, role):
    watchlist = make_list(firm_a, "Tech", ["AAPL"], instruments)
    client = api_client_for(firm_a.member(role), scopes=("read", "trade", "admin"))
    may_write = role in {"owner", "admin", "trader"}
    assert client.get("/api/v1/watchlists/").status_code == 200
    assert client.get(f"/api/v1/watchlists/{watchlist.pk}/").status_code == 200
    writes = [
        client.post("/api/v1/watchlists/", {"name": f"by {role}"}, format="json"),
        client.post(f"/api/v1/watchlists/{watchlist.pk}/items/", {"symbol": "MSFT"}, format="json"),
        client.post(f"/api/v1/watchlists/{watchlist.pk}/order/", {"symbols": ["MSFT", "AAPL"]}, format="json"),
        client.delete(f"/api/v1/watchlists/{watchlist.pk}/items/AAPL/"),
        client.patch(f"/api/v1/watchlists/{watchlist.pk}/", {"name": "renamed"}, format="json"),
        client.delete(f"/api/v1/watchlists/{watchlist.pk}/"),
    ]
    expected = [201, 201, 200, 204, 200, 204] if may_write else [403] * 6
    assert [r.status_code for r in writes] == expected


def test_token_without_trade_scope_reads_but_cannot_write(firm_a, api_client_for, instruments):
    watchlist = make_list(firm_a, "Tech", ["AAPL"], instruments)
    client = api_client_for(firm_a.member("owner"), scopes=("read", "admin"))
    assert client.get(f"/api/v1/watchlists/{watchlist.pk}/").status_code == 200
    response = client.post(f"/api/v1/watchlists/{watchlist.pk}/items/", {"symbol": "MSFT"}, format="json")
    assert (response.status_code, response.json()["error"]["message"]) == (403, "This token lacks the 'trade' scope.")


def test_another_firms_watchlist_is_404_on_every_verb_with_no_side_effect(firm_a, firm_b, api_client_for,
                                                                         instruments):
    theirs = make_list(firm_b, "Beta list", ["AAPL", "MSFT"], instruments)
    mine = make_list(firm_a, "Mine", [], instruments)
    client = api_client_for(firm_a.member("owner"), scopes=("read", "trade", "admin"))
    base = f"/api/v1/watchlists/{theirs.pk}"
    before = audit_actions(firm_b.firm)
    responses = [
        client.get(f"{base}/"), client.patch(f"{base}/", {"name": "x"}, format="json"), client.delete(f"{base}/"),
        client.post(f"{base}/items/", {"symbol": "SPY"}, format="json"), client.delete(f"{base}/items/AAPL/"),
        client.post(f"{base}/order/", {"symbols": ["MSFT", "AAPL"]}, format="json"),
    ]
    assert [r.status_code for r in responses] == [404] * 6
    assert client.get("/api/v1/watchlists/").json()["results"] == [
        {"id": mine.pk, "name": "Mine", "created_at": mine.created_at.isoformat().replace("+00:00", "Z")}]
    assert audit_actions(firm_b.firm) == before
    with firm_scope(firm_b.firm.pk):
        assert [i.instrument.symbol for i in Watchlist.objects.get(pk=theirs.pk).items.order_by("position")] == [
            "AAPL", "MSFT"]
