"""Portfolio API: tax entities, portfolios, their positions, lots, realized gains, journal, cash postings
and per-portfolio grants (routes in ``urls``).

Every portfolio route resolves the portfolio with ``selectors.portfolio_for`` before any role or scope
check: another firm's portfolio, and a restricted one the member may not view, are 404; a visible one
the member lacks the permission for is 403. Reads need the 'read' token scope, writes 'admin'.
Amounts are decimal strings (exact, as the ledger stores them).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from django.db.models import Prefetch
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.models import MANAGE_ROLES, Membership, Role
from apps.audit.services import RequestMeta, actor_from_request
from apps.core.api import NO_CONTENT, FirmScopedAPIView, StrictInputSerializer, api_schema, page_of, text_field
from apps.core.grants import object_grant, object_revoke
from apps.core.pagination import StandardPagination
from apps.marketdata.models import Instrument
from apps.portfolios import selectors, services
from apps.portfolios.lots import trade_date
from apps.portfolios.models import CostBasisMethod, EntryKind, JournalEntry, JournalLine, PortfolioMode, TaxEntity

TAGS = ["portfolios"]
SYMBOL_RE = re.compile(r"^[^\x00\s]{1,32}$")
PERM_NAMES = {"view": selectors.VIEW, "trade": selectors.TRADE, "manage": selectors.MANAGE}
PERM_SHORT = {v: k for k, v in PERM_NAMES.items()}
ALL_ROLES = frozenset(Role.values)
CASH_KINDS = [str(k) for k in services.CASH_KINDS]
NAME_MAX = 120
IDEMPOTENCY_MAX = 128


def _field_error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def _meta(request) -> RequestMeta:
    return RequestMeta.from_request(request._request)


# --- fields and output serializers ---------------------------------------------------------------


@extend_schema_field({"type": "string", "format": "decimal", "example": "1234.50"})
class DecimalString(serializers.Field):
    """An exact decimal as a string: no exponent, no trailing zeros (the ledger's numeric scale is not a unit)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Decimal) -> str:
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text


class TaxEntityOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()


TaxEntityPage = page_of("TaxEntityPage", TaxEntityOutput)


class TaxEntityInput(StrictInputSerializer):
    name = text_field(max_length=NAME_MAX)


class PortfolioOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    base_currency = serializers.CharField()
    mode = serializers.ChoiceField(choices=PortfolioMode.choices)
    cost_basis_method = serializers.ChoiceField(choices=CostBasisMethod.choices)
    allow_short = serializers.BooleanField()
    benchmark = serializers.CharField(source="benchmark.symbol", allow_null=True, default=None,
                                      help_text="The benchmark's symbol, or null.")
    tax_entity = TaxEntityOutput()
    restricted = serializers.BooleanField(help_text="Traders, analysts and compliance need an explicit grant.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


PortfolioPage = page_of("PortfolioPage", PortfolioOutput)


class PortfolioDetailOutput(PortfolioOutput):
    cash = DecimalString(help_text="Cash from the journal, everything posted.")
    settled_cash = DecimalString(help_text="Cash settled by today (trades settle T+1 for US equities).")
    permissions = serializers.ListField(
        child=serializers.CharField(), help_text="What the requesting member may do with it: view, trade, manage.")


class PortfolioCreateInput(StrictInputSerializer):
    name = text_field(max_length=NAME_MAX)
    base_currency = serializers.ChoiceField(choices=["USD"], required=False, help_text="Only USD for now.")
    mode = serializers.ChoiceField(choices=PortfolioMode.choices, required=False, help_text="Default paper.")
    cost_basis_method = serializers.ChoiceField(choices=CostBasisMethod.choices, required=False,
                                                help_text="Default fifo.")
    allow_short = serializers.BooleanField(required=False)
    benchmark = serializers.RegexField(SYMBOL_RE.pattern, required=False, allow_null=True,
                                       help_text="Symbol of a stored instrument, e.g. SPY.")
    tax_entity = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1,
                                          help_text="A tax entity of the firm; the firm's default one when absent.")
    restricted = serializers.BooleanField(required=False)


class PortfolioUpdateInput(PortfolioCreateInput):
    min_fields = 1
    name = text_field(max_length=NAME_MAX, required=False)


class PositionOutput(serializers.Serializer):
    symbol = serializers.CharField(source="instrument.symbol")
    asset_class = serializers.CharField(source="instrument.asset_class")
    quantity = DecimalString(help_text="Negative when short.")
    cost = DecimalString(help_text="Signed book cost of the open lots (short: negative).")
    realized = DecimalString(help_text="Realized P&L so far (before wash-sale adjustments).")
    opened_at = serializers.DateTimeField(allow_null=True)


PositionPage = page_of("PositionPage", PositionOutput)


class LotOutput(serializers.Serializer):
    lot_id = serializers.CharField()
    symbol = serializers.CharField(source="instrument.symbol")
    quantity = DecimalString(help_text="Open quantity (negative for a short lot; 0 once closed).")
    original_quantity = DecimalString()
    cost = DecimalString(help_text="Paid (long) or received (short), fees included.")
    basis_adjustment = DecimalString(help_text="Disallowed wash-sale losses added to the basis.")
    basis = DecimalString()
    acquired = serializers.DateTimeField()
    holding_start = serializers.DateField(help_text="Start of the holding period (wash sales tack it back).")
    closed_at = serializers.DateTimeField(allow_null=True)


LotPage = page_of("LotPage", LotOutput)


class RealizedGainOutput(serializers.Serializer):
    symbol = serializers.CharField(source="instrument.symbol")
    lot_id = serializers.CharField()
    fill_id = serializers.CharField(source="fill.fill_id")
    direction = serializers.CharField(help_text="long (a sale closed a long lot) or short (a cover).")
    quantity = DecimalString()
    acquired = serializers.DateTimeField()
    sold = serializers.DateTimeField()
    holding_start = serializers.DateField()
    term = serializers.CharField(help_text="short, or long when held more than one year.")
    proceeds = DecimalString()
    cost_basis = DecimalString()
    gain = DecimalString(help_text="Before the wash-sale adjustment.")
    wash_code = serializers.CharField(help_text="W when a wash sale disallowed part of the loss.")
    disallowed = DecimalString(help_text="Disallowed loss (positive), Form 8949 column (g).")
    adjusted_gain = DecimalString(help_text="gain + disallowed.")
    tax_year = serializers.IntegerField()


class GainTotalsOutput(serializers.Serializer):
    count = serializers.IntegerField()
    proceeds = DecimalString()
    cost_basis = DecimalString()
    gain = DecimalString()
    disallowed = DecimalString()
    adjusted_gain = DecimalString()


class GainTotalsByTermOutput(serializers.Serializer):
    short = GainTotalsOutput()
    long = GainTotalsOutput()
    all = GainTotalsOutput()


class RealizedGainPage(page_of("RealizedGainResults", RealizedGainOutput)):
    totals = GainTotalsByTermOutput(help_text="Over every record matching the filters, not only this page.")


class JournalLineOutput(serializers.Serializer):
    account = serializers.CharField()
    amount = DecimalString(help_text="Debit positive, credit negative; the lines of an entry sum to 0.")
    symbol = serializers.CharField(source="instrument.symbol", allow_null=True, default=None)
    memo = serializers.CharField()


class JournalEntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=EntryKind.choices)
    trade_date = serializers.DateField()
    settle_date = serializers.DateField()
    posted_at = serializers.DateTimeField()
    memo = serializers.CharField()
    fill_id = serializers.CharField(source="fill.fill_id", allow_null=True, default=None)
    idempotency_key = serializers.CharField()
    lines = JournalLineOutput(many=True)


