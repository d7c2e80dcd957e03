"""Reconciliation against Alpaca (mocked at the HTTP layer): statuses adopted, breaks reported, and a break
or a missing report halts the portfolio until someone resumes it (reliability target 21: fails closed)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import responses

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.orders.brokers.base import BrokerOrderState
from apps.orders.core import Status
from apps.orders.models import PortfolioHalt
from apps.orders.reconcile import portfolio_resume, reconcile_portfolio
from apps.orders.routing import apply_broker_state
from apps.orders.services import alpaca_account_connect, order_submit
from tests.orders import alpaca_payloads as ap
from tests.orders.conftest import funded, spec

pytestmark = pytest.mark.django_db
POSITIONS = f"{ap.PAPER}/v2/positions"
FILLS = f"{ap.PAPER}/v2/account/activities/FILL"
SYSTEM = Actor.system("reconciler")


@pytest.fixture
def live(firm_a, instruments, quote):
    quote("AAPL", 187.10, 187.15, exchange="NASDAQ")
    portfolio = funded(firm_a.firm.pk, "Live A", mode="live")
    alpaca_account_connect(portfolio=portfolio, key_id="PKTEST123", secret_key="alpaca-secret-key-0123456789",
                           paper=True, actor=SYSTEM)
    return portfolio


@pytest.fixture
def working(live, trader_entry):
    order = order_submit(portfolio=live, entry=trader_entry, spec=spec(
        symbol="AAPL", qty="10", type="limit", tif="day", limit_price=Decimal("187.15"))).order
    state = BrokerOrderState(broker_order_id=ap.ORDER_ID, client_order_id=order.broker_client_order_id, status="new")
    return apply_broker_state(firm_id=live.firm_id, order_id=order.pk, state=state, broker="alpaca")


def mock_broker(order_payload: dict | None, positions: list[dict], open_orders: list[dict] | None = None,
                fills: list[dict] | None = None):
    responses.get(FILLS, json=fills or [])
    if order_payload is not None:
        responses.get(ap.BY_CLIENT_ID, json=order_payload)
    responses.get(ap.ORDERS, json=open_orders if open_orders is not None else [])
    responses.get(POSITIONS, json=positions)


def halted(portfolio) -> bool:
    with firm_scope(portfolio.firm_id):
        return PortfolioHalt.objects.filter(portfolio=portfolio).exists()


@responses.activate
def test_a_clean_run_adopts_statuses_and_halts_nothing(live, working):
    mock_broker({**ap.order("canceled"), "client_order_id": working.broker_client_order_id}, [])
    report = reconcile_portfolio(portfolio=live, actor=SYSTEM)
    assert report.clean and report.checked == 1 and report.updated == 1 and not halted(live)
    with firm_scope(live.firm_id):
        working.refresh_from_db()
        assert working.status == Status.CANCELED
        assert AuditEvent.objects.filter(action="orders.reconciled").count() == 1


@responses.activate
def test_breaks_are_reported_and_halt_the_portfolio(live, working, trader_entry, api_client_for, firm_a):
    stranger = {**ap.order("new"), "id": "11111111-2222-3333-4444-555555555555", "client_order_id": "manual-at-alpaca"}
    mock_broker({**ap.order("partially_filled"), "client_order_id": working.broker_client_order_id},
                [{"symbol": "AAPL", "qty": "4", "side": "long"}], open_orders=[stranger])
    report = reconcile_portfolio(portfolio=live, actor=SYSTEM)
    assert [(b.kind, b.symbol, b.ours, b.theirs) for b in report.breaks] == [
        ("fill_mismatch", "AAPL", "0", "4"),  # Alpaca filled 4 that no execution told us about
        ("unknown_at_broker", "AAPL", "unknown", "new"),
        ("position_mismatch", "AAPL", "0", "4"),
    ]
    assert report.halted and halted(live)
    refused = api_client_for(firm_a.member("trader")).post("/api/v1/orders/", {
        "portfolio": live.pk, "symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day",
        "limit_price": "187"}, format="json")
    assert refused.status_code == 423 and refused.json()["error"]["code"] == "TRADING_HALTED"
    portfolio_resume(portfolio=live, actor=Actor.for_user(firm_a.member("owner").user))
    assert not halted(live)
    with pytest.raises(DomainError):
        portfolio_resume(portfolio=live, actor=SYSTEM)


@responses.activate
def test_a_missing_position_report_is_never_taken_for_flat(live, working):
    mock_broker({**ap.order("new"), "client_order_id": working.broker_client_order_id}, [])
    responses.replace(responses.GET, POSITIONS, json=ap.ERR_INTERNAL, status=500)
    report = reconcile_portfolio(portfolio=live, actor=SYSTEM)
    assert report.error.startswith("BrokerUnavailable") and report.halted and halted(live)


def activity(order: str, qty: str, cum: str, leaves: str, price: str, kind: str) -> dict:
    """One FILL account activity, as GET /v2/account/activities/FILL returns it."""
    return {"id": f"20240102143105123::{order[:8]}-{cum}", "activity_type": "FILL", "transaction_time":
            "2024-01-02T14:31:05.123Z", "type": kind, "price": price, "qty": qty, "side": "buy", "symbol": "AAPL",
            "leaves_qty": leaves, "order_id": order, "cum_qty": cum, "order_status": kind.replace("fill", "filled")}


@responses.activate
def test_fills_the_stream_missed_are_recovered_once(live, working):
    """The stream was down while Alpaca filled 4 then 6: reconciliation books both from the activities; the
    stream's late redelivery of the first afterwards changes nothing (the same key)."""
    from apps.orders.brokers.alpaca_stream import parse_trade_update
    from apps.orders.updates import broker_update_apply
    from apps.portfolios.models import Position

    filled = {**ap.order("filled"), "client_order_id": working.broker_client_order_id}
    mock_broker(filled, [{"symbol": "AAPL", "qty": "10", "side": "long"}], fills=[
        activity(ap.ORDER_ID, "4", "4", "6", "187.1", "partial_fill"),
        activity(ap.ORDER_ID, "6", "10", "0", "187.14", "fill")])
    report = reconcile_portfolio(portfolio=live, actor=SYSTEM)
    assert report.clean and report.recovered_fills == 2 and not halted(live), report
    message = ap.partial_fill_msg()
    message["data"]["order"]["client_order_id"] = working.broker_client_order_id
    broker_update_apply(firm_id=live.firm_id, broker="alpaca", update=parse_trade_update(message))
    with firm_scope(live.firm_id):
        working.refresh_from_db()
        assert Position.objects.get(portfolio=live).quantity == Decimal(10)
    assert working.status == Status.FILLED and working.filled_qty == Decimal(10)
    assert working.filled_value == Decimal("4") * Decimal("187.1") + Decimal("6") * Decimal("187.14")
