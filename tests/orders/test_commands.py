"""The operator commands: ``reconcile_orders`` (on demand; exit 1 on a break) and ``alpaca_trade_stream``
(reconcile, then the trade_updates stream into the books) against a local Alpaca stream and HTTP mocks."""

from __future__ import annotations

from decimal import Decimal

import pytest
import responses
from django.core.management import call_command

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.orders.brokers.base import BrokerOrderState
from apps.orders.core import Status
from apps.orders.models import Order
from apps.orders.routing import apply_broker_state
from apps.orders.services import alpaca_account_connect, order_submit
from apps.portfolios.models import Position
from tests.orders import alpaca_payloads as ap
from tests.orders.conftest import funded, spec
from tests.orders.test_alpaca_stream import FakeTradingStream


def test_reconcile_orders_reports_a_clean_paper_portfolio(paper, capsys):
    call_command("reconcile_orders", "--portfolio", str(paper.pk))
    assert f"portfolio {paper.pk} (paper): 0 open order(s), 0 updated, clean" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
@responses.activate
def test_alpaca_trade_stream_reconciles_then_books_the_streamed_fills(firm_a, instruments, trader_entry, quote,
                                                                       capsys):
    quote("AAPL", 187.10, 187.15, exchange="NASDAQ")
    live = funded(firm_a.firm.pk, "Live A", mode="live")
    alpaca_account_connect(portfolio=live, key_id=ap.KEY, secret_key=ap.SECRET, paper=True,
                           actor=Actor.system("test"))
    order = order_submit(portfolio=live, entry=trader_entry, spec=spec(
        symbol="AAPL", qty="10", type="limit", tif="day", limit_price=Decimal("187.15"))).order
    ours = order.broker_client_order_id
    apply_broker_state(firm_id=live.firm_id, order_id=order.pk, broker="alpaca",
                       state=BrokerOrderState(broker_order_id=ap.ORDER_ID, client_order_id=ours, status="new"))
    responses.get(ap.BY_CLIENT_ID, json={**ap.order("new"), "client_order_id": ours})
    responses.get(ap.ORDERS, json=[])
    responses.get(f"{ap.PAPER}/v2/positions", json=[])
    responses.get(f"{ap.PAPER}/v2/account/activities/FILL", json=[])
    partial, fill = ap.partial_fill_msg(), ap.fill_msg()
    for message in (partial, fill):
        message["data"]["order"]["client_order_id"] = ours
    with FakeTradingStream([[partial, fill, partial]]) as server:  # the partial fill is redelivered
        call_command("alpaca_trade_stream", "--portfolio", str(live.pk), "--seconds", "2", "--url", server.url)
    assert "reconciled portfolio" in capsys.readouterr().out
    with firm_scope(live.firm_id):
        order = Order.objects.get(pk=order.pk)
        position = Position.objects.get(portfolio=live)
    assert order.status == Status.FILLED and order.filled_qty == Decimal(10)
    assert order.filled_value == Decimal("4") * Decimal("187.1") + Decimal("6") * Decimal("187.14")
    assert position.quantity == Decimal(10)
