"""Writes for market data: instruments, watchlists, bar imports."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from apps.accounts.models import Membership
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError
from apps.marketdata import occ, validation
from apps.marketdata.calendars import EXCHANGE_CALENDARS
from apps.marketdata.ingest import UpsertResult, bars_upsert
from apps.marketdata.models import AssetClass, ImportJob, ImportStatus, Instrument, Watchlist, WatchlistItem

DEFAULT_EXCHANGE = {AssetClass.CRYPTO: "CRYPTO", AssetClass.EQUITY: "NYSE", AssetClass.ETF: "ARCA"}
OPTION_EXCHANGE = "OPRA"

MSG_UNKNOWN_SYMBOL = "unknown symbol {symbol!r}; pass --create-instrument with --asset-class to create it"
MSG_AMBIGUOUS_SYMBOL = "symbol {symbol!r} exists in several asset classes ({classes}); pass --asset-class"
MSG_CREATE_NEEDS_CLASS = "--create-instrument needs --asset-class (one of {classes})"
MSG_OPTION_IMPORT = "options are created from their underlying (option_create), not by a bar import"


# ----------------------------------------------------------------------------------------------
# Instruments


def _normal_symbol(symbol: str) -> str:
    text = (symbol or "").strip().upper()
    if not text or len(text) > 32 or any(ch.isspace() for ch in text):
        raise DomainError("INVALID_SYMBOL", f"invalid symbol {symbol!r}", fields={"symbol": ["1-32 characters"]})
    return text


def instrument_create(
    *,
    symbol: str,
    asset_class: str,
    exchange: str | None = None,
    name: str = "",
    currency: str = "USD",
    tick_size: Decimal | str = "0.01",
    lot_size: Decimal | str = "1",
    fractionable: bool = False,
    shortable: bool = False,
    tradable: bool = True,
) -> Instrument:
    """Create a non-option instrument (reference data shared by all firms)."""
    if asset_class not in AssetClass.values or asset_class == AssetClass.OPTION:
        raise DomainError("INVALID_ASSET_CLASS", f"asset class must be one of equity, etf, crypto; got {asset_class!r}",
                          fields={"asset_class": ["equity, etf or crypto"]})
    exchange = (exchange or DEFAULT_EXCHANGE[AssetClass(asset_class)]).upper()
    try:
        with transaction.atomic():
            return Instrument.objects.create(
                symbol=_normal_symbol(symbol), asset_class=asset_class, exchange=exchange, name=name,
                currency=currency.upper(), tick_size=Decimal(str(tick_size)), lot_size=Decimal(str(lot_size)),
                fractionable=fractionable, shortable=shortable, tradable=tradable,
            )
    except IntegrityError:
        raise DomainError("INSTRUMENT_EXISTS", f"{symbol.upper()} ({asset_class}) already exists",
                          fields={"symbol": ["already exists"]}, status_code=409) from None


def option_create(
    *, underlying: Instrument, expiry: date, right: str, strike: Decimal | str, multiplier: int = 100,
    root: str | None = None,
) -> Instrument:
    """Create an option on ``underlying``; its symbol is the compact OCC symbol."""
    if underlying.asset_class not in {AssetClass.EQUITY, AssetClass.ETF}:
        raise DomainError("INVALID_UNDERLYING", "an option's underlying must be an equity or ETF",
                          fields={"underlying": ["equity or ETF"]})
    try:
        contract = occ.occ_parse(occ.occ_format(root or underlying.symbol, expiry, right, strike))
    except ValueError as exc:
        raise DomainError("INVALID_OPTION", str(exc)) from None
    try:
        with transaction.atomic():
            return Instrument.objects.create(
                symbol=contract.symbol, name=f"{underlying.symbol} {expiry:%Y-%m-%d} {contract.strike} {contract.right}",
                asset_class=AssetClass.OPTION, exchange=OPTION_EXCHANGE, currency=underlying.currency,
                underlying=underlying, expiry=contract.expiry, strike=contract.strike, right=contract.right,
                multiplier=multiplier, occ_symbol=contract.padded, tick_size=Decimal("0.01"), lot_size=Decimal("1"),
                shortable=True,
            )
    except IntegrityError:
        raise DomainError("INSTRUMENT_EXISTS", f"{contract.symbol} already exists", status_code=409) from None


# ----------------------------------------------------------------------------------------------
# Watchlists (firm-owned; each change is audited in the firm's chain)


def watchlist_create(*, firm_id: int, name: str, actor: Actor, meta: RequestMeta | None = None) -> Watchlist:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise DomainError("INVALID_NAME", "a watchlist name is 1-100 characters", fields={"name": ["1-100 characters"]})
    try:
        with transaction.atomic():
            watchlist = Watchlist.objects.create(firm_id=firm_id, name=name)
            audit_record(firm_id=firm_id, action="watchlist.created", actor=actor, target_type="watchlist",
                         target_id=watchlist.pk, target_label=name, after={"name": name}, meta=meta)
    except IntegrityError:
        raise DomainError("WATCHLIST_EXISTS", f"a watchlist named {name!r} already exists",
                          fields={"name": ["already exists"]}, status_code=409) from None
    return watchlist


def watchlist_add(*, watchlist: Watchlist, instrument: Instrument, actor: Actor,
                  meta: RequestMeta | None = None) -> WatchlistItem:
    """Append ``instrument`` at the end; adding one already listed is refused."""
    with transaction.atomic():
        Watchlist.objects.filter(pk=watchlist.pk, firm_id=watchlist.firm_id).select_for_update().get()
        if watchlist.items.filter(instrument=instrument).exists():
            raise DomainError("ALREADY_LISTED", f"{instrument.symbol} is already on {watchlist.name}",
                              fields={"instrument": ["already listed"]}, status_code=409)
        last = watchlist.items.aggregate(m=Max("position"))["m"]
        item = WatchlistItem.objects.create(firm_id=watchlist.firm_id, watchlist=watchlist, instrument=instrument,
                                            position=0 if last is None else last + 1)
        audit_record(firm_id=watchlist.firm_id, action="watchlist.item_added", actor=actor, target_type="watchlist",
                     target_id=watchlist.pk, target_label=watchlist.name, after={"symbol": instrument.symbol},
                     meta=meta)
    return item


def watchlist_remove(*, watchlist: Watchlist, instrument: Instrument, actor: Actor,
                     meta: RequestMeta | None = None) -> None:
    with transaction.atomic():
        Watchlist.objects.filter(pk=watchlist.pk, firm_id=watchlist.firm_id).select_for_update().get()
        item = watchlist.items.filter(instrument=instrument).first()
        if item is None:
            raise DomainError("NOT_LISTED", f"{instrument.symbol} is not on {watchlist.name}",
                              fields={"instrument": ["not listed"]}, status_code=404)
        item.delete()
        watchlist.items.filter(position__gt=item.position).update(position=F("position") - 1)
        audit_record(firm_id=watchlist.firm_id, action="watchlist.item_removed", actor=actor,
                     target_type="watchlist", target_id=watchlist.pk, target_label=watchlist.name,
                     before={"symbol": instrument.symbol}, meta=meta)


def watchlist_reorder(*, watchlist: Watchlist, instrument_ids: list[int], actor: Actor,
                      meta: RequestMeta | None = None) -> None:
    """Set the order to ``instrument_ids``, which must list exactly the watchlist's instruments."""
    with transaction.atomic():
        Watchlist.objects.filter(pk=watchlist.pk, firm_id=watchlist.firm_id).select_for_update().get()
        items = {item.instrument_id: item for item in watchlist.items.order_by("position")}
        if sorted(instrument_ids) != sorted(items) or len(set(instrument_ids)) != len(instrument_ids):
            raise DomainError("INVALID_ORDER", "the new order must list each of the watchlist's instruments once",
                              fields={"instrument_ids": ["must be a permutation of the current items"]})
        for position, instrument_id in enumerate(instrument_ids):
            items[instrument_id].position = position
        # The (watchlist, position) unique constraint is DEFERRED, so swaps are checked at commit.
        WatchlistItem.objects.bulk_update(list(items.values()), ["position"])
        audit_record(firm_id=watchlist.firm_id, action="watchlist.reordered", actor=actor, target_type="watchlist",
                     target_id=watchlist.pk, target_label=watchlist.name, after={"instrument_ids": instrument_ids},
                     meta=meta)


