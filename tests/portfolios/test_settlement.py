"""Settlement dates: T+1/T+2/T+3 cycles on the NYSE calendar, options T+1, crypto same day."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from apps.marketdata.calendars import UnknownExchange
from apps.portfolios.settlement import UnknownAssetClass, settlement_cycle_days, settlement_date


@pytest.mark.parametrize(
    ("trade", "asset_class", "exchange", "settles"),
    [
        # Friday trade settles Monday (T+1).
        (date(2025, 6, 6), "equity", "NASDAQ", date(2025, 6, 9)),
        (date(2025, 6, 6), "etf", "ARCA", date(2025, 6, 9)),
        # Before a holiday: Independence Day 2024 (Thu), Thanksgiving 2024 (Thu), Christmas 2025 (Thu).
        (date(2024, 7, 3), "equity", "NYSE", date(2024, 7, 5)),
        (date(2024, 11, 27), "equity", "NYSE", date(2024, 11, 29)),
        (date(2025, 12, 24), "equity", "NYSE", date(2025, 12, 26)),
        # T+2 era across Good Friday 2024 (NYSE closed 2024-03-29).
        (date(2024, 3, 28), "equity", "NYSE", date(2024, 4, 2)),
        # The 2024-05-28 switchover: Friday 05-24 (T+2, across Memorial Day) and Tuesday 05-28 (T+1)
        # both settle on Wednesday 05-29, the industry's "double settlement" day.
        (date(2024, 5, 23), "equity", "NYSE", date(2024, 5, 28)),
        (date(2024, 5, 24), "equity", "NYSE", date(2024, 5, 29)),
        (date(2024, 5, 28), "equity", "NYSE", date(2024, 5, 29)),
        (date(2024, 5, 29), "equity", "NYSE", date(2024, 5, 30)),
        # The 2017-09-05 switch from T+3 to T+2 (across Labor Day 2017-09-04).
        (date(2017, 8, 31), "equity", "NYSE", date(2017, 9, 6)),
        (date(2017, 9, 1), "equity", "NYSE", date(2017, 9, 7)),
        (date(2017, 9, 5), "equity", "NYSE", date(2017, 9, 7)),
        # Options are T+1, before and after 2024; OPRA clears on the NYSE calendar.
        (date(2020, 3, 6), "option", "OPRA", date(2020, 3, 9)),
        (date(2024, 7, 3), "option", "OPRA", date(2024, 7, 5)),
        # Crypto settles the same day, weekends and US holidays included.
        (date(2025, 6, 7), "crypto", "CRYPTO", date(2025, 6, 7)),
        (date(2025, 12, 25), "crypto", "CRYPTO", date(2025, 12, 25)),
        # An (imported) trade dated on a Saturday counts from the next session.
        (date(2025, 6, 7), "equity", "NYSE", date(2025, 6, 9)),
    ],
)
def test_settlement_date(trade, asset_class, exchange, settles):
    assert settlement_date(trade, asset_class, exchange) == settles


def test_cycle_days_by_era():
    assert settlement_cycle_days(date(2017, 9, 1), "equity") == 3
    assert settlement_cycle_days(date(2017, 9, 5), "etf") == 2
    assert settlement_cycle_days(date(2024, 5, 24), "equity") == 2
    assert settlement_cycle_days(date(2024, 5, 28), "EQUITY") == 1
    assert settlement_cycle_days(date(2010, 1, 4), "option") == 1
    assert settlement_cycle_days(date(2010, 1, 4), "crypto") == 0


def test_unknown_asset_class():
    with pytest.raises(UnknownAssetClass, match="unknown asset class 'bond'"):
        settlement_date(date(2025, 6, 6), "bond", "NYSE")


def test_unknown_exchange():
    with pytest.raises(UnknownExchange, match="unknown exchange 'LSE'"):
        settlement_date(date(2025, 6, 6), "equity", "LSE")


def test_datetime_is_refused():
    with pytest.raises(TypeError, match="must be a date"):
        settlement_date(datetime(2025, 6, 6, 15, tzinfo=UTC), "equity", "NYSE")


def test_outside_calendar():
    with pytest.raises(ValueError, match="before the calendar's first session"):
        settlement_date(date(1999, 6, 1), "equity", "NYSE")
