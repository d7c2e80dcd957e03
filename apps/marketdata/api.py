"""REST API of market data: instruments, bars (stored or resampled from 1m), indicators, quotes, data
quality; and the firm-owned resources around it: watchlists and bar-file imports.

Market data is global (not firm-owned): any member of the active firm with the 'read' token scope
may read it, and every firm sees the same rows. Watchlists and import jobs belong to a firm: another
firm's id is a 404 on every verb; writes need owner/admin/trader and the 'trade' token scope.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.models import MANAGE_ROLES, TRADE_ROLES
from apps.audit.params import parse_bound
from apps.audit.services import RequestMeta, actor_from_request
from apps.core.api import (
    NO_CONTENT,
    ErrorResponseSerializer,
    FirmScopedAPIView,
    StrictInputSerializer,
    api_schema,
    firm_queryset,
    text_field,
)
from apps.core.errors import DomainError
from apps.core.pagination import StandardPagination
from apps.marketdata import indicators
from apps.marketdata.models import AssetClass, ImportJob, ImportStatus, Instrument, Timeframe, Watchlist
from apps.marketdata.quality import DEFAULT_STALE_BARS
from apps.marketdata.selectors import (
    BAR_FIELDS,
    MAX_SOURCE_ROWS,
    RangeTooLarge,
    bars_frame,
    bars_to_frame,
    data_quality,
    import_job_list,
    import_job_progress,
    instrument_search,
    quote_board,
    watchlist_items,
    watchlist_list,
)
from apps.marketdata.services import (
    IMPORT_MAX_BYTES,
    MSG_FILE_TOO_LARGE,
    import_job_create,
    watchlist_add,
    watchlist_create,
    watchlist_delete,
    watchlist_remove,
    watchlist_rename,
    watchlist_reorder,
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
    next = serializers.URLField(allow_null=True, help_text="URL of the rest of the range; null when this is all.")
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


def _series_params(params, *, max_rows: int | None = MAX_ROWS) -> tuple[Instrument, str, object, object]:
    """symbol, timeframe, start, end: validated, every problem named by its field.

    ``max_rows``: the longest range (in bars of the timeframe) one request may span; None for
    endpoints that paginate instead (bars)."""
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
    if not errors and max_rows is not None and (
            bounds["end"] - bounds["start"]) > timedelta(seconds=TIMEFRAME_SECONDS[timeframe] * max_rows):
        errors["end"] = [MSG_RANGE]
    if errors:
        raise ValidationError(errors)
    return instrument, timeframe, bounds["start"], bounds["end"]


def _load_bars(instrument: Instrument, timeframe: str, start, end, limit: int | None = None) -> tuple[pd.DataFrame, str]:
    try:
        return bars_frame(instrument=instrument, timeframe=timeframe, start=start, end=end, limit=limit)
    except RangeTooLarge:
        raise _field_error("end", MSG_SOURCE) from None


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _iso_z(ts: pd.Series) -> list[str]:
    """UTC timestamps as ISO 8601 text with a Z (seconds, or microseconds when any has a fraction)."""
    values = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
    whole = not (values.astype("int64") % 1_000_000).any()
    return [f"{t}Z" for t in np.datetime_as_string(values, unit="s" if whole else "us").tolist()]


def _number_text(values: np.ndarray, *, integer: bool, null: str) -> pa.Array:
    """Each value as the shortest text that reads back as the same double (Arrow's C++ formatter), with a
    ".0" on whole floats as Python writes them (10.0, not 10); ``null`` where not finite."""
    finite = np.isfinite(values)
    if integer:
        text = pc.cast(pa.array(np.where(finite, values, 0).astype("int64")), pa.string())
    else:
        text = pc.cast(pa.array(np.where(finite, values, 0.0)), pa.string())
        whole = pc.invert(pc.match_substring_regex(text, r"[.e]"))
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    if not finite.all():
        text = pc.if_else(pa.array(~finite), pa.scalar(null), text)
    return text


def _bars_text(frame: pd.DataFrame, *, fmt: str) -> str:
    """The bars as a JSON array of objects or as CSV rows (no header), built column-wise in Arrow:
    no Python object per value (a year of 1m bars renders in about the time the database read takes)."""
    if not len(frame):
        return "[]" if fmt == "json" else ""
    null = "null" if fmt == "json" else ""
    ts = pa.array(_iso_z(frame["ts"]), pa.string())
    values = [_number_text(frame[name].to_numpy("float64"), integer=name == "trade_count", null=null)
              for name in BAR_FIELDS[1:]]
    if fmt == "json":
        parts = ['{"ts":"', ts, '"']
        for name, text in zip(BAR_FIELDS[1:], values, strict=True):
            parts += [f',"{name}":', text]
        rows = pc.binary_join_element_wise(*parts, "}", "")
        separator, head, tail = ",", "[", "]"
    else:
        rows = pc.binary_join_element_wise(ts, *values, ",")
        separator, head, tail = "\r\n", "", "\r\n"
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows), separator)
    return head + joined[0].as_py() + tail


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
            OpenApiParameter("q", {"type": "string", "maxLength": 200, "pattern": "^[^\\x00]*$"},
                             description="Symbol prefix or part of the name (at most 200 characters)."),
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


BARS_PAGE_JSON = MAX_ROWS  # bars per JSON page (default and maximum of `limit`)
BARS_PAGE_CSV = 600_000  # bars per CSV response: a year of 24/7 1m bars (525,600) in one download
MSG_LIMIT = "Must be a whole number from 1 to {max:,} for format={fmt}."


def _limit(params, fmt: str) -> int:
    most = BARS_PAGE_CSV if fmt == "csv" else BARS_PAGE_JSON
    raw = (params.get("limit") or "").strip()
    if not raw:
        return most
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise _field_error("limit", MSG_LIMIT.format(max=most, fmt=fmt))
    return int(raw)


def _next_url(request, next_ts: pd.Timestamp) -> str:
    """The same request from the first bar not returned (keyset pagination on ts: stable under inserts)."""
    query = request.query_params.copy()
    query["start"] = _iso_z(pd.Series([next_ts]))[0]
    return request.build_absolute_uri(f"{request.path}?{query.urlencode(safe=':')}")


class BarListApi(_MarketDataView):
    content_negotiation_class = IgnoreFormatNegotiation

    @api_schema(
        operation_id="bars_list",
        summary="Bars of one instrument",
        description=(
            "OHLCV bars with `start` <= ts < `end`, oldest first. Served from stored bars of the timeframe; when "
            "none are stored in the range and the timeframe is coarser than 1m, resampled on the fly from stored "
            "1m bars, session-aligned (1h buckets start at the session open, e.g. 09:30 ET; a daily bar is one "
            "exchange session, a UTC day for crypto; `source` says which). Any range may be asked for; a "
            f"response holds at most `limit` bars (JSON: default and maximum {BARS_PAGE_JSON:,}; CSV: "
            f"{BARS_PAGE_CSV:,}, a year of 24/7 minutes). When more bars remain in the range, `next` (JSON) or "
            "the `Link: <...>; rel=\"next\"` header (CSV) is the URL of the rest: the same query starting at the "
            "first bar not returned. A resample reads at most 500,000 1m bars; a larger range is a 400 naming "
            "`end`. `format=csv` returns the bars as CSV (header ts,open,high,low,close,volume,vwap,trade_count). "
            "400s name the field: unknown symbol, unknown timeframe, bad dates, start not before end, bad limit."
        ),
        parameters=[
            *SERIES_PARAMS,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Default json."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=(
                f"Bars per response: 1..{BARS_PAGE_JSON:,} for JSON, 1..{BARS_PAGE_CSV:,} for CSV (default: the "
                "maximum).")),
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
        instrument, timeframe, start, end = _series_params(request.query_params, max_rows=None)
        if fmt not in ("json", "csv"):
            raise _field_error("format", "Use json or csv.")
        limit = _limit(request.query_params, fmt)
        frame, source = _load_bars(instrument, timeframe, start, end, limit=limit + 1)
        next_url = _next_url(request, frame["ts"].iloc[limit]) if len(frame) > limit else None
        page = frame.iloc[:limit]
        if fmt == "csv":
            body = ",".join(BAR_FIELDS) + "\r\n" + _bars_text(page, fmt="csv")
            response = HttpResponse(body, content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="{instrument.symbol}-{timeframe}.csv"'
            response["X-Bars-Source"] = source
            if next_url:
                response["Link"] = f'<{next_url}>; rel="next"'
            return response
        # The envelope through json, the bars pre-rendered (shape and values as BarsOutput says).
        head = json.dumps({"symbol": instrument.symbol, "timeframe": timeframe, "source": source,
                           "count": len(page), "next": next_url}, separators=(",", ":"))
        return HttpResponse(f'{head[:-1]},"bars":{_bars_text(page, fmt="json")}}}', content_type="application/json")


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


# --- quotes -------------------------------------------------------------------------------------

MAX_QUOTE_SYMBOLS = 200
MSG_SYMBOLS_REQUIRED = "Give one or more symbols, comma-separated (e.g. AAPL,MSFT)."
MSG_SYMBOLS_LIMIT = f"At most {MAX_QUOTE_SYMBOLS} symbols per request."


class QuoteOutput(serializers.Serializer):
    symbol = serializers.CharField()
    bid = serializers.FloatField()
    ask = serializers.FloatField()
    last = serializers.FloatField()
    bid_size = serializers.FloatField()
    ask_size = serializers.FloatField()
    ts = serializers.DateTimeField(help_text="When the quote was made (UTC).")
    stale = serializers.BooleanField(help_text="True when the quote is old (over 90 s) or its market is closed: "
                                               "never show a stale quote as live.")
    prev_close = serializers.FloatField(allow_null=True, help_text=(
        "Close of the previous session (exchange-traded) or of the 1m bar 24 h earlier (crypto); null when unknown."))
    change = serializers.FloatField(allow_null=True, help_text="last - prev_close.")
    change_pct = serializers.FloatField(allow_null=True, help_text="change / prev_close, in percent.")


class QuoteBoardOutput(serializers.Serializer):
    results = QuoteOutput(many=True, help_text="Symbols with a quote, in the order asked.")
    missing = serializers.ListField(child=serializers.CharField(), help_text="Known symbols with neither a quote nor a stored bar.")


def _quote_symbols(params) -> list[str]:
    raw = params.get("symbols") or ""
    symbols = list(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    if not symbols:
        raise _field_error("symbols", MSG_SYMBOLS_REQUIRED)
    if len(symbols) > MAX_QUOTE_SYMBOLS:
        raise _field_error("symbols", MSG_SYMBOLS_LIMIT)
    bad = [s for s in symbols if len(s) > SYMBOL_MAX or "\x00" in s]
    known = set(Instrument.objects.filter(symbol__in=[s for s in symbols if s not in bad])
                .values_list("symbol", flat=True))
    unknown = [s for s in symbols if s not in known]
    if unknown:
        raise _field_error("symbols", f"Unknown symbol(s): {', '.join(s[:SYMBOL_MAX] for s in unknown[:20])}.")
    return symbols


class QuoteListApi(_MarketDataView):
    @api_schema(
        operation_id="quotes_list",
        summary="Latest quotes",
        description=(
            "Latest bid/ask/last of each symbol (comma-separated, at most 200), with the previous close and the "
            "day change. `stale` is true when a quote is over 90 s old or its market is closed. Known symbols "
            "with no quote in the cache show their last stored 1-minute bar's close as `last` (no bid/ask, `stale` "
            "true); those with neither are listed in `missing`. 400 naming `symbols`: none given, more than 200, or an "
            "unknown symbol."
        ),
        parameters=[OpenApiParameter("symbols", OpenApiTypes.STR, required=True,
                                     description="Comma-separated symbols, e.g. AAPL,MSFT,BTC/USD.")],
        responses={200: QuoteBoardOutput},
        errors=READ_ERRORS,
        tags=["market data"],
    )
    def get(self, request):
        symbols = _quote_symbols(request.query_params)
        rows = quote_board(symbols=symbols)
        results = [r for r in rows if r["ts"] is not None]
        missing = [r["symbol"] for r in rows if r["ts"] is None]
        return Response({"results": QuoteOutput(results, many=True).data, "missing": missing})


# --- watchlists ---------------------------------------------------------------------------------

WATCHLIST_NAME_MAX = 100
WATCHLIST_ERRORS = (400, 401, 403, 404, 409, 415, 429)


class WatchlistItemOutput(serializers.Serializer):
    symbol = serializers.CharField(source="instrument.symbol")
    name = serializers.CharField(source="instrument.name")
    asset_class = serializers.ChoiceField(source="instrument.asset_class", choices=AssetClass.choices)
    position = serializers.IntegerField(help_text="0 = first.")


class WatchlistOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()


class WatchlistDetailOutput(WatchlistOutput):
    items = WatchlistItemOutput(many=True, help_text="In display order.")


class WatchlistPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = WatchlistOutput(many=True)


class WatchlistCreateInput(StrictInputSerializer):
    name = text_field(max_length=WATCHLIST_NAME_MAX)


class WatchlistRenameInput(StrictInputSerializer):
    name = text_field(max_length=WATCHLIST_NAME_MAX, required=False)  # PATCH: absent means unchanged


class WatchlistAddInput(StrictInputSerializer):
    symbol = serializers.RegexField(r"^[^\x00\s]{1,32}$", help_text="The instrument's symbol (case-insensitive).")
    asset_class = serializers.ChoiceField(choices=AssetClass.choices, required=False,
                                          help_text="Only needed when the symbol exists in several asset classes.")


class WatchlistOrderInput(StrictInputSerializer):
    symbols = serializers.ListField(
        child=serializers.RegexField(r"^[^\x00\s]{1,32}$"), max_length=1000,
        help_text="Every symbol of the watchlist once, in the new order.")


def _renamed_fields(exc: DomainError, field: str) -> DomainError:
    """A service error naming its own parameter, re-said with the API's field name."""
    fields = {field: next(iter(exc.fields.values()), [exc.message])} if exc.fields else {field: [exc.message]}
    return DomainError(exc.code, exc.message, fields=fields, status_code=exc.status_code)


class _WatchlistView(FirmScopedAPIView):
    """Firm-owned: reads for any member ('read' scope); writes for owner/admin/trader with 'trade'."""

    renderer_classes = [JSONRenderer]
    write_roles = TRADE_ROLES
    write_scope = "trade"

    def object_for(self, firm, pk: int, **_):
        watchlist = firm_queryset(Watchlist, firm).filter(pk=pk).first()
        if watchlist is None:
            raise NotFound("No such watchlist.")
        return watchlist

    def _detail(self, watchlist: Watchlist) -> Response:
        return Response(WatchlistDetailOutput({"id": watchlist.pk, "name": watchlist.name,
                                               "created_at": watchlist.created_at,
                                               "items": watchlist_items(watchlist=watchlist)}).data)


class WatchlistListApi(_WatchlistView):
    @api_schema(
        operation_id="watchlists_list",
        summary="List watchlists",
        description="The active firm's watchlists by name, paginated. Any member may read.",
        parameters=[OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("page_size", OpenApiTypes.INT)],
        responses={200: WatchlistPage},
        tags=["watchlists"],
    )
    def get(self, request):
        paginator = StandardPagination()
        page = paginator.paginate_queryset(watchlist_list(), request, view=self)
        return paginator.get_paginated_response(WatchlistOutput(page, many=True).data)

    @api_schema(
        operation_id="watchlists_create",
        summary="Create a watchlist",
        description="Owners, admins and traders; needs the 'trade' scope. A name already used in the firm is 409 "
        "naming `name`. Audited as watchlist.created.",
        request=WatchlistCreateInput,
        responses={201: WatchlistDetailOutput},
        errors=WATCHLIST_ERRORS,
        tags=["watchlists"],
    )
    def post(self, request):
        data = WatchlistCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        watchlist = watchlist_create(firm_id=request.firm.pk, name=data.validated_data["name"],
                                     actor=actor_from_request(request), meta=RequestMeta.from_request(request._request))
        response = self._detail(watchlist)
        response.status_code = 201
        return response


class WatchlistDetailApi(_WatchlistView):
    @api_schema(
        operation_id="watchlists_retrieve",
        summary="Get a watchlist",
        description="One watchlist with its items in order. Another firm's watchlist is 404.",
        responses={200: WatchlistDetailOutput},
        tags=["watchlists"],
    )
    def get(self, request, pk: int):
        return self._detail(self.get_firm_object())

    @api_schema(
        operation_id="watchlists_rename",
        summary="Rename a watchlist",
        description="Owners, admins and traders; 'trade' scope. A name already used is 409 naming `name`. "
        "Audited as watchlist.renamed.",
        request=WatchlistRenameInput,
        responses={200: WatchlistDetailOutput},
        errors=WATCHLIST_ERRORS,
        tags=["watchlists"],
    )
    def patch(self, request, pk: int):
        data = WatchlistRenameInput(data=request.data)
        data.is_valid(raise_exception=True)
        watchlist = self.get_firm_object()
        if "name" in data.validated_data:
            watchlist = watchlist_rename(watchlist=watchlist, name=data.validated_data["name"],
                                         actor=actor_from_request(request),
                                         meta=RequestMeta.from_request(request._request))
        return self._detail(watchlist)

    @api_schema(
        operation_id="watchlists_destroy",
        summary="Delete a watchlist",
        description="Owners, admins and traders; 'trade' scope. Audited as watchlist.deleted.",
        responses=NO_CONTENT,
        errors=(401, 403, 404, 429),
        tags=["watchlists"],
    )
    def delete(self, request, pk: int):
        watchlist_delete(watchlist=self.get_firm_object(), actor=actor_from_request(request),
                         meta=RequestMeta.from_request(request._request))
        return Response(status=204)


class WatchlistItemsApi(_WatchlistView):
    @api_schema(
        operation_id="watchlists_items_add",
        summary="Add a symbol to a watchlist",
        description="Appends the instrument at the end. Unknown symbol: 400 naming `symbol`; already listed: 409 "
        "naming `symbol`. Owners, admins and traders; 'trade' scope. Audited as watchlist.item_added.",
        request=WatchlistAddInput,
        responses={201: WatchlistDetailOutput},
        errors=WATCHLIST_ERRORS,
        tags=["watchlists"],
    )
    def post(self, request, pk: int):
        watchlist = self.get_firm_object()
        data = WatchlistAddInput(data=request.data)
        data.is_valid(raise_exception=True)
        instrument = _lookup_instrument(_clean_symbol(data.validated_data["symbol"]),
                                        data.validated_data.get("asset_class"))
        if instrument is None:
            raise _field_error("symbol", "Unknown symbol.")
        try:
            watchlist_add(watchlist=watchlist, instrument=instrument, actor=actor_from_request(request),
                          meta=RequestMeta.from_request(request._request))
        except DomainError as exc:
            raise _renamed_fields(exc, "symbol") from exc
        response = self._detail(watchlist)
        response.status_code = 201
        return response


class WatchlistItemDetailApi(_WatchlistView):
    @api_schema(
        operation_id="watchlists_items_remove",
        summary="Remove a symbol from a watchlist",
        description="The items after it move up. A symbol not on the watchlist is 404. Owners, admins and traders; "
        "'trade' scope. Audited as watchlist.item_removed.",
        responses=NO_CONTENT,
        errors=(401, 403, 404, 429),
        tags=["watchlists"],
    )
    def delete(self, request, pk: int, symbol: str):
        watchlist = self.get_firm_object()
        wanted = _clean_symbol(symbol)
        item = next((i for i in watchlist_items(watchlist=watchlist) if i.instrument.symbol == wanted), None)
        if item is None:
            raise NotFound(f"{wanted[:SYMBOL_MAX]} is not on this watchlist.")
        watchlist_remove(watchlist=watchlist, instrument=item.instrument, actor=actor_from_request(request),
                         meta=RequestMeta.from_request(request._request))
        return Response(status=204)


class WatchlistOrderApi(_WatchlistView):
    @api_schema(
        operation_id="watchlists_order",
        summary="Reorder a watchlist",
        description="`symbols` must list every symbol of the watchlist exactly once (400 naming `symbols` "
        "otherwise). Owners, admins and traders; 'trade' scope. Audited as watchlist.reordered.",
        request=WatchlistOrderInput,
        responses={200: WatchlistDetailOutput},
        errors=WATCHLIST_ERRORS,
        tags=["watchlists"],
    )
    def post(self, request, pk: int):
        watchlist = self.get_firm_object()
        data = WatchlistOrderInput(data=request.data)
        data.is_valid(raise_exception=True)
        by_symbol = {i.instrument.symbol: i.instrument_id for i in watchlist_items(watchlist=watchlist)}
        symbols = [_clean_symbol(s) for s in data.validated_data["symbols"]]
        unknown = [s for s in symbols if s not in by_symbol]
        if unknown:
            raise _field_error("symbols", f"Not on this watchlist: {', '.join(unknown[:20])}.")
        try:
            watchlist_reorder(watchlist=watchlist, instrument_ids=[by_symbol[s] for s in symbols],
                              actor=actor_from_request(request), meta=RequestMeta.from_request(request._request))
        except DomainError as exc:
            raise _renamed_fields(exc, "symbols") from exc
        return self._detail(watchlist)


# --- imports ------------------------------------------------------------------------------------

# Bars are global: an import changes what every firm sees, so only a firm's owners and admins may
# upload (with the token's admin scope), and every import is audited in their firm's chain.
IMPORT_WRITE_ROLES = MANAGE_ROLES


class ImportJobOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ImportStatus.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    file_name = serializers.CharField()
    file_size = serializers.IntegerField()
    symbol = serializers.CharField()
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    tz = serializers.CharField()
    columns = serializers.DictField(child=serializers.CharField(), source="column_map",
                                    help_text="Our field -> the file's column.")
    create_instrument = serializers.BooleanField()
    asset_class = serializers.CharField(allow_blank=True)
    skip_bad_rows = serializers.BooleanField()
    rows = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    inserted = serializers.IntegerField()
    updated = serializers.IntegerField()
    instrument_created = serializers.BooleanField()
    error_code = serializers.CharField(allow_blank=True)
    error_message = serializers.CharField(allow_blank=True)
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_created_by(self, job) -> str | None:
        member = job.created_by
        return member.user.email if member is not None else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["progress"] = import_job_progress(instance)
        return data


class ImportIssueOutput(serializers.Serializer):
    row = serializers.IntegerField(help_text="1 = the first data row (a CSV header is not counted).")
    field = serializers.CharField()
    reason = serializers.CharField()


class ImportReportOutput(serializers.Serializer):
    rows = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = ImportIssueOutput(many=True, help_text="Rejections (at most 5,000 listed; errors_total says all).")
    warnings = ImportIssueOutput(many=True, help_text="Outliers, bars outside the session: never rejections.")
    errors_total = serializers.IntegerField(required=False)
    warnings_total = serializers.IntegerField(required=False)


class ImportJobDetailOutput(ImportJobOutput):
    report = serializers.SerializerMethodField(help_text="The validation report; null until the file was read.")

    @extend_schema_field(ImportReportOutput(allow_null=True))
    def get_report(self, job) -> dict | None:
        return job.report or None


class ImportJobPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ImportJobOutput(many=True)


class ImportCreateInput(StrictInputSerializer):
    file = serializers.FileField(help_text="A .csv or .parquet file of bars, at most 50 MB.")
    symbol = serializers.RegexField(r"^[^\x00\s]{1,32}$")
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    tz = serializers.CharField(max_length=64, required=False, default="UTC",
                               help_text="IANA zone of naive timestamps (default UTC).")
    columns = serializers.CharField(max_length=500, required=False, allow_blank=True, default="",
                                    help_text="Column map FIELD=COLUMN,..., e.g. ts=Date,volume=Vol.")
    create_instrument = serializers.BooleanField(required=False, default=False)
    asset_class = serializers.ChoiceField(choices=AssetClass.choices, required=False, allow_blank=True, default="",
                                          help_text="Needed with create_instrument (equity, etf or crypto).")
    skip_bad_rows = serializers.BooleanField(required=False, default=False)


class ImportListApi(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]
    parser_classes = [MultiPartParser, FormParser]
    write_roles = IMPORT_WRITE_ROLES
    write_scope = "admin"

    @api_schema(
        operation_id="imports_list",
        summary="List bar imports",
        description="The active firm's import jobs, newest first, paginated (without the report). Any member.",
        parameters=[OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("page_size", OpenApiTypes.INT)],
        responses={200: ImportJobPage},
        tags=["imports"],
    )
    def get(self, request):
        paginator = StandardPagination()
        page = paginator.paginate_queryset(import_job_list(), request, view=self)
        return paginator.get_paginated_response(ImportJobOutput(page, many=True).data)

    @api_schema(
        operation_id="imports_create",
        summary="Upload a bar file",
        description=(
            "Queues an import of a CSV/Parquet file of OHLCV bars (multipart/form-data) and answers 202 with the job; "
            "poll `GET /imports/{id}/` for progress and the validation report. Bad requests are 400 naming the field "
            "and store nothing: unknown symbol without `create_instrument` (`symbol`), `create_instrument` without "
            "`asset_class`, bad `tz`, bad `columns`, a file that is not .csv/.parquet or is empty (`file`); a file "
            "over 50 MB is 413 naming `file`. A file with a rejected row writes nothing (the job fails with the "
            "report) unless `skip_bad_rows`. Re-importing the same file leaves identical rows. Bars are global "
            "market data. Owners and admins; 'admin' scope. Audited as bars.import_queued, then "
            "bars.imported or bars.import_failed."
        ),
        request={"multipart/form-data": ImportCreateInput},
        responses={202: ImportJobDetailOutput,
                   413: OpenApiResponse(ErrorResponseSerializer, description="The file is over 50 MB.")},
        errors=WATCHLIST_ERRORS,
        tags=["imports"],
    )
    def post(self, request):
        upload = request.data.get("file") if hasattr(request.data, "get") else None
        if upload is not None and getattr(upload, "size", 0) > IMPORT_MAX_BYTES:
            raise DomainError("FILE_TOO_LARGE", MSG_FILE_TOO_LARGE, fields={"file": [MSG_FILE_TOO_LARGE]},
                              status_code=413)
        data = ImportCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        upload = values["file"]
        job = import_job_create(
            firm_id=request.firm.pk, created_by=request.membership, file_name=upload.name, content=upload.read(),
            symbol=values["symbol"], timeframe=values["timeframe"], tz=values["tz"], columns=values["columns"],
            create_instrument=values["create_instrument"], asset_class=values["asset_class"] or None,
            skip_bad_rows=values["skip_bad_rows"], actor=actor_from_request(request),
            meta=RequestMeta.from_request(request._request),
        )
        return Response(ImportJobDetailOutput(job).data, status=202)


class ImportDetailApi(FirmScopedAPIView):
    renderer_classes = [JSONRenderer]

    def object_for(self, firm, pk: int):
        job = firm_queryset(ImportJob, firm).defer("file_data").select_related("created_by__user").filter(pk=pk).first()
        if job is None:
            raise NotFound("No such import.")
        return job

    @api_schema(
        operation_id="imports_retrieve",
        summary="Get a bar import",
        description="Status (queued, running, succeeded, failed), progress 0-100, counts and, once the file was "
        "read, the validation report: every rejected row with its field and reason, and the warnings.",
        responses={200: ImportJobDetailOutput},
        tags=["imports"],
    )
    def get(self, request, pk: int):
        return Response(ImportJobDetailOutput(self.get_firm_object()).data)


# --- data quality -------------------------------------------------------------------------------


class QualitySpanOutput(serializers.Serializer):
    start = serializers.DateTimeField(help_text="First bar of the span (UTC).")
    end = serializers.DateTimeField(help_text="Last bar of the span (UTC), inclusive.")
    bars = serializers.IntegerField()


class QualityOutlierOutput(serializers.Serializer):
    ts = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=["return", "range"])
    value = serializers.FloatField(help_text="The return, or the high-low range, as a fraction of the price.")
    score = serializers.FloatField(help_text="Robust z-score (return) or multiple of the median range (range).")