# ----------------------------------------------------------------------------------------------
# Bar imports


@dataclass
class ImportOutcome:
    symbol: str
    report: validation.ValidationReport
    written: UpsertResult | None  # None: nothing was written (the file had errors and skip_bad_rows was off)
    instrument_created: bool = False

    @property
    def ok(self) -> bool:
        return self.written is not None


def _resolve_instrument(symbol: str, asset_class: str | None) -> Instrument | None:
    matches = list(Instrument.objects.filter(symbol=symbol, **({"asset_class": asset_class} if asset_class else {})))
    if len(matches) > 1:
        classes = ", ".join(sorted(i.asset_class for i in matches))
        raise DomainError("AMBIGUOUS_SYMBOL", MSG_AMBIGUOUS_SYMBOL.format(symbol=symbol, classes=classes),
                          fields={"asset_class": ["required"]})
    return matches[0] if matches else None


def bars_import_file(
    *,
    path: str | Path,
    symbol: str,
    timeframe: str,
    asset_class: str | None = None,
    create_instrument: bool = False,
    exchange: str | None = None,
    tz: str | None = "UTC",
    column_map: str | dict[str, str] | None = None,
    skip_bad_rows: bool = False,
    fmt: str | None = None,
    outlier_k: float = validation.DEFAULT_OUTLIER_K,
    progress: Callable[[int, int], None] | None = None,
) -> ImportOutcome:
    """Validate a CSV/Parquet file of bars and write it, all or nothing.

    Raises DomainError for a problem with the request (unknown symbol, bad option, unreadable file).
    A file with rejected rows writes nothing (``written is None``) unless ``skip_bad_rows``, which
    writes the accepted rows. An instrument created by ``create_instrument`` is created in the same
    transaction as the bars, so a rejected file leaves no instrument behind either.
    """
    symbol = _normal_symbol(symbol)
    try:
        validation.check_timeframe(timeframe)
        zone = validation.parse_tz(tz)
        mapping = column_map if isinstance(column_map, dict) else validation.parse_column_map(column_map)
    except ValueError as exc:
        raise DomainError("INVALID_OPTION", str(exc)) from None
    if asset_class is not None and asset_class not in AssetClass.values:
        raise DomainError("INVALID_ASSET_CLASS", f"unknown asset class {asset_class!r}; one of "
                          f"{', '.join(AssetClass.values)}", fields={"asset_class": ["unknown"]})
    if exchange is not None and exchange.upper() not in EXCHANGE_CALENDARS:
        raise DomainError("INVALID_EXCHANGE", f"unknown exchange {exchange!r}; one of {', '.join(EXCHANGE_CALENDARS)}",
                          fields={"exchange": ["unknown"]})
    instrument = _resolve_instrument(symbol, asset_class)
    if instrument is None:
        if not create_instrument:
            raise DomainError("UNKNOWN_SYMBOL", MSG_UNKNOWN_SYMBOL.format(symbol=symbol), fields={"symbol": ["unknown"]},
                              status_code=404)
        if asset_class is None:
            raise DomainError("INVALID_ASSET_CLASS", MSG_CREATE_NEEDS_CLASS.format(
                classes=", ".join(c for c in AssetClass.values if c != AssetClass.OPTION)),
                fields={"asset_class": ["required"]})
        if asset_class == AssetClass.OPTION:
            raise DomainError("INVALID_ASSET_CLASS", MSG_OPTION_IMPORT, fields={"asset_class": ["option"]})
    session_exchange = (instrument.exchange if instrument else None) or exchange or (
        DEFAULT_EXCHANGE.get(AssetClass(asset_class)) if asset_class else None)

    try:
        frame = validation.map_columns(validation.read_bars_file(path, fmt=fmt), mapping)
        report = validation.validate_bars(frame, timeframe=timeframe, tz=zone, exchange=session_exchange,
                                          outlier_k=outlier_k)
    except validation.FileError as exc:
        raise DomainError("INVALID_FILE", str(exc), fields={"file": [str(exc)]}) from None
    if report.errors and not skip_bad_rows:
        return ImportOutcome(symbol=symbol, report=report, written=None)

    created = False
    with transaction.atomic():
        if instrument is None:
            instrument = instrument_create(symbol=symbol, asset_class=asset_class, exchange=exchange)
            created = True
        written = bars_upsert(instrument_id=instrument.pk, timeframe=timeframe, bars=report.bars, progress=progress)
    return ImportOutcome(symbol=symbol, report=report, written=written, instrument_created=created)


