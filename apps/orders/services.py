"""Order writes. ``order_submit`` is the one order path (ARCHITECTURE.md): every order — the ticket, the
API, a bot, a bracket leg, a rebalance — is created here and nowhere else.

    validate -> idempotency -> pre-trade checks -> persist order + first event + audit (one transaction)
    -> after commit, route to the broker (``apps.orders.routing``)

Cancels, replaces and the kill switch are here too; broker events come back through
``apps.orders.updates.broker_update_apply``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.marketdata.quotes import quote_get
from apps.orders import selectors
from apps.orders.checks import CheckResult, MarketView, run_checks
from apps.orders.core import OPEN, Leg, OrderClass, OrderSpec, Quote, Status
from apps.orders.models import BrokerName, LegRole, Order, Origin, TradingControl
from apps.orders.updates import apply_transition, publish_order, record_event, terms_of
from apps.orders.validation import check_stop_side, validate_spec
from apps.portfolios.models import Portfolio, PortfolioMode

log = logging.getLogger(__name__)

# stable codes of the order path (the pre-trade checks' own codes live in apps.orders.checks)
VALIDATION_ERROR = "VALIDATION_ERROR"
IDEMPOTENCY_MISMATCH = "IDEMPOTENCY_KEY_MISMATCH"
NOT_CANCELABLE = "ORDER_NOT_CANCELABLE"
NOT_REPLACEABLE = "ORDER_NOT_REPLACEABLE"
# HTTP status of a pre-trade rejection: 423 for the kill switch (target 5b), 403 for the rest (Alpaca's)
REJECTION_STATUS = {"TRADING_HALTED": 423}


@dataclass(frozen=True)
class Submitted:
    order: Order
    created: bool  # False: an idempotent replay of an earlier submission

    @property
    def rejected(self) -> bool:
        return self.order.status == Status.RISK_REJECTED


@dataclass(frozen=True)
class Entry:
    """Who places an order and through which door (reliability target 9: entered_by, source, IP)."""

    actor: Actor
    origin: str  # Origin
    source: str = ""
    meta: RequestMeta | None = None
    responsible_user_id: int | None = None

    @property
    def source_label(self) -> str:
        return self.source or self.origin


def spec_hash(portfolio_id: int, spec: OrderSpec) -> str:
    """The request's terms, canonical: the same client_order_id must come with the same terms."""
    terms = {name: getattr(spec, name) for name in spec.__slots__ if name != "client_order_id"}
    for leg in ("take_profit", "stop_loss"):
        value = terms[leg]
        terms[leg] = None if value is None else {"limit_price": value.limit_price, "stop_price": value.stop_price}
    body = json.dumps({"portfolio": portfolio_id, **terms}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _lock_coid(firm_id: int, client_order_id: str) -> None:
    """Serialize submissions of one (firm, client_order_id): twenty identical concurrent requests make
    one order; the others wait here, then find it and replay it. The two-int form of the advisory lock is
    a key space of its own, apart from the one-bigint keys of booking and the audit chain."""
    digest = int.from_bytes(hashlib.blake2b(client_order_id.encode(), digest_size=4).digest(), signed=True)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [firm_id, digest])


def _market_view(symbol: str) -> MarketView:
    view = quote_get(symbol)
    if view is None:
        return MarketView(quote=None, fresh=False)

    def dec(x: float) -> Decimal | None:
        """The float Redis keeps, as the shortest exact decimal (60010.0 -> 60010, 187.10 -> 187.1)."""
        if not x or x <= 0:
            return None
        value = Decimal(repr(x))
        return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()

    quote = Quote(bid=dec(view.bid), ask=dec(view.ask), last=dec(view.last), at=view.ts,
                  bid_size=Decimal(repr(view.bid_size)), ask_size=Decimal(repr(view.ask_size)))
    return MarketView(quote=quote, fresh=not view.stale)


