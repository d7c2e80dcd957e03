"""The one order path end to end on the paper broker: submit -> checks -> persist -> route -> fills booked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.audit.models import AuditEvent
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.orders.core import Status
from apps.orders.models import Order, OrderEvent
from apps.orders.routing import order_route
from apps.orders.services import order_submit
from apps.portfolios.models import Fill, Position
from apps.portfolios.selectors import cash_balance
from tests.orders.conftest import spec

pytestmark = pytest.mark.django_db


def events_of(order) -> list[tuple[str, str, str]]:
    with firm_scope(order.firm_id):
        return list(OrderEvent.objects.filter(order=order).order_by("id").values_list("event", "status_before",
                                                                                       "status_after"))


def test_market_buy_is_persisted_routed_filled_and_booked(paper, trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    result = order_submit(portfolio=paper, spec=spec(qty="0.5"), entry=trader_entry)
    assert result.created and result.order.status == Status.RECEIVED
    order = order_route(firm_id=paper.firm_id, order_id=result.order.pk)
    assert order is not None
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
        assert order.status == Status.FILLED
        assert order.filled_qty == Decimal("0.5")
        assert order.filled_avg_price == Decimal("60010")  # a buy pays the ask
        assert order.broker_order_id == f"paper-{order.pk}"
        fill = Fill.objects.get(order_ref=str(order.pk))
        assert (fill.side, fill.quantity, fill.price) == ("buy", Decimal("0.5"), Decimal("60010"))
        assert Position.objects.get(portfolio=paper).quantity == Decimal("0.5")
        assert cash_balance(paper.pk) == Decimal("100000") - Decimal("30005")
        actions = list(AuditEvent.objects.filter(firm_id=paper.firm_id).values_list("action", flat=True))
    assert events_of(order) == [
        ("received", "", "received"), ("submitted", "received", "submitting"), ("new", "submitting", "new"),
        ("fill", "new", "filled")]
    assert "order.submitted" in actions and "portfolio.fill_booked" in actions


def test_limit_order_rests_until_the_price_trades_through(paper, trader_entry, quote):
    from apps.orders.brokers.paper import PaperBroker, current_quote

    quote("BTC/USD", 60000, 60010)
    result = order_submit(portfolio=paper, spec=spec(type="limit", limit_price=Decimal("59000")), entry=trader_entry)
    order_route(firm_id=paper.firm_id, order_id=result.order.pk)
    with firm_scope(paper.firm_id):
        order = Order.objects.get(pk=result.order.pk)
    assert order.status == Status.NEW
    quote("BTC/USD", 58990, 58995)
    assert PaperBroker(paper.firm_id).match("BTC/USD", current_quote("BTC/USD")) == 1
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
    assert order.status == Status.FILLED and order.filled_avg_price == Decimal("58995")


def test_route_twice_sends_once(paper, trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    result = order_submit(portfolio=paper, spec=spec(type="limit", limit_price=Decimal("58000")), entry=trader_entry)
    assert order_route(firm_id=paper.firm_id, order_id=result.order.pk) is not None
    assert order_route(firm_id=paper.firm_id, order_id=result.order.pk) is None  # already claimed and sent
    assert [e[0] for e in events_of(result.order)].count("submitted") == 1


def test_idempotent_replay_and_mismatch(paper, trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    first = order_submit(portfolio=paper, spec=spec(client_order_id="abc-1"), entry=trader_entry)
    again = order_submit(portfolio=paper, spec=spec(client_order_id="abc-1"), entry=trader_entry)
    assert first.created and not again.created and again.order.pk == first.order.pk
    with pytest.raises(DomainError) as exc:
        order_submit(portfolio=paper, spec=spec(client_order_id="abc-1", qty="0.6"), entry=trader_entry)
    assert exc.value.code == "IDEMPOTENCY_KEY_MISMATCH" and exc.value.status_code == 409
    with firm_scope(paper.firm_id):
        assert Order.objects.filter(client_order_id="abc-1").count() == 1


def test_risk_rejection_is_stored_audited_and_never_routed(paper, trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    result = order_submit(portfolio=paper, spec=spec(qty="5"), entry=trader_entry)  # 300k > 100k cash
    assert result.rejected
    order = result.order
    assert order.reject_code == "INSUFFICIENT_BUYING_POWER"
    assert order_route(firm_id=paper.firm_id, order_id=order.pk) is None
    assert events_of(order) == [("risk_rejected", "", "risk_rejected")]
    with firm_scope(paper.firm_id):
        assert AuditEvent.objects.filter(firm_id=paper.firm_id, action="order.risk_rejected",
                                         target_id=str(order.pk)).exists()


def test_bad_input_writes_nothing(paper, trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    bad = [
        spec(symbol="NOPE"),
        spec(qty="0"),
        spec(qty="-1"),
        spec(type="limit"),  # no limit price
        spec(tif="day"),  # crypto: gtc or ioc only
    ]
    for item in bad:
        with pytest.raises(DomainError) as exc:
            order_submit(portfolio=paper, spec=item, entry=trader_entry)
        assert exc.value.status_code == 400 and exc.value.fields, item
    with firm_scope(paper.firm_id):
        assert not Order.objects.exists() and not OrderEvent.objects.exists()


def test_stop_on_the_wrong_side_is_refused(paper, trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    with pytest.raises(DomainError) as exc:
        order_submit(portfolio=paper, spec=spec(type="stop_limit", stop_price=Decimal("50000"),
                                                 limit_price=Decimal("50010")), entry=trader_entry)
    assert "stop_price" in exc.value.fields


def test_buying_power_held_by_open_orders_is_released_as_they_fill(paper, trader_entry, quote):
    from datetime import UTC, datetime

    from apps.orders.brokers.base import BrokerOrderState, TradeUpdate
    from apps.orders.core import Execution
    from apps.orders.selectors import account_state, trading_control
    from apps.orders.updates import broker_update_apply

    quote("BTC/USD", 60000, 60010)
    order = order_submit(portfolio=paper, entry=trader_entry,
                         spec=spec(qty="1", type="limit", limit_price=Decimal("59000"))).order
    assert order.reserved == Decimal("59000")
    order_route(firm_id=paper.firm_id, order_id=order.pk)

    def state():
        with firm_scope(paper.firm_id):
            return account_state(portfolio=paper, instrument=order.instrument,
                                 control=trading_control(paper.firm_id), now=datetime.now(UTC))

    before = state()
    assert (before.reserved, before.open_buy_qty, before.open_notional) == (Decimal(59000), Decimal(1), Decimal(59000))
    fill = Execution(exec_id="part-1", order_id=str(order.pk), qty=Decimal("0.25"), price=Decimal("59000"),
                     at=datetime.now(UTC))
    broker_update_apply(firm_id=paper.firm_id, broker="paper", update=TradeUpdate(
        event="partial_fill", at=fill.at, execution=fill, order=BrokerOrderState(
            broker_order_id=f"paper-{order.pk}", client_order_id=order.broker_client_order_id,
            status="partially_filled")))
    after = state()
    assert (after.reserved, after.open_buy_qty) == (Decimal(44250), Decimal("0.75"))
    assert after.cash == Decimal(100000) - Decimal(14750)  # the fill moved the cash; the rest stays held