class QualitySummaryOutput(serializers.Serializer):
    expected = serializers.IntegerField(help_text="Bars the calendar expects in the range.")
    present = serializers.IntegerField(help_text="Bars stored in the range.")
    matched = serializers.IntegerField(help_text="Expected bars that are present.")
    missing = serializers.IntegerField()
    coverage_pct = serializers.FloatField(allow_null=True, help_text="matched / expected, percent; null if none.")
    outside_session = serializers.IntegerField(help_text="Present bars outside any session.")
    gaps = serializers.IntegerField()
    stale_periods = serializers.IntegerField()
    outliers = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class QualityReportOutput(serializers.Serializer):
    symbol = serializers.CharField()
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    stale_bars = serializers.IntegerField()
    summary = QualitySummaryOutput()
    gaps = QualitySpanOutput(many=True)
    stale = QualitySpanOutput(many=True)
    outliers = QualityOutlierOutput(many=True)
    duplicates = serializers.ListField(child=serializers.DateTimeField())
    truncated = serializers.BooleanField(help_text="A list was cut at 500 entries (the summary counts them all).")


def quality_params(params) -> tuple[Instrument, str, object, object, int]:
    """The data-quality request, validated like a bars request (+ stale_bars), each problem named."""
    raw = params.get("stale_bars")
    stale_bars = DEFAULT_STALE_BARS
    if raw not in (None, ""):
        if not re.fullmatch(r"\d{1,4}", raw.strip()) or not 2 <= int(raw) <= 1000:
            raise _field_error("stale_bars", "A whole number from 2 to 1000.")
        stale_bars = int(raw)
    instrument, timeframe, start, end = _series_params(params)
    return instrument, timeframe, start, end, stale_bars