def _broker_of(portfolio: Portfolio) -> str:
    return BrokerName.ALPACA if portfolio.mode == PortfolioMode.LIVE else BrokerName.PAPER


def _validate(spec: OrderSpec):
    instrument = selectors.instrument_by_symbol(spec.symbol)
    info = selectors.instrument_info(instrument) if instrument is not None else None
    problems = validate_spec(spec, info)
    if info is not None and not info.fractionable:
        # refused before anything is written (the checks would store it as a rejection)
        if spec.qty is not None and spec.qty > 0 and spec.qty % 1:
            problems.setdefault("qty", []).append(f"{info.symbol} does not trade fractional shares.")
        if spec.notional is not None:
            problems.setdefault("notional", []).append(
                f"{info.symbol} does not trade fractional shares, so it takes no notional orders.")
    if problems:
        raise DomainError(VALIDATION_ERROR, "Invalid order: " + ", ".join(sorted(problems)) + ".", fields=problems)
    return instrument, info


def _check_stop_side(spec: OrderSpec, market: MarketView) -> None:
    """A stop on the wrong side of the market (a buy stop below it) is a malformed request: 400."""
    if market.quote is None:
        return
    problems = check_stop_side(spec, market.quote.last or market.quote.ask or market.quote.bid)
    if problems:
        raise DomainError(VALIDATION_ERROR, "Invalid order: " + ", ".join(sorted(problems)) + ".", fields=problems)


def order_preview(*, portfolio: Portfolio, spec: OrderSpec, now: datetime | None = None) -> CheckResult:
    """The ticket's preview: validation and every pre-trade check, nothing written."""
    now = now or timezone.now()
    instrument, info = _validate(spec)
    market = _market_view(instrument.symbol)
    _check_stop_side(spec, market)
    control = selectors.trading_control(portfolio.firm_id)
    with firm_scope(portfolio.firm_id):
        account = selectors.account_state(portfolio=portfolio, instrument=instrument, control=control, now=now)
    return run_checks(spec, info, account, market, selectors.limits_of(control), now=now)


def order_submit(*, portfolio: Portfolio, spec: OrderSpec, entry: Entry, now: datetime | None = None,
                 algo_id=None) -> Submitted:
    """The one order path. Raises ``DomainError`` with nothing written for a malformed request (400 naming
    the field) or a client_order_id reused with other terms (409). A pre-trade rejection IS written: the
    order is stored as ``risk_rejected`` with the check's code and message, and audited, and returned
    (``Submitted.rejected``); it never reaches a broker. An accepted order is committed ``received`` with
    its first event and the audit event, and handed to its broker after commit.

    Locks: the (firm, client_order_id) advisory lock, then the portfolio row, so two orders cannot spend
    the same buying power. ``algo_id``: the TWAP/VWAP parent sending this order as one of its slices."""
    now = now or timezone.now()
    firm_id = portfolio.firm_id
    instrument, info = _validate(spec)
    coid = spec.client_order_id or uuid.uuid4().hex
    digest = spec_hash(portfolio.pk, spec)
    market = _market_view(instrument.symbol)
    _check_stop_side(spec, market)
    try:
        with firm_scope(firm_id), transaction.atomic():
            _lock_coid(firm_id, coid)
            existing = Order.objects.filter(firm_id=firm_id, client_order_id=coid).select_related(
                "portfolio", "instrument").first()
            if existing is not None:
                return Submitted(_replay(existing, digest), created=False)
            locked = Portfolio.objects.select_for_update().get(pk=portfolio.pk)
            control = selectors.trading_control(firm_id)
            account = selectors.account_state(portfolio=locked, instrument=instrument, control=control, now=now)
            result = run_checks(spec, info, account, market, selectors.limits_of(control), now=now)
            order = _create(locked, instrument, spec, coid, digest, entry, now, result, algo_id)
            if order.status == Status.RECEIVED:
                from apps.orders.routing import route_after_commit

                route_after_commit(order)  # registered first: after the commit the broker hears before the stream
            publish_order(order, order.status)
    except IntegrityError:  # the unique (firm, client_order_id) backstop: another writer won
        with firm_scope(firm_id):
            existing = Order.objects.select_related("portfolio", "instrument").get(firm_id=firm_id,
                                                                                  client_order_id=coid)
        return Submitted(_replay(existing, digest), created=False)
    return Submitted(order, created=True)


