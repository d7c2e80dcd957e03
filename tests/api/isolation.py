"""The tenant-isolation registry: which firm-owned object every parameterised route takes.

Every route of ``octopus.urls`` with a path parameter must be listed here, either in
``ROUTE_OBJECTS`` (route name -> fixture key, so the walker can make a firm B object of the right
type) or in ``NOT_OBJECT_ROUTES`` (with the reason its parameter is not a firm's object). A new
route that is in neither makes tests/api/test_isolation.py fail: that is on purpose.

A later app adds: a fixture (``FIXTURES["order"] = make_order``), its routes
(``ROUTE_OBJECTS["api-order-detail"] = "order"``), a write body if its writes need one
(``WRITE_BODIES``) and, for the admin, its model (``ADMIN_MODELS``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.contrib import admin
from django.db import transaction
from django.db.models import Model
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

# --- fixtures: make one firm B object of a type ---------------------------------------------------


def make_membership(world) -> Model:
    return world.member("analyst")


def make_invitation(world) -> Model:
    from apps.accounts.models import Invitation

    return Invitation.objects.create(
        firm=world.firm, email="invitee@beta.example.com", role="analyst", invited_by=world.member("owner").user,
        expires_at=timezone.now() + timedelta(days=7),
    )


def make_api_token(world) -> Model:
    from apps.accounts.services import token_create
    from apps.audit.services import Actor

    trader = world.member("trader")
    return token_create(membership=trader, name="beta bot", scopes=["read"], actor=Actor.for_user(trader.user)).token


def make_audit_event(world) -> Model:
    from apps.audit.services import Actor, audit_record

    with transaction.atomic():
        return audit_record(
            firm_id=world.firm.pk, action="test.beta_secret", actor=Actor.system("beta-system"),
            target_type="firm", target_id=world.firm.pk, target_label="Beta Capital",
        )


def make_totp_device(world) -> Model:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.create(user=world.member("owner").user, name="beta phone", confirmed=True)


def make_static_device(world) -> Model:
    from django_otp.plugins.otp_static.models import StaticDevice

    return StaticDevice.objects.create(user=world.member("owner").user, name="beta backup", confirmed=True)


def make_firm(world) -> Model:
    return world.firm


def make_user(world) -> Model:
    return world.member("compliance").user


def make_watchlist(world) -> Model:
    """A firm B watchlist holding one instrument (the item routes need a listed symbol)."""
    from apps.audit.services import Actor
    from apps.core.tenancy import firm_scope
    from apps.marketdata.models import Instrument
    from apps.marketdata.services import watchlist_add, watchlist_create

    instrument, _ = Instrument.objects.get_or_create(symbol="BETAQ", asset_class="equity",
                                                     defaults={"exchange": "NYSE", "name": "Beta Q Corp"})
    actor = Actor.for_user(world.member("trader").user)
    with firm_scope(world.firm.pk):
        watchlist = watchlist_create(firm_id=world.firm.pk, name="beta_secret list", actor=actor)
        watchlist_add(watchlist=watchlist, instrument=instrument, actor=actor)
    return watchlist


def make_import_job(world) -> Model:
    from apps.core.tenancy import firm_scope
    from apps.marketdata.models import ImportJob

    content = b"ts,open,high,low,close,volume\n2024-03-08T14:30Z,1,1,1,1,1\n"
    with firm_scope(world.firm.pk):
        return ImportJob.objects.create(
            firm=world.firm, created_by=world.member("trader"), file_name="beta_secret.csv", file_size=len(content),
            file_data=content, symbol="BETAQ", timeframe="1m",
        )


def make_backfill(world) -> Model:
    from apps.core.tenancy import firm_scope
    from apps.marketdata.models import Backfill

    with firm_scope(world.firm.pk):
        return Backfill.objects.create(
            firm=world.firm, symbols=["BETAQ"], timeframe="1m", start=timezone.now() - timedelta(days=2),
            end=timezone.now() - timedelta(days=1), error="beta_secret failure",
        )


def make_portfolio(world) -> Model:
    """Firm B's portfolio (restricted=False) in firm B's default tax entity."""
    from apps.audit.services import Actor
    from apps.portfolios.services import portfolio_create

    return portfolio_create(firm_id=world.firm.pk, name="beta_secret portfolio",
                            actor=Actor.for_user(world.member("owner").user))


def make_portfolio_books(world, label: str = "beta_secret"):
    """A firm's "<label> ledger" portfolio with a deposit, a buy and a sale of BETAQ (a lot, a gain, a
    position, journal entries), a snapshot, a corporate action and a trade import; made once per world."""
    made = getattr(world, "_portfolio_books", None)
    if made is not None:
        return made
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from apps.audit.services import Actor
    from apps.core.tenancy import firm_scope
    from apps.marketdata.models import Instrument
    from apps.portfolios import models as pm
    from apps.portfolios.booking import book_fill
    from apps.portfolios.services import cash_post, portfolio_create

    instrument, _ = Instrument.objects.get_or_create(symbol="BETAQ", asset_class="equity",
                                                     defaults={"exchange": "NYSE", "name": "Beta Q Corp"})
    actor = Actor.system("beta-system")
    firm_id = world.firm.pk
    portfolio = portfolio_create(firm_id=firm_id, name=f"{label} ledger", actor=actor)
    cash_post(portfolio=portfolio, kind="deposit", amount=Decimal(1000), actor=actor, on=date(2024, 3, 1),
              memo=f"{label} deposit")
    for fill_id, side, price, day in ((f"{label}-B1", "buy", "10", 4), (f"{label}-S1", "sell", "12", 5)):
        book_fill(portfolio=portfolio, instrument=instrument, side=side, quantity=Decimal(5), price=Decimal(price),
                  executed_at=datetime(2024, 3, day, 15, tzinfo=UTC), fill_id=fill_id, actor=actor)
    with firm_scope(firm_id):
        made = {
            "portfolio": portfolio,
            "tax_entity": portfolio.tax_entity,
            "fill": pm.Fill.objects.get(fill_id=f"{label}-B1"),
            "journal_entry": pm.JournalEntry.objects.get(portfolio=portfolio, kind="deposit"),
            "lot": pm.Lot.objects.get(portfolio=portfolio),
            "gain": pm.RealizedGain.objects.get(portfolio=portfolio),
            "position": pm.Position.objects.get(portfolio=portfolio),
            "snapshot": pm.Snapshot.objects.create(
                firm_id=firm_id, portfolio=portfolio, date=date(2024, 3, 5), cash=Decimal(1010),
                settled_cash=Decimal(1010), market_value=Decimal(0), equity=Decimal(1010)),
            "corporate_action": pm.CorporateAction.objects.create(
                firm_id=firm_id, kind="split", instrument=instrument, ex_date=date(2024, 4, 1),
                ratio_from=Decimal(1), ratio_to=Decimal(2), reference=f"{label} split"),
            "trade_import": pm.TradeImport.objects.create(firm_id=firm_id, portfolio=portfolio,
                                                          filename=f"{label} trades.csv"),
        }
    world._portfolio_books = made
    return made


def make_corporate_action(world) -> Model:
    """Firm B's 2-for-1 split of BETAQ (ex-date in the past, so an apply would act), through the service."""
    from datetime import date
    from decimal import Decimal

    from apps.audit.services import Actor
    from apps.marketdata.models import Instrument
    from apps.portfolios.corporate import corporate_action_create

    make_portfolio_books(world)  # firm B holds nothing of BETAQ after its sale; the action is what matters
    instrument = Instrument.objects.get(symbol="BETAQ", asset_class="equity")
    return corporate_action_create(firm_id=world.firm.pk, kind="split", instrument=instrument,
                                   ex_date=date(2024, 6, 3), ratio_from=Decimal(1), ratio_to=Decimal(2),
                                   reference="beta_secret-1", actor=Actor.system("beta-system"))


