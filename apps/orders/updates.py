"""The one handler of broker events, and the one function that moves an order's status.

``apply_transition`` checks a move against ``core.TRANSITIONS`` and appends the ``OrderEvent`` for it;
nothing else changes ``Order.status``. ``broker_update_apply`` takes one ``TradeUpdate`` from any broker
(the paper engine, Alpaca's ``trade_updates`` stream, a reconciliation lookup) and, in one transaction
with the order row locked:

1. books the execution, if it carries one, through ``apps.portfolios.booking.book_fill`` (lots,
   journal, gains, position, audit) — once per (firm, broker, exec_id): a repeated report is a no-op,
   whichever order the reports arrive in, and an overfill is refused and audited;
2. moves the status when the table allows it; a stale or illegal status (``new`` after ``filled``,
   ``canceled`` after ``filled``) is logged and not applied, while a late fill on a canceled order
   is still booked (the shares are real);
3. appends the event and, after commit, publishes the order to the firm's stream.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.models import MANAGE_ROLES
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.events import publish_firm_event
from apps.core.tenancy import firm_scope
from apps.orders.brokers.base import BrokerOrderState, TradeUpdate
from apps.orders.core import LATE_FILL_OK, TERMINAL, Status, can_move, check_move
from apps.orders.models import Order, OrderEvent
from apps.portfolios.booking import book_fill, lock_pair
from apps.portfolios.models import FillSource

log = logging.getLogger(__name__)
ZERO = Decimal(0)

# the order timestamp each status stamps
_STAMPS = {
    Status.SUBMITTING: "submitted_at", Status.ACCEPTED: "accepted_at", Status.NEW: "accepted_at",
    Status.FILLED: "filled_at", Status.CANCELED: "canceled_at", Status.EXPIRED: "expired_at",
    Status.REJECTED: "failed_at", Status.RISK_REJECTED: "failed_at", Status.SUBMIT_FAILED_UNCONFIRMED: "failed_at",
    Status.REPLACED: "replaced_at",
}
# events worth a line in the firm's audit chain (fills are audited by the booking service)
AUDITED_EVENTS = frozenset({"rejected", "canceled", "expired", "replaced", "submit_unknown",
                            "submit_failed_unconfirmed", "overfill_refused", "order_cancel_rejected",
                            "order_replace_rejected"})


def terms_of(order: Order) -> dict:
    """The order's material terms (reliability target 9), as strings so they hash and export exactly."""
    def s(value):
        return None if value is None else str(value)

    return {
        "symbol": order.symbol, "asset_class": order.asset_class, "side": order.side, "qty": s(order.qty),
        "notional": s(order.notional), "type": order.type, "time_in_force": order.time_in_force,
        "limit_price": s(order.limit_price), "stop_price": s(order.stop_price), "trail_price": s(order.trail_price),
        "trail_percent": s(order.trail_percent), "extended_hours": order.extended_hours,
        "order_class": order.order_class, "leg": order.leg, "portfolio": order.portfolio_id,
    }


def order_payload(order: Order) -> dict:
    """What the live stream says about an order (the REST representation's essentials)."""
    avg = order.filled_avg_price
    return {
        "id": str(order.id), "client_order_id": order.client_order_id, "portfolio": order.portfolio_id,
        "symbol": order.symbol, "side": order.side, "type": order.type, "qty": None if order.qty is None else str(order.qty),
        "notional": None if order.notional is None else str(order.notional), "status": order.status,
        "filled_qty": str(order.filled_qty), "filled_avg_price": None if avg is None else str(avg),
        "limit_price": None if order.limit_price is None else str(order.limit_price),
        "stop_price": None if order.stop_price is None else str(order.stop_price),
        "reject_code": order.reject_code, "updated_at": order.updated_at.isoformat(),
        "parent": None if order.parent_id is None else str(order.parent_id),
    }


def publish_order(order: Order, event: str, *, execution: dict | None = None) -> None:
    payload = {"event": event, "order": order_payload(order)}
    if execution:
        payload["execution"] = execution
    # restricted portfolios' orders go to owners and admins only (as their fills do)
    publish_firm_event(firm_id=order.firm_id, kind="order", payload=payload,
                       roles=MANAGE_ROLES if order.portfolio.restricted else None)


def record_event(order: Order, *, event: str, before: str, at: datetime, now: datetime,
                 detail: dict | None = None, meta: RequestMeta | None = None, execution=None,
                 broker: str | None = None) -> OrderEvent:
    meta = meta or RequestMeta()
    return OrderEvent.objects.create(
        firm_id=order.firm_id, order=order, portfolio_id=order.portfolio_id, client_order_id=order.client_order_id,
        broker=broker or order.broker, event=event, status_before=before, status_after=order.status,
        received_at=now, event_at=at, entered_by_id=order.entered_by_id, responsible_user_id=order.responsible_user_id,
        source=order.source, terms=terms_of(order), detail=detail or {}, ip=meta.ip, user_agent=meta.user_agent,
        exec_id=execution.exec_id if execution else "",
        fill_qty=execution.qty if execution else None, fill_price=execution.price if execution else None,
        fee=execution.fee if execution else None, cum_qty=order.filled_qty if execution else None,
    )


