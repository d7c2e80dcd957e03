"""Handing orders to brokers, and finding out what happened when we could not tell.

The order row is the outbox (see models): ``order_submit`` commits it ``received``; after the commit a
Celery task routes it (``order_route``), and the relay (beat, ``relay_pending``) routes any order still
``received`` a few seconds later — a worker killed between the commit and the broker call loses nothing,
and the claim below makes sure it is sent once.

``order_route`` claims the order (``received`` -> ``submitting``, committed) before it calls the broker,
so two routers cannot both send it. The broker call runs outside any transaction. Its outcome:

* an order state -> applied (``apply_broker_state``);
* a definitive refusal (403, 422) -> ``rejected`` with the broker's words;
* a timeout, 5xx or 429 -> ``submit_unknown``: nobody resubmits blindly; ``reconcile_order`` asks the broker
  by client_order_id and adopts what it has, or, if it has nothing, resends with the SAME client_order_id
  (the broker refuses a duplicate, and that refusal is adopted), up to ``MAX_SUBMIT_ATTEMPTS``; then
  ``submit_failed_unconfirmed`` with an audited alert, never a venue rejection (reliability target 16).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record
from apps.core.tenancy import firm_scope, unscoped
from apps.orders.brokers.base import (
    Broker,
    BrokerDuplicate,
    BrokerError,
    BrokerNotFound,
    BrokerOrder,
    BrokerOrderState,
    BrokerRejected,
)
from apps.orders.core import Status, can_move
from apps.orders.models import BrokerName, LegRole, Order
from apps.orders.updates import apply_transition, publish_order, record_replacement

log = logging.getLogger(__name__)
MAX_SUBMIT_ATTEMPTS = 3
RELAY_AFTER = timedelta(seconds=3)  # a received order older than this was not routed after its commit
SUBMITTING_STALE_AFTER = timedelta(seconds=30)  # a claim this old: the router died mid-call


def broker_for(order: Order) -> Broker:
    """The broker an order goes to: the paper broker for paper portfolios, Alpaca for live ones."""
    if order.broker == BrokerName.PAPER:
        from apps.orders.brokers.paper import PaperBroker

        return PaperBroker(order.firm_id, portfolio_id=order.portfolio_id)
    from apps.orders.brokers.accounts import alpaca_broker_for

    return alpaca_broker_for(order.portfolio)


def _enqueue(task, *args) -> None:
    try:
        task.delay(*args)
    except Exception as exc:  # noqa: BLE001 - Redis down: the relay sends it later; the order is safe
        log.warning("could not queue %s%r (%s); the relay will pick it up", task.name, args, exc)


def route_after_commit(order: Order) -> None:
    from apps.orders.tasks import route_order

    firm_id, pk = order.firm_id, str(order.pk)
    transaction.on_commit(lambda: _enqueue(route_order, firm_id, pk), robust=True)


def cancel_after_commit(order: Order) -> None:
    from apps.orders.tasks import cancel_order

    firm_id, pk = order.firm_id, str(order.pk)
    transaction.on_commit(lambda: _enqueue(cancel_order, firm_id, pk), robust=True)


def replace_after_commit(order: Order, changes: dict) -> None:
    from apps.orders.tasks import replace_order

    firm_id, pk = order.firm_id, str(order.pk)
    payload = {k: str(v) for k, v in changes.items()}
    transaction.on_commit(lambda: _enqueue(replace_order, firm_id, pk, payload), robust=True)


def broker_order(order: Order) -> BrokerOrder:
    from apps.orders.services import spec_of

    spec = spec_of(order)
    return BrokerOrder(client_order_id=order.broker_client_order_id, spec=spec, asset_class=order.asset_class)


def _claim(firm_id: int, pk, now: datetime, allowed: tuple[Status, ...]) -> Order | None:
    with firm_scope(firm_id), transaction.atomic():
        order = (Order.objects.select_for_update(skip_locked=True, of=("self",)).select_related("portfolio", "instrument")
                 .filter(pk=pk, parent__isnull=True).first())
        if order is None or Status(order.status) not in allowed:
            return None  # routed already, canceled, or another router holds it
        order.submit_attempts += 1
        apply_transition(order, Status.SUBMITTING, event="submitted", now=now,
                         fields={"submit_attempts": order.submit_attempts},
                         detail={"attempt": order.submit_attempts})
        publish_order(order, "submitted")
        return order


def order_route(*, firm_id: int, order_id, now: datetime | None = None) -> Order | None:
    """Send one ``received`` order to its broker, exactly once (see the module docstring)."""
    now = now or timezone.now()
    order = _claim(firm_id, order_id, now, (Status.RECEIVED,))
    if order is None:
        return None
    return _send(order, now)


def _send(order: Order, now: datetime) -> Order:
    try:
        broker = broker_for(order)
        state = broker.submit(broker_order(order))
    except BrokerDuplicate:
        return reconcile_order(firm_id=order.firm_id, order_id=order.pk, now=now)
    except BrokerRejected as exc:
        return _finish(order, Status.REJECTED, "rejected", now, code=exc.code or "BROKER_REJECTED",
                       reason=exc.message)
    except BrokerError as exc:  # unavailable, rate limited, not configured: the outcome is unknown
        return _finish(order, Status.SUBMIT_UNKNOWN, "submit_unknown", now, code=type(exc).__name__,
                       reason=exc.message)
    if order.broker == BrokerName.PAPER:  # the paper venue applied its every event in the submit's transaction
        with firm_scope(order.firm_id):
            order.refresh_from_db()
        return order
    return apply_broker_state(firm_id=order.firm_id, order_id=order.pk, state=state, broker=order.broker, now=now)


def _finish(order: Order, target: Status, event: str, now: datetime, *, code: str, reason: str) -> Order:
    with firm_scope(order.firm_id), transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).select_related("portfolio").get(pk=order.pk)
        if not can_move(locked.status, target):
            return locked  # a broker event overtook us
        fields = {"reject_code": code[:40], "reject_reason": reason[:500]} if target == Status.REJECTED else {}
        apply_transition(locked, target, event=event, now=now, fields=fields,
                         detail={"code": code, "message": reason[:500]})
        if target == Status.REJECTED:
            for leg in locked.legs.select_for_update().exclude(status__in=[Status.CANCELED, Status.REJECTED]):
                if can_move(leg.status, Status.CANCELED):
                    apply_transition(leg, Status.CANCELED, event="canceled", now=now, detail={"parent": "rejected"})
        audit_record(firm_id=locked.firm_id, action=f"order.{event}", actor=Actor.system(f"broker:{locked.broker}"),
                     target_type="orders.order", target_id=locked.pk, target_label=str(locked),
                     after={"status": locked.status, "code": code, "message": reason[:500]}, publish=False)
        publish_order(locked, event)
        return locked


def apply_broker_state(*, firm_id: int, order_id, state: BrokerOrderState, broker: str,
                       now: datetime | None = None) -> Order:
    """Bring an order (and its legs) to the broker's reported status when the table allows it; the broker
    ids are recorded. Fills are not inferred from a state: they come as executions."""
    now = now or timezone.now()
    with firm_scope(firm_id), transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("portfolio").get(pk=order_id)
        _adopt(order, state, now)
        legs = {leg.leg: leg for leg in order.legs.select_for_update()}
        for leg_state in state.legs:
            role = LegRole.TAKE_PROFIT if leg_state.raw.get("type", leg_state.raw.get("order_type")) == "limit" \
                else LegRole.STOP_LOSS
            leg = legs.get(role)
            if leg is not None:
                _adopt(leg, leg_state, now)
        return order


def _adopt(order: Order, state: BrokerOrderState, now: datetime) -> None:
    fields = {}
    if state.broker_order_id and order.broker_order_id != state.broker_order_id:
        fields["broker_order_id"] = state.broker_order_id
    try:
        target = Status(state.status)
    except ValueError:
        target = None
    if target is not None and target != order.status and can_move(order.status, target):
        apply_transition(order, target, event=f"broker_{target.value}", now=now, fields=fields,
                         detail={"broker_status": state.status})
        publish_order(order, target.value)
    elif fields:
        for name, value in fields.items():
            setattr(order, name, value)
        order.save(update_fields=list(fields))


def reconcile_order(*, firm_id: int, order_id, now: datetime | None = None) -> Order:
    """Find out what the broker has for an order whose submit outcome is unknown, by client_order_id."""
    now = now or timezone.now()
    with firm_scope(firm_id):
        order = Order.objects.select_related("portfolio", "instrument").get(pk=order_id)
    if Status(order.status) not in (Status.SUBMIT_UNKNOWN, Status.SUBMITTING):
        return order
    broker = broker_for(order)
    try:
        state = broker.get_by_client_order_id(order.broker_client_order_id)
    except BrokerNotFound:
        if order.submit_attempts >= MAX_SUBMIT_ATTEMPTS:
            return _finish(order, Status.SUBMIT_FAILED_UNCONFIRMED, "submit_failed_unconfirmed", now,
                           code="BROKER_NEVER_SAW_IT",
                           reason=f"The broker has no order {order.broker_client_order_id} after "
                                  f"{order.submit_attempts} attempts.")
        claimed = _claim(firm_id, order.pk, now, (Status.SUBMIT_UNKNOWN, Status.SUBMITTING))
        return _send(claimed, now) if claimed is not None else order
    except BrokerError as exc:
        log.warning("reconcile of order %s: broker unavailable (%s); will ask again", order.pk, exc.message)
        return order
    return apply_broker_state(firm_id=firm_id, order_id=order.pk, state=state, broker=order.broker, now=now)


def relay_pending(*, now: datetime | None = None) -> dict:
    """Beat: route orders left ``received`` after their commit, and reconcile unknown outcomes (stale
    claims included). Platform-level: it visits every firm's stuck orders, each in its firm's scope."""
    now = now or timezone.now()
    with unscoped():  # reviewed: the relay is the platform's outbox reader
        stuck = list(Order.objects.filter(parent__isnull=True).filter(
            status=Status.RECEIVED, created_at__lte=now - RELAY_AFTER).values_list("firm_id", "pk"))
        unknown = list(Order.objects.filter(parent__isnull=True).filter(
            status__in=[Status.SUBMIT_UNKNOWN]).values_list("firm_id", "pk"))
        unknown += list(Order.objects.filter(
            status=Status.SUBMITTING, updated_at__lte=now - SUBMITTING_STALE_AFTER).values_list("firm_id", "pk"))
    routed = reconciled = 0
    for firm_id, pk in stuck:
        routed += order_route(firm_id=firm_id, order_id=pk, now=now) is not None
    for firm_id, pk in unknown:
        reconcile_order(firm_id=firm_id, order_id=pk, now=now)
        reconciled += 1
    return {"routed": routed, "reconciled": reconciled}


def cancel_at_broker(*, firm_id: int, order_id, now: datetime | None = None) -> Order:
    """Send a ``pending_cancel`` order's cancel to its broker; the broker's event finishes it. A refusal
    (it filled first) puts the order back by the broker's state."""
    now = now or timezone.now()
    with firm_scope(firm_id):
        order = Order.objects.select_related("portfolio", "instrument").get(pk=order_id)
    if order.status != Status.PENDING_CANCEL:
        return order
    broker = broker_for(order)
    try:
        broker.cancel(order.broker_order_id)
    except BrokerNotFound:
        return reconcile_state(order, broker, now)
    except BrokerError as exc:
        log.warning("cancel of order %s not confirmed (%s); reconciliation will settle it", order.pk, exc.message)
    return order


