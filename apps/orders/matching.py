"""The paper broker's matching engine (pure; no ORM): working orders in, Alpaca ``trade_updates`` events out.

The shell (apps.orders services and tasks) restores a ``PaperEngine`` from stored ``WorkingOrder``s, feeds it
submissions, cancels, replaces and market data, persists the orders' new state and applies the events
through the one broker-update handler. The backtester drives the same engine from bars.

Two ways to see the market (``PaperConfig.fill_on``):

- ``"quote"`` (live): ``submit`` evaluates the order at once against the quote it is given; ``on_quote``
  evaluates the symbol's orders. Buys fill at the ask, sells at the bid (``last`` when that side is
  missing); stops trigger on ``last`` (the ask/bid without a last). A given ``ask_size``/``bid_size``
  caps the fill; the rest waits for later quotes.
- ``"bar"`` (backtests and the bar path): ``on_bar`` evaluates orders submitted at or before the bar's
  open time. A market order fills at the open; a buy limit fills when low <= limit at min(limit, open);
  a buy stop triggers when high >= stop and fills at max(stop, open); sells mirror. Each bar fills at
  most ``max_participation * volume`` per order (whole shares unless the order's qty is fractional);
  the rest carries to later bars.

``on_quote`` does nothing in bar mode and ``on_bar`` nothing in quote mode, so a shell may feed both.

Sessions come from the shell as ``SessionInfo``. Equity, ETF and option orders trade in the regular
session only, except ``extended_hours`` limit orders, which also trade in the extended session; crypto
ignores sessions. DAY orders expire at ``on_session_close`` or on the symbol's first quote at/after
``close_at`` (bar mode: after the bar that ends at/after ``close_at``); ``extended_hours`` DAY orders
are spared until ``on_session_close(extended=True)``. OPG and CLS orders trade in the auctions only and
fill whole: OPG at the first in-session quote (``last``, else the ask/bid) or the bar containing
``open_at`` (its open), CLS at the first quote at/after ``close_at`` or the bar ending at ``close_at``
(its close); missing the auction (or a LOO/LOC limit not met) cancels them.

Slippage (``PaperConfig.slippage``) applies to taker fills; a limit order's taker fill is then capped
at its limit. Maker fills (a limit that rested through an earlier evaluation) fill at the market price.
Commission applies to every execution. Nothing here is random: the same orders, data and config give
the same events, execution ids are ``f"{order_id}-{n}"`` (n from 1), and ``PaperConfig.seed`` is kept for
stochastic models to come.

Known simplifications: participation and quote sizes are per order (two orders on one bar may each
take 10 %); a replaced order's successor starts with no fills and pays a per-order commission again;
a held leg cannot be replaced (``held -> replaced`` is not a legal move); after a restore, a resting
limit's first quote-mode fill may be labelled taker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal

from apps.orders.core import (
    TERMINAL,
    Bar,
    Execution,
    Leg,
    OrderClass,
    OrderSpec,
    OrderType,
    Quote,
    Side,
    Status,
    TimeInForce,
    can_move,
    check_move,
)
from apps.orders.fills import MAKER, TAKER, CommissionModel, NoCommission, NoSlippage, SlippageModel

ZERO = Decimal(0)
HUNDRED = Decimal(100)
QTY_STEP = Decimal("0.000000001")  # fractional quantities: nine places, rounded down
CRYPTO = "crypto"

# trade_updates event names (ALPACA_ORDERS.md c.3)
NEW, FILL, PARTIAL_FILL = "new", "fill", "partial_fill"
CANCELED, EXPIRED, REJECTED, REPLACED = "canceled", "expired", "rejected", "replaced"
CANCEL_REJECTED, REPLACE_REJECTED = "order_cancel_rejected", "order_replace_rejected"

# reasons (stable strings: tests assert them)
R_NO_QTY = "qty or notional is required"
R_BAD_QTY = "qty must be positive"
R_NOTIONAL_MARKET = "notional orders must be market orders"
R_NO_LIMIT = "limit_price is required for limit and stop_limit orders"
R_NO_STOP = "stop_price is required for stop and stop_limit orders"
R_TRAIL = "trailing_stop needs exactly one of trail_price or trail_percent"
R_CRYPTO_AUCTION = "crypto orders cannot use opg or cls"
R_USER = "canceled by the user"
R_IOC = "ioc: unfilled remainder canceled"
R_FOK = "fok: could not fill completely"
R_MISSED_OPEN = "opg: not filled at the open"
R_MISSED_CLOSE = "cls: not filled at the close"
R_DAY = "day order expired at the session close"
R_SIBLING = "another order of its group filled"
R_PARENT = "its parent order ended unfilled"
R_NOT_CANCELABLE = "the order is not cancelable in status {status}"
R_NOT_REPLACEABLE = "the order is not replaceable in status {status}"
R_REPLACED = "replaced by {new}"
R_REPLACES = "replaces {old}"

_DECIMAL_SPEC_FIELDS = ("qty", "notional", "limit_price", "stop_price", "trail_price", "trail_percent")
_DECIMAL_ORDER_FIELDS = ("filled_qty", "filled_value", "fees", "hwm", "stop_price")


def _dec(value) -> Decimal | None:
    return None if value is None else Decimal(value)


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def spec_to_dict(spec: OrderSpec) -> dict:
    out: dict = {}
    for f in dataclasses.fields(OrderSpec):
        value = getattr(spec, f.name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, Leg):
            value = {"limit_price": _str(value.limit_price), "stop_price": _str(value.stop_price)}
        elif isinstance(value, Side | OrderType | TimeInForce | OrderClass):
            value = value.value
        out[f.name] = value
    return out


def spec_from_dict(d: dict) -> OrderSpec:
    kwargs = dict(d)
    for name in _DECIMAL_SPEC_FIELDS:
        kwargs[name] = _dec(kwargs.get(name))
    for name in ("take_profit", "stop_loss"):
        leg = kwargs.get(name)
        kwargs[name] = None if leg is None else Leg(_dec(leg.get("limit_price")), _dec(leg.get("stop_price")))
    kwargs["side"] = Side(kwargs["side"])
    kwargs["type"] = OrderType(kwargs["type"])
    kwargs["time_in_force"] = TimeInForce(kwargs["time_in_force"])
    kwargs["order_class"] = OrderClass(kwargs.get("order_class", OrderClass.SIMPLE))
    return OrderSpec(**kwargs)


@dataclass(slots=True)
class WorkingOrder:
    """The engine's view of one order; ``to_dict``/``from_dict`` round-trip it through JSON."""

    order_id: str
    spec: OrderSpec
    submitted_at: datetime
    asset_class: str = "equity"  # equity | etf | option | crypto
    multiplier: int = 1
    status: Status = Status.NEW
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO  # sum of qty * price (without the multiplier)
    fees: Decimal = ZERO
    hwm: Decimal | None = None  # trailing stop's high (sell) / low (buy) water mark
    stop_price: Decimal | None = None  # the current stop (trailing stops move it); defaults to spec.stop_price
    triggered: bool = False  # stop/stop_limit/trailing_stop has triggered
    parent_id: str | None = None  # bracket/oto legs -> the entry; oco leg -> the primary
    group: str | None = None  # exit group: one member filling cancels the others
    exec_count: int = 0
    resting: bool = False  # a limit that has rested through an evaluation: its fills are maker

    def __post_init__(self):
        if self.stop_price is None and self.spec.type in (OrderType.STOP, OrderType.STOP_LIMIT):
            self.stop_price = self.spec.stop_price

    @property
    def qty(self) -> Decimal | None:
        return self.spec.qty

    @property
    def remaining(self) -> Decimal | None:
        return None if self.spec.qty is None else self.spec.qty - self.filled_qty

    @property
    def avg_price(self) -> Decimal | None:
        return self.filled_value / self.filled_qty if self.filled_qty else None

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL

    def to_dict(self) -> dict:
        return {
            "order_id": self.order_id,
            "spec": spec_to_dict(self.spec),
            "submitted_at": self.submitted_at.isoformat(),
            "asset_class": self.asset_class,
            "multiplier": self.multiplier,
            "status": self.status.value,
            **{name: _str(getattr(self, name)) for name in _DECIMAL_ORDER_FIELDS},
            "triggered": self.triggered,
            "parent_id": self.parent_id,
            "group": self.group,
            "exec_count": self.exec_count,
            "resting": self.resting,
        }

    @classmethod
    def from_dict(cls, d: dict) -> WorkingOrder:
        return cls(
            order_id=d["order_id"],
            spec=spec_from_dict(d["spec"]),
            submitted_at=datetime.fromisoformat(d["submitted_at"]),
            asset_class=d.get("asset_class", "equity"),
            multiplier=int(d.get("multiplier", 1)),
            status=Status(d.get("status", Status.NEW)),
            filled_qty=Decimal(d.get("filled_qty") or 0),
            filled_value=Decimal(d.get("filled_value") or 0),
            fees=Decimal(d.get("fees") or 0),
            hwm=_dec(d.get("hwm")),
            stop_price=_dec(d.get("stop_price")),
            triggered=bool(d.get("triggered", False)),
            parent_id=d.get("parent_id"),
            group=d.get("group"),
            exec_count=int(d.get("exec_count", 0)),
            resting=bool(d.get("resting", False)),
        )


