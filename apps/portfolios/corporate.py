"""Corporate actions: entering, importing and applying splits, cash dividends and symbol changes.

A ``CorporateAction`` belongs to one firm (each firm enters or imports its own; ``reference`` is
unique per firm, so importing the same file twice creates nothing new). Applying it writes one
``CorporateActionApplication`` per portfolio (unique), so a second apply is a no-op; everything
is audited. The lot arithmetic lives in the pure ``corporate_core`` (shared with the rebuild).

Dates and their meaning:
- split / reverse split and symbol change take effect at the start of ``ex_date`` (New York): fills
  dated before it are in old shares / under the old symbol, fills on or after it in new ones. It
  can only be applied once ``ex_date`` has come, and it is refused (OUT_OF_ORDER, nothing written)
  when fills of the instrument dated on or after ``ex_date`` are already booked in the tax entity —
  their quantities would be in the wrong shares; rebuild the portfolio instead.
- cash dividend: paid on ``pay_date`` to whoever held at the close of the day before ``ex_date``
  (with T+1 settlement that is who is on the record date), counted from the fills (shares bought
  before a split applied since count split-adjusted). A long position receives quantity x cash per
  share (rounded half even to the cent), a short one pays it. Journal entry kind ``dividend``
  dated ``pay_date``: CASH +amount / DIVIDENDS -amount, idempotency key ``ca:<action id>``.

Cash in lieu: after a split of a non-fractionable instrument, each position's fraction is sold
(a short's bought back) at ``cash_in_lieu_price`` through ``booking.book_fill`` (source "manual",
order_ref ``ca:<action id>``, fill id ``ca:<action id>:<portfolio id>``, dated the start of the
ex-date). A fill rather than a bare ``corporate_action`` journal entry because the IRS treats the
cash as a sale of the fractional share: it must relieve basis from a lot and produce a realized-
gain record (Form 8949), and the rebuild then reproduces it like any other fill.

Symbol change: open lots and positions move to the new instrument (created through
``apps.marketdata.services.instrument_create`` when the new symbol is unknown); fills and realized
gains stay on the old one (history). Limit: a loss realized on the old symbol within 30 days before
the change is not washed by buys of the new symbol booked afterwards (the booking service looks
up pending losses by instrument).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.marketdata.models import Instrument
from apps.portfolios import booking
from apps.portfolios import corporate_core as cc
from apps.portfolios.lots import TAX_TZ, LotError, cents, trade_date
from apps.portfolios.models import (
    Account,
    CorporateAction,
    CorporateActionApplication,
    CorporateActionKind,
    EntryKind,
    Fill,
    FillSource,
    Lot,
    Portfolio,
    Position,
)
from apps.portfolios.wash import TaxLotEngine

ZERO = Decimal(0)
KINDS = CorporateActionKind
# fields that only make sense for some kinds (sent for another kind: refused, naming the field)
KIND_FIELDS = {
    KINDS.SPLIT: {"ratio_from", "ratio_to", "cash_in_lieu_price"},
    KINDS.CASH_DIVIDEND: {"cash_per_share", "record_date", "pay_date"},
    KINDS.SYMBOL_CHANGE: {"new_symbol"},
}
IMPORT_COLUMNS = ("kind", "symbol", "ex_date", "record_date", "pay_date", "ratio_from", "ratio_to", "cash_per_share",
                  "new_symbol", "reference", "cash_in_lieu_price")
IMPORT_MAX_ROWS = 5_000


def _invalid(problems: dict) -> DomainError:
    return DomainError("VALIDATION_ERROR", "Invalid corporate action: " + ", ".join(sorted(problems)) + ".",
                       fields=problems)


def _today() -> date:
    return trade_date(timezone.now())


def _state(a: CorporateAction) -> dict:
    return {"kind": a.kind, "instrument": a.instrument.symbol, "ex_date": a.ex_date.isoformat(),
            "record_date": a.record_date.isoformat() if a.record_date else None,
            "pay_date": a.pay_date.isoformat() if a.pay_date else None,
            "ratio_from": _s(a.ratio_from), "ratio_to": _s(a.ratio_to), "cash_per_share": _s(a.cash_per_share),
            "cash_in_lieu_price": _s(a.cash_in_lieu_price), "new_symbol": a.new_symbol, "reference": a.reference}


def _s(value) -> str | None:
    return None if value is None else str(value)


MAX_VALUE = Decimal(10) ** 12
MAX_PLACES = 10


def _positive(value, name: str, problems: dict, *, allow_zero: bool = False) -> None:
    if value is None:
        problems[name] = ["Required."]
    elif not isinstance(value, Decimal) or not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        problems[name] = ["Must be a number of at least 0." if allow_zero else "Must be a positive number."]
    elif value >= MAX_VALUE or value.normalize().as_tuple().exponent < -MAX_PLACES:
        problems[name] = [f"Below 10^12, with at most {MAX_PLACES} decimal places."]


def corporate_action_create(*, firm_id: int, kind: str, instrument: Instrument, ex_date: date, actor: Actor,
                            record_date: date | None = None, pay_date: date | None = None,
                            ratio_from: Decimal | None = None, ratio_to: Decimal | None = None,
                            cash_per_share: Decimal | None = None, new_symbol: str = "",
                            cash_in_lieu_price: Decimal | None = None, reference: str = "",
                            meta: RequestMeta | None = None) -> CorporateAction:
    """Enter one corporate action for the firm. Validates per kind (naming each bad field; nothing
    written): split ratios positive and different; dividend cash per share positive with a pay date
    on or after the ex-date (record date, when given, between); symbol change with a new symbol that
    differs (an unknown symbol is created as an instrument of the same class and exchange). Fields
    of another kind are refused. Without a ``reference`` one is derived (kind:symbol:ex_date), so
    entering the same action twice is a 409 DUPLICATE_REFERENCE."""
    problems: dict[str, list[str]] = {}
    if kind not in KINDS.values:
        raise _invalid({"kind": [f"One of {', '.join(KINDS.values)}."]})
    given = {"ratio_from": ratio_from, "ratio_to": ratio_to, "cash_per_share": cash_per_share,
             "cash_in_lieu_price": cash_in_lieu_price, "record_date": record_date, "pay_date": pay_date,
             "new_symbol": new_symbol or None}
    for name, value in given.items():
        if value is not None and name not in KIND_FIELDS[kind]:
            problems[name] = [f"Not used by a {kind}."]
    if not isinstance(instrument, Instrument):
        problems["symbol"] = ["Unknown instrument."]
    if not isinstance(ex_date, date):
        problems["ex_date"] = ["Required (YYYY-MM-DD)."]
    new_symbol = (new_symbol or "").strip().upper()
    if kind == KINDS.SPLIT:
        _positive(ratio_from, "ratio_from", problems)
        _positive(ratio_to, "ratio_to", problems)
        if "ratio_from" not in problems and "ratio_to" not in problems and ratio_from == ratio_to:
            problems["ratio_to"] = ["Must differ from ratio_from."]
        if cash_in_lieu_price is not None:
            _positive(cash_in_lieu_price, "cash_in_lieu_price", problems, allow_zero=True)
    elif kind == KINDS.CASH_DIVIDEND:
        _positive(cash_per_share, "cash_per_share", problems)
        if not isinstance(pay_date, date):
            problems["pay_date"] = ["Required (YYYY-MM-DD)."]
        elif isinstance(ex_date, date) and pay_date < ex_date:
            problems["pay_date"] = ["Must be on or after the ex-date."]
        if record_date is not None and isinstance(ex_date, date) and isinstance(pay_date, date) \
                and not ((record_date - ex_date).days >= -7 and record_date <= pay_date):
            problems["record_date"] = ["Must be between the ex-date (or a few days before) and the pay date."]
    else:
        if not new_symbol or len(new_symbol) > 32:
            problems["new_symbol"] = ["A symbol of 1 to 32 characters is required."]
        elif isinstance(instrument, Instrument) and new_symbol == instrument.symbol:
            problems["new_symbol"] = ["Must differ from the current symbol."]
    reference = (reference or "").strip()
    if not reference and isinstance(instrument, Instrument) and isinstance(ex_date, date):
        reference = f"{kind}:{instrument.symbol}:{ex_date.isoformat()}"
    if not reference or len(reference) > 128 or "\x00" in reference:
        problems["reference"] = ["1 to 128 characters."]
    if problems:
        raise _invalid(problems)
    with firm_scope(firm_id), transaction.atomic():
        if CorporateAction.objects.filter(firm_id=firm_id, reference=reference).exists():
            raise DomainError("DUPLICATE_REFERENCE", f"A corporate action with reference {reference!r} exists.",
                              fields={"reference": ["Taken."]}, status_code=409)
        new_instrument = None
        if kind == KINDS.SYMBOL_CHANGE:
            new_instrument = _instrument_for(new_symbol, instrument)
        action = CorporateAction.objects.create(
            firm_id=firm_id, kind=kind, instrument=instrument, ex_date=ex_date, record_date=record_date,
            pay_date=pay_date, ratio_from=ratio_from, ratio_to=ratio_to, cash_per_share=cash_per_share,
            cash_in_lieu_price=cash_in_lieu_price, new_symbol=new_symbol, new_instrument=new_instrument,
            reference=reference, created_by_id=actor.user_id)
        audit_record(firm_id=firm_id, action="corporate_action.created", actor=actor,
                     target_type="portfolios.corporateaction", target_id=action.pk,
                     target_label=f"{kind} {instrument.symbol} {ex_date}", after=_state(action), meta=meta)
    return action


def _instrument_for(symbol: str, like: Instrument) -> Instrument:
    from apps.marketdata.services import instrument_create

    found = Instrument.objects.filter(symbol=symbol, asset_class=like.asset_class).first()
    if found is not None:
        return found
    return instrument_create(symbol=symbol, asset_class=like.asset_class, exchange=like.exchange, name=like.name,
                             currency=like.currency, tick_size=like.tick_size, lot_size=like.lot_size,
                             fractionable=like.fractionable, shortable=like.shortable, tradable=like.tradable)


# -- applying ---------------------------------------------------------------------------------------


def effective_at(action: CorporateAction) -> datetime:
    """The instant a split or symbol change takes effect: the start of the ex-date in New York."""
    return datetime.combine(action.ex_date, time(0), TAX_TZ)


def corporate_action_apply(*, action: CorporateAction, actor: Actor, meta: RequestMeta | None = None,
                           portfolios: list[Portfolio] | None = None) -> list[CorporateActionApplication]:
    """Apply the action to the firm's portfolios it concerns (or only ``portfolios``). Returns the
    applications written now; portfolios already applied are skipped, so a repeat returns []. One
    transaction: a refusal (NOT_YET_EFFECTIVE, NOT_YET_PAYABLE, OUT_OF_ORDER, CASH_IN_LIEU_PRICE_REQUIRED,
    SYMBOL_CLASH) writes nothing."""
    firm_id = action.firm_id
    today = _today()
    if action.kind == KINDS.CASH_DIVIDEND:
        if action.pay_date > today:
            raise DomainError("NOT_YET_PAYABLE", f"The dividend is payable on {action.pay_date}; it is applied then.",
                              fields={"pay_date": [action.pay_date.isoformat()]}, status_code=409)
    elif action.ex_date > today:
        raise DomainError("NOT_YET_EFFECTIVE", f"The {action.kind} takes effect on {action.ex_date}.",
                          fields={"ex_date": [action.ex_date.isoformat()]}, status_code=409)
    only = None if portfolios is None else {p.pk for p in portfolios if p.firm_id == firm_id}
    now = timezone.now()
    with firm_scope(firm_id), transaction.atomic():
        action = CorporateAction.objects.select_for_update(of=("self",)) \
            .select_related("instrument", "new_instrument").get(pk=action.pk)  # one applier per action at a time
        done = set(CorporateActionApplication.objects.filter(action=action).values_list("portfolio_id", flat=True))
        if action.kind == KINDS.CASH_DIVIDEND:
            made = _apply_dividend(action, only, done, actor, meta, now)
        else:
            targets = _holders(action, only, done)
            _refuse_out_of_order(action, targets)
            if action.kind == KINDS.SPLIT:
                made = _apply_split(action, targets, actor, meta, now)
            else:
                made = _apply_symbol_change(action, targets, actor, meta, now)
        if only is None and action.applied_at is None:
            CorporateAction.objects.filter(pk=action.pk).update(applied_at=now)
    return made


def _holders(action: CorporateAction, only: set | None, done: set) -> list[Portfolio]:
    ids = (Position.objects.filter(firm_id=action.firm_id, instrument_id=action.instrument_id)
           .exclude(quantity=0).values_list("portfolio_id", flat=True))
    qs = Portfolio.objects.filter(firm_id=action.firm_id, pk__in=ids).exclude(pk__in=done).order_by("pk")
    if only is not None:
        qs = qs.filter(pk__in=only)
    return list(qs)


def _refuse_out_of_order(action: CorporateAction, targets: list[Portfolio]) -> None:
    if not targets:
        return
    late = (Fill.objects.filter(firm_id=action.firm_id, instrument_id=action.instrument_id,
                                tax_entity_id__in={p.tax_entity_id for p in targets}, trade_date__gte=action.ex_date)
            .exclude(order_ref=f"ca:{action.pk}").values_list("fill_id", flat=True)[:5])
    late = list(late)
    if late:
        raise DomainError(
            "OUT_OF_ORDER",
            f"Fills of {action.instrument.symbol} dated on or after the ex-date {action.ex_date} are already booked "
            f"({', '.join(late)}); their quantities would be in the wrong shares. Rebuild the portfolio to apply it.",
            fields={"ex_date": [action.ex_date.isoformat()]}, status_code=409)


def _by_entity(targets: list[Portfolio]) -> dict[int, list[Portfolio]]:
    groups: dict[int, list[Portfolio]] = defaultdict(list)
    for p in targets:
        groups[p.tax_entity_id].append(p)
    return dict(sorted(groups.items()))


def _engine(entity_id: int, instrument_ids: list[int]) -> tuple[TaxLotEngine, list[Lot]]:
    """The entity's open lots of these instruments in the pure engine (book order: per opening
    fill, parts split off a lot before the lot itself, as ``LotBook.insert_before`` keeps them)."""
    rows = []
    for instrument_id in instrument_ids:
        rows += sorted(booking.open_lot_rows(entity_id, instrument_id),
                       key=lambda r: (r.origin_fill_id, r.part == 0, r.part))
    engine = TaxLotEngine.restore(lots=[booking.lot_to_core(r) for r in rows],
                                  policies=booking.policies_for(entity_id))
    return engine, rows


def _record(action, portfolio, summary, actor, meta, now) -> CorporateActionApplication:
    application = CorporateActionApplication.objects.create(firm_id=action.firm_id, action=action,
                                                            portfolio=portfolio, applied_at=now, summary=summary)
    audit_record(firm_id=action.firm_id, action="corporate_action.applied", actor=actor,
                 target_type="portfolios.corporateaction", target_id=action.pk,
                 target_label=f"{action.kind} {action.instrument.symbol} {action.ex_date} -> {portfolio.name}",
                 after={"portfolio": portfolio.pk, **summary}, meta=meta)
    return application


def _apply_split(action, targets, actor, meta, now) -> list[CorporateActionApplication]:
    instrument = action.instrument
    made = []
    for entity_id, group in _by_entity(targets).items():
        booking.lock_pair(entity_id, instrument.pk)
        engine, rows = _engine(entity_id, [instrument.pk])
        pids = [p.pk for p in group]
        before = {pid: engine.position(pid, instrument.pk) for pid in pids}
        try:
            lots = cc.apply_split(engine, instrument.pk, action.ratio_from, action.ratio_to, portfolio_ids=pids)
            fractions = [] if instrument.fractionable else cc.cash_in_lieu(engine, instrument.pk, portfolio_ids=pids)
        except LotError as exc:
            raise DomainError(exc.code, exc.message, fields=exc.fields) from None
        if fractions and action.cash_in_lieu_price is None:
            raise DomainError("CASH_IN_LIEU_PRICE_REQUIRED",
                              f"{instrument.symbol} is not fractionable and the split leaves fractions; "
                              "set the cash-in-lieu price first.", fields={"cash_in_lieu_price": ["Required."]})
        scaled = {lot.lot_id: lot.quantity for lot in lots}
        changed = [row for row in rows if row.lot_id in scaled]
        for row in changed:  # only the quantity changes: cost, adjustment, dates stay
            row.quantity, row.updated_at = scaled[row.lot_id], now
        Lot.objects.bulk_update(changed, ["quantity", "updated_at"])
        for pid in pids:
            Position.objects.filter(portfolio_id=pid, instrument_id=instrument.pk).update(
                quantity=engine.position(pid, instrument.pk), updated_at=now)
        cil = {f.portfolio_id: f for f in fractions}
        for portfolio in group:
            summary = {"kind": action.kind, "ratio_from": str(action.ratio_from), "ratio_to": str(action.ratio_to),
                       "effective_at": effective_at(action).isoformat(), "quantity_before": str(before[portfolio.pk]),
                       "quantity_after": str(engine.position(portfolio.pk, instrument.pk)),
                       "lots": [lot.lot_id for lot in lots if lot.portfolio_id == portfolio.pk]}
            fraction = cil.get(portfolio.pk)
            if fraction is not None:
                booked = booking.book_fill(
                    portfolio=portfolio, instrument=instrument, side=fraction.side, quantity=fraction.quantity,
                    price=action.cash_in_lieu_price, executed_at=effective_at(action),
                    fill_id=f"ca:{action.pk}:{portfolio.pk}", lot_ids=[fraction.lot_id], source=FillSource.MANUAL,
                    order_ref=f"ca:{action.pk}", actor=actor, meta=meta, now=now)
                summary.update(cash_in_lieu_fill=booked.fill.fill_id, cash_in_lieu_quantity=str(fraction.quantity),
                               cash_in_lieu_price=str(action.cash_in_lieu_price), realized=str(booked.realized),
                               quantity_after=str(booked.position_quantity))
            made.append(_record(action, portfolio, summary, actor, meta, now))
    return made


def _apply_symbol_change(action, targets, actor, meta, now) -> list[CorporateActionApplication]:
    old, new = action.instrument, action.new_instrument
    made = []
    for entity_id, group in _by_entity(targets).items():
        for instrument_id in sorted((old.pk, new.pk)):  # fixed order: no deadlock with another applier
            booking.lock_pair(entity_id, instrument_id)
        engine, _rows = _engine(entity_id, [old.pk, new.pk])
        pids = [p.pk for p in group]
        try:
            moved = cc.change_symbol(engine, old.pk, new.pk, portfolio_ids=pids)
        except LotError as exc:
            raise DomainError("SYMBOL_CLASH", exc.message, fields=exc.fields, status_code=409) from None
        Lot.objects.filter(firm_id=action.firm_id, lot_id__in=[lot.lot_id for lot in moved]).update(
            instrument_id=new.pk, updated_at=now)
        for portfolio in group:
            position = Position.objects.select_for_update().get(portfolio=portfolio, instrument=old)
            Position.objects.update_or_create(
                portfolio=portfolio, instrument=new,
                defaults={"firm_id": action.firm_id, "quantity": position.quantity, "cost": position.cost,
                          "opened_at": position.opened_at, "updated_at": now},
                create_defaults={"firm_id": action.firm_id, "quantity": position.quantity, "cost": position.cost,
                                 "realized": ZERO, "opened_at": position.opened_at, "updated_at": now})
            Position.objects.filter(pk=position.pk).update(quantity=ZERO, cost=ZERO, opened_at=None, updated_at=now)
            summary = {"kind": action.kind, "from": old.symbol, "to": new.symbol, "new_instrument": new.pk,
                       "effective_at": effective_at(action).isoformat(), "quantity": str(position.quantity),
                       "lots": [lot.lot_id for lot in moved if lot.portfolio_id == portfolio.pk]}
            made.append(_record(action, portfolio, summary, actor, meta, now))
    return made


# -- dividends --------------------------------------------------------------------------------------


def _lineage(action: CorporateAction) -> list[int]:
    """The instrument and those renamed into it before the ex-date (their fills count as holdings)."""
    ids = [action.instrument_id]
    frontier = [action.instrument_id]
    while frontier:
        olds = list(CorporateAction.objects.filter(
            firm_id=action.firm_id, kind=KINDS.SYMBOL_CHANGE, new_instrument_id__in=frontier,
            ex_date__lt=action.ex_date).values_list("instrument_id", flat=True))
        frontier = [i for i in olds if i not in ids]
        ids += frontier
    return ids


def held_before(portfolio_id: int, instrument_ids: list[int], ex_date: date, *, firm_id: int) -> Decimal:
    """Signed quantity held at the close of the day before ``ex_date``, in shares as of ``ex_date``:
    fills before it, each scaled by the splits applied to the portfolio since the fill's trade date."""
    fills = list(Fill.objects.filter(portfolio_id=portfolio_id, instrument_id__in=instrument_ids,
                                     trade_date__lt=ex_date).values_list("trade_date", "side", "quantity"))
    splits = list(CorporateActionApplication.objects.filter(
        firm_id=firm_id, portfolio_id=portfolio_id, action__kind=KINDS.SPLIT,
        action__instrument_id__in=instrument_ids, action__ex_date__lt=ex_date,
    ).values_list("action__ex_date", "action__ratio_from", "action__ratio_to"))
    total = ZERO
    for day, side, quantity in fills:
        for split_day, ratio_from, ratio_to in splits:
            if day < split_day:
                quantity = cc.scale_quantity(quantity, ratio_from, ratio_to)
        total += quantity if side == "buy" else -quantity
    return total