def reconcile_state(order: Order, broker: Broker, now: datetime) -> Order:
    try:
        state = broker.get_by_client_order_id(order.broker_client_order_id)
    except BrokerError:
        return order
    return apply_broker_state(firm_id=order.firm_id, order_id=order.pk, state=state, broker=order.broker, now=now)


def replace_at_broker(*, firm_id: int, order_id, changes: dict, now: datetime | None = None) -> Order:
    """Send a replace; the broker answers with the new order, which we record as a new Order carrying on."""
    from decimal import Decimal

    now = now or timezone.now()
    with firm_scope(firm_id):
        order = Order.objects.select_related("portfolio", "instrument").get(pk=order_id)
    if order.status != Status.PENDING_REPLACE:
        return order
    broker = broker_for(order)
    kwargs = {k: (v if k in ("time_in_force", "client_order_id") else Decimal(v)) for k, v in changes.items()}
    terms = {k: v for k, v in kwargs.items() if k != "client_order_id"}
    try:
        if order.broker == BrokerName.PAPER:
            # the paper venue and our books are one database: the replace and its record commit together
            with firm_scope(firm_id), transaction.atomic():
                state = broker.replace(order.broker_order_id, **kwargs)
                return record_replacement(order=order, state=state, now=now, changes=terms)
        state = broker.replace(order.broker_order_id, **kwargs)
    except BrokerError as exc:
        log.warning("replace of order %s refused (%s)", order.pk, exc.message)
        return reconcile_state(order, broker, now)
    return record_replacement(order=order, state=state, now=now, changes=terms)