# ----------------------------------------------------------------------------------------------
# Watchlists: rename and delete


def watchlist_rename(*, watchlist: Watchlist, name: str, actor: Actor, meta: RequestMeta | None = None) -> Watchlist:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise DomainError("INVALID_NAME", "a watchlist name is 1-100 characters", fields={"name": ["1-100 characters"]})
    before = watchlist.name
    if name == before:
        return watchlist
    try:
        with transaction.atomic():
            Watchlist.objects.filter(pk=watchlist.pk, firm_id=watchlist.firm_id).update(name=name)
            audit_record(firm_id=watchlist.firm_id, action="watchlist.renamed", actor=actor, target_type="watchlist",
                         target_id=watchlist.pk, target_label=name, before={"name": before}, after={"name": name},
                         meta=meta)
    except IntegrityError:
        raise DomainError("WATCHLIST_EXISTS", f"a watchlist named {name!r} already exists",
                          fields={"name": ["already exists"]}, status_code=409) from None
    watchlist.name = name
    return watchlist


def watchlist_delete(*, watchlist: Watchlist, actor: Actor, meta: RequestMeta | None = None) -> None:
    """Delete the watchlist and its items (instruments are untouched)."""
    with transaction.atomic():
        symbols = list(watchlist.items.order_by("position").values_list("instrument__symbol", flat=True))
        watchlist.items.all().delete()
        Watchlist.objects.filter(pk=watchlist.pk, firm_id=watchlist.firm_id).delete()
        audit_record(firm_id=watchlist.firm_id, action="watchlist.deleted", actor=actor, target_type="watchlist",
                     target_id=watchlist.pk, target_label=watchlist.name,
                     before={"name": watchlist.name, "symbols": symbols}, meta=meta)


