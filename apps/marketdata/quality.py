"""Data-quality report of one bar series (pure: a frame and session arrays in, a report out; no ORM).

For one instrument, timeframe and range [start, end) it finds:

* gaps: bar timestamps the calendar expects that are absent, merged into runs (consecutive in the
  expected sequence, so a missing day is one gap) with their counts. Sessions come in as arrays
  (UTC opens/closes and session dates); ``None`` means the market never closes (crypto, 24/7).
  Holidays have no session, so they are never gaps; an early close ends the expected bars early.
* stale periods: runs of at least ``stale_bars`` consecutive bars whose close equals the previous
  bar's close with zero volume (a feed repeating its last price).
* outliers: log returns beyond ``outlier_z`` robust z-scores (median/MAD, as validation.py) and bars
  whose high-low range exceeds ``range_k`` times the median range of the series.
* duplicates: timestamps present more than once in the input frame (stored bars cannot repeat, the
  primary key forbids it, so a report of stored data shows 0; the check is for frames from files).
* a summary: expected, present, matched (present and expected), missing, coverage %, and present
  bars outside any session.

Intraday bars are expected on the UTC grid of their timeframe for every bar interval that overlaps
a session (a 1h bar from 13:00Z covers a 13:30Z open); a series stored session-aligned instead (1h
buckets from the open) is recognised by which grid its bars sit on. A daily bar is expected once per
session date; a stored daily bar is matched to a date by its label (midnight of the date in the
exchange's zone, or UTC), read as the UTC date of ts + 12 h.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
DEFAULT_STALE_BARS = 10
DEFAULT_OUTLIER_Z = 8.0
DEFAULT_RANGE_K = 10.0
MIN_RETURNS_FOR_OUTLIERS = 30
MAX_LISTED = 500  # entries per list in a report; the summary keeps the full counts
NS = 1_000_000_000
DAY_NS = 86_400 * NS


@dataclass(frozen=True)
class Sessions:
    """Trading sessions as arrays: session dates and their UTC open/close (datetime64[ns], naive UTC)."""

    days: np.ndarray  # datetime64[D]
    opens: np.ndarray  # datetime64[ns]
    closes: np.ndarray  # datetime64[ns]


@dataclass(frozen=True)
class Span:
    start: pd.Timestamp  # first bar (UTC)
    end: pd.Timestamp  # last bar (UTC), inclusive
    bars: int

    def as_dict(self) -> dict:
        return {"start": _iso(self.start), "end": _iso(self.end), "bars": self.bars}


@dataclass(frozen=True)
class Outlier:
    ts: pd.Timestamp
    kind: str  # "return" or "range"
    value: float  # the return (fraction) or the high-low range as a fraction of close
    score: float  # robust z-score, or multiple of the median range

    def as_dict(self) -> dict:
        return {"ts": _iso(self.ts), "kind": self.kind, "value": self.value, "score": round(self.score, 2)}


@dataclass
class QualityReport:
    expected: int
    present: int
    matched: int
    outside_session: int
    gaps: list[Span] = field(default_factory=list)
    stale: list[Span] = field(default_factory=list)
    outliers: list[Outlier] = field(default_factory=list)
    duplicates: list[pd.Timestamp] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return self.expected - self.matched

    @property
    def coverage_pct(self) -> float | None:
        return None if self.expected == 0 else round(100.0 * self.matched / self.expected, 2)

    def summary(self) -> dict:
        return {
            "expected": self.expected, "present": self.present, "matched": self.matched, "missing": self.missing,
            "coverage_pct": self.coverage_pct, "outside_session": self.outside_session,
            "gaps": len(self.gaps), "stale_periods": len(self.stale), "outliers": len(self.outliers),
            "duplicates": len(self.duplicates),
        }

    def as_dict(self, *, limit: int = MAX_LISTED) -> dict:
        return {
            "summary": self.summary(),
            "gaps": [g.as_dict() for g in self.gaps[:limit]],
            "stale": [s.as_dict() for s in self.stale[:limit]],
            "outliers": [o.as_dict() for o in self.outliers[:limit]],
            "duplicates": [_iso(t) for t in self.duplicates[:limit]],
            "truncated": any(len(x) > limit for x in (self.gaps, self.stale, self.outliers, self.duplicates)),
        }


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").isoformat().replace("+00:00", "Z")


def _ns(value) -> int:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.tz_convert("UTC").value)


def _utc_ns(frame: pd.DataFrame) -> np.ndarray:
    ts = pd.to_datetime(frame["ts"], utc=True)
    return ts.dt.tz_localize(None).to_numpy("datetime64[ns]").astype("int64")


# --- expected bars --------------------------------------------------------------------------------


def expected_intraday(*, step_s: int, start_ns: int, end_ns: int, sessions: Sessions | None,
                      anchor: str = "utc") -> np.ndarray:
    """Expected bar opens (int64 ns, sorted) in [start, end): every bar interval overlapping a session.

    ``anchor="utc"``: bars on the UTC grid of the step. ``anchor="session"``: bars from each session's
    open (session-aligned resampling). With ``sessions=None`` (24/7) the UTC grid over the whole range.
    """
    step = step_s * NS
    if sessions is None:
        first = -(-start_ns // step) * step  # ceil to the grid
        return np.arange(first, end_ns, step, dtype="int64")
    opens = sessions.opens.astype("datetime64[ns]").astype("int64")
    closes = sessions.closes.astype("datetime64[ns]").astype("int64")
    keep = (closes > start_ns) & (opens < end_ns)
    parts = []
    for o, c in zip(opens[keep], closes[keep], strict=True):
        first = (o // step) * step if anchor == "utc" else o
        parts.append(np.arange(first, c, step, dtype="int64"))
    if not parts:
        return np.empty(0, dtype="int64")
    out = np.unique(np.concatenate(parts))  # an hour can overlap two sessions only on odd calendars
    return out[(out >= start_ns) & (out < end_ns)]


def expected_daily(*, start_ns: int, end_ns: int, sessions: Sessions | None) -> np.ndarray:
    """Expected session dates (int64 ns of midnight UTC of each date) whose date lies in [start, end)."""
    first_day = (start_ns // DAY_NS) * DAY_NS
    if sessions is None:
        days = np.arange(first_day, end_ns, DAY_NS, dtype="int64")
    else:
        days = sessions.days.astype("datetime64[D]").astype("datetime64[ns]").astype("int64")
        days = days[(days >= first_day) & (days < end_ns)]
    return np.unique(days)


def _daily_label_days(ts_ns: np.ndarray) -> np.ndarray:
    """A daily bar's session date from its label: midnight in any zone from UTC-12 to UTC+11 is the
    same UTC date 12 hours later."""
    return ((ts_ns + DAY_NS // 2) // DAY_NS) * DAY_NS


# --- the checks -----------------------------------------------------------------------------------


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs in sorted integer positions -> [(first, last)]."""
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(indices) - 1]))
    return [(int(indices[s]), int(indices[e])) for s, e in zip(starts, ends, strict=True)]


