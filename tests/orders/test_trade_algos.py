"""The Trade page's Algos panel: the portfolio's TWAP/VWAP parents with an exact progress bar, the "New TWAP /
VWAP" form through ``algo_create`` (a bad field is a 400 on that field, nothing written), pause / resume /
cancel through the algo services, read-only roles (no buttons, 403 on every POST) and tenant isolation."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.tenancy import firm_scope
from apps.orders import algo_services as svc
from apps.orders.algo_selectors import algo_children
from apps.orders.models import AlgoOrder, Order, Origin
from apps.orders.routing import order_route
from apps.orders.services import Entry
from apps.orders.views import (
    MAX_ALGO_MINUTES,
    MSG_ALGO_DONE,
    MSG_DURATION,
    MSG_WHEN,
)
from tests.orders.conftest import funded

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
TRADE = "/trade/"


@pytest.fixture
def trader(firm_a, verified_client_for):
    return verified_client_for(firm_a.member("trader"))


@pytest.fixture
def start():
    return timezone.now().replace(microsecond=0)


def make_algo(portfolio, entry, start, **kw) -> AlgoOrder:
    terms = {"symbol": "BTC/USD", "side": "buy", "qty": Decimal("1"), "kind": "twap", "start_at": start,
             "end_at": start + timedelta(minutes=10), "slices": 5, **kw}
    return svc.algo_create(portfolio=portfolio, entry=entry, now=start, **terms)


def algos_of(portfolio) -> list[AlgoOrder]:
    with firm_scope(portfolio.firm_id):
        return list(AlgoOrder.objects.filter(portfolio=portfolio).order_by("created_at"))


def reload(algo) -> AlgoOrder:
    with firm_scope(algo.firm_id):
        return AlgoOrder.objects.get(pk=algo.pk)


def children(algo) -> list[Order]:
    with firm_scope(algo.firm_id):
        return list(algo_children(algo))


def audit_actions(firm_id) -> list[str]:
    with firm_scope(firm_id):
        return list(AuditEvent.objects.filter(firm_id=firm_id).order_by("seq").values_list("action", flat=True))


def row_of(html: str, algo) -> str:
    return html.split(f'data-algo="{algo.pk}"')[1].split("</tr>")[0]


def algos_url(portfolio) -> str:
    return reverse("orders:algos", args=[portfolio.pk])


def create_url(portfolio) -> str:
    return reverse("orders:algo_create", args=[portfolio.pk])


def form(**overrides) -> dict:
    data = {"symbol": "BTC/USD", "side": "buy", "qty": "1", "kind": "twap", "duration": "30", "slices": "5",
            "limit_price": "", "start_at": "", "end_at": "", "form_key": "a" * 32}
    data.update(overrides)
    return data


def errors_for(html: str, field: str) -> list[str]:
    found = re.search(rf'<ul class="errorlist" data-error-for="{field}">(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", found.group(1)) if found else []


# --- the panel and its progress bar ------------------------------------------------------------------


def test_panel_shows_each_algo_with_an_exact_progress_bar(trader, paper, trader_entry, quote, start):
    quote("BTC/USD", 60000, 60010)
    algo = make_algo(paper, trader_entry, start, limit_price=None)
    # three minutes on: slices 0 and 1 (due at +0 and +2 min, 0.2 each) are sent; the first one fills
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=3))
    first, _second = children(algo)
    order_route(firm_id=paper.firm_id, order_id=first.pk)  # the paper broker fills the market child at the ask

    page = trader.get(TRADE).content.decode()
    assert 'id="algos"' in page and 'id="algo-form"' in page
    assert page.index('id="blotter"') < page.index('id="algos"') < page.index('id="positions"')
    assert f'"algos": "{algos_url(paper)}"' in page  # trade.js reloads it from #trade-config

    html = trader.get(algos_url(paper)).content.decode()
    assert 'id="algo-list"' in html and 'data-running="1"' in html
    row = row_of(html, algo)
    assert 'data-status="running"' in html
    assert '<progress class="algo-bar" max="1" value="0.2"' in row
    assert '0.2 / 1 <span class="muted">(20%)</span>' in row
    assert 'slices sent <span class="mono">2/5</span> · sent <span class="mono">0.4</span> · 1 working' in row
    next_at = (start + timedelta(minutes=4)).astimezone(UTC).strftime("%H:%M:%S")
    assert f'next <span class="mono">{next_at}</span>' in row
    assert ">TWAP<" in row and ">BTC/USD<" in row and 'side-buy">buy<' in row and ">mkt<" in row
    end = start + timedelta(minutes=10)
    if end.astimezone(UTC).date() == start.astimezone(UTC).date():  # not across midnight UTC
        assert f">{start.astimezone(UTC):%H:%M}–{end.astimezone(UTC):%H:%M}<" in row
    assert "a-pause" in row and "a-cancel" in row and "a-resume" not in row


def test_list_shows_running_and_paused_first_then_the_last_finished(trader, paper, trader_entry, quote, start):
    actor = trader_entry.actor
    finished = make_algo(paper, trader_entry, start)
    svc.algo_cancel(algo=finished, actor=actor)
    paused = make_algo(paper, trader_entry, start + timedelta(seconds=1))
    svc.algo_pause(algo=paused, actor=actor)
    running = make_algo(paper, trader_entry, start + timedelta(seconds=2), kind="vwap", limit_price=Decimal("59000"))
    html = trader.get(algos_url(paper)).content.decode()
    assert re.findall(r'data-algo="([0-9a-f-]+)"', html) == [str(running.pk), str(paused.pk), str(finished.pk)]
    assert 'data-running="1"' in html and "1 running · 1 paused" in html
    assert "a-resume" in row_of(html, paused) and "a-pause" not in row_of(html, paused)
    assert "<form" not in row_of(html, finished)  # nothing left to do with a canceled algo
    assert ">VWAP<" in row_of(html, running) and ">lmt 59,000.00<" in row_of(html, running)
    assert 'max="1" value="0"' in row_of(html, finished)


def test_list_reads_a_constant_number_of_queries(trader, paper, trader_entry, start):
    make_algo(paper, trader_entry, start)
    with CaptureQueriesContext(connection) as one:
        assert trader.get(algos_url(paper)).status_code == 200
    for n in range(3):
        make_algo(paper, trader_entry, start + timedelta(seconds=n + 1))
    with CaptureQueriesContext(connection) as four:
        html = trader.get(algos_url(paper)).content.decode()
    assert html.count('class="a-row"') == 4
    assert len(four.captured_queries) == len(one.captured_queries)


def test_an_empty_panel_says_so(trader, paper):
    html = trader.get(algos_url(paper)).content.decode()
    assert 'id="no-algos"' in html and 'data-running="0"' in html


# --- the form ------------------------------------------------------------------------------------------


def test_start_from_the_form_creates_one_algo_through_the_service(firm_a, trader, paper):
    before = timezone.now()
    response = trader.post(create_url(paper), form(limit_price="59000.5"), **HTMX)
    assert response.status_code == 201, response.content.decode()
    [algo] = algos_of(paper)
    assert (algo.symbol, algo.side, algo.qty, algo.kind, algo.slices, algo.limit_price, algo.status) == (
        "BTC/USD", "buy", Decimal("1"), "twap", 5, Decimal("59000.5"), "running")
    assert before <= algo.start_at <= timezone.now()
    assert algo.end_at - algo.start_at == timedelta(minutes=30)
    assert (algo.origin, algo.entered_by_id, algo.client_order_id) == (
        Origin.UI, firm_a.member("trader").user_id, "ui-algo-" + "a" * 32)
    assert audit_actions(paper.firm_id)[-1] == "algo.created"
    html = response.content.decode()
    end = algo.end_at.astimezone(UTC).strftime("%H:%M")
    assert f'data-algo="{algo.pk}">TWAP buy 1 BTC/USD started: 5 slices until {end} UTC.</p>' in html
    # a fresh form (new key, the shape kept, the amounts empty) and the list, out of band
    assert 'name="form_key" value="' + "a" * 32 not in html
    assert 'id="a-qty" name="qty" value=""' in html and 'id="a-symbol" name="symbol" value="BTC/USD"' in html
    assert 'id="algo-list" data-portfolio' in html and 'hx-swap-oob="true"' in html
    assert f'data-algo="{algo.pk}" data-status="running"' in html


def test_a_double_submit_starts_one_algo(trader, paper):
    start = timezone.now() + timedelta(minutes=5)
    data = form(start_at=f"{start:%Y-%m-%dT%H:%M}", end_at=f"{start + timedelta(minutes=20):%Y-%m-%dT%H:%M}")
    assert trader.post(create_url(paper), data, **HTMX).status_code == 201
    again = trader.post(create_url(paper), data, **HTMX)
    assert again.status_code == 200
    [algo] = algos_of(paper)
    assert f"This form was already sent: algo {str(algo.pk)[:8]} is in the list." in again.content.decode()


def test_an_exact_window_is_read_in_utc(trader, paper):
    start = (timezone.now() + timedelta(hours=1)).astimezone(UTC).replace(second=0, microsecond=0)
    data = form(kind="vwap", slices="4", side="sell", start_at=f"{start:%Y-%m-%dT%H:%M}",
                end_at=f"{start + timedelta(minutes=45):%Y-%m-%dT%H:%M}", duration="")
    assert trader.post(create_url(paper), data, **HTMX).status_code == 201
    [algo] = algos_of(paper)
    assert (algo.kind, algo.side, algo.start_at, algo.end_at) == ("vwap", "sell", start, start + timedelta(minutes=45))


def test_a_start_with_a_duration_ends_that_many_minutes_later(trader, paper):
    start = (timezone.now() + timedelta(hours=2)).astimezone(UTC).replace(second=0, microsecond=0)
    assert trader.post(create_url(paper), form(start_at=f"{start:%Y-%m-%dT%H:%M}", duration="90"),
                       **HTMX).status_code == 201
    [algo] = algos_of(paper)
    assert (algo.start_at, algo.end_at) == (start, start + timedelta(minutes=90))


@pytest.mark.parametrize("overrides, field, message", [
    ({"qty": "0"}, "qty", svc.MSG_QTY_POSITIVE),
    ({"qty": "0.00001"}, "qty", svc.msg_lot_grid(Decimal("0.00001"), Decimal("0.0001"))),
    ({"symbol": "NOPE"}, "symbol", svc.MSG_UNKNOWN_SYMBOL),
    ({"side": "hold"}, "side", svc.MSG_SIDE),
    ({"kind": "pov"}, "kind", svc.MSG_KIND),
    ({"slices": "0"}, "slices", svc.MSG_SLICES_RANGE),
    ({"slices": "many"}, "slices", svc.MSG_SLICES_RANGE),
    ({"duration": "0.05", "slices": "10"}, "slices", svc.msg_too_fine(10, 3)),
    ({"limit_price": "-1"}, "limit_price", svc.MSG_PRICE_POSITIVE),
    ({"limit_price": "60000.001"}, "limit_price", svc.msg_tick_grid(Decimal("60000.001"), Decimal("0.01"))),
    ({"duration": "abc"}, "duration", MSG_DURATION.format(max=MAX_ALGO_MINUTES)),
    ({"duration": "-5"}, "duration", MSG_DURATION.format(max=MAX_ALGO_MINUTES)),
    ({"duration": "1e9"}, "duration", MSG_DURATION.format(max=MAX_ALGO_MINUTES)),
    ({"start_at": "tomorrow"}, "start_at", MSG_WHEN),
    ({"end_at": "2025-13-40T99:00"}, "end_at", MSG_WHEN),
    ({"end_at": "2020-01-01T10:00"}, "end_at", svc.MSG_END_AFTER_START),
    ({"start_at": "2020-01-01T09:00", "end_at": "2020-01-01T10:00"}, "end_at", svc.MSG_END_PAST),
])
def test_a_bad_field_rerenders_the_form_with_its_error_and_writes_nothing(overrides, field, message, trader,
                                                                           paper):
    response = trader.post(create_url(paper), form(**overrides), **HTMX)
    assert response.status_code == 400
    html = response.content.decode()
    assert errors_for(html, field) == [message]
    assert 'id="algo-new"' in html and 'id="algo-list"' not in html  # only the form is swapped
    if field not in ("side", "kind"):  # what was typed stays (a radio or a select shows only its choices)
        assert f'value="{overrides[field if field in overrides else next(iter(overrides))]}"' in html
    assert algos_of(paper) == []
    assert "algo.created" not in audit_actions(paper.firm_id)


def test_without_htmx_a_bad_field_renders_the_whole_page_and_a_start_redirects(trader, paper):
    response = trader.post(create_url(paper), form(qty="-1"))
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="blotter"' in html and errors_for(html, "qty") == [svc.MSG_QTY_POSITIVE]
    response = trader.post(create_url(paper), form())
    assert response.status_code == 302 and response["Location"] == f"{TRADE}?portfolio={paper.pk}"
    assert len(algos_of(paper)) == 1


# --- pause, resume, cancel ----------------------------------------------------------------------------


def test_pause_resume_and_cancel_from_the_panel(trader, paper, trader_entry, quote, start):
    quote("BTC/USD", 60000, 60010)
    algo = make_algo(paper, trader_entry, start, limit_price=Decimal("59000"))  # children rest as limit orders
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start)
    [child] = children(algo)
    short = str(algo.pk)[:8]

    response = trader.post(reverse("orders:algo_pause", args=[algo.pk]), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert reload(algo).status == "paused"
    assert MSG_ALGO_DONE["pause"].format(id=short) in html and 'hx-swap-oob="true"' in html
    assert 'data-status="paused"' in html and "a-resume" in row_of(html, algo) and 'data-running="0"' in html

    # an illegal move shows the service's message (409) and changes nothing
    response = trader.post(reverse("orders:algo_pause", args=[algo.pk]), **HTMX)
    assert response.status_code == 409
    assert f"Algo order {algo.pk} is paused and cannot be paused." in response.content.decode()

    response = trader.post(reverse("orders:algo_resume", args=[algo.pk]), **HTMX)
    assert response.status_code == 200 and reload(algo).status == "running"
    assert MSG_ALGO_DONE["resume"].format(id=short, status="running") in response.content.decode()

    response = trader.post(reverse("orders:algo_cancel", args=[algo.pk]), **HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger"] == "orders-changed"  # its children leave the blotter
    assert reload(algo).status == "canceled"
    with firm_scope(paper.firm_id):
        child.refresh_from_db()
    assert child.status in ("canceled", "pending_cancel")
    html = response.content.decode()
    assert MSG_ALGO_DONE["cancel"].format(id=short) in html and "<form" not in row_of(html, algo)
    assert audit_actions(paper.firm_id).count("algo.paused") == 1
    assert {"algo.resumed", "algo.canceled"} <= set(audit_actions(paper.firm_id))


def test_actions_without_htmx_redirect_back_to_the_page(trader, paper, trader_entry, start):
    algo = make_algo(paper, trader_entry, start)
    response = trader.post(reverse("orders:algo_pause", args=[algo.pk]))
    assert response.status_code == 302 and response["Location"] == f"{TRADE}?portfolio={paper.pk}"
    assert reload(algo).status == "paused"


# --- roles and tenancy --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["analyst", "compliance"])
def test_read_only_roles_see_progress_without_buttons_and_get_403_on_every_post(role, firm_a, paper, trader_entry,
                                                                                 start, verified_client_for):
    algo = make_algo(paper, trader_entry, start)
    client = verified_client_for(firm_a.member(role))
    page = client.get(TRADE).content.decode()
    assert 'id="algos"' in page and 'id="algo-form"' not in page
    html = client.get(algos_url(paper)).content.decode()
    assert f'data-algo="{algo.pk}"' in html and "algo-bar" in html
    assert "a-pause" not in html and "a-cancel" not in html and "<form" not in html
    for name in ("orders:algo_pause", "orders:algo_resume", "orders:algo_cancel"):
        assert client.post(reverse(name, args=[algo.pk]), **HTMX).status_code == 403
    assert client.post(create_url(paper), form(), **HTMX).status_code == 403
    assert reload(algo).status == "running" and len(algos_of(paper)) == 1


def test_another_firms_algo_and_portfolio_are_404_and_unchanged(firm_b, trader, paper, paper_b, start):
    b_entry = Entry(actor=Actor.for_user(firm_b.member("trader").user), origin=Origin.UI, source="ui")
    theirs = make_algo(paper_b, b_entry, start)
    for name in ("orders:algo_pause", "orders:algo_resume", "orders:algo_cancel"):
        assert trader.post(reverse(name, args=[theirs.pk]), **HTMX).status_code == 404
    assert trader.get(algos_url(paper_b)).status_code == 404
    assert trader.post(create_url(paper_b), form(), **HTMX).status_code == 404
    assert reload(theirs).status == "running" and len(algos_of(paper_b)) == 1
    assert f'data-algo="{theirs.pk}"' not in trader.get(algos_url(paper)).content.decode()


def test_an_algo_in_a_restricted_portfolio_is_404_without_a_grant(firm_a, trader, paper, trader_entry, start):
    hidden = funded(firm_a.firm.pk, "Hidden book", restricted=True)
    algo = make_algo(hidden, trader_entry, start)
    assert trader.post(reverse("orders:algo_cancel", args=[algo.pk]), **HTMX).status_code == 404
    assert trader.get(algos_url(hidden)).status_code == 404
    assert reload(algo).status == "running"