def apply_transition(order: Order, target: Status | str, *, event: str, now: datetime | None = None,
                     at: datetime | None = None, detail: dict | None = None, meta: RequestMeta | None = None,
                     fields: dict | None = None, execution=None, broker: str | None = None) -> OrderEvent:
    """Move a locked order to ``target`` (raises ``IllegalTransition`` for a move not in the table) and
    append its event. ``fields`` are further columns to set with it (reject code, broker id, ...)."""
    if not connection.in_atomic_block:
        raise RuntimeError("apply_transition must run inside the transaction that locked the order")
    target = Status(target)
    before = order.status
    check_move(before, target)
    now = now or timezone.now()
    order.status = target
    changed = {"status", "updated_at"}
    stamp = _STAMPS.get(target)
    if stamp and getattr(order, stamp) is None and before != target:
        setattr(order, stamp, now)
        changed.add(stamp)
    for name, value in (fields or {}).items():
        setattr(order, name, value)
        changed.add(name)
    order.updated_at = now
    order.save(update_fields=sorted(changed))
    return record_event(order, event=event, before=before, at=at or now, now=now, detail=detail, meta=meta,
                        execution=execution, broker=broker)


def _locate(firm_id: int, broker: str, state: BrokerOrderState) -> Order | None:
    qs = Order.objects.for_firm(firm_id).select_for_update(of=("self",)).select_related("portfolio", "instrument")
    if state.client_order_id:
        order = qs.filter(broker_client_order_id=state.client_order_id).first()
        if order is not None:
            return order
    if state.broker_order_id:
        return qs.filter(broker=broker, broker_order_id=state.broker_order_id).first()
    return None


def _book(order: Order, broker: str, execution, now: datetime):
    """Book one execution into the order's portfolio (a savepoint inside the caller's transaction).
    Out-of-order reports are booked at the later of their own time and the last booked fill of the
    pair: the ledger replays in booking order; the event keeps the broker's time."""
    from apps.portfolios.models import Fill

    portfolio = order.portfolio
    lock_pair(portfolio.tax_entity_id, order.instrument_id)
    last = (Fill.objects.filter(tax_entity_id=portfolio.tax_entity_id, instrument_id=order.instrument_id)
            .order_by("-executed_at").values_list("executed_at", flat=True).first())
    executed_at = execution.at if last is None or execution.at >= last else last
    return book_fill(
        portfolio=portfolio, instrument=order.instrument, side=order.side, quantity=execution.qty,
        price=execution.price, executed_at=min(executed_at, now), fill_id=f"{broker}:{execution.exec_id}",
        fees=execution.fee, source=FillSource.ORDER, order_ref=str(order.id),
        actor=Actor.system(f"broker:{broker}"), now=now)