def quality_result(instrument: Instrument, timeframe: str, start, end, stale_bars: int) -> dict:
    try:
        report = data_quality(instrument=instrument, timeframe=timeframe, start=start, end=end, stale_bars=stale_bars)
    except ValueError as exc:  # the range lies outside the exchange calendar
        raise _field_error("start", str(exc)) from None
    return {"symbol": instrument.symbol, "timeframe": timeframe, "start": start, "end": end,
            "stale_bars": stale_bars, **report.as_dict()}


class DataQualityApi(_MarketDataView):
    @api_schema(
        operation_id="data_quality_report",
        summary="Data-quality report of a bar series",
        description=(
            "For the stored bars of one symbol and timeframe with `start` <= ts < `end`: gaps against the exchange "
            "calendar (holidays and early closes are not gaps; crypto trades 24/7), stale periods (`stale_bars` or "
            "more bars in a row with an unchanged close and zero volume, default 10), outliers (log returns beyond "
            "8 robust z-scores; high-low ranges over 10x the median), duplicates and a summary with the coverage. "
            "Lists stop at 500 entries. 400s name the field: unknown symbol, unknown timeframe, bad dates, start "
            "not before end, a range over 50,000 bars of the timeframe (`end`)."
        ),
        parameters=[*SERIES_PARAMS, OpenApiParameter("stale_bars", OpenApiTypes.INT,
                                                     description="Minimum run length of a stale period (2-1000).")],
        responses={200: QualityReportOutput},
        errors=READ_ERRORS,
        tags=["market data"],
    )
    def get(self, request):
        result = quality_result(*quality_params(request.query_params))
        return Response(QualityReportOutput(result).data)
