"""WebSocket authentication: the ASGI stack and who a socket acts for.

Browsers authenticate with their session cookie (a session that still owes 2FA is refused, by the
same rule as pages and the API). API clients present a token in the handshake's
``Authorization: Bearer`` header or in the first message ``{"type": "auth", "token": "..."}`` —
never in the URL, where proxies and servers log it. Every check here is synchronous ORM work;
consumers call it through ``database_sync_to_async``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace

from channels.auth import AuthMiddlewareStack
from django.utils import timezone

# Close codes (RFC 6455 leaves 4000-4999 to applications).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNAVAILABLE = 1013  # "try again later": Redis (or the database) is unavailable


def websocket_stack(inner):
    return AuthMiddlewareStack(inner)


@dataclass(frozen=True)
class Principal:
    """Who a socket acts for: one membership of one firm, via a session or a token."""

    user_id: int
    firm_id: int
    membership_id: int
    role: str
    token_id: int | None = None
    session_key: str | None = None


@dataclass(frozen=True)
class AuthResult:
    principal: Principal | None
    close_code: int | None = None
    reason: str = ""


def _refuse(code: int, reason: str) -> AuthResult:
    return AuthResult(None, code, reason)


def bearer_from_headers(headers) -> str | None:
    """The token of an ``Authorization: Bearer`` handshake header, or None if there is none."""
    for name, value in headers or []:
        if name.lower() == b"authorization":
            scheme, _, presented = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return presented.strip()
            return ""  # some other scheme: present but unusable
    return None


def authenticate_token(presented: str) -> AuthResult:
    """Same rules as apps.accounts.authentication.BearerTokenAuthentication, plus the read scope."""
    from apps.accounts import tokens
    from apps.accounts.authentication import LAST_USED_GRANULARITY
    from apps.accounts.models import ApiToken

    parsed = tokens.parse(presented or "")
    if parsed is None:
        return _refuse(CLOSE_UNAUTHENTICATED, "invalid token")
    prefix, secret = parsed
    token = ApiToken.objects.select_related("membership__user").filter(prefix=prefix).first()
    if token is None or not tokens.matches(secret, token.secret_hash):
        return _refuse(CLOSE_UNAUTHENTICATED, "invalid token")
    if token.revoked_at is not None:
        return _refuse(CLOSE_UNAUTHENTICATED, "token revoked")
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return _refuse(CLOSE_UNAUTHENTICATED, "token expired")
    membership = token.membership
    if not membership.user.is_active or membership.firm_id != token.firm_id:
        return _refuse(CLOSE_UNAUTHENTICATED, "inactive user")
    if "read" not in (token.scopes or []):
        return _refuse(CLOSE_FORBIDDEN, "token lacks the 'read' scope")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return AuthResult(
        Principal(user_id=membership.user_id, firm_id=membership.firm_id, membership_id=membership.pk,
                  role=membership.role, token_id=token.pk)
    )


def _install_otp_device(user, session) -> None:
    """What django_otp's OTPMiddleware does for a request: user.otp_device from the session."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.middleware import OTPMiddleware, is_verified
    from django_otp.models import Device

    user.otp_device = None
    user.is_verified = functools.partial(is_verified, user)
    persistent_id = session.get(DEVICE_ID_SESSION_KEY)
    if persistent_id:
        device = Device.from_persistent_id(OTPMiddleware._normalize_persistent_id(persistent_id))
        if device is not None and device.user_id == user.pk and device.confirmed:
            user.otp_device = device


def authenticate_session(user, session) -> AuthResult:
    """A browser session: logged in, a member of its active firm, and past 2FA where required."""
    from apps.accounts.selectors import active_membership_for_session
    from apps.accounts.twofactor import session_needs_2fa

    if user is None or not user.is_authenticated or not user.is_active:
        return _refuse(CLOSE_UNAUTHENTICATED, "not logged in")
    membership = active_membership_for_session(user=user, session=session)
    if membership is None:
        return _refuse(CLOSE_FORBIDDEN, "no firm")
    _install_otp_device(user, session)
    if session_needs_2fa(SimpleNamespace(user=user, membership=membership, session=session)):
        return _refuse(CLOSE_UNAUTHENTICATED, "two-factor verification required")
    return AuthResult(
        Principal(user_id=user.pk, firm_id=membership.firm_id, membership_id=membership.pk,
                  role=membership.role, session_key=session.session_key)
    )


def revalidate(principal: Principal, session_class=None) -> int | None:
    """Is the socket's principal still valid? None if so, else the close code to use.

    Catches a token revoked, a session logged out or expired, a member removed or re-roled
    while the socket stays open.
    """
    from apps.accounts.models import ApiToken, Membership

    membership = (
        Membership.objects.filter(pk=principal.membership_id, firm_id=principal.firm_id)
        .select_related("user").first()
    )
    if membership is None or not membership.user.is_active:
        return CLOSE_FORBIDDEN
    if membership.role != principal.role:
        return CLOSE_FORBIDDEN  # reconnect to act with the new role
    if principal.token_id is not None:
        token = ApiToken.objects.filter(pk=principal.token_id).first()
        if token is None or not token.is_active:
            return CLOSE_UNAUTHENTICATED
    elif principal.session_key is not None and session_class is not None:
        data = session_class(principal.session_key).load()
        if str(data.get("_auth_user_id")) != str(principal.user_id):
            return CLOSE_UNAUTHENTICATED
    return None