JournalPage = page_of("JournalPage", JournalEntryOutput)


class CashInput(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=CASH_KINDS)
    amount = serializers.DecimalField(
        max_digits=20, decimal_places=8,
        help_text="Positive for deposits, withdrawals and fees; signed (cash in positive) for interest and "
                  "adjustments. Not zero.")
    on = serializers.DateField(required=False, help_text="Trade and settlement date; today when absent.")
    memo = serializers.CharField(required=False, allow_blank=True, max_length=300,
                                 help_text="Required (the reason) for adjustments.")
    idempotency_key = serializers.RegexField(r"^[^\x00]{1,128}$", required=False,
                                             help_text="Or the Idempotency-Key header: a repeat writes nothing.")


class CashOutput(serializers.Serializer):
    entry = JournalEntryOutput()
    created = serializers.BooleanField(help_text="False when the idempotency key was already used.")
    cash = DecimalString()


class GrantOutput(serializers.Serializer):
    user = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    perms = serializers.ListField(child=serializers.CharField(), help_text="Granted: view, trade, manage.")


class GrantInput(StrictInputSerializer):
    user = serializers.EmailField(help_text="The member's email.")
    perm = serializers.ChoiceField(choices=list(PERM_NAMES))


# --- query parameters -----------------------------------------------------------------------------

