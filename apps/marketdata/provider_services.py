"""Writes for data providers: a firm's Alpaca connection and the backfills run with it.

The secret never leaves this module in clear except into an :class:`AlpacaProvider`; it is not
logged, audited or returned (the audit trail records the key id and the secret's last 4 characters).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core import crypto
from apps.core.errors import DomainError
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import (
    AlpacaConnection,
    AlpacaCryptoLocation,
    AlpacaDataFeed,
    AssetClass,
    Backfill,
    BackfillStatus,
    Instrument,
)
from apps.marketdata.providers.alpaca import AlpacaProvider
from apps.marketdata.providers.base import ProviderAuthError, ProviderError

log = logging.getLogger(__name__)

KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # Alpaca's keys: printable ASCII
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
MAX_SYMBOLS = 50
MAX_BARS_PER_SYMBOL = 600_000  # about 5 years of regular-hours 1m bars; one symbol's frame stays ~50 MB
MSG_NO_CONNECTION = "The firm has no Alpaca data connection; add one with PUT /api/v1/data-connections/alpaca/."
MSG_UNREADABLE = crypto.MSG_UNDECRYPTABLE
MSG_RANGE = ("The range is too large: at most {n:,} bars of {timeframe} per symbol "
             "(about {days:,} days); split it into several backfills.")


def _audit_view(conn: AlpacaConnection) -> dict:
    return {"key_id": conn.key_id, "secret": crypto.masked(conn.secret_hint), "data_feed": conn.data_feed,
            "crypto_location": conn.crypto_location}


def _check_keys(key_id: str, secret: str) -> None:
    fields = {}
    if not KEY_CHARS.fullmatch(key_id or "") or len(key_id) > 64:
        fields["key_id"] = ["1-64 printable ASCII characters, no spaces."]
    if not KEY_CHARS.fullmatch(secret or "") or len(secret) > 256:
        fields["secret"] = ["1-256 printable ASCII characters, no spaces."]
    if fields:
        raise DomainError("VALIDATION_ERROR", f"Invalid input: {', '.join(sorted(fields))}.", fields=fields)


def alpaca_connection_set(
    *, firm_id: int, key_id: str, secret: str, data_feed: str = AlpacaDataFeed.IEX,
    crypto_location: str = AlpacaCryptoLocation.US, actor: Actor, meta: RequestMeta | None = None,
) -> AlpacaConnection:
    """Create or replace the firm's Alpaca keys (one connection per firm).

    Locks the firm's connection row; encrypts the secret; clears the last error (new keys deserve
    a fresh verdict); audits ``alpaca_connection.created`` / ``.updated`` without the secret.
    """
    _check_keys(key_id, secret)
    user_id = actor.user_id
    with transaction.atomic():
        conn = AlpacaConnection.objects.select_for_update().filter(firm_id=firm_id).first()
        before = _audit_view(conn) if conn else None
        values = {"key_id": key_id, "secret_encrypted": crypto.encrypt(secret), "secret_hint": crypto.hint(secret),
                  "data_feed": data_feed, "crypto_location": crypto_location, "updated_by_id": user_id,
                  "last_error": "", "last_error_at": None}
        if conn is None:
            try:
                with transaction.atomic():
                    conn = AlpacaConnection.objects.create(firm_id=firm_id, created_by_id=user_id, **values)
            except IntegrityError:  # a concurrent first PUT won; this one is a conflict, not a 500
                raise DomainError("CONFLICT", "The connection was created concurrently; retry.", status_code=409) from None
        else:
            for name, value in values.items():
                setattr(conn, name, value)
            conn.save(update_fields=[*values, "updated_at"])
        audit_record(firm_id=firm_id, action="alpaca_connection.updated" if before else "alpaca_connection.created",
                     actor=actor, target_type="alpaca_connection", target_id=conn.pk, target_label=key_id,
                     before=before, after=_audit_view(conn), meta=meta)
    return conn


def alpaca_connection_delete(*, connection: AlpacaConnection, actor: Actor, meta: RequestMeta | None = None) -> None:
    """Delete the firm's keys (the ciphertext goes with the row); audits ``alpaca_connection.deleted``."""
    with transaction.atomic():
        audit_record(firm_id=connection.firm_id, action="alpaca_connection.deleted", actor=actor,
                     target_type="alpaca_connection", target_id=connection.pk, target_label=connection.key_id,
                     before=_audit_view(connection), meta=meta)
        AlpacaConnection.objects.filter(pk=connection.pk, firm_id=connection.firm_id).delete()


