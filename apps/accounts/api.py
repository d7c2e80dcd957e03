"""Accounts REST API: who am I, the firm's settings, members, invitations and API tokens.

Thin views: input serializers validate shape, services (apps.accounts.services) apply the rules
and write the audit events, output serializers shape the answer. Every queryset comes from
``request.firm`` (apps.core.api), so another firm's member, invitation or token is a 404.
"""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.response import Response

from apps.accounts import selectors, services
from apps.accounts.models import (
    MANAGE_ROLES,
    ApiToken,
    Invitation,
    Role,
    TokenScope,
    TwoFactorPolicy,
)
from apps.accounts.services.firms import FIRM_NAME_MAX
from apps.accounts.services.tokens import MAX_EXPIRY_DAYS
from apps.audit.services import RequestMeta, actor_from_request
from apps.core.api import (
    NO_CONTENT,
    FirmScopedAPIView,
    FirmScopedViewSet,
    StrictInputSerializer,
    api_schema,
    text_field,
)
from apps.core.errors import DomainError

ALL_ROLES = frozenset(Role.values)
TIMEZONE_CHOICES = sorted(zoneinfo.available_timezones())
MSG_OTP_REQUIRED = "Creating an API token needs a session verified with two-factor authentication, or a token with the 'admin' scope."

# --- output serializers ---------------------------------------------------------------------------


class UserBriefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    full_name = serializers.CharField()


class FirmOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    base_currency = serializers.CharField()
    timezone = serializers.CharField()
    two_factor_policy = serializers.ChoiceField(choices=TwoFactorPolicy.choices)
    created_at = serializers.DateTimeField()


class MembershipBriefOutput(serializers.Serializer):
    firm_id = serializers.IntegerField()
    firm_name = serializers.CharField(source="firm.name")
    role = serializers.ChoiceField(choices=Role.choices)


class CurrentTokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=TokenScope.choices))
    expires_at = serializers.DateTimeField(allow_null=True)


class MeOutput(serializers.Serializer):
    user = UserBriefOutput()
    firm = FirmOutput()
    role = serializers.ChoiceField(choices=Role.choices)
    token = CurrentTokenOutput(allow_null=True, help_text="The token this request authenticated with, if any.")
    memberships = MembershipBriefOutput(many=True, help_text="Every firm this user belongs to.")


class MemberOutput(serializers.Serializer):
    id = serializers.IntegerField()
    user_id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.full_name")
    role = serializers.ChoiceField(choices=Role.choices)
    joined_at = serializers.DateTimeField(source="created_at")


class InvitationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    invited_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    is_open = serializers.BooleanField()

    def get_invited_by(self, obj: Invitation) -> str | None:
        return obj.invited_by.email if obj.invited_by_id else None


class InvitationCreatedOutput(InvitationOutput):
    url = serializers.CharField(help_text="The signed accept link (also emailed to the invitee).")


class TokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="Public part of the token, to recognise it. Not a secret.")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=TokenScope.choices))
    member_id = serializers.IntegerField(source="membership_id")
    member_email = serializers.EmailField(source="membership.user.email")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    is_active = serializers.BooleanField()


class TokenCreatedOutput(TokenOutput):
    token = serializers.CharField(help_text="The bearer token. Shown once, in this response only; store it now.")


# --- input serializers ----------------------------------------------------------------------------


class FirmUpdateInput(StrictInputSerializer):
    """Firm settings to change; send only the ones that change."""

    name = text_field(max_length=FIRM_NAME_MAX, required=False)
    base_currency = serializers.RegexField(
        r"^[A-Z]{3}$", required=False, help_text="ISO 4217 code in capitals, e.g. USD."
    )
    timezone = serializers.ChoiceField(
        choices=TIMEZONE_CHOICES, required=False, help_text="IANA time zone, e.g. America/New_York."
    )
    two_factor_policy = serializers.ChoiceField(choices=TwoFactorPolicy.choices, required=False)

    min_fields = 1


class MemberRoleInput(StrictInputSerializer):
    """The member's new role."""

    role = serializers.ChoiceField(choices=Role.choices)


class InvitationCreateInput(StrictInputSerializer):
    """Who to invite, and as what."""

    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class TokenCreateInput(StrictInputSerializer):
    """A new API token for your own membership."""

    name = text_field(max_length=80)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=TokenScope.choices), min_length=1, max_length=len(TokenScope.values)
    )
    expires_days = serializers.IntegerField(
        min_value=1, max_value=MAX_EXPIRY_DAYS, required=False, allow_null=True,
        help_text="Days until the token expires; omit or null for no expiry.",
    )


# --- helpers --------------------------------------------------------------------------------------


