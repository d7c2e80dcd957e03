"""Alpaca's ``trade_updates``: the parser against recorded messages for every event, and the stream client
against a real local WebSocket server speaking Alpaca's trading-stream protocol (JSON in binary frames).
No network, no database."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alpaca.trading.models import TradeUpdate as AlpacaPyTradeUpdate

from apps.orders.brokers.alpaca_stream import (
    MalformedTradeUpdate,
    TradeUpdatesStream,
    decode_frame,
    parse_trade_update,
)
from apps.orders.core import Execution
from tests.local_ws import LocalWebSocketServer
from tests.orders import alpaca_payloads as ap

DROP = object()  # in a script: cut the connection (no close handshake)
AT_PARTIAL = datetime(2024, 1, 2, 14, 31, 5, 123456, tzinfo=UTC)
AT_FILL = datetime(2024, 1, 2, 14, 31, 6, 500000, tzinfo=UTC)


# --- the parser ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ap.EVENTS)
def test_recorded_messages_parse_with_alpaca_py(event):
    message = {"fill": ap.fill_msg(), "partial_fill": ap.partial_fill_msg()}.get(event) or ap.trade_update(event)
    assert AlpacaPyTradeUpdate(**message["data"]).event == event


@pytest.mark.parametrize("event", [e for e in ap.EVENTS if e not in ("fill", "partial_fill")])
def test_every_non_fill_event(event):
    update = parse_trade_update(ap.trade_update(event))
    assert (update.event, update.order.status) == (event, ap.EVENT_STATUS[event])
    assert update.order.broker_order_id == ap.ORDER_ID and update.order.client_order_id == ap.COID
    assert update.at == AT_PARTIAL
    assert update.execution is None and update.position_qty is None


def test_partial_fill_carries_this_fill_not_the_cumulative_qty():
    update = parse_trade_update(ap.partial_fill_msg())
    assert update.event == "partial_fill" and update.order.status == "partially_filled"
    assert update.execution == Execution(exec_id=f"{ap.ORDER_ID}:4", order_id=ap.ORDER_ID, qty=Decimal("4"),
                                         price=Decimal("187.1"), at=AT_PARTIAL)
    assert update.position_qty == Decimal("4")


def test_fill_after_partial_fill():
    update = parse_trade_update(ap.fill_msg())
    assert (update.event, update.order.status, update.order.filled_qty) == ("fill", "filled", Decimal("10"))
    assert update.order.filled_avg_price == Decimal("187.124")
    assert update.execution == Execution(exec_id=f"{ap.ORDER_ID}:10", order_id=ap.ORDER_ID, qty=Decimal("6"),
                                         price=Decimal("187.14"), at=AT_FILL)
    assert update.position_qty == Decimal("10") and update.at == AT_FILL


def test_the_key_of_a_fill_is_the_order_and_its_cumulative_qty_with_or_without_execution_id():
    """The FILL activities that recover a stream gap carry no execution_id: both sources key a fill alike."""
    message = ap.fill_msg()
    del message["data"]["execution_id"]
    first, again = parse_trade_update(message), parse_trade_update(ap.clone(message))
    assert first.execution.exec_id == again.execution.exec_id == f"{ap.ORDER_ID}:10"
    assert parse_trade_update(ap.fill_msg()).execution.exec_id == f"{ap.ORDER_ID}:10"


def test_the_data_object_alone_is_accepted():
    assert parse_trade_update(ap.partial_fill_msg()["data"]).execution.exec_id == f"{ap.ORDER_ID}:4"


def _without(message: dict, key: str) -> dict:
    del message["data"][key]
    return message


@pytest.mark.parametrize("message", [
    [],
    {"stream": "listening", "data": {"streams": ["trade_updates"]}},
    {"stream": "trade_updates", "data": None},
    _without(ap.trade_update("new"), "event"),
    _without(ap.trade_update("new"), "order"),
    _without(ap.partial_fill_msg(), "price"),
    _without(ap.fill_msg(), "qty"),
    ap.trade_update("fill", ap.order("filled"), price="187.1", qty="abc"),
    ap.trade_update("fill", ap.order("filled"), price="187.1", qty="0"),
    ap.trade_update("new", ap.order("new", id=None)),
    ap.trade_update("new", ap.order("new", updated_at="yesterday")),
    ap.trade_update("new", ap.order("new", updated_at=None), timestamp=None),
])
def test_malformed_messages_raise(message):
    with pytest.raises(MalformedTradeUpdate):
        parse_trade_update(message)


def test_binary_and_text_frames_decode_alike():
    message = ap.partial_fill_msg()
    assert decode_frame(ap.encoded(message)) == decode_frame(json.dumps(message)) == message


# --- a local Alpaca trading stream ---------------------------------------------------------------------------


class FakeTradingStream(LocalWebSocketServer):
    """A real WebSocket server on 127.0.0.1 speaking Alpaca's trading-stream protocol.

    ``sessions[n]`` lists what the n-th connection gets after its ``listening`` acknowledgement: dicts (sent
    as JSON in binary frames, like paper-api), raw ``bytes``/``str`` frames, or ``DROP``. ``received`` holds
    every message clients sent (decoded), ``connections`` counts handshakes.
    """

    def __init__(self, sessions: list[list]):
        super().__init__()
        self.sessions = sessions
        self.received: list[dict] = []
        self.connections = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    async def _handler(self, ws) -> None:
        index = self.connections
        self.connections += 1
        auth = json.loads(await ws.recv())
        self.received.append(auth)
        if auth != {"action": "authenticate", "data": {"key_id": ap.KEY, "secret_key": ap.SECRET}}:
            await ws.send(ap.encoded(ap.UNAUTHORIZED))
            await ws.close()
            return
        await ws.send(ap.encoded(ap.AUTHORIZED))
        listen = json.loads(await ws.recv())
        self.received.append(listen)
        await ws.send(ap.encoded(ap.listening(listen["data"]["streams"])))
        for frame in self.sessions[index] if index < len(self.sessions) else []:
            if frame is DROP:
                ws.transport.abort()
                return
            await ws.send(ap.encoded(frame) if isinstance(frame, dict) else frame)
        await ws.wait_closed()


class Recorder:
    """The callbacks: everything they saw, in order, and where they ran."""

    def __init__(self, fail_first_update: bool = False):
        self.seen: list = []
        self.threads: set[str] = set()
        self.loop_running: list[bool] = []
        self.fail_first_update = fail_first_update

    def _where(self) -> None:
        self.threads.add(threading.current_thread().name)
        try:
            asyncio.get_running_loop()
            self.loop_running.append(True)
        except RuntimeError:
            self.loop_running.append(False)

    def on_update(self, update) -> None:
        self._where()
        self.seen.append(update)
        if self.fail_first_update and len(self.seen) == 1:
            raise RuntimeError("database is down")

    def on_reconnect(self) -> None:
        self._where()
        self.seen.append("reconnect")

    @property
    def updates(self) -> list:
        return [s for s in self.seen if s != "reconnect"]


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def make_stream(server: FakeTradingStream, recorder: Recorder, secret: str = ap.SECRET) -> TradeUpdatesStream:
    return TradeUpdatesStream(ap.KEY, secret, url_override=server.url, on_update=recorder.on_update,
                              on_reconnect=recorder.on_reconnect, min_backoff=0.01, max_backoff=0.05)


def test_stream_urls_paper_and_live():
    assert TradeUpdatesStream("k", "s", on_update=print, on_reconnect=print).url == \
        "wss://paper-api.alpaca.markets/stream"
    assert TradeUpdatesStream("k", "s", paper=False, on_update=print, on_reconnect=print).url == \
        "wss://api.alpaca.markets/stream"


def test_authenticates_listens_and_delivers_partial_fill_then_fill():
    recorder = Recorder()
    with FakeTradingStream([[ap.partial_fill_msg(), ap.fill_msg()]]) as server:
        stream = make_stream(server, recorder)
        stream.start()
        try:
            wait_for(lambda: len(recorder.seen) == 2)
        finally:
            stream.stop()
        assert server.received == [
            {"action": "authenticate", "data": {"key_id": ap.KEY, "secret_key": ap.SECRET}},
            {"action": "listen", "data": {"streams": ["trade_updates"]}},
        ]
    assert [(u.event, u.order.status, u.execution.qty) for u in recorder.seen] == [
        ("partial_fill", "partially_filled", Decimal("4")), ("fill", "filled", Decimal("6"))]
    assert [u.execution.exec_id for u in recorder.seen] == [f"{ap.ORDER_ID}:4", f"{ap.ORDER_ID}:10"]
    assert stream.connections == 1 and server.connections == 1
    assert not stream._thread.is_alive()


def test_callbacks_run_in_one_worker_thread_outside_the_event_loop():
    """So the lead's handler may use the Django ORM (which refuses to run inside an event loop)."""
    recorder = Recorder()
    with FakeTradingStream([[ap.partial_fill_msg(), DROP], [ap.fill_msg()]]) as server:
        stream = make_stream(server, recorder)
        stream.start()
        try:
            wait_for(lambda: len(recorder.seen) == 3)
        finally:
            stream.stop()
    assert recorder.loop_running == [False, False, False]
    assert len(recorder.threads) == 1 and next(iter(recorder.threads)).startswith("alpaca-trade-updates-cb")


