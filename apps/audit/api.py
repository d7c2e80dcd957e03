"""REST API of the audit trail: list and read events, compliance export with a manifest.

Readers are owners, admins and compliance of the request's firm; events of another firm are 404.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.models import AUDIT_ROLES
from apps.audit.export import EXPORT_FIELDS, FORMATS
from apps.audit.models import ActorType, AuditEvent
from apps.audit.params import MSG_BAD_BOUND, MSG_TO_BEFORE_FROM, MSG_TO_IN_FUTURE, parse_bound
from apps.audit.selectors import audit_event_list, audit_export_events
from apps.audit.services import RequestMeta, actor_from_request, audit_export
from apps.core.api import ErrorResponseSerializer, FirmScopedAPIView, FirmScopedMixin, error_responses
from apps.core.pagination import TimeCursorPagination


@extend_schema_field(OpenApiTypes.DATE)  # date-times with an offset are accepted too (see descriptions)
class TimeBoundField(serializers.Field):
    default_error_messages = {"invalid": MSG_BAD_BOUND}

    def to_internal_value(self, data):
        try:
            return parse_bound(str(data))
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value):
        return value.isoformat()


class _RangeMixin:
    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = TimeBoundField(required=self.range_required)
        fields["to"] = TimeBoundField(required=self.range_required)
        return fields

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and end <= start:
            raise serializers.ValidationError({"to": [MSG_TO_BEFORE_FROM]})
        return attrs


class AuditEventFilterSerializer(_RangeMixin, serializers.Serializer):
    range_required = False
    actor = serializers.CharField(required=False, max_length=200)
    actor_type = serializers.ChoiceField(choices=ActorType.choices, required=False)
    action = serializers.CharField(required=False, max_length=64)
    target_type = serializers.CharField(required=False, max_length=64)
    target_id = serializers.CharField(required=False, max_length=64)


class AuditExportParamsSerializer(_RangeMixin, serializers.Serializer):
    range_required = True
    format = serializers.ChoiceField(choices=sorted(FORMATS), required=False, default="csv")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs["to"] > timezone.now():
            raise serializers.ValidationError({"to": [MSG_TO_IN_FUTURE]})
        return attrs


class AuditEventOutputSerializer(serializers.ModelSerializer):
    actor_user_id = serializers.IntegerField(allow_null=True, read_only=True)
    actor_token_id = serializers.IntegerField(allow_null=True, read_only=True)
    before = serializers.JSONField(allow_null=True, read_only=True)
    after = serializers.JSONField(allow_null=True, read_only=True)

    class Meta:
        model = AuditEvent
        # The export's columns, less the firm (implicit in every firm-scoped response).
        fields = tuple(name for name in EXPORT_FIELDS if name != "firm_id")
        read_only_fields = fields


ERRORS = error_responses((400, 401, 403, 429))  # 404 only where there is an object in the path
NOT_FOUND = error_responses((404,))

RANGE_PARAMS = [
    OpenApiParameter(
        "from",
        OpenApiTypes.DATE,
        required=True,
        description="Start, inclusive: YYYY-MM-DD (UTC) or ISO 8601 date-time.",
    ),
    OpenApiParameter(
        "to",
        OpenApiTypes.DATE,
        required=True,
        description="End, exclusive, not in the future: YYYY-MM-DD (UTC) or ISO 8601 date-time.",
    ),
    OpenApiParameter("format", OpenApiTypes.STR, enum=sorted(FORMATS), description="File format (default csv)."),
]


class AuditCursorPagination(TimeCursorPagination):
    ordering = "-seq"  # unique and monotonic within one firm's chain


class AuditEventListApi(FirmScopedMixin, generics.ListAPIView):
    required_roles = AUDIT_ROLES
    serializer_class = AuditEventOutputSerializer
    pagination_class = AuditCursorPagination

    @extend_schema(
        operation_id="audit_events_list",
        summary="List audit events",
        description=(
            "The firm's audit events, newest first (cursor pagination). Filters: `actor` (part of the actor's email "
            "or label), `actor_type`, `action` (exact, or a prefix ending with a dot such as `member.`), "
            "`target_type`, `target_id`, `from` (inclusive) and `to` (exclusive). Owner, admin and compliance only."
        ),
        parameters=[AuditEventFilterSerializer],
        responses={
            200: AuditEventOutputSerializer(many=True),
            **ERRORS,
            404: OpenApiResponse(ErrorResponseSerializer, description="The `cursor` is not one this list gave out."),
        },
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def queryset_for(self, firm):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        params = AuditEventFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        p = params.validated_data
        return audit_event_list(
            firm_id=firm.pk,
            actor=p.get("actor"),
            actor_type=p.get("actor_type"),
            action=p.get("action"),
            target_type=p.get("target_type"),
            target_id=p.get("target_id"),
            created_from=p.get("from"),
            created_before=p.get("to"),
        )


class AuditEventDetailApi(FirmScopedMixin, generics.RetrieveAPIView):
    required_roles = AUDIT_ROLES
    serializer_class = AuditEventOutputSerializer

    def queryset_for(self, firm):
        return audit_event_list(firm_id=firm.pk)

    def check_permissions(self, request) -> None:
        # Look the event up first: another firm's id is 404 for every role, never a 403 that confirms it.
        if request.user and request.user.is_authenticated and getattr(request, "firm", None) is not None:
            self.event = self.get_object()
        super().check_permissions(request)

    def get_object(self):
        if getattr(self, "event", None) is None:
            self.event = super().get_object()
        return self.event

    @extend_schema(
        operation_id="audit_events_retrieve",
        summary="Get one audit event",
        description="One audit event of the firm, with its hashes. Another firm's event is 404.",
        responses={200: AuditEventOutputSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class IgnoreFormatNegotiation(DefaultContentNegotiation):
    """``?format=csv`` names the export file format here, not a DRF renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _ExportBase(FirmScopedAPIView):
    required_roles = AUDIT_ROLES
    renderer_classes = [JSONRenderer]
    content_negotiation_class = IgnoreFormatNegotiation

    def params(self, request) -> dict:
        serializer = AuditExportParamsSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def export_filename(firm_slug: str, p: dict) -> str:
    return f"audit-{firm_slug}-{p['from']:%Y%m%dT%H%M%SZ}-{p['to']:%Y%m%dT%H%M%SZ}.{p['format']}"


