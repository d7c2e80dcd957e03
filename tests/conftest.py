"""Fixtures every test inherits: two firms (A and B) with one member per role, and clients.

Every world has a second firm so that a forgotten tenant filter shows up as a failing test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.core.cache import cache

from apps.accounts.models import Firm, Membership, Role
from tests.celery_support import celery_worker, celery_worker_factory  # noqa: F401 - shared fixtures
from tests.factories import FirmFactory, MembershipFactory


@dataclass
class FirmWorld:
    firm: Firm
    members: dict[str, Membership] = field(default_factory=dict)

    def member(self, role: str) -> Membership:
        return self.members[role]


def make_world(name: str) -> FirmWorld:
    firm = FirmFactory(name=f"{name} Capital", slug=f"{name.lower()}-capital")
    world = FirmWorld(firm=firm)
    for role in Role.values:
        world.members[role] = MembershipFactory(
            firm=firm, role=role, user__email=f"{role}@{name.lower()}.example.com"
        )
    return world


@pytest.fixture
def firm_a(db) -> FirmWorld:
    return make_world("Alpha")


@pytest.fixture
def firm_b(db) -> FirmWorld:
    return make_world("Beta")


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters and lockouts live in Redis; each test starts clean."""
    cache.clear()
    yield


@pytest.fixture
def make_token():
    """make_token(membership, scopes=("read",)) -> the bearer string."""
    from apps.accounts.services import token_create
    from apps.audit.services import Actor

    def _make(membership: Membership, scopes=("read",), expires_days=None) -> str:
        created = token_create(
            membership=membership, name="test", scopes=list(scopes), expires_days=expires_days,
            actor=Actor.for_user(membership.user),
        )
        return created.secret

    return _make


@pytest.fixture
def api_client_for(make_token):
    """api_client_for(membership, scopes=("read",)) -> an APIClient sending that member's token."""
    from rest_framework.test import APIClient

    def _client(membership: Membership, scopes=("read", "trade", "admin")) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(membership, scopes)}")
        return client

    return _client


@pytest.fixture
def verified_client_for(client):
    """verified_client_for(membership) -> a logged-in Django test client whose session passed 2FA."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from apps.core.middleware import SESSION_FIRM_KEY

    def _client(membership: Membership):
        device, _ = TOTPDevice.objects.get_or_create(user=membership.user, name="default", defaults={"confirmed": True})
        client.force_login(membership.user)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session[SESSION_FIRM_KEY] = membership.firm_id
        session.save()
        return client

    return _client