def _apply_dividend(action, only, done, actor, meta, now) -> list[CorporateActionApplication]:
    instrument_ids = _lineage(action)
    candidates = (Fill.objects.filter(firm_id=action.firm_id, instrument_id__in=instrument_ids,
                                      trade_date__lt=action.ex_date)
                  .exclude(portfolio_id__in=done).values_list("portfolio_id", flat=True).distinct())
    qs = Portfolio.objects.filter(firm_id=action.firm_id, pk__in=candidates).order_by("pk")
    if only is not None:
        qs = qs.filter(pk__in=only)
    made = []
    for portfolio in qs:
        quantity = held_before(portfolio.pk, instrument_ids, action.ex_date, firm_id=action.firm_id)
        if not quantity:
            continue
        amount = cents(quantity * action.cash_per_share)
        summary = {"kind": action.kind, "quantity": str(quantity), "cash_per_share": str(action.cash_per_share),
                   "amount": str(amount), "pay_date": action.pay_date.isoformat()}
        if amount:
            entry_id = booking.post_entry(
                firm_id=action.firm_id, portfolio_id=portfolio.pk, kind=EntryKind.DIVIDEND,
                trade_date=action.pay_date, settle_date=action.pay_date, now=now,
                memo=f"{action.instrument.symbol} dividend {action.cash_per_share}/share on {quantity}",
                instrument_id=action.instrument_id, corporate_action_id=action.pk,
                idempotency_key=f"ca:{action.pk}", created_by_id=actor.user_id,
                lines=[(Account.CASH, amount, "dividend" if amount > 0 else "payment in lieu (short)"),
                       (Account.DIVIDENDS, -amount, "")])
            summary["entry"] = entry_id
        made.append(_record(action, portfolio, summary, actor, meta, now))
    return made


