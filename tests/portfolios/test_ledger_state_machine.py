"""Reliability targets 23-24: the stored books as a hypothesis state machine over the real services.

Deposits, buys, sells (and sells beyond the position, which must be refused and change nothing),
repeated fill ids (refused), cash dividends and splits (``apps.portfolios.corporate``) go through the
booking service into PostgreSQL, in two portfolios of one tax entity (A: FIFO, long only; B: HIFO,
shorts allowed — wash sales link them). After every step:

- per portfolio and instrument, the open lots sum to the stored position, and both equal the model's;
- every journal entry balances; journal cash = the model's cash (deposits + fills' cash + dividends);
- cash + market value (at the last price the machine traded, split-adjusted) = the model's equity;
- realized + dividend income + unrealized = equity - net external flows (deposits), with the
  securities and realized accounts equal to the positions' book cost and realized P&L;

and rebuilding from scratch (``rebuild.rebuild_check``) reproduces the same lots, positions, gains and
balances, as a rule hypothesis picks and at the end of every example. The pure engine has its own
property test (test_lots_properties.py); this one is about what is stored.

Each example runs in a savepoint rolled back at its end, so the database is clean for the next one.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.portfolios import services
from apps.portfolios.booking import book_fill
from apps.portfolios.corporate import corporate_action_apply, corporate_action_create
from apps.portfolios.lots import TAX_TZ, cents, trade_date
from apps.portfolios.models import Account, Fill, JournalLine, Lot, Position, RealizedGain
from apps.portfolios.rebuild import rebuild_check

D = Decimal
ZERO = D(0)
START = datetime(2025, 1, 2, 15, 0, tzinfo=UTC)
PORTFOLIOS = ("A", "B")
SYMBOLS = ("AAPL", "XYZ")
SPLITS = [(D(1), D(2)), (D(2), D(1)), (D(1), D(4))]  # 2-for-1, 1-for-2 reverse, 4-for-1: exact halves/quarters

portfolio_names = st.sampled_from(PORTFOLIOS)
symbols = st.sampled_from(SYMBOLS)
quantities = st.integers(1, 60)
# the price moves from the last traded one (the simplest move, the one hypothesis shrinks to, is down:
# sales at a loss, bought back within 30 days, are wash sales)
moves = st.sampled_from([-700, -250, -90, 60, 180, 450])  # cents
fees = st.integers(0, 300)  # cents
minutes = st.integers(0, 6 * 24 * 60)  # up to six days between fills: wash windows overlap
trades = st.lists(st.tuples(quantities, moves, fees, minutes), min_size=1, max_size=3)  # fills of one rule


def _cents(n: int) -> Decimal:
    return D(n).scaleb(-2)


class LedgerMachine(RuleBasedStateMachine):
    firm_id: int
    instruments: dict

    def __init__(self):
        super().__init__()
        self.actor = Actor.system("state machine")
        self.portfolios: dict = {}
        self.qty = {(p, s): ZERO for p in PORTFOLIOS for s in SYMBOLS}
        self.cash = dict.fromkeys(PORTFOLIOS, ZERO)
        self.deposits = dict.fromkeys(PORTFOLIOS, ZERO)
        self.mark = dict.fromkeys(SYMBOLS, D(100))
        self.now = START
        self.fill_ids: list[str] = []
        self.counter = 0
        self.rebuilds = 0
        # one savepoint per example, rolled back in teardown
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    @initialize(opening=st.lists(quantities, min_size=4, max_size=4), deposit=st.integers(0, 50_000))
    def portfolios_of_one_taxpayer(self, opening, deposit):
        """A and B in one tax entity, each holding both instruments (so dividends, splits and wash
        sales have something to act on from the first step)."""
        entity = services.tax_entity_create(firm_id=self.firm_id, name="Machine", actor=self.actor)
        self.portfolios["A"] = services.portfolio_create(firm_id=self.firm_id, name="A", actor=self.actor,
                                                         tax_entity=entity)
        self.portfolios["B"] = services.portfolio_create(firm_id=self.firm_id, name="B", actor=self.actor,
                                                         tax_entity=entity, cost_basis_method="hifo", allow_short=True)
        if deposit:
            self.deposit("A", deposit)
        quantities_ = iter(opening)
        for p in PORTFOLIOS:
            for symbol in SYMBOLS:
                self.buy(p, symbol, [(next(quantities_), 0, 100, 60)])

    def teardown(self):
        try:
            if self.portfolios:
                with firm_scope(self.firm_id):
                    washed = RealizedGain.objects.filter(portfolio__in=self.portfolios.values()).exclude(
                        wash_code="").count()
                event(f"wash-sale records: {min(washed, 3)}{'+' if washed >= 3 else ''}")
                self.rebuild_reproduces_the_books()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # -- helpers ------------------------------------------------------------------------------

    def _next_id(self) -> str:
        self.counter += 1
        return f"SM-{self.counter}"

    def _rows(self) -> tuple[int, int, int, int]:
        with firm_scope(self.firm_id):
            return (Fill.objects.filter(firm_id=self.firm_id).count(), JournalLine.objects.count(),
                    Lot.objects.count(), Position.objects.aggregate(q=Sum("quantity"))["q"] or ZERO)

    def _book(self, p: str, symbol: str, side: str, quantity: Decimal, price: Decimal, fee: Decimal,
              fill_id: str | None = None):
        return book_fill(portfolio=self.portfolios[p], instrument=self.instruments[symbol], side=side,
                         quantity=quantity, price=price, fees=fee, executed_at=self.now,
                         fill_id=fill_id or self._next_id(), source="manual", actor=self.actor)

    def _refused(self, code: str, call) -> None:
        before = self._rows()
        with pytest.raises(DomainError) as err:
            call()
        assert err.value.code == code
        assert self._rows() == before  # nothing written

    def _price(self, symbol: str, move: int) -> int:
        """The next price in cents: the last one moved by ``move`` cents, at least one dollar."""
        return max(100, int(cents(self.mark[symbol]) * 100) + move)

    def _next_day(self) -> datetime:
        return trade_date(self.now) + timedelta(days=1)

    # -- rules --------------------------------------------------------------------------------

    @rule(p=portfolio_names, amount=st.integers(1, 100_000))
    def deposit(self, p, amount):
        services.cash_post(portfolio=self.portfolios[p], kind="deposit", amount=D(amount), actor=self.actor,
                           on=trade_date(self.now))
        self.cash[p] += amount
        self.deposits[p] += amount

    @rule(p=portfolio_names, symbol=symbols, fills=trades)
    def buy(self, p, symbol, fills):
        for quantity, move, fee, wait in fills:
            price = self._price(symbol, move)
            self.now += timedelta(minutes=wait)
            fill_id = self._next_id()
            self._book(p, symbol, "buy", D(quantity), _cents(price), _cents(fee), fill_id)
            self.fill_ids.append(fill_id)
            self.qty[p, symbol] += quantity
            self.cash[p] -= quantity * _cents(price) + _cents(fee)
            self.mark[symbol] = _cents(price)

    @rule(p=portfolio_names, symbol=symbols, fills=trades)
    def sell(self, p, symbol, fills):
        """In long-only A at most what is held (whole shares); B may go short."""
        for quantity, move, fee, wait in fills:
            price = self._price(symbol, move)
            if p == "A":
                quantity = min(quantity, int(self.qty[p, symbol]))
                if quantity <= 0:
                    continue
            self.now += timedelta(minutes=wait)
            fill_id = self._next_id()
            self._book(p, symbol, "sell", D(quantity), _cents(price), _cents(fee), fill_id)
            self.fill_ids.append(fill_id)
            self.qty[p, symbol] -= quantity
            self.cash[p] += quantity * _cents(price) - _cents(fee)
            self.mark[symbol] = _cents(price)

    @rule(symbol=symbols, extra=st.integers(1, 30), price=moves)
    def sell_beyond_the_position_is_refused(self, symbol, extra, price):
        """Long-only A: one share (or more) beyond what it holds is refused, nothing written."""
        quantity = max(self.qty["A", symbol], ZERO).to_integral_value() + extra
        self._refused("SHORT_NOT_ALLOWED", lambda: self._book("A", symbol, "sell", D(quantity),
                                                              _cents(self._price(symbol, price)), ZERO))

    @precondition(lambda self: self.fill_ids)
    @rule(pick=st.integers(0, 10_000), p=portfolio_names, symbol=symbols, quantity=quantities, price=moves)
    def duplicate_fill_is_refused(self, pick, p, symbol, quantity, price):
        fill_id = self.fill_ids[pick % len(self.fill_ids)]
        self._refused("DUPLICATE_FILL",
                      lambda: self._book(p, symbol, "buy", D(quantity), _cents(self._price(symbol, price)), ZERO,
                                         fill_id))

    @rule(symbol=symbols, per_share=st.integers(1, 250))
    def cash_dividend(self, symbol, per_share):
        """Ex-date tomorrow, paid the same day: holders at today's close get it (a short pays it)."""
        ex = self._next_day()
        self.counter += 1
        action = corporate_action_create(firm_id=self.firm_id, kind="cash_dividend",
                                         instrument=self.instruments[symbol], ex_date=ex, pay_date=ex,
                                         cash_per_share=_cents(per_share), reference=f"div-{self.counter}",
                                         actor=self.actor)
        applied = corporate_action_apply(action=action, actor=self.actor)
        event(f"dividend paid to {len(applied)} portfolio(s)")
        assert corporate_action_apply(action=action, actor=self.actor) == []  # idempotent
        for p in PORTFOLIOS:
            self.cash[p] += cents(self.qty[p, symbol] * _cents(per_share))
        self.now = datetime.combine(ex, time(9, 30), TAX_TZ)

    @rule(symbol=symbols, ratio=st.sampled_from(SPLITS))
    def split(self, symbol, ratio):
        """Effective at the start of tomorrow: lots' quantities scale, costs stay, the price follows."""
        ratio_from, ratio_to = ratio
        ex = self._next_day()
        self.counter += 1
        action = corporate_action_create(firm_id=self.firm_id, kind="split", instrument=self.instruments[symbol],
                                         ex_date=ex, ratio_from=ratio_from, ratio_to=ratio_to,
                                         reference=f"split-{self.counter}", actor=self.actor)
        applied = corporate_action_apply(action=action, actor=self.actor)
        event(f"split applied to {len(applied)} portfolio(s)")
        assert corporate_action_apply(action=action, actor=self.actor) == []  # idempotent
        for p in PORTFOLIOS:
            self.qty[p, symbol] = self.qty[p, symbol] * ratio_to / ratio_from
        self.mark[symbol] = self.mark[symbol] * ratio_from / ratio_to
        self.now = datetime.combine(ex, time(9, 30), TAX_TZ)

    @rule()
    def rebuild_reproduces_the_books(self):
        for p in PORTFOLIOS:
            report = rebuild_check(self.portfolios[p])
            assert report.ok, [str(d) for d in report.differences]
        self.rebuilds += 1

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def books_agree(self):
        """Four grouped queries per step (both portfolios at once): the machine runs after every step."""
        if not self.portfolios:
            return
        pids = {self.portfolios[p].pk: p for p in PORTFOLIOS}
        symbol_of = {self.instruments[s].pk: s for s in SYMBOLS}
        with firm_scope(self.firm_id):
            positions = {(pids[r["portfolio_id"]], symbol_of[r["instrument_id"]]): r for r in Position.objects.filter(
                portfolio_id__in=pids).values("portfolio_id", "instrument_id", "quantity", "cost", "realized")}
            lots = {(pids[r["portfolio_id"]], symbol_of[r["instrument_id"]]): r["q"] for r in Lot.objects.filter(
                portfolio_id__in=pids).exclude(quantity=0).values("portfolio_id", "instrument_id").annotate(
                q=Sum("quantity"))}
            unbalanced = (JournalLine.objects.filter(portfolio_id__in=pids).values("entry_id")
                          .annotate(total=Sum("amount")).exclude(total=0).count())
            balances = {(pids[r["portfolio_id"]], r["account"]): r["total"] for r in JournalLine.objects.filter(
                portfolio_id__in=pids).values("portfolio_id", "account").annotate(total=Sum("amount"))}
        assert unbalanced == 0  # every journal entry balances
        for p in PORTFOLIOS:
            balance = {a: balances.get((p, a), ZERO) for a in Account.values}
            assert sum(balance.values()) == 0
            assert balance[Account.CASH] == self.cash[p]
            market_value = unrealized = realized = cost = ZERO
            for symbol in SYMBOLS:
                pos = positions.get((p, symbol), {"quantity": ZERO, "cost": ZERO, "realized": ZERO})
                # lots sum to the position, and both to the model's
                assert pos["quantity"] == lots.get((p, symbol), ZERO) == self.qty[p, symbol], (p, symbol)
                market_value += pos["quantity"] * self.mark[symbol]
                unrealized += pos["quantity"] * self.mark[symbol] - pos["cost"]
                realized += pos["realized"]
                cost += pos["cost"]
            equity = balance[Account.CASH] + market_value
            assert equity == self.cash[p] + sum(self.qty[p, s] * self.mark[s] for s in SYMBOLS)
            assert balance[Account.SECURITIES] == cost
            assert -balance[Account.REALIZED] == realized
            income = -balance[Account.DIVIDENDS]
            assert realized + income + unrealized == equity - self.deposits[p]


@pytest.mark.django_db
def test_stored_books_hold_their_invariants(firm_a, stocks):
    LedgerMachine.firm_id = firm_a.firm.pk
    LedgerMachine.instruments = {s: stocks[s] for s in SYMBOLS}
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=25, stateful_step_count=20, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
