"""Trade import: a CSV of past fills and cash movements from another broker, booked into a portfolio.

The flow: ``trade_import_preview`` (headers, the guessed mapping, first rows; stores nothing) ->
``trade_import_create`` (stores the file; with ``start`` the mapping is checked and the run queued)
or, for the page's mapping step, ``trade_import_create(start=False)`` then ``trade_import_start`` ->
the Celery task ``portfolios.trade_import_run`` -> ``run_import``, which checks every row first and
then books them in time order through ``booking.book_fill(source="import")`` (trades) and
``services.cash_post`` / ``booking.post_entry`` (cash). ``trade_import_file`` does it all inline
(the demo seed, scripts). Parsing, the mapping guess and the row checks are pure
(``trade_import_core``); this module adds what needs the database.

All or nothing (the default): one transaction; any bad row, or a row booking refuses, and nothing is
written; the report lists every problem found. Otherwise each row books in its own savepoint and the
bad ones are reported. Without a fill id column each row's id is ``imp:<sha256 of the file>:<row>``,
so importing the same file again is refused row by row as a duplicate, never doubled.

``TradeImport.report`` holds the upload (``source``: name, size, SHA-256, headers, the text, capped
at 20 MB) and the options while it waits, then the outcome: counts and the issues (row, field, code,
message). The text stays for the record; the API never returns it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.marketdata.models import AssetClass, Instrument
from apps.portfolios import trade_import_core as core
from apps.portfolios.booking import book_fill, post_entry
from apps.portfolios.lots import trade_date
from apps.portfolios.models import (
    Account,
    EntryKind,
    Fill,
    FillSource,
    JournalEntry,
    Portfolio,
    TradeImport,
    TradeImportStatus,
)

log = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024
PREVIEW_ROWS = 5
PROGRESS_EVERY = 25  # rows between progress writes to Redis
MSG_FILE_TOO_LARGE = f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB"
MSG_FILE_EMPTY = "the file is empty"
MSG_UNKNOWN_SYMBOL = "unknown symbol {symbol!r} (tick 'create missing instruments' to create it)"
MSG_AMBIGUOUS = "symbol {symbol!r} is several instruments ({classes}); map an asset_class column"
MSG_NO_OPTION_CREATE = "options are not created by an import: create {symbol!r} from its underlying first"
MSG_ALREADY_BOOKED = "fill id {fill_id!r} is already booked"
MSG_REJECTED = ("{rejected} of {rows} rows have problems; nothing was written (untick 'all or nothing' to import "
                "the {good} good rows)")
MSG_BOOKING_REFUSED = "row {row} was refused when booking; nothing was written"
MSG_PARTIAL = "{booked} of {rows} rows imported; {rejected} rejected"
MSG_DONE = "{booked} rows imported"
MSG_NOTHING = "no row was imported"
MSG_CRASHED = "the import stopped on an unexpected error; it has been logged and nothing was written"
MSG_STARTED = "this import has already been started"
STAGE_MAPPING, STAGE_QUEUED, STAGE_DONE = "mapping", "queued", "done"
FINISHED = (TradeImportStatus.SUCCEEDED, TradeImportStatus.FAILED)
# booking's field names -> ours, so a refusal lands on the column the user mapped
BOOKING_FIELDS = {"ts": "executed_at", "executed_at": "executed_at", "quantity": "quantity", "price": "price",
                  "fees": "fees", "fill_id": "fill_id", "side": "side", "amount": "amount", "on": "executed_at"}
CODE_FIELDS = {"FILL_OUT_OF_ORDER": "executed_at", "SHORT_NOT_ALLOWED": "quantity", "DUPLICATE_FILL": "fill_id",
               "INSUFFICIENT_CASH": "amount"}


def _file_error(message: str, code: str = "INVALID_FILE", status: int = 400) -> DomainError:
    return DomainError(code, message, fields={"file": [message]}, status_code=status)


def read_upload(content: bytes) -> core.Table:
    """The file's table, or a DomainError naming ``file`` (empty, over 20 MB, not a CSV)."""
    if not content:
        raise _file_error(MSG_FILE_EMPTY)
    if len(content) > MAX_BYTES:
        raise _file_error(MSG_FILE_TOO_LARGE, "FILE_TOO_LARGE", 413)
    try:
        return core.read_table(content)
    except core.ImportFileError as exc:
        raise _file_error(str(exc)) from None


