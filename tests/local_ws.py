"""A real WebSocket server on 127.0.0.1 for tests, serving from a thread of its own (port chosen by the OS).

Subclasses implement ``async def _handler(self, ws)``: the fakes of Alpaca's market-data stream
(tests/marketdata/alpaca_fakes.py) and trading stream (tests/orders/test_alpaca_stream.py) speak their
protocols over it. Use it as a context manager: entering starts it, leaving stops it.
"""

from __future__ import annotations

import asyncio
import threading

from websockets.asyncio.server import serve


class LocalWebSocketServer:
    def __init__(self):
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handler(self, ws) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
