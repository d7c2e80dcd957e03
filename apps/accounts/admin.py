"""Admin for firms, memberships, invitations and API tokens (firm-scoped; see apps.core.admin)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import ngettext

from apps.accounts.models import MANAGE_ROLES, ApiToken, Firm, Invitation, Membership
from apps.audit.services import RequestMeta, actor_from_request
from apps.core.admin import FirmScopedAdmin, firm_role, is_platform_admin
from apps.core.errors import DomainError

MSG_NEED_MANAGER = "To change roles in {firm} you need an owner or admin membership of that firm."


@admin.register(Firm)
class FirmAdmin(FirmScopedAdmin):
    """Members see their own firm, read-only (settings change on the Settings page); superusers all."""

    firm_lookup = "pk"
    change_roles = frozenset()
    list_display = ("name", "slug", "base_currency", "timezone", "two_factor_policy", "created_at")
    search_fields = ("name", "slug")
    ordering = ("name",)
    readonly_fields = ("created_at",)

    def has_add_permission(self, request) -> bool:
        return False  # a firm is created with its owner: sign-up or `manage.py create_firm`


@admin.register(Membership)
class MembershipAdmin(FirmScopedAdmin):
    """Owners and admins change roles here, through ``member_change_role`` (audited, last-owner rule)."""

    audit_changes = False  # member_change_role records member.role_changed
    list_display = ("user", "firm", "role", "created_at")
    list_filter = ("role", ("firm", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__email", "user__full_name")
    ordering = ("firm__name", "user__email")
    fields = ("user", "firm", "role", "created_at")
    list_select_related = ("user", "firm")

    def get_readonly_fields(self, request, obj=None):
        return ("created_at",) if obj is None else ("user", "firm", "created_at")

    def has_add_permission(self, request) -> bool:
        return is_platform_admin(request)  # people join a firm by invitation

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        if "role" not in form.changed_data:
            return None
        from apps.accounts.services.members import member_change_role

        if getattr(request, "firm", None) is not None and request.firm.pk == obj.firm_id:
            by = request.membership
        else:  # a superuser acting in another firm needs a manager membership there
            by = Membership.objects.filter(user=request.user, firm_id=obj.firm_id).first()
        if by is None or by.role not in MANAGE_ROLES:
            msg = MSG_NEED_MANAGER.format(firm=obj.firm.name)
            raise DomainError("PERMISSION_DENIED", msg, status_code=403)
        member_change_role(
            membership=Membership.objects.get(pk=obj.pk), role=obj.role, by=by, meta=RequestMeta.from_request(request)
        )
        return None


@admin.register(Invitation)
class InvitationAdmin(FirmScopedAdmin):
    """Read-only: invitations are sent and revoked on the Members page (they email a signed link)."""

    read_only = True
    list_display = ("email", "firm", "role", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at")
    list_filter = ("role", ("firm", admin.RelatedOnlyFieldListFilter))
    search_fields = ("email",)
    ordering = ("-created_at",)
    list_select_related = ("firm", "invited_by")


@admin.register(ApiToken)
class ApiTokenAdmin(FirmScopedAdmin):
    """Read-only (the secret's hash is never shown); owners and admins may revoke through the service."""

    read_only = True
    fields = (
        "name",
        "prefix",
        "firm",
        "membership",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    readonly_fields = fields
    list_display = fields
    list_filter = (("firm", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name", "prefix", "membership__user__email")
    ordering = ("-created_at",)
    list_select_related = ("firm", "membership__user")
    actions = ["revoke_selected"]

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        from apps.accounts.services import token_revoke

        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token=token, actor=actor_from_request(request), meta=RequestMeta.from_request(request))
            count += 1
        self.message_user(request, ngettext("%d token revoked.", "%d tokens revoked.", count) % count, messages.SUCCESS)

    def has_revoke_permission(self, request) -> bool:
        return is_platform_admin(request) or firm_role(request) in MANAGE_ROLES