def trade_import_preview(*, content: bytes, sample_rows: int = PREVIEW_ROWS) -> dict:
    """What the mapping step shows: the format recognised, the headers, the guessed mapping (our field
    -> the file's column), the number of data rows and the first few. Writes nothing."""
    table = read_upload(content)
    fmt, mapping = core.guess_mapping(table.headers)
    return {"format": fmt, "headers": table.headers, "mapping": mapping, "rows_total": len(table.rows),
            "sample": core.preview_rows(table, sample_rows), "sha256": core.digest(content)}


def _checked_mapping(mapping: dict | None, headers: list[str]) -> dict[str, str]:
    if not isinstance(mapping, dict):
        raise DomainError("VALIDATION_ERROR", "The mapping is an object: our field -> the file's column.",
                          fields={"mapping": ["An object."]})
    cleaned = {k: v for k, v in mapping.items() if v not in (None, "")}
    problems = core.check_mapping(cleaned, headers)
    if problems:
        raise DomainError("INVALID_MAPPING", "Invalid mapping: " + ", ".join(sorted(problems)) + ".",
                          fields=problems)
    return cleaned


def trade_import_create(*, portfolio: Portfolio, filename: str, content: bytes, actor: Actor, user=None,
                        mapping: dict | None = None, all_or_nothing: bool = True, create_missing: bool = False,
                        start: bool = True, enqueue: bool = True, meta: RequestMeta | None = None) -> TradeImport:
    """Store an upload for ``portfolio`` (the caller has checked the member may manage it).

    With ``start`` the mapping (given, else the guess) is checked now (DomainError naming
    ``mapping.<field>``, nothing stored) and the run is queued after commit (unless ``enqueue`` is
    false: the caller runs ``run_import`` itself). Without, the import waits in the mapping step for
    ``trade_import_start``. File problems are a DomainError on ``file``. Audited as
    portfolio.trade_import_queued when queued."""
    table = read_upload(content)
    fmt, guessed = core.guess_mapping(table.headers)
    chosen = guessed if mapping is None else mapping
    if start:
        chosen = _checked_mapping(chosen, table.headers)
    source = {"format": fmt, "sha256": core.digest(content), "size": len(content), "headers": table.headers,
              "text": core.decode(content)}
    with firm_scope(portfolio.firm_id), transaction.atomic():
        imp = TradeImport.objects.create(
            firm_id=portfolio.firm_id, portfolio=portfolio, filename=Path(filename or "upload.csv").name[:255],
            mapping=chosen, all_or_nothing=all_or_nothing, rows_total=len(table.rows), created_by=user,
            report={"stage": STAGE_MAPPING, "source": source, "options": {"create_missing": create_missing}},
        )
        if start:
            _queue(imp, actor, meta, enqueue)
    return imp


def trade_import_start(*, trade_import: TradeImport, mapping: dict, actor: Actor, all_or_nothing: bool = True,
                       create_missing: bool = False, meta: RequestMeta | None = None,
                       enqueue: bool = True) -> TradeImport:
    """Confirm the mapping of an import waiting in the mapping step and queue it (409 IMPORT_STARTED
    if it has left that step)."""
    with firm_scope(trade_import.firm_id), transaction.atomic():
        imp = TradeImport.objects.select_for_update().select_related("portfolio").get(pk=trade_import.pk)
        if imp.status != TradeImportStatus.PENDING or imp.report.get("stage") != STAGE_MAPPING:
            raise DomainError("IMPORT_STARTED", MSG_STARTED, status_code=409)
        imp.mapping = _checked_mapping(mapping, imp.report["source"]["headers"])
        imp.all_or_nothing = all_or_nothing
        imp.report["options"] = {"create_missing": create_missing}
        _queue(imp, actor, meta, enqueue)
    return imp


def _queue(imp: TradeImport, actor: Actor, meta: RequestMeta | None, enqueue: bool) -> None:
    imp.report["stage"] = STAGE_QUEUED
    imp.save(update_fields=["mapping", "all_or_nothing", "report"])
    source = imp.report["source"]
    audit_record(firm_id=imp.firm_id, action="portfolio.trade_import_queued", actor=actor,
                 target_type="portfolios.tradeimport", target_id=imp.pk, target_label=imp.filename,
                 after={"portfolio": imp.portfolio_id, "filename": imp.filename, "sha256": source["sha256"],
                        "size": source["size"], "rows": imp.rows_total, "mapping": imp.mapping,
                        "all_or_nothing": imp.all_or_nothing, **imp.report["options"]}, meta=meta)
    if enqueue:
        from apps.portfolios.tasks import trade_import_run

        firm_id, pk = imp.firm_id, imp.pk
        transaction.on_commit(lambda: trade_import_run.delay(firm_id, pk))


