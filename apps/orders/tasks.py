"""Order tasks (thin: ids in, one service call). All are idempotent: routing claims the order first, a
cancel or replace acts only on an order still pending it, and matching skips rows another worker holds."""

from __future__ import annotations

from celery import shared_task

from apps.core.tasks import firm_task

PAPER_MATCH_SECONDS = 2  # the simulated market publishes every 2 s
RELAY_SECONDS = 5


@firm_task(name="orders.route", soft_time_limit=60, time_limit=90)
def route_order(firm_id: int, order_id: str) -> str | None:
    from apps.orders.routing import order_route

    order = order_route(firm_id=firm_id, order_id=order_id)
    return None if order is None else order.status


@firm_task(name="orders.cancel", soft_time_limit=60, time_limit=90)
def cancel_order(firm_id: int, order_id: str) -> str:
    from apps.orders.routing import cancel_at_broker

    return cancel_at_broker(firm_id=firm_id, order_id=order_id).status


@firm_task(name="orders.replace", soft_time_limit=60, time_limit=90)
def replace_order(firm_id: int, order_id: str, changes: dict) -> str:
    from apps.orders.routing import replace_at_broker

    return replace_at_broker(firm_id=firm_id, order_id=order_id, changes=changes).status


@shared_task(name="orders.relay", acks_late=True, ignore_result=True, expires=RELAY_SECONDS * 2)
def relay() -> dict:
    """Beat: the outbox relay and the reconciler of unknown outcomes (apps.orders.routing)."""
    from apps.orders.routing import relay_pending

    return relay_pending()


@shared_task(name="orders.paper_match", acks_late=True, ignore_result=True, expires=PAPER_MATCH_SECONDS * 2)
def paper_match() -> dict:
    """Beat: run every firm's working paper orders against the latest quotes."""
    from apps.orders.brokers.paper import match_all

    return match_all()
