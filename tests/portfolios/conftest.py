"""Shared fixtures for the portfolio shell: instruments, a portfolio per firm, and a booking helper."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.audit.services import Actor
from apps.marketdata.models import Instrument
from apps.portfolios import services
from apps.portfolios.booking import book_fill


@pytest.fixture
def stocks(db) -> dict[str, Instrument]:
    made = {}
    for symbol, exchange in (("AAPL", "NASDAQ"), ("MSFT", "NASDAQ"), ("XYZ", "NYSE"), ("SPY", "ARCA")):
        made[symbol] = Instrument.objects.create(symbol=symbol, asset_class="etf" if symbol == "SPY" else "equity",
                                                 exchange=exchange, shortable=True, fractionable=True)
    made["BTCUSD"] = Instrument.objects.create(symbol="BTCUSD", asset_class="crypto", exchange="CRYPTO",
                                               fractionable=True, lot_size="0.00000001")
    return made


@pytest.fixture
def system() -> Actor:
    return Actor.system("test")


@pytest.fixture
def portfolio(firm_a, system):
    return services.portfolio_create(firm_id=firm_a.firm.pk, name="Main", actor=system)


@pytest.fixture
def book(system):
    """book(portfolio, instrument, side, qty, price, when, fill_id=None, **kw) with strings for amounts."""
    counter = iter(range(1, 1_000_000))

    def _book(portfolio, instrument, side, quantity, price, when, fill_id=None, fees="0", **kw):
        if isinstance(when, str):
            when = datetime.fromisoformat(when).replace(tzinfo=UTC) if "T" in when else \
                datetime.fromisoformat(when + "T15:00:00").replace(tzinfo=UTC)
        return book_fill(portfolio=portfolio, instrument=instrument, side=side, quantity=Decimal(quantity),
                         price=Decimal(price), fees=Decimal(fees), executed_at=when,
                         fill_id=fill_id or f"F{next(counter)}", actor=system, **kw)

    return _book
