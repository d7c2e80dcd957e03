"""The demo universe's simulated history: the past before the stored bars, and the feed's catch-up to now.

``seed_market`` stores a short recent window (N sessions up to today's midnight UTC) and saves the
live feed's simulator state at its end. Two more pieces make the demo market whole:

- :func:`feed_catch_up` (synchronous, seconds): steps the saved feed state from its end to the
  current minute and stores those bars, so the live feed's next minute follows the last stored
  bar with no gap. It runs only while no feed tick has taken over the state (no forming minute
  saved), under the feed's own lock.
- :func:`history_backfill` (a Celery task, minutes): fills ``days`` of history *before* each
  symbol's first stored 1m bar, in chunks of ``chunk_days``, one transaction per chunk. The history
  is its own seeded path (same universe, seed + 1) joined to the stored data: it is simulated
  twice, once to learn where it ends and once, shifted in log price by the difference, to end at
  each symbol's first stored open (GBM increments do not depend on the price level and the random
  draws do not either, so the second pass is the first one moved, exactly). It never writes at or
  after a symbol's first stored bar, so it cannot touch the recent window or the live feed, and the
  feed state is not involved. The plan (start, per-symbol end) is kept in Redis until done, so a
  task that died half-way resumes the same plan (the chunks are deterministic; rewriting one is an
  unchanged upsert) instead of mistaking the written part for the whole.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db import connection, transaction

from apps.marketdata import calendars, feed
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.simulator import (
    MarketState,
    MarketStepper,
    continuous_minute_grid,
    demo_universe,
    session_minute_grid,
)

log = logging.getLogger(__name__)

DEFAULT_HISTORY_DAYS = 365
CHUNK_DAYS = 30
CATCH_UP_MAX = timedelta(days=7)  # a feed down for longer resumes with a jump rather than weeks of bars
PLAN_KEY = "md:history:plan"
LOCK_KEY = "md:history:lock"
LOCK_SECONDS = 3600
HISTORY_SEED_OFFSET = 1  # the history is its own random path, not a replay of the recent window's draws


def _grid(asset_class: str, start: datetime, end: datetime) -> np.ndarray:
    """Bar starts (datetime64[ns]) in [start, end): 24/7 for crypto, NYSE sessions otherwise (as seed_market)."""
    if end <= start:
        return np.array([], dtype="datetime64[ns]")
    if asset_class == "crypto":
        return continuous_minute_grid(start, end)
    sessions = calendars.sessions("NYSE", (start - timedelta(days=1)).date(), end.date())
    grid = session_minute_grid([(s.open, s.close) for s in sessions]) if sessions else \
        np.array([], dtype="datetime64[ns]")
    lo, hi = np.datetime64(start.replace(tzinfo=None), "ns"), np.datetime64(end.replace(tzinfo=None), "ns")
    return grid[(grid >= lo) & (grid < hi)]


# ----------------------------------------------------------------------------------------------
# Catch-up of the live feed


@dataclass
class CatchUp:
    rows: int = 0
    start: str | None = None
    end: str | None = None
    skipped: str | None = None


def feed_catch_up(*, now: datetime | None = None) -> CatchUp:
    """Store the bars from the saved feed state's end up to (not including) the current minute."""
    now = now or datetime.now(UTC)
    end = pd.Timestamp(now).tz_convert(UTC).floor("min").to_pydatetime()
    if not cache.add(feed.LOCK_KEY, "catch-up", timeout=feed.LOCK_SECONDS):
        return CatchUp(skipped="a feed tick is running")
    try:
        stepper, as_of = feed.state_load()
        if stepper is None:
            return CatchUp(skipped="no saved feed state (run seed_market first)")
        if feed.forming_load() is not None:
            return CatchUp(skipped="the live feed has taken over the state")
        start = max(datetime.fromtimestamp(as_of, UTC), end - CATCH_UP_MAX)
        ids = feed.instrument_ids(stepper.universe.names)
        grids = {}
        for i, cfg in enumerate(stepper.universe.symbols):
            last_end = stepper.state.last_end_ns[i]
            since = start if last_end is None else max(start, datetime.fromtimestamp(last_end / 1e9, UTC))
            grid = _grid(cfg.asset_class, since, end)
            if cfg.symbol in ids and len(grid):
                grids[cfg.symbol] = grid
        if not grids:
            return CatchUp(skipped="nothing to catch up")
        bars = stepper.backfill(grids)
        rows = 0
        with transaction.atomic():
            for symbol, sim in bars.items():
                rows += bars_upsert(instrument_id=ids[symbol], timeframe="1m", bars=feed.sim_frame(sim)).inserted
            transaction.on_commit(lambda: feed.state_save(stepper, end.timestamp()))
        return CatchUp(rows=rows, start=start.isoformat(), end=end.isoformat())
    finally:
        cache.delete(feed.LOCK_KEY)


# ----------------------------------------------------------------------------------------------
# History before the stored bars


