"""Execution algorithms (TWAP, VWAP): writes. A parent ``AlgoOrder`` fixes its slice schedule at creation
(``apps.orders.algos``); the beat (``algo_tick_due``, every few seconds) sends each slice when it falls due as
a child order through the one order path (``order_submit``), linked by ``Order.algo``.

State machine (``ALGO_TRANSITIONS``): running -> paused | canceled | done; paused -> running | canceled;
canceled and done are final. Illegal moves are 409 with a stable code.

Decisions:

* Children are market orders, or limit orders at ``limit_price`` when the parent has one; time in force
  ``gtc`` for crypto and ``day`` for everything else (equities, ETFs; options take only day). Not ``ioc``:
  an IOC limit child would silently drop what it could not fill at once and the parent would under-trade
  with nothing working; a day/gtc child keeps working (its fills count towards the parent's progress) and
  is canceled with the parent.
* Each slice ``n`` is sent with client_order_id ``"<parent's>:<n>"``, in its own transaction under the
  parent's row lock, together with the advance of ``next_slice`` and ``sent_qty``: a repeated or concurrent
  tick waits on the lock and then finds the slice sent; and were a child ever written without the advance,
  ``order_submit``'s idempotency replays it instead of sending it twice.
* A child refused by the pre-trade checks (or by validation) is recorded — the refused order row (the order
  path stores it ``risk_rejected``), and an ``algo.child_rejected`` audit event with the code — and the
  parent is PAUSED (or done, if it was the last slice). A refusal usually means a condition that persists
  (kill switch, buying power, a limit), so carrying on would litter the book with refusals and trade a
  distorted schedule; a person resumes or cancels. The refused slice's quantity is not re-sent (its
  client_order_id is spent): ``sent_qty`` and the progress show the shortfall.
* After a pause, the slices that fell due meanwhile go at the next tick (each its own child); the schedule
  is never re-timed. Pausing leaves working children working; canceling cancels them (``order_cancel``).
* The children are entered by the system on behalf of the parent's creator: actor ``system algo:<id>``,
  responsible user = the creator, origin ``system``, source ``algo:<id hex>``.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope, unscoped
from apps.orders import algos, selectors
from apps.orders.core import CANCELABLE, OrderSpec, OrderType, Side, TimeInForce
from apps.orders.models import AlgoKind, AlgoOrder, AlgoStatus, Order, Origin
from apps.orders.services import IDEMPOTENCY_MISMATCH, VALIDATION_ERROR, Entry, order_cancel, order_submit
from apps.orders.validation import validate_spec
from apps.portfolios.models import Portfolio

log = logging.getLogger(__name__)

MAX_SLICES = 500
MIN_SLICE_INTERVAL = timedelta(seconds=1)
PROFILE_LOOKBACK_DAYS = 7  # the same window on each of the last 7 days (about 5 equity sessions)
PROFILE_MAX_WINDOW = timedelta(days=1)  # a time-of-day profile only makes sense within a day
MAX_ALGO_COID = 100  # children add ':<slice>' and stay within the order path's 128
COID_PATTERN = re.compile(rf"^[\x21-\x7e]{{1,{MAX_ALGO_COID}}}$")

SIDES = frozenset(s.value for s in Side)

ALGO_NOT_PAUSABLE = "ALGO_NOT_PAUSABLE"
ALGO_NOT_RESUMABLE = "ALGO_NOT_RESUMABLE"
ALGO_NOT_CANCELABLE = "ALGO_NOT_CANCELABLE"
ALGO_CHILD_ID_TAKEN = "ALGO_CHILD_ID_TAKEN"

S = AlgoStatus
ALGO_TRANSITIONS: dict[str, frozenset[str]] = {
    S.RUNNING: frozenset({S.PAUSED, S.CANCELED, S.DONE}),
    S.PAUSED: frozenset({S.RUNNING, S.CANCELED}),
    S.CANCELED: frozenset(),
    S.DONE: frozenset(),
}

# field messages (constants, so tests assert them exactly)
MSG_UNKNOWN_SYMBOL = "Unknown symbol: no instrument has this symbol."
MSG_SIDE = "buy or sell."
MSG_KIND = "twap or vwap."
MSG_QTY_POSITIVE = "qty must be a positive number."
MSG_PRICE_POSITIVE = "limit_price must be a positive number."
MSG_NAIVE = "An ISO 8601 instant with a time zone."
MSG_END_AFTER_START = "end_at must be after start_at."
MSG_END_PAST = "end_at must be in the future."
MSG_SLICES_RANGE = f"slices must be between 1 and {MAX_SLICES}."
MSG_COID = f"client_order_id: 1 to {MAX_ALGO_COID} printable ASCII characters, no spaces."


def msg_lot_grid(qty, lot) -> str:
    return f"qty {qty} is not a multiple of the lot size {lot}."


def msg_too_small(qty, slices: int, lot) -> str:
    return f"qty {qty} is too small for {slices} slices of at least one lot ({lot}) each."


def msg_too_fine(slices: int, seconds: float) -> str:
    return f"{slices} slices over {seconds:g} s is finer than one slice a second."


def msg_tick_grid(price, tick) -> str:
    return f"limit_price {price} is not a multiple of the tick size {tick}."


# --- create ---------------------------------------------------------------------------------------------


def _aware(value) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None


def _decimal(value) -> Decimal | None:
    if value is None:
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal("NaN")
    return number


def _plain(value) -> Decimal:
    """A grid step without the column's trailing zeros (0.00010000 -> 0.0001; 10 stays 10, not 1E+1)."""
    value = Decimal(value).normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value


