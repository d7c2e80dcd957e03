"""Execution-algorithm schedules (pure; no ORM): how a TWAP or VWAP parent order slices its quantity over
its window. ``apps.orders.algo_services`` fixes the schedule when the algo is created and sends each slice
through the one order path when it falls due; the backtester can reuse the same functions.

A schedule is a list of ``(due_at, qty)``: slice ``i`` is due at ``start + i * (end - start) / slices``
(the first at ``start``, the last one interval before ``end``), and every qty is a whole number of lots
(``qty = k * lot``, ``k >= 0``) summing exactly to the parent's qty. Everything is exact (Decimal quantities,
Fraction weights), so the same inputs always give the same schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from math import floor, isfinite

Schedule = list[tuple[datetime, Decimal]]

# The default intraday volume curve (no stored bars): w(x) = 1 + 3 * (2x - 1)^2 over the window's fraction
# x in [0, 1] — a quadratic U whose ends weigh 4x its middle, the usual shape of US equity minute volume
# (heavy at the open and the close, thin at midday). Its integral is F(x) = x + (2x - 1)^3 / 2.
U_DEPTH = 3


def _check(qty: Decimal, start: datetime, end: datetime, slices: int, lot: Decimal) -> int:
    """Validate the common inputs; return the number of lots in ``qty``."""
    if not isinstance(slices, int) or isinstance(slices, bool) or slices < 1:
        raise ValueError("slices must be a positive integer.")
    if not end > start:
        raise ValueError("end must be after start.")
    if not (lot.is_finite() and lot > 0):
        raise ValueError("lot must be a positive number.")
    if not (qty.is_finite() and qty > 0):
        raise ValueError("qty must be a positive number.")
    units = qty / lot
    if units != units.to_integral_value():
        raise ValueError(f"qty {qty} is not a multiple of the lot {lot}.")
    return int(units)


def slice_times(start: datetime, end: datetime, slices: int) -> list[datetime]:
    """Equal intervals: slice ``i`` is due at ``start + i * (end - start) / slices`` (microsecond-rounded)."""
    width = end - start
    return [start + width * i / slices for i in range(slices)]


def _lots(units: int, lot: Decimal) -> Decimal:
    return lot * units


def twap_schedule(qty: Decimal, start: datetime, end: datetime, slices: int, *, lot: Decimal = Decimal(1)) -> Schedule:
    """Equal slices at equal intervals: every slice gets ``floor(lots / slices)`` lots and the last slice also
    takes the remainder, so the slices sum exactly to ``qty`` and each is on the lot grid. With fewer lots
    than slices the early slices are 0 (callers that want every slice to trade ask for ``qty >= slices * lot``)."""
    units = _check(qty, start, end, slices, lot)
    base, rest = divmod(units, slices)
    counts = [base] * slices
    counts[-1] += rest
    return list(zip(slice_times(start, end, slices), (_lots(k, lot) for k in counts), strict=True))


def u_shape_weights(slices: int) -> list[Fraction]:
    """The default profile's weight of each of ``slices`` equal intervals of the window (see ``U_DEPTH``)."""

    def integral(x: Fraction) -> Fraction:
        return x + Fraction(U_DEPTH, 6) * (2 * x - 1) ** 3

    return [integral(Fraction(i + 1, slices)) - integral(Fraction(i, slices)) for i in range(slices)]


def profile_weights(volume_profile: Sequence[float], slices: int) -> list[Fraction]:
    """The expected volume of each slice interval, from a profile of ``m`` equal buckets spanning the window
    (any ``m``: a bucket that straddles two slices is split by its overlap). Values must be finite and >= 0."""
    m = len(volume_profile)
    values = []
    for v in volume_profile:
        v = float(v)
        if not isfinite(v) or v < 0:
            raise ValueError("volume_profile values must be finite and non-negative.")
        values.append(Fraction(v))
    weights = [Fraction(0)] * slices
    # sweep the union of both grids, in units of 1 / (m * slices)
    i = j = 0
    pos = 0
    total = m * slices
    while pos < total:
        slice_end, bucket_end = (i + 1) * m, (j + 1) * slices
        nxt = min(slice_end, bucket_end)
        weights[i] += values[j] * (nxt - pos) / slices  # the bucket's density times the overlap
        pos = nxt
        if pos == slice_end:
            i += 1
        if pos == bucket_end:
            j += 1
    return weights


def allocate(units: int, weights: Sequence[Fraction]) -> list[int]:
    """Split ``units`` whole lots proportionally to ``weights`` by largest remainder (ties: the earlier slice).
    When there are at least as many lots as slices, every slice first gets one lot, so none is empty."""
    n = len(weights)
    floor_each = 1 if units >= n else 0
    rest = units - floor_each * n
    total = sum(weights, Fraction(0))
    if total <= 0:
        weights, total = [Fraction(1)] * n, Fraction(n)
    quotas = [rest * w / total for w in weights]
    counts = [floor(q) for q in quotas]
    leftover = rest - sum(counts)
    order = sorted(range(n), key=lambda k: (-(quotas[k] - counts[k]), k))
    for k in order[:leftover]:
        counts[k] += 1
    return [floor_each + c for c in counts]


def vwap_schedule(qty: Decimal, start: datetime, end: datetime, slices: int,
                  volume_profile: Sequence[float] | None = None, *, lot: Decimal = Decimal(1)) -> Schedule:
    """Slices at equal intervals, sized in proportion to the volume expected in each interval.

    ``volume_profile``: expected volume in ``m`` equal buckets spanning the window (``profile_weights``); with
    none (or an all-zero one) the default is the quadratic U-shaped intraday curve ``w(x) = 1 + 3(2x - 1)^2``
    over the window (ends 4x the middle; see ``U_DEPTH``). Lots are split by largest remainder
    (``allocate``): exact sum, every slice on the lot grid and, given ``qty >= slices * lot``, none empty."""
    units = _check(qty, start, end, slices, lot)
    weights = profile_weights(volume_profile, slices) if volume_profile else []
    if not weights or sum(weights) <= 0:
        weights = u_shape_weights(slices)
    counts = allocate(units, weights)
    return list(zip(slice_times(start, end, slices), (_lots(k, lot) for k in counts), strict=True))


def due_slices(schedule: Sequence[tuple[datetime, Decimal]], next_slice: int, now: datetime) -> range:
    """The slices due at ``now`` that have not been sent: ``next_slice`` up to the first one due later."""
    end = next_slice
    while end < len(schedule) and schedule[end][0] <= now:
        end += 1
    return range(next_slice, max(next_slice, end))


def schedule_dump(schedule: Sequence[tuple[datetime, Decimal]]) -> list[list[str]]:
    """As stored on ``AlgoOrder.schedule``: ``[[ISO due time, qty string], ...]`` (exact, JSON-safe)."""
    return [[at.isoformat(), str(qty)] for at, qty in schedule]


def schedule_load(data: Sequence[Sequence[str]]) -> Schedule:
    return [(datetime.fromisoformat(at), Decimal(qty)) for at, qty in data]
