"""Stored daily bars rolled up from stored 1m bars (a beat task every few minutes; see tasks.py).

Without stored 1d bars every daily chart request resamples up to a year of 1m bars. For every
active instrument with 1m bars, :func:`bars_rollup` stores the 1d bar of each *completed* session
(apps.marketdata.calendars; crypto: UTC days) that has 1m bars and no 1d bar yet: the sessions
after the last stored 1d bar (new data) and before the first one (history backfills add older 1m
bars later, see backfill.py). The bars are resample.resample() of the session's 1m bars, written
with ingest.bars_upsert, so a rerun rewrites nothing.

- Never the forming session: a session counts as completed SETTLE after its close, so the last
  minute bars of a stream that arrive a few seconds late are in it (a stored 1d bar is not
  revisited). Until then selectors.bars_frame appends the resampled sessions after the last stored
  1d bar, so the daily view stays whole.
- Bounded memory: one instrument at a time, at most ``chunk_days`` of 1m bars per read.
- A session inside the stored 1d range with no 1d bar (a hole left by an import) is not filled:
  only the edges move.
- Instruments whose exchange has no calendar (options on OPRA) are skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
from django.core.cache import cache
from django.db.models import OuterRef, Subquery

from apps.marketdata import calendars
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import Bar, Instrument, Timeframe
from apps.marketdata.resample import resample
from apps.marketdata.selectors import bars_frame

log = logging.getLogger(__name__)

CHUNK_DAYS = 60  # a 24/7 symbol's 60 days of 1m bars: 86k rows, ~6 MB of float64
SETTLE = timedelta(minutes=15)
LOCK_KEY = "md:rollup:lock"
LOCK_SECONDS = 40 * 60  # longer than the task's time limit: a killed run frees the lock when it expires


@dataclass
class RollupResult:
    instruments: int = 0  # instruments with at least one session to roll up
    sessions: int = 0  # sessions read (those with 1m bars become one 1d bar each)
    inserted: int = 0
    updated: int = 0
    seconds: float = 0.0
    skipped: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _edge(timeframe: str, *, last: bool) -> Subquery:
    """The first/last stored bar time of the outer instrument's series: one index probe."""
    return Subquery(Bar.objects.filter(instrument_id=OuterRef("pk"), timeframe=timeframe)
                    .order_by("-ts" if last else "ts").values("ts")[:1])


def _candidates() -> list[Instrument]:
    """Active instruments with stored 1m bars, annotated with the edges of their 1m and 1d series."""
    return list(
        Instrument.objects.filter(active=True)
        .annotate(first_1m=_edge(Timeframe.M1, last=False), last_1m=_edge(Timeframe.M1, last=True),
                  first_1d=_edge(Timeframe.D1, last=False), last_1d=_edge(Timeframe.D1, last=True))
        .filter(first_1m__isnull=False)
        .order_by("pk")
    )


def _label(day, tz: str) -> datetime:
    """A daily bar's ts: midnight of the session date in the exchange's zone (as resample labels it)."""
    return pd.Timestamp(day).tz_localize(tz).tz_convert(UTC).to_pydatetime()


def _missing_sessions(instrument: Instrument, now: datetime) -> list[list[calendars.Session]]:
    """The completed sessions spanned by the 1m bars with no stored 1d bar, in runs of consecutive
    sessions (the gap between two runs is the stored 1d range, which is not read)."""
    cal = calendars.get_calendar(instrument.exchange)
    lo = max(instrument.first_1m.date() - timedelta(days=1), cal.first_session.date())
    hi = min(min(instrument.last_1m, now).date() + timedelta(days=1), cal.last_session.date())
    if lo > hi:
        return []
    tz = str(cal.tz)
    runs: list[list[calendars.Session]] = []
    previous = None
    for i, session in enumerate(calendars.sessions(instrument.exchange, lo, hi)):
        if session.close + SETTLE > now or session.close <= instrument.first_1m or session.open > instrument.last_1m:
            continue
        label = _label(session.day, tz)
        if instrument.first_1d is not None and instrument.first_1d <= label <= instrument.last_1d:
            continue
        if previous is None or i != previous + 1:
            runs.append([])
        runs[-1].append(session)
        previous = i
    return runs


def _chunks(run: list[calendars.Session], chunk_days: int) -> list[list[calendars.Session]]:
    out: list[list[calendars.Session]] = []
    for session in run:
        if not out or (session.day - out[-1][0].day).days >= chunk_days:
            out.append([])
        out[-1].append(session)
    return out


def bars_rollup(*, timeframe: str = Timeframe.D1, now: datetime | None = None,
                chunk_days: int = CHUNK_DAYS) -> RollupResult:
    """Store the 1d bars of the completed sessions that have 1m bars and no 1d bar (module docstring).

    One bars_upsert (one transaction) per instrument and chunk: a run cut short keeps what it wrote
    and the next one continues after it. Locked in Redis: an overlapping run returns at once,
    ``skipped`` set. Global market data: no firm, no audit event, nothing published.
    """
    if timeframe != Timeframe.D1:
        raise ValueError(f"only daily bars are rolled up, not {timeframe!r}")
    started = time.monotonic()
    now = now or datetime.now(UTC)
    if not cache.add(LOCK_KEY, "1", timeout=LOCK_SECONDS):
        return RollupResult(skipped="another rollup is running")
    try:
        result = RollupResult()
        for instrument in _candidates():
            try:
                runs = _missing_sessions(instrument, now)
            except calendars.UnknownExchange:
                continue
            if runs:
                result.instruments += 1
            for run in runs:
                for chunk in _chunks(run, chunk_days):
                    minute, _ = bars_frame(instrument=instrument, timeframe=Timeframe.M1,
                                           start=chunk[0].open, end=chunk[-1].close)
                    daily = resample(minute, Timeframe.D1, exchange=instrument.exchange)
                    written = bars_upsert(instrument_id=instrument.pk, timeframe=Timeframe.D1, bars=daily)
                    result.sessions += len(chunk)
                    result.inserted += written.inserted
                    result.updated += written.updated
        result.seconds = round(time.monotonic() - started, 1)
        log.info("bars rollup: %s", result)
        return result
    finally:
        cache.delete(LOCK_KEY)
