"""Reads for portfolios: who may see or trade which portfolio, balances from the journal, positions.

Valuation (quotes, P&L, equity at a date), snapshots and performance are in
``apps.portfolios.valuation``."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum

from apps.accounts.models import MANAGE_ROLES, Membership, Role
from apps.portfolios.models import Account, JournalLine, Lot, Portfolio, Position, RealizedGain

ZERO = Decimal(0)

VIEW, TRADE, MANAGE = "view_portfolio", "trade_portfolio", "manage_portfolio"
# what each role may do on an unrestricted portfolio (a restricted one: owners and admins only,
# everyone else by explicit grant)
ROLE_DEFAULTS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset({VIEW, TRADE, MANAGE}),
    Role.ADMIN: frozenset({VIEW, TRADE, MANAGE}),
    Role.TRADER: frozenset({VIEW, TRADE}),
    Role.ANALYST: frozenset({VIEW}),
    Role.COMPLIANCE: frozenset({VIEW}),
}


def portfolio_perms(membership: Membership, portfolio: Portfolio) -> frozenset[str]:
    """The portfolio permissions of a member: role defaults (none on a restricted portfolio, except
    for owners and admins) plus django-guardian grants on the object."""
    from guardian.shortcuts import get_perms

    if membership.firm_id != portfolio.firm_id:
        return frozenset()
    if membership.role in MANAGE_ROLES:
        return ROLE_DEFAULTS[membership.role]
    base = frozenset() if portfolio.restricted else ROLE_DEFAULTS.get(membership.role, frozenset())
    granted = frozenset(get_perms(membership.user, portfolio))
    if TRADE in granted or MANAGE in granted:
        granted |= {VIEW}
    return base | granted


def portfolios_visible(membership: Membership) -> QuerySet[Portfolio]:
    """The portfolios of the member's firm the member may view."""
    qs = Portfolio.objects.for_firm(membership.firm_id).select_related("tax_entity", "benchmark")
    if membership.role in MANAGE_ROLES:
        return qs
    from guardian.shortcuts import get_objects_for_user

    granted = get_objects_for_user(membership.user, [VIEW, TRADE, MANAGE], klass=Portfolio.objects.for_firm(membership.firm_id), any_perm=True, accept_global_perms=False)
    return qs.filter(Q(restricted=False) | Q(pk__in=granted.values("pk")))


def cash_balance(portfolio_id: int, *, settled_on: date | None = None, on: date | None = None) -> Decimal:
    """Cash from the journal: everything posted (``on``: traded up to that date), or only what has
    settled by ``settled_on``."""
    return account_balance(portfolio_id, Account.CASH, settled_on=settled_on, on=on)


def account_balance(portfolio_id: int, account: str, *, settled_on: date | None = None,
                    on: date | None = None) -> Decimal:
    qs = JournalLine.objects.filter(portfolio_id=portfolio_id, account=account)
    if settled_on is not None:
        qs = qs.filter(settle_date__lte=settled_on)
    if on is not None:
        qs = qs.filter(trade_date__lte=on)
    return qs.aggregate(total=Sum("amount"))["total"] or ZERO


def account_balances(portfolio_id: int, *, on: date | None = None) -> dict[str, Decimal]:
    qs = JournalLine.objects.filter(portfolio_id=portfolio_id)
    if on is not None:
        qs = qs.filter(trade_date__lte=on)
    totals = dict(qs.values_list("account").annotate(total=Sum("amount")).values_list("account", "total"))
    return {account: totals.get(account, ZERO) for account in Account.values}


def positions_open(portfolio_id: int) -> QuerySet[Position]:
    return (Position.objects.filter(portfolio_id=portfolio_id).exclude(quantity=0)
            .select_related("instrument").order_by("instrument__symbol"))


def lots_open(portfolio_id: int) -> QuerySet[Lot]:
    return (Lot.objects.filter(portfolio_id=portfolio_id).exclude(quantity=0)
            .select_related("instrument", "origin_fill").order_by("instrument__symbol", "origin_fill_id", "part"))


def realized_gains(portfolio_id: int, *, year: int | None = None, term: str | None = None) -> QuerySet[RealizedGain]:
    qs = RealizedGain.objects.filter(portfolio_id=portfolio_id).select_related("instrument", "fill")
    if year is not None:
        qs = qs.filter(tax_year=year)
    if term is not None:
        qs = qs.filter(term=term)
    return qs.order_by("sold", "id")


