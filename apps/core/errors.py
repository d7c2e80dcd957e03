"""One error shape for the whole API: ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class DomainError(Exception):
    """A business rule said no. Carries a stable code, a human message and an HTTP status."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, code: str, message: str, *, fields: dict | None = None, status_code: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}
        if status_code is not None:
            self.status_code = status_code


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {k: _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        flat = [_flatten(v) for v in detail]
        return flat
    return str(detail)


def _codes(exc: exceptions.APIException) -> str:
    return {
        exceptions.ParseError: "MALFORMED_REQUEST",
        exceptions.AuthenticationFailed: "NOT_AUTHENTICATED",
        exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
        exceptions.PermissionDenied: "PERMISSION_DENIED",
        exceptions.NotFound: "NOT_FOUND",
        exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
        exceptions.NotAcceptable: "NOT_ACCEPTABLE",
        exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
        exceptions.Throttled: "RATE_LIMITED",
        exceptions.ValidationError: "VALIDATION_ERROR",
    }.get(type(exc), getattr(exc, "default_code", "ERROR").upper())


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = getattr(exc, "error_code", None) or _codes(exc)
    if isinstance(exc, exceptions.ValidationError):
        detail = _flatten(exc.detail)
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        names = ", ".join(sorted(fields))
        message = f"Invalid input: {names}." if names else "Invalid input."
        response.data = error_body(code, message, fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = error_body(code, str(detail))
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    return response


# --- Django-level handlers (octopus.urls handler404 / handler500): JSON under /api/ ------------------

API_PATH_PREFIX = "/api/"
MSG_NO_ENDPOINT = "No such endpoint. The API lives under /api/v1/; see /api/docs/."
MSG_SERVER_ERROR = "Something went wrong on our side. It has been logged; quote request id {request_id} if you report it."


def handler404(request, exception=None):
    """Unknown routes under /api/ answer in the API's error shape; pages keep the HTML 404."""
    if request.path.startswith(API_PATH_PREFIX):
        from django.http import JsonResponse

        return JsonResponse(error_body("NOT_FOUND", MSG_NO_ENDPOINT), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith(API_PATH_PREFIX):
        from django.http import JsonResponse

        message = MSG_SERVER_ERROR.format(request_id=getattr(request, "request_id", "") or "-")
        return JsonResponse(error_body("SERVER_ERROR", message), status=500)
    from django.views.defaults import server_error

    return server_error(request)
