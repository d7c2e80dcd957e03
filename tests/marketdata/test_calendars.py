from datetime import UTC, date, datetime

import numpy as np
import pytest

from apps.marketdata import calendars


def test_mapping_of_our_exchanges():
    assert {x: calendars.calendar_code(x) for x in ("NYSE", "NASDAQ", "ARCA", "CRYPTO", "nyse")} == {
        "NYSE": "XNYS", "NASDAQ": "XNYS", "ARCA": "XNYS", "CRYPTO": "24/7", "nyse": "XNYS"}


def test_unknown_exchange_is_a_clear_error():
    with pytest.raises(calendars.UnknownExchange) as exc:
        calendars.sessions("LSE", date(2024, 1, 2), date(2024, 1, 3))
    assert str(exc.value) == "unknown exchange 'LSE'; known: ARCA, CRYPTO, NASDAQ, NYSE"


def test_independence_day_is_a_holiday():
    assert calendars.is_session("NYSE", date(2024, 7, 4)) is False
    assert calendars.is_open("NYSE", datetime(2024, 7, 4, 15, 0, tzinfo=UTC)) is False
    assert calendars.holidays("NYSE", date(2024, 7, 1), date(2024, 7, 5)) == [date(2024, 7, 4)]
    assert [s.day for s in calendars.sessions("NYSE", date(2024, 7, 3), date(2024, 7, 5))] == [
        date(2024, 7, 3), date(2024, 7, 5)]


def test_day_after_thanksgiving_closes_at_13_00_eastern():
    (session,) = calendars.sessions("NYSE", date(2024, 11, 29), date(2024, 11, 29))
    assert session.open == datetime(2024, 11, 29, 14, 30, tzinfo=UTC)  # 09:30 EST
    assert session.close == datetime(2024, 11, 29, 18, 0, tzinfo=UTC)  # 13:00 EST
    assert session.early_close is True
    assert calendars.is_open("NYSE", datetime(2024, 11, 29, 17, 59, tzinfo=UTC)) is True
    assert calendars.is_open("NYSE", datetime(2024, 11, 29, 18, 0, tzinfo=UTC)) is False
    assert [s.day for s in calendars.early_closes("NASDAQ", date(2024, 11, 1), date(2024, 12, 31))] == [
        date(2024, 11, 29), date(2024, 12, 24)]


def test_regular_session_hours_follow_daylight_saving():
    (summer,) = calendars.sessions("ARCA", date(2024, 7, 5), date(2024, 7, 5))
    assert (summer.open, summer.close, summer.early_close) == (
        datetime(2024, 7, 5, 13, 30, tzinfo=UTC), datetime(2024, 7, 5, 20, 0, tzinfo=UTC), False)


def test_crypto_trades_on_a_sunday_and_holidays():
    assert calendars.is_open("CRYPTO", datetime(2024, 11, 24, 3, 0, tzinfo=UTC)) is True  # a Sunday
    assert calendars.is_open("CRYPTO", datetime(2024, 7, 4, 15, 0, tzinfo=UTC)) is True
    assert calendars.holidays("CRYPTO", date(2024, 7, 1), date(2024, 7, 7)) == []
    assert len(calendars.sessions("CRYPTO", date(2024, 11, 18), date(2024, 11, 24))) == 7


def test_is_open_needs_an_aware_datetime():
    with pytest.raises(ValueError, match="is_open needs an aware datetime"):
        calendars.is_open("NYSE", datetime(2024, 7, 5, 15, 0))  # noqa: DTZ001 - the point of the test


def test_range_checks():
    with pytest.raises(ValueError, match="start 2024-07-05 is after end 2024-07-01"):
        calendars.sessions("NYSE", date(2024, 7, 5), date(2024, 7, 1))
    with pytest.raises(ValueError, match="outside the calendar"):
        calendars.sessions("NYSE", date(1990, 1, 1), date(1990, 1, 5))


def test_vectorized_in_session():
    ts = np.array(["2024-07-05T13:29", "2024-07-05T13:30", "2024-07-05T19:59", "2024-07-05T20:00",
                   "2024-07-06T15:00"], dtype="datetime64[ns]")
    assert calendars.in_session("NYSE", ts).tolist() == [False, True, True, False, False]
