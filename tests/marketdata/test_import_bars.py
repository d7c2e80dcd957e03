"""``manage.py import_bars``: the whole path from a file to the bars table."""

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.marketdata import ingest
from apps.marketdata.models import Bar, Instrument
from apps.marketdata.services import instrument_create

pytestmark = pytest.mark.django_db

HEADER = "Date,Open,High,Low,Close,Volume\n"
GOOD = (
    "2024-07-05 09:30,10,11,9,10.5,100\n"
    "2024-07-05 09:31,10.5,11,10,10.2,50\n"
    "2024-07-05 09:32,10.2,10.4,10,10.1,20\n"
)
ONE_BAD = (
    "2024-07-05 09:30,10,11,9,10.5,100\n"
    "2024-07-05 09:31,10.5,10,10,10.2,50\n"  # high 10 below open 10.5
    "2024-07-05 09:32,10.2,10.4,10,10.1,20\n"
)
OPTS = ["--timeframe", "1m", "--tz", "America/New_York", "--map", "ts=Date"]


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_bars", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def csv_file(tmp_path, body, name="bars.csv"):
    path = tmp_path / name
    path.write_text(HEADER + body)
    return str(path)


def rows():
    return list(Bar.objects.order_by("ts").values_list("instrument__symbol", "timeframe", "ts", "open", "high", "low",
                                                       "close", "volume"))


@pytest.fixture
def aapl():
    return instrument_create(symbol="AAPL", name="Apple Inc.", asset_class="equity", exchange="NASDAQ")


def test_import_writes_the_rows_and_reports_counts(tmp_path, aapl):
    out, _ = run(csv_file(tmp_path, GOOD), "--symbol", "aapl", *OPTS)
    assert out.startswith("AAPL 1m: rows 3, accepted 3, rejected 0, warnings 0; inserted 3, updated 0, unchanged 0 in ")
    assert rows()[0] == ("AAPL", "1m", datetime(2024, 7, 5, 13, 30, tzinfo=UTC), Decimal("10"), Decimal("11"),
                         Decimal("9"), Decimal("10.5"), Decimal("100"))
    assert len(rows()) == 3


def test_importing_the_same_csv_twice_leaves_identical_rows(tmp_path, aapl):
    path = csv_file(tmp_path, GOOD)
    run(path, "--symbol", "AAPL", *OPTS)
    first = rows()
    out, _ = run(path, "--symbol", "AAPL", *OPTS)
    assert "inserted 0, updated 0, unchanged 3" in out
    assert rows() == first


def test_a_file_with_one_bad_row_writes_nothing_and_reports_the_row_and_why(tmp_path, aapl):
    out = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("import_bars", csv_file(tmp_path, ONE_BAD), "--symbol", "AAPL", *OPTS, stdout=out)
    assert str(exc.value) == ("AAPL: file rejected, nothing written: 1 of 3 rows rejected "
                              "(use --skip-bad-rows to import the 2 good rows)")
    assert out.getvalue() == "error: row 2: high: high 10 is below open 10.5\nerror: row 2: high: high 10 is below " \
                             "close 10.2\n"
    assert rows() == []


def test_skip_bad_rows_imports_the_good_ones_and_reports_the_rest(tmp_path, aapl):
    out, _ = run(csv_file(tmp_path, ONE_BAD), "--symbol", "AAPL", *OPTS, "--skip-bad-rows")
    lines = out.splitlines()
    assert lines[:2] == ["error: row 2: high: high 10 is below open 10.5", "error: row 2: high: high 10 is below close 10.2"]
    assert lines[2].startswith("AAPL 1m: rows 3, accepted 2, rejected 1, warnings 0; inserted 2, updated 0")
    assert [r[2].minute for r in rows()] == [30, 32]


def test_a_row_with_missing_fields_is_reported_as_that_row_not_as_an_unreadable_file(tmp_path, aapl):
    # pyarrow's reader refuses a short row for the whole file; the fallback reader keeps the row
    # so validation can name it (and --skip-bad-rows can import the rest).
    short = GOOD.replace("10.2,50\n", "10.2\n")
    out, _ = run(csv_file(tmp_path, short), "--symbol", "AAPL", *OPTS, "--skip-bad-rows")
    assert out.splitlines()[0] == "error: row 2: volume: missing"
    assert [r[2].minute for r in rows()] == [30, 32]


