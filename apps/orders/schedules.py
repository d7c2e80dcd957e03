"""Beat schedules of orders (synced by ``manage.py sync_schedules``; see apps.core.schedules)."""

from apps.core.schedules import Schedule
from apps.orders.tasks import PAPER_MATCH_SECONDS, RELAY_SECONDS

SCHEDULES = [
    Schedule(name="orders: outbox relay and reconciliation", task="orders.relay", every_seconds=RELAY_SECONDS),
    Schedule(name="orders: paper matching", task="orders.paper_match", every_seconds=PAPER_MATCH_SECONDS),
]
