"""/ws/events/: authentication, origin, firm isolation, protocol errors, outages (targets 32, 40, 45)."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from apps.audit.services import Actor, audit_record
from apps.core import tenancy
from apps.core.consumers import EventsConsumer
from apps.core.events import firm_group, publish_firm_event
from tests.realtime.conftest import ORIGIN

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [ORIGIN, (b"authorization", f"Bearer {token}".encode())]


def cookie(session_id: str, origin=ORIGIN) -> list[tuple[bytes, bytes]]:
    headers = [(b"cookie", f"sessionid={session_id}".encode())]
    return headers if origin is None else [origin, *headers]


async def seq_of(firm_id: int) -> int:
    """The firm's current sequence (token creation and other audited changes take numbers too)."""
    return await get_channel_layer().current_seq(firm_id)


async def hello(firm_id: int) -> dict:
    return {"type": "hello", "firm": firm_id, "last_seq": await seq_of(firm_id)}


async def closed_with(communicator) -> int:
    message = await communicator.receive_output(timeout=2)
    assert message["type"] == "websocket.close", message
    return message["code"]


@database_sync_to_async
def publish(firm_id: int, kind: str = "order.accepted", payload=None, sequenced: bool = True) -> None:
    with transaction.atomic():
        publish_firm_event(firm_id=firm_id, kind=kind, payload=payload or {}, sequenced=sequenced)


# --- authentication -------------------------------------------------------------------------------


async def test_token_in_the_authorization_header_joins_its_firm_and_says_hello(ws, firm_a, make_token):
    token = await database_sync_to_async(make_token)(firm_a.member("trader"), ("read",))
    communicator, connected = await ws(bearer(token))
    assert connected
    assert await communicator.receive_json_from() == await hello(firm_a.firm.pk)


async def test_token_in_the_first_message_authenticates(ws, firm_a, make_token):
    token = await database_sync_to_async(make_token)(firm_a.member("analyst"), ("read",))
    communicator, connected = await ws()
    assert connected
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.send_json_to({"type": "auth", "token": token})
    assert await communicator.receive_json_from() == await hello(firm_a.firm.pk)


async def test_hello_reports_the_current_sequence(ws, firm_a, make_token):
    token = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))  # audited: seq 1
    await publish(firm_a.firm.pk)
    await publish(firm_a.firm.pk)
    communicator, _ = await ws(bearer(token))
    assert await communicator.receive_json_from() == {"type": "hello", "firm": firm_a.firm.pk, "last_seq": 3}


async def test_no_credentials_and_no_auth_message_closes_4401(ws, firm_a, monkeypatch):
    monkeypatch.setattr(EventsConsumer, "auth_timeout", 0.2)
    communicator, connected = await ws()
    assert connected
    assert await closed_with(communicator) == 4401


async def test_a_first_message_that_is_not_auth_closes_4401(ws, firm_a):
    communicator, _ = await ws()
    await communicator.send_json_to({"type": "subscribe", "firm": firm_a.firm.pk})
    assert await closed_with(communicator) == 4401


@pytest.mark.parametrize("presented", ["", "nonsense", "oct_0123456789ab_wrongsecret"])
async def test_an_invalid_token_closes_4401(ws, firm_a, presented):
    communicator, _ = await ws(bearer(presented))
    assert await closed_with(communicator) == 4401
    communicator, _ = await ws()
    await communicator.send_json_to({"type": "auth", "token": presented})
    assert await closed_with(communicator) == 4401


async def test_a_revoked_token_is_refused_in_the_header_and_in_the_first_message(ws, firm_a, make_token):
    from apps.accounts.models import ApiToken
    from apps.accounts.services import token_revoke

    membership = firm_a.member("trader")
    secret = await database_sync_to_async(make_token)(membership, ("read",))

    @database_sync_to_async
    def revoke():
        token = ApiToken.objects.get(firm=membership.firm, membership=membership)
        with transaction.atomic():
            token_revoke(token=token, actor=Actor.for_user(membership.user))

    await revoke()
    communicator, _ = await ws(bearer(secret))
    assert await closed_with(communicator) == 4401
    communicator, _ = await ws()
    await communicator.send_json_to({"type": "auth", "token": secret})
    assert await closed_with(communicator) == 4401


