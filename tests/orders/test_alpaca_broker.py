"""The Alpaca broker against recorded Alpaca payloads, mocked at the HTTP layer (`responses`; no network, no DB).

Covers the request bodies of every order type and class, every order status, every error Alpaca answers a
submit with, duplicate adoption, the no-blind-resubmit rule (POSTs are counted), bounded read retries with an
identical client_order_id, the per-account rate limiter (fake clock, no sleeping) and key hygiene.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from alpaca.trading.models import Order
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from apps.orders.brokers.alpaca import (
    AlpacaBroker,
    CancelOutcome,
    TokenBucket,
    order_request_body,
    order_state,
)
from apps.orders.brokers.base import (
    BrokerDuplicate,
    BrokerNotFound,
    BrokerOrder,
    BrokerOrderState,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
)
from apps.orders.core import Leg, OrderClass, OrderSpec, OrderType, Side, TimeInForce
from tests.orders import alpaca_payloads as ap

NOW = 1_704_205_800.0  # 2024-01-02T14:30:00Z, the wall clock the broker reads X-Ratelimit-Reset against
BY_COID = ap.BY_CLIENT_ID


class FakeClock:
    """A monotonic clock whose sleep only moves time forward (and remembers how long it was asked to wait)."""

    def __init__(self, start: float = 1000.0):
        self.now, self.sleeps = start, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock) -> AlpacaBroker:
    return make_broker(clock)


def make_broker(clock: FakeClock, **kwargs) -> AlpacaBroker:
    return AlpacaBroker(api_key=ap.KEY, secret_key=ap.SECRET, rate_limiter=TokenBucket(clock=clock, sleep=clock.sleep),
                        sleep=clock.sleep, wall_clock=lambda: NOW, **kwargs)


def spec(**kwargs) -> OrderSpec:
    terms = {"symbol": "AAPL", "side": Side.BUY, "type": OrderType.LIMIT, "time_in_force": TimeInForce.DAY,
             "qty": Decimal("10"), "limit_price": Decimal("187.15")}
    terms.update(kwargs)
    return OrderSpec(**terms)


def broker_order(**kwargs) -> BrokerOrder:
    return BrokerOrder(client_order_id=ap.COID, spec=spec(**kwargs), asset_class="us_equity")


def sent(call) -> dict:
    return json.loads(call.request.body)


def query(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def methods() -> list[tuple[str, str]]:
    return [(c.request.method, urlsplit(c.request.url).path) for c in responses.calls]


def post_count() -> int:
    return sum(1 for c in responses.calls if c.request.method == "POST")


# --- the recorded payloads are Alpaca-shaped ------------------------------------------------------------


@pytest.mark.parametrize("status", ap.STATUSES)
def test_recorded_order_objects_parse_with_alpaca_py(status):
    model = Order(**ap.order(status))
    assert model.status.value == status and str(model.id) == ap.ORDER_ID
    assert Order(**ap.bracket_order()).legs[1].stop_price == "180"


# --- order_state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ap.STATUSES)
def test_order_state_maps_every_status(status):
    payload = ap.order(status)
    state = order_state(payload)
    filled = {"partially_filled": (Decimal("4"), Decimal("187.1")), "filled": (Decimal("10"), Decimal("187.124")),
              "calculated": (Decimal("10"), Decimal("187.124"))}.get(status, (Decimal(0), None))
    assert state == BrokerOrderState(
        broker_order_id=ap.ORDER_ID, client_order_id=ap.COID, status=status, filled_qty=filled[0],
        filled_avg_price=filled[1], updated_at=datetime(2024, 1, 2, 14, 30, 0, 120541, tzinfo=UTC),
        replaces=None, replaced_by=ap.REPLACEMENT_ID if status == "replaced" else None, legs=())
    assert state.raw is payload
    assert state.updated_at.tzinfo is UTC


def test_order_state_nested_bracket_keeps_legs_in_order():
    state = order_state(ap.bracket_order())
    assert [(leg.broker_order_id, leg.status) for leg in state.legs] == [(ap.TP_LEG_ID, "held"), (ap.SL_LEG_ID, "held")]
    assert state.legs[1].raw["stop_price"] == "180"


def test_order_state_replacement_chain_and_fractional_numbers():
    state = order_state(ap.order("partially_filled", filled_qty="0.123456789", filled_avg_price="44180.05",
                                 updated_at="2024-01-02T09:30:00.5-05:00", replaces=ap.REPLACEMENT_ID))
    assert (state.filled_qty, state.filled_avg_price) == (Decimal("0.123456789"), Decimal("44180.05"))
    assert state.updated_at == datetime(2024, 1, 2, 14, 30, 0, 500000, tzinfo=UTC)
    assert state.replaces == ap.REPLACEMENT_ID


@pytest.mark.parametrize("payload", [{}, {"id": ap.ORDER_ID}, ap.order(filled_qty="ten")])
def test_order_state_refuses_what_is_not_an_order_object(payload):
    with pytest.raises(ValueError):
        order_state(payload)


# --- request bodies ---------------------------------------------------------------------------------------

BASE = {"symbol": "AAPL", "side": "buy", "order_class": "simple", "client_order_id": ap.COID}


@pytest.mark.parametrize(("terms", "body"), [
    ({"type": OrderType.MARKET, "limit_price": None},
     {**BASE, "type": "market", "time_in_force": "day", "qty": "10"}),
    ({"type": OrderType.MARKET, "qty": None, "notional": Decimal("500.25"), "limit_price": None},
     {**BASE, "type": "market", "time_in_force": "day", "notional": "500.25"}),
    ({"qty": Decimal("0.1"), "extended_hours": True},
     {**BASE, "type": "limit", "time_in_force": "day", "qty": "0.1", "limit_price": "187.15", "extended_hours": True}),
    ({"type": OrderType.STOP, "limit_price": None, "stop_price": Decimal("180.00"), "time_in_force": TimeInForce.GTC},
     {**BASE, "type": "stop", "time_in_force": "gtc", "qty": "10", "stop_price": "180.00"}),
    ({"type": OrderType.STOP_LIMIT, "stop_price": Decimal("188"), "limit_price": Decimal("188.5"),
      "time_in_force": TimeInForce.IOC},
     {**BASE, "type": "stop_limit", "time_in_force": "ioc", "qty": "10", "stop_price": "188", "limit_price": "188.5"}),
    ({"type": OrderType.TRAILING_STOP, "side": Side.SELL, "limit_price": None, "trail_percent": Decimal("1.5")},
     {**BASE, "side": "sell", "type": "trailing_stop", "time_in_force": "day", "qty": "10", "trail_percent": "1.5"}),
    ({"type": OrderType.TRAILING_STOP, "side": Side.SELL, "limit_price": None, "trail_price": Decimal("2.25")},
     {**BASE, "side": "sell", "type": "trailing_stop", "time_in_force": "day", "qty": "10", "trail_price": "2.25"}),
    ({"time_in_force": TimeInForce.OPG, "qty": Decimal("1E+2")},
     {**BASE, "type": "limit", "time_in_force": "opg", "qty": "100", "limit_price": "187.15"}),
])
def test_simple_order_bodies(terms, body):
    assert order_request_body(broker_order(**terms)) == body


def test_bracket_body_with_stop_limit_loss():
    order = broker_order(order_class=OrderClass.BRACKET, time_in_force=TimeInForce.GTC,
                         take_profit=Leg(limit_price=Decimal("195")),
                         stop_loss=Leg(stop_price=Decimal("180"), limit_price=Decimal("179.5")))
    assert order_request_body(order) == {
        **BASE, "order_class": "bracket", "type": "limit", "time_in_force": "gtc", "qty": "10",
        "limit_price": "187.15", "take_profit": {"limit_price": "195"},
        "stop_loss": {"stop_price": "180", "limit_price": "179.5"}}


def test_oco_body_exit_pair():
    order = broker_order(side=Side.SELL, order_class=OrderClass.OCO, limit_price=None, time_in_force=TimeInForce.GTC,
                         take_profit=Leg(limit_price=Decimal("195")), stop_loss=Leg(stop_price=Decimal("180")))
    assert order_request_body(order) == {
        **BASE, "side": "sell", "order_class": "oco", "type": "limit", "time_in_force": "gtc", "qty": "10",
        "take_profit": {"limit_price": "195"}, "stop_loss": {"stop_price": "180"}}


def test_oto_body_with_one_leg():
    order = broker_order(order_class=OrderClass.OTO, stop_loss=Leg(stop_price=Decimal("180")))
    assert order_request_body(order) == {
        **BASE, "order_class": "oto", "type": "limit", "time_in_force": "day", "qty": "10", "limit_price": "187.15",
        "stop_loss": {"stop_price": "180"}}


@responses.activate
def test_bracket_submit_sends_the_json_and_reads_the_nested_answer(broker):
    responses.post(ap.ORDERS, json=ap.bracket_order())
    state = broker.submit(broker_order(order_class=OrderClass.BRACKET, time_in_force=TimeInForce.GTC,
                                       take_profit=Leg(limit_price=Decimal("195")),
                                       stop_loss=Leg(stop_price=Decimal("180"))))
    assert sent(responses.calls[0]) == {
        **BASE, "order_class": "bracket", "type": "limit", "time_in_force": "gtc", "qty": "10",
        "limit_price": "187.15", "take_profit": {"limit_price": "195"}, "stop_loss": {"stop_price": "180"}}
    assert [leg.broker_order_id for leg in state.legs] == [ap.TP_LEG_ID, ap.SL_LEG_ID]


@pytest.mark.parametrize(("terms", "reason"), [
    ({"order_class": OrderClass.BRACKET, "take_profit": Leg(limit_price=Decimal("195"))},
     "bracket orders require stop_loss.stop_price."),
    ({"qty": None}, "At least one of qty or notional must be provided"),
    ({"type": OrderType.TRAILING_STOP, "limit_price": None},
     "Either trail_percent or trail_price must be set for a trailing stop order."),
])
@responses.activate
def test_terms_alpaca_py_refuses_are_rejected_before_sending(broker, terms, reason):
    with pytest.raises(BrokerRejected) as caught:
        broker.submit(broker_order(**terms))
    assert caught.value.code == "invalid_request" and caught.value.status is None
    assert caught.value.message == f"The order cannot be sent to Alpaca: {reason}"
    assert len(responses.calls) == 0


# --- submit outcomes ----------------------------------------------------------------------------------------


@responses.activate
def test_submit_accepted_paper_url_headers_and_state(broker):
    responses.post(ap.ORDERS, json=ap.order("accepted"))
    state = broker.submit(broker_order())
    call = responses.calls[0]
    assert call.request.url == "https://paper-api.alpaca.markets/v2/orders"
    assert call.request.headers["APCA-API-KEY-ID"] == ap.KEY
    assert call.request.headers["APCA-API-SECRET-KEY"] == ap.SECRET
    assert sent(call) == {**BASE, "type": "limit", "time_in_force": "day", "qty": "10", "limit_price": "187.15"}
    assert (state.broker_order_id, state.client_order_id, state.status) == (ap.ORDER_ID, ap.COID, "accepted")


@responses.activate
def test_live_and_override_base_urls(clock):
    responses.post(f"{ap.LIVE}/v2/orders", json=ap.order("new"))
    responses.post("http://127.0.0.1:8999/v2/orders", json=ap.order("new"))
    live = make_broker(clock, paper=False)
    assert live.base_url == "https://api.alpaca.markets"
    live.submit(broker_order())
    make_broker(clock, url_override="http://127.0.0.1:8999").submit(broker_order())
    assert [c.request.url for c in responses.calls] == ["https://api.alpaca.markets/v2/orders",
                                                        "http://127.0.0.1:8999/v2/orders"]


@pytest.mark.parametrize("failure", [ReadTimeout("Read timed out. (read timeout=10.0)"),
                                     RequestsConnectionError("Connection reset by peer")])
@responses.activate
def test_timeout_or_connection_error_is_unknown_and_never_resent(broker, failure):
    responses.post(ap.ORDERS, body=failure)
    with pytest.raises(BrokerUnavailable) as caught:
        broker.submit(broker_order())
    assert caught.value.code == ("timeout" if isinstance(failure, ReadTimeout) else "network")
    assert "outcome is unknown" in caught.value.message
    assert post_count() == 1 and len(responses.calls) == 1


@pytest.mark.parametrize(("status", "body"), [(500, json.dumps(ap.ERR_INTERNAL)), (503, json.dumps(ap.ERR_INTERNAL)),
                                              (504, ap.GATEWAY_TIMEOUT_HTML)])
@responses.activate
def test_5xx_is_unknown_and_alpaca_py_does_not_retry_it(broker, clock, status, body):
    responses.post(ap.ORDERS, status=status, body=body)
    with pytest.raises(BrokerUnavailable) as caught:
        broker.submit(broker_order())
    assert caught.value.status == status
    assert post_count() == 1  # alpaca-py by itself re-sends a 504 three times
    assert clock.sleeps == []


@responses.activate
def test_429_gives_retry_after_from_x_ratelimit_reset_and_holds_the_account(broker, clock):
    responses.post(ap.ORDERS, status=429, json=ap.ERR_RATE_LIMIT, headers=ap.rate_limit_headers(int(NOW) + 7))
    responses.get(BY_COID, json=ap.order("new"))
    with pytest.raises(BrokerRateLimited) as caught:
        broker.submit(broker_order())
    assert (caught.value.retry_after, caught.value.status, caught.value.code) == (7.0, 429, "42910000")
    assert caught.value.message == "rate limit exceeded"
    assert post_count() == 1
    broker.get_by_client_order_id(ap.COID)  # the next request of this account waits for the reset
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize(("headers", "retry_after"), [
    ({"Retry-After": "3"}, 3.0),
    ({"Retry-After": "Tue, 02 Jan 2024 14:30:12 GMT"}, 12.0),
    ({"X-Ratelimit-Reset": str(int(NOW) - 5)}, 0.0),  # already past
    ({}, 60.0),
])
@responses.activate
def test_429_retry_after_variants(broker, headers, retry_after):
    responses.post(ap.ORDERS, status=429, json=ap.ERR_RATE_LIMIT, headers=headers)
    with pytest.raises(BrokerRateLimited) as caught:
        broker.submit(broker_order())
    assert caught.value.retry_after == retry_after
    assert post_count() == 1


@pytest.mark.parametrize(("status", "body"), [
    (403, ap.ERR_BUYING_POWER), (403, ap.ERR_PDT), (422, {"code": 42210000, "message": "invalid order type for crypto"}),
    (401, ap.ERR_UNAUTHORIZED),
])
@responses.activate
def test_definitive_refusals_are_rejections_with_alpacas_words(broker, status, body):
    responses.post(ap.ORDERS, status=status, json=body)
    with pytest.raises(BrokerRejected) as caught:
        broker.submit(broker_order())
    assert type(caught.value) is BrokerRejected
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, str(body["code"]),
                                                                              body["message"])
    assert methods() == [("POST", "/v2/orders")]


@responses.activate
def test_duplicate_client_order_id_adopts_the_existing_order(broker):
    responses.post(ap.ORDERS, status=422, json=ap.ERR_DUPLICATE)
    responses.get(BY_COID, json=ap.order("partially_filled"))
    state = broker.submit(broker_order())
    assert methods() == [("POST", "/v2/orders"), ("GET", "/v2/orders:by_client_order_id")]
    assert query(responses.calls[1]) == {"client_order_id": ap.COID}
    assert (state.broker_order_id, state.status, state.filled_qty) == (ap.ORDER_ID, "partially_filled", Decimal("4"))


@responses.activate
def test_code_40010001_that_is_not_a_duplicate_is_a_rejection(broker):
    responses.post(ap.ORDERS, status=422, json=ap.ERR_INVALID)
    responses.get(BY_COID, status=404, json=ap.ERR_NOT_FOUND)
    with pytest.raises(BrokerRejected) as caught:
        broker.submit(broker_order())
    assert type(caught.value) is BrokerRejected
    assert (caught.value.status, caught.value.code, caught.value.message) == (422, "40010001", "qty must be > 0")
    assert post_count() == 1


@pytest.mark.parametrize(("status", "body"), [(404, ap.ERR_NOT_FOUND), (500, ap.ERR_INTERNAL)])
@responses.activate
def test_duplicate_that_cannot_be_fetched_stays_a_duplicate(broker, status, body):
    responses.post(ap.ORDERS, status=422, json=ap.ERR_DUPLICATE)
    responses.get(BY_COID, status=status, json=body)
    with pytest.raises(BrokerDuplicate) as caught:
        broker.submit(broker_order())
    assert ap.COID in caught.value.message and caught.value.code == "40010001"
    assert post_count() == 1


@responses.activate
def test_every_attempt_sends_the_same_client_order_id(broker):
    """RELIABILITY 15-17: a timed-out submit, then the caller's retry (same BrokerOrder), then adoption."""
    responses.post(ap.ORDERS, body=ReadTimeout("Read timed out."))
    responses.post(ap.ORDERS, status=422, json=ap.ERR_DUPLICATE)
    responses.get(BY_COID, status=503, json=ap.ERR_INTERNAL)
    responses.get(BY_COID, json=ap.order("new"))
    order = broker_order()
    with pytest.raises(BrokerUnavailable):
        broker.submit(order)
    state = broker.submit(order)
    assert state.broker_order_id == ap.ORDER_ID
    assert [sent(c)["client_order_id"] for c in responses.calls if c.request.method == "POST"] == [ap.COID, ap.COID]
    assert [query(c)["client_order_id"] for c in responses.calls if c.request.method == "GET"] == [ap.COID, ap.COID]
    assert post_count() == 2