# Refusals that are about the current state, not the request's shape: 409 on the API.
CONFLICT_CODES = frozenset({"INVITATION_EXISTS", "ALREADY_MEMBER", "INVITATION_USED"})


def _as_conflict(exc: DomainError) -> DomainError:
    if exc.code in CONFLICT_CODES and exc.status_code == status.HTTP_400_BAD_REQUEST:
        return DomainError(exc.code, exc.message, fields=exc.fields, status_code=status.HTTP_409_CONFLICT)
    return exc


def _meta(request) -> RequestMeta:
    return RequestMeta.from_request(request._request)


def _invitation_url(path: str, request) -> str:
    site = getattr(settings, "SITE_URL", "")
    return f"{site.rstrip('/')}{path}" if site else request.build_absolute_uri(path)


def _session_is_verified(request) -> bool:
    user = getattr(request._request, "user", None)
    is_verified = getattr(user, "is_verified", None)
    return bool(is_verified and is_verified())


# --- views ----------------------------------------------------------------------------------------


class MeView(FirmScopedAPIView):
    @api_schema(
        summary="Who am I",
        description="The authenticated user, the active firm, the role in it, the token used (if any) "
        "and every firm the user belongs to.",
        responses={200: MeOutput},
        errors=(401, 403, 429),
        tags=["account"],
    )
    def get(self, request):
        token = request.auth if isinstance(request.auth, ApiToken) else None
        data = {
            "user": request.user,
            "firm": request.firm,
            "role": request.membership.role,
            "token": token,
            "memberships": selectors.membership_list_for_user(user=request.user),
        }
        return Response(MeOutput(data).data)


class FirmView(FirmScopedAPIView):
    @api_schema(
        summary="The active firm",
        description="The active firm's settings. Any member may read them.",
        responses={200: FirmOutput},
        errors=(401, 403, 429),
        tags=["firm"],
    )
    def get(self, request):
        return Response(FirmOutput(request.firm).data)

    @api_schema(
        summary="Change the firm's settings",
        description="Owners and admins may change name, base_currency (ISO 4217), timezone (IANA) and "
        "two_factor_policy. Needs the 'admin' token scope. Audited as firm.settings_changed.",
        request=FirmUpdateInput,
        responses={200: FirmOutput},
        tags=["firm"],
    )
    def patch(self, request):
        data = FirmUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        firm = services.firm_update(
            firm=request.firm, actor=actor_from_request(request), meta=_meta(request), **data.validated_data
        )
        request._request.firm = firm
        return Response(FirmOutput(firm).data)


