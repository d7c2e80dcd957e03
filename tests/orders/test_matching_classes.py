"""Bracket, OCO and OTO orders; replace; JSON round trip mid-life; determinism."""

from __future__ import annotations

import json
from decimal import Decimal as D

from apps.orders.core import Leg, OrderType, Side, Status
from apps.orders.fills import PerOrderCommission
from apps.orders.matching import R_PARENT, R_SIBLING, PaperConfig, PaperEngine, WorkingOrder, bracket_legs
from tests.orders.test_matching import OPEN, SYM, bar, brief, engine, fills, order, quote, t


def bracket(oid="entry", order_class="bracket", tp="105", sl="95", sl_limit=None, **kw) -> WorkingOrder:
    return order(oid, order_class=order_class, qty="10",
                 take_profit=Leg(limit_price=D(tp)) if tp else None,
                 stop_loss=Leg(stop_price=D(sl), limit_price=D(sl_limit) if sl_limit else None) if sl else None,
                 **kw)


def test_bracket_legs_are_built_from_the_entry():
    entry = bracket(type="limit", limit_price="100", sl_limit="94.5")
    tp, sl = bracket_legs(entry, leg_ids=["tp", "sl"])
    assert (tp.order_id, tp.spec.side, tp.spec.type, tp.spec.limit_price, tp.spec.qty) == (
        "tp", Side.SELL, OrderType.LIMIT, D(105), D(10))
    assert (sl.order_id, sl.spec.side, sl.spec.type, sl.stop_price, sl.spec.limit_price) == (
        "sl", Side.SELL, OrderType.STOP_LIMIT, D(95), D("94.5"))


def test_bracket_legs_are_held_until_the_entry_fills_then_one_exit_cancels_the_other():
    eng = engine()
    entry = bracket(type="limit", limit_price="100")
    legs = bracket_legs(entry, leg_ids=["tp", "sl"])
    events = eng.submit(entry, legs=legs, now=t(1), quote=quote("100.10", "100.20"), session=OPEN)
    assert brief(events) == [("new", "entry", "new")]
    assert [leg.status for leg in legs] == [Status.HELD, Status.HELD]
    assert [(leg.parent_id, leg.group) for leg in legs] == [("entry", "entry"), ("entry", "entry")]
    # a held stop-loss does not trigger even though the price is far below it
    events = eng.on_quote(SYM, quote("94.00", "99.90"), now=t(2), session=OPEN)
    assert brief(events) == [("fill", "entry", "filled", D(10), D("99.90")), ("new", "tp", "new"),
                             ("new", "sl", "new")]
    events = eng.on_quote(SYM, quote("105.10", "105.20"), now=t(3), session=OPEN)
    assert brief(events) == [("fill", "tp", "filled", D(10), D("105.10")), ("canceled", "sl", "canceled")]
    assert events[1].reason == R_SIBLING


def test_bracket_stop_loss_path_cancels_the_take_profit():
    eng = engine()
    entry = bracket()
    events = eng.submit(entry, legs=bracket_legs(entry, leg_ids=["tp", "sl"]), now=t(1), quote=quote(100, "100.05"),
                        session=OPEN)
    assert [e.event for e in events] == ["new", "fill", "new", "new"]
    events = eng.on_quote(SYM, quote("94.90", "95.00", last="94.95"), now=t(2), session=OPEN)
    assert brief(events) == [("fill", "sl", "filled", D(10), D("94.90")), ("canceled", "tp", "canceled")]


def test_canceling_the_entry_cancels_its_held_legs():
    eng = engine()
    entry = bracket(type="limit", limit_price="90")
    eng.submit(entry, legs=bracket_legs(entry, leg_ids=["tp", "sl"]), now=t(1))
    events = eng.cancel("entry", now=t(2))
    assert brief(events) == [("canceled", "entry", "canceled"), ("canceled", "tp", "canceled"),
                             ("canceled", "sl", "canceled")]
    assert events[1].reason == R_PARENT
    assert eng.open_orders() == []


def test_an_entry_canceled_after_a_partial_fill_releases_its_legs_for_the_filled_qty():
    eng = engine()
    entry = bracket(type="limit", limit_price="100", tif="gtc")
    eng.submit(entry, legs=bracket_legs(entry, leg_ids=["tp", "sl"]), now=t(1))
    eng.on_quote(SYM, quote("99.8", "99.9", ask_size=4), now=t(2), session=OPEN)
    assert entry.status == Status.PARTIALLY_FILLED
    events = eng.cancel("entry", now=t(3))
    assert brief(events) == [("canceled", "entry", "canceled"), ("new", "tp", "new"), ("new", "sl", "new")]
    assert eng.orders["tp"].qty == D(4) and eng.orders["sl"].qty == D(4)


