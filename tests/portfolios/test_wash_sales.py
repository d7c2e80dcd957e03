"""Wash sales (IRS Publication 550, chapter 4 "Sales and Trades of Investment Property", section
"Wash Sales"), reconstructed from the publication's worked examples; the dates are illustrative
where the publication gives none."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

from apps.portfolios.lots import Fill, Side
from apps.portfolios.wash import Policy, TaxLotEngine, replay


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 15, 0, tzinfo=UTC)


def fill(fill_id, side, qty, price, when, *, portfolio=1, instrument="X", fees="0"):
    return Fill(fill_id, portfolio, instrument, Side(side), D(qty), D(price), when, D(fees))


def lots(engine) -> list[tuple[str, D, D, date]]:
    return [(lot.lot_id, lot.quantity, lot.basis, lot.holding_start) for lot in engine.open_lots()]


def test_pub550_example_replacement_cheaper_than_the_sale():
    """Pub. 550, Wash Sales, Example 1: buy 100 shares of X for $1,000, sell them for $750, and
    within 30 days buy 100 shares for $800. The $250 loss is disallowed; the new shares' basis is
    $800 + $250 = $1,050."""
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 1, 2)))
    sale = engine.apply(fill("S1", "sell", 100, "7.50", at(2025, 3, 3)))
    assert sale.gains[0].gain == D("-250.00") and sale.gains[0].wash_code == ""
    rebuy = engine.apply(fill("B2", "buy", 100, "8", at(2025, 3, 20)))
    [record] = rebuy.updated_gains  # the later buy changes the earlier record
    assert (record.gain_id, record.gain, record.wash_code, record.disallowed, record.adjusted_gain) == (
        "S1:B1", D("-250.00"), "W", D("250.00"), D("0.00"))
    assert engine.gains["S1:B1"] == record
    assert [(lot.lot_id, lot.basis) for lot in rebuy.lots] == [("B2", D("1050.00"))]
    assert engine.open_lots()[0].basis == D("1050.00")


def test_pub550_example_replacement_dearer_than_the_sale():
    """Pub. 550, Wash Sales, Example 2: as Example 1 but the 100 new shares cost $1,100: the basis
    of the new stock is $1,100 + $250 = $1,350."""
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 1, 2)))
    engine.apply(fill("S1", "sell", 100, "7.50", at(2025, 3, 3)))
    engine.apply(fill("B2", "buy", 100, "11", at(2025, 3, 4)))
    assert engine.open_lots()[0].basis == D("1350.00")
    assert engine.gains["S1:B1"].disallowed == D("250.00")


def test_pub550_more_stock_bought_than_sold_matches_in_purchase_order():
    """Pub. 550, Wash Sales, "More or less stock bought than sold": 100 shares of M bought
    September 24, 2024, sold February 3, 2025 at a $1,000 loss; 50 shares bought on each of the 4
    days February 10-13, 2025. The $1,000 loss is disallowed; half ($500) goes to the basis of the
    50 shares bought February 10, the other half to those bought February 11; the shares bought
    February 12 and 13 are not affected."""
    engine = TaxLotEngine()
    engine.apply(fill("B0", "buy", 100, "20", at(2024, 9, 24)))
    engine.apply(fill("S", "sell", 100, "10", at(2025, 2, 3)))
    for day, price in zip((10, 11, 12, 13), ("10.50", "10.60", "10.70", "10.80"), strict=True):
        engine.apply(fill(f"B{day}", "buy", 50, price, at(2025, 2, day)))
    record = engine.gains["S:B0"]
    assert (record.gain, record.disallowed, record.washed_quantity, record.adjusted_gain) == (
        D("-1000.00"), D("1000.00"), 100, D("0.00"))
    # the sold shares were held 132 days (Sept 24 - Feb 3), tacked on to each replacement
    assert lots(engine) == [
        ("B10", 50, D("1025.00"), date(2024, 10, 1)),
        ("B11", 50, D("1030.00"), date(2024, 10, 2)),
        ("B12", 50, D("535.00"), date(2025, 2, 12)),
        ("B13", 50, D("540.00"), date(2025, 2, 13)),
    ]


def test_fewer_replacement_shares_disallow_a_proportional_part():
    """Pub. 550, "More or less stock bought than sold" (and Treas. Reg. 1.1091-1(c)): only the
    sold shares matched with replacement shares are wash sales. Sell 100 for a $250 loss, buy 60
    back within 30 days for $480: 60/100 x 250 = $150 disallowed (added to the 60 shares: $630),
    $100 of the loss stays deductible."""
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 1, 2)))
    engine.apply(fill("S1", "sell", 100, "7.50", at(2025, 3, 3)))
    engine.apply(fill("B2", "buy", 60, "8", at(2025, 3, 10)))
    record = engine.gains["S1:B1"]
    assert (record.disallowed, record.washed_quantity, record.adjusted_gain) == (D("150.00"), 60, D("-100.00"))
    assert lots(engine) == [("B2", 60, D("630.00"), date(2025, 3, 10) - (date(2025, 3, 3) - date(2025, 1, 2)))]
    # a second buy in the window takes the rest: 40/100 x 250 = 100, the whole loss now disallowed
    engine.apply(fill("B3", "buy", 100, "8", at(2025, 3, 12)))
    record = engine.gains["S1:B1"]
    assert (record.disallowed, record.washed_quantity) == (D("250.00"), 100)
    assert [(lot_id, qty, basis) for lot_id, qty, basis, _ in lots(engine)] == [
        ("B2", 60, D("630.00")), ("B3.1", 40, D("420.00")), ("B3", 60, D("480"))]


def test_holding_period_of_the_sold_shares_is_tacked_on():
    """Pub. 550, Wash Sales: "Your holding period for the new stock or securities includes the
    holding period of the stock or securities sold." Sold shares held 132 days (2024-09-24 to
    2025-02-03); the replacement bought 2025-02-10 counts from 2024-10-01, so selling it on
    2025-10-02 (less than a year after its purchase) is long term."""
    engine = TaxLotEngine()
    engine.apply(fill("B0", "buy", 100, "20", at(2024, 9, 24)))
    engine.apply(fill("S", "sell", 100, "10", at(2025, 2, 3)))
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 2, 10)))
    result = engine.apply(fill("S2", "sell", 100, "30", at(2025, 10, 2)))
    [gain] = result.gains
    assert (gain.holding_start, gain.term) == (date(2024, 10, 1), "long")
    # basis 1,000 + 1,000 disallowed = 2,000 against 3,000 proceeds
    assert (gain.cost_basis, gain.gain) == (D("2000.00"), D("1000.00"))


def test_shares_bought_within_30_days_before_the_sale_are_replacements():
    """Pub. 550: the rule applies to stock bought "within 30 days before or after the sale"."""
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 1, 2)))
    engine.apply(fill("B2", "buy", 100, "9", at(2025, 1, 20)))
    sale = engine.apply(fill("S", "sell", 100, "7.50", at(2025, 1, 25)))  # FIFO: sells B1 at a 250 loss
    [gain] = sale.gains
    assert (gain.lot_id, gain.disallowed, gain.wash_code) == ("B1", D("250.00"), "W")
    assert lots(engine) == [("B2", 100, D("1150.00"), date(2024, 12, 28))]  # 23 days tacked on
    assert sale.updated_gains == ()


def test_window_is_30_days_either_side():
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 10, "10", at(2025, 1, 2)))
    engine.apply(fill("S1", "sell", 10, "5", at(2025, 3, 3)))
    engine.apply(fill("B2", "buy", 10, "5", at(2025, 4, 3)))  # 31 days later: not a wash sale
    assert engine.gains["S1:B1"].disallowed == 0
    engine.apply(fill("S2", "sell", 10, "4", at(2025, 4, 4)))
    engine.apply(fill("B3", "buy", 10, "4", at(2025, 5, 4)))  # 30 days later: a wash sale
    assert engine.gains["S2:B2"].disallowed == D("10.00")


def test_selling_part_of_one_purchase_is_not_washed_by_the_rest():
    """Rev. Rul. 56-602: shares kept from the same purchase are not replacement shares."""
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 1, 2)))
    sale = engine.apply(fill("S1", "sell", 50, "8", at(2025, 1, 10)))
    assert sale.gains[0].disallowed == 0
    assert lots(engine) == [("B1", 50, D("500"), date(2025, 1, 2))]


def test_wash_sales_reach_across_portfolios_of_the_tax_entity():
    engine = TaxLotEngine({1: Policy(), 2: Policy()})
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 1, 2), portfolio=1))
    engine.apply(fill("S1", "sell", 100, "7.50", at(2025, 3, 3), portfolio=1))
    result = engine.apply(fill("B2", "buy", 100, "8", at(2025, 3, 5), portfolio=2))
    assert [(lot.portfolio_id, lot.lot_id, lot.basis) for lot in result.lots] == [(2, "B2", D("1050.00"))]
    assert result.updated_gains[0].portfolio_id == 1


def test_a_replacement_share_absorbs_only_one_wash_sale():
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 100, "10", at(2025, 1, 2)))
    engine.apply(fill("B2", "buy", 100, "10", at(2025, 1, 3)))
    engine.apply(fill("S1", "sell", 100, "8", at(2025, 3, 3)))  # loss 200
    engine.apply(fill("S2", "sell", 100, "7", at(2025, 3, 4)))  # loss 300
    engine.apply(fill("B3", "buy", 100, "7", at(2025, 3, 5)))
    assert engine.gains["S1:B1"].disallowed == D("200.00")  # the earlier sale is matched first
    assert engine.gains["S2:B2"].disallowed == 0
    assert lots(engine)[0][:3] == ("B3", 100, D("900.00"))


def test_gains_and_other_instruments_are_never_washed():
    engine = TaxLotEngine()
    engine.apply(fill("B1", "buy", 10, "10", at(2025, 1, 2)))
    engine.apply(fill("S1", "sell", 10, "12", at(2025, 1, 3)))  # a gain
    engine.apply(fill("B2", "buy", 10, "11", at(2025, 1, 4)))
    engine.apply(fill("S2", "sell", 10, "9", at(2025, 1, 5)))  # a loss of 20 ...
    engine.apply(fill("C1", "buy", 10, "9", at(2025, 1, 6), instrument="Y"))  # ... not replaced by Y
    assert [g.wash_code for g in engine.gains.values()] == ["", ""]


def test_rebuilding_from_the_fills_reproduces_the_wash_sales():
    fills = [
        fill("B1", "buy", 100, "10", at(2025, 1, 2)),
        fill("S1", "sell", 100, "7.50", at(2025, 3, 3)),
        fill("B2", "buy", 60, "8", at(2025, 3, 10), portfolio=2),
        fill("B3", "buy", 100, "8", at(2025, 3, 12)),
        fill("S2", "sell", 80, "7", at(2025, 3, 20)),
    ]
    first = replay(fills)
    assert replay(fills).state() == first.state()
    assert any(g.wash_code == "W" for g in first.gains.values())