def broker_update_apply(*, firm_id: int, broker: str, update: TradeUpdate, now: datetime | None = None
                        ) -> Order | None:
    """Apply one broker event (see the module docstring). Returns the order, or None when no order of
    the firm matches it (logged: the reconciler reports such a break)."""
    now = now or timezone.now()
    with firm_scope(firm_id), transaction.atomic():
        order = _locate(firm_id, broker, update.order)
        if order is None:
            log.warning("broker %s reported %s for an unknown order %s / %s (firm %s)", broker, update.event,
                        update.order.client_order_id, update.order.broker_order_id, firm_id)
            return None
        before = order.status
        fields: dict = {}
        if update.order.broker_order_id and not order.broker_order_id:
            fields["broker_order_id"] = update.order.broker_order_id
        execution = update.execution
        exec_payload = None
        if execution is not None:
            if OrderEvent.objects.filter(firm_id=firm_id, broker=broker, exec_id=execution.exec_id).exists():
                return order  # already applied: a repeated report changes nothing (target 18)
            if order.qty is not None and order.filled_qty + execution.qty > order.qty:
                log.error("overfill refused: order %s filled %s of %s, execution %s adds %s", order.pk,
                          order.filled_qty, order.qty, execution.exec_id, execution.qty)
                record_event(order, event="overfill_refused", before=before, at=update.at, now=now,
                             detail={"exec_id": execution.exec_id, "qty": str(execution.qty)}, broker=broker)
                audit_record(firm_id=firm_id, action="order.overfill_refused", actor=Actor.system(f"broker:{broker}"),
                             target_type="orders.order", target_id=order.pk, target_label=str(order),
                             after={"exec_id": execution.exec_id, "qty": str(execution.qty)})
                return order
            _book(order, broker, execution, now)
            order.filled_qty += execution.qty
            order.filled_value += execution.qty * execution.price
            order.fees += execution.fee
            fields.update(filled_qty=order.filled_qty, filled_value=order.filled_value, fees=order.fees)
            exec_payload = {"exec_id": execution.exec_id, "qty": str(execution.qty), "price": str(execution.price),
                            "fee": str(execution.fee), "at": execution.at.isoformat()}
        target = _target_status(update)
        moved = target is not None and target != before and can_move(before, target)
        if target is not None and target != before and not moved:
            if not (execution is not None and Status(before) in LATE_FILL_OK | TERMINAL):
                log.warning("order %s: %s -> %s (%s) refused by the state machine; not applied",
                            order.pk, before, target, update.event)
        detail = {"broker_status": update.order.status}
        if update.event in ("rejected",) and update.order.raw.get("reject_reason"):
            detail["reason"] = update.order.raw["reject_reason"]
        if moved:
            if target == Status.REJECTED:
                fields.setdefault("reject_code", "BROKER_REJECTED")
                fields.setdefault("reject_reason", str(detail.get("reason", ""))[:500])
            apply_transition(order, target, event=update.event, now=now, at=update.at, detail=detail,
                             fields=fields, execution=execution, broker=broker)
        else:
            for name, value in fields.items():
                setattr(order, name, value)
            order.updated_at = now
            order.save(update_fields=sorted({*fields, "updated_at"}))
            record_event(order, event=update.event, before=before, at=update.at, now=now, detail=detail,
                         execution=execution, broker=broker)
        if update.event in AUDITED_EVENTS and moved:
            audit_record(firm_id=firm_id, action=f"order.{update.event}", actor=Actor.system(f"broker:{broker}"),
                         target_type="orders.order", target_id=order.pk, target_label=str(order),
                         before={"status": before}, after={"status": order.status, **detail})
        publish_order(order, update.event, execution=exec_payload)
        return order


def _target_status(update: TradeUpdate) -> Status | None:
    try:
        return Status(update.order.status)
    except ValueError:
        log.warning("unknown broker status %r on %s", update.order.status, update.event)
        return None


def record_replacement(*, order: Order, state: BrokerOrderState, changes: dict, now: datetime) -> Order:
    """The broker replaced ``order``: the old order becomes ``replaced`` and a new order (``replaces`` -> old)
    carries the new terms under the broker's new id. The new order's id is the one the router fixed
    in the replacement's client_order_id (``oct-<uuid>``), so a repeated answer finds it, not a copy."""
    import uuid

    new_id = uuid.UUID(state.client_order_id.removeprefix("oct-"))
    with firm_scope(order.firm_id), transaction.atomic():
        old = Order.objects.select_for_update(of=("self",)).select_related("portfolio", "instrument").get(pk=order.pk)
        existing = Order.objects.filter(pk=new_id).first()
        if existing is not None:
            return existing
        remaining = (old.qty - old.filled_qty) if old.qty is not None else None
        new = Order(
            id=new_id, firm_id=old.firm_id, portfolio=old.portfolio, instrument=old.instrument, symbol=old.symbol,
            asset_class=old.asset_class, side=old.side, type=old.type, order_class=old.order_class,
            time_in_force=changes.get("time_in_force", old.time_in_force), qty=changes.get("qty", remaining),
            notional=old.notional, limit_price=changes.get("limit_price", old.limit_price),
            stop_price=changes.get("stop_price", old.stop_price),
            trail_price=changes.get("trail", old.trail_price) if old.trail_price is not None else None,
            trail_percent=changes.get("trail", old.trail_percent) if old.trail_percent is not None else None,
            extended_hours=old.extended_hours, replaces=old, client_order_id=f"{old.client_order_id[:90]}~{new_id.hex[:12]}",
            request_hash=old.request_hash, broker=old.broker, broker_client_order_id=state.client_order_id,
            broker_order_id=state.broker_order_id, status=Status.RECEIVED, reserve_price=old.reserve_price,
            origin=old.origin, source=old.source, entered_by_id=old.entered_by_id, token_id=old.token_id,
            responsible_user_id=old.responsible_user_id, created_at=now, updated_at=now, submitted_at=now,
            paper_state=state.raw.get("paper_state", {}),
        )
        new.save(force_insert=True)
        record_event(new, event="received", before="", at=now, now=now, detail={"replaces": str(old.pk)})
        try:
            target = Status(state.status)
        except ValueError:
            target = Status.NEW
        if can_move(Status.RECEIVED, target):
            apply_transition(new, target, event="new", now=now, detail={"replaces": str(old.pk)})
        if can_move(old.status, Status.REPLACED):
            apply_transition(old, Status.REPLACED, event="replaced", now=now, detail={"replaced_by": str(new.pk)})
        publish_order(old, "replaced")
        publish_order(new, "new")
        return new
