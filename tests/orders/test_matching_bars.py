"""The paper matching engine in bar mode (backtests and the bar path): prices, participation, auctions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from apps.orders.core import Status
from apps.orders.fills import PerShareCommission, SquareRootImpact
from apps.orders.matching import R_DAY, R_IOC, R_MISSED_OPEN, SessionInfo
from tests.orders.test_matching import CLOSE_AT, CLOSED, OPEN, OPEN_AT, SYM, bar, brief, engine, fills, order, t


def bar_engine(**config):
    return engine(fill_on="bar", **config)


def test_market_fills_at_the_open_of_the_next_bar():
    eng = bar_engine()
    eng.submit(order(at=t(0.5)), now=t(0.5))
    assert eng.on_bar(SYM, bar(0, 10, 11, 9, 10), session=OPEN) == []  # opened before the submission
    events = eng.on_bar(SYM, bar(1, "10.00", "10.40", "9.90", "10.20"), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("10.00"), D(0), "taker")]
    assert events[0].at == t(1)


def test_market_with_square_root_impact_and_per_share_commission():
    eng = bar_engine(slippage=SquareRootImpact(coef=D(1), sigma=D("0.02")), commission=PerShareCommission())
    eng.submit(order(qty="100"), now=t(0))
    events = eng.on_bar(SYM, bar(0, "10.00", "10.40", "9.90", "10.20", v="10000"), session=OPEN)
    # 10 * 0.02 * sqrt(100 / 10,000) = 0.02; fee max(0.50, 1.00) = 1.00 (1 % cap 10.02)
    assert fills(events) == [("o1-1", D(100), D("10.0200"), D("1.00"), "taker")]


def test_buy_limit_fills_at_the_limit_when_the_low_reaches_it():
    eng = bar_engine()
    eng.submit(order(type="limit", limit_price="9.90", tif="gtc"), now=t(0))
    assert eng.on_bar(SYM, bar(0, 10, "10.10", "9.95", 10), session=OPEN) == []
    events = eng.on_bar(SYM, bar(1, 10, 10, "9.85", "9.90"), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("9.90"), D(0), "maker")]


def test_limit_gapped_through_fills_at_the_open():
    eng = bar_engine()
    eng.submit(order("first", type="limit", limit_price="9.90", tif="gtc"), now=t(0))
    eng.submit(order("sell", side="sell", type="limit", limit_price="10.10", tif="gtc"), now=t(0))
    events = eng.on_bar(SYM, bar(0, "9.80", "9.95", "9.70", "9.90"), session=OPEN)
    assert fills(events) == [("first-1", D(100), D("9.80"), D(0), "taker")]  # marketable at its first bar
    events = eng.on_bar(SYM, bar(1, "10.30", "10.40", "10.20", "10.30"), session=OPEN)
    assert fills(events) == [("sell-1", D(100), D("10.30"), D(0), "maker")]  # rested a bar, then gapped


def test_stops_fill_at_the_stop_or_at_a_gapping_open():
    eng = bar_engine()
    eng.submit(order("buy", type="stop", stop_price="10.50"), now=t(0))
    eng.submit(order("sell", side="sell", type="stop", stop_price="9.50"), now=t(0))
    events = eng.on_bar(SYM, bar(0, "10.20", "10.60", "9.40", "10.00"), session=OPEN)
    assert fills(events) == [("buy-1", D(100), D("10.50"), D(0), "taker"),
                             ("sell-1", D(100), D("9.50"), D(0), "taker")]
    eng.submit(order("buy2", type="stop", stop_price="10.50", at=t(1)), now=t(1))
    eng.submit(order("sell2", side="sell", type="stop", stop_price="9.50", at=t(1)), now=t(1))
    events = eng.on_bar(SYM, bar(1, "10.70", "10.80", "10.60", "10.75"), session=OPEN)
    assert fills(events) == [("buy2-1", D(100), D("10.70"), D(0), "taker")]
    events = eng.on_bar(SYM, bar(2, "9.30", "9.40", "9.20", "9.35"), session=OPEN)
    assert fills(events) == [("sell2-1", D(100), D("9.30"), D(0), "taker")]


def test_stop_limit_triggers_on_a_gap_and_then_fills_as_a_limit():
    eng = bar_engine()
    o = order(type="stop_limit", stop_price="10.50", limit_price="10.60", tif="gtc")
    eng.submit(o, now=t(0))
    assert eng.on_bar(SYM, bar(0, "10.70", "10.80", "10.65", "10.70"), session=OPEN) == []
    assert o.triggered and o.status == Status.NEW
    events = eng.on_bar(SYM, bar(1, "10.62", "10.66", "10.55", "10.58"), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("10.60"), D(0), "maker")]


def test_stop_limit_triggered_inside_the_bar_fills_at_the_stop_when_within_the_limit():
    eng = bar_engine()
    eng.submit(order(side="sell", type="stop_limit", stop_price="9.50", limit_price="9.45"), now=t(0))
    events = eng.on_bar(SYM, bar(0, "9.60", "9.70", "9.40", "9.45"), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("9.50"), D(0), "taker")]


def test_trailing_sell_stop_on_bars():
    eng = bar_engine()
    o = order(side="sell", type="trailing_stop", trail_price="1", tif="gtc")
    eng.submit(o, now=t(0))
    assert eng.on_bar(SYM, bar(0, 100, 101, "99.5", "100.5"), session=OPEN) == []
    assert (o.hwm, o.stop_price) == (D(101), D(100))  # from the open 100, then the high 101
    assert eng.on_bar(SYM, bar(1, "100.5", 103, "100.2", 102), session=OPEN) == []
    assert (o.hwm, o.stop_price) == (D(103), D(102))
    assert eng.on_bar(SYM, bar(2, "102.8", "102.9", "102.1", "102.5"), session=OPEN) == []
    assert o.hwm == D(103)  # a lower high does not lower it
    events = eng.on_bar(SYM, bar(3, "102.3", "102.4", "101.5", "101.8"), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D(102), D(0), "taker")]


def test_participation_caps_each_bar_and_the_rest_carries():
    eng = bar_engine(max_participation=D("0.1"))
    o = order(qty="250", tif="gtc")
    eng.submit(o, now=t(0))
    events = []
    for minute, price in enumerate(["10.00", "10.10", "10.20"]):
        events += eng.on_bar(SYM, bar(minute, price, price, price, price, v="1000"), session=OPEN)
    assert brief(events) == [("partial_fill", "o1", "partially_filled", D(100), D("10.00")),
                             ("partial_fill", "o1", "partially_filled", D(100), D("10.10")),
                             ("fill", "o1", "filled", D(50), D("10.20"))]
    assert (o.filled_qty, o.filled_value) == (D(250), D("2520.00"))


def test_participation_is_whole_shares_unless_the_qty_is_fractional():
    eng = bar_engine()
    eng.submit(order("whole", qty="10"), now=t(0))
    eng.submit(order("frac", qty="2.5"), now=t(0))
    events = eng.on_bar(SYM, bar(0, 10, 10, 10, 10, v="15"), session=OPEN)  # cap 1.5
    assert brief(events) == [("partial_fill", "whole", "partially_filled", D(1), D(10)),
                             ("partial_fill", "frac", "partially_filled", D("1.5"), D(10))]
    events = eng.on_bar(SYM, bar(1, 10, 10, 10, 10, v="5"), session=OPEN)  # cap 0.5: no whole share
    assert brief(events) == [("partial_fill", "frac", "partially_filled", D("0.5"), D(10))]
    assert eng.on_bar(SYM, bar(2, 10, 10, 10, 10, v="0"), session=OPEN) == []


def test_ioc_on_bars_fills_the_cap_and_cancels_the_rest():
    eng = bar_engine()
    eng.submit(order(tif="ioc", qty="300"), now=t(0))
    events = eng.on_bar(SYM, bar(0, 10, 10, 10, 10, v="1000"), session=OPEN)
    assert brief(events) == [("partial_fill", "o1", "partially_filled", D(100), D(10)),
                             ("canceled", "o1", "canceled")]
    assert events[-1].reason == R_IOC


def test_fok_on_bars_needs_the_whole_qty_within_the_cap():
    eng = bar_engine()
    eng.submit(order("big", tif="fok", qty="101"), now=t(0))
    eng.submit(order("ok", tif="fok", qty="100"), now=t(0))
    events = eng.on_bar(SYM, bar(0, 10, 10, 10, 10, v="1000"), session=OPEN)
    assert brief(events) == [("canceled", "big", "canceled"), ("fill", "ok", "filled", D(100), D(10))]


def test_closed_session_bars_do_not_fill_equities():
    eng = bar_engine()
    eng.submit(order(at=t(-30)), now=t(-30))
    assert eng.on_bar(SYM, bar(-20, 10, 10, 10, 10), session=CLOSED) == []
    assert fills(eng.on_bar(SYM, bar(0, 11, 11, 11, 11), session=OPEN)) == [("o1-1", D(100), D(11), D(0), "taker")]


def test_opg_fills_whole_at_the_opening_bar_open():
    eng = bar_engine()
    eng.submit(order(tif="opg", qty="5000", at=t(-60)), now=t(-60))
    assert eng.on_bar(SYM, bar(-1, 9, 9, 9, 9), session=SessionInfo(False, OPEN_AT, CLOSE_AT, extended=True)) == []
    events = eng.on_bar(SYM, bar(0, "10.05", 11, 10, "10.5", v="1000"), session=OPEN)
    assert fills(events) == [("o1-1", D(5000), D("10.05"), D(0), "taker")]  # an auction: no participation cap


def test_opg_that_missed_the_opening_bar_is_canceled():
    eng = bar_engine()
    eng.submit(order(tif="opg", at=t(-60)), now=t(-60))
    events = eng.on_bar(SYM, bar(1, 10, 10, 10, 10), session=OPEN)
    assert brief(events) == [("canceled", "o1", "canceled")]
    assert events[0].reason == R_MISSED_OPEN


def test_cls_fills_at_the_close_of_the_closing_bar_and_day_orders_expire_after_it():
    eng = bar_engine()
    eng.submit(order("cls", tif="cls", side="sell", at=t(10)), now=t(10))
    eng.submit(order("day", type="limit", limit_price="1", at=t(10)), now=t(10))
    assert eng.on_bar(SYM, bar(388, 10, 10, 10, 10), session=OPEN) == []  # 15:58
    last_bar = bar(389, "10.10", "10.20", "10.00", "10.15")  # 15:59, ends at the close
    events = eng.on_bar(SYM, last_bar, session=OPEN)
    assert brief(events) == [("fill", "cls", "filled", D(100), D("10.15")), ("expired", "day", "expired")]
    assert events[1].reason == R_DAY


def test_daily_bars_expire_day_orders_after_one_session():
    eng = bar_engine(bar_interval=timedelta(days=1))
    yesterday_close = CLOSE_AT - timedelta(days=1)
    eng.submit(order("day", type="limit", limit_price="9", at=yesterday_close), now=yesterday_close)
    eng.submit(order("gtc", type="limit", limit_price="9", tif="gtc", at=yesterday_close), now=yesterday_close)
    events = eng.on_bar(SYM, bar(0, 10, 11, "9.5", 10), session=OPEN)
    assert brief(events) == [("expired", "day", "expired")]
    events = eng.on_bar(SYM, bar(24 * 60, 10, 11, "8.5", 9), session=SessionInfo(
        True, OPEN_AT + timedelta(days=1), CLOSE_AT + timedelta(days=1)))
    assert fills(events) == [("gtc-1", D(100), D(9), D(0), "maker")]
