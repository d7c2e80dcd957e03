"""ASGI app for bench/ws_fanout.py only: production /ws/market/ plus a bare group_send consumer.

``/ws/bench-group/`` is the baseline the issue measures against: every socket joins one
channel-layer group and the publisher does one ``group_send`` per tick (no auth, no conflation).
It exists only here, never in octopus.routing.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench._settings")
get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from apps.core.ws import websocket_stack  # noqa: E402
from apps.marketdata.consumers import MarketConsumer  # noqa: E402

GROUP = "bench.ticks"


class BareGroupConsumer(AsyncWebsocketConsumer):
    groups = [GROUP]

    async def bench_tick(self, message):
        await self.send(text_data=message["text"])


async def ready(scope, receive, send):
    """Plain HTTP 200 for the bench's readiness probe."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter({
    "http": ready,
    "websocket": AllowedHostsOriginValidator(websocket_stack(URLRouter([
        path("ws/market/", MarketConsumer.as_asgi()),
        path("ws/bench-group/", BareGroupConsumer.as_asgi()),
    ]))),
})