def _child_tif(asset_class: str) -> TimeInForce:
    return TimeInForce.GTC if asset_class == "crypto" else TimeInForce.DAY


def _child_spec(algo_like, qty: Decimal, client_order_id: str) -> OrderSpec:
    limit = algo_like.limit_price
    return OrderSpec(symbol=algo_like.symbol, side=Side(algo_like.side),
                     type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
                     time_in_force=_child_tif(algo_like.instrument.asset_class), qty=qty, limit_price=limit,
                     client_order_id=client_order_id)


def _validate(*, symbol, side, qty, kind, start_at, end_at, slices, limit_price, client_order_id, now):
    """Every problem of an algo request as ``{field: [message]}``, plus the instrument and clean values."""
    problems: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    instrument = selectors.instrument_by_symbol(symbol or "")
    if instrument is None:
        add("symbol", MSG_UNKNOWN_SYMBOL)
    if side not in SIDES:
        add("side", MSG_SIDE)
    if kind not in AlgoKind.values:
        add("kind", MSG_KIND)
    qty = _decimal(qty)
    if qty is None or not qty.is_finite() or qty <= 0:
        add("qty", MSG_QTY_POSITIVE)
        qty = None
    price = _decimal(limit_price)
    if price is not None and (not price.is_finite() or price <= 0):
        add("limit_price", MSG_PRICE_POSITIVE)
        price = None
    good_slices = isinstance(slices, int) and not isinstance(slices, bool) and 1 <= slices <= MAX_SLICES
    if not good_slices:
        add("slices", MSG_SLICES_RANGE)
    window_ok = True
    for name, value in (("start_at", start_at), ("end_at", end_at)):
        if not _aware(value):
            add(name, MSG_NAIVE)
            window_ok = False
    if window_ok:
        if end_at <= start_at:
            add("end_at", MSG_END_AFTER_START)
        elif end_at <= now:
            add("end_at", MSG_END_PAST)
        elif good_slices and (end_at - start_at) / slices < MIN_SLICE_INTERVAL:
            add("slices", msg_too_fine(slices, (end_at - start_at).total_seconds()))
    if client_order_id is not None and not COID_PATTERN.match(client_order_id):
        add("client_order_id", MSG_COID)
    if instrument is not None and qty is not None:
        lot = _plain(instrument.lot_size)
        try:
            on_grid = qty % lot == 0
        except InvalidOperation:
            on_grid = False
        if not on_grid:
            add("qty", msg_lot_grid(qty, lot))
        elif good_slices and qty < lot * slices:
            add("qty", msg_too_small(qty, slices, lot))
    if instrument is not None and price is not None:
        tick = _plain(instrument.tick_size)
        if price < 1 and instrument.asset_class in ("equity", "etf") and Decimal("0.0001") < tick:
            tick = Decimal("0.0001")
        try:
            if price % tick:
                add("limit_price", msg_tick_grid(price, tick))
        except InvalidOperation:
            add("limit_price", msg_tick_grid(price, tick))
    if instrument is not None and qty is not None and not problems:
        # what the order path will say of every child: the instrument takes this order type and time in force
        probe = OrderSpec(symbol=instrument.symbol, side=Side(side),
                          type=OrderType.LIMIT if price is not None else OrderType.MARKET,
                          time_in_force=_child_tif(instrument.asset_class), qty=_plain(instrument.lot_size),
                          limit_price=price)
        for name, messages in validate_spec(probe, selectors.instrument_info(instrument)).items():
            problems.setdefault("symbol" if name in ("type", "time_in_force") else name, []).extend(messages)
    return problems, instrument, qty, price