@responses.activate
def test_a_2xx_that_is_not_an_order_is_unknown(broker):
    responses.post(ap.ORDERS, body="<html>maintenance</html>", status=200)
    with pytest.raises(BrokerUnavailable):
        broker.submit(broker_order())
    responses.replace(responses.POST, ap.ORDERS, json={"message": "ok"})
    with pytest.raises(BrokerUnavailable) as caught:
        broker.submit(broker_order())
    assert caught.value.code == "bad_response"
    assert post_count() == 2


# --- reads ---------------------------------------------------------------------------------------------------


@responses.activate
def test_get_by_client_order_id_404_is_not_found(broker):
    responses.get(BY_COID, status=404, json=ap.ERR_NOT_FOUND)
    with pytest.raises(BrokerNotFound) as caught:
        broker.get_by_client_order_id(ap.COID)
    assert (caught.value.status, caught.value.message) == (404, "order not found")
    assert len(responses.calls) == 1  # a 404 is an answer, not retried


@responses.activate
def test_reads_retry_a_bounded_number_of_times(broker, clock):
    responses.get(BY_COID, body=ReadTimeout("Read timed out."))
    with pytest.raises(BrokerUnavailable):
        broker.get_by_client_order_id(ap.COID)
    assert len(responses.calls) == 3
    assert [query(c) for c in responses.calls] == [{"client_order_id": ap.COID}] * 3
    assert clock.sleeps == [0.5, 1.0]


