"""WebSocket clients for bench/ws_fanout.py, run as their own process (no Django).

``python -m bench._ws_clients URL N MODE OUT`` (token in BENCH_TOKEN): opens N sockets,
authenticates with the Bearer header, subscribes to BENCH (mode ``market``) or just listens (mode
``group``), prints ``READY <n>``, records (message text, receive time) until a ``STOP`` line on
stdin, then parses the records into (tick seq, receive time) pairs, writes them as JSON to OUT and
prints ``DONE``. The receive loop only stores text and a timestamp, so the clients' own CPU stays
out of the latency as far as possible; compression is off (BENCH_WS_DEFLATE=1 offers
permessage-deflate as browsers do, which costs both sides CPU per message).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

SYMBOL = "BENCH"


async def client(url: str, mode: str, token: str, records: list, sockets: list, connected: list) -> None:
    deflate = os.environ.get("BENCH_WS_DEFLATE") == "1"
    async with connect(url, additional_headers=[("Authorization", f"Bearer {token}")], origin="http://127.0.0.1",
                       open_timeout=120, max_queue=None, ping_interval=None,
                       compression="deflate" if deflate else None) as ws:
        sockets.append(ws)
        if mode == "market":
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello", hello
            await ws.send(json.dumps({"type": "subscribe", "symbols": [SYMBOL]}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            await ws.recv()  # the snapshot
        connected.append(1)
        append, clock = records.append, time.time
        try:
            async for text in ws:
                append((text, clock()))
        except ConnectionClosed:
            pass


def parse(mode: str, records: list) -> list:
    out = []
    for text, at in records:
        body = json.loads(text)
        if mode == "market":
            quote = body.get("quotes", {}).get(SYMBOL)
            if quote is not None:
                out.append((int(quote["l"]), at))
        else:
            out.append((body["seq"], at))
    return out


async def main(url: str, n: int, mode: str, out: str) -> None:
    token = os.environ["BENCH_TOKEN"]
    records: list[list] = [[] for _ in range(n)]
    sockets: list = []
    connected: list[int] = []
    gate = asyncio.Semaphore(25)

    async def one(i: int) -> None:
        async with gate:
            task = asyncio.create_task(client(url, mode, token, records[i], sockets, connected))
            while len(sockets) <= i and not task.done():
                await asyncio.sleep(0.01)
        await task

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    while len(connected) < n:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            print(f"FAILED {failed[0].exception()!r}", flush=True)
            raise SystemExit(1)
        await asyncio.sleep(0.1)
    print(f"READY {len(connected)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    with open(out, "w") as fh:
        json.dump([parse(mode, r) for r in records], fh)
    print("DONE", flush=True)


if __name__ == "__main__":
    url, n, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    asyncio.run(main(url, n, mode, out))