def _volume_profile(instrument, start_at: datetime, end_at: datetime, slices: int) -> list[float] | None:
    """Expected volume per slice interval: the instrument's stored 1m bars in the same window of each of the
    last ``PROFILE_LOOKBACK_DAYS`` days, summed by time of day; None with no bars (or a window over a day)."""
    import numpy as np

    from apps.marketdata.models import Timeframe
    from apps.marketdata.selectors import bars_frame

    width = end_at - start_at
    if width > PROFILE_MAX_WINDOW:
        return None
    totals = np.zeros(slices, dtype="float64")
    for days_back in range(1, PROFILE_LOOKBACK_DAYS + 1):
        shift = timedelta(days=days_back)
        frame, _ = bars_frame(instrument=instrument, timeframe=Timeframe.M1, start=start_at - shift,
                              end=end_at - shift)
        if not len(frame):
            continue
        offsets = (frame["ts"] - (start_at - shift)).dt.total_seconds().to_numpy() / width.total_seconds()
        index = np.clip(np.floor(offsets * slices).astype("int64"), 0, slices - 1)
        np.add.at(totals, index, np.nan_to_num(frame["volume"].to_numpy(), nan=0.0))
    return [float(v) for v in totals] if totals.sum() > 0 else None


def _terms(algo) -> dict:
    return {"portfolio": algo.portfolio_id, "symbol": algo.symbol, "side": algo.side, "qty": algo.qty,
            "kind": algo.kind, "start_at": algo.start_at, "end_at": algo.end_at, "slices": algo.slices,
            "limit_price": algo.limit_price}


def _replay(existing: AlgoOrder, terms: dict) -> AlgoOrder:
    if _terms(existing) != terms:
        raise DomainError(IDEMPOTENCY_MISMATCH,
                          f"client_order_id {existing.client_order_id!r} was used for an algo order with other terms "
                          f"(algo {existing.pk}).", fields={"client_order_id": ["Already used with other terms."]},
                          status_code=409)
    existing.replayed = True
    return existing


def _audit_terms(algo: AlgoOrder) -> dict:
    return {"client_order_id": algo.client_order_id, "portfolio": algo.portfolio_id, "symbol": algo.symbol,
            "side": algo.side, "qty": str(algo.qty), "kind": algo.kind, "start_at": algo.start_at.isoformat(),
            "end_at": algo.end_at.isoformat(), "slices": algo.slices,
            "limit_price": None if algo.limit_price is None else str(algo.limit_price), "status": algo.status}