def export_response(exported, *, filename: str) -> HttpResponse:
    response = HttpResponse(exported.content, content_type=exported.content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Export-Rows"] = str(exported.rows)
    response["X-Export-SHA256"] = exported.sha256
    return response


class AuditExportApi(_ExportBase):
    @extend_schema(
        operation_id="audit_export",
        summary="Export audit events (CSV or JSONL)",
        description=(
            "Compliance export of every field of every event (hashes included) with `from` <= created_at < `to`, "
            "in chain order. The same range always gives a byte-identical file; the headers `X-Export-Rows` and "
            "`X-Export-SHA256` are its manifest. The export is itself audited as `audit.exported`. "
            "Owner, admin and compliance only."
        ),
        parameters=RANGE_PARAMS,
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="CSV file (RFC 4180)."),
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY, description="JSON Lines file."),
            **ERRORS,
        },
    )
    def get(self, request):
        p = self.params(request)
        exported = audit_export(
            firm_id=request.firm.pk,
            created_from=p["from"],
            created_before=p["to"],
            fmt=p["format"],
            actor=actor_from_request(request),
            meta=RequestMeta.from_request(request),
        )
        return export_response(exported, filename=export_filename(request.firm.slug, p))


class AuditExportManifestApi(_ExportBase):
    @extend_schema(
        operation_id="audit_export_manifest",
        summary="Manifest of an audit export",
        description=(
            "The manifest of the export of the same range and format: row count, SHA-256 and size of the file "
            "`GET /audit/export/` returns. Not itself audited (it reveals no event)."
        ),
        parameters=RANGE_PARAMS,
        responses={
            200: inline_serializer(
                name="AuditExportManifest",
                fields={
                    "from": serializers.DateTimeField(),
                    "to": serializers.DateTimeField(),
                    "format": serializers.CharField(),
                    "filename": serializers.CharField(),
                    "rows": serializers.IntegerField(),
                    "sha256": serializers.CharField(),
                    "bytes": serializers.IntegerField(),
                },
            ),
            **ERRORS,
        },
    )
    def get(self, request):
        from apps.audit.export import render_export

        p = self.params(request)
        exported = render_export(
            audit_export_events(firm_id=request.firm.pk, created_from=p["from"], created_before=p["to"]), p["format"]
        )
        return Response(
            {
                "from": p["from"].isoformat(),
                "to": p["to"].isoformat(),
                "format": p["format"],
                "filename": export_filename(request.firm.slug, p),
                **exported.manifest(),
            }
        )