def _stamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def find_gaps(expected: np.ndarray, present: np.ndarray) -> list[Span]:
    """Runs of expected timestamps (int64 ns) that are not present; consecutive in ``expected``."""
    missing_pos = np.flatnonzero(~np.isin(expected, present))
    return [Span(_stamp(expected[a]), _stamp(expected[b]), b - a + 1) for a, b in _runs(missing_pos)]


def find_stale(ts_ns: np.ndarray, close: np.ndarray, volume: np.ndarray, *, min_bars: int) -> list[Span]:
    """Runs of >= min_bars bars with close equal to the previous bar's close and zero volume."""
    if len(close) < 2 or min_bars < 1:
        return []
    flat = np.zeros(len(close), dtype=bool)
    flat[1:] = (close[1:] == close[:-1]) & (volume[1:] == 0)
    return [Span(_stamp(ts_ns[a]), _stamp(ts_ns[b]), b - a + 1)
            for a, b in _runs(np.flatnonzero(flat)) if b - a + 1 >= min_bars]


def find_outliers(ts_ns: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, *,
                  outlier_z: float, range_k: float) -> list[Outlier]:
    found: list[Outlier] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        if len(close) > MIN_RETURNS_FOR_OUTLIERS and outlier_z > 0:
            returns = np.diff(np.log(close))
            median = np.median(returns)
            sigma = 1.4826 * np.median(np.abs(returns - median))  # robust sigma from the MAD
            if sigma > 0:
                score = np.abs(returns - median) / sigma
                for j in np.flatnonzero(score > outlier_z):
                    found.append(Outlier(_stamp(ts_ns[j + 1]), "return", float(np.expm1(returns[j])), float(score[j])))
        if len(close) > MIN_RETURNS_FOR_OUTLIERS and range_k > 0:
            span = (high - low) / close
            typical = np.median(span)
            if typical > 0:
                multiple = span / typical
                for i in np.flatnonzero(multiple > range_k):
                    found.append(Outlier(_stamp(ts_ns[i]), "range", float(span[i]), float(multiple[i])))
    return sorted(found, key=lambda o: (o.ts, o.kind))