@responses.activate
def test_read_retries_after_a_short_429_and_gives_up_on_a_long_one(broker, clock):
    responses.get(BY_COID, status=429, json=ap.ERR_RATE_LIMIT, headers=ap.rate_limit_headers(int(NOW) + 2))
    responses.get(BY_COID, json=ap.order("new"))
    assert broker.get_by_client_order_id(ap.COID).status == "new"
    assert clock.sleeps == [2.0]
    responses.replace(responses.GET, BY_COID, status=429, json=ap.ERR_RATE_LIMIT,
                      headers=ap.rate_limit_headers(int(NOW) + 45))
    with pytest.raises(BrokerRateLimited) as caught:
        broker.get_by_client_order_id(ap.COID)
    assert caught.value.retry_after == 45.0
    assert len(responses.calls) == 3


@responses.activate
def test_list_orders_params_nested_legs_and_after(broker):
    responses.get(ap.ORDERS, json=[ap.bracket_order(), ap.order("filled", id=ap.REPLACEMENT_ID)])
    states = broker.list_orders(status="all", after=datetime(2024, 1, 2, 9, 29, tzinfo=UTC), limit=200)
    assert query(responses.calls[0]) == {"status": "all", "limit": "200", "nested": "true",
                                         "after": "2024-01-02T09:29:00Z"}
    assert [(s.broker_order_id, s.status, len(s.legs)) for s in states] == [(ap.ORDER_ID, "new", 2),
                                                                            (ap.REPLACEMENT_ID, "filled", 0)]
    broker.list_orders()
    assert query(responses.calls[1]) == {"status": "open", "limit": "500", "nested": "true"}


