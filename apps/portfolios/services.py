"""Writes for portfolios: tax entities, portfolios, cash movements. Fills are booked by
``apps.portfolios.booking.book_fill``; corporate actions and trade imports have their own modules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.portfolios.booking import post_entry
from apps.portfolios.lots import Method
from apps.portfolios.models import Account, EntryKind, JournalEntry, Portfolio, PortfolioMode, TaxEntity

ZERO = Decimal(0)
DEFAULT_TAX_ENTITY = "Firm"


def tax_entity_create(*, firm_id: int, name: str, actor: Actor, meta: RequestMeta | None = None) -> TaxEntity:
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise DomainError("VALIDATION_ERROR", "A name of 1 to 120 characters is required.", fields={"name": ["Required."]})
    with firm_scope(firm_id), transaction.atomic():
        if TaxEntity.objects.filter(firm_id=firm_id, name=name).exists():
            raise DomainError("DUPLICATE_NAME", f"A tax entity named {name!r} exists.", fields={"name": ["Taken."]},
                              status_code=409)
        entity = TaxEntity.objects.create(firm_id=firm_id, name=name)
        audit_record(firm_id=firm_id, action="tax_entity.created", actor=actor, target_type="portfolios.taxentity",
                     target_id=entity.pk, target_label=name, after={"name": name}, meta=meta)
    return entity


def default_tax_entity(firm_id: int) -> TaxEntity:
    with firm_scope(firm_id):
        entity, _ = TaxEntity.objects.get_or_create(firm_id=firm_id, name=DEFAULT_TAX_ENTITY)
    return entity


PORTFOLIO_FIELDS = ("name", "base_currency", "mode", "cost_basis_method", "allow_short", "benchmark_id",
                    "tax_entity_id", "restricted")


def _portfolio_state(p: Portfolio) -> dict:
    return {f: getattr(p, f) for f in PORTFOLIO_FIELDS}


def _check_portfolio(firm_id: int, fields: dict) -> None:
    problems = {}
    if "name" in fields:
        name = (fields["name"] or "").strip()
        if not name or len(name) > 120:
            problems["name"] = ["A name of 1 to 120 characters is required."]
        fields["name"] = name
    if "mode" in fields and fields["mode"] not in PortfolioMode.values:
        problems["mode"] = [f"One of {', '.join(PortfolioMode.values)}."]
    if "cost_basis_method" in fields and fields["cost_basis_method"] not in [m.value for m in Method]:
        problems["cost_basis_method"] = [f"One of {', '.join(m.value for m in Method)}."]
    if "base_currency" in fields and fields["base_currency"] != "USD":
        problems["base_currency"] = ["Only USD is supported for now."]
    entity_id = fields.get("tax_entity_id")
    if entity_id is not None and not TaxEntity.objects.for_firm(firm_id).filter(pk=entity_id).exists():
        problems["tax_entity"] = ["Not found."]
    if problems:
        raise DomainError("VALIDATION_ERROR", "Invalid portfolio: " + ", ".join(sorted(problems)) + ".",
                          fields=problems)


def portfolio_create(*, firm_id: int, name: str, actor: Actor, meta: RequestMeta | None = None,
                     tax_entity: TaxEntity | None = None, **options) -> Portfolio:
    """Create a portfolio; without a tax entity it joins the firm's default one."""
    fields = {"name": name, **options}
    if tax_entity is not None:
        fields["tax_entity_id"] = tax_entity.pk
    benchmark = fields.pop("benchmark", None)
    if benchmark is not None:
        fields["benchmark_id"] = benchmark.pk
    unknown = set(fields) - set(PORTFOLIO_FIELDS)
    if unknown:
        raise TypeError(f"unknown portfolio fields: {sorted(unknown)}")
    with firm_scope(firm_id), transaction.atomic():
        _check_portfolio(firm_id, fields)
        if "tax_entity_id" not in fields:
            fields["tax_entity_id"] = default_tax_entity(firm_id).pk
        if Portfolio.objects.filter(firm_id=firm_id, name=fields["name"]).exists():
            raise DomainError("DUPLICATE_NAME", f"A portfolio named {fields['name']!r} exists.",
                              fields={"name": ["Taken."]}, status_code=409)
        portfolio = Portfolio.objects.create(firm_id=firm_id, **fields)
        audit_record(firm_id=firm_id, action="portfolio.created", actor=actor, target_type="portfolios.portfolio",
                     target_id=portfolio.pk, target_label=portfolio.name, after=_portfolio_state(portfolio), meta=meta)
    return portfolio


