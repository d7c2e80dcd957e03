"""Helpers for accounts tests: TOTP codes computed the way an authenticator app does."""

from __future__ import annotations

import time

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit.models import AuditEvent
from apps.core.tenancy import unscoped


def totp_code(device: TOTPDevice, steps: int = 0) -> str:
    """The device's code now (or ``steps`` time steps later), zero-padded like an app shows it."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps * device.step
    return f"{totp.token():0{device.digits}d}"


def events(action: str | None = None, firm_id=...) -> list[AuditEvent]:
    with unscoped():
        qs = AuditEvent.objects.unscoped().order_by("firm_id", "seq")
        if action:
            qs = qs.filter(action=action)
        if firm_id is not ...:
            qs = qs.filter(firm_id=firm_id)
        return list(qs)


@pytest.fixture
def enrolled():
    """enrolled(user) -> a confirmed TOTP device for that user."""

    def _make(user) -> TOTPDevice:
        return TOTPDevice.objects.create(user=user, name="default", confirmed=True)

    return _make
