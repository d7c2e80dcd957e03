"""Lot matching (FIFO, LIFO, HIFO, specific, average), shorts, options, fees, terms and errors.

Every expected figure is computed by hand in the test's docstring or comments.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from apps.portfolios.lots import (
    DuplicateFill,
    Fill,
    FillOutOfOrder,
    InvalidFill,
    Method,
    ShortNotAllowed,
    Side,
    UnknownLot,
    holding_term,
)
from apps.portfolios.wash import Policy, TaxLotEngine


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 15, 0, tzinfo=UTC)  # 10:00 or 11:00 in New York: same trade date


def fill(fill_id, side, qty, price, when, *, portfolio=1, instrument="XYZ", fees="0", multiplier=1, lot_ids=()):
    return Fill(fill_id, portfolio, instrument, Side(side), D(qty), D(price), when, D(fees), multiplier, tuple(lot_ids))


def three_lots(method: Method, **policy) -> TaxLotEngine:
    """L1 100 @ 10 (cost 1,000), L2 100 @ 12 (1,200), L3 100 @ 11 (1,100); no losses anywhere below."""
    engine = TaxLotEngine({1: Policy(method, **policy)})
    engine.apply(fill("L1", "buy", 100, "10", at(2025, 1, 2)))
    engine.apply(fill("L2", "buy", 100, "12", at(2025, 2, 3)))
    engine.apply(fill("L3", "buy", 100, "11", at(2025, 3, 3)))
    return engine


def closed(result) -> list[tuple[str, D, D, D, D]]:
    return [(g.lot_id, g.quantity, g.proceeds, g.cost_basis, g.gain) for g in result.gains]


def open_lots(engine) -> list[tuple[str, D, D]]:
    return [(lot.lot_id, lot.quantity, lot.basis) for lot in engine.open_lots()]


SELL_150 = ("S1", "sell", 150, "13", at(2025, 4, 1))


def test_fifo_closes_oldest_first():
    engine = three_lots(Method.FIFO)
    result = engine.apply(fill(*SELL_150, fees="3"))
    # proceeds 150 x 13 - 3 = 1,947 split 100:50 -> 1,298 and 649
    assert closed(result) == [("L1", 100, D("1298.00"), D("1000.00"), D("298.00")),
                              ("L2", 50, D("649.00"), D("600.00"), D("49.00"))]
    assert open_lots(engine) == [("L2", 50, 600), ("L3", 100, 1100)]
    assert engine.position(1, "XYZ") == 150


def test_lifo_closes_newest_first():
    engine = three_lots(Method.LIFO)
    result = engine.apply(fill(*SELL_150))
    assert closed(result) == [("L3", 100, 1300, 1100, 200), ("L2", 50, 650, 600, 50)]
    assert open_lots(engine) == [("L1", 100, 1000), ("L2", 50, 600)]


def test_hifo_closes_highest_cost_first():
    engine = three_lots(Method.HIFO)
    result = engine.apply(fill(*SELL_150))
    assert closed(result) == [("L2", 100, 1300, 1200, 100), ("L3", 50, 650, 550, 100)]
    assert open_lots(engine) == [("L1", 100, 1000), ("L3", 50, 550)]


def test_specific_identification_closes_the_named_lots_in_order():
    engine = three_lots(Method.SPECIFIC)
    result = engine.apply(fill(*SELL_150, lot_ids=["L3", "L1"]))
    assert closed(result) == [("L3", 100, 1300, 1100, 200), ("L1", 50, 650, 500, 150)]
    assert open_lots(engine) == [("L1", 50, 500), ("L2", 100, 1200)]


def test_named_lots_override_the_portfolio_method():
    engine = three_lots(Method.FIFO)
    result = engine.apply(fill("S1", "sell", 30, "13", at(2025, 4, 1), lot_ids=["L2"]))
    assert closed(result) == [("L2", 30, 390, 360, 30)]


def test_average_cost_uses_the_pool_average():
    """Average (1,000 + 1,200 + 1,100) / 300 = 11 per share: selling 150 at 13 gains 300; the
    holding periods come from the oldest shares first."""
    engine = three_lots(Method.AVERAGE)
    result = engine.apply(fill(*SELL_150))
    assert closed(result) == [("L1", 100, 1300, 1100, 200), ("L2", 50, 650, 550, 100)]
    assert [g.acquired for g in result.gains] == [at(2025, 1, 2), at(2025, 2, 3)]
    assert open_lots(engine) == [("L2", 50, 550), ("L3", 100, 1100)]


def test_fees_are_added_to_cost_and_split_pro_rata_on_partial_closes():
    """Cost 3 x 10 + 1 = 31 (10.333... a share, kept unrounded); selling 1 takes 31/3 = 10.33
    (half-even to cents) and leaves exactly 20.67 for the last 2."""
    engine = TaxLotEngine()
    engine.apply(fill("B", "buy", 3, "10", at(2025, 1, 2), fees="1"))
    assert engine.open_lots()[0].cost_per_unit == D(31) / D(3)
    first = engine.apply(fill("S1", "sell", 1, "12", at(2025, 1, 3), fees="0.50"))
    second = engine.apply(fill("S2", "sell", 2, "12", at(2025, 1, 4), fees="0.50"))
    assert closed(first) == [("B", 1, D("11.50"), D("10.33"), D("1.17"))]
    assert closed(second) == [("B", 2, D("23.50"), D("20.67"), D("2.83"))]
    assert engine.open_lots() == ()


@pytest.mark.parametrize(("bought", "sold", "term"), [
    (date(2024, 1, 2), date(2025, 1, 2), "short"),  # the anniversary itself: exactly one year
    (date(2024, 1, 2), date(2025, 1, 3), "long"),   # the day after: more than one year
    (date(2024, 2, 29), date(2025, 2, 28), "short"),
    (date(2024, 2, 29), date(2025, 3, 1), "long"),
])
def test_long_term_means_sold_after_the_anniversary(bought, sold, term):
    """IRS Publication 550, "Holding Period": count from the day after acquisition; long term if
    held more than 1 year."""
    assert holding_term(bought, sold) == term


def test_gain_records_carry_the_term():
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 10, "10", at(2024, 1, 2)))
    engine.apply(fill("B2", "buy", 10, "10", at(2024, 6, 3)))
    result = engine.apply(fill("S", "sell", 20, "15", at(2025, 1, 3)))
    assert [(g.lot_id, g.term, g.sold_date) for g in result.gains] == [
        ("B1", "long", date(2025, 1, 3)), ("B2", "short", date(2025, 1, 3))]


def test_short_sale_opens_and_a_buy_covers_first_then_opens_a_long():
    """Short 100 @ 50, fee 1: the short lot holds 4,999 received. Buy 150 @ 40, fee 1.50: 1.00 of
    it goes to the 100 covered (cost 4,001, gain 998), 0.50 to the 50 opened long (cost 2,000.50)."""
    engine = TaxLotEngine({1: Policy(allow_short=True)})
    engine.apply(fill("SS", "sell", 100, "50", at(2025, 3, 3), fees="1"))
    assert open_lots(engine) == [("SS", -100, D("4999"))]
    assert engine.position(1, "XYZ") == -100
    result = engine.apply(fill("BC", "buy", 150, "40", at(2025, 3, 10), fees="1.50"))
    [gain] = result.gains
    assert (gain.direction, gain.quantity, gain.proceeds, gain.cost_basis, gain.gain, gain.term) == (
        "short", 100, D("4999.00"), D("4001.00"), D("998.00"), "short")
    assert open_lots(engine) == [("BC", 50, D("2000.50"))]
    assert engine.position(1, "XYZ") == 50


def test_a_sell_through_a_long_position_opens_a_short_when_allowed():
    engine = TaxLotEngine({1: Policy(allow_short=True)})
    engine.apply(fill("B", "buy", 10, "20", at(2025, 3, 3)))
    result = engine.apply(fill("S", "sell", 25, "21", at(2025, 3, 4), fees="2.50"))
    # fees: 10/25 x 2.50 = 1.00 on the close, 1.50 on the short opened
    assert closed(result) == [("B", 10, D("209.00"), D("200.00"), D("9.00"))]
    assert open_lots(engine) == [("S", -15, D("313.50"))]


def test_options_apply_the_multiplier():
    """2 contracts @ 3.50 x 100 + 1.30 fees = 701.30; sell 1 @ 5.00 - 0.65 = 499.35 against
    half the cost, 350.65: gain 148.70."""
    engine = TaxLotEngine()
    option = "XYZ250620C00050000"
    engine.apply(fill("B", "buy", 2, "3.50", at(2025, 3, 3), instrument=option, fees="1.30", multiplier=100))
    result = engine.apply(fill("S", "sell", 1, "5.00", at(2025, 3, 4), instrument=option, fees="0.65",
                               multiplier=100))
    assert closed(result) == [("B", 1, D("499.35"), D("350.65"), D("148.70"))]
    assert engine.position(1, option) == 1


# -- errors: a clear message, nothing changed --


def assert_unchanged(engine, before):
    assert engine.state() == before


def test_selling_more_than_held_without_shorting_is_refused():
    engine = three_lots(Method.FIFO)
    before = engine.state()
    with pytest.raises(ShortNotAllowed) as caught:
        engine.apply(fill("S", "sell", 301, "13", at(2025, 4, 1)))
    assert caught.value.code == "SHORT_NOT_ALLOWED"
    assert caught.value.message == ("Selling 301 XYZ exceeds the long position of 300; "
                                    "this portfolio does not allow short positions.")
    assert caught.value.fields == {"quantity": ["301"]}
    assert_unchanged(engine, before)
    engine.apply(fill("S", "sell", 300, "13", at(2025, 4, 1)))  # the same id is still free
    assert engine.position(1, "XYZ") == 0


def test_unknown_and_other_portfolios_lots_are_not_found():
    engine = three_lots(Method.SPECIFIC)
    engine.apply(fill("P2", "buy", 10, "10", at(2025, 3, 4), portfolio=2))
    before = engine.state()
    for lot_ids in (["NOPE"], ["L1", "P2"]):
        with pytest.raises(UnknownLot) as caught:
            engine.apply(fill("S", "sell", 150, "13", at(2025, 4, 1), lot_ids=lot_ids))
        assert caught.value.code == "LOT_NOT_FOUND"
        assert caught.value.fields == {"lot_ids": [lot_ids[-1]]}
        assert_unchanged(engine, before)


def test_specific_method_requires_lots_and_enough_of_them():
    engine = three_lots(Method.SPECIFIC)
    before = engine.state()
    with pytest.raises(UnknownLot) as caught:
        engine.apply(fill("S", "sell", 10, "13", at(2025, 4, 1)))
    assert caught.value.code == "LOTS_REQUIRED"
    with pytest.raises(InvalidFill, match="The named lots hold 100; the fill closes 150."):
        engine.apply(fill("S", "sell", 150, "13", at(2025, 4, 1), lot_ids=["L1"]))
    assert_unchanged(engine, before)


def test_a_repeated_fill_id_is_refused_not_applied_twice():
    engine = TaxLotEngine()
    engine.apply(fill("B", "buy", 10, "10", at(2025, 1, 2)))
    before = engine.state()
    with pytest.raises(DuplicateFill) as caught:
        engine.apply(fill("B", "buy", 10, "10", at(2025, 1, 2)))
    assert caught.value.code == "DUPLICATE_FILL"
    assert engine.position(1, "XYZ") == 10
    assert_unchanged(engine, before)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("price", {"price": "-1"}),
    ("quantity", {"qty": "0"}),
    ("quantity", {"qty": "-5"}),
    ("fees", {"fees": "-0.01"}),
    ("multiplier", {"multiplier": 0}),
])
def test_malformed_fills_name_the_field(field, kwargs):
    engine = TaxLotEngine()
    args = {"qty": "10", "price": "10", "fees": "0", "multiplier": 1} | kwargs
    with pytest.raises(InvalidFill) as caught:
        engine.apply(fill("B", "buy", args["qty"], args["price"], at(2025, 1, 2), fees=args["fees"],
                          multiplier=args["multiplier"]))
    assert list(caught.value.fields) == [field]
    assert engine.state() == ((), ())


def test_naive_timestamps_and_out_of_order_fills_are_refused():
    engine = TaxLotEngine()
    with pytest.raises(InvalidFill) as caught:
        engine.apply(fill("B", "buy", 1, "10", datetime(2025, 1, 2, 15)))  # noqa: DTZ001 - the point of the test
    assert caught.value.fields == {"ts": ["Must be a timezone-aware datetime."]}
    engine.apply(fill("B", "buy", 1, "10", at(2025, 1, 3)))
    with pytest.raises(FillOutOfOrder):
        engine.apply(fill("C", "buy", 1, "10", at(2025, 1, 2)))
    assert engine.position(1, "XYZ") == 1
