"""Tax-lot matching for one portfolio and one instrument (pure; no ORM).

A ``LotBook`` applies fills in order: opening fills create lots, closing fills consume them by the
portfolio's method (FIFO, LIFO, HIFO, specific identification, average cost) and produce
``RealizedGain`` records. Wash sales span portfolios, so they live one level up, in
``apps.portfolios.wash.TaxLotEngine``, which owns the books of one tax entity.

Money rules (exact ``Decimal`` throughout, no float):
- A long lot's ``cost`` is what was paid: quantity x price x multiplier + fees. A short lot's
  ``cost`` is what was received: quantity x price x multiplier - fees. Both are totals, kept
  exactly as computed; the per-unit cost is derived (``Lot.cost_per_unit``) and not rounded to cents
  (28 significant digits, the default ``decimal`` context).
- Fees are added to cost on opening and subtracted from proceeds on closing. When one fill both
  closes and opens (a sell through a long position into a short), its fees are split pro rata by
  quantity.
- Pro-rata splits (a fill's proceeds over several lots, a partial close of a lot's cost) are
  rounded ``ROUND_HALF_EVEN`` to 0.01 and the last piece takes the exact remainder, so totals are
  conserved to the cent. Record amounts (proceeds, cost basis, gain, disallowed loss) are rounded
  the same way when the record is produced; with cent prices and whole quantities they are exact.
- Holding period: long term when sold after the anniversary of the holding-period start (IRS
  Publication 544/550: "more than 1 year"; the day after acquisition is the first day counted).
  A short sale's gain is short term (Publication 550, "Short Sales"); its record's ``acquired`` is
  the short sale and ``sold`` the cover. Trade dates are taken in New York time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

ZERO = Decimal(0)
CENT = Decimal("0.01")
TAX_TZ = ZoneInfo("America/New_York")


class Method(StrEnum):
    FIFO = "fifo"
    LIFO = "lifo"
    HIFO = "hifo"
    SPECIFIC = "specific"
    AVERAGE = "average"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class LotError(Exception):
    """A fill the engine refuses; nothing was changed. Same shape as ``apps.core.errors.DomainError``
    (code, message, fields) so the booking service can re-raise it as one without this module
    importing Django."""

    code = "LOT_ERROR"

    def __init__(self, message: str, *, fields: dict | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code is not None:
            self.code = code


class InvalidFill(LotError):
    code = "INVALID_FILL"


class DuplicateFill(LotError):
    code = "DUPLICATE_FILL"


class ShortNotAllowed(LotError):
    code = "SHORT_NOT_ALLOWED"


class UnknownLot(LotError):
    code = "LOT_NOT_FOUND"


class FillOutOfOrder(LotError):
    code = "FILL_OUT_OF_ORDER"


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: str
    portfolio_id: int | str
    instrument: str
    side: Side
    quantity: Decimal
    price: Decimal
    ts: datetime
    fees: Decimal = ZERO
    multiplier: int = 1
    lot_ids: tuple[str, ...] = ()  # specific identification: close these lots, in this order


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    portfolio_id: int | str
    instrument: str
    quantity: Decimal  # > 0 long, < 0 short, 0 closed
    cost: Decimal  # total: paid (long) or received (short), fees included
    basis_adjustment: Decimal  # disallowed wash-sale losses added to this lot
    acquired: datetime
    holding_start: date  # trade date, earlier than ``acquired`` when a wash sale tacked a holding period on
    origin_fill_id: str  # the fill that opened it (split lots share it)
    replacement_used: bool  # these shares already absorbed a wash sale (each share absorbs at most one)
    splits: int = 0  # parts carved off so far (the next is "<lot_id>.<splits + 1>"): persist it to restore

    @property
    def basis(self) -> Decimal:
        return self.cost + self.basis_adjustment

    @property
    def cost_per_unit(self) -> Decimal:
        return self.basis / abs(self.quantity) if self.quantity else ZERO


@dataclass(frozen=True, slots=True)
class RealizedGain:
    gain_id: str  # "<fill_id>:<lot_id>"
    fill_id: str
    lot_id: str
    lot_origin_fill_id: str
    portfolio_id: int | str
    instrument: str
    direction: str  # "long" (a sale) or "short" (a cover)
    quantity: Decimal
    acquired: datetime
    sold: datetime
    sold_date: date  # trade date of the sale (New York)
    holding_start: date
    proceeds: Decimal
    cost_basis: Decimal
    gain: Decimal  # proceeds - cost_basis, before any wash-sale adjustment
    term: str  # "short" or "long"
    wash_code: str = ""  # "W" when part or all of a loss is disallowed
    disallowed: Decimal = ZERO  # the disallowed part of the loss (positive)
    washed_quantity: Decimal = ZERO  # how many of the sold units found replacement shares

    @property
    def adjusted_gain(self) -> Decimal:
        """The gain as reported (Form 8949 column h): the disallowed loss is added back."""
        return self.gain + self.disallowed


def _fast_constructor(cls):
    """``cls(every field, in order)`` for a frozen slots dataclass, without its ``__init__``, which sets
    each field through ``object.__setattr__`` (3x slower: the engine builds millions of snapshots and
    records). The object is the same: every slot set, no defaults or ``__post_init__`` involved."""
    names = [f.name for f in fields(cls)]
    namespace = {"_new": object.__new__, "_cls": cls, **{f"_set_{n}": getattr(cls, n).__set__ for n in names}}
    body = "".join(f"    _set_{n}(obj, {n})\n" for n in names)
    exec(f"def make({', '.join(names)}):\n    obj = _new(_cls)\n{body}    return obj\n", namespace)  # noqa: S102
    return namespace["make"]


make_lot = _fast_constructor(Lot)
make_gain = _fast_constructor(RealizedGain)
_ANNIVERSARIES: dict[date, date] = {}


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_EVEN)  # positional: the keyword costs more than the rounding


_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)
_LAST_DAY: list[tuple[datetime, datetime, date] | None] = [None]  # the latest New York day seen, as a UTC span


def trade_date(ts: datetime) -> date:
    # Fills arrive in time order, so the New York day of the previous call (kept as its UTC span)
    # usually answers without a time-zone conversion. A span is kept only when both its ends convert
    # back to that day (New York changes clocks at 2 am, never across midnight).
    span = _LAST_DAY[0]
    if span is not None:
        try:
            if span[0] <= ts < span[1]:
                return span[2]
        except TypeError:  # a naive datetime: converted below as before (astimezone takes it as local time)
            return ts.astimezone(TAX_TZ).date()
    day = ts.astimezone(TAX_TZ).date()
    try:
        start = datetime.combine(day, time.min, TAX_TZ).astimezone(UTC)
        end = datetime.combine(day + _ONE_DAY, time.min, TAX_TZ).astimezone(UTC)
    except OverflowError:  # the first or last representable day
        return day
    try:
        if start.astimezone(TAX_TZ).date() == day == (end - _ONE_MICROSECOND).astimezone(TAX_TZ).date() \
                and start <= ts < end:
            _LAST_DAY[0] = (start, end, day)
    except TypeError:  # naive
        pass
    return day


def holding_term(holding_start: date, sold: date) -> str:
    """"long" when sold after the anniversary of the start (held more than one year)."""
    anniversary = _ANNIVERSARIES.get(holding_start)
    if anniversary is None:
        try:
            anniversary = holding_start.replace(year=holding_start.year + 1)
        except ValueError:  # Feb 29: a year later is Feb 28, so Mar 1 is the first long-term day
            anniversary = date(holding_start.year + 1, 2, 28)
        if len(_ANNIVERSARIES) < 100_000:  # a few hundred trading days in practice; bounded anyway
            _ANNIVERSARIES[holding_start] = anniversary
    return "long" if sold > anniversary else "short"


class OpenLot:
    """The mutable working form of a ``Lot`` inside a book (snapshots are frozen ``Lot``s)."""

    __slots__ = ("lot_id", "portfolio_id", "instrument", "quantity", "cost", "basis_adjustment", "acquired",
                 "acquired_date", "holding_start", "origin_fill_id", "replacement_used", "splits")

    def __init__(self, lot_id: str, portfolio_id: int | str, instrument: str, quantity: Decimal, cost: Decimal,
                 basis_adjustment: Decimal, acquired: datetime, holding_start: date, origin_fill_id: str,
                 replacement_used: bool = False, acquired_date: date | None = None):
        self.lot_id = lot_id
        self.portfolio_id = portfolio_id
        self.instrument = instrument
        self.quantity = quantity
        self.cost = cost
        self.basis_adjustment = basis_adjustment
        self.acquired = acquired
        self.acquired_date = acquired_date or trade_date(acquired)
        self.holding_start = holding_start
        self.origin_fill_id = origin_fill_id
        self.replacement_used = replacement_used
        self.splits = 0

    @property
    def cost_per_unit(self) -> Decimal:
        return (self.cost + self.basis_adjustment) / abs(self.quantity)

    @classmethod
    def from_lot(cls, lot: Lot) -> OpenLot:
        opened = cls(lot.lot_id, lot.portfolio_id, lot.instrument, lot.quantity, lot.cost, lot.basis_adjustment,
                     lot.acquired, lot.holding_start, lot.origin_fill_id, lot.replacement_used)
        opened.splits = lot.splits
        return opened

    def snapshot(self) -> Lot:
        return make_lot(self.lot_id, self.portfolio_id, self.instrument, self.quantity, self.cost, self.basis_adjustment,
                   self.acquired, self.holding_start, self.origin_fill_id, self.replacement_used, self.splits)

    def take(self, quantity: Decimal) -> tuple[Decimal, Decimal]:
        """Remove ``quantity`` units (positive); return the (cost, adjustment) they carry."""
        size = abs(self.quantity)
        if quantity == size:
            cost, adjustment = self.cost, self.basis_adjustment
        else:
            cost = cents(self.cost * quantity / size)
            adjustment = cents(self.basis_adjustment * quantity / size) if self.basis_adjustment else ZERO
        self.cost -= cost
        self.basis_adjustment -= adjustment
        self.quantity = self.quantity - quantity if self.quantity > 0 else self.quantity + quantity
        return cost, adjustment

    def split(self, quantity: Decimal) -> OpenLot:
        """Carve ``quantity`` units off into a new lot (id ``<lot_id>.<n>``), e.g. the part of a lot
        that replaced shares sold in a wash sale and so gets its own basis and holding period."""
        sign = 1 if self.quantity > 0 else -1
        cost, adjustment = self.take(quantity)
        self.splits += 1
        part = OpenLot(f"{self.lot_id}.{self.splits}", self.portfolio_id, self.instrument, quantity * sign, cost,
                       adjustment, self.acquired, self.holding_start, self.origin_fill_id, self.replacement_used,
                       self.acquired_date)
        return part


def split_amount(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split ``total`` pro rata to ``weights`` in cents, the last piece taking the exact remainder."""
    if len(weights) == 1:
        return [total]
    whole = sum(weights)
    pieces = [cents(total * w / whole) for w in weights[:-1]]
    pieces.append(total - sum(pieces))
    return pieces