def test_forced_disconnect_reconnects_and_calls_on_reconnect_before_new_updates():
    recorder = Recorder()
    with FakeTradingStream([[ap.partial_fill_msg(), DROP], [ap.fill_msg()]]) as server:
        stream = make_stream(server, recorder)
        stream.start()
        try:
            wait_for(lambda: len(recorder.seen) == 3)
        finally:
            stream.stop()
        assert server.connections == 2
        assert [m["action"] for m in server.received] == ["authenticate", "listen", "authenticate", "listen"]
    assert [s if s == "reconnect" else s.event for s in recorder.seen] == ["partial_fill", "reconnect", "fill"]
    assert stream.connections == 2


def test_malformed_messages_are_skipped_and_logged(caplog):
    caplog.set_level(logging.WARNING, logger="apps.orders.brokers.alpaca_stream")
    bad_fill = ap.trade_update("fill", ap.order("filled"), price="187.1")  # no qty
    no_order = {"stream": "trade_updates", "data": {"event": "new", "timestamp": "2024-01-02T14:31:05Z"}}
    other = {"stream": "account_updates", "data": {"status": "ACTIVE"}}
    script = [b"\xff\xfe not json", "[1, 2]", bad_fill, no_order, other, json.dumps(ap.partial_fill_msg())]
    recorder = Recorder()
    with FakeTradingStream([script]) as server:
        stream = make_stream(server, recorder)
        stream.start()
        try:
            wait_for(lambda: len(recorder.seen) == 1)
        finally:
            stream.stop()
        assert server.connections == 1  # a bad message is not a reason to reconnect
    assert [u.event for u in recorder.seen] == ["partial_fill"]  # sent as a text frame, read all the same
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreadable frame skipped" in m for m in messages) == 1
    assert sum("malformed update skipped" in m for m in messages) == 2
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 3