async def test_an_expired_token_is_refused(ws, firm_a, make_token):
    from django.utils import timezone

    from apps.accounts.models import ApiToken

    secret = await database_sync_to_async(make_token)(firm_a.member("trader"), ("read",))
    await database_sync_to_async(
        lambda: ApiToken.objects.filter(firm=firm_a.firm).update(expires_at=timezone.now())
    )()
    communicator, _ = await ws(bearer(secret))
    assert await closed_with(communicator) == 4401


async def test_a_token_without_the_read_scope_is_forbidden(ws, firm_a, make_token):
    secret = await database_sync_to_async(make_token)(firm_a.member("owner"), ("admin",))
    communicator, _ = await ws(bearer(secret))
    assert await closed_with(communicator) == 4403


async def test_a_token_in_the_url_is_refused_even_if_valid(ws, firm_a, make_token):
    secret = await database_sync_to_async(make_token)(firm_a.member("trader"), ("read",))
    communicator, _ = await ws(path=f"/ws/events/?token={secret}")
    assert await closed_with(communicator) == 4401


async def test_a_verified_session_joins_the_sessions_active_firm(ws, firm_a, firm_b, session_cookie_for):
    from tests.factories import MembershipFactory

    trader = firm_a.member("trader")
    # The same user is also an analyst at firm B; the session's active firm decides.
    await database_sync_to_async(MembershipFactory)(firm=firm_b.firm, user=trader.user, role="analyst")
    session_a = await database_sync_to_async(session_cookie_for)(trader)
    communicator, connected = await ws(cookie(session_a))
    assert connected
    assert (await communicator.receive_json_from())["firm"] == firm_a.firm.pk

    session_b = await database_sync_to_async(session_cookie_for)(trader, active_firm_id=firm_b.firm.pk)
    communicator, _ = await ws(cookie(session_b))
    assert await communicator.receive_json_from() == await hello(firm_b.firm.pk)


async def test_a_session_that_still_owes_2fa_is_refused(ws, firm_a, session_cookie_for):
    session = await database_sync_to_async(session_cookie_for)(firm_a.member("trader"), verified=False)
    communicator, connected = await ws(cookie(session))
    assert connected
    assert await closed_with(communicator) == 4401


async def test_a_session_whose_otp_device_belongs_to_someone_else_is_refused(ws, firm_a, session_cookie_for):
    from django.contrib.sessions.backends.db import SessionStore
    from django_otp import DEVICE_ID_SESSION_KEY

    await database_sync_to_async(session_cookie_for)(firm_a.member("owner"))  # owner gets a device
    session_id = await database_sync_to_async(session_cookie_for)(firm_a.member("admin"), verified=False)

    @database_sync_to_async
    def borrow_owners_device():
        from django_otp.plugins.otp_totp.models import TOTPDevice

        session = SessionStore(session_id)
        session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.get(user=firm_a.member("owner").user).persistent_id
        session.save()

    await borrow_owners_device()
    communicator, _ = await ws(cookie(session_id))
    assert await closed_with(communicator) == 4401


async def test_an_analyst_session_needs_no_2fa_under_the_default_policy(ws, firm_a, session_cookie_for):
    session = await database_sync_to_async(session_cookie_for)(firm_a.member("analyst"), verified=False)
    communicator, _ = await ws(cookie(session))
    assert await communicator.receive_json_from() == await hello(firm_a.firm.pk)


# --- origin (target 40) ---------------------------------------------------------------------------


async def test_cross_site_origin_is_refused(ws, firm_a, session_cookie_for):
    session = await database_sync_to_async(session_cookie_for)(firm_a.member("owner"))
    _, connected = await ws(cookie(session, origin=(b"origin", b"https://evil.example")))
    assert connected is False