def bracket_legs(entry: WorkingOrder, *, leg_ids: Sequence[str]) -> list[WorkingOrder]:
    """The exit legs an entry's ``take_profit``/``stop_loss`` describe (take-profit first), each its own
    order with an id from ``leg_ids``: the opposite side, the entry's qty and time in force. For an OCO
    order (the primary is the take-profit limit) only the stop-loss leg is returned."""
    spec = entry.spec
    exit_side = Side.SELL if spec.side == Side.BUY else Side.BUY
    if spec.order_class == OrderClass.OCO:
        exit_side, wanted = spec.side, [("stop_loss", spec.stop_loss)]
    else:
        wanted = [("take_profit", spec.take_profit), ("stop_loss", spec.stop_loss)]
    legs, ids = [], iter(leg_ids)
    for kind, leg in wanted:
        if leg is None:
            continue
        if kind == "take_profit":
            order_type, stop, limit = OrderType.LIMIT, None, leg.limit_price
        else:
            order_type = OrderType.STOP_LIMIT if leg.limit_price is not None else OrderType.STOP
            stop, limit = leg.stop_price, leg.limit_price
        leg_spec = OrderSpec(symbol=spec.symbol, side=exit_side, type=order_type, time_in_force=spec.time_in_force,
                             qty=spec.qty, limit_price=limit, stop_price=stop)
        legs.append(WorkingOrder(order_id=next(ids), spec=leg_spec, submitted_at=entry.submitted_at,
                                 asset_class=entry.asset_class, multiplier=entry.multiplier))
    return legs


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The exchange session as the shell sees it now (computed from the calendar; the engine stays pure)."""

    is_open: bool  # the regular session is open now
    open_at: datetime | None  # today's session open/close (UTC); None when there is no session today
    close_at: datetime | None
    extended: bool = False  # pre- or after-market now


ALWAYS_OPEN = SessionInfo(is_open=True, open_at=None, close_at=None)


@dataclass(frozen=True, slots=True)
class PaperConfig:
    slippage: SlippageModel = field(default_factory=NoSlippage)
    commission: CommissionModel = field(default_factory=NoCommission)
    max_participation: Decimal = Decimal("0.1")  # bar mode: at most this share of each bar's volume
    fill_on: str = "quote"  # "quote" (live) | "bar" (backtests and the bar path)
    seed: int = 0
    bar_interval: timedelta = timedelta(minutes=1)  # bar mode: a bar covers [at, at + bar_interval)


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One trade_updates event: ``status`` is the order's status after it."""

    event: str
    order_id: str
    status: Status
    at: datetime
    execution: Execution | None = None
    reason: str = ""
    related_id: str | None = None  # replaced: the new order's id; new after a replace: the old one's