# ----------------------------------------------------------------------------------------------
# Import jobs: an uploaded file, validated and written by a Celery task (apps.marketdata.tasks)

IMPORT_MAX_BYTES = 50 * 1024 * 1024
IMPORT_FORMATS = {"csv": "csv", "txt": "csv", "parquet": "parquet", "pq": "parquet"}
IMPORT_REPORT_MAX_ISSUES = 5_000  # per list (errors, warnings) kept in the job's report; counts stay exact
MSG_FILE_TOO_LARGE = f"the file is larger than {IMPORT_MAX_BYTES // (1024 * 1024)} MB"
MSG_FILE_FORMAT = "use a .csv or .parquet file"
MSG_FILE_EMPTY = "the file is empty"
MSG_REJECTED = "{rejected} of {rows} rows rejected; nothing was written (tick 'skip bad rows' to import the {accepted} good rows)"
MSG_IMPORT_CRASHED = "the import stopped on an unexpected error; it has been logged"


def _fields_error(code: str, field_name: str, message: str, status_code: int = 400) -> DomainError:
    return DomainError(code, message, fields={field_name: [message]}, status_code=status_code)


def _import_format(file_name: str) -> str:
    suffix = Path(file_name or "").suffix.lstrip(".").lower()
    if suffix not in IMPORT_FORMATS:
        raise _fields_error("INVALID_FILE", "file", MSG_FILE_FORMAT)
    return IMPORT_FORMATS[suffix]


