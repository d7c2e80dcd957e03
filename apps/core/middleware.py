"""Request plumbing: request ids, the active firm, and a clean 503 when a data store is down."""

from __future__ import annotations

import logging
import uuid

import redis.exceptions
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


class ServiceUnavailableMiddleware:
    """PostgreSQL or Redis briefly gone is a 503 with a stable code, never a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError | InterfaceError):
            code, what = "DATABASE_UNAVAILABLE", "The database"
        elif isinstance(exception, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            code, what = "CACHE_UNAVAILABLE", "The cache"
        else:
            return None
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
