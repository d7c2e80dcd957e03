"""Browser pages for accounts: sign-up, login and 2FA, firm switching, members, settings, tokens.

Views are thin: they parse forms, call services and render. Pages under /accounts/ are not
covered by TwoFactorEnforcementMiddleware, so every firm page here checks 2FA itself
(``member_page``). Role refusals inside the member's own firm are 403; objects of another firm 404.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

import django_otp
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.accounts import services
from apps.accounts.forms import (
    AcceptForm,
    CodeForm,
    FirmSettingsForm,
    InviteForm,
    LoginForm,
    RoleForm,
    SignupForm,
    TokenForm,
    add_domain_error,
)
from apps.accounts.models import MANAGE_ROLES, Invitation, Membership, Role
from apps.accounts.selectors import (
    active_membership_for_session,
    invitation_list,
    member_get,
    member_list,
    membership_list_for_user,
    token_list,
)
from apps.accounts.services.auth import (
    has_two_factor,
    throttled_until,
    totp_secret_b32,
    two_factor_policy_blocker,
)
from apps.accounts.services.members import invitation_from_token
from apps.accounts.twofactor import session_needs_2fa, session_needs_enrolment, two_factor_required
from apps.audit.services import Actor, RequestMeta
from apps.core.errors import DomainError, error_body
from apps.core.middleware import SESSION_FIRM_KEY

OTP_FAILURES_KEY = "otp_failures"
MSG_LOGIN_FAILED = "Email or password is wrong."
MSG_LOCKED = "Too many failed logins. Try again in {minutes} minutes."
MSG_MANAGERS_ONLY = "Only owners and admins of {firm} can manage members."
MSG_TOO_MANY_CODES = "Too many wrong codes. Log in again with your password."
MSG_TOKENS_NEED_2FA = "Creating API tokens needs a session verified with two-factor authentication. Set it up in Settings."


# --- helpers -------------------------------------------------------------------------------------


def _meta(request: HttpRequest) -> RequestMeta:
    return RequestMeta.from_request(request)


def _safe_next(request: HttpRequest, default: str | None = None) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default or reverse(settings.LOGIN_REDIRECT_URL)


def _with_next(url_name: str, next_url: str) -> str:
    return f"{reverse(url_name)}?{urlencode({'next': next_url})}"


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "accounts/forbidden.html", {"message": message}, status=403)


def two_factor_page(view):
    """Logged in and 2FA satisfied per the firm policy (the middleware skips /accounts/)."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs):
        if session_needs_2fa(request):
            target = "accounts:2fa_enrol" if session_needs_enrolment(request) else "accounts:2fa_verify"
            return redirect(_with_next(target, request.get_full_path()))
        return view(request, *args, **kwargs)

    return wrapped


def member_page(view):
    """Logged in, 2FA satisfied per the firm policy, and a member of an active firm."""

    @wraps(view)
    @two_factor_page
    def wrapped(request: HttpRequest, *args, **kwargs):
        if request.membership is None:
            return _forbidden(request, "You are not a member of any firm.")
        return view(request, *args, **kwargs)

    return wrapped


def manager_page(view):
    """A member page for owners and admins only: other roles of the firm get 403."""

    @wraps(view)
    @member_page
    def wrapped(request: HttpRequest, *args, **kwargs):
        if refusal := _not_manager(request):
            return refusal
        return view(request, *args, **kwargs)

    return wrapped


def _start_session(request: HttpRequest, user, firm_id: int | None = None) -> Membership | None:
    """After a password (or sign-up) login: choose the active firm and reset the 2FA failure count."""
    if firm_id is not None:
        request.session[SESSION_FIRM_KEY] = firm_id
    request.session.pop(OTP_FAILURES_KEY, None)
    membership = active_membership_for_session(user=user, session=request.session)
    request.membership = membership  # FirmMiddleware ran before the login
    request.firm = membership.firm if membership else None
    return membership


# --- lockout (django-axes AXES_LOCKOUT_CALLABLE) ------------------------------------------------------------


