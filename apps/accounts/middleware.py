"""Keep sessions that owe a 2FA step on the enrolment / verification pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from apps.accounts.twofactor import session_needs_2fa, session_needs_enrolment

# Paths a session that still owes 2FA may reach.
OPEN_PREFIXES = ("/accounts/", "/static/", "/healthz", "/api/")


class TwoFactorEnforcementMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(OPEN_PREFIXES) or not session_needs_2fa(request):
            return self.get_response(request)
        # /api/ is left to VerifiedSessionAuthentication (token clients never owe a session 2FA).
        if request.path.startswith("/ws/"):
            return JsonResponse({"error": {"code": "2FA_REQUIRED", "message": "Verify 2FA first.", "fields": {}}}, status=403)
        target = "accounts:2fa_enrol" if session_needs_enrolment(request) else "accounts:2fa_verify"
        return redirect(f"{reverse(target)}?next={request.get_full_path()}")
