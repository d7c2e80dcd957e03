"""Reliability target 42: concurrent bookings into one position never lose an update.

Real concurrent transactions: each thread has its own PostgreSQL connection (closed at the end),
and a barrier releases them together so their bookings overlap. All fills share one timestamp,
so the order the (tax entity, instrument) lock grants them in never makes one "out of order".
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.portfolios import selectors, services
from apps.portfolios.booking import book_fill
from apps.portfolios.models import Account, Fill, JournalLine, Lot, Position

D = Decimal
WHEN = datetime(2025, 6, 2, 15, 0, tzinfo=UTC)
OPENING = D(1000)  # bought at 100 before the race
DEPOSIT = D(1_000_000)


def _plan(worker: int, per_thread: int) -> list[tuple[str, str, Decimal, Decimal, Decimal]]:
    """(fill id, side, quantity, price, fees): alternating buys and sells around 100, so some sells
    lose (washed by the other threads' buys) and some gain."""
    out = []
    for i in range(per_thread):
        side = "buy" if i % 2 == 0 else "sell"
        quantity = D(10 * (worker + 1) + i) if side == "buy" else D(5 * (worker + 1))
        price = D(95 + (worker * 7 + i * 3) % 11)  # 95..105
        out.append((f"W{worker}-{i}", side, quantity, price, D("0.50")))
    return out


def _cash(side: str, quantity: Decimal, price: Decimal, fees: Decimal) -> Decimal:
    return (quantity * price if side == "sell" else -quantity * price) - fees


def _run_threads(target, args_per_thread: list[tuple]) -> list[BaseException]:
    barrier = threading.Barrier(len(args_per_thread))
    errors: list[BaseException] = []

    def run(*args):
        try:
            target(barrier, *args)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=run, args=args) for args in args_per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a booking thread hung"
    return errors


@pytest.mark.parametrize("threads, per_thread", [(2, 12), (8, 8)])
def test_concurrent_bookings_into_one_position_lose_nothing(transactional_db, firm_a, stocks, threads, per_thread):
    actor = Actor.system("test")
    p = services.portfolio_create(firm_id=firm_a.firm.pk, name="Race", actor=actor)
    xyz = stocks["XYZ"]
    services.cash_post(portfolio=p, kind="deposit", amount=DEPOSIT, actor=actor, on=date(2025, 6, 1))
    book_fill(portfolio=p, instrument=xyz, side="buy", quantity=OPENING, price=D(100), executed_at=WHEN,
              fill_id="OPEN", actor=actor)
    plans = [_plan(w, per_thread) for w in range(threads)]

    def worker(barrier, plan):
        barrier.wait(timeout=30)
        for fill_id, side, quantity, price, fees in plan:
            book_fill(portfolio=p, instrument=xyz, side=side, quantity=quantity, price=price, fees=fees,
                      executed_at=WHEN, fill_id=fill_id, actor=Actor.system("race"))

    assert _run_threads(worker, [(plan,) for plan in plans]) == []

    fills = [f for plan in plans for f in plan]
    expected_qty = OPENING + sum((q if s == "buy" else -q) for _, s, q, _, _ in fills)
    expected_cash = DEPOSIT - OPENING * 100 + sum(_cash(s, q, px, fee) for _, s, q, px, fee in fills)
    if (threads, per_thread) == (2, 12):
        # by hand: buys 10+12+14+16+18+20 and 20+22+24+26+28+30 = 240; sells 6x5 + 6x10 = 90
        assert expected_qty == D(1150)
    with firm_scope(p.firm_id):
        position = Position.objects.get(portfolio=p, instrument=xyz)
        open_lots = Lot.objects.filter(portfolio=p, instrument=xyz).exclude(quantity=0)
        booked_ids = list(Fill.objects.filter(portfolio=p).values_list("fill_id", flat=True))
        unbalanced = (JournalLine.objects.filter(portfolio=p).values("entry_id")
                      .annotate(total=Sum("amount")).exclude(total=0).count())
        balances = selectors.account_balances(p.pk)
        audited = AuditEvent.objects.filter(firm_id=p.firm_id, action="portfolio.fill_booked").count()
    assert position.quantity == expected_qty
    assert open_lots.aggregate(q=Sum("quantity"))["q"] == expected_qty
    assert open_lots.aggregate(c=Sum("cost"))["c"] == position.cost == balances[Account.SECURITIES]
    # every fill booked exactly once
    assert sorted(booked_ids) == sorted(["OPEN", *(f[0] for f in fills)])
    assert audited == 1 + threads * per_thread
    # the journal: each entry balances, cash is the deposit plus every fill's cash
    assert unbalanced == 0 and sum(balances.values()) == 0
    assert balances[Account.CASH] == expected_cash
    assert -balances[Account.REALIZED] == position.realized


@pytest.mark.parametrize("same_instrument", [True, False], ids=["same-instrument", "other-instrument"])
def test_the_same_fill_id_booked_twice_at_once_books_once(transactional_db, firm_a, stocks, same_instrument):
    """Two threads book one fill id at the same moment: one wins, the other gets DUPLICATE_FILL and
    writes nothing. On another instrument the two bookings do not share the (entity, instrument)
    lock, so the unique (firm, fill_id) constraint alone must refuse the second."""
    actor = Actor.system("test")
    p = services.portfolio_create(firm_id=firm_a.firm.pk, name="Dup", actor=actor)
    rounds = 5
    instruments = [stocks["AAPL"], stocks["AAPL"] if same_instrument else stocks["MSFT"]]
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker(barrier, which):
        for r in range(rounds):
            barrier.wait(timeout=30)
            try:
                book_fill(portfolio=p, instrument=instruments[which], side="buy", quantity=D(10), price=D(100),
                          executed_at=WHEN, fill_id=f"DUP-{r}", actor=Actor.system(f"t{which}"))
                result = "booked"
            except DomainError as exc:
                result = exc.code
            with lock:
                outcomes.append((r, result))

    assert _run_threads(worker, [(0,), (1,)]) == []
    for r in range(rounds):
        assert sorted(res for rr, res in outcomes if rr == r) == ["DUPLICATE_FILL", "booked"]
    with firm_scope(p.firm_id):
        assert Fill.objects.filter(portfolio=p).count() == rounds
        assert Lot.objects.filter(portfolio=p).count() == rounds
        assert Position.objects.filter(portfolio=p).aggregate(q=Sum("quantity"))["q"] == 10 * rounds
        assert JournalLine.objects.filter(portfolio=p, account=Account.CASH).aggregate(
            s=Sum("amount"))["s"] == -1000 * rounds
        assert AuditEvent.objects.filter(firm_id=p.firm_id, action="portfolio.fill_booked").count() == rounds
