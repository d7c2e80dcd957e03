"""Resampling 1-minute bars to coarser timeframes (pure pandas/numpy; no ORM).

Session-aligned: every bucket belongs to one exchange session (``calendars.sessions``).

- Intraday buckets (5m, 15m, 1h) are anchored at the session open: for NYSE (09:30 ET) the 1h
  buckets start 09:30, 10:30, ... ET whatever the UTC offset (DST), and the last one is cut short
  by the close (12:30-13:00 on an early-close day). A bucket is labelled with its start (UTC).
- A daily bar is one session, labelled like stored daily bars: midnight of the session date in the
  exchange's time zone (UTC midnight for crypto, whose "sessions" are UTC days).
- 1m bars outside every session (pre/post market, holidays) are dropped.

Aggregation: open first, high max, low min, close last, volume sum, vwap volume-weighted
(sum(vwap * volume) / sum(volume); null if any input vwap is null or the volume is 0), trade_count
sum (null if any input count is null). Buckets with no 1m bar produce no output row.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from apps.marketdata import calendars

TARGET_MINUTES = {"5m": 5, "15m": 15, "1h": 60, "1d": None}
COLUMNS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")


def _session_table(exchange: str, first: pd.Timestamp, last: pd.Timestamp):
    cal = calendars.get_calendar(exchange)
    lo = max((first - pd.Timedelta(days=1)).date(), cal.first_session.date())
    hi = min((last + pd.Timedelta(days=1)).date(), cal.last_session.date())
    if lo > hi:
        return np.array([], "datetime64[ns]"), np.array([], "datetime64[ns]"), np.array([], "datetime64[ns]")
    rows = calendars.sessions(exchange, lo, hi)
    tz = str(cal.tz)
    opens = pd.DatetimeIndex([s.open for s in rows]).tz_convert(None).to_numpy("datetime64[ns]")
    closes = pd.DatetimeIndex([s.close for s in rows]).tz_convert(None).to_numpy("datetime64[ns]")
    labels = (
        pd.DatetimeIndex([pd.Timestamp(s.day) for s in rows]).tz_localize(tz).tz_convert(None)
        .to_numpy("datetime64[ns]")
    )
    return opens, closes, labels


def resample(bars: pd.DataFrame, timeframe: str, *, exchange: str) -> pd.DataFrame:
    """Aggregate 1m ``bars`` (columns ts (UTC), open, high, low, close, volume[, vwap, trade_count])
    into ``timeframe`` bars of ``exchange``'s sessions. Returns the same columns, oldest first."""
    if timeframe not in TARGET_MINUTES:
        raise ValueError(f"cannot resample to {timeframe!r}; known: {', '.join(TARGET_MINUTES)}")
    if bars.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS}).assign(
            ts=pd.Series(dtype="datetime64[ns, UTC]")
        )
    df = bars.copy()
    for col in ("vwap", "trade_count"):
        if col not in df:
            df[col] = np.nan
    ts_index = pd.DatetimeIndex(pd.to_datetime(df["ts"], utc=True))
    df = df.assign(ts=ts_index).sort_values("ts", kind="stable").reset_index(drop=True)
    t = pd.DatetimeIndex(df["ts"]).tz_convert(None).to_numpy("datetime64[ns]")

    opens, closes, labels = _session_table(exchange, pd.Timestamp(t[0]), pd.Timestamp(t[-1]))
    idx = np.searchsorted(opens, t, side="right") - 1
    safe = np.where(idx >= 0, idx, 0)
    inside = (idx >= 0) & (t < closes[safe]) & (t >= opens[safe]) if len(opens) else np.zeros(len(t), bool)
    df, t, safe = df[inside].reset_index(drop=True), t[inside], safe[inside]

    minutes = TARGET_MINUTES[timeframe]
    if minutes is None:
        key = labels[safe]
    else:
        step = np.timedelta64(int(timedelta(minutes=minutes).total_seconds() * 1e9), "ns")
        start = opens[safe]
        key = start + ((t - start) // step) * step

    numeric = {c: pd.to_numeric(df[c], errors="coerce").astype("float64") for c in COLUMNS[1:]}
    frame = pd.DataFrame({"key": key, **numeric})
    frame["pv"] = frame["vwap"] * frame["volume"]
    g = frame.groupby("key", sort=True)
    out = pd.DataFrame({
        "open": g["open"].first(),
        "high": g["high"].max(),
        "low": g["low"].min(),
        "close": g["close"].last(),
        "volume": g["volume"].sum(),
    })
    vwap_missing = g["vwap"].apply(lambda s: bool(s.isna().any()))
    pv = g["pv"].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = pv / out["volume"]
    out["vwap"] = vwap.where(~vwap_missing & (out["volume"] > 0))
    count_missing = g["trade_count"].apply(lambda s: bool(s.isna().any()))
    out["trade_count"] = g["trade_count"].sum().where(~count_missing)
    out = out.reset_index().rename(columns={"key": "ts"})
    out["ts"] = pd.DatetimeIndex(out["ts"]).tz_localize("UTC")
    return out[list(COLUMNS)]
