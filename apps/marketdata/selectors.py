"""Reads for market data. Instruments and bars are global; watchlists are firm-scoped."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Length

from apps.marketdata import calendars, quality
from apps.marketdata.models import (
    AssetClass,
    Bar,
    ImportJob,
    ImportStatus,
    Instrument,
    Timeframe,
    Watchlist,
    WatchlistItem,
)
from apps.marketdata.quotes import ALWAYS_OPEN, quote_many
from apps.marketdata.resample import resample

MAX_SOURCE_ROWS = 500_000  # 1m bars one on-the-fly resample may read
BAR_FIELDS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")


def instrument_search(*, query: str = "", asset_class: str | None = None) -> QuerySet[Instrument]:
    """Active instruments, ranked: symbols starting with ``query`` first (shortest first), then names
    containing it. An empty query lists every active instrument by symbol. One query; paginate it."""
    qs = Instrument.objects.filter(active=True).select_related("underlying")
    if asset_class:
        qs = qs.filter(asset_class=asset_class)
    text = (query or "").strip()
    if not text:
        return qs.order_by("symbol", "asset_class")
    prefix = Q(symbol__startswith=text.upper())
    return (
        qs.filter(prefix | Q(name__icontains=text))
        .annotate(
            rank=Case(When(prefix, then=Value(0)), default=Value(1), output_field=IntegerField()),
            symbol_len=Length("symbol"),
        )
        .order_by("rank", "symbol_len", "symbol", "asset_class")
    )


def instrument_get(*, symbol: str, asset_class: str | None = None) -> Instrument:
    """One instrument by symbol (Instrument.DoesNotExist / MultipleObjectsReturned when ambiguous)."""
    qs = Instrument.objects.filter(symbol=symbol.strip().upper())
    if asset_class:
        qs = qs.filter(asset_class=asset_class)
    return qs.get()


def bar_list(*, instrument: Instrument, timeframe: str, start: datetime, end: datetime) -> QuerySet[Bar]:
    """Bars in [start, end), oldest first: one range scan of the primary key."""
    return Bar.objects.filter(instrument=instrument, timeframe=timeframe, ts__gte=start, ts__lt=end).order_by("ts")


class RangeTooLarge(ValueError):
    """Resampling the range on the fly would read more 1m bars than one request may."""


def bars_frame(
    *, instrument: Instrument, timeframe: str, start: datetime, end: datetime, limit: int | None = None
) -> tuple[pd.DataFrame, str]:
    """Bars in [start, end) as a float64 frame (the first ``limit`` of them), and where they came from.

    Stored bars of the timeframe when any exist in the range ("stored"); otherwise stored 1m bars
    resampled on the fly, session-aligned ("resampled"), refusing more than MAX_SOURCE_ROWS of them.
    Stored 1d bars are followed by the resampled sessions after the last of them (still "stored"):
    the rollup (apps.marketdata.rollup) stores completed sessions only, so the forming session and
    those not rolled up yet would be missing otherwise.
    Three queries at most; no Decimal is built (see _stored_frame).
    """
    frame = _stored_frame(instrument.pk, timeframe, start, end, limit)
    if timeframe == Timeframe.M1:
        return frame, "stored"
    if not len(frame):
        return _resampled(instrument, timeframe, start, end, limit), "resampled"
    if timeframe != Timeframe.D1 or (limit is not None and len(frame) >= limit):
        return frame, "stored"
    # A session's 1m bars all lie within its date in the exchange's zone: those of later sessions
    # start at or after the last label + 1 day.
    after = max(frame["ts"].iloc[-1].to_pydatetime() + timedelta(days=1), start)
    if after >= end:
        return frame, "stored"
    tail = _resampled(instrument, timeframe, after, end, None if limit is None else limit - len(frame))
    if not len(tail):
        return frame, "stored"
    return pd.concat([frame, tail], ignore_index=True), "stored"


def _resampled(instrument: Instrument, timeframe: str, start: datetime, end: datetime,
               limit: int | None) -> pd.DataFrame:
    minute = _stored_frame(instrument.pk, Timeframe.M1, start, end, MAX_SOURCE_ROWS + 1)
    if len(minute) > MAX_SOURCE_ROWS:
        raise RangeTooLarge(MAX_SOURCE_ROWS)
    out = resample(minute, timeframe, exchange=instrument.exchange)
    # A session-aligned bucket may start before `start` (e.g. a daily label at midnight ET): keep [start, end).
    out = out[(out["ts"] >= pd.Timestamp(start)) & (out["ts"] < pd.Timestamp(end))].reset_index(drop=True)
    return out if limit is None else out.iloc[:limit]


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds


def _packed(expr: str) -> str:
    """One column of the range as a single bytea: every value's 8-byte binary send, in ts order."""
    return f"string_agg({expr}, ''::bytea ORDER BY ts)"


