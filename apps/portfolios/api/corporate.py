"""Portfolio API: corporate actions (routes in ``urls``).

A corporate action belongs to the active firm: list, create, retrieve, apply it to the firm's
portfolios, and import a CSV of them. Every member reads ('read' scope); owners and admins write
('admin' scope). Another firm's action is 404 on every verb. Amounts and ratios are decimal strings.
The rules (what a split, dividend or symbol change does to lots, positions and the journal) are in
``apps.portfolios.corporate``.
"""

from __future__ import annotations

from decimal import Decimal

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.audit.services import RequestMeta, actor_from_request
from apps.core.api import (
    FirmScopedAPIView,
    FirmScopedPrimaryKeyRelatedField,
    StrictInputSerializer,
    api_schema,
    firm_queryset,
    page_of,
)
from apps.core.errors import DomainError
from apps.core.pagination import StandardPagination
from apps.marketdata.models import AssetClass, Instrument
from apps.portfolios import corporate
from apps.portfolios.models import CorporateAction, CorporateActionKind, Portfolio

TAGS = ["corporate actions"]
SYMBOL_RE = r"^[^\x00\s]{1,32}$"
IMPORT_MAX_BYTES = 2 * 1024 * 1024
ERRORS = (400, 401, 403, 404, 409, 415, 429)
KIND_HELP = "split (or reverse split), cash_dividend or symbol_change."


