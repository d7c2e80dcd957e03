"""Tenant isolation on every door (targets 26, 27, 28; issue #2 point 25).

The walker reads every route of octopus.urls. For each route with an object parameter it makes a
firm B object of the registered type (tests/api/isolation.py), calls the route as a firm A member
of every role with every method the route serves, and requires 404 — never 403 or 200 — with the
firm B row and firm B's audit chain unchanged. A parameterised route missing from the registry
fails the suite, so a later app cannot add a route without covering it.
"""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.db.models import Model
from django.urls import get_resolver
from rest_framework import serializers
from rest_framework.test import APIClient

from apps.accounts.models import Role
from apps.audit.models import AuditEvent
from apps.core.api import FirmScopedPrimaryKeyRelatedField, FirmScopedRelatedFieldMixin
from apps.core.tenancy import unscoped
from tests.api import isolation
from tests.api.isolation import (
    ADMIN_MODELS,
    FIRM_B_MARKERS,
    FIXTURES,
    NOT_OBJECT_ROUTES,
    PLATFORM_ADMIN_MODELS,
    ROUTE_OBJECTS,
    WRITE_BODIES,
    admin_model_label,
    route_methods,
    unregistered_routes,
    url_kwargs,
    walk_routes,
)

ROLES = list(Role.values)
ALL_ROUTES = list(walk_routes())
OBJECT_ROUTES = [r for r in ALL_ROUTES if r.params and not r.is_admin and r.key not in NOT_OBJECT_ROUTES]
API_OBJECT_ROUTES = [r for r in OBJECT_ROUTES if r.is_api]
PAGE_OBJECT_ROUTES = [r for r in OBJECT_ROUTES if not r.is_api]


def snapshot(obj: Model) -> dict | None:
    with unscoped():
        return type(obj)._base_manager.filter(pk=obj.pk).values().first()


def audit_count(firm) -> int:
    with unscoped():
        return AuditEvent.objects.unscoped().filter(firm=firm).count()


def body_for(key: str) -> dict:
    return WRITE_BODIES.get(key, {})


# --- coverage: the registry knows every parameterised route -------------------------------------


def test_every_parameterised_route_is_registered():
    missing = unregistered_routes(ALL_ROUTES)
    assert missing == [], (
        "Routes with an object parameter and no isolation fixture: add them to ROUTE_OBJECTS "
        "(and FIXTURES) in tests/api/isolation.py, or to NOT_OBJECT_ROUTES with a reason."
    )


def test_a_new_object_route_without_a_fixture_is_caught():
    from django.urls import path

    from tests.api.isolation import Route

    new_route = path("api/v1/orders/<int:pk>/", lambda request, pk: None, name="api-order-detail")
    routes = [*ALL_ROUTES, *walk_routes_of([new_route])]
    assert unregistered_routes(routes) == ["api-order-detail  (api/v1/orders/<int:pk>/)"]
    assert isinstance(routes[-1], Route)


def walk_routes_of(patterns):
    from django.urls import URLResolver
    from django.urls.resolvers import RegexPattern

    resolver = URLResolver(RegexPattern(r"^/"), patterns)
    resolver.url_patterns  # noqa: B018 - resolves the list of patterns
    return list(walk_routes(resolver))


def test_every_registered_route_exists_and_has_a_fixture():
    keys = {r.key for r in ALL_ROUTES}
    assert sorted(set(ROUTE_OBJECTS) - keys) == []  # stale entries hide nothing but mislead
    assert sorted({v for v in ROUTE_OBJECTS.values()} - set(FIXTURES)) == []


def test_every_admin_object_route_belongs_to_a_classified_model():
    unclassified = set()
    for r in ALL_ROUTES:
        if r.is_admin and r.params and r.key not in NOT_OBJECT_ROUTES:
            label = admin_model_label(r)
            if label is None or (label not in ADMIN_MODELS and label not in PLATFORM_ADMIN_MODELS):
                unclassified.add(label or r.key)
    assert sorted(unclassified) == [], "classify these admin models in tests/api/isolation.py"


def test_walker_finds_the_known_object_routes():
    """Guards the walker itself: if it stopped seeing routes, every isolation test would pass vacuously."""
    keys = {r.key for r in OBJECT_ROUTES}
    assert {"api-member-detail", "api-invitation-detail", "api-token-detail"} <= keys
    by_key = {r.key: r for r in API_OBJECT_ROUTES}
    assert route_methods(by_key["api-member-detail"]) == ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH"]
    assert by_key["api-member-detail"].path(pk=7) == "/api/v1/members/7/"