def trade_import_file(*, portfolio: Portfolio, filename: str, content: bytes, actor: Actor, user=None,
                      mapping: dict | None = None, all_or_nothing: bool = True,
                      create_missing: bool = False) -> TradeImport:
    """Import a file now, in this process (the demo seed, scripts, tests): create + run_import.
    Returns the finished import (``status``, ``rows_booked``, ``report``)."""
    imp = trade_import_create(portfolio=portfolio, filename=filename, content=content, actor=actor, user=user,
                              mapping=mapping, all_or_nothing=all_or_nothing, create_missing=create_missing,
                              enqueue=False)
    run_import(firm_id=portfolio.firm_id, import_id=imp.pk)
    with firm_scope(portfolio.firm_id):
        return TradeImport.objects.select_related("portfolio").get(pk=imp.pk)


# --- the run ------------------------------------------------------------------------------------


class _Rollback(Exception):
    """Unwinds the all-or-nothing transaction after a booking refusal."""


@dataclass
class _Plan:
    rows: list[core.Row]
    issues: list[core.Issue]
    instruments: dict[int, Instrument]  # row -> instrument (trades and dividends with a known symbol)
    to_create: dict[tuple[str, str], list[int]]  # (symbol, asset class) -> rows waiting for it


def progress_key(firm_id: int, import_id: int) -> str:
    return f"portfolios:import:{firm_id}:{import_id}:done"


def _actor(imp: TradeImport) -> Actor:
    return Actor.for_user(imp.created_by) if imp.created_by_id else Actor.system("trade import")


def run_import(*, firm_id: int, import_id: int) -> dict:
    """Run a queued import (the Celery task calls it; safe to call twice: a finished import, one still
    in the mapping step, or one another worker is running is left alone; one left 'running' by a dead
    worker runs again — its transaction was rolled back with it). Returns a summary dict."""
    with firm_scope(firm_id), _run_lock(import_id) as acquired:
        if not acquired:
            return {"import": import_id, "status": TradeImportStatus.RUNNING}
        with transaction.atomic():
            imp = (TradeImport.objects.select_for_update(of=("self",)).select_related("portfolio", "created_by")
                   .filter(pk=import_id).first())
            if imp is None:
                return {"import": import_id, "status": "missing"}
            if imp.status in FINISHED or imp.report.get("stage") != STAGE_QUEUED:
                return _summary(imp)
            imp.status = TradeImportStatus.RUNNING
            imp.save(update_fields=["status"])
        key = progress_key(firm_id, imp.pk)
        cache.set(key, 0, timeout=3600)
        try:
            _run(imp, key)
        except Exception:
            log.exception("trade import %s crashed", imp.pk)
            with transaction.atomic():
                _finish(imp, status=TradeImportStatus.FAILED, outcome="failed", message=MSG_CRASHED, rows=0,
                        booked=0, issues=[])
            raise
        finally:
            cache.delete(key)
        return _summary(imp)


RUN_LOCK_SPACE = 0x7472  # advisory locks (int4, int4): this space and the import id; booking uses int8 keys


