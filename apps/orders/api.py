"""Orders API: place (Alpaca's field names plus ``portfolio``), preview, list, detail with events and fills,
cancel, replace, cancel-all; executions; the kill switch and limits (routes in ``urls``).

Every order route resolves the order in the firm first and then its portfolio for the member: another
firm's order, or one in a restricted portfolio the member may not view, is 404 for every method. Writes
need the 'trade' token scope and the trade permission on the portfolio (owners, admins and traders by
default; grants narrow or widen it). Numbers are decimal strings, as the ledger keeps them.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.models import AUDIT_ROLES, MANAGE_ROLES, Role
from apps.audit.models import ActorType
from apps.audit.services import RequestMeta, actor_from_request
from apps.core.api import FirmScopedAPIView, StrictInputSerializer, api_schema, page_of
from apps.core.errors import DomainError, error_body
from apps.core.pagination import StandardPagination
from apps.orders import selectors, services
from apps.orders.core import OPEN, TERMINAL, Leg, OrderClass, OrderSpec, OrderType, Side, Status, TimeInForce
from apps.orders.models import Order, OrderEvent, Origin
from apps.portfolios import selectors as portfolio_selectors
from apps.portfolios.api.portfolios import DecimalString

TAGS = ["orders"]
ALL_ROLES = frozenset(Role.values)
PRICE = {"max_digits": 24, "decimal_places": 10}
REPLAY_HEADER = "Idempotent-Replayed"


def _values(enum) -> list[str]:
    return [m.value for m in enum]


# --- input ------------------------------------------------------------------------------------------------


class TakeProfitInput(StrictInputSerializer):
    limit_price = serializers.DecimalField(**PRICE)


class StopLossInput(StrictInputSerializer):
    stop_price = serializers.DecimalField(**PRICE)
    limit_price = serializers.DecimalField(**PRICE, required=False, allow_null=True,
                                           help_text="Makes the stop loss a stop-limit.")


class OrderInput(StrictInputSerializer):
    portfolio = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="The portfolio to trade.")
    symbol = serializers.RegexField(r"^[^\x00\s]{1,32}$", help_text="e.g. AAPL, BTC/USD, or an OCC option symbol.")
    qty = serializers.DecimalField(**PRICE, required=False, allow_null=True, help_text="Shares; or give notional.")
    notional = serializers.DecimalField(**PRICE, required=False, allow_null=True,
                                        help_text="Dollar amount (market orders only); or give qty.")
    side = serializers.ChoiceField(choices=_values(Side))
    type = serializers.ChoiceField(choices=_values(OrderType))
    time_in_force = serializers.ChoiceField(choices=_values(TimeInForce))
    limit_price = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    stop_price = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    trail_price = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    trail_percent = serializers.DecimalField(**PRICE, required=False, allow_null=True)
    extended_hours = serializers.BooleanField(required=False, default=False)
    client_order_id = serializers.RegexField(r"^[\x21-\x7e]{1,128}$", required=False,
                                             help_text="Your idempotency key (printable ASCII, at most 128); "
                                                       "generated when absent.")
    order_class = serializers.ChoiceField(choices=_values(OrderClass), required=False, default=OrderClass.SIMPLE)
    take_profit = TakeProfitInput(required=False, allow_null=True)
    stop_loss = StopLossInput(required=False, allow_null=True)

    def to_spec(self, idempotency_key: str | None = None) -> OrderSpec:
        v = self.validated_data
        tp, sl = v.get("take_profit"), v.get("stop_loss")
        return OrderSpec(
            symbol=v["symbol"].upper(), side=Side(v["side"]), type=OrderType(v["type"]),
            time_in_force=TimeInForce(v["time_in_force"]), qty=v.get("qty"), notional=v.get("notional"),
            limit_price=v.get("limit_price"), stop_price=v.get("stop_price"), trail_price=v.get("trail_price"),
            trail_percent=v.get("trail_percent"), extended_hours=v.get("extended_hours", False),
            order_class=OrderClass(v.get("order_class") or OrderClass.SIMPLE),
            take_profit=Leg(limit_price=tp["limit_price"]) if tp else None,
            stop_loss=Leg(stop_price=sl["stop_price"], limit_price=sl.get("limit_price")) if sl else None,
            client_order_id=v.get("client_order_id") or idempotency_key or "")


class ReplaceInput(StrictInputSerializer):
    min_fields = 1
    qty = serializers.DecimalField(**PRICE, required=False, help_text="The replacement order's quantity.")
    limit_price = serializers.DecimalField(**PRICE, required=False)
    stop_price = serializers.DecimalField(**PRICE, required=False)
    trail = serializers.DecimalField(**PRICE, required=False, help_text="New trail_price or trail_percent.")
    time_in_force = serializers.ChoiceField(choices=_values(TimeInForce), required=False)


class KillSwitchInput(StrictInputSerializer):
    active = serializers.BooleanField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=300)


# --- output -----------------------------------------------------------------------------------------------


class OrderOutput(serializers.Serializer):
    """Alpaca's order object (same names), plus portfolio, rejection and origin."""

    id = serializers.UUIDField()
    client_order_id = serializers.CharField()
    portfolio = serializers.IntegerField(source="portfolio_id")
    symbol = serializers.CharField()
    asset_class = serializers.CharField()
    side = serializers.CharField()
    type = serializers.CharField()
    order_type = serializers.CharField(source="type")
    time_in_force = serializers.CharField()
    order_class = serializers.CharField()
    qty = DecimalString(allow_null=True)
    notional = DecimalString(allow_null=True)
    filled_qty = DecimalString()
    filled_avg_price = DecimalString(allow_null=True)
    limit_price = DecimalString(allow_null=True)
    stop_price = DecimalString(allow_null=True)
    trail_price = DecimalString(allow_null=True)
    trail_percent = DecimalString(allow_null=True)
    extended_hours = serializers.BooleanField()
    status = serializers.CharField()
    commission = DecimalString(source="fees")
    reject_code = serializers.CharField(help_text="Set when a pre-trade check or the broker refused it.")
    reject_reason = serializers.CharField()
    leg = serializers.CharField(help_text="take_profit / stop_loss for a bracket, OCO or OTO leg.")
    parent = serializers.UUIDField(source="parent_id", allow_null=True)
    replaces = serializers.UUIDField(source="replaces_id", allow_null=True)
    broker = serializers.CharField()
    broker_order_id = serializers.CharField()
    origin = serializers.CharField()
    source = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    filled_at = serializers.DateTimeField(allow_null=True)
    canceled_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    replaced_at = serializers.DateTimeField(allow_null=True)


