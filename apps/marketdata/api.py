"""REST API of market data: instruments, bars (stored or resampled from 1m), indicators.

Market data is global (not firm-owned): any member of the active firm with the 'read' token scope
may read it, and every firm sees the same rows. All endpoints are read-only.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import timedelta

import numpy as np
import pandas as pd
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.audit.params import parse_bound
from apps.core.api import FirmScopedAPIView, api_schema
from apps.core.pagination import StandardPagination
from apps.marketdata import indicators
from apps.marketdata.models import AssetClass, Instrument, Timeframe
from apps.marketdata.selectors import (
    BAR_FIELDS,
    MAX_SOURCE_ROWS,
    RangeTooLarge,
    bars_frame,
    bars_to_frame,
    instrument_search,
)

MAX_ROWS = 50_000  # bars (or indicator rows) one request may span
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
SYMBOL_MAX = 32
MSG_BAD_DATE = "Use YYYY-MM-DD (midnight UTC) or an ISO 8601 date-time with a UTC offset."
MSG_RANGE = (
    f"The range is too large for one request: at most {MAX_ROWS:,} bars of the timeframe "
    "(end - start <= 50,000 x the timeframe). Split it into several requests."
)
MSG_SOURCE = (
    f"The range needs more than {MAX_SOURCE_ROWS:,} 1m bars to resample on the fly. Split it into several requests."
)
RESERVED_INDICATOR_KEYS = {"symbol", "timeframe", "start", "end", "name"}
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _field_error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


# --- serializers ------------------------------------------------------------------------------


class InstrumentOutput(serializers.ModelSerializer):
    underlying = serializers.SlugRelatedField(slug_field="symbol", read_only=True, allow_null=True)

    class Meta:
        model = Instrument
        fields = ("id", "symbol", "name", "asset_class", "exchange", "currency", "tick_size", "lot_size",
                  "fractionable", "shortable", "tradable", "active", "underlying", "expiry", "strike", "right",
                  "multiplier", "occ_symbol")
        read_only_fields = fields


class InstrumentPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = InstrumentOutput(many=True)


class BarOutput(serializers.Serializer):
    ts = serializers.DateTimeField(help_text="Bar open time (UTC); a daily bar is midnight of its session date "
                                             "in the exchange's time zone.")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()
    vwap = serializers.FloatField(allow_null=True)
    trade_count = serializers.IntegerField(allow_null=True)


class BarsOutput(serializers.Serializer):
    symbol = serializers.CharField()
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    source = serializers.ChoiceField(choices=["stored", "resampled"],
                                     help_text="stored bars of the timeframe, or resampled from stored 1m bars.")
    count = serializers.IntegerField()
    bars = BarOutput(many=True)


class IndicatorOutput(serializers.Serializer):
    symbol = serializers.CharField()
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    name = serializers.CharField()
    params = serializers.DictField(child=serializers.FloatField(), help_text="The parameters used (defaults filled).")
    source = serializers.ChoiceField(choices=["stored", "resampled"])
    ts = serializers.ListField(child=serializers.DateTimeField(), help_text="One timestamp per bar.")
    outputs = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Output name -> one value per timestamp; null during the warm-up (TA-Lib lookback).",
    )


class IndicatorParamOutput(serializers.Serializer):
    default = serializers.FloatField()
    minimum = serializers.FloatField()
    type = serializers.ChoiceField(choices=["int", "float"])


class IndicatorCatalogEntry(serializers.Serializer):
    name = serializers.CharField()
    group = serializers.CharField()
    description = serializers.CharField()
    inputs = serializers.ListField(child=serializers.CharField())
    params = serializers.DictField(child=IndicatorParamOutput())
    outputs = serializers.ListField(child=serializers.CharField())


# --- input parsing ----------------------------------------------------------------------------


def _clean_symbol(value: str | None) -> str:
    return (value or "").strip().upper()


def _lookup_instrument(symbol: str, asset_class: str | None) -> Instrument | None:
    """The instrument, None when unknown; ValidationError naming asset_class when ambiguous."""
    if not symbol or len(symbol) > SYMBOL_MAX or "\x00" in symbol:
        return None
    qs = Instrument.objects.filter(symbol=symbol)
    if asset_class:
        qs = qs.filter(asset_class=asset_class)
    found = list(qs.select_related("underlying")[:2])
    if len(found) > 1:
        raise _field_error("asset_class", f"{symbol} exists in several asset classes; say which.")
    return found[0] if found else None


def _asset_class(params) -> str | None:
    value = params.get("asset_class")
    if value in (None, ""):
        return None
    if value not in AssetClass.values:
        raise _field_error("asset_class", f"Unknown asset class; known: {', '.join(AssetClass.values)}.")
    return value


def _bound(params, name: str):
    raw = params.get(name)
    if raw in (None, ""):
        raise _field_error(name, "This field is required.")
    try:
        return parse_bound(raw)
    except (ValueError, OverflowError):
        raise _field_error(name, MSG_BAD_DATE) from None


def _series_params(params) -> tuple[Instrument, str, object, object]:
    """symbol, timeframe, start, end: validated, every problem named by its field."""
    errors: dict[str, list[str]] = {}
    instrument = None
    try:
        asset_class = _asset_class(params)
        symbol = _clean_symbol(params.get("symbol"))
        if not symbol:
            errors["symbol"] = ["This field is required."]
        else:
            instrument = _lookup_instrument(symbol, asset_class)
            if instrument is None:
                errors["symbol"] = ["Unknown symbol."]
    except ValidationError as exc:
        errors.update(exc.detail)
    timeframe = params.get("timeframe") or ""
    if timeframe not in TIMEFRAME_SECONDS:
        errors["timeframe"] = [f"Unknown timeframe; known: {', '.join(TIMEFRAME_SECONDS)}."]
    bounds = {}
    for name in ("start", "end"):
        try:
            bounds[name] = _bound(params, name)
        except ValidationError as exc:
            errors.update(exc.detail)
    if not errors and bounds["start"] >= bounds["end"]:
        errors["start"] = ["start must be before end."]
    if not errors and (bounds["end"] - bounds["start"]) > timedelta(seconds=TIMEFRAME_SECONDS[timeframe] * MAX_ROWS):
        errors["end"] = [MSG_RANGE]
    if errors:
        raise ValidationError(errors)
    return instrument, timeframe, bounds["start"], bounds["end"]


def _load_bars(instrument: Instrument, timeframe: str, start, end) -> tuple[pd.DataFrame, str]:
    try:
        return bars_frame(instrument=instrument, timeframe=timeframe, start=start, end=end)
    except RangeTooLarge:
        raise _field_error("end", MSG_SOURCE) from None


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _bar_records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for r in frame.itertuples(index=False):
        out.append({
            "ts": r.ts.isoformat().replace("+00:00", "Z"),
            "open": _num(r.open), "high": _num(r.high), "low": _num(r.low), "close": _num(r.close),
            "volume": _num(r.volume), "vwap": _num(r.vwap),
            "trade_count": None if math.isnan(r.trade_count) else int(r.trade_count),
        })
    return out


class IgnoreFormatNegotiation(DefaultContentNegotiation):
    """``?format=csv`` names the output format here, not a DRF renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# --- views ------------------------------------------------------------------------------------

