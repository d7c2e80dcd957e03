"""/ws/market/: authentication, the subscribe protocol and its errors, delivery through the hub.

Real Redis (pub/sub and the quote cache), the real ASGI application, channels' communicator.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from apps.marketdata import hub as hub_module
from apps.marketdata.consumers import MarketConsumer
from apps.marketdata.models import Instrument
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.marketdata.ticks import BarTick, ticks_publish
from tests.realtime.conftest import ORIGIN

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

PATH = "/ws/market/"
HELLO = {"type": "hello", "max_symbols": 200, "timeframes": ["1m", "5m", "15m", "1h", "1d"]}


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [ORIGIN, (b"authorization", f"Bearer {token}".encode())]


def quote(symbol: str, last: float, ts: float, exchange: str = "CRYPTO") -> QuoteIn:
    return QuoteIn(symbol=symbol, exchange=exchange, bid=last - 1, ask=last + 1, last=last, bid_size=2.0,
                   ask_size=3.0, ts=ts)


def wire(q: QuoteIn, stale: bool = False) -> dict:
    return {"b": q.bid, "a": q.ask, "l": q.last, "bs": q.bid_size, "as": q.ask_size, "t": q.ts, "stale": stale}


publish = sync_to_async(ticks_publish, thread_sensitive=False)


@pytest.fixture(autouse=True)
async def _own_hub():
    """Each test gets a fresh hub in its own event loop, stopped afterwards."""
    hub_module.install(None)
    yield
    current = hub_module._hub
    if current is not None:
        await current.stop()
    hub_module.install(None)


@pytest.fixture
async def manual_hub():
    """A hub that flushes only when the test says so (conflation without timing)."""
    hub = hub_module.MarketHub(autoflush=False)
    hub_module.install(hub)
    assert await hub.ready(5)
    return hub


@pytest.fixture
def instruments(db):
    Instrument.objects.bulk_create([
        Instrument(symbol="AAPL", asset_class="equity", exchange="NYSE"),
        Instrument(symbol="MSFT", asset_class="equity", exchange="NYSE"),
        Instrument(symbol="BTC/USD", asset_class="crypto", exchange="CRYPTO"),
        Instrument(symbol="ETH/USD", asset_class="crypto", exchange="CRYPTO"),
        Instrument(symbol="OLD", asset_class="equity", exchange="NYSE", active=False),
    ])


@pytest.fixture
async def market(ws, firm_a, make_token, instruments):
    """market() -> an authenticated /ws/market/ communicator that has received its hello."""

    async def _open():
        token = await database_sync_to_async(make_token)(firm_a.member("analyst"), ("read",))
        communicator, connected = await ws(bearer(token), path=PATH)
        assert connected
        assert await communicator.receive_json_from(timeout=5) == HELLO
        return communicator

    return _open


async def subscribe(communicator, symbols, timeframes=None) -> tuple[dict, dict]:
    message = {"type": "subscribe", "symbols": symbols}
    if timeframes is not None:
        message["timeframes"] = timeframes
    await communicator.send_json_to(message)
    reply = await communicator.receive_json_from(timeout=5)
    snapshot = await communicator.receive_json_from(timeout=5) if reply["type"] == "subscribed" else None
    return reply, snapshot


async def until(predicate, timeout: float = 5.0) -> None:
    """Wait for the hub to have ingested what was published (bounded; fails rather than hangs)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "the hub did not receive the ticks"
        await asyncio.sleep(0.01)


async def closed_with(communicator) -> int:
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    return message["code"]


# --- authentication -------------------------------------------------------------------------------


async def test_no_credentials_closes_4401(ws, monkeypatch):
    monkeypatch.setattr(MarketConsumer, "auth_timeout", 0.2)
    communicator, connected = await ws(path=PATH)
    assert connected
    assert await closed_with(communicator) == 4401


async def test_a_first_message_that_is_not_auth_closes_4401(ws):
    communicator, _ = await ws(path=PATH)
    await communicator.send_json_to({"type": "subscribe", "symbols": ["AAPL"]})
    assert await closed_with(communicator) == 4401


async def test_token_without_read_scope_closes_4403(ws, firm_a, make_token):
    token = await database_sync_to_async(make_token)(firm_a.member("trader"), ("trade",))
    communicator, _ = await ws(bearer(token), path=PATH)
    assert await closed_with(communicator) == 4403


async def test_token_in_a_first_message_authenticates(ws, firm_a, make_token, instruments):
    token = await database_sync_to_async(make_token)(firm_a.member("trader"), ("read",))
    communicator, _ = await ws(path=PATH)
    await communicator.send_json_to({"type": "auth", "token": token})
    assert await communicator.receive_json_from(timeout=5) == HELLO