# One row back, one bytea per column: the server converts NUMERIC to float8 (correctly rounded,
# the same double as float(Decimal)), unknown vwap/trade_count to NaN, and packs each column as
# big-endian 8-byte values that numpy reads in place. No Python object per value, and one result
# message instead of one per row (binary COPY TO sends a message per row, ~2 us each in psycopg).
_SELECT_PACKED = f"""
    SELECT count(*), {_packed("timestamptz_send(ts)")},
           {", ".join(_packed(f"float8send({c}::float8)") for c in ("open", "high", "low", "close", "volume"))},
           {_packed("float8send(coalesce(vwap::float8, 'NaN'))")},
           {_packed("float8send(coalesce(trade_count::float8, 'NaN'))")}
    FROM (SELECT ts, open, high, low, close, volume, vwap, trade_count FROM marketdata_bar
          WHERE instrument_id = %(instrument)s AND timeframe = %(timeframe)s AND ts >= %(start)s AND ts < %(end)s
          ORDER BY ts LIMIT %(limit)s) AS page
"""


def _stored_frame(instrument_id: int, timeframe: str, start: datetime, end: datetime,
                  limit: int | None) -> pd.DataFrame:
    """Stored bars in [start, end), oldest first, at most ``limit``: one range scan of the primary key."""
    params = {"instrument": instrument_id, "timeframe": timeframe, "start": start, "end": end, "limit": limit}
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
        # A server-binding cursor (Django's is client-side binding): binary results, bytea as raw bytes.
        cur.execute(_SELECT_PACKED, params, binary=True)
        count, ts, *columns = cur.fetchone()
    if not count:
        return bars_to_frame([])
    frame = pd.DataFrame({name: np.frombuffer(raw, dtype=">f8").astype("float64")
                          for name, raw in zip(BAR_FIELDS[1:], columns, strict=True)})
    micros = (np.frombuffer(ts, dtype=">i8").astype("int64") + _PG_EPOCH_US).astype("datetime64[us]")
    frame.insert(0, "ts", pd.DatetimeIndex(micros).tz_localize("UTC"))
    return frame


def bars_to_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of BAR_FIELDS (Decimals, None) -> a frame of float64 columns (NaN for None) and UTC ts."""
    frame = pd.DataFrame(rows, columns=list(BAR_FIELDS))
    for col in BAR_FIELDS[1:]:
        frame[col] = np.array([np.nan if v is None else float(v) for v in frame[col]], dtype="float64")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def watchlist_list() -> QuerySet[Watchlist]:
    """The current firm's watchlists (the firm scope filters; no scope raises)."""
    return Watchlist.objects.order_by("name")


def watchlist_items(*, watchlist: Watchlist) -> list[WatchlistItem]:
    return list(watchlist.items.select_related("instrument").order_by("position"))


# ----------------------------------------------------------------------------------------------
# Quote board: latest quote (Redis) + previous close (bars)

QUOTE_BOARD_KEYS = ("symbol", "bid", "ask", "last", "bid_size", "ask_size", "ts", "stale", "prev_close", "change",
                    "change_pct")
CRYPTO_LOOKBACK = timedelta(hours=24)
CRYPTO_PREV_WINDOW = timedelta(hours=24)  # how far before "24 h ago" a bar may be to still count