def make_order(world) -> Model:
    """Firm B's working limit order (received: in a test transaction nothing routes it), placed through the
    one order path by its trader."""
    from decimal import Decimal

    from apps.audit.services import Actor
    from apps.marketdata.models import Instrument
    from apps.orders.core import OrderSpec, OrderType, Side, TimeInForce
    from apps.orders.models import Origin
    from apps.orders.services import Entry, order_submit
    from apps.portfolios.services import cash_post, portfolio_create

    made = getattr(world, "_order", None)
    if made is not None:
        return made
    Instrument.objects.get_or_create(symbol="BETAQ", asset_class="equity",
                                     defaults={"exchange": "NYSE", "name": "Beta Q Corp"})
    actor = Actor.for_user(world.member("trader").user)
    portfolio = portfolio_create(firm_id=world.firm.pk, name="beta_secret orders", actor=actor)
    cash_post(portfolio=portfolio, kind="deposit", amount=Decimal(1000), actor=actor)
    spec = OrderSpec(symbol="BETAQ", side=Side.BUY, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                     qty=Decimal(5), limit_price=Decimal(10), client_order_id="beta_secret-order")
    world._order = order_submit(portfolio=portfolio, spec=spec, entry=Entry(actor=actor, origin=Origin.API)).order
    return world._order