async def test_session_past_2fa_authenticates_and_without_2fa_is_refused(ws, firm_a, session_cookie_for):
    member = firm_a.member("owner")
    verified = await database_sync_to_async(session_cookie_for)(member)
    communicator, _ = await ws([ORIGIN, (b"cookie", f"sessionid={verified}".encode())], path=PATH)
    assert await communicator.receive_json_from(timeout=5) == HELLO
    unverified = await database_sync_to_async(session_cookie_for)(member, verified=False)
    refused, _ = await ws([ORIGIN, (b"cookie", f"sessionid={unverified}".encode())], path=PATH)
    assert await closed_with(refused) == 4401


async def test_redis_unavailable_closes_1013(ws, firm_a, make_token, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub_module.install(hub_module.MarketHub(redis_url=f"redis://127.0.0.1:{port}/1"))
    monkeypatch.setattr(MarketConsumer, "ready_timeout", 0.5)
    token = await database_sync_to_async(make_token)(firm_a.member("analyst"), ("read",))
    communicator, _ = await ws(bearer(token), path=PATH)
    assert await closed_with(communicator) == 1013


# --- protocol -------------------------------------------------------------------------------------


async def test_subscribe_replies_with_all_symbols_and_a_snapshot_from_redis(market):
    q = quote("BTC/USD", 60_000.0, ts=datetime.now(UTC).timestamp())
    await sync_to_async(quotes_set)([q])
    communicator = await market()
    reply, snapshot = await subscribe(communicator, ["btc/usd", "ETH/USD"], ["1m", "5m"])
    assert reply == {"type": "subscribed", "symbols": ["BTC/USD", "ETH/USD"], "timeframes": ["1m", "5m"]}
    assert snapshot["type"] == "market"
    assert snapshot["quotes"] == {"BTC/USD": wire(q)}  # ETH/USD has no quote yet
    assert snapshot["bars"] == {}
    reply, _ = await subscribe(communicator, ["AAPL"])
    assert reply == {"type": "subscribed", "symbols": ["AAPL", "BTC/USD", "ETH/USD"], "timeframes": ["1m", "5m"]}
    await communicator.send_json_to({"type": "unsubscribe", "symbols": ["ETH/USD", "BTC/USD"]})
    assert await communicator.receive_json_from(timeout=5) == {"type": "unsubscribed", "symbols": ["AAPL"]}
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}


@pytest.mark.parametrize(("message", "code", "field", "text"), [
    ({"type": "subscribe", "symbols": ["AAPL", "NOPE", "OLD"]}, "UNKNOWN_SYMBOL", "symbols",
     "Unknown symbol(s): NOPE, OLD."),
    ({"type": "subscribe", "symbols": ["AAPL"], "timeframes": ["1m", "2m"]}, "UNKNOWN_TIMEFRAME", "timeframes",
     "Unknown timeframe(s): 2m; known: 1m, 5m, 15m, 1h, 1d."),
    ({"type": "unsubscribe", "symbols": ["MSFT", "AAPL"]}, "NOT_SUBSCRIBED", "symbols", "Not subscribed to: AAPL."),
    ({"type": "subscribe", "symbols": []}, "INVALID_MESSAGE", "symbols",
     "symbols must be a non-empty list of symbols."),
    ({"type": "subscribe", "symbols": "AAPL"}, "INVALID_MESSAGE", "symbols",
     "symbols must be a non-empty list of symbols."),
    ({"type": "subscribe", "symbols": ["AAPL"], "timeframes": "1m"}, "INVALID_MESSAGE", "timeframes",
     "timeframes must be a list of timeframes."),
    ({"type": "watch"}, "UNKNOWN_TYPE", "type", "Unknown message type 'watch'."),
])
async def test_errors_leave_the_socket_open_and_change_nothing(market, message, code, field, text):
    communicator = await market()
    await subscribe(communicator, ["MSFT"])
    await communicator.send_json_to(message)
    assert await communicator.receive_json_from(timeout=5) == {
        "type": "error", "error": {"code": code, "message": text, "fields": {field: [text]}}}
    reply, _ = await subscribe(communicator, ["MSFT"])
    assert reply["symbols"] == ["MSFT"]


async def test_invalid_json_is_an_invalid_message(market):
    communicator = await market()
    await communicator.send_to(text_data="{nope")
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["error"]["code"] == "INVALID_MESSAGE"


async def test_more_than_200_symbols_is_refused(market):
    await database_sync_to_async(Instrument.objects.bulk_create)(
        [Instrument(symbol=f"S{i:03d}", asset_class="equity", exchange="NYSE") for i in range(201)])
    communicator = await market()
    symbols = [f"S{i:03d}" for i in range(201)]
    reply, _ = await subscribe(communicator, symbols)
    assert reply["error"]["code"] == "SUBSCRIPTION_LIMIT"
    assert reply["error"]["message"] == "At most 200 symbols per connection (0 subscribed now)."
    reply, _ = await subscribe(communicator, symbols[:200])
    assert len(reply["symbols"]) == 200
    reply, _ = await subscribe(communicator, ["AAPL"])
    assert reply["error"]["code"] == "SUBSCRIPTION_LIMIT"
    reply, _ = await subscribe(communicator, symbols[:10])  # already subscribed: no new symbol, allowed
    assert len(reply["symbols"]) == 200


