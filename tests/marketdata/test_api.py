"""Market data REST API: instruments, bars (stored / resampled), indicators; validation names the field."""

from __future__ import annotations

import pandas as pd
import pytest

from apps.marketdata.ingest import bars_upsert
from apps.marketdata.services import instrument_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def universe():
    made = {}
    for symbol, name, cls in [("AAPL", "Apple Inc.", "equity"), ("AA", "Alcoa Corp", "equity"),
                              ("AAL", "American Airlines Group", "equity"), ("MSFT", "Microsoft Corp", "equity"),
                              ("BTCUSD", "Bitcoin", "crypto")]:
        made[symbol] = instrument_create(symbol=symbol, name=name, asset_class=cls)
    return made


@pytest.fixture
def client(firm_a, api_client_for):
    return api_client_for(firm_a.member("analyst"), scopes=("read",))


def put_bars(instrument, timeframe, rows):
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    bars_upsert(instrument_id=instrument.pk, timeframe=timeframe, bars=frame)


# 2024-03-08 (EST): 09:30 ET = 14:30Z
MINUTES = [
    ("2024-03-08T14:30Z", 10, 11, 9, 10.5, 100, 10.25, 5),
    ("2024-03-08T15:29Z", 10.5, 12, 10, 11, 300, 11.0, 7),
    ("2024-03-08T15:30Z", 11, 11.5, 10.75, 11.25, 200, 11.5, 3),
]


# --- instruments ----------------------------------------------------------------------------------


def test_instrument_search_ranks_symbol_prefix_first_and_paginates(client, universe):
    body = client.get("/api/v1/instruments/", {"q": "aa"}).json()
    assert (body["count"], [r["symbol"] for r in body["results"]]) == (3, ["AA", "AAL", "AAPL"])
    body = client.get("/api/v1/instruments/", {"q": "corp"}).json()
    assert [r["symbol"] for r in body["results"]] == ["AA", "MSFT"]
    page = client.get("/api/v1/instruments/", {"page_size": 2}).json()
    assert (page["count"], [r["symbol"] for r in page["results"]], page["previous"]) == (
        5, ["AA", "AAL"], None)
    assert page["next"] == "http://testserver/api/v1/instruments/?page=2&page_size=2"
    crypto = client.get("/api/v1/instruments/", {"asset_class": "crypto"}).json()
    assert [r["symbol"] for r in crypto["results"]] == ["BTCUSD"]
    bad = client.get("/api/v1/instruments/", {"asset_class": "bond"})
    assert (bad.status_code, list(bad.json()["error"]["fields"])) == (400, ["asset_class"])


def test_instrument_detail_and_unknown_symbol_is_404(client, universe):
    response = client.get("/api/v1/instruments/aapl/")
    assert response.status_code == 200
    assert response.json() == {
        "id": universe["AAPL"].pk, "symbol": "AAPL", "name": "Apple Inc.", "asset_class": "equity",
        "exchange": universe["AAPL"].exchange, "currency": "USD", "tick_size": "0.0100000000",
        "lot_size": "1.00000000", "fractionable": False, "shortable": False, "tradable": True, "active": True,
        "underlying": None, "expiry": None, "strike": None, "right": "", "multiplier": None, "occ_symbol": "",
    }
    missing = client.get("/api/v1/instruments/NOPE/")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")


def test_ambiguous_symbol_needs_asset_class(client, universe):
    instrument_create(symbol="AAPL", asset_class="crypto", name="Apple token")
    response = client.get("/api/v1/instruments/AAPL/")
    assert (response.status_code, list(response.json()["error"]["fields"])) == (400, ["asset_class"])
    assert client.get("/api/v1/instruments/AAPL/", {"asset_class": "crypto"}).json()["name"] == "Apple token"


def test_market_data_needs_the_read_scope(firm_a, api_client_for, universe):
    no_read = api_client_for(firm_a.member("trader"), scopes=("trade",))
    assert no_read.get("/api/v1/instruments/").status_code == 403


