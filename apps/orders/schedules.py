"""Beat schedules of orders (synced by ``manage.py sync_schedules``; see apps.core.schedules)."""

from apps.core.schedules import Schedule
from apps.orders.tasks import ALGO_TICK_SECONDS, PAPER_MATCH_SECONDS, RECONCILE_SECONDS, RELAY_SECONDS

SCHEDULES = [
    Schedule(name="orders: outbox relay and reconciliation", task="orders.relay", every_seconds=RELAY_SECONDS),
    Schedule(name="orders: paper matching", task="orders.paper_match", every_seconds=PAPER_MATCH_SECONDS),
    Schedule(name="orders: reconcile live portfolios", task="orders.reconcile_live", every_seconds=RECONCILE_SECONDS),
    Schedule(name="orders: TWAP/VWAP slices", task="orders.algo_tick_all", every_seconds=ALGO_TICK_SECONDS),
]
