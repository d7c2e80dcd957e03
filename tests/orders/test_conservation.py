"""Reliability target 23 on the paper broker: a hypothesis state machine deposits, withdraws, moves the price,
places market and limit orders (filled at the quote by the paper venue), cancels, and after every step the
books conserve money exactly, in Decimal:

    cash == deposits - withdrawals - sum(bought qty x ask) + sum(sold qty x bid)       (our own model)
    cash + position x mark - net deposits == realized + unrealized                      (the books' P&L)
    sum of open lots == position                                                        (target 24)
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.orders.brokers.paper import PaperBroker, current_quote
from apps.orders.core import Status
from apps.orders.models import Order
from apps.orders.routing import order_route
from apps.orders.services import order_cancel, order_submit
from apps.portfolios import services as portfolio_services
from apps.portfolios.models import Lot, Position
from apps.portfolios.selectors import cash_balance
from tests.orders.conftest import set_quote, spec

pytestmark = pytest.mark.django_db
SYMBOL = "ETH/USD"
HALF = Decimal("0.5")
OPENING = Decimal(20_000)
names = itertools.count()
prices = st.integers(min_value=1500, max_value=2500).map(Decimal)
quantities = st.integers(min_value=1, max_value=300).map(lambda n: Decimal(n) / 100)  # 0.01 .. 3.00


def machine_for(firm_id: int, entry):
    class PaperBooks(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.actor = Actor.system("conservation")
            self.portfolio = portfolio_services.portfolio_create(firm_id=firm_id, name=f"C{next(names)}",
                                                                 actor=self.actor)
            portfolio_services.cash_post(portfolio=self.portfolio, kind="deposit", amount=OPENING, actor=self.actor)
            self.flows = OPENING
            self.cash = OPENING
            self.held = Decimal(0)
            self.mid = Decimal(2000)
            self.working: list = []
            set_quote(SYMBOL, self.mid - HALF, self.mid + HALF)

        def _market(self, side: str, qty: Decimal) -> None:
            order = order_submit(portfolio=self.portfolio, spec=spec(symbol=SYMBOL, side=side, qty=str(qty)),
                                 entry=entry).order
            if order.status == Status.RISK_REJECTED:
                return
            order_route(firm_id=firm_id, order_id=order.pk)
            with firm_scope(firm_id):
                order.refresh_from_db()
            assert order.status == Status.FILLED and order.filled_qty == qty
            price = self.mid + HALF if side == "buy" else self.mid - HALF
            assert order.filled_avg_price == price
            self.cash += -qty * price if side == "buy" else qty * price
            self.held += qty if side == "buy" else -qty

        @rule(amount=st.integers(min_value=1, max_value=20_000).map(Decimal))
        def deposit(self, amount):
            portfolio_services.cash_post(portfolio=self.portfolio, kind="deposit", amount=amount, actor=self.actor)
            self.flows += amount
            self.cash += amount

        @rule(fraction=st.integers(min_value=1, max_value=100))
        def withdraw(self, fraction):
            with firm_scope(firm_id):
                amount = (cash_balance(self.portfolio.pk) * fraction / 100).quantize(Decimal("0.01"))
            if amount <= 0:
                return
            portfolio_services.cash_post(portfolio=self.portfolio, kind="withdrawal", amount=amount,
                                         actor=self.actor)
            self.flows -= amount
            self.cash -= amount

        @rule(price=prices)
        def tick(self, price):
            self.mid = price
            set_quote(SYMBOL, price - HALF, price + HALF)
            PaperBroker(firm_id).match(SYMBOL, current_quote(SYMBOL))
            for order in list(self.working):  # a resting buy limit at or above the new ask filled
                with firm_scope(firm_id):
                    order.refresh_from_db()
                if order.status == Status.FILLED:
                    self.cash -= order.filled_qty * (price + HALF)
                    self.held += order.filled_qty
                    self.working.remove(order)

        @rule(qty=quantities)
        def buy(self, qty):
            self._market("buy", qty)

        @rule(fraction=st.integers(min_value=1, max_value=100))
        def sell(self, fraction):
            qty = (self.held * fraction / 100).quantize(Decimal("0.0001"))
            if qty > 0:
                self._market("sell", qty)

        @rule(qty=quantities, below=st.integers(min_value=1, max_value=50).map(Decimal))
        def rest_a_limit(self, qty, below):
            order = order_submit(portfolio=self.portfolio, entry=entry, spec=spec(
                symbol=SYMBOL, qty=str(qty), type="limit", limit_price=self.mid - below)).order
            if order.status != Status.RISK_REJECTED:
                order_route(firm_id=firm_id, order_id=order.pk)
                self.working.append(order)

        @rule()
        def cancel_one(self):
            if self.working:
                order = self.working.pop(0)
                with firm_scope(firm_id):
                    order = Order.objects.get(pk=order.pk)
                order_cancel(order=order, actor=self.actor)
                PaperBroker(firm_id).cancel(order.broker_order_id)

        @invariant()
        def money_is_conserved(self):
            with firm_scope(firm_id):
                cash = cash_balance(self.portfolio.pk)
                position = Position.objects.filter(portfolio=self.portfolio).first()
                lots = sum((lot.quantity for lot in Lot.objects.filter(portfolio=self.portfolio)), Decimal(0))
            qty = position.quantity if position else Decimal(0)
            cost = position.cost if position else Decimal(0)
            realized = position.realized if position else Decimal(0)
            mark = self.mid - HALF
            assert cash == self.cash
            assert qty == self.held == lots
            assert cash + qty * mark - self.flows == realized + (qty * mark - cost)

    return PaperBooks


def test_the_paper_books_conserve_money(firm_a, instruments, trader_entry):
    run_state_machine_as_test(
        machine_for(firm_a.firm.pk, trader_entry),
        settings=settings(max_examples=25, stateful_step_count=20, deadline=None, derandomize=True,
                          suppress_health_check=list(HealthCheck)))
    with firm_scope(firm_a.firm.pk):  # the run traded: market fills, resting limits filled by a tick, cancels
        statuses = list(Order.objects.values_list("status", flat=True))
    assert statuses.count(Status.FILLED) >= 20 and Status.CANCELED in statuses, statuses

