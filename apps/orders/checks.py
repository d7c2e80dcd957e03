"""Pre-trade risk checks (pure; no ORM): one order against one portfolio's state, the market and the limits.

The shell (apps.orders.services) reads an ``AccountState`` under the portfolio's row lock, a ``MarketView``
and the firm's ``Limits``, calls ``run_checks`` and stores ``result.first`` on a rejected order; the
backtester calls the same function. ``run_checks`` assumes a spec that passed
``apps.orders.validation.validate_spec`` (qty xor notional, positive prices, the fields its type needs).

Every check runs, so a ticket preview can show every problem; rejections come in this fixed order
(``CHECK_ORDER``), one per offending field where a check looks at several prices:

 1. TRADING_HALTED            kill switch on and the order is not a risk-reducing close let through
                              by ``limits.allow_reducing_when_halted``
 2. INSTRUMENT_NOT_TRADABLE   ``instrument.tradable`` or ``instrument.active`` is false
 3. QTY_NOT_ON_LOT_GRID       qty not a multiple of ``lot_size`` (instrument not fractionable)
 4. PRICE_NOT_ON_TICK_GRID    limit/stop prices (and bracket leg prices) not multiples of the tick;
                              equities and ETFs priced below $1.00 may use $0.0001 (Alpaca's sub-penny rule)
 5. FRACTIONAL_NOT_ALLOWED    a non-whole qty, or any notional order, on a non-fractionable instrument
                              (for a whole ``lot_size``; a fractional lot size reports the lot grid instead)
 6. NO_FRESH_QUOTE            a market or trailing-stop order (which executes at the market's price) has
                              no fresh quote with a usable price on its side
 7. PRICE_COLLAR              limit_price or stop_price more than ``price_collar_pct`` % from the reference
 8. LIMIT_QTY                 qty (estimated qty for a notional order) above ``max_order_qty``
 9. LIMIT_NOTIONAL            estimated notional above ``max_order_notional``
10. LIMIT_CREDIT              estimated notional + open orders' notional + today's filled notional above
                              ``daily_notional_limit`` (gross: every order counts, closes too)
11. INSUFFICIENT_BUYING_POWER buying power used above ``cash - reserved``
12. SHORT_NOT_ALLOWED         a sell beyond the shares available opens a short; the portfolio forbids it
13. NOT_SHORTABLE             ... and the instrument is not shortable
14. DUPLICATE_ORDER           same symbol, side and qty (or notional) as a recent order placed within the
                              window either side of ``now`` (a little clock skew between workers is tolerated)

Prices (the choices, Alpaca's where it has one):
- The estimated price is the order's own price when it has one: limit price for limit and stop_limit,
  stop price for stop. Market orders use the far side of a fresh quote (ask for buys, bid for sells),
  else its last trade. A buy trailing stop uses that price plus the trail (its initial stop, the highest
  it can trigger at); a sell trailing stop uses the current price (its stop only moves up).
  A notional order's qty is estimated as notional / (price x multiplier); its notional is exact.
- Estimated notional = qty x price x multiplier.
- Buying power (a cash account): a buy uses its estimated notional; a sell uses nothing for the shares
  available to close (``position_qty - open_sell_qty``) and, for the part beyond them (a short open),
  qty x MAX(price, ask x 1.03) x multiplier (Alpaca's short valuation; the last trade stands in for a
  missing ask; the quote's ask is used fresh or not, since a limit sell short has its own price anyway). ``CheckResult.buying_power_used`` is what the shell should reserve.
- The collar's reference is the quote's last trade, else its bid/ask midpoint. A stale quote still serves
  as the collar's reference (a fat-finger guard against the last known price beats none); with no quote
  at all (or one without prices) a limit or stop order is not collared, and is still checked for limits
  and buying power at its own price. Bracket leg prices are not collared (a take-profit far away is a choice).
- Risk-reducing: a qty order that fits in what the position can absorb without crossing zero, counting
  the orders already working on that side (a sell <= position - open sells; a buy <= -position - open buys).
  Notional orders are never counted as risk-reducing (their qty is an estimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from apps.orders.core import OrderSpec, OrderType, Quote, Side

EQUITY, ETF, OPTION, CRYPTO = "equity", "etf", "option", "crypto"  # apps.marketdata.models.AssetClass values
EQUITY_LIKE = (EQUITY, ETF)

TRADING_HALTED = "TRADING_HALTED"
INSTRUMENT_NOT_TRADABLE = "INSTRUMENT_NOT_TRADABLE"
QTY_NOT_ON_LOT_GRID = "QTY_NOT_ON_LOT_GRID"
PRICE_NOT_ON_TICK_GRID = "PRICE_NOT_ON_TICK_GRID"
FRACTIONAL_NOT_ALLOWED = "FRACTIONAL_NOT_ALLOWED"
NO_FRESH_QUOTE = "NO_FRESH_QUOTE"
PRICE_COLLAR = "PRICE_COLLAR"
LIMIT_QTY = "LIMIT_QTY"
LIMIT_NOTIONAL = "LIMIT_NOTIONAL"
LIMIT_CREDIT = "LIMIT_CREDIT"
INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
NOT_SHORTABLE = "NOT_SHORTABLE"
DUPLICATE_ORDER = "DUPLICATE_ORDER"
CHECK_ORDER = (TRADING_HALTED, INSTRUMENT_NOT_TRADABLE, QTY_NOT_ON_LOT_GRID, PRICE_NOT_ON_TICK_GRID,
               FRACTIONAL_NOT_ALLOWED, NO_FRESH_QUOTE, PRICE_COLLAR, LIMIT_QTY, LIMIT_NOTIONAL, LIMIT_CREDIT,
               INSUFFICIENT_BUYING_POWER, SHORT_NOT_ALLOWED, NOT_SHORTABLE, DUPLICATE_ORDER)

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
SUB_DOLLAR_TICK = Decimal("0.0001")
SHORT_VALUATION = Decimal("1.03")  # Alpaca values a short sale at MAX(limit, ask + 3%)
_DISPLAY = Decimal("0.0001")
_CENT = Decimal("0.01")

_BUY, _MARKET, _LIMIT, _STOP, _STOP_LIMIT, _TRAILING = (Side.BUY, OrderType.MARKET, OrderType.LIMIT, OrderType.STOP,
                                                        OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    symbol: str
    asset_class: str  # "equity" | "etf" | "option" | "crypto"
    tradable: bool = True
    active: bool = True
    fractionable: bool = False
    shortable: bool = False
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("1")
    multiplier: int = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Per firm (later per portfolio); ``None`` = no limit."""

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    daily_notional_limit: Decimal | None = None  # this order + open orders + today's filled notional
    price_collar_pct: Decimal = Decimal("10")  # limit/stop prices within this % of the reference price
    duplicate_window_seconds: int = 0  # 0 = off
    allow_reducing_when_halted: bool = True  # the kill switch still lets risk-reducing closes through