def test_bracket_in_bar_mode_legs_start_on_the_bar_after_the_entry_fill():
    eng = engine(fill_on="bar")
    entry = bracket()
    eng.submit(entry, legs=bracket_legs(entry, leg_ids=["tp", "sl"]), now=t(0))
    events = eng.on_bar(SYM, bar(0, 100, 106, 94, 100), session=OPEN)  # would hit both exits
    assert brief(events) == [("fill", "entry", "filled", D(10), D(100)), ("new", "tp", "new"), ("new", "sl", "new")]
    events = eng.on_bar(SYM, bar(1, 101, "105.5", 100, 105), session=OPEN)
    assert brief(events) == [("fill", "tp", "filled", D(10), D(105)), ("canceled", "sl", "canceled")]


def test_oco_both_legs_new_and_a_partial_fill_cancels_the_other():
    eng = engine()
    primary = bracket("tp", order_class="oco", side="sell", type="limit", limit_price="110", tp="110", sl="90",
                      tif="gtc")
    (sl,) = bracket_legs(primary, leg_ids=["sl"])
    assert (sl.spec.side, sl.spec.type, sl.stop_price) == (Side.SELL, OrderType.STOP, D(90))
    events = eng.submit(primary, legs=[sl], now=t(1), quote=quote(100, "100.1"), session=OPEN)
    assert brief(events) == [("new", "tp", "new"), ("new", "sl", "new")]
    events = eng.on_quote(SYM, quote("110.5", "110.6", bid_size=4), now=t(2), session=OPEN)
    assert brief(events) == [("partial_fill", "tp", "partially_filled", D(4), D("110.5")),
                             ("canceled", "sl", "canceled")]
    events = eng.on_quote(SYM, quote("110.2", "110.3"), now=t(3), session=OPEN)
    assert brief(events) == [("fill", "tp", "filled", D(6), D("110.2"))]


def test_oto_entry_with_one_leg():
    eng = engine()
    entry = bracket(order_class="oto", tp=None, sl="95")
    legs = bracket_legs(entry, leg_ids=["sl"])
    events = eng.submit(entry, legs=legs, now=t(1), quote=quote(100, "100.05"), session=OPEN)
    assert brief(events) == [("new", "entry", "new"), ("fill", "entry", "filled", D(10), D("100.05")),
                             ("new", "sl", "new")]


# --- replace ------------------------------------------------------------------------------------


def test_replace_leaves_the_fills_with_the_old_order():
    eng = engine()
    old = order("a", type="limit", limit_price="10.00", tif="gtc")
    eng.submit(old, now=t(1), quote=quote("9.98", "9.99", ask_size=40), session=OPEN)
    events = eng.replace("a", new_order_id="b", now=t(2), limit_price=D("10.05"))
    assert brief(events) == [("replaced", "a", "replaced"), ("new", "b", "new")]
    assert (events[0].related_id, events[1].related_id) == ("b", "a")
    new = eng.orders["b"]
    assert (old.status, old.filled_qty, new.qty, new.spec.limit_price, new.filled_qty) == (
        Status.REPLACED, D(40), D(60), D("10.05"), D(0))
    events = eng.on_quote(SYM, quote("10.02", "10.04"), now=t(3), session=OPEN)
    assert fills(events) == [("b-1", D(60), D("10.04"), D(0), "taker")]


def test_replace_with_an_explicit_qty_and_time_in_force():
    eng = engine()
    eng.submit(order("a", type="limit", limit_price="1"), now=t(1))
    eng.replace("a", new_order_id="b", now=t(2), qty=D(300), time_in_force="gtc")
    assert (eng.orders["b"].qty, eng.orders["b"].spec.time_in_force) == (D(300), "gtc")


def test_replace_rejected_on_a_filled_or_held_order():
    eng = engine()
    entry = bracket()
    eng.submit(entry, legs=bracket_legs(entry, leg_ids=["tp", "sl"]), now=t(1))
    assert brief(eng.replace("tp", new_order_id="x", now=t(2), limit_price=D(106))) == [
        ("order_replace_rejected", "tp", "held")]
    eng.on_quote(SYM, quote(100, 101), now=t(3), session=OPEN)
    assert brief(eng.replace("entry", new_order_id="y", now=t(4), qty=D(5))) == [
        ("order_replace_rejected", "entry", "filled")]
    assert "x" not in eng.orders and "y" not in eng.orders


def test_replaced_entry_keeps_its_legs():
    eng = engine()
    entry = bracket(type="limit", limit_price="90")
    eng.submit(entry, legs=bracket_legs(entry, leg_ids=["tp", "sl"]), now=t(1))
    eng.replace("entry", new_order_id="entry2", now=t(2), limit_price=D(100))
    assert eng.orders["tp"].parent_id == "entry2"
    events = eng.on_quote(SYM, quote("99.9", "99.95"), now=t(3), session=OPEN)
    assert brief(events) == [("fill", "entry2", "filled", D(10), D("99.95")), ("new", "tp", "new"),
                             ("new", "sl", "new")]


