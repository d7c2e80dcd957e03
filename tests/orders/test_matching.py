"""The paper matching engine in quote mode: order types, time in force, sessions, sizes, rejections.

Every expectation is computed by hand from the fixed quotes below. Helpers here are shared with the
other tests/orders/test_matching_*.py files.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from apps.orders.core import TRANSITIONS, Bar, OrderSpec, OrderType, Quote, Side, Status, TimeInForce
from apps.orders.fills import CryptoMakerTakerCommission, FixedBpsSlippage, PerOrderCommission, SpreadSlippage
from apps.orders.matching import (
    R_BAD_QTY,
    R_DAY,
    R_FOK,
    R_IOC,
    R_MISSED_CLOSE,
    R_MISSED_OPEN,
    R_NO_LIMIT,
    R_NO_QTY,
    R_NO_STOP,
    R_NOTIONAL_MARKET,
    R_TRAIL,
    EngineEvent,
    PaperConfig,
    PaperEngine,
    SessionInfo,
    WorkingOrder,
)

OPEN_AT = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # 09:30 New York
CLOSE_AT = datetime(2024, 3, 4, 21, 0, tzinfo=UTC)  # 16:00 New York
OPEN = SessionInfo(is_open=True, open_at=OPEN_AT, close_at=CLOSE_AT)
PRE = SessionInfo(is_open=False, open_at=OPEN_AT, close_at=CLOSE_AT, extended=True)
AFTER = SessionInfo(is_open=False, open_at=OPEN_AT, close_at=CLOSE_AT, extended=True)
CLOSED = SessionInfo(is_open=False, open_at=OPEN_AT, close_at=CLOSE_AT)
SYM = "AAPL"


def t(minutes: float) -> datetime:
    """Minutes after today's open."""
    return OPEN_AT + timedelta(minutes=minutes)


def spec(side="buy", type="market", tif="day", qty="100", **kw) -> OrderSpec:
    decimals = {k: D(v) if isinstance(v, str | int) else v for k, v in kw.items()
                if k in ("limit_price", "stop_price", "trail_price", "trail_percent", "notional")}
    return OrderSpec(symbol=kw.pop("symbol", SYM), side=Side(side), type=OrderType(type),
                     time_in_force=TimeInForce(tif), qty=None if qty is None else D(qty),
                     **{**kw, **decimals})


def order(oid="o1", at=None, asset_class="equity", **kw) -> WorkingOrder:
    return WorkingOrder(order_id=oid, spec=spec(**kw), submitted_at=at or t(0), asset_class=asset_class)


def quote(bid, ask, last=None, at=None, bid_size=None, ask_size=None) -> Quote:
    def d(v):
        return None if v is None else D(str(v))
    return Quote(bid=d(bid), ask=d(ask), last=d(last), at=at or t(0), bid_size=d(bid_size), ask_size=d(ask_size))


def bar(minute, o, h, lo, c, v="100000") -> Bar:
    return Bar(at=t(minute), open=D(str(o)), high=D(str(h)), low=D(str(lo)), close=D(str(c)), volume=D(v))


def engine(**config) -> PaperEngine:
    return PaperEngine(PaperConfig(**config))


def brief(events: list[EngineEvent]) -> list[tuple]:
    """(event, order id, status, fill qty, fill price) per event."""
    return [(e.event, e.order_id, e.status.value, *((e.execution.qty, e.execution.price) if e.execution else ()))
            for e in events]


def fills(events: list[EngineEvent]) -> list[tuple]:
    return [(e.execution.exec_id, e.execution.qty, e.execution.price, e.execution.fee, e.execution.liquidity)
            for e in events if e.execution]


# --- market -------------------------------------------------------------------------------------


def test_market_buy_fills_at_once_at_the_ask():
    eng = engine()
    events = eng.submit(order(), now=t(1), quote=quote("99.90", "100.00"), session=OPEN)
    assert brief(events) == [("new", "o1", "new"), ("fill", "o1", "filled", D(100), D("100.00"))]
    assert events[1].execution.exec_id == "o1-1"
    assert events[1].execution.liquidity == "taker"
    o = eng.orders["o1"]
    assert (o.status, o.filled_qty, o.filled_value, o.avg_price) == (Status.FILLED, D(100), D("10000.00"), D(100))


