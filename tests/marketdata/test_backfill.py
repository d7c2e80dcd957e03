"""Demo history backfill (before the stored bars, joined, resumable) and the feed's catch-up to now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from django.db.models import Count

from apps.marketdata import backfill, calendars, feed
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.management.commands.seed_market import ensure_instruments
from apps.marketdata.models import Bar
from apps.marketdata.simulator import MarketStepper, continuous_minute_grid, session_minute_grid

pytestmark = pytest.mark.django_db

# Thursday 2026-11-19 00:00 UTC: the recent window is Wednesday's NYSE session and Wednesday's 24 h of crypto.
TODAY = datetime(2026, 11, 19, tzinfo=UTC)
WINDOW_DAY = datetime(2026, 11, 18, tzinfo=UTC)
SYMBOLS = ("BTC/USD", "AAPL")


@pytest.fixture
def recent_window():
    """seed_market's shape for two symbols: one session (AAPL) / one day (BTC) ending at TODAY, state saved."""
    ensure_instruments()
    ids = feed.instrument_ids(feed.universe().names)
    session = calendars.sessions("NYSE", WINDOW_DAY.date(), WINDOW_DAY.date())
    grids = {"BTC/USD": continuous_minute_grid(WINDOW_DAY, TODAY),
             "AAPL": session_minute_grid([(s.open, s.close) for s in session])}
    stepper = MarketStepper(feed.universe())
    bars = stepper.backfill(grids)
    for symbol in SYMBOLS:
        bars_upsert(instrument_id=ids[symbol], timeframe="1m", bars=feed.sim_frame(bars[symbol]))
    feed.state_save(stepper, TODAY.timestamp())
    return ids


def series(ids, symbol):
    return list(Bar.objects.filter(instrument_id=ids[symbol], timeframe="1m").order_by("ts")
                .values_list("ts", "open", "close"))


def test_history_fills_the_days_before_the_first_stored_bar_and_joins_it(recent_window):
    ids = recent_window
    before = {s: series(ids, s) for s in SYMBOLS}
    result = backfill.history_backfill(days=3, now=TODAY, chunk_days=1)
    assert (result.start, result.symbols, result.chunks, result.resumed, result.skipped) == (
        "2026-11-16T00:00:00+00:00", 2, 3, False, None)  # the last chunk runs to AAPL's first bar, 14:30
    btc, aapl = series(ids, "BTC/USD"), series(ids, "AAPL")
    # BTC: every minute from Monday 00:00 to the window, then the window untouched.
    assert len(btc) == 3 * 1440
    assert btc[0][0] == datetime(2026, 11, 16, tzinfo=UTC)
    assert np.all(np.diff([t.timestamp() for t, *_ in btc]) == 60)
    assert btc[1440 * 2:] == before["BTC/USD"]
    # AAPL: Monday's and Tuesday's sessions (09:30-16:00 ET), then Wednesday's window untouched.
    assert len(aapl) == 3 * 390 and aapl[780:] == before["AAPL"]
    assert (aapl[0][0], aapl[389][0]) == (datetime(2026, 11, 16, 14, 30, tzinfo=UTC),
                                          datetime(2026, 11, 16, 20, 59, tzinfo=UTC))
    # Joined: the history's last close is within a spread of the window's first open (no jump on the chart).
    for rows, first in ((btc, 1440 * 2), (aapl, 780)):
        assert abs(float(rows[first - 1][2]) / float(rows[first][1]) - 1) < 0.002
    assert result.inserted == result.rows == 2 * 1440 + 2 * 390


def test_history_twice_the_same_day_writes_nothing_more(recent_window):
    backfill.history_backfill(days=2, now=TODAY)
    counts = dict(Bar.objects.values_list("instrument_id").annotate(n=Count("ts")))
    again = backfill.history_backfill(days=2, now=TODAY)
    assert again.skipped == "the history is already there"
    assert dict(Bar.objects.values_list("instrument_id").annotate(n=Count("ts"))) == counts


