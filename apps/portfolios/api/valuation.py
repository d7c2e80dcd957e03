"""Portfolio API: valuation (holdings at the latest quotes, equity now or at a past date), end-of-day
snapshots and performance (routes in ``urls``).

Every route resolves the portfolio with ``selectors.portfolio_for`` (view permission) before any role
or scope check: another firm's portfolio, or a restricted one the member may not view, is 404.
Read-only; the 'read' token scope. Amounts are exact decimal strings; ratios and analytics are floats.
Definitions (market value, P&L, day P&L, past dates, crypto's cut): ``apps.portfolios.valuation``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.core.api import FirmScopedAPIView, api_schema
from apps.core.tenancy import firm_scope
from apps.portfolios import selectors, valuation
from apps.portfolios.lots import trade_date
from apps.portfolios.models import Snapshot

TAGS = ["portfolio valuation"]
EARLIEST = date(1970, 1, 1)
MAX_SNAPSHOTS = 5000  # twenty years of sessions; older rows are left out (``truncated``)
MSG_DATE = "A date as YYYY-MM-DD."
MSG_DATE_RANGE = "Not before 1970-01-01 nor after today."
MSG_START_AFTER_END = "start is after end."


# --- fields and output serializers ---------------------------------------------------------------


@extend_schema_field({"type": "string", "format": "decimal", "example": "1234.50"})
class AmountString(serializers.Field):
    """An exact decimal as a string without exponent notation."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")


