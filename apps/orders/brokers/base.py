"""What every broker adapter speaks (no ORM): the paper broker and Alpaca behave the same to callers.

The order path persists an order, then hands a ``BrokerOrder`` to ``Broker.submit`` after commit.
A broker answers with a ``BrokerOrderState`` (Alpaca's order object, reduced to what we keep) or
raises one of the errors below, and later reports ``TradeUpdate``s (Alpaca's ``trade_updates``
events) that one handler applies (apps.orders.services.broker_update_apply).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from apps.orders.core import Execution, OrderSpec


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """What we send: the terms plus the broker-side idempotency key, fixed before the first call
    (``client_order_id``, e.g. ``oct-<order uuid>``; every retry sends the same one)."""

    client_order_id: str
    spec: OrderSpec
    asset_class: str  # us_equity | us_option | crypto (Alpaca's names)


@dataclass(frozen=True, slots=True)
class BrokerOrderState:
    """The broker's view of one order (Alpaca order object fields we keep)."""

    broker_order_id: str
    client_order_id: str
    status: str  # Alpaca status vocabulary
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    updated_at: datetime | None = None
    replaces: str | None = None  # broker id of the order this one replaced
    replaced_by: str | None = None
    legs: tuple[BrokerOrderState, ...] = ()
    raw: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TradeUpdate:
    """One ``trade_updates`` message: the event name (``new``, ``fill``, ``partial_fill``, ``canceled``,
    ``order_cancel_rejected``, ...) and the order object after it; fills carry the execution."""

    event: str
    order: BrokerOrderState
    at: datetime
    execution: Execution | None = None
    position_qty: Decimal | None = None


class BrokerError(Exception):
    """Base: the broker did not accept the request. ``message`` is the broker's own words."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None):
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


class BrokerRejected(BrokerError):
    """A definitive no (Alpaca 403 buying power / PDT, 422 invalid): the order becomes ``rejected``."""


class BrokerDuplicate(BrokerError):
    """The client_order_id is already known to the broker (Alpaca 422, code 40010001): adopt that order."""


class BrokerRateLimited(BrokerError):
    """429: wait ``retry_after`` seconds; never resubmit blindly."""

    def __init__(self, message: str, *, retry_after: float, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BrokerUnavailable(BrokerError):
    """The outcome is unknown (timeout, connection reset, 5xx): the order goes to ``submit_unknown`` and
    the reconciler looks it up by client_order_id; nobody resubmits it with a new id."""


class BrokerNotFound(BrokerError):
    """The broker has no such order (404)."""


class Broker(Protocol):
    name: str  # "paper" | "alpaca"

    def submit(self, order: BrokerOrder) -> BrokerOrderState: ...

    def cancel(self, broker_order_id: str) -> None: ...

    def replace(self, broker_order_id: str, *, qty: Decimal | None = None, time_in_force: str | None = None,
                limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                trail: Decimal | None = None, client_order_id: str | None = None) -> BrokerOrderState: ...

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrderState: ...  # BrokerNotFound

    def list_orders(self, *, status: str = "open", after: datetime | None = None,
                    limit: int = 500) -> list[BrokerOrderState]: ...

    def list_positions(self) -> dict[str, Decimal]: ...  # symbol -> signed quantity; raises when unknown

    def list_fills(self, *, after: datetime) -> list[TradeUpdate]: ...  # fills since, oldest first