class OrderWithLegsOutput(OrderOutput):
    legs = OrderOutput(many=True, source="legs.all")


OrderPage = page_of("OrderPage", OrderWithLegsOutput)


class OrderEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    status_before = serializers.CharField()
    status_after = serializers.CharField()
    received_at = serializers.DateTimeField()
    event_at = serializers.DateTimeField()
    source = serializers.CharField()
    exec_id = serializers.CharField()
    fill_qty = DecimalString(allow_null=True)
    fill_price = DecimalString(allow_null=True)
    cum_qty = DecimalString(allow_null=True)
    fee = DecimalString(allow_null=True)
    detail = serializers.JSONField()


class ExecutionOutput(serializers.Serializer):
    order = serializers.UUIDField(source="order_id")
    portfolio = serializers.IntegerField(source="portfolio_id")
    symbol = serializers.CharField(source="terms.symbol")
    side = serializers.CharField(source="terms.side")
    exec_id = serializers.CharField()
    broker = serializers.CharField()
    qty = DecimalString(source="fill_qty")
    price = DecimalString(source="fill_price")
    fee = DecimalString()
    cum_qty = DecimalString()
    executed_at = serializers.DateTimeField(source="event_at")
    received_at = serializers.DateTimeField()


ExecutionPage = page_of("ExecutionPage", ExecutionOutput)


class OrderDetailOutput(OrderWithLegsOutput):
    events = OrderEventOutput(many=True)
    fills = ExecutionOutput(many=True)


class RejectionOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField()


class PreviewOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    rejections = RejectionOutput(many=True)
    estimated_price = DecimalString(allow_null=True)
    estimated_notional = DecimalString(allow_null=True)
    buying_power_after = DecimalString(allow_null=True)


class CancelAllOutput(serializers.Serializer):
    canceled = OrderOutput(many=True)


class KillSwitchOutput(serializers.Serializer):
    active = serializers.BooleanField(source="kill_switch")
    reason = serializers.CharField(source="kill_switch_reason")
    changed_at = serializers.DateTimeField(source="kill_switch_changed_at", allow_null=True)


# --- helpers ----------------------------------------------------------------------------------------------


def _meta(request) -> RequestMeta:
    return RequestMeta.from_request(request._request)