def _replay(existing: Order, digest: str) -> Order:
    if existing.request_hash != digest:
        raise DomainError(IDEMPOTENCY_MISMATCH,
                          f"client_order_id {existing.client_order_id!r} was used for an order with other terms "
                          f"(order {existing.pk}).", fields={"client_order_id": ["Already used with other terms."]},
                          status_code=409)
    return existing


def _create(portfolio: Portfolio, instrument, spec: OrderSpec, coid: str, digest: str, entry: Entry, now: datetime,
            result: CheckResult, algo_id=None) -> Order:
    actor = entry.actor
    base = dict(
        firm_id=portfolio.firm_id, portfolio=portfolio, instrument=instrument, symbol=instrument.symbol,
        asset_class=instrument.asset_class, time_in_force=spec.time_in_force, extended_hours=spec.extended_hours,
        broker=_broker_of(portfolio), origin=entry.origin, source=entry.source_label[:40],
        entered_by_id=actor.user_id, token_id=actor.token_id,
        responsible_user_id=entry.responsible_user_id or actor.user_id, created_at=now, updated_at=now,
        algo_id=algo_id,
    )
    order_id = uuid.uuid4()
    order = Order(
        id=order_id, side=spec.side, type=spec.type, order_class=spec.order_class, qty=spec.qty,
        notional=spec.notional, limit_price=spec.limit_price, stop_price=spec.stop_price,
        trail_price=spec.trail_price, trail_percent=spec.trail_percent, client_order_id=coid, request_hash=digest,
        broker_client_order_id=f"oct-{order_id}", reserve_price=result.estimated_price,
        reserved=result.buying_power_used or Decimal(0), **base)
    first = result.first
    if first is not None:
        order.status = Status.RISK_REJECTED
        order.reject_code, order.reject_reason = first.code, first.message[:500]
        order.failed_at = now
    order.save(force_insert=True)
    detail = {"checks": [{"code": r.code, "message": r.message, "field": r.field} for r in result.rejections]}
    if result.estimated_notional is not None:
        detail["estimated_notional"] = str(result.estimated_notional)
    record_event(order, event="risk_rejected" if first else "received", before="", at=now, now=now,
                 detail=detail, meta=entry.meta)
    legs = [] if first else _create_legs(order, spec, base)
    audit_record(
        firm_id=portfolio.firm_id, action="order.risk_rejected" if first else "order.submitted", actor=actor,
        target_type="orders.order", target_id=order.pk, target_label=str(order),
        after={"client_order_id": coid, "portfolio": portfolio.pk, "status": order.status,
               "reject_code": order.reject_code, "legs": [str(leg.pk) for leg in legs],
               **terms_of(order)},
        meta=entry.meta, publish=False,
    )
    return order