def test_market_sell_fills_at_the_bid_with_fixed_bps_slippage():
    eng = engine(slippage=FixedBpsSlippage(bps=D(10)))
    events = eng.submit(order(side="sell"), now=t(1), quote=quote("50.00", "50.02"), session=OPEN)
    # 50.00 - 50.00 * 10 / 10,000 = 49.95
    assert brief(events)[1] == ("fill", "o1", "filled", D(100), D("49.9500"))


def test_market_buy_with_spread_slippage():
    eng = engine(slippage=SpreadSlippage(fraction=D("0.5")))
    events = eng.submit(order(), now=t(1), quote=quote("20.00", "20.04"), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("20.0600"), D(0), "taker")]


def test_market_order_without_a_quote_fills_on_the_next_quote():
    eng = engine()
    assert brief(eng.submit(order(), now=t(1))) == [("new", "o1", "new")]
    events = eng.on_quote(SYM, quote("10.00", "10.01", at=t(2)), now=t(2), session=OPEN)
    assert brief(events) == [("fill", "o1", "filled", D(100), D("10.01"))]
    assert events[0].at == t(2)


def test_market_falls_back_to_last_when_the_side_is_missing():
    eng = engine()
    events = eng.submit(order(), now=t(1), quote=quote("10.00", None, last="10.02"), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("10.02"), D(0), "taker")]


def test_off_hours_market_order_waits_for_the_open():
    eng = engine()
    before_open = OPEN_AT - timedelta(hours=2)
    assert brief(eng.submit(order(at=before_open), now=before_open, quote=quote(10, "10.05"), session=PRE)) == [
        ("new", "o1", "new")]
    assert eng.on_quote(SYM, quote(10, "10.04"), now=before_open + timedelta(minutes=5), session=PRE) == []
    events = eng.on_quote(SYM, quote("10.10", "10.12"), now=t(0), session=OPEN)
    assert brief(events) == [("fill", "o1", "filled", D(100), D("10.12"))]


def test_gtc_market_order_also_waits_for_the_open():
    eng = engine()
    eng.submit(order(tif="gtc", at=t(-60)), now=t(-60), quote=quote(10, 11), session=CLOSED)
    assert eng.on_quote(SYM, quote(10, 11), now=t(-30), session=CLOSED) == []
    assert brief(eng.on_quote(SYM, quote(10, 11), now=t(0), session=OPEN))[0][0] == "fill"


def test_crypto_ignores_sessions():
    eng = engine()
    crypto = order(asset_class="crypto", tif="gtc", qty="0.5", symbol="BTC/USD", at=t(-600))
    events = eng.submit(crypto, now=t(-600), quote=quote(60000, 60010), session=CLOSED)
    assert fills(events) == [("o1-1", D("0.5"), D(60010), D(0), "taker")]


def test_notional_market_order_fixes_its_qty_at_the_fill_price():
    eng = engine()
    o = order(qty=None, notional="1000")
    events = eng.submit(o, now=t(1), quote=quote("299", "300"), session=OPEN)
    # 1000 / 300 = 3.333333333 (nine places, down)
    assert fills(events) == [("o1-1", D("3.333333333"), D(300), D(0), "taker")]
    assert o.status == Status.FILLED


# --- limit --------------------------------------------------------------------------------------


def test_marketable_limit_fills_at_once_at_the_ask_as_taker():
    eng = engine()
    events = eng.submit(order(type="limit", limit_price="10.05"), now=t(1), quote=quote("10.00", "10.02"),
                        session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("10.02"), D(0), "taker")]


def test_resting_limit_fills_when_the_ask_reaches_it_as_maker():
    eng = engine(commission=CryptoMakerTakerCommission())
    o = order(type="limit", limit_price="10.00", qty="10")
    assert brief(eng.submit(o, now=t(1), quote=quote("10.01", "10.03"), session=OPEN)) == [("new", "o1", "new")]
    assert eng.on_quote(SYM, quote("10.00", "10.01", at=t(2)), now=t(2), session=OPEN) == []
    events = eng.on_quote(SYM, quote("9.97", "9.99", at=t(3)), now=t(3), session=OPEN)
    # 10 * 9.99 = 99.90; maker 15 bps = 0.14985 -> 0.15
    assert fills(events) == [("o1-1", D(10), D("9.99"), D("0.15"), "maker")]
    assert o.fees == D("0.15")


