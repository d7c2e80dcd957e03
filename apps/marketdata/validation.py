"""Validation of imported bar rows (pure: plain data in, a report out; no ORM).

Errors reject a row: an unparseable or missing value, OHLC inconsistency (low <= open, close <= high),
a negative volume, a duplicate or out-of-order timestamp, a timestamp off the timeframe grid.
Warnings never reject: a return beyond ``outlier_k`` robust sigmas, a bar outside the exchange session.

Rows are numbered from 1 = the first data row (a CSV header line is not counted). Every check is
vectorized over numpy arrays, so a million rows validate in well under a second.

Timestamps: a naive timestamp is read in ``tz`` (default UTC); an aware one is converted to UTC.
Intraday bars must sit on the UTC grid of their timeframe (a 5m bar at :00, :05, ...); a daily bar
is labelled with midnight of its session date in ``tz`` (e.g. ``2024-07-05`` read in America/New_York).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
REQUIRED = ("ts", "open", "high", "low", "close", "volume")
OPTIONAL = ("vwap", "trade_count")
FIELDS = REQUIRED + OPTIONAL
PRICES = ("open", "high", "low", "close")
# The database columns are NUMERIC(20, 10) for prices and NUMERIC(28, 8) for volume.
MAX_PRICE = 1e10
MAX_VOLUME = 1e15  # exact in the binary NUMERIC encoding (apps.marketdata.ingest)
DEFAULT_OUTLIER_K = 12.0
MIN_RETURNS_FOR_OUTLIERS = 30
# A time of day followed by a UTC offset ("09:30Z", "09:30:00-04:00"); a bare "2024-07-03" is naive.
# A plain string (no flags), so pandas runs it vectorized in pyarrow's RE2 rather than per row.
_AWARE_SUFFIX = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[Zz]|[Uu][Tt][Cc]|[+-]\d{2}(?::?\d{2})?)$"


class FileError(ValueError):
    """The file as a whole cannot be imported (unreadable, empty, a required column missing)."""


@dataclass(slots=True)  # not frozen: frozen dataclasses construct ~3x slower, and big files make many
class Issue:
    row: int  # 1-based data row
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.reason}"


@dataclass
class ValidationReport:
    rows: int
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    # The accepted rows, in file order: ts (datetime64[ns, UTC]), prices/volume/vwap float64
    # (vwap NaN = unknown), trade_count Int64 (NA = unknown), plus "row" (1-based file row).
    bars: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def rejected_rows(self) -> list[int]:
        return sorted({issue.row for issue in self.errors})

    @property
    def rejected(self) -> int:
        return len(self.rejected_rows)

    @property
    def accepted(self) -> int:
        return len(self.bars)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "rows": self.rows, "accepted": self.accepted, "rejected": self.rejected,
            "errors": [asdict(i) for i in self.errors], "warnings": [asdict(i) for i in self.warnings],
        }


# ----------------------------------------------------------------------------------------------
# Options parsing


def parse_column_map(text: str | None) -> dict[str, str]:
    """``"ts=Date,open=Open"`` -> ``{"ts": "Date", "open": "Open"}`` (our field = the file's column)."""
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    for part in text.split(","):
        if not part.strip():
            continue
        ours, sep, theirs = part.partition("=")
        ours, theirs = ours.strip().lower(), theirs.strip()
        if not sep or not ours or not theirs:
            raise ValueError(f"--map: {part.strip()!r} is not FIELD=COLUMN")
        if ours not in FIELDS:
            raise ValueError(f"--map: unknown field {ours!r}; fields are {', '.join(FIELDS)}")
        if ours in mapping:
            raise ValueError(f"--map: field {ours!r} is mapped twice")
        mapping[ours] = theirs
    return mapping


def parse_tz(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as America/New_York)") from None


def check_timeframe(timeframe: str) -> int:
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; timeframes are {', '.join(TIMEFRAME_SECONDS)}") from None


# ----------------------------------------------------------------------------------------------
# Reading files


def read_bars_file(path: str | Path, *, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV (pandas) or Parquet (pyarrow) file into a DataFrame of raw columns."""
    path = Path(path)
    kind = (fmt or path.suffix.lstrip(".")).lower()
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    try:
        if kind in {"parquet", "pq"}:
            import pyarrow.parquet as pq

            frame = pq.read_table(path).to_pandas()
        elif kind in {"csv", "txt", "gz"}:
            frame = _read_csv(path)
        else:
            raise FileError(f"{path}: unknown format {kind!r}; use .csv or .parquet")
    except FileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is a file-level error for the user
        raise FileError(f"{path}: cannot read as {kind}: {exc}") from None
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    """pyarrow's reader first (parses ISO timestamps and numbers in C, multithreaded); a file it
    refuses as a whole (e.g. a row with fewer fields) goes to pandas' C reader, whose NaN padding
    lets validation report the row instead of rejecting the file."""
    try:
        return pd.read_csv(path, engine="pyarrow")
    except (pa.ArrowInvalid, ValueError):
        return pd.read_csv(path, low_memory=False)


def map_columns(frame: pd.DataFrame, mapping: dict[str, str] | None = None) -> pd.DataFrame:
    """Rename the file's columns to our fields (explicit map first, then case-insensitive names)."""
    mapping = dict(mapping or {})
    columns = {str(c): c for c in frame.columns}
    lower = {str(c).strip().lower(): c for c in frame.columns}
    aliases = {"ts": ("ts", "timestamp", "time", "datetime", "date"), "trade_count": ("trade_count", "trades")}
    chosen: dict[str, object] = {}
    for ours, theirs in mapping.items():
        if theirs not in columns:
            raise FileError(f"--map: column {theirs!r} (for {ours}) is not in the file; it has {', '.join(columns)}")
        chosen[ours] = columns[theirs]
    for ours in FIELDS:
        if ours in chosen:
            continue
        for name in aliases.get(ours, (ours,)):
            if name in lower and lower[name] not in chosen.values():
                chosen[ours] = lower[name]
                break
    missing = [f for f in REQUIRED if f not in chosen]
    if missing:
        raise FileError(
            f"missing column(s) {', '.join(missing)}; the file has {', '.join(columns) or 'no columns'} "
            f"(map them with --map FIELD=COLUMN)"
        )
    return pd.DataFrame({ours: frame[theirs].reset_index(drop=True) for ours, theirs in chosen.items()})


# ----------------------------------------------------------------------------------------------
# Validation


class _Collector:
    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.bad = None  # boolean mask of rejected rows

    def add(self, mask: np.ndarray, field_name: str, reason, rows: np.ndarray) -> None:
        """Record ``reason`` (a string, or a function of the row index) for every row in ``mask``."""
        mask = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(mask)
        for i in idx:
            text = reason(i) if callable(reason) else reason
            self.issues.append(Issue(int(rows[i]), field_name, text))
        self.bad = mask if self.bad is None else (self.bad | mask)


def _fmt(value: float) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def _show(value) -> str:
    return _fmt(float(value)) if isinstance(value, (int, float, np.number)) else repr(str(value))


def _parse_ts(values: pd.Series | np.ndarray, tz: ZoneInfo, out: _Collector, rows: np.ndarray) -> np.ndarray:
    """To UTC datetime64[ns] (NaT where unusable, each reported)."""
    series = pd.Series(values)
    missing = series.isna().to_numpy()
    out.add(missing, "ts", "missing", rows)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        naive = series.astype("datetime64[ns]")
        return _localize(naive, tz, out, rows, missing)
    text = series.astype(pd.StringDtype("pyarrow")).str.strip()
    # pyarrow's RE2 runs the pattern vectorized (pandas' str.contains fell back to per-row re here).
    matched = pc.match_substring_regex(pa.array(text.array), _AWARE_SUFFIX)
    aware = pc.fill_null(matched, False).to_numpy(zero_copy_only=False) & ~missing
    result = np.full(len(series), np.datetime64("NaT"), dtype="datetime64[ns]")
    if aware.any():
        parsed = _to_datetime(text[aware], utc=True)
        result[aware] = parsed.dt.tz_localize(None).to_numpy("datetime64[ns]")
    naive_mask = ~aware & ~missing
    if naive_mask.any():
        parsed = _to_datetime(text[naive_mask], utc=False)
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # e.g. "Mon, 02 Jan 2024 ... GMT" parsed as aware
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            result[naive_mask] = parsed.to_numpy("datetime64[ns]")
        else:
            full = pd.Series(np.full(len(series), np.datetime64("NaT"), dtype="datetime64[ns]"))
            full[naive_mask] = parsed.to_numpy("datetime64[ns]")
            localized = _localize(full, tz, out, rows, ~naive_mask | pd.isna(full).to_numpy())
            result[naive_mask] = localized[naive_mask]
    unparsed = np.isnat(result) & ~missing & ~_already(out, rows, "ts")
    out.add(unparsed, "ts", lambda i: f"cannot parse timestamp {str(series.iloc[i])!r}", rows)
    return result


def _already(out: _Collector, rows: np.ndarray, field_name: str) -> np.ndarray:
    flagged = {i.row for i in out.issues if i.field == field_name}
    return np.isin(rows, list(flagged)) if flagged else np.zeros(len(rows), dtype=bool)


def _to_datetime(text: pd.Series, *, utc: bool) -> pd.Series:
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=utc)
    retry = parsed.isna().to_numpy()
    if retry.any():  # non-ISO layouts (e.g. 01/17/2025 09:30): slower, only for the rows that need it
        again = pd.to_datetime(text[retry], errors="coerce", format="mixed", utc=utc)
        if isinstance(parsed.dtype, pd.DatetimeTZDtype) != isinstance(again.dtype, pd.DatetimeTZDtype):
            again = pd.Series(pd.NaT, index=again.index, dtype=parsed.dtype)
        parsed = parsed.copy()
        parsed[retry] = again
    return parsed


def _localize(naive: pd.Series, tz: ZoneInfo, out: _Collector, rows: np.ndarray, skip: np.ndarray) -> np.ndarray:
    if str(tz) == "UTC":
        return naive.to_numpy("datetime64[ns]")
    local = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    bad = local.isna().to_numpy() & ~skip
    out.add(bad, "ts", lambda i: f"{naive.iloc[i]} does not exist or is ambiguous in {tz} (DST change)", rows)
    return local.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")


def _numbers(values, name: str, out: _Collector, rows: np.ndarray) -> np.ndarray:
    series = pd.Series(values)
    missing = series.isna().to_numpy()
    numeric = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
    out.add(missing, name, "missing", rows)
    out.add(np.isnan(numeric) & ~missing, name, lambda i: f"not a number: {_show(series.iloc[i])}", rows)
    out.add(np.isinf(numeric), name, "not a finite number", rows)
    return numeric


def validate_bars(
    frame: pd.DataFrame,
    *,
    timeframe: str,
    tz: str | ZoneInfo | None = "UTC",
    exchange: str | None = None,
    outlier_k: float = DEFAULT_OUTLIER_K,
) -> ValidationReport:
    """Validate mapped bar rows (columns named as in FIELDS); see the module docstring for the rules."""
    step = check_timeframe(timeframe)
    zone = tz if isinstance(tz, ZoneInfo) else parse_tz(tz)
    missing = [f for f in REQUIRED if f not in frame.columns]
    if missing:
        raise FileError(f"missing column(s) {', '.join(missing)}")
    n = len(frame)
    rows = np.arange(1, n + 1)
    out = _Collector()
    out.bad = np.zeros(n, dtype=bool)
    if n == 0:
        raise FileError("the file has no rows")

    ts = _parse_ts(frame["ts"], zone, out, rows)
    values = {name: _numbers(frame[name], name, out, rows) for name in PRICES + ("volume",)}
    o, h, lo, c, v = (values[k] for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        for name in PRICES:
            arr = values[name]
            out.add(arr <= 0, name, lambda i, a=arr: f"must be positive, got {_fmt(a[i])}", rows)
            out.add(arr >= MAX_PRICE, name, lambda i, a=arr: f"{_fmt(a[i])} exceeds the maximum price", rows)
        out.add(lo > h, "low", lambda i: f"low {_fmt(lo[i])} is above high {_fmt(h[i])}", rows)
        out.add(lo > o, "low", lambda i: f"low {_fmt(lo[i])} is above open {_fmt(o[i])}", rows)
        out.add(lo > c, "low", lambda i: f"low {_fmt(lo[i])} is above close {_fmt(c[i])}", rows)
        out.add(h < o, "high", lambda i: f"high {_fmt(h[i])} is below open {_fmt(o[i])}", rows)
        out.add(h < c, "high", lambda i: f"high {_fmt(h[i])} is below close {_fmt(c[i])}", rows)
        out.add(v < 0, "volume", lambda i: f"must not be negative, got {_fmt(v[i])}", rows)
        out.add(v >= MAX_VOLUME, "volume", lambda i: f"{_fmt(v[i])} exceeds the maximum volume", rows)

    vwap = np.full(n, np.nan)
    if "vwap" in frame.columns:
        raw = pd.Series(frame["vwap"])
        vwap = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
        given = ~raw.isna().to_numpy()
        with np.errstate(invalid="ignore"):
            bad_vwap = given & (~np.isfinite(vwap) | (vwap <= 0) | (vwap >= MAX_PRICE))
        out.add(bad_vwap, "vwap", lambda i: f"not a positive price: {_show(raw.iloc[i])}", rows)
    trades = pd.arrays.IntegerArray(np.zeros(n, dtype="int64"), np.ones(n, dtype=bool))  # all unknown
    if "trade_count" in frame.columns:
        raw = pd.Series(frame["trade_count"])
        numeric = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
        given = ~raw.isna().to_numpy()
        with np.errstate(invalid="ignore"):
            bad_trades = given & (~np.isfinite(numeric) | (numeric < 0) | (numeric != np.floor(numeric)))
        out.add(bad_trades, "trade_count", lambda i: f"not a whole number >= 0: {_show(raw.iloc[i])}", rows)
        trades = pd.array(np.where(given & ~bad_trades, numeric, np.nan), dtype="Float64").astype("Int64")

    _check_time(ts, step, zone, timeframe, out, rows)

    bad = out.bad
    good = ~bad
    bars = pd.DataFrame({
        "row": rows[good],
        "ts": pd.DatetimeIndex(ts[good]).tz_localize("UTC"),
        "open": o[good], "high": h[good], "low": lo[good], "close": c[good], "volume": v[good],
        "vwap": vwap[good], "trade_count": trades[good],
    })
    warnings = _warnings(bars, timeframe=timeframe, zone=zone, exchange=exchange, outlier_k=outlier_k)
    errors = sorted(out.issues, key=lambda i: i.row)
    return ValidationReport(rows=n, errors=errors, warnings=warnings, bars=bars.reset_index(drop=True))


def _check_time(ts: np.ndarray, step: int, zone: ZoneInfo, timeframe: str, out: _Collector, rows: np.ndarray) -> None:
    known = ~np.isnat(ts)
    ns = ts.astype("int64")
    if timeframe == "1d":
        local = pd.DatetimeIndex(ts).tz_localize("UTC").tz_convert(zone)
        off_grid = known & ((local.hour != 0) | (local.minute != 0) | (local.second != 0) | (local.nanosecond != 0)
                            | (local.microsecond != 0))
        grid_text = f"midnight in {zone}"
    else:
        off_grid = known & (ns % (step * 1_000_000_000) != 0)
        grid_text = f"the {timeframe} grid"
    out.add(off_grid, "ts", lambda i: f"{_iso(ts[i])} is not on {grid_text}", rows)

    # Duplicates: the later occurrences are rejected, naming the first.
    order_ok = known
    values = pd.Series(np.where(known, ns, np.iinfo(np.int64).min))
    dup = values.duplicated(keep="first").to_numpy() & known
    if dup.any():
        first_row = {}
        for i in np.flatnonzero(known):
            first_row.setdefault(int(ns[i]), int(rows[i]))
        out.add(dup, "ts", lambda i: f"duplicate timestamp {_iso(ts[i])} (first at row {first_row[int(ns[i])]})", rows)
    # Out of order: earlier than a timestamp already seen on an earlier row.
    running = np.maximum.accumulate(np.where(order_ok, ns, np.iinfo(np.int64).min))
    previous_max = np.concatenate(([np.iinfo(np.int64).min], running[:-1]))
    late = known & (ns < previous_max)
    if late.any():
        where_max = {}
        for i in np.flatnonzero(known):
            where_max.setdefault(int(ns[i]), int(rows[i]))
        out.add(late, "ts", lambda i: f"out of order: {_iso(ts[i])} comes after {_iso(previous_max[i])} "
                f"(row {where_max[int(previous_max[i])]})", rows)


def _iso(value) -> str:
    if isinstance(value, (int, np.integer)):
        value = np.datetime64(int(value), "ns")
    return str(np.datetime_as_string(np.datetime64(value, "ns"), unit="s")) + "Z"


def _warnings(bars: pd.DataFrame, *, timeframe: str, zone: ZoneInfo, exchange: str | None,
              outlier_k: float) -> list[Issue]:
    issues: list[Issue] = []
    rows = bars["row"].to_numpy()
    close = bars["close"].to_numpy()
    if len(close) > MIN_RETURNS_FOR_OUTLIERS and outlier_k > 0:
        returns = np.diff(np.log(close))
        median = np.median(returns)
        sigma = 1.4826 * np.median(np.abs(returns - median))  # robust sigma from the MAD
        if sigma > 0:
            score = np.abs(returns - median) / sigma
            for j in np.flatnonzero(score > outlier_k):
                issues.append(Issue(int(rows[j + 1]), "close", (
                    f"outlier: return {np.expm1(returns[j]):+.2%} from row {int(rows[j])} is {score[j]:.1f} robust sigmas "
                    f"(threshold {outlier_k:g})")))
    if exchange:
        from apps.marketdata import calendars

        try:
            calendars.calendar_code(exchange)
        except calendars.UnknownExchange:
            exchange = None
    if exchange and len(bars):
        from apps.marketdata import calendars

        ts = bars["ts"].dt.tz_localize(None).to_numpy("datetime64[ns]")
        if timeframe == "1d":
            local_days = bars["ts"].dt.tz_convert(zone).dt.tz_localize(None).to_numpy("datetime64[D]")
            inside = calendars.session_days(exchange, local_days)
            text = f"not a {exchange} session day"
        else:
            # A bar [ts, ts + step) is in session if it overlaps one (a 1h bar from 09:00 ET opens at 09:30).
            last_ns = ts + np.timedelta64(TIMEFRAME_SECONDS[timeframe] * 1_000_000_000 - 1, "ns")
            inside = calendars.in_session(exchange, ts) | calendars.in_session(exchange, last_ns)
            text = f"outside the {exchange} session"
        outside = np.flatnonzero(~inside)
        stamps = np.datetime_as_string(ts[outside], unit="s")
        issues.extend(Issue(int(rows[i]), "ts", f"{stamp}Z is {text}") for i, stamp in zip(outside, stamps, strict=True))
    return sorted(issues, key=lambda i: i.row)


def format_report(report: ValidationReport, *, limit: int | None = None) -> Iterable[str]:
    """Human lines for a report (every rejected row unless ``limit``)."""
    yield f"rows: {report.rows}, accepted: {report.accepted}, rejected: {report.rejected}, " \
          f"warnings: {len(report.warnings)}"
    for label, issues in (("error", report.errors), ("warning", report.warnings)):
        shown = issues if limit is None else issues[:limit]
        for issue in shown:
            yield f"{label}: {issue}"
        if len(shown) < len(issues):
            yield f"... and {len(issues) - len(shown)} more {label}s"
