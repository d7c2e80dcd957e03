"""Reconciliation: bring a portfolio's orders into agreement with its broker, and report every break.

Run on start (``manage.py alpaca_trade_stream`` reconciles before it listens, and again after every
reconnect, which covers the stream's gap), on schedule (beat, every live portfolio) and on demand (the API
and ``manage.py reconcile_orders``). For each open order it asks the broker by client_order_id and applies
the broker's status; then it compares what the broker says with the books:

* first, the broker's fills since the oldest open order (at least a day back) are applied through the one
  handler — the fills the trade stream missed while it was down are booked here, once (target 22);
* an order's filled quantity that still differs from the executions we booked;
* a fill of an order we do not know;
* an open order at the broker that we do not know;
* a position whose quantity differs, symbol by symbol.

Any break, or a broker that cannot give its report (a missing report is never taken for "flat"), halts the
portfolio (``PortfolioHalt``: risk-increasing orders are refused with TRADING_HALTED) until a person has
looked and resumed it — it fails closed (reliability target 21). Every run is audited with its report.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.orders.brokers.base import Broker, BrokerError, BrokerNotFound
from apps.orders.core import OPEN, Status
from apps.orders.models import Order, PortfolioHalt
from apps.orders.routing import apply_broker_state, broker_for, reconcile_order
from apps.orders.updates import broker_update_apply
from apps.portfolios.models import Portfolio, Position

log = logging.getLogger(__name__)
ZERO = Decimal(0)
NOT_HALTED = "PORTFOLIO_NOT_HALTED"
FILL_LOOKBACK = timedelta(days=1)  # at least this far back the broker's fills are compared


@dataclass(frozen=True)
class Break:
    kind: str  # fill_mismatch | unknown_fill | unknown_at_broker | missing_at_broker | position_mismatch
    symbol: str
    ours: str
    theirs: str
    order: str = ""


@dataclass
class Report:
    portfolio: int
    broker: str
    checked: int = 0
    updated: int = 0
    recovered_fills: int = 0
    breaks: list[Break] = field(default_factory=list)
    error: str = ""
    halted: bool = False

    @property
    def clean(self) -> bool:
        return not self.breaks and not self.error

    def as_dict(self) -> dict:
        return {**asdict(self), "clean": self.clean}


def reconcile_portfolio(*, portfolio: Portfolio, actor: Actor, now: datetime | None = None,
                        broker: Broker | None = None, meta: RequestMeta | None = None) -> Report:
    now = now or timezone.now()
    with firm_scope(portfolio.firm_id):
        orders = list(Order.objects.filter(portfolio=portfolio, status__in=[s.value for s in OPEN])
                      .exclude(status=Status.RECEIVED).order_by("created_at"))
        known = set(Order.objects.filter(portfolio=portfolio).values_list("broker_client_order_id", flat=True))
        known_ids = set(Order.objects.filter(portfolio=portfolio).exclude(broker_order_id="")
                        .values_list("broker_order_id", flat=True))
        ours = {symbol: qty for symbol, qty in Position.objects.filter(portfolio=portfolio)
                .values_list("instrument__symbol", "quantity") if qty}
    broker_name = orders[0].broker if orders else ("alpaca" if portfolio.mode == "live" else "paper")
    report = Report(portfolio=portfolio.pk, broker=broker_name)
    try:
        broker = broker or _broker(portfolio, orders)
        # fills the stream may have missed (applied once: the same key as the stream's)
        since = min([o.created_at for o in orders] + [now - FILL_LOOKBACK])
        for update in broker.list_fills(after=since):
            if broker_update_apply(firm_id=portfolio.firm_id, broker=report.broker, update=update, now=now) is None:
                report.breaks.append(Break("unknown_fill", str(update.order.raw.get("symbol", "")), "unknown",
                                           str(update.execution.qty), update.order.broker_order_id))
            else:
                report.recovered_fills += 1
        with firm_scope(portfolio.firm_id):  # the recovered fills moved statuses and positions
            orders = list(Order.objects.filter(pk__in=[o.pk for o in orders]).order_by("created_at"))
            ours = {symbol: qty for symbol, qty in Position.objects.filter(portfolio=portfolio)
                    .values_list("instrument__symbol", "quantity") if qty}
        for order in orders:
            report.checked += 1
            before = order.status
            if order.status in (Status.SUBMIT_UNKNOWN, Status.SUBMITTING):
                order = reconcile_order(firm_id=portfolio.firm_id, order_id=order.pk, now=now)
                report.updated += order.status != before
                continue
            try:
                state = broker.get_by_client_order_id(order.broker_client_order_id)
            except BrokerNotFound:
                report.breaks.append(Break("missing_at_broker", order.symbol, before, "not found", str(order.pk)))
                continue
            order = apply_broker_state(firm_id=portfolio.firm_id, order_id=order.pk, state=state,
                                       broker=order.broker, now=now)
            report.updated += order.status != before
            if state.filled_qty != order.filled_qty:
                report.breaks.append(Break("fill_mismatch", order.symbol, str(order.filled_qty),
                                           str(state.filled_qty), str(order.pk)))
        for state in broker.list_orders(status="open"):
            if state.client_order_id not in known and state.broker_order_id not in known_ids:
                symbol = str(state.raw.get("symbol", ""))
                report.breaks.append(Break("unknown_at_broker", symbol, "unknown", state.status, state.broker_order_id))
        theirs = {symbol: qty for symbol, qty in broker.list_positions().items() if qty}
        for symbol in sorted(set(ours) | set(theirs)):
            if ours.get(symbol, ZERO) != theirs.get(symbol, ZERO):
                report.breaks.append(Break("position_mismatch", symbol, str(ours.get(symbol, ZERO)),
                                           str(theirs.get(symbol, ZERO))))
    except BrokerError as exc:
        report.error = f"{type(exc).__name__}: {exc.message}"
    _record(portfolio, report, actor, now, meta)
    return report


def _broker(portfolio: Portfolio, orders: list[Order]) -> Broker:
    if orders:
        return broker_for(orders[0])
    probe = Order(firm_id=portfolio.firm_id, portfolio=portfolio,
                  broker="alpaca" if portfolio.mode == "live" else "paper")
    return broker_for(probe)


def _record(portfolio: Portfolio, report: Report, actor: Actor, now: datetime, meta: RequestMeta | None) -> None:
    with firm_scope(portfolio.firm_id), transaction.atomic():
        if not report.clean:
            reason = report.error or "; ".join(f"{b.kind} {b.symbol}: ours {b.ours}, broker {b.theirs}"
                                               for b in report.breaks[:5])
            _, created = PortfolioHalt.objects.get_or_create(
                firm_id=portfolio.firm_id, portfolio=portfolio,
                defaults={"reason": reason[:500], "report": report.as_dict(), "created_at": now})
            report.halted = True
            if created:
                log.error("portfolio %s halted by reconciliation: %s", portfolio.pk, reason)
        audit_record(firm_id=portfolio.firm_id, action="orders.reconciled", actor=actor,
                     target_type="portfolios.portfolio", target_id=portfolio.pk, target_label=portfolio.name,
                     after=report.as_dict(), meta=meta, publish=not report.clean)


def portfolio_resume(*, portfolio: Portfolio, actor: Actor, meta: RequestMeta | None = None) -> None:
    """Lift a reconciliation halt after review (owners and admins). Audited with the halt's reason."""
    with firm_scope(portfolio.firm_id), transaction.atomic():
        halt = PortfolioHalt.objects.select_for_update().filter(portfolio=portfolio).first()
        if halt is None:
            raise DomainError(NOT_HALTED, f"Portfolio {portfolio.name!r} is not halted.", status_code=409)
        audit_record(firm_id=portfolio.firm_id, action="portfolio.trading_resumed", actor=actor,
                     target_type="portfolios.portfolio", target_id=portfolio.pk, target_label=portfolio.name,
                     before={"reason": halt.reason}, meta=meta)
        halt.delete()


def reconcile_live(*, now: datetime | None = None) -> dict:
    """Beat: reconcile every live portfolio that has an Alpaca account (each in its firm's scope)."""
    from apps.core.tenancy import unscoped
    from apps.orders.models import AlpacaAccount

    with unscoped():  # reviewed: the scheduled reconciler visits every firm's live portfolios, then acts per firm
        targets = list(AlpacaAccount.objects.values_list("firm_id", "portfolio_id"))
    done = breaks = 0
    for firm_id, portfolio_id in targets:
        with firm_scope(firm_id):
            portfolio = Portfolio.objects.get(pk=portfolio_id)
        report = reconcile_portfolio(portfolio=portfolio, actor=Actor.system("reconciler"), now=now)
        done += 1
        breaks += not report.clean
    return {"portfolios": done, "with_breaks": breaks}