@contextmanager
def _run_lock(import_id: int):
    """A session lock held while one worker runs the import (a redelivered task finds it taken)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_SPACE, import_id & 0x7FFFFFFF])
        acquired = cur.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_SPACE, import_id & 0x7FFFFFFF])


def _summary(imp: TradeImport) -> dict:
    return {"import": imp.pk, "status": imp.status, "rows": imp.rows_total, "booked": imp.rows_booked,
            "rejected": imp.report.get("rejected", 0)}


def _run(imp: TradeImport, key: str) -> None:
    source = imp.report["source"]
    create_missing = bool(imp.report.get("options", {}).get("create_missing"))
    try:
        table = core.read_table(source["text"].encode("utf-8"))
    except core.ImportFileError as exc:
        with transaction.atomic():
            _finish(imp, status=TradeImportStatus.FAILED, outcome="failed", message=str(exc), rows=0, booked=0,
                    issues=[core.Issue(0, "file", str(exc), "INVALID_FILE")])
        return
    parsed = core.parse_rows(table, imp.mapping, file_digest=source["sha256"], now=timezone.now())
    plan = _plan(imp.portfolio, parsed, create_missing)
    total = parsed.total
    bad_rows = {i.row for i in plan.issues}
    ordered = core.chronological([r for r in plan.rows if r.row not in bad_rows])
    actor = _actor(imp)

    if imp.all_or_nothing:
        if plan.issues:
            good = total - len(bad_rows)
            with transaction.atomic():
                _finish(imp, status=TradeImportStatus.FAILED, outcome="rejected", rows=total, booked=0,
                        issues=plan.issues, message=MSG_REJECTED.format(rejected=len(bad_rows), rows=total, good=good))
            return
        refused: list[core.Issue] = []
        try:
            with transaction.atomic():
                created = _create_instruments(plan, refused)
                if refused:
                    raise _Rollback
                for done, row in enumerate(ordered, 1):
                    issue = _book_row(imp, row, plan.instruments.get(row.row), actor)
                    if issue is not None:
                        refused.append(issue)
                        raise _Rollback
                    _progress(key, done)
                _finish(imp, status=TradeImportStatus.SUCCEEDED, outcome="imported", rows=total, booked=len(ordered),
                        issues=[], message=MSG_DONE.format(booked=len(ordered)), created=created)
        except _Rollback:
            with transaction.atomic():
                _finish(imp, status=TradeImportStatus.FAILED, outcome="rejected", rows=total, booked=0,
                        issues=refused, message=MSG_BOOKING_REFUSED.format(row=refused[0].row))
        return

    issues = list(plan.issues)
    booked = 0
    with transaction.atomic():
        created = _create_instruments(plan, issues)
        failed = {i.row for i in issues}
        for done, row in enumerate(ordered, 1):
            if row.row in failed:
                continue
            issue = _book_row(imp, row, plan.instruments.get(row.row), actor)
            if issue is None:
                booked += 1
            else:
                issues.append(issue)
            _progress(key, done)
        rejected = len({i.row for i in issues})
        if booked and not issues:
            status, outcome, message = TradeImportStatus.SUCCEEDED, "imported", MSG_DONE.format(booked=booked)
        elif booked:
            status, outcome = TradeImportStatus.SUCCEEDED, "partial"
            message = MSG_PARTIAL.format(booked=booked, rows=total, rejected=rejected)
        else:
            status, outcome, message = TradeImportStatus.FAILED, "rejected", MSG_NOTHING
        _finish(imp, status=status, outcome=outcome, rows=total, booked=booked, issues=issues, message=message,
                created=created)


def _progress(key: str, done: int) -> None:
    if done % PROGRESS_EVERY == 0:
        cache.set(key, done, timeout=3600)


def _plan(portfolio: Portfolio, parsed: core.Parsed, create_missing: bool) -> _Plan:
    """The database checks of every parsed row: symbols (or the instruments to create) and fill ids
    already booked."""
    issues = list(parsed.issues)
    symbols = {r.symbol for r in parsed.rows if r.symbol}
    known: dict[str, list[Instrument]] = {}
    for inst in Instrument.objects.filter(symbol__in=symbols):
        known.setdefault(inst.symbol, []).append(inst)
    instruments: dict[int, Instrument] = {}
    to_create: dict[tuple[str, str], list[int]] = {}
    for r in parsed.rows:
        if not r.symbol:
            continue
        matches = [i for i in known.get(r.symbol, []) if not r.asset_class or i.asset_class == r.asset_class]
        if len(matches) == 1:
            instruments[r.row] = matches[0]
        elif len(matches) > 1:
            if r.kind == core.TRADE:
                classes = ", ".join(sorted(i.asset_class for i in matches))
                issues.append(core.Issue(r.row, "symbol", MSG_AMBIGUOUS.format(symbol=r.symbol, classes=classes),
                                         "AMBIGUOUS_SYMBOL"))
        elif r.kind == core.TRADE:  # a dividend's symbol is only a label when we do not know it
            asset_class = r.asset_class or AssetClass.EQUITY
            if not create_missing:
                issues.append(core.Issue(r.row, "symbol", MSG_UNKNOWN_SYMBOL.format(symbol=r.symbol),
                                         "UNKNOWN_SYMBOL"))
            elif asset_class == AssetClass.OPTION:
                issues.append(core.Issue(r.row, "symbol", MSG_NO_OPTION_CREATE.format(symbol=r.symbol),
                                         "UNKNOWN_SYMBOL"))
            else:
                to_create.setdefault((r.symbol, asset_class), []).append(r.row)
    trade_ids = [r.fill_id for r in parsed.rows if r.kind == core.TRADE]
    cash_ids = [r.fill_id for r in parsed.rows if r.kind != core.TRADE]
    booked: set[str] = set()
    for chunk in _chunks(trade_ids):
        booked.update(Fill.objects.filter(firm_id=portfolio.firm_id, fill_id__in=chunk)
                      .values_list("fill_id", flat=True))
    for chunk in _chunks(cash_ids):
        booked.update(JournalEntry.objects.filter(portfolio_id=portfolio.pk, idempotency_key__in=chunk)
                      .values_list("idempotency_key", flat=True))
    for r in parsed.rows:
        if r.fill_id in booked:
            issues.append(core.Issue(r.row, "fill_id", MSG_ALREADY_BOOKED.format(fill_id=r.fill_id),
                                     "DUPLICATE_FILL"))
    issues.sort(key=lambda i: i.row)  # stable: a row's issues stay in the order found
    return _Plan(parsed.rows, issues, instruments, to_create)


def _chunks(items: list[str], size: int = 5000):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _create_instruments(plan: _Plan, issues: list[core.Issue]) -> list[str]:
    """Create the missing instruments (global reference data; inside the import's transaction, so
    an all-or-nothing failure leaves none behind)."""
    from apps.marketdata.services import instrument_create

    created = []
    for (symbol, asset_class), rows in sorted(plan.to_create.items()):
        try:
            with transaction.atomic():
                inst = instrument_create(symbol=symbol, asset_class=asset_class, fractionable=True,
                                         shortable=asset_class != AssetClass.CRYPTO)
        except DomainError as exc:
            issues.extend(core.Issue(row, "symbol", exc.message, exc.code) for row in rows)
            continue
        created.append(f"{symbol} ({asset_class})")
        for row in rows:
            plan.instruments[row] = inst
    return created


def _book_row(imp: TradeImport, row: core.Row, instrument: Instrument | None, actor: Actor) -> core.Issue | None:
    """Book one row in a savepoint; a refusal comes back as the row's issue."""
    from apps.portfolios.services import cash_post

    portfolio = imp.portfolio
    try:
        with transaction.atomic():
            if row.kind == core.TRADE:
                book_fill(portfolio=portfolio, instrument=instrument, side=row.side, quantity=row.quantity,
                          price=row.price, executed_at=row.executed_at, fill_id=row.fill_id, fees=row.fees,
                          source=FillSource.IMPORT, order_ref=f"import:{imp.pk}", actor=actor)
            elif row.kind == core.DIVIDEND:
                _post_dividend(imp, row, instrument, actor)
            else:
                memo = row.memo or f"import {imp.pk} row {row.row}"
                entry = cash_post(portfolio=portfolio, kind=row.kind, amount=row.amount, actor=actor,
                                  on=trade_date(row.executed_at), memo=memo, idempotency_key=row.fill_id)
                if entry is None:
                    raise DomainError("DUPLICATE_FILL", MSG_ALREADY_BOOKED.format(fill_id=row.fill_id))
    except DomainError as exc:
        field = next((BOOKING_FIELDS[f] for f in exc.fields if f in BOOKING_FIELDS), None)
        message = exc.message
        if instrument is not None:  # the lot engine names instruments by id; the report speaks symbols
            message = message.replace(f" {instrument.pk} ", f" {instrument.symbol} ")
        return core.Issue(row.row, field or CODE_FIELDS.get(exc.code, "row"), message, exc.code)
    return None


