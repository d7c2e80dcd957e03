"""The firm event stream at /ws/events/.

Protocol (JSON text frames):

- The socket is accepted, then authenticated: session cookie (browser), ``Authorization: Bearer``
  handshake header, or a first message ``{"type": "auth", "token": "..."}`` within
  ``auth_timeout`` seconds. Failure closes with 4401 (unauthenticated) or 4403 (forbidden).
- On success the socket joins its own firm's group only and receives
  ``{"type": "hello", "firm": <id>, "last_seq": <n>}``.
- Events arrive as ``{"type": "event", "kind", "firm", "seq", "event_id", "at", "payload"}``;
  ``{"type": "seq", ...}`` advances the sequence for events this member's role may not see.
  A client that sees a gap in ``seq`` resyncs from the REST API; duplicates share an ``event_id``.
- Client messages: ``ping`` -> ``pong``; ``subscribe`` to ``{"firm": id, "stream": "events"}`` or
  ``{"group": "firm.<id>.events"}`` -> ``subscribed`` for its own firm, close 4403 for another
  firm; anything else -> ``{"type": "error", "code": ...}`` (the socket stays open).
- Redis (or the database) unavailable: close 1013 (try again later), never a crash.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from importlib import import_module

import redis.exceptions
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import InterfaceError, OperationalError

from apps.core import tenancy, ws
from apps.core.events import STREAMS, firm_group, parse_firm_group

log = logging.getLogger(__name__)

_OUTAGE_ERRORS = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, TimeoutError,
    OperationalError, InterfaceError,  # the database, while authenticating
)


class AuthenticatedConsumer(AsyncJsonWebsocketConsumer):
    """A JSON WebSocket consumer that authenticates like /ws/events/ (the module docstring).

    Subclasses implement :meth:`on_authenticated` (the socket now acts for ``self.principal``) and
    :meth:`on_message` (every client message after authentication, a JSON object with a type).
    """

    auth_timeout: float = 10.0  # seconds for a first-message token
    revalidate_every: float = 60.0  # seconds between checks that the token/session/membership still holds
    log_name = "ws"
    invalid_json_code = "INVALID_JSON"

    def _reset_state(self) -> None:
        self.principal: ws.Principal | None = None
        self.firm_id: int | None = None
        self._accepted = False
        self._closed = False
        self._tasks: set[asyncio.Task] = set()

    async def dispatch(self, message):
        # Every handler runs in this socket's firm scope (none before authentication); the
        # contextvar is reset afterwards, so nothing carries over to another socket or message.
        token = tenancy.set_scope(self.firm_id)
        try:
            await super().dispatch(message)
        except _OUTAGE_ERRORS as exc:
            # Close at once; the server's websocket.disconnect then stops the consumer normally.
            await self._unavailable(exc)
        finally:
            tenancy.reset_scope(token)

    async def _unavailable(self, exc: Exception) -> None:
        log.warning("%s: Redis or the database unavailable (%s: %s); closing 1013", self.log_name,
                    type(exc).__name__, exc)
        if not self._closed:
            self._closed = True
            if not self._accepted:
                self._accepted = True
                await self.base_send({"type": "websocket.accept"})
            await self.base_send({"type": "websocket.close", "code": ws.CLOSE_UNAVAILABLE})

    # --- lifecycle

    async def connect(self):
        await self.accept()
        self._accepted = True
        if _token_in_query(self.scope):
            log.warning("%s: refused a token in the URL (use the Authorization header or an auth message)",
                        self.log_name)
            await self._refuse(ws.CLOSE_UNAUTHENTICATED)
            return
        presented = ws.bearer_from_headers(self.scope.get("headers"))
        user = self.scope.get("user")
        if presented is not None:
            result = await database_sync_to_async(ws.authenticate_token)(presented)
        elif user is not None and user.is_authenticated:
            result = await database_sync_to_async(ws.authenticate_session)(user, self.scope.get("session"))
        else:
            self._spawn(self._auth_deadline())
            return
        await self._authenticated(result)

    async def close(self, code=None, reason=None):
        if self._closed:
            return
        self._closed = True
        await super().close(code=code, reason=reason)

    async def _refuse(self, code: int, reason: str = "") -> None:
        if reason:
            log.info("%s: closing %s (%s)", self.log_name, code, reason)
        await self.close(code=code)

    async def _authenticated(self, result: ws.AuthResult) -> None:
        if result.principal is None:
            await self._refuse(result.close_code or ws.CLOSE_UNAUTHENTICATED, result.reason)
            return
        self.principal = result.principal
        self.firm_id = result.principal.firm_id
        await self.on_authenticated()
        self._spawn(self._revalidate_loop())

    async def on_authenticated(self) -> None:
        raise NotImplementedError

    async def on_message(self, kind, content: dict) -> None:
        raise NotImplementedError

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(self.auth_timeout)
        if self.principal is None:
            await self._refuse(ws.CLOSE_UNAUTHENTICATED, "no auth message in time")

    async def _revalidate_loop(self) -> None:
        session_class = import_module(settings.SESSION_ENGINE).SessionStore
        while not self._closed:
            await asyncio.sleep(self.revalidate_every)
            code = await database_sync_to_async(ws.revalidate)(self.principal, session_class)
            if code is not None:
                await self._refuse(code, "credentials no longer valid")
                return

    # --- client messages

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self._error("BINARY_NOT_SUPPORTED", "Send JSON text frames.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self._error(self.invalid_json_code, "The message is not valid JSON.")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        if self.principal is None:
            if kind == "auth" and isinstance(content.get("token"), str):
                result = await database_sync_to_async(ws.authenticate_token)(content["token"])
                await self._authenticated(result)
            else:
                await self._refuse(ws.CLOSE_UNAUTHENTICATED, "first message was not an auth message")
            return
        if not isinstance(content, dict):
            await self._error("INVALID_MESSAGE", "A message is a JSON object with a 'type'.")
        elif kind == "auth":
            await self._error("ALREADY_AUTHENTICATED", "This socket is already authenticated.")
        else:
            await self.on_message(kind, content)

    async def _error(self, code: str, message: str, field: str | None = None, **extra) -> None:
        fields = {field: [message]} if field else {}
        await self.send_json({"type": "error", "error": {"code": code, "message": message, "fields": fields,
                                                         **extra}})


class EventsConsumer(AuthenticatedConsumer):
    log_name = "ws/events"

    async def __call__(self, scope, receive, send):
        self._reset_state()
        self.group: str | None = None
        self._joined = asyncio.Event()
        # As AsyncConsumer.__call__, except that the channel layer is read only once the socket
        # has joined its firm's group: an unauthenticated socket never touches Redis, and closing
        # it does not wait on an in-flight blocking read (measured: up to brpop_timeout, 5 s).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        try:
            await await_many_dispatch([receive, self._channel_receive_when_joined], self.dispatch)
        except StopConsumer:
            pass
        except _OUTAGE_ERRORS as exc:  # the channel layer's receive failed (Redis down)
            await self._unavailable(exc)
        finally:
            self._cancel_tasks()

    async def _channel_receive_when_joined(self):
        await self._joined.wait()
        return await self.channel_receive()

    async def disconnect(self, code):
        self._closed = True
        if self.group:
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except _OUTAGE_ERRORS as exc:
                log.warning("ws/events: group_discard failed: %s", exc)  # the group entry expires on its own

    async def on_authenticated(self) -> None:
        self.group = firm_group(self.firm_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self._joined.set()
        # Joined first, then read: any event with a higher seq reaches this socket.
        last_seq = await self.channel_layer.current_seq(self.firm_id)
        await self.send_json({"type": "hello", "firm": self.firm_id, "last_seq": last_seq})

    # --- client messages

    async def on_message(self, kind, content: dict) -> None:
        if kind == "ping":
            await self.send_json({"type": "pong", "firm": tenancy.current_firm_id()})
        elif kind == "subscribe":
            await self._subscribe(content)
        else:
            await self._error("UNKNOWN_TYPE", f"Unknown message type {kind!r}.", field="type")

    async def _subscribe(self, content: dict) -> None:
        if "group" in content:
            parsed = parse_firm_group(content["group"]) if isinstance(content["group"], str) else None
            if parsed is None:
                await self._error("INVALID_GROUP", "A group reads firm.<id>.<stream>.", field="group")
                return
            firm, stream = parsed
        else:
            firm, stream = content.get("firm", self.firm_id), content.get("stream", "events")
            if isinstance(firm, bool) or not isinstance(firm, int):
                await self._error("INVALID_FIRM", "firm must be an integer id.", field="firm")
                return
        if firm != self.firm_id:
            log.warning("ws/events: firm %s socket asked for firm %s's stream; closing 4403", self.firm_id, firm)
            await self._refuse(ws.CLOSE_FORBIDDEN)
            return
        if stream not in STREAMS:
            await self._error("UNKNOWN_STREAM", f"Unknown stream {stream!r}.", field="stream")
            return
        last_seq = await self.channel_layer.current_seq(self.firm_id)
        await self.send_json({"type": "subscribed", "firm": self.firm_id, "stream": stream, "last_seq": last_seq})

    # --- group messages

    async def firm_event(self, message):
        """An event published by apps.core.events: forward its JSON text as is (serialized once)."""
        if self.principal is None or self._closed or message.get("firm") != self.firm_id:
            return
        roles = message.get("roles")
        if roles is not None and self.principal.role not in roles:
            if message.get("redacted"):
                await self.send(text_data=message["redacted"])
            return
        await self.send(text_data=message["text"])


def _token_in_query(scope) -> bool:
    query = scope.get("query_string", b"").decode("latin-1").lower()
    return any(part.split("=", 1)[0] in {"token", "access_token", "auth"} for part in query.split("&") if part)
