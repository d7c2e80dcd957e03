"""Reads for orders: the scoped lookups every door uses, and the account state the pre-trade checks need."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import F, Sum
from django.http import Http404

from apps.marketdata.models import AssetClass, Instrument
from apps.orders.checks import AccountState, InstrumentInfo, Limits, RecentOrder
from apps.orders.core import OPEN, Side, Status
from apps.orders.models import Order, PortfolioHalt, TradingControl
from apps.portfolios.lots import trade_date
from apps.portfolios.models import Fill, Portfolio, Position
from apps.portfolios.selectors import cash_balance

ZERO = Decimal(0)
OPEN_VALUES = [s.value for s in OPEN]


def order_for(firm_id: int, pk) -> Order:
    """One order of the firm, or 404 for a missing id, a malformed id and another firm's order alike."""
    try:
        return Order.objects.for_firm(firm_id).select_related("portfolio", "instrument").get(pk=pk)
    except (Order.DoesNotExist, ValueError, TypeError):
        raise Http404("No such order.") from None
    except Exception as exc:  # a malformed UUID raises ValidationError from the field
        from django.core.exceptions import ValidationError

        if isinstance(exc, ValidationError):
            raise Http404("No such order.") from None
        raise


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


def _remaining_value(order: Order) -> Decimal:
    """What an open order still commits: remaining quantity at its price estimate, or the notional left."""
    if order.qty is None:
        return max(ZERO, (order.notional or ZERO) - order.filled_value)
    price = order.reserve_price or order.limit_price or order.stop_price or ZERO
    multiplier = (order.instrument.multiplier or 100) if order.asset_class == AssetClass.OPTION else 1
    return max(ZERO, order.qty - order.filled_qty) * price * multiplier


def _still_reserved(order: Order) -> Decimal:
    """The buying power an open order still holds: what it took at submission, less the filled share
    (the fills themselves have moved the cash)."""
    if not order.reserved:
        return ZERO
    if order.qty is None:
        return max(ZERO, order.reserved - order.filled_value)
    return order.reserved * max(ZERO, order.qty - order.filled_qty) / order.qty


def account_state(*, portfolio: Portfolio, instrument: Instrument, control: TradingControl,
                  now: datetime) -> AccountState:
    """The portfolio as the checks see it. Call with the portfolio row locked (``order_submit`` does),
    so two orders cannot both spend the same buying power (reliability target 42)."""
    position = Position.objects.filter(portfolio=portfolio, instrument=instrument).values_list(
        "quantity", flat=True).first() or ZERO
    open_orders = list(Order.objects.filter(portfolio=portfolio, status__in=OPEN_VALUES, leg="")
                       .select_related("instrument"))
    reserved = sum((_still_reserved(o) for o in open_orders), ZERO)
    same = [o for o in open_orders if o.instrument_id == instrument.pk]
    open_sell = sum((o.qty - o.filled_qty for o in same if o.side == Side.SELL and o.qty is not None), ZERO)
    open_buy = sum((o.qty - o.filled_qty for o in same if o.side == Side.BUY and o.qty is not None), ZERO)
    today = trade_date(now)
    filled_today = Fill.objects.filter(portfolio=portfolio, trade_date=today).aggregate(
        total=Sum(F("quantity") * F("price") * F("multiplier")))["total"] or ZERO
    recent: tuple[RecentOrder, ...] = ()
    if control.duplicate_window_seconds:
        since = now - timedelta(seconds=control.duplicate_window_seconds)
        recent = tuple(
            RecentOrder(symbol=o.symbol, side=o.side, qty=o.qty, notional=o.notional, at=o.created_at)
            for o in Order.objects.filter(portfolio=portfolio, created_at__gte=since, leg="")
            .exclude(status__in=[Status.RISK_REJECTED, Status.REJECTED]))
    return AccountState(
        cash=cash_balance(portfolio.pk), reserved=reserved, position_qty=position, open_sell_qty=open_sell,
        open_buy_qty=open_buy, open_notional=sum((_remaining_value(o) for o in open_orders), ZERO),
        filled_notional_today=filled_today, allow_short=portfolio.allow_short,
        kill_switch=control.kill_switch or PortfolioHalt.objects.filter(portfolio=portfolio).exists(),
        recent=recent)


def open_orders(firm_id: int, *, portfolio_id: int | None = None):
    qs = Order.objects.for_firm(firm_id).filter(status__in=OPEN_VALUES)
    if portfolio_id is not None:
        qs = qs.filter(portfolio_id=portfolio_id)
    return qs
