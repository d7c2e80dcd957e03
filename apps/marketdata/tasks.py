"""Market-data tasks (global: market data belongs to no firm, so these are plain shared tasks)."""

from __future__ import annotations

from celery import shared_task

from apps.core.tasks import firm_task
from apps.marketdata.feed import feed_tick

# Every 2 s: the forming minute moves every tick; a tick is a Redis read, a few Redis writes and one
# PUBLISH, plus once a minute one simulator step and one upsert of the final bars.
FEED_TICK_SECONDS = 2


@shared_task(name="marketdata.feed_tick", acks_late=True, ignore_result=True, expires=FEED_TICK_SECONDS * 2)
def feed_tick_task() -> dict:
    """Publish the simulated market's forming minute; write the minute's bars once it is final."""
    result = feed_tick()
    return {"bar_start": result.bar_start.isoformat(), "stepped": len(result.stepped),
            "finalized": len(result.finalized), "inserted": result.inserted, "published": result.published}


# --- bar-file imports: an upload acts for its firm, so @firm_task -----------------------------------

IMPORT_TIME_LIMIT_SECONDS = 30 * 60  # a 50 MB file is ~1M rows: seconds to validate and COPY, so minutes is a hang


@firm_task(name="marketdata.import_job_run", acks_late=True, ignore_result=True,
           soft_time_limit=IMPORT_TIME_LIMIT_SECONDS, time_limit=IMPORT_TIME_LIMIT_SECONDS + 60)
def import_job_run_task(firm_id: int, job_id: int) -> None:
    """Run one uploaded bar import (services.import_job_run; safe to run twice)."""
    from apps.marketdata.services import import_job_run

    import_job_run(job_id=job_id)


# --- provider backfills: the firm's Alpaca keys, so @firm_task --------------------------------------


@firm_task(name="marketdata.backfill_run", acks_late=True, ignore_result=True, time_limit=3600, soft_time_limit=3540)
def backfill_run_task(firm_id: int, backfill_id: int) -> dict:
    """Load a firm's backfill from its provider (resumes after the last completed symbol if redelivered)."""
    from apps.marketdata.provider_services import backfill_run

    backfill = backfill_run(backfill_id=backfill_id)
    return {"backfill": backfill.pk, "status": backfill.status, "symbols_done": backfill.symbols_done}


# --- demo history: global market data, so a plain shared task -------------------------------------

HISTORY_TIME_LIMIT_SECONDS = 30 * 60  # a year of the demo universe is ~3.7M bars: about a minute of work here


@shared_task(name="marketdata.history_backfill", acks_late=True, ignore_result=True,
             soft_time_limit=HISTORY_TIME_LIMIT_SECONDS, time_limit=HISTORY_TIME_LIMIT_SECONDS + 60)
def history_backfill_task(days: int) -> dict:
    """Simulated history of the demo universe before its stored bars (idempotent; resumes a plan cut short)."""
    from apps.marketdata.backfill import history_backfill

    result = history_backfill(days=days)
    if result.skipped is None:
        bars_rollup_task.delay()  # the demo's year of daily bars now, not at the next beat
    return result.as_dict()


# --- daily bars rolled up from 1m: global market data, so a plain shared task ---------------------

ROLLUP_EVERY_SECONDS = 10 * 60
ROLLUP_TIME_LIMIT_SECONDS = 30 * 60  # the first rollup of a year of the demo universe reads ~3.7M 1m bars


@shared_task(name="marketdata.bars_rollup", acks_late=True, ignore_result=True, expires=ROLLUP_EVERY_SECONDS,
             soft_time_limit=ROLLUP_TIME_LIMIT_SECONDS, time_limit=ROLLUP_TIME_LIMIT_SECONDS + 60)
def bars_rollup_task() -> dict:
    """Store the 1d bars of completed sessions that have 1m bars and none yet (idempotent, locked)."""
    from apps.marketdata.rollup import bars_rollup

    return bars_rollup().as_dict()