def _post_dividend(imp: TradeImport, row: core.Row, instrument: Instrument | None, actor: Actor) -> None:
    on = trade_date(row.executed_at)
    memo = row.memo or f"dividend {row.symbol}".strip()
    entry_id = post_entry(firm_id=imp.firm_id, portfolio_id=imp.portfolio_id, kind=EntryKind.DIVIDEND, trade_date=on,
                          settle_date=on, now=timezone.now(), memo=memo, idempotency_key=row.fill_id,
                          instrument_id=instrument.pk if instrument else None, created_by_id=actor.user_id,
                          lines=[(Account.CASH, row.amount, ""), (Account.DIVIDENDS, -row.amount, row.symbol)])
    if entry_id is None:
        raise DomainError("DUPLICATE_FILL", MSG_ALREADY_BOOKED.format(fill_id=row.fill_id))
    audit_record(firm_id=imp.firm_id, action="portfolio.cash_dividend", actor=actor,
                 target_type="portfolios.journalentry", target_id=entry_id, target_label=imp.portfolio.name,
                 after={"portfolio": imp.portfolio_id, "kind": "dividend", "amount": str(row.amount),
                        "on": on.isoformat(), "symbol": row.symbol, "memo": memo})


def _finish(imp: TradeImport, *, status: str, outcome: str, message: str, rows: int, booked: int,
            issues: list[core.Issue], created: list[str] | None = None) -> None:
    """Store the outcome and audit it (inside the caller's transaction)."""
    rejected = len({i.row for i in issues if i.row})
    report = dict(imp.report)
    report.update(stage=STAGE_DONE, outcome=outcome, message=message, rows=rows, booked=booked, rejected=rejected,
                  issues=[i.as_dict() for i in issues[:core.MAX_ISSUES]], issues_total=len(issues),
                  instruments_created=created or [])
    imp.status, imp.report, imp.finished_at = status, report, timezone.now()
    imp.rows_total, imp.rows_done, imp.rows_booked = rows or imp.rows_total, rows, booked
    imp.save(update_fields=["status", "report", "finished_at", "rows_total", "rows_done", "rows_booked"])
    action = "portfolio.trades_imported" if status == TradeImportStatus.SUCCEEDED else "portfolio.trade_import_failed"
    audit_record(firm_id=imp.firm_id, action=action, actor=_actor(imp), target_type="portfolios.tradeimport",
                 target_id=imp.pk, target_label=imp.filename,
                 after={"portfolio": imp.portfolio_id, "filename": imp.filename, "sha256": report["source"]["sha256"],
                        "rows": rows, "booked": booked, "rejected": rejected, "outcome": outcome,
                        "all_or_nothing": imp.all_or_nothing, "instruments_created": created or []})