def lockout_response(request, credentials=None, *args, **kwargs):
    """429 for a locked-out login: an HTML page, or the API error body under /api/; with Retry-After."""
    if isinstance(credentials, HttpResponseBase):  # axes ≥ 8 passes (request, original_response, credentials)
        credentials = args[0] if args else kwargs.get("credentials")
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 3600
    minutes = max(1, (seconds + 59) // 60)
    message = MSG_LOCKED.format(minutes=minutes)
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body("LOCKED_OUT", message), status=429)
    else:
        response = render(request, "accounts/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(seconds)
    return response


# --- sign-up, login, logout ------------------------------------------------------------------------------


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.firm_signup(
                firm_name=form.cleaned_data["firm_name"], email=form.cleaned_data["email"],
                password=form.cleaned_data["password"], full_name=form.cleaned_data["full_name"],
                meta=_meta(request),
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            _start_session(request, membership.user, membership.firm_id)
            messages.success(request, f"Welcome to Octopus. {membership.firm.name} is ready.")
            return redirect("accounts:2fa_enrol")
    return render(request, "accounts/signup.html", {"form": form})


def login_view(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request)
    if request.user.is_authenticated and not session_needs_2fa(request):
        return redirect(next_url)
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["username"].strip().lower()
        credentials = {"username": email}
        was_locked = AxesProxyHandler.is_locked(request, credentials)
        # django-axes' documented integration: authenticate() with the request.
        user = authenticate(request=request, username=email, password=form.cleaned_data["password"])
        if user is None:
            if not was_locked:
                services.auth_login_failed_record(email=email, meta=_meta(request))
            if was_locked or getattr(request, "axes_locked_out", False):
                services.auth_locked_out_record(email=email, meta=_meta(request))
                return lockout_response(request, credentials)
            form.add_error(None, MSG_LOGIN_FAILED)
        else:
            login(request, user)  # rotates the session key
            membership = _start_session(request, user)
            services.auth_login_record(user=user, firm_id=membership.firm_id if membership else None,
                                       meta=_meta(request))
            if has_two_factor(user):
                return redirect(_with_next("accounts:2fa_verify", next_url))
            if session_needs_enrolment(request):
                return redirect(_with_next("accounts:2fa_enrol", next_url))
            return redirect(next_url)
    return render(request, "accounts/login.html", {"form": form, "next": next_url})


logout_view = auth_views.LogoutView.as_view()  # POST only (Django 5); flushes the server-side session


# --- two-factor -----------------------------------------------------------------------------------------------


@login_required
def two_factor_enrol(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request)
    if has_two_factor(request.user):
        messages.info(request, "Two-factor authentication is already set up.")
        return redirect("accounts:settings")
    device = services.two_factor_enrol_begin(user=request.user)
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.two_factor_enrol_confirm(
                user=request.user, device=device, code=form.cleaned_data["code"], meta=_meta(request))
        except DomainError as exc:
            add_domain_error(form, exc)
            status = exc.status_code if exc.status_code == 429 else 200
        else:
            django_otp.login(request, device)
            request.session.cycle_key()
            request.session.pop(OTP_FAILURES_KEY, None)
            return render(request, "accounts/2fa_backup_codes.html", {"codes": codes, "next": next_url})
    return render(request, "accounts/2fa_enrol.html", {
        "form": form, "next": next_url, "secret": totp_secret_b32(device), "qr_svg": _qr_svg(device.config_url),
        "required": two_factor_required(request),
    }, status=status)


def _qr_svg(data: str) -> str:
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(data, error="m").save(buffer, kind="svg", xmldecl=False, svgns=True, scale=5, nl=False,
                                     svgclass="qr", lineclass=None, title="Scan with your authenticator app")
    return buffer.getvalue().decode("utf-8")


@login_required
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request)
    if request.user.is_verified():
        return redirect(next_url)
    if not has_two_factor(request.user):
        return redirect(_with_next("accounts:2fa_enrol", next_url))
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            device = services.two_factor_verify(user=request.user, code=form.cleaned_data["code"],
                                                meta=_meta(request))
        except DomainError as exc:
            if exc.code == "OTP_INVALID":
                failures = request.session.get(OTP_FAILURES_KEY, 0) + 1
                if failures >= settings.OTP_MAX_FAILURES:
                    logout(request)
                    messages.error(request, MSG_TOO_MANY_CODES)
                    return redirect(_with_next("accounts:login", next_url))
                request.session[OTP_FAILURES_KEY] = failures
            add_domain_error(form, exc)
            status = 429 if exc.status_code == 429 else 200
        else:
            django_otp.login(request, device)
            request.session.cycle_key()  # a verified session gets a new key
            request.session.pop(OTP_FAILURES_KEY, None)
            return redirect(next_url)
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    throttle = throttled_until(list(TOTPDevice.objects.filter(user=request.user, confirmed=True))
                               + list(StaticDevice.objects.filter(user=request.user, confirmed=True)))
    response = render(request, "accounts/2fa_verify.html", {"form": form, "next": next_url, "throttle": throttle},
                      status=status)
    if status == 429 and throttle:
        response["Retry-After"] = str(throttle.seconds)
    return response


@require_POST
@login_required
def two_factor_disable(request: HttpRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            services.two_factor_disable(user=request.user, code=form.cleaned_data["code"], meta=_meta(request))
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Two-factor authentication is turned off.")
    else:
        messages.error(request, "Enter a current code to turn two-factor authentication off.")
    return redirect("accounts:settings")


# --- firm switching ---------------------------------------------------------------------------------------------


@require_POST
@login_required
def switch_firm(request: HttpRequest) -> HttpResponse:
    """Make another of the user's firms the active one (a firm the user is not in is a 404)."""
    membership = services.firm_switch(request=request, firm_id=request.POST.get("firm_id"))
    messages.success(request, f"Now working in {membership.firm.name}.")
    return redirect(_safe_next(request))


# --- settings ------------------------------------------------------------------------------------------------


@member_page
def settings_view(request: HttpRequest) -> HttpResponse:
    firm, membership = request.firm, request.membership
    can_manage = membership.role in MANAGE_ROLES
    initial = {"name": firm.name, "base_currency": firm.base_currency, "timezone": firm.timezone,
               "two_factor_policy": firm.two_factor_policy}
    form = FirmSettingsForm(request.POST or None, initial=initial) if can_manage else None
    if request.method == "POST":
        if not can_manage:
            return _forbidden(request, f"Only owners and admins can change the settings of {firm.name}.")
        if form.is_valid():
            try:
                services.firm_update(firm=firm, actor=Actor.for_user(request.user), meta=_meta(request),
                                     **form.cleaned_data)
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(request, "Firm settings saved.")
                return redirect("accounts:settings")
    blocker = two_factor_policy_blocker(user=request.user)
    return render(request, "accounts/settings.html", {
        "form": form, "can_manage": can_manage, "two_factor_on": has_two_factor(request.user),
        "disable_form": CodeForm(), "policy_blocker": blocker,
        "memberships": membership_list_for_user(user=request.user),
    })


# --- members and invitations ------------------------------------------------------------------------------


def _role_choices(me: Membership) -> list:
    return Role.choices if me.role == Role.OWNER else [c for c in Role.choices if c[0] != Role.OWNER]


@manager_page
def members(request: HttpRequest) -> HttpResponse:
    firm, me = request.firm, request.membership
    form = InviteForm(request.POST or None, inviter_role=me.role)
    if request.method == "POST" and form.is_valid():
        try:
            invitation, path = services.invitation_create(
                firm=firm, email=form.cleaned_data["email"], role=form.cleaned_data["role"], invited_by=me,
                meta=_meta(request))
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}. Link: {request.build_absolute_uri(path)}")
            return redirect("accounts:members")
    return render(request, "accounts/members.html", {
        "form": form, "members": member_list(firm=firm), "invitations": invitation_list(firm=firm),
        "role_choices": _role_choices(me), "me": me,
    }, status=200)


def _not_manager(request: HttpRequest) -> HttpResponse | None:
    if request.membership.role not in MANAGE_ROLES:
        return _forbidden(request, MSG_MANAGERS_ONLY.format(firm=request.firm.name))
    return None


# Object routes look the object up first: another firm's id is a 404 for every role, then the role is checked.


@require_POST
@member_page
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    target = member_get(firm=request.firm, pk=pk)
    if refusal := _not_manager(request):
        return refusal
    form = RoleForm(request.POST)
    ok, text = False, "Choose a valid role."
    if form.is_valid():
        try:
            target = services.member_change_role(membership=target, role=form.cleaned_data["role"],
                                                 by=request.membership, meta=_meta(request))
        except DomainError as exc:
            text = exc.message
        else:
            ok, text = True, f"{target.user.email} is now {form.cleaned_data['role']}."
    if request.headers.get("HX-Request"):  # HTMX: swap just this member's row
        target.refresh_from_db()
        return render(request, "accounts/_member_row.html", {
            "m": target, "me": request.membership, "role_choices": _role_choices(request.membership),
            "row_message": "Saved." if ok else text, "row_message_class": "good" if ok else "bad"})
    (messages.success if ok else messages.error)(request, text)
    return redirect("accounts:members")


@require_POST
@member_page
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    target = member_get(firm=request.firm, pk=pk)
    if refusal := _not_manager(request):
        return refusal
    try:
        services.member_remove(membership=target, by=request.membership, meta=_meta(request))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{target.user.email} was removed from {request.firm.name}.")
    return redirect("accounts:members")


@require_POST
@member_page
def invitation_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, firm=request.firm, pk=pk)
    if refusal := _not_manager(request):
        return refusal
    try:
        services.invitation_revoke(invitation=invitation, by=request.membership, meta=_meta(request))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Invitation for {invitation.email} revoked.")
    return redirect("accounts:members")


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    if request.user.is_authenticated and session_needs_2fa(request):
        target = "accounts:2fa_enrol" if session_needs_enrolment(request) else "accounts:2fa_verify"
        return redirect(_with_next(target, request.path))
    try:
        invitation = invitation_from_token(token)
    except DomainError as exc:
        return render(request, "accounts/invitation_invalid.html", {"message": exc.message}, status=400)
    user = request.user if request.user.is_authenticated else None
    from apps.accounts.models import User

    existing = user is None and User.objects.filter(email__iexact=invitation.email).exists()
    wrong_user = user is not None and user.email.lower() != invitation.email.lower()
    form = AcceptForm(request.POST or None) if user is None and not existing else None
    if request.method == "POST" and not wrong_user and not existing and (form is None or form.is_valid()):
        try:
            membership = services.invitation_accept(
                token=token, user=user,
                password=form.cleaned_data["password"] if form else None,
                full_name=form.cleaned_data["full_name"] if form else "",
                meta=_meta(request))
        except DomainError as exc:
            if form is None:
                return render(request, "accounts/invitation_invalid.html", {"message": exc.message}, status=400)
            add_domain_error(form, exc)
        else:
            if user is None:
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            _start_session(request, membership.user, membership.firm_id)
            messages.success(request, f"Welcome to {invitation.firm.name}.")
            return redirect("dashboard")
    status = 403 if wrong_user else 200
    return render(request, "accounts/invitation_accept.html", {
        "invitation": invitation, "form": form, "existing": existing, "wrong_user": wrong_user,
        "login_url": _with_next("accounts:login", request.path),
    }, status=status)