def portfolio_for(membership: Membership, pk, perm: str = VIEW) -> Portfolio:
    """The portfolio ``pk`` of the member's firm for a request: Http404 when it does not exist, is
    another firm's, or the member may not even view it (restricted); PermissionDenied (403) when the
    member may view it but lacks ``perm``. Every door (API, pages, WebSocket) uses this."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    try:
        portfolio = Portfolio.objects.for_firm(membership.firm_id).select_related("tax_entity", "benchmark").get(
            pk=int(pk))
    except (Portfolio.DoesNotExist, TypeError, ValueError):
        raise Http404("No such portfolio.") from None
    perms = portfolio_perms(membership, portfolio)
    if VIEW not in perms:
        raise Http404("No such portfolio.")
    if perm not in perms:
        raise PermissionDenied(f"You may not {perm.removesuffix('_portfolio')} this portfolio.")
    return portfolio


def lots_of(portfolio_id: int, *, status: str = "open", symbol: str | None = None) -> QuerySet[Lot]:
    """Lots of a portfolio: ``open`` (quantity != 0), ``closed`` (0, kept for history) or ``all``."""
    qs = Lot.objects.filter(portfolio_id=portfolio_id).select_related("instrument")
    if status == "open":
        qs = qs.exclude(quantity=0)
    elif status == "closed":
        qs = qs.filter(quantity=0)
    if symbol is not None:
        qs = qs.filter(instrument__symbol=symbol)
    return qs.order_by("instrument__symbol", "origin_fill_id", "part", "id")


GAIN_TOTAL_FIELDS = ("proceeds", "cost_basis", "gain", "disallowed")


def realized_gain_totals(portfolio_id: int, *, year: int | None = None,
                         term: str | None = None) -> dict[str, dict[str, Decimal | int]]:
    """Form 8949-style totals per term (``short``, ``long``) and over both (``all``): count, proceeds,
    cost basis, gain, disallowed wash-sale loss and adjusted gain (gain + disallowed)."""
    from django.db.models import Count

    rows = (realized_gains(portfolio_id, year=year, term=term).order_by().values("term")
            .annotate(count=Count("id"), **{f: Sum(f) for f in GAIN_TOTAL_FIELDS}))
    by_term = {row["term"]: row for row in rows}
    out: dict[str, dict[str, Decimal | int]] = {}
    for name in ("short", "long"):
        row = by_term.get(name, {})
        totals = {"count": row.get("count", 0), **{f: row.get(f) or ZERO for f in GAIN_TOTAL_FIELDS}}
        totals["adjusted_gain"] = totals["gain"] + totals["disallowed"]
        out[name] = totals
    out["all"] = {key: out["short"][key] + out["long"][key] for key in out["short"]}
    return out


def journal_entries(portfolio_id: int, *, kind: str | None = None, start: date | None = None,
                    end: date | None = None) -> QuerySet:
    """Journal entries with their lines (prefetched), newest trade date first; ``start``/``end`` inclusive."""
    from django.db.models import Prefetch

    from apps.portfolios.models import JournalEntry

    qs = JournalEntry.objects.filter(portfolio_id=portfolio_id)
    if kind is not None:
        qs = qs.filter(kind=kind)
    if start is not None:
        qs = qs.filter(trade_date__gte=start)
    if end is not None:
        qs = qs.filter(trade_date__lte=end)
    lines = JournalLine.objects.select_related("instrument").order_by("id")
    return qs.select_related("fill").prefetch_related(Prefetch("lines", queryset=lines)).order_by("-trade_date", "-id")


def portfolio_grants(portfolio: Portfolio) -> list[dict]:
    """Members with explicit (django-guardian) permissions on the portfolio: email, role, perms (short names)."""
    from guardian.shortcuts import get_users_with_perms

    granted = get_users_with_perms(portfolio, attach_perms=True, with_superusers=False, with_group_users=False)
    roles = dict(Membership.objects.filter(firm_id=portfolio.firm_id, user__in=list(granted))
                 .values_list("user_id", "role"))
    order = (VIEW, TRADE, MANAGE)
    out = [{"user": user.email, "role": roles[user.pk],
            "perms": [p.removesuffix("_portfolio") for p in order if p in perms]}
           for user, perms in granted.items() if user.pk in roles]
    return sorted(out, key=lambda g: g["user"])


def gain_years(portfolio_id: int) -> list[int]:
    """The tax years with realized gains, newest first."""
    return sorted(set(RealizedGain.objects.filter(portfolio_id=portfolio_id)
                      .values_list("tax_year", flat=True).distinct()), reverse=True)


def _with_cash(qs: QuerySet) -> QuerySet:
    return qs.annotate(cash=Sum("lines__amount", filter=Q(lines__account=Account.CASH)))


def journal_with_cash(portfolio_id: int) -> QuerySet:
    """Journal entries with ``cash`` (the entry's net cash movement), newest trade date first."""
    from apps.portfolios.models import JournalEntry

    return _with_cash(JournalEntry.objects.filter(portfolio_id=portfolio_id).select_related("fill__instrument")
                      ).order_by("-trade_date", "-id")


def recent_fills(portfolio_ids: list[int], limit: int) -> QuerySet:
    from apps.portfolios.models import Fill

    return (Fill.objects.filter(portfolio_id__in=portfolio_ids).select_related("portfolio", "instrument")
            .order_by("-executed_at", "-seq")[:limit])


def recent_cash_entries(portfolio_ids: list[int], limit: int) -> QuerySet:
    """The latest journal entries that are not fills (deposits, dividends, fees...), with ``cash``."""
    from apps.portfolios.models import JournalEntry

    return _with_cash(JournalEntry.objects.filter(portfolio_id__in=portfolio_ids, fill__isnull=True)
                      .select_related("portfolio")).order_by("-trade_date", "-id")[:limit]
