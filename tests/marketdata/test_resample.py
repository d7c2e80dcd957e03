"""Resampling 1m bars (apps.marketdata.resample): session-aligned buckets, exact OHLCV aggregation."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from apps.marketdata.resample import resample


def bars(*rows):
    """rows: (ts UTC, open, high, low, close, volume, vwap, trade_count)."""
    return pd.DataFrame(
        [dict(zip(("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"), r, strict=True))
         for r in rows]
    ).assign(ts=lambda d: pd.to_datetime(d["ts"], utc=True))


def as_rows(frame):
    out = []
    for r in frame.itertuples(index=False):
        out.append((r.ts.isoformat(), r.open, r.high, r.low, r.close, r.volume,
                    None if math.isnan(r.vwap) else round(r.vwap, 10),
                    None if math.isnan(r.trade_count) else int(r.trade_count)))
    return out


# Friday 2024-03-08 is EST (09:30 ET = 14:30Z); Monday 2024-03-11 is EDT after the 2024-03-10 DST change
# (09:30 ET = 13:30Z).
DST_BARS = bars(
    ("2024-03-08T14:29Z", 9, 9, 9, 9, 1000, 9, 99),            # 09:29 ET pre-market: dropped
    ("2024-03-08T14:30Z", 10, 11, 9, 10.5, 100, 10.25, 5),
    ("2024-03-08T15:29Z", 10.5, 12, 10, 11, 300, 11.0, 7),     # 10:29 ET: still the 09:30 bucket
    ("2024-03-08T15:30Z", 11, 11.5, 10.8, 11.2, 200, 11.5, 3),  # 10:30 ET: next bucket
    ("2024-03-08T21:00Z", 8, 8, 8, 8, 1000, 8, 99),            # 16:00 ET = the close: dropped
    ("2024-03-11T13:30Z", 20, 21, 19, 20, 50, 20.0, 1),       # 09:30 EDT
    ("2024-03-11T14:30Z", 20, 20, 18, 19, 150, 19.0, 2),      # 10:30 EDT
)


def test_hourly_buckets_anchor_at_the_session_open_across_dst():
    assert as_rows(resample(DST_BARS, "1h", exchange="NYSE")) == [
        ("2024-03-08T14:30:00+00:00", 10.0, 12.0, 9.0, 11.0, 400.0, 10.8125, 12),
        ("2024-03-08T15:30:00+00:00", 11.0, 11.5, 10.8, 11.2, 200.0, 11.5, 3),
        ("2024-03-11T13:30:00+00:00", 20.0, 21.0, 19.0, 20.0, 50.0, 20.0, 1),
        ("2024-03-11T14:30:00+00:00", 20.0, 20.0, 18.0, 19.0, 150.0, 19.0, 2),
    ]


def test_daily_bar_is_one_session_labelled_midnight_new_york():
    assert as_rows(resample(DST_BARS, "1d", exchange="NASDAQ")) == [
        # (10.25*100 + 11*300 + 11.5*200) / 600
        ("2024-03-08T05:00:00+00:00", 10.0, 12.0, 9.0, 11.2, 600.0, round(6625 / 600, 10), 15),
        ("2024-03-11T04:00:00+00:00", 20.0, 21.0, 18.0, 19.0, 200.0, 19.25, 3),
    ]


EARLY_CLOSE = bars(  # 2024-11-29, the day after Thanksgiving: 09:30-13:00 ET = 14:30Z-18:00Z
    ("2024-11-29T14:30Z", 50, 51, 49, 50, 10, 50.0, 1),
    ("2024-11-29T17:29Z", 50, 52, 50, 51, 10, 51.0, 1),  # 12:29 ET: the 11:30 bucket
    ("2024-11-29T17:30Z", 51, 53, 51, 52, 20, 52.0, 2),  # 12:30 ET: the last, half-hour bucket
    ("2024-11-29T17:59Z", 52, 52, 47, 48, 40, 48.0, 4),
    ("2024-11-29T18:00Z", 60, 60, 60, 60, 99, 60.0, 9),  # 13:00 ET: after the early close, dropped
)


def test_early_close_day_hourly_and_daily():
    assert as_rows(resample(EARLY_CLOSE, "1h", exchange="NYSE")) == [
        ("2024-11-29T14:30:00+00:00", 50.0, 51.0, 49.0, 50.0, 10.0, 50.0, 1),
        ("2024-11-29T16:30:00+00:00", 50.0, 52.0, 50.0, 51.0, 10.0, 51.0, 1),
        ("2024-11-29T17:30:00+00:00", 51.0, 53.0, 47.0, 48.0, 60.0, round((1040 + 1920) / 60, 10), 6),
    ]
    assert as_rows(resample(EARLY_CLOSE, "1d", exchange="NYSE")) == [
        ("2024-11-29T05:00:00+00:00", 50.0, 53.0, 47.0, 48.0, 80.0, round((500 + 510 + 1040 + 1920) / 80, 10), 8),
    ]


def test_five_and_fifteen_minute_buckets():
    minute = bars(*[(f"2024-03-08T14:{30 + i}Z", 10 + i, 10.5 + i, 9.5 + i, 10 + i, 1, 10.0 + i, 1) for i in range(7)])
    assert as_rows(resample(minute, "5m", exchange="NYSE")) == [
        ("2024-03-08T14:30:00+00:00", 10.0, 14.5, 9.5, 14.0, 5.0, 12.0, 5),
        ("2024-03-08T14:35:00+00:00", 15.0, 16.5, 14.5, 16.0, 2.0, 15.5, 2),
    ]
    assert as_rows(resample(minute, "15m", exchange="NYSE")) == [
        ("2024-03-08T14:30:00+00:00", 10.0, 16.5, 9.5, 16.0, 7.0, 13.0, 7),
    ]


def test_crypto_days_are_utc_days_and_missing_vwap_or_count_is_null():
    crypto = bars(
        ("2024-03-10T23:59Z", 100, 101, 99, 100, 2, 100.0, 3),
        ("2024-03-11T00:00Z", 100, 102, 100, 101, 1, None, None),
        ("2024-03-11T00:30Z", 101, 101, 100, 100, 0, 100.0, 1),
    )
    assert as_rows(resample(crypto, "1d", exchange="CRYPTO")) == [
        ("2024-03-10T00:00:00+00:00", 100.0, 101.0, 99.0, 100.0, 2.0, 100.0, 3),
        ("2024-03-11T00:00:00+00:00", 100.0, 102.0, 100.0, 100.0, 1.0, None, None),
    ]
    assert [r[0] for r in as_rows(resample(crypto, "1h", exchange="CRYPTO"))] == [
        "2024-03-10T23:00:00+00:00", "2024-03-11T00:00:00+00:00"]
    zero_volume = resample(crypto.iloc[[2]], "1h", exchange="CRYPTO")
    assert as_rows(zero_volume) == [("2024-03-11T00:00:00+00:00", 101.0, 101.0, 100.0, 100.0, 0.0, None, 1)]


def test_holiday_bars_are_dropped_and_empty_input_gives_empty_output():
    holiday = bars(("2024-12-25T15:00Z", 1, 1, 1, 1, 1, 1.0, 1))  # Christmas: no NYSE session
    assert resample(holiday, "1d", exchange="NYSE").empty
    assert list(resample(holiday.iloc[:0], "1h", exchange="NYSE").columns) == [
        "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]


def test_unknown_timeframe_is_refused():
    with pytest.raises(ValueError, match="cannot resample to '2h'"):
        resample(DST_BARS, "2h", exchange="NYSE")