# --- the IDOR matrix: API -------------------------------------------------------------------------


@pytest.mark.parametrize("route", API_OBJECT_ROUTES, ids=lambda r: r.key)
def test_api_object_route_is_404_for_every_role_of_another_firm(route, firm_a, firm_b, make_token):
    key = ROUTE_OBJECTS[route.key]
    target = FIXTURES[key](firm_b)
    before, b_events = snapshot(target), audit_count(firm_b.firm)
    path = route.path(**url_kwargs(route, target))
    failures = []
    for role in ROLES:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(firm_a.member(role), ('read', 'trade', 'admin'))}")
        for method in route_methods(route):
            response = client.generic(method, path, json.dumps(body_for(key)), content_type="application/json")
            if response.status_code != 404:
                failures.append(f"{role} {method} {path} -> {response.status_code}")
            elif method not in ("HEAD",):
                assert response.json()["error"]["code"] == "NOT_FOUND"
    assert failures == []
    assert snapshot(target) == before
    assert audit_count(firm_b.firm) == b_events


@pytest.mark.parametrize("route", API_OBJECT_ROUTES, ids=lambda r: r.key)
def test_api_object_route_is_404_for_a_session_of_another_firm(route, firm_a, firm_b, verified_client_for):
    key = ROUTE_OBJECTS[route.key]
    target = FIXTURES[key](firm_b)
    before = snapshot(target)
    client = verified_client_for(firm_a.member("owner"))
    for method in route_methods(route):
        response = client.generic(method, route.path(**url_kwargs(route, target)), json.dumps(body_for(key)),
                                  content_type="application/json")
        assert response.status_code == 404, (method, response.status_code)
    assert snapshot(target) == before


# --- the IDOR matrix: pages -----------------------------------------------------------------------


@pytest.mark.parametrize("route", PAGE_OBJECT_ROUTES, ids=lambda r: r.key)
def test_page_object_route_is_404_for_every_role_of_another_firm(route, firm_a, firm_b, verified_client_for):
    key = ROUTE_OBJECTS[route.key]
    target = FIXTURES[key](firm_b)
    before, b_events = snapshot(target), audit_count(firm_b.firm)
    path = route.path(**url_kwargs(route, target))
    failures = []
    for role in ROLES:
        client = verified_client_for(firm_a.member(role))
        statuses = {}
        for method in route_methods(route):
            data = body_for(key) if method == "POST" else None
            statuses[method] = client.generic(method, path, data=_form(data)).status_code if data else (
                client.generic(method, path).status_code
            )
        # 405 = the route does not serve that method at all (e.g. @require_POST); it reveals nothing
        if 404 not in statuses.values() or set(statuses.values()) - {404, 405}:
            failures.append(f"{role} {path} -> {statuses}")
    assert failures == []
    assert snapshot(target) == before
    assert audit_count(firm_b.firm) == b_events


# --- the IDOR matrix: admin (target 31; tests/admin covers changelists and superusers) -------------


def _admin_routes_by_model() -> dict[str, list]:
    out: dict[str, list] = {}
    for r in ALL_ROUTES:
        if r.is_admin and r.params and r.key not in NOT_OBJECT_ROUTES:
            label = admin_model_label(r)
            if label is not None:
                out.setdefault(label, []).append(r)
    return out


ADMIN_ROUTES = _admin_routes_by_model()


def _is_redirect_view(route) -> bool:
    from django.views.generic import RedirectView

    view_class = getattr(route.callback, "view_class", None)
    return view_class is not None and issubclass(view_class, RedirectView)


