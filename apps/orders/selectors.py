"""Reads for orders: the scoped lookups every door uses, and the account state the pre-trade checks need."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection

from apps.marketdata.models import AssetClass, Instrument
from apps.orders.checks import AccountState, InstrumentInfo, Limits, RecentOrder
from apps.orders.core import OPEN, Status
from apps.orders.models import Order, OrderEvent, TradingControl
from apps.portfolios.lots import trade_date
from apps.portfolios.models import Account, Portfolio

ZERO = Decimal(0)
OPEN_VALUES = [s.value for s in OPEN]


def instrument_info(instrument: Instrument) -> InstrumentInfo:
    multiplier = (instrument.multiplier or 100) if instrument.asset_class == AssetClass.OPTION else 1
    return InstrumentInfo(
        symbol=instrument.symbol, asset_class=instrument.asset_class, tradable=instrument.tradable,
        active=instrument.active, fractionable=instrument.fractionable, shortable=instrument.shortable,
        tick_size=instrument.tick_size, lot_size=instrument.lot_size, multiplier=multiplier)


def instrument_by_symbol(symbol: str) -> Instrument | None:
    found = list(Instrument.objects.filter(symbol=(symbol or "").strip().upper())[:2])
    return found[0] if len(found) == 1 else None


def trading_control(firm_id: int) -> TradingControl:
    control = TradingControl.objects.for_firm(firm_id).first()
    return control if control is not None else TradingControl(firm_id=firm_id)


def limits_of(control: TradingControl) -> Limits:
    return Limits(
        max_order_qty=control.max_order_qty, max_order_notional=control.max_order_notional,
        daily_notional_limit=control.daily_notional_limit, price_collar_pct=control.price_collar_pct,
        duplicate_window_seconds=control.duplicate_window_seconds,
        allow_reducing_when_halted=control.allow_reducing_when_halted)


# Everything the checks need of one portfolio, in one statement (one round trip, no ORM compiling on the
# hot path of every order). The open orders are entries, not exit legs:
# - reserved: the buying power they still hold — what each took at submission, less its filled share (the
#   fills themselves have moved the cash);
# - open_value: what they still commit — remaining quantity at the price estimate (times an option's
#   multiplier), or the notional left;
# - open_sell / open_buy: remaining quantity working on each side of this instrument.
ACCOUNT_SQL = """
SELECT
    (SELECT quantity FROM portfolios_position WHERE firm_id = %(firm)s AND portfolio_id = %(portfolio)s
        AND instrument_id = %(instrument)s),
    (SELECT COALESCE(SUM(amount), 0) FROM portfolios_journalline WHERE firm_id = %(firm)s
        AND portfolio_id = %(portfolio)s AND account = %(cash)s),
    (SELECT COALESCE(SUM(quantity * price * multiplier), 0) FROM portfolios_fill WHERE firm_id = %(firm)s
        AND portfolio_id = %(portfolio)s AND trade_date = %(today)s),
    EXISTS (SELECT 1 FROM orders_portfoliohalt WHERE firm_id = %(firm)s AND portfolio_id = %(portfolio)s),
    COALESCE(SUM(CASE WHEN o.qty IS NULL THEN GREATEST(o.reserved - o.filled_value, 0)
                      WHEN o.reserved > 0 THEN o.reserved * (o.qty - o.filled_qty) / o.qty END), 0),
    COALESCE(SUM(CASE WHEN o.qty IS NULL THEN GREATEST(o.notional - o.filled_value, 0)
                      ELSE (o.qty - o.filled_qty) * COALESCE(o.reserve_price, o.limit_price, o.stop_price, 0)
                           * COALESCE(i.multiplier, 1) END), 0),
    COALESCE(SUM(o.qty - o.filled_qty) FILTER (WHERE o.instrument_id = %(instrument)s AND o.side = 'sell'), 0),
    COALESCE(SUM(o.qty - o.filled_qty) FILTER (WHERE o.instrument_id = %(instrument)s AND o.side = 'buy'), 0)
FROM orders_order o JOIN marketdata_instrument i ON i.id = o.instrument_id
WHERE o.firm_id = %(firm)s AND o.portfolio_id = %(portfolio)s AND o.status = ANY(%(open)s) AND o.leg = ''
"""


def account_state(*, portfolio: Portfolio, instrument: Instrument, control: TradingControl,
                  now: datetime) -> AccountState:
    """The portfolio as the checks see it: one statement (``ACCOUNT_SQL``), plus the recent orders when the
    duplicate check is on. Call with the portfolio row locked (``order_submit`` does), so two orders cannot
    both spend the same buying power (reliability target 42)."""
    with connection.cursor() as cur:
        cur.execute(ACCOUNT_SQL, {"firm": portfolio.firm_id, "portfolio": portfolio.pk, "instrument": instrument.pk,
                                  "cash": Account.CASH.value, "today": trade_date(now), "open": OPEN_VALUES})
        position, cash, filled_today, halted, reserved, open_value, open_sell, open_buy = cur.fetchone()
    recent: tuple[RecentOrder, ...] = ()
    if control.duplicate_window_seconds:
        since = now - timedelta(seconds=control.duplicate_window_seconds)
        recent = tuple(
            RecentOrder(symbol=symbol, side=side, qty=qty, notional=notional, at=at)
            for symbol, side, qty, notional, at in Order.objects.filter(
                portfolio=portfolio, created_at__gte=since, leg="")
            .exclude(status__in=[Status.RISK_REJECTED, Status.REJECTED])
            .values_list("symbol", "side", "qty", "notional", "created_at"))
    return AccountState(
        cash=cash, reserved=reserved, position_qty=position if position is not None else ZERO,
        open_sell_qty=open_sell, open_buy_qty=open_buy, open_notional=open_value, filled_notional_today=filled_today,
        allow_short=portfolio.allow_short, kill_switch=control.kill_switch or halted, recent=recent)


def open_orders(firm_id: int, *, portfolio_id: int | None = None):
    qs = Order.objects.for_firm(firm_id).filter(status__in=OPEN_VALUES)
    if portfolio_id is not None:
        qs = qs.filter(portfolio_id=portfolio_id)
    return qs


# --- the blotter and the dashboard ------------------------------------------------------------------------


def portfolio_orders(portfolio: Portfolio, *, since: datetime | None = None, working: bool = False, limit: int):
    """A portfolio's orders, newest first: the working ones, or those created since ``since``."""
    qs = Order.objects.for_firm(portfolio.firm_id).filter(portfolio=portfolio).select_related("portfolio")
    if working:
        qs = qs.filter(status__in=OPEN_VALUES)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return list(qs.order_by("-created_at", "id")[:limit])


def executions(firm_id: int, *, portfolio_ids, since: datetime | None = None, limit: int) -> list[OrderEvent]:
    """The firm's executions (order events with an exec id) in these portfolios, newest first."""
    qs = OrderEvent.objects.for_firm(firm_id).filter(portfolio_id__in=portfolio_ids).exclude(exec_id="")
    if since is not None:
        qs = qs.filter(event_at__gte=since)
    return list(qs.select_related("portfolio").order_by("-event_at", "-id")[:limit])


def visible_open_orders(membership, *, limit: int) -> list[Order]:
    """Open orders of the portfolios the member may view, newest first (the dashboard)."""
    from apps.portfolios.selectors import portfolios_visible

    visible = portfolios_visible(membership).values("pk")
    return list(Order.objects.for_firm(membership.firm_id).filter(portfolio_id__in=visible, status__in=OPEN_VALUES)
                .select_related("portfolio").order_by("-created_at", "id")[:limit])