def _plain(value: Decimal) -> Decimal:
    """The input without the serializer's padding zeros (2.0000000000 -> 2, 0.2400000000 -> 0.24)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _meta(request) -> RequestMeta:
    return RequestMeta.from_request(request._request)


@extend_schema_field({"type": "string", "format": "decimal", "example": "0.24", "nullable": True})
class DecimalString(serializers.Field):
    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return None if value is None else format(value, "f")


class ApplicationOutput(serializers.Serializer):
    portfolio = serializers.IntegerField(source="portfolio_id")
    portfolio_name = serializers.CharField()
    applied_at = serializers.DateTimeField()
    summary = serializers.DictField(help_text="What changed: quantities before/after, cash in lieu, dividend amount.")


class CorporateActionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text=KIND_HELP)
    symbol = serializers.CharField(source="instrument.symbol")
    instrument = serializers.IntegerField(source="instrument_id")
    ex_date = serializers.DateField(help_text="Split and symbol change: effective date. Dividend: ex-date.")
    record_date = serializers.DateField(allow_null=True)
    pay_date = serializers.DateField(allow_null=True)
    ratio_from = DecimalString(help_text="Split: old shares (a 2-for-1 split is 1 to 2).")
    ratio_to = DecimalString(help_text="Split: new shares.")
    cash_per_share = DecimalString(help_text="Dividend per share.")
    cash_in_lieu_price = DecimalString(help_text="Split of a non-fractionable stock: price paid per fractional share.")
    new_symbol = serializers.CharField(allow_blank=True)
    reference = serializers.CharField()
    applied_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class CorporateActionDetailOutput(CorporateActionOutput):
    applications = ApplicationOutput(many=True, help_text="One per portfolio it was applied to.")


CorporateActionPage = page_of("CorporateActionPage", CorporateActionOutput)


def _decimal(help_text: str):
    return serializers.DecimalField(max_digits=30, decimal_places=10, required=False, allow_null=True,
                                    help_text=help_text)


class CorporateActionInput(StrictInputSerializer):
    # plain strings (checked by the service / the view, naming the field): distinct enums named "kind" or
    # "asset_class" would collide in the schema with other apps' choice sets
    kind = serializers.CharField(max_length=16, help_text=KIND_HELP)
    symbol = serializers.RegexField(SYMBOL_RE, help_text="The instrument's symbol.")
    asset_class = serializers.CharField(max_length=16, required=False,
                                        help_text="equity, etf or crypto: when the symbol exists in several classes.")
    ex_date = serializers.DateField()
    record_date = serializers.DateField(required=False, allow_null=True, help_text="Dividend only.")
    pay_date = serializers.DateField(required=False, allow_null=True, help_text="Dividend: required.")
    ratio_from = _decimal("Split: old shares, positive.")
    ratio_to = _decimal("Split: new shares, positive.")
    cash_per_share = _decimal("Dividend: cash per share, positive.")
    cash_in_lieu_price = _decimal("Split: price per post-split share paid for fractions (non-fractionable stock).")
    new_symbol = serializers.RegexField(SYMBOL_RE, required=False, help_text="Symbol change: the new symbol.")
    reference = serializers.RegexField(r"^[^\x00]{1,128}$", required=False,
                                       help_text="Unique per firm; default kind:symbol:ex_date.")


class ApplyInput(StrictInputSerializer):
    portfolios = serializers.ListField(
        child=FirmScopedPrimaryKeyRelatedField(model=Portfolio), required=False, max_length=1000,
        help_text="Only these portfolios (default: every portfolio of the firm it concerns).")


class ApplyOutput(serializers.Serializer):
    applied = serializers.IntegerField(help_text="Applications written by this request (0 on a repeat).")
    action = CorporateActionDetailOutput()


class ImportInput(StrictInputSerializer):
    file = serializers.FileField(help_text="CSV, UTF-8, header row; columns: " + ", ".join(corporate.IMPORT_COLUMNS)
                                 + ". kind, symbol and ex_date are required; the rest per kind. At most 2 MB.")


class ImportRowOutput(serializers.Serializer):
    row = serializers.IntegerField(help_text="Line number in the file (the header is 1).")
    status = serializers.CharField(help_text="created, or exists (the firm already had its reference: no-op).")
    reference = serializers.CharField()
    id = serializers.IntegerField()


class ImportOutput(serializers.Serializer):
    created = serializers.IntegerField()
    existing = serializers.IntegerField(help_text="Rows whose reference the firm already had (no-op).")
    rows = ImportRowOutput(many=True)


def _detail(action: CorporateAction) -> dict:
    data = CorporateActionOutput(action).data
    data["applications"] = ApplicationOutput(corporate.applications_of(action), many=True).data
    return data


class _CorporateView(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]

    def object_for(self, firm, pk: int, **_):
        action = firm_queryset(CorporateAction, firm).select_related("instrument").filter(pk=pk).first()
        if action is None:
            raise NotFound("No such corporate action.")
        return action


class CorporateActionListApi(_CorporateView):
    @api_schema(
        operation_id="corporate_actions_list",
        summary="List corporate actions",
        description="The active firm's corporate actions, latest ex-date first, paginated. Filters: `kind`, `symbol`. "
        "Any member.",
        parameters=[OpenApiParameter("kind", OpenApiTypes.STR, enum=CorporateActionKind.values),
                    OpenApiParameter("symbol", OpenApiTypes.STR),
                    OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("page_size", OpenApiTypes.INT)],
        responses={200: CorporateActionPage},
        tags=TAGS,
    )
    def get(self, request):
        qs = firm_queryset(CorporateAction, request.firm).select_related("instrument").order_by("-ex_date", "-id")
        kind = request.query_params.get("kind")
        if kind:
            if kind not in CorporateActionKind.values:
                raise ValidationError({"kind": [f"One of {', '.join(CorporateActionKind.values)}."]})
            qs = qs.filter(kind=kind)
        symbol = (request.query_params.get("symbol") or "").strip().upper()
        if symbol:
            qs = qs.filter(instrument__symbol=symbol.replace("\x00", ""))
        paginator = StandardPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(CorporateActionOutput(page, many=True).data)

    @api_schema(
        operation_id="corporate_actions_create",
        summary="Enter a corporate action",
        description="A split (ratio_from, ratio_to; cash_in_lieu_price for a non-fractionable stock), a cash "
        "dividend (cash_per_share, pay_date, optional record_date) or a symbol change (new_symbol; created as an "
        "instrument when unknown). Fields of another kind, zero or negative ratios/amounts: 400 naming the field, "
        "nothing written. A reference the firm already has: 409. It is applied by `POST .../apply/` or by the "
        "daily task once effective. Owners and admins; 'admin' scope. Audited as corporate_action.created.",
        request=CorporateActionInput,
        responses={201: CorporateActionDetailOutput},
        errors=ERRORS,
        tags=TAGS,
    )
    def post(self, request):
        data = CorporateActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = {k: _plain(v) if isinstance(v, Decimal) else v for k, v in data.validated_data.items()}
        symbol = values.pop("symbol").upper()
        asset_class = values.pop("asset_class", None)
        if asset_class and asset_class not in (AssetClass.EQUITY, AssetClass.ETF, AssetClass.CRYPTO):
            raise ValidationError({"asset_class": ["One of equity, etf, crypto."]})
        qs = Instrument.objects.filter(symbol=symbol).exclude(asset_class=AssetClass.OPTION)
        if asset_class:
            qs = qs.filter(asset_class=asset_class)
        found = list(qs[:2])
        if len(found) != 1:
            raise ValidationError({"symbol": ["Unknown symbol."] if not found
                                   else ["Exists in several asset classes; give asset_class."]})
        action = corporate.corporate_action_create(firm_id=request.firm.pk, instrument=found[0],
                                                   actor=actor_from_request(request), meta=_meta(request), **values)
        return Response(_detail(action), status=201)


class CorporateActionDetailApi(_CorporateView):
    @api_schema(
        operation_id="corporate_actions_retrieve",
        summary="Get a corporate action",
        description="One action with the portfolios it was applied to. Another firm's action is 404.",
        responses={200: CorporateActionDetailOutput},
        tags=TAGS,
    )
    def get(self, request, pk: int):
        return Response(_detail(self.get_firm_object()))


class CorporateActionApplyApi(_CorporateView):
    @api_schema(
        operation_id="corporate_actions_apply",
        summary="Apply a corporate action",
        description="Applies it to every portfolio of the firm it concerns (or `portfolios`), once per portfolio: a "
        "repeat writes nothing (`applied` 0). Splits and symbol changes: once the ex-date has come (409 "
        "NOT_YET_EFFECTIVE), refused with 409 OUT_OF_ORDER when fills dated on or after it are booked; a split "
        "leaving fractions of a non-fractionable stock needs `cash_in_lieu_price` (400). Dividends: on or after the "
        "pay date (409 NOT_YET_PAYABLE). Owners and admins; 'admin' scope. Audited as corporate_action.applied.",
        request=ApplyInput,
        responses={200: ApplyOutput},
        errors=ERRORS,
        tags=TAGS,
    )
    def post(self, request, pk: int):
        action = self.get_firm_object()
        data = ApplyInput(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        portfolios = data.validated_data.get("portfolios")
        made = corporate.corporate_action_apply(action=action, actor=actor_from_request(request), meta=_meta(request),
                                                portfolios=portfolios)
        action.refresh_from_db()
        return Response({"applied": len(made), "action": _detail(action)})


class CorporateActionImportApi(_CorporateView):
    parser_classes = [MultiPartParser, FormParser]

    @api_schema(
        operation_id="corporate_actions_import",
        summary="Import corporate actions (CSV)",
        description="multipart/form-data with `file`: a CSV with a header row and the columns "
        + ", ".join(corporate.IMPORT_COLUMNS) + " (kind: split, cash_dividend or symbol_change; dates YYYY-MM-DD). "
        "All or nothing: any bad row is a 400 IMPORT_INVALID whose fields name each row (`row 3`: the reasons) and "
        "nothing is written. A row whose reference the firm already has is reported `exists`, so importing the same "
        "file again is a no-op. Owners and admins; 'admin' scope. Each action is audited as corporate_action.created.",
        request={"multipart/form-data": ImportInput},
        responses={201: ImportOutput},
        errors=ERRORS,
        tags=TAGS,
    )
    def post(self, request):
        data = ImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise DomainError("FILE_TOO_LARGE", "At most 2 MB.", fields={"file": ["At most 2 MB."]})
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError({"file": ["Not UTF-8 text."]}) from None
        if "\x00" in text:
            raise ValidationError({"file": ["Not a text file."]})
        report = corporate.corporate_actions_import(firm_id=request.firm.pk, text=text,
                                                    actor=actor_from_request(request), meta=_meta(request))
        return Response(ImportOutput(report).data, status=201)


urls = [
    path("corporate-actions/", CorporateActionListApi.as_view(), name="api-corporate-action-list"),
    path("corporate-actions/import/", CorporateActionImportApi.as_view(), name="api-corporate-action-import"),
    path("corporate-actions/<int:pk>/", CorporateActionDetailApi.as_view(), name="api-corporate-action-detail"),
    path("corporate-actions/<int:pk>/apply/", CorporateActionApplyApi.as_view(), name="api-corporate-action-apply"),
]