def _entry(request) -> services.Entry:
    actor = actor_from_request(request)
    origin = Origin.API if actor.type == ActorType.TOKEN else Origin.UI
    return services.Entry(actor=actor, origin=origin, source=origin, meta=_meta(request))


def _portfolio(request, pk, perm=portfolio_selectors.TRADE):
    """The portfolio named in a request body: 400 naming ``portfolio`` when it is not the member's to see
    (another firm's is indistinguishable from a missing one), 403 when visible but not tradable."""
    try:
        return portfolio_selectors.portfolio_for(request.membership, pk, perm)
    except Http404:
        raise DomainError("VALIDATION_ERROR", "No such portfolio.", fields={"portfolio": ["No such portfolio."]},
                          status_code=400) from None


def _order_query(request):
    visible = portfolio_selectors.portfolios_visible(request.membership).values("pk")
    return (Order.objects.for_firm(request.firm.pk).filter(portfolio_id__in=visible)
            .select_related("portfolio", "instrument").prefetch_related("legs"))


def _detail(order: Order) -> dict:
    data = OrderWithLegsOutput(order).data
    events = list(order.events.order_by("id"))
    data["events"] = OrderEventOutput(events, many=True).data
    data["fills"] = ExecutionOutput([e for e in events if e.exec_id], many=True).data
    return data


def _rejection(order: Order) -> Response:
    status = services.REJECTION_STATUS.get(order.reject_code, 403)
    body = error_body(order.reject_code, order.reject_reason, {"order_id": [str(order.pk)]})
    response = Response(body, status=status)
    response["X-Order-Id"] = str(order.pk)
    return response