PAGE_PARAMS = [
    OpenApiParameter("page", OpenApiTypes.INT, description="Page number (from 1)."),
    OpenApiParameter("page_size", OpenApiTypes.INT, description="Rows per page (default 50, max 500)."),
]


def _choice(params, name: str, choices, default=None):
    value = params.get(name)
    if value in (None, ""):
        return default
    if value not in choices:
        raise _field_error(name, f"One of {', '.join(choices)}.")
    return value


def _date(params, name: str) -> date | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _field_error(name, "Use YYYY-MM-DD.") from None


def _symbol(params) -> str | None:
    value = (params.get("symbol") or "").strip().upper()
    if not value:
        return None
    if not SYMBOL_RE.match(value):
        raise _field_error("symbol", "A symbol of 1 to 32 characters.")
    return value


def _paginate(view, request, qs, serializer_class, **extra):
    paginator = StandardPagination()
    page = paginator.paginate_queryset(qs, request, view=view)
    response = paginator.get_paginated_response(serializer_class(page, many=True).data)
    response.data.update(extra)
    return response


# --- views ----------------------------------------------------------------------------------------


class _PortfoliosView(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]


class TaxEntityListApi(_PortfoliosView):
    @api_schema(
        operation_id="tax_entities_list", summary="List tax entities",
        description="The firm's tax entities (taxpayers; wash-sale rules apply across their portfolios), by name.",
        parameters=PAGE_PARAMS, responses={200: TaxEntityPage}, tags=TAGS,
    )
    def get(self, request):
        return _paginate(self, request, TaxEntity.objects.for_firm(request.firm.pk).order_by("name", "id"),
                         TaxEntityOutput)

    @api_schema(
        operation_id="tax_entities_create", summary="Create a tax entity",
        description="Owners and admins; 'admin' scope. A name already used is 409 naming `name`. "
                    "Audited as tax_entity.created.",
        request=TaxEntityInput, responses={201: TaxEntityOutput}, tags=TAGS,
    )
    def post(self, request):
        data = TaxEntityInput(data=request.data)
        data.is_valid(raise_exception=True)
        entity = services.tax_entity_create(firm_id=request.firm.pk, name=data.validated_data["name"],
                                            actor=actor_from_request(request), meta=_meta(request))
        return Response(TaxEntityOutput(entity).data, status=201)


def _benchmark(symbol: str | None) -> Instrument | None:
    if symbol is None:
        return None
    found = list(Instrument.objects.filter(symbol=symbol.strip().upper())[:2])
    if len(found) != 1:
        raise _field_error("benchmark", "Unknown symbol." if not found else "Ambiguous symbol.")
    return found[0]