def test_replace_a_trailing_stops_trail_moves_its_stop():
    eng = engine()
    o = order("a", side="sell", type="trailing_stop", trail_price="1", tif="gtc")
    eng.submit(o, now=t(1), quote=quote(100, "100.1", last=100), session=OPEN)
    eng.on_quote(SYM, quote(102, "102.1", last=102), now=t(2), session=OPEN)
    eng.replace("a", new_order_id="b", now=t(3), trail=D("0.5"))
    new = eng.orders["b"]
    assert (new.hwm, new.stop_price, new.spec.trail_price) == (D(102), D("101.5"), D("0.5"))


# --- persistence and determinism ----------------------------------------------------------------


def _scenario() -> tuple[list, list]:
    """Steps as (method, kwargs): a mix of types, partial fills, a bracket and a replace."""
    entry = bracket(type="limit", limit_price="100", tif="gtc")
    steps = [
        ("submit", {"order": entry, "legs": bracket_legs(entry, leg_ids=["tp", "sl"]), "now": t(1)}),
        ("submit", {"order": order("trail", side="sell", type="trailing_stop", trail_percent="1", tif="gtc"),
                    "now": t(1)}),
        ("submit", {"order": order("lim", type="limit", limit_price="99", qty="250", tif="gtc"), "now": t(1)}),
        ("on_quote", {"symbol": SYM, "quote": quote("99.9", "100", last="99.95", ask_size=6), "now": t(2),
                      "session": OPEN}),
        ("on_quote", {"symbol": SYM, "quote": quote("101", "101.1", last="101", ask_size=6), "now": t(3),
                      "session": OPEN}),
        ("replace", {"order_id": "lim", "new_order_id": "lim2", "now": t(4), "limit_price": D("99.5")}),
    ]
    later = [
        ("on_quote", {"symbol": SYM, "quote": quote("99.4", "99.5", last="99.45", ask_size=100), "now": t(5),
                      "session": OPEN}),
        ("on_quote", {"symbol": SYM, "quote": quote("99.8", "99.9", last="99.8", ask_size=100), "now": t(6),
                      "session": OPEN}),
        ("on_quote", {"symbol": SYM, "quote": quote("105", "105.1", last="105", ask_size=100), "now": t(7),
                      "session": OPEN}),
        ("on_session_close", {"now": t(400)}),
    ]
    return steps, later


def _run(eng: PaperEngine, steps) -> list:
    events = []
    for method, kwargs in steps:
        events += getattr(eng, method)(**kwargs)
    return events


def _config() -> PaperConfig:
    return PaperConfig(commission=PerOrderCommission(amount=D("1.00")), seed=7)


def test_same_orders_and_data_give_the_same_events():
    first = _run(PaperEngine(_config()), [s for part in _scenario() for s in part])
    second = _run(PaperEngine(_config()), [s for part in _scenario() for s in part])
    assert first == second
    assert [e.execution.exec_id for e in first if e.execution] == [
        "entry-1", "entry-2", "trail-1", "lim2-1", "tp-1"]
    entry = [e for e in first if e.order_id == "entry" and e.execution]
    assert [(e.execution.qty, e.execution.price, e.execution.fee, e.execution.liquidity) for e in entry] == [
        (D(6), D(100), D("1.00"), "taker"), (D(4), D("99.5"), D(0), "maker")]


def test_round_trip_through_json_mid_life_changes_nothing():
    steps, later = _scenario()
    straight = PaperEngine(_config())
    _run(straight, steps)
    expected = _run(straight, later)

    steps, later = _scenario()
    before = PaperEngine(_config())
    _run(before, steps)
    stored = json.loads(json.dumps([o.to_dict() for o in before.orders.values()]))
    restored_orders = [WorkingOrder.from_dict(d) for d in stored]
    assert restored_orders == list(before.orders.values())
    assert {o.order_id: o.status for o in restored_orders} == {
        "entry": Status.PARTIALLY_FILLED, "tp": Status.HELD, "sl": Status.HELD, "trail": Status.NEW,
        "lim": Status.REPLACED, "lim2": Status.NEW}
    assert restored_orders[0].to_dict()["filled_value"] == "600"
    assert (restored_orders[3].hwm, restored_orders[3].stop_price) == (D(101), D("99.99"))
    restored = PaperEngine(_config(), restored_orders)
    assert _run(restored, later) == expected
    assert [o.to_dict() for o in restored.orders.values()] == [o.to_dict() for o in straight.orders.values()]
