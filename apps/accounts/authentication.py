"""DRF authentication: Bearer API tokens, and sessions that passed 2FA where it is required."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from apps.accounts import tokens
from apps.accounts.models import ApiToken
from apps.core import tenancy

LAST_USED_GRANULARITY = timedelta(minutes=1)  # avoid a write on every request


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        parsed = tokens.parse(presented.strip())
        if parsed is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        prefix, secret = parsed
        token = (
            ApiToken.objects.select_related("membership__user", "membership__firm", "firm")
            .filter(prefix=prefix)
            .first()
        )
        if token is None or not tokens.matches(secret, token.secret_hash):
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token has been revoked.")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("This token has expired.")
        user = token.membership.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed("This user is inactive.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        # The token decides the firm, whatever the session says.
        django_request = request._request
        django_request.firm = token.membership.firm
        django_request.membership = token.membership
        tenancy.set_scope(token.membership.firm_id)  # reset by FirmMiddleware at the end of the request
        return user, token

    def authenticate_header(self, request) -> str:
        return self.keyword


class VerifiedSessionAuthentication(authentication.SessionAuthentication):
    """Session auth (with CSRF) that refuses sessions still owing a 2FA step."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        from apps.accounts.twofactor import session_needs_2fa

        if session_needs_2fa(request._request):
            raise exceptions.PermissionDenied("Two-factor verification is required for this session.")
        return result