def _portfolio_options(firm, values: dict) -> dict:
    """API input -> service keyword arguments (symbols and ids resolved in the firm)."""
    options = {k: v for k, v in values.items() if k not in ("benchmark", "tax_entity")}
    if "benchmark" in values:
        options["benchmark"] = _benchmark(values["benchmark"])
    if "tax_entity" in values:
        entity = TaxEntity.objects.for_firm(firm.pk).filter(pk=values["tax_entity"]).first()
        if entity is None:
            raise _field_error("tax_entity", "No such tax entity in this firm.")
        options["tax_entity"] = entity
    return options


def _detail(request, portfolio) -> dict:
    perms = selectors.portfolio_perms(request.membership, portfolio)
    data = {
        **{f: getattr(portfolio, f) for f in ("id", "name", "base_currency", "mode", "cost_basis_method",
                                                "allow_short", "restricted", "created_at", "updated_at")},
        "benchmark": portfolio.benchmark, "tax_entity": portfolio.tax_entity,
        "cash": selectors.cash_balance(portfolio.pk),
        # settlement runs on the market's calendar: "today" is the New York trade date, not the UTC one
        "settled_cash": selectors.cash_balance(portfolio.pk, settled_on=trade_date(timezone.now())),
        "permissions": [PERM_SHORT[p] for p in (selectors.VIEW, selectors.TRADE, selectors.MANAGE) if p in perms],
    }
    return PortfolioDetailOutput(data).data


class PortfolioListApi(_PortfoliosView):
    @api_schema(
        operation_id="portfolios_list", summary="List portfolios",
        description="The portfolios of the firm the member may view, by name: all for owners and admins; "
                    "unrestricted ones plus granted restricted ones for everyone else.",
        parameters=PAGE_PARAMS, responses={200: PortfolioPage}, tags=TAGS,
    )
    def get(self, request):
        qs = selectors.portfolios_visible(request.membership).order_by("name", "id")
        return _paginate(self, request, qs, PortfolioOutput)

    @api_schema(
        operation_id="portfolios_create", summary="Create a portfolio",
        description="Owners and admins; 'admin' scope. Without `tax_entity` the portfolio joins the firm's default "
                    "tax entity. An unknown `benchmark` symbol or `tax_entity` is 400 naming it; a name already "
                    "used is 409. Audited as portfolio.created.",
        request=PortfolioCreateInput, responses={201: PortfolioDetailOutput}, tags=TAGS,
    )
    def post(self, request):
        data = PortfolioCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        name = values.pop("name")
        portfolio = services.portfolio_create(firm_id=request.firm.pk, name=name, actor=actor_from_request(request),
                                              meta=_meta(request), **_portfolio_options(request.firm, values))
        portfolio = selectors.portfolio_for(request.membership, portfolio.pk)
        return Response(_detail(request, portfolio), status=201)


class _PortfolioObjectView(_PortfoliosView):
    """A route under portfolios/<pk>/: reads need view, writes ``write_perm`` on the portfolio. Roles are
    decided by the portfolio's permissions (a trader may hold a manage grant), not by the role alone."""

    write_roles = ALL_ROLES
    write_perm = selectors.MANAGE

    def object_for(self, firm, pk, **_):
        perm = selectors.VIEW if self.request.method in ("GET", "HEAD", "OPTIONS") else self.write_perm
        return selectors.portfolio_for(self.request.membership, pk, perm)


PK_PARAM = OpenApiParameter("pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The portfolio's id.")