@dataclass(frozen=True, slots=True)
class RecentOrder:
    symbol: str
    side: str
    qty: Decimal | None
    notional: Decimal | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AccountState:
    """One portfolio, as the shell reads it under a row lock."""

    cash: Decimal  # cash available (journal balance)
    reserved: Decimal = Decimal(0)  # buying power held by open buy orders (and short-sale opens)
    position_qty: Decimal = Decimal(0)  # signed position in THIS instrument
    open_sell_qty: Decimal = Decimal(0)  # working sells in this instrument
    open_buy_qty: Decimal = Decimal(0)  # working buys in this instrument
    open_notional: Decimal = Decimal(0)  # all open orders' notional, for the credit limit
    filled_notional_today: Decimal = Decimal(0)
    allow_short: bool = False
    kill_switch: bool = False
    recent: tuple[RecentOrder, ...] = ()


@dataclass(frozen=True, slots=True)
class MarketView:
    quote: Quote | None
    fresh: bool  # the shell decides staleness


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str  # one of CHECK_ORDER
    message: str  # human message naming the numbers
    field: str = ""  # the request field it concerns, when one does


@dataclass(frozen=True, slots=True)
class CheckResult:
    rejections: tuple[Rejection, ...]
    estimated_price: Decimal | None  # the price used for the notional
    estimated_notional: Decimal | None  # qty x price x multiplier, or the notional of a notional order
    buying_power_after: Decimal | None  # cash - reserved - buying_power_used
    reduces_risk: bool  # the order only reduces the existing position
    estimated_qty: Decimal | None = None  # qty, or notional / (price x multiplier) for a notional order
    buying_power_used: Decimal | None = None  # what the order takes from buying power: what to reserve

    @property
    def ok(self) -> bool:
        return not self.rejections

    @property
    def first(self) -> Rejection | None:
        return self.rejections[0] if self.rejections else None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.rejections)


