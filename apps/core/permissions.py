"""DRF permissions: membership of the request's firm, role, and token scope."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.accounts.models import AUDIT_ROLES, MANAGE_ROLES, TRADE_ROLES


class IsFirmMember(BasePermission):
    """Authenticated, with an active firm. Writes need a role that may write and, for tokens,
    the right scope; views narrow this with ``required_roles`` / ``required_scope``."""

    message = "You are not a member of an active firm."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated and getattr(request, "firm", None)):
            return False
        roles = getattr(view, "required_roles", None)
        if roles is None and request.method not in SAFE_METHODS:
            roles = getattr(view, "write_roles", MANAGE_ROLES)
        if roles is not None and request.membership.role not in roles:
            self.message = "Your role does not allow this."
            return False
        token = getattr(request, "auth", None)
        if token is not None and getattr(token, "scopes", None) is not None:
            scope = getattr(view, "required_scope", None) or ("read" if request.method in SAFE_METHODS else "admin")
            if scope not in token.scopes:
                self.message = f"This token lacks the '{scope}' scope."
                return False
        return True


__all__ = ["IsFirmMember", "AUDIT_ROLES", "MANAGE_ROLES", "TRADE_ROLES"]
