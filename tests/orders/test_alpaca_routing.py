"""The order path on a live portfolio through Alpaca, mocked at the HTTP layer with Alpaca's payloads:
accepted, refused (403 buying power / PDT), a duplicate client_order_id adopted, a timeout left unknown and
settled by the reconciler without a blind resubmit, and the trade_updates stream booking the fill."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
import responses
from django.utils import timezone

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.orders.brokers.alpaca_stream import parse_trade_update
from apps.orders.core import Status
from apps.orders.models import Order, OrderEvent
from apps.orders.routing import MAX_SUBMIT_ATTEMPTS, order_route, reconcile_order, relay_pending
from apps.orders.services import alpaca_account_connect, order_submit
from apps.orders.updates import broker_update_apply
from apps.portfolios.models import Position
from tests.orders import alpaca_payloads as ap
from tests.orders.conftest import funded, spec

pytestmark = pytest.mark.django_db
SECRET = "alpaca-secret-key-0123456789"


@pytest.fixture
def live(firm_a, instruments, quote):
    quote("AAPL", 187.10, 187.15, exchange="NASDAQ")
    portfolio = funded(firm_a.firm.pk, "Live A", mode="live")
    alpaca_account_connect(portfolio=portfolio, key_id="PKTEST123", secret_key=SECRET, paper=True,
                           actor=Actor.system("test"))
    return portfolio


def submit(portfolio, entry, coid="live-1") -> Order:
    order = order_submit(portfolio=portfolio, entry=entry, spec=spec(
        symbol="AAPL", qty="10", type="limit", tif="day", limit_price=Decimal("187.15"), client_order_id=coid)).order
    assert order.status == Status.RECEIVED, order.reject_reason
    return order


def as_ours(payload: dict, order: Order) -> dict:
    return {**payload, "client_order_id": order.broker_client_order_id}


def posts() -> list[dict]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_accepted_then_filled_over_the_stream(live, trader_entry):
    order = submit(live, trader_entry)
    responses.post(ap.ORDERS, json=as_ours(ap.order("accepted"), order))
    order_route(firm_id=live.firm_id, order_id=order.pk)
    body = posts()[0]
    assert body["client_order_id"] == order.broker_client_order_id == f"oct-{order.pk}"
    assert (body["symbol"], body["qty"], body["limit_price"], body["type"]) == ("AAPL", "10", "187.15", "limit")
    with firm_scope(live.firm_id):
        order.refresh_from_db()
    assert order.status == Status.ACCEPTED and order.broker_order_id == ap.ORDER_ID
    message = ap.trade_update("fill", as_ours(ap.order("filled"), order))
    message["data"].update(qty="10", price="187.124", execution_id="ex-1")
    update = parse_trade_update(message)
    broker_update_apply(firm_id=live.firm_id, broker="alpaca", update=update)
    broker_update_apply(firm_id=live.firm_id, broker="alpaca", update=update)  # the stream repeats itself
    with firm_scope(live.firm_id):
        order.refresh_from_db()
        position = Position.objects.get(portfolio=live)
    assert order.status == Status.FILLED and order.filled_qty == Decimal(10)
    assert order.filled_avg_price == Decimal("187.124") and position.quantity == Decimal(10)


@pytest.mark.parametrize("error", [ap.ERR_BUYING_POWER, ap.ERR_PDT])
@responses.activate
def test_a_403_is_a_rejection_with_alpacas_words(live, trader_entry, error):
    order = submit(live, trader_entry)
    responses.post(ap.ORDERS, json=error, status=403)
    order_route(firm_id=live.firm_id, order_id=order.pk)
    with firm_scope(live.firm_id):
        order.refresh_from_db()
    assert order.status == Status.REJECTED
    assert order.reject_reason == error["message"]
    assert len(posts()) == 1


@responses.activate
def test_a_duplicate_client_order_id_is_adopted(live, trader_entry):
    order = submit(live, trader_entry)
    responses.post(ap.ORDERS, json=ap.ERR_DUPLICATE, status=422)
    responses.get(ap.BY_CLIENT_ID, json=as_ours(ap.order("new"), order))
    order_route(firm_id=live.firm_id, order_id=order.pk)
    with firm_scope(live.firm_id):
        order.refresh_from_db()
    assert order.status == Status.NEW and order.broker_order_id == ap.ORDER_ID and len(posts()) == 1


@responses.activate
def test_a_timeout_is_unknown_and_the_reconciler_adopts_what_alpaca_has(live, trader_entry):
    order = submit(live, trader_entry)
    responses.post(ap.ORDERS, body=requests.exceptions.ReadTimeout("read timed out"))
    order_route(firm_id=live.firm_id, order_id=order.pk)
    with firm_scope(live.firm_id):
        order.refresh_from_db()
    assert order.status == Status.SUBMIT_UNKNOWN  # never "rejected": the outcome is unknown
    responses.get(ap.BY_CLIENT_ID, json=as_ours(ap.order("new"), order))
    relay_pending(now=timezone.now() + timedelta(seconds=10))
    with firm_scope(live.firm_id):
        order.refresh_from_db()
    assert order.status == Status.NEW and order.broker_order_id == ap.ORDER_ID
    assert len(posts()) == 1  # asked, never resent


@responses.activate
def test_an_order_alpaca_never_saw_is_resent_with_the_same_id_then_given_up_unconfirmed(live, trader_entry):
    order = submit(live, trader_entry)
    responses.post(ap.ORDERS, body=requests.exceptions.ConnectionError("reset"))
    responses.get(ap.BY_CLIENT_ID, json=ap.ERR_NOT_FOUND, status=404)
    order_route(firm_id=live.firm_id, order_id=order.pk)
    for _ in range(MAX_SUBMIT_ATTEMPTS + 1):
        reconcile_order(firm_id=live.firm_id, order_id=order.pk)
    with firm_scope(live.firm_id):
        order.refresh_from_db()
        events = list(OrderEvent.objects.filter(order=order).values_list("event", flat=True))
    assert order.status == Status.SUBMIT_FAILED_UNCONFIRMED
    assert order.submit_attempts == MAX_SUBMIT_ATTEMPTS
    assert {p["client_order_id"] for p in posts()} == {order.broker_client_order_id}  # every resend, one id
    assert len(posts()) == MAX_SUBMIT_ATTEMPTS
    assert events[-1] == "submit_failed_unconfirmed" and "rejected" not in events


def test_a_live_portfolio_without_keys_refuses_the_order(firm_a, instruments, trader_entry, quote):
    quote("AAPL", 187.10, 187.15, exchange="NASDAQ")
    portfolio = funded(firm_a.firm.pk, "Live unconnected", mode="live")
    order = submit(portfolio, trader_entry)
    order_route(firm_id=portfolio.firm_id, order_id=order.pk)
    with firm_scope(portfolio.firm_id):
        order.refresh_from_db()
    assert order.status == Status.REJECTED and order.reject_code == "BROKER_NOT_CONFIGURED"


def test_the_secret_is_encrypted_at_rest(live):
    from apps.orders.models import AlpacaAccount

    with firm_scope(live.firm_id):
        stored = AlpacaAccount.objects.get(portfolio=live)
    assert SECRET not in stored.secret_encrypted and stored.secret_hint == SECRET[-4:]
