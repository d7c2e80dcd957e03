"""The firm event stream: publish after commit, per-firm sequence numbers, counted overflow.

``publish_firm_event`` is the one way to push something to a firm's WebSocket clients. It never
sends from inside an open transaction: it registers a ``transaction.on_commit`` callback, so a
rolled-back change publishes nothing. Sequenced events (orders, fills, alerts, audit
notifications) take a per-firm, monotonically increasing ``seq`` from a Redis INCR; every event
carries an ``event_id`` (uuid) for de-duplication. A client that sees a gap (or reconnects)
resyncs from the REST API; ``seq`` is a hint for that, the database stays authoritative.

Each event is serialized to JSON once per publish; consumers forward that text unchanged.

``OctopusChannelLayer`` is the Redis channel layer configured in settings. channels_redis skips
channels that are at capacity without telling anyone; this subclass counts every skipped
delivery in Redis (``<prefix>ws:dropped:<firm>``) and logs a warning, so overflow is never silent.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from functools import partial
from typing import Any

import redis
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from channels_redis.core import BoundedQueue, RedisChannelLayer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

log = logging.getLogger(__name__)

STREAMS = frozenset({"events"})
GROUP_MESSAGE_TYPE = "firm.event"  # handled by EventsConsumer.firm_event
_GROUP_RE = re.compile(r"^firm\.(\d+)\.([a-z][a-z0-9_]*)$")


# --- names --------------------------------------------------------------------------------------


def firm_group(firm_id: int, stream: str = "events") -> str:
    """The channel-layer group of one firm's stream: ``firm.<id>.<stream>``."""
    if isinstance(firm_id, bool) or not isinstance(firm_id, int) or firm_id <= 0:
        raise ValueError(f"firm_group needs a positive firm id, got {firm_id!r}")
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; known: {sorted(STREAMS)}")
    return f"firm.{firm_id}.{stream}"


def parse_firm_group(name: str) -> tuple[int, str] | None:
    """``"firm.7.events"`` -> ``(7, "events")``; anything else -> None."""
    match = _GROUP_RE.match(name or "")
    return (int(match.group(1)), match.group(2)) if match else None


def seq_key(prefix: str, firm_id: int) -> str:
    return f"{prefix}events:seq:{firm_id}"


def dropped_key(prefix: str, firm: int | str) -> str:
    return f"{prefix}ws:dropped:{firm}"


# --- the channel layer ----------------------------------------------------------------------------

# Same semantics as channels_redis's group_send script, but it returns the keys it skipped
# instead of only logging how many at INFO level.
_GROUP_SEND_LUA = """
local skipped = {}
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        table.insert(skipped, KEYS[i])
    end
end
return skipped
"""


class _CountingBuffer(BoundedQueue):
    """The in-process per-channel buffer; channels_redis drops its oldest message when full."""

    def __init__(self, maxsize: int, layer: OctopusChannelLayer, channel: str):
        super().__init__(maxsize)
        self._layer = layer
        self._channel = channel

    def put_nowait(self, item):
        if self.full():
            pending = getattr(self, "_queue", None)  # asyncio.Queue's deque; the oldest is dropped next
            self._layer._buffer_overflow(self._channel, pending[0] if pending else None)
        return super().put_nowait(item)


class _BufferDict(collections.defaultdict):
    def __init__(self, layer: OctopusChannelLayer):
        super().__init__()
        self._layer = layer

    def __missing__(self, channel):
        queue = self[channel] = _CountingBuffer(self._layer.capacity, self._layer, channel)
        return queue