def _board_instruments(symbols: list[str]) -> dict[str, list[Instrument]]:
    found: dict[str, list[Instrument]] = {}
    for instrument in Instrument.objects.filter(symbol__in=symbols).order_by("symbol", "asset_class"):
        found.setdefault(instrument.symbol, []).append(instrument)
    return found


def _pick(candidates: list[Instrument], exchange: str | None) -> Instrument:
    """A symbol listed in several asset classes: the one on the quote's exchange, else non-crypto first."""
    for instrument in candidates:
        if exchange and instrument.exchange == exchange:
            return instrument
    return sorted(candidates, key=lambda i: (i.asset_class == AssetClass.CRYPTO, i.asset_class))[0]


def _prev_close_window(instrument: Instrument, ref: datetime) -> tuple[str, datetime, datetime] | None:
    """(timeframe, from, to): where the previous close is the last bar, for one instrument at ``ref``.

    Exchange-traded: the last 1m bar of the session before the one that opened at or before ``ref``.
    Crypto (24/7): the last 1m bar that opened at most 24 h before ``ref`` (within a further 24 h).
    """
    if instrument.exchange in ALWAYS_OPEN or instrument.asset_class == AssetClass.CRYPTO:
        to = ref - CRYPTO_LOOKBACK + timedelta(microseconds=1)
        return Timeframe.M1, to - CRYPTO_PREV_WINDOW, to
    try:
        found = calendars.sessions(instrument.exchange, ref.date() - timedelta(days=14), ref.date() + timedelta(days=1))
    except ValueError:  # unknown exchange, or outside the calendar
        return None
    started = [s for s in found if s.open <= ref]
    if len(started) < 2:
        return None
    prev = started[-2]
    return Timeframe.M1, prev.open, prev.close


_LAST_CLOSE_SQL = """
SELECT i.id, b.close FROM unnest(%s::bigint[]) AS i(id)
CROSS JOIN LATERAL (
    SELECT close FROM marketdata_bar
    WHERE instrument_id = i.id AND timeframe = %s AND ts >= %s AND ts < %s
    ORDER BY ts DESC LIMIT 1
) b
"""


_LAST_BAR_SQL = """
SELECT i.id, b.ts, b.close FROM unnest(%s::bigint[]) AS i(id)
CROSS JOIN LATERAL (
    SELECT ts, close FROM marketdata_bar
    WHERE instrument_id = i.id AND timeframe = '1m' AND ts < %s
    ORDER BY ts DESC LIMIT 1
) b
"""


def _last_bars(instrument_ids: list[int], before: datetime) -> dict[int, tuple[datetime, float]]:
    """(close time, close) of each instrument's last stored 1m bar: one index probe per instrument."""
    with connection.cursor() as cur:
        cur.execute(_LAST_BAR_SQL, [instrument_ids, before])
        return {pk: (ts + timedelta(minutes=1), float(close)) for pk, ts, close in cur.fetchall()}


def _last_closes(windows: dict[int, tuple[str, datetime, datetime]]) -> dict[int, float]:
    """The close of the last bar in each instrument's window: one index probe per instrument, one
    query per distinct window (instruments on one calendar share it)."""
    groups: dict[tuple, list[int]] = {}
    for instrument_id, window in windows.items():
        groups.setdefault(window, []).append(instrument_id)
    out: dict[int, float] = {}
    with connection.cursor() as cur:
        for (timeframe, lo, hi), ids in groups.items():
            cur.execute(_LAST_CLOSE_SQL, [ids, timeframe, lo, hi])
            out.update({row[0]: float(row[1]) for row in cur.fetchall()})
    return out