def make_trading_control(world) -> Model:
    from apps.audit.services import Actor
    from apps.orders.services import trading_limits_set

    return trading_limits_set(firm_id=world.firm.pk, actor=Actor.system("beta-system"), max_order_qty=500)


def make_algo(world) -> Model:
    """Firm B's running TWAP parent (no slice sent: its window starts in an hour), through the algo service."""
    from decimal import Decimal

    from apps.audit.services import Actor
    from apps.marketdata.models import Instrument
    from apps.orders.algo_services import algo_create
    from apps.orders.models import Origin
    from apps.orders.services import Entry

    made = getattr(world, "_algo", None)
    if made is not None:
        return made
    Instrument.objects.get_or_create(symbol="BETAQ", asset_class="equity",
                                     defaults={"exchange": "NYSE", "name": "Beta Q Corp"})
    order = make_order(world)  # its portfolio is funded and firm B's
    start = timezone.now() + timedelta(hours=1)
    world._algo = algo_create(
        portfolio=order.portfolio, symbol="BETAQ", side="buy", qty=Decimal(10), kind="twap", start_at=start,
        end_at=start + timedelta(minutes=10), slices=5, client_order_id="beta_secret-algo",
        entry=Entry(actor=Actor.for_user(world.member("trader").user), origin=Origin.API))
    return world._algo


def make_portfolio_halt(world) -> Model:
    from apps.core.tenancy import firm_scope
    from apps.orders.models import PortfolioHalt

    order = make_order(world)
    with firm_scope(world.firm.pk):
        halt, _ = PortfolioHalt.objects.get_or_create(firm_id=world.firm.pk, portfolio=order.portfolio, defaults={
            "reason": "beta_secret break", "created_at": timezone.now()})
    return halt


FIXTURES: dict[str, Callable] = {
    "firm": make_firm,
    "user": make_user,
    "membership": make_membership,
    "invitation": make_invitation,
    "api_token": make_api_token,
    "audit_event": make_audit_event,
    "totp_device": make_totp_device,
    "static_device": make_static_device,
    "watchlist": make_watchlist,
    "import_job": make_import_job,
    "backfill": make_backfill,
    "portfolio": make_portfolio,
    "ledger_tax_entity": lambda world: make_portfolio_books(world)["tax_entity"],
    "ledger_fill": lambda world: make_portfolio_books(world)["fill"],
    "ledger_journal_entry": lambda world: make_portfolio_books(world)["journal_entry"],
    "ledger_lot": lambda world: make_portfolio_books(world)["lot"],
    "ledger_gain": lambda world: make_portfolio_books(world)["gain"],
    "ledger_position": lambda world: make_portfolio_books(world)["position"],
    "ledger_snapshot": lambda world: make_portfolio_books(world)["snapshot"],
    "ledger_corporate_action": lambda world: make_portfolio_books(world)["corporate_action"],
    "ledger_trade_import": lambda world: make_portfolio_books(world)["trade_import"],
    "corporate_action": lambda world: make_corporate_action(world),
    "order": make_order,
    "order_event": lambda world: make_order(world).events.first(),
    "trading_control": lambda world: make_trading_control(world),
    "algo": make_algo,
    "portfolio_halt": lambda world: make_portfolio_halt(world),
}

# Bodies that would succeed if the object were in the caller's firm: a scoping bug then shows up
# as a changed firm B row, not as a 400 that hides it.
WRITE_BODIES: dict[str, dict] = {
    "portfolio": {"name": "renamed by alpha"},
    "membership": {"role": "admin"},
    "watchlist": {"name": "renamed by alpha"},
    "order": {"limit_price": "9.5"},
}

# --- routes ---------------------------------------------------------------------------------------

