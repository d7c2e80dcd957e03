"""The built-in paper broker: Alpaca's behaviour, simulated against our own quotes.

The venue's memory is ``Order.paper_state`` (the pure engine's ``WorkingOrder``, as JSON); this module
is its only writer. Each call restores the engine for the orders it touches, runs it
(``apps.orders.matching.PaperEngine``, shared with the backtester), stores the states back and applies
every event the engine emitted through the one handler (``updates.broker_update_apply``) — all in one
transaction with the order rows locked, so a crash leaves either everything or nothing: the engine
never believes in a fill the ledger does not have.

Events carry Alpaca's names and statuses, so nothing above the broker can tell paper from live.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.core.tenancy import firm_scope
from apps.marketdata import calendars
from apps.marketdata.models import AssetClass
from apps.orders.brokers.base import (
    BrokerDuplicate,
    BrokerNotFound,
    BrokerOrder,
    BrokerOrderState,
    BrokerRejected,
    TradeUpdate,
)
from apps.orders.core import OPEN, OrderClass, Quote, Status
from apps.orders.matching import EngineEvent, PaperConfig, PaperEngine, SessionInfo, WorkingOrder
from apps.orders.models import BrokerName, Order

log = logging.getLogger(__name__)
PAPER = BrokerName.PAPER
OPEN_VALUES = [s.value for s in OPEN]


def session_info(exchange: str, asset_class: str, now: datetime) -> SessionInfo:
    """The regular session for the engine (pure): today's, or when the market is closed now, the last one
    that closed (``close_at`` in the past), so DAY orders left from it expire even after a weekend or a
    downtime. Crypto never closes."""
    if asset_class == AssetClass.CRYPTO:
        return SessionInfo(is_open=True, open_at=None, close_at=None)
    try:
        today = now.astimezone(calendars.get_calendar(exchange).tz).date()
        recent = calendars.sessions(exchange, today - timedelta(days=10), today)
    except ValueError:  # unknown exchange or outside the calendar: treat as closed
        return SessionInfo(is_open=False, open_at=None, close_at=None)
    started = [s for s in recent if s.open <= now]
    if not started:
        return SessionInfo(is_open=False, open_at=None, close_at=None)
    session = started[-1]
    return SessionInfo(is_open=now < session.close, open_at=session.open, close_at=session.close)


def current_quote(symbol: str) -> Quote | None:
    from apps.orders.services import _market_view

    view = _market_view(symbol)
    return view.quote if view.fresh else None


class PaperBroker:
    name = PAPER

    def __init__(self, firm_id: int, *, config: PaperConfig | None = None, now: datetime | None = None,
                 portfolio_id: int | None = None):
        self.firm_id = firm_id
        self.portfolio_id = portfolio_id  # one venue account per portfolio (for positions)
        self.config = config or PaperConfig()
        self._now = now

    @property
    def now(self) -> datetime:
        return self._now or timezone.now()

    # -- the Broker protocol --------------------------------------------------------------------------

    def submit(self, order: BrokerOrder) -> BrokerOrderState:
        now = self.now
        with firm_scope(self.firm_id), transaction.atomic():
            row = self._row(order.client_order_id)
            if row.paper_state:
                raise BrokerDuplicate(f"client_order_id {order.client_order_id} already exists", code="40010001",
                                      status=422)
            legs = [] if row.order_class == OrderClass.SIMPLE else list(row.legs.select_for_update().order_by("leg"))
            working = _working(row, now)
            leg_states = [_working(leg, now, parent=row) for leg in legs]
            engine = PaperEngine(self.config)
            quote = current_quote(row.symbol)
            session = session_info(row.instrument.exchange, row.asset_class, now)
            events = engine.submit(working, legs=leg_states, now=now, quote=quote, session=session)
            held = [EngineEvent("held", leg.order_id, Status.HELD, now) for leg in leg_states
                    if leg.status == Status.HELD]
            events = events[:1] + held + events[1:]  # Alpaca shows bracket legs "held" once the entry is new
            self._finish(engine, [row, *legs], events)
            row.refresh_from_db()
            if row.status == Status.REJECTED:
                raise BrokerRejected(row.reject_reason or "rejected by the paper broker", status=422)
            return state_of(row)

    def cancel(self, broker_order_id: str) -> None:
        now = self.now
        with firm_scope(self.firm_id), transaction.atomic():
            row = self._row_by_broker_id(broker_order_id)
            if not row.paper_state:
                raise BrokerNotFound(f"order {broker_order_id} not found", status=404)
            engine, rows = self._engine_for(row)
            self._finish(engine, rows, engine.cancel(str(row.pk), now=now))

    def replace(self, broker_order_id: str, *, qty: Decimal | None = None, time_in_force: str | None = None,
                limit_price: Decimal | None = None, stop_price: Decimal | None = None, trail: Decimal | None = None,
                client_order_id: str | None = None) -> BrokerOrderState:
        now = self.now
        with firm_scope(self.firm_id), transaction.atomic():
            row = self._row_by_broker_id(broker_order_id)
            if not row.paper_state or client_order_id is None:
                raise BrokerNotFound(f"order {broker_order_id} not found", status=404)
            new_id = client_order_id.removeprefix("oct-")
            engine, rows = self._engine_for(row)
            events = engine.replace(str(row.pk), new_order_id=new_id, now=now, qty=qty, limit_price=limit_price,
                                    stop_price=stop_price, trail=trail, time_in_force=time_in_force)
            refused = [e for e in events if e.order_id == str(row.pk) and e.event.endswith("rejected")]
            if refused:
                raise BrokerRejected(refused[0].reason or "replace refused", status=422)
            replaced = engine.orders[new_id]
            Order.objects.filter(pk=row.pk).update(paper_state=engine.orders[str(row.pk)].to_dict())
            # the old order's "replaced" and the new order itself are recorded by the caller
            # (updates.record_replacement) in this same transaction (routing.replace_at_broker)
            return BrokerOrderState(broker_order_id=f"paper-{new_id}", client_order_id=client_order_id,
                                    status=str(replaced.status), replaces=broker_order_id, updated_at=now,
                                    raw={"paper_state": replaced.to_dict()})

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrderState:
        with firm_scope(self.firm_id):
            row = Order.objects.filter(broker_client_order_id=client_order_id, broker=PAPER).first()
        if row is None or not row.paper_state:
            raise BrokerNotFound(f"order {client_order_id} not found", status=404)
        return state_of(row)

    def list_orders(self, *, status: str = "open", after: datetime | None = None,
                    limit: int = 500) -> list[BrokerOrderState]:
        with firm_scope(self.firm_id):
            qs = Order.objects.filter(broker=PAPER).exclude(paper_state={})
            if status == "open":
                qs = qs.filter(status__in=OPEN_VALUES)
            if after is not None:
                qs = qs.filter(updated_at__gt=after)
            return [state_of(row) for row in qs.order_by("created_at")[:limit]]

    def list_fills(self, *, after: datetime) -> list[TradeUpdate]:
        """The paper venue applies its fills in the transaction that makes them: none can be missed."""
        return []

    def list_positions(self) -> dict[str, Decimal]:
        """The paper venue's positions are the books themselves (one database): symbol -> quantity."""
        from apps.portfolios.models import Position

        with firm_scope(self.firm_id):
            rows = Position.objects.exclude(quantity=0).values_list("portfolio_id", "instrument__symbol", "quantity")
            return {symbol: qty for portfolio_id, symbol, qty in rows if portfolio_id == self.portfolio_id} \
                if self.portfolio_id else {}

    # -- matching against the market ------------------------------------------------------------------

    def match(self, symbol: str, quote: Quote | None, *, now: datetime | None = None) -> int:
        """Run the firm's working paper orders of one symbol against a quote (None: no fresh quote, only the
        session's end is applied: DAY orders expire, unfilled OPG/CLS are canceled). Returns the events
        applied. Orders another worker holds are skipped this round (SKIP LOCKED), never waited for."""
        now = now or self.now
        with firm_scope(self.firm_id), transaction.atomic():
            rows = list(Order.objects.select_for_update(skip_locked=True, of=("self",)).select_related("instrument", "portfolio")
                        .filter(broker=PAPER, symbol=symbol, status__in=OPEN_VALUES).exclude(paper_state={})
                        .order_by("created_at", "id"))
            if not rows:
                return 0
            engine = PaperEngine(self.config, orders=[WorkingOrder.from_dict(r.paper_state) for r in rows])
            session = session_info(rows[0].instrument.exchange, rows[0].asset_class, now)
            events = engine.on_quote(symbol, quote, now=now, session=session) if quote is not None else []
            if not session.is_open and session.close_at is not None:
                events += engine.on_session_close(now=session.close_at)
            self._finish(engine, rows, events)
            return len(events)

    # -- internals -------------------------------------------------------------------------------------

    def _row(self, client_order_id: str) -> Order:
        row = (Order.objects.select_for_update(of=("self",)).select_related("instrument", "portfolio")
               .filter(broker_client_order_id=client_order_id).first())
        if row is None:
            raise BrokerNotFound(f"order {client_order_id} not found", status=404)
        return row

    def _row_by_broker_id(self, broker_order_id: str) -> Order:
        row = (Order.objects.select_for_update(of=("self",)).select_related("instrument", "portfolio")
               .filter(broker=PAPER, broker_order_id=broker_order_id).first())
        if row is None:
            raise BrokerNotFound(f"order {broker_order_id} not found", status=404)
        return row

    def _engine_for(self, row: Order) -> tuple[PaperEngine, list[Order]]:
        """The engine holding an order with its family (parent, legs): what one cancel can touch."""
        root = row.parent or row
        family = [root, *root.legs.all()]
        rows = list(Order.objects.select_for_update(of=("self",)).select_related("instrument", "portfolio")
                    .filter(pk__in=[o.pk for o in family]).exclude(paper_state={}).order_by("created_at", "id"))
        engine = PaperEngine(self.config, orders=[WorkingOrder.from_dict(r.paper_state) for r in rows])
        return engine, rows

    def _finish(self, engine: PaperEngine, rows: list[Order], events: list[EngineEvent]) -> None:
        """Store the engine's states, then apply its events in order through the one handler."""
        from apps.orders.updates import broker_update_apply

        by_id = {str(r.pk): r for r in rows}
        for order_id, working in engine.orders.items():
            row = by_id.get(order_id)
            if row is not None:
                Order.objects.filter(pk=row.pk).update(paper_state=working.to_dict())
        for event in events:
            row = by_id.get(event.order_id)
            if row is None:
                continue
            broker_update_apply(firm_id=self.firm_id, broker=PAPER, update=_update(row, event),
                                now=event.at)


