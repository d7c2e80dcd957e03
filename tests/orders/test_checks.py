"""Pre-trade checks (apps.orders.checks): every rejection code, its message, the estimates and the fixed order.

The market in these tests is AAPL bid 99.90 / ask 100.10 / last 100.00 unless a test says otherwise;
every figure is worked out by hand in the test or its comments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from apps.orders import checks as c
from apps.orders.checks import (
    AccountState,
    CheckResult,
    InstrumentInfo,
    Limits,
    MarketView,
    RecentOrder,
    Rejection,
    order_cost,
    run_checks,
)
from apps.orders.core import Leg, OrderClass, OrderSpec, OrderType, Quote, Side, TimeInForce

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
AAPL = InstrumentInfo("AAPL", "equity", shortable=True)
QUOTE = Quote(bid=D("99.90"), ask=D("100.10"), last=D("100.00"), at=NOW)
FRESH = MarketView(QUOTE, fresh=True)
STALE = MarketView(QUOTE, fresh=False)
NO_QUOTE = MarketView(None, fresh=False)
RICH = AccountState(cash=D("1000000"))


def order(**terms) -> OrderSpec:
    """Buy 10 AAPL at market, day; ``terms`` override."""
    base = {"symbol": "AAPL", "side": Side.BUY, "type": OrderType.MARKET, "time_in_force": TimeInForce.DAY,
            "qty": D("10")}
    return OrderSpec(**(base | terms))


def limit(price: str, **terms) -> OrderSpec:
    return order(**({"type": OrderType.LIMIT, "limit_price": D(price)} | terms))


def check(spec: OrderSpec, *, instrument: InstrumentInfo = AAPL, account: AccountState = RICH,
          market: MarketView = FRESH, limits: Limits = Limits(), now: datetime = NOW) -> CheckResult:  # noqa: B008
    return run_checks(spec, instrument, account, market, limits, now=now)


def codes(result: CheckResult) -> list[str]:
    return [r.code for r in result.rejections]


# --- a clean order and its estimates ---

def test_market_buy_passes_at_the_ask():
    """10 x ask 100.10 = 1,001.00; buying power 1,000,000 - 1,001.00 = 998,999.00."""
    result = check(order())
    assert result.ok and result.first is None and result.rejections == ()
    assert result.estimated_price == D("100.10")
    assert result.estimated_notional == D("1001.00")
    assert result.estimated_qty == D("10")
    assert result.buying_power_used == D("1001.00")
    assert result.buying_power_after == D("998999.00")
    assert result.reduces_risk is False


@pytest.mark.parametrize(("spec", "price", "notional"), [
    (limit("99.50"), "99.50", "995.00"),
    (order(type=OrderType.STOP, stop_price=D("101")), "101", "1010"),
    (order(type=OrderType.STOP_LIMIT, stop_price=D("101"), limit_price=D("101.50")), "101.50", "1015.00"),
    (order(side=Side.SELL), "99.90", "999.00"),  # sells use the bid
    (order(type=OrderType.TRAILING_STOP, trail_price=D("2")), "102.10", "1021.00"),  # ask + trail
    (order(type=OrderType.TRAILING_STOP, trail_percent=D("5")), "105.105", "1051.050"),  # 100.10 x 1.05
    (order(side=Side.SELL, type=OrderType.TRAILING_STOP, trail_price=D("2")), "99.90", "999.00"),  # the bid
])
def test_estimated_price_per_order_type(spec, price, notional):
    result = check(spec)
    assert (result.estimated_price, result.estimated_notional) == (D(price), D(notional))
    assert order_cost(spec, AAPL, FRESH) == (D(price), D(notional))


def test_market_order_falls_back_to_the_last_trade():
    market = MarketView(Quote(bid=None, ask=None, last=D("100.00"), at=NOW), fresh=True)
    assert order_cost(order(), AAPL, market) == (D("100.00"), D("1000.00"))


def test_option_notional_uses_the_multiplier():
    """2 contracts at 3.50 x 100 = 700.00."""
    option = InstrumentInfo("AAPL250321C00100000", "option", multiplier=100)
    result = check(limit("3.50", symbol=option.symbol, qty=D("2")), instrument=option,
                   market=MarketView(Quote(D("3.40"), D("3.60"), D("3.50"), NOW), True))
    assert result.ok and result.estimated_notional == D("700.00")


def test_notional_order_estimates_qty():
    """notional 1,001 at the ask 100.10 is 10 shares."""
    fractional = InstrumentInfo("AAPL", "equity", fractionable=True)
    result = check(order(qty=None, notional=D("1001")), instrument=fractional)
    assert result.ok
    assert (result.estimated_price, result.estimated_qty, result.estimated_notional) == (D("100.10"), D("10"), D("1001"))


def test_order_cost_without_a_fresh_quote():
    assert order_cost(order(), AAPL, STALE) == (None, None)
    assert order_cost(order(qty=None, notional=D("500")), AAPL, NO_QUOTE) == (None, D("500"))
    assert order_cost(limit("99"), AAPL, NO_QUOTE) == (D("99"), D("990"))


# --- 1. TRADING_HALTED ---

HALTED = AccountState(cash=D("1000000"), position_qty=D("100"), kill_switch=True)


def test_kill_switch_rejects_risk_increasing_orders():
    result = check(order(), account=HALTED)
    assert result.first == Rejection(
        "TRADING_HALTED", "Trading is halted (kill switch): only orders that reduce an existing position are accepted.")
    assert codes(result) == [c.TRADING_HALTED]


def test_kill_switch_lets_a_closing_sell_through():
    result = check(order(side=Side.SELL, qty=D("100")), account=HALTED)
    assert result.ok and result.reduces_risk
    assert result.buying_power_used == D("0")


def test_kill_switch_can_stop_closes_too():
    result = check(order(side=Side.SELL, qty=D("50")), account=HALTED, limits=Limits(allow_reducing_when_halted=False))
    assert result.first == Rejection("TRADING_HALTED", "Trading is halted (kill switch): no orders are accepted.")


def test_a_sell_beyond_the_unsold_shares_is_not_reducing():
    """Position 100 with 60 already working to sell: 40 are left to close; a sell of 50 would open a short."""
    account = AccountState(cash=D("1000000"), position_qty=D("100"), open_sell_qty=D("60"), kill_switch=True)
    assert check(order(side=Side.SELL, qty=D("40")), account=account).ok
    assert codes(check(order(side=Side.SELL, qty=D("50")), account=account))[0] == c.TRADING_HALTED


def test_covering_a_short_is_reducing():
    """Short 50 with a 20-share buy working: covering up to 30 more reduces risk."""
    account = AccountState(cash=D("1000000"), position_qty=D("-50"), open_buy_qty=D("20"), kill_switch=True)
    covering = check(order(qty=D("30")), account=account)
    assert covering.ok and covering.reduces_risk
    assert codes(check(order(qty=D("31")), account=account)) == [c.TRADING_HALTED]


def test_notional_orders_are_never_reducing():
    fractional = InstrumentInfo("AAPL", "equity", fractionable=True)
    result = check(order(side=Side.SELL, qty=None, notional=D("100")), instrument=fractional, account=HALTED)
    assert codes(result) == [c.TRADING_HALTED] and not result.reduces_risk


# --- 2. INSTRUMENT_NOT_TRADABLE ---

def test_instrument_not_tradable():
    result = check(order(), instrument=InstrumentInfo("AAPL", "equity", tradable=False))
    assert result.rejections == (Rejection("INSTRUMENT_NOT_TRADABLE", "AAPL is not tradable.", "symbol"),)


def test_instrument_not_active():
    result = check(order(), instrument=InstrumentInfo("AAPL", "equity", active=False))
    assert result.rejections == (Rejection("INSTRUMENT_NOT_TRADABLE", "AAPL is no longer active.", "symbol"),)


# --- 3. QTY_NOT_ON_LOT_GRID and 5. FRACTIONAL_NOT_ALLOWED ---

def test_qty_off_the_lot_grid():
    board_lot = InstrumentInfo("7203.T", "equity", lot_size=D("100"))
    result = check(order(symbol="7203.T", qty=D("150")), instrument=board_lot)
    assert result.rejections == (Rejection("QTY_NOT_ON_LOT_GRID", "qty 150 is not a multiple of the lot size 100.",
                                           "qty"),)
    assert check(order(symbol="7203.T", qty=D("200")), instrument=board_lot).ok


def test_fractional_lot_size_reports_the_grid():
    coin = InstrumentInfo("BTC/USD", "crypto", lot_size=D("0.001"))
    spec = order(symbol="BTC/USD", qty=D("0.0005"), time_in_force=TimeInForce.GTC)
    assert codes(check(spec, instrument=coin)) == [c.QTY_NOT_ON_LOT_GRID]
    assert check(order(symbol="BTC/USD", qty=D("0.005"), time_in_force=TimeInForce.GTC), instrument=coin).ok


def test_fractional_qty_on_a_whole_share_instrument():
    result = check(order(qty=D("1.5")))
    assert result.rejections == (Rejection(
        "FRACTIONAL_NOT_ALLOWED", "AAPL does not trade fractional quantities: qty 1.5 is not a whole number.", "qty"),)


def test_notional_order_on_a_whole_share_instrument():
    result = check(order(qty=None, notional=D("500")))
    assert result.rejections == (Rejection(
        "FRACTIONAL_NOT_ALLOWED",
        "AAPL does not trade fractional quantities: a notional order needs a fractionable instrument.", "notional"),)


def test_fractionable_instruments_skip_the_grid():
    fractional = InstrumentInfo("AAPL", "equity", fractionable=True)
    assert check(order(qty=D("0.123456789")), instrument=fractional).ok


# --- 4. PRICE_NOT_ON_TICK_GRID ---

def test_limit_price_off_the_tick():
    result = check(limit("100.005"))
    assert result.rejections == (Rejection(
        "PRICE_NOT_ON_TICK_GRID", "limit_price 100.005 is not a multiple of the tick size 0.01.", "limit_price"),)


def test_sub_dollar_equities_trade_in_hundredths_of_a_cent():
    penny = MarketView(Quote(D("0.5120"), D("0.5125"), D("0.5123"), NOW), True)
    assert check(limit("0.5123", symbol="PNY"), market=penny).ok
    assert check(limit("0.51235", symbol="PNY"), market=penny).rejections == (Rejection(
        "PRICE_NOT_ON_TICK_GRID", "limit_price 0.51235 is not a multiple of the tick size 0.0001.", "limit_price"),)


def test_sub_dollar_rule_is_for_equities_only():
    option = InstrumentInfo("X", "option", multiplier=100)
    cheap = MarketView(Quote(D("0.50"), D("0.52"), D("0.51"), NOW), True)
    assert check(limit("0.505", symbol="X"), instrument=option, market=cheap).rejections == (Rejection(
        "PRICE_NOT_ON_TICK_GRID", "limit_price 0.505 is not a multiple of the tick size 0.01.", "limit_price"),)


def test_leg_prices_on_the_tick():
    spec = limit("100", order_class=OrderClass.BRACKET, take_profit=Leg(limit_price=D("105.001")),
                 stop_loss=Leg(stop_price=D("95"), limit_price=D("94.999")))
    assert [(r.code, r.field) for r in check(spec).rejections] == [
        (c.PRICE_NOT_ON_TICK_GRID, "take_profit.limit_price"), (c.PRICE_NOT_ON_TICK_GRID, "stop_loss.limit_price")]


# --- 6. NO_FRESH_QUOTE ---

@pytest.mark.parametrize("market", [STALE, NO_QUOTE, MarketView(Quote(D("99.90"), None, None, NOW), True)])
def test_market_buy_needs_a_fresh_ask_or_last(market):
    result = check(order(), market=market)
    assert result.rejections == (Rejection(
        "NO_FRESH_QUOTE", "No fresh quote for AAPL: a market order needs the current market price."),)
    assert (result.estimated_price, result.estimated_notional, result.buying_power_after) == (None, None, None)


def test_trailing_stop_needs_a_fresh_quote():
    assert codes(check(order(type=OrderType.TRAILING_STOP, trail_price=D("1")), market=STALE)) == [c.NO_FRESH_QUOTE]


def test_limit_order_without_a_quote_is_checked_at_its_limit():
    """No quote at all: no collar; buying power at the limit, 10 x 150 = 1,500 > 1,000."""
    result = check(limit("150"), market=NO_QUOTE, account=AccountState(cash=D("1000")))
    assert codes(result) == [c.INSUFFICIENT_BUYING_POWER]
    assert result.estimated_notional == D("1500")


# --- 7. PRICE_COLLAR ---

def test_limit_price_outside_the_collar():
    """Last 100.00, collar 10%: 110.00 is exactly 10% away (allowed), 110.01 is 10.01% away."""
    assert check(limit("110.00")).ok
    assert check(limit("110.01")).rejections == (Rejection(
        "PRICE_COLLAR", "limit_price 110.01 is 10.01% away from the reference price 100.00; the collar is 10%.",
        "limit_price"),)
    long = AccountState(cash=D("0"), position_qty=D("10"))
    assert codes(check(limit("89.99", side=Side.SELL), account=long)) == [c.PRICE_COLLAR]


def test_collar_reference_is_the_midpoint_without_a_last_trade():
    """Bid 99 / ask 101: mid 100; a 5% collar allows 95..105."""
    market = MarketView(Quote(D("99"), D("101"), None, NOW), True)
    limits = Limits(price_collar_pct=D("5"))
    assert check(limit("105", symbol="AAPL"), market=market, limits=limits).ok
    assert check(limit("105.01"), market=market, limits=limits).first == Rejection(
        "PRICE_COLLAR", "limit_price 105.01 is 5.01% away from the reference price 100; the collar is 5%.",
        "limit_price")


def test_stop_price_is_collared():
    spec = order(type=OrderType.STOP_LIMIT, stop_price=D("120"), limit_price=D("100.50"))
    assert check(spec).rejections == (Rejection(
        "PRICE_COLLAR", "stop_price 120 is 20.00% away from the reference price 100.00; the collar is 10%.",
        "stop_price"),)


def test_a_stale_quote_still_collars():
    assert codes(check(limit("200"), market=STALE)) == [c.PRICE_COLLAR]


def test_no_collar_without_a_quote():
    assert check(limit("200"), market=NO_QUOTE).ok


# --- 8-10. LIMIT_QTY, LIMIT_NOTIONAL, LIMIT_CREDIT ---

def test_max_order_qty():
    limits = Limits(max_order_qty=D("100"))
    assert check(order(qty=D("100")), limits=limits).ok
    assert check(order(qty=D("101")), limits=limits).rejections == (Rejection(
        "LIMIT_QTY", "qty 101 exceeds the maximum order quantity 100.", "qty"),)


def test_max_order_qty_on_a_notional_order():
    """notional 10,000 at the ask 100.10 is 99.9000999... shares: more than 99."""
    fractional = InstrumentInfo("AAPL", "equity", fractionable=True)
    result = check(order(qty=None, notional=D("10000")), instrument=fractional, limits=Limits(max_order_qty=D("99")))
    assert result.rejections == (Rejection(
        "LIMIT_QTY", "Estimated qty 99.9001 exceeds the maximum order quantity 99.", "notional"),)


def test_max_order_notional():
    """10 x 100.10 = 1,001.00 against a 1,000 maximum."""
    assert check(order(), limits=Limits(max_order_notional=D("1001"))).ok
    assert check(order(), limits=Limits(max_order_notional=D("1000"))).rejections == (Rejection(
        "LIMIT_NOTIONAL", "Order notional 1001.00 exceeds the maximum order notional 1000."),)


def test_daily_credit_limit():
    """1,001.00 + 5,000 open + 4,000 filled = 10,001.00 > 10,000; exactly at the limit passes."""
    account = AccountState(cash=D("1000000"), open_notional=D("5000"), filled_notional_today=D("4000"))
    assert check(order(), account=account, limits=Limits(daily_notional_limit=D("10001"))).ok
    assert check(order(), account=account, limits=Limits(daily_notional_limit=D("10000"))).rejections == (Rejection(
        "LIMIT_CREDIT", "Order notional 1001.00 + open orders 5000 + filled today 4000 = 10001.00 exceeds the daily "
                        "notional limit 10000."),)


def test_credit_counts_closing_sells_too():
    account = AccountState(cash=D("0"), position_qty=D("10"), filled_notional_today=D("9500"))
    assert codes(check(order(side=Side.SELL), account=account, limits=Limits(daily_notional_limit=D("10000")))) == [
        c.LIMIT_CREDIT]


# --- 11. INSUFFICIENT_BUYING_POWER ---

def test_buy_needs_cash_minus_reserved():
    """1,001.00 needed; cash 1,500 - reserved 500 = 1,000 available."""
    account = AccountState(cash=D("1500"), reserved=D("500"))
    result = check(order(), account=account)
    assert result.rejections == (Rejection(
        "INSUFFICIENT_BUYING_POWER",
        "The order needs 1001.00 of buying power; 1000 is available (cash 1500 - reserved 500)."),)
    assert result.buying_power_after == D("-1.00")
    assert check(order(), account=AccountState(cash=D("1501"), reserved=D("500"))).buying_power_after == D("0.00")


def test_selling_shares_held_needs_no_buying_power():
    result = check(order(side=Side.SELL), account=AccountState(cash=D("0"), position_qty=D("10")))
    assert result.ok and result.reduces_risk
    assert (result.buying_power_used, result.buying_power_after) == (D("0"), D("0"))


def test_short_sale_is_valued_at_ask_plus_3_percent():
    """A market sell short of 10: MAX(bid 99.90, ask 100.10 x 1.03 = 103.1030) x 10 = 1,031.0300."""
    account = AccountState(cash=D("1000"), allow_short=True)
    result = check(order(side=Side.SELL), account=account)
    assert result.rejections == (Rejection(
        "INSUFFICIENT_BUYING_POWER",
        "The order needs 1031.0300 of buying power; 1000 is available (cash 1000 - reserved 0)."),)
    assert result.estimated_notional == D("999.00")  # the notional is at the bid


def test_short_sale_limit_above_the_marked_ask():
    """Sell short 10 at a 105 limit: MAX(105, 103.103) = 105, x 10 = 1,050."""
    result = check(limit("105", side=Side.SELL), account=AccountState(cash=D("2000"), allow_short=True))
    assert result.ok and result.buying_power_used == D("1050")


def test_only_the_short_part_of_a_sell_uses_buying_power():
    """Long 6, sell 10 at market: 4 open a short, 4 x 103.1030 = 412.4120."""
    account = AccountState(cash=D("500"), position_qty=D("6"), allow_short=True)
    result = check(order(side=Side.SELL), account=account)
    assert result.ok and not result.reduces_risk
    assert result.buying_power_used == D("412.4120")
    assert result.buying_power_after == D("87.5880")


# --- 12-13. SHORT_NOT_ALLOWED and NOT_SHORTABLE ---

def test_short_sale_on_a_portfolio_without_shorting():
    """Long 100, 60 already working to sell: a sell of 50 would open a short of 10."""
    account = AccountState(cash=D("1000000"), position_qty=D("100"), open_sell_qty=D("60"))
    result = check(order(side=Side.SELL, qty=D("50")), account=account)
    assert result.rejections == (Rejection(
        "SHORT_NOT_ALLOWED",
        "This portfolio does not allow short selling: selling 50 with 40 available would open a short of 10.", "qty"),)


def test_short_sale_of_a_non_shortable_instrument():
    hard = InstrumentInfo("GME", "equity", shortable=False)
    result = check(order(symbol="GME", side=Side.SELL), instrument=hard, account=AccountState(cash=D("1000000")))
    assert result.rejections == (
        Rejection("SHORT_NOT_ALLOWED",
                  "This portfolio does not allow short selling: selling 10 with 0 available would open a short of 10.",
                  "qty"),
        Rejection("NOT_SHORTABLE", "GME is not shortable: selling 10 with 0 available would open a short of 10.", "qty"))


def test_a_short_position_does_not_count_as_shares_to_sell():
    account = AccountState(cash=D("1000000"), position_qty=D("-10"), allow_short=True)
    result = check(order(side=Side.SELL, qty=D("5")), account=account)
    assert result.ok and result.buying_power_used == D("515.5150")  # 5 x 103.1030


# --- 14. DUPLICATE_ORDER ---

def recent(seconds_ago: float, *, qty: str | None = "10", notional: str | None = None, side: str = "buy",
           symbol: str = "AAPL") -> RecentOrder:
    return RecentOrder(symbol, side, D(qty) if qty else None, D(notional) if notional else None,
                       NOW - timedelta(seconds=seconds_ago))


def test_duplicate_within_the_window():
    account = AccountState(cash=D("1000000"), recent=(recent(12.5),))
    result = check(order(), account=account, limits=Limits(duplicate_window_seconds=30))
    assert result.rejections == (Rejection(
        "DUPLICATE_ORDER", "The same order (buy 10 AAPL) was placed 12.5 s ago; the duplicate window is 30 s."),)


def test_not_a_duplicate():
    limits = Limits(duplicate_window_seconds=30)
    for other in (recent(31), recent(5, qty="11"), recent(5, side="sell"), recent(5, symbol="MSFT")):
        assert check(order(), account=AccountState(cash=D("1000000"), recent=(other,)), limits=limits).ok
    # the window is off by default
    assert check(order(), account=AccountState(cash=D("1000000"), recent=(recent(1),))).ok


def test_duplicate_notional_order():
    fractional = InstrumentInfo("AAPL", "equity", fractionable=True)
    account = AccountState(cash=D("1000000"), recent=(recent(30, qty=None, notional="500"),))
    result = check(order(qty=None, notional=D("500")), instrument=fractional, account=account,
                   limits=Limits(duplicate_window_seconds=30))
    assert result.rejections == (Rejection(
        "DUPLICATE_ORDER", "The same order (buy notional 500 AAPL) was placed 30 s ago; the duplicate window is 30 s."),)


# --- every check runs, in the documented order ---

def test_check_order_is_documented():
    assert c.CHECK_ORDER == (
        "TRADING_HALTED", "INSTRUMENT_NOT_TRADABLE", "QTY_NOT_ON_LOT_GRID", "PRICE_NOT_ON_TICK_GRID",
        "FRACTIONAL_NOT_ALLOWED", "NO_FRESH_QUOTE", "PRICE_COLLAR", "LIMIT_QTY", "LIMIT_NOTIONAL", "LIMIT_CREDIT",
        "INSUFFICIENT_BUYING_POWER", "SHORT_NOT_ALLOWED", "NOT_SHORTABLE", "DUPLICATE_ORDER")


def test_all_rejections_are_collected_in_order():
    """A sell of 150.5 at 120.001 into a halted portfolio, on a non-tradable, non-shortable instrument:
    notional 150.5 x 120.001 = 18,060.1505; short valuation MAX(120.001, 103.103) x 150.5."""
    instrument = InstrumentInfo("AAPL", "equity", tradable=False, shortable=False)
    account = AccountState(cash=D("0"), kill_switch=True, recent=(recent(1, qty="150.5", side="sell"),))
    limits = Limits(max_order_qty=D("100"), max_order_notional=D("1000"), daily_notional_limit=D("1000"),
                    duplicate_window_seconds=5)
    result = check(limit("120.001", side=Side.SELL, qty=D("150.5")), instrument=instrument, account=account,
                   limits=limits)
    assert codes(result) == [c.TRADING_HALTED, c.INSTRUMENT_NOT_TRADABLE, c.PRICE_NOT_ON_TICK_GRID,
                             c.FRACTIONAL_NOT_ALLOWED, c.PRICE_COLLAR, c.LIMIT_QTY, c.LIMIT_NOTIONAL, c.LIMIT_CREDIT,
                             c.INSUFFICIENT_BUYING_POWER, c.SHORT_NOT_ALLOWED, c.NOT_SHORTABLE, c.DUPLICATE_ORDER]
    assert result.first.code == c.TRADING_HALTED
    assert result.estimated_notional == D("18060.1505")
    assert result.buying_power_used == D("18060.1505")


def test_lot_grid_and_missing_quote_together():
    board_lot = InstrumentInfo("7203.T", "equity", lot_size=D("100"))
    result = check(order(symbol="7203.T", qty=D("150")), instrument=board_lot, market=STALE)
    assert codes(result) == [c.QTY_NOT_ON_LOT_GRID, c.NO_FRESH_QUOTE]
    assert result.first.code == c.QTY_NOT_ON_LOT_GRID
