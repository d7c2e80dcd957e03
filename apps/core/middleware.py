"""Request plumbing: request ids, the active firm, and a clean 503 when a data store is down."""

from __future__ import annotations

import logging
import sys
import uuid

import redis.exceptions
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core import tenancy

log = logging.getLogger(__name__)

SESSION_FIRM_KEY = "active_firm_id"


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming[:64] if incoming.isascii() and incoming else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


def _unavailable_code(exception: BaseException | None) -> tuple[str, str] | None:
    if isinstance(exception, OperationalError | InterfaceError):
        return "DATABASE_UNAVAILABLE", "The database"
    if isinstance(exception, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "CACHE_UNAVAILABLE", "The cache"
    return None


def _note_unavailable(sender, request=None, **kwargs) -> None:
    """An exception raised by a later *middleware* (e.g. loading the session while PostgreSQL is
    down) never reaches process_exception: Django turns it into a 500 right there and only sends
    got_request_exception. Note it on the request so ServiceUnavailableMiddleware can answer 503."""
    exception = sys.exc_info()[1]
    if request is not None and _unavailable_code(exception):
        request._service_unavailable = exception


got_request_exception.connect(_note_unavailable, dispatch_uid="octopus-service-unavailable")


class ServiceUnavailableMiddleware:
    """PostgreSQL or Redis briefly gone is a 503 with a stable code, never a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        exception = getattr(request, "_service_unavailable", None)
        if exception is not None and response.status_code == 500:
            return self.process_exception(request, exception)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        found = _unavailable_code(exception)
        if found is None:
            return None
        code, what = found
        log.error("service unavailable: %s: %s", code, exception)
        body = {"error": {"code": code, "message": f"{what} is unavailable. Try again shortly.", "fields": {}}}
        response = JsonResponse(body, status=503)
        response["Retry-After"] = "5"
        return response


class FirmMiddleware:
    """Sets ``request.firm`` and ``request.membership`` from the session's active membership.

    API requests authenticated by token are scoped again by the authentication class, which
    knows the token's membership; here only the session is consulted. The firm scope of
    apps.core.tenancy is entered for the whole request and reset after it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from apps.accounts.selectors import active_membership_for_session

        request.firm = None
        request.membership = None
        if request.user.is_authenticated:
            membership = active_membership_for_session(user=request.user, session=request.session)
            if membership is not None:
                request.firm = membership.firm
                request.membership = membership
        token = tenancy.set_scope(request.firm.pk if request.firm else None)
        try:
            return self.get_response(request)
        finally:
            tenancy.reset_scope(token)
