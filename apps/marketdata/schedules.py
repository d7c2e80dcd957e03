"""Beat schedules of market data (synced by ``manage.py sync_schedules``; see apps.core.schedules)."""

from apps.core.schedules import Schedule
from apps.marketdata.tasks import FEED_TICK_SECONDS, ROLLUP_EVERY_SECONDS

SCHEDULES = [
    Schedule(name="marketdata: simulated feed tick", task="marketdata.feed_tick", every_seconds=FEED_TICK_SECONDS),
    Schedule(name="marketdata: daily bars rollup", task="marketdata.bars_rollup", every_seconds=ROLLUP_EVERY_SECONDS),
]
