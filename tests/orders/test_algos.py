"""TWAP/VWAP slice schedules (pure): exact sums on the lot grid, equal intervals, the U shape, determinism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.orders.algos import (
    allocate,
    due_slices,
    profile_weights,
    schedule_dump,
    schedule_load,
    slice_times,
    twap_schedule,
    u_shape_weights,
    vwap_schedule,
)

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def qtys(schedule) -> list[Decimal]:
    return [q for _, q in schedule]


def test_twap_equal_slices_at_equal_intervals():
    schedule = twap_schedule(Decimal(100), T0, T1, 4)
    assert schedule == [(T0, 25), (T0 + timedelta(minutes=15), 25), (T0 + timedelta(minutes=30), 25),
                        (T0 + timedelta(minutes=45), 25)]


def test_twap_last_slice_takes_the_remainder_on_the_lot_grid():
    schedule = twap_schedule(Decimal("1.0003"), T0, T1, 3, lot=Decimal("0.0001"))
    assert qtys(schedule) == [Decimal("0.3334"), Decimal("0.3334"), Decimal("0.3335")]
    assert sum(qtys(schedule)) == Decimal("1.0003")
    assert qtys(twap_schedule(Decimal(10), T0, T1, 4)) == [2, 2, 2, 4]


def test_twap_with_fewer_lots_than_slices_leaves_early_slices_empty():
    assert qtys(twap_schedule(Decimal(2), T0, T1, 3)) == [0, 0, 2]


@pytest.mark.parametrize(("qty", "lot", "slices", "end", "message"), [
    (Decimal("1.5"), Decimal(1), 3, T1, "not a multiple of the lot"),
    (Decimal(0), Decimal(1), 3, T1, "qty must be a positive"),
    (Decimal(10), Decimal(1), 0, T1, "slices must be a positive"),
    (Decimal(10), Decimal(1), 3, T0, "end must be after start"),
    (Decimal(10), Decimal(0), 3, T1, "lot must be a positive"),
])
def test_bad_inputs_raise(qty, lot, slices, end, message):
    with pytest.raises(ValueError, match=message):
        twap_schedule(qty, T0, end, slices, lot=lot)
    with pytest.raises(ValueError, match=message):
        vwap_schedule(qty, T0, end, slices, None, lot=lot)


def test_slice_times_split_the_window_to_the_microsecond():
    times = slice_times(T0, T0 + timedelta(seconds=1), 3)
    assert times == [T0, T0 + timedelta(microseconds=333333), T0 + timedelta(microseconds=666667)]


def test_u_shape_is_heavy_at_both_ends_light_in_the_middle_and_symmetric():
    weights = u_shape_weights(10)
    assert sum(weights) == 2  # the integral of 1 + 3(2x-1)^2 over [0, 1]
    assert weights == list(reversed(weights))
    assert weights[0] > weights[1] > weights[2] > weights[3] > weights[4]
    assert weights[0] / weights[4] > 3
    assert u_shape_weights(1) == [Fraction(2)]


def test_vwap_default_profile_is_the_u_shape():
    schedule = vwap_schedule(Decimal(1000), T0, T1, 5)
    sizes = qtys(schedule)
    assert sum(sizes) == 1000
    # weights 0.592, 0.304, 0.208, 0.304, 0.592 (of 2); one lot each, then 995 lots by largest remainder
    assert sizes == [296, 152, 104, 152, 296]
    assert [at for at, _ in schedule] == slice_times(T0, T1, 5)


def test_vwap_follows_the_given_profile():
    sizes = qtys(vwap_schedule(Decimal(100), T0, T1, 4, [1, 1, 2, 4]))
    # every slice gets one lot first; the other 96 go 12, 12, 24, 48 by volume
    assert sizes == [13, 13, 25, 49]


def test_vwap_profile_of_another_length_is_split_by_overlap():
    # 2 buckets over 4 slices: each bucket's volume spreads over two slices
    assert profile_weights([4, 8], 4) == [2, 2, 4, 4]
    # 3 buckets over 2 slices: the middle bucket straddles both
    assert profile_weights([3, 6, 9], 2) == [6, 12]
    assert qtys(vwap_schedule(Decimal(20), T0, T1, 2, [3, 6, 9])) == [7, 13]


def test_vwap_all_zero_profile_falls_back_to_the_u_shape():
    assert vwap_schedule(Decimal(1000), T0, T1, 5, [0, 0, 0]) == vwap_schedule(Decimal(1000), T0, T1, 5)


def test_vwap_refuses_negative_or_nan_volume():
    with pytest.raises(ValueError, match="finite and non-negative"):
        vwap_schedule(Decimal(10), T0, T1, 2, [1, -1])
    with pytest.raises(ValueError, match="finite and non-negative"):
        vwap_schedule(Decimal(10), T0, T1, 2, [1, float("nan")])


def test_allocate_largest_remainder_ties_go_to_the_earlier_slice():
    assert allocate(2, [Fraction(1)] * 4) == [1, 1, 0, 0]
    assert allocate(5, [Fraction(1)] * 4) == [2, 1, 1, 1]
    assert allocate(7, [Fraction(0)] * 3) == [3, 2, 2]  # no weight at all: equal


def test_schedules_are_deterministic():
    profile = [5.5, 1.25, 0.0, 3.0, 8.0]
    first = vwap_schedule(Decimal("12.3456"), T0, T1, 17, profile, lot=Decimal("0.0001"))
    assert all(vwap_schedule(Decimal("12.3456"), T0, T1, 17, profile, lot=Decimal("0.0001")) == first
               for _ in range(5))
    assert twap_schedule(Decimal(99), T0, T1, 7) == twap_schedule(Decimal(99), T0, T1, 7)


def test_due_slices():
    schedule = twap_schedule(Decimal(40), T0, T1, 4)  # due at :00, :15, :30, :45
    assert due_slices(schedule, 0, T0 - timedelta(seconds=1)) == range(0, 0)
    assert due_slices(schedule, 0, T0) == range(0, 1)
    assert due_slices(schedule, 0, T0 + timedelta(minutes=31)) == range(0, 3)
    assert due_slices(schedule, 2, T0 + timedelta(minutes=31)) == range(2, 3)
    assert due_slices(schedule, 3, T0 + timedelta(minutes=31)) == range(3, 3)
    assert due_slices(schedule, 4, T1 + timedelta(days=1)) == range(4, 4)
    assert list(due_slices(schedule, 1, T1)) == [1, 2, 3]


def test_schedule_round_trips_through_json_exactly():
    schedule = vwap_schedule(Decimal("1.0003"), T0, T1, 3, None, lot=Decimal("0.0001"))
    dumped = schedule_dump(schedule)
    assert dumped[0] == [T0.isoformat(), str(schedule[0][1])]
    assert schedule_load(dumped) == schedule


lots = st.sampled_from([Decimal(1), Decimal("0.0001"), Decimal("0.01"), Decimal(5), Decimal("0.5")])


@given(units=st.integers(min_value=1, max_value=10**9), lot=lots, slices=st.integers(min_value=1, max_value=500),
       seconds=st.integers(min_value=1, max_value=10**6),
       profile=st.one_of(st.none(), st.lists(st.floats(min_value=0, max_value=1e9), min_size=1, max_size=60)),
       vwap=st.booleans())
def test_property_exact_sum_on_the_grid_and_ordered_times(units, lot, slices, seconds, profile, vwap):
    qty = lot * units
    end = T0 + timedelta(seconds=seconds)
    schedule = (vwap_schedule(qty, T0, end, slices, profile, lot=lot) if vwap
                else twap_schedule(qty, T0, end, slices, lot=lot))
    sizes = qtys(schedule)
    assert len(schedule) == slices
    assert sum(sizes) == qty
    assert all(q >= 0 and q % lot == 0 for q in sizes)
    times = [at for at, _ in schedule]
    assert times[0] == T0 and all(T0 <= a <= b < end for a, b in zip(times, times[1:], strict=False))
    if vwap and units >= slices:
        assert all(q >= lot for q in sizes)  # every slice trades when there are enough lots
