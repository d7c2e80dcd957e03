"""DRF building blocks that make tenancy the default for every app's API.

Every firm-owned endpoint derives its queryset from ``request.firm`` (never from the URL or the
body), so another firm's object is the same 404 as a missing one. On object routes the lookup
runs *before* role and scope checks: a member of firm A probing firm B's ids gets 404 whatever
their role, never a 403 that would confirm the id exists.

Usage in a later app::

    class OrderViewSet(FirmScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
        model = Order                      # or: def queryset_for(self, firm): ...
        write_roles = TRADE_ROLES
        required_scope_write = "trade"

Write-side foreign keys use ``FirmScopedPrimaryKeyRelatedField(model=Account)``; input
serializers mix in ``StrictInputMixin`` so unknown keys are a 400 naming them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from csp.decorators import csp_update
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model, QuerySet
from django.utils.decorators import method_decorator
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import exceptions, serializers, status, views, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings

from apps.core.permissions import MANAGE_ROLES, IsFirmMember

# --- the error shape, as an OpenAPI component ---------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. VALIDATION_ERROR, NOT_FOUND.")
    message = serializers.CharField(help_text="Human-readable explanation.")
    fields = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Per-field messages for invalid input (field name -> list of messages); empty otherwise.",
    )


class ErrorResponseSerializer(serializers.Serializer):
    """The one error body of the API: ``{"error": {"code", "message", "fields"}}``."""

    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "Invalid input: malformed JSON, missing or unknown fields, wrong types, or a business rule refused it.",
    401: "Missing, invalid, expired or revoked credentials.",
    403: "Authenticated, but the role or token scope does not allow this in the active firm.",
    404: "No such object in the active firm (another firm's object is reported the same way).",
    409: "The request conflicts with the current state.",
    415: "The request body is not JSON.",
    423: "Trading is halted for the firm (its kill switch is on): TRADING_HALTED.",
    429: "Rate limit exceeded; retry after the number of seconds in the Retry-After header.",
}

READ_ERRORS = (400, 401, 403, 404, 429)
WRITE_ERRORS = (400, 401, 403, 404, 409, 415, 429)


def error_responses(codes: Iterable[int]) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(response=ErrorResponseSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes
    }


def api_schema(
    *,
    summary: str,
    description: str,
    responses: dict[int, Any],
    request: Any = None,
    errors: Iterable[int] | None = None,
    **kwargs: Any,
):
    """``extend_schema`` with a summary, a description and the standard typed error responses."""
    if errors is None:
        errors = WRITE_ERRORS if request is not None else READ_ERRORS
    all_responses = {**error_responses(errors), **responses}
    return extend_schema(summary=summary, description=description, request=request, responses=all_responses, **kwargs)


# --- input serializers --------------------------------------------------------------------------

UNKNOWN_FIELD_MESSAGE = "Unknown field."


class StrictInputMixin:
    """Refuses keys the serializer does not declare, naming each one (a typo is not silently ignored).

    ``min_fields = 1`` on a PATCH input refuses an empty body (and says so in the schema).
    """

    min_fields: int = 0

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(key) for key in data if key not in writable)
            if unknown:
                raise serializers.ValidationError({key: [UNKNOWN_FIELD_MESSAGE] for key in unknown})
            if len(data) < self.min_fields:
                names = ", ".join(sorted(writable))
                raise serializers.ValidationError(
                    {api_settings.NON_FIELD_ERRORS_KEY: [f"Send at least {self.min_fields} of: {names}."]}
                )
        return super().to_internal_value(data)


# Names and labels: not blank once trimmed, no NUL (PostgreSQL refuses it). Said in the schema as a
# pattern, so generated clients and schemathesis know exactly what is accepted.
TEXT_PATTERN = r"^[^\x00]*[^\x00\s][^\x00]*$"


def text_field(*, max_length: int, **kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(TEXT_PATTERN, max_length=max_length, **kwargs)


class StrictInputSerializer(StrictInputMixin, serializers.Serializer):
    """Base for every write endpoint's input serializer."""