def test_limit_first_seen_on_a_later_quote_is_taker_when_marketable_then():
    eng = engine()
    eng.submit(order(type="limit", limit_price="10.00"), now=t(1))
    events = eng.on_quote(SYM, quote("9.98", "9.99", at=t(2)), now=t(2), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("9.99"), D(0), "taker")]


def test_sell_limit_fills_when_the_bid_reaches_it():
    eng = engine()
    eng.submit(order(side="sell", type="limit", limit_price="20.00"), now=t(1), quote=quote("19.95", "19.97"),
               session=OPEN)
    assert eng.on_quote(SYM, quote("19.99", "20.01"), now=t(2), session=OPEN) == []
    events = eng.on_quote(SYM, quote("20.03", "20.05"), now=t(3), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("20.03"), D(0), "maker")]


def test_taker_slippage_on_a_marketable_limit_is_capped_at_the_limit():
    eng = engine(slippage=FixedBpsSlippage(bps=D(50)))
    events = eng.submit(order(type="limit", limit_price="10.03"), now=t(1), quote=quote("10.00", "10.01"),
                        session=OPEN)
    # 10.01 + 0.05005 -> 10.0601 would pass the limit: filled at 10.03
    assert fills(events) == [("o1-1", D(100), D("10.03"), D(0), "taker")]


def test_quote_sizes_limit_the_fill_and_the_rest_carries():
    eng = engine(commission=PerOrderCommission(amount=D("2.50")))
    o = order(type="limit", limit_price="10.00", qty="250", tif="gtc")
    events = eng.submit(o, now=t(1), quote=quote("9.98", "9.99", ask_size=100), session=OPEN)
    assert brief(events) == [("new", "o1", "new"), ("partial_fill", "o1", "partially_filled", D(100), D("9.99"))]
    events = eng.on_quote(SYM, quote("9.99", "10.00", ask_size=100), now=t(2), session=OPEN)
    assert brief(events) == [("partial_fill", "o1", "partially_filled", D(100), D("10.00"))]
    events = eng.on_quote(SYM, quote("9.99", "10.00", ask_size=500), now=t(3), session=OPEN)
    assert brief(events) == [("fill", "o1", "filled", D(50), D("10.00"))]
    assert (o.filled_qty, o.filled_value, o.fees, o.exec_count) == (D(250), D("2499.00"), D("2.50"), 3)
    assert [e.execution.exec_id for e in events] == ["o1-3"]


def test_zero_size_quote_fills_nothing():
    eng = engine()
    events = eng.submit(order(), now=t(1), quote=quote("9.98", "9.99", ask_size=0), session=OPEN)
    assert brief(events) == [("new", "o1", "new")]


# --- stops --------------------------------------------------------------------------------------


def test_buy_stop_triggers_on_last_and_fills_at_the_ask():
    eng = engine()
    o = order(type="stop", stop_price="50.00", tif="gtc")
    eng.submit(o, now=t(1), quote=quote("49.80", "49.85", last="49.82"), session=OPEN)
    assert eng.on_quote(SYM, quote("49.90", "50.01", last="49.95"), now=t(2), session=OPEN) == []
    assert not o.triggered
    events = eng.on_quote(SYM, quote("50.00", "50.03", last="50.00"), now=t(3), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("50.03"), D(0), "taker")]
    assert o.triggered


def test_sell_stop_without_a_last_triggers_on_the_bid():
    eng = engine()
    eng.submit(order(side="sell", type="stop", stop_price="30.00"), now=t(1), session=OPEN)
    assert eng.on_quote(SYM, quote("30.01", "30.05"), now=t(2), session=OPEN) == []
    events = eng.on_quote(SYM, quote("29.99", "30.02"), now=t(3), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("29.99"), D(0), "taker")]


def test_stop_limit_triggers_then_waits_for_its_limit():
    eng = engine()
    o = order(type="stop_limit", stop_price="50.00", limit_price="50.10", tif="gtc")
    eng.submit(o, now=t(1), session=OPEN)
    events = eng.on_quote(SYM, quote("50.10", "50.20", last="50.15"), now=t(2), session=OPEN)
    assert events == [] and o.triggered and o.status == Status.NEW
    events = eng.on_quote(SYM, quote("50.05", "50.08", last="50.06"), now=t(3), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("50.08"), D(0), "maker")]