def import_job_create(
    *,
    firm_id: int,
    created_by: Membership,
    file_name: str,
    content: bytes,
    symbol: str,
    timeframe: str,
    tz: str = "UTC",
    columns: str | dict[str, str] | None = None,
    create_instrument: bool = False,
    asset_class: str | None = None,
    skip_bad_rows: bool = False,
    actor: Actor,
    meta: RequestMeta | None = None,
) -> ImportJob:
    """Validate an import request, store the file as a queued job and run it in a worker after commit.

    Every problem with the request is a DomainError naming its field (file, symbol, timeframe, tz,
    columns, asset_class) and writes nothing. Problems inside the file are the job's report, later.
    Audited as bars.import_queued; the task is sent on commit (never from inside the transaction).
    """
    from apps.marketdata.tasks import import_job_run_task

    if not content:
        raise _fields_error("INVALID_FILE", "file", MSG_FILE_EMPTY)
    if len(content) > IMPORT_MAX_BYTES:
        raise _fields_error("FILE_TOO_LARGE", "file", MSG_FILE_TOO_LARGE, status_code=413)
    _import_format(file_name)
    symbol = _normal_symbol(symbol)
    try:
        validation.check_timeframe(timeframe)
    except ValueError as exc:
        raise _fields_error("INVALID_TIMEFRAME", "timeframe", str(exc)) from None
    try:
        zone = validation.parse_tz(tz)
    except ValueError as exc:
        raise _fields_error("INVALID_TZ", "tz", str(exc)) from None
    try:
        mapping = columns if isinstance(columns, dict) else validation.parse_column_map(columns)
        if isinstance(columns, dict):  # the same rules as the text form
            validation.parse_column_map(",".join(f"{k}={v}" for k, v in columns.items()))
    except ValueError as exc:
        raise _fields_error("INVALID_COLUMNS", "columns", str(exc).removeprefix("--map: ")) from None
    asset_class = asset_class or None
    if asset_class is not None and asset_class not in AssetClass.values:
        raise _fields_error("INVALID_ASSET_CLASS", "asset_class", f"unknown asset class {asset_class!r}")
    instrument = _resolve_instrument(symbol, asset_class)
    if instrument is None:
        if not create_instrument:
            raise _fields_error("UNKNOWN_SYMBOL", "symbol",
                                f"unknown symbol {symbol!r}; tick 'create instrument' and choose its asset class")
        if asset_class is None:
            raise _fields_error("INVALID_ASSET_CLASS", "asset_class", "required to create the instrument")
        if asset_class == AssetClass.OPTION:
            raise _fields_error("INVALID_ASSET_CLASS", "asset_class", MSG_OPTION_IMPORT)

    with transaction.atomic():
        job = ImportJob.objects.create(
            firm_id=firm_id, created_by=created_by, file_name=Path(file_name).name[:255], file_size=len(content),
            file_data=content, symbol=symbol, timeframe=timeframe, tz=str(zone), column_map=mapping,
            create_instrument=create_instrument, asset_class=asset_class or "", skip_bad_rows=skip_bad_rows,
        )
        audit_record(firm_id=firm_id, action="bars.import_queued", actor=actor, target_type="import_job",
                     target_id=job.pk, target_label=f"{symbol} {timeframe} {job.file_name}",
                     after={"file_name": job.file_name, "file_size": job.file_size, "symbol": symbol,
                            "timeframe": timeframe, "skip_bad_rows": skip_bad_rows,
                            "create_instrument": create_instrument},
                     meta=meta)
        transaction.on_commit(lambda: import_job_run_task.delay(firm_id, job.pk))
    return job


def _job_actor(job: ImportJob) -> Actor:
    member = job.created_by
    return Actor.for_user(member.user) if member is not None else Actor.system("import")


