"""Corporate actions on the pure tax-lot engine (no ORM).

These functions change a ``wash.TaxLotEngine`` in place (its books are keyed
``(portfolio_id, instrument_id)``) so that the booking service (``apps.portfolios.corporate``) and
the rebuild (which replays fills and corporate actions in time order) share one implementation.

Split / reverse split (IRS Publication 550, "Stock Splits"): a split is not a sale. Every open lot
keeps its identity (``lot_id``), acquisition date, holding period, total ``cost`` and wash-sale
``basis_adjustment``; only its quantity changes, by ``ratio_to / ratio_from`` (a 2-for-1 split is
from 1 to 2, a 1-for-10 reverse split from 10 to 1). Long and short lots alike. Quantities are
computed exactly; a ratio whose result does not terminate (1-for-3 of 100 shares) is rounded half
even to ``QUANTITY_PLACES`` decimals per lot.

Cash in lieu: a non-fractionable instrument cannot hold fractions after the split. The fraction
of each *position* (not of each lot) is sold for cash (a short buys it back) — that sale is a real
disposal with a gain or loss, so the service books it as a fill. ``cash_in_lieu`` only computes
which quantity to sell and from which lot (the lot carrying the largest share of that fraction, so
the remaining lots come out whole where possible).

Symbol change: the lots move to the new instrument key unchanged; the fills stay on the old one
(history). The wash-sale working state follows: a loss on the old symbol is washed by buying the
new one (substantially identical stock).

Documented limits: pending loss records (``engine._losses``) keep their pre-split share counts, so a
replacement purchase after a split is compared share for share with the pre-split sale.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext

from apps.portfolios.lots import ZERO, Lot, LotBook, LotError
from apps.portfolios.wash import TaxLotEngine

QUANTITY_PLACES = Decimal("1e-10")


class CorporateActionError(LotError):
    code = "INVALID_CORPORATE_ACTION"


@dataclass(frozen=True, slots=True)
class CashInLieu:
    """The fraction a position must dispose of after a split of a non-fractionable instrument."""

    portfolio_id: int | str
    instrument: int | str
    quantity: Decimal  # positive: shares to sell (long) or buy back (short)
    side: str  # "sell" for a long position, "buy" for a short one
    lot_id: str  # the lot to take it from (specific identification)


def validate_ratio(ratio_from: Decimal, ratio_to: Decimal) -> None:
    problems = {}
    for name, value in (("ratio_from", ratio_from), ("ratio_to", ratio_to)):
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            problems[name] = ["Must be a positive number."]
    if not problems and ratio_from == ratio_to:
        problems["ratio_to"] = ["Must differ from ratio_from."]
    if problems:
        raise CorporateActionError(f"Invalid split ratio: {', '.join(sorted(problems))}.", fields=problems)


def scale_quantity(quantity: Decimal, ratio_from: Decimal, ratio_to: Decimal) -> Decimal:
    """``quantity x to / from``, exact when it terminates, else rounded to ``QUANTITY_PLACES``."""
    with localcontext(Context(prec=60, traps=[Inexact])):
        try:
            return (quantity * ratio_to / ratio_from).normalize() if quantity else ZERO
        except Inexact:
            pass
    with localcontext(Context(prec=60)):
        return (quantity * ratio_to / ratio_from).quantize(QUANTITY_PLACES, rounding=ROUND_HALF_EVEN)


def _books_of(engine: TaxLotEngine, instrument_id, portfolio_ids: Iterable | None) -> list[tuple[tuple, LotBook]]:
    wanted = None if portfolio_ids is None else set(portfolio_ids)
    return [(key, book) for key, book in engine.books.items()
            if key[1] == instrument_id and (wanted is None or key[0] in wanted)]


def apply_split(engine: TaxLotEngine, instrument_id, ratio_from: Decimal, ratio_to: Decimal,
                portfolio_ids: Iterable | None = None) -> list[Lot]:
    """Multiply the quantity of every open lot of ``instrument_id`` by ``ratio_to / ratio_from``
    (in ``portfolio_ids``, or every portfolio of the engine). Total cost and basis adjustment are
    unchanged; each book's position is recomputed. Returns snapshots of the lots changed, in book
    order. Raises ``CorporateActionError`` (nothing changed) for a non-positive or identity ratio."""
    validate_ratio(ratio_from, ratio_to)
    touched: list[Lot] = []
    for _key, book in _books_of(engine, instrument_id, portfolio_ids):
        for lot in book.lots:
            lot.quantity = scale_quantity(lot.quantity, ratio_from, ratio_to)
            touched.append(lot.snapshot())
        book.position = sum((lot.quantity for lot in book.lots), ZERO)
    return touched


def fraction_of(quantity: Decimal) -> Decimal:
    """The signed fractional part of a quantity (toward zero): 10.5 -> 0.5, -3.25 -> -0.25."""
    return quantity - quantity.to_integral_value(rounding=ROUND_DOWN)


def cash_in_lieu(engine: TaxLotEngine, instrument_id, portfolio_ids: Iterable | None = None) -> list[CashInLieu]:
    """After ``apply_split`` on a non-fractionable instrument: per position holding a fraction, the
    quantity to dispose of and the lot to take it from. Pure; changes nothing.

    The lot chosen is the first (book order) whose own fractional part covers the position's
    fraction, else the first large enough — with lots of 5 and 5.5 after a 1-for-10 split of 50 + 55
    shares, the 0.5 is taken from the 5.5 lot and both lots end whole."""
    out = []
    for (portfolio_id, _), book in sorted(_books_of(engine, instrument_id, portfolio_ids), key=lambda kb: str(kb[0])):
        fraction = fraction_of(book.position)
        if not fraction:
            continue
        size = abs(fraction)
        same_side = [lot for lot in book.lots if (lot.quantity > 0) == (fraction > 0)]
        chosen = next((lot for lot in same_side if abs(fraction_of(lot.quantity)) >= size), None) \
            or next((lot for lot in same_side if abs(lot.quantity) >= size), None)
        if chosen is None:  # cannot happen for a position of one sign; be explicit rather than wrong
            raise CorporateActionError(f"No lot of portfolio {portfolio_id} can supply {size} for cash in lieu.",
                                       fields={"portfolio": [str(portfolio_id)]})
        out.append(CashInLieu(portfolio_id, instrument_id, size, "sell" if fraction > 0 else "buy", chosen.lot_id))
    return out


def change_symbol(engine: TaxLotEngine, old_instrument_id, new_instrument_id,
                  portfolio_ids: Iterable | None = None) -> list[Lot]:
    """Move the books (lots, positions) of ``old_instrument_id`` to ``new_instrument_id`` (in
    ``portfolio_ids``, or every portfolio), with their replacement-eligible buys (the moved lots);
    unwashed losses of the old symbol stay under it (see ``_move_wash_state``). Lots keep ids, cost,
    basis adjustment, dates. Refuses (nothing changed) when a portfolio already holds open lots of
    the new instrument — merging two holdings is not a symbol change. Returns the moved lots."""
    if old_instrument_id == new_instrument_id:
        raise CorporateActionError("The new instrument is the old one.", fields={"new_symbol": ["Must differ."]})
    moving = _books_of(engine, old_instrument_id, portfolio_ids)
    clash = [str(pid) for (pid, _), _book in moving
             if (other := engine.books.get((pid, new_instrument_id))) is not None and other.lots]
    if clash:
        raise CorporateActionError(
            f"Portfolio(s) {', '.join(clash)} already hold the new instrument; a symbol change cannot merge holdings.",
            fields={"new_symbol": clash})
    moved: list[Lot] = []
    moved_ids: set[int] = set()
    for (pid, _), book in moving:
        del engine.books[(pid, old_instrument_id)]
        book.instrument = new_instrument_id
        for lot in book.lots:
            lot.instrument = new_instrument_id
            moved_ids.add(id(lot))
            moved.append(lot.snapshot())
        engine.books[(pid, new_instrument_id)] = book
    _move_wash_state(engine, old_instrument_id, new_instrument_id, moved_ids)
    return moved


def _move_wash_state(engine: TaxLotEngine, old, new, moved_ids: set[int]) -> None:
    buys = engine._buys.get(old)
    if buys:
        stay = deque(lot for lot in buys if id(lot) not in moved_ids)
        go = [lot for lot in buys if id(lot) in moved_ids]
        target = engine._buys.setdefault(new, deque())
        target.extend(go)
        engine._buys[new] = deque(sorted(target, key=lambda lot: lot.acquired))
        if stay:
            engine._buys[old] = stay
        else:
            del engine._buys[old]
    # Unwashed losses stay under the old key: the booking service finds pending losses by the
    # instrument of their records, which keep the old one (history), so a loss sold under the old
    # symbol is not washed by buying the new one. Replaying must agree with booking (the rebuild
    # compares them); treating the two symbols as one security is a documented limit.
