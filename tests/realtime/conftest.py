"""Fixtures for WebSocket tests: the real ASGI application, the real Redis channel layer."""

from __future__ import annotations

import asyncio
import copy
import socket

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test starts with no groups, messages, sequence or overflow counters (test prefix only)."""
    layer = get_channel_layer()
    assert layer.prefix.startswith("octopus-test")
    async_to_sync(layer.flush)()
    yield


@pytest.fixture
def small_capacity(settings):
    """The real Redis channel layer with a capacity of 3 messages per channel."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["capacity"] = 3
    settings.CHANNEL_LAYERS = layers
    return get_channel_layer()


@pytest.fixture
def redis_down(settings):
    """Point the channel layer at a port where no Redis listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"] = [{"address": f"redis://127.0.0.1:{port}/2", "socket_connect_timeout": 1}]
    settings.CHANNEL_LAYERS = layers
    return port


@pytest.fixture
def session_cookie_for(client):
    """session_cookie_for(membership, verified=True, active_firm_id=None) -> the sessionid value."""
    from django.conf import settings
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from apps.core.middleware import SESSION_FIRM_KEY

    def _cookie(membership, verified=True, active_firm_id=None) -> str:
        client.cookies.clear()
        client.force_login(membership.user)
        session = client.session
        if verified:
            device, _ = TOTPDevice.objects.get_or_create(
                user=membership.user, name="default", defaults={"confirmed": True}
            )
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session[SESSION_FIRM_KEY] = active_firm_id or membership.firm_id
        session.save()
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    return _cookie


@pytest.fixture
async def ws():
    """ws(headers=None, path="/ws/events/") -> (communicator, connected); all disconnected at teardown."""
    from octopus.asgi import application

    opened: list[WebsocketCommunicator] = []

    async def _connect(headers=None, path="/ws/events/"):
        communicator = WebsocketCommunicator(application, path, headers=[ORIGIN] if headers is None else headers)
        opened.append(communicator)
        connected, _ = await communicator.connect()
        return communicator, connected

    yield _connect
    for communicator in opened:
        try:
            await communicator.disconnect()
        except (Exception, asyncio.CancelledError):  # noqa: S110 - the app may have finished already
            pass