# --- delivery -------------------------------------------------------------------------------------


async def test_a_tick_reaches_subscribed_clients_only(market):
    btc, eth = await market(), await market()
    await subscribe(btc, ["BTC/USD"], ["1m"])
    await subscribe(eth, ["ETH/USD"])
    q = quote("BTC/USD", 61_000.0, ts=datetime.now(UTC).timestamp())
    bar = BarTick(symbol="BTC/USD", timeframe="1m", ts=datetime(2026, 11, 21, 10, 0, tzinfo=UTC), open=60_900.0,
                  high=61_050.0, low=60_800.0, close=61_000.0, volume=1.5, final=False)
    await publish(quotes=[q], bars=[bar])
    got = await btc.receive_json_from(timeout=5)
    assert got["type"] == "market"
    assert got["quotes"] == {"BTC/USD": wire(q)}
    assert got["bars"] == {"BTC/USD": {"1m": {"t": "2026-11-21T10:00:00+00:00", "o": 60_900.0, "h": 61_050.0,
                                              "l": 60_800.0, "c": 61_000.0, "v": 1.5, "final": False}}}
    e = quote("ETH/USD", 3_000.0, ts=datetime.now(UTC).timestamp())
    await publish(quotes=[e])
    got = await eth.receive_json_from(timeout=5)  # the BTC tick came first, yet only ETH reaches it
    assert got["quotes"] == {"ETH/USD": wire(e)}
    assert got["bars"] == {}
    assert await btc.receive_nothing(timeout=0.2)


async def test_quotes_only_subscribers_get_no_bars(market):
    communicator = await market()
    await subscribe(communicator, ["BTC/USD"])
    bar = BarTick(symbol="BTC/USD", timeframe="1m", ts=datetime(2026, 11, 21, 10, 0, tzinfo=UTC), open=1.0,
                  high=2.0, low=0.5, close=1.5, volume=3.0, final=False)
    q = quote("BTC/USD", 1.5, ts=datetime.now(UTC).timestamp())
    await publish(bars=[bar])
    await publish(quotes=[q])
    got = await communicator.receive_json_from(timeout=5)
    assert got["bars"] == {} and got["quotes"] == {"BTC/USD": wire(q)}


async def test_unsubscribed_symbols_stop_arriving(market, manual_hub):
    communicator = await market()
    await subscribe(communicator, ["BTC/USD", "ETH/USD"])
    await communicator.send_json_to({"type": "unsubscribe", "symbols": ["BTC/USD"]})
    assert (await communicator.receive_json_from(timeout=5))["symbols"] == ["ETH/USD"]
    now = datetime.now(UTC).timestamp()
    await publish(quotes=[quote("BTC/USD", 1.0, now), quote("ETH/USD", 2.0, now)])
    await until(lambda: manual_hub.stats.ticks == 2)
    manual_hub.flush()
    got = await communicator.receive_json_from(timeout=5)
    assert list(got["quotes"]) == ["ETH/USD"]


async def test_twenty_ticks_in_one_interval_arrive_as_one_message_with_the_last_values(market, manual_hub):
    communicator = await market()
    await subscribe(communicator, ["BTC/USD"])
    now = datetime.now(UTC).timestamp()
    sent = [quote("BTC/USD", 60_000.0 + i, now + i / 100) for i in range(20)]
    for q in sent:
        await publish(quotes=[q])
    await until(lambda: manual_hub.stats.ticks == 20)
    manual_hub.flush()
    got = await communicator.receive_json_from(timeout=5)
    assert got["quotes"] == {"BTC/USD": wire(sent[-1])}
    manual_hub.flush()  # nothing changed since
    assert await communicator.receive_nothing(timeout=0.2)
    assert (manual_hub.stats.messages, manual_hub.stats.serializations) == (1, 1)


async def test_clients_with_the_same_changes_share_one_serialization(market, manual_hub):
    clients = [await market() for _ in range(3)]
    for c in clients:
        await subscribe(c, ["BTC/USD"])
    q = quote("BTC/USD", 1.0, datetime.now(UTC).timestamp())
    await publish(quotes=[q])
    await until(lambda: manual_hub.stats.ticks == 1)
    manual_hub.flush()
    bodies = [await c.receive_from(timeout=5) for c in clients]
    assert len(set(bodies)) == 1
    assert (manual_hub.stats.messages, manual_hub.stats.serializations) == (3, 1)


async def test_a_disconnected_client_leaves_the_hub(market, manual_hub):
    communicator = await market()
    await subscribe(communicator, ["BTC/USD"])
    assert len(manual_hub._slots) == 1
    await communicator.disconnect()
    await until(lambda: not manual_hub._slots)
    assert manual_hub._by_symbol == {}
