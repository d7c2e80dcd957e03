"""Who owes a 2FA step, by the firm's policy (pure rules over the request's user and membership)."""

from __future__ import annotations

from django.http import HttpRequest
from django_otp import user_has_device


def two_factor_required(request: HttpRequest) -> bool:
    """Whether the firm's policy requires 2FA for this member (superusers: always)."""
    user = request.user
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    membership = getattr(request, "membership", None)
    return membership is not None and membership.firm.requires_2fa(membership.role)


def session_needs_enrolment(request: HttpRequest) -> bool:
    return two_factor_required(request) and not user_has_device(request.user, confirmed=True)


def session_needs_2fa(request: HttpRequest) -> bool:
    """True while the session must still enrol or verify before reaching anything else."""
    return two_factor_required(request) and not request.user.is_verified()
