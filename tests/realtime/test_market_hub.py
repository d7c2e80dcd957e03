"""The /ws/market/ hub on its own: slow clients, bar aggregation, seeding, Redis reconnects."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.core.cache import cache

from apps.marketdata.hub import QUOTE, TF_BITS, MarketHub, bucket_bounds
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import Instrument
from apps.marketdata.quotes import QuoteIn
from apps.marketdata.resample import resample
from apps.marketdata.ticks import BarTick, ticks_publish

pytestmark = pytest.mark.anyio

SYMBOLS = ("BTC/USD", "ETH/USD", "SOL/USD")
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # a Saturday: crypto only


class Sink:
    """A client of the hub whose sends can be stalled (a socket whose buffer is full)."""

    def __init__(self, subscriptions: dict[str, int]):
        self.subscriptions = subscriptions
        self.received: list[dict] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.lost = False

    async def send_market(self, text: str) -> None:
        await self.gate.wait()
        self.received.append(json.loads(text))

    async def hub_lost(self) -> None:
        self.lost = True


def quote(symbol: str, last: float, ts: float) -> QuoteIn:
    return QuoteIn(symbol=symbol, exchange="CRYPTO", bid=last - 1, ask=last + 1, last=last, bid_size=1.0,
                   ask_size=1.0, ts=ts)


def minute_bar(minute: datetime, o, h, lo, c, v, final, symbol="BTC/USD") -> BarTick:
    return BarTick(symbol=symbol, timeframe="1m", ts=minute, open=o, high=h, low=lo, close=c, volume=v, final=final)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_stalled_client_keeps_one_bounded_dict_and_gets_the_latest_state_when_it_drains():
    hub = MarketHub(autoflush=False)
    hub._instruments = {s: (i, "CRYPTO") for i, s in enumerate(SYMBOLS)}
    stalled, healthy = Sink(dict.fromkeys(SYMBOLS, QUOTE)), Sink(dict.fromkeys(SYMBOLS, QUOTE))
    hub.register(stalled)
    hub.register(healthy)
    stalled.gate.clear()
    now = T0.timestamp()
    hub.ingest([quote("BTC/USD", 1.0, now)], [])
    hub.flush()
    await settle()
    largest = 0
    for i in range(1, 1001):
        hub.ingest([quote(s, 1.0 + i, now + i) for s in SYMBOLS], [])
        hub.flush()
        await settle()
        largest = max(largest, len(hub.pending_of(stalled)))
    assert largest == 3  # one entry per subscribed symbol, whatever the number of ticks
    assert set(hub.pending_of(stalled)) == set(SYMBOLS)
    assert hub.stats.skipped_busy == 1000
    assert len(healthy.received) == 1001
    assert stalled.received == []
    stalled.gate.set()
    await settle()
    hub.flush()
    await settle()
    assert len(stalled.received) == 2
    first, latest = stalled.received
    assert first["quotes"]["BTC/USD"]["l"] == 1.0
    assert {s: q["l"] for s, q in latest["quotes"].items()} == dict.fromkeys(SYMBOLS, 1001.0)
    assert latest == healthy.received[-1] | {"at": latest["at"]}
    assert hub.pending_of(stalled) == {}


async def test_unsubscribed_parts_are_dropped_from_a_stalled_clients_pending_state():
    hub = MarketHub(autoflush=False)
    client = Sink({"BTC/USD": QUOTE | TF_BITS["1m"], "ETH/USD": QUOTE})
    hub.register(client)
    client.gate.clear()
    hub.ingest([quote("BTC/USD", 1.0, 1.0)], [])
    hub.flush()
    await settle()
    hub.ingest([quote("BTC/USD", 2.0, 2.0), quote("ETH/USD", 2.0, 2.0)],
               [minute_bar(T0, 1, 2, 1, 2, 1, False)])
    hub.flush()
    assert hub.pending_of(client) == {"BTC/USD": QUOTE | TF_BITS["1m"], "ETH/USD": QUOTE}
    client.subscriptions = {"BTC/USD": QUOTE}
    hub.update(client)
    assert hub.pending_of(client) == {"BTC/USD": QUOTE}


async def test_one_minute_ticks_build_the_five_minute_bar_as_resample_does():
    hub = MarketHub(autoflush=False)
    hub._instruments = {"BTC/USD": (1, "CRYPTO")}
    finals = []
    seen = {}
    for m in range(7):
        minute = T0 + timedelta(minutes=m)
        o = 100.0 + m
        # three forming updates (open, high/low so far, last), then the final bar
        hub.ingest([], [minute_bar(minute, o, o + 0.5, o - 0.2, o + 0.1, 10.0, False)])
        hub.ingest([], [minute_bar(minute, o, o + 1.0, o - 0.5, o + 0.3, 20.0, False)])
        final = (o, o + 1.5, o - 0.7, o + 0.4, 30.0 + m)
        hub.ingest([], [minute_bar(minute, *final, True)])
        hub.ingest([], [minute_bar(minute, *final, True)])  # redelivered: not counted twice
        finals.append((minute, *final))
        seen[m] = dict(hub.state["BTC/USD"].bars["5m"])
    frame = pd.DataFrame(finals, columns=["ts", "open", "high", "low", "close", "volume"])
    expected = resample(frame, "5m", exchange="CRYPTO")
    first = expected.iloc[0]
    assert seen[4] == {"t": "2026-11-21T10:00:00+00:00", "o": first.open, "h": first.high, "l": first.low,
                       "c": first.close, "v": first.volume, "final": True}
    assert seen[3]["final"] is False and seen[3]["c"] == 103.4
    second = expected.iloc[1]
    assert seen[6] == {"t": "2026-11-21T10:05:00+00:00", "o": second.open, "h": second.high, "l": second.low,
                       "c": second.close, "v": second.volume, "final": False}


async def test_a_forming_minute_shows_in_the_coarser_bar_before_it_is_final():
    hub = MarketHub(autoflush=False)
    hub._instruments = {"BTC/USD": (1, "CRYPTO")}
    hub.ingest([], [minute_bar(T0, 100, 101, 99, 100.5, 5, True)])
    hub.ingest([], [minute_bar(T0 + timedelta(minutes=1), 100.5, 103, 100.4, 102, 2, False)])
    assert hub.state["BTC/USD"].bars["5m"] == {"t": "2026-11-21T10:00:00+00:00", "o": 100, "h": 103, "l": 99,
                                               "c": 102, "v": 7, "final": False}
    assert hub.state["BTC/USD"].bars["1d"]["t"] == "2026-11-21T00:00:00+00:00"


def test_buckets_are_session_aligned():
    # NYSE, Wednesday 2026-11-18: the session opens 14:30 UTC; hourly buckets start at the open.
    at = datetime(2026, 11, 18, 15, 29, tzinfo=UTC).timestamp()
    assert bucket_bounds("NYSE", at, "1h") == (datetime(2026, 11, 18, 14, 30, tzinfo=UTC).timestamp(),
                                              datetime(2026, 11, 18, 15, 30, tzinfo=UTC).timestamp())
    assert bucket_bounds("NYSE", at, "15m")[0] == datetime(2026, 11, 18, 15, 15, tzinfo=UTC).timestamp()
    # A daily bar is the session, labelled midnight New York, ending at the close.
    assert bucket_bounds("NYSE", at, "1d") == (datetime(2026, 11, 18, 5, 0, tzinfo=UTC).timestamp(),
                                              datetime(2026, 11, 18, 21, 0, tzinfo=UTC).timestamp())
    # Early close (day after Thanksgiving, 13:00 New York): the last hourly bucket is cut short.
    late = datetime(2026, 11, 27, 17, 45, tzinfo=UTC).timestamp()
    assert bucket_bounds("NYSE", late, "1h") == (datetime(2026, 11, 27, 17, 30, tzinfo=UTC).timestamp(),
                                                datetime(2026, 11, 27, 18, 0, tzinfo=UTC).timestamp())
    # Pre-market minutes belong to no bucket (resample drops them too).
    assert bucket_bounds("NYSE", datetime(2026, 11, 18, 13, 0, tzinfo=UTC).timestamp(), "5m") is None
    assert bucket_bounds("CRYPTO", T0.timestamp() + 3599, "1h") == (T0.timestamp(), T0.timestamp() + 3600)


@pytest.mark.django_db(transaction=True)
async def test_a_bucket_joined_midway_is_seeded_from_the_stored_minutes():
    instrument = await database_sync_to_async(Instrument.objects.create)(
        symbol="BTC/USD", asset_class="crypto", exchange="CRYPTO")
    stored = pd.DataFrame({
        "ts": pd.DatetimeIndex([T0 + timedelta(minutes=m) for m in range(3)]),
        "open": [90.0, 91.0, 92.0], "high": [95.0, 96.0, 97.0], "low": [89.0, 80.0, 91.0],
        "close": [91.0, 92.0, 93.0], "volume": [1.0, 2.0, 3.0],
    })
    await database_sync_to_async(bars_upsert)(instrument_id=instrument.pk, timeframe="1m", bars=stored)
    hub = MarketHub(autoflush=False)
    await hub.instruments()
    hub.ingest([], [minute_bar(T0 + timedelta(minutes=3), 93.0, 94.0, 92.5, 93.5, 4.0, False)])
    buckets = hub.state["BTC/USD"].buckets
    await until(lambda: buckets["5m"].seeded and buckets["1h"].seeded)  # each timeframe seeds on its own
    assert hub.state["BTC/USD"].bars["5m"] == {"t": "2026-11-21T10:00:00+00:00", "o": 90.0, "h": 97.0,
                                               "l": 80.0, "c": 93.5, "v": 10.0, "final": False}
    assert hub.state["BTC/USD"].bars["1h"]["o"] == 90.0


@pytest.mark.django_db(transaction=True)
async def test_the_hub_resubscribes_after_losing_redis_and_closes_its_sockets():
    hub = MarketHub(interval=0.01)
    assert await hub.ready(5)
    client = Sink({"BTC/USD": QUOTE})
    hub.register(client)
    raw = cache._cache.get_client(write=True)
    killed = await sync_to_async(raw.client_kill_filter)(_type="pubsub")
    assert killed >= 1
    await until(lambda: client.lost)
    assert hub.stats.reconnects >= 1
    assert await hub.ready(10)
    hub.register(client)  # a reconnecting socket
    await sync_to_async(ticks_publish)(quotes=[quote("BTC/USD", 5.0, T0.timestamp())])
    await until(lambda: client.received)
    assert client.received[-1]["quotes"]["BTC/USD"]["l"] == 5.0
    await hub.stop()
