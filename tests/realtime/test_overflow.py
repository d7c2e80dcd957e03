"""Channel-layer overflow is counted (Redis ``<prefix>ws:dropped:<firm>``) and logged, never silent."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from channels.exceptions import ChannelFull
from django.db import transaction

from apps.core.events import OctopusChannelLayer, firm_group, publish_firm_event

pytestmark = pytest.mark.anyio


def overflow_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "apps.core.events" and r.levelno == logging.WARNING]


async def test_the_configured_layer_counts_overflow_and_has_a_deliberate_capacity():
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    assert isinstance(layer, OctopusChannelLayer)
    assert layer.capacity == 1000


async def test_group_send_to_a_full_channel_is_counted_per_firm_and_logged(small_capacity, caplog):
    layer = small_capacity
    assert layer.capacity == 3
    probe = f"probe.{uuid.uuid4().hex}"  # a subscriber that never reads
    await layer.group_add(firm_group(101), probe)
    await layer.group_add(firm_group(202), f"probe.{uuid.uuid4().hex}")
    with caplog.at_level(logging.WARNING, logger="apps.core.events"):
        skipped = [await layer.group_send(firm_group(101), {"type": "firm.event", "firm": 101, "n": n})
                   for n in range(5)]
    assert skipped == [0, 0, 0, 1, 1]
    assert await layer.dropped_count(101) == 2
    assert await layer.dropped_count(202) == 0
    assert await layer.connection(0).get(f"{layer.prefix}ws:dropped:101") == b"2"  # octopus:ws:dropped:<firm> in prod
    messages = overflow_warnings(caplog)
    assert len(messages) == 2
    assert "1 deliveries to group firm.101.events dropped" in messages[0]
    assert "firm 101 total dropped 2" in messages[1]
    # The three that fit are intact and in order.
    assert [(await layer.receive(probe))["n"] for _ in range(3)] == [0, 1, 2]
    await layer.wait_received()


async def test_a_full_process_local_key_counts_every_socket_it_carries(small_capacity):
    layer = small_capacity
    one, two = await layer.new_channel(), await layer.new_channel()  # one Redis key for this process
    for channel in (one, two):
        await layer.group_add(firm_group(303), channel)
    results = [await layer.group_send(firm_group(303), {"type": "firm.event", "firm": 303}) for _ in range(4)]
    assert results == [0, 0, 0, 2]
    assert await layer.dropped_count(303) == 2


async def test_send_to_a_full_channel_is_counted_and_still_raises(small_capacity, caplog):
    layer = small_capacity
    channel = f"probe.{uuid.uuid4().hex}"
    for n in range(3):
        await layer.send(channel, {"type": "x", "firm": 404, "n": n})
    with caplog.at_level(logging.WARNING, logger="apps.core.events"), pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "x", "firm": 404, "n": 3})
    assert await layer.dropped_count(404) == 1
    assert any(f"channel {channel} full" in message for message in overflow_warnings(caplog))


async def test_the_in_process_buffer_dropping_its_oldest_message_is_counted(small_capacity, caplog):
    layer = small_capacity
    buffer = layer.receive_buffer["specific.test!slow-socket"]
    with caplog.at_level(logging.WARNING, logger="apps.core.events"):
        for n in range(5):
            buffer.put_nowait({"type": "firm.event", "firm": 505, "n": n})
        await asyncio.sleep(0.1)  # the counter is incremented by a background task
    assert [buffer.get_nowait()["n"] for _ in range(3)] == [2, 3, 4]
    assert await layer.dropped_count(505) == 2
    assert sum("in-process buffer of specific.test!slow-socket full" in m for m in overflow_warnings(caplog)) == 2


@pytest.mark.django_db(transaction=True)
async def test_published_events_that_overflow_are_counted_for_their_firm(small_capacity, firm_a, firm_b):
    from channels.db import database_sync_to_async

    layer = small_capacity
    a = firm_a.firm.pk
    await layer.group_add(firm_group(a), f"probe.{uuid.uuid4().hex}")

    @database_sync_to_async
    def publish_five():
        for n in range(5):
            with transaction.atomic():
                publish_firm_event(firm_id=a, kind="fill.booked", payload={"n": n})

    await publish_five()
    assert await layer.dropped_count(a) == 2
    assert await layer.dropped_count(firm_b.firm.pk) == 0
    assert await layer.current_seq(a) == 5  # sequence numbers were taken: clients see the gap and resync