def _create_legs(parent: Order, spec: OrderSpec, base: dict) -> list[Order]:
    """Bracket/OTO/OCO exits as orders of their own (parent -> legs), each with its own broker id.
    A bracket's exits sell what the entry buys (and the reverse); an OCO's legs are both exits."""
    if spec.order_class == OrderClass.SIMPLE:
        return []
    exit_side = "sell" if spec.side == "buy" else "buy"
    if spec.order_class == OrderClass.OCO:
        exit_side = spec.side  # an OCO is itself the exit: its "entry" is the take-profit limit
    legs = []
    pairs: list[tuple[str, Leg | None, str]] = [
        (LegRole.TAKE_PROFIT, spec.take_profit, "limit"),
        (LegRole.STOP_LOSS, spec.stop_loss, "stop"),
    ]
    for role, leg, kind in pairs:
        if leg is None or (spec.order_class == OrderClass.OCO and role == LegRole.TAKE_PROFIT):
            continue
        kind = "stop_limit" if role == LegRole.STOP_LOSS and leg.limit_price is not None else kind
        leg_id = uuid.uuid4()
        row = Order(
            id=leg_id, parent=parent, leg=role, side=exit_side, type=kind, order_class=spec.order_class,
            qty=spec.qty, limit_price=leg.limit_price, stop_price=leg.stop_price,
            client_order_id=f"{parent.client_order_id}:{role}"[:128], request_hash=parent.request_hash,
            broker_client_order_id=f"oct-{leg_id}", **base)
        row.save(force_insert=True)
        record_event(row, event="received", before="", at=parent.created_at, now=parent.created_at,
                     detail={"parent": str(parent.pk)})
        legs.append(row)
    return legs


# --- cancel, replace ------------------------------------------------------------------------------------


def order_cancel(*, order: Order, actor: Actor, meta: RequestMeta | None = None, now: datetime | None = None,
                 reason: str = "") -> Order:
    """Ask the broker to cancel an open order. An order the broker has not seen yet (received) is
    canceled here at once; otherwise it goes to ``pending_cancel`` and the broker's answer finishes it
    (routing.cancel_after_commit). A filled, canceled or expired order is 409 ORDER_NOT_CANCELABLE."""
    now = now or timezone.now()
    firm_id = order.firm_id
    with firm_scope(firm_id), transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).select_related("portfolio", "instrument").get(pk=order.pk)
        status = Status(locked.status)
        if status not in OPEN or status in (Status.PENDING_CANCEL, Status.PENDING_REPLACE):
            raise DomainError(NOT_CANCELABLE, f"Order {locked.pk} is {status.value} and cannot be canceled.",
                              fields={"status": [status.value]}, status_code=409)
        detail = {"reason": reason} if reason else {}
        if status in (Status.RECEIVED, Status.PENDING_APPROVAL, Status.HELD) and not locked.broker_order_id:
            apply_transition(locked, Status.CANCELED, event="canceled", now=now, detail=detail, meta=meta)
            for leg in locked.legs.select_for_update().filter(status__in=[s.value for s in OPEN]):
                apply_transition(leg, Status.CANCELED, event="canceled", now=now, detail={"parent": str(locked.pk)})
                publish_order(leg, "canceled")
            routed = False
        else:
            apply_transition(locked, Status.PENDING_CANCEL, event="cancel_requested", now=now, detail=detail,
                             meta=meta)
            routed = True
        audit_record(firm_id=firm_id, action="order.cancel_requested", actor=actor, target_type="orders.order",
                     target_id=locked.pk, target_label=str(locked), before={"status": status.value},
                     after={"status": locked.status, **detail}, meta=meta, publish=False)
        publish_order(locked, locked.status)
        if routed:
            from apps.orders.routing import cancel_after_commit

            cancel_after_commit(locked)
    return locked


def order_cancel_all(*, firm_id: int, actor: Actor, portfolio_id: int | None = None, meta: RequestMeta | None = None,
                     reason: str = "") -> list[Order]:
    """Cancel every cancelable open order of the firm (or of one portfolio). Returns those asked."""
    with firm_scope(firm_id):
        ids = list(selectors.open_orders(firm_id, portfolio_id=portfolio_id).filter(parent__isnull=True)
                   .exclude(status__in=[Status.PENDING_CANCEL, Status.PENDING_REPLACE])
                   .order_by("created_at").values_list("pk", flat=True))
        canceled = []
        for pk in ids:
            order = Order.objects.get(pk=pk)
            try:
                canceled.append(order_cancel(order=order, actor=actor, meta=meta, reason=reason))
            except DomainError as exc:  # it filled or was canceled meanwhile
                log.info("cancel-all skipped order %s: %s", pk, exc.message)
    return canceled


