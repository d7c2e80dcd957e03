"""REST API of data providers: the firm's Alpaca connection and backfills.

The connection is the firm's credentials: only owners and admins see or change it, and tokens
need the 'admin' scope even to read it. The secret is write-only: responses carry a mask and its
last 4 characters. Backfills write global bars with the firm's keys: any member may follow them,
owners and admins start them.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.response import Response

from apps.audit.services import RequestMeta, actor_from_request
from apps.core import crypto
from apps.core.api import (
    NO_CONTENT,
    FirmScopedAPIView,
    FirmScopedViewSet,
    StrictInputSerializer,
    api_schema,
)
from apps.core.permissions import MANAGE_ROLES
from apps.marketdata import provider_services as services
from apps.marketdata.models import (
    AlpacaConnection,
    AlpacaCryptoLocation,
    AlpacaDataFeed,
    Backfill,
    Timeframe,
)

KEY_PATTERN = r"^[\x21-\x7e]+$"  # printable ASCII, no spaces: what Alpaca's keys are made of


def _meta(request) -> RequestMeta:
    return RequestMeta.from_request(request._request)


# --- serializers ------------------------------------------------------------------------------


class AlpacaConnectionOutput(serializers.Serializer):
    key_id = serializers.CharField()
    secret = serializers.SerializerMethodField(help_text="Masked: never the secret, at most its last 4 characters.")
    data_feed = serializers.ChoiceField(choices=AlpacaDataFeed.choices)
    crypto_location = serializers.ChoiceField(choices=AlpacaCryptoLocation.choices)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    created_by = serializers.EmailField(source="created_by.email", allow_null=True, default=None)
    updated_by = serializers.EmailField(source="updated_by.email", allow_null=True, default=None)
    last_error = serializers.CharField(help_text="The last failure talking to Alpaca; empty when none.")
    last_error_at = serializers.DateTimeField(allow_null=True)
    last_ok_at = serializers.DateTimeField(allow_null=True)

    def get_secret(self, obj: AlpacaConnection) -> str:
        return crypto.masked(obj.secret_hint)


class AlpacaConnectionInput(StrictInputSerializer):
    key_id = serializers.RegexField(KEY_PATTERN, max_length=64, help_text="Alpaca API key id.")
    secret = serializers.RegexField(KEY_PATTERN, max_length=256, write_only=True,
                                    help_text="Alpaca API secret key; stored encrypted, never returned.")
    data_feed = serializers.ChoiceField(choices=AlpacaDataFeed.choices, default=AlpacaDataFeed.IEX)
    crypto_location = serializers.ChoiceField(choices=AlpacaCryptoLocation.choices, default=AlpacaCryptoLocation.US)


class BackfillProgress(serializers.Serializer):
    symbols_done = serializers.IntegerField()
    symbols_total = serializers.IntegerField()


class BackfillOutput(serializers.Serializer):
    id = serializers.IntegerField()
    provider = serializers.CharField()
    symbols = serializers.ListField(child=serializers.CharField())
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    status = serializers.CharField(help_text="queued, running, succeeded or failed.")
    progress = serializers.SerializerMethodField()
    rows_inserted = serializers.IntegerField()
    rows_updated = serializers.IntegerField()
    rows_unchanged = serializers.IntegerField()
    error = serializers.CharField(help_text="Why it failed; empty otherwise.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(BackfillProgress)
    def get_progress(self, obj: Backfill) -> dict:
        return {"symbols_done": obj.symbols_done, "symbols_total": len(obj.symbols)}


class BackfillInput(StrictInputSerializer):
    symbols = serializers.ListField(child=serializers.RegexField(r"^[A-Za-z0-9./-]{1,32}$"), min_length=1,
                                    max_length=services.MAX_SYMBOLS,
                                    help_text="Existing instruments; crypto pairs as BTC/USD.")
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    start = serializers.DateTimeField(help_text="Inclusive, ISO 8601 (UTC when no offset).")
    end = serializers.DateTimeField(help_text="Exclusive, ISO 8601, after start, not in the future.")


# --- views ------------------------------------------------------------------------------------


class AlpacaConnectionApi(FirmScopedAPIView):
    required_roles = MANAGE_ROLES
    read_scope = "admin"
    write_scope = "admin"

    def _connection(self, request) -> AlpacaConnection:
        conn = (AlpacaConnection.objects.filter(firm=request.firm)
                .select_related("created_by", "updated_by").first())
        if conn is None:
            raise exceptions.NotFound("The firm has no Alpaca data connection.")
        return conn

    @api_schema(
        summary="The firm's Alpaca data connection",
        description="Key id, masked secret, data feed (iex or sip), crypto location and the last error. "
        "Owners and admins only; tokens need the 'admin' scope. 404 when the firm has none.",
        responses={200: AlpacaConnectionOutput},
        tags=["data providers"],
    )
    def get(self, request):
        return Response(AlpacaConnectionOutput(self._connection(request)).data)

    @api_schema(
        summary="Set the firm's Alpaca data keys",
        description="Creates or replaces the connection. The secret is stored encrypted and never returned. "
        "Owners and admins; 'admin' scope. Audited as alpaca_connection.created / .updated (without the secret).",
        request=AlpacaConnectionInput,
        responses={200: AlpacaConnectionOutput},
        tags=["data providers"],
    )
    def put(self, request):
        data = AlpacaConnectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.alpaca_connection_set(firm_id=request.firm.pk, actor=actor_from_request(request), meta=_meta(request),
                                       **data.validated_data)
        return Response(AlpacaConnectionOutput(self._connection(request)).data)

    @api_schema(
        summary="Delete the firm's Alpaca data keys",
        description="Owners and admins; 'admin' scope. Audited as alpaca_connection.deleted. 404 when there is none.",
        responses=NO_CONTENT,
        errors=(401, 403, 404, 429),
        tags=["data providers"],
    )
    def delete(self, request):
        services.alpaca_connection_delete(connection=self._connection(request), actor=actor_from_request(request),
                                          meta=_meta(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=api_schema(
        summary="List backfills",
        description="The firm's backfills, newest first. Any member may read.",
        responses={200: BackfillOutput(many=True)},
        tags=["data providers"],
    ),
    retrieve=api_schema(
        summary="Get a backfill",
        description="Status and progress of one backfill. Another firm's backfill is 404.",
        responses={200: BackfillOutput},
        tags=["data providers"],
    ),
    create=api_schema(
        summary="Start a backfill",
        description="Loads bars of existing instruments from the firm's Alpaca connection into the bars table "
        "(idempotent: loading a range twice leaves the same rows), in a background task; poll GET "
        "/backfills/{id}/. Owners and admins; 'admin' scope. 409 NO_DATA_CONNECTION without a connection, "
        "409 CONNECTION_SECRET_UNREADABLE when the stored secret cannot be decrypted.",
        request=BackfillInput,
        responses={201: BackfillOutput},
        tags=["data providers"],
    ),
)
class BackfillViewSet(FirmScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    model = Backfill
    serializer_class = BackfillOutput
    http_method_names = ["get", "post", "head", "options"]

    def queryset_for(self, firm):
        return super().queryset_for(firm).order_by("-created_at", "-id")

    def create(self, request):
        data = BackfillInput(data=request.data)
        data.is_valid(raise_exception=True)
        backfill = services.backfill_create(firm_id=request.firm.pk, actor=actor_from_request(request),
                                            meta=_meta(request), **data.validated_data)
        return Response(BackfillOutput(backfill).data, status=status.HTTP_201_CREATED)