class PortfolioDetailApi(_PortfolioObjectView):
    @api_schema(
        operation_id="portfolios_retrieve", summary="Get a portfolio",
        description="Settings, cash and settled cash from the journal, and the member's permissions on it. "
                    "Another firm's portfolio, or a restricted one without a grant, is 404.",
        parameters=[PK_PARAM], responses={200: PortfolioDetailOutput}, tags=TAGS,
    )
    def get(self, request, pk: int):
        return Response(_detail(request, self.get_firm_object()))

    @api_schema(
        operation_id="portfolios_update", summary="Change a portfolio's settings",
        description="Needs the manage permission; 'admin' scope. The cost-basis method and the tax entity are frozen "
                    "once fills are booked (409 naming the field). `benchmark: null` clears the benchmark. "
                    "Audited as portfolio.updated.",
        parameters=[PK_PARAM], request=PortfolioUpdateInput, responses={200: PortfolioDetailOutput}, tags=TAGS,
    )
    def patch(self, request, pk: int):
        data = PortfolioUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        changes = _portfolio_options(request.firm, dict(data.validated_data))
        portfolio = services.portfolio_update(portfolio=self.get_firm_object(), actor=actor_from_request(request),
                                              meta=_meta(request), **changes)
        portfolio = selectors.portfolio_for(request.membership, portfolio.pk)
        return Response(_detail(request, portfolio))


class PortfolioPositionsApi(_PortfolioObjectView):
    @api_schema(
        operation_id="portfolios_positions", summary="Open positions of a portfolio",
        description="Quantity, book cost and realized P&L per instrument, by symbol (market value and unrealized "
                    "P&L are under holdings/).",
        parameters=[PK_PARAM, *PAGE_PARAMS], responses={200: PositionPage}, tags=TAGS,
    )
    def get(self, request, pk: int):
        return _paginate(self, request, selectors.positions_open(self.get_firm_object().pk), PositionOutput)


LOT_STATUSES = ("open", "closed", "all")


class PortfolioLotsApi(_PortfolioObjectView):
    @api_schema(
        operation_id="portfolios_lots", summary="Tax lots of a portfolio",
        description="Open lots by default (`status=closed` or `all` for history), by symbol then acquisition; "
                    "`symbol` filters one instrument. A bad parameter is 400 naming it.",
        parameters=[
            PK_PARAM,
            OpenApiParameter("status", OpenApiTypes.STR, enum=list(LOT_STATUSES), description="Default open."),
            OpenApiParameter("symbol", {"type": "string", "pattern": SYMBOL_RE.pattern}),
            *PAGE_PARAMS,
        ],
        responses={200: LotPage}, tags=TAGS,
    )
    def get(self, request, pk: int):
        params = request.query_params
        status = _choice(params, "status", LOT_STATUSES, "open")
        symbol = _symbol(params)
        qs = selectors.lots_of(self.get_firm_object().pk, status=status, symbol=symbol)
        return _paginate(self, request, qs, LotOutput)


class PortfolioRealizedGainsApi(_PortfolioObjectView):
    @api_schema(
        operation_id="portfolios_realized_gains", summary="Realized gains of a portfolio",
        description="One record per closed lot part, by sale date (Form 8949 style), with totals per term over "
                    "every matching record: proceeds, cost basis, gain, disallowed wash-sale loss and adjusted gain. "
                    "`year` (tax year) and `term` (short|long) filter.",
        parameters=[
            PK_PARAM,
            OpenApiParameter("year", {"type": "integer", "minimum": 1900, "maximum": 9999}),
            OpenApiParameter("term", OpenApiTypes.STR, enum=["short", "long"]),
            *PAGE_PARAMS,
        ],
        responses={200: RealizedGainPage}, tags=TAGS,
    )
    def get(self, request, pk: int):
        params = request.query_params
        year = None
        raw = (params.get("year") or "").strip()
        if raw:
            if not re.fullmatch(r"\d{4}", raw) or int(raw) < 1900:
                raise _field_error("year", "A year from 1900 to 9999.")
            year = int(raw)
        term = _choice(params, "term", ("short", "long"))
        portfolio = self.get_firm_object()
        qs = selectors.realized_gains(portfolio.pk, year=year, term=term)
        totals = selectors.realized_gain_totals(portfolio.pk, year=year, term=term)
        return _paginate(self, request, qs, RealizedGainOutput, totals=GainTotalsByTermOutput(totals).data)


