"""Daily bars rolled up from 1m bars: completed sessions only, both edges, idempotent, under beat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from django.core.cache import cache

from apps.core.schedules import Schedule
from apps.marketdata import rollup
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import Bar
from apps.marketdata.resample import resample
from apps.marketdata.selectors import bars_frame
from apps.marketdata.services import instrument_create

pytestmark = pytest.mark.django_db

COLUMNS = ["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]

# November 2026 (EST): NYSE 09:30-16:00 ET = 14:30-21:00Z, daily bars labelled 05:00Z. Thursday 26 is
# Thanksgiving (no session); Friday 27 closes early at 13:00 ET = 18:00Z; Monday 30 is the forming session.
MINUTES = [
    ("2026-11-25T14:30Z", 10, 11, 9, 10.5, 100, 10.25, 5),
    ("2026-11-25T20:59Z", 10.5, 12, 10, 11, 300, 11.0, 7),
    ("2026-11-25T21:00Z", 99, 99, 99, 99, 1, 99, 1),  # after the close: in no session
    ("2026-11-26T15:00Z", 50, 50, 50, 50, 1, 50, 1),  # the holiday: in no session
    ("2026-11-27T14:30Z", 11, 11.5, 10.75, 11.25, 200, 11.5, 3),
    ("2026-11-27T17:59Z", 11.25, 13, 11, 12, 200, 12.5, None),
    ("2026-11-27T18:00Z", 98, 98, 98, 98, 1, 98, 1),  # after the early close
    ("2026-11-30T14:30Z", 12, 12.5, 11.5, 12.25, 10, 12.0, 1),
]
NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
WED = (datetime(2026, 11, 25, 5, tzinfo=UTC), 10.0, 12.0, 9.0, 11.0, 400.0, 10.8125, 12)
FRI = (datetime(2026, 11, 27, 5, tzinfo=UTC), 11.0, 13.0, 10.75, 12.0, 400.0, 12.0, None)


def put_bars(instrument, timeframe, rows):
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    bars_upsert(instrument_id=instrument.pk, timeframe=timeframe, bars=frame)


def daily(instrument) -> list[tuple]:
    rows = Bar.objects.filter(instrument=instrument, timeframe="1d").order_by("ts").values_list(*COLUMNS)
    return [(ts, *(None if v is None else float(v) for v in values[:-1]), values[-1])
            for ts, *values in rows]


@pytest.fixture
def aapl():
    instrument = instrument_create(symbol="AAPL", name="Apple Inc.", asset_class="equity")
    put_bars(instrument, "1m", MINUTES)
    return instrument


@pytest.mark.parametrize("chunk_days", [rollup.CHUNK_DAYS, 1])
def test_daily_bars_are_the_resampled_completed_sessions(aapl, chunk_days):
    result = rollup.bars_rollup(now=NOW, chunk_days=chunk_days)
    assert (result.instruments, result.sessions, result.inserted, result.updated, result.skipped) == (1, 2, 2, 0, None)
    # The holiday has no bar, the early close ends at 18:00Z, the forming Monday is not stored.
    assert daily(aapl) == [WED, FRI]
    minute, _ = bars_frame(instrument=aapl, timeframe="1m", start=NOW - timedelta(days=10), end=NOW)
    expected = resample(minute, "1d", exchange="NYSE").iloc[:2]
    stored, _ = bars_frame(instrument=aapl, timeframe="1d", start=NOW - timedelta(days=10),
                           end=datetime(2026, 11, 30, tzinfo=UTC))
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)


def test_a_session_is_stored_only_once_it_has_settled_after_its_close(aapl):
    close = datetime(2026, 11, 27, 18, tzinfo=UTC)
    rollup.bars_rollup(now=datetime(2026, 11, 27, 17, 0, tzinfo=UTC))  # Friday's session is trading
    assert daily(aapl) == [WED]
    rollup.bars_rollup(now=close + rollup.SETTLE - timedelta(seconds=1))  # late minute bars may still come
    assert daily(aapl) == [WED]
    rollup.bars_rollup(now=close + rollup.SETTLE)
    assert daily(aapl) == [WED, FRI]


def test_a_second_run_writes_nothing(aapl):
    rollup.bars_rollup(now=NOW)
    again = rollup.bars_rollup(now=NOW)
    assert (again.instruments, again.sessions, again.inserted, again.updated) == (0, 0, 0, 0)
    assert daily(aapl) == [WED, FRI]


def test_history_before_the_first_daily_bar_and_sessions_after_the_last_are_rolled_up(aapl):
    rollup.bars_rollup(now=NOW)
    # A history backfill adds Tuesday's 1m bars; Monday's session completes.
    put_bars(aapl, "1m", [("2026-11-24T14:30Z", 9, 10, 8, 9.5, 50, 9.25, 2)])
    result = rollup.bars_rollup(now=datetime(2026, 12, 1, 15, tzinfo=UTC))
    assert (result.instruments, result.sessions, result.inserted, result.updated) == (1, 2, 2, 0)
    assert daily(aapl) == [
        (datetime(2026, 11, 24, 5, tzinfo=UTC), 9.0, 10.0, 8.0, 9.5, 50.0, 9.25, 2),
        WED, FRI,
        (datetime(2026, 11, 30, 5, tzinfo=UTC), 12.0, 12.5, 11.5, 12.25, 10.0, 12.0, 1),
    ]


def test_crypto_days_are_utc_days():
    btc = instrument_create(symbol="BTCUSD", name="Bitcoin", asset_class="crypto")
    put_bars(btc, "1m", [
        ("2026-11-20T23:59Z", 1, 2, 1, 2, 10, None, None),
        ("2026-11-21T00:00Z", 2, 3, 1.5, 2.5, 20, None, None),
        ("2026-11-21T23:59Z", 2.5, 4, 2, 3, 30, None, None),
        ("2026-11-22T00:30Z", 3, 3, 3, 3, 1, None, None),  # the forming day
    ])
    result = rollup.bars_rollup(now=datetime(2026, 11, 22, 1, tzinfo=UTC))
    assert (result.sessions, result.inserted) == (2, 2)
    assert daily(btc) == [
        (datetime(2026, 11, 20, tzinfo=UTC), 1.0, 2.0, 1.0, 2.0, 10.0, None, None),
        (datetime(2026, 11, 21, tzinfo=UTC), 2.0, 4.0, 1.5, 3.0, 50.0, None, None),
    ]


def test_an_overlapping_run_does_nothing(aapl):
    cache.add(rollup.LOCK_KEY, "running", timeout=60)
    assert rollup.bars_rollup(now=NOW).skipped == "another rollup is running"
    assert daily(aapl) == []
    assert cache.get(rollup.LOCK_KEY) == "running"  # the running one's lock is left alone


def test_only_daily_bars_are_rolled_up():
    with pytest.raises(ValueError, match="only daily bars are rolled up, not '1h'"):
        rollup.bars_rollup(timeframe="1h", now=NOW)


def test_the_daily_view_appends_the_sessions_after_the_last_stored_daily_bar(aapl):
    rollup.bars_rollup(now=NOW)
    Bar.objects.filter(instrument=aapl, timeframe="1d", ts=FRI[0]).delete()  # as if rolled up before Friday
    start, end = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    frame, source = bars_frame(instrument=aapl, timeframe="1d", start=start, end=end)
    monday = (datetime(2026, 11, 30, 5, tzinfo=UTC), 12.0, 12.5, 11.5, 12.25, 10.0, 12.0, 1.0)
    assert source == "stored"
    assert [tuple(row) for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False)] == [
        WED, FRI, monday]  # Friday (not rolled up yet) and the forming Monday resampled
    page, _ = bars_frame(instrument=aapl, timeframe="1d", start=start, end=end, limit=2)
    assert list(page["ts"]) == [WED[0], FRI[0]]
    full, _ = bars_frame(instrument=aapl, timeframe="1d", start=start, end=end, limit=1)
    assert list(full["ts"]) == [WED[0]]


def test_the_rollup_is_scheduled_under_beat():
    from apps.marketdata.schedules import SCHEDULES

    assert Schedule(name="marketdata: daily bars rollup", task="marketdata.bars_rollup",
                    every_seconds=600) in SCHEDULES


@pytest.mark.django_db(transaction=True)
def test_the_celery_task_rolls_up_in_a_real_worker(celery_worker):
    from apps.marketdata.tasks import bars_rollup_task
    from tests.celery_support import wait_for

    btc = instrument_create(symbol="BTCUSD", name="Bitcoin", asset_class="crypto")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    put_bars(btc, "1m", [(today - timedelta(days=2, hours=-12), 1, 2, 1, 2, 10, 1.5, 3),
                         (today - timedelta(days=1, hours=-12), 2, 3, 1, 2.5, 20, 2.0, 4)])
    bars_rollup_task.delay()
    wait_for(lambda: Bar.objects.filter(instrument=btc, timeframe="1d").count() == 2, timeout=60)
    assert daily(btc) == [(today - timedelta(days=2), 1.0, 2.0, 1.0, 2.0, 10.0, 1.5, 3),
                          (today - timedelta(days=1), 2.0, 3.0, 1.0, 2.5, 20.0, 2.0, 4)]
