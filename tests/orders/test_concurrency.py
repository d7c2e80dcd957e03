"""Real concurrent transactions on PostgreSQL (each thread its own connection): idempotency under a storm of
identical submissions (reliability target 14), one broker call per order however many routers race
(target 15, 43), and no over-commit of buying power (target 42)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from apps.core.tenancy import firm_scope
from apps.orders.core import Status
from apps.orders.models import Order, OrderEvent
from apps.orders.routing import order_route, relay_pending
from apps.orders.services import order_submit
from tests.orders.conftest import spec

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(target, n: int) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []
    return results


def test_twenty_identical_submissions_make_one_order_and_one_broker_call(paper, trader_entry, quote, enqueued):
    quote("BTC/USD", 60000, 60010)
    order_spec = spec(qty="0.25", client_order_id="storm-1")
    results = run_threads(lambda i: order_submit(portfolio=paper, spec=order_spec, entry=trader_entry), 20)
    ids = {r.order.pk for r in results}
    assert len(ids) == 1
    assert sum(r.created for r in results) == 1
    assert len(enqueued) == 1  # one route task queued, by the one submission that created the order
    order_id = ids.pop()
    # every router races for it: the claim lets exactly one send it
    routed = run_threads(lambda i: order_route(firm_id=paper.firm_id, order_id=order_id), 5)
    assert sum(r is not None for r in routed) == 1
    with firm_scope(paper.firm_id):
        assert Order.objects.filter(client_order_id="storm-1").count() == 1
        events = list(OrderEvent.objects.filter(order_id=order_id).values_list("event", flat=True))
        order = Order.objects.get(pk=order_id)
    assert events.count("received") == 1 and events.count("submitted") == 1 and events.count("fill") == 1
    assert order.status == Status.FILLED and order.filled_qty == Decimal("0.25")


def test_fifty_orders_for_ten_percent_each_never_overcommit_buying_power(paper, trader_entry, quote):
    quote("BTC/USD", 9990, 10000)
    # cash 100,000; each limit buy of 1 at 10,000 takes 10% of it
    results = run_threads(lambda i: order_submit(portfolio=paper, entry=trader_entry, spec=spec(
        type="limit", qty="1", limit_price=Decimal("10000"), client_order_id=f"bp-{i}")), 50)
    accepted = [r.order for r in results if not r.rejected]
    rejected = [r.order for r in results if r.rejected]
    assert len(accepted) == 10 and len(rejected) == 40
    assert {o.reject_code for o in rejected} == {"INSUFFICIENT_BUYING_POWER"}
    assert sum(o.qty * o.limit_price for o in accepted) <= Decimal("100000")


def test_an_order_whose_route_task_was_lost_reaches_the_broker_exactly_once(paper, trader_entry, quote, enqueued):
    """The crash window between commit and routing: the queued task never runs (the worker died, Redis
    lost it). The relay finds the order still received and sends it, once, however often it runs."""
    quote("BTC/USD", 60000, 60010)
    order = order_submit(portfolio=paper, spec=spec(qty="0.1"), entry=trader_entry).order
    assert order.status == Status.RECEIVED and len(enqueued) == 1  # queued, then lost
    later = timezone.now() + timedelta(seconds=10)
    assert relay_pending(now=later) == {"routed": 1, "reconciled": 0}
    assert relay_pending(now=later) == {"routed": 0, "reconciled": 0}
    assert order_route(firm_id=paper.firm_id, order_id=order.pk) is None  # the late task finds it routed
    with firm_scope(paper.firm_id):
        order.refresh_from_db()
        submitted = OrderEvent.objects.filter(order=order, event="submitted").count()
    assert order.status == Status.FILLED and submitted == 1


def test_routing_is_not_skipped_while_another_transaction_holds_the_portfolio(paper, trader_entry, quote):
    """The claim locks the order row only: an order_submit holding the portfolio's row lock (or a booking on
    the same instrument) must not make the router skip the order and leave it received."""
    import time

    from django.db import transaction

    from apps.portfolios.models import Portfolio

    quote("BTC/USD", 60000, 60010)
    order = order_submit(portfolio=paper, spec=spec(type="limit", limit_price=Decimal("59000")), entry=trader_entry)
    held = threading.Event()

    def hold(i):
        if i == 0:
            with firm_scope(paper.firm_id), transaction.atomic():
                Portfolio.objects.select_for_update().get(pk=paper.pk)
                held.set()
                time.sleep(1.0)
            return None
        held.wait(10)
        return order_route(firm_id=paper.firm_id, order_id=order.order.pk)

    _, routed = run_threads(hold, 2)
    assert routed is not None and routed.status == Status.NEW