async def test_a_missing_origin_is_refused(ws, firm_a, session_cookie_for):
    session = await database_sync_to_async(session_cookie_for)(firm_a.member("owner"))
    _, connected = await ws(cookie(session, origin=None))
    assert connected is False


async def test_an_allowed_origin_with_a_valid_session_is_accepted(ws, firm_a, session_cookie_for):
    session = await database_sync_to_async(session_cookie_for)(firm_a.member("owner"))
    communicator, connected = await ws(cookie(session, origin=(b"origin", b"http://localhost:8000")))
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"


# --- firm isolation (target 32) -------------------------------------------------------------------


async def test_events_of_firm_b_never_reach_a_firm_a_socket(ws, firm_a, firm_b, make_token):
    token_a = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))
    token_b = await database_sync_to_async(make_token)(firm_b.member("owner"), ("read",))
    socket_a, _ = await ws(bearer(token_a))
    socket_b, _ = await ws(bearer(token_b))
    await socket_a.receive_json_from()
    await socket_b.receive_json_from()

    seq_a, seq_b = await seq_of(firm_a.firm.pk), await seq_of(firm_b.firm.pk)
    await publish(firm_b.firm.pk, payload={"order": "B-1"})
    event = await socket_b.receive_json_from()
    assert (event["firm"], event["seq"], event["payload"]) == (firm_b.firm.pk, seq_b + 1, {"order": "B-1"})
    # A raw broadcast to B's group, bypassing publish_firm_event, does not reach A either.
    await get_channel_layer().group_send(
        firm_group(firm_b.firm.pk), {"type": "firm.event", "firm": firm_b.firm.pk, "roles": None, "text": "{}"}
    )
    assert await socket_b.receive_from() == "{}"
    assert await socket_a.receive_nothing(timeout=0.3)

    await publish(firm_a.firm.pk, payload={"order": "A-1"})
    event = await socket_a.receive_json_from()
    assert (event["firm"], event["seq"], event["payload"]) == (firm_a.firm.pk, seq_a + 1, {"order": "A-1"})
    assert await socket_b.receive_nothing(timeout=0.3)


@pytest.mark.parametrize("request_", ["firm", "group"])
async def test_subscribing_to_another_firms_stream_closes_4403_and_delivers_nothing(
    ws, firm_a, firm_b, make_token, request_
):
    token_a = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))
    socket_a, _ = await ws(bearer(token_a))
    await socket_a.receive_json_from()
    ask = {"type": "subscribe", "firm": firm_b.firm.pk} if request_ == "firm" else {
        "type": "subscribe", "group": f"firm.{firm_b.firm.pk}.events"}
    await socket_a.send_json_to(ask)
    assert await closed_with(socket_a) == 4403
    await publish(firm_b.firm.pk, payload={"secret": True})
    assert await socket_a.receive_nothing(timeout=0.3)


async def test_subscribing_to_its_own_stream_is_acknowledged(ws, firm_a, make_token):
    token = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))
    socket, _ = await ws(bearer(token))
    await socket.receive_json_from()
    await socket.send_json_to({"type": "subscribe", "group": f"firm.{firm_a.firm.pk}.events"})
    assert await socket.receive_json_from() == {
        "type": "subscribed", "firm": firm_a.firm.pk, "stream": "events", "last_seq": await seq_of(firm_a.firm.pk)}
    await socket.send_json_to({"type": "subscribe", "firm": firm_a.firm.pk, "stream": "everything"})
    reply = await socket.receive_json_from()
    assert reply["error"]["code"] == "UNKNOWN_STREAM"
    assert list(reply["error"]["fields"]) == ["stream"]