# -- due processing and import -----------------------------------------------------------------------


def apply_due(*, today: date | None = None, firms: list[int] | None = None) -> dict:
    """Beat task body: for every firm (or ``firms``), apply its actions whose date has come and that
    were not applied yet, oldest ex-date first (a split before a later dividend). Each action is its
    own transaction; a refusal is reported and retried on the next run."""
    from apps.accounts.models import Firm

    today = today or _today()
    actor = Actor.system("corporate_actions_due")
    report = {"applied": 0, "applications": 0, "errors": []}
    ids = Firm.objects.order_by("pk").values_list("pk", flat=True)
    if firms is not None:
        ids = ids.filter(pk__in=firms)
    for firm_id in ids:
        with firm_scope(firm_id):
            due = list(CorporateAction.objects.filter(firm_id=firm_id, applied_at__isnull=True)
                       .filter(_due_filter(today)).order_by("ex_date", "pk"))
            for action in due:
                try:
                    made = corporate_action_apply(action=action, actor=actor)
                except DomainError as exc:
                    report["errors"].append({"firm": firm_id, "action": action.pk, "code": exc.code,
                                             "message": exc.message})
                    continue
                report["applied"] += 1
                report["applications"] += len(made)
    return report


def _due_filter(today: date):
    from django.db.models import Q

    return (Q(kind=KINDS.CASH_DIVIDEND, pay_date__lte=today)
            | (~Q(kind=KINDS.CASH_DIVIDEND) & Q(ex_date__lte=today)))


