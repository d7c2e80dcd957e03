import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db.models import Count

from apps.accounts.models import Firm
from apps.core.schedules import all_schedules
from apps.core.tenancy import unscoped
from apps.marketdata import feed, ticks
from apps.marketdata.management.commands.seed_market import ensure_instruments
from apps.marketdata.models import Bar, Instrument, Watchlist, WatchlistItem
from apps.marketdata.quotes import quote_many
from apps.marketdata.simulator import MarketStepper

pytestmark = pytest.mark.django_db

CRYPTO = ["BTC/USD", "ETH/USD", "SOL/USD"]
# Wednesday 2026-11-18 15:00:20 UTC (10:00 New York, NYSE open): the 15:00 minute forms.
OPEN_NOW = datetime(2026, 11, 18, 15, 0, 20, tzinfo=UTC)
# Saturday: only crypto trades.
WEEKEND_NOW = datetime(2026, 11, 21, 15, 0, 20, tzinfo=UTC)
WEEKEND_14_59 = datetime(2026, 11, 21, 14, 59, tzinfo=UTC)


def tick(now, capture):
    with capture(execute=True):
        return feed.feed_tick(now)


def bar_counts():
    return dict(Bar.objects.values_list("instrument__symbol").annotate(n=Count("ts"))
                .values_list("instrument__symbol", "n"))


@pytest.fixture
def instruments():
    ensure_instruments()
    return feed.instrument_ids(feed.universe().names)


def stored_rows():
    return list(Bar.objects.order_by("instrument_id", "ts").values_list("instrument_id", "ts", "open", "high", "low",
                                                                         "close", "volume"))


def test_a_forming_minute_writes_no_bar_and_moves_the_quote(instruments, django_capture_on_commit_callbacks):
    first = tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
    assert (first.bar_start, first.stepped, first.finalized, first.published) == (
        datetime(2026, 11, 21, 15, 0, tzinfo=UTC), CRYPTO, [], 3)
    assert Bar.objects.count() == 0
    got = quote_many(feed.universe().names, now=WEEKEND_NOW.timestamp())
    assert sorted(got) == CRYPTO
    assert got["BTC/USD"].ts == WEEKEND_NOW and not got["BTC/USD"].stale
    later = WEEKEND_NOW.replace(second=44)
    second = tick(later, django_capture_on_commit_callbacks)
    assert (second.stepped, second.finalized, second.published, second.inserted) == ([], [], 3, 0)
    assert Bar.objects.count() == 0
    assert quote_many(["BTC/USD"])["BTC/USD"].ts == later


def test_minute_end_writes_the_final_bar_that_every_partial_agreed_with(instruments,
                                                                      django_capture_on_commit_callbacks):
    tick(WEEKEND_NOW - timedelta(minutes=1), django_capture_on_commit_callbacks)  # the 14:59 minute forms
    forming = feed.forming_load()
    assert forming["start"] == WEEKEND_14_59.timestamp()
    result = tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
    assert (result.finalized, result.inserted, result.stepped) == (CRYPTO, 3, CRYPTO)
    assert Bar.objects.filter(ts=WEEKEND_14_59, timeframe="1m").count() == 3
    for symbol in CRYPTO:
        entry = forming["symbols"][symbol]
        stored = Bar.objects.get(instrument_id=instruments[symbol], ts=WEEKEND_14_59)
        o, h, lo, c, v = (float(stored.open), float(stored.high), float(stored.low), float(stored.close),
                          float(stored.volume))
        for second in range(0, 60, 2):
            (po, ph, plo, plast, pv), q = feed.partial_at(entry, second)
            assert po == o and lo <= plo <= plast <= ph <= h and 0 <= pv <= v
            assert q["bid"] < q["ask"] and q["bid"] <= plast <= q["ask"]
        assert feed.partial_at(entry, 60)[0] == [o, h, lo, c, v]  # the path ends on the stored bar
    # The quote moved on to the 15:00 minute, forming now.
    assert quote_many(["BTC/USD"])["BTC/USD"].ts == WEEKEND_NOW


