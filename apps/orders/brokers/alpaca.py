"""The Alpaca broker: orders through Alpaca's Trading API (REST), via alpaca-py.

alpaca-py provides the transport (``TradingClient``: base URLs, auth headers, ``/v2`` paths) and the
request models that validate an order before anything is sent (``MarketOrderRequest`` ... ``TrailingStopOrderRequest``).
Three things are changed, because an order path must not guess:

- **No automatic retry.** alpaca-py re-sends a request answered 429 or 504 (3 times, 3 s apart); a re-sent
  ``POST /v2/orders`` is a second order. The client here never retries; reads retry a bounded number of
  times in :meth:`AlpacaBroker._read`, writes never do.
- **A timeout.** alpaca-py sends without one; a hung submit would hang a worker. Every request has ``timeout``.
- **Exact numbers.** alpaca-py's models carry qty and prices as floats; the body sent carries the ``Decimal``
  terms as strings (Alpaca documents them as strings), so 0.1 share or 187.15 is sent exactly.

Outcomes of ``submit`` (RELIABILITY_TARGETS 6, 15-17): a timeout, connection error or 5xx raises
``BrokerUnavailable`` (the order may exist: the reconciler looks it up by client_order_id); 429 raises
``BrokerRateLimited`` with ``retry_after`` from ``X-Ratelimit-Reset`` or ``Retry-After`` (the request was refused,
and the limiter holds every further request of the account until then); 422 code 40010001 on a client_order_id
Alpaca already knows adopts that order (Alpaca uses the same code for other validation errors, so the order is
looked up, never assumed); 403 (buying power, PDT) and other 4xx raise ``BrokerRejected`` with Alpaca's message
and code. The API keys never appear in logs, messages or reprs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from alpaca.common.enums import BaseURL
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)
from pydantic import ValidationError
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import RequestException, Timeout

from apps.orders.brokers.base import (
    BrokerDuplicate,
    BrokerError,
    BrokerNotFound,
    BrokerOrder,
    BrokerOrderState,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
    TradeUpdate,
)
from apps.orders.core import Execution, OrderSpec, OrderType

log = logging.getLogger(__name__)

PAPER_URL = BaseURL.TRADING_PAPER.value  # https://paper-api.alpaca.markets
LIVE_URL = BaseURL.TRADING_LIVE.value  # https://api.alpaca.markets
CODE_INVALID = "40010001"  # Alpaca: duplicate client_order_id, and other validation failures
REQUESTS_PER_MINUTE = 200  # Alpaca's limit per account
QUERY_STATUSES = ("open", "closed", "all")
ALPACA_STATUSES = frozenset(s.value for s in OrderStatus)  # the 18 of ALPACA_ORDERS.md c.1

MSG_TIMEOUT = "Alpaca did not answer in time; the outcome is unknown."
MSG_NETWORK = "Could not reach Alpaca ({error}); the outcome is unknown."
MSG_BAD_BODY = "Alpaca answered with a body that is not an order object; the outcome is unknown."
MSG_INVALID = "The order cannot be sent to Alpaca: {reason}"
MSG_NO_CHANGE = "A replace needs at least one of qty, time_in_force, limit_price, stop_price, trail, client_order_id."
MSG_DUPLICATE_LOST = "Alpaca already has client_order_id {coid} but did not return it; the reconciler must look it up."
CODE_TIMEOUT, CODE_NETWORK, CODE_BAD_BODY, CODE_REQUEST = "timeout", "network", "bad_response", "invalid_request"


# --- the order object ---------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """Alpaca's RFC 3339 timestamps (``Z``, up to nanoseconds) -> an aware UTC datetime (microseconds).

    A naive value is taken as UTC."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:  # Python 3.11 reads "Z" and truncates nanoseconds to microseconds
        moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_decimal(value: Any) -> Decimal | None:
    """Alpaca sends numbers as strings ("10", "187.15"); ``null`` and "" are None."""
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def order_state(payload: dict) -> BrokerOrderState:
    """Alpaca's order object -> ``BrokerOrderState`` (legs included, ``raw`` keeps the payload).

    Raises ``ValueError`` when the payload lacks ``id`` or ``status`` or carries an unreadable number/time.
    """
    if not isinstance(payload, dict) or not payload.get("id") or not payload.get("status"):
        raise ValueError("not an Alpaca order object")
    status = str(payload["status"])
    if status not in ALPACA_STATUSES:
        log.warning("alpaca: order %s has a status Octopus does not know: %r", payload["id"], status)
    return BrokerOrderState(
        broker_order_id=str(payload["id"]),
        client_order_id=str(payload.get("client_order_id") or ""),
        status=status,
        filled_qty=parse_decimal(payload.get("filled_qty")) or Decimal(0),
        filled_avg_price=parse_decimal(payload.get("filled_avg_price")),
        updated_at=parse_time(payload.get("updated_at")),
        replaces=str(payload["replaces"]) if payload.get("replaces") else None,
        replaced_by=str(payload["replaced_by"]) if payload.get("replaced_by") else None,
        legs=tuple(order_state(leg) for leg in payload.get("legs") or ()),
        raw=payload,
    )


