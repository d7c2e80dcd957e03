"""Exchange calendars (sessions, holidays, early closes) over the ``exchange_calendars`` package.

Pure: no ORM. Our exchange codes map to exchange_calendars codes: US equity venues (NYSE, NASDAQ,
ARCA) share the NYSE schedule (XNYS); CRYPTO trades around the clock ("24/7"). Calendars are built
once per process (building one takes a few hundred ms) and cover 2000 to a year ahead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

EXCHANGE_CALENDARS = {
    "NYSE": "XNYS",
    "NASDAQ": "XNYS",
    "ARCA": "XNYS",
    "CRYPTO": "24/7",
}
CALENDAR_START = "2000-01-03"


class UnknownExchange(ValueError):
    pass


@dataclass(frozen=True)
class Session:
    day: date
    open: datetime  # UTC
    close: datetime  # UTC
    early_close: bool


def calendar_code(exchange: str) -> str:
    try:
        return EXCHANGE_CALENDARS[exchange.upper()]
    except KeyError:
        known = ", ".join(sorted(EXCHANGE_CALENDARS))
        raise UnknownExchange(f"unknown exchange {exchange!r}; known: {known}") from None


@lru_cache(maxsize=8)
def _calendar(code: str) -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values on tz-aware columns, which pandas 3.1 deprecates.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        return xcals.get_calendar(code, start=CALENDAR_START)


def get_calendar(exchange: str) -> xcals.ExchangeCalendar:
    return _calendar(calendar_code(exchange))


def _check_range(cal: xcals.ExchangeCalendar, start: date, end: date) -> None:
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    first, last = cal.first_session.date(), cal.last_session.date()
    if start < first or end > last:
        raise ValueError(f"range {start}..{end} is outside the calendar's {first}..{last}")


def _early_close_days(cal: xcals.ExchangeCalendar) -> set[date]:
    return {ts.date() for ts in cal.early_closes}


def sessions(exchange: str, start: date, end: date) -> list[Session]:
    """Trading sessions from ``start`` to ``end`` (inclusive session dates) with UTC open/close."""
    cal = get_calendar(exchange)
    _check_range(cal, start, end)
    schedule = cal.schedule.loc[pd.Timestamp(start): pd.Timestamp(end)]
    early = _early_close_days(cal)
    return [
        Session(day=label.date(), open=row.open.to_pydatetime(), close=row.close.to_pydatetime(),
                early_close=label.date() in early)
        for label, row in schedule.iterrows()
    ]


def early_closes(exchange: str, start: date, end: date) -> list[Session]:
    return [s for s in sessions(exchange, start, end) if s.early_close]


def holidays(exchange: str, start: date, end: date) -> list[date]:
    """Weekdays in the range with no session (empty for 24/7 markets)."""
    cal = get_calendar(exchange)
    _check_range(cal, start, end)
    open_days = {s.date() for s in cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))}
    weekdays = pd.bdate_range(start, end)
    return [d.date() for d in weekdays if d.date() not in open_days]


def is_session(exchange: str, day: date) -> bool:
    cal = get_calendar(exchange)
    _check_range(cal, day, day)
    return bool(cal.is_session(pd.Timestamp(day)))


def is_open(exchange: str, ts: datetime) -> bool:
    """Whether the market is trading at the aware instant ``ts`` (open inclusive, close exclusive)."""
    if ts.tzinfo is None:
        raise ValueError("is_open needs an aware datetime")
    return bool(in_session(exchange, np.array([pd.Timestamp(ts).tz_convert(UTC).asm8]))[0])


def in_session(exchange: str, ts_utc: np.ndarray) -> np.ndarray:
    """Vectorized: for each UTC instant (datetime64[ns]) whether it falls in a session [open, close)."""
    ts = np.asarray(ts_utc, dtype="datetime64[ns]")
    opens, closes = _bounds(calendar_code(exchange))
    # Sessions do not overlap and are sorted: the candidate is the last session opening at or before ts.
    idx = np.searchsorted(opens, ts, side="right") - 1
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    return valid & (ts < closes[safe]) & (ts >= opens[safe])


@lru_cache(maxsize=8)
def _bounds(code: str) -> tuple[np.ndarray, np.ndarray]:
    schedule = _calendar(code).schedule
    as_naive_utc = [schedule[col].dt.tz_convert(None).to_numpy().astype("datetime64[ns]") for col in ("open", "close")]
    return as_naive_utc[0], as_naive_utc[1]


def session_days(exchange: str, days: np.ndarray) -> np.ndarray:
    """Vectorized: for each day (datetime64 at midnight) whether it is a session date."""
    cal = get_calendar(exchange)
    labels = cal.sessions.to_numpy().astype("datetime64[D]")
    return np.isin(np.asarray(days, dtype="datetime64[D]"), labels)