# --- bars -----------------------------------------------------------------------------------------


def test_stored_bars_as_json_and_csv(client, universe):
    put_bars(universe["AAPL"], "1m", MINUTES)
    params = {"symbol": "aapl", "timeframe": "1m", "start": "2024-03-08", "end": "2024-03-08T15:30:00Z"}
    body = client.get("/api/v1/bars/", params).json()
    assert body == {
        "symbol": "AAPL", "timeframe": "1m", "source": "stored", "count": 2, "next": None,
        "bars": [
            {"ts": "2024-03-08T14:30:00Z", "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0,
             "vwap": 10.25, "trade_count": 5},
            {"ts": "2024-03-08T15:29:00Z", "open": 10.5, "high": 12.0, "low": 10.0, "close": 11.0, "volume": 300.0,
             "vwap": 11.0, "trade_count": 7},
        ],
    }
    response = client.get("/api/v1/bars/", {**params, "format": "csv"})
    assert (response.status_code, response["Content-Type"], response["X-Bars-Source"]) == (200, "text/csv", "stored")
    assert response.content.decode() == (
        "ts,open,high,low,close,volume,vwap,trade_count\r\n"
        "2024-03-08T14:30:00Z,10.0,11.0,9.0,10.5,100.0,10.25,5\r\n"
        "2024-03-08T15:29:00Z,10.5,12.0,10.0,11.0,300.0,11.0,7\r\n"
    )
    assert response.get("Link") is None


def test_coarser_timeframe_is_resampled_from_1m_when_not_stored(client, universe):
    put_bars(universe["AAPL"], "1m", MINUTES)
    params = {"symbol": "AAPL", "timeframe": "1h", "start": "2024-03-08", "end": "2024-03-09"}
    body = client.get("/api/v1/bars/", params).json()
    assert (body["source"], body["count"]) == ("resampled", 2)
    assert body["bars"] == [
        {"ts": "2024-03-08T14:30:00Z", "open": 10.0, "high": 12.0, "low": 9.0, "close": 11.0, "volume": 400.0,
         "vwap": 10.8125, "trade_count": 12},
        {"ts": "2024-03-08T15:30:00Z", "open": 11.0, "high": 11.5, "low": 10.75, "close": 11.25, "volume": 200.0,
         "vwap": 11.5, "trade_count": 3},
    ]
    daily = client.get("/api/v1/bars/", {**params, "timeframe": "1d"}).json()
    assert daily["bars"] == [
        {"ts": "2024-03-08T05:00:00Z", "open": 10.0, "high": 12.0, "low": 9.0, "close": 11.25, "volume": 600.0,
         "vwap": 6625 / 600, "trade_count": 15},
    ]
    # Once 1h bars are stored in the range, they are served as they are.
    put_bars(universe["AAPL"], "1h", [("2024-03-08T14:00Z", 1, 2, 1, 2, 5, None, None)])
    stored = client.get("/api/v1/bars/", params).json()
    assert (stored["source"], stored["bars"]) == ("stored", [
        {"ts": "2024-03-08T14:00:00Z", "open": 1.0, "high": 2.0, "low": 1.0, "close": 2.0, "volume": 5.0,
         "vwap": None, "trade_count": None}])


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"symbol": "NOPE"}, "symbol", "Unknown symbol."),
        ({"symbol": ""}, "symbol", "This field is required."),
        ({"timeframe": "2h"}, "timeframe", "Unknown timeframe; known: 1m, 5m, 15m, 1h, 1d."),
        ({"start": "2024-03-09", "end": "2024-03-08"}, "start", "start must be before end."),
        ({"start": "yesterday"}, "start", "Use YYYY-MM-DD (midnight UTC) or an ISO 8601 date-time with a UTC offset."),
        ({"end": "2024-03-08T10:00:00"}, "end",
         "Use YYYY-MM-DD (midnight UTC) or an ISO 8601 date-time with a UTC offset."),
        ({"format": "xml"}, "format", "Use json or csv."),
        ({"limit": "0"}, "limit", "Must be a whole number from 1 to 50,000 for format=json."),
        ({"limit": "50001"}, "limit", "Must be a whole number from 1 to 50,000 for format=json."),
        ({"limit": "ten"}, "limit", "Must be a whole number from 1 to 50,000 for format=json."),
        ({"limit": "600001", "format": "csv"}, "limit", "Must be a whole number from 1 to 600,000 for format=csv."),
    ],
)
def test_bar_validation_names_the_field(client, universe, params, field, message):
    base = {"symbol": "AAPL", "timeframe": "1m", "start": "2024-03-08", "end": "2024-03-09"}
    response = client.get("/api/v1/bars/", {**base, **params})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: [message]}


