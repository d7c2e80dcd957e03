"""Instruments, bars and watchlists.

Instruments and bars are global (market data is shared by every firm); watchlists belong to a firm.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import ProtectedError, Q

from apps.core.models import FirmOwnedModel

# NUMERIC(20, 10) holds BTC at 10 digits before the point and sub-satoshi-priced tokens
# (1e-10) after it; a price outside that is a data error, and PostgreSQL rejects it loudly.
PRICE_DIGITS, PRICE_PLACES = 20, 10
# Crypto volume is fractional (8 places); 20 integer digits is more than any day of any market.
VOLUME_DIGITS, VOLUME_PLACES = 28, 8


class AssetClass(models.TextChoices):
    EQUITY = "equity", "Equity"
    ETF = "etf", "ETF"
    CRYPTO = "crypto", "Crypto"
    OPTION = "option", "Option"


class OptionRight(models.TextChoices):
    CALL = "call", "Call"
    PUT = "put", "Put"


class Timeframe(models.TextChoices):
    M1 = "1m", "1 minute"
    M5 = "5m", "5 minutes"
    M15 = "15m", "15 minutes"
    H1 = "1h", "1 hour"
    D1 = "1d", "1 day"


class Instrument(models.Model):
    symbol = models.CharField(max_length=32, help_text="Ticker; for options the OCC symbol (no padding).")
    name = models.CharField(max_length=200, blank=True)
    asset_class = models.CharField(max_length=8, choices=AssetClass.choices)
    exchange = models.CharField(max_length=16, help_text="NYSE, NASDAQ, ARCA, CRYPTO, OPRA, ...")
    currency = models.CharField(max_length=3, default="USD")
    tick_size = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, default="0.01")
    lot_size = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_PLACES, default="1")
    fractionable = models.BooleanField(default=False)
    shortable = models.BooleanField(default=False)
    tradable = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    # Options only (a check constraint keeps them all set for options and all null otherwise).
    underlying = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="options"
    )
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, null=True, blank=True)
    right = models.CharField(max_length=4, choices=OptionRight.choices, blank=True)
    multiplier = models.PositiveIntegerField(null=True, blank=True)
    occ_symbol = models.CharField(max_length=21, blank=True, help_text="21-character padded OCC symbol.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "asset_class"], name="marketdata_instrument_symbol_class_uniq"),
            models.UniqueConstraint(
                fields=["occ_symbol"], condition=~Q(occ_symbol=""), name="marketdata_instrument_occ_uniq"
            ),
            models.CheckConstraint(
                condition=(
                    Q(asset_class="option", underlying__isnull=False, expiry__isnull=False, strike__gt=0,
                      right__in=["call", "put"], multiplier__isnull=False)
                    & ~Q(occ_symbol="")
                )
                | (
                    ~Q(asset_class="option")
                    & Q(underlying__isnull=True, expiry__isnull=True, strike__isnull=True, right="",
                        multiplier__isnull=True, occ_symbol="")
                ),
                name="marketdata_instrument_option_fields",
            ),
            models.CheckConstraint(condition=Q(tick_size__gt=0) & Q(lot_size__gt=0),
                                   name="marketdata_instrument_sizes_positive"),
        ]
        indexes = [
            # Symbols are stored upper-case, so prefix search is symbol LIKE 'AA%'; a varchar_pattern_ops
            # B-tree serves that under any database collation.
            models.Index(fields=["symbol"], opclasses=["varchar_pattern_ops"], name="marketdata_instr_symbol_prefix"),
        ]

    def __str__(self) -> str:
        return self.symbol


def protect_if_bars(collector, field, sub_objs, using):
    """on_delete=PROTECT with one EXISTS query (Django's PROTECT would load every bar to list them)."""
    if sub_objs.exists():
        raise ProtectedError(
            "Cannot delete an instrument that has bars: delete its bars first, or retire it with active=False",
            list(sub_objs[:1]),
        )


protect_if_bars.lazy_sub_objs = True  # tell the deletion collector not to evaluate sub_objs itself


class Bar(models.Model):
    """One OHLCV bar. Hundreds of symbols x years of 1-minute bars = hundreds of millions of rows.

    The primary key IS (instrument, timeframe, ts): no surrogate id column and no second unique
    index, so every row is 8 bytes smaller and every insert maintains one B-tree instead of two.
    That B-tree serves the hot read (one symbol, one timeframe, a time range) as a single range scan
    and is the ON CONFLICT target of the idempotent upsert in apps.marketdata.ingest.
    """

    pk = models.CompositePrimaryKey("instrument_id", "timeframe", "ts")
    # No database FK constraint: its per-row referential-integrity trigger was ~40% of the server's
    # time in a 200k-row COPY upsert (measured 5.1-6.0 s with it, 2.9-3.7 s without, bench/ingest.py).
    # Bars are written only by apps.marketdata.ingest with the id of an Instrument row resolved in
    # the same transaction. Deleting an instrument that has bars is refused (protect_if_bars);
    # instruments are retired with active=False rather than deleted.
    # db_index=False: the primary key leads with instrument_id, a second B-tree would only slow writes.
    instrument = models.ForeignKey(Instrument, on_delete=protect_if_bars, related_name="+", db_constraint=False,
                                   db_index=False)
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    ts = models.DateTimeField(help_text="Bar open time, UTC.")
    open = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    high = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    low = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    close = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    volume = models.DecimalField(max_digits=VOLUME_DIGITS, decimal_places=VOLUME_PLACES)
    vwap = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, null=True, blank=True)
    trade_count = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(low__lte=models.F("open")) & Q(low__lte=models.F("close"))
                & Q(high__gte=models.F("open")) & Q(high__gte=models.F("close")) & Q(volume__gte=0),
                name="marketdata_bar_ohlcv_consistent",
            ),
        ]
        indexes = [
            # BRIN on ts: a few KB per GB of table (one min/max per 128 pages) instead of a B-tree
            # the size of a column of timestamps. Bars arrive in roughly ascending time (live feed,
            # chronological backfills), so pages correlate with ts and the BRIN prunes well for
            # the cross-instrument time-window scans the composite B-tree cannot serve
            # (data-quality sweeps, "everything since T", retention deletes).
            BrinIndex(fields=["ts"], name="marketdata_bar_ts_brin", autosummarize=True),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe} {self.ts.isoformat()}"