class StrictInputSchema(OpenApiSerializerExtension):
    """In the schema, strict inputs say ``additionalProperties: false``: clients (and schemathesis)
    know an unknown key is a 400, not silently ignored."""

    target_class = StrictInputMixin
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
            if self.target.min_fields:
                schema["minProperties"] = self.target.min_fields
        return schema


class FirmAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus: an input with ``min_fields`` makes the request body required."""

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        instance = serializer() if isinstance(serializer, type) else serializer
        return schema, required or bool(getattr(instance, "min_fields", 0))


# --- firm-scoped related fields (write-side foreign keys) ---------------------------------------


def firm_queryset(model: type[Model], firm, firm_field: str = "firm") -> QuerySet:
    """All rows of ``model`` belonging to ``firm``, whatever the model's default manager."""
    manager = model._default_manager
    base = manager.unscoped() if hasattr(manager, "unscoped") else manager.all()
    return base.filter(**{firm_field: firm})


class FirmScopedRelatedFieldMixin:
    """Limits the candidate rows of a related field to ``request.firm``.

    Give ``model`` (with a ``firm`` FK, or set ``firm_field``) or ``queryset_for=lambda firm: ...``.
    With no firm in the serializer context the queryset is empty, so nothing ever resolves.
    """

    firm_scoped = True

    def __init__(
        self,
        *,
        model: type[Model] | None = None,
        queryset_for: Callable[[Any], QuerySet] | None = None,
        firm_field: str = "firm",
        **kwargs: Any,
    ):
        if model is None and queryset_for is None:
            raise ImproperlyConfigured(f"{type(self).__name__} needs model= or queryset_for=")
        if "queryset" in kwargs:
            raise ImproperlyConfigured(f"{type(self).__name__} derives its queryset from the firm; do not pass one")
        self.scoped_model = model
        self.queryset_for = queryset_for
        self.firm_field = firm_field
        super().__init__(**kwargs)
        if model is not None and not kwargs.get("read_only"):
            # An empty queryset of the right model: schema generation reads the model from it;
            # lookups always go through get_queryset().
            self.queryset = model._base_manager.none()

    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        firm = getattr(request, "firm", None)
        if firm is None:
            model = self.scoped_model or self.queryset.model
            return model._base_manager.none()
        if self.queryset_for is not None:
            return self.queryset_for(firm)
        return firm_queryset(self.scoped_model, firm, self.firm_field)


class FirmScopedPrimaryKeyRelatedField(FirmScopedRelatedFieldMixin, serializers.PrimaryKeyRelatedField):
    """A write-side foreign key by id; another firm's id is 'does not exist' (400), nothing leaks."""


class FirmScopedSlugRelatedField(FirmScopedRelatedFieldMixin, serializers.SlugRelatedField):
    """A write-side foreign key by slug, limited to the request's firm."""


# --- views --------------------------------------------------------------------------------------


class FirmScopedMixin:
    """Tenancy for a DRF view: the queryset comes from ``request.firm``.

    A subclass sets ``model`` (with a ``firm`` FK; ``firm_field`` names another path) or overrides
    ``queryset_for(firm)``. Permissions come from ``IsFirmMember``: ``required_roles`` (all
    methods), ``write_roles`` (unsafe methods; default owner/admin), ``required_scope`` (token
    scope for every method) or ``read_scope`` / ``write_scope``.
    """

    model: type[Model] | None = None
    firm_field: str = "firm"
    permission_classes = [IsFirmMember]
    schema = FirmAutoSchema()
    write_roles = MANAGE_ROLES
    read_scope = "read"
    write_scope = "admin"

    def queryset_for(self, firm) -> QuerySet:
        if self.model is None:
            raise ImproperlyConfigured(f"{type(self).__name__} must set `model` or override queryset_for(firm)")
        return firm_queryset(self.model, firm, self.firm_field)

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False) and self.model is not None:
            return self.model._base_manager.none()  # schema generation: the model, never rows
        firm = getattr(self.request, "firm", None)
        if firm is None:  # IsFirmMember refuses such requests first; never fall back to "all"
            raise exceptions.NotFound()
        return self.queryset_for(firm)

    @property
    def required_scope(self) -> str:
        method = getattr(getattr(self, "request", None), "method", "GET")
        return self.read_scope if method in SAFE_METHODS else self.write_scope

    # Object routes: resolve the object in the firm first, so another firm's id is a 404 for every
    # role, scope and method (a 403 would confirm that the id exists).

    def _object_route(self) -> bool:
        return False

    def _resolve_object(self):
        raise NotImplementedError

    def check_permissions(self, request) -> None:
        if (
            self._object_route()
            and request.user
            and request.user.is_authenticated
            and getattr(request, "firm", None) is not None
        ):
            self._resolve_object()
        super().check_permissions(request)