@extend_schema_view(
    list=api_schema(
        summary="List members",
        description="Every member of the active firm with their role, ordered by email. Any member may read.",
        responses={200: MemberOutput(many=True)},
        tags=["members"],
    ),
    retrieve=api_schema(
        summary="Get a member",
        description="One member of the active firm. Another firm's member is 404.",
        responses={200: MemberOutput},
        tags=["members"],
    ),
    partial_update=api_schema(
        summary="Change a member's role",
        description="Owners and admins change roles; only an owner makes an owner; the last owner cannot be "
        "demoted (409 LAST_OWNER). Needs the 'admin' scope. Audited as member.role_changed.",
        request=MemberRoleInput,
        responses={200: MemberOutput},
        tags=["members"],
    ),
    destroy=api_schema(
        summary="Remove a member",
        description="Owners and admins remove members (their tokens go too); the last owner cannot be "
        "removed (409 LAST_OWNER). Needs the 'admin' scope. Audited as member.removed.",
        responses=NO_CONTENT,
        errors=(401, 403, 404, 409, 429),
        tags=["members"],
    ),
)
class MemberViewSet(FirmScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = MemberOutput
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def queryset_for(self, firm):
        return selectors.member_list(firm=firm)

    def partial_update(self, request, pk=None):
        data = MemberRoleInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.member_change_role(
            membership=self.get_object(), role=data.validated_data["role"], by=request.membership, meta=_meta(request)
        )
        return Response(MemberOutput(membership).data)

    def destroy(self, request, pk=None):
        services.member_remove(membership=self.get_object(), by=request.membership, meta=_meta(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=api_schema(
        summary="List invitations",
        description="The active firm's invitations, newest first (open, accepted, revoked and expired). "
        "Owners and admins only.",
        responses={200: InvitationOutput(many=True)},
        tags=["invitations"],
    ),
    create=api_schema(
        summary="Invite someone",
        description="Owners and admins invite an email with a role; only an owner invites an owner. The signed, "
        "expiring accept link is emailed and returned once. An email that is already a member or has an open "
        "invitation is 409. Needs the 'admin' scope. Audited as invitation.created.",
        request=InvitationCreateInput,
        responses={201: InvitationCreatedOutput},
        tags=["invitations"],
    ),
    destroy=api_schema(
        summary="Revoke an invitation",
        description="Revokes an open invitation (idempotent; an accepted one is 409 INVITATION_USED). "
        "Needs the 'admin' scope. Audited as invitation.revoked.",
        responses=NO_CONTENT,
        errors=(401, 403, 404, 409, 429),
        tags=["invitations"],
    ),
)
class InvitationViewSet(FirmScopedViewSet, mixins.ListModelMixin):
    serializer_class = InvitationOutput
    required_roles = MANAGE_ROLES
    http_method_names = ["get", "post", "delete", "head", "options"]

    def queryset_for(self, firm):
        return selectors.invitation_list(firm=firm).select_related("invited_by")

    def create(self, request):
        data = InvitationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            invitation, path = services.invitation_create(
                firm=request.firm, invited_by=request.membership, meta=_meta(request), **data.validated_data
            )
        except DomainError as exc:
            raise _as_conflict(exc) from exc
        invitation.url = _invitation_url(path, request)
        return Response(InvitationCreatedOutput(invitation).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        try:
            services.invitation_revoke(invitation=self.get_object(), by=request.membership, meta=_meta(request))
        except DomainError as exc:
            raise _as_conflict(exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


MEMBER_FILTER = OpenApiParameter(
    "member",
    {"type": "integer", "minimum": 1},
    description="Only tokens of this member (a member id of the active firm; another firm's id gives an empty list).",
    required=False,
)


@extend_schema_view(
    list=api_schema(
        summary="List API tokens",
        description="Owners and admins see every token of the firm, other roles only their own. Shows the prefix, "
        "scopes, expiry, last use and revocation; never the secret.",
        parameters=[MEMBER_FILTER],
        responses={200: TokenOutput(many=True)},
        tags=["tokens"],
    ),
    retrieve=api_schema(
        summary="Get an API token",
        description="One token (never its secret). A token you may not see is 404.",
        responses={200: TokenOutput},
        tags=["tokens"],
    ),
    create=api_schema(
        summary="Create an API token",
        description="Creates a token bound to your own membership. The secret is in this response only. "
        "Needs a session verified with 2FA, or a token with the 'admin' scope. Audited as token.created.",
        request=TokenCreateInput,
        responses={201: TokenCreatedOutput},
        tags=["tokens"],
    ),
    destroy=api_schema(
        summary="Revoke an API token",
        description="Revokes the token at once (idempotent); requests with it then get 401. Owners and admins may "
        "revoke any token of the firm, others their own. Needs the 'admin' scope. Audited as token.revoked.",
        responses=NO_CONTENT,
        errors=(401, 403, 404, 429),
        tags=["tokens"],
    ),
)
class TokenViewSet(FirmScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = TokenOutput
    write_roles = ALL_ROLES  # everyone manages their own tokens; the queryset limits whose
    http_method_names = ["get", "post", "delete", "head", "options"]

    def queryset_for(self, firm):
        membership = self.request.membership
        if membership.role in MANAGE_ROLES:
            return selectors.token_list(firm=firm)
        return selectors.token_list(firm=firm, membership=membership)

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if self.action == "list" and "member" in self.request.query_params:
            field = serializers.IntegerField(min_value=1)
            try:
                member_id = field.run_validation(self.request.query_params["member"])
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"member": exc.detail}) from exc
            queryset = queryset.filter(membership_id=member_id)  # within the firm's queryset: B's id → empty
        return queryset

    def create(self, request):
        if isinstance(request.auth, ApiToken):
            if "admin" not in request.auth.scopes:
                raise exceptions.PermissionDenied(MSG_OTP_REQUIRED)
        elif not _session_is_verified(request):
            raise exceptions.PermissionDenied(MSG_OTP_REQUIRED)
        data = TokenCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.token_create(
            membership=request.membership,
            name=data.validated_data["name"],
            scopes=data.validated_data["scopes"],
            expires_days=data.validated_data.get("expires_days"),
            actor=actor_from_request(request),
            meta=_meta(request),
        )
        token = created.token
        token.membership = request.membership
        token.token = created.secret
        return Response(TokenCreatedOutput(token).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        services.token_revoke(token=self.get_object(), actor=actor_from_request(request), meta=_meta(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


__all__ = ["FirmView", "InvitationViewSet", "MeView", "MemberViewSet", "TokenViewSet"]


# --- OpenAPI descriptions of the authentication classes -----------------------------------------------


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer oct_<prefix>_<secret>`.",
        }


class VerifiedSessionScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.VerifiedSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "The browser session (2FA-verified where the firm requires it), with the CSRF header.",
        }
