"""The order shell's world: instruments with live quotes in Redis, a funded paper portfolio per firm."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from apps.audit.services import Actor
from apps.marketdata.models import Instrument
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.orders.core import OrderClass, OrderSpec, OrderType, Side, TimeInForce
from apps.orders.models import Origin
from apps.orders.services import Entry
from apps.portfolios import services as portfolio_services


@pytest.fixture
def instruments(db) -> dict[str, Instrument]:
    made = {
        "BTC/USD": Instrument.objects.create(symbol="BTC/USD", asset_class="crypto", exchange="CRYPTO",
                                             fractionable=True, lot_size="0.0001", tick_size="0.01"),
        "AAPL": Instrument.objects.create(symbol="AAPL", asset_class="equity", exchange="NASDAQ",
                                          shortable=True, fractionable=False),
        "ETH/USD": Instrument.objects.create(symbol="ETH/USD", asset_class="crypto", exchange="CRYPTO",
                                             fractionable=True, lot_size="0.0001"),
    }
    return made


def set_quote(symbol: str, bid, ask, last=None, *, exchange="CRYPTO", ts=None, size=1000) -> None:
    last = last if last is not None else (float(bid) + float(ask)) / 2
    quotes_set([QuoteIn(symbol=symbol, exchange=exchange, bid=float(bid), ask=float(ask), last=float(last),
                        bid_size=size, ask_size=size, ts=ts if ts is not None else time.time())])


@pytest.fixture
def quote():
    return set_quote


@pytest.fixture
def system() -> Actor:
    return Actor.system("test")


def funded(firm_id: int, name: str, cash: str = "100000", **options):
    portfolio = portfolio_services.portfolio_create(firm_id=firm_id, name=name, actor=Actor.system("test"), **options)
    portfolio_services.cash_post(portfolio=portfolio, kind="deposit", amount=Decimal(cash), actor=Actor.system("test"))
    return portfolio


@pytest.fixture
def paper(firm_a, instruments):
    return funded(firm_a.firm.pk, "Paper A")


@pytest.fixture
def paper_b(firm_b, instruments):
    return funded(firm_b.firm.pk, "Paper B")


@pytest.fixture
def trader_entry(firm_a) -> Entry:
    user = firm_a.member("trader").user
    return Entry(actor=Actor.for_user(user), origin=Origin.UI, source="ui")


def spec(symbol="BTC/USD", side="buy", qty="0.5", type="market", tif="gtc", **kw) -> OrderSpec:
    return OrderSpec(symbol=symbol, side=Side(side), type=OrderType(type), time_in_force=TimeInForce(tif),
                     qty=None if qty is None else Decimal(qty),
                     order_class=kw.pop("order_class", OrderClass.SIMPLE), **kw)


@pytest.fixture(autouse=True)
def enqueued(monkeypatch):
    """No Celery worker runs in these tests (tests/orders/test_worker.py starts a real one): what the order
    path would queue after commit is recorded here instead of piling up in the test broker."""
    calls: list[tuple[str, tuple]] = []
    monkeypatch.setattr("apps.orders.routing._enqueue", lambda task, *args: calls.append((task.name, args)))
    return calls


# the WebSocket fixtures of tests/realtime (the real ASGI application and Redis channel layer)
from tests.realtime.conftest import _fresh_channel_layer, anyio_backend, ws  # noqa: E402, F401