def test_a_long_range_is_paginated_with_a_next_link_that_resumes_at_the_first_bar_not_returned(client, universe):
    # Any range may be asked for (a year of 1m bars is ~98k rows); each response holds at most `limit` bars.
    put_bars(universe["AAPL"], "1m", MINUTES)
    base = {"symbol": "AAPL", "timeframe": "1m", "start": "2023-01-01", "end": "2025-01-01", "limit": "2"}
    first = client.get("/api/v1/bars/", base).json()
    assert ([b["ts"] for b in first["bars"]], first["count"]) == (["2024-03-08T14:30:00Z", "2024-03-08T15:29:00Z"], 2)
    assert first["next"] == ("http://testserver/api/v1/bars/?symbol=AAPL&timeframe=1m&start=2024-03-08T15:30:00Z"
                             "&end=2025-01-01&limit=2")
    second = client.get(first["next"]).json()
    assert ([b["ts"] for b in second["bars"]], second["next"]) == (["2024-03-08T15:30:00Z"], None)
    # CSV: the same pages, the next one in a Link header.
    csv_page = client.get("/api/v1/bars/", {**base, "format": "csv"})
    assert csv_page.content.decode().count("\r\n") == 3  # header + 2 bars
    assert csv_page["Link"] == ('<http://testserver/api/v1/bars/?symbol=AAPL&timeframe=1m&'
                                'start=2024-03-08T15:30:00Z&end=2025-01-01&limit=2&format=csv>; rel="next"')


def test_resampled_pages_resume_at_the_next_bucket(client, universe):
    put_bars(universe["AAPL"], "1m", MINUTES)
    params = {"symbol": "AAPL", "timeframe": "1h", "start": "2024-03-08", "end": "2024-03-09", "limit": "1"}
    first = client.get("/api/v1/bars/", params).json()
    assert (first["source"], [b["ts"] for b in first["bars"]]) == ("resampled", ["2024-03-08T14:30:00Z"])
    second = client.get(first["next"]).json()
    assert [(b["ts"], b["volume"]) for b in second["bars"]] == [("2024-03-08T15:30:00Z", 200.0)]
    assert second["next"] is None


def test_a_resample_reading_too_many_minutes_is_refused_naming_end(client, universe, monkeypatch):
    from apps.marketdata import selectors

    put_bars(universe["AAPL"], "1m", MINUTES)
    monkeypatch.setattr(selectors, "MAX_SOURCE_ROWS", 2)
    response = client.get("/api/v1/bars/", {"symbol": "AAPL", "timeframe": "1h", "start": "2024-03-08",
                                            "end": "2024-03-09"})
    assert (response.status_code, list(response.json()["error"]["fields"])) == (400, ["end"])


def test_indicators_keep_the_fifty_thousand_bar_range_cap(client, universe):
    base = {"symbol": "AAPL", "timeframe": "1m", "start": "2024-01-01T00:00:00Z", "name": "SMA"}
    assert client.get("/api/v1/indicators/", {**base, "end": "2024-02-04T17:20:00Z"}).status_code == 200
    response = client.get("/api/v1/indicators/", {**base, "end": "2024-02-04T17:21:00Z"})
    assert (response.status_code, list(response.json()["error"]["fields"])) == (400, ["end"])


# --- indicators -----------------------------------------------------------------------------------