# --- API tokens ---------------------------------------------------------------------------------------------


def _visible_tokens(request: HttpRequest):
    if request.membership.role in MANAGE_ROLES:
        return token_list(firm=request.firm)
    return token_list(firm=request.firm, membership=request.membership)


@member_page
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created = None
    status = 200
    if request.method == "POST":
        if not request.user.is_verified():
            return _forbidden(request, MSG_TOKENS_NEED_2FA)
        if form.is_valid():
            try:
                created = services.token_create(
                    membership=request.membership, name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"], expires_days=form.cleaned_data["expires_days"],
                    actor=Actor.for_user(request.user), meta=_meta(request))
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                form = TokenForm()
    return render(request, "accounts/tokens.html", {
        "form": form, "tokens": _visible_tokens(request), "created": created,
        "can_manage": request.membership.role in MANAGE_ROLES,
    }, status=status)


@require_POST
@member_page
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(_visible_tokens(request), pk=pk)
    services.token_revoke(token=token, actor=Actor.for_user(request.user), meta=_meta(request))
    messages.success(request, f"Token {token.name} ({token.prefix}) revoked.")
    return redirect("accounts:tokens")


# --- password reset and change (Django's views, our templates) ---------------------------------------------------

password_reset = auth_views.PasswordResetView.as_view(
    template_name="accounts/password_reset_form.html",
    email_template_name="accounts/password_reset_email.txt",
    subject_template_name="accounts/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password_reset_done"),
)
password_reset_done = auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html")
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html",
    success_url=reverse_lazy("accounts:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html")
# update_session_auth_hash keeps this session; every other session of the user is invalidated.
password_change = two_factor_page(auth_views.PasswordChangeView.as_view(
    template_name="accounts/password_change.html", success_url=reverse_lazy("accounts:settings")))