# --- the request ----------------------------------------------------------------------------------------

_REQUESTS = {
    OrderType.MARKET: MarketOrderRequest,
    OrderType.LIMIT: LimitOrderRequest,
    OrderType.STOP: StopOrderRequest,
    OrderType.STOP_LIMIT: StopLimitOrderRequest,
    OrderType.TRAILING_STOP: TrailingStopOrderRequest,
}
_PRICE_FIELDS = {
    OrderType.MARKET: (),
    OrderType.LIMIT: ("limit_price",),
    OrderType.STOP: ("stop_price",),
    OrderType.STOP_LIMIT: ("stop_price", "limit_price"),
    OrderType.TRAILING_STOP: ("trail_price", "trail_percent"),
}


def _text(value: Decimal) -> str:
    return format(value, "f")  # never exponent notation ("1E+2")


def order_request_body(order: BrokerOrder) -> dict:
    """The JSON body of ``POST /v2/orders`` for ``order``, validated by alpaca-py's request models.

    Raises ``BrokerRejected`` (code ``invalid_request``, nothing sent) when alpaca-py refuses the terms.
    """
    spec: OrderSpec = order.spec
    kind = OrderType(spec.type)
    fields: dict[str, Any] = {
        "symbol": spec.symbol, "side": str(spec.side), "time_in_force": str(spec.time_in_force),
        "order_class": str(spec.order_class), "client_order_id": order.client_order_id,
        "qty": spec.qty, "notional": spec.notional,
    }
    if spec.extended_hours:
        fields["extended_hours"] = True
    fields.update({name: getattr(spec, name) for name in _PRICE_FIELDS[kind]})
    if spec.take_profit is not None:
        fields["take_profit"] = TakeProfitRequest(limit_price=spec.take_profit.limit_price)
    if spec.stop_loss is not None:
        fields["stop_loss"] = StopLossRequest(stop_price=spec.stop_loss.stop_price,
                                              limit_price=spec.stop_loss.limit_price)
    try:
        body = _REQUESTS[kind](**fields).to_request_fields()
    except (ValidationError, ValueError, TypeError) as exc:
        reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        raise BrokerRejected(MSG_INVALID.format(reason=reason), code=CODE_REQUEST) from None
    body = {key: (value.value if hasattr(value, "value") else value) for key, value in body.items()}
    # the models hold floats: put the exact Decimal terms back
    for name in ("qty", "notional", *_PRICE_FIELDS[kind]):
        value = getattr(spec, name)
        if value is not None:
            body[name] = _text(value)
    if spec.take_profit is not None:
        body["take_profit"] = {"limit_price": _text(spec.take_profit.limit_price)}
    if spec.stop_loss is not None:
        body["stop_loss"] = {"stop_price": _text(spec.stop_loss.stop_price)}
        if spec.stop_loss.limit_price is not None:
            body["stop_loss"]["limit_price"] = _text(spec.stop_loss.limit_price)
    return body


# --- the rate limiter -----------------------------------------------------------------------------------


