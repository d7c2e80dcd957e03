"""Market-data tasks (global: market data belongs to no firm, so these are plain shared tasks)."""

from __future__ import annotations

from celery import shared_task

from apps.marketdata.feed import feed_tick

FEED_TICK_SECONDS = 5


@shared_task(name="marketdata.feed_tick", acks_late=True, ignore_result=True, expires=FEED_TICK_SECONDS * 2)
def feed_tick_task() -> dict:
    """Step the simulated market by the bar that just completed (a no-op until the next minute)."""
    result = feed_tick()
    return {"bar_start": result.bar_start.isoformat(), "stepped": len(result.stepped), "inserted": result.inserted}
