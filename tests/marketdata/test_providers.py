"""One interface for every provider: historical frames bars_upsert takes, and live streams."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from apps.marketdata.ingest import bars_upsert
from apps.marketdata.providers.alpaca import AlpacaProvider
from apps.marketdata.providers.base import (
    COLUMNS,
    HistoricalProvider,
    LiveBar,
    LiveProvider,
    ProviderError,
)
from apps.marketdata.providers.files import FilesProvider
from apps.marketdata.providers.simulated import SimulatedProvider
from apps.marketdata.quotes import QuoteIn
from apps.marketdata.services import instrument_create

OPEN = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # NYSE open


def test_every_provider_implements_the_interface(tmp_path):
    providers = [SimulatedProvider(), FilesProvider(directory=tmp_path), AlpacaProvider(key_id="k", secret="s")]
    for provider in providers:
        assert isinstance(provider, HistoricalProvider) and isinstance(provider, LiveProvider), provider.name
    assert [p.name for p in providers] == ["simulated", "files", "alpaca"]


def test_alpaca_repr_never_shows_the_secret():
    assert "topsecret" not in repr(AlpacaProvider(key_id="AK1", secret="topsecret"))


def test_simulated_bars_are_seeded_and_shaped_for_bars_upsert():
    provider = SimulatedProvider()
    first = provider.bars("AAPL", "1m", OPEN, OPEN + pd.Timedelta(minutes=30))
    again = SimulatedProvider().bars("AAPL", "1m", OPEN, OPEN + pd.Timedelta(minutes=30))
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == list(COLUMNS)
    assert len(first) == 30
    assert first["ts"].iloc[0] == pd.Timestamp(OPEN) and first["ts"].is_monotonic_increasing
    assert ((first["low"] <= first[["open", "close"]].min(axis=1))
            & (first["high"] >= first[["open", "close"]].max(axis=1))).all()


def test_simulated_respects_calendars_and_resamples():
    provider = SimulatedProvider()
    # Saturday: no NYSE session, so no equity bars; crypto trades.
    saturday = datetime(2024, 1, 6, tzinfo=UTC)
    assert provider.bars("AAPL", "1m", saturday, saturday + pd.Timedelta(hours=2)).empty
    assert len(provider.bars("BTC/USD", "1m", saturday, saturday + pd.Timedelta(hours=2))) == 120
    hourly = provider.bars("BTC/USD", "1h", saturday, saturday + pd.Timedelta(hours=3))
    assert [t.hour for t in hourly["ts"]] == [0, 1, 2]
    daily = provider.bars("AAPL", "1d", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC))
    # Daily bars are sessions, labelled midnight New York (05:00 UTC in winter): Jan 2-5.
    assert [t.isoformat() for t in daily["ts"]] == [f"2024-01-0{d}T05:00:00+00:00" for d in (2, 3, 4, 5)]


def test_simulated_unknown_symbol_and_bad_requests():
    provider = SimulatedProvider()
    with pytest.raises(ProviderError, match="NOPE is not in the simulated universe"):
        provider.bars("NOPE", "1m", OPEN, OPEN + pd.Timedelta(minutes=5))
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        provider.bars("AAPL", "2m", OPEN, OPEN + pd.Timedelta(minutes=5))
    with pytest.raises(ValueError, match="start must be before end"):
        provider.bars("AAPL", "1m", OPEN, OPEN)


def test_simulated_stream_emits_bars_and_quotes_until_stopped():
    provider = SimulatedProvider(interval=0, start=datetime(2024, 1, 6, 12, 0, 30, tzinfo=UTC))  # a Saturday
    quotes: list[QuoteIn] = []
    bars: list[LiveBar] = []

    def on_bar(bar: LiveBar) -> None:
        bars.append(bar)
        if len(bars) == 6:
            provider.stop()

    provider.stream(["AAPL", "BTC/USD", "ETH/USD"], quotes.append, on_bar)
    # The NYSE is closed on Saturday: only the crypto pairs tick, one bar per minute each.
    assert [(b.symbol, b.ts.strftime("%H:%M")) for b in bars] == [
        ("BTC/USD", "12:00"), ("ETH/USD", "12:00"), ("BTC/USD", "12:01"), ("ETH/USD", "12:01"),
        ("BTC/USD", "12:02"), ("ETH/USD", "12:02")]
    assert all(b.final and b.timeframe == "1m" for b in bars)
    assert [q.symbol for q in quotes] == ["BTC/USD", "ETH/USD"] * 3
    assert quotes[0].exchange == "CRYPTO" and quotes[0].ts == datetime(2024, 1, 6, 12, 1, tzinfo=UTC).timestamp()
    assert quotes[0].bid < quotes[0].ask


CSV = """ts,open,high,low,close,volume
2024-01-02T14:30:00Z,10,11,9.5,10.5,100
2024-01-02T14:31:00Z,10.5,10.9,10.1,10.2,50
2024-01-02T14:32:00Z,10.2,10.4,10,10.3,70
"""


def test_files_provider_validates_and_filters_to_the_range(tmp_path):
    (tmp_path / "ACME.csv").write_text(CSV)
    (tmp_path / "BTC-USD.csv").write_text(CSV)
    provider = FilesProvider(directory=tmp_path)
    frame = provider.bars("ACME", "1m", datetime(2024, 1, 2, 14, 31, tzinfo=UTC), datetime(2024, 1, 2, 15, tzinfo=UTC))
    assert list(frame.columns) == list(COLUMNS)
    assert frame["close"].tolist() == [10.2, 10.3]
    assert len(provider.bars("BTC/USD", "1m", OPEN, OPEN + pd.Timedelta(hours=1))) == 3


def test_files_provider_refuses_a_bad_file(tmp_path):
    (tmp_path / "ACME.csv").write_text(CSV.replace("14:31:00Z", "14:33:00Z"))  # out of order
    with pytest.raises(ProviderError, match=r"The file ACME.csv has an invalid 1m bar for ACME \(row 3"):
        FilesProvider(directory=tmp_path).bars("ACME", "1m", OPEN, OPEN + pd.Timedelta(hours=1))
    with pytest.raises(ProviderError, match="MISSING.csv"):
        FilesProvider(directory=tmp_path).bars("MISSING", "1m", OPEN, OPEN + pd.Timedelta(hours=1))
    with pytest.raises(ProviderError, match="the files provider has no live stream"):
        FilesProvider(directory=tmp_path).stream(["ACME"], print, print)


@pytest.mark.django_db
def test_provider_frames_load_through_bars_upsert_idempotently(tmp_path):
    (tmp_path / "ACME.csv").write_text(CSV)
    acme = instrument_create(symbol="ACME", asset_class="equity")
    aapl = instrument_create(symbol="AAPL", asset_class="equity")
    files = FilesProvider(directory=tmp_path).bars("ACME", "1m", OPEN, OPEN + pd.Timedelta(hours=1))
    sim = SimulatedProvider().bars("AAPL", "1m", OPEN, OPEN + pd.Timedelta(minutes=10))
    assert bars_upsert(instrument_id=acme.pk, timeframe="1m", bars=files).inserted == 3
    assert bars_upsert(instrument_id=aapl.pk, timeframe="1m", bars=sim).inserted == 10
    again = bars_upsert(instrument_id=aapl.pk, timeframe="1m", bars=sim)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 10)