@dataclass(frozen=True, slots=True)
class BookResult:
    opened: OpenLot | None
    gains: list[RealizedGain]
    touched: list[OpenLot]  # lots closed or reduced


_make_book_result = _fast_constructor(BookResult)


class LotBook:
    """The lots of one instrument in one portfolio. Not thread-safe; one writer per book."""

    __slots__ = ("portfolio_id", "instrument", "method", "allow_short", "lots", "position")

    def __init__(self, portfolio_id: int | str, instrument: str, *, method: Method = Method.FIFO,
                 allow_short: bool = False, lots: Iterable[OpenLot] = ()):
        self.portfolio_id = portfolio_id
        self.instrument = instrument
        self.method = Method(method)
        self.allow_short = allow_short
        self.lots: list[OpenLot] = [lot for lot in lots if lot.quantity]  # chronological (FIFO order)
        self.position = sum((lot.quantity for lot in self.lots), ZERO)

    def snapshot(self) -> tuple[Lot, ...]:
        return tuple(lot.snapshot() for lot in self.lots)

    # -- planning (validates everything; changes nothing) --

    def _plan(self, fill: Fill, close_qty: Decimal) -> list[tuple[OpenLot, Decimal]]:
        if fill.lot_ids:
            return self._plan_specific(fill, close_qty)
        if close_qty == 0:
            return []
        if self.method is Method.SPECIFIC:
            raise UnknownLot("This portfolio uses specific identification: name the lots to close.",
                             fields={"lot_ids": ["Required for a closing fill."]}, code="LOTS_REQUIRED")
        if self.method is Method.LIFO:
            order = reversed(self.lots)
        elif self.method is Method.HIFO:
            # long: highest cost per unit first; short: lowest proceeds per unit first (both minimise the gain)
            long = self.position > 0
            order = sorted(self.lots, key=lambda lot: -lot.cost_per_unit if long else lot.cost_per_unit) \
                if len(self.lots) > 1 else self.lots
        else:  # FIFO, and AVERAGE (whose lots all carry the average cost; FIFO fixes the holding periods)
            order = self.lots
        plan = []
        remaining = close_qty
        for lot in order:
            size = abs(lot.quantity)
            q = size if size < remaining else remaining
            plan.append((lot, q))
            remaining -= q
            if not remaining:
                break
        return plan

    def _plan_specific(self, fill: Fill, close_qty: Decimal) -> list[tuple[OpenLot, Decimal]]:
        by_id = {lot.lot_id: lot for lot in self.lots}
        unknown = [lot_id for lot_id in fill.lot_ids if lot_id not in by_id]
        if unknown:
            # another portfolio's lot is "not found" too: one answer for missing and not yours
            raise UnknownLot(f"Unknown lot(s) for {self.instrument} in this portfolio: {', '.join(unknown)}.",
                             fields={"lot_ids": unknown})
        if len(set(fill.lot_ids)) != len(fill.lot_ids):
            raise InvalidFill("A lot is named twice.", fields={"lot_ids": list(fill.lot_ids)})
        plan = []
        remaining = close_qty
        for lot_id in fill.lot_ids:
            if not remaining:
                raise InvalidFill(f"Lot {lot_id} is not needed to close {close_qty}.", fields={"lot_ids": [lot_id]})
            lot = by_id[lot_id]
            size = abs(lot.quantity)
            q = size if size < remaining else remaining
            plan.append((lot, q))
            remaining -= q
        if remaining:
            raise InvalidFill(f"The named lots hold {close_qty - remaining}; the fill closes {close_qty}.",
                              fields={"lot_ids": list(fill.lot_ids)})
        return plan

    # -- applying --

    def apply(self, fill: Fill, today: date | None = None) -> BookResult:
        """Apply one fill (``today`` = its trade date, when the caller has it already)."""
        today = today or trade_date(fill.ts)
        qty = fill.quantity
        buy = fill.side == Side.BUY
        position = self.position
        if buy:
            close_qty = min(qty, -position) if position < 0 else ZERO
        else:
            close_qty = min(qty, position) if position > 0 else ZERO
        open_qty = qty - close_qty
        if open_qty and not buy and not self.allow_short:
            raise ShortNotAllowed(
                f"Selling {qty} {self.instrument} exceeds the long position of {max(position, ZERO)}; "
                "this portfolio does not allow short positions.", fields={"quantity": [str(qty)]})
        plan = self._plan(fill, close_qty)  # may raise; nothing changed yet

        multiplier = fill.multiplier
        fees = fill.fees
        if close_qty and open_qty:
            close_fees = cents(fees * close_qty / qty)
            open_fees = fees - close_fees
        else:
            close_fees, open_fees = (fees, ZERO) if close_qty else (ZERO, fees)

        gains: list[RealizedGain] = []
        touched: list[OpenLot] = []
        if plan:
            gross = close_qty * fill.price * multiplier
            # a sale receives gross - fees; a cover pays gross + fees
            amount = gross + close_fees if buy else gross - close_fees
            pieces = split_amount(amount, [q for _, q in plan]) if len(plan) > 1 else [amount]
            sold_date = today
            fill_id, sold, portfolio_id, instrument = fill.fill_id, fill.ts, self.portfolio_id, self.instrument
            emptied = 0
            for (lot, q), piece in zip(plan, pieces, strict=True):
                lot_cost, adjustment = lot.take(q)
                if not lot.quantity:
                    emptied += 1
                if buy:  # covering a short: the lot's cost is the short sale's proceeds
                    proceeds, basis, direction, term = cents(lot_cost), cents(piece), "short", "short"
                else:
                    proceeds, basis, direction = cents(piece), cents(lot_cost + adjustment), "long"
                    term = holding_term(lot.holding_start, sold_date)
                gains.append(make_gain(
                    f"{fill_id}:{lot.lot_id}", fill_id, lot.lot_id, lot.origin_fill_id, portfolio_id, instrument,
                    direction, q, lot.acquired, sold, sold_date, lot.holding_start, proceeds, basis, proceeds - basis,
                    term, "", ZERO, ZERO))
                touched.append(lot)
            if emptied:
                lots = self.lots
                if not any(lot.quantity for lot in lots[:emptied]):
                    del lots[:emptied]  # FIFO and average close from the front: no O(n) rebuild
                else:
                    self.lots = [lot for lot in lots if lot.quantity]

        opened = None
        if open_qty:
            gross = open_qty * fill.price * multiplier
            acquired_date = today
            opened = OpenLot(fill.fill_id, self.portfolio_id, self.instrument, open_qty if buy else -open_qty,
                             gross + open_fees if buy else gross - open_fees, ZERO, fill.ts, acquired_date,
                             fill.fill_id, acquired_date=acquired_date)
            self.lots.append(opened)
            if self.method is Method.AVERAGE:
                self.reaverage()
        self.position = position + qty if buy else position - qty
        return _make_book_result(opened, gains, touched)

    def insert_before(self, lot: OpenLot, part: OpenLot) -> None:
        """Place a lot split off ``lot`` just before it (same acquisition, so FIFO order is kept)."""
        self.lots.insert(self.lots.index(lot), part)  # OpenLot has identity equality

    def reaverage(self) -> None:
        """Average cost: every open lot carries the pool's average cost (and adjustment) per unit."""
        if len(self.lots) < 2:
            return
        weights = [abs(lot.quantity) for lot in self.lots]
        costs = split_amount(sum((lot.cost for lot in self.lots), ZERO), weights)
        adjustments = split_amount(sum((lot.basis_adjustment for lot in self.lots), ZERO), weights)
        for lot, cost, adjustment in zip(self.lots, costs, adjustments, strict=True):
            lot.cost = cost
            lot.basis_adjustment = adjustment


