"""/api/v1/algos/: TWAP/VWAP parents over REST — create (idempotent; bad input names the field and writes
nothing), list and detail with progress and children, pause/resume/cancel; another firm's algo is 404 on
every route with no side effect; read-only roles are 403."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.orders import algo_services
from apps.orders.models import AlgoOrder, Origin
from apps.orders.services import Entry

pytestmark = pytest.mark.django_db
URL = "/api/v1/algos/"


@pytest.fixture
def trader(firm_a, api_client_for):
    return api_client_for(firm_a.member("trader"))


@pytest.fixture
def analyst(firm_a, api_client_for):
    return api_client_for(firm_a.member("analyst"))


def body(portfolio, **kw) -> dict:
    end = timezone.now() + timedelta(minutes=10)
    return {"portfolio": portfolio.pk, "symbol": "BTC/USD", "side": "buy", "qty": "1", "kind": "twap",
            "end_at": end.isoformat(), "slices": 5, **kw}


def make_algo(portfolio, member, **kw) -> AlgoOrder:
    now = timezone.now()
    terms = {"symbol": "BTC/USD", "side": "buy", "qty": Decimal("1"), "kind": "twap", "start_at": now,
             "end_at": now + timedelta(minutes=10), "slices": 5, **kw}
    return algo_services.algo_create(portfolio=portfolio, entry=Entry(actor=Actor.for_user(member.user),
                                                                      origin=Origin.API), **terms)


def count_algos(firm_id) -> int:
    with firm_scope(firm_id):
        return AlgoOrder.objects.count()


def audit_count(firm_id) -> int:
    with firm_scope(firm_id):
        return AuditEvent.objects.count()


def test_create_replay_and_conflict(paper, trader):
    created = trader.post(URL, body(paper, client_order_id="api-1", limit_price="59000"), format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert (data["status"], data["kind"], data["qty"], data["limit_price"], data["slices"]) == (
        "running", "twap", "1", "59000", 5)
    assert (data["client_order_id"], data["portfolio"], data["origin"]) == ("api-1", paper.pk, "api")
    assert [s["qty"] for s in data["schedule"]] == ["0.2"] * 5 and data["children"] == []
    assert data["progress"] == {"qty": "1", "sent_qty": "0", "filled_qty": "0", "remaining_qty": "1",
                                "filled_pct": "0", "slices": 5, "slices_sent": 0, "slices_refused": 0,
                                "open_children": 0, "next_slice_at": data["schedule"][0]["at"]}
    # a retry without start_at (it started "now") replays the original
    replay = trader.post(URL, {**body(paper, client_order_id="api-1", limit_price="59000"),
                               "end_at": data["end_at"]}, format="json")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == data["id"]
    conflict = trader.post(URL, body(paper, client_order_id="api-1", qty="2"), format="json")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "IDEMPOTENCY_KEY_MISMATCH"
    assert count_algos(paper.firm_id) == 1


@pytest.mark.parametrize(("changes", "field"), [
    ({"symbol": "NOPE"}, "symbol"),
    ({"qty": "0"}, "qty"),
    ({"qty": "0.00001"}, "qty"),  # off BTC's 0.0001 lot grid
    ({"slices": 0}, "slices"),
    ({"slices": 501}, "slices"),
    ({"kind": "pov"}, "kind"),
    ({"side": "hold"}, "side"),
    ({"end_at": "2020-01-01T00:00:00Z"}, "end_at"),
    ({"start_at": "2999-01-01T00:00:00Z"}, "end_at"),  # the window ends before it starts
    ({"limit_price": "-1"}, "limit_price"),
    ({"portfolio": 999999}, "portfolio"),
    ({"client_order_id": "x" * 101}, "client_order_id"),
    ({"colour": "red"}, "colour"),
])
def test_bad_input_names_the_field_and_writes_nothing(paper, trader, changes, field):
    before = audit_count(paper.firm_id)
    response = trader.post(URL, {**body(paper), **changes}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert count_algos(paper.firm_id) == 0 and audit_count(paper.firm_id) == before


def test_list_detail_and_progress(paper, trader, firm_a, quote):
    quote("BTC/USD", 60000, 60010)
    algo = make_algo(paper, firm_a.member("trader"))
    algo_services.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=timezone.now() + timedelta(minutes=3))
    listed = trader.get(URL)
    assert listed.status_code == 200
    (item,) = listed.json()["results"]
    assert item["id"] == str(algo.pk)
    assert (item["progress"]["slices_sent"], item["progress"]["sent_qty"], item["progress"]["open_children"]) == (
        2, "0.4", 2)
    detail = trader.get(f"{URL}{algo.pk}/").json()
    assert [c["client_order_id"] for c in detail["children"]] == [f"{algo.client_order_id}:0",
                                                                  f"{algo.client_order_id}:1"]
    assert {c["status"] for c in detail["children"]} == {"received"}
    assert trader.get(URL, {"status": "done"}).json()["count"] == 0
    assert trader.get(URL, {"status": "nope"}).status_code == 400


def test_list_query_count_does_not_grow_with_algos(paper, trader, firm_a):
    make_algo(paper, firm_a.member("trader"))
    trader.get(URL)  # warm: the token's first use of the day and the content types are read once
    with CaptureQueriesContext(connection) as one:
        assert trader.get(URL).status_code == 200
    for _ in range(3):
        make_algo(paper, firm_a.member("trader"))
    with CaptureQueriesContext(connection) as four:
        assert trader.get(URL).json()["count"] == 4
    assert len(four) == len(one) == 3  # the token, the page count, the page with progress


def test_pause_resume_cancel(paper, trader, firm_a):
    algo = make_algo(paper, firm_a.member("trader"))
    paused = trader.post(f"{URL}{algo.pk}/pause/")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    again = trader.post(f"{URL}{algo.pk}/pause/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "ALGO_NOT_PAUSABLE"
    assert trader.post(f"{URL}{algo.pk}/resume/").json()["status"] == "running"
    canceled = trader.post(f"{URL}{algo.pk}/cancel/")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    refused = trader.post(f"{URL}{algo.pk}/resume/")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "ALGO_NOT_RESUMABLE"
    assert trader.post(f"{URL}{algo.pk}/cancel/").json()["error"]["code"] == "ALGO_NOT_CANCELABLE"


def test_analyst_reads_but_cannot_create_or_control(paper, analyst, firm_a):
    algo = make_algo(paper, firm_a.member("trader"))
    assert analyst.get(URL).json()["count"] == 1
    assert analyst.get(f"{URL}{algo.pk}/").status_code == 200
    assert analyst.post(URL, body(paper), format="json").status_code == 403
    for action in ("pause", "resume", "cancel"):
        response = analyst.post(f"{URL}{algo.pk}/{action}/")
        assert response.status_code == 403 and response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert count_algos(paper.firm_id) == 1
    with firm_scope(paper.firm_id):
        assert AlgoOrder.objects.get().status == "running"


def test_a_read_only_token_cannot_create(paper, firm_a, api_client_for):
    client = api_client_for(firm_a.member("trader"), scopes=("read",))
    assert client.post(URL, body(paper), format="json").status_code == 403
    assert count_algos(paper.firm_id) == 0


def test_another_firms_algo_is_404_on_every_route_with_no_side_effect(paper, paper_b, trader, firm_b):
    theirs = make_algo(paper_b, firm_b.member("trader"))
    before = audit_count(firm_b.firm.pk)
    assert trader.get(f"{URL}{theirs.pk}/").status_code == 404
    for action in ("pause", "resume", "cancel"):
        response = trader.post(f"{URL}{theirs.pk}/{action}/")
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    assert trader.get(URL).json()["count"] == 0
    # their portfolio in the body reads as a missing one
    assert trader.post(URL, body(paper_b), format="json").status_code == 400
    with firm_scope(firm_b.firm.pk):
        assert AlgoOrder.objects.get().status == "running"
    assert audit_count(firm_b.firm.pk) == before and count_algos(paper.firm_id) == 0
