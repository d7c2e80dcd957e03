"""COPY + upsert: idempotent, corrections replace, all or nothing (real PostgreSQL)."""

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from apps.marketdata.ingest import UpsertResult, bars_upsert
from apps.marketdata.models import Bar, Instrument

pytestmark = pytest.mark.django_db


@pytest.fixture
def btc():
    return Instrument.objects.create(symbol="BTCUSD", asset_class="crypto", exchange="CRYPTO",
                                     tick_size=Decimal("0.01"), lot_size=Decimal("0.00000001"))


def bars(n=5, start="2024-07-05 13:30", close=None):
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    close = np.asarray(close if close is not None else 65432.12345678 + np.arange(n), dtype="float64")
    return pd.DataFrame({"ts": ts, "open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": np.full(n, 0.5), "vwap": close, "trade_count": pd.array([3] * n, dtype="Int64")})


def stored(instrument):
    return list(Bar.objects.filter(instrument=instrument).order_by("timeframe", "ts").values_list(
        "timeframe", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"))


def test_values_round_trip_exactly_including_tiny_crypto_prices_and_nulls(btc):
    frame = bars(2)
    frame.loc[1, ["open", "high", "low", "close"]] = [0.00001234, 0.00001240, 0.00001230, 0.00001235]
    frame["vwap"] = [65432.5, np.nan]
    frame["trade_count"] = pd.array([12, pd.NA], dtype="Int64")
    result = bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame)
    assert result == UpsertResult(rows=2, inserted=2, updated=0)
    assert stored(btc) == [
        ("1m", datetime(2024, 7, 5, 13, 30, tzinfo=UTC), Decimal("65432.12345678"), Decimal("65433.12345678"),
         Decimal("65431.12345678"), Decimal("65432.12345678"), Decimal("0.5"), Decimal("65432.5"), 12),
        ("1m", datetime(2024, 7, 5, 13, 31, tzinfo=UTC), Decimal("0.00001234"), Decimal("0.0000124"),
         Decimal("0.0000123"), Decimal("0.00001235"), Decimal("0.5"), None, None),
    ]


def test_importing_the_same_rows_twice_leaves_identical_rows(btc):
    first = bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(5))
    before = stored(btc)
    second = bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(5))
    assert (first.inserted, first.updated, first.unchanged) == (5, 0, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 5)
    assert stored(btc) == before
    assert len(before) == 5


def test_corrected_rows_replace_and_new_rows_are_added(btc):
    bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(3))
    corrected = bars(4)
    corrected.loc[1, "close"] = 65433.0
    result = bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=corrected)
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 2)
    assert [row[5] for row in stored(btc)] == [Decimal("65432.12345678"), Decimal("65433"),
                                               Decimal("65434.12345678"), Decimal("65435.12345678")]


def test_timeframes_are_separate_series(btc):
    bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(2))
    result = bars_upsert(instrument_id=btc.pk, timeframe="5m", bars=bars(1))
    assert result.inserted == 1
    assert [(tf, ts.minute) for tf, ts, *_ in stored(btc)] == [("1m", 30), ("1m", 31), ("5m", 30)]


def test_a_database_error_mid_way_writes_nothing(btc):
    bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(2))
    before = stored(btc)
    frame = bars(6, start="2024-07-05 13:31")  # updates one row, adds five...
    frame.loc[5, "low"] = frame.loc[5, "high"] + 10  # ...but the last row breaks the OHLC check constraint
    with pytest.raises(IntegrityError, match="marketdata_bar_ohlcv_consistent"):
        bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame.assign(close=frame["close"] + 0.5))
    assert stored(btc) == before


def test_a_failure_between_copy_chunks_writes_nothing(btc):
    seen = []

    def explode(done, total):
        seen.append(done)
        if done == 2:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(5), chunk_rows=2, progress=explode)
    assert seen == [2]
    assert stored(btc) == []
    # the connection and the staging table are still usable afterwards
    assert bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(5), chunk_rows=2).inserted == 5


def test_inside_an_outer_transaction_a_later_failure_rolls_the_bars_back(btc):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(3))
        1 / 0  # noqa: B018 - the caller's own failure after the write
    assert stored(btc) == []