def order_cost(spec: OrderSpec, instrument: InstrumentInfo, market: MarketView) -> tuple[Decimal | None, Decimal | None]:
    """The estimated ``(price, notional)`` of ``spec`` (see the module docstring); ``None`` where the market's
    price is needed and there is no fresh quote to give it (a notional order keeps its notional)."""
    quote = market.quote if market.fresh else None
    price, notional, _ = _estimate(spec, instrument, quote)
    return price, notional


def run_checks(spec: OrderSpec, instrument: InstrumentInfo, account: AccountState, market: MarketView,
               limits: Limits, *, now: datetime) -> CheckResult:
    """Run every pre-trade check on ``spec`` and collect the rejections in ``CHECK_ORDER`` order."""
    rejections: list[Rejection] = []
    add = rejections.append
    quote = market.quote
    price, notional, qty = _estimate(spec, instrument, quote if market.fresh else None)
    buy = spec.side == _BUY
    order_type = spec.type
    multiplier = instrument.multiplier

    # what the position absorbs without opening exposure, net of the working orders on the same side
    closable = (-account.position_qty - account.open_buy_qty) if buy else (account.position_qty - account.open_sell_qty)
    if closable < 0:
        closable = ZERO
    reduces = spec.qty is not None and spec.qty <= closable
    opening = None if qty is None else (qty - closable if qty > closable else ZERO)

    # 1. kill switch
    if account.kill_switch and not (reduces and limits.allow_reducing_when_halted):
        add(Rejection(TRADING_HALTED, _halted_message(limits.allow_reducing_when_halted)))
    # 2. instrument
    if not instrument.tradable or not instrument.active:
        add(Rejection(INSTRUMENT_NOT_TRADABLE, f"{instrument.symbol} is "
                      + ("not tradable." if not instrument.tradable else "no longer active."), "symbol"))
    # 3-5. grids
    fractional: Rejection | None = None
    if not instrument.fractionable:
        lot = instrument.lot_size
        if spec.qty is None:
            fractional = Rejection(FRACTIONAL_NOT_ALLOWED, f"{instrument.symbol} does not trade fractional "
                                   "quantities: a notional order needs a fractionable instrument.", "notional")
        elif not _on_grid(spec.qty, lot):
            if lot == lot.to_integral_value() and spec.qty != spec.qty.to_integral_value():
                fractional = Rejection(FRACTIONAL_NOT_ALLOWED, f"{instrument.symbol} does not trade fractional "
                                       f"quantities: qty {spec.qty} is not a whole number.", "qty")
            else:
                add(Rejection(QTY_NOT_ON_LOT_GRID, f"qty {spec.qty} is not a multiple of the lot size {lot}.", "qty"))
    for field, value in _prices(spec):
        tick = instrument.tick_size
        if value < ONE and instrument.asset_class in EQUITY_LIKE and SUB_DOLLAR_TICK < tick:
            tick = SUB_DOLLAR_TICK
        if not _on_grid(value, tick):
            add(Rejection(PRICE_NOT_ON_TICK_GRID, f"{field} {value} is not a multiple of the tick size {tick}.", field))
    if fractional is not None:
        add(fractional)
    # 6. a price to execute at
    if price is None and (order_type == _MARKET or order_type == _TRAILING):
        add(Rejection(NO_FRESH_QUOTE, f"No fresh quote for {instrument.symbol}: a {order_type} order needs the "
                                      "current market price."))
    # 7. collar
    if quote is not None and (spec.limit_price is not None or spec.stop_price is not None):
        reference = _collar_reference(quote)
        if reference is not None:
            pct = limits.price_collar_pct
            for field, value in (("limit_price", spec.limit_price), ("stop_price", spec.stop_price)):
                if value is not None and abs(value - reference) * HUNDRED > pct * reference:
                    away = _percent(abs(value - reference) * HUNDRED / reference)
                    add(Rejection(PRICE_COLLAR, f"{field} {value} is {away}% away from the reference price "
                                                f"{reference}; the collar is {pct}%.", field))
    # 8-10. per-order and daily limits
    if limits.max_order_qty is not None and qty is not None and qty > limits.max_order_qty:
        what = f"qty {qty}" if spec.qty is not None else f"Estimated qty {_show(qty)}"
        add(Rejection(LIMIT_QTY, f"{what} exceeds the maximum order quantity {limits.max_order_qty}.",
                      "qty" if spec.qty is not None else "notional"))
    if limits.max_order_notional is not None and notional is not None and notional > limits.max_order_notional:
        add(Rejection(LIMIT_NOTIONAL, f"Order notional {_show(notional)} exceeds the maximum order notional "
                                      f"{limits.max_order_notional}."))
    if limits.daily_notional_limit is not None and notional is not None:
        total = notional + account.open_notional + account.filled_notional_today
        if total > limits.daily_notional_limit:
            add(Rejection(LIMIT_CREDIT, f"Order notional {_show(notional)} + open orders {account.open_notional} + "
                                        f"filled today {account.filled_notional_today} = {_show(total)} exceeds the "
                                        f"daily notional limit {limits.daily_notional_limit}."))
    # 11. buying power
    if buy:
        used = notional
    elif opening is None:
        used = None
    elif opening:
        used = None if price is None else opening * _short_price(price, quote) * multiplier
    else:
        used = ZERO
    power = account.cash - account.reserved
    after = None if used is None else power - used
    if after is not None and after < 0:
        add(Rejection(INSUFFICIENT_BUYING_POWER, f"The order needs {_show(used)} of buying power; "
                                                 f"{power} is available (cash {account.cash} - reserved "
                                                 f"{account.reserved})."))
    # 12-13. shorting
    if opening and not buy:
        shorted = f"selling {_show(qty)} with {closable} available would open a short of {_show(opening)}"
        field = "qty" if spec.qty is not None else "notional"
        if not account.allow_short:
            add(Rejection(SHORT_NOT_ALLOWED, f"This portfolio does not allow short selling: {shorted}.", field))
        if not instrument.shortable:
            add(Rejection(NOT_SHORTABLE, f"{instrument.symbol} is not shortable: {shorted}.", field))
    # 14. duplicates
    window = limits.duplicate_window_seconds
    if window and account.recent:
        duplicate = _duplicate(spec, account.recent, now, timedelta(seconds=window))
        if duplicate is not None:
            amount = f"{spec.qty}" if spec.qty is not None else f"notional {spec.notional}"
            age = (now - duplicate.at).total_seconds()
            add(Rejection(DUPLICATE_ORDER, f"The same order ({spec.side} {amount} {spec.symbol}) was placed "
                                           f"{age:g} s ago; the duplicate window is {window} s."))
    return CheckResult(tuple(rejections), price, notional, after, reduces, qty, used)


