"""The Alpaca provider against recorded Alpaca payloads (HTTP via `responses`, WebSocket via a local
msgpack server): bars, pagination, errors, backfills, the stream runner and the connection API."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection as db
from django.test import override_settings

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.tenancy import firm_scope, unscoped
from apps.marketdata.models import AlpacaConnection, Backfill, BackfillStatus
from apps.marketdata.provider_services import alpaca_connection_set, backfill_run
from apps.marketdata.providers.alpaca import AlpacaProvider, AlpacaTickMapper
from apps.marketdata.providers.base import LiveBar, ProviderAuthError, ProviderError
from apps.marketdata.quotes import QuoteIn, quote_get
from apps.marketdata.services import instrument_create
from apps.marketdata.stream import StreamRunner
from apps.marketdata.tasks import backfill_run_task
from tests.marketdata.alpaca_fakes import (
    CRYPTO_BARS,
    GOOD_KEY,
    GOOD_SECRET,
    STOCK_BARS,
    FakeAlpacaStream,
    bar,
    bar_msg,
    page,
    quote_msg,
)

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # NYSE open (09:30 New York)
END = datetime(2024, 1, 2, 14, 35, tzinfo=UTC)
AAPL_BARS = [
    bar("2024-01-02T14:30:00Z", 187.15, 188.44, 186.9, 188.0, 1_000_000, 9000, 187.7),
    bar("2024-01-02T14:31:00Z", 188.0, 188.2, 187.5, 187.6, 250_000, 2100, 187.81),
]
AAPL_PAGE2 = [bar("2024-01-02T14:32:00Z", 187.6, 187.9, 187.4, 187.85, 180_500, 1500, 187.66)]
BTC_BARS = [
    bar("2024-01-02T00:00:00Z", 44_180.0, 44_250.5, 44_150.1, 44_200.25, 1.23456789, 42, 44_201.1),
    bar("2024-01-02T00:01:00Z", 44_200.25, 44_210.0, 44_190.0, 44_195.5, 0.5, 7, 44_199.0),
]


def provider(**kwargs) -> AlpacaProvider:
    return AlpacaProvider(key_id=GOOD_KEY, secret=GOOD_SECRET, retry_wait=0, **kwargs)


def query(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


@pytest.fixture
def instruments(db):
    return {"AAPL": instrument_create(symbol="AAPL", asset_class="equity", exchange="NASDAQ"),
            "BTC/USD": instrument_create(symbol="BTC/USD", asset_class="crypto")}


@pytest.fixture
def conn(firm_a):
    with firm_scope(firm_a.firm.pk):
        return alpaca_connection_set(firm_id=firm_a.firm.pk, key_id=GOOD_KEY, secret=GOOD_SECRET,
                                     actor=Actor.for_user(firm_a.member("owner").user))


def make_backfill(firm, symbols, start=START, end=END, timeframe="1m") -> Backfill:
    with firm_scope(firm.pk):
        return Backfill.objects.create(firm=firm, symbols=symbols, timeframe=timeframe, start=start, end=end)


def bar_rows(instrument) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute("SELECT ts, open, high, low, close, volume, vwap, trade_count FROM marketdata_bar "
                    "WHERE instrument_id = %s ORDER BY ts", [instrument.pk])
        return [(r[0], *(float(x) if x is not None else None for x in r[1:7]), r[7]) for r in cur.fetchall()]


# --- historical bars ------------------------------------------------------------------------------


@responses.activate
def test_stock_bars_request_and_frame():
    responses.get(STOCK_BARS, json=page("AAPL", AAPL_BARS))
    frame = provider(data_feed="sip").bars("AAPL", "1m", START, END)
    call = responses.calls[0]
    assert query(call) == {"symbols": "AAPL", "timeframe": "1Min", "start": "2024-01-02T14:30:00+00:00",
                           "end": "2024-01-02T14:35:00+00:00", "feed": "sip", "adjustment": "raw", "limit": "10000"}
    assert call.request.headers["APCA-API-KEY-ID"] == GOOD_KEY
    assert call.request.headers["APCA-API-SECRET-KEY"] == GOOD_SECRET
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]" and str(frame["trade_count"].dtype) == "Int64"
    assert frame.astype({"trade_count": "int64"}).to_dict("records") == [
        {"ts": datetime(2024, 1, 2, 14, 30, tzinfo=UTC), "open": 187.15, "high": 188.44, "low": 186.9,
         "close": 188.0, "volume": 1_000_000.0, "vwap": 187.7, "trade_count": 9000},
        {"ts": datetime(2024, 1, 2, 14, 31, tzinfo=UTC), "open": 188.0, "high": 188.2, "low": 187.5,
         "close": 187.6, "volume": 250_000.0, "vwap": 187.81, "trade_count": 2100},
    ]


@responses.activate
def test_pagination_follows_next_page_token():
    responses.get(STOCK_BARS, json=page("AAPL", AAPL_BARS, token="QUFQTHwyMDI0"))
    responses.get(STOCK_BARS, json=page("AAPL", AAPL_PAGE2))
    frame = provider().bars("AAPL", "1m", START, END)
    assert len(responses.calls) == 2
    assert "page_token" not in query(responses.calls[0])
    assert query(responses.calls[1])["page_token"] == "QUFQTHwyMDI0"
    assert [t.minute for t in frame["ts"]] == [30, 31, 32]
    assert frame["close"].tolist() == [188.0, 187.6, 187.85]


@responses.activate
def test_crypto_bars_at_v1beta3_with_fractional_volume():
    responses.get(CRYPTO_BARS, json=page("BTC/USD", BTC_BARS))
    frame = provider().bars("BTC/USD", "1m", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 2, 0, 5, tzinfo=UTC))
    q = query(responses.calls[0])
    assert (q["symbols"], q["timeframe"]) == ("BTC/USD", "1Min")
    assert "feed" not in q
    assert frame["volume"].tolist() == [1.23456789, 0.5]
    assert frame["open"].tolist() == [44_180.0, 44_200.25]


@responses.activate
def test_empty_result_is_an_empty_frame():
    responses.get(STOCK_BARS, json={"bars": {}, "next_page_token": None})
    frame = provider().bars("AAPL", "1m", START, END)
    assert frame.empty and list(frame.columns)[0] == "ts"


@responses.activate
def test_429_is_retried_then_succeeds():
    responses.get(STOCK_BARS, status=429, json={"message": "too many requests."})
    responses.get(STOCK_BARS, json=page("AAPL", AAPL_BARS))
    frame = provider().bars("AAPL", "1m", START, END)
    assert [c.response.status_code for c in responses.calls] == [429, 200]
    assert len(frame) == 2


@responses.activate
def test_429_until_retries_run_out_is_a_clear_error():
    responses.get(STOCK_BARS, status=429, json={"message": "too many requests."})
    with pytest.raises(ProviderError) as caught:
        provider(retry_attempts=2).bars("AAPL", "1m", START, END)
    assert len(responses.calls) == 3  # the first try and two retries
    assert caught.value.message == ("Alpaca kept answering 429 (rate limited) after 2 retries; "
                                    "try again later or narrow the request.")


@pytest.mark.parametrize(("status", "body"), [(401, {"message": "unauthorized."}), (403, {"message": "forbidden."})])
@responses.activate
def test_refused_keys_are_an_auth_error(status, body):
    responses.get(STOCK_BARS, status=status, json=body)
    with pytest.raises(ProviderAuthError) as caught:
        provider().bars("AAPL", "1m", START, END)
    assert caught.value.message == (f"Alpaca refused the keys ({status}: {body['message']}). Check the key id and "
                                    "secret, and that they are live-data keys.")


@responses.activate
def test_an_inconsistent_bar_is_refused():
    bad = [bar("2024-01-02T14:30:00Z", 187.15, 186.0, 186.9, 188.0, 100)]  # high below low
    responses.get(STOCK_BARS, json=page("AAPL", bad))
    with pytest.raises(ProviderError, match=r"invalid 1m bar for AAPL .*low 186.9 is above high 186"):
        provider().bars("AAPL", "1m", START, END)


# --- backfills --------------------------------------------------------------------------------------


def register_pages():
    responses.reset()
    responses.get(STOCK_BARS, json=page("AAPL", AAPL_BARS, token="p2"))
    responses.get(STOCK_BARS, json=page("AAPL", AAPL_PAGE2))
    responses.get(CRYPTO_BARS, json=page("BTC/USD", BTC_BARS))


@responses.activate
def test_backfill_writes_stocks_and_crypto_and_is_idempotent(firm_a, instruments, conn):
    register_pages()
    first = make_backfill(firm_a.firm, ["AAPL", "BTC/USD"], start=datetime(2024, 1, 2, tzinfo=UTC))
    with firm_scope(firm_a.firm.pk):
        done = backfill_run(backfill_id=first.pk, provider=provider())
    assert (done.status, done.symbols_done, done.rows_inserted, done.rows_updated, done.error) == (
        BackfillStatus.SUCCEEDED, 2, 5, 0, "")
    aapl = bar_rows(instruments["AAPL"])
    assert aapl[0] == (datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 187.15, 188.44, 186.9, 188.0, 1_000_000.0, 187.7, 9000)
    assert len(aapl) == 3
    assert bar_rows(instruments["BTC/USD"])[0][5] == 1.23456789

    register_pages()  # Alpaca answers the same again
    second = make_backfill(firm_a.firm, ["AAPL", "BTC/USD"], start=datetime(2024, 1, 2, tzinfo=UTC))
    with firm_scope(firm_a.firm.pk):
        again = backfill_run(backfill_id=second.pk, provider=provider())
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 5)
    assert bar_rows(instruments["AAPL"]) == aapl


@responses.activate
def test_backfill_task_with_bad_keys_fails_clearly_and_writes_nothing(firm_a, instruments, settings):
    with firm_scope(firm_a.firm.pk):
        alpaca_connection_set(firm_id=firm_a.firm.pk, key_id="AKBADKEY", secret="wrong-secret-0123456789",
                              actor=Actor.for_user(firm_a.member("owner").user))
    responses.get(STOCK_BARS, status=403, json={"message": "forbidden."})
    backfill = make_backfill(firm_a.firm, ["AAPL"])
    settings.ALPACA_URL_OVERRIDES = {}
    result = backfill_run_task(firm_a.firm.pk, backfill.pk)  # the Celery task, run in this process
    assert result["status"] == "failed"
    with firm_scope(firm_a.firm.pk):
        backfill.refresh_from_db()
        conn = AlpacaConnection.objects.get()
    message = "Alpaca refused the keys (403: forbidden.). Check the key id and secret, and that they are live-data keys."
    assert backfill.error == f"AAPL: {message}"
    assert conn.last_error == message and conn.last_error_at is not None
    assert bar_rows(instruments["AAPL"]) == []
    # A redelivered task changes nothing and asks Alpaca nothing.
    assert backfill_run_task(firm_a.firm.pk, backfill.pk)["status"] == "failed"
    assert len(responses.calls) == 1


@responses.activate
def test_a_failure_on_a_later_page_writes_nothing_of_that_symbol(firm_a, instruments, conn):
    responses.get(CRYPTO_BARS, json=page("BTC/USD", BTC_BARS))
    responses.get(STOCK_BARS, json=page("AAPL", AAPL_BARS, token="p2"))
    responses.get(STOCK_BARS, status=500, json={"message": "internal server error"})
    backfill = make_backfill(firm_a.firm, ["BTC/USD", "AAPL"], start=datetime(2024, 1, 2, tzinfo=UTC))
    with firm_scope(firm_a.firm.pk):
        done = backfill_run(backfill_id=backfill.pk, provider=provider())
    assert (done.status, done.symbols_done, done.error) == (
        BackfillStatus.FAILED, 1, "AAPL: Alpaca answered 500: internal server error")
    assert len(bar_rows(instruments["BTC/USD"])) == 2  # the completed symbol stays
    assert bar_rows(instruments["AAPL"]) == []


# --- the live stream ---------------------------------------------------------------------------------

STOCK_PATH, CRYPTO_PATH = "/v2/iex", "/v1beta3/crypto/us"
SCRIPT = {
    STOCK_PATH: [
        [quote_msg("AAPL", 187.5, 187.52, 3, 5, "2024-01-02T14:30:59.123456Z")],
        [bar_msg("AAPL", "2024-01-02T14:30:00Z", 187.15, 188.44, 186.9, 188.0, 1000, n=9, vw=187.7)],
        [quote_msg("AAPL", 188.01, 188.03, 2, 1, "2024-01-02T14:31:00.5Z")],
    ],
    CRYPTO_PATH: [
        [quote_msg("BTC/USD", 44_190.1, 44_195.9, 0.25, 0.5, "2024-01-02T14:31:00Z", crypto=True),
         bar_msg("BTC/USD", "2024-01-02T14:30:00Z", 44_180, 44_250.5, 44_150.1, 44_200.25, 1.5)],
    ],
}


def stream_urls(server: FakeAlpacaStream) -> dict:
    return {"stock_stream_url": server.url(STOCK_PATH), "crypto_stream_url": server.url(CRYPTO_PATH)}


def test_tick_mapper_maps_alpaca_messages():
    mapper = AlpacaTickMapper({"AAPL": "NASDAQ"})
    q = mapper.quote(quote_msg("AAPL", 187.5, 187.52, 3, 5, "2024-01-02T14:30:59.25Z"))
    assert q == QuoteIn(symbol="AAPL", exchange="NASDAQ", bid=187.5, ask=187.52, last=187.51, bid_size=3.0,
                        ask_size=5.0, ts=datetime(2024, 1, 2, 14, 30, 59, 250000, tzinfo=UTC).timestamp())
    b = mapper.bar(bar_msg("AAPL", "2024-01-02T14:30:00Z", 187.15, 188.44, 186.9, 188.0, 1000, n=9, vw=187.7))
    assert b == LiveBar(symbol="AAPL", timeframe="1m", ts=datetime(2024, 1, 2, 14, 30, tzinfo=UTC), open=187.15,
                        high=188.44, low=186.9, close=188.0, volume=1000.0, vwap=187.7, trade_count=9, final=True)
    assert mapper.quote(quote_msg("AAPL", 1.0, 1.2, 1, 1, "2024-01-02T14:31:00Z")).last == 188.0  # last bar close
    assert mapper.bar({"T": "b", "S": "AAPL", "o": 2, "h": 1, "l": 1, "c": 1, "v": 1, "t": "2024-01-02T14:30:00Z"}) is None
    assert mapper.quote({"T": "q", "S": "AAPL"}) is None
    crypto = mapper.quote(quote_msg("BTC/USD", 10, 12, 1, 1, "2024-01-02T14:31:00Z", crypto=True))
    assert crypto.exchange == "CRYPTO"


def test_stream_runner_writes_quotes_bars_and_publishes(firm_a, instruments, django_capture_on_commit_callbacks):
    published = []
    give_up = time.monotonic() + 30  # a safety net against a hang, not a timing assertion
    with FakeAlpacaStream(SCRIPT) as server:
        runner = StreamRunner(provider=provider(**stream_urls(server)), flush_interval=0.05,
                              instruments={"AAPL": instruments["AAPL"].pk, "BTC/USD": instruments["BTC/USD"].pk},
                              publish=lambda quotes, bars: published.append((list(quotes), list(bars))))
        with django_capture_on_commit_callbacks(execute=True):
            stats = runner.run(until=lambda: runner.stats.received >= 5 or time.monotonic() > give_up)
    auths = [msg for _, msg in server.received if msg.get("action") == "auth"]
    assert auths == [{"action": "auth", "key": GOOD_KEY, "secret": GOOD_SECRET}] * 2
    subs = {path: msg for path, msg in server.received if msg.get("action") == "subscribe"}
    assert subs[STOCK_PATH]["quotes"] == ["AAPL"] and subs[STOCK_PATH]["bars"] == ["AAPL"]
    assert subs[CRYPTO_PATH]["quotes"] == ["BTC/USD"]
    assert (stats.received, stats.bars) == (5, 2)

    aapl = quote_get("AAPL", now=datetime(2024, 1, 2, 14, 31, 10, tzinfo=UTC).timestamp())
    assert (aapl.bid, aapl.ask, aapl.last, aapl.bid_size, aapl.ask_size) == (188.01, 188.03, 188.0, 2.0, 1.0)
    assert aapl.ts == datetime(2024, 1, 2, 14, 31, 0, 500000, tzinfo=UTC)
    assert aapl.exchange == "NYSE"
    btc = quote_get("BTC/USD")
    assert (btc.bid, btc.ask, btc.exchange) == (44_190.1, 44_195.9, "CRYPTO")
    assert bar_rows(instruments["AAPL"]) == [
        (datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 187.15, 188.44, 186.9, 188.0, 1000.0, 187.7, 9)]
    assert len(bar_rows(instruments["BTC/USD"])) == 1
    ticks = {(b.symbol, b.timeframe, b.ts, b.close, b.final) for _, bars in published for b in bars}
    assert ticks == {("AAPL", "1m", datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 188.0, True),
                     ("BTC/USD", "1m", datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 44_200.25, True)}


def test_stream_auth_failure_is_one_clear_error_not_a_reconnect_loop(db):
    bad = AlpacaProvider(key_id="AKBAD", secret="nope-nope-nope", **{})
    with FakeAlpacaStream(SCRIPT) as server:
        bad.stock_stream_url = server.url(STOCK_PATH)
        with pytest.raises(ProviderAuthError) as caught:
            bad.stream(["AAPL"], lambda q: None, lambda b: None)
    assert caught.value.message == "Alpaca refused the stream's authentication: auth failed"
    assert server.connections == 1


def test_alpaca_stream_command(firm_a, instruments, conn, django_capture_on_commit_callbacks, capsys):
    with FakeAlpacaStream(SCRIPT) as server:
        urls = {"stock_stream": server.url(STOCK_PATH), "crypto_stream": server.url(CRYPTO_PATH)}
        with override_settings(ALPACA_URL_OVERRIDES=urls), django_capture_on_commit_callbacks(execute=True):
            call_command("alpaca_stream", firm=firm_a.firm.pk, symbols="AAPL,BTC/USD", seconds=3)
    out = capsys.readouterr().out
    assert "streaming 2 symbol(s) for firm" in out
    assert quote_get("BTC/USD").bid == 44_190.1
    assert len(bar_rows(instruments["AAPL"])) == 1
    with firm_scope(firm_a.firm.pk):
        assert AlpacaConnection.objects.get().last_ok_at is not None


def test_alpaca_stream_command_with_refused_keys(firm_a, instruments):
    with firm_scope(firm_a.firm.pk):
        alpaca_connection_set(firm_id=firm_a.firm.pk, key_id="AKBAD", secret="bad-secret-0123456789",
                              actor=Actor.for_user(firm_a.member("owner").user))
    with FakeAlpacaStream(SCRIPT) as server:
        with override_settings(ALPACA_URL_OVERRIDES={"stock_stream": server.url(STOCK_PATH)}):
            with pytest.raises(CommandError, match="^Alpaca refused the stream's authentication: auth failed$"):
                call_command("alpaca_stream", firm=firm_a.firm.pk, symbols="AAPL")
    assert server.connections == 1
    with firm_scope(firm_a.firm.pk):
        assert AlpacaConnection.objects.get().last_error == "Alpaca refused the stream's authentication: auth failed"


def test_alpaca_stream_command_refuses_unknown_symbols_and_missing_connection(firm_a, firm_b, instruments, conn):
    with pytest.raises(CommandError, match=r"^unknown symbol\(s\): NOPE$"):
        call_command("alpaca_stream", firm=firm_a.firm.pk, symbols="AAPL,NOPE")
    with pytest.raises(CommandError, match="has no Alpaca data connection"):
        call_command("alpaca_stream", firm=firm_b.firm.pk, symbols="AAPL")


# --- the connection and backfill API -------------------------------------------------------------

URL = "/api/v1/data-connections/alpaca/"
BODY = {"key_id": GOOD_KEY, "secret": GOOD_SECRET, "data_feed": "sip"}


def test_put_get_delete_connection_never_reveals_the_secret(firm_a, api_client_for):
    client = api_client_for(firm_a.member("admin"))
    assert client.get(URL).status_code == 404
    put = client.put(URL, BODY, format="json")
    assert put.status_code == 200, put.content
    assert GOOD_SECRET not in put.content.decode() and GOOD_SECRET[:-4] not in put.content.decode()
    got = client.get(URL).json()
    assert {k: got[k] for k in ("key_id", "secret", "data_feed", "crypto_location", "created_by", "last_error")} == {
        "key_id": GOOD_KEY, "secret": "\u2022" * 8 + "WXYZ", "data_feed": "sip", "crypto_location": "us",
        "created_by": "admin@alpha.example.com", "last_error": ""}
    with unscoped():
        events = list(AuditEvent.objects.unscoped().filter(firm=firm_a.firm, action__startswith="alpaca_connection"))
    assert [e.action for e in events] == ["alpaca_connection.created"]
    assert GOOD_SECRET[:-4] not in json.dumps([e.before for e in events] + [e.after for e in events])

    assert client.put(URL, {**BODY, "data_feed": "iex"}, format="json").json()["data_feed"] == "iex"
    assert client.delete(URL).status_code == 204
    assert client.get(URL).status_code == 404
    with unscoped():
        actions = list(AuditEvent.objects.unscoped().filter(firm=firm_a.firm, action__startswith="alpaca_connection")
                       .order_by("id").values_list("action", flat=True))
    assert actions == ["alpaca_connection.created", "alpaca_connection.updated", "alpaca_connection.deleted"]


@pytest.mark.parametrize(("body", "field"), [
    ({**BODY, "data_feed": "otc"}, "data_feed"),
    ({**BODY, "extra": 1}, "extra"),
    ({"key_id": GOOD_KEY}, "secret"),
    ({**BODY, "key_id": "has space"}, "key_id"),
])
def test_bad_connection_input_is_a_400_naming_the_field(firm_a, api_client_for, body, field):
    response = api_client_for(firm_a.member("owner")).put(URL, body, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    with firm_scope(firm_a.firm.pk):
        assert not AlpacaConnection.objects.exists()


@pytest.mark.parametrize(("role", "scopes"), [("trader", ("read", "trade", "admin")), ("analyst", ("read",)),
                                              ("owner", ("read", "trade"))])
def test_connection_is_owner_admin_and_admin_scope_only(firm_a, conn, api_client_for, role, scopes):
    client = api_client_for(firm_a.member(role), scopes=scopes)
    assert client.get(URL).status_code == 403
    assert client.put(URL, BODY, format="json").status_code == 403
    assert client.delete(URL).status_code == 403


def test_connections_are_per_firm(firm_a, firm_b, conn, api_client_for):
    client_b = api_client_for(firm_b.member("owner"))
    assert client_b.get(URL).status_code == 404
    assert client_b.delete(URL).status_code == 404
    with firm_scope(firm_a.firm.pk):
        assert AlpacaConnection.objects.get().key_id == GOOD_KEY


def test_post_backfill_queues_after_commit_and_reads_back(firm_a, firm_b, instruments, conn, api_client_for,
                                                          django_capture_on_commit_callbacks):
    client = api_client_for(firm_a.member("owner"))
    body = {"symbols": ["aapl", "BTC/USD"], "timeframe": "1m", "start": "2024-01-02T14:30:00Z",
            "end": "2024-01-02T14:35:00Z"}
    with mock.patch.object(backfill_run_task, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.post("/api/v1/backfills/", body, format="json")
        assert response.status_code == 201, response.content
        assert not delay.called  # not inside the transaction
        for callback in callbacks:
            callback()
    data = response.json()
    delay.assert_called_once_with(firm_a.firm.pk, data["id"])
    assert (data["symbols"], data["status"], data["progress"]) == (
        ["AAPL", "BTC/USD"], "queued", {"symbols_done": 0, "symbols_total": 2})
    detail = api_client_for(firm_a.member("analyst"), scopes=("read",)).get(f"/api/v1/backfills/{data['id']}/")
    assert detail.status_code == 200 and detail.json()["id"] == data["id"]
    assert api_client_for(firm_b.member("owner")).get(f"/api/v1/backfills/{data['id']}/").status_code == 404
    assert api_client_for(firm_b.member("owner")).get("/api/v1/backfills/").json()["count"] == 0


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"symbols": ["NOPE"]}, 400, "UNKNOWN_SYMBOL", "symbols"),
    ({"end": "2024-01-02T14:00:00Z"}, 400, "VALIDATION_ERROR", "end"),
    ({"timeframe": "2m"}, 400, "VALIDATION_ERROR", "timeframe"),
    ({"start": "2000-01-01T00:00:00Z"}, 400, "RANGE_TOO_LARGE", "end"),
])
def test_bad_backfill_requests(firm_a, instruments, conn, api_client_for, body, status, code, field):
    full = {"symbols": ["AAPL"], "timeframe": "1m", "start": "2024-01-02T14:30:00Z", "end": "2024-01-02T14:35:00Z",
            **body}
    response = api_client_for(firm_a.member("owner")).post("/api/v1/backfills/", full, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert field in response.json()["error"]["fields"]
    with firm_scope(firm_a.firm.pk):
        assert not Backfill.objects.exists()


def test_backfill_without_connection_or_with_unreadable_secret_is_409(firm_a, instruments, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    body = {"symbols": ["AAPL"], "timeframe": "1m", "start": "2024-01-02T14:30:00Z", "end": "2024-01-02T14:35:00Z"}
    response = client.post("/api/v1/backfills/", body, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "NO_DATA_CONNECTION")
    with override_settings(OCTOPUS_FIELD_KEYS=[Fernet.generate_key().decode()]):
        assert client.put(URL, BODY, format="json").status_code == 200
    # The key that encrypted the secret is gone: a clear 409, not a 500; GET still works.
    response = client.post("/api/v1/backfills/", body, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "CONNECTION_SECRET_UNREADABLE")
    assert "cannot be decrypted" in response.json()["error"]["message"]
    assert client.get(URL).status_code == 200


def test_nan_free_frames_for_missing_vwap():
    raw = page("AAPL", [{"t": "2024-01-02T14:30:00Z", "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 0}])
    with responses.RequestsMock() as mock:
        mock.get(STOCK_BARS, json=raw)
        frame = provider().bars("AAPL", "1m", START, END)
    assert math.isnan(frame["vwap"].iloc[0]) and frame["trade_count"].isna().iloc[0]


def test_stock_daily_bars_use_new_york_midnight():
    daily = [bar("2024-01-02T05:00:00Z", 187.15, 188.44, 183.89, 185.64, 82_488_674, 1_000_000, 185.9)]
    with responses.RequestsMock() as mock:
        mock.get(STOCK_BARS, json=page("AAPL", daily))
        frame = provider().bars("AAPL", "1d", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))
        assert query(mock.calls[0])["timeframe"] == "1Day"
    assert frame["ts"].tolist() == [datetime(2024, 1, 2, 5, tzinfo=UTC)]