ROUTE_OBJECTS: dict[str, str] = {
    # API
    "api-member-detail": "membership",
    "api-invitation-detail": "invitation",
    "api-token-detail": "api_token",
    "audit-event-detail": "audit_event",
    # pages
    "accounts:member_role": "membership",
    "accounts:member_remove": "membership",
    "accounts:invitation_revoke": "invitation",
    "accounts:token_revoke": "api_token",
    # market data (firm-owned parts)
    "api-backfill-detail": "backfill",
    "api-watchlist-detail": "watchlist",
    "api-watchlist-items": "watchlist",
    "api-watchlist-item-detail": "watchlist",
    "api-watchlist-order": "watchlist",
    "api-import-detail": "import_job",
    "marketdata:import_detail": "import_job",
    # portfolios (point 1 and 11 of issue #4)
    "api-portfolio-detail": "portfolio",
    "api-portfolio-positions": "portfolio",
    "api-portfolio-lots": "portfolio",
    "api-portfolio-realized-gains": "portfolio",
    "api-portfolio-journal": "portfolio",
    "api-portfolio-cash": "portfolio",
    "api-portfolio-grants": "portfolio",
    # valuation, snapshots and performance (points 8 and 9)
    "api-portfolio-holdings": "portfolio",
    "api-portfolio-valuation": "portfolio",
    "api-portfolio-snapshots": "portfolio",
    "api-portfolio-performance": "portfolio",
    # corporate actions (point 6)
    "api-corporate-action-detail": "corporate_action",
    "api-corporate-action-apply": "corporate_action",
    # trade imports (point 7)
    "api-trade-import-list": "portfolio",
    "api-trade-import-preview": "portfolio",
    "api-trade-import-detail": "ledger_trade_import",
    "portfolios:import": "portfolio",
    "portfolios:import_detail": "ledger_trade_import",
    # the Portfolio page and its partials (point 12)
    "portfolios:detail": "portfolio",
    "portfolios:holdings": "portfolio",
    "portfolios:lots": "portfolio",
    "portfolios:gains": "portfolio",
    "portfolios:journal": "portfolio",
    "portfolios:charts": "portfolio",
    # orders (issue #5)
    "api-order": "order",
    # execution algorithms (issue #5 point 11)
    "api-algo": "algo",
    "api-algo-pause": "algo",
    "api-algo-resume": "algo",
    "api-algo-cancel": "algo",
    # the Trade page (issue #5): its partials and ticket take a portfolio, cancel and replace an order
    "orders:ticket": "portfolio",
    "orders:blotter": "portfolio",
    "orders:positions": "portfolio",
    "orders:cancel": "order",
    "orders:replace": "order",
    # the Trade page's Algos panel: its list and form take a portfolio, pause/resume/cancel an algo
    "orders:algos": "portfolio",
    "orders:algo_create": "portfolio",
    "orders:algo_pause": "algo",
    "orders:algo_resume": "algo",
    "orders:algo_cancel": "algo",
}

# Routes with more than one parameter (nested resources): route name -> f(firm B object) -> URL kwargs.
ROUTE_KWARGS: dict[str, Callable[[Model], dict]] = {
    "api-watchlist-item-detail": lambda watchlist: {"pk": watchlist.pk, "symbol": "BETAQ"},
}

NOT_OBJECT_ROUTES: dict[str, str] = {
    "area": "the slug names a navigation area, not a firm's object",
    "api-instrument-detail": "market data is global: the symbol names a platform-wide instrument, not a firm's",
    "accounts:invitation_accept": "a public signed link; the signature is the credential (tests/accounts)",
    "accounts:password_reset_confirm": "Django's signed password-reset link (uid + token)",
    "admin:view_on_site": "admin shortcut by content type; resolves through the ModelAdmin checks",
    "admin:app_list": "an app label, not an object",
    "admin/(?P<url>.*)$": "the admin's catch-all redirect",
}

