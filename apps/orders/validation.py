"""Structural validation of an order request (pure; no ORM): Alpaca's request rules (ALPACA_ORDERS.md c.5).

``validate_spec`` answers "is this a well-formed order for this instrument?" without looking at the
market or the account; it returns ``{field: [message, ...]}`` and ``{}`` when the request is valid, so
the API can answer a 400 that names each field. ``check_stop_side`` holds the rules that need the
current price (a stop on the wrong side of the market, bracket legs of an entry without a limit price).
Risk (money, limits, grids, the kill switch) is apps.orders.checks' job, not this module's.

Choices beyond the letter of c.5, each Alpaca's own behaviour:
- an unknown symbol (``instrument is None``) is reported on ``symbol``; the asset-class rules are then
  skipped, the rest still run;
- ``opg``/``cls`` (auction) orders must be market or limit (MOO/LOO, MOC/LOC);
- fractional or notional equity/ETF orders must be ``day``;
- a trailing stop is a single order (``order_class`` simple) with ``day`` or ``gtc``;
- ``extended_hours`` needs a simple limit order with ``day``;
- an oco order may omit ``limit_price`` (its take-profit leg carries it, as in alpaca-py); when given it
  must equal ``take_profit.limit_price``. A sell oco (closing a long) needs its take-profit above its
  stop-loss, a buy oco (closing a short) below;
- the bracket/oto distance rule (take-profit at least 0.01 beyond the base, stop-loss at least 0.01
  short of it) uses the entry's limit price; with no entry limit it waits for ``check_stop_side`` and
  the current price.

Messages are constants or the small functions below, so tests assert them exactly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from apps.orders.core import OrderClass, OrderSpec, OrderType, Side, TimeInForce

if TYPE_CHECKING:
    from apps.orders.checks import InstrumentInfo

Errors = dict[str, list[str]]

T, F, C = OrderType, TimeInForce, OrderClass
ALL_TYPES = (T.MARKET, T.LIMIT, T.STOP, T.STOP_LIMIT, T.TRAILING_STOP)
TYPES_BY_ASSET_CLASS: dict[str, tuple[OrderType, ...]] = {
    "equity": ALL_TYPES,
    "etf": ALL_TYPES,
    "option": (T.MARKET, T.LIMIT, T.STOP, T.STOP_LIMIT),
    "crypto": (T.MARKET, T.LIMIT, T.STOP_LIMIT),
}
TIFS_BY_ASSET_CLASS: dict[str, tuple[TimeInForce, ...]] = {
    "equity": (F.DAY, F.GTC, F.OPG, F.CLS, F.IOC, F.FOK),
    "etf": (F.DAY, F.GTC, F.OPG, F.CLS, F.IOC, F.FOK),
    "option": (F.DAY,),
    "crypto": (F.GTC, F.IOC),
}
CLASSES_BY_ASSET_CLASS: dict[str, tuple[OrderClass, ...]] = {
    "equity": (C.SIMPLE, C.BRACKET, C.OCO, C.OTO),
    "etf": (C.SIMPLE, C.BRACKET, C.OCO, C.OTO),
    "option": (C.SIMPLE,),
    "crypto": (C.SIMPLE,),
}
NOTIONAL_ASSET_CLASSES = ("equity", "etf", "crypto")
EQUITY_LIKE = ("equity", "etf")
NEEDS_LIMIT = (T.LIMIT, T.STOP_LIMIT)
NEEDS_STOP = (T.STOP, T.STOP_LIMIT)
LEG_CLASSES = (C.BRACKET, C.OCO, C.OTO)
MAX_CLIENT_ORDER_ID = 128
MIN_LEG_DISTANCE = Decimal("0.01")

UNKNOWN_SYMBOL = "Unknown symbol: no instrument has this symbol."
QTY_OR_NOTIONAL = "Give qty or notional."
QTY_AND_NOTIONAL = "Give qty or notional, not both."
NOTIONAL_MARKET_ONLY = "notional is allowed only on market orders."
NOTIONAL_ASSET_CLASS = "notional is allowed only on equities, ETFs and crypto."
FRACTIONAL_DAY_ONLY = "Fractional and notional equity orders must use time_in_force day."
AUCTION_TYPES = "time_in_force opg and cls take only market and limit orders."
TRAIL_ONE_OF = "A trailing_stop order needs exactly one of trail_price and trail_percent."
TRAIL_PERCENT_RANGE = "trail_percent must be greater than 0 and less than 100."
TRAIL_TIF = "A trailing_stop order must use time_in_force day or gtc."
TRAIL_SIMPLE_ONLY = "A trailing_stop order is a single order: order_class must be simple."
EXTENDED_HOURS = "extended_hours is allowed only on simple limit orders with time_in_force day."
BRACKET_TIF = "A bracket order must use time_in_force day or gtc."
OCO_TYPE = "An oco order must be of type limit."
OTO_ONE_LEG = "An oto order takes exactly one of take_profit and stop_loss."
TAKE_PROFIT_LIMIT_REQUIRED = "take_profit.limit_price is required."
STOP_LOSS_STOP_REQUIRED = "stop_loss.stop_price is required."
TAKE_PROFIT_STOP = "take_profit.stop_price is not allowed: a take-profit leg is a limit order."
CLIENT_ORDER_ID_TOO_LONG = f"client_order_id must be at most {MAX_CLIENT_ORDER_ID} characters."


def must_be_positive(field: str) -> str:
    return f"{field} must be greater than 0."


def must_be_finite(field: str) -> str:
    return f"{field} must be a finite number."


def required_for(field: str, order_type: str) -> str:
    return f"{field} is required on {order_type} orders."


def not_allowed_on(field: str, order_type: str) -> str:
    return f"{field} is not allowed on {order_type} orders."


def type_not_allowed(asset_class: str, order_type: str) -> str:
    allowed = ", ".join(TYPES_BY_ASSET_CLASS[asset_class])
    return f"type {order_type} is not allowed for {asset_class} (allowed: {allowed})."


def tif_not_allowed(asset_class: str, tif: str) -> str:
    allowed = ", ".join(TIFS_BY_ASSET_CLASS[asset_class])
    return f"time_in_force {tif} is not allowed for {asset_class} (allowed: {allowed})."


def class_not_allowed(asset_class: str, order_class: str) -> str:
    allowed = ", ".join(CLASSES_BY_ASSET_CLASS[asset_class])
    return f"order_class {order_class} is not allowed for {asset_class} (allowed: {allowed})."


def unknown_asset_class(asset_class: str) -> str:
    return f"Instruments of asset class {asset_class!r} cannot be traded."


def leg_required(leg: str, order_class: str) -> str:
    return f"{leg} is required on {order_class} orders."


def leg_not_allowed(leg: str) -> str:
    return f"{leg} is allowed only on bracket, oco and oto orders."


def oco_limit_mismatch(take_profit: Decimal) -> str:
    return f"limit_price of an oco order must equal take_profit.limit_price ({take_profit})."


def oco_leg_order(side: str, take_profit: Decimal, stop_loss: Decimal) -> str:
    where = "above" if side == Side.SELL else "below"
    return (f"take_profit.limit_price {take_profit} must be {where} stop_loss.stop_price {stop_loss} "
            f"on a {side} oco order.")


def leg_too_close(field: str, side: str, bound: Decimal, base: Decimal, base_name: str) -> str:
    at_least = (field == "take_profit.limit_price") == (side == Side.BUY)
    rule = f"at least {bound} ({base_name} {base} + 0.01)" if at_least else f"at most {bound} ({base_name} {base} - 0.01)"
    return f"{field} must be {rule} on a {side} order."


def stop_wrong_side(side: str, stop: Decimal, reference: Decimal) -> str:
    where = "above" if side == Side.BUY else "below"
    return f"stop_price {stop} must be {where} the current price {reference} on a {side} stop order."


def validate_spec(spec: OrderSpec, instrument: InstrumentInfo | None) -> Errors:
    """Every structural problem of ``spec`` for ``instrument`` as ``{field: [message, ...]}``; ``{}`` = valid.

    Leg fields are reported as ``take_profit.limit_price``, ``stop_loss.stop_price`` and so on.
    """
    errors: Errors = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    order_type, tif, order_class = spec.type, spec.time_in_force, spec.order_class
    asset_class = None
    if instrument is None:
        add("symbol", UNKNOWN_SYMBOL)
    elif instrument.asset_class not in TYPES_BY_ASSET_CLASS:
        add("symbol", unknown_asset_class(instrument.asset_class))
    else:
        asset_class = instrument.asset_class

    # quantity: qty xor notional, positive
    qty, notional = spec.qty, spec.notional
    if qty is None and notional is None:
        add("qty", QTY_OR_NOTIONAL)
    elif qty is not None and notional is not None:
        add("notional", QTY_AND_NOTIONAL)
    for name, value in (("qty", qty), ("notional", notional)):
        _positive(add, name, value)
    if notional is not None:
        if order_type != T.MARKET:
            add("notional", NOTIONAL_MARKET_ONLY)
        if asset_class is not None and asset_class not in NOTIONAL_ASSET_CLASSES:
            add("notional", NOTIONAL_ASSET_CLASS)
    if asset_class in EQUITY_LIKE and tif != F.DAY and (
            notional is not None or (qty is not None and qty.is_finite() and qty != qty.to_integral_value())):
        add("time_in_force", FRACTIONAL_DAY_ONLY)

    # prices that belong (or not) to the order type
    oco = order_class == C.OCO
    _price_field(add, "limit_price", spec.limit_price, order_type, order_type in NEEDS_LIMIT and not oco,
                 order_type in NEEDS_LIMIT)
    _price_field(add, "stop_price", spec.stop_price, order_type, order_type in NEEDS_STOP, order_type in NEEDS_STOP)
    trailing = order_type == T.TRAILING_STOP
    _price_field(add, "trail_price", spec.trail_price, order_type, False, trailing)
    if spec.trail_percent is not None:
        if not trailing:
            add("trail_percent", not_allowed_on("trail_percent", order_type))
        elif not spec.trail_percent.is_finite():
            add("trail_percent", must_be_finite("trail_percent"))
        elif not 0 < spec.trail_percent < 100:
            add("trail_percent", TRAIL_PERCENT_RANGE)
    if trailing:
        if (spec.trail_price is None) == (spec.trail_percent is None):
            add("trail_price", TRAIL_ONE_OF)
        if tif not in (F.DAY, F.GTC):
            add("time_in_force", TRAIL_TIF)
        if order_class != C.SIMPLE:
            add("order_class", TRAIL_SIMPLE_ONLY)

    # per asset class
    if asset_class is not None:
        if order_type not in TYPES_BY_ASSET_CLASS[asset_class]:
            add("type", type_not_allowed(asset_class, order_type))
        if tif not in TIFS_BY_ASSET_CLASS[asset_class]:
            add("time_in_force", tif_not_allowed(asset_class, tif))
        if order_class not in CLASSES_BY_ASSET_CLASS[asset_class]:
            add("order_class", class_not_allowed(asset_class, order_class))
    if tif in (F.OPG, F.CLS) and order_type not in (T.MARKET, T.LIMIT):
        add("time_in_force", AUCTION_TYPES)
    if spec.extended_hours and (order_type != T.LIMIT or tif != F.DAY or order_class != C.SIMPLE):
        add("extended_hours", EXTENDED_HOURS)

    _validate_legs(add, spec)

    if len(spec.client_order_id) > MAX_CLIENT_ORDER_ID:
        add("client_order_id", CLIENT_ORDER_ID_TOO_LONG)
    return errors


def check_stop_side(spec: OrderSpec, reference: Decimal | None) -> Errors:
    """The rules that need the current price ``reference`` (``{}`` when it is unknown):

    - a buy stop (or stop_limit) must have its stop above the current price, a sell stop below it
      (otherwise it would trigger at once: a fat-finger, not a stop);
    - a bracket or oto entry without a limit price takes the current price as the base of its legs
      (take-profit at least 0.01 beyond it, stop-loss at least 0.01 short of it).
    """
    if reference is None:
        return {}
    errors: Errors = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    stop = spec.stop_price
    if spec.type in NEEDS_STOP and stop is not None and stop.is_finite():
        wrong = stop <= reference if spec.side == Side.BUY else stop >= reference
        if wrong:
            add("stop_price", stop_wrong_side(spec.side, stop, reference))
    if spec.order_class in (C.BRACKET, C.OTO) and spec.limit_price is None:
        _leg_distance(add, spec, reference, "the current price")
    return errors


def _positive(add, name: str, value: Decimal | None) -> bool:
    if value is None:
        return False
    if not value.is_finite():
        add(name, must_be_finite(name))
        return False
    if value <= 0:
        add(name, must_be_positive(name))
        return False
    return True


def _price_field(add, name: str, value: Decimal | None, order_type: str, required: bool, allowed: bool) -> None:
    if value is None:
        if required:
            add(name, required_for(name, order_type))
    elif not allowed:
        add(name, not_allowed_on(name, order_type))
    else:
        _positive(add, name, value)


def _validate_legs(add, spec: OrderSpec) -> None:
    order_class, take_profit, stop_loss = spec.order_class, spec.take_profit, spec.stop_loss
    if order_class not in LEG_CLASSES:
        if take_profit is not None:
            add("take_profit", leg_not_allowed("take_profit"))
        if stop_loss is not None:
            add("stop_loss", leg_not_allowed("stop_loss"))
        return
    legs_ok = True
    if order_class == C.OTO:
        if (take_profit is None) == (stop_loss is None):
            add("order_class", OTO_ONE_LEG)
            legs_ok = False
    else:
        for name, leg in (("take_profit", take_profit), ("stop_loss", stop_loss)):
            if leg is None:
                add(name, leg_required(name, order_class))
                legs_ok = False
    if take_profit is not None:
        if take_profit.limit_price is None:
            add("take_profit.limit_price", TAKE_PROFIT_LIMIT_REQUIRED)
            legs_ok = False
        elif not _positive(add, "take_profit.limit_price", take_profit.limit_price):
            legs_ok = False
        if take_profit.stop_price is not None:
            add("take_profit.stop_price", TAKE_PROFIT_STOP)
    if stop_loss is not None:
        if stop_loss.stop_price is None:
            add("stop_loss.stop_price", STOP_LOSS_STOP_REQUIRED)
            legs_ok = False
        elif not _positive(add, "stop_loss.stop_price", stop_loss.stop_price):
            legs_ok = False
        if stop_loss.limit_price is not None and not _positive(add, "stop_loss.limit_price", stop_loss.limit_price):
            legs_ok = False

    if order_class == C.BRACKET and spec.time_in_force not in (F.DAY, F.GTC):
        add("time_in_force", BRACKET_TIF)
    if order_class == C.OCO:
        if spec.type != T.LIMIT:
            add("type", OCO_TYPE)
        if legs_ok:
            tp, sl = take_profit.limit_price, stop_loss.stop_price
            if (tp <= sl) if spec.side == Side.SELL else (tp >= sl):
                add("take_profit.limit_price", oco_leg_order(spec.side, tp, sl))
            limit = spec.limit_price
            if limit is not None and limit.is_finite() and limit != tp:
                add("limit_price", oco_limit_mismatch(tp))
    elif legs_ok and spec.limit_price is not None and spec.limit_price.is_finite() and spec.limit_price > 0:
        _leg_distance(add, spec, spec.limit_price, "the entry limit price")


def _leg_distance(add, spec: OrderSpec, base: Decimal, base_name: str) -> None:
    """Alpaca's bracket rule, mirrored for sells: for a buy, take_profit.limit_price >= base + 0.01 and
    stop_loss.stop_price <= base - 0.01. Legs already reported invalid are skipped."""
    buy = spec.side == Side.BUY
    up, down = base + MIN_LEG_DISTANCE, base - MIN_LEG_DISTANCE
    tp = spec.take_profit.limit_price if spec.take_profit is not None else None
    sl = spec.stop_loss.stop_price if spec.stop_loss is not None else None
    if tp is not None and tp.is_finite() and tp > 0 and ((tp < up) if buy else (tp > down)):
        add("take_profit.limit_price", leg_too_close("take_profit.limit_price", spec.side, up if buy else down,
                                                     base, base_name))
    if sl is not None and sl.is_finite() and sl > 0 and ((sl > down) if buy else (sl < up)):
        add("stop_loss.stop_price", leg_too_close("stop_loss.stop_price", spec.side, down if buy else up,
                                                  base, base_name))