def alpaca_connection_record(*, connection_id: int, error: str = "") -> None:
    """Operational state, not a change by anyone: the last error talking to Alpaca, or success."""
    now = timezone.now()
    changes = {"last_error": error[:2000], "last_error_at": now} if error else {"last_ok_at": now}
    AlpacaConnection.objects.filter(pk=connection_id).update(**changes)


def alpaca_provider_for(connection: AlpacaConnection, **overrides) -> AlpacaProvider:
    """The provider for a connection; a secret the configured keys cannot decrypt is a 409, not a 500."""
    try:
        secret = crypto.decrypt(connection.secret_encrypted)
    except crypto.FieldDecryptError as exc:
        raise DomainError("CONNECTION_SECRET_UNREADABLE", exc.message, status_code=409) from None
    # Test hook (not an environment variable): point alpaca-py at a local server.
    urls = dict(getattr(settings, "ALPACA_URL_OVERRIDES", None) or {})
    options = {"url_override": urls.get("data"), "stock_stream_url": urls.get("stock_stream"),
               "crypto_stream_url": urls.get("crypto_stream"), **overrides}
    return AlpacaProvider(key_id=connection.key_id, secret=secret, data_feed=connection.data_feed,
                          crypto_location=connection.crypto_location, **options)


# ----------------------------------------------------------------------------------------------
# Backfills


def _resolve_symbols(symbols: list[str]) -> list[str]:
    wanted = list(dict.fromkeys(s.strip().upper() for s in symbols))
    if not wanted or len(wanted) > MAX_SYMBOLS:
        raise DomainError("VALIDATION_ERROR", "Invalid input: symbols.",
                          fields={"symbols": [f"Give 1-{MAX_SYMBOLS} symbols."]})
    known = set(Instrument.objects.filter(symbol__in=wanted, active=True)
                .exclude(asset_class=AssetClass.OPTION).values_list("symbol", flat=True))
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise DomainError("UNKNOWN_SYMBOL", f"Unknown symbol(s): {', '.join(unknown)}.",
                          fields={"symbols": [f"Unknown symbol: {s}." for s in unknown]})
    return wanted


def backfill_create(
    *, firm_id: int, symbols: list[str], timeframe: str, start: datetime, end: datetime, actor: Actor,
    meta: RequestMeta | None = None,
) -> Backfill:
    """Queue a backfill of ``symbols`` from the firm's Alpaca connection into the bars table.

    Checks the request (known symbols, range), that the firm has a connection and that its secret
    decrypts, so a doomed backfill is refused now rather than failing later. Audits
    ``backfill.requested``; the task is sent after commit.
    """
    if timeframe not in TIMEFRAME_SECONDS:
        raise DomainError("VALIDATION_ERROR", "Invalid input: timeframe.",
                          fields={"timeframe": [f"One of {', '.join(TIMEFRAME_SECONDS)}."]})
    if start >= end:
        raise DomainError("VALIDATION_ERROR", "Invalid input: end.", fields={"end": ["Must be after start."]})
    if end > timezone.now() + timedelta(days=1):
        raise DomainError("VALIDATION_ERROR", "Invalid input: end.", fields={"end": ["Must not be in the future."]})
    if (end - start).total_seconds() / TIMEFRAME_SECONDS[timeframe] > MAX_BARS_PER_SYMBOL:
        days = int(MAX_BARS_PER_SYMBOL * TIMEFRAME_SECONDS[timeframe] / 86400)
        raise DomainError("RANGE_TOO_LARGE", MSG_RANGE.format(n=MAX_BARS_PER_SYMBOL, timeframe=timeframe, days=days),
                          fields={"end": ["Range too large."]})
    wanted = _resolve_symbols(symbols)
    connection = AlpacaConnection.objects.filter(firm_id=firm_id).first()
    if connection is None:
        raise DomainError("NO_DATA_CONNECTION", MSG_NO_CONNECTION, status_code=409)
    alpaca_provider_for(connection)  # refuses an undecryptable secret now (409)
    with transaction.atomic():
        backfill = Backfill.objects.create(firm_id=firm_id, provider="alpaca", symbols=wanted, timeframe=timeframe,
                                           start=start, end=end, created_by_id=actor.user_id)
        audit_record(firm_id=firm_id, action="backfill.requested", actor=actor, target_type="backfill",
                     target_id=backfill.pk, target_label=f"{timeframe} {', '.join(wanted)}"[:200],
                     after={"symbols": wanted, "timeframe": timeframe, "start": start.isoformat(),
                            "end": end.isoformat()}, meta=meta)

        def enqueue():
            from apps.marketdata.tasks import backfill_run_task

            backfill_run_task.delay(firm_id, backfill.pk)

        transaction.on_commit(enqueue)
    return backfill


