"""The booking service loads only the lots a fill can touch (booking._lots_needed). Whatever it loads,
the stored books must equal the pure engine's replay of the same fills: lots, gains, positions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.portfolios import lots as core
from apps.portfolios import services
from apps.portfolios.booking import book_fill
from apps.portfolios.models import Lot, Position, RealizedGain
from apps.portfolios.wash import Policy, TaxLotEngine


def _stored(firm_id):
    with firm_scope(firm_id):
        lots = {(r.lot_id): (r.portfolio_id, r.instrument_id, r.quantity, r.cost, r.basis_adjustment,
                             r.holding_start, r.replacement_used) for r in Lot.objects.exclude(quantity=0)}
        gains = {r.gain_id: (r.quantity, r.proceeds, r.cost_basis, r.gain, r.term, r.wash_code, r.disallowed,
                             r.washed_quantity, r.holding_start) for r in RealizedGain.objects.all()}
        positions = {(r.portfolio_id, r.instrument_id): r.quantity for r in Position.objects.exclude(quantity=0)}
    return lots, gains, positions


def _replayed(engine):
    lots = {lot.lot_id: (lot.portfolio_id, lot.instrument, lot.quantity, lot.cost, lot.basis_adjustment,
                         lot.holding_start, lot.replacement_used) for lot in engine.open_lots()}
    gains = {g.gain_id: (g.quantity, g.proceeds, g.cost_basis, g.gain, g.term, g.wash_code, g.disallowed,
                         g.washed_quantity, g.holding_start) for g in engine.gains.values()}
    positions = {key: book.position for key, book in engine.books.items() if book.position}
    return lots, gains, positions


@pytest.mark.parametrize("methods", [("fifo", "fifo"), ("lifo", "fifo"), ("hifo", "lifo"), ("average", "fifo")])
@pytest.mark.parametrize("seed", [1, 2])
def test_stored_books_equal_the_engine_replay(firm_a, stocks, system, methods, seed):
    rng = random.Random(seed)
    firm_id = firm_a.firm.pk
    ports = [services.portfolio_create(firm_id=firm_id, name=f"P{i}", cost_basis_method=m, allow_short=(i == 1),
                                       actor=system) for i, m in enumerate(methods)]
    instruments = [stocks["AAPL"], stocks["XYZ"]]
    engine = TaxLotEngine({p.pk: Policy(core.Method(p.cost_basis_method), p.allow_short) for p in ports})
    ts = datetime(2024, 1, 2, 15, tzinfo=UTC)
    booked = refused = 0
    for n in range(90):
        ts += timedelta(days=rng.choice([0, 1, 1, 2, 5, 9]), minutes=1)
        p, inst = rng.choice(ports), rng.choice(instruments)
        side = rng.choice(["buy", "buy", "sell"])
        qty = Decimal(rng.randint(1, 40))
        price = Decimal(rng.randint(8000, 12000)) / 100
        fees = Decimal(rng.choice([0, 0, 1]))
        fill = core.Fill(f"R{n}", p.pk, inst.pk, core.Side(side), qty, price, ts, fees)
        try:
            engine_result = engine.apply(fill)
        except core.LotError:
            engine_result = None
        try:
            book_fill(portfolio=p, instrument=inst, side=side, quantity=qty, price=price, fees=fees, executed_at=ts,
                      fill_id=f"R{n}", actor=system)
            booked += 1
        except DomainError:
            refused += 1
            assert engine_result is None, f"fill R{n} refused by the service but not by the engine"
            continue
        assert engine_result is not None, f"fill R{n} booked by the service but refused by the engine"
    assert booked > 50 and any(g[5] == "W" for g in _replayed(engine)[1].values())
    stored, replayed = _stored(firm_id), _replayed(engine)
    assert stored[2] == replayed[2]
    assert stored[1] == replayed[1]
    assert stored[0] == replayed[0]