def test_indicator_aligned_with_timestamps_nan_as_null(client, universe):
    put_bars(universe["AAPL"], "1m", MINUTES)
    params = {"symbol": "AAPL", "timeframe": "1m", "start": "2024-03-08", "end": "2024-03-09", "name": "sma",
              "timeperiod": "2"}
    body = client.get("/api/v1/indicators/", params).json()
    assert body == {
        "symbol": "AAPL", "timeframe": "1m", "name": "SMA", "params": {"timeperiod": 2}, "source": "stored",
        "ts": ["2024-03-08T14:30:00Z", "2024-03-08T15:29:00Z", "2024-03-08T15:30:00Z"],
        "outputs": {"value": [None, 10.75, 11.125]},
    }
    bb = client.get("/api/v1/indicators/", {**params, "name": "BBANDS", "timeperiod": "3", "nbdevup": "1"}).json()
    assert list(bb["outputs"]) == ["upper", "middle", "lower"]
    assert bb["outputs"]["middle"] == [None, None, pytest.approx(32.75 / 3, abs=1e-12)]
    std = (((10.5 - 32.75 / 3) ** 2 + (11 - 32.75 / 3) ** 2 + (11.25 - 32.75 / 3) ** 2) / 3) ** 0.5
    assert bb["outputs"]["upper"] == [None, None, pytest.approx(32.75 / 3 + std, abs=1e-9)]
    assert bb["outputs"]["lower"] == [None, None, pytest.approx(32.75 / 3 - 2 * std, abs=1e-9)]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"name": "NOPE"}, "name"),
        ({"name": "SMA", "window": "3"}, "window"),
        ({"name": "SMA", "timeperiod": "abc"}, "timeperiod"),
        ({"name": "SMA", "timeperiod": "1"}, "timeperiod"),
        ({"name": "SMA", "symbol": "NOPE"}, "symbol"),
    ],
)
def test_indicator_validation_names_the_field(client, universe, extra, field):
    base = {"symbol": "AAPL", "timeframe": "1m", "start": "2024-03-08", "end": "2024-03-09"}
    response = client.get("/api/v1/indicators/", {**base, **extra})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_indicator_catalog(client):
    body = client.get("/api/v1/indicators/catalog/").json()
    sma = next(entry for entry in body if entry["name"] == "SMA")
    assert sma == {"name": "SMA", "group": sma["group"], "description": sma["description"], "inputs": ["close"],
                   "params": {"timeperiod": {"default": 30, "minimum": 2, "type": "int"}}, "outputs": ["value"]}
    assert [e["name"] for e in body] == sorted(e["name"] for e in body)


def test_bar_values_read_back_exactly_from_json_and_csv(client, universe):
    import csv
    import io

    put_bars(universe["BTCUSD"], "1m", [
        ("2024-03-08T14:30Z", 0.0000000001, 0.0000000002, 0.0000000001, 0.0000000002, 123456789012345.5, None, None),
        ("2024-03-08T14:31Z", 65432.12345678, 65433, 65431.5, 65432.1, 0.00000001, 65432.3, 0),
    ])
    params = {"symbol": "BTCUSD", "timeframe": "1m", "start": "2024-03-08", "end": "2024-03-09"}
    expected = [
        {"ts": "2024-03-08T14:30:00Z", "open": 1e-10, "high": 2e-10, "low": 1e-10, "close": 2e-10,
         "volume": 123456789012346.0, "vwap": None, "trade_count": None},
        {"ts": "2024-03-08T14:31:00Z", "open": 65432.12345678, "high": 65433.0, "low": 65431.5, "close": 65432.1,
         "volume": 1e-08, "vwap": 65432.3, "trade_count": 0},
    ]
    assert client.get("/api/v1/bars/", params).json()["bars"] == expected
    text = client.get("/api/v1/bars/", {**params, "format": "csv"}).content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [{k: (None if v == "" else v if k == "ts" else int(v) if k == "trade_count" else float(v))
             for k, v in row.items()} for row in rows] == expected
