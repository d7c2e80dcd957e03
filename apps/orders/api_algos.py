"""Execution-algorithm API: TWAP/VWAP parent orders (create, list, detail with progress and children, pause,
resume, cancel). Routes in ``urls``, mounted with the orders API under /api/v1/.

Every algo route resolves the algo in the firm and in a portfolio the member may view first: another firm's
algo (or one in a restricted portfolio the member cannot see) is 404 for every method. Writes need the
'trade' token scope and the trade permission on the algo's portfolio (403 otherwise: analysts, compliance).
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.audit.services import actor_from_request
from apps.core.api import FirmScopedAPIView, StrictInputSerializer, api_schema, page_of
from apps.core.pagination import StandardPagination
from apps.orders import algo_selectors, algo_services
from apps.orders.api import OrderOutput, _entry, _meta, _portfolio
from apps.orders.core import Side
from apps.orders.models import AlgoKind, AlgoStatus
from apps.portfolios import selectors as portfolio_selectors
from apps.portfolios.api.portfolios import DecimalString

TAGS = ["algos"]
ALL_ROLES = frozenset(Role.values)
NUMBER = {"max_digits": 24, "decimal_places": 10}
REPLAY_HEADER = "Idempotent-Replayed"


# --- input / output ---------------------------------------------------------------------------------------


class AlgoInput(StrictInputSerializer):
    portfolio = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="The portfolio to trade.")
    symbol = serializers.RegexField(r"^[^\x00\s]{1,32}$", help_text="A stored instrument, e.g. AAPL or BTC/USD.")
    side = serializers.ChoiceField(choices=[s.value for s in Side])
    qty = serializers.DecimalField(**NUMBER, help_text="Total quantity: a multiple of the lot size, at least "
                                                       "one lot per slice.")
    kind = serializers.ChoiceField(choices=AlgoKind.values, help_text="twap: equal slices; vwap: slices in "
                                                                      "proportion to expected volume.")
    start_at = serializers.DateTimeField(required=False, help_text="When the first slice goes (default: now).")
    end_at = serializers.DateTimeField(help_text="The window's end: after start_at, in the future.")
    slices = serializers.IntegerField(min_value=1, max_value=algo_services.MAX_SLICES,
                                      help_text="Number of child orders, no finer than one a second.")
    limit_price = serializers.DecimalField(**NUMBER, required=False, allow_null=True,
                                           help_text="Children are limit orders at this price; market when absent.")
    client_order_id = serializers.RegexField(rf"^[\x21-\x7e]{{1,{algo_services.MAX_ALGO_COID}}}$", required=False,
                                             help_text="Your idempotency key (printable ASCII, at most 100); "
                                                       "children add ':<slice>'. Generated when absent.")


class AlgoProgressOutput(serializers.Serializer):
    qty = DecimalString()
    sent_qty = DecimalString(help_text="Quantity of the slices sent and accepted by the pre-trade checks.")
    filled_qty = DecimalString(help_text="Sum of the children's filled quantity.")
    remaining_qty = DecimalString(help_text="qty - filled_qty.")
    filled_pct = DecimalString(help_text="filled_qty / qty in percent, 2 decimals.")
    slices = serializers.IntegerField()
    slices_sent = serializers.IntegerField(help_text="Slices handled so far (refused ones included).")
    slices_refused = serializers.IntegerField(help_text="Children refused by a pre-trade check or the broker.")
    open_children = serializers.IntegerField(help_text="Children still working.")
    next_slice_at = serializers.DateTimeField(allow_null=True)


class AlgoOutput(serializers.Serializer):
    id = serializers.UUIDField()
    client_order_id = serializers.CharField()
    portfolio = serializers.IntegerField(source="portfolio_id")
    symbol = serializers.CharField()
    side = serializers.CharField()
    qty = DecimalString()
    kind = serializers.CharField()
    start_at = serializers.DateTimeField()
    end_at = serializers.DateTimeField()
    slices = serializers.IntegerField()
    limit_price = DecimalString(allow_null=True)
    status = serializers.CharField(help_text="running, paused, canceled or done.")
    next_slice = serializers.IntegerField()
    sent_qty = DecimalString()
    origin = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    progress = serializers.SerializerMethodField()

    @extend_schema_field(AlgoProgressOutput)
    def get_progress(self, algo) -> dict:
        progress = algo_selectors.algo_progress(algo)
        return AlgoProgressOutput({
            "qty": progress.qty, "sent_qty": progress.sent_qty, "filled_qty": progress.filled_qty,
            "remaining_qty": progress.remaining_qty, "filled_pct": progress.filled_pct, "slices": progress.slices,
            "slices_sent": progress.slices_sent, "slices_refused": progress.slices_refused,
            "open_children": progress.open_children, "next_slice_at": progress.next_slice_at}).data


class AlgoSliceOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    qty = DecimalString()


class AlgoDetailOutput(AlgoOutput):
    schedule = AlgoSliceOutput(many=True)
    children = OrderOutput(many=True)


AlgoPage = page_of("AlgoPage", AlgoOutput)


def _detail(algo) -> dict:
    from apps.orders.algos import schedule_load

    data = AlgoOutput(algo).data
    data["schedule"] = AlgoSliceOutput([{"at": at, "qty": qty} for at, qty in schedule_load(algo.schedule)],
                                       many=True).data
    data["children"] = OrderOutput(algo_selectors.algo_children(algo), many=True).data
    return data


def _visible(request):
    return portfolio_selectors.portfolios_visible(request.membership).values("pk")


# --- views ------------------------------------------------------------------------------------------------


class _AlgosView(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]
    write_roles = ALL_ROLES  # the portfolio's trade permission decides (grants can widen a role)
    write_scope = "trade"


STATUS_PARAM = OpenApiParameter("status", OpenApiTypes.STR, enum=[*AlgoStatus.values, "all"],
                                description="One status, or all (the default).")
ID_PARAM = OpenApiParameter("pk", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The algo order's id.")


class AlgoListApi(_AlgosView):
    @api_schema(
        operation_id="algos_list", summary="List algo orders",
        description="The firm's TWAP/VWAP parent orders in portfolios the member may view, newest first, each "
                    "with its progress. Filters: status, portfolio.",
        parameters=[STATUS_PARAM, OpenApiParameter("portfolio", OpenApiTypes.INT),
                    OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("page_size", OpenApiTypes.INT)],
        responses={200: AlgoPage}, tags=TAGS,
    )
    def get(self, request):
        qs = algo_selectors.algo_list(firm_id=request.firm.pk, portfolio_ids=_visible(request))
        status = request.query_params.get("status") or "all"
        if status not in (*AlgoStatus.values, "all"):
            raise ValidationError({"status": ["running, paused, canceled, done or all."]})
        if status != "all":
            qs = qs.filter(status=status)
        if request.query_params.get("portfolio"):
            try:
                qs = qs.filter(portfolio_id=int(request.query_params["portfolio"]))
            except ValueError:
                raise ValidationError({"portfolio": ["A portfolio id."]}) from None
        paginator = StandardPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(AlgoOutput(page, many=True).data)

    @api_schema(
        operation_id="algos_create", summary="Start a TWAP or VWAP algo order",
        description="Slices qty into `slices` child orders over [start_at, end_at]: TWAP in equal slices, VWAP in "
                    "proportion to the instrument's recent 1-minute volume at those times of day (a U-shaped "
                    "intraday curve without stored bars). Each child goes through the one order path (pre-trade "
                    "checks included): a market order, or a limit at limit_price; gtc for crypto, day otherwise. "
                    "A refused child pauses the algo. Bad input is a 400 naming the field, nothing written. "
                    "Idempotent on client_order_id (or the Idempotency-Key header): a repeat with the same terms is "
                    "200 with header Idempotent-Replayed: true, with other terms 409. Needs the 'trade' scope and "
                    "the trade permission on the portfolio.",
        request=AlgoInput, responses={201: AlgoDetailOutput, 200: AlgoDetailOutput}, tags=TAGS,
    )
    def post(self, request):
        data = AlgoInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        portfolio = _portfolio(request, v["portfolio"])
        algo = algo_services.algo_create(
            portfolio=portfolio, symbol=v["symbol"], side=v["side"], qty=v["qty"], kind=v["kind"],
            start_at=v.get("start_at"), end_at=v["end_at"], slices=v["slices"],
            limit_price=v.get("limit_price"),
            client_order_id=v.get("client_order_id") or request.headers.get("Idempotency-Key") or None,
            entry=_entry(request))
        replayed = algo.replayed
        response = Response(_detail(algo_selectors.algo_for(firm_id=request.firm.pk, pk=algo.pk)),
                            status=200 if replayed else 201)
        if replayed:
            response[REPLAY_HEADER] = "true"
        return response


class _AlgoObjectView(_AlgosView):
    def object_for(self, firm, pk, **_):
        algo = algo_selectors.algo_for(firm_id=firm.pk, pk=pk, portfolio_ids=_visible(self.request))
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            portfolio_selectors.portfolio_for(self.request.membership, algo.portfolio_id, portfolio_selectors.TRADE)
        return algo

    def _act(self, request, service):
        algo = service(algo=self.get_firm_object(), actor=actor_from_request(request), meta=_meta(request))
        return Response(_detail(algo_selectors.algo_for(firm_id=request.firm.pk, pk=algo.pk)))


class AlgoDetailApi(_AlgoObjectView):
    @api_schema(operation_id="algos_retrieve", summary="Get an algo order",
                description="The algo order with its progress (filled qty of the children vs qty, slices sent vs "
                            "slices), its schedule and its child orders.",
                parameters=[ID_PARAM], responses={200: AlgoDetailOutput}, tags=TAGS)
    def get(self, request, pk):
        return Response(_detail(self.get_firm_object()))


WRITE_ERRORS = [400, 401, 403, 404, 409, 429]


class AlgoPauseApi(_AlgoObjectView):
    @api_schema(operation_id="algos_pause", summary="Pause an algo order",
                description="A running algo stops sending slices until resumed; working children keep working. "
                            "Anything else is 409 ALGO_NOT_PAUSABLE. Audited.",
                parameters=[ID_PARAM], request=None, responses={200: AlgoDetailOutput}, tags=TAGS,
                errors=WRITE_ERRORS)
    def post(self, request, pk):
        return self._act(request, algo_services.algo_pause)


class AlgoResumeApi(_AlgoObjectView):
    @api_schema(operation_id="algos_resume", summary="Resume an algo order",
                description="A paused algo runs again; slices that fell due meanwhile go at the next tick. "
                            "Anything else is 409 ALGO_NOT_RESUMABLE. Audited.",
                parameters=[ID_PARAM], request=None, responses={200: AlgoDetailOutput}, tags=TAGS,
                errors=WRITE_ERRORS)
    def post(self, request, pk):
        return self._act(request, algo_services.algo_resume)


class AlgoCancelApi(_AlgoObjectView):
    @api_schema(operation_id="algos_cancel", summary="Cancel an algo order",
                description="A running or paused algo is canceled and its working children are canceled through "
                            "the order path. A done or canceled algo is 409 ALGO_NOT_CANCELABLE. Audited.",
                parameters=[ID_PARAM], request=None, responses={200: AlgoDetailOutput}, tags=TAGS,
                errors=WRITE_ERRORS)
    def post(self, request, pk):
        return self._act(request, algo_services.algo_cancel)


urls = [
    path("algos/", AlgoListApi.as_view(), name="api-algos"),
    path("algos/<uuid:pk>/", AlgoDetailApi.as_view(), name="api-algo"),
    path("algos/<uuid:pk>/pause/", AlgoPauseApi.as_view(), name="api-algo-pause"),
    path("algos/<uuid:pk>/resume/", AlgoResumeApi.as_view(), name="api-algo-resume"),
    path("algos/<uuid:pk>/cancel/", AlgoCancelApi.as_view(), name="api-algo-cancel"),
]
