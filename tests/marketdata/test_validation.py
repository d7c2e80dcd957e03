"""The validation rules, each on its own (pure: no database)."""

import numpy as np
import pandas as pd
import pytest

from apps.marketdata.validation import (
    FileError,
    Issue,
    map_columns,
    parse_column_map,
    parse_tz,
    read_bars_file,
    validate_bars,
)


def frame(rows, columns=("ts", "open", "high", "low", "close", "volume")):
    return pd.DataFrame(rows, columns=list(columns))


GOOD = [
    ("2024-07-05T13:30:00Z", 10, 11, 9, 10.5, 100),
    ("2024-07-05T13:31:00Z", 10.5, 11, 10, 10.2, 50),
    ("2024-07-05T13:32:00Z", 10.2, 10.4, 10, 10.1, 0),
]


def errors(report):
    return [(i.row, i.field, i.reason) for i in report.errors]


def test_clean_rows_are_all_accepted():
    report = validate_bars(frame(GOOD), timeframe="1m")
    assert (report.rows, report.accepted, report.rejected, report.errors, report.warnings) == (3, 3, 0, [], [])
    assert report.bars["ts"].tolist() == [pd.Timestamp("2024-07-05 13:30", tz="UTC"),
                                          pd.Timestamp("2024-07-05 13:31", tz="UTC"),
                                          pd.Timestamp("2024-07-05 13:32", tz="UTC")]
    assert report.bars["close"].tolist() == [10.5, 10.2, 10.1]
    assert report.bars["row"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(("row", "expected"), [
    (("2024-07-05T13:33:00Z", 10, 11, 10.5, 10.6, 1), [(4, "low", "low 10.5 is above open 10")]),
    (("2024-07-05T13:33:00Z", 10, 11, 10.5, 10.4, 1), [(4, "low", "low 10.5 is above open 10"),
                                                       (4, "low", "low 10.5 is above close 10.4")]),
    (("2024-07-05T13:33:00Z", 10, 10.5, 9, 10.6, 1), [(4, "high", "high 10.5 is below close 10.6")]),
    (("2024-07-05T13:33:00Z", 10, 9, 9.5, 9.5, 1), [(4, "low", "low 9.5 is above high 9"),
                                                    (4, "high", "high 9 is below open 10"),
                                                    (4, "high", "high 9 is below close 9.5")]),
    (("2024-07-05T13:33:00Z", 10, 11, 9, 10, -5), [(4, "volume", "must not be negative, got -5")]),
    (("2024-07-05T13:33:00Z", 0, 11, 0, 10, 1), [(4, "open", "must be positive, got 0"),
                                                 (4, "low", "must be positive, got 0")]),
    (("2024-07-05T13:33:00Z", "ten", 11, 9, 10, 1), [(4, "open", "not a number: 'ten'")]),
    (("2024-07-05T13:33:00Z", 10, 11, 9, None, 1), [(4, "close", "missing")]),
    (("2024-07-05T13:33:30Z", 10, 11, 9, 10, 1), [(4, "ts", "2024-07-05T13:33:30Z is not on the 1m grid")]),
    (("2024-07-05T13:31:00Z", 10, 11, 9, 10, 1), [(4, "ts", "duplicate timestamp 2024-07-05T13:31:00Z (first at row 2)"),
                                                  (4, "ts", "out of order: 2024-07-05T13:31:00Z comes after "
                                                            "2024-07-05T13:32:00Z (row 3)")]),
    (("2024-07-05T13:29:00Z", 10, 11, 9, 10, 1), [(4, "ts", "out of order: 2024-07-05T13:29:00Z comes after "
                                                            "2024-07-05T13:32:00Z (row 3)")]),
    (("yesterday-ish", 10, 11, 9, 10, 1), [(4, "ts", "cannot parse timestamp 'yesterday-ish'")]),
    ((None, 10, 11, 9, 10, 1), [(4, "ts", "missing")]),
    (("2024-07-05T13:33:00Z", 1e11, 1e11, 9, 10, 1), [(4, "open", "100000000000 exceeds the maximum price"),
                                                      (4, "high", "100000000000 exceeds the maximum price")]),
])
def test_each_rule_rejects_the_row_with_its_reason(row, expected):
    report = validate_bars(frame([*GOOD, row]), timeframe="1m")
    assert errors(report) == expected
    assert (report.accepted, report.rejected, report.rejected_rows) == (3, 1, [4])
    assert report.bars["row"].tolist() == [1, 2, 3]


def test_grid_for_5m_1h_and_daily_bars():
    five = frame([("2024-07-05T13:35:00Z", 1, 1, 1, 1, 1), ("2024-07-05T13:41:00Z", 1, 1, 1, 1, 1)])
    assert errors(validate_bars(five, timeframe="5m")) == [(2, "ts", "2024-07-05T13:41:00Z is not on the 5m grid")]
    hour = frame([("2024-07-05T13:00:00Z", 1, 1, 1, 1, 1), ("2024-07-05T14:30:00Z", 1, 1, 1, 1, 1)])
    assert errors(validate_bars(hour, timeframe="1h")) == [(2, "ts", "2024-07-05T14:30:00Z is not on the 1h grid")]
    daily = frame([("2024-07-03", 1, 1, 1, 1, 1), ("2024-07-05 12:00", 1, 1, 1, 1, 1)])
    report = validate_bars(daily, timeframe="1d", tz="America/New_York")
    assert errors(report) == [(2, "ts", "2024-07-05T16:00:00Z is not on midnight in America/New_York")]
    assert report.bars["ts"].tolist() == [pd.Timestamp("2024-07-03 04:00", tz="UTC")]


def test_naive_timestamps_are_read_in_the_given_zone_and_aware_ones_converted():
    rows = [("2024-07-05 09:30", 1, 1, 1, 1, 1), ("2024-07-05T09:31:00-04:00", 1, 1, 1, 1, 1),
            ("2024-07-05T13:32:00+00:00", 1, 1, 1, 1, 1)]
    report = validate_bars(frame(rows), timeframe="1m", tz="America/New_York")
    assert report.errors == []
    assert report.bars["ts"].dt.strftime("%H:%M").tolist() == ["13:30", "13:31", "13:32"]
    utc = validate_bars(frame(rows[:1]), timeframe="1m")  # default UTC
    assert utc.bars["ts"].tolist() == [pd.Timestamp("2024-07-05 09:30", tz="UTC")]


def test_a_local_time_skipped_by_daylight_saving_is_rejected():
    rows = [("2024-03-10 01:59", 1, 1, 1, 1, 1), ("2024-03-10 02:30", 1, 1, 1, 1, 1)]
    report = validate_bars(frame(rows), timeframe="1m", tz="America/New_York")
    assert errors(report) == [(2, "ts", "2024-03-10 02:30:00 does not exist or is ambiguous in America/New_York "
                                        "(DST change)")]


def test_datetime_columns_from_parquet_are_accepted_naive_or_aware():
    aware = frame([(pd.Timestamp("2024-07-05 09:30", tz="America/New_York"), 1, 1, 1, 1, 1)])
    assert validate_bars(aware, timeframe="1m").bars["ts"].tolist() == [pd.Timestamp("2024-07-05 13:30", tz="UTC")]
    naive = frame([(pd.Timestamp("2024-07-05 09:30"), 1, 1, 1, 1, 1)])
    assert validate_bars(naive, timeframe="1m", tz="America/New_York").bars["ts"].tolist() == [
        pd.Timestamp("2024-07-05 13:30", tz="UTC")]


def test_outliers_and_bars_outside_the_session_are_warnings_not_rejections():
    ts = pd.date_range("2024-07-05 13:30", periods=60, freq="1min", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    close = 100 + np.sin(np.arange(60)) * 0.1
    close[40] = 130.0  # a 30% spike in one minute
    rows = [(t, c, c, c, c, 10) for t, c in zip(ts, close, strict=True)]
    rows.append(("2024-07-05T20:30:00Z", 100, 100, 100, 100, 10))  # after the 16:00 ET close
    report = validate_bars(frame(rows), timeframe="1m", exchange="NYSE")
    assert report.errors == []
    assert report.accepted == 61
    warnings = [(w.row, w.field) for w in report.warnings]
    assert warnings == [(41, "close"), (42, "close"), (61, "ts")]
    assert report.warnings[0].reason.startswith("outlier: return +29.")
    assert report.warnings[2].reason == "2024-07-05T20:30:00Z is outside the NYSE session"
    crypto = validate_bars(frame(rows), timeframe="1m", exchange="CRYPTO", outlier_k=0)
    assert crypto.warnings == []


def test_daily_bar_on_a_holiday_is_a_warning():
    report = validate_bars(frame([("2024-07-04", 1, 1, 1, 1, 1)]), timeframe="1d", tz="America/New_York",
                           exchange="NYSE")
    assert report.warnings == [Issue(1, "ts", "2024-07-04T04:00:00Z is not a NYSE session day")]
    assert report.accepted == 1


def test_optional_vwap_and_trade_count():
    cols = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")
    rows = [("2024-07-05T13:30:00Z", 1, 1, 1, 1, 1, 1.0, 7), ("2024-07-05T13:31:00Z", 1, 1, 1, 1, 1, None, None),
            ("2024-07-05T13:32:00Z", 1, 1, 1, 1, 1, -1, 2.5)]
    report = validate_bars(frame(rows, cols), timeframe="1m")
    assert errors(report) == [(3, "vwap", "not a positive price: -1"),
                              (3, "trade_count", "not a whole number >= 0: 2.5")]
    assert report.bars["vwap"].tolist()[0] == 1.0 and np.isnan(report.bars["vwap"].tolist()[1])
    assert report.bars["trade_count"].tolist() == [7, pd.NA]


def test_column_map_parsing():
    assert parse_column_map("ts=Date, open=Open,volume=Vol") == {"ts": "Date", "open": "Open", "volume": "Vol"}
    assert parse_column_map(None) == {}
    with pytest.raises(ValueError, match="--map: unknown field 'price'"):
        parse_column_map("price=Close")
    with pytest.raises(ValueError, match="--map: 'ts' is not FIELD=COLUMN"):
        parse_column_map("ts")
    with pytest.raises(ValueError, match="--map: field 'ts' is mapped twice"):
        parse_column_map("ts=A,ts=B")


def test_map_columns_by_map_then_by_name():
    raw = pd.DataFrame({"Date": ["2024-07-05"], "OPEN": [1], "High": [2], "low": [1], "Close": [1], "Vol": [5]})
    mapped = map_columns(raw, {"ts": "Date", "volume": "Vol"})
    assert list(mapped.columns) == ["ts", "volume", "open", "high", "low", "close"]
    with pytest.raises(FileError) as exc:
        map_columns(raw, {})
    assert str(exc.value) == ("missing column(s) volume; the file has Date, OPEN, High, low, Close, Vol "
                              "(map them with --map FIELD=COLUMN)")
    with pytest.raises(FileError, match="--map: column 'Nope' \\(for ts\\) is not in the file"):
        map_columns(raw, {"ts": "Nope"})


def test_unknown_timezone_and_timeframe():
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        parse_tz("Mars/Olympus")
    with pytest.raises(ValueError, match="unknown timeframe '2m'; timeframes are 1m, 5m, 15m, 1h, 1d"):
        validate_bars(frame(GOOD), timeframe="2m")


def test_read_csv_and_parquet(tmp_path):
    data = pd.DataFrame(GOOD, columns=["ts", "open", "high", "low", "close", "volume"])
    data.to_csv(tmp_path / "a.csv", index=False)
    data.assign(ts=pd.to_datetime(data["ts"])).to_parquet(tmp_path / "a.parquet")
    from_csv = validate_bars(map_columns(read_bars_file(tmp_path / "a.csv")), timeframe="1m")
    from_parquet = validate_bars(map_columns(read_bars_file(tmp_path / "a.parquet")), timeframe="1m")
    assert from_csv.accepted == from_parquet.accepted == 3
    pd.testing.assert_frame_equal(from_csv.bars, from_parquet.bars, check_dtype=False)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(FileError, match="bad.parquet: cannot read as parquet"):
        read_bars_file(tmp_path / "bad.parquet")
    with pytest.raises(FileError, match="unknown format 'xlsx'"):
        (tmp_path / "a.xlsx").write_text("x")
        read_bars_file(tmp_path / "a.xlsx")
    with pytest.raises(FileError, match="no such file"):
        read_bars_file(tmp_path / "missing.csv")