def _fail(backfill: Backfill, message: str) -> Backfill:
    Backfill.objects.filter(pk=backfill.pk).update(status=BackfillStatus.FAILED, error=message[:2000],
                                                   finished_at=timezone.now())
    backfill.refresh_from_db()
    return backfill


def backfill_run(*, backfill_id: int, provider=None) -> Backfill:
    """Run (or resume) a backfill; safe to run twice (a redelivered task).

    Symbols are loaded in order, each fetched whole (every page) and written in one transaction
    with the progress counters, so a failure leaves completed symbols written and nothing of the
    failing one; a rerun resumes after the last completed symbol and bars_upsert makes any repeat a
    no-op. A refused key is also recorded on the connection (``last_error``).
    """
    with transaction.atomic():
        backfill = Backfill.objects.select_for_update().get(pk=backfill_id)
        if backfill.status in (BackfillStatus.SUCCEEDED, BackfillStatus.FAILED):
            return backfill
        backfill.status = BackfillStatus.RUNNING
        backfill.started_at = backfill.started_at or timezone.now()
        backfill.save(update_fields=["status", "started_at"])
    connection = AlpacaConnection.objects.filter(firm_id=backfill.firm_id).first()
    if provider is None:
        if connection is None:
            return _fail(backfill, MSG_NO_CONNECTION)
        try:
            provider = alpaca_provider_for(connection)
        except DomainError as exc:
            return _fail(backfill, exc.message)
    ids = dict(Instrument.objects.filter(symbol__in=backfill.symbols, active=True)
               .exclude(asset_class=AssetClass.OPTION).values_list("symbol", "id"))
    for symbol in backfill.symbols[backfill.symbols_done:]:
        if symbol not in ids:
            return _fail(backfill, f"{symbol}: the instrument no longer exists or is inactive.")
        try:
            frame = provider.bars(symbol, backfill.timeframe, backfill.start, backfill.end)
        except ProviderAuthError as exc:
            if connection is not None:
                alpaca_connection_record(connection_id=connection.pk, error=exc.message)
            return _fail(backfill, f"{symbol}: {exc.message}")
        except ProviderError as exc:
            return _fail(backfill, f"{symbol}: {exc.message}")
        with transaction.atomic():
            outcome = bars_upsert(instrument_id=ids[symbol], timeframe=backfill.timeframe, bars=frame)
            Backfill.objects.filter(pk=backfill.pk).update(
                symbols_done=F("symbols_done") + 1, rows_inserted=F("rows_inserted") + outcome.inserted,
                rows_updated=F("rows_updated") + outcome.updated, rows_unchanged=F("rows_unchanged") + outcome.unchanged,
            )
        log.info("backfill %s: %s %s rows (%s new)", backfill.pk, symbol, outcome.rows, outcome.inserted)
    Backfill.objects.filter(pk=backfill.pk).update(status=BackfillStatus.SUCCEEDED, finished_at=timezone.now())
    if connection is not None:
        alpaca_connection_record(connection_id=connection.pk)
    backfill.refresh_from_db()
    return backfill
