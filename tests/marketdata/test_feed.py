import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db.models import Count

from apps.accounts.models import Firm
from apps.core.schedules import all_schedules
from apps.core.tenancy import unscoped
from apps.marketdata import feed
from apps.marketdata.management.commands.seed_market import ensure_instruments
from apps.marketdata.models import Bar, Instrument, Watchlist, WatchlistItem
from apps.marketdata.quotes import quote_many
from apps.marketdata.simulator import MarketStepper

pytestmark = pytest.mark.django_db

CRYPTO = ["BTC/USD", "ETH/USD", "SOL/USD"]
# Wednesday 2026-11-18 15:00:20 UTC (10:00 New York, NYSE open) -> the bar of 14:59 is stepped.
OPEN_NOW = datetime(2026, 11, 18, 15, 0, 20, tzinfo=UTC)
BAR_14_59 = datetime(2026, 11, 18, 14, 59, tzinfo=UTC)
# Saturday: only crypto trades.
WEEKEND_NOW = datetime(2026, 11, 21, 15, 0, 20, tzinfo=UTC)


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


def test_tick_on_weekend_writes_crypto_bars_and_quotes_only(instruments, django_capture_on_commit_callbacks):
    result = tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
    assert result.stepped == CRYPTO
    assert result.inserted == 3
    bars = Bar.objects.filter(ts=datetime(2026, 11, 21, 14, 59, tzinfo=UTC), timeframe="1m")
    assert sorted(Bar.objects.values_list("instrument_id", flat=True)) == sorted(instruments[s] for s in CRYPTO)
    assert bars.count() == 3
    got = quote_many(feed.universe().names)
    assert sorted(got) == CRYPTO
    btc_bar = bars.get(instrument_id=instruments["BTC/USD"])
    assert got["BTC/USD"].last == float(btc_bar.close)
    assert got["BTC/USD"].ts == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)


def test_tick_in_session_steps_every_symbol(instruments, django_capture_on_commit_callbacks):
    result = tick(OPEN_NOW, django_capture_on_commit_callbacks)
    assert result.stepped == feed.universe().names
    assert Bar.objects.filter(ts=BAR_14_59).count() == 23
    assert len(quote_many(feed.universe().names)) == 23


def test_same_minute_twice_writes_one_bar(instruments, django_capture_on_commit_callbacks):
    first = tick(OPEN_NOW, django_capture_on_commit_callbacks)
    second = tick(OPEN_NOW.replace(second=50), django_capture_on_commit_callbacks)
    assert (len(first.stepped), first.inserted) == (23, 23)
    assert (second.stepped, second.inserted) == ([], 0)
    assert Bar.objects.count() == 23


def test_redelivered_tick_with_lost_state_rewrites_the_same_bar(instruments, django_capture_on_commit_callbacks):
    tick(WEEKEND_NOW - timedelta(minutes=1), django_capture_on_commit_callbacks)
    before = feed.state_load()[0].to_dict()
    tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
    rows = list(Bar.objects.order_by("instrument_id", "ts").values_list("instrument_id", "ts", "close", "volume"))
    feed.state_save(feed.MarketStepper.from_dict(feed.universe(), before), 0)  # the save was "lost"
    again = tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
    assert (again.stepped, again.inserted) == (CRYPTO, 0)
    assert list(Bar.objects.order_by("instrument_id", "ts").values_list("instrument_id", "ts", "close",
                                                                         "volume")) == rows
    assert len(rows) == 6


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


def test_tick_publishes_to_market_group(instruments, django_capture_on_commit_callbacks):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(feed.MARKET_GROUP, channel)
    try:
        tick(WEEKEND_NOW, django_capture_on_commit_callbacks)
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)(feed.MARKET_GROUP, channel)
    assert message["type"] == "market.quotes"
    body = json.loads(message["text"])
    assert body["bar"] == "2026-11-21T14:59:00+00:00"
    assert [q["s"] for q in body["quotes"]] == CRYPTO
    assert "firm" not in message and "firm" not in body


def test_feed_schedule_is_registered():
    [sched] = [s for s in all_schedules() if s.task == "marketdata.feed_tick"]
    assert sched.every_seconds == 5


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