def quote_board(*, symbols: list[str], now: float | None = None) -> list[dict]:
    """One row per known symbol, in the order given, with QUOTE_BOARD_KEYS.

    Quote fields come from Redis (apps.marketdata.quotes; ``stale`` as judged there). A symbol with no
    quote in Redis (a market closed since Redis started) shows its last stored 1m bar instead:
    ``last`` its close, ``ts`` its end, bid/ask/sizes None and ``stale`` True (never presented as
    live); with no bar either, everything but the symbol is None and ``stale`` True.
    ``prev_close``: close of the previous session (exchange-traded) or of the bar 24 h earlier
    (crypto), None when unknown; ``change`` = last - prev_close, ``change_pct`` in percent.
    Unknown symbols are left out (the API refuses them before calling this).
    """
    wanted = list(dict.fromkeys(s.strip().upper() for s in symbols if s and s.strip()))
    instruments = _board_instruments(wanted)
    quotes = quote_many([s for s in wanted if s in instruments], now=now)
    clock = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    chosen: dict[str, Instrument] = {}
    windows: dict[int, tuple[str, datetime, datetime]] = {}
    for symbol in wanted:
        if symbol in instruments:
            quote = quotes.get(symbol)
            chosen[symbol] = _pick(instruments[symbol], quote.exchange if quote else None)
    unquoted = [i.pk for s, i in chosen.items() if s not in quotes]
    last_bars = _last_bars(unquoted, clock) if unquoted else {}
    for symbol, instrument in chosen.items():
        quote = quotes.get(symbol)
        fallback = last_bars.get(instrument.pk)
        window = _prev_close_window(instrument, quote.ts if quote else fallback[0] if fallback else clock)
        if window is not None:
            windows[instrument.pk] = window
    prev = _last_closes(windows) if windows else {}
    rows = []
    for symbol, instrument in chosen.items():
        quote = quotes.get(symbol)
        fallback = None if quote else last_bars.get(instrument.pk)
        prev_close = prev.get(instrument.pk)
        last = quote.last if quote else fallback[1] if fallback else None
        change = None if last is None or prev_close is None else last - prev_close
        rows.append({
            "symbol": symbol,
            "bid": quote.bid if quote else None,
            "ask": quote.ask if quote else None,
            "last": last,
            "bid_size": quote.bid_size if quote else None,
            "ask_size": quote.ask_size if quote else None,
            "ts": quote.ts if quote else fallback[0] if fallback else None,
            "stale": quote.stale if quote else True,
            "prev_close": prev_close,
            "change": change,
            "change_pct": None if change is None or not prev_close else 100.0 * change / prev_close,
        })
    return rows


# ----------------------------------------------------------------------------------------------
# Data quality


def quality_sessions(*, exchange: str, start: datetime, end: datetime) -> quality.Sessions | None:
    """The calendar's sessions covering [start, end) as arrays; None for a 24/7 market.
    Raises ValueError (calendars.UnknownExchange included) outside the calendar."""
    if calendars.calendar_code(exchange) == "24/7":
        return None
    found = calendars.sessions(exchange, (start - timedelta(days=1)).date(), (end + timedelta(days=1)).date())
    return quality.sessions_from([s.day for s in found], [s.open for s in found], [s.close for s in found])


def data_quality(*, instrument: Instrument, timeframe: str, start: datetime, end: datetime,
                 stale_bars: int = quality.DEFAULT_STALE_BARS) -> quality.QualityReport:
    """The data-quality report of the stored bars of one series over [start, end) (see quality.py)."""
    frame = bars_to_frame(list(bar_list(instrument=instrument, timeframe=timeframe, start=start, end=end)
                               .values_list(*BAR_FIELDS)))
    sessions = quality_sessions(exchange=instrument.exchange, start=start, end=end)
    return quality.quality_report(frame, timeframe=timeframe, start=start, end=end, sessions=sessions,
                                  stale_bars=stale_bars)


# ----------------------------------------------------------------------------------------------
# Import jobs (firm-scoped)


def import_job_list() -> QuerySet[ImportJob]:
    """The current firm's import jobs, newest first, without the stored file (the firm scope filters)."""
    return ImportJob.objects.defer("file_data", "report").select_related("created_by__user").order_by(
        "-created_at", "-id")


def import_job_progress(job: ImportJob) -> int:
    """Progress 0-100: the row's, or for a running job the finer figure its worker keeps in Redis
    (the bars are written in one transaction, so the row cannot show progress inside it)."""
    if job.status != ImportStatus.RUNNING:
        return job.progress
    live = cache.get(import_progress_key(job.firm_id, job.pk))
    return max(job.progress, int(live)) if live is not None else job.progress


def import_progress_key(firm_id: int, job_id: int) -> str:
    return f"md:import:{firm_id}:{job_id}:progress"