async def test_firm_scope_does_not_leak_between_sockets_on_one_event_loop(ws, firm_a, firm_b, make_token):
    token_a = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))
    token_b = await database_sync_to_async(make_token)(firm_b.member("owner"), ("read",))
    assert tenancy.current_firm_id() is None
    socket_a, _ = await ws(bearer(token_a))
    assert (await socket_a.receive_json_from())["firm"] == firm_a.firm.pk
    assert tenancy.current_firm_id() is None
    socket_b, _ = await ws(bearer(token_b))
    assert (await socket_b.receive_json_from())["firm"] == firm_b.firm.pk
    assert tenancy.current_firm_id() is None and not tenancy.scope_is_active()
    # Each handler runs in its own socket's scope, in whichever order they interleave.
    for socket, firm in ((socket_b, firm_b), (socket_a, firm_a), (socket_b, firm_b)):
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from() == {"type": "pong", "firm": firm.firm.pk}
    assert tenancy.current_firm_id() is None


# --- protocol errors --------------------------------------------------------------------------------


async def test_unknown_or_malformed_messages_get_a_json_error_and_the_socket_stays_open(ws, firm_a, make_token):
    token = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))
    socket, _ = await ws(bearer(token))
    await socket.receive_json_from()
    await socket.send_json_to({"type": "launch.missiles"})
    assert await socket.receive_json_from() == {"type": "error", "error": {
        "code": "UNKNOWN_TYPE", "message": "Unknown message type 'launch.missiles'.",
        "fields": {"type": ["Unknown message type 'launch.missiles'."]}}}
    await socket.send_to(text_data="{not json")
    assert (await socket.receive_json_from())["error"]["code"] == "INVALID_JSON"
    await socket.send_json_to(["a", "list"])
    assert (await socket.receive_json_from())["error"]["code"] == "INVALID_MESSAGE"
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive_json_from())["error"]["code"] == "BINARY_NOT_SUPPORTED"
    await socket.send_json_to({"type": "auth", "token": token})
    assert (await socket.receive_json_from())["error"]["code"] == "ALREADY_AUTHENTICATED"
    await socket.send_json_to({"type": "subscribe", "firm": "1"})
    assert (await socket.receive_json_from())["error"]["code"] == "INVALID_FIRM"
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong", "firm": firm_a.firm.pk}


# --- delivery ----------------------------------------------------------------------------------------


async def test_each_event_is_serialized_once_and_forwarded_verbatim_to_every_socket(
    ws, firm_a, make_token, monkeypatch
):
    from apps.core import events

    calls = []
    original = events.encode_event

    def counting(**kwargs):
        calls.append(kwargs["seq"])
        return original(**kwargs)

    monkeypatch.setattr(events, "encode_event", counting)
    tokens = [await database_sync_to_async(make_token)(firm_a.member(role), ("read",))
              for role in ("owner", "trader", "analyst")]
    sockets = []
    for token in tokens:
        socket, _ = await ws(bearer(token))
        await socket.receive_json_from()
        sockets.append(socket)
    calls.clear()  # token creation was audited and published too
    await publish(firm_a.firm.pk, payload={"order": 7})
    texts = [await socket.receive_from() for socket in sockets]
    assert calls == [await seq_of(firm_a.firm.pk)]  # one encoding for three sockets
    assert len(set(texts)) == 1
    assert json.loads(texts[0])["payload"] == {"order": 7}


async def test_audit_notifications_reach_audit_roles_and_others_only_see_the_sequence_step(
    ws, firm_a, make_token
):
    tokens = {role: await database_sync_to_async(make_token)(firm_a.member(role), ("read",))
              for role in ("compliance", "trader")}
    sockets = {}
    for role, token in tokens.items():
        sockets[role], _ = await ws(bearer(token))
        await sockets[role].receive_json_from()
    owner = firm_a.member("owner").user

    @database_sync_to_async
    def change_role():
        with transaction.atomic():
            return audit_record(firm_id=firm_a.firm.pk, action="member.role_changed", actor=Actor.for_user(owner),
                                target_type="membership", target_id=5)

    before = await seq_of(firm_a.firm.pk)
    event = await change_role()
    seen = await sockets["compliance"].receive_json_from()
    assert (seen["kind"], seen["seq"]) == ("audit", before + 1)
    assert seen["payload"] == {"action": "member.role_changed", "target_type": "membership", "target_id": "5",
                               "actor": owner.email, "audit_seq": event.seq}
    step = await sockets["trader"].receive_json_from()
    assert step == {"type": "seq", "firm": firm_a.firm.pk, "seq": before + 1, "event_id": seen["event_id"]}
    await publish(firm_a.firm.pk, payload={"order": 1})
    assert (await sockets["trader"].receive_json_from())["seq"] == before + 2  # no false gap for the trader