class PortfolioJournalApi(_PortfolioObjectView):
    @api_schema(
        operation_id="portfolios_journal", summary="Journal of a portfolio",
        description="Journal entries with their lines, newest first. `kind` filters the entry kind; `start` and "
                    "`end` (YYYY-MM-DD, inclusive) the trade date. A bad parameter is 400 naming it.",
        parameters=[
            PK_PARAM,
            OpenApiParameter("kind", OpenApiTypes.STR, enum=EntryKind.values),
            OpenApiParameter("start", OpenApiTypes.DATE),
            OpenApiParameter("end", OpenApiTypes.DATE),
            *PAGE_PARAMS,
        ],
        responses={200: JournalPage}, tags=TAGS,
    )
    def get(self, request, pk: int):
        params = request.query_params
        kind = _choice(params, "kind", EntryKind.values)
        start, end = _date(params, "start"), _date(params, "end")
        if start and end and start > end:
            raise _field_error("start", "start must not be after end.")
        qs = selectors.journal_entries(self.get_firm_object().pk, kind=kind, start=start, end=end)
        return _paginate(self, request, qs, JournalEntryOutput)


def _entry(entry_id: int) -> JournalEntry:
    lines = JournalLine.objects.select_related("instrument").order_by("id")
    return (JournalEntry.objects.select_related("fill").prefetch_related(Prefetch("lines", queryset=lines))
            .get(pk=entry_id))


class PortfolioCashApi(_PortfolioObjectView):
    @api_schema(
        operation_id="portfolios_cash_post", summary="Post cash to a portfolio",
        description="A deposit, withdrawal, fee, interest or adjustment (with a reason in `memo`) as a balanced "
                    "journal entry. Needs the manage permission; 'admin' scope. A withdrawal beyond the cash balance "
                    "is 400 INSUFFICIENT_CASH. With an idempotency key (`Idempotency-Key` header or "
                    "`idempotency_key`) a repeat returns the first entry with `created: false` and writes nothing. "
                    "Audited as portfolio.cash_<kind>.",
        parameters=[PK_PARAM, OpenApiParameter("Idempotency-Key", {"type": "string", "maxLength": IDEMPOTENCY_MAX},
                                               OpenApiParameter.HEADER)],
        request=CashInput, responses={201: CashOutput, 200: CashOutput}, tags=TAGS,
    )
    def post(self, request, pk: int):
        portfolio = self.get_firm_object()
        data = CashInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        header = request.headers.get("Idempotency-Key", "").strip()
        key = values.get("idempotency_key") or header
        if len(key) > IDEMPOTENCY_MAX or "\x00" in key:
            raise _field_error("idempotency_key", f"At most {IDEMPOTENCY_MAX} characters.")
        if header and values.get("idempotency_key") and header != values["idempotency_key"]:
            raise _field_error("idempotency_key", "Differs from the Idempotency-Key header.")
        entry = services.cash_post(portfolio=portfolio, kind=values["kind"], amount=values["amount"],
                                   actor=actor_from_request(request), on=values.get("on"),
                                   memo=values.get("memo", ""), idempotency_key=key, meta=_meta(request))
        created = entry is not None
        if entry is None:
            entry = JournalEntry.objects.get(portfolio=portfolio, idempotency_key=key)
        body = {"entry": _entry(entry.pk), "created": created, "cash": selectors.cash_balance(portfolio.pk)}
        return Response(CashOutput(body).data, status=201 if created else 200)


def _member(firm, email: str) -> Membership:
    membership = (Membership.objects.filter(firm_id=firm.pk, user__email__iexact=email.strip())
                  .select_related("user").first())
    if membership is None:
        raise _field_error("user", "Not a member of this firm.")
    return membership


