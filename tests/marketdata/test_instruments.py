from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import FirmScopeError, firm_scope
from apps.marketdata.models import Instrument, Watchlist, WatchlistItem
from apps.marketdata.selectors import instrument_get, instrument_search, watchlist_items, watchlist_list
from apps.marketdata.services import (
    instrument_create,
    option_create,
    watchlist_add,
    watchlist_create,
    watchlist_remove,
    watchlist_reorder,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def universe():
    made = {}
    for symbol, name, cls in [("AAPL", "Apple Inc.", "equity"), ("AA", "Alcoa Corp", "equity"),
                              ("AAL", "American Airlines Group", "equity"), ("SPY", "SPDR S&P 500 ETF Trust", "etf"),
                              ("BTCUSD", "Bitcoin", "crypto"), ("MSFT", "Microsoft Corp", "equity")]:
        made[symbol] = instrument_create(symbol=symbol, name=name, asset_class=cls)
    return made


def test_instrument_create_normalizes_and_defaults(universe):
    btc = universe["BTCUSD"]
    assert (btc.symbol, btc.exchange, btc.currency, btc.tick_size, btc.lot_size) == (
        "BTCUSD", "CRYPTO", "USD", Decimal("0.01"), Decimal("1"))
    eth = instrument_create(symbol=" ethusd ", asset_class="crypto", lot_size="0.0001", fractionable=True)
    assert (eth.symbol, eth.lot_size, eth.fractionable) == ("ETHUSD", Decimal("0.0001"), True)
    assert universe["SPY"].exchange == "ARCA"


def test_same_symbol_in_two_asset_classes_is_allowed_but_not_twice_in_one(universe):
    instrument_create(symbol="AAPL", asset_class="crypto")
    with pytest.raises(DomainError) as exc:
        instrument_create(symbol="aapl", asset_class="equity")
    assert (exc.value.code, exc.value.message, exc.value.status_code) == (
        "INSTRUMENT_EXISTS", "AAPL (equity) already exists", 409)


def test_instrument_create_refuses_options_and_bad_symbols():
    with pytest.raises(DomainError) as exc:
        instrument_create(symbol="X", asset_class="option")
    assert exc.value.code == "INVALID_ASSET_CLASS"
    with pytest.raises(DomainError) as exc:
        instrument_create(symbol="TWO WORDS", asset_class="equity")
    assert exc.value.message == "invalid symbol 'TWO WORDS'"
    assert Instrument.objects.count() == 0


def test_option_create_builds_the_occ_symbol(universe):
    call = option_create(underlying=universe["AAPL"], expiry=date(2025, 1, 17), right="call", strike="150")
    assert (call.symbol, call.occ_symbol, call.asset_class, call.strike, call.right, call.multiplier) == (
        "AAPL250117C00150000", "AAPL  250117C00150000", "option", Decimal("150"), "call", 100)
    assert call.underlying == universe["AAPL"]
    assert list(universe["AAPL"].options.values_list("symbol", flat=True)) == ["AAPL250117C00150000"]
    with pytest.raises(DomainError) as exc:
        option_create(underlying=universe["AAPL"], expiry=date(2025, 1, 17), right="call", strike="150")
    assert exc.value.code == "INSTRUMENT_EXISTS"
    with pytest.raises(DomainError) as exc:
        option_create(underlying=universe["AAPL"], expiry=date(2025, 1, 17), right="call", strike="150.0001")
    assert exc.value.message == "invalid strike '150.0001': at most 3 decimal places"
    with pytest.raises(DomainError) as exc:
        option_create(underlying=universe["BTCUSD"], expiry=date(2025, 1, 17), right="put", strike="1")
    assert exc.value.code == "INVALID_UNDERLYING"


def test_database_refuses_an_option_without_its_fields_and_a_stock_with_them(universe):
    with pytest.raises(IntegrityError, match="marketdata_instrument_option_fields"), transaction.atomic():
        Instrument.objects.create(symbol="AAPL250117C00150000", asset_class="option", exchange="OPRA")
    with pytest.raises(IntegrityError, match="marketdata_instrument_option_fields"), transaction.atomic():
        Instrument.objects.create(symbol="IBM", asset_class="equity", exchange="NYSE", strike=Decimal("1"))


def test_search_by_symbol_prefix_then_name(universe):
    assert [i.symbol for i in instrument_search(query="aa")] == ["AA", "AAL", "AAPL"]
    assert [i.symbol for i in instrument_search(query="corp")] == ["AA", "MSFT"]
    assert [i.symbol for i in instrument_search(query="a")[:2]] == ["AA", "AAL"]
    assert [i.symbol for i in instrument_search(query="s", asset_class="etf")] == ["SPY"]
    everything = sorted(Instrument.objects.filter(active=True).values_list("symbol", flat=True))
    assert [i.symbol for i in instrument_search(query="  ")] == everything  # no query: all, by symbol
    Instrument.objects.filter(symbol="AAL").update(active=False)
    assert [i.symbol for i in instrument_search(query="AA")] == ["AA", "AAPL"]
    assert instrument_get(symbol="aapl").name == "Apple Inc."


def test_watchlists_are_per_firm_ordered_and_audited(universe, firm_a, firm_b):
    owner = firm_a.member("owner").user
    actor = Actor.for_user(owner)
    with firm_scope(firm_a.firm.pk):
        tech = watchlist_create(firm_id=firm_a.firm.pk, name="Tech", actor=actor)
        for symbol in ("MSFT", "AAPL", "SPY"):
            watchlist_add(watchlist=tech, instrument=universe[symbol], actor=actor)
        with pytest.raises(DomainError) as exc:
            watchlist_add(watchlist=tech, instrument=universe["AAPL"], actor=actor)
        assert (exc.value.code, exc.value.message) == ("ALREADY_LISTED", "AAPL is already on Tech")
        with pytest.raises(DomainError) as exc:
            watchlist_create(firm_id=firm_a.firm.pk, name="Tech", actor=actor)
        assert exc.value.code == "WATCHLIST_EXISTS"
        watchlist_remove(watchlist=tech, instrument=universe["MSFT"], actor=actor)
        assert [(i.position, i.instrument.symbol) for i in watchlist_items(watchlist=tech)] == [
            (0, "AAPL"), (1, "SPY")]
        watchlist_reorder(watchlist=tech, instrument_ids=[universe["SPY"].pk, universe["AAPL"].pk], actor=actor)
        assert [i.instrument.symbol for i in watchlist_items(watchlist=tech)] == ["SPY", "AAPL"]
        with pytest.raises(DomainError) as exc:
            watchlist_reorder(watchlist=tech, instrument_ids=[universe["SPY"].pk], actor=actor)
        assert exc.value.code == "INVALID_ORDER"
        assert [w.name for w in watchlist_list()] == ["Tech"]
        actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions == ["watchlist.created", "watchlist.item_added", "watchlist.item_added", "watchlist.item_added",
                       "watchlist.item_removed", "watchlist.reordered"]
    with firm_scope(firm_b.firm.pk):
        assert list(watchlist_list()) == []
        assert WatchlistItem.objects.count() == 0
        # the same name is free in another firm
        watchlist_create(firm_id=firm_b.firm.pk, name="Tech", actor=Actor.for_user(firm_b.member("owner").user))
        assert Watchlist.objects.count() == 1
    with pytest.raises(FirmScopeError):
        list(Watchlist.objects.filter(name="Tech"))