async def test_a_token_revoked_while_connected_is_closed_at_the_next_check(ws, firm_a, make_token, monkeypatch):
    from django.utils import timezone

    from apps.accounts.models import ApiToken

    monkeypatch.setattr(EventsConsumer, "revalidate_every", 0.2)
    secret = await database_sync_to_async(make_token)(firm_a.member("trader"), ("read",))
    socket, _ = await ws(bearer(secret))
    await socket.receive_json_from()
    assert await socket.receive_nothing(timeout=0.4)  # still valid after a check or two
    await database_sync_to_async(
        lambda: ApiToken.objects.filter(firm=firm_a.firm).update(revoked_at=timezone.now())
    )()
    assert await closed_with(socket) == 4401


async def test_a_logged_out_session_is_closed_at_the_next_check(ws, firm_a, session_cookie_for, monkeypatch):
    from django.contrib.sessions.models import Session

    monkeypatch.setattr(EventsConsumer, "revalidate_every", 0.2)
    session_id = await database_sync_to_async(session_cookie_for)(firm_a.member("owner"))
    socket, _ = await ws(cookie(session_id))
    await socket.receive_json_from()
    await database_sync_to_async(lambda: Session.objects.filter(session_key=session_id).delete())()
    assert await closed_with(socket) == 4401


# --- outages (target 45) -------------------------------------------------------------------------------


async def test_redis_down_gives_a_clean_close(ws, firm_a, make_token, redis_down):
    token = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))
    communicator, connected = await ws(bearer(token))
    assert connected
    assert await closed_with(communicator) == 1013
    await communicator.send_input({"type": "websocket.disconnect", "code": 1013})  # what the server does next
    await communicator.wait(timeout=2)  # the consumer then stops without raising
    assert communicator.future.done() and not communicator.future.cancelled()


async def test_database_down_while_authenticating_gives_a_clean_close(ws, firm_a, make_token, monkeypatch):
    from django.db import OperationalError

    from apps.core import ws as ws_auth

    token = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))

    def unavailable(presented):
        raise OperationalError("connection to server failed: Connection refused")

    monkeypatch.setattr(ws_auth, "authenticate_token", unavailable)
    communicator, connected = await ws(bearer(token))
    assert connected
    assert await closed_with(communicator) == 1013
    await communicator.send_input({"type": "websocket.disconnect", "code": 1013})  # what the server does next
    await communicator.wait(timeout=2)  # the consumer then stops without raising
    assert communicator.future.done() and not communicator.future.cancelled()


async def test_an_unauthenticated_socket_never_touches_redis(ws, firm_a, redis_down, monkeypatch):
    monkeypatch.setattr(EventsConsumer, "auth_timeout", 0.2)
    communicator, connected = await ws()
    assert connected
    assert await closed_with(communicator) == 4401  # not 1013: Redis was never needed


@pytest.mark.parametrize("authenticated", [True, False])
async def test_a_closed_socket_stops_promptly(firm_a, make_token, authenticated):
    from channels.testing import WebsocketCommunicator

    from octopus.asgi import application

    token = await database_sync_to_async(make_token)(firm_a.member("owner"), ("read",))
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=bearer(token if authenticated else "x"))
    assert (await communicator.connect())[0]
    await communicator.receive_output()
    # The application must finish by itself within the disconnect timeout (it used to linger 5 s
    # in the channel layer's receive); a cancelled future means it had to be killed.
    await communicator.disconnect(timeout=3)
    assert communicator.future.done() and not communicator.future.cancelled()
