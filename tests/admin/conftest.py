from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import Invitation
from tests.api.isolation import make_algo, make_order, make_portfolio_books, make_portfolio_halt, make_trading_control
from tests.factories import UserFactory


def verify_session(client, user, firm_id=None):
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from apps.core.middleware import SESSION_FIRM_KEY

    device, _ = TOTPDevice.objects.get_or_create(user=user, name="default", defaults={"confirmed": True})
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    if firm_id is not None:
        session[SESSION_FIRM_KEY] = firm_id
    session.save()
    return client


@pytest.fixture
def superuser(db):
    user = UserFactory(email="root@platform.example.com", is_staff=True, is_superuser=True)
    return user


@pytest.fixture
def superuser_client(client, superuser):
    return verify_session(client, superuser)


@pytest.fixture
def populated(firm_a, firm_b, make_token):
    """Both firms with a row of every firm-scoped model (tokens' creation also writes audit events)."""
    for world in (firm_a, firm_b):
        make_token(world.member("trader"), ("read",))
        Invitation.objects.create(
            firm=world.firm,
            email=f"new@{world.firm.slug}.example.com",
            role="analyst",
            invited_by=world.member("owner").user,
            expires_at=timezone.now() + timedelta(days=7),
        )
        make_portfolio_books(world, label=world.firm.slug)  # a row of every portfolios model
        make_order(world)  # an order with its first event
        make_trading_control(world)
        make_algo(world)
        make_portfolio_halt(world)
    return firm_a, firm_b
