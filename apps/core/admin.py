"""The admin site of Octopus: 2FA-verified sessions only, and firm-scoped for everyone but platform superusers.

Who gets in (``OctopusAdminSite.has_permission``):
- platform superusers (``is_superuser``) whose session passed 2FA: every firm, every model;
- members whose *active* firm role is owner, admin or compliance, with a 2FA-verified session,
  without needing ``is_staff``: only ``FirmScopedAdmin`` models, and only their firm's rows.
  Compliance is read-only everywhere; owners and admins may change what a ModelAdmin allows.

Every other registration (django-celery-beat, django-otp devices, axes, auth groups, users…)
is wrapped on ``register`` into a superuser-only admin: for anyone else its URLs are 404.

Tenancy (``FirmScopedAdmin``): the changelist, the change/delete/history views and the choices
of every foreign key are limited to ``request.firm``; another firm's object is a 404, never a
redirect that would confirm it exists. A superuser's change views are audited (``admin.viewed``),
and admin additions and changes are audited (``admin.added`` / ``admin.changed``) in the same
transaction, in the chain of the firm the object belongs to.
"""

from __future__ import annotations

from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model
from django.db import models, transaction
from django.http import Http404, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django_otp.admin import OTPAdminSite

from apps.accounts.models import AUDIT_ROLES, MANAGE_ROLES, Firm
from apps.audit.services import RequestMeta, actor_from_request, audit_record
from apps.core.errors import DomainError
from apps.core.tenancy import unscoped


def is_platform_admin(request) -> bool:
    return bool(getattr(request.user, "is_superuser", False))


def firm_role(request) -> str | None:
    membership = getattr(request, "membership", None)
    return membership.role if membership is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, list | tuple | set) or (hasattr(value, "__iter__") and hasattr(value, "model")):
        return [_plain(v) for v in value]
    return value