class Watchlist(FirmOwnedModel):
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["firm", "name"], name="marketdata_watchlist_firm_name_uniq")]

    def __str__(self) -> str:
        return self.name


class WatchlistItem(FirmOwnedModel):
    """Firm-owned too (firm copied from the watchlist) so a direct query is fail-closed like its parent."""

    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="items")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["watchlist", "position"]
        constraints = [
            models.UniqueConstraint(fields=["watchlist", "instrument"], name="marketdata_watchlistitem_uniq"),
            models.UniqueConstraint(fields=["watchlist", "position"], name="marketdata_watchlistitem_position_uniq",
                                    deferrable=models.Deferrable.DEFERRED),
        ]

    def __str__(self) -> str:
        return f"{self.watchlist_id}:{self.position}:{self.instrument_id}"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ImportJob(FirmOwnedModel):
    """One uploaded bar file and what became of it (apps.marketdata.services.import_job_*).

    The file's bytes live in the row (bytea, capped at IMPORT_MAX_BYTES by the service), so any
    worker can run the job with no shared disk. The bars it writes are global market data.
    """

    created_by = models.ForeignKey("accounts.Membership", on_delete=models.SET_NULL, null=True, related_name="+")
    file_name = models.CharField(max_length=255)
    file_size = models.PositiveBigIntegerField()
    file_data = models.BinaryField()
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    tz = models.CharField(max_length=64, default="UTC")
    column_map = models.JSONField(default=dict, blank=True)
    create_instrument = models.BooleanField(default=False)
    asset_class = models.CharField(max_length=8, choices=AssetClass.choices, blank=True)
    skip_bad_rows = models.BooleanField(default=False)
    status = models.CharField(max_length=9, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    inserted = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    instrument_created = models.BooleanField(default=False)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["firm", "-created_at"], name="md_importjob_firm_recent")]
        constraints = [models.CheckConstraint(condition=Q(progress__lte=100), name="marketdata_importjob_progress_max")]

    def __str__(self) -> str:
        return f"import {self.pk} {self.symbol} {self.timeframe} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED)


# ----------------------------------------------------------------------------------------------
# Data providers: a firm's Alpaca market-data connection and the backfills run with it


class AlpacaDataFeed(models.TextChoices):
    IEX = "iex", "IEX (free)"
    SIP = "sip", "SIP (all US exchanges; needs a paid Alpaca data plan)"


class AlpacaCryptoLocation(models.TextChoices):
    US = "us", "US"


class AlpacaConnection(FirmOwnedModel):
    """A firm's Alpaca market-data keys (one per firm). The secret is stored encrypted
    (apps.core.crypto); only its last 4 characters are kept in clear, to recognise it."""

    key_id = models.CharField(max_length=64)
    secret_encrypted = models.TextField(help_text="Fernet token of the secret key (apps.core.crypto).")
    secret_hint = models.CharField(max_length=4, blank=True)
    data_feed = models.CharField(max_length=3, choices=AlpacaDataFeed.choices, default=AlpacaDataFeed.IEX)
    crypto_location = models.CharField(max_length=8, choices=AlpacaCryptoLocation.choices,
                                       default=AlpacaCryptoLocation.US)
    created_by = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    updated_by = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_error = models.TextField(blank=True, help_text="The last failure talking to Alpaca (bad keys, plan...).")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)

    encrypted_fields = ("secret_encrypted",)  # re-encrypted by manage.py field_keys_rotate

    class Meta:
        constraints = [models.UniqueConstraint(fields=["firm"], name="marketdata_alpacaconnection_one_per_firm")]

    def __str__(self) -> str:
        return f"Alpaca {self.key_id}"


class BackfillStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Backfill(FirmOwnedModel):
    """A request to load history from a provider into the (global) bars table, run by a task."""

    provider = models.CharField(max_length=16, default="alpaca")
    symbols = models.JSONField(help_text="Symbols, in the order they are loaded.")
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=BackfillStatus.choices, default=BackfillStatus.QUEUED)
    symbols_done = models.PositiveIntegerField(default=0)
    rows_inserted = models.BigIntegerField(default=0)
    rows_updated = models.BigIntegerField(default=0)
    rows_unchanged = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["firm", "-created_at"], name="md_backfill_firm_created")]
        constraints = [models.CheckConstraint(condition=Q(end__gt=models.F("start")),
                                              name="marketdata_backfill_start_before_end")]

    def __str__(self) -> str:
        return f"backfill {self.pk} {self.timeframe} {self.status}"