REPLACE_FIELDS = ("qty", "limit_price", "stop_price", "trail", "time_in_force")


def order_replace(*, order: Order, changes: dict, actor: Actor, meta: RequestMeta | None = None,
                  now: datetime | None = None) -> Order:
    """Replace an open order's quantity, prices or time in force (Alpaca's PATCH semantics): the old order
    goes to ``pending_replace``, and when the broker confirms, to ``replaced`` while a new order (its
    ``replaces`` pointing back) carries on. The new terms pass validation and the pre-trade checks first.
    A filled, canceled or otherwise final order is 409 ORDER_NOT_REPLACEABLE."""
    from apps.orders.core import REPLACEABLE

    now = now or timezone.now()
    unknown = set(changes) - set(REPLACE_FIELDS)
    if unknown or not changes:
        raise DomainError(VALIDATION_ERROR, "Give at least one of qty, limit_price, stop_price, trail, time_in_force.",
                          fields={name: ["Not replaceable."] for name in unknown} or {"qty": ["Required."]})
    with firm_scope(order.firm_id), transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).select_related("portfolio", "instrument").get(pk=order.pk)
        status = Status(locked.status)
        if status not in REPLACEABLE or locked.parent_id is not None and status == Status.HELD:
            raise DomainError(NOT_REPLACEABLE, f"Order {locked.pk} is {status.value} and cannot be replaced.",
                              fields={"status": [status.value]}, status_code=409)
        spec = spec_of(locked)
        trail = changes.get("trail")
        new_spec = OrderSpec(**{
            **{name: getattr(spec, name) for name in spec.__slots__},
            **{k: v for k, v in changes.items() if k in ("qty", "limit_price", "stop_price", "time_in_force")},
            **({"trail_price": trail} if trail is not None and spec.trail_price is not None else {}),
            **({"trail_percent": trail} if trail is not None and spec.trail_percent is not None else {}),
        })
        _, info = _validate(new_spec)
        apply_transition(locked, Status.PENDING_REPLACE, event="replace_requested", now=now,
                         detail={"changes": {k: str(v) for k, v in changes.items()}}, meta=meta)
        audit_record(firm_id=locked.firm_id, action="order.replace_requested", actor=actor, target_type="orders.order",
                     target_id=locked.pk, target_label=str(locked), before=terms_of(locked),
                     after={k: str(v) for k, v in changes.items()}, meta=meta, publish=False)
        publish_order(locked, "pending_replace")
        from apps.orders.routing import replace_after_commit

        # the replacement's id is fixed now, so a retried replace cannot make two new orders
        replace_after_commit(locked, {**changes, "client_order_id": f"oct-{uuid.uuid4()}"})
    return locked


def spec_of(order: Order) -> OrderSpec:
    """An order's terms as the pure core speaks them (legs included for an entry)."""
    take_profit = stop_loss = None
    for leg in order.legs.all() if order.order_class != OrderClass.SIMPLE and order.parent_id is None else ():
        if leg.leg == LegRole.TAKE_PROFIT:
            take_profit = Leg(limit_price=leg.limit_price)
        elif leg.leg == LegRole.STOP_LOSS:
            stop_loss = Leg(limit_price=leg.limit_price, stop_price=leg.stop_price)
    return OrderSpec(
        symbol=order.symbol, side=order.side, type=order.type, time_in_force=order.time_in_force, qty=order.qty,
        notional=order.notional, limit_price=order.limit_price, stop_price=order.stop_price,
        trail_price=order.trail_price, trail_percent=order.trail_percent, extended_hours=order.extended_hours,
        order_class=order.order_class, take_profit=take_profit, stop_loss=stop_loss,
        client_order_id=order.client_order_id)


# --- the kill switch -----------------------------------------------------------------------------------