class PortfolioGrantsApi(_PortfolioObjectView):
    """Owners and admins grant view, trade or manage on one portfolio to a member."""

    required_roles = MANAGE_ROLES

    def _grants(self, portfolio) -> Response:
        return Response(GrantOutput(selectors.portfolio_grants(portfolio), many=True).data)

    @api_schema(
        operation_id="portfolios_grants_list", summary="Grants on a portfolio",
        description="Members with explicit permissions on this portfolio (beyond their role's defaults), by email. "
                    "Owners and admins only.",
        parameters=[PK_PARAM], responses={200: GrantOutput(many=True)}, tags=TAGS,
    )
    def get(self, request, pk: int):
        return self._grants(self.get_firm_object())

    @api_schema(
        operation_id="portfolios_grants_add", summary="Grant a permission on a portfolio",
        description="`perm` view, trade or manage to the member with email `user` (400 naming `user` when not a "
                    "member of the firm). Granting twice is harmless. Owners and admins; 'admin' scope. "
                    "Audited as grant.added. Returns the grants.",
        parameters=[PK_PARAM], request=GrantInput, responses={201: GrantOutput(many=True)}, tags=TAGS,
    )
    def post(self, request, pk: int):
        portfolio = self.get_firm_object()
        data = GrantInput(data=request.data)
        data.is_valid(raise_exception=True)
        member = _member(request.firm, data.validated_data["user"])
        object_grant(perm=PERM_NAMES[data.validated_data["perm"]], user=member.user, obj=portfolio,
                     actor=actor_from_request(request), meta=_meta(request))
        response = self._grants(portfolio)
        response.status_code = 201
        return response

    @api_schema(
        operation_id="portfolios_grants_remove", summary="Revoke a permission on a portfolio",
        description="Removes the grant `perm` of the member with email `user` (query parameters; 400 naming the "
                    "parameter when missing or unknown). Owners and admins; 'admin' scope. Audited as grant.removed.",
        parameters=[
            PK_PARAM,
            OpenApiParameter("user", OpenApiTypes.EMAIL, required=True),
            OpenApiParameter("perm", OpenApiTypes.STR, enum=list(PERM_NAMES), required=True),
        ],
        responses=NO_CONTENT, errors=(400, 401, 403, 404, 429), tags=TAGS,
    )
    def delete(self, request, pk: int):
        portfolio = self.get_firm_object()
        params = request.query_params
        perm = _choice(params, "perm", list(PERM_NAMES))
        email = (params.get("user") or "").strip()
        if not email:
            raise _field_error("user", "This field is required.")
        if perm is None:
            raise _field_error("perm", "This field is required.")
        member = _member(request.firm, email)
        object_revoke(perm=PERM_NAMES[perm], user=member.user, obj=portfolio, actor=actor_from_request(request),
                      meta=_meta(request))
        return Response(status=204)


urls = [
    path("tax-entities/", TaxEntityListApi.as_view(), name="api-tax-entity-list"),
    path("portfolios/", PortfolioListApi.as_view(), name="api-portfolio-list"),
    path("portfolios/<int:pk>/", PortfolioDetailApi.as_view(), name="api-portfolio-detail"),
    path("portfolios/<int:pk>/positions/", PortfolioPositionsApi.as_view(), name="api-portfolio-positions"),
    path("portfolios/<int:pk>/lots/", PortfolioLotsApi.as_view(), name="api-portfolio-lots"),
    path("portfolios/<int:pk>/realized-gains/", PortfolioRealizedGainsApi.as_view(),
         name="api-portfolio-realized-gains"),
    path("portfolios/<int:pk>/journal/", PortfolioJournalApi.as_view(), name="api-portfolio-journal"),
    path("portfolios/<int:pk>/cash/", PortfolioCashApi.as_view(), name="api-portfolio-cash"),
    path("portfolios/<int:pk>/grants/", PortfolioGrantsApi.as_view(), name="api-portfolio-grants"),
]
