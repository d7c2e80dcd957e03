"""Order tasks (thin: ids in, one service call). All are idempotent: routing claims the order first, a
cancel or replace acts only on an order still pending it, and matching skips rows another worker holds."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

from apps.core.tasks import firm_task

PAPER_MATCH_SECONDS = 2  # the simulated market publishes every 2 s
RELAY_SECONDS = 5
RECONCILE_SECONDS = 300
ALGO_TICK_SECONDS = 5  # TWAP/VWAP slices are no finer than one a second; beat looks every 5 s


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


@shared_task(name="orders.algo_tick_all", acks_late=True, ignore_result=True, expires=ALGO_TICK_SECONDS * 2)
def algo_tick_all() -> dict:
    """Beat: send every running TWAP/VWAP algo's due slices, each firm in its own scope
    (apps.orders.algo_services.algo_tick_due; idempotent under the algo's row lock)."""
    from apps.orders.algo_services import algo_tick_due

    return algo_tick_due()


@shared_task(name="orders.reconcile_live", acks_late=True, ignore_result=True, expires=RECONCILE_SECONDS)
def reconcile_live() -> dict:
    """Beat: reconcile every live portfolio with its broker (apps.orders.reconcile); breaks halt it."""
    from apps.orders.reconcile import reconcile_live as run

    return run()


@worker_ready.connect
def reconcile_on_start(**_) -> None:
    """A worker that starts queues one reconciliation of every live portfolio (reliability target 21: on start,
    local state is compared with the broker's before anything else is trusted; a break halts the portfolio)."""
    try:
        reconcile_live.delay()
    except Exception:  # noqa: BLE001 - Redis not there yet: beat's schedule runs it within 5 minutes
        import logging

        logging.getLogger(__name__).warning("could not queue the start-up reconciliation; beat will run it")
