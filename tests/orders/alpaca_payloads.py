"""Alpaca's Trading API on the wire, recorded: order objects, ``trade_updates`` messages and error bodies.

Shapes follow Alpaca's documented order object (ALPACA_ORDERS.md c.4) and the fields alpaca-py 0.44 parses
(``alpaca.trading.models.Order`` / ``TradeUpdate``); the tests validate every payload here against those
models, so a payload that drifts from Alpaca's shape fails loudly. Numbers are strings, as Alpaca sends
them; timestamps are RFC 3339 UTC with Alpaca's nanosecond precision; a simple order's ``order_class``
is ``""``; ``legs`` is ``null`` unless the order is nested. Error bodies are ``{"code", "message"}`` (403
buying power also carries Alpaca's ``buying_power``/``cost_basis`` extras).
"""

from __future__ import annotations

import copy
import json

PAPER = "https://paper-api.alpaca.markets"
LIVE = "https://api.alpaca.markets"
ORDERS = f"{PAPER}/v2/orders"
BY_CLIENT_ID = f"{PAPER}/v2/orders:by_client_order_id"
KEY, SECRET = "PKTESTKEY00000000001", "sEcReT-never-log-me-0123456789abcdefghij"

ORDER_ID = "61e69015-8549-4bfd-b9c3-01e75843f47d"
REPLACEMENT_ID = "b1b4a0b8-4c1e-4f0f-9d3c-4e0b0f6f2a71"
TP_LEG_ID = "7d3c1d8e-2f55-4b4b-8a52-3a7c6a9a2f10"
SL_LEG_ID = "0f6e8b7a-9c2d-4e1f-a3b5-c7d9e1f3a5b7"
ASSET_ID = "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415"  # AAPL
COID = "oct-3f2b7c1e-9a4d-4c6b-8e2f-1a5d7c9b0e34"
EXEC_1 = "1a2b3c4d-0000-4000-8000-000000000001"
EXEC_2 = "1a2b3c4d-0000-4000-8000-000000000002"

CREATED = "2024-01-02T14:30:00.118296193Z"
UPDATED = "2024-01-02T14:30:00.120541306Z"

# Alpaca's 18 order statuses (alpaca.trading.enums.OrderStatus)
STATUSES = (
    "new", "partially_filled", "filled", "done_for_day", "canceled", "expired", "replaced", "pending_cancel",
    "pending_replace", "pending_review", "accepted", "pending_new", "accepted_for_bidding", "stopped", "rejected",
    "suspended", "calculated", "held",
)
# the status-specific timestamps Alpaca fills in
_STAMPS = {"filled": "filled_at", "canceled": "canceled_at", "expired": "expired_at", "replaced": "replaced_at",
           "rejected": "failed_at"}


def order(status: str = "new", **overrides) -> dict:
    """A limit buy of 10 AAPL @ 187.15 DAY in ``status``, with every field of Alpaca's order object."""
    payload = {
        "id": ORDER_ID,
        "client_order_id": COID,
        "created_at": CREATED,
        "updated_at": UPDATED,
        "submitted_at": "2024-01-02T14:30:00.116912345Z",
        "filled_at": None,
        "expired_at": None,
        "expires_at": "2024-01-02T21:00:00Z",
        "canceled_at": None,
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": ASSET_ID,
        "symbol": "AAPL",
        "asset_class": "us_equity",
        "notional": None,
        "qty": "10",
        "filled_qty": "0",
        "filled_avg_price": None,
        "order_class": "",
        "order_type": "limit",
        "type": "limit",
        "side": "buy",
        "position_intent": "buy_to_open",
        "time_in_force": "day",
        "limit_price": "187.15",
        "stop_price": None,
        "status": status,
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "subtag": None,
        "source": None,
        "commission": "0",
    }
    if status in _STAMPS:
        payload[_STAMPS[status]] = "2024-01-02T14:31:05.5Z"
    if status == "partially_filled":
        payload.update(filled_qty="4", filled_avg_price="187.1")
    if status in ("filled", "calculated"):
        payload.update(filled_qty="10", filled_avg_price="187.124")
    if status == "replaced":
        payload["replaced_by"] = REPLACEMENT_ID
    payload.update(overrides)
    return payload


def bracket_order() -> dict:
    """A nested bracket (GET with nested=true): the entry plus its take-profit and stop-loss legs, held."""
    legs = [
        order("held", id=TP_LEG_ID, client_order_id="6e8d2c4a-1b3f-4d5e-9a7c-0b2d4f6a8c1e", side="sell",
              position_intent="sell_to_close", order_class="bracket", limit_price="195", type="limit",
              order_type="limit", time_in_force="gtc"),
        order("held", id=SL_LEG_ID, client_order_id="9c7a5e3b-2d4f-4a6c-8e0b-1d3f5a7c9e2b", side="sell",
              position_intent="sell_to_close", order_class="bracket", limit_price=None, stop_price="180",
              type="stop", order_type="stop", time_in_force="gtc"),
    ]
    return order("new", order_class="bracket", time_in_force="gtc", legs=legs)