def test_stop_limit_fills_at_once_when_the_trigger_quote_is_within_the_limit():
    eng = engine()
    eng.submit(order(side="sell", type="stop_limit", stop_price="40.00", limit_price="39.90"), now=t(1),
               session=OPEN)
    events = eng.on_quote(SYM, quote("39.95", "39.97", last="39.96"), now=t(2), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("39.95"), D(0), "taker")]


# --- trailing stops -----------------------------------------------------------------------------


def test_trailing_sell_stop_ratchets_up_only_and_triggers():
    eng = engine()
    o = order(side="sell", type="trailing_stop", trail_price="1.00", tif="gtc")
    eng.submit(o, now=t(1), quote=quote("99.98", "100.02", last="100.00"), session=OPEN)
    assert (o.hwm, o.stop_price) == (D("100.00"), D("99.00"))
    eng.on_quote(SYM, quote("101.48", "101.52", last="101.50"), now=t(2), session=OPEN)
    assert (o.hwm, o.stop_price) == (D("101.50"), D("100.50"))
    eng.on_quote(SYM, quote("100.88", "100.92", last="100.90"), now=t(3), session=OPEN)  # down: no ratchet
    assert (o.hwm, o.stop_price) == (D("101.50"), D("100.50"))
    events = eng.on_quote(SYM, quote("100.40", "100.46", last="100.45"), now=t(4), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("100.40"), D(0), "taker")]


def test_trailing_buy_stop_in_percent_ratchets_down_only():
    eng = engine()
    o = order(side="buy", type="trailing_stop", trail_percent="2", tif="gtc")
    eng.submit(o, now=t(1), quote=quote("49.99", "50.01", last="50.00"), session=OPEN)
    assert o.stop_price == D("51.00")  # 50 * 1.02
    eng.on_quote(SYM, quote("47.99", "48.01", last="48.00"), now=t(2), session=OPEN)
    assert (o.hwm, o.stop_price) == (D("48.00"), D("48.96"))
    eng.on_quote(SYM, quote("48.49", "48.51", last="48.50"), now=t(3), session=OPEN)
    assert o.stop_price == D("48.96")
    events = eng.on_quote(SYM, quote("48.97", "49.00", last="48.98"), now=t(4), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("49.00"), D(0), "taker")]


# --- IOC / FOK ----------------------------------------------------------------------------------


def test_ioc_fills_what_it_can_and_cancels_the_rest():
    eng = engine()
    events = eng.submit(order(tif="ioc", type="limit", limit_price="10.00", qty="300"), now=t(1),
                        quote=quote("9.98", "9.99", ask_size=120), session=OPEN)
    assert brief(events) == [("new", "o1", "new"), ("partial_fill", "o1", "partially_filled", D(120), D("9.99")),
                             ("canceled", "o1", "canceled")]
    assert events[-1].reason == R_IOC
    assert eng.orders["o1"].filled_qty == D(120)


def test_ioc_not_marketable_is_canceled_unfilled():
    eng = engine()
    events = eng.submit(order(tif="ioc", type="limit", limit_price="9.00"), now=t(1), quote=quote(10, "10.01"),
                        session=OPEN)
    assert brief(events) == [("new", "o1", "new"), ("canceled", "o1", "canceled")]


def test_ioc_without_a_quote_is_evaluated_on_the_first_quote():
    eng = engine()
    eng.submit(order(tif="ioc"), now=t(1))
    events = eng.on_quote(SYM, quote(10, "10.01", ask_size=40), now=t(2), session=OPEN)
    assert brief(events) == [("partial_fill", "o1", "partially_filled", D(40), D("10.01")),
                             ("canceled", "o1", "canceled")]


def test_fok_that_cannot_fill_completely_is_canceled_with_no_fill():
    eng = engine()
    events = eng.submit(order(tif="fok", qty="300"), now=t(1), quote=quote("9.98", "9.99", ask_size=299),
                        session=OPEN)
    assert brief(events) == [("new", "o1", "new"), ("canceled", "o1", "canceled")]
    assert events[-1].reason == R_FOK
    assert eng.orders["o1"].filled_qty == 0


def test_fok_that_can_fill_fills_completely():
    eng = engine()
    events = eng.submit(order(tif="fok", qty="300"), now=t(1), quote=quote("9.98", "9.99", ask_size=300),
                        session=OPEN)
    assert brief(events)[1:] == [("fill", "o1", "filled", D(300), D("9.99"))]


# --- DAY / GTC / extended hours -----------------------------------------------------------------