def test_tick_in_session_steps_every_symbol(instruments, django_capture_on_commit_callbacks):
    result = tick(OPEN_NOW, django_capture_on_commit_callbacks)
    assert result.stepped == feed.universe().names
    assert len(quote_many(feed.universe().names)) == 23
    result = tick(OPEN_NOW + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert (result.inserted, len(result.finalized)) == (23, 23)
    assert Bar.objects.filter(ts=OPEN_NOW.replace(second=0)).count() == 23


def test_same_minute_twice_writes_one_bar(instruments, django_capture_on_commit_callbacks):
    tick(OPEN_NOW, django_capture_on_commit_callbacks)
    first = tick(OPEN_NOW + timedelta(minutes=1), django_capture_on_commit_callbacks)
    second = tick(OPEN_NOW + timedelta(minutes=1, seconds=20), django_capture_on_commit_callbacks)
    assert (len(first.finalized), first.inserted) == (23, 23)
    assert (second.stepped, second.finalized, second.inserted, second.published) == ([], [], 0, 23)
    assert Bar.objects.count() == 23


def test_redelivered_tick_with_lost_state_rewrites_the_same_bar(instruments, django_capture_on_commit_callbacks):
    tick(WEEKEND_NOW - timedelta(minutes=1), django_capture_on_commit_callbacks)
    before = cache.get(feed.STATE_KEY)
    tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
    rows, forming = stored_rows(), feed.forming_load()
    cache.set(feed.STATE_KEY, before, timeout=None)  # the save was "lost"
    again = tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
    assert (again.finalized, again.inserted, again.stepped) == (CRYPTO, 0, CRYPTO)
    assert stored_rows() == rows
    assert len(rows) == 3
    assert feed.forming_load() == forming  # the next minute is simulated identically


def test_state_round_trip_through_redis():
    stepper = MarketStepper(feed.universe())
    stepper.step(datetime(2026, 11, 21, 10, 0, tzinfo=UTC), CRYPTO)
    feed.state_save(stepper, 123.0)
    loaded, as_of = feed.state_load()
    assert as_of == 123.0
    assert loaded.to_dict() == stepper.to_dict()
    a = loaded.step(datetime(2026, 11, 21, 10, 1, tzinfo=UTC), CRYPTO)
    b = stepper.step(datetime(2026, 11, 21, 10, 1, tzinfo=UTC), CRYPTO)
    assert a.quotes == b.quotes


def test_ticks_are_published_to_the_live_hubs(instruments, django_capture_on_commit_callbacks):
    pubsub = cache._cache.get_client(write=True).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(ticks.channel_name())
    try:
        tick(WEEKEND_NOW - timedelta(minutes=1), django_capture_on_commit_callbacks)
        tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
        payloads = []
        deadline = time.monotonic() + 5
        while len(payloads) < 3 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)  # None for the (ignored) subscribe confirmation
            if message is not None:
                payloads.append(message["data"])
    finally:
        pubsub.close()
    forming_1459, final_1459, forming_1500 = (ticks.decode(p) for p in payloads)
    assert [(b.symbol, b.ts, b.final) for b in forming_1459[1]] == [(s, WEEKEND_14_59, False) for s in CRYPTO]
    assert [(b.symbol, b.ts, b.final) for b in final_1459[1]] == [(s, WEEKEND_14_59, True) for s in CRYPTO]
    assert [q.ts for q in final_1459[0]] == [WEEKEND_NOW.replace(second=0).timestamp()] * 3
    assert [q.ts for q in forming_1500[0]] == [WEEKEND_NOW.timestamp()] * 3
    assert b"firm" not in payloads[0]
    btc = Bar.objects.get(instrument_id=instruments["BTC/USD"], ts=WEEKEND_14_59)
    assert final_1459[1][0].close == float(btc.close)


def test_feed_schedule_is_registered():
    [sched] = [s for s in all_schedules() if s.task == "marketdata.feed_tick"]
    assert sched.every_seconds == 2


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def test_seed_market_twice_changes_nothing():
    first = run("seed_market", "--days", "1")
    counts = bar_counts()
    second = run("seed_market", "--days", "1")
    assert bar_counts() == counts
    assert Instrument.objects.count() == 23
    assert counts["SPY"] in (390, 210)  # a full or an early-close session
    assert counts["BTC/USD"] >= 1440
    assert "(23 created)" in first and "inserted" in first
    assert "(0 created)" in second and "(0 inserted, 0 updated)" in second
    assert sorted(Instrument.objects.filter(asset_class="crypto").values_list("exchange", flat=True)) == ["CRYPTO"] * 3
    assert Instrument.objects.get(symbol="SPY").exchange == "ARCA"
    assert Instrument.objects.get(symbol="AAPL").exchange == "NYSE"
    stepper, as_of = feed.state_load()
    assert stepper is not None and as_of is not None


def test_seed_demo_creates_the_demo_watchlist_for_the_demo_firm_only(firm_a):
    call_command("seed_demo", "--market-days", "1", stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo", "--market-days", "1", stdout=StringIO(), stderr=StringIO())
    demo = Firm.objects.get(slug="demo")
    with unscoped():
        assert list(Watchlist.objects.unscoped().values_list("firm_id", "name")) == [(demo.pk, "Demo")]
        symbols = list(WatchlistItem.objects.unscoped().order_by("position")
                       .values_list("instrument__symbol", flat=True))
    assert symbols == ["SPY", "QQQ", "AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "JPM", "BTC/USD", "ETH/USD"]
