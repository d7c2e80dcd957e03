"""The order path with a REAL Celery worker: the route task queued after commit sends the order; a task
delivered twice sends it once (target 44); a worker killed before routing loses nothing — after a restart
the relay sends the order exactly once (targets 20 and 43)."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.tenancy import firm_scope
from apps.orders.core import Status
from apps.orders.models import Order, OrderEvent
from apps.orders.services import order_submit
from apps.orders.tasks import relay, route_order
from tests.celery_support import wait_for
from tests.orders.conftest import spec

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def enqueued():
    """Overrides the recording fixture of tests/orders/conftest.py: here the route task really is queued."""
    return None


def status_of(order) -> str:
    with firm_scope(order.firm_id):
        return Order.objects.get(pk=order.pk).status


def succeeded(worker, task: str) -> int:
    return sum(1 for line in worker.log().splitlines() if f"Task {task}[" in line and " succeeded " in line)


def sends_of(order) -> int:
    with firm_scope(order.firm_id):
        return OrderEvent.objects.filter(order_id=order.pk, event="submitted").count()


def test_the_route_task_sends_the_order_and_a_second_delivery_changes_nothing(celery_worker, paper, trader_entry,
                                                                               quote):
    quote("BTC/USD", 60000, 60010)
    order = order_submit(portfolio=paper, spec=spec(qty="0.2"), entry=trader_entry).order
    wait_for(lambda: status_of(order) == Status.FILLED)
    route_order.delay(paper.firm_id, str(order.pk))  # redelivered (acks_late after a lost ack)
    route_order.delay(paper.firm_id, str(order.pk))
    relay.delay()
    wait_for(lambda: succeeded(celery_worker, "orders.route") == 3 and succeeded(celery_worker, "orders.relay") == 1)
    assert sends_of(order) == 1
    with firm_scope(order.firm_id):
        assert OrderEvent.objects.filter(order_id=order.pk).exclude(exec_id="").count() == 1


def test_a_worker_killed_before_routing_loses_nothing_and_sends_once(celery_worker_factory, paper, trader_entry,
                                                                     quote):
    quote("BTC/USD", 60000, 60010)
    first = celery_worker_factory()
    first.stop(signal.SIGKILL)  # dies; the route task queued below is lost with the next worker's purge
    order = order_submit(portfolio=paper, spec=spec(qty="0.2"), entry=trader_entry).order
    assert status_of(order) == Status.RECEIVED, (order.reject_code, order.reject_reason)
    second = celery_worker_factory()  # a fresh worker (start_worker purges the queue: the task is gone)
    # the relay's clock: it routes orders received more than RELAY_AFTER ago
    wait_for(lambda: (order.created_at < timezone.now() - timedelta(seconds=3.5)), timeout=10)
    relay.delay()
    wait_for(lambda: status_of(order) == Status.FILLED)
    relay.delay()
    wait_for(lambda: succeeded(second, "orders.relay") == 2)
    assert sends_of(order) == 1 and succeeded(second, "orders.route") == 0  # the relay sent it, once


def test_a_starting_worker_reconciles_the_live_portfolios(celery_worker, firm_a, instruments):
    """Reliability target 21: on start a worker queues one reconciliation (here: nothing live to compare)."""
    wait_for(lambda: succeeded(celery_worker, "orders.reconcile_live") == 1)
    assert "{'portfolios': 0, 'with_breaks': 0}" in celery_worker.log()
