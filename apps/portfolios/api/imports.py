"""Portfolio API: trade imports (routes in ``urls``).

``POST portfolios/<pk>/imports/preview/`` reads an upload and answers the headers, the guessed mapping
and the first rows (stores nothing); ``POST portfolios/<pk>/imports/`` stores the file with the
confirmed mapping and queues the run (202); ``GET trade-imports/<pk>/`` shows progress and, once
finished, the per-row report. The portfolio is resolved first (``selectors.portfolio_for``): another
firm's portfolio or import is 404; reads need view, uploads the manage permission (403). Writes
need the 'admin' token scope. See docs/trade-import.md for the columns.
"""

from __future__ import annotations

import json

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.audit.services import RequestMeta, actor_from_request
from apps.core.api import ErrorResponseSerializer, FirmScopedAPIView, StrictInputSerializer, api_schema, page_of
from apps.core.errors import DomainError
from apps.core.pagination import StandardPagination
from apps.portfolios import selectors
from apps.portfolios import trade_import as service
from apps.portfolios.trade_import_core import FIELDS

TAGS = ["portfolio imports"]
ALL_ROLES = frozenset(Role.values)
MAPPING_HELP = ("JSON object: our field -> the file's column, e.g. {\"executed_at\": \"Date\", \"symbol\": \"Symbol\"}. "
                f"Fields: {', '.join(FIELDS)}. Absent: the guess (see the preview).")
TOO_LARGE = OpenApiResponse(ErrorResponseSerializer, description="The file is over 20 MB.")
PK_PARAM = OpenApiParameter("pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The portfolio's id.")
IMPORT_PK_PARAM = OpenApiParameter("pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The import's id.")


# --- serializers ----------------------------------------------------------------------------------


class TradeImportOutput(serializers.Serializer):
    id = serializers.IntegerField()
    portfolio = serializers.IntegerField(source="portfolio_id")
    filename = serializers.CharField()
    status = serializers.CharField(help_text="pending (waiting for its mapping or a worker), running, succeeded "
                                               "(all or some rows booked), failed (nothing booked).")
    all_or_nothing = serializers.BooleanField()
    mapping = serializers.DictField(child=serializers.CharField(), help_text="Our field -> the file's column.")
    rows_total = serializers.IntegerField()
    rows_done = serializers.SerializerMethodField(help_text="Rows processed so far (live while running).")
    rows_booked = serializers.IntegerField()
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_rows_done(self, imp) -> int:
        return service.trade_import_progress(imp)[0]

    def get_created_by(self, imp) -> str | None:
        return imp.created_by.email if imp.created_by_id and imp.created_by else None


class TradeImportIssueOutput(serializers.Serializer):
    row = serializers.IntegerField(help_text="The line in the file (the header is line 1 in a plain export); "
                                             "0 for the file as a whole.")
    field = serializers.CharField(help_text="Our field (executed_at, symbol, quantity...), or row/file.")
    code = serializers.CharField(help_text="INVALID_VALUE, REQUIRED, FUTURE_DATE, UNKNOWN_SYMBOL, DUPLICATE_FILL, "
                                           "SHORT_NOT_ALLOWED, FILL_OUT_OF_ORDER, INSUFFICIENT_CASH...")
    message = serializers.CharField()


class TradeImportReportOutput(serializers.Serializer):
    stage = serializers.CharField(help_text="mapping (waiting for its mapping), queued, done.")
    format = serializers.CharField(help_text="The export recognised (e.g. Schwab transactions) or generic.")
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    headers = serializers.ListField(child=serializers.CharField())
    create_missing = serializers.BooleanField()
    outcome = serializers.CharField(help_text="imported, partial, rejected or failed; empty until finished.")
    message = serializers.CharField()
    rows = serializers.IntegerField()
    booked = serializers.IntegerField()
    rejected = serializers.IntegerField(help_text="Rows with at least one issue.")
    issues = TradeImportIssueOutput(many=True, help_text="At most 5,000 listed; issues_total counts all.")
    issues_total = serializers.IntegerField()
    instruments_created = serializers.ListField(child=serializers.CharField())


class TradeImportDetailOutput(TradeImportOutput):
    report = serializers.SerializerMethodField()

    @extend_schema_field(TradeImportReportOutput)
    def get_report(self, imp) -> dict:
        return service.report_rows(imp)


TradeImportPage = page_of("TradeImportPage", TradeImportOutput)


class PreviewRowOutput(serializers.Serializer):
    row = serializers.IntegerField()
    values = serializers.DictField(child=serializers.CharField(allow_blank=True), help_text="Column -> cell.")


class TradeImportPreviewOutput(serializers.Serializer):
    format = serializers.CharField()
    headers = serializers.ListField(child=serializers.CharField(allow_blank=True))
    mapping = serializers.DictField(child=serializers.CharField(), help_text="The guess: our field -> column.")
    fields = serializers.ListField(child=serializers.CharField(), help_text="The fields we import.")
    rows_total = serializers.IntegerField()
    sample = PreviewRowOutput(many=True)
    sha256 = serializers.CharField()


class TradeImportPreviewInput(StrictInputSerializer):
    file = serializers.FileField(help_text="A CSV of fills and cash movements, at most 20 MB.")