STATUS_FILTERS = {"open": [s.value for s in OPEN], "closed": [s.value for s in TERMINAL], "all": None}
LIST_PARAMS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=[*STATUS_FILTERS, *_values(Status)],
                     description="open (default), closed, all, or one status."),
    OpenApiParameter("portfolio", OpenApiTypes.INT, description="Only this portfolio's orders."),
    OpenApiParameter("symbols", OpenApiTypes.STR, description="Comma-separated symbols."),
    OpenApiParameter("side", OpenApiTypes.STR, enum=_values(Side)),
    OpenApiParameter("after", OpenApiTypes.DATETIME, description="Created after this instant."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Created before this instant."),
    OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("page_size", OpenApiTypes.INT),
]
ID_PARAM = OpenApiParameter("pk", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The order's id.")


def _filter(request, qs):
    from django.utils.dateparse import parse_datetime
    from rest_framework.exceptions import ValidationError

    params = request.query_params
    status = params.get("status") or "open"
    if status in STATUS_FILTERS:
        if STATUS_FILTERS[status] is not None:
            qs = qs.filter(status__in=STATUS_FILTERS[status])
    elif status in _values(Status):
        qs = qs.filter(status=status)
    else:
        raise ValidationError({"status": ["open, closed, all, or an order status."]})
    if params.get("portfolio"):
        try:
            qs = qs.filter(portfolio_id=int(params["portfolio"]))
        except ValueError:
            raise ValidationError({"portfolio": ["A portfolio id."]}) from None
    if params.get("symbols"):
        qs = qs.filter(symbol__in=[s.strip().upper() for s in params["symbols"].split(",") if s.strip()])
    if params.get("side"):
        if params["side"] not in _values(Side):
            raise ValidationError({"side": ["buy or sell."]})
        qs = qs.filter(side=params["side"])
    for name, lookup in (("after", "created_at__gt"), ("until", "created_at__lt")):
        if params.get(name):
            value = parse_datetime(params[name])
            if value is None or value.tzinfo is None:
                raise ValidationError({name: ["An ISO 8601 instant with a time zone."]})
            qs = qs.filter(**{lookup: value})
    return qs


# --- views ------------------------------------------------------------------------------------------------


class _OrdersView(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]
    write_roles = ALL_ROLES  # the portfolio's trade permission decides (grants can widen a role)
    write_scope = "trade"


class OrderListApi(_OrdersView):
    @api_schema(
        operation_id="orders_list", summary="List orders",
        description="The firm's orders in portfolios the member may view, newest first, with their legs. "
                    "Filters: status (open by default, as Alpaca), portfolio, symbols, side, after, until.",
        parameters=LIST_PARAMS, responses={200: OrderPage}, tags=TAGS,
    )
    def get(self, request):
        qs = _filter(request, _order_query(request).filter(parent__isnull=True)).order_by("-created_at", "id")
        paginator = StandardPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(OrderWithLegsOutput(page, many=True).data)

    @api_schema(
        operation_id="orders_create", summary="Place an order",
        description="The one order path: validation (400 naming the field), idempotency on client_order_id "
                    "(or the Idempotency-Key header): the same id with the same terms returns the original order "
                    "(200, header Idempotent-Replayed: true) and nothing is sent again; with other terms 409. "
                    "Then the pre-trade checks: a rejection is stored on the order (status risk_rejected) and "
                    "answered 403 with its code (423 TRADING_HALTED under the kill switch), the order id in "
                    "fields.order_id. An accepted order is 201 in status received and goes to its broker at once. "
                    "Needs the 'trade' scope and the trade permission on the portfolio.",
        request=OrderInput, responses={201: OrderWithLegsOutput, 200: OrderWithLegsOutput}, tags=TAGS,
        errors=[400, 401, 403, 404, 409, 415, 423, 429],
    )
    def post(self, request):
        data = OrderInput(data=request.data)
        data.is_valid(raise_exception=True)
        portfolio = _portfolio(request, data.validated_data["portfolio"])
        spec = data.to_spec(request.headers.get("Idempotency-Key"))
        result = services.order_submit(portfolio=portfolio, spec=spec, entry=_entry(request))
        if result.rejected:
            return _rejection(result.order)
        response = Response(OrderWithLegsOutput(result.order).data, status=201 if result.created else 200)
        if not result.created:
            response[REPLAY_HEADER] = "true"
        return response

    @api_schema(
        operation_id="orders_cancel_all", summary="Cancel all open orders",
        description="Every open order of the firm (or of ?portfolio=) that the member may trade is canceled or "
                    "asked to cancel at its broker. Audited per order.",
        parameters=[OpenApiParameter("portfolio", OpenApiTypes.INT)], responses={200: CancelAllOutput},
        tags=TAGS, errors=[400, 401, 403, 404, 429],
    )
    def delete(self, request):
        portfolio_id = request.query_params.get("portfolio")
        if portfolio_id:
            portfolio_id = _portfolio(request, portfolio_id).pk
        elif request.membership.role not in MANAGE_ROLES:
            raise PermissionDenied("Only owners and admins cancel every order of the firm; name a portfolio.")
        canceled = services.order_cancel_all(firm_id=request.firm.pk, portfolio_id=portfolio_id,
                                             actor=actor_from_request(request), meta=_meta(request))
        return Response(CancelAllOutput({"canceled": canceled}).data)


class OrderPreviewApi(_OrdersView):
    @api_schema(
        operation_id="orders_preview", summary="Preview an order",
        description="Validation and every pre-trade check, with the estimated price, notional and buying power "
                    "after; nothing is stored or sent. Needs the trade permission on the portfolio.",
        request=OrderInput, responses={200: PreviewOutput}, tags=TAGS,
    )
    def post(self, request):
        data = OrderInput(data=request.data)
        data.is_valid(raise_exception=True)
        portfolio = _portfolio(request, data.validated_data["portfolio"])
        result = services.order_preview(portfolio=portfolio, spec=data.to_spec())
        return Response(PreviewOutput({
            "ok": result.ok, "rejections": result.rejections, "estimated_price": result.estimated_price,
            "estimated_notional": result.estimated_notional, "buying_power_after": result.buying_power_after}).data)


class OrderDetailApi(_OrdersView):
    def object_for(self, firm, pk, **_):
        order = _order_query(self.request).filter(pk=_uuid(pk)).first()
        if order is None:
            raise Http404("No such order.")
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            portfolio_selectors.portfolio_for(self.request.membership, order.portfolio_id, portfolio_selectors.TRADE)
        return order

    @api_schema(operation_id="orders_retrieve", summary="Get an order",
                description="The order with its legs, every event (append-only) and its fills.",
                parameters=[ID_PARAM], responses={200: OrderDetailOutput}, tags=TAGS)
    def get(self, request, pk):
        return Response(_detail(self.get_firm_object()))

    @api_schema(operation_id="orders_cancel", summary="Cancel an order",
                description="An order not yet at the broker is canceled at once; otherwise it goes to pending_cancel "
                            "and the broker's answer finishes it. A final order is 409 ORDER_NOT_CANCELABLE.",
                parameters=[ID_PARAM], responses={200: OrderWithLegsOutput}, tags=TAGS,
                errors=[401, 403, 404, 409, 429])
    def delete(self, request, pk):
        order = services.order_cancel(order=self.get_firm_object(), actor=actor_from_request(request),
                                      meta=_meta(request))
        return Response(OrderWithLegsOutput(order).data)

    @api_schema(operation_id="orders_replace", summary="Replace an order",
                description="Alpaca's replace: qty, limit_price, stop_price, trail, time_in_force. The order goes to "
                            "pending_replace; when the broker confirms, a new order (replaces -> this one) carries "
                            "on. A filled, canceled or otherwise final order is 409 ORDER_NOT_REPLACEABLE.",
                parameters=[ID_PARAM], request=ReplaceInput, responses={200: OrderWithLegsOutput}, tags=TAGS,
                errors=[400, 401, 403, 404, 409, 415, 429])
    def patch(self, request, pk):
        order = self.get_firm_object()
        data = ReplaceInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.order_replace(order=order, changes=dict(data.validated_data),
                                       actor=actor_from_request(request), meta=_meta(request))
        return Response(OrderWithLegsOutput(order).data)


def _uuid(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404("No such order.") from None


class ExecutionListApi(_OrdersView):
    @api_schema(operation_id="fills_list", summary="List fills",
                description="Executions of the firm's orders (in portfolios the member may view), newest first; "
                            "filter by portfolio or order.",
                parameters=[OpenApiParameter("portfolio", OpenApiTypes.INT), OpenApiParameter("order", OpenApiTypes.UUID),
                            OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("page_size", OpenApiTypes.INT)],
                responses={200: ExecutionPage}, tags=TAGS)
    def get(self, request):
        from rest_framework.exceptions import ValidationError

        visible = portfolio_selectors.portfolios_visible(request.membership).values("pk")
        qs = (OrderEvent.objects.for_firm(request.firm.pk).filter(portfolio_id__in=visible).exclude(exec_id="")
              .order_by("-id"))
        if request.query_params.get("portfolio"):
            try:
                qs = qs.filter(portfolio_id=int(request.query_params["portfolio"]))
            except ValueError:
                raise ValidationError({"portfolio": ["A portfolio id."]}) from None
        if request.query_params.get("order"):
            try:
                qs = qs.filter(order_id=_uuid(request.query_params["order"]))
            except Http404:
                raise ValidationError({"order": ["An order id."]}) from None
        paginator = StandardPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ExecutionOutput(page, many=True).data)


class KillSwitchApi(_OrdersView):
    write_roles = MANAGE_ROLES | AUDIT_ROLES  # owners, admins and compliance; traders and analysts 403
    write_scope = "admin"

    @api_schema(operation_id="kill_switch_retrieve", summary="The firm's kill switch",
                description="Whether trading is halted, why and since when.", responses={200: KillSwitchOutput},
                tags=TAGS)
    def get(self, request):
        return Response(KillSwitchOutput(selectors.trading_control(request.firm.pk)).data)

    @api_schema(operation_id="kill_switch_update", summary="Halt or resume trading",
                description="Owners, admins and compliance; 'admin' scope. Halting rejects new risk-increasing "
                            "orders (423 TRADING_HALTED) and cancels every working order; it survives restarts. "
                            "Audited as trading.halted / trading.resumed.",
                request=KillSwitchInput, responses={200: KillSwitchOutput}, tags=TAGS)
    def put(self, request):
        data = KillSwitchInput(data=request.data)
        data.is_valid(raise_exception=True)
        control = services.kill_switch_set(firm_id=request.firm.pk, active=data.validated_data["active"],
                                           reason=data.validated_data.get("reason", ""),
                                           actor=actor_from_request(request), meta=_meta(request))
        return Response(KillSwitchOutput(control).data)


class PortfolioRefInput(StrictInputSerializer):
    portfolio = serializers.IntegerField(min_value=1, max_value=2**31 - 1)


class BreakOutput(serializers.Serializer):
    kind = serializers.CharField(help_text="fill_mismatch, unknown_fill, unknown_at_broker, missing_at_broker, "
                                           "position_mismatch")
    symbol = serializers.CharField()
    ours = serializers.CharField()
    theirs = serializers.CharField()
    order = serializers.CharField()


class ReconcileOutput(serializers.Serializer):
    portfolio = serializers.IntegerField()
    broker = serializers.CharField()
    checked = serializers.IntegerField()
    updated = serializers.IntegerField()
    recovered_fills = serializers.IntegerField(help_text="Fills the trade stream had missed, booked now.")
    breaks = BreakOutput(many=True)
    error = serializers.CharField()
    halted = serializers.BooleanField(help_text="A break or a missing broker report halts the portfolio.")
    clean = serializers.BooleanField()


class _ManageView(_OrdersView):
    write_roles = MANAGE_ROLES
    write_scope = "admin"


class ReconcileApi(_ManageView):
    @api_schema(operation_id="trading_reconcile", summary="Reconcile a portfolio with its broker",
                description="Owners and admins; 'admin' scope. Asks the broker for every open order (statuses "
                            "adopted) and compares fills, unknown orders and positions; any break, or a broker that "
                            "cannot report, halts the portfolio (TRADING_HALTED) until resumed. Audited.",
                request=PortfolioRefInput, responses={200: ReconcileOutput}, tags=TAGS)
    def post(self, request):
        from apps.orders.reconcile import reconcile_portfolio

        data = PortfolioRefInput(data=request.data)
        data.is_valid(raise_exception=True)
        portfolio = _portfolio(request, data.validated_data["portfolio"], portfolio_selectors.MANAGE)
        report = reconcile_portfolio(portfolio=portfolio, actor=actor_from_request(request), meta=_meta(request))
        return Response(ReconcileOutput(report.as_dict()).data)


class ResumeApi(_ManageView):
    @api_schema(operation_id="trading_resume", summary="Lift a portfolio's reconciliation halt",
                description="Owners and admins, after review; 409 PORTFOLIO_NOT_HALTED when it is not halted. "
                            "Audited as portfolio.trading_resumed.",
                request=PortfolioRefInput, responses={200: PortfolioRefInput}, tags=TAGS)
    def post(self, request):
        from apps.orders.reconcile import portfolio_resume

        data = PortfolioRefInput(data=request.data)
        data.is_valid(raise_exception=True)
        portfolio = _portfolio(request, data.validated_data["portfolio"], portfolio_selectors.MANAGE)
        portfolio_resume(portfolio=portfolio, actor=actor_from_request(request), meta=_meta(request))
        return Response({"portfolio": portfolio.pk})


class AlpacaAccountInput(StrictInputSerializer):
    portfolio = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    key_id = serializers.RegexField(r"^[\x21-\x7e]{1,64}$")
    secret_key = serializers.RegexField(r"^[\x21-\x7e]{1,128}$", write_only=True,
                                        help_text="Stored encrypted; never shown again.")
    paper = serializers.BooleanField(help_text="Alpaca's paper endpoint rather than live.")


class AlpacaAccountOutput(serializers.Serializer):
    portfolio = serializers.IntegerField(source="portfolio_id")
    key_id = serializers.CharField()
    secret = serializers.SerializerMethodField(help_text="Masked: at most the last 4 characters.")
    paper = serializers.BooleanField()
    updated_at = serializers.DateTimeField()

    def get_secret(self, obj) -> str:
        from apps.core.crypto import masked

        return masked(obj.secret_hint)


class AlpacaAccountApi(_ManageView):
    @api_schema(operation_id="trading_alpaca_account", summary="Connect a live portfolio to Alpaca",
                description="Owners and admins; 'admin' scope. Stores the portfolio's Alpaca trading keys (the "
                            "secret encrypted at rest, never shown again); its orders then go to Alpaca. Audited "
                            "without the secret.", request=AlpacaAccountInput, responses={200: AlpacaAccountOutput},
                tags=TAGS)
    def put(self, request):
        data = AlpacaAccountInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        portfolio = _portfolio(request, v["portfolio"], portfolio_selectors.MANAGE)
        account = services.alpaca_account_connect(portfolio=portfolio, key_id=v["key_id"], secret_key=v["secret_key"],
                                                  paper=v["paper"], actor=actor_from_request(request),
                                                  meta=_meta(request))
        return Response(AlpacaAccountOutput(account).data)


urls = [
    path("orders/", OrderListApi.as_view(), name="api-orders"),
    path("orders/preview/", OrderPreviewApi.as_view(), name="api-orders-preview"),
    path("orders/<str:pk>/", OrderDetailApi.as_view(), name="api-order"),
    path("fills/", ExecutionListApi.as_view(), name="api-fills"),
    path("trading/kill-switch/", KillSwitchApi.as_view(), name="api-kill-switch"),
    path("trading/reconcile/", ReconcileApi.as_view(), name="api-trading-reconcile"),
    path("trading/resume/", ResumeApi.as_view(), name="api-trading-resume"),
    path("trading/alpaca-account/", AlpacaAccountApi.as_view(), name="api-trading-alpaca-account"),
]