def test_a_history_backfill_that_died_resumes_its_plan_and_ends_identical(recent_window, monkeypatch):
    ids = recent_window
    clean = backfill.history_backfill(days=3, now=TODAY, chunk_days=1)
    reference = {s: series(ids, s) for s in SYMBOLS}
    # Start over: remove the history, forget the plan, and make the second chunk fail.
    Bar.objects.filter(ts__lt=WINDOW_DAY.replace(hour=0)).delete()
    Bar.objects.filter(instrument_id=ids["AAPL"], ts__lt=datetime(2026, 11, 18, 14, 30, tzinfo=UTC)).delete()
    backfill.cache.delete(backfill.PLAN_KEY)
    calls = {"n": 0}
    real = backfill.bars_upsert

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # chunk 2's first symbol
            raise RuntimeError("worker lost")
        return real(**kwargs)

    monkeypatch.setattr(backfill, "bars_upsert", flaky)
    with pytest.raises(RuntimeError, match="worker lost"):
        backfill.history_backfill(days=3, now=TODAY, chunk_days=1)
    assert len(series(ids, "BTC/USD")) == 2 * 1440  # chunk 1 + the window: a gap the first-bar rule cannot see
    monkeypatch.setattr(backfill, "bars_upsert", real)
    resumed = backfill.history_backfill(days=3, now=TODAY, chunk_days=1)
    assert (resumed.resumed, resumed.rows, resumed.inserted) == (True, clean.rows, 1440 + 390)
    assert {s: series(ids, s) for s in SYMBOLS} == reference


def test_catch_up_stores_the_minutes_from_the_saved_state_to_now_and_hands_the_state_on(
        recent_window, django_capture_on_commit_callbacks):
    ids = recent_window
    now = TODAY + timedelta(hours=15, minutes=0, seconds=20)  # Thursday 10:00:20 New York
    with django_capture_on_commit_callbacks(execute=True):
        result = backfill.feed_catch_up(now=now)
    assert (result.start, result.end) == ("2026-11-19T00:00:00+00:00", "2026-11-19T15:00:00+00:00")
    btc = series(ids, "BTC/USD")
    assert btc[-1][0] == datetime(2026, 11, 19, 14, 59, tzinfo=UTC)
    assert np.all(np.diff([t.timestamp() for t, *_ in btc]) == 60)  # no gap from the window into today
    aapl = series(ids, "AAPL")
    assert (aapl[-30][0], aapl[-1][0]) == (datetime(2026, 11, 19, 14, 30, tzinfo=UTC),
                                           datetime(2026, 11, 19, 14, 59, tzinfo=UTC))
    # 21 symbols with no window of their own continue from the state too (all 23 instruments exist).
    assert result.rows == 15 * 60 * 3 + 30 * 20
    stepper, as_of = feed.state_load()
    assert as_of == pd.Timestamp("2026-11-19T15:00Z").timestamp()
    # The live feed's next minute (15:00) follows the last stored one: nothing left to catch up.
    assert backfill.feed_catch_up(now=now).skipped == "nothing to catch up"


def test_catch_up_leaves_a_running_live_feed_alone(recent_window, django_capture_on_commit_callbacks):
    now = TODAY + timedelta(hours=15, seconds=20)
    with django_capture_on_commit_callbacks(execute=True):
        feed.feed_tick(now)  # the live feed takes over: a forming minute is saved
    count = Bar.objects.count()
    assert backfill.feed_catch_up(now=now + timedelta(minutes=5)).skipped == "the live feed has taken over the state"
    assert Bar.objects.count() == count


@pytest.mark.django_db(transaction=True)
def test_the_celery_task_fills_the_history_in_a_real_worker(celery_worker):
    from apps.marketdata.tasks import history_backfill_task
    from tests.celery_support import wait_for

    ensure_instruments()
    ids = feed.instrument_ids(feed.universe().names)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    stepper = MarketStepper(feed.universe())
    bars = stepper.backfill({"BTC/USD": continuous_minute_grid(today - timedelta(days=1), today)})
    bars_upsert(instrument_id=ids["BTC/USD"], timeframe="1m", bars=feed.sim_frame(bars["BTC/USD"]))
    history_backfill_task.delay(days=2)
    wait_for(lambda: Bar.objects.filter(instrument_id=ids["BTC/USD"], timeframe="1m").count() == 2 * 1440, timeout=60)
    first = Bar.objects.filter(instrument_id=ids["BTC/USD"], timeframe="1m").order_by("ts").first()
    assert first.ts == today - timedelta(days=2)
    # The rollup is enqueued after it: both completed UTC days get their stored daily bar.
    wait_for(lambda: Bar.objects.filter(instrument_id=ids["BTC/USD"], timeframe="1d").count() == 2, timeout=60)
    assert list(Bar.objects.filter(instrument_id=ids["BTC/USD"], timeframe="1d").order_by("ts")
                .values_list("ts", flat=True)) == [today - timedelta(days=2), today - timedelta(days=1)]