def portfolio_update(*, portfolio: Portfolio, actor: Actor, meta: RequestMeta | None = None, **changes) -> Portfolio:
    """Change settings. The cost-basis method and tax entity cannot change once fills are booked:
    the lots already closed were matched under the old ones (rebuild would disagree)."""
    if "benchmark" in changes:
        benchmark = changes.pop("benchmark")
        changes["benchmark_id"] = benchmark.pk if benchmark is not None else None
    if "tax_entity" in changes:
        changes["tax_entity_id"] = changes.pop("tax_entity").pk
    unknown = set(changes) - set(PORTFOLIO_FIELDS)
    if unknown:
        raise TypeError(f"unknown portfolio fields: {sorted(unknown)}")
    with firm_scope(portfolio.firm_id), transaction.atomic():
        _check_portfolio(portfolio.firm_id, changes)
        locked = Portfolio.objects.select_for_update().get(pk=portfolio.pk)
        before = _portfolio_state(locked)
        frozen = [f for f in ("cost_basis_method", "tax_entity_id", "allow_short")
                  if f in changes and changes[f] != before[f]]
        if frozen and locked.fills.exists():
            if frozen != ["allow_short"] or locked.positions.filter(quantity__lt=0).exists():
                name = frozen[0].removesuffix("_id")
                raise DomainError("PORTFOLIO_HAS_FILLS", f"{name} cannot change once fills are booked.",
                                  fields={name: ["Frozen once fills are booked."]}, status_code=409)
        for key, value in changes.items():
            setattr(locked, key, value)
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError:
            raise DomainError("DUPLICATE_NAME", "A portfolio with that name exists.", fields={"name": ["Taken."]},
                              status_code=409) from None
        after = _portfolio_state(locked)
        if after != before:
            audit_record(firm_id=locked.firm_id, action="portfolio.updated", actor=actor,
                         target_type="portfolios.portfolio", target_id=locked.pk, target_label=locked.name,
                         before={k: v for k, v in before.items() if after[k] != v},
                         after={k: v for k, v in after.items() if before[k] != v}, meta=meta)
    return locked


# -- cash --------------------------------------------------------------------------------------

CASH_KINDS = {
    # kind: (contra account, sign of the cash movement)
    EntryKind.DEPOSIT: (Account.CAPITAL, 1),
    EntryKind.WITHDRAWAL: (Account.CAPITAL, -1),
    EntryKind.FEE: (Account.FEES, -1),
    EntryKind.INTEREST: (Account.INTEREST, 0),  # either way: credit or debit interest
    EntryKind.ADJUSTMENT: (Account.ADJUSTMENT, 0),
}


def cash_post(*, portfolio: Portfolio, kind: str, amount: Decimal, actor: Actor, on: date | None = None,
              memo: str = "", idempotency_key: str = "", meta: RequestMeta | None = None) -> JournalEntry | None:
    """Post a deposit, withdrawal, fee, interest or adjustment. ``amount`` is positive for deposits,
    withdrawals and fees; signed (cash in positive) for interest and adjustments. An adjustment needs a
    reason (``memo``). A withdrawal may not exceed the cash balance. With an ``idempotency_key`` a
    repeat returns None and writes nothing."""
    if kind not in CASH_KINDS:
        raise DomainError("VALIDATION_ERROR", f"Kind must be one of {', '.join(CASH_KINDS)}.",
                          fields={"kind": ["Unknown kind."]})
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount == 0:
        raise DomainError("VALIDATION_ERROR", "A non-zero amount is required.", fields={"amount": ["Non-zero."]})
    if amount.as_tuple().exponent < -8:
        raise DomainError("VALIDATION_ERROR", "At most 8 decimal places.", fields={"amount": ["Too precise."]})
    contra, sign = CASH_KINDS[kind]
    if sign and amount < 0:
        raise DomainError("VALIDATION_ERROR", f"A {kind} amount is positive.", fields={"amount": ["Must be positive."]})
    if kind == EntryKind.ADJUSTMENT and not memo.strip():
        raise DomainError("VALIDATION_ERROR", "An adjustment needs a reason.", fields={"memo": ["Required."]})
    cash = amount * sign if sign else amount
    now = timezone.now()
    on = on or timezone.localdate(now)
    if on > timezone.localdate(now):
        raise DomainError("VALIDATION_ERROR", "Cash cannot be posted in the future.", fields={"on": [on.isoformat()]})
    from apps.portfolios.selectors import cash_balance

    with firm_scope(portfolio.firm_id), transaction.atomic():
        Portfolio.objects.select_for_update().filter(pk=portfolio.pk).first()  # one cash writer at a time
        if cash < 0 and kind == EntryKind.WITHDRAWAL and cash_balance(portfolio.pk) + cash < 0:
            raise DomainError("INSUFFICIENT_CASH", "The withdrawal exceeds the cash balance.",
                              fields={"amount": [str(amount)]})
        entry_id = post_entry(firm_id=portfolio.firm_id, portfolio_id=portfolio.pk, kind=kind, trade_date=on,
                              settle_date=on, now=now, memo=memo.strip(), idempotency_key=idempotency_key,
                              created_by_id=actor.user_id,
                              lines=[(Account.CASH, cash, ""), (contra, -cash, "")])
        if entry_id is None:
            return None
        audit_record(firm_id=portfolio.firm_id, action=f"portfolio.cash_{kind}", actor=actor,
                     target_type="portfolios.journalentry", target_id=entry_id, target_label=portfolio.name,
                     after={"portfolio": portfolio.pk, "kind": kind, "amount": str(cash), "on": on.isoformat(),
                            "memo": memo.strip()}, meta=meta)
        return JournalEntry.objects.get(pk=entry_id)
