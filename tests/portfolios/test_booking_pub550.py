"""IRS Publication 550 wash-sale examples and hand-computed lot methods, booked through the service
into PostgreSQL (the pure engine's own tests are in test_wash_sales.py / test_lots.py): the stored
records carry the published numbers, and a later purchase that washes an earlier sale updates the
stored record and is audited."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from apps.audit.models import AuditEvent
from apps.core.tenancy import firm_scope
from apps.portfolios import services
from apps.portfolios.models import Lot, RealizedGain


def _lots(portfolio):
    with firm_scope(portfolio.firm_id):
        return [(r.lot_id, r.quantity, r.basis, r.holding_start)
                for r in Lot.objects.filter(portfolio=portfolio).exclude(quantity=0).order_by("origin_fill_id", "part")]


def test_more_stock_bought_than_sold(portfolio, stocks, book):
    """Pub. 550, "More or less stock bought than sold": 100 shares bought 2024-09-24, sold
    2025-02-03 at a $1,000 loss; 50 shares bought on each of Feb 10-13. Half the loss goes to the
    Feb 10 shares, half to the Feb 11 shares; the 132 days held are tacked on to both."""
    m = stocks["XYZ"]
    book(portfolio, m, "buy", "100", "20", "2024-09-24", fill_id="B0")
    book(portfolio, m, "sell", "100", "10", "2025-02-03", fill_id="S")
    for day, price in zip((10, 11, 12, 13), ("10.50", "10.60", "10.70", "10.80"), strict=True):
        book(portfolio, m, "buy", "50", price, f"2025-02-{day}", fill_id=f"B{day}")
    with firm_scope(portfolio.firm_id):
        record = RealizedGain.objects.get(gain_id="S:B0")
        washes = list(AuditEvent.objects.filter(action="portfolio.gain_washed").order_by("seq")
                      .values_list("after", flat=True))
    assert (record.gain, record.wash_code, record.disallowed, record.washed_quantity, record.adjusted_gain) == (
        D("-1000.00"), "W", D("1000.00"), 100, D("0.00"))
    assert [w["disallowed"] for w in washes] == ["500.00", "1000.00"]  # each purchase's update, audited
    assert _lots(portfolio) == [
        ("B10", 50, D("1025.00"), date(2024, 10, 1)),
        ("B11", 50, D("1030.00"), date(2024, 10, 2)),
        ("B12", 50, D("535.00"), date(2025, 2, 12)),
        ("B13", 50, D("540.00"), date(2025, 2, 13)),
    ]


def test_fewer_replacement_shares_disallow_a_proportional_part(portfolio, stocks, book):
    """Sell 100 for a $250 loss, buy 60 back within 30 days for $480: 60/100 x 250 = $150
    disallowed and added to the 60 shares ($630); $100 stays deductible."""
    m = stocks["XYZ"]
    book(portfolio, m, "buy", "100", "10", "2025-01-02", fill_id="B1")
    book(portfolio, m, "sell", "100", "7.50", "2025-03-03", fill_id="S1")
    book(portfolio, m, "buy", "60", "8", "2025-03-10", fill_id="B2")
    with firm_scope(portfolio.firm_id):
        record = RealizedGain.objects.get(gain_id="S1:B1")
    assert (record.disallowed, record.washed_quantity, record.adjusted_gain) == (D("150.00"), 60, D("-100.00"))
    assert _lots(portfolio) == [("B2", 60, D("630.00"), date(2025, 1, 9))]  # the 60 days held tacked on


def test_tacked_holding_period_makes_a_later_sale_long_term(portfolio, stocks, book):
    m = stocks["XYZ"]
    book(portfolio, m, "buy", "100", "20", "2024-09-24", fill_id="B0")
    book(portfolio, m, "sell", "100", "10", "2025-02-03", fill_id="S")
    book(portfolio, m, "buy", "100", "10", "2025-02-10", fill_id="B1")
    booked = book(portfolio, m, "sell", "100", "30", "2025-10-02", fill_id="S2")
    [gain] = booked.gains
    assert (gain.holding_start, gain.term, gain.cost_basis, gain.gain) == (
        date(2024, 10, 1), "long", D("2000.00"), D("1000.00"))
    assert booked.realized == D("2000.00")  # economic P&L: 3,000 - 1,000 (the wash only moves basis)


def _three_lots_then_sell(firm_a, system, book, stocks, method, **sell):
    entity = services.tax_entity_create(firm_id=firm_a.firm.pk, name=f"Taxpayer {method}", actor=system)
    p = services.portfolio_create(firm_id=firm_a.firm.pk, name=method, cost_basis_method=method, actor=system,
                                  tax_entity=entity)
    m = stocks["MSFT"]
    book(p, m, "buy", "10", "100", "2023-01-03", fill_id=f"{method}-A", fees="1")  # cost 1,001
    book(p, m, "buy", "10", "130", "2024-06-03", fill_id=f"{method}-B", fees="1")  # cost 1,301
    book(p, m, "buy", "10", "110", "2025-01-06", fill_id=f"{method}-C", fees="1")  # cost 1,101
    booked = book(p, m, "sell", "15", "120", "2025-03-03", fill_id=f"{method}-S", fees="3", **sell)  # net 1,797
    return [(g.lot_id, g.quantity, g.proceeds, g.cost_basis, g.gain, g.term) for g in booked.gains]


def test_hand_computed_lot_methods(firm_a, system, book, stocks):
    """Sell 15 @ 120 with $3 fees (net 1,797; 5 shares' share = 599.00) from lots A (10 @ 100 +1),
    B (10 @ 130 +1) and C (10 @ 110 +1)."""
    assert _three_lots_then_sell(firm_a, system, book, stocks, "fifo") == [
        ("fifo-A", 10, D("1198.00"), D("1001.00"), D("197.00"), "long"),
        ("fifo-B", 5, D("599.00"), D("650.50"), D("-51.50"), "short")]
    assert _three_lots_then_sell(firm_a, system, book, stocks, "lifo") == [
        ("lifo-C", 10, D("1198.00"), D("1101.00"), D("97.00"), "short"),
        ("lifo-B", 5, D("599.00"), D("650.50"), D("-51.50"), "short")]
    assert _three_lots_then_sell(firm_a, system, book, stocks, "hifo") == [
        ("hifo-B", 10, D("1198.00"), D("1301.00"), D("-103.00"), "short"),
        ("hifo-C", 5, D("599.00"), D("550.50"), D("48.50"), "short")]
    assert _three_lots_then_sell(firm_a, system, book, stocks, "specific", lot_ids=["specific-C", "specific-A"]) == [
        ("specific-C", 10, D("1198.00"), D("1101.00"), D("97.00"), "short"),
        ("specific-A", 5, D("599.00"), D("500.50"), D("98.50"), "long")]
    # average cost: the pool of 3,403 is spread over the lots in cents (1,134.33, 1,134.33, 1,134.34) and
    # a partly sold lot gives up its share in cents: 1,134.33 + 567.16 = 1,701.49 (15 x 113.4333... =
    # 1,701.50 before rounding); nothing is lost: the 15 shares left carry 1,701.51
    avg = _three_lots_then_sell(firm_a, system, book, stocks, "average")
    assert sum(g[3] for g in avg) == D("1701.49") and sum(g[2] for g in avg) == D("1797.00")
    with firm_scope(firm_a.firm.pk):
        left = Lot.objects.filter(portfolio__name="average").exclude(quantity=0)
        assert sum(r.quantity for r in left) == 15 and sum(r.cost for r in left) == D("1701.51")