def test_unsorted_or_duplicate_timestamps_are_refused_before_writing(btc):
    frame = bars(3)
    with pytest.raises(ValueError, match="sorted by ts with no duplicate timestamps"):
        bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame.iloc[[0, 2, 1]])
    with pytest.raises(ValueError, match="sorted by ts with no duplicate timestamps"):
        bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame.iloc[[0, 1, 1]])
    assert bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame.iloc[:0]) == UpsertResult(0, 0, 0)
    assert stored(btc) == []


def test_an_instrument_with_bars_cannot_be_deleted_and_without_bars_can(btc):
    bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(3))
    with pytest.raises(ProtectedError, match="referenced through protected foreign keys: 'Bar.instrument'") as exc:
        btc.delete()
    assert len(exc.value.protected_objects) == 1  # one EXISTS-style probe, not every bar loaded
    assert len(stored(btc)) == 3
    Bar.objects.filter(instrument=btc).delete()
    btc.delete()
    assert Instrument.objects.filter(symbol="BTCUSD").exists() is False


@pytest.mark.parametrize(("price", "expected"), [
    (0.1 + 0.2, Decimal("0.3")),  # float noise beyond 15 significant digits is dropped
    (1 / 3, Decimal("0.3333333333")),  # at most 10 places
    (123456789.123456789, Decimal("123456789.123457")),  # at most 15 significant digits
    (9999999999.5, Decimal("9999999999.5")),
    (0.0000000001, Decimal("1E-10")),
    (42.0, Decimal("42")),
    (10000.0, Decimal("10000")),
])
def test_binary_numeric_encoding(btc, price, expected):
    frame = bars(1, close=[price])
    frame[["open", "high", "low"]] = price
    frame["volume"] = [123456789012345.5 if price > 1 else 0.0]
    bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame)
    bar = Bar.objects.get(instrument=btc)
    assert (bar.open, bar.high, bar.low, bar.close, bar.vwap) == (expected,) * 5
    assert bar.volume == (Decimal("123456789012346") if price > 1 else Decimal("0"))


def test_bar_list_returns_a_half_open_range_oldest_first(btc, django_assert_num_queries):
    from apps.marketdata.selectors import bar_list

    bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(5))
    with django_assert_num_queries(1):
        got = list(bar_list(instrument=btc, timeframe="1m", start=datetime(2024, 7, 5, 13, 31, tzinfo=UTC),
                            end=datetime(2024, 7, 5, 13, 34, tzinfo=UTC)))
    assert [b.ts.minute for b in got] == [31, 32, 33]
    assert list(bar_list(instrument=btc, timeframe="5m", start=datetime(2024, 7, 5, tzinfo=UTC),
                         end=datetime(2024, 7, 6, tzinfo=UTC))) == []


def test_a_fresh_range_is_copied_straight_into_the_table_with_the_same_rows_as_the_upsert_path(btc):
    # vwap and trade_count unknown independently, so the NULL-cutting of the direct COPY meets every pattern.
    frame = bars(6)
    frame["vwap"] = [65432.5, np.nan, 1.25, np.nan, 0.0000000001, 7.0]
    frame["trade_count"] = pd.array([1, 2, pd.NA, pd.NA, 0, 9], dtype="Int64")
    eth = Instrument.objects.create(symbol="ETHUSD", asset_class="crypto", exchange="CRYPTO")
    direct = bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame)  # nothing stored in the range yet
    bars_upsert(instrument_id=eth.pk, timeframe="1m", bars=frame.iloc[:1])
    staged = bars_upsert(instrument_id=eth.pk, timeframe="1m", bars=frame)  # overlaps: staged + ON CONFLICT
    assert (direct, staged) == (UpsertResult(6, 6, 0), UpsertResult(6, 5, 0))
    assert stored(btc) == stored(eth)
    assert [row[7:] for row in stored(btc)] == [(Decimal("65432.5"), 1), (None, 2), (Decimal("1.25"), None),
                                                (None, None), (Decimal("1E-10"), 0), (Decimal("7"), 9)]


def test_a_bad_row_in_a_fresh_range_writes_nothing(btc):
    frame = bars(30_000)  # more than one direct-COPY chunk
    frame.loc[25_000, "low"] = frame.loc[25_000, "high"] + 10
    with pytest.raises(IntegrityError, match="marketdata_bar_ohlcv_consistent"):
        bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=frame)
    assert stored(btc) == []
    assert bars_upsert(instrument_id=btc.pk, timeframe="1m", bars=bars(3)).inserted == 3  # the connection is fine