def test_a_failing_callback_does_not_stop_the_stream(caplog):
    recorder = Recorder(fail_first_update=True)
    with FakeTradingStream([[ap.partial_fill_msg(), ap.fill_msg()]]) as server:
        stream = make_stream(server, recorder)
        stream.start()
        try:
            wait_for(lambda: len(recorder.seen) == 2)
        finally:
            stream.stop()
    assert [u.event for u in recorder.seen] == ["partial_fill", "fill"]
    assert any("on_update failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_refused_keys_stop_the_stream_without_leaking_the_secret(caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-do-not-log-0000000000000000"
    recorder = Recorder()
    with FakeTradingStream([]) as server:
        stream = make_stream(server, recorder, secret=wrong)
        stream.start()
        stream._thread.join(5)
        assert not stream._thread.is_alive()
        assert server.connections == 1
    assert stream.auth_error == "access key verification failed"
    assert recorder.seen == []
    assert wrong not in caplog.text and ap.SECRET not in caplog.text and wrong not in repr(stream)


def test_reconnects_with_backoff_until_the_server_is_back():
    recorder = Recorder()
    with FakeTradingStream([[DROP], [DROP], [ap.fill_msg()]]) as server:
        stream = make_stream(server, recorder)
        stream.start()
        try:
            wait_for(lambda: recorder.updates)
        finally:
            stream.stop()
        assert server.connections == 3
    assert recorder.seen[-1].event == "fill"
    assert recorder.seen.count("reconnect") == 2


def test_stop_before_start_and_twice_is_harmless():
    stream = TradeUpdatesStream(ap.KEY, ap.SECRET, url_override="ws://127.0.0.1:9/stream", on_update=print,
                                on_reconnect=print)
    stream.stop()
    stream.start()
    stream.stop()
    stream.stop()
    assert not stream._thread.is_alive()
