"""publish_firm_event: after commit only, per-firm sequence, serialized once, Redis outages absorbed."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.core import events
from apps.core.events import firm_group, parse_firm_group, publish_firm_event


class Boom(Exception):
    pass


def probe(firm_id: int) -> str:
    """A plain (non process-local) channel in the firm's group, read directly from Redis."""
    name = f"probe.{uuid.uuid4().hex}"
    async_to_sync(get_channel_layer().group_add)(firm_group(firm_id), name)
    return name


def queued(channel: str) -> int:
    layer = get_channel_layer()

    async def _count():
        return await layer.connection(0).zcard(layer.prefix + channel)

    return async_to_sync(_count)()


def take(channel: str, count: int = 1):
    """Receive ``count`` messages in one event loop (channels_redis finishes its in-flight
    cleanup on that loop; a loop per message would see the same message again)."""
    layer = get_channel_layer()

    async def _take():
        messages = [await layer.receive(channel) for _ in range(count)]
        await layer.wait_received()
        return messages

    messages = async_to_sync(_take)()
    return messages[0] if count == 1 else messages


def current_seq(firm_id: int) -> int:
    return async_to_sync(get_channel_layer().current_seq)(firm_id)


def test_group_names_carry_the_firm_id():
    assert firm_group(7) == "firm.7.events"
    assert firm_group(7, stream="events") == "firm.7.events"
    assert parse_firm_group("firm.7.events") == (7, "events")
    assert parse_firm_group("firm.x.events") is None
    assert parse_firm_group("events") is None
    for bad in (0, -1, None, "7", True):
        with pytest.raises(ValueError, match="positive firm id"):
            firm_group(bad)
    with pytest.raises(ValueError, match="unknown stream"):
        firm_group(7, stream="orders-of-everyone")


def test_publish_registers_one_on_commit_callback_and_a_rollback_drops_it(firm_a, django_capture_on_commit_callbacks):
    firm_id = firm_a.firm.pk
    with django_capture_on_commit_callbacks() as committed:
        with transaction.atomic():
            publish_firm_event(firm_id=firm_id, kind="order.accepted", payload={"id": 1})
    assert len(committed) == 1

    with django_capture_on_commit_callbacks() as rolled_back:
        with pytest.raises(Boom):
            with transaction.atomic():
                publish_firm_event(firm_id=firm_id, kind="order.accepted", payload={"id": 2})
                raise Boom
    assert rolled_back == []


