"""Bulk bar writer: binary COPY into a staging table, then one idempotent upsert.

Design:
- The rows are encoded as PostgreSQL's binary COPY format by numpy in one vectorized pass (every
  staged column has a fixed width, so a row is a fixed 170-byte record) and streamed with psycopg 3's
  ``cursor.copy`` into a temporary table; no per-row Python.
- ``INSERT ... SELECT ... ON CONFLICT (instrument_id, timeframe, ts) DO UPDATE ... WHERE the row
  differs``: DO UPDATE rather than DO NOTHING so corrected data replaces what was there; the
  ``IS DISTINCT FROM`` guard makes re-importing identical data a no-op (no new row versions, no
  WAL, counts report it as unchanged). Loading the same data twice leaves the same rows.
  When the series has no row in the imported time range (a fresh backfill), a plain INSERT does
  the same without ON CONFLICT's per-row probe; writers of one series are serialized by an
  advisory lock so that check stays true until commit.
- Everything runs inside one ``transaction.atomic()`` on Django's connection: a failure anywhere
  (COPY, a constraint, the caller's code in the same block) writes nothing.
- Prices and volumes are encoded by numpy straight into binary NUMERIC (fixed width, see
  _numeric_fields), rounded to the 15 significant digits of the float64 the file was parsed into:
  the server does no float-to-numeric casts (those were ~80% of the upsert's time). Unknown vwap is
  staged as NUMERIC NaN and unknown trade_count as -1, turned into NULL by the upsert, which keeps
  every staged row fixed-width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from django.db import connection, transaction

STAGE = "marketdata_bar_stage"
CHUNK_ROWS = 100_000
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")
_PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")
SIGNIFICANT_DIGITS = 15  # what a float64 parsed from text carries (DBL_DIG)
# A NUMERIC in binary COPY is: ndigits, weight, sign, dscale (int16 each), then ndigits base-10000
# digits. With a fixed ndigits/weight every value has the same width, so a whole row is a fixed-size
# numpy record; PostgreSQL strips the leading/trailing zero digits on receipt.
#   prices NUMERIC(20, 10): weight 2 -> digits 10^8, 10^4, 1 . 10^-4, 10^-8, 10^-12 (values < 10^10)
#   volume NUMERIC(28, 8):  weight 3 -> digits 10^12, 10^8, 10^4, 1 . 10^-4, 10^-8 (values < 10^15)
_NUMERIC_DIGITS = 6
_NUMERIC_LEN = 8 + 2 * _NUMERIC_DIGITS
_NUMERIC_NAN = 0xC000


def _field(name: str, kind: str) -> list[tuple]:
    if kind == "int8":
        return [(f"len_{name}", ">i4"), (name, ">i8")]
    return [(f"len_{name}", ">i4"), (f"{name}_head", ">u2", (4,)), (f"{name}_digits", ">u2", (_NUMERIC_DIGITS,))]


_ROW = np.dtype([("nfields", ">i2")] + [item for name in _COLUMNS
                                        for item in _field(name, "int8" if name in {"ts", "trade_count"} else "num")])


def _numeric_fields(values: np.ndarray, *, decimals: int, weight: int) -> tuple[np.ndarray, np.ndarray]:
    """(head[n, 4], digits[n, 6]) of NUMERICs for non-negative floats; NaN -> NUMERIC 'NaN'.

    Each value is rounded to at most 15 significant digits and ``decimals`` places, the precision a
    float64 parsed from text really has (so 0.1 + 0.2 is stored as 0.3, as the text said).
    """
    values = np.asarray(values, dtype="float64")
    nan = np.isnan(values)
    v = np.where(nan, 0.0, values)
    if (v < 0).any():
        raise ValueError("bar prices and volumes must not be negative")
    with np.errstate(divide="ignore"):
        magnitude = np.where(v > 0, np.floor(np.log10(np.where(v > 0, v, 1.0))) + 1, 1).astype("int64")
    places = np.clip(SIGNIFICANT_DIGITS - magnitude, 0, decimals)
    scale = np.power(10, places, dtype="int64")
    scaled = np.round(v * scale).astype("int64")
    integer, fraction = np.divmod(scaled, scale)
    fraction = fraction * np.power(10, decimals - places, dtype="int64")  # now in units of 10^-decimals
    digits = np.empty((len(v), _NUMERIC_DIGITS), dtype="int64")
    int_groups = weight + 1
    for i in range(int_groups):  # most significant first
        digits[:, i] = (integer // 10 ** (4 * (int_groups - 1 - i))) % 10_000
    frac_groups = _NUMERIC_DIGITS - int_groups
    padded = fraction * 10 ** (4 * frac_groups - decimals)  # align to whole base-10000 digits
    for j in range(frac_groups):
        digits[:, int_groups + j] = (padded // 10 ** (4 * (frac_groups - 1 - j))) % 10_000
    head = np.empty((len(v), 4), dtype="int64")
    head[:, 0] = _NUMERIC_DIGITS
    head[:, 1] = weight
    head[:, 2] = np.where(nan, _NUMERIC_NAN, 0)
    head[:, 3] = decimals
    return head, digits


_INSERT = """
    INSERT INTO marketdata_bar AS b
        (instrument_id, timeframe, ts, open, high, low, close, volume, vwap, trade_count)
    SELECT %(instrument)s, %(timeframe)s, s.ts, s.open, s.high, s.low, s.close, s.volume,
           NULLIF(s.vwap, 'NaN'::numeric), NULLIF(s.trade_count, -1)
    FROM {stage} s
    {conflict}