def replacement_order() -> dict:
    """What PATCH /v2/orders/{id} answers: a new order (new id) that ``replaces`` the old one."""
    return order("accepted", id=REPLACEMENT_ID, client_order_id="oct-replace-1", qty="12", limit_price="186.5",
                 replaces=ORDER_ID, created_at="2024-01-02T14:32:00.000000001Z",
                 updated_at="2024-01-02T14:32:00.000000001Z")


def cancel_all_response() -> list[dict]:
    """DELETE /v2/orders answers 207 Multi-Status: one entry per order it tried to cancel."""
    return [
        {"id": ORDER_ID, "status": 200, "body": order("pending_cancel")},
        {"id": REPLACEMENT_ID, "status": 500, "body": {"code": 50010000, "message": "internal server error"}},
    ]


# --- trade_updates ------------------------------------------------------------------------------------

# alpaca.trading.enums.TradeEvent plus the documented less common events (ALPACA_ORDERS.md c.3)
EVENTS = (
    "new", "fill", "partial_fill", "canceled", "expired", "done_for_day", "replaced", "accepted", "rejected",
    "pending_new", "stopped", "pending_cancel", "pending_replace", "calculated", "suspended",
    "order_replace_rejected", "order_cancel_rejected", "restated",
)
# the order status that accompanies each event (the order object after the event)
EVENT_STATUS = {
    "new": "new", "fill": "filled", "partial_fill": "partially_filled", "canceled": "canceled",
    "expired": "expired", "done_for_day": "done_for_day", "replaced": "replaced", "accepted": "accepted",
    "rejected": "rejected", "pending_new": "pending_new", "stopped": "stopped", "pending_cancel": "pending_cancel",
    "pending_replace": "pending_replace", "calculated": "calculated", "suspended": "suspended",
    "order_replace_rejected": "new", "order_cancel_rejected": "partially_filled", "restated": "new",
}


def trade_update(event: str, order_payload: dict | None = None, timestamp: str = "2024-01-02T14:31:05.123456789Z",
                 **fill) -> dict:
    """One message of the ``trade_updates`` stream, as the server sends it (before JSON encoding)."""
    data = {"event": event, "timestamp": timestamp,
            "order": order_payload if order_payload is not None else order(EVENT_STATUS[event])}
    data.update(fill)
    return {"stream": "trade_updates", "data": data}


def partial_fill_msg() -> dict:
    return trade_update("partial_fill", order("partially_filled", filled_qty="4", filled_avg_price="187.1",
                                              updated_at="2024-01-02T14:31:05.123456789Z"),
                        execution_id=EXEC_1, price="187.1", qty="4", position_qty="4")


def fill_msg() -> dict:
    return trade_update("fill", order("filled", filled_qty="10", filled_avg_price="187.124",
                                      updated_at="2024-01-02T14:31:06.5Z"),
                        timestamp="2024-01-02T14:31:06.5Z", execution_id=EXEC_2, price="187.14", qty="6",
                        position_qty="10")


def encoded(message: dict) -> bytes:
    """The paper ``/stream`` sends JSON in binary frames."""
    return json.dumps(message).encode()


AUTHORIZED = {"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}}
UNAUTHORIZED = {"stream": "authorization",
                "data": {"action": "authenticate", "message": "access key verification failed",
                         "status": "unauthorized"}}


def listening(streams=("trade_updates",)) -> dict:
    return {"stream": "listening", "data": {"streams": list(streams)}}


# --- errors ---------------------------------------------------------------------------------------------

ERR_DUPLICATE = {"code": 40010001, "message": "client_order_id must be unique"}
ERR_INVALID = {"code": 40010001, "message": "qty must be > 0"}  # same code, not a duplicate
ERR_NOT_REPLACEABLE = {"code": 42210000, "message": "order is not replaceable"}
ERR_NOT_CANCELABLE = {"code": 42210000, "message": "order is not cancelable"}
ERR_BUYING_POWER = {"buying_power": "1000.5", "code": 40310000, "cost_basis": "1871.5",
                    "message": "insufficient buying power"}
ERR_PDT = {"code": 40310100, "message": "trade denied due to pattern day trading protection"}
ERR_NOT_FOUND = {"code": 40410000, "message": "order not found"}
ERR_RATE_LIMIT = {"code": 42910000, "message": "rate limit exceeded"}
ERR_INTERNAL = {"code": 50010000, "message": "internal server error"}
ERR_UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}
GATEWAY_TIMEOUT_HTML = "<html><body><h1>504 Gateway Time-out</h1></body></html>"


def rate_limit_headers(reset: int, remaining: int = 0) -> dict:
    return {"X-Ratelimit-Limit": "200", "X-Ratelimit-Remaining": str(remaining), "X-Ratelimit-Reset": str(reset)}


def clone(payload):
    return copy.deepcopy(payload)