class TokenBucket:
    """At most ``limit`` requests in any ``per`` seconds, for one account, in this process.

    A bucket of ``burst`` tokens refilled at ``(limit - burst) / per`` per second: the most a window can
    take is a full bucket plus one window of refill, which is ``limit``. ``acquire`` blocks (through the
    injectable ``sleep``) until a token is free; ``hold(seconds)`` stops everyone after a 429.
    """

    def __init__(self, *, limit: int = REQUESTS_PER_MINUTE, per: float = 60.0, burst: int = 20,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if not 0 < burst < limit:
            raise ValueError("burst must be between 0 and limit")
        self.capacity, self.rate = float(burst), (limit - burst) / per
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at, self._held_until = float(burst), clock(), float("-inf")
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def acquire(self) -> float:
        """Take one token, waiting if need be; returns the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                self._refill(now)
                if now < self._held_until:
                    wait = self._held_until - now
                elif self._tokens >= 1 - 1e-9:
                    self._tokens -= 1
                    return waited
                else:
                    wait = (1 - self._tokens) / self.rate
                self._sleep(wait)
                waited += wait

    def hold(self, seconds: float) -> None:
        """Alpaca said 429: no request of this account leaves for ``seconds``."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + max(seconds, 0.0))


_buckets: dict[str, TokenBucket] = {}
_buckets_lock = threading.Lock()


def account_bucket(api_key: str) -> TokenBucket:
    """The process-wide bucket of one Alpaca account (keyed by its key id), shared by every adapter."""
    with _buckets_lock:
        return _buckets.setdefault(api_key, TokenBucket())


# --- the client -------------------------------------------------------------------------------------------


class _TradingClient(TradingClient):
    """alpaca-py's TradingClient with a timeout on every request and its automatic retry switched off."""

    def __init__(self, *, timeout: float, **kwargs: Any):
        super().__init__(raw_data=True, **kwargs)
        self._timeout = timeout
        self._retry = 0  # RESTClient re-sends 429/504 otherwise; a re-sent POST is a second order
        self._retry_codes = []

    def _one_request(self, method: str, url: str, opts: dict, retry: int) -> dict:
        return super()._one_request(method, url, {**opts, "timeout": self._timeout}, 0)

    def __repr__(self) -> str:  # never the keys
        return f"<alpaca TradingClient {self._base_url}>"


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """One entry of ``DELETE /v2/orders`` (207 Multi-Status): the HTTP status of that order's cancel."""

    broker_order_id: str
    status: int
    body: dict = field(default_factory=dict, compare=False, repr=False)


def _error_body(exc: APIError) -> tuple[str, str]:
    """Alpaca's ``{"code", "message"}`` -> (code, message); a non-JSON body gives its first 200 characters."""
    text = str(exc)
    try:
        body = json.loads(text)
    except ValueError:
        return "", text[:200] or "no reason given"
    if not isinstance(body, dict):
        return "", text[:200]
    return str(body.get("code") or ""), str(body.get("message") or text[:200])


class AlpacaBroker:
    """One Alpaca account (paper or live).

    Every adapter of the same key id in this process shares one rate limiter (``account_bucket``); the HTTP
    session is a ``requests.Session``, so use one adapter per thread rather than one across threads.
    """

    name = "alpaca"

    def __init__(self, *, api_key: str, secret_key: str, paper: bool = True, timeout: float = 10.0,
                 url_override: str | None = None, rate_limiter: TokenBucket | None = None,
                 read_attempts: int = 3, retry_wait: float = 0.5, max_retry_wait: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep, wall_clock: Callable[[], float] = time.time):
        self.paper = paper
        self.base_url = url_override or (PAPER_URL if paper else LIVE_URL)
        self._client = _TradingClient(api_key=api_key, secret_key=secret_key, paper=paper,
                                      url_override=url_override, timeout=timeout)
        self._limiter = rate_limiter or account_bucket(api_key)
        self.read_attempts = max(1, read_attempts)
        self.retry_wait, self.max_retry_wait = retry_wait, max_retry_wait
        self._sleep, self._wall_clock = sleep, wall_clock

    def __repr__(self) -> str:  # never the keys
        return f"AlpacaBroker(base_url={self.base_url!r})"

    # --- transport ---------------------------------------------------------------------------------------

    def _retry_after(self, response) -> float:
        """Seconds to wait after a 429: ``X-Ratelimit-Reset`` (epoch seconds), else ``Retry-After``, else 60."""
        headers = response.headers if response is not None else {}
        reset = headers.get("X-Ratelimit-Reset")
        if reset:
            try:
                return max(0.0, float(reset) - self._wall_clock())
            except ValueError:
                pass
        after = headers.get("Retry-After")
        if after:
            try:
                return max(0.0, float(after))
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(after).timestamp() - self._wall_clock())
                except (TypeError, ValueError):
                    pass
        return 60.0

    def _send(self, method: str, path: str, data: dict | None = None) -> Any:
        """One HTTP request, Alpaca's answer mapped onto the broker errors. Never retries."""
        self._limiter.acquire()
        call = {"GET": self._client.get, "POST": self._client.post, "PATCH": self._client.patch,
                "DELETE": self._client.delete}[method]
        try:
            return call(path, data)
        except APIError as exc:
            status = exc.status_code
            code, message = _error_body(exc)
            log.warning("alpaca: %s %s answered %s (code %s): %s", method, path, status, code or "-", message)
            if status == 429:
                retry_after = self._retry_after(exc.response)
                self._limiter.hold(retry_after)
                raise BrokerRateLimited(message, retry_after=retry_after, code=code, status=status) from None
            if status is None or status >= 500:
                raise BrokerUnavailable(message, code=code, status=status) from None
            if status == 404:
                raise BrokerNotFound(message, code=code, status=status) from None
            raise BrokerRejected(message, code=code, status=status) from None
        except Timeout:
            log.warning("alpaca: %s %s timed out", method, path)
            raise BrokerUnavailable(MSG_TIMEOUT, code=CODE_TIMEOUT) from None
        except RequestsConnectionError:
            log.warning("alpaca: %s %s could not connect", method, path)
            raise BrokerUnavailable(MSG_NETWORK.format(error="connection error"), code=CODE_NETWORK) from None
        except RequestException as exc:  # incl. a 2xx whose body is not JSON
            log.warning("alpaca: %s %s failed: %s", method, path, type(exc).__name__)
            raise BrokerUnavailable(MSG_NETWORK.format(error=type(exc).__name__), code=CODE_NETWORK) from None

    def _read(self, path: str, params: dict | None = None) -> Any:
        """A GET, retried on 429/5xx/timeouts at most ``read_attempts`` times in all, with identical params."""
        for attempt in range(1, self.read_attempts + 1):
            try:
                return self._send("GET", path, params)
            except BrokerRateLimited as exc:
                if attempt == self.read_attempts or exc.retry_after > self.max_retry_wait:
                    raise
                # the limiter holds the next request until the reset
            except BrokerUnavailable:
                if attempt == self.read_attempts:
                    raise
                self._sleep(min(self.retry_wait * 2 ** (attempt - 1), self.max_retry_wait))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _state(payload: Any) -> BrokerOrderState:
        try:
            return order_state(payload)
        except (ValueError, TypeError):
            raise BrokerUnavailable(MSG_BAD_BODY, code=CODE_BAD_BODY) from None

    @staticmethod
    def _order_path(broker_order_id: str) -> str:
        return f"/orders/{quote(str(broker_order_id), safe='')}"

    # --- the Broker protocol -------------------------------------------------------------------------------

    def submit(self, order: BrokerOrder) -> BrokerOrderState:
        """``POST /v2/orders`` once. See the module docstring for what each answer becomes."""
        body = order_request_body(order)
        try:
            payload = self._send("POST", "/orders", body)
        except BrokerRejected as exc:
            if exc.status == 422 and exc.code == CODE_INVALID:
                return self._adopt(order.client_order_id, exc)
            raise
        return self._state(payload)

    def _adopt(self, client_order_id: str, refusal: BrokerRejected) -> BrokerOrderState:
        """422 40010001: if Alpaca has an order with this client_order_id, it is ours (the earlier attempt
        reached Alpaca): return it. If not, the 422 was an ordinary validation failure."""
        try:
            state = self.get_by_client_order_id(client_order_id)
        except BrokerNotFound:
            if "unique" in refusal.message.lower():
                raise self._duplicate(client_order_id) from None
            raise refusal from None
        except BrokerError:
            raise self._duplicate(client_order_id) from None
        log.info("alpaca: client_order_id %s already submitted; adopted order %s", client_order_id,
                 state.broker_order_id)
        return state

    @staticmethod
    def _duplicate(client_order_id: str) -> BrokerDuplicate:
        # it exists at Alpaca: the caller keeps the order unknown and the reconciler adopts it later
        return BrokerDuplicate(MSG_DUPLICATE_LOST.format(coid=client_order_id), code=CODE_INVALID, status=422)

    def cancel(self, broker_order_id: str) -> None:
        """``DELETE /v2/orders/{id}`` (204). 404 -> BrokerNotFound; 422 (not cancelable) -> BrokerRejected."""
        self._send("DELETE", self._order_path(broker_order_id))

    def cancel_all(self) -> list[CancelOutcome]:
        """``DELETE /v2/orders``: cancel every open order (207, one status per order)."""
        payload = self._send("DELETE", "/orders") or []
        return [CancelOutcome(broker_order_id=str(item.get("id")), status=int(item.get("status") or 0),
                              body=item.get("body") or {}) for item in payload]

    def replace(self, broker_order_id: str, *, qty: Decimal | None = None, time_in_force: str | None = None,
                limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                trail: Decimal | None = None, client_order_id: str | None = None) -> BrokerOrderState:
        """``PATCH /v2/orders/{id}``: returns the new order (a new id, with ``replaces`` = the old one).

        Sent once; a repeat with the same ``client_order_id`` that Alpaca refuses as a duplicate adopts the
        replacement that already exists.
        """
        body: dict[str, Any] = {}
        for name, value in (("qty", qty), ("limit_price", limit_price), ("stop_price", stop_price), ("trail", trail)):
            if value is not None:
                if Decimal(value) <= 0:
                    raise BrokerRejected(MSG_INVALID.format(reason=f"{name} must be greater than 0"),
                                         code=CODE_REQUEST)
                body[name] = _text(Decimal(value))
        if time_in_force is not None:
            body["time_in_force"] = str(time_in_force)
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        if not body:
            raise BrokerRejected(MSG_NO_CHANGE, code=CODE_REQUEST)
        try:
            payload = self._send("PATCH", self._order_path(broker_order_id), body)
        except BrokerRejected as exc:
            if client_order_id and exc.status == 422 and exc.code == CODE_INVALID:
                return self._adopt(client_order_id, exc)
            raise
        return self._state(payload)

    def get_order(self, broker_order_id: str) -> BrokerOrderState:
        """``GET /v2/orders/{id}?nested=true``. 404 -> BrokerNotFound."""
        return self._state(self._read(self._order_path(broker_order_id), {"nested": "true"}))

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrderState:
        """``GET /v2/orders:by_client_order_id``. 404 -> BrokerNotFound."""
        return self._state(self._read("/orders:by_client_order_id", {"client_order_id": client_order_id}))

    def list_fills(self, *, after: datetime) -> list[TradeUpdate]:
        """Fills since ``after`` from GET /v2/account/activities/FILL (oldest first, every page): what the
        trade_updates stream may have missed while it was down (reliability target 22). Each becomes a
        ``TradeUpdate`` keyed like the stream's (``fill_exec_id``: order id and cumulative quantity), so a fill
        seen both ways is applied once. The order is named by its broker id (activities carry no client id)."""
        from apps.orders.brokers.alpaca_stream import fill_exec_id

        updates: list[TradeUpdate] = []
        params = {"after": after.astimezone(UTC).isoformat().replace("+00:00", "Z"), "direction": "asc",
                  "page_size": "100"}
        for _ in range(1000):  # bounded: 100,000 fills
            page = self._read("/account/activities/FILL", params)
            if not isinstance(page, list):
                raise BrokerUnavailable("Alpaca's activities answer is not a list")
            for item in page:
                at, qty, price = parse_time(item["transaction_time"]), parse_decimal(item["qty"]), \
                    parse_decimal(item["price"])
                cum, leaves = parse_decimal(item["cum_qty"]), parse_decimal(item.get("leaves_qty")) or Decimal(0)
                state = BrokerOrderState(broker_order_id=str(item["order_id"]), client_order_id="",
                                         status="filled" if leaves == 0 else "partially_filled", filled_qty=cum,
                                         raw={"symbol": item.get("symbol", "")})
                execution = Execution(exec_id=fill_exec_id(state.broker_order_id, cum), order_id=state.broker_order_id,
                                      qty=qty, price=price, at=at)
                updates.append(TradeUpdate(event=str(item.get("type") or "fill"), order=state, at=at,
                                           execution=execution))
            if len(page) < int(params["page_size"]):
                return updates
            params = {**params, "page_token": str(page[-1]["id"])}
        return updates

    def list_positions(self) -> dict[str, Decimal]:
        """GET /v2/positions: symbol -> signed quantity (Alpaca's ``qty`` is negative for shorts). A failure
        raises: a missing report is never taken for "flat" (reliability target 21)."""
        payload = self._read("/positions")
        if not isinstance(payload, list):
            raise BrokerUnavailable("Alpaca's positions answer is not a list")
        return {str(item["symbol"]): parse_decimal(item["qty"]) for item in payload}

    def list_orders(self, *, status: str = "open", after: datetime | None = None,
                    limit: int = 500) -> list[BrokerOrderState]:
        """``GET /v2/orders?status=&limit=&nested=true[&after=]``: newest first, legs inside their parent.

        Alpaca caps ``limit`` at 500 and has no page token: a caller expecting more narrows ``after``.
        """
        if status not in QUERY_STATUSES:
            raise ValueError(f"status must be one of {', '.join(QUERY_STATUSES)}")
        if not 1 <= limit <= 500:
            raise ValueError("limit must be between 1 and 500")
        params: dict[str, Any] = {"status": status, "limit": limit, "nested": "true"}
        if after is not None:
            if after.tzinfo is None:
                raise ValueError("after must be an aware datetime")
            params["after"] = after.astimezone(UTC).isoformat().replace("+00:00", "Z")
        payload = self._read("/orders", params)
        if not isinstance(payload, list):
            raise BrokerUnavailable(MSG_BAD_BODY, code=CODE_BAD_BODY)
        return [self._state(item) for item in payload]

