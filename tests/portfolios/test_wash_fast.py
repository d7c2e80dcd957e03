"""The optimised wash-sale path gives bit-for-bit the results of a straightforward version.

``Reference`` is the engine's wash-sale code written plainly (as it was before the optimisation):
a new record per replacement lot via ``dataclasses.replace``, copies of the working queues before
scanning them, nothing changed in place. Random fill sequences (fractional quantities, several
portfolios and methods, shorts, wash windows that overlap) must give identical ``FillResult``s,
errors and final state, compared by ``repr`` so that a Decimal's exponent counts too.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal as D
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.portfolios.lots import (
    ZERO,
    Fill,
    Lot,
    LotError,
    Method,
    RealizedGain,
    Side,
    cents,
    holding_term,
    make_gain,
    make_lot,
    trade_date,
)
from apps.portfolios.wash import WINDOW, FillResult, Policy, TaxLotEngine

START = datetime(2025, 1, 2, 15, 0, tzinfo=UTC)


class Reference(TaxLotEngine):
    def apply(self, fill: Fill) -> FillResult:
        if fill.fill_id in self.fill_ids:
            raise LotError("duplicate")
        if self.last_ts is not None and fill.ts < self.last_ts:
            raise LotError("out of order")
        today = trade_date(fill.ts)
        result = self.book(fill.portfolio_id, fill.instrument).apply(fill, today)
        self.fill_ids.add(fill.fill_id)
        self.last_ts = fill.ts
        touched = {id(lot): lot for lot in result.touched}
        updated = {}
        gains = list(result.gains)
        for i, gain in enumerate(gains):
            self.gains[gain.gain_id] = gain
            if gain.gain < 0 and gain.direction == "long":
                gains[i] = washed = self._ref_from_buys(gain, today, touched)
                if washed.washed_quantity < washed.quantity:
                    self._losses.setdefault(fill.instrument, deque()).append(gain.gain_id)
        opened = result.opened
        if opened is not None:
            touched[id(opened)] = opened
            if opened.quantity > 0:
                self._ref_earlier_losses(opened, today, touched, updated)
                if not opened.replacement_used and opened.quantity:
                    self._buys.setdefault(fill.instrument, deque()).append(opened)
        return FillResult(fill.fill_id, tuple(gains), tuple(updated.values()),
                          tuple(lot.snapshot() for lot in touched.values()))

    def _ref_from_buys(self, gain, today, touched):
        buys = self._buys.get(gain.instrument, deque())
        while buys and (buys[0].replacement_used or not buys[0].quantity or buys[0].acquired_date < today - WINDOW):
            buys.popleft()
        for lot in list(buys):
            if gain.washed_quantity == gain.quantity:
                break
            if lot.replacement_used or lot.quantity <= 0 or lot.origin_fill_id == gain.lot_origin_fill_id:
                continue
            gain = self._ref_wash(gain, lot, touched)
        return gain

    def _ref_earlier_losses(self, lot, today, touched, updated):
        losses = self._losses.get(lot.instrument, deque())
        while losses:
            first = self.gains[losses[0]]
            if first.washed_quantity < first.quantity and first.sold_date >= today - WINDOW:
                break
            losses.popleft()
        for gain_id in list(losses):
            if lot.replacement_used or not lot.quantity:
                break
            gain = self.gains[gain_id]
            if gain.washed_quantity < gain.quantity:
                updated[gain_id] = self._ref_wash(gain, lot, touched)

    def _ref_wash(self, gain, lot, touched):
        quantity = min(gain.quantity - gain.washed_quantity, lot.quantity)
        washed = gain.washed_quantity + quantity
        total = -gain.gain if washed == gain.quantity else cents(-gain.gain * washed / gain.quantity)
        book = self.books[(lot.portfolio_id, lot.instrument)]
        replacement = lot
        if quantity < lot.quantity:
            replacement = lot.split(quantity)
            book.lots.insert(book.lots.index(lot), replacement)
        replacement.basis_adjustment += total - gain.disallowed
        replacement.holding_start = replacement.acquired_date - (gain.sold_date - gain.holding_start)
        replacement.replacement_used = True
        touched[id(lot)] = lot
        touched[id(replacement)] = replacement
        if book.method is Method.AVERAGE:
            book.reaverage()
            for other in book.lots:
                touched[id(other)] = other
        gain = dataclasses.replace(gain, wash_code="W", disallowed=total, washed_quantity=washed)
        self.gains[gain.gain_id] = gain
        return gain


steps = st.lists(st.tuples(
    st.sampled_from([1, 2, 3]),  # portfolio
    st.sampled_from(["A", "B"]),  # instrument
    st.sampled_from([Side.BUY, Side.BUY, Side.SELL]),
    st.sampled_from(["1", "3", "10", "25", "2.5", "0.75", "40"]),  # quantity
    st.integers(50, 3000),  # price in cents
    st.integers(0, 150),  # fees in cents
    st.integers(0, 20 * 24 * 60),  # minutes since the previous fill
), min_size=1, max_size=60)


def run(engine, sequence):
    out = []
    ts = START
    for i, (portfolio, instrument, side, qty, price, fees, minutes) in enumerate(sequence):
        ts += timedelta(minutes=minutes)
        fill = Fill(f"F{i}", portfolio, instrument, side, D(qty), D(price).scaleb(-2), ts, D(fees).scaleb(-2))
        try:
            out.append(repr(engine.apply(fill)))
        except LotError as error:
            out.append(f"refused {error.code}")
    return out, repr(engine.state()), repr({k: list(v) for k, v in engine._losses.items()})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.sampled_from([Method.FIFO, Method.LIFO, Method.HIFO, Method.AVERAGE]), st.booleans())
def test_engine_matches_the_straightforward_reference(sequence, method, allow_short):
    policies = {1: Policy(method, allow_short), 2: Policy(Method.FIFO, allow_short), 3: Policy(Method.LIFO)}
    assert run(TaxLotEngine(policies), sequence) == run(Reference(policies), sequence)


def test_wash_by_two_earlier_buys_and_a_later_one_is_one_record_with_the_cumulative_disallowance():
    # bought 10 + 5 (F0, F1) before a loss sale of 20 shares of an older lot (F-1 in portfolio 2), then 5 more
    engine = TaxLotEngine()
    day = timedelta(days=1)
    old = START - 60 * day
    fills = [Fill("F-1", 2, "A", Side.BUY, D(20), D("30.00"), old),
             Fill("F0", 1, "A", Side.BUY, D(10), D("20.00"), START),
             Fill("F1", 1, "A", Side.BUY, D(5), D("20.00"), START + day),
             Fill("F2", 2, "A", Side.SELL, D(20), D("20.00"), START + 2 * day, D("1.00")),
             Fill("F3", 1, "A", Side.BUY, D(5), D("21.00"), START + 3 * day)]
    results = [engine.apply(fill) for fill in fills]
    # loss = 20 x 20 - 1 - 20 x 30 = -201; 15 of 20 shares washed at once: cents(201 x 15 / 20) = 150.75
    (sale,) = results[3].gains
    assert (sale.wash_code, sale.disallowed, sale.washed_quantity) == ("W", D("150.75"), D(15))
    # the later buy washes the remaining 5: the whole loss 201 is disallowed, 50.25 of it into F3's lot
    (later,) = results[4].updated_gains
    assert (later.disallowed, later.washed_quantity) == (D("201.00"), D(20))
    assert sale.disallowed == D("150.75") and engine.gains["F2:F-1"] is later  # earlier record replaced, not changed
    lots = {lot.lot_id: lot for lot in engine.open_lots()}
    assert lots["F0"].basis_adjustment == D("100.50") and lots["F1"].basis_adjustment == D("50.25")
    assert lots["F3"].basis_adjustment == D("50.25")
    assert lots["F3"].holding_start == date(2025, 1, 5) - timedelta(days=62)


def test_fast_constructors_make_the_same_objects_as_the_dataclasses():
    values = ["L", 1, "A", D("2.50"), D("10.00"), D("0.10"), START, date(2025, 1, 2), "F0", True, 3]
    assert repr(make_lot(*values)) == repr(Lot(*values)) and make_lot(*values) == Lot(*values)
    gain_values = ["g", "F1", "L", "F0", 1, "A", "long", D(2), START, START, date(2025, 1, 3), date(2025, 1, 2),
                   D("9.99"), D("12.00"), D("-2.01"), "short", "W", D("1.00"), D(1)]
    assert make_gain(*gain_values) == RealizedGain(*gain_values)
    assert make_gain(*gain_values[:16], "", ZERO, ZERO) == RealizedGain(*gain_values[:16])
    with __import__("pytest").raises(dataclasses.FrozenInstanceError):
        make_lot(*values).quantity = D(1)


def test_holding_term_is_the_same_with_the_anniversary_cache():
    assert holding_term(date(2024, 2, 29), date(2025, 2, 28)) == "short"
    assert holding_term(date(2024, 2, 29), date(2025, 3, 1)) == "long"
    assert holding_term(date(2024, 2, 29), date(2025, 3, 1)) == "long"  # cached
    assert holding_term(date(2024, 3, 1), date(2025, 3, 1)) == "short"
    assert holding_term(date(2024, 3, 1), date(2025, 3, 2)) == "long"


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kathmandu"),
                                               ZoneInfo("Europe/London"), timezone(timedelta(hours=-3, minutes=-30))])))
def test_trade_date_cache_agrees_with_a_direct_conversion(ts):
    assert trade_date(ts) == ts.astimezone(ZoneInfo("America/New_York")).date()
    assert trade_date(ts) == ts.astimezone(ZoneInfo("America/New_York")).date()  # second call: from the cache


def test_trade_date_around_new_york_clock_changes():
    # 2024-03-10 07:00 UTC = 03:00 EDT; 2024-11-03 06:00 UTC = 01:00 EST; New York midnight is 04:00 or 05:00 UTC
    assert trade_date(datetime(2024, 3, 10, 4, 59, 59, 999999, tzinfo=UTC)) == date(2024, 3, 9)
    assert trade_date(datetime(2024, 3, 10, 5, 0, tzinfo=UTC)) == date(2024, 3, 10)
    assert trade_date(datetime(2024, 3, 11, 3, 59, 59, 999999, tzinfo=UTC)) == date(2024, 3, 10)
    assert trade_date(datetime(2024, 3, 11, 4, 0, tzinfo=UTC)) == date(2024, 3, 11)
    assert trade_date(datetime(2024, 11, 4, 4, 59, tzinfo=UTC)) == date(2024, 11, 3)
    assert trade_date(datetime(2024, 11, 4, 5, 0, tzinfo=UTC)) == date(2024, 11, 4)
