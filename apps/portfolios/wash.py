"""The tax lots of one tax entity, with wash sales across its portfolios (pure; no ORM).

``TaxLotEngine.apply(fill)`` books fills in time order into per-(portfolio, instrument)
``LotBook``s and applies the wash-sale rule of IRS Publication 550 ("Wash Sales") across every
portfolio of the entity:

- A sale of a long lot at a loss is a wash sale to the extent that substantially identical shares
  (here: the same instrument key) were bought within 30 days before or after the sale's trade
  date, in any portfolio of the entity. With fewer replacement shares than shares sold, the loss
  is disallowed in proportion (replacement quantity / quantity sold).
- The disallowed loss is added to the replacement shares' basis, and the sold shares' holding
  period is tacked on to theirs (holding start moved back by the days the sold shares were held).
  Replacement shares that only partly absorb a sale are split into their own lot (id
  ``<lot_id>.<n>``) because their basis and holding period now differ.
- Replacement shares are matched in the order they were bought; loss sales in the order they were
  made. Each share absorbs at most one wash sale. Selling part of one purchase does not make the
  rest of that purchase a replacement (Rev. Rul. 56-602).
- A later buy can wash an earlier sale: ``FillResult.updated_gains`` carries the earlier records
  with their new ``disallowed`` amount, for the service to persist and audit.

Not covered (documented limits): losses on covering short sales, options on the stock as
replacement property, IRAs, and partial-share rounding of broker 1099-B practice.

Everything is deterministic given the ordered fills, so replaying them from scratch (``replay``)
reproduces the same lots and records — the rebuild command relies on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from apps.portfolios.lots import (
    ZERO,
    DuplicateFill,
    Fill,
    FillOutOfOrder,
    Lot,
    LotBook,
    Method,
    OpenLot,
    RealizedGain,
    _fast_constructor,
    cents,
    make_gain,
    trade_date,
    validate_fill,
)

WINDOW = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Policy:
    method: Method = Method.FIFO
    allow_short: bool = False


@dataclass(frozen=True, slots=True)
class FillResult:
    fill_id: str
    gains: tuple[RealizedGain, ...]  # records this fill produced, wash adjustments included
    updated_gains: tuple[RealizedGain, ...]  # earlier records this fill changed (a later buy washing a sale)
    lots: tuple[Lot, ...]  # every lot this fill opened, closed (quantity 0), reduced, split or adjusted, any portfolio


_make_result = _fast_constructor(FillResult)


class TaxLotEngine:
    """All books of one tax entity. Fills must arrive in non-decreasing ``ts`` order."""

    def __init__(self, policies: Mapping[int | str, Policy] | None = None, *, default: Policy | None = None):
        self.policies = dict(policies or {})
        self.default = default or Policy()
        self.books: dict[tuple[int | str, str], LotBook] = {}
        self.gains: dict[str, RealizedGain] = {}  # gain_id -> current record, in production order
        self.fill_ids: set[str] = set()
        self.last_ts: datetime | None = None
        # per instrument: long lots bought in the last 30 days that may still replace sold shares,
        # and loss records of the last 30 days not yet fully washed (both in time order)
        self._buys: dict[str, deque[OpenLot]] = {}
        self._losses: dict[str, deque[str]] = {}

    @classmethod
    def restore(cls, *, lots: Iterable[Lot], pending_losses: Iterable[RealizedGain] = (),
                policies: Mapping[int | str, Policy] | None = None, default: Policy | None = None,
                last_ts: datetime | None = None, fill_ids: Iterable[str] = ()) -> TaxLotEngine:
        """Rebuild the working state from stored rows instead of replaying every fill.

        ``lots``: the entity's open lots ordered by the booking sequence of the fill that opened
        each (parts split off one lot keep the order ``open_lots()`` gives them in their book).
        ``pending_losses``: the long loss records sold within the last 30 days and not yet fully
        washed, in production order. Booking fills after a restore gives the same result as
        booking them after a full replay (property-tested).
        """
        engine = cls(policies, default=default)
        engine.last_ts = last_ts
        engine.fill_ids.update(fill_ids)
        opened = [OpenLot.from_lot(lot) for lot in lots if lot.quantity]
        for lot in opened:
            engine.book(lot.portfolio_id, lot.instrument).lots.append(lot)
        for book in engine.books.values():
            book.position = sum((lot.quantity for lot in book.lots), ZERO)
        for lot in opened:
            if lot.quantity > 0 and not lot.replacement_used:
                engine._buys.setdefault(lot.instrument, deque()).append(lot)
        for gain in pending_losses:
            if gain.direction == "long" and gain.gain < 0 and gain.washed_quantity < gain.quantity:
                engine.gains[gain.gain_id] = gain
                engine._losses.setdefault(gain.instrument, deque()).append(gain.gain_id)
        return engine

    # -- reads --

    def book(self, portfolio_id: int | str, instrument: str) -> LotBook:
        key = (portfolio_id, instrument)
        book = self.books.get(key)
        if book is None:
            policy = self.policies.get(portfolio_id, self.default)
            book = self.books[key] = LotBook(portfolio_id, instrument, method=policy.method,
                                              allow_short=policy.allow_short)
        return book

    def position(self, portfolio_id: int | str, instrument: str) -> Decimal:
        book = self.books.get((portfolio_id, instrument))
        return book.position if book else ZERO

    def open_lots(self) -> tuple[Lot, ...]:
        return tuple(lot.snapshot() for key in sorted(self.books, key=str) for lot in self.books[key].lots)

    def state(self) -> tuple[tuple[Lot, ...], tuple[RealizedGain, ...]]:
        """Everything a rebuild must reproduce: open lots and realized-gain records."""
        return self.open_lots(), tuple(self.gains.values())

    # -- writes --

    def apply(self, fill: Fill) -> FillResult:
        """Book one fill. Raises a ``LotError`` (nothing changed) for a duplicate, malformed,
        out-of-order or unbookable fill."""
        if fill.fill_id in self.fill_ids:
            raise DuplicateFill(f"Fill {fill.fill_id} is already booked.", fields={"fill_id": [fill.fill_id]})
        validate_fill(fill)
        if self.last_ts is not None and fill.ts < self.last_ts:
            raise FillOutOfOrder(f"Fill {fill.fill_id} is dated before the last booked fill ({self.last_ts.isoformat()}); "
                                 "book it by rebuilding from the ordered history.", fields={"ts": [fill.ts.isoformat()]})
        today = trade_date(fill.ts)
        book = self.books.get((fill.portfolio_id, fill.instrument)) or self.book(fill.portfolio_id, fill.instrument)
        result = book.apply(fill, today)  # raises before changing anything
        self.fill_ids.add(fill.fill_id)
        self.last_ts = fill.ts

        touched: dict[int, OpenLot] = {id(lot): lot for lot in result.touched}
        updated_gains: tuple[RealizedGain, ...] = ()
        gains = result.gains
        instrument = fill.instrument
        records = self.gains
        for gain in gains:
            records[gain.gain_id] = gain
            if gain.direction == "long" and gain.gain < ZERO:
                # washed in place: the record was made by this fill and is not published yet
                if not self._wash_from_earlier_buys(gain, today, touched):
                    losses = self._losses.get(instrument)
                    if losses is None:
                        losses = self._losses[instrument] = deque()
                    losses.append(gain.gain_id)
        opened = result.opened
        if opened is not None:
            touched[id(opened)] = opened
            if opened.quantity > 0:
                if self._losses.get(instrument):
                    updated: dict[str, RealizedGain] = {}
                    self._wash_earlier_losses(opened, today, touched, updated)
                    updated_gains = tuple(updated.values())  # a buy never closes a long: all earlier records
                if not opened.replacement_used and opened.quantity:
                    buys = self._buys.get(instrument)
                    if buys is None:
                        buys = self._buys[instrument] = deque()
                    buys.append(opened)
        return _make_result(
            fill.fill_id,
            tuple(gains),
            updated_gains,
            tuple(map(_snapshot, touched.values())),
        )

    def _wash_from_earlier_buys(self, gain: RealizedGain, today: date, touched: dict) -> bool:
        """Wash a new loss ``gain`` with the instrument's open buys; True when fully washed. Sets the
        wash fields on ``gain`` itself, which this fill has just made (one record instead of one per
        replacement lot: the same values as building a new record after each)."""
        buys = self._buys.get(gain.instrument)
        if not buys:
            return False
        earliest = today - WINDOW
        while buys and (buys[0].replacement_used or not buys[0].quantity or buys[0].acquired_date < earliest):
            buys.popleft()
        quantity = gain.quantity
        disallowed = gain.disallowed
        washed = gain.washed_quantity
        if washed == quantity:
            return True
        origin = gain.lot_origin_fill_id
        changed = False
        for lot in buys:  # _absorb never changes ``buys``
            if lot.replacement_used or lot.quantity <= 0 or lot.origin_fill_id == origin:
                continue
            disallowed, washed = self._absorb(gain, disallowed, washed, lot, touched)
            changed = True
            if washed == quantity:
                break
        if changed:
            _set(gain, "wash_code", "W")
            _set(gain, "disallowed", disallowed)
            _set(gain, "washed_quantity", washed)
        return washed == quantity

    def _wash_earlier_losses(self, lot: OpenLot, today: date, touched: dict, updated: dict) -> None:
        losses = self._losses.get(lot.instrument)
        if not losses:
            return
        earliest = today - WINDOW
        gains = self.gains
        while losses:
            first = gains[losses[0]]
            if first.washed_quantity < first.quantity and first.sold_date >= earliest:
                break
            losses.popleft()
        for gain_id in losses:  # _absorb never changes ``losses``
            if lot.replacement_used or not lot.quantity:
                break
            gain = gains[gain_id]
            if gain.washed_quantity < gain.quantity:
                disallowed, washed = self._absorb(gain, gain.disallowed, gain.washed_quantity, lot, touched)
                # an earlier fill's record (already returned): replaced, never changed
                gains[gain_id] = updated[gain_id] = _with_wash(gain, disallowed, washed)

    def _wash(self, gain: RealizedGain, lot: OpenLot, touched: dict) -> RealizedGain:
        """Let ``lot`` (or as much of it as needed) replace the unwashed part of ``gain``'s shares."""
        disallowed, washed = self._absorb(gain, gain.disallowed, gain.washed_quantity, lot, touched)
        gain = _with_wash(gain, disallowed, washed)
        self.gains[gain.gain_id] = gain
        return gain

    def _absorb(self, gain: RealizedGain, disallowed: Decimal, washed: Decimal, lot: OpenLot,
                touched: dict) -> tuple[Decimal, Decimal]:
        """Let ``lot`` (or as much of it as needed) replace the unwashed part of ``gain``'s shares,
        ``disallowed`` and ``washed`` being the gain's wash so far; return them updated."""
        sold = gain.quantity
        quantity = sold - washed
        if lot.quantity < quantity:  # min(unwashed, lot.quantity), keeping min's choice on a tie
            quantity = lot.quantity
        washed = washed + quantity
        loss = -gain.gain
        # cumulative rounding, so the parts of one record's disallowed loss add up to the whole loss
        total = loss if washed == sold else cents(loss * washed / sold)
        part = total - disallowed
        book = self.books[(lot.portfolio_id, lot.instrument)]
        if quantity < lot.quantity:
            replacement = lot.split(quantity)
            book.insert_before(lot, replacement)
        else:
            replacement = lot
        replacement.basis_adjustment += part
        held = gain.sold_date - gain.holding_start
        replacement.holding_start = replacement.acquired_date - held
        replacement.replacement_used = True
        touched[id(lot)] = lot
        touched[id(replacement)] = replacement
        if book.method is Method.AVERAGE:
            book.reaverage()
            for other in book.lots:
                touched[id(other)] = other
        return total, washed


_set = object.__setattr__
_snapshot = OpenLot.snapshot


def _with_wash(g: RealizedGain, disallowed: Decimal, washed: Decimal) -> RealizedGain:
    # dataclasses.replace is ~5x slower than this, and it runs once per wash sale
    return make_gain(g.gain_id, g.fill_id, g.lot_id, g.lot_origin_fill_id, g.portfolio_id, g.instrument,
                     g.direction, g.quantity, g.acquired, g.sold, g.sold_date, g.holding_start, g.proceeds,
                     g.cost_basis, g.gain, g.term, "W", disallowed, washed)


def replay(fills: Iterable[Fill], policies: Mapping[int | str, Policy] | None = None, *,
           default: Policy | None = None) -> TaxLotEngine:
    """Rebuild a tax entity's lots and gains from its ordered fills."""
    engine = TaxLotEngine(policies, default=default)
    for fill in fills:
        engine.apply(fill)
    return engine
