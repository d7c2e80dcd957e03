"""The one handler of broker events (reliability targets 18 and 19): executions are applied once per exec id
whatever the order and repetition of the reports, filled_qty never decreases, an overfill is refused, and
stale or illegal statuses are not applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.core.tenancy import firm_scope
from apps.orders.brokers.base import BrokerOrderState, TradeUpdate
from apps.orders.core import Execution, Status
from apps.orders.models import Order, OrderEvent
from apps.orders.routing import apply_broker_state
from apps.orders.services import order_submit
from apps.orders.updates import broker_update_apply
from apps.portfolios.models import Fill, Position
from apps.portfolios.selectors import cash_balance
from tests.orders.conftest import funded, spec

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
ALPACA_ID = "904837e3-3b76-47ec-b432-046db621571b"


@pytest.fixture
def live_order(firm_a, instruments, trader_entry, quote):
    """A live (Alpaca) portfolio's limit buy of 10 at 100, accepted by the broker (status new)."""
    quote("BTC/USD", 99.9, 100)
    portfolio = funded(firm_a.firm.pk, "Live A", mode="live")
    order = order_submit(portfolio=portfolio, entry=trader_entry, spec=spec(
        qty="10", type="limit", limit_price=Decimal("100"), client_order_id="live-1")).order
    assert order.broker == "alpaca"
    state = BrokerOrderState(broker_order_id=ALPACA_ID, client_order_id=order.broker_client_order_id, status="new")
    return apply_broker_state(firm_id=firm_a.firm.pk, order_id=order.pk, state=state, broker="alpaca")


def update(order: Order, event: str, status: str, *, exec_id=None, qty=None, price=None, minutes=0) -> TradeUpdate:
    at = T0 + timedelta(minutes=minutes)
    state = BrokerOrderState(broker_order_id=ALPACA_ID, client_order_id=order.broker_client_order_id, status=status)
    execution = None if exec_id is None else Execution(exec_id=exec_id, order_id=ALPACA_ID, qty=Decimal(qty),
                                                      price=Decimal(price), at=at)
    return TradeUpdate(event=event, order=state, at=at, execution=execution)


def stream(order: Order) -> list[TradeUpdate]:
    """The canonical life of the order: three executions, each reported twice, then a late cancel."""
    fills = [
        update(order, "partial_fill", "partially_filled", exec_id="e1", qty="3", price="99.50", minutes=1),
        update(order, "partial_fill", "partially_filled", exec_id="e2", qty="3", price="99.80", minutes=2),
        update(order, "fill", "filled", exec_id="e3", qty="4", price="100", minutes=3),
    ]
    return [*fills, *fills, update(order, "canceled", "canceled", minutes=4)]


def state_of(order: Order) -> dict:
    with firm_scope(order.firm_id):
        order.refresh_from_db()
        return {
            "status": order.status, "filled_qty": order.filled_qty, "filled_value": order.filled_value,
            "fills": Fill.objects.filter(order_ref=str(order.pk)).count(),
            "executions": OrderEvent.objects.filter(order=order).exclude(exec_id="").count(),
            "position": Position.objects.filter(portfolio=order.portfolio_id).values_list("quantity", flat=True)
            .first() or Decimal(0),
            "cash": cash_balance(order.portfolio_id),
        }


CANONICAL = {"status": Status.FILLED, "filled_qty": Decimal(10), "filled_value": Decimal("997.90"), "fills": 3,
             "executions": 3, "position": Decimal(10), "cash": Decimal("100000") - Decimal("997.90")}


def test_the_canonical_stream_gives_the_canonical_state(live_order):
    for item in stream(live_order):
        broker_update_apply(firm_id=live_order.firm_id, broker="alpaca", update=item)
    assert state_of(live_order) == CANONICAL


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order_of_reports=st.permutations(range(7)))
def test_any_order_and_repetition_of_reports_gives_the_same_state(live_order, order_of_reports):
    items = stream(live_order)
    with transaction.atomic():  # each example rolls back to the accepted order
        seen = Decimal(0)
        for index in order_of_reports:
            broker_update_apply(firm_id=live_order.firm_id, broker="alpaca", update=items[index])
            with firm_scope(live_order.firm_id):
                filled = Order.objects.get(pk=live_order.pk).filled_qty
            assert filled >= seen  # filled_qty never goes down
            seen = filled
        final = state_of(live_order)
        transaction.set_rollback(True)
    expected = dict(CANONICAL)
    # a cancel reported before the final fill leaves the order canceled (the fill raced the cancel: the
    # shares are real and booked, the status stays final); after it, the cancel is refused and it stays filled
    if order_of_reports.index(6) < min(order_of_reports.index(2), order_of_reports.index(5)):
        expected["status"] = Status.CANCELED
    assert final == expected


def test_an_overfill_is_refused_and_audited(live_order):
    broker_update_apply(firm_id=live_order.firm_id, broker="alpaca",
                        update=update(live_order, "fill", "filled", exec_id="a", qty="10", price="100"))
    broker_update_apply(firm_id=live_order.firm_id, broker="alpaca",
                        update=update(live_order, "fill", "filled", exec_id="b", qty="1", price="100", minutes=1))
    state = state_of(live_order)
    assert state["filled_qty"] == Decimal(10) and state["fills"] == 1
    with firm_scope(live_order.firm_id):
        assert AuditEvent.objects.filter(action="order.overfill_refused", target_id=str(live_order.pk)).count() == 1


def test_a_stale_status_is_not_applied(live_order):
    broker_update_apply(firm_id=live_order.firm_id, broker="alpaca",
                        update=update(live_order, "fill", "filled", exec_id="a", qty="10", price="100"))
    broker_update_apply(firm_id=live_order.firm_id, broker="alpaca", update=update(live_order, "new", "new"))
    broker_update_apply(firm_id=live_order.firm_id, broker="alpaca",
                        update=update(live_order, "partial_fill", "partially_filled"))
    with firm_scope(live_order.firm_id):
        live_order.refresh_from_db()
        steps = list(OrderEvent.objects.filter(order=live_order).values_list("event", "status_after"))
    assert live_order.status == Status.FILLED
    assert steps[-2:] == [("new", "filled"), ("partial_fill", "filled")]  # recorded, not applied


def test_an_event_for_an_unknown_order_changes_nothing(live_order, firm_b):
    stranger = BrokerOrderState(broker_order_id="nope", client_order_id="oct-unknown", status="filled")
    assert broker_update_apply(firm_id=live_order.firm_id, broker="alpaca",
                               update=TradeUpdate(event="fill", order=stranger, at=T0)) is None
    # another firm's order is unknown to this firm: firm B cannot move firm A's order
    assert broker_update_apply(firm_id=firm_b.firm.pk, broker="alpaca",
                               update=update(live_order, "canceled", "canceled")) is None
    assert state_of(live_order)["status"] == Status.NEW
