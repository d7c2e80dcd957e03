"""/api/v1/orders/: the REST door to the one order path (Alpaca's field names), cancel, replace, cancel-all,
fills and the kill switch; bad input is a 4xx naming the field with nothing written and nothing sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.audit.models import AuditEvent
from apps.core.tenancy import firm_scope
from apps.orders.brokers.paper import PaperBroker, current_quote
from apps.orders.core import Status
from apps.orders.models import Order, OrderEvent
from apps.orders.routing import cancel_at_broker, order_route, replace_at_broker
from tests.orders.conftest import funded

pytestmark = pytest.mark.django_db
URL = "/api/v1/orders/"


@pytest.fixture
def trader(firm_a, api_client_for):
    return api_client_for(firm_a.member("trader"))


def body(portfolio, **kw) -> dict:
    return {"portfolio": portfolio.pk, "symbol": "BTC/USD", "qty": "0.5", "side": "buy", "type": "limit",
            "time_in_force": "gtc", "limit_price": "59000", **kw}


def count_orders(firm_id) -> int:
    with firm_scope(firm_id):
        return Order.objects.count()


def test_place_replay_and_conflict(paper, trader, quote, enqueued, django_capture_on_commit_callbacks):
    quote("BTC/USD", 60000, 60010)
    with django_capture_on_commit_callbacks(execute=True):
        created = trader.post(URL, body(paper, client_order_id="c-1"), format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert (data["status"], data["symbol"], data["qty"], data["limit_price"]) == ("received", "BTC/USD", "0.5", "59000")
    assert data["client_order_id"] == "c-1" and data["portfolio"] == paper.pk and data["origin"] == "api"
    with django_capture_on_commit_callbacks(execute=True):
        replay = trader.post(URL, body(paper, client_order_id="c-1"), format="json")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == data["id"]
    conflict = trader.post(URL, body(paper, client_order_id="c-1", qty="0.6"), format="json")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "IDEMPOTENCY_KEY_MISMATCH"
    assert count_orders(paper.firm_id) == 1 and len(enqueued) == 1  # one order, one route task


def test_the_idempotency_key_header_works_as_client_order_id(paper, trader, quote):
    quote("BTC/USD", 60000, 60010)
    first = trader.post(URL, body(paper), format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    again = trader.post(URL, body(paper), format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["client_order_id"] == "k-9" == again.json()["client_order_id"]


@pytest.mark.parametrize(("changes", "field"), [
    ({"symbol": "NOPE"}, "symbol"),
    ({"qty": "0"}, "qty"),
    ({"qty": "-1"}, "qty"),
    ({"limit_price": None}, "limit_price"),  # a limit order without its price
    ({"time_in_force": "forever"}, "time_in_force"),
    ({"type": "stop_limit", "limit_price": "55010", "stop_price": "55000"}, "stop_price"),  # buy stop below market
    ({"symbol": "AAPL", "qty": "1.5", "time_in_force": "day", "limit_price": "187"}, "qty"),  # not fractionable
    ({"side": "hold"}, "side"),
    ({"portfolio": 999999}, "portfolio"),
    ({"colour": "red"}, "colour"),
])
def test_bad_input_names_the_field_and_writes_nothing(paper, trader, quote, enqueued, changes, field):
    quote("BTC/USD", 60000, 60010)
    quote("AAPL", 186.9, 187.0, exchange="NASDAQ")
    response = trader.post(URL, {k: v for k, v in {**body(paper), **changes}.items() if v is not None},
                           format="json")
    assert response.status_code in (400, 404), response.json()
    assert field in response.json()["error"]["fields"], response.json()
    assert count_orders(paper.firm_id) == 0 and enqueued == []


def test_a_risk_rejection_is_403_with_its_code_and_stored(paper, trader, quote, enqueued):
    quote("BTC/USD", 60000, 60010)
    response = trader.post(URL, body(paper, qty="10", limit_price="60000"), format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_BUYING_POWER"
    order_id = error["fields"]["order_id"][0]
    detail = trader.get(f"{URL}{order_id}/").json()
    assert detail["status"] == "risk_rejected" and detail["reject_code"] == "INSUFFICIENT_BUYING_POWER"
    assert [e["event"] for e in detail["events"]] == ["risk_rejected"]
    assert enqueued == []


def test_roles_and_scopes(firm_a, paper, api_client_for, quote):
    quote("BTC/USD", 60000, 60010)
    for role in ("analyst", "compliance"):
        assert api_client_for(firm_a.member(role)).post(URL, body(paper), format="json").status_code == 403
    read_only = api_client_for(firm_a.member("trader"), scopes=("read",))
    assert read_only.post(URL, body(paper), format="json").status_code == 403
    assert count_orders(paper.firm_id) == 0
    assert api_client_for(firm_a.member("analyst")).get(URL).status_code == 200


def test_detail_list_and_fills_after_a_paper_fill(paper, trader, quote):
    quote("BTC/USD", 60000, 60010)
    order_id = trader.post(URL, body(paper, type="market", limit_price=None), format="json").json()["id"]
    order_route(firm_id=paper.firm_id, order_id=order_id)
    detail = trader.get(f"{URL}{order_id}/").json()
    assert detail["status"] == "filled" and detail["filled_avg_price"] == "60010"
    assert [e["event"] for e in detail["events"]] == ["received", "submitted", "new", "fill"]
    assert [(f["qty"], f["price"]) for f in detail["fills"]] == [("0.5", "60010")]
    assert trader.get(URL).json()["count"] == 0  # the default list is open orders, as Alpaca's
    closed = trader.get(URL, {"status": "closed"}).json()
    assert [o["id"] for o in closed["results"]] == [order_id]
    fills = trader.get("/api/v1/fills/", {"portfolio": paper.pk}).json()
    assert [(f["order"], f["qty"], f["side"]) for f in fills["results"]] == [(order_id, "0.5", "buy")]


def test_cancel_before_and_after_the_broker_saw_it(paper, trader, quote, enqueued, django_capture_on_commit_callbacks):
    quote("BTC/USD", 60000, 60010)
    unsent = trader.post(URL, body(paper), format="json").json()["id"]
    canceled = trader.delete(f"{URL}{unsent}/")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    sent = trader.post(URL, body(paper, client_order_id="c-2"), format="json").json()["id"]
    order_route(firm_id=paper.firm_id, order_id=sent)
    with django_capture_on_commit_callbacks(execute=True):
        asked = trader.delete(f"{URL}{sent}/")
    assert asked.json()["status"] == "pending_cancel"
    assert ("orders.cancel", (paper.firm_id, sent)) in enqueued
    assert cancel_at_broker(firm_id=paper.firm_id, order_id=sent).status == Status.PENDING_CANCEL
    with firm_scope(paper.firm_id):
        assert Order.objects.get(pk=sent).status == Status.CANCELED
    again = trader.delete(f"{URL}{sent}/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "ORDER_NOT_CANCELABLE"


def test_replace_a_working_order_and_refuse_to_replace_a_filled_one(paper, trader, quote, enqueued,
                                                                  django_capture_on_commit_callbacks):
    quote("BTC/USD", 60000, 60010)
    order_id = trader.post(URL, body(paper), format="json").json()["id"]
    order_route(firm_id=paper.firm_id, order_id=order_id)
    with django_capture_on_commit_callbacks(execute=True):
        response = trader.patch(f"{URL}{order_id}/", {"limit_price": "59500"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "pending_replace"
    (name, (firm_id, pk, changes)), = [c for c in enqueued if c[0] == "orders.replace"]
    new = replace_at_broker(firm_id=firm_id, order_id=pk, changes=changes)
    with firm_scope(paper.firm_id):
        old = Order.objects.get(pk=order_id)
        new = Order.objects.get(pk=new.pk)
    assert old.status == Status.REPLACED and new.replaces_id == old.pk
    assert (new.status, new.limit_price, new.qty) == (Status.NEW, Decimal("59500"), Decimal("0.5"))
    quote("BTC/USD", 59400, 59450)  # the replacement now trades through
    PaperBroker(paper.firm_id).match("BTC/USD", current_quote("BTC/USD"))
    with firm_scope(paper.firm_id):
        new.refresh_from_db()
    assert new.status == Status.FILLED
    refused = trader.patch(f"{URL}{new.pk}/", {"limit_price": "59000"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "ORDER_NOT_REPLACEABLE"


def test_another_firms_order_is_404_on_every_door_and_untouched(paper, paper_b, firm_b, api_client_for, trader,
                                                                  quote, enqueued):
    quote("BTC/USD", 60000, 60010)
    theirs = api_client_for(firm_b.member("trader")).post(URL, body(paper_b), format="json").json()["id"]
    enqueued.clear()
    assert trader.get(f"{URL}{theirs}/").status_code == 404
    assert trader.delete(f"{URL}{theirs}/").status_code == 404
    assert trader.patch(f"{URL}{theirs}/", {"limit_price": "1"}, format="json").status_code == 404
    assert trader.post(URL, body(paper_b), format="json").status_code == 400  # their portfolio: "no such"
    with firm_scope(paper_b.firm_id):
        assert Order.objects.get(pk=theirs).status == Status.RECEIVED
        assert OrderEvent.objects.filter(order_id=theirs).count() == 1
    assert enqueued == []


def test_kill_switch_halts_cancels_and_survives(firm_a, paper, trader, api_client_for, quote):
    quote("BTC/USD", 60000, 60010)
    working = trader.post(URL, body(paper), format="json").json()["id"]
    assert trader.put("/api/v1/trading/kill-switch/", {"active": True}, format="json").status_code == 403
    compliance = api_client_for(firm_a.member("compliance"))
    halted = compliance.put("/api/v1/trading/kill-switch/", {"active": True, "reason": "runaway"}, format="json")
    assert halted.status_code == 200 and halted.json()["active"] is True
    assert trader.get(f"{URL}{working}/").json()["status"] == "canceled"
    refused = trader.post(URL, body(paper, client_order_id="after"), format="json")
    assert refused.status_code == 423 and refused.json()["error"]["code"] == "TRADING_HALTED"
    assert trader.get("/api/v1/trading/kill-switch/").json()["reason"] == "runaway"  # a row, not memory
    with firm_scope(paper.firm_id):
        assert AuditEvent.objects.filter(action="trading.halted").count() == 1
    compliance.put("/api/v1/trading/kill-switch/", {"active": False}, format="json")
    assert trader.post(URL, body(paper, client_order_id="resumed"), format="json").status_code == 201


def test_cancel_all_of_a_portfolio(paper, trader, quote):
    quote("BTC/USD", 60000, 60010)
    ids = [trader.post(URL, body(paper, client_order_id=f"ca-{i}", qty="0.1"), format="json").json()["id"]
           for i in range(3)]
    response = trader.delete(f"{URL}?portfolio={paper.pk}")
    assert response.status_code == 200
    assert sorted(o["id"] for o in response.json()["canceled"]) == sorted(ids)
    assert trader.delete(URL).status_code == 403  # a trader names a portfolio; the whole firm is for admins


def test_preview_reports_every_check_and_writes_nothing(paper, trader, quote):
    quote("BTC/USD", 60000, 60010)
    response = trader.post(f"{URL}preview/", body(paper, qty="2", limit_price="60000"), format="json")
    assert response.status_code == 200
    data = response.json()
    assert data["ok"] is False and [r["code"] for r in data["rejections"]] == ["INSUFFICIENT_BUYING_POWER"]
    assert data["estimated_notional"] == "120000"
    fine = trader.post(f"{URL}preview/", body(paper), format="json").json()
    assert fine["ok"] is True and fine["buying_power_after"] == "70500"
    assert count_orders(paper.firm_id) == 0


def test_a_funded_second_portfolio_does_not_lend_buying_power(firm_a, paper, trader, quote):
    quote("BTC/USD", 60000, 60010)
    poor = funded(firm_a.firm.pk, "Poor", cash="100")
    response = trader.post(URL, body(poor), format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "INSUFFICIENT_BUYING_POWER"


def test_reconcile_resume_and_alpaca_keys_are_for_owners_and_admins(firm_a, paper, api_client_for, trader):
    owner = api_client_for(firm_a.member("owner"))
    assert trader.post("/api/v1/trading/reconcile/", {"portfolio": paper.pk}, format="json").status_code == 403
    report = owner.post("/api/v1/trading/reconcile/", {"portfolio": paper.pk}, format="json").json()
    assert (report["broker"], report["clean"], report["halted"], report["breaks"]) == ("paper", True, False, [])
    refused = owner.post("/api/v1/trading/resume/", {"portfolio": paper.pk}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "PORTFOLIO_NOT_HALTED"
    secret = "alpaca-secret-key-0123456789"
    keys = {"portfolio": paper.pk, "key_id": "PKTEST123", "secret_key": secret, "paper": True}
    assert trader.put("/api/v1/trading/alpaca-account/", keys, format="json").status_code == 403
    stored = owner.put("/api/v1/trading/alpaca-account/", keys, format="json")
    assert stored.status_code == 200 and secret not in stored.content.decode()
    assert stored.json()["secret"].endswith(secret[-4:]) and stored.json()["key_id"] == "PKTEST123"


def test_fills_filters_name_the_bad_parameter(trader):
    bad_portfolio = trader.get("/api/v1/fills/", {"portfolio": "x", "order": "also-bad"})
    assert bad_portfolio.status_code == 400 and list(bad_portfolio.json()["error"]["fields"]) == ["portfolio"]
    bad_order = trader.get("/api/v1/fills/", {"order": "not-a-uuid"})
    assert bad_order.status_code == 400 and list(bad_order.json()["error"]["fields"]) == ["order"]
