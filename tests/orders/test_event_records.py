"""Reliability targets 9 and 10: every order event carries the firm, the account, the order, the client's id,
who entered it and from where, the material terms and, for fills, the execution; events are append-only, and
an order's original terms can be rebuilt from its first event after any number of changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, transaction

from apps.core.tenancy import firm_scope
from apps.orders.brokers.paper import PaperBroker, current_quote
from apps.orders.models import OrderEvent
from apps.orders.routing import order_route, replace_at_broker
from apps.orders.services import order_replace, order_submit
from tests.orders.conftest import spec

pytestmark = pytest.mark.django_db
MATERIAL = ("symbol", "asset_class", "side", "qty", "notional", "type", "time_in_force", "limit_price", "stop_price",
            "extended_hours", "order_class", "portfolio")


@pytest.fixture
def history(paper, trader_entry, quote, enqueued, django_capture_on_commit_callbacks):
    """A limit order sent, replaced at a better price, then filled: every kind of step."""
    quote("BTC/USD", 60000, 60010)
    order = order_submit(portfolio=paper, entry=trader_entry,
                         spec=spec(type="limit", limit_price=Decimal("59000"), qty="0.3")).order
    order_route(firm_id=paper.firm_id, order_id=order.pk)
    with django_capture_on_commit_callbacks(execute=True):
        order_replace(order=order, changes={"limit_price": Decimal("59500")}, actor=trader_entry.actor)
    (_, (firm_id, pk, changes)), = [c for c in enqueued if c[0] == "orders.replace"]
    replace_at_broker(firm_id=firm_id, order_id=pk, changes=changes)
    quote("BTC/USD", 59400, 59450)
    PaperBroker(paper.firm_id).match("BTC/USD", current_quote("BTC/USD"))
    return order


def test_every_event_has_the_required_fields(history, paper):
    with firm_scope(paper.firm_id):
        events = list(OrderEvent.objects.filter(portfolio=paper).order_by("id"))
    kinds = [e.event for e in events]
    assert kinds == ["received", "submitted", "new", "replace_requested", "received", "new", "replaced", "fill"]
    for e in events:
        assert e.firm_id == paper.firm_id and e.portfolio_id == paper.pk and e.order_id and e.client_order_id, e
        assert e.received_at and e.event_at and e.source and e.status_after, e
        assert e.entered_by_id and e.responsible_user_id, e
        assert set(MATERIAL) <= set(e.terms) and all(e.terms[k] is not None for k in ("symbol", "side", "type")), e
        if e.event == "fill":
            assert e.exec_id and e.fill_qty == Decimal("0.3") and e.fill_price == Decimal("59450")
            assert e.cum_qty == Decimal("0.3") and e.fee == Decimal(0)


def test_the_original_terms_survive_a_replace_and_events_refuse_changes(history, paper):
    with firm_scope(paper.firm_id):
        first = OrderEvent.objects.filter(order=history).order_by("id").first()
        assert first.terms["limit_price"] == "59000"  # as submitted, before the replace
        with pytest.raises(DatabaseError), transaction.atomic():
            OrderEvent.objects.filter(pk=first.pk).update(event="tampered")
        with pytest.raises(DatabaseError), transaction.atomic():
            OrderEvent.objects.filter(pk=first.pk).delete()