def _validate(spec: OrderSpec, asset_class: str) -> str:
    if spec.qty is None and spec.notional is None:
        return R_NO_QTY
    if spec.qty is not None and spec.qty <= 0:
        return R_BAD_QTY
    if spec.qty is None and spec.type != OrderType.MARKET:
        return R_NOTIONAL_MARKET
    if spec.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and spec.limit_price is None:
        return R_NO_LIMIT
    if spec.type in (OrderType.STOP, OrderType.STOP_LIMIT) and spec.stop_price is None:
        return R_NO_STOP
    if spec.type == OrderType.TRAILING_STOP and (spec.trail_price is None) == (spec.trail_percent is None):
        return R_TRAIL
    if asset_class == CRYPTO and spec.time_in_force in (TimeInForce.OPG, TimeInForce.CLS):
        return R_CRYPTO_AUCTION
    return ""


def _trail_stop(spec: OrderSpec, hwm: Decimal) -> Decimal:
    buy = spec.side == Side.BUY
    if spec.trail_price is not None:
        return hwm + spec.trail_price if buy else hwm - spec.trail_price
    factor = spec.trail_percent / HUNDRED
    return hwm * (1 + factor) if buy else hwm * (1 - factor)


def _lot_floor(amount: Decimal, qty: Decimal) -> Decimal:
    """Whole shares when the order's qty is whole, else nine decimal places; always rounded down."""
    if amount <= 0:
        return ZERO
    if qty == qty.to_integral_value():
        return amount.to_integral_value(rounding=ROUND_FLOOR)
    return amount.quantize(QTY_STEP, rounding=ROUND_DOWN)