class SuperuserOnlyAdminMixin:
    """Platform-only admin: hidden from firm members, and every one of its URLs is 404 for them."""

    def has_module_permission(self, request) -> bool:
        return is_platform_admin(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return is_platform_admin(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args) -> bool:
        return is_platform_admin(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_platform_admin(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_platform_admin(request) and super().has_delete_permission(request, obj)

    def get_urls(self):
        def guard(view):
            @wraps(view)
            def inner(request, *args, **kwargs):
                if not is_platform_admin(request):
                    raise Http404
                return view(request, *args, **kwargs)

            return inner

        urls = super().get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern):
                pattern.callback = guard(pattern.callback)
        return urls


class OctopusAdminSite(OTPAdminSite):
    site_header = "Octopus administration"
    site_title = "Octopus admin"
    index_title = "Administration"

    def __init__(self, name: str = "admin"):
        super().__init__(name)

    def has_permission(self, request) -> bool:
        user = request.user
        if not (user.is_active and user.is_authenticated and user.is_verified()):
            return False
        return user.is_superuser or firm_role(request) in AUDIT_ROLES

    def login(self, request, extra_context=None):
        """One login for the whole platform: the app's (lockout, 2FA step), then back to the admin.

        The admin's own form would only admit ``is_staff`` users; an authenticated user without
        admin access still gets the admin's "not authorized" page.
        """
        if not request.user.is_authenticated:
            target = request.GET.get(REDIRECT_FIELD_NAME, "")
            if not target.startswith(f"/{self.name}/") and not target.startswith(reverse(f"{self.name}:index")):
                target = reverse(f"{self.name}:index")
            return HttpResponseRedirect(f"{reverse('accounts:login')}?{urlencode({REDIRECT_FIELD_NAME: target})}")
        return super().login(request, extra_context)

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, FirmScopedAdmin):
            admin_class = type(
                f"SuperuserOnly{admin_class.__name__}",
                (SuperuserOnlyAdminMixin, admin_class),
                {"__module__": admin_class.__module__},
            )
        return super().register(model_or_iterable, admin_class, **options)

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def scoped(request, *args, **kwargs):
            if not is_platform_admin(request):
                return inner(request, *args, **kwargs)  # FirmMiddleware's firm scope stays in force
            # A superuser acts across firms: the whole view, template rendering included, is unscoped.
            with unscoped():
                response = inner(request, *args, **kwargs)
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()
            return response

        return scoped


class FirmScopedAdmin(admin.ModelAdmin):
    """Base of every ModelAdmin a firm member may use.

    ``firm_lookup`` is the path to the firm's id (``"firm_id"``; ``"pk"`` for Firm itself).
    Non-superusers: view with owner/admin/compliance, change with a role in ``change_roles``,
    add with one in ``add_roles``; deletion is off unless ``allow_delete`` (then superusers only).
    """

    firm_lookup = "firm_id"
    change_roles: frozenset = MANAGE_ROLES
    add_roles: frozenset = frozenset()
    allow_delete = False
    read_only = False
    audit_changes = True  # False where a service already audits the change

    # --- tenancy --------------------------------------------------------------------------------

    def base_queryset(self):
        manager = self.model._default_manager
        return manager.unscoped() if hasattr(manager, "unscoped") else manager.get_queryset()

    def get_queryset(self, request):
        qs = self.base_queryset()
        ordering = self.get_ordering(request)
        if ordering:
            qs = qs.order_by(*ordering)
        if is_platform_admin(request):
            return qs
        firm = getattr(request, "firm", None)
        if firm is None:
            return qs.none()
        return qs.filter(**{self.firm_lookup: firm.pk})

    def firm_id_of(self, obj) -> int | None:
        return obj.pk if self.firm_lookup == "pk" else getattr(obj, self.firm_lookup, None)

    def choices_for(self, model, request):
        """Candidate rows of a related model: the request's firm only (fail-closed for unknown models)."""
        manager = model._default_manager
        base = manager.unscoped() if hasattr(manager, "unscoped") else manager.get_queryset()
        if is_platform_admin(request):
            return base
        firm = getattr(request, "firm", None)
        if firm is None:
            return base.none()
        if model is Firm:
            return base.filter(pk=firm.pk)
        if model is get_user_model():
            return base.filter(memberships__firm_id=firm.pk).distinct()
        if any(f.name == "firm" for f in model._meta.get_fields()):
            return base.filter(firm_id=firm.pk)
        return base.none()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs["queryset"] = self.choices_for(db_field.remote_field.model, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs["queryset"] = self.choices_for(db_field.remote_field.model, request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Another firm's object and a missing one look the same: 404, not a redirect with a message.
        raise Http404

    def _require_visible(self, request, object_id) -> None:
        """404 before any permission check, so a probe of another firm's id never sees a 403."""
        if object_id is not None and self.get_object(request, admin.utils.unquote(object_id)) is None:
            raise Http404

    def delete_view(self, request, object_id, extra_context=None):
        self._require_visible(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._require_visible(request, object_id)
        return super().history_view(request, object_id, extra_context)

    # --- permissions ----------------------------------------------------------------------------

    def _owns(self, request, obj) -> bool:
        return obj is None or is_platform_admin(request) or self.firm_id_of(obj) == getattr(request.firm, "pk", None)

    def has_module_permission(self, request) -> bool:
        return is_platform_admin(request) or firm_role(request) in AUDIT_ROLES

    def has_view_permission(self, request, obj=None) -> bool:
        if is_platform_admin(request):
            return True
        return firm_role(request) in AUDIT_ROLES and self._owns(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        if self.read_only:
            return False
        if is_platform_admin(request):
            return True
        return firm_role(request) in self.change_roles and self._owns(request, obj)

    def has_add_permission(self, request) -> bool:
        if self.read_only:
            return False
        return is_platform_admin(request) or firm_role(request) in self.add_roles

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.allow_delete and not self.read_only and is_platform_admin(request)

    # --- audit ----------------------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if is_platform_admin(request) and request.method == "GET" and response.status_code == 200:
            obj = self.get_object(request, admin.utils.unquote(object_id))
            if obj is not None:
                self._audit(request, obj, "admin.viewed")
        return response

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        self._require_visible(request, object_id)
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:  # a service said no: the whole change was rolled back
            messages.error(request, exc.message)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        request._octopus_admin_change = (
            {name: _plain(form.initial.get(name)) for name in form.changed_data},
            {name: _plain(form.cleaned_data.get(name)) for name in form.changed_data},
        )
        super().save_model(request, obj, form, change)

    def log_addition(self, request, obj, message):
        if self.audit_changes:
            self._audit(request, obj, "admin.added", changes=getattr(request, "_octopus_admin_change", None))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        if self.audit_changes:
            self._audit(request, obj, "admin.changed", changes=getattr(request, "_octopus_admin_change", None))
        return super().log_change(request, obj, message)

    def _audit(self, request, obj, action: str, changes=None) -> None:
        before, after = changes if changes else (None, None)
        with transaction.atomic():
            audit_record(
                firm_id=self.firm_id_of(obj),
                action=action,
                actor=actor_from_request(request),
                target_type=self.model._meta.label_lower,
                target_id=obj.pk,
                target_label=str(obj),
                before=before if action != "admin.added" else None,
                after=after,
                meta=RequestMeta.from_request(request),
            )