def quality_report(
    frame: pd.DataFrame,
    *,
    timeframe: str,
    start,
    end,
    sessions: Sessions | None,
    stale_bars: int = DEFAULT_STALE_BARS,
    outlier_z: float = DEFAULT_OUTLIER_Z,
    range_k: float = DEFAULT_RANGE_K,
) -> QualityReport:
    """The report of ``frame`` (columns ts, high, low, close, volume; any order) over [start, end)."""
    if timeframe not in TIMEFRAME_SECONDS:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    start_ns, end_ns = _ns(start), _ns(end)
    raw_ns = _utc_ns(frame) if len(frame) else np.empty(0, dtype="int64")
    inside = (raw_ns >= start_ns) & (raw_ns < end_ns)
    frame = frame.loc[inside].copy()
    raw_ns = raw_ns[inside]

    counts = pd.Series(raw_ns).value_counts()
    duplicates = [_stamp(v) for v in sorted(counts[counts > 1].index)]
    order = np.argsort(raw_ns, kind="stable")
    ts_ns = raw_ns[order]
    keep_first = np.concatenate(([True], np.diff(ts_ns) != 0)) if len(ts_ns) else np.empty(0, dtype=bool)
    ts_ns = ts_ns[keep_first]
    cols = {c: frame[c].to_numpy("float64")[order][keep_first] for c in ("high", "low", "close", "volume")}

    if timeframe == "1d":
        expected = expected_daily(start_ns=start_ns, end_ns=end_ns, sessions=sessions)
        present_keys = _daily_label_days(ts_ns)
    else:
        step = TIMEFRAME_SECONDS[timeframe]
        expected = expected_intraday(step_s=step, start_ns=start_ns, end_ns=end_ns, sessions=sessions)
        if sessions is not None and len(ts_ns) and step > 60:
            aligned = expected_intraday(step_s=step, start_ns=start_ns, end_ns=end_ns, sessions=sessions,
                                        anchor="session")
            if np.isin(ts_ns, aligned).sum() > np.isin(ts_ns, expected).sum():
                expected = aligned
        present_keys = ts_ns

    matched = int(np.isin(expected, present_keys).sum())
    return QualityReport(
        expected=len(expected),
        present=len(ts_ns),
        matched=matched,
        outside_session=int((~np.isin(present_keys, expected)).sum()),
        gaps=find_gaps(expected, present_keys),
        stale=find_stale(ts_ns, cols["close"], cols["volume"], min_bars=stale_bars),
        outliers=find_outliers(ts_ns, cols["high"], cols["low"], cols["close"], outlier_z=outlier_z,
                               range_k=range_k),
        duplicates=duplicates,
    )


def _naive_utc(value) -> np.datetime64:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_datetime64()


def sessions_from(days, opens, closes) -> Sessions:
    """Sessions from sequences of dates and datetimes (aware, or naive UTC)."""
    return Sessions(
        days=np.array([np.datetime64(pd.Timestamp(d).date(), "D") for d in days], dtype="datetime64[D]"),
        opens=np.array([_naive_utc(x) for x in opens], dtype="datetime64[ns]"),
        closes=np.array([_naive_utc(x) for x in closes], dtype="datetime64[ns]"),
    )