# Admin: every registered model has a fixture key (firm-owned, or per-user and so per-firm), or is
# platform-level (probed with any existing row; superuser-only in the admin).
ADMIN_MODELS: dict[str, str] = {
    "portfolios.portfolio": "portfolio",
    "portfolios.taxentity": "ledger_tax_entity",
    "portfolios.fill": "ledger_fill",
    "orders.order": "order",
    "orders.orderevent": "order_event",
    "orders.tradingcontrol": "trading_control",
    "orders.algoorder": "algo",
    "orders.portfoliohalt": "portfolio_halt",
    "portfolios.journalentry": "ledger_journal_entry",
    "portfolios.lot": "ledger_lot",
    "portfolios.realizedgain": "ledger_gain",
    "portfolios.position": "ledger_position",
    "portfolios.snapshot": "ledger_snapshot",
    "portfolios.corporateaction": "ledger_corporate_action",
    "portfolios.tradeimport": "ledger_trade_import",
    "accounts.firm": "firm",
    "accounts.user": "user",
    "accounts.membership": "membership",
    "accounts.invitation": "invitation",
    "accounts.apitoken": "api_token",
    "audit.auditevent": "audit_event",
    "otp_totp.totpdevice": "totp_device",
    "otp_static.staticdevice": "static_device",
}
PLATFORM_ADMIN_MODELS: dict[str, str] = {
    "auth.group": "permission groups are platform-wide",
    "django_celery_beat.periodictask": "platform schedules (firm tasks take firm_id in their args)",
    "django_celery_beat.clockedschedule": "platform schedule definitions",
    "django_celery_beat.crontabschedule": "platform schedule definitions",
    "django_celery_beat.solarschedule": "platform schedule definitions",
    "django_celery_beat.intervalschedule": "platform schedule definitions",
    "axes.accessattempt": "login throttling records, platform operators only",
    "axes.accesslog": "login records, platform operators only",
    "axes.accessfailurelog": "login failure records, platform operators only",
    "django_celery_beat.periodictasks": "platform schedule state",
}

# Markers that appear in firm B's data and never in firm A's: a firm A response containing one
# has leaked firm B.
FIRM_B_MARKERS = ("beta.example.com", "Beta Capital", "beta-capital", "beta bot", "beta_secret", "beta-system")


@dataclass(frozen=True)
class Route:
    key: str  # the route's name (namespaced), or its pattern when it has none
    pattern: str  # the full route, e.g. "api/v1/members/<int:pk>/"
    params: tuple[str, ...]
    callback: Callable

    @property
    def is_api(self) -> bool:
        return self.pattern.startswith("api/")

    @property
    def is_admin(self) -> bool:
        return self.pattern.startswith("admin/")

    def path(self, **kwargs) -> str:
        out = self.pattern
        for name, value in kwargs.items():
            out = re.sub(rf"<(?:\w+:)?{name}>|\(\?P<{name}>[^)]*\)", str(value), out)
        return "/" + out.lstrip("^").rstrip("$")


def unregistered_routes(routes) -> list[str]:
    """Parameterised routes (outside the admin, which is classified per model) with no fixture."""
    return [
        f"{r.key}  ({r.pattern})"
        for r in routes
        if r.params and not r.is_admin and r.key not in ROUTE_OBJECTS and r.key not in NOT_OBJECT_ROUTES
    ]


def url_kwargs(route: Route, obj: Model) -> dict:
    if len(route.params) == 1:
        return {route.params[0]: obj.pk}
    assert route.key in ROUTE_KWARGS, f"{route.key} has several parameters: add it to ROUTE_KWARGS"
    return ROUTE_KWARGS[route.key](obj)


def _params(pattern) -> tuple[str, ...]:
    converters = getattr(pattern, "converters", None)
    if converters:
        return tuple(converters)
    return tuple(re.compile(str(pattern)).groupindex) if hasattr(pattern, "regex") else ()


def walk_routes(resolver: URLResolver | None = None, prefix: str = "", namespace: str | None = None,
                params: tuple[str, ...] = ()) -> Iterator[Route]:
    resolver = resolver or get_resolver("octopus.urls")
    for entry in resolver.url_patterns:
        here = prefix + str(entry.pattern)
        found = params + _params(entry.pattern)
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from walk_routes(entry, here, ns, found)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield Route(key=name or here, pattern=here, params=found, callback=entry.callback)


def admin_model_label(route: Route) -> str | None:
    """The ``app_label.model`` an admin route belongs to, if it is a ModelAdmin route."""
    match = re.match(r"admin/(\w+)/(\w+)/", route.pattern)
    if match is None:
        return None
    label = f"{match.group(1)}.{match.group(2)}"
    registered = {m._meta.label_lower for m in admin.site._registry}
    return label if label in registered else None


def route_methods(route: Route) -> list[str]:
    """The HTTP methods a route serves (DRF viewsets/APIViews and class-based views know theirs)."""
    callback = route.callback
    actions = getattr(callback, "actions", None)
    if actions:  # a DRF ViewSet route
        return sorted({m.upper() for m in actions} | {"HEAD", "OPTIONS"})
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is not None:
        allowed = [m for m in view_class.http_method_names if hasattr(view_class, m) and m != "trace"]
        return sorted(m.upper() for m in allowed)
    return ["GET", "POST"]  # a function view: try both; a 405 is acceptable, a 404 is required once