def _estimate(spec: OrderSpec, instrument: InstrumentInfo,
              quote: Quote | None) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(price, notional, qty); ``quote`` is the fresh quote or None."""
    order_type = spec.type
    if order_type == _LIMIT or order_type == _STOP_LIMIT:
        price = spec.limit_price
    elif order_type == _STOP:
        price = spec.stop_price
    else:  # market or trailing stop: the market's price
        price = None
        if quote is not None:
            buy = spec.side == _BUY
            price = _positive(quote.ask if buy else quote.bid) or _positive(quote.last)
            if price is not None and order_type == _TRAILING and buy:
                if spec.trail_price is not None:
                    price = price + spec.trail_price
                elif spec.trail_percent is not None:
                    price = price * (HUNDRED + spec.trail_percent) / HUNDRED
    multiplier = instrument.multiplier
    if spec.qty is not None:
        qty = spec.qty
        notional = None if price is None else qty * price * multiplier
    else:
        notional = spec.notional
        qty = None if price is None or notional is None else notional / (price * multiplier)
    return price, notional, qty


def _positive(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value > 0 else None


def _prices(spec: OrderSpec) -> list[tuple[str, Decimal]]:
    prices = []
    if spec.limit_price is not None:
        prices.append(("limit_price", spec.limit_price))
    if spec.stop_price is not None:
        prices.append(("stop_price", spec.stop_price))
    if spec.take_profit is not None and spec.take_profit.limit_price is not None:
        prices.append(("take_profit.limit_price", spec.take_profit.limit_price))
    if spec.stop_loss is not None:
        if spec.stop_loss.stop_price is not None:
            prices.append(("stop_loss.stop_price", spec.stop_loss.stop_price))
        if spec.stop_loss.limit_price is not None:
            prices.append(("stop_loss.limit_price", spec.stop_loss.limit_price))
    return prices


def _on_grid(value: Decimal, step: Decimal) -> bool:
    try:
        return value % step == 0
    except InvalidOperation:  # the quotient has more digits than the context holds: far off any sane grid
        return False


def _collar_reference(quote: Quote) -> Decimal | None:
    last = _positive(quote.last)
    if last is not None:
        return last
    bid, ask = _positive(quote.bid), _positive(quote.ask)
    return (bid + ask) / 2 if bid is not None and ask is not None else None


def _short_price(price: Decimal, quote: Quote | None) -> Decimal:
    """Alpaca's short-sale valuation: MAX(order price, ask x 1.03), the last trade standing in for the ask."""
    if quote is None:
        return price
    far = _positive(quote.ask) or _positive(quote.last)
    if far is None:
        return price
    marked = far * SHORT_VALUATION
    return price if price >= marked else marked


def _duplicate(spec: OrderSpec, recent: tuple[RecentOrder, ...], now: datetime, window: timedelta) -> RecentOrder | None:
    for order in recent:
        if (order.symbol == spec.symbol and order.side == spec.side
                and ((spec.qty is not None and order.qty == spec.qty)
                     or (spec.notional is not None and order.notional == spec.notional))
                and -window <= now - order.at <= window):
            return order
    return None


def _halted_message(reducing_allowed: bool) -> str:
    if reducing_allowed:
        return "Trading is halted (kill switch): only orders that reduce an existing position are accepted."
    return "Trading is halted (kill switch): no orders are accepted."


def _percent(value: Decimal) -> Decimal:
    try:
        return value.quantize(_CENT)
    except InvalidOperation:
        return value


def _show(value: Decimal) -> Decimal:
    """A computed figure for a message: at most 4 decimal places."""
    if value.as_tuple().exponent >= -4:
        return value
    try:
        return value.quantize(_DISPLAY)
    except InvalidOperation:
        return value
