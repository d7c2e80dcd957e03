"""Audit events in the admin: read-only for everyone, filters, and a CSV export of the selection."""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.http import HttpResponse

from apps.audit.export import render_export
from apps.audit.models import AuditEvent
from apps.audit.services import RequestMeta, actor_from_request, audit_record
from apps.core.admin import FirmScopedAdmin, is_platform_admin


@admin.register(AuditEvent)
class AuditEventAdmin(FirmScopedAdmin):
    read_only = True
    audit_changes = False
    list_display = (
        "seq",
        "created_at",
        "firm",
        "actor_label",
        "actor_type",
        "action",
        "target_type",
        "target_id",
        "ip",
    )
    list_display_links = ("seq", "action")
    list_filter = ("actor_type", "action", "created_at", ("firm", admin.RelatedOnlyFieldListFilter))
    search_fields = ("actor_label", "action", "target_label", "target_id", "request_id")
    ordering = ("-created_at", "-seq")
    list_select_related = ("firm",)
    actions = ["export_csv"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Export selected as CSV")
    def export_csv(self, request, queryset):
        """The selection in the compliance export format (every field, hashes included); audited."""
        events = queryset.order_by("firm_id", "seq")
        exported = render_export(events.iterator(), "csv")
        firm_id = None if is_platform_admin(request) else request.firm.pk
        with transaction.atomic():
            audit_record(
                firm_id=firm_id,
                action="audit.exported",
                actor=actor_from_request(request),
                target_type="audit_export",
                target_label="admin selection",
                after={"source": "admin", "format": "csv", "rows": exported.rows, "sha256": exported.sha256},
                meta=RequestMeta.from_request(request),
            )
        response = HttpResponse(exported.content, content_type=exported.content_type)
        response["Content-Disposition"] = 'attachment; filename="audit-events-selection.csv"'
        response["X-Export-Rows"] = str(exported.rows)
        response["X-Export-SHA256"] = exported.sha256
        return response