class PaperEngine:
    """Matches working orders against quotes or bars. ``orders`` holds every order it knows (terminal ones
    too, until ``prune``); mutate orders only through the methods."""

    def __init__(self, config: PaperConfig, orders: Iterable[WorkingOrder] = ()):
        self.config = config
        self.orders: dict[str, WorkingOrder] = {}
        self._open: dict[str, dict[str, WorkingOrder]] = {}  # symbol -> open orders (held included)
        self._books: dict[str, list[tuple[WorkingOrder, int, Decimal | None]]] = {}
        self._dirty: set[str] = set()
        self._last_quote_at: dict[str, datetime] = {}
        for order in orders:
            self._add(order)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _add(self, order: WorkingOrder) -> None:
        if order.order_id in self.orders:
            raise ValueError(f"duplicate order id {order.order_id}")
        self.orders[order.order_id] = order
        if order.is_open:
            self._open.setdefault(order.spec.symbol, {})[order.order_id] = order
        self._dirty.add(order.spec.symbol)

    def _set(self, order: WorkingOrder, status: Status) -> None:
        check_move(order.status, status)
        order.status = status
        if status in TERMINAL:
            self._open.get(order.spec.symbol, {}).pop(order.order_id, None)
        self._dirty.add(order.spec.symbol)

    def prune(self) -> list[WorkingOrder]:
        """Forget terminal orders (a long backtest's memory); returns them."""
        gone = [o for o in self.orders.values() if not o.is_open]
        for o in gone:
            del self.orders[o.order_id]
        return gone

    def open_orders(self, symbol: str | None = None) -> list[WorkingOrder]:
        if symbol is not None:
            return list(self._open.get(symbol, {}).values())
        return [o for book in self._open.values() for o in book.values()]

    def _book(self, symbol: str) -> list[tuple[WorkingOrder, int, Decimal | None]]:
        """The hot path's view: (order, mode, price). Mode 1: nothing can happen unless the market's low
        reaches ``price``; mode 2: unless its high does; mode 0: always evaluate."""
        book = self._books.get(symbol)
        if book is None or symbol in self._dirty:
            book = []
            for o in self._open.get(symbol, {}).values():
                if o.status == Status.HELD:
                    continue
                mode, price = self._threshold(o)
                book.append((o, mode, price))
            self._books[symbol] = book
            self._dirty.discard(symbol)
        return book

    @staticmethod
    def _threshold(o: WorkingOrder) -> tuple[int, Decimal | None]:
        spec = o.spec
        if spec.time_in_force in (TimeInForce.IOC, TimeInForce.FOK, TimeInForce.OPG, TimeInForce.CLS):
            return 0, None
        buy = spec.side == Side.BUY
        if spec.type == OrderType.LIMIT or (spec.type == OrderType.STOP_LIMIT and o.triggered):
            return (1 if buy else 2), spec.limit_price
        if spec.type in (OrderType.STOP, OrderType.STOP_LIMIT) and not o.triggered:
            return (2 if buy else 1), o.stop_price
        return 0, None

    # --- commands ------------------------------------------------------------------------------

    def submit(self, order: WorkingOrder, *, legs: Sequence[WorkingOrder] = (), now: datetime,
               quote: Quote | None = None, session: SessionInfo | None = None) -> list[EngineEvent]:
        """Accept an order (and its bracket/OTO/OCO legs): ``new``, or ``rejected`` with a reason.

        Bracket and OTO legs are ``held`` (no event) until the entry fills completely, then ``new``; OCO
        legs are ``new`` at once and share the primary's group. In quote mode, with a quote, the new
        orders are evaluated against it straight away (no session given counts as an open session).
        """
        events: list[EngineEvent] = []
        self._add(order)
        reason = _validate(order.spec, order.asset_class)
        if reason:
            self._set(order, Status.REJECTED)
            return [EngineEvent(REJECTED, order.order_id, order.status, now, reason=reason)]
        self._set(order, Status.NEW)
        events.append(EngineEvent(NEW, order.order_id, order.status, now))
        oco = order.spec.order_class == OrderClass.OCO
        if oco and legs:
            order.group = order.order_id
        fresh = [order]
        for leg in legs:
            leg.parent_id = order.order_id
            leg.group = order.order_id
            self._add(leg)
            if oco:
                self._set(leg, Status.NEW)
                events.append(EngineEvent(NEW, leg.order_id, leg.status, now))
                fresh.append(leg)
            else:
                if leg.status != Status.NEW:  # a fresh WorkingOrder says NEW; a stored one may be pre-broker
                    check_move(leg.status, Status.HELD)
                leg.status = Status.HELD
        if self.config.fill_on == "quote" and quote is not None:
            session = session or ALWAYS_OPEN
            for o in fresh:
                if o.status == Status.NEW:
                    events += self._eval_quote(o, quote, now, session)
        return events

    def cancel(self, order_id: str, *, now: datetime) -> list[EngineEvent]:
        """Cancel an open order (``order_cancel_rejected`` when it cannot be); an entry's held legs go too
        (or, after a partial fill, come alive for the filled quantity)."""
        o = self.orders[order_id]
        if not can_move(o.status, Status.CANCELED) or o.status == Status.CANCELED:
            reason = R_NOT_CANCELABLE.format(status=o.status.value)
            return [EngineEvent(CANCEL_REJECTED, o.order_id, o.status, now, reason=reason)]
        return self._end(o, Status.CANCELED, now, R_USER)

    def replace(self, order_id: str, *, new_order_id: str, now: datetime, qty: Decimal | None = None,
                limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                trail: Decimal | None = None, time_in_force: TimeInForce | str | None = None) -> list[EngineEvent]:
        """Replace an open order with a new id: the old one becomes ``replaced`` (keeping its fills), the new
        one is ``new`` with ``qty`` (default: the old one's unfilled rest) and the changed terms. ``trail``
        sets whichever of trail_price/trail_percent the order uses. Held legs follow a replaced entry."""
        o = self.orders[order_id]
        if not o.is_open or not can_move(o.status, Status.REPLACED):
            reason = R_NOT_REPLACEABLE.format(status=o.status.value)
            return [EngineEvent(REPLACE_REJECTED, o.order_id, o.status, now, reason=reason)]
        spec = o.spec
        changes: dict = {"qty": qty if qty is not None else o.remaining}
        if limit_price is not None:
            changes["limit_price"] = limit_price
        if stop_price is not None:
            changes["stop_price"] = stop_price
        if time_in_force is not None:
            changes["time_in_force"] = TimeInForce(time_in_force)
        if trail is not None:
            changes["trail_price" if spec.trail_price is not None else "trail_percent"] = trail
        new_spec = dataclasses.replace(spec, **changes)
        reason = _validate(new_spec, o.asset_class)
        if reason:
            return [EngineEvent(REPLACE_REJECTED, o.order_id, o.status, now, reason=reason)]
        new_stop = stop_price if stop_price is not None else o.stop_price
        if new_spec.type == OrderType.TRAILING_STOP and o.hwm is not None:
            new_stop = _trail_stop(new_spec, o.hwm)
        new = WorkingOrder(order_id=new_order_id, spec=new_spec, submitted_at=now, asset_class=o.asset_class,
                           multiplier=o.multiplier, hwm=o.hwm, stop_price=new_stop, triggered=o.triggered,
                           parent_id=o.parent_id, group=o.group)
        self._add(new)
        self._set(o, Status.REPLACED)
        for child in self.open_orders(spec.symbol):
            if child.parent_id == o.order_id:
                child.parent_id = new_order_id
                if child.group == o.order_id:
                    child.group = new_order_id
        if o.group == o.order_id:
            new.group = new_order_id
        return [
            EngineEvent(REPLACED, o.order_id, o.status, now, reason=R_REPLACED.format(new=new_order_id),
                        related_id=new_order_id),
            EngineEvent(NEW, new_order_id, new.status, now, reason=R_REPLACES.format(old=o.order_id),
                        related_id=o.order_id),
        ]

    # --- market data ---------------------------------------------------------------------------

    def on_quote(self, symbol: str, quote: Quote, *, now: datetime, session: SessionInfo) -> list[EngineEvent]:
        """Evaluate the symbol's orders against a quote (quote mode; bar mode ignores quotes)."""
        if self.config.fill_on != "quote":
            return []
        events: list[EngineEvent] = []
        previous = self._last_quote_at.get(symbol)
        self._last_quote_at[symbol] = now
        prices = [p for p in (quote.bid, quote.ask, quote.last) if p is not None]
        if prices and symbol in self._open:
            low, high = min(prices), max(prices)
            for o, mode, price in self._book(symbol):
                if mode == 1:
                    if low > price:
                        continue
                elif mode == 2 and high < price:
                    continue
                if o.status in TERMINAL or o.status == Status.HELD:
                    continue  # an OCO sibling that filled earlier in this loop canceled it
                if previous is not None and previous >= o.submitted_at and o.spec.type == OrderType.LIMIT:
                    o.resting = True  # it saw an earlier quote without filling
                events += self._eval_quote(o, quote, now, session)
        if session.close_at is not None and now >= session.close_at:
            events += self._expire_day(self.open_orders(symbol), session.close_at, now, extended=False)
        return events

    def on_bar(self, symbol: str, bar: Bar, *, session: SessionInfo) -> list[EngineEvent]:
        """Evaluate the symbol's orders against a bar (bar mode; quote mode ignores bars)."""
        if self.config.fill_on != "bar":
            return []
        events: list[EngineEvent] = []
        if symbol in self._open:
            low, high = bar.low, bar.high
            for o, mode, price in self._book(symbol):
                if mode == 1:
                    if low > price:
                        continue
                elif mode == 2 and high < price:
                    continue
                if o.status in TERMINAL or o.status == Status.HELD:
                    continue
                events += self._eval_bar(o, bar, session)
        close_at = session.close_at
        if close_at is not None and bar.at + self.config.bar_interval >= close_at:
            events += self._expire_day(self.open_orders(symbol), close_at, bar.at, extended=False)
        return events

    def on_session_close(self, *, now: datetime, extended: bool = False) -> list[EngineEvent]:
        """The session ended: DAY orders submitted before ``now`` expire (``extended_hours`` ones only when
        ``extended``: the end of after-hours), OPG/CLS orders still open are canceled. Crypto is spared."""
        events = self._expire_day(self.open_orders(), now, now, extended=extended)
        for o in self.open_orders():
            if (o.asset_class != CRYPTO and o.status != Status.HELD and o.submitted_at < now
                    and o.spec.time_in_force in (TimeInForce.OPG, TimeInForce.CLS)):
                reason = R_MISSED_OPEN if o.spec.time_in_force == TimeInForce.OPG else R_MISSED_CLOSE
                events += self._end(o, Status.CANCELED, now, reason)
        return events

    def _expire_day(self, orders: list[WorkingOrder], close_at: datetime, now: datetime, *,
                    extended: bool) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        for o in orders:
            if (o.is_open and o.status != Status.HELD and o.asset_class != CRYPTO
                    and o.spec.time_in_force == TimeInForce.DAY and o.submitted_at < close_at
                    and (extended or not o.spec.extended_hours)):
                events += self._end(o, Status.EXPIRED, now, R_DAY)
        return events

    # --- evaluation ----------------------------------------------------------------------------

    @staticmethod
    def _tradable(o: WorkingOrder, session: SessionInfo) -> bool:
        if o.asset_class == CRYPTO or session.is_open:
            return True
        return session.extended and o.spec.extended_hours and o.spec.type == OrderType.LIMIT

    def _eval_quote(self, o: WorkingOrder, quote: Quote, now: datetime, session: SessionInfo) -> list[EngineEvent]:
        spec = o.spec
        buy = spec.side == Side.BUY
        if spec.time_in_force in (TimeInForce.OPG, TimeInForce.CLS):
            return self._auction(o, self._quote_auction_price(o, quote, now, session), now, quote=quote)
        if not self._tradable(o, session):
            return []
        side_px = quote.ask if buy else quote.bid
        if side_px is None:
            side_px = quote.last
        ref = quote.last if quote.last is not None else side_px
        price, liquidity = self._match(o, side_px, ref, ref, first=True, bar=False)
        return self._execute(o, price, liquidity, quote.ask_size if buy else quote.bid_size, now, quote=quote)

    def _eval_bar(self, o: WorkingOrder, bar: Bar, session: SessionInfo) -> list[EngineEvent]:
        if bar.at < o.submitted_at:
            return []
        if o.spec.time_in_force in (TimeInForce.OPG, TimeInForce.CLS):
            return self._auction(o, self._bar_auction_price(o, bar, session), bar.at, bar=bar)
        if not self._tradable(o, session):
            return []
        first = bar.at - self.config.bar_interval < o.submitted_at  # no earlier bar could have filled it
        price, liquidity = self._match(o, bar.open, bar.low, bar.high, first=first, bar=True)
        cap = bar.volume * self.config.max_participation
        return self._execute(o, price, liquidity, cap, bar.at, bar=bar)

    def _match(self, o: WorkingOrder, px: Decimal | None, low: Decimal | None, high: Decimal | None, *,
               first: bool, bar: bool) -> tuple[Decimal | None, str]:
        """The price this order fills at on this observation (None: not now) and the fill's liquidity.

        A bar: ``px`` is its open, ``low``/``high`` its range. A quote: ``px`` is the side's price (ask for
        buys) and ``low`` = ``high`` = the trigger reference (last, else the side's price).
        """
        if px is None:
            return None, TAKER
        spec = o.spec
        buy = spec.side == Side.BUY
        kind = spec.type
        if kind == OrderType.MARKET or (o.triggered and kind != OrderType.STOP_LIMIT):
            return px, TAKER
        if kind == OrderType.LIMIT:
            return self._limit(o, px, (low if buy else high) if bar else None, first=first)
        if kind == OrderType.TRAILING_STOP and o.hwm is None:
            o.hwm = px if bar else low
            o.stop_price = _trail_stop(spec, o.hwm)
        if o.triggered:  # a triggered stop_limit is a limit
            return self._limit(o, px, (low if buy else high) if bar else None, first=False)
        stop = o.stop_price
        if bar:
            if (px >= stop) if buy else (px <= stop):
                trigger = px  # gapped through: the open
            elif (high >= stop) if buy else (low <= stop):
                trigger = stop
            else:
                trigger = None
        else:
            trigger = px if ((high >= stop) if buy else (low <= stop)) else None
        if trigger is None:
            if kind == OrderType.TRAILING_STOP:  # ratchet only in the favourable direction
                mark = low if buy else high
                if mark is not None and ((mark < o.hwm) if buy else (mark > o.hwm)):
                    o.hwm = mark
                    o.stop_price = _trail_stop(spec, mark)
            return None, TAKER
        o.triggered = True
        self._dirty.add(spec.symbol)
        if kind != OrderType.STOP_LIMIT:
            return trigger, TAKER
        limit = spec.limit_price
        if (trigger <= limit) if buy else (trigger >= limit):
            return trigger, TAKER
        if bar and ((low <= limit) if buy else (high >= limit)):
            return limit, MAKER
        return None, TAKER

    def _limit(self, o: WorkingOrder, px: Decimal, extreme: Decimal | None, *, first: bool
               ) -> tuple[Decimal | None, str]:
        """A limit at ``px`` (the open or the side's price) or, when the bar's ``extreme`` reaches it, at the
        limit. Taker only when marketable at its first look."""
        limit = o.spec.limit_price
        liquidity = TAKER if first and not o.resting else MAKER
        if o.spec.side == Side.BUY:
            if px <= limit:
                return px, liquidity
            if extreme is not None and extreme <= limit:
                return limit, MAKER
            return None, TAKER
        if px >= limit:
            return px, liquidity
        if extreme is not None and extreme >= limit:
            return limit, MAKER
        return None, TAKER

    def _execute(self, o: WorkingOrder, price: Decimal | None, liquidity: str, cap: Decimal | None,
                 at: datetime, *, quote: Quote | None = None, bar: Bar | None = None) -> list[EngineEvent]:
        """Fill what this observation allows, then apply IOC/FOK."""
        spec = o.spec
        tif = spec.time_in_force
        events: list[EngineEvent] = []
        if price is not None:
            if spec.qty is None:  # notional: the quantity is fixed at the first fill's price
                o.spec = spec = dataclasses.replace(spec, qty=(spec.notional / price).quantize(QTY_STEP, ROUND_DOWN))
            remaining = o.remaining
            qty = remaining if cap is None else min(remaining, _lot_floor(cap, spec.qty))
            if tif == TimeInForce.FOK and qty < remaining:
                return self._end(o, Status.CANCELED, at, R_FOK)
            if qty > 0:
                events += self._fill(o, qty, self._price(o, price, qty, liquidity, quote, bar), at, liquidity)
        if o.is_open:
            if tif == TimeInForce.IOC:
                events += self._end(o, Status.CANCELED, at, R_IOC)
            elif tif == TimeInForce.FOK:
                events += self._end(o, Status.CANCELED, at, R_FOK)
            elif spec.type == OrderType.LIMIT or (spec.type == OrderType.STOP_LIMIT and o.triggered):
                o.resting = True
        return events

    def _price(self, o: WorkingOrder, price: Decimal, qty: Decimal, liquidity: str, quote: Quote | None,
               bar: Bar | None) -> Decimal:
        if liquidity == MAKER:
            return price
        spec = o.spec
        slipped = self.config.slippage.price(side=spec.side, price=price, qty=qty, quote=quote, bar=bar)
        limit = spec.limit_price if spec.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
        if limit is not None:
            slipped = min(slipped, limit) if spec.side == Side.BUY else max(slipped, limit)
        return slipped

    # --- auctions ------------------------------------------------------------------------------

    def _quote_auction_price(self, o: WorkingOrder, quote: Quote, now: datetime, session: SessionInfo
                             ) -> Decimal | None | bool:
        """The auction price on this quote; None: not this order's auction yet."""
        side_px = quote.ask if o.spec.side == Side.BUY else quote.bid
        price = quote.last if quote.last is not None else side_px
        if o.spec.time_in_force == TimeInForce.OPG:
            open_at = session.open_at
            if open_at is None or not session.is_open or o.submitted_at > open_at or now < open_at:
                return None
            return price
        close_at = session.close_at
        if close_at is None or o.submitted_at >= close_at or now < close_at:
            return None
        return price

    def _bar_auction_price(self, o: WorkingOrder, bar: Bar, session: SessionInfo) -> Decimal | None | bool:
        """The auction price on this bar; None: not yet; False: the auction has passed."""
        end = bar.at + self.config.bar_interval
        if o.spec.time_in_force == TimeInForce.OPG:
            open_at = session.open_at
            if open_at is None or o.submitted_at > open_at:
                return None
            if bar.at <= open_at < end:
                return bar.open
            return False if bar.at > open_at else None
        close_at = session.close_at
        if close_at is None or o.submitted_at >= close_at:
            return None
        if bar.at < close_at <= end:
            return bar.close
        return False if bar.at >= close_at else None

    def _auction(self, o: WorkingOrder, price: Decimal | None | bool, at: datetime, *, quote: Quote | None = None,
                 bar: Bar | None = None) -> list[EngineEvent]:
        """Fill the whole order at the auction price, or cancel it (missed, or its limit not met)."""
        opg = o.spec.time_in_force == TimeInForce.OPG
        missed = R_MISSED_OPEN if opg else R_MISSED_CLOSE
        if price is None:
            return []
        if price is False:
            return self._end(o, Status.CANCELED, at, missed)
        spec = o.spec
        limit = spec.limit_price if spec.type == OrderType.LIMIT else None
        if limit is not None and ((price > limit) if spec.side == Side.BUY else (price < limit)):
            return self._end(o, Status.CANCELED, at, missed)
        if spec.qty is None:
            o.spec = spec = dataclasses.replace(spec, qty=(spec.notional / price).quantize(QTY_STEP, ROUND_DOWN))
        qty = o.remaining
        return self._fill(o, qty, self._price(o, price, qty, TAKER, quote, bar), at, TAKER)

    # --- outcomes ------------------------------------------------------------------------------

    def _fill(self, o: WorkingOrder, qty: Decimal, price: Decimal, at: datetime, liquidity: str) -> list[EngineEvent]:
        fee = self.config.commission.fee(qty=qty, price=price, multiplier=o.multiplier, liquidity=liquidity,
                                         first_fill=o.exec_count == 0)
        o.exec_count += 1
        execution = Execution(exec_id=f"{o.order_id}-{o.exec_count}", order_id=o.order_id, qty=qty, price=price,
                              at=at, fee=fee, liquidity=liquidity)
        o.filled_qty += qty
        o.filled_value += qty * price
        o.fees += fee
        done = o.filled_qty >= o.spec.qty
        self._set(o, Status.FILLED if done else Status.PARTIALLY_FILLED)
        events = [EngineEvent(FILL if done else PARTIAL_FILL, o.order_id, o.status, at, execution)]
        if o.group is not None:  # one exit filling (even partly) cancels the rest of its group
            for sibling in self.open_orders(o.spec.symbol):
                if sibling.group == o.group and sibling is not o and sibling.status != Status.HELD:
                    events += self._end(sibling, Status.CANCELED, at, R_SIBLING)
        if done:
            events += self._release_legs(o, at, o.filled_qty)
        return events

    def _end(self, o: WorkingOrder, status: Status, at: datetime, reason: str) -> list[EngineEvent]:
        self._set(o, status)
        event = {Status.CANCELED: CANCELED, Status.EXPIRED: EXPIRED}[status]
        events = [EngineEvent(event, o.order_id, o.status, at, reason=reason)]
        # an entry that ended part-filled still protects what it bought; unfilled, its legs go with it
        return events + self._release_legs(o, at, o.filled_qty)

    def _release_legs(self, parent: WorkingOrder, at: datetime, qty: Decimal) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        for leg in self.open_orders(parent.spec.symbol):
            if leg.parent_id != parent.order_id or leg.status != Status.HELD:
                continue
            if qty > 0:
                if leg.spec.qty != qty:
                    leg.spec = dataclasses.replace(leg.spec, qty=qty)
                leg.submitted_at = at
                self._set(leg, Status.NEW)
                events.append(EngineEvent(NEW, leg.order_id, leg.status, at))
            else:
                self._set(leg, Status.CANCELED)
                events.append(EngineEvent(CANCELED, leg.order_id, leg.status, at, reason=R_PARENT))
        return events