def _working(row: Order, now: datetime, parent: Order | None = None) -> WorkingOrder:
    from apps.orders.services import spec_of

    multiplier = (row.instrument.multiplier or 100) if row.asset_class == AssetClass.OPTION else 1
    return WorkingOrder(order_id=str(row.pk), spec=spec_of(row), submitted_at=now, asset_class=row.asset_class,
                        multiplier=multiplier, status=Status.RECEIVED if parent is None else Status.HELD,
                        parent_id=None if parent is None else str(parent.pk))


def _update(row: Order, event: EngineEvent) -> TradeUpdate:
    state = BrokerOrderState(broker_order_id=f"paper-{row.pk}", client_order_id=row.broker_client_order_id,
                             status=str(event.status), updated_at=event.at,
                             raw={"reject_reason": event.reason} if event.reason else {})
    return TradeUpdate(event=event.event, order=state, at=event.at, execution=event.execution)


def state_of(row: Order) -> BrokerOrderState:
    return BrokerOrderState(
        broker_order_id=row.broker_order_id or f"paper-{row.pk}", client_order_id=row.broker_client_order_id,
        status=row.status, filled_qty=row.filled_qty, filled_avg_price=row.filled_avg_price, updated_at=row.updated_at)


def match_all(*, now: datetime | None = None) -> dict:
    """Every firm's working paper orders against the latest quote of their symbol (platform loop; each
    firm is matched in its own scope). A symbol without a fresh quote waits."""
    from apps.core.tenancy import unscoped

    now = now or timezone.now()
    with unscoped():  # reviewed: the paper venue serves every firm; each is then matched in its own scope
        pairs = sorted(set(Order.objects.filter(broker=PAPER, status__in=OPEN_VALUES)
                           .exclude(paper_state={}).values_list("firm_id", "symbol")))
    quotes: dict[str, Quote | None] = {}
    applied = 0
    for firm_id, symbol in pairs:
        if symbol not in quotes:
            quotes[symbol] = current_quote(symbol)
        try:
            applied += PaperBroker(firm_id).match(symbol, quotes[symbol], now=now)
        except Exception:  # one firm's failure must not stop the venue for the others
            log.exception("paper matching failed for firm %s, %s", firm_id, symbol)
    return {"pairs": len(pairs), "events": applied}
