"""GET /api/v1/quotes/ and selectors.quote_board: Redis quotes + the previous close from stored bars."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from apps.marketdata.ingest import bars_upsert
from apps.marketdata.quotes import QuoteIn, quotes_set
from apps.marketdata.selectors import QUOTE_BOARD_KEYS, quote_board
from apps.marketdata.services import instrument_create

pytestmark = pytest.mark.django_db

FRI_1000_ET = datetime(2024, 3, 8, 15, 0, tzinfo=UTC)  # Friday 10:00 EST, in session
FRI_0800_ET = datetime(2024, 3, 8, 13, 0, tzinfo=UTC)  # Friday 08:00 EST, before the open


def put(instrument, rows):
    frame = pd.DataFrame(rows, columns=["ts", "close"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["open"] = frame["high"] = frame["low"] = frame["close"]
    frame["volume"] = 1.0
    bars_upsert(instrument_id=instrument.pk, timeframe="1m", bars=frame)


def quote(symbol, exchange, last, at: datetime):
    quotes_set([QuoteIn(symbol=symbol, exchange=exchange, bid=last - 0.5, ask=last + 0.5, last=last, bid_size=100,
                        ask_size=200, ts=at.timestamp())])


@pytest.fixture
def market():
    aapl = instrument_create(symbol="AAPL", asset_class="equity", exchange="NASDAQ")
    btc = instrument_create(symbol="BTC/USD", asset_class="crypto")
    msft = instrument_create(symbol="MSFT", asset_class="equity")
    put(aapl, [("2024-03-06T20:59Z", 90.0),  # Wednesday's last minute
               ("2024-03-07T20:58Z", 100.0), ("2024-03-07T20:59Z", 101.0),  # Thursday: close 101
               ("2024-03-08T14:30Z", 105.0)])
    put(btc, [("2024-03-07T14:59Z", 60000.0), ("2024-03-07T15:00Z", 61000.0), ("2024-03-07T15:01Z", 62000.0)])
    return {"AAPL": aapl, "BTC/USD": btc, "MSFT": msft}


def test_quote_board_rows_have_the_contract_keys_and_prev_close_rules(market):
    quote("AAPL", "NASDAQ", 103.0, FRI_1000_ET)
    quote("BTC/USD", "CRYPTO", 63000.0, FRI_1000_ET)
    rows = quote_board(symbols=["btc/usd", "AAPL", "MSFT", "AAPL"], now=FRI_1000_ET.timestamp() + 10)
    assert [tuple(r) for r in rows] == [QUOTE_BOARD_KEYS] * 3
    by = {r["symbol"]: r for r in rows}
    assert [r["symbol"] for r in rows] == ["BTC/USD", "AAPL", "MSFT"]  # order kept, repeats dropped
    assert by["AAPL"] == {
        "symbol": "AAPL", "bid": 102.5, "ask": 103.5, "last": 103.0, "bid_size": 100.0, "ask_size": 200.0,
        "ts": FRI_1000_ET, "stale": False, "prev_close": 101.0, "change": 2.0, "change_pct": pytest.approx(200 / 101),
    }
    # crypto: the 1m bar that opened 24 h before the quote
    assert (by["BTC/USD"]["prev_close"], by["BTC/USD"]["change"]) == (61000.0, 2000.0)
    assert by["MSFT"] == {"symbol": "MSFT", "bid": None, "ask": None, "last": None, "bid_size": None,
                          "ask_size": None, "ts": None, "stale": True, "prev_close": None, "change": None,
                          "change_pct": None}


def test_before_the_open_the_change_is_the_last_sessions(market):
    quote("AAPL", "NASDAQ", 101.0, FRI_0800_ET)  # Thursday's session is the latest started: vs Wednesday's close
    (row,) = quote_board(symbols=["AAPL"], now=FRI_0800_ET.timestamp())
    assert (row["prev_close"], row["change"], row["stale"]) == (90.0, 11.0, True)  # market closed: stale


def test_without_a_cached_quote_the_last_stored_bar_is_shown_stale(market):
    # Sunday, Redis restarted since Friday: no AAPL quote; its last bar (Friday 14:30) is the price,
    # marked stale, and the change is against the session before that bar's (Thursday's close).
    sunday = datetime(2024, 3, 10, 18, 0, tzinfo=UTC)
    (row,) = quote_board(symbols=["AAPL"], now=sunday.timestamp())
    assert row == {"symbol": "AAPL", "bid": None, "ask": None, "last": 105.0, "bid_size": None, "ask_size": None,
                   "ts": datetime(2024, 3, 8, 14, 31, tzinfo=UTC), "stale": True, "prev_close": 101.0,
                   "change": 4.0, "change_pct": pytest.approx(400 / 101)}


def test_api_splits_quoted_and_missing_symbols(market, firm_a, api_client_for):
    quote("AAPL", "NASDAQ", 103.0, FRI_1000_ET)
    client = api_client_for(firm_a.member("analyst"), scopes=("read",))
    response = client.get("/api/v1/quotes/", {"symbols": "aapl, MSFT"})
    assert response.status_code == 200
    body = response.json()
    assert body["missing"] == ["MSFT"]
    assert body["results"] == [{
        "symbol": "AAPL", "bid": 102.5, "ask": 103.5, "last": 103.0, "bid_size": 100.0, "ask_size": 200.0,
        "ts": "2024-03-08T15:00:00Z", "stale": True,  # judged against the real clock: years old
        "prev_close": 101.0, "change": 2.0, "change_pct": pytest.approx(200 / 101),
    }]


@pytest.mark.parametrize("symbols", ["", " , ", "AAPL,NOPE", ",".join(f"S{i}" for i in range(201)), "A" * 40])
def test_api_refusals_name_symbols(market, firm_a, api_client_for, symbols):
    client = api_client_for(firm_a.member("analyst"), scopes=("read",))
    response = client.get("/api/v1/quotes/", {"symbols": symbols})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["symbols"]


def test_api_names_unknown_symbols_and_the_limit(market, firm_a, api_client_for):
    client = api_client_for(firm_a.member("analyst"), scopes=("read",))
    body = client.get("/api/v1/quotes/", {"symbols": "AAPL,NOPE,ZZZ"}).json()
    assert body["error"]["fields"] == {"symbols": ["Unknown symbol(s): NOPE, ZZZ."]}
    body = client.get("/api/v1/quotes/", {"symbols": ",".join(f"S{i}" for i in range(201))}).json()
    assert body["error"]["fields"] == {"symbols": ["At most 200 symbols per request."]}


def test_quote_board_is_a_bounded_number_of_queries(market, django_assert_max_num_queries):
    many = [instrument_create(symbol=f"EQ{i}", asset_class="equity") for i in range(30)]
    for instrument in many:
        quote(instrument.symbol, "NYSE", 10.0, FRI_1000_ET)
    with django_assert_max_num_queries(2):  # instruments + one lateral previous-close query per window
        rows = quote_board(symbols=[i.symbol for i in many], now=FRI_1000_ET.timestamp())
    assert len(rows) == 30