def kill_switch_set(*, firm_id: int, active: bool, actor: Actor, reason: str = "", meta: RequestMeta | None = None,
                    now: datetime | None = None) -> TradingControl:
    """Halt (or resume) the firm's trading. Halting rejects new risk-increasing orders with TRADING_HALTED
    and cancels every working order; the state is a database row, so it survives restarts. Audited."""
    now = now or timezone.now()
    with firm_scope(firm_id), transaction.atomic():
        control, _ = TradingControl.objects.select_for_update().get_or_create(firm_id=firm_id)
        before = control.kill_switch
        control.kill_switch, control.kill_switch_reason = active, reason[:300]
        control.kill_switch_changed_at = now
        control.save()
        audit_record(firm_id=firm_id, action="trading.halted" if active else "trading.resumed", actor=actor,
                     target_type="orders.tradingcontrol", target_id=control.pk, target_label="kill switch",
                     before={"kill_switch": before}, after={"kill_switch": active, "reason": reason}, meta=meta)
    if active:
        order_cancel_all(firm_id=firm_id, actor=actor, meta=meta, reason="kill switch")
    return control


def trading_limits_set(*, firm_id: int, actor: Actor, meta: RequestMeta | None = None, **limits) -> TradingControl:
    allowed = {"max_order_qty", "max_order_notional", "daily_notional_limit", "price_collar_pct",
               "duplicate_window_seconds", "allow_reducing_when_halted"}
    unknown = set(limits) - allowed
    if unknown:
        raise DomainError(VALIDATION_ERROR, "Unknown limits.", fields={name: ["Unknown."] for name in unknown})
    with firm_scope(firm_id), transaction.atomic():
        control, _ = TradingControl.objects.select_for_update().get_or_create(firm_id=firm_id)
        before = {k: str(getattr(control, k)) for k in limits}
        for name, value in limits.items():
            setattr(control, name, value)
        control.save()
        audit_record(firm_id=firm_id, action="trading.limits_changed", actor=actor,
                     target_type="orders.tradingcontrol", target_id=control.pk, target_label="limits",
                     before=before, after={k: str(v) for k, v in limits.items()}, meta=meta)
    return control


__all__ = ["Entry", "Origin", "Submitted", "order_cancel", "order_cancel_all", "order_preview", "order_replace",
           "order_submit", "kill_switch_set", "spec_of", "trading_limits_set", "REJECTION_STATUS"]


def alpaca_account_connect(*, portfolio: Portfolio, key_id: str, secret_key: str, paper: bool, actor: Actor,
                           meta: RequestMeta | None = None):
    """Store (or replace) a live portfolio's Alpaca trading keys, the secret encrypted at rest. Audited
    without the secret; the key id and the secret's last 4 characters identify it."""
    from apps.core.crypto import encrypt, hint
    from apps.orders.models import AlpacaAccount

    problems = {}
    if not key_id or len(key_id) > 64 or any(c.isspace() for c in key_id):
        problems["key_id"] = ["1 to 64 characters, no spaces."]
    if not secret_key or len(secret_key) > 128 or any(c.isspace() for c in secret_key):
        problems["secret_key"] = ["1 to 128 characters, no spaces."]
    if problems:
        raise DomainError(VALIDATION_ERROR, "Invalid Alpaca keys.", fields=problems)
    with firm_scope(portfolio.firm_id), transaction.atomic():
        account, created = AlpacaAccount.objects.update_or_create(
            firm_id=portfolio.firm_id, portfolio=portfolio,
            defaults={"key_id": key_id, "secret_encrypted": encrypt(secret_key), "secret_hint": hint(secret_key),
                      "paper": paper})
        audit_record(firm_id=portfolio.firm_id, action="portfolio.alpaca_connected", actor=actor,
                     target_type="portfolios.portfolio", target_id=portfolio.pk, target_label=portfolio.name,
                     after={"key_id": key_id, "secret_hint": account.secret_hint, "paper": paper,
                            "replaced": not created}, meta=meta)
    return account
