import time
from datetime import UTC, datetime

import pytest

from apps.marketdata import quotes
from apps.marketdata.quotes import MAX_AGE_SECONDS, QuoteIn, quote_get, quote_many, quotes_set

# Wednesday 2026-11-18 15:00 UTC = 10:00 New York: NYSE in session. Saturday 2026-11-21: closed.
IN_SESSION = datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()
WEEKEND = datetime(2026, 11, 21, 15, 0, tzinfo=UTC).timestamp()


def q(symbol, exchange, ts, last=100.0):
    return QuoteIn(symbol=symbol, exchange=exchange, bid=last - 0.01, ask=last + 0.01, last=last,
                   bid_size=300.0, ask_size=200.0, ts=ts)


def test_batch_write_and_read_back_exact_values():
    now = time.time()
    assert quotes_set([q("BTC/USD", "CRYPTO", now - 5, 60000.5), q("ETH/USD", "CRYPTO", now - 1, 3000.25)]) == 2
    got = quote_many(["btc/usd", "ETH/USD", "NOPE"], now=now)
    assert sorted(got) == ["BTC/USD", "ETH/USD"]
    btc = got["BTC/USD"]
    assert (btc.bid, btc.ask, btc.last, btc.bid_size, btc.ask_size) == (60000.49, 60000.51, 60000.5, 300.0, 200.0)
    assert btc.ts == datetime.fromtimestamp(now - 5, UTC)
    assert btc.age_seconds == pytest.approx(5.0)
    assert btc.stale is False
    assert quote_get("NOPE") is None


def test_key_is_global_per_symbol_hash():
    quotes_set([q("SPY", "ARCA", IN_SESSION)])
    client = quotes._client()
    key = quotes.quote_key("SPY")
    assert key.endswith("md:quote:SPY")
    assert client.type(key) == b"hash"
    assert client.hget(key, "exchange") == b"ARCA"


def test_stale_by_age():
    now = time.time()
    quotes_set([q("BTC/USD", "CRYPTO", now - MAX_AGE_SECONDS - 1), q("ETH/USD", "CRYPTO", now - MAX_AGE_SECONDS + 1)])
    got = quote_many(["BTC/USD", "ETH/USD"], now=now)
    assert got["BTC/USD"].stale is True
    assert got["ETH/USD"].stale is False


def test_equity_quote_is_live_only_in_session():
    quotes_set([q("SPY", "ARCA", IN_SESSION - 10)])
    assert quote_get("SPY", now=IN_SESSION).stale is False
    # Same age but the exchange is closed (weekend): never presented as live.
    quotes_set([q("SPY", "ARCA", WEEKEND - 10)])
    assert quote_get("SPY", now=WEEKEND).stale is True
    # Crypto trades 24/7: a fresh weekend quote is live.
    quotes_set([q("BTC/USD", "CRYPTO", WEEKEND - 10)])
    assert quote_get("BTC/USD", now=WEEKEND).stale is False


def test_unknown_exchange_is_stale():
    assert quotes.is_stale(ts=IN_SESSION, exchange="MOON", now=IN_SESSION) is True


def test_incomplete_hash_is_not_a_quote():
    quotes._client().hset(quotes.quote_key("AAPL"), mapping={"bid": "1.0"})
    assert quote_get("AAPL") is None