def _capped_report(report: validation.ValidationReport) -> dict:
    """The report as JSON, each list capped (ValidationReport.as_dict calls vars() on slotted Issues)."""
    data = {"rows": report.rows, "accepted": report.accepted, "rejected": report.rejected}
    for key, issues in (("errors", report.errors), ("warnings", report.warnings)):
        data[key] = [{"row": i.row, "field": i.field, "reason": i.reason} for i in issues[:IMPORT_REPORT_MAX_ISSUES]]
        if len(issues) > IMPORT_REPORT_MAX_ISSUES:
            data[f"{key}_total"] = len(issues)
    return data


def _job_finish(job: ImportJob, *, status: str, audit_action: str, **fields) -> None:
    """Write the job's outcome and its audit event (inside the caller's transaction, if any)."""
    fields.update(status=status, progress=100, finished_at=timezone.now())
    ImportJob.objects.filter(pk=job.pk).update(**fields)
    for key, value in fields.items():
        setattr(job, key, value)
    audit_record(firm_id=job.firm_id, action=audit_action, actor=_job_actor(job), target_type="import_job",
                 target_id=job.pk, target_label=f"{job.symbol} {job.timeframe} {job.file_name}",
                 after={k: fields.get(k) for k in ("status", "rows", "accepted", "rejected", "inserted", "updated",
                                                   "error_code") if k in fields})


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Run a queued job (called by the task inside the job's firm scope); idempotent.

    Claims the job under a row lock (a finished job is left alone, so a redelivered task is a no-op;
    a job left 'running' by a dead worker runs again, which the idempotent upsert makes safe). The
    bars and the job's outcome (counts, report, audit bars.imported / bars.import_failed) commit in
    one transaction: all or nothing, as bars_import_file. Progress inside that transaction goes to
    Redis (selectors.import_job_progress reads it).
    """
    from apps.marketdata.selectors import import_progress_key

    with transaction.atomic():
        job = ImportJob.objects.select_for_update(of=("self",)).select_related("created_by__user").filter(
            pk=job_id).first()
        if job is None or job.finished:
            return job
        job.status, job.started_at, job.progress = ImportStatus.RUNNING, timezone.now(), 5
        job.save(update_fields=["status", "started_at", "progress"])
    key = import_progress_key(job.firm_id, job.pk)

    def progress(done: int, total: int) -> None:
        cache.set(key, 40 + int(55 * done / max(total, 1)), timeout=3600)

    suffix = "." + IMPORT_FORMATS[Path(job.file_name).suffix.lstrip(".").lower()]
    try:
        with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
            handle.write(bytes(job.file_data))
            handle.flush()
            cache.set(key, 10, timeout=3600)
            with transaction.atomic():
                outcome = bars_import_file(
                    path=handle.name, symbol=job.symbol, timeframe=job.timeframe,
                    asset_class=job.asset_class or None, create_instrument=job.create_instrument, tz=job.tz,
                    column_map=dict(job.column_map), skip_bad_rows=job.skip_bad_rows, progress=progress,
                )
                report = outcome.report
                counts = {"rows": report.rows, "accepted": report.accepted, "rejected": report.rejected,
                          "report": _capped_report(report)}
                if outcome.ok:
                    _job_finish(job, status=ImportStatus.SUCCEEDED, audit_action="bars.imported",
                                inserted=outcome.written.inserted, updated=outcome.written.updated,
                                instrument_created=outcome.instrument_created, **counts)
                else:
                    message = MSG_REJECTED.format(rejected=report.rejected, rows=report.rows,
                                                  accepted=report.accepted)
                    _job_finish(job, status=ImportStatus.FAILED, audit_action="bars.import_failed",
                                error_code="REJECTED_ROWS", error_message=message, **counts)
    except DomainError as exc:  # a file-level problem (unreadable, a column missing) or the symbol vanished
        with transaction.atomic():
            _job_finish(job, status=ImportStatus.FAILED, audit_action="bars.import_failed", error_code=exc.code[:32],
                        error_message=exc.message)
    except Exception:
        with transaction.atomic():
            _job_finish(job, status=ImportStatus.FAILED, audit_action="bars.import_failed",
                        error_code="INTERNAL_ERROR", error_message=MSG_IMPORT_CRASHED)
        raise
    finally:
        cache.delete(key)
    return job