SYMBOL_PARAM = OpenApiParameter("symbol", OpenApiTypes.STR, required=True, description="Instrument symbol.")
ASSET_CLASS_PARAM = OpenApiParameter(
    "asset_class", OpenApiTypes.STR, enum=AssetClass.values,
    description="Only needed when the symbol exists in several asset classes.",
)
SERIES_PARAMS = [
    SYMBOL_PARAM,
    ASSET_CLASS_PARAM,
    OpenApiParameter("timeframe", OpenApiTypes.STR, required=True, enum=list(TIMEFRAME_SECONDS)),
    OpenApiParameter("start", OpenApiTypes.DATETIME, required=True,
                     description="Inclusive: YYYY-MM-DD (midnight UTC) or ISO 8601 date-time with an offset."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, required=True,
                     description="Exclusive; after start, at most 50,000 bars of the timeframe after it."),
]
READ_ERRORS = (400, 401, 403, 429)


class _MarketDataView(FirmScopedAPIView):
    """Global data, any member with the 'read' scope (IsFirmMember's default for reads)."""

    renderer_classes = [JSONRenderer]


class InstrumentListApi(_MarketDataView):
    @api_schema(
        operation_id="instruments_list",
        summary="Search instruments",
        description=(
            "Active instruments, paginated. With `q`: symbols starting with it first (shortest first), then "
            "names containing it. Without `q`: every active instrument by symbol. Optional `asset_class` filter."
        ),
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, description="Symbol prefix or part of the name."),
            OpenApiParameter("asset_class", OpenApiTypes.STR, enum=AssetClass.values),
            OpenApiParameter("page", OpenApiTypes.INT, description="Page number (from 1)."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="Rows per page (default 50, max 500)."),
        ],
        responses={200: InstrumentPage},
        errors=(*READ_ERRORS, 404),
        tags=["market data"],
    )
    def get(self, request):
        params = request.query_params
        asset_class = _asset_class(params)
        q = (params.get("q") or "").strip()
        if "\x00" in q or len(q) > 200:
            raise _field_error("q", "At most 200 characters, no NUL.")
        qs = instrument_search(query=q, asset_class=asset_class)
        paginator = StandardPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(InstrumentOutput(page, many=True).data)