def validate_fill(fill: Fill) -> None:
    """Refuse malformed fills with a message naming the field."""
    q, p, f, m = fill.quantity, fill.price, fill.fees, fill.multiplier
    if (type(q) is Decimal and type(p) is Decimal and type(f) is Decimal and type(m) is int  # the common case, fast
            and q.is_finite() and p.is_finite() and f.is_finite() and q > 0 and p >= 0 and f >= 0 and m >= 1
            and fill.fill_id and (fill.side == Side.BUY or fill.side == Side.SELL)
            and type(fill.ts) is datetime and fill.ts.tzinfo is not None):
        return
    problems: dict[str, list[str]] = {}
    if not isinstance(fill.quantity, Decimal) or not fill.quantity.is_finite() or fill.quantity <= 0:
        problems["quantity"] = ["Must be a positive decimal."]
    if not isinstance(fill.price, Decimal) or not fill.price.is_finite() or fill.price < 0:
        problems["price"] = ["Must be a decimal of at least 0."]
    if not isinstance(fill.fees, Decimal) or not fill.fees.is_finite() or fill.fees < 0:
        problems["fees"] = ["Must be a decimal of at least 0."]
    if not isinstance(fill.multiplier, int) or fill.multiplier < 1:
        problems["multiplier"] = ["Must be a whole number of at least 1."]
    if fill.side not in (Side.BUY, Side.SELL):
        problems["side"] = ["Must be buy or sell."]
    if not isinstance(fill.ts, datetime) or fill.ts.tzinfo is None:
        problems["ts"] = ["Must be a timezone-aware datetime."]
    if not fill.fill_id:
        problems["fill_id"] = ["Required."]
    if problems:
        raise InvalidFill(f"Invalid fill: {', '.join(sorted(problems))}.", fields=problems)