@pytest.mark.parametrize("kwargs", [{"status": "pending"}, {"limit": 501}, {"after": datetime(2024, 1, 2)}])
def test_list_orders_refuses_bad_filters(broker, kwargs):
    with pytest.raises(ValueError):
        broker.list_orders(**kwargs)


@responses.activate
def test_get_order_by_id_is_nested(broker):
    responses.get(f"{ap.ORDERS}/{ap.ORDER_ID}", json=ap.bracket_order())
    assert len(broker.get_order(ap.ORDER_ID).legs) == 2
    assert query(responses.calls[0]) == {"nested": "true"}


# --- replace and cancel -------------------------------------------------------------------------------------


@responses.activate
def test_replace_patches_and_returns_the_new_order(broker):
    responses.patch(f"{ap.ORDERS}/{ap.ORDER_ID}", json=ap.replacement_order())
    state = broker.replace(ap.ORDER_ID, qty=Decimal("12"), limit_price=Decimal("186.50"), time_in_force="gtc",
                           client_order_id="oct-replace-1")
    assert sent(responses.calls[0]) == {"qty": "12", "limit_price": "186.50", "time_in_force": "gtc",
                                        "client_order_id": "oct-replace-1"}
    assert (state.broker_order_id, state.replaces, state.status) == (ap.REPLACEMENT_ID, ap.ORDER_ID, "accepted")


