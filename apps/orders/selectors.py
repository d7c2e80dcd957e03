"""Reads for orders: the scoped lookups every door uses, and the account state the pre-trade checks need."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.http import Http404

from apps.core.models import ExactDecimalField
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


def _open_totals(portfolio: Portfolio, instrument: Instrument) -> dict[str, Decimal]:
    """The portfolio's open orders (entries, not exit legs), summed in one query however many there are:

    * ``reserved``: the buying power they still hold — what each took at submission, less its filled share
      (the fills themselves have moved the cash);
    * ``open_value``: what they still commit — remaining quantity at the price estimate (times an option's
      multiplier), or the notional left;
    * ``open_sell`` / ``open_buy``: remaining quantity working on each side of this instrument."""
    money = ExactDecimalField()
    zero = Value(ZERO, output_field=money)
    remaining = ExpressionWrapper(F("qty") - F("filled_qty"), output_field=money)
    price = Coalesce("reserve_price", "limit_price", "stop_price", zero, output_field=money)
    multiplier = Coalesce(F("instrument__multiplier"), Value(1), output_field=money)
    by_qty, by_notional = Q(qty__isnull=False), Q(qty__isnull=True)
    totals = Order.objects.filter(portfolio=portfolio, status__in=OPEN_VALUES, leg="").aggregate(
        reserved_qty=Sum(F("reserved") * remaining / F("qty"), filter=by_qty & Q(reserved__gt=0), output_field=money),
        reserved_notional=Sum(Greatest(F("reserved") - F("filled_value"), zero), filter=by_notional,
                              output_field=money),
        value_qty=Sum(remaining * price * multiplier, filter=by_qty, output_field=money),
        value_notional=Sum(Greatest(F("notional") - F("filled_value"), zero), filter=by_notional, output_field=money),
        open_sell=Sum(remaining, filter=by_qty & Q(instrument=instrument, side=Side.SELL), output_field=money),
        open_buy=Sum(remaining, filter=by_qty & Q(instrument=instrument, side=Side.BUY), output_field=money),
    )
    t = {k: v or ZERO for k, v in totals.items()}
    return {"reserved": t["reserved_qty"] + t["reserved_notional"], "open_value": t["value_qty"] + t["value_notional"],
            "open_sell": t["open_sell"], "open_buy": t["open_buy"]}


def account_state(*, portfolio: Portfolio, instrument: Instrument, control: TradingControl,
                  now: datetime) -> AccountState:
    """The portfolio as the checks see it, in a fixed number of queries. Call with the portfolio row locked
    (``order_submit`` does), so two orders cannot both spend the same buying power (reliability target 42)."""
    position = Position.objects.filter(portfolio=portfolio, instrument=instrument).values_list(
        "quantity", flat=True).first() or ZERO
    totals = _open_totals(portfolio, instrument)
    today = trade_date(now)
    filled_today = Fill.objects.filter(portfolio=portfolio, trade_date=today).aggregate(
        total=Sum(F("quantity") * F("price") * F("multiplier")))["total"] or ZERO
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
        cash=cash_balance(portfolio.pk), reserved=totals["reserved"], position_qty=position,
        open_sell_qty=totals["open_sell"], open_buy_qty=totals["open_buy"], open_notional=totals["open_value"],
        filled_notional_today=filled_today, allow_short=portfolio.allow_short,
        kill_switch=control.kill_switch or PortfolioHalt.objects.filter(portfolio=portfolio).exists(),
        recent=recent)


def open_orders(firm_id: int, *, portfolio_id: int | None = None):
    qs = Order.objects.for_firm(firm_id).filter(status__in=OPEN_VALUES)
    if portfolio_id is not None:
        qs = qs.filter(portfolio_id=portfolio_id)
    return qs
