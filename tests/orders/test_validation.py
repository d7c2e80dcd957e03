"""Structural validation of order requests (apps.orders.validation): every rule of ALPACA_ORDERS.md c.5.

Each test states the request and the exact ``{field: [messages]}`` it gets; ``{}`` means valid.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from apps.orders import validation as v
from apps.orders.checks import InstrumentInfo
from apps.orders.core import Leg, OrderClass, OrderSpec, OrderType, Side, TimeInForce
from apps.orders.validation import check_stop_side, validate_spec

EQUITY = InstrumentInfo("AAPL", "equity", fractionable=True, shortable=True)
ETF = InstrumentInfo("SPY", "etf")
OPTION = InstrumentInfo("AAPL250321C00100000", "option", multiplier=100)
CRYPTO = InstrumentInfo("BTC/USD", "crypto", fractionable=True, tick_size=D("0.01"), lot_size=D("0.000001"))


def order(**terms) -> OrderSpec:
    """A valid buy of 10 AAPL at a 100.00 limit, day; ``terms`` override."""
    base = {"symbol": "AAPL", "side": Side.BUY, "type": OrderType.LIMIT, "time_in_force": TimeInForce.DAY,
            "qty": D("10"), "limit_price": D("100.00")}
    return OrderSpec(**(base | terms))


def market(**terms) -> OrderSpec:
    return order(**({"type": OrderType.MARKET, "limit_price": None} | terms))


def bracket(**terms) -> OrderSpec:
    """A buy bracket entering at a 100.00 limit, take-profit 110, stop-loss 95."""
    legs = {"order_class": OrderClass.BRACKET, "take_profit": Leg(limit_price=D("110")),
            "stop_loss": Leg(stop_price=D("95"))}
    return order(**(legs | terms))


# --- valid requests ---

@pytest.mark.parametrize("spec", [
    market(),
    order(),
    order(type=OrderType.STOP, limit_price=None, stop_price=D("105")),
    order(type=OrderType.STOP_LIMIT, stop_price=D("105"), limit_price=D("106")),
    order(type=OrderType.TRAILING_STOP, limit_price=None, trail_price=D("2")),
    order(type=OrderType.TRAILING_STOP, limit_price=None, trail_percent=D("5"), time_in_force=TimeInForce.GTC),
    market(qty=None, notional=D("500")),
    market(qty=D("0.5")),
    order(extended_hours=True),
    market(time_in_force=TimeInForce.OPG),
    order(time_in_force=TimeInForce.CLS),
    order(time_in_force=TimeInForce.IOC),
    order(time_in_force=TimeInForce.FOK),
    bracket(),
    bracket(time_in_force=TimeInForce.GTC, stop_loss=Leg(stop_price=D("95"), limit_price=D("94.50"))),
    order(side=Side.SELL, order_class=OrderClass.OCO, limit_price=None, take_profit=Leg(limit_price=D("110")),
          stop_loss=Leg(stop_price=D("95"))),
    order(order_class=OrderClass.OTO, take_profit=Leg(limit_price=D("110"))),
    order(order_class=OrderClass.OTO, stop_loss=Leg(stop_price=D("99.99"))),
    order(client_order_id="x" * 128),
], ids=lambda spec: f"{spec.type}-{spec.order_class}-{spec.time_in_force}")
def test_valid_equity_orders(spec):
    assert validate_spec(spec, EQUITY) == {}


def test_valid_option_crypto_and_etf_orders():
    assert validate_spec(order(symbol=OPTION.symbol, qty=D("2"), limit_price=D("3.50")), OPTION) == {}
    assert validate_spec(market(symbol="BTC/USD", qty=D("0.25"), time_in_force=TimeInForce.GTC), CRYPTO) == {}
    assert validate_spec(market(symbol="BTC/USD", qty=None, notional=D("100"), time_in_force=TimeInForce.IOC),
                         CRYPTO) == {}
    assert validate_spec(order(symbol="SPY", type=OrderType.TRAILING_STOP, limit_price=None,
                               trail_percent=D("1.5")), ETF) == {}


# --- symbol ---

def test_unknown_symbol_is_reported_on_symbol():
    assert validate_spec(order(symbol="NOPE"), None) == {"symbol": ["Unknown symbol: no instrument has this symbol."]}


def test_unknown_symbol_still_reports_structural_errors_but_no_asset_class_rules():
    errors = validate_spec(order(limit_price=None, time_in_force=TimeInForce.OPG, qty=None), None)
    assert errors == {"symbol": [v.UNKNOWN_SYMBOL], "qty": ["Give qty or notional."],
                      "limit_price": ["limit_price is required on limit orders."]}


def test_unknown_asset_class():
    assert validate_spec(order(), InstrumentInfo("AAPL", "bond")) == {
        "symbol": ["Instruments of asset class 'bond' cannot be traded."]}


# --- qty and notional ---

def test_qty_or_notional_is_required():
    assert validate_spec(order(qty=None), EQUITY) == {"qty": ["Give qty or notional."]}


def test_qty_and_notional_together_are_refused():
    assert validate_spec(market(notional=D("500")), EQUITY) == {"notional": ["Give qty or notional, not both."]}


@pytest.mark.parametrize("qty", [D("0"), D("-1")])
def test_qty_must_be_positive(qty):
    assert validate_spec(order(qty=qty), EQUITY) == {"qty": ["qty must be greater than 0."]}


@pytest.mark.parametrize("qty", [D("NaN"), D("Infinity")])
def test_qty_must_be_finite(qty):
    assert validate_spec(market(qty=qty), EQUITY) == {"qty": ["qty must be a finite number."]}


def test_notional_must_be_positive():
    assert validate_spec(market(qty=None, notional=D("0")), EQUITY) == {"notional": ["notional must be greater than 0."]}


def test_notional_only_on_market_orders():
    assert validate_spec(order(qty=None, notional=D("500")), EQUITY) == {
        "notional": ["notional is allowed only on market orders."]}


def test_notional_not_on_options():
    assert validate_spec(market(symbol=OPTION.symbol, qty=None, notional=D("500")), OPTION) == {
        "notional": ["notional is allowed only on equities, ETFs and crypto."]}


def test_notional_equity_orders_must_be_day():
    assert validate_spec(market(qty=None, notional=D("500"), time_in_force=TimeInForce.GTC), EQUITY) == {
        "time_in_force": ["Fractional and notional equity orders must use time_in_force day."]}


def test_fractional_equity_orders_must_be_day():
    assert validate_spec(market(qty=D("1.5"), time_in_force=TimeInForce.GTC), EQUITY) == {
        "time_in_force": [v.FRACTIONAL_DAY_ONLY]}
    assert validate_spec(market(qty=D("2.000"), time_in_force=TimeInForce.GTC), EQUITY) == {}


# --- prices by order type ---

def test_limit_needs_limit_price():
    assert validate_spec(order(limit_price=None), EQUITY) == {"limit_price": ["limit_price is required on limit orders."]}


def test_stop_limit_needs_both_prices():
    assert validate_spec(order(type=OrderType.STOP_LIMIT, limit_price=None), EQUITY) == {
        "limit_price": ["limit_price is required on stop_limit orders."],
        "stop_price": ["stop_price is required on stop_limit orders."]}


def test_stop_needs_stop_price():
    assert validate_spec(order(type=OrderType.STOP, limit_price=None), EQUITY) == {
        "stop_price": ["stop_price is required on stop orders."]}


def test_fields_that_do_not_belong_to_the_type_are_refused():
    assert validate_spec(market(limit_price=D("100")), EQUITY) == {
        "limit_price": ["limit_price is not allowed on market orders."]}
    assert validate_spec(order(stop_price=D("100")), EQUITY) == {
        "stop_price": ["stop_price is not allowed on limit orders."]}
    assert validate_spec(order(type=OrderType.STOP, stop_price=D("105")), EQUITY) == {
        "limit_price": ["limit_price is not allowed on stop orders."]}
    assert validate_spec(order(trail_price=D("1")), EQUITY) == {
        "trail_price": ["trail_price is not allowed on limit orders."]}
    assert validate_spec(market(trail_percent=D("1")), EQUITY) == {
        "trail_percent": ["trail_percent is not allowed on market orders."]}


def test_prices_must_be_positive():
    assert validate_spec(order(type=OrderType.STOP_LIMIT, limit_price=D("0"), stop_price=D("-1")), EQUITY) == {
        "limit_price": ["limit_price must be greater than 0."], "stop_price": ["stop_price must be greater than 0."]}


# --- trailing stops ---

def trailing(**terms) -> OrderSpec:
    return order(**({"type": OrderType.TRAILING_STOP, "limit_price": None} | terms))


def test_trailing_stop_needs_exactly_one_trail():
    one_of = {"trail_price": ["A trailing_stop order needs exactly one of trail_price and trail_percent."]}
    assert validate_spec(trailing(), EQUITY) == one_of
    assert validate_spec(trailing(trail_price=D("1"), trail_percent=D("1")), EQUITY) == one_of


@pytest.mark.parametrize("pct", [D("0"), D("100"), D("100.5"), D("-2")])
def test_trail_percent_is_between_0_and_100(pct):
    assert validate_spec(trailing(trail_percent=pct), EQUITY) == {
        "trail_percent": ["trail_percent must be greater than 0 and less than 100."]}


def test_trail_price_must_be_positive():
    assert validate_spec(trailing(trail_price=D("0")), EQUITY) == {"trail_price": ["trail_price must be greater than 0."]}


def test_trailing_stop_is_day_or_gtc():
    assert validate_spec(trailing(trail_price=D("1"), time_in_force=TimeInForce.IOC), EQUITY) == {
        "time_in_force": ["A trailing_stop order must use time_in_force day or gtc."]}


def test_trailing_stop_not_in_a_bracket():
    spec = bracket(type=OrderType.TRAILING_STOP, limit_price=None, trail_price=D("1"))
    assert validate_spec(spec, EQUITY) == {
        "order_class": ["A trailing_stop order is a single order: order_class must be simple."]}


# --- per asset class ---

def test_order_types_per_asset_class():
    assert validate_spec(trailing(symbol=OPTION.symbol, trail_price=D("1")), OPTION) == {
        "type": ["type trailing_stop is not allowed for option (allowed: market, limit, stop, stop_limit)."]}
    crypto_stop = order(type=OrderType.STOP, limit_price=None, stop_price=D("50000"), time_in_force=TimeInForce.GTC)
    assert validate_spec(crypto_stop, CRYPTO) == {
        "type": ["type stop is not allowed for crypto (allowed: market, limit, stop_limit)."]}


def test_time_in_force_per_asset_class():
    assert validate_spec(order(time_in_force=TimeInForce.GTC), OPTION) == {
        "time_in_force": ["time_in_force gtc is not allowed for option (allowed: day)."]}
    assert validate_spec(order(), CRYPTO) == {
        "time_in_force": ["time_in_force day is not allowed for crypto (allowed: gtc, ioc)."]}
    assert validate_spec(order(time_in_force=TimeInForce.FOK), ETF) == {}


def test_order_classes_per_asset_class():
    assert validate_spec(bracket(), OPTION) == {
        "order_class": ["order_class bracket is not allowed for option (allowed: simple)."]}
    oco = order(side=Side.SELL, order_class=OrderClass.OCO, time_in_force=TimeInForce.GTC, limit_price=None,
                take_profit=Leg(limit_price=D("110")), stop_loss=Leg(stop_price=D("95")))
    assert validate_spec(oco, CRYPTO) == {
        "order_class": ["order_class oco is not allowed for crypto (allowed: simple)."]}


def test_auction_orders_are_market_or_limit():
    spec = order(type=OrderType.STOP, limit_price=None, stop_price=D("105"), time_in_force=TimeInForce.OPG)
    assert validate_spec(spec, EQUITY) == {"time_in_force": ["time_in_force opg and cls take only market and limit orders."]}


# --- extended hours ---

@pytest.mark.parametrize("spec", [
    market(extended_hours=True),
    order(extended_hours=True, time_in_force=TimeInForce.GTC),
    bracket(extended_hours=True),
])
def test_extended_hours_only_on_simple_day_limit_orders(spec):
    assert validate_spec(spec, EQUITY) == {
        "extended_hours": ["extended_hours is allowed only on simple limit orders with time_in_force day."]}


# --- brackets ---

def test_bracket_needs_both_legs():
    assert validate_spec(bracket(take_profit=None, stop_loss=None), EQUITY) == {
        "take_profit": ["take_profit is required on bracket orders."],
        "stop_loss": ["stop_loss is required on bracket orders."]}


def test_bracket_legs_need_their_prices():
    assert validate_spec(bracket(take_profit=Leg(), stop_loss=Leg(limit_price=D("94"))), EQUITY) == {
        "take_profit.limit_price": ["take_profit.limit_price is required."],
        "stop_loss.stop_price": ["stop_loss.stop_price is required."]}


def test_bracket_leg_prices_must_be_positive():
    assert validate_spec(bracket(take_profit=Leg(limit_price=D("0")), stop_loss=Leg(stop_price=D("95"),
                                                                                     limit_price=D("-1"))), EQUITY) == {
        "take_profit.limit_price": ["take_profit.limit_price must be greater than 0."],
        "stop_loss.limit_price": ["stop_loss.limit_price must be greater than 0."]}


def test_take_profit_takes_no_stop_price():
    assert validate_spec(bracket(take_profit=Leg(limit_price=D("110"), stop_price=D("109"))), EQUITY) == {
        "take_profit.stop_price": ["take_profit.stop_price is not allowed: a take-profit leg is a limit order."]}


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.OPG, TimeInForce.CLS])
def test_bracket_is_day_or_gtc(tif):
    assert validate_spec(bracket(time_in_force=tif), EQUITY) == {
        "time_in_force": ["A bracket order must use time_in_force day or gtc."]}


def test_buy_bracket_legs_at_least_a_cent_from_the_entry():
    """Entry 100.00: the take-profit must be >= 100.01, the stop-loss <= 99.99."""
    assert validate_spec(bracket(take_profit=Leg(limit_price=D("100.01")), stop_loss=Leg(stop_price=D("99.99"))),
                         EQUITY) == {}
    assert validate_spec(bracket(take_profit=Leg(limit_price=D("100.00")), stop_loss=Leg(stop_price=D("100.00"))),
                         EQUITY) == {
        "take_profit.limit_price": [
            "take_profit.limit_price must be at least 100.01 (the entry limit price 100.00 + 0.01) on a buy order."],
        "stop_loss.stop_price": [
            "stop_loss.stop_price must be at most 99.99 (the entry limit price 100.00 - 0.01) on a buy order."]}


def test_sell_bracket_legs_mirror():
    """A sell (short) entry at 100.00: the take-profit must be <= 99.99, the stop-loss >= 100.01."""
    good = bracket(side=Side.SELL, take_profit=Leg(limit_price=D("99.99")), stop_loss=Leg(stop_price=D("100.01")))
    assert validate_spec(good, EQUITY) == {}
    bad = bracket(side=Side.SELL)  # take-profit 110 and stop-loss 95: the buy layout
    assert validate_spec(bad, EQUITY) == {
        "take_profit.limit_price": [
            "take_profit.limit_price must be at most 99.99 (the entry limit price 100.00 - 0.01) on a sell order."],
        "stop_loss.stop_price": [
            "stop_loss.stop_price must be at least 100.01 (the entry limit price 100.00 + 0.01) on a sell order."]}


def test_market_bracket_legs_wait_for_the_current_price():
    assert validate_spec(bracket(type=OrderType.MARKET, limit_price=None), EQUITY) == {}


# --- oco and oto ---

def oco(**terms) -> OrderSpec:
    """Closing a long: sell at 110 (take-profit) or stop out at 95."""
    base = {"side": Side.SELL, "order_class": OrderClass.OCO, "limit_price": None,
            "take_profit": Leg(limit_price=D("110")), "stop_loss": Leg(stop_price=D("95"))}
    return order(**(base | terms))


def test_oco_must_be_limit():
    assert validate_spec(oco(type=OrderType.MARKET), EQUITY) == {"type": ["An oco order must be of type limit."]}


def test_oco_needs_both_legs():
    assert validate_spec(oco(stop_loss=None), EQUITY) == {"stop_loss": ["stop_loss is required on oco orders."]}


def test_oco_limit_price_equals_take_profit():
    assert validate_spec(oco(limit_price=D("110")), EQUITY) == {}
    assert validate_spec(oco(limit_price=D("111")), EQUITY) == {
        "limit_price": ["limit_price of an oco order must equal take_profit.limit_price (110)."]}


def test_oco_take_profit_beyond_stop_loss():
    assert validate_spec(oco(take_profit=Leg(limit_price=D("95"))), EQUITY) == {
        "take_profit.limit_price": ["take_profit.limit_price 95 must be above stop_loss.stop_price 95 on a sell oco order."]}
    buy_oco = oco(side=Side.BUY, take_profit=Leg(limit_price=D("95")), stop_loss=Leg(stop_price=D("110")))
    assert validate_spec(buy_oco, EQUITY) == {}
    assert validate_spec(oco(side=Side.BUY), EQUITY) == {
        "take_profit.limit_price": ["take_profit.limit_price 110 must be below stop_loss.stop_price 95 on a buy oco order."]}


def test_oto_takes_exactly_one_leg():
    one_leg = {"order_class": ["An oto order takes exactly one of take_profit and stop_loss."]}
    assert validate_spec(order(order_class=OrderClass.OTO), EQUITY) == one_leg
    assert validate_spec(bracket(order_class=OrderClass.OTO), EQUITY) == one_leg


def test_oto_leg_distance():
    spec = order(order_class=OrderClass.OTO, stop_loss=Leg(stop_price=D("100")))
    assert validate_spec(spec, EQUITY) == {"stop_loss.stop_price": [
        "stop_loss.stop_price must be at most 99.99 (the entry limit price 100.00 - 0.01) on a buy order."]}


def test_legs_only_on_bracket_oco_oto():
    spec = order(take_profit=Leg(limit_price=D("110")), stop_loss=Leg(stop_price=D("95")))
    assert validate_spec(spec, EQUITY) == {
        "take_profit": ["take_profit is allowed only on bracket, oco and oto orders."],
        "stop_loss": ["stop_loss is allowed only on bracket, oco and oto orders."]}


# --- client_order_id ---

def test_client_order_id_at_most_128_characters():
    assert validate_spec(order(client_order_id="x" * 129), EQUITY) == {
        "client_order_id": ["client_order_id must be at most 128 characters."]}


def test_several_problems_at_once():
    spec = market(qty=D("-5"), limit_price=D("1"), time_in_force=TimeInForce.GTC, extended_hours=True)
    assert validate_spec(spec, OPTION) == {
        "qty": ["qty must be greater than 0."],
        "limit_price": ["limit_price is not allowed on market orders."],
        "time_in_force": ["time_in_force gtc is not allowed for option (allowed: day)."],
        "extended_hours": [v.EXTENDED_HOURS]}


# --- check_stop_side: rules that need the current price ---

def stop(side: Side, stop_price: str, type_: OrderType = OrderType.STOP) -> OrderSpec:
    limit = D(stop_price) if type_ == OrderType.STOP_LIMIT else None
    return order(side=side, type=type_, limit_price=limit, stop_price=D(stop_price))


def test_buy_stop_must_be_above_the_current_price():
    assert check_stop_side(stop(Side.BUY, "100.01"), D("100.00")) == {}
    assert check_stop_side(stop(Side.BUY, "100.00"), D("100.00")) == {
        "stop_price": ["stop_price 100.00 must be above the current price 100.00 on a buy stop order."]}
    assert check_stop_side(stop(Side.BUY, "99", OrderType.STOP_LIMIT), D("100")) == {
        "stop_price": ["stop_price 99 must be above the current price 100 on a buy stop order."]}


def test_sell_stop_must_be_below_the_current_price():
    assert check_stop_side(stop(Side.SELL, "99.99"), D("100.00")) == {}
    assert check_stop_side(stop(Side.SELL, "101"), D("100")) == {
        "stop_price": ["stop_price 101 must be below the current price 100 on a sell stop order."]}


def test_stop_side_needs_a_price_and_a_stop():
    assert check_stop_side(stop(Side.BUY, "90"), None) == {}
    assert check_stop_side(order(), D("1")) == {}


def test_bracket_without_entry_limit_uses_the_current_price():
    spec = bracket(type=OrderType.MARKET, limit_price=None)  # take-profit 110, stop-loss 95
    assert check_stop_side(spec, D("100")) == {}
    assert check_stop_side(spec, D("109.995")) == {"take_profit.limit_price": [
        "take_profit.limit_price must be at least 110.005 (the current price 109.995 + 0.01) on a buy order."]}
    assert check_stop_side(spec, D("95")) == {"stop_loss.stop_price": [
        "stop_loss.stop_price must be at most 94.99 (the current price 95 - 0.01) on a buy order."]}


def test_bracket_with_entry_limit_is_not_judged_against_the_current_price():
    assert check_stop_side(bracket(), D("200")) == {}
