"""TWAP/VWAP parents: create (validation names the field, writes nothing), the tick sends each due slice once
through the one order path, pause/resume/cancel, a refused child pauses the parent, progress numbers, and
concurrent ticks on real PostgreSQL transactions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pandas as pd
import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.orders import algo_services as svc
from apps.orders.algo_selectors import algo_children, algo_progress
from apps.orders.algos import schedule_load
from apps.orders.core import Status
from apps.orders.models import AlgoOrder, Order
from apps.orders.routing import order_route
from apps.orders.services import kill_switch_set
from tests.orders.conftest import spec
from tests.orders.test_concurrency import run_threads

pytestmark = pytest.mark.django_db


@pytest.fixture
def start():
    return timezone.now().replace(microsecond=0)


def create(portfolio, entry, start, **kw) -> AlgoOrder:
    terms = {"symbol": "BTC/USD", "side": "buy", "qty": Decimal("1"), "kind": "twap", "start_at": start,
             "end_at": start + timedelta(minutes=10), "slices": 5, **kw}
    return svc.algo_create(portfolio=portfolio, entry=entry, now=start, **terms)


def children(algo) -> list[Order]:
    with firm_scope(algo.firm_id):
        return list(algo_children(algo))


def reload(algo) -> AlgoOrder:
    with firm_scope(algo.firm_id):
        return AlgoOrder.objects.get(pk=algo.pk)


def actions(firm_id) -> list[str]:
    with firm_scope(firm_id):
        return list(AuditEvent.objects.filter(firm_id=firm_id).order_by("seq").values_list("action", flat=True))


def test_create_fixes_the_schedule_and_audits(paper, trader_entry, start):
    algo = create(paper, trader_entry, start, client_order_id="twap-1")
    assert (algo.status, algo.next_slice, algo.sent_qty, algo.replayed) == ("running", 0, 0, False)
    assert algo.schedule == [[(start + timedelta(minutes=2 * i)).isoformat(), "0.2000"] for i in range(5)]
    assert algo.entered_by_id == trader_entry.actor.user_id and algo.origin == "ui"
    assert actions(paper.firm_id)[-1] == "algo.created"
    assert children(algo) == []


def test_tick_sends_due_slices_once_through_the_order_path_and_finishes(paper, trader_entry, quote, start,
                                                                          enqueued):
    quote("BTC/USD", 60000, 60010)
    algo = create(paper, trader_entry, start, client_order_id="twap-2")
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start)
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start)  # repeated: nothing new
    sent = children(algo)
    assert [(o.client_order_id, o.qty, o.type, o.time_in_force, o.side) for o in sent] == [
        ("twap-2:0", Decimal("0.2"), "market", "gtc", "buy")]
    child = sent[0]
    assert (child.algo_id, child.status, child.origin, child.source) == (algo.pk, "received", "system",
                                                                        f"algo:{algo.pk.hex}")
    assert child.responsible_user_id == trader_entry.actor.user_id
    assert (reload(algo).next_slice, reload(algo).sent_qty) == (1, Decimal("0.2"))
    # five minutes on: slices 1 and 2 (due at +2 and +4 min) go, in one tick
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=5))
    assert [o.client_order_id for o in children(algo)] == ["twap-2:0", "twap-2:1", "twap-2:2"]
    # past the window: the rest, then done
    done = svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=11))
    assert (done.status, done.next_slice, done.sent_qty) == ("done", 5, Decimal("1"))
    assert len(children(algo)) == 5 and sum(o.qty for o in children(algo)) == Decimal("1")
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=20))
    assert len(children(algo)) == 5
    assert actions(paper.firm_id).count("order.submitted") == 5 and actions(paper.firm_id)[-1] == "algo.done"


def test_progress_counts_the_childrens_fills(paper, trader_entry, quote, start):
    quote("BTC/USD", 60000, 60010)
    algo = create(paper, trader_entry, start, slices=4, qty=Decimal("0.4"))
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=3))  # slices 0, 1
    first, second = children(algo)
    order_route(firm_id=paper.firm_id, order_id=first.pk)  # the paper broker fills it at the ask
    progress = algo_progress(reload(algo))
    assert (progress.qty, progress.sent_qty, progress.filled_qty, progress.remaining_qty) == (
        Decimal("0.4"), Decimal("0.2"), Decimal("0.1"), Decimal("0.3"))
    assert (progress.slices, progress.slices_sent, progress.slices_refused, progress.open_children) == (4, 2, 0, 1)
    assert progress.filled_pct == Decimal("25.00")
    assert progress.next_slice_at == start + timedelta(minutes=5)


def test_limit_children_and_day_orders_for_equities(paper, trader_entry, quote, start):
    quote("AAPL", 186.9, 187.0, exchange="NASDAQ")
    algo = create(paper, trader_entry, start, symbol="aapl", qty=Decimal(10), slices=2, limit_price=Decimal("187.5"))
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start)
    (child,) = children(algo)
    assert (child.symbol, child.type, child.limit_price, child.time_in_force, child.qty) == (
        "AAPL", "limit", Decimal("187.5"), "day", Decimal(5))


def test_pause_stops_slices_resume_catches_up(paper, trader_entry, quote, start):
    quote("BTC/USD", 60000, 60010)
    actor = trader_entry.actor
    algo = create(paper, trader_entry, start)
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start)
    paused = svc.algo_pause(algo=algo, actor=actor)
    assert paused.status == "paused"
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=7))
    assert len(children(algo)) == 1
    with pytest.raises(DomainError) as exc:
        svc.algo_pause(algo=algo, actor=actor)
    assert (exc.value.code, exc.value.status_code) == ("ALGO_NOT_PAUSABLE", 409)
    assert svc.algo_resume(algo=algo, actor=actor).status == "running"
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=7))  # slices 1-3 at once
    assert [o.client_order_id.rsplit(":", 1)[1] for o in children(algo)] == ["0", "1", "2", "3"]
    with pytest.raises(DomainError) as exc:
        svc.algo_resume(algo=algo, actor=actor)
    assert exc.value.code == "ALGO_NOT_RESUMABLE"
    assert actions(paper.firm_id).count("algo.paused") == 1 and actions(paper.firm_id).count("algo.resumed") == 1


def test_cancel_cancels_working_children_and_stops_the_algo(paper, trader_entry, quote, start):
    quote("BTC/USD", 60000, 60010)
    actor = trader_entry.actor
    algo = create(paper, trader_entry, start, limit_price=Decimal("59000"))
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=3))
    first, second = children(algo)
    order_route(firm_id=paper.firm_id, order_id=first.pk)  # at the paper broker: rests (new)
    canceled = svc.algo_cancel(algo=algo, actor=actor)
    assert canceled.status == "canceled"
    statuses = {o.client_order_id: o.status for o in children(algo)}
    # the routed child goes pending_cancel (the broker finishes it); the unrouted one is canceled at once
    assert statuses == {first.client_order_id: Status.PENDING_CANCEL, second.client_order_id: Status.CANCELED}
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=20))
    assert len(children(algo)) == 2
    for service, code in ((svc.algo_cancel, "ALGO_NOT_CANCELABLE"), (svc.algo_pause, "ALGO_NOT_PAUSABLE"),
                          (svc.algo_resume, "ALGO_NOT_RESUMABLE")):
        with pytest.raises(DomainError) as exc:
            service(algo=algo, actor=actor)
        assert (exc.value.code, exc.value.status_code) == (code, 409)
    logged = actions(paper.firm_id)
    assert logged.count("algo.canceled") == 1 and logged.count("order.cancel_requested") == 2


def test_a_refused_child_is_recorded_and_pauses_the_algo(paper, trader_entry, quote, start):
    quote("BTC/USD", 60000, 60010)
    algo = create(paper, trader_entry, start)
    kill_switch_set(firm_id=paper.firm_id, active=True, actor=Actor.system("test"), reason="drill")
    paused = svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=5))
    (child,) = children(algo)
    assert (child.status, child.reject_code, child.algo_id) == (Status.RISK_REJECTED, "TRADING_HALTED", algo.pk)
    assert (paused.status, paused.next_slice, paused.sent_qty) == ("paused", 1, Decimal(0))
    with firm_scope(paper.firm_id):
        event = AuditEvent.objects.filter(action="algo.child_rejected").get()
    assert (event.after["slice"], event.after["code"], event.after["order"]) == (0, "TRADING_HALTED", str(child.pk))
    # a person lifts the halt and resumes: the slices due meanwhile go; the refused one is not re-sent
    kill_switch_set(firm_id=paper.firm_id, active=False, actor=Actor.system("test"))
    svc.algo_resume(algo=algo, actor=trader_entry.actor)
    resumed = svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start + timedelta(minutes=5))
    assert [o.client_order_id.rsplit(":", 1)[1] for o in children(algo)] == ["0", "1", "2"]
    assert resumed.sent_qty == Decimal("0.4")
    assert algo_progress(reload(algo)).slices_refused == 1


def test_a_refused_last_slice_finishes_the_algo(paper, trader_entry, quote, start):
    quote("BTC/USD", 60000, 60010)
    algo = create(paper, trader_entry, start, slices=1)
    kill_switch_set(firm_id=paper.firm_id, active=True, actor=Actor.system("test"))
    assert svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start).status == "done"


def test_create_is_idempotent_on_client_order_id(paper, trader_entry, start):
    first = create(paper, trader_entry, start, client_order_id="same")
    again = create(paper, trader_entry, start, client_order_id="same")
    assert again.pk == first.pk and again.replayed
    with pytest.raises(DomainError) as exc:
        create(paper, trader_entry, start, client_order_id="same", qty=Decimal(2))
    assert (exc.value.code, exc.value.status_code) == ("IDEMPOTENCY_KEY_MISMATCH", 409)
    with firm_scope(paper.firm_id):
        assert AlgoOrder.objects.count() == 1


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"symbol": "NOPE"}, "symbol", svc.MSG_UNKNOWN_SYMBOL),
    ({"side": "hold"}, "side", svc.MSG_SIDE),
    ({"kind": "pov"}, "kind", svc.MSG_KIND),
    ({"qty": Decimal(0)}, "qty", svc.MSG_QTY_POSITIVE),
    ({"qty": Decimal("-1")}, "qty", svc.MSG_QTY_POSITIVE),
    ({"qty": Decimal("0.00005")}, "qty", svc.msg_lot_grid(Decimal("0.00005"), Decimal("0.0001"))),
    ({"qty": Decimal("0.0003")}, "qty", svc.msg_too_small(Decimal("0.0003"), 5, Decimal("0.0001"))),
    ({"slices": 0}, "slices", svc.MSG_SLICES_RANGE),
    ({"slices": 501}, "slices", svc.MSG_SLICES_RANGE),
    ({"slices": 400, "qty": Decimal(1)}, "slices", svc.msg_too_fine(400, 300)),
    ({"end_at": "start"}, "end_at", svc.MSG_END_AFTER_START),
    ({"end_at": "past", "start_at": "long ago"}, "end_at", svc.MSG_END_PAST),
    ({"limit_price": Decimal("59000.001")}, "limit_price", svc.msg_tick_grid(Decimal("59000.001"), Decimal("0.01"))),
    ({"limit_price": Decimal(0)}, "limit_price", svc.MSG_PRICE_POSITIVE),
    ({"client_order_id": "has space"}, "client_order_id", svc.MSG_COID),
    ({"client_order_id": "x" * 101}, "client_order_id", svc.MSG_COID),
])
def test_bad_input_names_the_field_and_writes_nothing(paper, trader_entry, start, changes, field, message):
    changes = dict(changes)
    if changes.get("end_at") == "start":
        changes["end_at"] = start
    elif changes.get("end_at") == "past":
        changes["end_at"], changes["start_at"] = start - timedelta(minutes=1), start - timedelta(hours=1)
    if field == "slices" and "qty" in changes:
        changes["end_at"] = start + timedelta(minutes=5)
    before = len(actions(paper.firm_id))
    with pytest.raises(DomainError) as exc:
        create(paper, trader_entry, start, **changes)
    assert (exc.value.code, exc.value.status_code) == ("VALIDATION_ERROR", 400)
    assert exc.value.fields[field] == [message]
    with firm_scope(paper.firm_id):
        assert AlgoOrder.objects.count() == 0
    assert len(actions(paper.firm_id)) == before


def test_naive_times_are_refused(paper, trader_entry, start):
    with pytest.raises(DomainError) as exc:
        create(paper, trader_entry, start, start_at=start.replace(tzinfo=None))
    assert exc.value.fields == {"start_at": [svc.MSG_NAIVE]}


def put_minute_volume(instrument, day_start, volumes) -> None:
    from apps.marketdata.ingest import bars_upsert

    rows = [(day_start + timedelta(minutes=i), 1, 1, 1, 1, v, None, None) for i, v in enumerate(volumes)]
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    bars_upsert(instrument_id=instrument.pk, timeframe="1m", bars=frame)


def test_vwap_sizes_follow_stored_volume_of_recent_days(paper, trader_entry, instruments, start):
    # yesterday and three days ago, same 4 minutes: volume 1, 1, 1, 7 (and 0, 0, 0, 10)
    put_minute_volume(instruments["BTC/USD"], start - timedelta(days=1), [1, 1, 1, 7])
    put_minute_volume(instruments["BTC/USD"], start - timedelta(days=3), [0, 0, 0, 10])
    algo = create(paper, trader_entry, start, kind="vwap", qty=Decimal("0.0024"), slices=4,
                  end_at=start + timedelta(minutes=4))
    # volumes 1, 1, 1, 17 of 20: one lot each, then the other 20 lots 1, 1, 1, 17
    assert [q for _, q in schedule_load(algo.schedule)] == [Decimal("0.0002")] * 3 + [Decimal("0.0018")]
    with firm_scope(paper.firm_id):
        event = AuditEvent.objects.filter(action="algo.created").get()
    assert event.after["profile"] == "bars"


def test_vwap_without_bars_uses_the_u_shape(paper, trader_entry, start):
    algo = create(paper, trader_entry, start, kind="vwap", qty=Decimal(1), slices=5)
    assert [q for _, q in schedule_load(algo.schedule)] == [Decimal(x) for x in
                                                            ("0.2960", "0.1520", "0.1040", "0.1520", "0.2960")]


def test_tick_due_visits_each_firms_due_algos_only(paper, paper_b, trader_entry, firm_b, quote, start):
    from apps.orders.models import Origin
    from apps.orders.services import Entry

    quote("BTC/USD", 60000, 60010)
    due_a = create(paper, trader_entry, start)
    later_a = create(paper, trader_entry, start + timedelta(minutes=30), end_at=start + timedelta(minutes=40))
    entry_b = Entry(actor=Actor.for_user(firm_b.member("trader").user), origin=Origin.API)
    due_b = create(paper_b, entry_b, start)
    paused_b = create(paper_b, entry_b, start)
    svc.algo_pause(algo=paused_b, actor=entry_b.actor)
    assert svc.algo_tick_due(now=start + timedelta(seconds=1)) == {"ticked": 2, "failed": 0}
    assert [len(children(a)) for a in (due_a, later_a, due_b, paused_b)] == [1, 0, 1, 0]
    assert children(due_b)[0].firm_id == firm_b.firm.pk
    assert svc.algo_tick_due(now=start + timedelta(seconds=2)) == {"ticked": 0, "failed": 0}


def test_children_never_bypass_the_order_path_checks(paper, trader_entry, quote, start):
    """A child is an ordinary order to the pre-trade checks: buying power counts the earlier children."""
    quote("BTC/USD", 60000, 60010)
    algo = create(paper, trader_entry, start, qty=Decimal(4), slices=2, limit_price=Decimal("60000"))
    # each slice is 2 BTC at 60,000 = 120,000 > the 100,000 of cash: the first child is refused
    svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=start)
    (child,) = children(algo)
    assert child.reject_code == "INSUFFICIENT_BUYING_POWER" and reload(algo).status == "paused"


@pytest.mark.django_db(transaction=True)
def test_concurrent_ticks_send_each_slice_once(paper, trader_entry, quote, enqueued):
    quote("BTC/USD", 60000, 60010)
    start = timezone.now().replace(microsecond=0)
    algo = create(paper, trader_entry, start, qty=Decimal("0.5"), slices=5, client_order_id="race")
    later = start + timedelta(minutes=11)
    run_threads(lambda i: svc.algo_tick(firm_id=paper.firm_id, algo_id=algo.pk, now=later), 8)
    sent = children(algo)
    assert sorted(o.client_order_id for o in sent) == [f"race:{n}" for n in range(5)]
    assert sum(o.qty for o in sent) == Decimal("0.5")
    final = reload(algo)
    assert (final.status, final.next_slice, final.sent_qty) == ("done", 5, Decimal("0.5"))
    assert len(enqueued) == 5  # one route task per child, after each commit
    # the replay backstop: submitting a slice again by its client_order_id returns the same child
    from apps.orders.services import order_submit

    again = order_submit(portfolio=paper, spec=spec(qty="0.1000", client_order_id="race:0"), entry=trader_entry)
    assert not again.created and again.order.client_order_id == "race:0" and again.order.algo_id == algo.pk