def _parse_date(raw: str, name: str, problems: dict) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        problems[name] = ["Use YYYY-MM-DD."]
        return None


def _parse_decimal(raw: str, name: str, problems: dict) -> Decimal | None:
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        problems[name] = ["Must be a number."]
        return None
    if not value.is_finite():
        problems[name] = ["Must be a number."]
        return None
    return value


def corporate_actions_import(*, firm_id: int, text: str, actor: Actor, meta: RequestMeta | None = None) -> dict:
    """Import a CSV (header row; columns ``IMPORT_COLUMNS``, ``kind`` ``symbol`` ``ex_date`` required,
    the rest per kind as in ``corporate_action_create``). All or nothing: any bad row raises
    DomainError IMPORT_INVALID whose ``fields`` name each bad row (``row <n>``, n counting the header
    as 1) and nothing is written. A row whose reference the firm already has is ``exists`` (a
    re-import is a no-op). Returns {"created", "existing", "rows": [{"row", "status", "reference", "id"}]}."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise DomainError("IMPORT_INVALID", f"Not a readable CSV: {exc}.", fields={"file": [str(exc)]}) from None
    missing = [c for c in ("kind", "symbol", "ex_date") if c not in header]
    unknown = [c for c in header if c not in IMPORT_COLUMNS]
    if missing or unknown:
        fields = {**{c: ["Missing column."] for c in missing}, **{c: ["Unknown column."] for c in unknown}}
        raise DomainError("IMPORT_INVALID", "The header must name the documented columns: "
                          + ", ".join(IMPORT_COLUMNS) + ".", fields=fields)
    rows, errors, seen = [], {}, set()
    report = {"created": 0, "existing": 0, "rows": rows}
    with firm_scope(firm_id):
        try:
            with transaction.atomic():
                for n, raw in enumerate(reader, start=2):
                    if n - 1 > IMPORT_MAX_ROWS:
                        raise DomainError("IMPORT_INVALID", f"At most {IMPORT_MAX_ROWS} rows per file.",
                                          fields={"file": ["Too many rows."]})
                    row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k}
                    if not any(row.values()):
                        continue
                    outcome = _import_row(firm_id, row, actor, meta, seen)
                    outcome["row"] = n
                    if outcome["status"] == "error":
                        errors[f"row {n}"] = [f"{k}: {' '.join(v)}" for k, v in sorted(outcome.pop("errors").items())]
                    else:
                        report["created" if outcome["status"] == "created" else "existing"] += 1
                    rows.append(outcome)
                if errors:
                    raise _Rollback
        except csv.Error as exc:
            raise DomainError("IMPORT_INVALID", f"Not a readable CSV: {exc}.", fields={"file": [str(exc)]}) from None
        except _Rollback:
            raise DomainError("IMPORT_INVALID", f"{len(errors)} row(s) are invalid; nothing was imported.",
                              fields=errors) from None
    return report


class _Rollback(Exception):
    pass


def _import_row(firm_id: int, row: dict, actor, meta, seen: set) -> dict:
    problems: dict[str, list[str]] = {}
    symbol = row.get("symbol", "").upper()
    instruments = list(Instrument.objects.filter(symbol=symbol).exclude(asset_class="option")[:2]) if symbol else []
    if len(instruments) != 1:
        problems["symbol"] = ["Unknown symbol." if not instruments else "Ambiguous symbol (several asset classes)."]
    values = {
        "ex_date": _parse_date(row.get("ex_date", ""), "ex_date", problems),
        "record_date": _parse_date(row.get("record_date", ""), "record_date", problems),
        "pay_date": _parse_date(row.get("pay_date", ""), "pay_date", problems),
        "ratio_from": _parse_decimal(row.get("ratio_from", ""), "ratio_from", problems),
        "ratio_to": _parse_decimal(row.get("ratio_to", ""), "ratio_to", problems),
        "cash_per_share": _parse_decimal(row.get("cash_per_share", ""), "cash_per_share", problems),
        "cash_in_lieu_price": _parse_decimal(row.get("cash_in_lieu_price", ""), "cash_in_lieu_price", problems),
    }
    if values["ex_date"] is None and "ex_date" not in problems:
        problems["ex_date"] = ["Required (YYYY-MM-DD)."]
    reference = row.get("reference", "")
    if not reference and instruments and values["ex_date"]:
        reference = f"{row.get('kind', '')}:{symbol}:{values['ex_date'].isoformat()}"
    if problems:
        return {"status": "error", "reference": reference, "errors": problems}
    if reference in seen:
        return {"status": "error", "reference": reference, "errors": {"reference": ["Repeated in the file."]}}
    seen.add(reference)
    existing = CorporateAction.objects.filter(firm_id=firm_id, reference=reference).values_list("pk", flat=True).first()
    if existing is not None:
        return {"status": "exists", "reference": reference, "id": existing}
    try:
        with transaction.atomic():
            action = corporate_action_create(firm_id=firm_id, kind=row.get("kind", ""), instrument=instruments[0],
                                             new_symbol=row.get("new_symbol", ""), reference=reference, actor=actor,
                                             meta=meta, **values)
    except DomainError as exc:
        return {"status": "error", "reference": reference, "errors": exc.fields or {"row": [exc.message]}}
    return {"status": "created", "reference": reference, "id": action.pk}


def applications_of(action: CorporateAction):
    return (CorporateActionApplication.objects.filter(firm_id=action.firm_id, action=action)
            .annotate(portfolio_name=F("portfolio__name")).order_by("portfolio_id"))