@extend_schema_field({"type": "string", "format": "decimal", "example": "1234.50", "nullable": True})
class NullableAmountString(AmountString):
    """An exact decimal as a string, or null when unknown."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


class PortfolioHoldingOutput(serializers.Serializer):
    instrument_id = serializers.IntegerField()
    symbol = serializers.CharField()
    asset_class = serializers.CharField()
    quantity = AmountString(help_text="Signed: negative for a short position.")
    multiplier = serializers.IntegerField(help_text="Contract multiplier (options), else 1.")
    cost = AmountString(help_text="Signed book cost of the open lots, fees included (short: proceeds, negative).")
    avg_cost = NullableAmountString(help_text="Per unit: cost / (quantity x multiplier).")
    last = NullableAmountString(help_text="Price used; null when the instrument has no price at all.")
    price_ts = serializers.DateTimeField(allow_null=True, help_text="When that price was made (UTC).")
    stale = serializers.BooleanField(help_text="The price is old, its market closed, or missing (then valued at cost).")
    market_value = AmountString(help_text="quantity x last x multiplier; at cost when there is no price.")
    unrealized = AmountString(help_text="market_value - cost.")
    unrealized_pct = serializers.FloatField(allow_null=True, help_text="unrealized / |cost|, in percent.")
    prev_close = NullableAmountString(help_text="Close of the previous session (crypto: 24 h earlier).")
    day_pnl = NullableAmountString(help_text=(
        "Held at the previous close x (last - prev_close) + bought today x (last - fill price) + sold today x "
        "(fill price - prev_close) - today's fees, x multiplier. Null when it needs an unknown previous close."))
    weight = serializers.FloatField(allow_null=True, help_text="market_value / equity, in percent.")
    realized = AmountString(help_text="Realized P&L of the instrument so far (before wash-sale adjustments).")


class PortfolioHoldingsOutput(serializers.Serializer):
    as_of = serializers.DateTimeField()
    stale = serializers.BooleanField(help_text="Some holding's price is stale or missing.")
    results = PortfolioHoldingOutput(many=True)


class PortfolioValuationOutput(serializers.Serializer):
    date = serializers.DateField(help_text="The trade date (New York) valued.")
    as_of = serializers.DateTimeField(help_text="Now, or for a past date that day's books cut (the NYSE close).")
    cash = AmountString(help_text="Cash from the journal, by trade date.")
    settled_cash = AmountString(help_text="Cash that has settled by that date.")
    market_value = AmountString()
    equity = AmountString(help_text="cash + market_value.")
    unrealized = AmountString()
    realized = AmountString(help_text=(
        "To date: realized trading P&L after fees, dividends, interest, account fees, corporate-action cash and "
        "adjustments."))
    total_pnl = AmountString(help_text="realized + unrealized = equity - net_flows.")
    day_pnl = NullableAmountString(help_text="Today's P&L; null for a past date or when unknown.")
    net_flows = AmountString(help_text="Deposits - withdrawals to date.")
    stale = serializers.BooleanField()
    holdings_count = serializers.IntegerField()
    holdings = PortfolioHoldingOutput(many=True)


class PortfolioSnapshotOutput(serializers.Serializer):
    date = serializers.DateField()
    cash = AmountString()
    settled_cash = AmountString()
    market_value = AmountString()
    equity = AmountString()
    net_flow = AmountString(help_text="Deposits - withdrawals since the previous session, up to this date.")
    realized = AmountString(help_text="Realized P&L to date (see the valuation endpoint).")
    unrealized = AmountString()
    benchmark_close = NullableAmountString()
    stale = serializers.BooleanField(help_text="Some price was missing or older than the session.")


class PortfolioSnapshotListOutput(serializers.Serializer):
    count = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text=f"More than {MAX_SNAPSHOTS} in range: only the latest returned.")
    results = PortfolioSnapshotOutput(many=True)


class PerformanceDrawdownOutput(serializers.Serializer):
    depth = serializers.FloatField(help_text="Non-positive fraction of the peak (-0.25 = 25 % down).")
    peak = serializers.DateField()
    trough = serializers.DateField()
    recovery = serializers.DateField(allow_null=True)
    duration_days = serializers.IntegerField()
    duration_periods = serializers.IntegerField()


class PerformanceDayOutput(serializers.Serializer):
    day = serializers.DateField()
    value = serializers.FloatField()


class PerformanceCurvesOutput(serializers.Serializer):
    dates = serializers.ListField(child=serializers.DateField())
    equity = serializers.ListField(child=serializers.FloatField())
    growth = serializers.ListField(child=serializers.FloatField(allow_null=True),
                                   help_text="Time-weighted growth of 100 invested on the first date.")
    benchmark = serializers.ListField(child=serializers.FloatField(allow_null=True),
                                      help_text="The benchmark rebased to the growth index; null where unknown.")
    drawdown = serializers.ListField(child=serializers.FloatField(allow_null=True),
                                     help_text="Drawdown of the growth index from its running peak (fractions).")


class PerformanceAttributionOutput(serializers.Serializer):
    start = serializers.DateField(allow_null=True)
    end = serializers.DateField(allow_null=True)
    total = serializers.FloatField()
    by_instrument = serializers.DictField(child=serializers.FloatField(), help_text="Symbol -> P&L, largest first.")
    by_asset_class = serializers.DictField(child=serializers.FloatField())
    share_by_instrument = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    share_by_asset_class = serializers.DictField(child=serializers.FloatField(), allow_null=True)


class PortfolioPerformanceOutput(serializers.Serializer):
    start = serializers.DateField(allow_null=True)
    end = serializers.DateField(allow_null=True)
    observations = serializers.IntegerField()
    time_weighted_return = serializers.FloatField(allow_null=True)
    money_weighted_return = serializers.FloatField(allow_null=True, help_text="XIRR, annualized.")
    cumulative_return = serializers.FloatField(allow_null=True)
    annualized_return = serializers.FloatField(allow_null=True)
    annualized_volatility = serializers.FloatField(allow_null=True)
    sharpe = serializers.FloatField(allow_null=True)
    sortino = serializers.FloatField(allow_null=True)
    max_drawdown = PerformanceDrawdownOutput(allow_null=True)
    calmar = serializers.FloatField(allow_null=True)
    beta = serializers.FloatField(allow_null=True)
    alpha = serializers.FloatField(allow_null=True)
    best_day = PerformanceDayOutput(allow_null=True)
    worst_day = PerformanceDayOutput(allow_null=True)
    curves = PerformanceCurvesOutput()
    attribution = PerformanceAttributionOutput()


# --- parameters ----------------------------------------------------------------------------------


def _date_param(params, name: str) -> date | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = date.fromisoformat(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: [MSG_DATE]}) from None
    if value < EARLIEST or value > timezone.localdate():
        raise ValidationError({name: [MSG_DATE_RANGE]})
    return value


def _range(params) -> tuple[date | None, date | None]:
    start, end = _date_param(params, "start"), _date_param(params, "end")
    if start and end and start > end:
        raise ValidationError({"start": [MSG_START_AFTER_END]})
    return start, end


PK_PARAM = OpenApiParameter("pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The portfolio's id.")
RANGE_PARAMS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="First date (inclusive); default the first snapshot."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="Last date (inclusive); default the last snapshot."),
]


# --- views ---------------------------------------------------------------------------------------


class _ValuationView(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]

    def object_for(self, firm, pk, **_):
        return selectors.portfolio_for(self.request.membership, pk, selectors.VIEW)


class PortfolioHoldingsApi(_ValuationView):
    @api_schema(
        operation_id="portfolio_holdings",
        summary="Holdings at the latest quotes",
        description=(
            "Open positions valued at the latest quotes: market value, unrealized and day P&L, weight. A stale "
            "price (old quote, closed market) is flagged; an instrument with no price at all is carried at cost "
            "(`last` null, `stale` true)."),
        parameters=[PK_PARAM],
        responses={200: PortfolioHoldingsOutput},
        tags=TAGS,
    )
    def get(self, request, pk: int):
        portfolio = self.get_firm_object()
        s = valuation.summary(portfolio)
        return Response(PortfolioHoldingsOutput({"as_of": s.as_of, "stale": s.stale, "results": s.holdings}).data)


class PortfolioValuationApi(_ValuationView):
    @api_schema(
        operation_id="portfolio_valuation",
        summary="Equity and P&L, now or at a past date",
        description=(
            "Cash, market value, equity, realized/unrealized/day P&L and the holdings. With `date`, the portfolio "
            "at that day's close, rebuilt from the journal, the fills and the stored bars (`day_pnl` null). "
            "Invariant: equity = cash + market_value; realized + unrealized = equity - net_flows. 400 naming "
            "`date` when it is malformed, before 1970 or in the future."),
        parameters=[PK_PARAM, OpenApiParameter("date", OpenApiTypes.DATE,
                                               description="A past date (YYYY-MM-DD); default now.")],
        responses={200: PortfolioValuationOutput},
        tags=TAGS,
    )
    def get(self, request, pk: int):
        portfolio = self.get_firm_object()
        day = _date_param(request.query_params, "date")
        if day is None:
            s = valuation.summary(portfolio)
            data = {**vars(s), "date": trade_date(s.as_of)}
        else:
            s = valuation.summary_on(portfolio, day)
            data = {**vars(s), "date": day, "as_of": valuation.books_cut(day)}
        return Response(PortfolioValuationOutput(data).data)


class PortfolioSnapshotsApi(_ValuationView):
    @api_schema(
        operation_id="portfolio_snapshots",
        summary="End-of-day snapshots",
        description=(
            f"The portfolio at each NYSE session's close, oldest first (at most {MAX_SNAPSHOTS}: the latest of "
            "the range). 400 naming `start`/`end` for a malformed or future date, or a start after the end."),
        parameters=[PK_PARAM, *RANGE_PARAMS],
        responses={200: PortfolioSnapshotListOutput},
        tags=TAGS,
    )
    def get(self, request, pk: int):
        portfolio = self.get_firm_object()
        start, end = _range(request.query_params)
        with firm_scope(portfolio.firm_id):
            qs = Snapshot.objects.filter(portfolio_id=portfolio.pk)
            if start:
                qs = qs.filter(date__gte=start)
            if end:
                qs = qs.filter(date__lte=end)
            rows = list(qs.order_by("-date")[:MAX_SNAPSHOTS + 1])
        truncated = len(rows) > MAX_SNAPSHOTS
        rows = rows[:MAX_SNAPSHOTS][::-1]
        return Response(PortfolioSnapshotListOutput(
            {"count": len(rows), "truncated": truncated, "results": rows}).data)


class PortfolioPerformanceApi(_ValuationView):
    @api_schema(
        operation_id="portfolio_performance",
        summary="Performance metrics, curves and attribution",
        description=(
            "Over the snapshots in range: time- and money-weighted return, cumulative and annualized return, "
            "volatility, Sharpe, Sortino, maximum drawdown, Calmar, beta and alpha against the benchmark, best "
            "and worst day (undefined metrics are null); the growth curve from 100 with the benchmark rebased to "
            "it and the drawdown series; P&L attribution by instrument and asset class between the first and last "
            "snapshot. 400 naming `start`/`end` as for snapshots."),
        parameters=[PK_PARAM, *RANGE_PARAMS],
        responses={200: PortfolioPerformanceOutput},
        tags=TAGS,
    )
    def get(self, request, pk: int):
        portfolio = self.get_firm_object()
        start, end = _range(request.query_params)
        return Response(PortfolioPerformanceOutput(valuation.performance(portfolio, start=start, end=end)).data)


urls = [
    path("portfolios/<int:pk>/holdings/", PortfolioHoldingsApi.as_view(), name="api-portfolio-holdings"),
    path("portfolios/<int:pk>/valuation/", PortfolioValuationApi.as_view(), name="api-portfolio-valuation"),
    path("portfolios/<int:pk>/snapshots/", PortfolioSnapshotsApi.as_view(), name="api-portfolio-snapshots"),
    path("portfolios/<int:pk>/performance/", PortfolioPerformanceApi.as_view(), name="api-portfolio-performance"),
]