class TradeImportCreateInput(StrictInputSerializer):
    file = serializers.FileField(help_text="A CSV of fills and cash movements, at most 20 MB.")
    mapping = serializers.CharField(required=False, allow_blank=True, max_length=4000, help_text=MAPPING_HELP)
    all_or_nothing = serializers.BooleanField(required=False, default=True,
                                              help_text="Default true: any bad row and nothing is written.")
    create_missing = serializers.BooleanField(required=False, default=False,
                                              help_text="Create unknown symbols (asset_class column, else equity).")

    def validate_mapping(self, value: str) -> dict | None:
        if not value.strip():
            return None
        try:
            mapping = json.loads(value)
        except ValueError:
            raise serializers.ValidationError("Not JSON.") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
            raise serializers.ValidationError("A JSON object of field -> column name.")
        return mapping


# --- views ----------------------------------------------------------------------------------------


def _check_size(request) -> None:
    upload = request.data.get("file") if hasattr(request.data, "get") else None
    if upload is not None and getattr(upload, "size", 0) > service.MAX_BYTES:
        raise DomainError("FILE_TOO_LARGE", service.MSG_FILE_TOO_LARGE,
                          fields={"file": [service.MSG_FILE_TOO_LARGE]}, status_code=413)


class _PortfolioImportsView(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]
    parser_classes = [MultiPartParser, FormParser]
    write_roles = ALL_ROLES  # the portfolio's manage permission decides (a trader may hold a grant)
    write_scope = "admin"

    def object_for(self, firm, pk, **_):
        perm = selectors.VIEW if self.request.method in ("GET", "HEAD", "OPTIONS") else selectors.MANAGE
        return selectors.portfolio_for(self.request.membership, pk, perm)


class TradeImportListApi(_PortfolioImportsView):
    @api_schema(
        operation_id="portfolio_imports_list", summary="List a portfolio's trade imports",
        description="Newest first, paginated, without the report. Needs view on the portfolio.",
        parameters=[PK_PARAM, OpenApiParameter("page", OpenApiTypes.INT),
                    OpenApiParameter("page_size", OpenApiTypes.INT)],
        responses={200: TradeImportPage}, tags=TAGS,
    )
    def get(self, request, pk: int):
        portfolio = self.get_firm_object()
        paginator = StandardPagination()
        page = paginator.paginate_queryset(service.trade_import_list(portfolio), request, view=self)
        return paginator.get_paginated_response(TradeImportOutput(page, many=True).data)

    @api_schema(
        operation_id="portfolio_imports_create", summary="Import a CSV of past trades",
        description=(
            "multipart/form-data: `file`, optional `mapping` (JSON; the guess when absent), `all_or_nothing` "
            "(default true), `create_missing`. Stores the file and queues the import: 202 with the import; poll "
            "`GET /trade-imports/{id}/` for progress and the per-row report. Bad requests store nothing: a bad "
            "mapping is 400 naming `mapping.<field>`, an empty or unreadable file 400 on `file`, over 20 MB 413. "
            "Needs the manage permission on the portfolio (owners and admins by default); 'admin' scope. Audited "
            "as portfolio.trade_import_queued, then portfolio.trades_imported or portfolio.trade_import_failed."),
        parameters=[PK_PARAM], request={"multipart/form-data": TradeImportCreateInput},
        responses={202: TradeImportDetailOutput, 413: TOO_LARGE}, tags=TAGS,
    )
    def post(self, request, pk: int):
        portfolio = self.get_firm_object()
        _check_size(request)
        data = TradeImportCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        upload = values["file"]
        imp = service.trade_import_create(
            portfolio=portfolio, filename=upload.name, content=upload.read(), actor=actor_from_request(request),
            user=request.user, mapping=values.get("mapping"), all_or_nothing=values["all_or_nothing"],
            create_missing=values["create_missing"], meta=RequestMeta.from_request(request._request))
        return Response(TradeImportDetailOutput(imp).data, status=202)


class TradeImportPreviewApi(_PortfolioImportsView):
    @api_schema(
        operation_id="portfolio_imports_preview", summary="Preview a CSV: headers, guessed mapping, first rows",
        description="Reads the upload and answers what the mapping step needs; stores nothing. The guess "
                    "recognises Alpaca activities, Interactive Brokers Flex trades, Schwab and Fidelity exports, "
                    "and common header names otherwise. Needs the manage permission; 'admin' scope.",
        parameters=[PK_PARAM], request={"multipart/form-data": TradeImportPreviewInput},
        responses={200: TradeImportPreviewOutput, 413: TOO_LARGE}, tags=TAGS,
    )
    def post(self, request, pk: int):
        self.get_firm_object()
        _check_size(request)
        data = TradeImportPreviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        preview = service.trade_import_preview(content=data.validated_data["file"].read())
        return Response(TradeImportPreviewOutput({**preview, "fields": list(FIELDS)}).data)


class TradeImportDetailApi(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]

    def object_for(self, firm, pk, **_):
        return service.trade_import_get(membership=self.request.membership, pk=pk)

    @api_schema(
        operation_id="trade_imports_retrieve", summary="Get a trade import with its report",
        description="Status, progress (rows done of rows total, live while it runs) and, once finished, the "
                    "report: counts and every issue with its row (the file's line), field, code and message. "
                    "Needs view on the import's portfolio.",
        parameters=[IMPORT_PK_PARAM], responses={200: TradeImportDetailOutput}, tags=TAGS,
    )
    def get(self, request, pk: int):
        return Response(TradeImportDetailOutput(self.get_firm_object()).data)


urls = [
    path("portfolios/<int:pk>/imports/", TradeImportListApi.as_view(), name="api-trade-import-list"),
    path("portfolios/<int:pk>/imports/preview/", TradeImportPreviewApi.as_view(), name="api-trade-import-preview"),
    path("trade-imports/<int:pk>/", TradeImportDetailApi.as_view(), name="api-trade-import-detail"),
]