@pytest.mark.parametrize("label", sorted(ADMIN_ROUTES), ids=str)
def test_admin_object_urls_are_404_for_every_role_of_another_firm(label, firm_a, firm_b, verified_client_for):
    from django.apps import apps as django_apps

    if label in ADMIN_MODELS:
        target = FIXTURES[ADMIN_MODELS[label]](firm_b)
    else:
        model = django_apps.get_model(label)
        with unscoped():
            target = model._base_manager.order_by("pk").first()
        if target is None:  # a platform model with no rows yet: probe an id anyway (must not 500 or 200)
            target = model(pk=1)
    before, b_events = snapshot(target), audit_count(firm_b.firm)
    failures = []
    for role in ROLES:
        client = verified_client_for(firm_a.member(role))
        for route in ADMIN_ROUTES[label]:
            path = route.path(**url_kwargs(route, target))
            for method in ("GET", "POST"):
                response = client.generic(method, path)
                status, location = response.status_code, response.get("Location", "")
                if status == 404:
                    continue
                # Roles with no admin access are sent to the admin login, whatever the id: that says nothing.
                if status == 302 and location.startswith("/admin/login/"):
                    continue
                # Django's bare /<id>/ admin URL redirects to the change URL, which is itself probed here.
                if status in (301, 302) and _is_redirect_view(route) and location.endswith("/change/"):
                    continue
                failures.append(f"{role} {method} {path} -> {status} {location}")
    assert failures == []
    assert snapshot(target) == before
    assert audit_count(firm_b.firm) == b_events