def algo_create(*, portfolio: Portfolio, symbol: str, side: str, qty, kind: str, start_at: datetime | None,
                end_at: datetime, slices: int, limit_price=None, client_order_id: str | None = None, entry: Entry,
                now: datetime | None = None) -> AlgoOrder:
    """Create a running TWAP/VWAP parent with its schedule fixed; the beat sends its slices as they fall due.

    Validation: a 400 ``VALIDATION_ERROR`` naming each field (known symbol, side, kind, qty > 0 on the lot
    grid and at least one lot per slice, a limit_price on the tick grid, an aware window ending after it
    starts and in the future, 1..500 slices no finer than one a second, an order type and time in force the
    instrument takes), nothing written. Idempotent on ``client_order_id`` (generated when absent): the same
    id with the same terms returns the original (``algo.replayed`` is True), with other terms 409
    ``IDEMPOTENCY_KEY_MISMATCH``. VWAP sizes follow the instrument's stored 1m volume in the same window of
    recent days, else the default U shape (``apps.orders.algos``). One transaction; audited ``algo.created``.
    ``start_at=None`` starts now (and a replay then matches whatever start the original took)."""
    now = now or timezone.now()
    start_given = start_at is not None
    start_at = start_at if start_given else now
    symbol = (symbol or "").strip().upper()
    problems, instrument, qty_d, price = _validate(
        symbol=symbol, side=side, qty=qty, kind=kind, start_at=start_at, end_at=end_at, slices=slices,
        limit_price=limit_price, client_order_id=client_order_id, now=now)
    if client_order_id and "client_order_id" not in problems:
        terms = {"portfolio": portfolio.pk, "symbol": symbol, "side": side, "qty": qty_d, "kind": kind,
                 "start_at": start_at, "end_at": end_at, "slices": slices, "limit_price": price}
        with firm_scope(portfolio.firm_id):
            existing = AlgoOrder.objects.filter(client_order_id=client_order_id).first()
        if existing is not None:  # a replay is answered before the clock-dependent rules (end in the future)
            if not start_given:
                terms["start_at"] = existing.start_at
            return _replay(existing, terms)
    if problems:
        raise DomainError(VALIDATION_ERROR, "Invalid algo order: " + ", ".join(sorted(problems)) + ".",
                          fields=problems)
    lot = _plain(instrument.lot_size)
    profile = None
    if kind == AlgoKind.VWAP:
        profile = _volume_profile(instrument, start_at, end_at, slices)
        schedule = algos.vwap_schedule(qty_d, start_at, end_at, slices, profile, lot=lot)
    else:
        schedule = algos.twap_schedule(qty_d, start_at, end_at, slices, lot=lot)
    coid = client_order_id or f"algo-{uuid.uuid4().hex}"
    actor = entry.actor
    algo = AlgoOrder(
        firm_id=portfolio.firm_id, portfolio=portfolio, instrument=instrument, symbol=instrument.symbol,
        side=side, qty=qty_d, kind=kind, start_at=start_at, end_at=end_at, slices=slices, limit_price=price,
        schedule=algos.schedule_dump(schedule), client_order_id=coid, entered_by_id=actor.user_id,
        origin=entry.origin, created_at=now, updated_at=now)
    try:
        with firm_scope(portfolio.firm_id), transaction.atomic():
            algo.save(force_insert=True)
            audit_record(firm_id=portfolio.firm_id, action="algo.created", actor=actor,
                         target_type="orders.algoorder", target_id=algo.pk, target_label=str(algo),
                         after={**_audit_terms(algo), "profile": "bars" if kind == AlgoKind.VWAP and profile
                                else ("u_shape" if kind == AlgoKind.VWAP else "equal")},
                         meta=entry.meta, publish=False)
    except IntegrityError:  # the unique (firm, client_order_id) backstop: a concurrent create won
        with firm_scope(portfolio.firm_id):
            existing = AlgoOrder.objects.get(client_order_id=coid)
        return _replay(existing, _terms(algo))
    algo.replayed = False
    return algo


# --- pause, resume, cancel ------------------------------------------------------------------------------