def test_the_report_serializes_to_plain_dicts(tmp_path):
    from apps.marketdata.validation import map_columns, read_bars_file, validate_bars

    frame = map_columns(read_bars_file(csv_file(tmp_path, ONE_BAD)), {"ts": "Date"})
    report = validate_bars(frame, timeframe="1m", tz="America/New_York").as_dict()
    assert (report["rows"], report["accepted"], report["rejected"]) == (3, 2, 1)
    assert report["errors"][0] == {"row": 2, "field": "high", "reason": "high 10 is below open 10.5"}


def test_unknown_symbol_is_an_error_unless_created(tmp_path):
    path = csv_file(tmp_path, GOOD)
    with pytest.raises(CommandError) as exc:
        run(path, "--symbol", "NEWCO", *OPTS)
    assert str(exc.value) == ("UNKNOWN_SYMBOL: unknown symbol 'NEWCO'; pass --create-instrument with --asset-class "
                              "to create it")
    with pytest.raises(CommandError) as exc:
        run(path, "--symbol", "NEWCO", *OPTS, "--create-instrument")
    assert str(exc.value) == "INVALID_ASSET_CLASS: --create-instrument needs --asset-class (one of equity, etf, crypto)"
    assert Instrument.objects.count() == 0
    out, _ = run(path, "--symbol", "NEWCO", *OPTS, "--create-instrument", "--asset-class", "equity")
    assert out.startswith("NEWCO 1m (instrument created): rows 3, accepted 3")
    assert Instrument.objects.get().exchange == "NYSE"


def test_a_rejected_file_does_not_create_the_instrument_either(tmp_path):
    with pytest.raises(CommandError):
        run(csv_file(tmp_path, ONE_BAD), "--symbol", "NEWCO", *OPTS, "--create-instrument", "--asset-class", "equity")
    assert Instrument.objects.count() == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--timeframe", "2m"], "INVALID_OPTION: unknown timeframe '2m'; timeframes are 1m, 5m, 15m, 1h, 1d"),
    (["--tz", "Nowhere/Town"], "INVALID_OPTION: unknown time zone 'Nowhere/Town' (use an IANA name such as "
                               "America/New_York)"),
    (["--map", "price=Close"], "INVALID_OPTION: --map: unknown field 'price'; fields are ts, open, high, low, close, "
                               "volume, vwap, trade_count"),
    (["--map", "ts=When"], "INVALID_FILE: --map: column 'When' (for ts) is not in the file; it has Date, Open, High, "
                           "Low, Close, Volume"),
])
def test_bad_options_are_clear_errors(tmp_path, aapl, extra, message):
    with pytest.raises(CommandError) as exc:
        run(csv_file(tmp_path, GOOD), "--symbol", "AAPL", *OPTS, *extra)
    assert str(exc.value) == message
    assert rows() == []


def test_malformed_and_missing_files(tmp_path, aapl):
    with pytest.raises(CommandError) as exc:
        run(str(tmp_path / "nope.csv"), "--symbol", "AAPL", *OPTS)
    assert str(exc.value) == f"INVALID_FILE: {tmp_path / 'nope.csv'}: no such file"
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    with pytest.raises(CommandError) as exc:
        run(str(empty), "--symbol", "AAPL", *OPTS)
    assert str(exc.value) == "INVALID_FILE: the file has no rows"


def test_parquet_import_with_warnings(tmp_path, aapl):
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(["2024-07-05 13:30", "2024-07-05 20:30"]).tz_localize("UTC"),
        "open": [10.0, 10.0], "high": [11.0, 11.0], "low": [9.0, 9.0], "close": [10.0, 10.0], "volume": [1.0, 2.0],
    })
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    out, _ = run(str(path), "--symbol", "AAPL", "--timeframe", "1m")
    assert out.splitlines()[0] == "warning: row 2: ts: 2024-07-05T20:30:00Z is outside the NASDAQ session"
    assert "rows 2, accepted 2, rejected 0, warnings 1; inserted 2" in out.splitlines()[1]


def test_progress_lines_for_big_files(tmp_path, aapl, monkeypatch):
    monkeypatch.setattr("apps.marketdata.management.commands.import_bars.PROGRESS_MIN_ROWS", 3)
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    _, err = run(csv_file(tmp_path, GOOD), "--symbol", "AAPL", *OPTS)
    assert err == "written 2/3 rows (67%)\nwritten 3/3 rows (100%)\n"