def test_day_orders_expire_at_the_session_close_and_gtc_persist():
    eng = engine()
    eng.submit(order("day", type="limit", limit_price="5"), now=t(1), session=OPEN)
    eng.submit(order("gtc", type="limit", limit_price="5", tif="gtc"), now=t(1), session=OPEN)
    events = eng.on_session_close(now=CLOSE_AT)
    assert brief(events) == [("expired", "day", "expired")]
    assert events[0].reason == R_DAY
    assert eng.orders["gtc"].status == Status.NEW


def test_a_quote_at_the_close_expires_day_orders():
    eng = engine()
    eng.submit(order("day", type="limit", limit_price="5"), now=t(1), session=OPEN)
    assert eng.on_quote(SYM, quote(10, 11), now=CLOSE_AT - timedelta(seconds=1), session=OPEN) == []
    events = eng.on_quote(SYM, quote(10, 11), now=CLOSE_AT, session=AFTER)
    assert brief(events) == [("expired", "day", "expired")]


def test_a_day_order_submitted_after_the_close_is_queued_for_the_next_session():
    eng = engine()
    after = CLOSE_AT + timedelta(hours=1)
    eng.submit(order("late", type="limit", limit_price="5", at=after), now=after, session=AFTER)
    assert eng.on_quote(SYM, quote(10, 11), now=after + timedelta(minutes=1), session=AFTER) == []
    assert eng.orders["late"].status == Status.NEW
    tomorrow = SessionInfo(True, OPEN_AT + timedelta(days=1), CLOSE_AT + timedelta(days=1))
    events = eng.on_quote(SYM, quote("4.98", "5.00"), now=OPEN_AT + timedelta(days=1), session=tomorrow)
    assert brief(events) == [("fill", "late", "filled", D(100), D("5.00"))]


def test_extended_hours_limit_fills_in_the_extended_session_others_wait():
    eng = engine()
    early = OPEN_AT - timedelta(hours=1)
    eng.submit(order("ext", type="limit", limit_price="10", extended_hours=True, at=early), now=early)
    eng.submit(order("reg", type="limit", limit_price="10", at=early), now=early)
    events = eng.on_quote(SYM, quote("9.95", "9.97"), now=early + timedelta(minutes=1), session=PRE)
    assert brief(events) == [("fill", "ext", "filled", D(100), D("9.97"))]
    assert eng.orders["reg"].status == Status.NEW


def test_extended_hours_day_orders_outlive_the_regular_close():
    eng = engine()
    eng.submit(order("ext", type="limit", limit_price="1", extended_hours=True), now=t(1))
    assert eng.on_session_close(now=CLOSE_AT) == []
    assert brief(eng.on_session_close(now=CLOSE_AT + timedelta(hours=4), extended=True)) == [
        ("expired", "ext", "expired")]


# --- OPG / CLS ----------------------------------------------------------------------------------


def test_opg_fills_at_the_first_quote_after_the_open():
    eng = engine()
    early = OPEN_AT - timedelta(hours=2)
    o = order(tif="opg", at=early)
    eng.submit(o, now=early, quote=quote(10, "10.10", last="10.05"), session=PRE)
    assert eng.on_quote(SYM, quote(10, "10.10", last="10.05"), now=early + timedelta(hours=1), session=PRE) == []
    events = eng.on_quote(SYM, quote("10.20", "10.24", last="10.22"), now=t(0), session=OPEN)
    assert fills(events) == [("o1-1", D(100), D("10.22"), D(0), "taker")]


def test_limit_on_open_not_met_is_canceled():
    eng = engine()
    early = OPEN_AT - timedelta(hours=2)
    eng.submit(order(tif="opg", type="limit", limit_price="10.00", at=early), now=early)
    events = eng.on_quote(SYM, quote("10.20", "10.24", last="10.22"), now=t(0), session=OPEN)
    assert brief(events) == [("canceled", "o1", "canceled")]
    assert events[0].reason == R_MISSED_OPEN


def test_cls_fills_at_the_first_quote_at_the_close():
    eng = engine()
    o = order(tif="cls", side="sell", at=t(60))
    eng.submit(o, now=t(60), quote=quote(10, 11, last="10.5"), session=OPEN)
    assert o.status == Status.NEW  # not before the close
    assert eng.on_quote(SYM, quote(10, 11, last="10.5"), now=t(120), session=OPEN) == []
    events = eng.on_quote(SYM, quote("10.60", "10.70", last="10.66"), now=CLOSE_AT, session=AFTER)
    assert fills(events) == [("o1-1", D(100), D("10.66"), D(0), "taker")]


