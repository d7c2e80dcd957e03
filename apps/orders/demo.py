"""The demo firm's working orders (``manage.py seed_demo``): resting limit buys in Demo Growth, 5% under the
last stored price, so the Trade page's blotter, the dashboard and /ws/orders/ have something real at once.

They go through the one order path as the demo trader (idempotent on their client_order_ids: a second run
replays them and changes nothing); the relay routes them to the paper broker once the worker runs.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from apps.accounts.models import Membership, Role
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.marketdata.models import Bar, Instrument
from apps.orders.core import OrderSpec, OrderType, Side, TimeInForce
from apps.orders.models import Origin
from apps.orders.services import Entry, order_submit
from apps.portfolios.models import Portfolio

PORTFOLIO = "Demo Growth"
ORDERS = (("SPY", Decimal(10)), ("BTC/USD", Decimal("0.05")))  # symbol, quantity
DISCOUNT = Decimal("0.95")


def demo_orders_seed(*, firm_id: int) -> int:
    """Place the demo's resting orders that are not there yet; returns how many were placed."""
    with firm_scope(firm_id):
        portfolio = Portfolio.objects.filter(name=PORTFOLIO).first()
        trader = Membership.objects.filter(firm_id=firm_id, role=Role.TRADER).select_related("user").first()
    if portfolio is None or trader is None:
        return 0
    entry = Entry(actor=Actor.for_user(trader.user), origin=Origin.SYSTEM, source="system:seed_demo")
    placed = 0
    for symbol, qty in ORDERS:
        instrument = Instrument.objects.filter(symbol=symbol).first()
        last = (Bar.objects.filter(instrument=instrument).order_by("-ts").values_list("close", flat=True).first()
                if instrument else None)
        if last is None:
            continue
        tick = instrument.tick_size
        price = ((last * DISCOUNT) / tick).to_integral_value(rounding=ROUND_DOWN) * tick
        price = price.quantize(tick.normalize())  # on the grid, written without the column's trailing zeros
        spec = OrderSpec(symbol=symbol, side=Side.BUY, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                         qty=qty, limit_price=price, client_order_id=f"demo-{symbol.replace('/', '')}-bid")
        try:
            result = order_submit(portfolio=portfolio, spec=spec, entry=entry)
            placed += result.created and not result.rejected
        except DomainError:  # e.g. the price moved since the first run: the demo keeps the original order
            continue
    return placed