def test_bad_payload_fails_inside_the_request_not_after_commit(firm_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(TypeError):
            publish_firm_event(firm_id=firm_a.firm.pk, kind="x", payload={"when": object()})
        with pytest.raises(TypeError, match="payload must be a dict"):
            publish_firm_event(firm_id=firm_a.firm.pk, kind="x", payload=["not", "a", "dict"])
        with pytest.raises(ValueError, match="positive firm id"):
            publish_firm_event(firm_id=None, kind="x", payload={})
    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_inside_the_transaction_and_exactly_one_message_after_commit(firm_a):
    firm_id = firm_a.firm.pk
    channel = probe(firm_id)
    with transaction.atomic():
        publish_firm_event(firm_id=firm_id, kind="order.accepted", payload={"order": 41, "qty": "1.5"})
        assert queued(channel) == 0
        assert current_seq(firm_id) == 0
    assert queued(channel) == 1
    assert current_seq(firm_id) == 1
    message = take(channel)
    assert message["type"] == "firm.event"
    assert message["firm"] == firm_id
    assert message["seq"] == 1
    assert message["roles"] is None
    body = json.loads(message["text"])
    assert uuid.UUID(body.pop("event_id")).version == 4
    assert body.pop("at").endswith("+00:00")
    assert body == {"type": "event", "kind": "order.accepted", "firm": firm_id, "seq": 1,
                    "payload": {"order": 41, "qty": "1.5"}}
    assert queued(channel) == 0


@pytest.mark.django_db(transaction=True)
def test_a_real_rollback_sends_nothing_and_takes_no_sequence_number(firm_a):
    firm_id = firm_a.firm.pk
    channel = probe(firm_id)
    with pytest.raises(Boom):
        with transaction.atomic():
            publish_firm_event(firm_id=firm_id, kind="order.accepted", payload={"order": 1})
            raise Boom
    assert queued(channel) == 0
    assert current_seq(firm_id) == 0


@pytest.mark.django_db(transaction=True)
def test_sequence_is_per_firm_monotonic_and_event_ids_are_unique(firm_a, firm_b):
    a, b = firm_a.firm.pk, firm_b.firm.pk
    channel_a, channel_b = probe(a), probe(b)
    for n in range(3):
        with transaction.atomic():
            publish_firm_event(firm_id=a, kind="fill.booked", payload={"n": n})
    with transaction.atomic():
        publish_firm_event(firm_id=b, kind="fill.booked", payload={"n": 0})
    bodies_a = [json.loads(message["text"]) for message in take(channel_a, 3)]
    body_b = json.loads(take(channel_b)["text"])
    assert [body["seq"] for body in bodies_a] == [1, 2, 3]
    assert [body["payload"]["n"] for body in bodies_a] == [0, 1, 2]
    assert len({body["event_id"] for body in bodies_a} | {body_b["event_id"]}) == 4
    assert (body_b["seq"], body_b["firm"]) == (1, b)
    assert (current_seq(a), current_seq(b)) == (3, 1)
    assert queued(channel_a) == 0 and queued(channel_b) == 0  # nothing of A went to B or back


@pytest.mark.django_db(transaction=True)
def test_unsequenced_events_take_no_sequence_number(firm_a):
    firm_id = firm_a.firm.pk
    channel = probe(firm_id)
    with transaction.atomic():
        publish_firm_event(firm_id=firm_id, kind="quote", payload={"bid": "1"}, sequenced=False)
    body = json.loads(take(channel)["text"])
    assert body["seq"] is None
    assert body["kind"] == "quote"
    assert current_seq(firm_id) == 0


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_event_goes_out_at_once(firm_a):
    channel = probe(firm_a.firm.pk)
    publish_firm_event(firm_id=firm_a.firm.pk, kind="alert.raised", payload={})
    assert queued(channel) == 1


@pytest.mark.django_db(transaction=True)
def test_audit_record_publishes_to_the_firm_stream_after_commit_for_audit_roles(firm_a):
    from apps.accounts.models import AUDIT_ROLES

    firm_id = firm_a.firm.pk
    owner = firm_a.member("owner").user
    channel = probe(firm_id)
    with transaction.atomic():
        event = audit_record(firm_id=firm_id, action="member.role_changed", actor=Actor.for_user(owner),
                             target_type="membership", target_id=12, before={"role": "analyst"},
                             after={"role": "trader"})
        assert queued(channel) == 0
    message = take(channel)
    assert message["roles"] == sorted(str(role) for role in AUDIT_ROLES)
    body = json.loads(message["text"])
    assert body["kind"] == "audit"
    assert body["seq"] == 1
    assert body["payload"] == {"action": "member.role_changed", "target_type": "membership", "target_id": "12",
                               "actor": owner.email, "audit_seq": event.seq}
    assert json.loads(message["redacted"]) == {"type": "seq", "firm": firm_id, "seq": 1, "event_id": body["event_id"]}


@pytest.mark.django_db(transaction=True)
def test_platform_audit_events_publish_nothing(firm_a):
    channel = probe(firm_a.firm.pk)
    with transaction.atomic():
        audit_record(firm_id=None, action="auth.login_failed", actor=Actor.system("anonymous"))
    assert queued(channel) == 0


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_audit_record_publishes_nothing(firm_a):
    channel = probe(firm_a.firm.pk)
    with pytest.raises(Boom):
        with transaction.atomic():
            audit_record(firm_id=firm_a.firm.pk, action="token.created", actor=Actor.system())
            raise Boom
    assert queued(channel) == 0
    assert current_seq(firm_a.firm.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_redis_down_after_commit_is_logged_and_counted_never_raised(firm_a, redis_down, caplog):
    firm_id = firm_a.firm.pk
    before = events.publish_failures()
    with caplog.at_level(logging.ERROR, logger="apps.core.events"):
        with transaction.atomic():
            audit_record(firm_id=firm_id, action="token.created", actor=Actor.system())
            publish_firm_event(firm_id=firm_id, kind="order.accepted", payload={"order": 1})
    # The change itself committed; both events failed to publish, were counted and logged.
    from apps.core.tenancy import firm_scope

    with firm_scope(firm_id):
        assert AuditEvent.objects.filter(action="token.created").count() == 1
    assert events.publish_failures() == before + 2
    failures = [r for r in caplog.records if r.name == "apps.core.events" and r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert f"firm {firm_id}, kind audit" in failures[0].getMessage()
    assert f"firm {firm_id}, kind order.accepted" in failures[1].getMessage()
    assert "ConnectionError" in failures[1].getMessage()