def test_session_close_cancels_auction_orders_that_never_traded():
    eng = engine()
    eng.submit(order("opg", tif="opg", at=t(-60)), now=t(-60))
    eng.submit(order("cls", tif="cls", at=t(60)), now=t(60))
    events = eng.on_session_close(now=CLOSE_AT)
    assert brief(events) == [("canceled", "opg", "canceled"), ("canceled", "cls", "canceled")]
    assert [e.reason for e in events] == [R_MISSED_OPEN, R_MISSED_CLOSE]


# --- commands and validation --------------------------------------------------------------------


def test_cancel_and_cancel_rejected():
    eng = engine()
    eng.submit(order("a", type="limit", limit_price="1"), now=t(1))
    assert brief(eng.cancel("a", now=t(2))) == [("canceled", "a", "canceled")]
    rejected = eng.cancel("a", now=t(3))
    assert brief(rejected) == [("order_cancel_rejected", "a", "canceled")]
    eng.submit(order("b"), now=t(4), quote=quote(1, 2), session=OPEN)
    assert brief(eng.cancel("b", now=t(5))) == [("order_cancel_rejected", "b", "filled")]


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"qty": None}, R_NO_QTY),
    ({"qty": "0"}, R_BAD_QTY),
    ({"qty": None, "notional": "100", "type": "limit", "limit_price": "1"}, R_NOTIONAL_MARKET),
    ({"type": "limit"}, R_NO_LIMIT),
    ({"type": "stop"}, R_NO_STOP),
    ({"type": "stop_limit", "limit_price": "1"}, R_NO_STOP),
    ({"type": "trailing_stop"}, R_TRAIL),
    ({"type": "trailing_stop", "trail_price": "1", "trail_percent": "1"}, R_TRAIL),
])
def test_invalid_orders_are_rejected(kwargs, reason):
    eng = engine()
    events = eng.submit(order(**kwargs), now=t(1), quote=quote(1, 2), session=OPEN)
    assert brief(events) == [("rejected", "o1", "rejected")]
    assert events[0].reason == reason
    assert eng.open_orders() == []


def test_duplicate_order_id_is_a_programming_error():
    eng = engine()
    eng.submit(order("a", type="limit", limit_price="1"), now=t(1))
    with pytest.raises(ValueError, match="duplicate"):
        eng.submit(order("a", type="limit", limit_price="1"), now=t(1))


def test_bars_are_ignored_in_quote_mode_and_quotes_in_bar_mode():
    eng = engine()
    eng.submit(order(), now=t(1))
    assert eng.on_bar(SYM, bar(2, 10, 11, 9, 10), session=OPEN) == []
    bar_eng = engine(fill_on="bar")
    assert brief(bar_eng.submit(order(), now=t(1), quote=quote(1, 2), session=OPEN)) == [("new", "o1", "new")]
    assert bar_eng.on_quote(SYM, quote(1, 2), now=t(2), session=OPEN) == []


def test_every_event_status_is_a_legal_move():
    """A mixed run: each order's successive statuses follow core.TRANSITIONS; filled_qty rises to qty."""
    eng = engine()
    events = []
    events += eng.submit(order("m", qty="300"), now=t(1), quote=quote(9, 10, ask_size=100), session=OPEN)
    events += eng.submit(order("l", type="limit", limit_price="9.5", side="sell"), now=t(1))
    for minute, (bid, ask) in enumerate([(9, 10), ("9.6", "9.7"), (9, 10), (9, 10)], start=2):
        events += eng.on_quote(SYM, quote(bid, ask, ask_size=100), now=t(minute), session=OPEN)
    events += eng.on_session_close(now=CLOSE_AT)
    last = {"m": Status.NEW, "l": Status.NEW}
    filled = {"m": D(0), "l": D(0)}
    for e in events:
        assert e.status == last[e.order_id] or e.status in TRANSITIONS[last[e.order_id]]
        last[e.order_id] = e.status
        if e.execution:
            filled[e.order_id] += e.execution.qty
            assert filled[e.order_id] <= eng.orders[e.order_id].qty
    assert last == {"m": Status.FILLED, "l": Status.FILLED}
    assert filled == {"m": D(300), "l": D(100)}