@dataclass
class HistoryResult:
    start: str | None = None
    symbols: int = 0
    chunks: int = 0
    rows: int = 0
    inserted: int = 0
    seconds: float = 0.0
    resumed: bool = False
    skipped: str | None = None
    per_chunk_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _first_bars(ids: dict[str, int]) -> dict[str, tuple[datetime, float]]:
    """Each symbol's first stored 1m bar (ts, open): one index probe per instrument."""
    by_id = {pk: symbol for symbol, pk in ids.items()}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT i.id, b.ts, b.open::float8 FROM unnest(%s::bigint[]) AS i(id) CROSS JOIN LATERAL ("
            " SELECT ts, open FROM marketdata_bar WHERE instrument_id = i.id AND timeframe = '1m'"
            " ORDER BY ts LIMIT 1) b",
            [list(by_id)],
        )
        return {by_id[pk]: (ts, float(price)) for pk, ts, price in cur.fetchall()}


def history_plan(*, days: int, now: datetime | None = None) -> dict | None:
    """What to fill: from midnight UTC ``days`` before today up to each symbol's first stored bar."""
    now = now or datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    universe = feed.universe()
    classes = {c.symbol: c.asset_class for c in universe.symbols}
    first = _first_bars(feed.instrument_ids(universe.names))
    if not first:
        return None
    sessions = calendars.sessions("NYSE", start.date(), max(ts for ts, _ in first.values()).date())

    def missing(symbol: str, end: datetime) -> bool:  # any bar start in [start, end) for this market?
        if classes[symbol] == "crypto":
            return end > start
        return any(s.open < end and s.close > start for s in sessions)

    ends = {symbol: {"ts": ts.isoformat(), "open": price}
            for symbol, (ts, price) in first.items() if missing(symbol, ts)}
    return {"start": start.isoformat(), "ends": ends, "done": False} if ends else None


def _chunks(start: datetime, ends: dict[str, datetime], chunk_days: int) -> list[tuple[datetime, datetime]]:
    last = max(ends.values())
    out, lo = [], start
    while lo < last:
        hi = min(lo + timedelta(days=chunk_days), last)
        out.append((lo, hi))
        lo = hi
    return out


def history_backfill(*, days: int = DEFAULT_HISTORY_DAYS, now: datetime | None = None,
                     chunk_days: int = CHUNK_DAYS) -> HistoryResult:
    """Fill the plan's history chunk by chunk (see the module docstring). Safe to run twice or concurrently."""
    started = time.monotonic()
    if not cache.add(LOCK_KEY, "1", timeout=LOCK_SECONDS):
        return HistoryResult(skipped="another history backfill is running")
    try:
        plan = cache.get(PLAN_KEY)
        resumed = bool(plan) and not plan.get("done")
        if not resumed:
            plan = history_plan(days=days, now=now)
            if plan is None:
                return HistoryResult(skipped="the history is already there")
            cache.set(PLAN_KEY, plan, timeout=None)
        result = _fill(plan, chunk_days)
        result.resumed = resumed
        cache.set(PLAN_KEY, plan | {"done": True}, timeout=None)
        result.seconds = round(time.monotonic() - started, 1)
        log.info("history backfill: %s", result)
        return result
    finally:
        cache.delete(LOCK_KEY)


def _fill(plan: dict, chunk_days: int) -> HistoryResult:
    base = feed.universe()
    universe = demo_universe(seed=base.seed + HISTORY_SEED_OFFSET)
    start = datetime.fromisoformat(plan["start"])
    ends = {s: datetime.fromisoformat(e["ts"]) for s, e in plan["ends"].items()}
    ids = feed.instrument_ids(list(ends))
    classes = {c.symbol: c.asset_class for c in universe.symbols}
    chunks = _chunks(start, ends, chunk_days)

    def grids(lo: datetime, hi: datetime) -> dict[str, np.ndarray]:
        out = {}
        for symbol, end in ends.items():
            grid = _grid(classes[symbol], lo, min(hi, end))
            if symbol in ids and len(grid):
                out[symbol] = grid
        return out

    # Pass 1: where does this path end? (simulation only, nothing kept)
    probe = MarketStepper(universe)
    for lo, hi in chunks:
        probe.backfill(grids(lo, hi))
    # Pass 2: the same path, shifted so each symbol's last close meets its first stored open.
    state = MarketState.initial(universe)
    for symbol, end in plan["ends"].items():
        i = universe.index(symbol)
        if probe.state.last_end_ns[i] is not None:
            state.log_mid[i] += math.log(end["open"]) - probe.state.log_mid[i]
    stepper = MarketStepper(universe, state)
    result = HistoryResult(start=plan["start"], symbols=len(ends), chunks=len(chunks))
    for lo, hi in chunks:
        chunk_started = time.monotonic()
        bars = stepper.backfill(grids(lo, hi))
        with transaction.atomic():
            for symbol, sim in bars.items():
                written = bars_upsert(instrument_id=ids[symbol], timeframe="1m", bars=feed.sim_frame(sim))
                result.rows += written.rows
                result.inserted += written.inserted
        result.per_chunk_seconds.append(round(time.monotonic() - chunk_started, 2))
    return result