"""
_UPSERT = """
    WITH up AS (
        """ + _INSERT.replace("{conflict}", """
        ON CONFLICT (instrument_id, timeframe, ts) DO UPDATE SET
            open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
            volume = EXCLUDED.volume, vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count
        WHERE (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count)
              IS DISTINCT FROM
              (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
               EXCLUDED.vwap, EXCLUDED.trade_count)
        RETURNING (xmax = 0) AS inserted""") + """
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
"""
_TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")


def _series_lock_key(instrument_id: int, timeframe: str) -> int:
    return (7012 << 48) | (_TIMEFRAMES.index(timeframe) << 40) | instrument_id


def _bounds(bars: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    ts = bars["ts"]
    first, last = pd.Timestamp(ts.iloc[0]), pd.Timestamp(ts.iloc[-1])
    if first.tzinfo is None:
        first, last = first.tz_localize("UTC"), last.tz_localize("UTC")
    return first.to_pydatetime(), last.to_pydatetime()


@dataclass(frozen=True)
class UpsertResult:
    rows: int
    inserted: int
    updated: int

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def encode_binary_copy(bars: pd.DataFrame) -> np.ndarray:
    """The staged rows as binary COPY records (without header/trailer), one vectorized pass."""
    n = len(bars)
    records = np.empty(n, dtype=_ROW)
    records["nfields"] = len(_COLUMNS)
    ts = bars["ts"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    records["len_ts"] = 8
    records["ts"] = ts.to_numpy("datetime64[us]").astype("int64") - _PG_EPOCH_US
    for name in _PRICE_COLUMNS + ("volume",):
        if name in bars:
            column = pd.Series(bars[name]).to_numpy("float64", na_value=np.nan)
        else:
            column = np.full(n, np.nan)
        price = name != "volume"
        head, digits = _numeric_fields(column, decimals=10 if price else 8, weight=2 if price else 3)
        records[f"len_{name}"] = _NUMERIC_LEN
        records[f"{name}_head"] = head
        records[f"{name}_digits"] = digits
    records["len_trade_count"] = 8
    if "trade_count" in bars:
        records["trade_count"] = pd.Series(bars["trade_count"]).astype("Int64").to_numpy("int64", na_value=-1)
    else:
        records["trade_count"] = -1
    return records


def _check_sorted_unique(bars: pd.DataFrame) -> None:
    ts = bars["ts"].to_numpy("datetime64[ns]") if not isinstance(bars["ts"].dtype, pd.DatetimeTZDtype) else \
        bars["ts"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    if len(ts) > 1 and not (np.diff(ts.astype("int64")) > 0).all():
        # ON CONFLICT cannot touch one row twice in one statement; validation guarantees this.
        raise ValueError("bars must be sorted by ts with no duplicate timestamps (run validate_bars first)")


def bars_upsert(
    *,
    instrument_id: int,
    timeframe: str,
    bars: pd.DataFrame,
    chunk_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> UpsertResult:
    """Write validated bars (columns ts, open, high, low, close, volume[, vwap, trade_count]).

    One transaction (a savepoint when the caller already has one). ``progress(done, total)`` is
    called after each COPY chunk.
    """
    total = len(bars)
    if total == 0:
        return UpsertResult(0, 0, 0)
    _check_sorted_unique(bars)
    chunk_rows = chunk_rows or CHUNK_ROWS
    # wrap_database_errors: psycopg errors from the raw cursor surface as django.db errors (IntegrityError...).
    with transaction.atomic(), connection.cursor() as django_cursor, connection.wrap_database_errors:
        cur = django_cursor.cursor  # the psycopg 3 cursor under Django's wrapper
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (ts timestamptz NOT NULL, open numeric, high numeric,"
            " low numeric, close numeric, volume numeric, vwap numeric, trade_count int8) ON COMMIT DELETE ROWS"
        )
        cur.execute(f"TRUNCATE {STAGE}")  # a previous call in the same transaction
        done = 0
        with cur.copy(f"COPY {STAGE} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_HEADER)
            for start in range(0, total, chunk_rows):
                chunk = bars.iloc[start:start + chunk_rows]
                copy.write(encode_binary_copy(chunk).tobytes())
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            copy.write(_TRAILER)
        params = {"instrument": instrument_id, "timeframe": timeframe}
        # Writers of one series (instrument, timeframe) take turns, so the overlap check below stays
        # true until this transaction commits. (Single-bigint advisory keys never collide with the
        # two-int keys the audit chain uses.)
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [_series_lock_key(instrument_id, timeframe)])
        first, last = _bounds(bars)
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM marketdata_bar WHERE instrument_id = %(instrument)s"
            " AND timeframe = %(timeframe)s AND ts BETWEEN %(first)s AND %(last)s)",
            params | {"first": first, "last": last},
        )
        if not cur.fetchone()[0]:
            # Nothing to conflict with: a plain INSERT skips the per-row speculative-insertion probe
            # of ON CONFLICT (about half the server time of a fresh import).
            cur.execute(_INSERT.format(stage=STAGE, conflict=""), params)
            inserted, updated = cur.rowcount, 0
        else:
            cur.execute(_UPSERT.format(stage=STAGE), params)
            inserted, updated = cur.fetchone()
        cur.execute(f"TRUNCATE {STAGE}")
    return UpsertResult(rows=total, inserted=int(inserted), updated=int(updated))