def _form(data: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(data)


# --- lists never show firm B; id parameters cannot smuggle it (target 27) -----------------------


@pytest.fixture
def firm_b_everything(firm_b):
    return {key: make(firm_b) for key, make in FIXTURES.items()}


def _list_routes():
    return [r for r in ALL_ROUTES if r.is_api and not r.params and "GET" in route_methods(r)
            and not r.key.startswith("api-schema") and r.key not in ("api-docs", "api-redoc")]


def _leaks(text: str) -> list[str]:
    return [marker for marker in FIRM_B_MARKERS if marker.lower() in text.lower()]


@pytest.mark.parametrize("role", ROLES)
def test_api_reads_without_parameters_never_show_firm_b(role, firm_a, firm_b_everything, api_client_for):
    client = api_client_for(firm_a.member(role))
    seen = 0
    for route in _list_routes():
        response = client.get(route.path())
        assert response.status_code < 500, route.key
        assert _leaks(response.content.decode(errors="replace")) == [], route.key
        seen += response.status_code == 200
    assert seen >= 4  # me, firm, members, tokens at least: the check looked at real answers


@pytest.mark.parametrize("role", ROLES)
def test_pages_without_parameters_never_show_firm_b(role, firm_a, firm_b_everything, verified_client_for):
    client = verified_client_for(firm_a.member(role))
    for route in ALL_ROUTES:
        if route.params or route.is_api or route.is_admin or "logout" in route.key:
            continue
        response = client.get(route.path())
        assert response.status_code < 500, route.key
        assert _leaks(response.content.decode(errors="replace")) == [], route.key


def _query_parameters():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    skip = {"page", "page_size", "cursor", "format", "ordering", "search"}
    for path, item in schema["paths"].items():
        op = item.get("get")
        if op is None or "{" in path:
            continue
        for param in op.get("parameters", []):
            if param["in"] == "query" and param["name"] not in skip:
                yield path, param["name"]


def test_query_parameters_cannot_smuggle_firm_b(firm_a, firm_b, firm_b_everything, api_client_for):
    client = api_client_for(firm_a.member("owner"))
    values = {str(obj.pk) for obj in firm_b_everything.values()}
    values |= {firm_b.member(r).user.email for r in ROLES} | {str(firm_b.firm.pk), firm_b.firm.slug}
    checked = []
    for path, name in _query_parameters():
        cache.clear()  # the walk makes more requests than one token may in a minute (API_RATE)
        for value in sorted(values):
            response = client.get(path, {name: value})
            assert response.status_code in (200, 400), (path, name, value, response.status_code)
            if response.status_code == 200:  # a 400 may echo the value it refused; that is not a leak
                assert _leaks(response.content.decode(errors="replace")) == [], (path, name, value)
            checked.append((path, name))
    assert ("/api/v1/tokens/", "member") in checked


# --- write-side foreign keys (target 28) ----------------------------------------------------------


def _all_serializer_classes():
    """Every serializer used by an API endpoint (from the schema generator) and defined in apps.*"""
    import importlib
    import pkgutil

    import apps

    for module in pkgutil.walk_packages(apps.__path__, "apps."):
        if module.name.endswith(".api") or module.name.endswith(".serializers"):
            importlib.import_module(module.name)
    seen, stack = set(), [serializers.BaseSerializer]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    return sorted((c for c in seen if c.__module__.startswith("apps.")), key=lambda c: c.__qualname__)


def _related_fields(serializer, prefix=""):
    for name, field in serializer.fields.items():
        if isinstance(field, serializers.ManyRelatedField):
            yield f"{prefix}{name}", field.child_relation, field.read_only
        elif isinstance(field, serializers.RelatedField):
            yield f"{prefix}{name}", field, field.read_only
        elif isinstance(field, serializers.ListSerializer):
            yield from _related_fields(field.child, f"{prefix}{name}[].")
        elif isinstance(field, serializers.BaseSerializer):
            yield from _related_fields(field, f"{prefix}{name}.")


GLOBAL_RELATED_MODELS: set[str] = set()  # e.g. "markets.instrument": shared market data, not firm-owned


def test_every_writable_related_field_is_firm_scoped(firm_a, firm_b):
    from rest_framework.test import APIRequestFactory

    request = APIRequestFactory().get("/")
    request.firm = firm_a.firm
    classes = _all_serializer_classes()
    assert len(classes) >= 10  # the walk saw the real serializers
    unscoped_fields = []
    for cls in classes:
        try:
            instance = cls(context={"request": request})
        except TypeError:
            continue
        for name, field, read_only in _related_fields(instance):
            if read_only:
                continue
            model = field.get_queryset().model
            if model._meta.label_lower in GLOBAL_RELATED_MODELS:
                continue
            if not isinstance(field, FirmScopedRelatedFieldMixin):
                unscoped_fields.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
                continue
            firm_ids = set(field.get_queryset().values_list("firm_id", flat=True).distinct())
            assert firm_ids <= {firm_a.firm.pk}, (cls, name)
    assert unscoped_fields == [], "use FirmScopedPrimaryKeyRelatedField / FirmScopedSlugRelatedField"


def test_firm_scoped_field_refuses_another_firms_id(firm_a, firm_b):
    from rest_framework.test import APIRequestFactory

    from apps.accounts.models import Membership

    class TransferInput(serializers.Serializer):
        member = FirmScopedPrimaryKeyRelatedField(model=Membership)
        members = FirmScopedPrimaryKeyRelatedField(model=Membership, many=True, required=False)

    request = APIRequestFactory().post("/")
    request.firm = firm_a.firm
    own, other = firm_a.member("trader"), firm_b.member("trader")

    ok = TransferInput(data={"member": own.pk, "members": [own.pk]}, context={"request": request})
    assert ok.is_valid(), ok.errors
    assert ok.validated_data["member"] == own

    smuggled = TransferInput(data={"member": other.pk, "members": [own.pk, other.pk]}, context={"request": request})
    assert not smuggled.is_valid()
    assert smuggled.errors == {
        "member": [f'Invalid pk "{other.pk}" - object does not exist.'],
        "members": [f'Invalid pk "{other.pk}" - object does not exist.'],
    }

    no_firm = TransferInput(data={"member": own.pk}, context={"request": APIRequestFactory().post("/")})
    assert not no_firm.is_valid()


def test_writes_with_firm_b_foreign_keys_create_nothing(firm_a, firm_b, firm_b_everything, api_client_for):
    """For every write operation whose input has a related field: firm B ids give 400/404, no row."""
    from drf_spectacular.generators import SchemaGenerator

    generator = SchemaGenerator()
    generator._initialise_endpoints()
    client = api_client_for(firm_a.member("owner"))
    b_ids = [obj.pk for obj in firm_b_everything.values()]
    for path, _regex, method, callback in generator.endpoints:
        if method not in ("POST", "PUT", "PATCH") or "{" in path:
            continue
        view = generator.create_view(callback, method)
        request_serializer = view.schema.get_request_serializer()
        if request_serializer is None or not isinstance(request_serializer, serializers.BaseSerializer):
            continue
        for name, _field, read_only in _related_fields(request_serializer):
            if read_only or "." in name:
                continue
            for b_id in b_ids:
                counts = _row_counts()
                response = client.generic(method, path, json.dumps({name: b_id}), content_type="application/json")
                assert response.status_code in (400, 404), (path, name, response.status_code)
                assert _row_counts() == counts


def _row_counts() -> dict[str, int]:
    from django.apps import apps as django_apps

    with unscoped():
        return {
            m._meta.label: m._base_manager.count()
            for m in django_apps.get_models()
            if m._meta.app_label in {"accounts", "audit"} or m._meta.app_label.startswith("apps")
        }


def test_resolver_is_the_project_one():
    assert get_resolver("octopus.urls") is get_resolver()
    assert isolation.ROUTE_OBJECTS is ROUTE_OBJECTS