class OctopusChannelLayer(RedisChannelLayer):
    """RedisChannelLayer that counts and logs every message it cannot deliver (never silent),
    and keeps the per-firm sequence counters of the event stream."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.receive_buffer = _BufferDict(self)
        self._blocking_clients: dict[int, redis.Redis] = {}
        self._background: set[asyncio.Task] = set()

    # -- overflow accounting

    async def _count_dropped(self, firm: int | str, count: int) -> int:
        return await self.connection(0).incrby(dropped_key(self.prefix, firm), count)

    async def _count_dropped_quietly(self, firm: int | str, count: int) -> None:
        try:
            await self._count_dropped(firm, count)
        except Exception as exc:  # noqa: BLE001 - the warning is already logged; Redis may be going down
            log.error("channel layer: could not count a dropped message of firm %s: %s", firm, exc)

    async def dropped_count(self, firm: int | str) -> int:
        value = await self.connection(0).get(dropped_key(self.prefix, firm))
        return int(value or 0)

    def _buffer_overflow(self, channel: str, oldest: Any) -> None:
        firm = "unknown"
        if isinstance(oldest, dict) and isinstance(oldest.get("firm"), int):
            firm = oldest["firm"]
        log.warning("channel layer: in-process buffer of %s full (capacity %s); oldest message of firm %s dropped",
                    channel, self.capacity, firm)
        try:
            task = asyncio.get_running_loop().create_task(self._count_dropped_quietly(firm, 1))
        except RuntimeError:
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def send(self, channel, message):
        try:
            await super().send(channel, message)
        except ChannelFull:
            firm = message.get("firm") if isinstance(message.get("firm"), int) else "direct"
            log.warning("channel layer: channel %s full (capacity %s); message dropped", channel,
                        self.get_capacity(channel))
            await self._count_dropped(firm, 1)
            raise

    async def group_send(self, group, message) -> int:
        """Send to every channel of the group; return how many deliveries were skipped (full)."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        await connection.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        channel_names = [x.decode("utf8") for x in await connection.zrange(key, 0, -1)]
        if not channel_names:
            return 0
        conn_to_keys, key_to_message, key_to_capacity = self._map_channel_keys_to_connection(channel_names, message)
        skipped_keys: list[str] = []
        for index, channel_keys in conn_to_keys.items():
            connection = self.connection(index)
            pipe = connection.pipeline()
            for channel_key in channel_keys:
                pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(self.expiry))
            await pipe.execute()
            args = [key_to_message[k] for k in channel_keys]
            args += [key_to_capacity[k] for k in channel_keys]
            args += [time.time(), self.expiry]
            skipped = await connection.eval(_GROUP_SEND_LUA, len(channel_keys), *channel_keys, *args)
            skipped_keys += [k.decode() if isinstance(k, bytes) else k for k in skipped or []]
        firm, dropped = self._overflow(group, channel_names, skipped_keys)
        if dropped:
            self._log_overflow(group, firm, dropped, skipped_keys, await self._count_dropped(firm, dropped))
        return dropped

    def _overflow(self, group: str, channel_names: list[str], skipped_keys: list[str]) -> tuple[int | str, int]:
        """(firm, number of deliveries dropped) for the keys the script skipped."""
        if not skipped_keys:
            return "", 0
        parsed = parse_firm_group(group)
        firm: int | str = parsed[0] if parsed else "other"
        # A process-local key carries every channel of that process in one message.
        per_key = collections.Counter(self.prefix + self.non_local_name(name) for name in channel_names)
        return firm, sum(per_key[k] for k in skipped_keys)

    def _log_overflow(self, group, firm, dropped, skipped_keys, total) -> None:
        log.warning(
            "channel layer overflow: %s deliveries to group %s dropped (channels at capacity %s: %s); "
            "firm %s total dropped %s",
            dropped, group, self.capacity, ", ".join(sorted(skipped_keys)[:5]), firm, total,
        )

    # -- blocking twins for synchronous callers (on_commit in a request thread, Celery tasks):
    #    a persistent thread-safe pool instead of a new event loop and connection per publish.

    def _blocking(self, index: int) -> redis.Redis:
        client = self._blocking_clients.get(index)
        if client is None:
            host = {"socket_timeout": 2, **self.hosts[index]}  # a hung Redis must not hang a request
            if "address" in host:
                client = redis.Redis.from_url(host.pop("address"), **host)
            elif "master_name" in host:
                raise NotImplementedError("blocking publish does not support Sentinel hosts")
            else:
                client = redis.Redis(**host)
            self._blocking_clients[index] = client
        return client

    def group_send_blocking(self, group: str, message: dict) -> int:
        """``group_send`` for synchronous code: same keys, script and accounting."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self._blocking(self.consistent_hash(group))
        connection.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        channel_names = [x.decode("utf8") for x in connection.zrange(key, 0, -1)]
        if not channel_names:
            return 0
        conn_to_keys, key_to_message, key_to_capacity = self._map_channel_keys_to_connection(channel_names, message)
        skipped_keys: list[str] = []
        for index, channel_keys in conn_to_keys.items():
            connection = self._blocking(index)
            pipe = connection.pipeline()
            for channel_key in channel_keys:
                pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(self.expiry))
            pipe.execute()
            args = [key_to_message[k] for k in channel_keys]
            args += [key_to_capacity[k] for k in channel_keys]
            args += [time.time(), self.expiry]
            skipped = connection.eval(_GROUP_SEND_LUA, len(channel_keys), *channel_keys, *args)
            skipped_keys += [k.decode() if isinstance(k, bytes) else k for k in skipped or []]
        firm, dropped = self._overflow(group, channel_names, skipped_keys)
        if dropped:
            total = self._blocking(0).incrby(dropped_key(self.prefix, firm), dropped)
            self._log_overflow(group, firm, dropped, skipped_keys, total)
        return dropped

    def next_seq_blocking(self, firm_id: int) -> int:
        return int(self._blocking(0).incr(seq_key(self.prefix, firm_id)))

    # -- per-firm sequence

    async def next_seq(self, firm_id: int) -> int:
        return int(await self.connection(0).incr(seq_key(self.prefix, firm_id)))

    async def current_seq(self, firm_id: int) -> int:
        value = await self.connection(0).get(seq_key(self.prefix, firm_id))
        return int(value or 0)


# --- publishing -----------------------------------------------------------------------------------

_failures_lock = threading.Lock()
_failures = 0


def publish_failures() -> int:
    """How many committed events this process could not publish (Redis down, ...)."""
    return _failures


def _count_failure() -> None:
    global _failures
    with _failures_lock:
        _failures += 1


def encode_event(*, firm_id: int, kind: str, seq: int | None, event_id: str, at: str, payload_json: str) -> str:
    """The JSON text a client receives; built once per publish."""
    head = json.dumps(
        {"type": "event", "kind": kind, "firm": firm_id, "seq": seq, "event_id": event_id, "at": at},
        separators=(",", ":"),
    )
    return f'{head[:-1]},"payload":{payload_json}}}'


def publish_firm_event(
    *,
    firm_id: int,
    kind: str,
    payload: dict,
    sequenced: bool = True,
    roles: Iterable[str] | None = None,
) -> None:
    """Publish ``payload`` to the firm's event stream once the current transaction commits.

    ``roles`` restricts who sees the content (e.g. audit notifications for AUDIT_ROLES); the
    other members of the firm receive only ``{"type": "seq", ...}`` for a sequenced event, so
    their sequence has no false gap. Outside a transaction the event goes out immediately.
    """
    group = firm_group(firm_id)  # a bad firm id is a programming error: fail inside the request
    if not isinstance(kind, str) or not kind:
        raise ValueError("kind must be a non-empty string")
    if not isinstance(payload, dict):
        raise TypeError("payload must be a dict")
    payload_json = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))  # TypeError here, not later
    event_id = str(uuid.uuid4())
    allowed = sorted({str(role) for role in roles}) if roles is not None else None
    transaction.on_commit(
        partial(_deliver, group=group, firm_id=firm_id, kind=kind, payload_json=payload_json,
                sequenced=sequenced, roles=allowed, event_id=event_id),
        robust=True,
    )


def _deliver(**event) -> None:
    """on_commit callback: never raises, so a committed request never turns into a 500."""
    try:
        _send_event_blocking(get_channel_layer(), **event)
    except Exception as exc:  # noqa: BLE001 - Redis down, layer misconfigured, ...: log and count
        _count_failure()
        log.error("firm event not published (firm %s, kind %s, event %s): %s: %s",
                  event["firm_id"], event["kind"], event["event_id"], type(exc).__name__, exc)


def _group_message(*, firm_id, kind, payload_json, roles, event_id, seq) -> dict[str, Any]:
    at = timezone.now().isoformat()
    message: dict[str, Any] = {
        "type": GROUP_MESSAGE_TYPE,
        "firm": firm_id,
        "kind": kind,  # lets a stream of one kind (/ws/orders/) skip the others without parsing the text
        "seq": seq,
        "roles": roles,
        "text": encode_event(firm_id=firm_id, kind=kind, seq=seq, event_id=event_id, at=at,
                             payload_json=payload_json),
    }
    if roles is not None and seq is not None:
        message["redacted"] = json.dumps(
            {"type": "seq", "firm": firm_id, "seq": seq, "event_id": event_id}, separators=(",", ":")
        )
    return message


def _send_event_blocking(layer: OctopusChannelLayer, *, group, firm_id, kind, payload_json, sequenced, roles,
                         event_id) -> None:
    seq = layer.next_seq_blocking(firm_id) if sequenced else None
    layer.group_send_blocking(group, _group_message(firm_id=firm_id, kind=kind, payload_json=payload_json,
                                                    roles=roles, event_id=event_id, seq=seq))