class InstrumentDetailApi(_MarketDataView):
    @api_schema(
        operation_id="instruments_retrieve",
        summary="Get one instrument",
        description="One instrument by symbol (case-insensitive). 404 when unknown; 400 naming `asset_class` "
        "when the symbol exists in several asset classes and none is given.",
        parameters=[ASSET_CLASS_PARAM],
        responses={200: InstrumentOutput},
        errors=(*READ_ERRORS, 404),
        tags=["market data"],
    )
    def get(self, request, symbol: str):
        instrument = _lookup_instrument(_clean_symbol(symbol), _asset_class(request.query_params))
        if instrument is None:
            raise NotFound("No such instrument.")
        return Response(InstrumentOutput(instrument).data)


class BarListApi(_MarketDataView):
    content_negotiation_class = IgnoreFormatNegotiation

    @api_schema(
        operation_id="bars_list",
        summary="Bars of one instrument",
        description=(
            "OHLCV bars with `start` <= ts < `end`, oldest first. Served from stored bars of the timeframe; when "
            "none are stored in the range and the timeframe is coarser than 1m, resampled on the fly from stored "
            "1m bars, session-aligned (1h buckets start at the session open, e.g. 09:30 ET; a daily bar is one "
            "exchange session, a UTC day for crypto; `source` says which). A request spans at most 50,000 bars "
            "of its timeframe (and a resample reads at most 500,000 1m bars); larger ranges are a 400 naming "
            "`end`. `format=csv` returns the same bars as CSV (header ts,open,high,low,close,volume,vwap,"
            "trade_count). 400s name the field: unknown symbol, unknown timeframe, bad dates, start not before end."
        ),
        parameters=[
            *SERIES_PARAMS,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Default json."),
        ],
        responses={
            (200, "application/json"): BarsOutput,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV (RFC 4180), one row per bar."),
        },
        errors=READ_ERRORS,
        tags=["market data"],
    )
    def get(self, request):
        fmt = request.query_params.get("format") or "json"
        instrument, timeframe, start, end = _series_params(request.query_params)
        if fmt not in ("json", "csv"):
            raise _field_error("format", "Use json or csv.")
        frame, source = _load_bars(instrument, timeframe, start, end)
        records = _bar_records(frame)
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(BAR_FIELDS), lineterminator="\r\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
            response = HttpResponse(buffer.getvalue(), content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="{instrument.symbol}-{timeframe}.csv"'
            response["X-Bars-Source"] = source
            return response
        return Response({"symbol": instrument.symbol, "timeframe": timeframe, "source": source,
                         "count": len(records), "bars": records})


def _indicator_params(params) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key in params:
        if key in RESERVED_INDICATOR_KEYS or key in ("asset_class", "format"):
            continue
        raw = params.get(key).strip()
        if not NUMBER.match(raw):
            raise _field_error(key, "Must be a number.")
        value = float(raw)
        out[key] = int(value) if re.fullmatch(r"[+-]?\d+", raw) and abs(value) < 1e15 else value
    return out


class IndicatorApi(_MarketDataView):
    @api_schema(
        operation_id="indicators_compute",
        summary="Compute an indicator",
        description=(
            "Indicator `name` (see the catalog) over the bars `GET /bars/` returns for the same symbol, timeframe "
            "and range, aligned with their timestamps; warm-up values are null. Indicator parameters are further "
            "query parameters, e.g. `name=SMA&timeperiod=20` (defaults from the catalog). 400s name the field: "
            "unknown indicator (`name`), unknown or invalid parameter (its name), and those of `GET /bars/`."
        ),
        parameters=[
            *SERIES_PARAMS,
            OpenApiParameter("name", OpenApiTypes.STR, required=True, enum=sorted(indicators.INDICATORS),
                             description="Indicator name (case-insensitive)."),
        ],
        responses={200: IndicatorOutput},
        errors=READ_ERRORS,
        tags=["market data"],
    )
    def get(self, request):
        params = request.query_params
        name = (params.get("name") or "").strip().upper()
        spec = indicators.INDICATORS.get(name)
        if spec is None:
            raise _field_error("name", f"Unknown indicator; known: {', '.join(sorted(indicators.INDICATORS))}.")
        given = _indicator_params(params)
        unknown = sorted(set(given) - set(spec.params))
        if unknown:
            allowed = ", ".join(spec.params) or "none"
            raise ValidationError({key: [f"Unknown parameter of {name}; allowed: {allowed}."] for key in unknown})
        instrument, timeframe, start, end = _series_params(params)
        clean = {k: given.get(k, p.default) for k, p in spec.params.items()}
        frame, source = _load_bars(instrument, timeframe, start, end)
        try:
            if len(frame):
                result = indicators.compute(name, frame, **clean)
            else:
                indicators.compute(name, bars_to_frame([(pd.Timestamp("2000-01-03", tz="UTC"), 1, 1, 1, 1, 1, 1, 1)]),
                                   **clean)  # validates the parameters
                result = {o: np.array([]) for o in spec.outputs}
        except ValueError as exc:
            match = re.search(r"parameter (\w+)", str(exc))
            raise _field_error(match.group(1) if match else "name", str(exc)) from None
        return Response({
            "symbol": instrument.symbol, "timeframe": timeframe, "name": name, "params": clean, "source": source,
            "ts": [t.isoformat().replace("+00:00", "Z") for t in frame["ts"]],
            "outputs": {k: [_num(v) for v in values] for k, values in result.items()},
        })


class IndicatorCatalogApi(_MarketDataView):
    @api_schema(
        operation_id="indicators_catalog",
        summary="Indicator catalog",
        description="Every indicator: name, group, inputs, parameters (default, minimum, type) and outputs.",
        responses={200: IndicatorCatalogEntry(many=True)},
        errors=(401, 403, 429),
        tags=["market data"],
    )
    def get(self, request):
        return Response(indicators.catalog())
