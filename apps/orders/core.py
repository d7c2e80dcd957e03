"""The order vocabulary (pure; no ORM): Alpaca's order language as frozen data, and the state machine.

Shared by the order path (apps.orders.services), the pre-trade checks (apps.orders.checks), the paper
broker's matching engine (apps.orders.matching) and, later, the backtester. Field names follow
Alpaca's order object (``ALPACA_ORDERS.md`` c.4) so a payload maps one to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    OPG = "opg"  # opening auction only
    CLS = "cls"  # closing auction only
    IOC = "ioc"
    FOK = "fok"


class OrderClass(StrEnum):
    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"


class Status(StrEnum):
    """Our pre-broker stages first, then Alpaca's 18 statuses verbatim."""

    # pre-broker (ours)
    RECEIVED = "received"  # persisted, waiting in the outbox for the broker
    RISK_REJECTED = "risk_rejected"  # a pre-trade check said no; never sent
    PENDING_APPROVAL = "pending_approval"  # a bot's order waiting for a person (later)
    SUBMITTING = "submitting"  # the broker call is in flight
    SUBMIT_UNKNOWN = "submit_unknown"  # the call timed out: the reconciler asks, nobody resubmits
    SUBMIT_FAILED_UNCONFIRMED = "submit_failed_unconfirmed"  # the broker never heard of it after K lookups
    # Alpaca's
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    STOPPED = "stopped"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    CALCULATED = "calculated"
    HELD = "held"
    PENDING_REVIEW = "pending_review"


S = Status
TERMINAL = frozenset({S.FILLED, S.CANCELED, S.EXPIRED, S.REPLACED, S.REJECTED, S.RISK_REJECTED,
                      S.SUBMIT_FAILED_UNCONFIRMED})
PRE_BROKER = frozenset({S.RECEIVED, S.PENDING_APPROVAL, S.SUBMITTING, S.SUBMIT_UNKNOWN})
# what the broker may answer a submit with (ALPACA_ORDERS.md c.2, "(submit)")
_SUBMIT_OUTCOMES = {S.ACCEPTED, S.PENDING_NEW, S.NEW, S.REJECTED, S.HELD, S.PENDING_REVIEW}
# a fill racing a submit's acknowledgement: the stream may report a fill before we record "new"
_FILLS = {S.PARTIALLY_FILLED, S.FILLED}

TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.RECEIVED: frozenset({S.SUBMITTING, S.RISK_REJECTED, S.PENDING_APPROVAL, S.CANCELED, S.HELD,
                           *_SUBMIT_OUTCOMES, *_FILLS}),
    S.PENDING_APPROVAL: frozenset({S.RECEIVED, S.CANCELED, S.RISK_REJECTED}),
    S.SUBMITTING: frozenset({S.SUBMIT_UNKNOWN, S.CANCELED, *_SUBMIT_OUTCOMES, *_FILLS, S.EXPIRED}),
    S.SUBMIT_UNKNOWN: frozenset({S.SUBMITTING, S.SUBMIT_FAILED_UNCONFIRMED, S.CANCELED, S.EXPIRED,
                                 *_SUBMIT_OUTCOMES, *_FILLS}),
    S.PENDING_REVIEW: frozenset({S.ACCEPTED, S.NEW, S.REJECTED, S.CANCELED}),
    S.ACCEPTED: frozenset({S.PENDING_NEW, S.NEW, S.REJECTED, S.CANCELED, S.EXPIRED, S.PENDING_CANCEL,
                           S.PENDING_REPLACE, *_FILLS}),
    S.PENDING_NEW: frozenset({S.NEW, S.ACCEPTED_FOR_BIDDING, S.REJECTED, S.CANCELED, S.PENDING_CANCEL, *_FILLS}),
    S.ACCEPTED_FOR_BIDDING: frozenset({S.NEW, S.CANCELED, *_FILLS}),
    S.HELD: frozenset({S.NEW, S.ACCEPTED, S.CANCELED, S.PENDING_CANCEL, S.EXPIRED, *_FILLS}),
    S.NEW: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.PENDING_REPLACE, S.CANCELED, S.EXPIRED,
                      S.DONE_FOR_DAY, S.STOPPED, S.SUSPENDED, S.REJECTED, S.REPLACED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.PENDING_REPLACE, S.CANCELED,
                                   S.EXPIRED, S.DONE_FOR_DAY, S.REPLACED}),
    S.PENDING_CANCEL: frozenset({S.CANCELED, S.PARTIALLY_FILLED, S.FILLED, S.NEW, S.EXPIRED}),
    S.PENDING_REPLACE: frozenset({S.REPLACED, S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.ACCEPTED, S.CANCELED}),
    S.DONE_FOR_DAY: frozenset({S.NEW, S.PARTIALLY_FILLED, S.CALCULATED, S.CANCELED, S.EXPIRED, S.FILLED}),
    S.STOPPED: frozenset({S.FILLED}),
    S.SUSPENDED: frozenset({S.NEW, S.CANCELED}),
    S.CALCULATED: frozenset({S.FILLED}),
    **{terminal: frozenset() for terminal in TERMINAL},
}
# A fill on a canceled or expired order happens (the fill raced the cancel at the venue): the shares
# are real, so the fill is booked and filled_qty rises, but the status stays terminal.
LATE_FILL_OK = frozenset({S.CANCELED, S.EXPIRED})
OPEN = frozenset(s for s in Status if s not in TERMINAL and s not in {S.PENDING_APPROVAL})
CANCELABLE = frozenset(OPEN - {S.PENDING_CANCEL, S.PENDING_REPLACE})
REPLACEABLE = frozenset({S.NEW, S.PARTIALLY_FILLED, S.ACCEPTED, S.HELD})


class IllegalTransition(ValueError):
    def __init__(self, current: Status, target: Status):
        super().__init__(f"An order cannot go from {current} to {target}.")
        self.current, self.target = Status(current), Status(target)


def can_move(current: Status | str, target: Status | str) -> bool:
    current, target = Status(current), Status(target)
    return current == target or target in TRANSITIONS[current]


def check_move(current: Status | str, target: Status | str) -> None:
    """Raise ``IllegalTransition`` unless ``current -> target`` is in the table (staying put is legal)."""
    if not can_move(current, target):
        raise IllegalTransition(current, target)


@dataclass(frozen=True, slots=True)
class Leg:
    """A bracket/OCO/OTO exit leg: take_profit has ``limit_price``; stop_loss has ``stop_price`` and
    optionally ``limit_price`` (a stop-limit)."""

    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """An order's material terms, as submitted (Alpaca's field names)."""

    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit: Leg | None = None
    stop_loss: Leg | None = None
    client_order_id: str = ""


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill of one order, as a broker reports it. ``exec_id`` is the broker's execution id: the key
    that makes a repeated report a no-op."""

    exec_id: str
    order_id: str
    qty: Decimal
    price: Decimal
    at: datetime
    fee: Decimal = Decimal(0)
    liquidity: str = ""  # "maker" | "taker" | "" when unknown


@dataclass(frozen=True, slots=True)
class Quote:
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    at: datetime
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Bar:
    at: datetime  # the bar's open time
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(slots=True)
class Tally:
    """Running fill totals of one order (filled_qty never decreases)."""

    filled_qty: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    exec_ids: set[str] = field(default_factory=set)

    @property
    def avg_price(self) -> Decimal | None:
        return self.filled_value / self.filled_qty if self.filled_qty else None
