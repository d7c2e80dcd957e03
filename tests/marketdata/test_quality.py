"""Data-quality report: the pure core on hand-built frames whose right answer is known, then the API
and the page on stored bars."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from apps.marketdata import calendars
from apps.marketdata.quality import quality_report, sessions_from


def nyse(start: str, end: str):
    found = calendars.sessions("NYSE", date.fromisoformat(start), date.fromisoformat(end))
    return sessions_from([s.day for s in found], [s.open for s in found], [s.close for s in found])


def minute_bars(*ranges: tuple[str, str], drop: tuple[str, ...] = (), close=100.0, volume=10.0,
                freq: str = "1min") -> pd.DataFrame:
    """Bars at every step in each [from, to) range (UTC), minus ``drop``."""
    stamps = [t for a, b in ranges for t in pd.date_range(a, b, freq=freq, inclusive="left", tz="UTC")]
    dropped = {pd.Timestamp(d) if pd.Timestamp(d).tzinfo else pd.Timestamp(d, tz="UTC") for d in drop}
    stamps = [t for t in stamps if t not in dropped]
    n = len(stamps)
    return pd.DataFrame({"ts": stamps, "open": np.full(n, close), "high": np.full(n, close + 0.5),
                         "low": np.full(n, close - 0.5), "close": np.full(n, close), "volume": np.full(n, volume)})


# 2024-07-03: early close 13:00 ET (17:00Z); 07-04: Independence Day; 07-05: 09:30-16:00 ET (13:30-20:00Z).
JULY = (("2024-07-03T13:30Z", "2024-07-03T17:00Z"), ("2024-07-05T13:30Z", "2024-07-05T20:00Z"))


def test_full_sessions_across_a_holiday_and_an_early_close_have_no_gap():
    report = quality_report(minute_bars(*JULY), timeframe="1m", start="2024-07-03", end="2024-07-06",
                            sessions=nyse("2024-07-01", "2024-07-08"))
    assert report.summary() == {
        "expected": 210 + 390, "present": 600, "matched": 600, "missing": 0, "coverage_pct": 100.0,
        "outside_session": 0, "gaps": 0, "stale_periods": 0, "outliers": 0, "duplicates": 0,
    }


def test_a_missing_1031_bar_is_a_gap_of_one():
    frame = minute_bars(*JULY, drop=("2024-07-05T14:31Z",))  # 10:31 EDT
    report = quality_report(frame, timeframe="1m", start="2024-07-03", end="2024-07-06",
                            sessions=nyse("2024-07-01", "2024-07-08"))
    assert [g.as_dict() for g in report.gaps] == [
        {"start": "2024-07-05T14:31:00Z", "end": "2024-07-05T14:31:00Z", "bars": 1}]
    assert (report.expected, report.matched, report.missing, report.coverage_pct) == (600, 599, 1, 99.83)


def test_missing_runs_merge_and_a_missing_session_is_one_gap():
    frame = minute_bars(("2024-07-05T13:30Z", "2024-07-05T20:00Z"),
                        drop=("2024-07-05T15:00Z", "2024-07-05T15:01Z", "2024-07-05T15:02Z", "2024-07-05T19:59Z"))
    report = quality_report(frame, timeframe="1m", start="2024-07-03", end="2024-07-06",
                            sessions=nyse("2024-07-01", "2024-07-08"))
    assert [g.as_dict() for g in report.gaps] == [
        {"start": "2024-07-03T13:30:00Z", "end": "2024-07-03T16:59:00Z", "bars": 210},  # the whole early-close day
        {"start": "2024-07-05T15:00:00Z", "end": "2024-07-05T15:02:00Z", "bars": 3},
        {"start": "2024-07-05T19:59:00Z", "end": "2024-07-05T19:59:00Z", "bars": 1},
    ]


def test_hand_built_sessions_and_bars_outside_them():
    sessions = sessions_from([date(2024, 1, 2)], ["2024-01-02T10:00Z"], ["2024-01-02T10:05Z"])
    frame = minute_bars(("2024-01-02T09:58Z", "2024-01-02T10:05Z"), drop=("2024-01-02T10:02Z",))
    report = quality_report(frame, timeframe="1m", start="2024-01-02", end="2024-01-03", sessions=sessions)
    assert (report.expected, report.present, report.matched, report.outside_session) == (5, 6, 4, 2)
    assert [(g.start, g.bars) for g in report.gaps] == [(pd.Timestamp("2024-01-02T10:02Z"), 1)]


def test_crypto_trades_around_the_clock():
    frame = minute_bars(("2024-07-04T00:00Z", "2024-07-04T01:00Z"),
                        drop=("2024-07-04T00:10Z", "2024-07-04T00:11Z", "2024-07-04T00:59Z"))
    report = quality_report(frame, timeframe="1m", start="2024-07-04T00:00Z", end="2024-07-04T01:00Z", sessions=None)
    assert (report.expected, report.matched) == (60, 57)
    assert [(g.start.strftime("%H:%M"), g.end.strftime("%H:%M"), g.bars) for g in report.gaps] == [
        ("00:10", "00:11", 2), ("00:59", "00:59", 1)]
    daily = minute_bars(("2024-07-01", "2024-07-08"), freq="1D", drop=("2024-07-04",))  # a holiday trades in crypto
    report = quality_report(daily, timeframe="1d", start="2024-07-01", end="2024-07-08", sessions=None)
    assert (report.expected, report.matched, [g.bars for g in report.gaps]) == (7, 6, [1])


def test_daily_bars_labelled_midnight_new_york_match_their_sessions():
    days = ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05"]  # no 07-04: a holiday, not a gap
    stamps = [pd.Timestamp(d, tz="America/New_York").tz_convert("UTC") for d in days]
    frame = pd.DataFrame({"ts": stamps, "high": 2.0, "low": 1.0, "close": 1.5, "volume": 1.0})
    report = quality_report(frame, timeframe="1d", start="2024-07-01", end="2024-07-06",
                            sessions=nyse("2024-06-28", "2024-07-09"))
    assert (report.expected, report.matched, report.gaps, report.outside_session) == (4, 4, [], 0)


def test_hourly_bars_on_the_utc_grid_or_session_aligned_both_cover_the_session():
    sessions = nyse("2024-07-05", "2024-07-05")  # 13:30-20:00Z
    utc_grid = minute_bars(("2024-07-05T13:00Z", "2024-07-05T20:00Z"), freq="1h")
    aligned = minute_bars(("2024-07-05T13:30Z", "2024-07-05T20:00Z"), freq="1h")
    for frame in (utc_grid, aligned):
        report = quality_report(frame, timeframe="1h", start="2024-07-05", end="2024-07-06", sessions=sessions)
        assert (report.expected, report.matched, report.gaps) == (7, 7, [])


def test_stale_period_is_a_run_of_unchanged_close_with_zero_volume():
    frame = minute_bars(("2024-07-04T00:00Z", "2024-07-04T00:30Z"))
    frame["close"] = np.arange(30, dtype=float) + 100.0
    frame.loc[5:16, "close"] = frame.loc[4, "close"]  # rows 5..16 repeat row 4's close ...
    frame.loc[5:16, "volume"] = 0.0  # ... with no volume: 12 stale bars
    frame.loc[20:23, "close"] = frame.loc[19, "close"]  # a run of 4 is below the threshold
    frame.loc[20:23, "volume"] = 0.0
    frame["high"], frame["low"] = frame["close"] + 0.5, frame["close"] - 0.5
    report = quality_report(frame, timeframe="1m", start="2024-07-04", end="2024-07-05", sessions=None, stale_bars=10)
    assert [s.as_dict() for s in report.stale] == [
        {"start": "2024-07-04T00:05:00Z", "end": "2024-07-04T00:16:00Z", "bars": 12}]
    assert len(quality_report(frame, timeframe="1m", start="2024-07-04", end="2024-07-05", sessions=None,
                              stale_bars=4).stale) == 2


def test_outliers_by_robust_return_and_by_range():
    rng = np.random.default_rng(7)
    frame = minute_bars(("2024-07-04T00:00Z", "2024-07-04T02:00Z"))
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, len(frame))))
    close[60:] *= 1.10  # a 10% jump at 01:00 is ~100 robust sigmas
    frame["close"], frame["high"], frame["low"] = close, close * 1.0005, close * 0.9995
    frame.loc[90, "high"] = close[90] * 1.02  # range 2.05% vs a typical 0.1%: ~20x
    report = quality_report(frame, timeframe="1m", start="2024-07-04", end="2024-07-05", sessions=None)
    found = [(o.ts.strftime("%H:%M"), o.kind) for o in report.outliers]
    assert found == [("01:00", "return"), ("01:30", "range")]
    assert report.outliers[0].value == pytest.approx(close[60] / close[59] - 1)


def test_duplicates_in_a_frame_are_reported_and_counted_once():
    frame = minute_bars(("2024-07-04T00:00Z", "2024-07-04T00:05Z"))
    frame = pd.concat([frame, frame.iloc[[2]]], ignore_index=True)
    report = quality_report(frame, timeframe="1m", start="2024-07-04T00:00Z", end="2024-07-04T00:05Z", sessions=None)
    assert report.duplicates == [pd.Timestamp("2024-07-04T00:02Z")]
    assert (report.present, report.matched, report.gaps) == (5, 5, [])


def test_empty_series_is_all_gap_and_bars_outside_the_range_are_ignored():
    frame = minute_bars(("2024-07-04T00:00Z", "2024-07-04T00:05Z"))
    report = quality_report(frame, timeframe="1m", start="2024-07-04T01:00Z", end="2024-07-04T01:03Z", sessions=None)
    assert (report.expected, report.present, report.coverage_pct, [g.bars for g in report.gaps]) == (3, 0, 0.0, [3])
    none = quality_report(frame.iloc[:0], timeframe="1m", start="2024-07-06", end="2024-07-07",
                          sessions=nyse("2024-07-05", "2024-07-08"))  # a Saturday: nothing expected
    assert (none.expected, none.coverage_pct) == (0, None)


# --- the API and the page, on stored bars -----------------------------------------------------------


@pytest.fixture
def aapl(db):
    from apps.marketdata.ingest import bars_upsert
    from apps.marketdata.services import instrument_create

    instrument = instrument_create(symbol="AAPL", asset_class="equity", exchange="NASDAQ")
    frame = minute_bars(*JULY, drop=("2024-07-05T14:31Z",))
    bars_upsert(instrument_id=instrument.pk, timeframe="1m", bars=frame)
    return instrument


def test_api_reports_the_stored_series(aapl, firm_a, api_client_for):
    client = api_client_for(firm_a.member("analyst"), scopes=("read",))
    response = client.get("/api/v1/data-quality/", {"symbol": "aapl", "timeframe": "1m", "start": "2024-07-03",
                                                    "end": "2024-07-06"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["summary"] == {
        "expected": 600, "present": 599, "matched": 599, "missing": 1, "coverage_pct": 99.83, "outside_session": 0,
        "gaps": 1, "stale_periods": 0, "outliers": 0, "duplicates": 0,
    }
    assert body["gaps"] == [{"start": "2024-07-05T14:31:00Z", "end": "2024-07-05T14:31:00Z", "bars": 1}]
    assert (body["symbol"], body["stale"], body["duplicates"], body["truncated"]) == ("AAPL", [], [], False)


@pytest.mark.parametrize(("params", "field"), [
    ({"symbol": "NOPE"}, "symbol"),
    ({"timeframe": "2m"}, "timeframe"),
    ({"start": "2024-07-06", "end": "2024-07-03"}, "start"),
    ({"start": "2024-01-01", "end": "2024-03-01"}, "end"),  # > 50,000 one-minute bars
    ({"start": "yesterday"}, "start"),
    ({"stale_bars": "1"}, "stale_bars"),
])
def test_api_refusals_name_the_field(aapl, firm_a, api_client_for, params, field):
    client = api_client_for(firm_a.member("analyst"), scopes=("read",))
    query = {"symbol": "AAPL", "timeframe": "1m", "start": "2024-07-03", "end": "2024-07-06", **params}
    response = client.get("/api/v1/data-quality/", query)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_page_shows_the_report_and_form_errors(aapl, firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("compliance"))
    page = client.get("/markets/quality/", {"symbol": "AAPL", "timeframe": "1m", "start": "2024-07-03",
                                            "end": "2024-07-05"})
    assert page.status_code == 200
    html = page.content.decode()
    assert '<td id="quality-coverage">99.83%</td>' in html
    assert "2024-07-05T14:31:00Z" in html
    bad = client.get("/markets/quality/", {"symbol": "NOPE", "timeframe": "1m", "start": "2024-07-03",
                                           "end": "2024-07-05"})
    assert bad.status_code == 400
    assert bad.context["form"].errors == {"symbol": ["Unknown symbol."]}
    assert client.get("/markets/quality/").status_code == 200  # the empty form
