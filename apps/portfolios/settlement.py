"""Settlement dates of trades: the date cash and securities actually change hands.

Pure: no ORM. The ledger records each trade entry with its trade date and settlement date so
settled and unsettled cash are both known (issue #4, point 2).

Rules (US, SEC Rule 15c6-1), counted in sessions of the exchange calendar after the trade date:
- equities and ETFs: T+1 for trades on or after 2024-05-28, T+2 from 2017-09-05, T+3 before
  (imported history reaches back that far; the calendars start in 2000);
- options: T+1;
- crypto: the trade date itself (on-chain/venue settlement, no clearing cycle).

Known simplification: settlement days are counted on the exchange calendar. Real DTC settlement
also skips Federal Reserve holidays on which NYSE trades (Columbus Day, Veterans Day).
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

from apps.marketdata import calendars

# (first trade date of the cycle, business days) for equities and ETFs, newest first.
EQUITY_CYCLES: tuple[tuple[date, int], ...] = (
    (date(2024, 5, 28), 1),
    (date(2017, 9, 5), 2),
    (date(1995, 6, 7), 3),
)
OPTION_CYCLE_DAYS = 1

# Option trades carry the OPRA feed as exchange; they clear on the US equity calendar.
_CALENDAR_ALIASES = {"OPRA": "NYSE"}


class UnknownAssetClass(ValueError):
    pass


def settlement_cycle_days(trade_date: date, asset_class: str) -> int:
    """Business days between trade and settlement for this asset class on this trade date."""
    kind = asset_class.lower()
    if kind == "crypto":
        return 0
    if kind == "option":
        return OPTION_CYCLE_DAYS
    if kind in ("equity", "etf"):
        for since, days in EQUITY_CYCLES:
            if trade_date >= since:
                return days
        raise ValueError(f"no settlement cycle known for trade date {trade_date} (before {EQUITY_CYCLES[-1][0]})")
    raise UnknownAssetClass(f"unknown asset class {asset_class!r}; known: crypto, equity, etf, option")


def settlement_date(trade_date: date, asset_class: str, exchange: str) -> date:
    """The settlement date of a trade made on ``trade_date`` (a date in the exchange's time zone).

    T+n means the n-th session of the exchange calendar strictly after the trade date, so a trade
    dated on a weekend or holiday (imported history) counts from the next session.
    """
    if isinstance(trade_date, datetime):
        # A UTC instant can fall on another calendar day than the exchange's; the caller decides.
        raise TypeError("trade_date must be a date (in the exchange's time zone), not a datetime")
    days = settlement_cycle_days(trade_date, asset_class)
    if days == 0:
        return trade_date
    cal = calendars.get_calendar(_CALENDAR_ALIASES.get(exchange.upper(), exchange))
    if trade_date < cal.first_session.date():
        raise ValueError(f"trade date {trade_date} is before the calendar's first session {cal.first_session.date()}")
    labels = cal.sessions.to_numpy().astype("datetime64[D]")
    idx = int(np.searchsorted(labels, np.datetime64(trade_date, "D"), side="right")) + days - 1
    if idx >= len(labels):
        raise ValueError(f"trade date {trade_date} is too close to the calendar's last session {cal.last_session.date()}")
    return pd.Timestamp(labels[idx]).date()