@responses.activate
def test_replace_trail_and_stop(broker):
    responses.patch(f"{ap.ORDERS}/{ap.ORDER_ID}", json=ap.replacement_order())
    broker.replace(ap.ORDER_ID, trail=Decimal("0.75"), stop_price=Decimal("181"))
    assert sent(responses.calls[0]) == {"stop_price": "181", "trail": "0.75"}


@responses.activate
def test_replace_refused_by_alpaca_is_a_rejection_and_not_resent(broker):
    responses.patch(f"{ap.ORDERS}/{ap.ORDER_ID}", status=422, json=ap.ERR_NOT_REPLACEABLE)
    with pytest.raises(BrokerRejected) as caught:
        broker.replace(ap.ORDER_ID, limit_price=Decimal("186"))
    assert caught.value.message == "order is not replaceable"
    assert len(responses.calls) == 1


@responses.activate
def test_replace_retried_with_its_client_order_id_adopts_the_replacement(broker):
    responses.patch(f"{ap.ORDERS}/{ap.ORDER_ID}", status=422, json=ap.ERR_DUPLICATE)
    responses.get(BY_COID, json=ap.replacement_order())
    state = broker.replace(ap.ORDER_ID, limit_price=Decimal("186.5"), client_order_id="oct-replace-1")
    assert state.replaces == ap.ORDER_ID
    assert query(responses.calls[1]) == {"client_order_id": "oct-replace-1"}