def _move(algo: AlgoOrder, target: str, *, code: str, verb: str, actor: Actor, meta: RequestMeta | None,
          now: datetime | None, reason: str = "") -> tuple[AlgoOrder, str]:
    """Lock the parent, check the move against ALGO_TRANSITIONS (409 ``code`` if illegal), apply and audit it.
    Must run inside a transaction and the firm's scope."""
    now = now or timezone.now()
    # of=self: never lock the shared instrument row (order inserts of every firm take a key-share lock on it)
    locked = (AlgoOrder.objects.select_for_update(of=("self",)).select_related("portfolio", "instrument")
              .get(pk=algo.pk))
    before = locked.status
    if target not in ALGO_TRANSITIONS[before]:
        raise DomainError(code, f"Algo order {locked.pk} is {before} and cannot be {verb}.",
                          fields={"status": [before]}, status_code=409)
    if target == S.RUNNING and locked.next_slice >= locked.slices:
        target = S.DONE  # nothing left to send (the last slice was refused while it ran)
    locked.status, locked.updated_at = target, now
    locked.save(update_fields=["status", "updated_at"])
    after = {"status": locked.status, **({"reason": reason} if reason else {})}
    audit_record(firm_id=locked.firm_id, action=f"algo.{verb}", actor=actor, target_type="orders.algoorder",
                 target_id=locked.pk, target_label=str(locked), before={"status": before}, after=after, meta=meta,
                 publish=False)
    return locked, before


def algo_pause(*, algo: AlgoOrder, actor: Actor, meta: RequestMeta | None = None,
               now: datetime | None = None) -> AlgoOrder:
    """running -> paused: no slice is sent until it is resumed; working children keep working. Locks the
    parent row; audited ``algo.paused``. Anything else is 409 ALGO_NOT_PAUSABLE."""
    with firm_scope(algo.firm_id), transaction.atomic():
        return _move(algo, S.PAUSED, code=ALGO_NOT_PAUSABLE, verb="paused", actor=actor, meta=meta, now=now)[0]


def algo_resume(*, algo: AlgoOrder, actor: Actor, meta: RequestMeta | None = None,
                now: datetime | None = None) -> AlgoOrder:
    """paused -> running (or done when no slice is left): the slices that fell due meanwhile go at the next
    tick. Locks the parent row; audited ``algo.resumed``. Anything else is 409 ALGO_NOT_RESUMABLE."""
    with firm_scope(algo.firm_id), transaction.atomic():
        return _move(algo, S.RUNNING, code=ALGO_NOT_RESUMABLE, verb="resumed", actor=actor, meta=meta, now=now)[0]


def algo_cancel(*, algo: AlgoOrder, actor: Actor, meta: RequestMeta | None = None,
                now: datetime | None = None) -> AlgoOrder:
    """running | paused -> canceled, and every cancelable child is canceled through ``order_cancel`` (a child
    that filled or was canceled meanwhile is skipped). One transaction: the parent row is locked first, so a
    tick waiting on it then finds the parent canceled and sends nothing. Audited ``algo.canceled`` (and each
    child's ``order.cancel_requested``). A done or canceled algo is 409 ALGO_NOT_CANCELABLE."""
    now = now or timezone.now()
    with firm_scope(algo.firm_id), transaction.atomic():
        locked, _ = _move(algo, S.CANCELED, code=ALGO_NOT_CANCELABLE, verb="canceled", actor=actor, meta=meta,
                          now=now)
        working = list(Order.objects.filter(algo=locked, status__in=[s.value for s in CANCELABLE])
                       .order_by("created_at", "id"))
        for child in working:
            try:
                order_cancel(order=child, actor=actor, meta=meta, now=now, reason="algo canceled")
            except DomainError as exc:  # it filled or is already being canceled
                log.info("algo %s cancel skipped child %s: %s", locked.pk, child.pk, exc.message)
    return locked


# --- the tick -------------------------------------------------------------------------------------------


def _child_entry(algo: AlgoOrder) -> Entry:
    return Entry(actor=Actor.system(f"algo:{algo.pk}"), origin=Origin.SYSTEM, source=f"algo:{algo.pk.hex}",
                 responsible_user_id=algo.entered_by_id)