# --- reads ----------------------------------------------------------------------------------------


def trade_import_list(portfolio: Portfolio) -> QuerySet[TradeImport]:
    """A portfolio's imports, newest first, without the stored file and report."""
    return (TradeImport.objects.filter(portfolio_id=portfolio.pk).defer("report").select_related("created_by")
            .order_by("-created_at", "-id"))


def trade_import_get(*, membership, pk, perm: str | None = None) -> TradeImport:
    """An import of the member's firm on a portfolio they may view (Http404 otherwise, the same for
    another firm's); PermissionDenied when they lack ``perm`` on its portfolio."""
    from django.http import Http404

    from apps.portfolios.selectors import VIEW, portfolio_for

    try:
        imp = TradeImport.objects.filter(firm_id=membership.firm_id).select_related("created_by").get(pk=int(pk))
    except (TradeImport.DoesNotExist, TypeError, ValueError):
        raise Http404("No such import.") from None
    imp.portfolio = portfolio_for(membership, imp.portfolio_id, perm=perm or VIEW)
    return imp


def trade_import_progress(imp: TradeImport) -> tuple[int, int]:
    """(rows done, rows total): a running import's figure is in Redis (its bookings commit at the end)."""
    if imp.status == TradeImportStatus.RUNNING:
        live = cache.get(progress_key(imp.firm_id, imp.pk))
        return (int(live) if live is not None else 0), imp.rows_total
    if imp.status in FINISHED:
        return imp.rows_total, imp.rows_total
    return 0, imp.rows_total


def report_rows(imp: TradeImport) -> dict:
    """The report without the stored file (what the API and the page show)."""
    report = imp.report or {}
    source = report.get("source", {})
    return {
        "stage": report.get("stage", ""),
        "format": source.get("format", ""),
        "sha256": source.get("sha256", ""),
        "size": source.get("size", 0),
        "headers": source.get("headers", []),
        "create_missing": bool(report.get("options", {}).get("create_missing")),
        "outcome": report.get("outcome", ""),
        "message": report.get("message", ""),
        "rows": report.get("rows", imp.rows_total),
        "booked": report.get("booked", 0),
        "rejected": report.get("rejected", 0),
        "issues": report.get("issues", []),
        "issues_total": report.get("issues_total", 0),
        "instruments_created": report.get("instruments_created", []),
    }