class FirmScopedAPIView(FirmScopedMixin, views.APIView):
    """For firm-level endpoints that are not plain CRUD (``/me/``, ``/firm/``, exports).

    A view with an object in its URL defines ``object_for(firm, **url_kwargs)`` (raising Http404 /
    NotFound for a missing or another firm's object) and reads it back with ``self.get_firm_object()``:
    the lookup then runs before role and scope checks, for every method including OPTIONS.
    """

    def object_for(self, firm, **url_kwargs):
        raise NotImplementedError

    def _object_route(self) -> bool:
        return bool(self.kwargs) and type(self).object_for is not FirmScopedAPIView.object_for

    def _resolve_object(self):
        return self.get_firm_object()

    def get_firm_object(self):
        cached = getattr(self, "_firm_object", None)
        if cached is None:
            cached = self._firm_object = self.object_for(self.request.firm, **self.kwargs)
        return cached


class FirmScopedViewSet(FirmScopedMixin, viewsets.GenericViewSet):
    """Base for every firm-owned resource. Add DRF mixins or explicit actions.

    On object routes the object is looked up (in the firm's queryset) before the role and scope
    checks, so another firm's id is 404 for every role and method, with no side effect.
    """

    lookup_value_converter = "int"

    def _object_route(self) -> bool:
        return (self.lookup_url_kwarg or self.lookup_field) in self.kwargs

    def _resolve_object(self):
        return self.get_object()

    def get_object(self):
        cached = getattr(self, "_firm_object", None)
        if cached is not None:
            return cached
        obj = super().get_object()
        self._firm_object = obj
        return obj


NO_CONTENT = {status.HTTP_204_NO_CONTENT: OpenApiResponse(description="Done; no body.")}

__all__ = [
    "ErrorResponseSerializer",
    "FirmScopedAPIView",
    "FirmScopedMixin",
    "FirmScopedPrimaryKeyRelatedField",
    "FirmScopedSlugRelatedField",
    "FirmScopedViewSet",
    "NO_CONTENT",
    "RedocDocsView",
    "SwaggerDocsView",
    "StrictInputMixin",
    "StrictInputSerializer",
    "TEXT_PATTERN",
    "text_field",
    "api_schema",
    "error_responses",
    "firm_queryset",
]


# --- interactive docs under the strict CSP ------------------------------------------------------


class SwaggerDocsView(SpectacularSwaggerSplitView):
    """Swagger UI from our own static files; its init script is a second request (no inline JS)."""

    template_name = "api_docs/swagger_ui.html"


@method_decorator(
    # Redoc renders with styled-components, which injects <style> elements, and runs its search index
    # in a worker built from a blob: URL. Scripts stay 'self' only; no other page gets these.
    csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["'self'", "blob:"]}),
    name="dispatch",
)
class RedocDocsView(SpectacularRedocView):
    template_name = "api_docs/redoc.html"


def page_of(name: str, item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The schema of one page of ``StandardPagination`` (count, next, previous, results) of ``item``,
    as a serializer class called ``name`` (the OpenAPI component name). Subclass it to add fields."""
    fields = {"count": serializers.IntegerField(), "next": serializers.URLField(allow_null=True),
              "previous": serializers.URLField(allow_null=True), "results": item(many=True)}
    return type(name, (serializers.Serializer,), fields)