@pytest.mark.parametrize("kwargs", [{}, {"qty": Decimal("0")}, {"trail": Decimal("-1")}])
@responses.activate
def test_replace_without_a_valid_change_sends_nothing(broker, kwargs):
    with pytest.raises(BrokerRejected):
        broker.replace(ap.ORDER_ID, **kwargs)
    assert len(responses.calls) == 0


@responses.activate
def test_cancel_one(broker):
    responses.delete(f"{ap.ORDERS}/{ap.ORDER_ID}", status=204)
    assert broker.cancel(ap.ORDER_ID) is None
    assert methods() == [("DELETE", f"/v2/orders/{ap.ORDER_ID}")]


@pytest.mark.parametrize(("status", "body", "error"), [(404, ap.ERR_NOT_FOUND, BrokerNotFound),
                                                       (422, ap.ERR_NOT_CANCELABLE, BrokerRejected)])
@responses.activate
def test_cancel_errors(broker, status, body, error):
    responses.delete(f"{ap.ORDERS}/{ap.ORDER_ID}", status=status, json=body)
    with pytest.raises(error) as caught:
        broker.cancel(ap.ORDER_ID)
    assert caught.value.message == body["message"]


@responses.activate
def test_cancel_all_reports_each_order(broker):
    responses.delete(ap.ORDERS, status=207, json=ap.cancel_all_response())
    outcomes = broker.cancel_all()
    assert outcomes == [CancelOutcome(ap.ORDER_ID, 200), CancelOutcome(ap.REPLACEMENT_ID, 500)]
    assert outcomes[0].body["status"] == "pending_cancel"
    assert methods() == [("DELETE", "/v2/orders")]