def _send_slice(algo: AlgoOrder, n: int, qty: Decimal, now: datetime) -> None:
    """Send slice ``n`` of the locked parent and advance it (inside the caller's transaction)."""
    spec = _child_spec(algo, qty, f"{algo.client_order_id}:{n}")
    code = message = ""
    child = None
    try:
        result = order_submit(portfolio=algo.portfolio, spec=spec, entry=_child_entry(algo), now=now,
                              algo_id=algo.pk)
        child = result.order
        if child.algo_id != algo.pk:
            code, message = ALGO_CHILD_ID_TAKEN, f"client_order_id {spec.client_order_id!r} is another order's."
        elif result.rejected:
            code, message = child.reject_code, child.reject_reason
    except DomainError as exc:  # refused before anything was written (validation, a reused client_order_id)
        code, message = exc.code, exc.message
    algo.next_slice = n + 1
    algo.updated_at = now
    last = algo.next_slice >= algo.slices
    if code:
        algo.status = S.DONE if last else S.PAUSED
        audit_record(firm_id=algo.firm_id, action="algo.child_rejected", actor=Actor.system(f"algo:{algo.pk}"),
                     target_type="orders.algoorder", target_id=algo.pk, target_label=str(algo),
                     after={"slice": n, "qty": str(qty), "code": code, "message": message[:500],
                            "order": None if child is None or child.algo_id != algo.pk else str(child.pk),
                            "status": algo.status}, publish=False)
    else:
        algo.sent_qty += qty
        if last:
            algo.status = S.DONE
            audit_record(firm_id=algo.firm_id, action="algo.done", actor=Actor.system(f"algo:{algo.pk}"),
                         target_type="orders.algoorder", target_id=algo.pk, target_label=str(algo),
                         after={"status": algo.status, "sent_qty": str(algo.sent_qty)}, publish=False)
    algo.save(update_fields=["next_slice", "sent_qty", "status", "updated_at"])


def algo_tick(*, firm_id: int, algo_id, now: datetime | None = None) -> AlgoOrder | None:
    """Send every slice of a running algo that is due at ``now`` through ``order_submit``, one transaction per
    slice under the parent's row lock (``select_for_update``), advancing ``next_slice``/``sent_qty`` with the
    child; marks the algo done after its last slice. A paused, canceled or done algo sends nothing, and a
    repeated or concurrent tick finds the slices sent (see the module docstring). The children route to
    their broker after each commit. Returns the parent (None if it is not the firm's)."""
    now = now or timezone.now()
    while True:
        with firm_scope(firm_id), transaction.atomic():
            algo = (AlgoOrder.objects.select_for_update(of=("self",)).select_related("portfolio", "instrument")
                    .filter(pk=algo_id).first())
            if algo is None or algo.status != S.RUNNING:
                return algo
            schedule = algos.schedule_load(algo.schedule)
            due = algos.due_slices(schedule, algo.next_slice, now)
            if not due:
                return algo
            n = due.start
            _send_slice(algo, n, schedule[n][1], now)


def algo_tick_due(*, now: datetime | None = None) -> dict:
    """Beat: tick every running algo whose next slice is due, each in its own firm's scope (platform-level,
    like the outbox relay). One algo's failure is logged and does not stop the others."""
    now = now or timezone.now()
    # the due time of each algo's next slice, read from its schedule in the database
    next_due = RawSQL("((schedule -> next_slice) ->> 0)::timestamptz", [])  # noqa: S611 - no input in it
    with unscoped():  # reviewed: the algo scheduler finds due algos of every firm, then acts in each firm's scope
        due = list(AlgoOrder.objects.filter(status=S.RUNNING).annotate(next_due=next_due)
                   .filter(next_due__lte=now).order_by("firm_id", "created_at").values_list("firm_id", "pk"))
    ticked = failed = 0
    for firm_id, pk in due:
        try:
            algo_tick(firm_id=firm_id, algo_id=pk, now=now)
            ticked += 1
        except Exception:  # noqa: BLE001 - one broken algo must not starve the others; the next beat retries
            log.exception("algo %s tick failed", pk)
            failed += 1
    return {"ticked": ticked, "failed": failed}


__all__ = ["ALGO_NOT_CANCELABLE", "ALGO_NOT_PAUSABLE", "ALGO_NOT_RESUMABLE", "ALGO_TRANSITIONS", "algo_cancel",
           "algo_create", "algo_pause", "algo_resume", "algo_tick", "algo_tick_due"]
