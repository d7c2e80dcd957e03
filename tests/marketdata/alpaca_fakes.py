"""Alpaca on the wire, recorded: REST bar pages and a local msgpack WebSocket server.

Payloads follow Alpaca's market-data API exactly: ``GET /v2/stocks/bars`` and
``GET /v1beta3/crypto/us/bars`` answer ``{"bars": {SYMBOL: [{"t","o","h","l","c","v","n","vw"}]},
"next_page_token": ...}``; errors are ``{"message": ...}``. The stream sends msgpack arrays:
``[{"T":"success","msg":"connected"}]``, then after the ``auth`` action
``[{"T":"success","msg":"authenticated"}]`` or ``[{"T":"error","code":402,"msg":"auth failed"}]``,
after ``subscribe`` ``[{"T":"subscription",...}]``, then quotes ``{"T":"q",...}`` and bars
``{"T":"b",...}`` with ``t`` as a msgpack timestamp.
"""

from __future__ import annotations

from datetime import datetime

import msgpack

from tests.local_ws import LocalWebSocketServer

DATA = "https://data.alpaca.markets"
STOCK_BARS = f"{DATA}/v2/stocks/bars"
CRYPTO_BARS = f"{DATA}/v1beta3/crypto/us/bars"
GOOD_KEY, GOOD_SECRET = "AKGOODKEY0000001", "goodsecret0123456789abcdefghijklmnopWXYZ"


def bar(t: str, o: float, h: float, low: float, c: float, v: float, n: int = 10, vw: float | None = None) -> dict:
    return {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw if vw is not None else (h + low) / 2}


def page(symbol: str, bars: list[dict], token: str | None = None) -> dict:
    return {"bars": {symbol: bars} if bars else {}, "next_page_token": token}


def ts(text: str) -> msgpack.Timestamp:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return msgpack.Timestamp.from_unix_nano(int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000)


def quote_msg(symbol: str, bid: float, ask: float, bid_size: float, ask_size: float, t: str, crypto=False) -> dict:
    msg = {"T": "q", "S": symbol, "bp": bid, "bs": bid_size, "ap": ask, "as": ask_size, "t": ts(t)}
    if not crypto:
        msg.update({"bx": "V", "ax": "V", "c": ["R"], "z": "C"})
    return msg


def bar_msg(symbol: str, t: str, o, h, low, c, v, n=10, vw=None, kind="b") -> dict:
    return {"T": kind, "S": symbol, "o": o, "h": h, "l": low, "c": c, "v": v, "t": ts(t), "n": n,
            "vw": vw if vw is not None else (h + low) / 2}


class FakeAlpacaStream(LocalWebSocketServer):
    """A real WebSocket server on 127.0.0.1 speaking Alpaca's market-data stream protocol.

    ``script[path]`` lists the data frames (each a list of messages) sent after the subscription.
    ``received`` records every message a client sent (decoded), ``connections`` counts handshakes.
    """

    def __init__(self, script: dict[str, list[list[dict]]], *, good_key: str = GOOD_KEY, good_secret: str = GOOD_SECRET):
        super().__init__()
        self.script = script
        self.good = (good_key, good_secret)
        self.received: list[tuple[str, dict]] = []
        self.connections = 0

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def _handler(self, ws) -> None:
        path = ws.request.path
        self.connections += 1
        await ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
        auth = msgpack.unpackb(await ws.recv())
        self.received.append((path, auth))
        if auth.get("action") != "auth" or (auth.get("key"), auth.get("secret")) != self.good:
            await ws.send(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await ws.wait_closed()
            return
        await ws.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
        sub = msgpack.unpackb(await ws.recv())
        self.received.append((path, sub))
        ack = {"T": "subscription", "trades": [], "quotes": sub.get("quotes", []), "bars": sub.get("bars", []),
               "updatedBars": sub.get("updatedBars", []), "dailyBars": [], "statuses": [], "lulds": [],
               "corrections": [], "cancelErrors": []}
        await ws.send(msgpack.packb([ack]))
        for frame in self.script.get(path, []):
            await ws.send(msgpack.packb(frame, datetime=False))
        await ws.wait_closed()
