"""/ws/orders/: the firm's order events and fills live, narrowed to a portfolio on request; nothing of
another firm, no other kinds of event (targets 8 and 32)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from apps.audit.services import Actor
from apps.orders.routing import order_route
from apps.orders.services import order_submit
from tests.orders.conftest import funded, spec
from tests.realtime.conftest import ORIGIN

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("_fresh_channel_layer")]
PATH = "/ws/orders/"


def bearer(token: str):
    return [ORIGIN, (b"authorization", f"Bearer {token}".encode())]


@database_sync_to_async
def place(portfolio, entry, **kw):
    order = order_submit(portfolio=portfolio, spec=spec(**kw), entry=entry).order
    order_route(firm_id=portfolio.firm_id, order_id=order.pk)
    return order


@database_sync_to_async
def token_for(make_token, membership):
    return make_token(membership, ("read",))


async def events(communicator, n: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=3) for _ in range(n)]


async def test_order_events_and_fills_arrive_live_and_nothing_else(ws, firm_a, paper, paper_b, firm_b, make_token,
                                                                   trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    communicator, connected = await ws(bearer(await token_for(make_token, firm_a.member("analyst"))), path=PATH)
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"
    order = await place(paper, trader_entry, qty="0.1")
    got = await events(communicator, 4)
    assert [e["kind"] for e in got] == ["order"] * 4  # the audit notifications of the same changes are skipped
    assert [e["payload"]["event"] for e in got] == ["received", "submitted", "new", "fill"]
    fill = got[-1]["payload"]
    assert fill["order"]["id"] == str(order.pk) and fill["order"]["status"] == "filled"
    assert (fill["execution"]["qty"], fill["execution"]["price"]) == ("0.1", "60010")
    beta = Actor.for_user(firm_b.member("trader").user)
    from apps.orders.models import Origin
    from apps.orders.services import Entry

    await place(paper_b, Entry(actor=beta, origin=Origin.API), qty="0.1")
    assert await communicator.receive_nothing(timeout=0.5)  # firm B's orders never reach firm A


async def test_a_socket_narrowed_to_one_portfolio(ws, firm_a, firm_b, paper, paper_b, make_token, trader_entry, quote):
    quote("BTC/USD", 60000, 60010)
    other = await database_sync_to_async(funded)(firm_a.firm.pk, "Other A")
    communicator, _ = await ws(bearer(await token_for(make_token, firm_a.member("trader"))), path=PATH)
    await communicator.receive_json_from()
    await communicator.send_json_to({"type": "subscribe", "portfolio": paper_b.pk})
    refused = await communicator.receive_json_from()
    assert refused["error"]["code"] == "NOT_FOUND"  # another firm's portfolio: as if it did not exist
    await communicator.send_json_to({"type": "subscribe", "portfolio": paper.pk})
    assert (await communicator.receive_json_from())["portfolio"] == paper.pk
    await place(other, trader_entry, qty="0.1", type="limit", limit_price=Decimal("59000"))
    assert await communicator.receive_nothing(timeout=0.5)
    await place(paper, trader_entry, qty="0.1", type="limit", limit_price=Decimal("59000"))
    got = await events(communicator, 3)
    assert {e["payload"]["order"]["portfolio"] for e in got} == {paper.pk}