# --- the rate limiter -----------------------------------------------------------------------------------------


def test_token_bucket_never_exceeds_200_in_any_minute(clock):
    bucket = TokenBucket(clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(700):
        bucket.acquire()
        times.append(clock.now)
    assert clock.sleeps[:1] == [pytest.approx(1 / 3)]  # after the burst of 20: one every 60/180 s
    assert times[19] == 1000.0 and times[20] == pytest.approx(1000 + 1 / 3)
    start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 60.0:
            start += 1
        assert end - start + 1 <= 200


def test_token_bucket_refills_while_idle_and_honours_a_hold(clock):
    bucket = TokenBucket(limit=10, per=1.0, burst=2, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire(), bucket.acquire()] == [0.0, 0.0]
    clock.now += 10  # idle: refills to the burst, no more
    assert [bucket.acquire(), bucket.acquire()] == [0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.125)
    bucket.hold(5)
    assert bucket.acquire() == pytest.approx(5.0)


@responses.activate
def test_the_broker_waits_for_a_token_before_each_request(clock):
    bucket = TokenBucket(limit=3, per=1.0, burst=1, clock=clock, sleep=clock.sleep)
    broker = AlpacaBroker(api_key=ap.KEY, secret_key=ap.SECRET, rate_limiter=bucket, sleep=clock.sleep)
    responses.get(BY_COID, json=ap.order("new"))
    for _ in range(3):
        broker.get_by_client_order_id(ap.COID)
    assert clock.sleeps == [0.5, 0.5]


# --- secrets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"body": ReadTimeout("Read timed out.")}, BrokerUnavailable),
    ({"status": 500, "json": ap.ERR_INTERNAL}, BrokerUnavailable),
    ({"status": 403, "json": ap.ERR_BUYING_POWER}, BrokerRejected),
    ({"status": 429, "json": ap.ERR_RATE_LIMIT}, BrokerRateLimited),
])
@responses.activate
def test_keys_never_reach_logs_or_errors(broker, caplog, kwargs, error):
    caplog.set_level(logging.DEBUG)
    responses.post(ap.ORDERS, **kwargs)
    with pytest.raises(error) as caught:
        broker.submit(broker_order())
    visible = " ".join([caplog.text, str(caught.value), repr(caught.value), caught.value.message, repr(broker),
                        repr(broker._client), str(caught.value.__cause__), str(caught.value.__context__)])
    assert "alpaca:" in caplog.text  # the failure was logged
    assert ap.SECRET not in visible and ap.KEY not in visible
