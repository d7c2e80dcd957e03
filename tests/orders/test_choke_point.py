"""Reliability targets 1, 25 and 43: every door goes through ``order_submit`` and only routing talks to a
broker's submit; a rolled-back order queues nothing; paper and Alpaca book the same script the same way."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import responses
from django.db import transaction

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.orders import services
from apps.orders.brokers.paper import PaperBroker
from apps.orders.core import Status
from apps.orders.models import Order
from apps.orders.routing import apply_broker_state, order_route
from apps.orders.updates import broker_update_apply
from apps.portfolios.models import Lot, Position
from apps.portfolios.selectors import cash_balance
from tests.orders import alpaca_payloads as ap
from tests.orders.conftest import funded, spec

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_only_routing_calls_a_brokers_submit():
    calls = {}
    for path in (ROOT / "apps").rglob("*.py"):
        found = re.findall(r"\b\w*broker\w*\.submit\(", path.read_text())
        if found:
            calls[path.relative_to(ROOT).as_posix()] = len(found)
    assert calls == {"apps/orders/routing.py": 1}


def test_every_door_fails_when_the_choke_point_fails(firm_a, paper, api_client_for, verified_client_for, quote,
                                                     monkeypatch):
    quote("BTC/USD", 60000, 60010)

    def refuse(*args, **kwargs):
        raise RuntimeError("choke point down")

    # the step of order_submit that persists an accepted order: a door that bypassed the choke point
    # would still succeed
    monkeypatch.setattr(services, "_create", refuse)
    body = {"portfolio": paper.pk, "symbol": "BTC/USD", "qty": "0.1", "side": "buy", "type": "market",
            "time_in_force": "gtc"}
    with pytest.raises(RuntimeError, match="choke point down"):
        api_client_for(firm_a.member("trader")).post("/api/v1/orders/", body, format="json")
    page = verified_client_for(firm_a.member("trader"))
    with pytest.raises(RuntimeError, match="choke point down"):
        page.post(f"/trade/{paper.pk}/ticket/", {**{k: str(v) for k, v in body.items() if k != "portfolio"},
                                                 "action": "send"})
    with firm_scope(paper.firm_id):
        assert not Order.objects.exists()


def test_a_rolled_back_order_queues_nothing(paper, trader_entry, quote, enqueued, django_capture_on_commit_callbacks):
    quote("BTC/USD", 60000, 60010)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            services.order_submit(portfolio=paper, spec=spec(qty="0.1"), entry=trader_entry)
            transaction.set_rollback(True)
    assert callbacks == [] and enqueued == []
    with django_capture_on_commit_callbacks(execute=True):
        services.order_submit(portfolio=paper, spec=spec(qty="0.1"), entry=trader_entry)
    assert len(enqueued) == 1


def books(portfolio) -> dict:
    with firm_scope(portfolio.firm_id):
        return {
            "position": Position.objects.get(portfolio=portfolio).quantity,
            "cash": cash_balance(portfolio.pk),
            "lots": sorted((lot.quantity, lot.cost) for lot in Lot.objects.filter(portfolio=portfolio)),
        }


@responses.activate
def test_paper_and_alpaca_book_the_same_script_the_same_way(firm_a, instruments, trader_entry, quote):
    """Target 25: buy 2 at 100.5 then sell 1 at 101.25, on the paper venue and through (fake) Alpaca."""
    paper = funded(firm_a.firm.pk, "Parity paper")
    live = funded(firm_a.firm.pk, "Parity live", mode="live")
    services.alpaca_account_connect(portfolio=live, key_id=ap.KEY, secret_key=ap.SECRET, paper=True,
                                    actor=Actor.system("test"))
    for step, (side, price) in enumerate((("buy", "100.5"), ("sell", "101.25"))):
        quote("ETH/USD", float(price), float(price))
        paper_order = services.order_submit(portfolio=paper, entry=trader_entry, spec=spec(
            symbol="ETH/USD", side=side, qty="2" if side == "buy" else "1")).order
        order_route(firm_id=paper.firm_id, order_id=paper_order.pk)
        live_order = services.order_submit(portfolio=live, entry=trader_entry, spec=spec(
            symbol="ETH/USD", side=side, qty="2" if side == "buy" else "1")).order
        broker_id = f"{ap.ORDER_ID[:-1]}{step}"
        apply_broker_state(firm_id=live.firm_id, order_id=live_order.pk, broker="alpaca", state=ap_state(
            live_order, broker_id, "new"))
        message = ap.trade_update("fill", {**ap.order("filled"), "id": broker_id,
                                           "client_order_id": live_order.broker_client_order_id},
                                  timestamp=datetime.now(UTC).isoformat(), execution_id=f"x{step}", price=price,
                                  qty=str(live_order.qty))
        from apps.orders.brokers.alpaca_stream import parse_trade_update

        broker_update_apply(firm_id=live.firm_id, broker="alpaca", update=parse_trade_update(message))
    assert books(paper) == books(live)
    assert books(paper)["position"] == Decimal(1)
    with firm_scope(paper.firm_id):
        assert set(Order.objects.values_list("status", flat=True)) == {Status.FILLED}


def ap_state(order, broker_id: str, status: str):
    from apps.orders.brokers.base import BrokerOrderState

    return BrokerOrderState(broker_order_id=broker_id, client_order_id=order.broker_client_order_id, status=status)


def test_a_day_order_expires_at_the_session_close(paper, trader_entry, quote):
    quote("AAPL", 186.9, 187.0, exchange="NASDAQ")
    order = services.order_submit(portfolio=paper, entry=trader_entry, spec=spec(
        symbol="AAPL", qty="1", type="limit", tif="day", limit_price=Decimal("180"))).order
    order_route(firm_id=paper.firm_id, order_id=order.pk)
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
    assert order.status == Status.NEW
    # the first regular close after the order was placed (New York 16:00 = 21:00 UTC in winter)
    from apps.marketdata import calendars

    day = order.created_at.date()
    close = next(s.close for s in calendars.sessions("NASDAQ", day, day + timedelta(days=7))
                 if s.close > order.created_at)
    PaperBroker(paper.firm_id, now=close.replace(minute=1)).match("AAPL", None)
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
    assert order.status == Status.EXPIRED and order.expired_at is not None


PURE_CORES = ("core", "checks", "validation", "matching", "fills", "algos", "brokers/base")


@pytest.mark.parametrize("module", PURE_CORES)
def test_the_pure_cores_import_no_orm(module):
    """The backtester reuses these as they are: plain Python over plain data, no Django, no models."""
    import ast

    tree = ast.parse((ROOT / "apps" / "orders" / f"{module}.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    shell = sorted(name for name in imported if name.startswith(("django", "rest_framework", "celery", "channels"))
                   or name.endswith((".models", ".services", ".selectors")))
    assert shell == []
