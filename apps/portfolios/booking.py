"""The booking service: the one writer of fills, journal, lots, realized gains and positions.

``book_fill`` books one execution into a portfolio in one transaction:

1. take a transaction-level advisory lock on (tax entity, instrument) — wash sales link every
   portfolio of a tax entity, so that pair is the unit two bookings must not interleave in;
   other instruments book in parallel;
2. restore the pure engine (``wash.TaxLotEngine``) for that pair from the stored lots this fill can
   touch (``_lots_needed``) and the unwashed losses of the last 30 days, and apply the fill (this
   validates everything and raises before anything is written);
3. write the fill (its unique (firm, fill_id) refuses a second booking), the journal entry with its
   lines, the lots it opened/closed/split/adjusted, the realized-gain records (and the earlier
   ones it washed, audited), the position, and the audit event.

Usually three round trips: the lock with every read (``_lock_and_read``), every write with the
audit chain's head (``_write``), and the audit event.

Callers: ``apps.orders`` for every execution (inside its own transaction with the order's state
change: this nests as a savepoint), trade imports, corporate actions' cash in lieu, and the demo.
The statements are few and set-based on purpose: the issue's aim is 1,000 fills/s per writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.models import MANAGE_ROLES
from apps.audit.services import Actor, RequestMeta, audit_record, chain_head_from, chain_head_sql
from apps.core.errors import DomainError
from apps.core.events import publish_firm_event
from apps.core.tenancy import firm_scope
from apps.marketdata.models import AssetClass, Instrument
from apps.portfolios import lots as core
from apps.portfolios.models import (
    Account,
    EntryKind,
    Fill,
    FillSource,
    Lot,
    Portfolio,
    RealizedGain,
)
from apps.portfolios.settlement import settlement_date
from apps.portfolios.wash import Policy, TaxLotEngine

ZERO = Decimal(0)
LOCK_SPACE = 1 << 32


@dataclass(frozen=True)
class BookedFill:
    fill: Fill
    gains: tuple[core.RealizedGain, ...]
    washed: tuple[core.RealizedGain, ...]  # earlier records this fill washed
    realized: Decimal  # economic realized P&L of this fill (before wash-sale adjustments)
    position_quantity: Decimal


def lock_pair(tax_entity_id: int, instrument_id: int) -> None:
    """Serialize bookings of one instrument within one tax entity until the transaction ends."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [tax_entity_id * LOCK_SPACE + instrument_id])


@lru_cache(maxsize=4096)
def _settles(trade_date: date, asset_class: str, exchange: str) -> date:
    return settlement_date(trade_date, asset_class, exchange)


def multiplier_of(instrument: Instrument) -> int:
    if instrument.asset_class == AssetClass.OPTION:
        return instrument.multiplier or 100
    return 1


def signed_cost(lots) -> Decimal:
    """Book cost of open lots as the SECURITIES account carries it: long lots' cost paid, minus
    short lots' proceeds received."""
    return sum((lot.cost if lot.quantity > 0 else -lot.cost for lot in lots), ZERO)


def _domain(exc: core.LotError) -> DomainError:
    status = 409 if isinstance(exc, core.DuplicateFill) else 400
    return DomainError(exc.code, exc.message, fields=exc.fields, status_code=status)


def policies_for(tax_entity_id: int) -> dict[int, Policy]:
    rows = Portfolio.objects.filter(tax_entity_id=tax_entity_id).values_list(
        "id", "cost_basis_method", "allow_short")
    return {pid: Policy(core.Method(method), allow_short) for pid, method, allow_short in rows}


def lot_to_core(row: Lot) -> core.Lot:
    """A stored lot (annotated with ``origin_fill_fill_id``, see ``open_lot_rows``) for the engine."""
    return core.Lot(row.lot_id, row.portfolio_id, row.instrument_id, row.quantity, row.cost, row.basis_adjustment,
                    row.acquired, row.holding_start, row.origin_fill_fill_id, row.replacement_used, row.splits)


def open_lot_rows(tax_entity_id: int, instrument_id: int) -> list[Lot]:
    """The entity's open lots of one instrument in book order, annotated with ``origin_fill_fill_id``:
    by opening fill, and the parts split off a lot before the lot itself (``LotBook.insert_before``)."""
    from django.db.models import F

    rows = (Lot.objects.filter(tax_entity_id=tax_entity_id, instrument_id=instrument_id).exclude(quantity=0)
            .annotate(origin_fill_fill_id=F("origin_fill__fill_id")))
    return sorted(rows, key=lambda r: (r.origin_fill_id, r.part == 0, r.part))


def book_fill(
    *,
    portfolio: Portfolio,
    instrument: Instrument,
    side: str,
    quantity: Decimal,
    price: Decimal,
    executed_at: datetime,
    fill_id: str,
    fees: Decimal = ZERO,
    lot_ids: tuple[str, ...] | list[str] = (),
    source: str = FillSource.ORDER,
    order_ref: str = "",
    actor: Actor,
    meta: RequestMeta | None = None,
    now: datetime | None = None,
) -> BookedFill:
    """Book one execution. Raises ``DomainError`` (nothing written) for a duplicate fill id (409,
    DUPLICATE_FILL), a malformed fill, a sale beyond the position in a portfolio that does not
    allow shorts, unknown specific lots, or a fill dated before the last one booked for this
    instrument in the tax entity (rebuild to insert history)."""
    if not fill_id or len(str(fill_id)) > 128:
        raise DomainError("INVALID_FILL", "A fill id of 1 to 128 characters is required.", fields={"fill_id": ["Required."]})
    if isinstance(executed_at, datetime) and executed_at.tzinfo is not None:
        now = now or timezone.now()
        if executed_at > now + timedelta(minutes=5):
            raise DomainError("INVALID_FILL", "A fill cannot be dated in the future.",
                              fields={"executed_at": [executed_at.isoformat()]})
    instrument_id = instrument.pk
    fill_in = core.Fill(str(fill_id), portfolio.pk, instrument_id, core.Side(side) if side in ("buy", "sell") else side,
                        quantity, price, executed_at, fees, multiplier_of(instrument), tuple(lot_ids))
    try:
        core.validate_fill(fill_in)
    except core.LotError as exc:
        raise _domain(exc) from None
    entity_id = portfolio.tax_entity_id
    firm_id = portfolio.firm_id
    now = now or timezone.now()
    trade_day = core.trade_date(executed_at)
    settle_day = _settles(trade_day, instrument.asset_class, instrument.exchange)

    with firm_scope(firm_id), transaction.atomic():
        policies, held, last_ts, lot_rows, losses = _lock_and_read(
            entity_id, portfolio, instrument_id, side, quantity, fill_in.lot_ids, trade_day)
        policy = policies.get(portfolio.pk) or Policy()
        if lot_rows is None:  # the first round trip could not guess which lots this fill needs
            closing = min(quantity, abs(held)) if (side == "buy" and held < 0) or (side == "sell" and held > 0) \
                else ZERO
            lot_rows = _read_lots(_lots_needed(entity_id, portfolio.pk, instrument_id, policies, policy, held,
                                               closing, fill_in.lot_ids, trade_day))
        engine = TaxLotEngine.restore(lots=[row[0] for row in lot_rows], pending_losses=losses, policies=policies,
                                      last_ts=last_ts)
        book = engine.book(portfolio.pk, instrument_id)
        book.position = held  # the book may hold only the lots this fill can touch (see _lots_needed)
        cost_before = signed_cost(book.lots)
        try:
            result = engine.apply(fill_in)
        except core.LotError as exc:
            raise _domain(exc) from None
        cost_after = signed_cost(book.lots)

        securities = cost_after - cost_before
        gross = quantity * price * fill_in.multiplier
        principal = -gross if side == "buy" else gross
        realized = -(securities + principal - fees)  # lines sum to zero; a gain is a credit to REALIZED
        lines = [(Account.CASH, principal, "principal"), (Account.SECURITIES, securities, "")]
        if fees:
            lines.append((Account.CASH, -fees, "fees and commissions"))
        if realized:
            lines.append((Account.REALIZED, realized, ""))
        by_fill_id = {lot.origin_fill_id: seq for lot, seq, _ in lot_rows}
        position_qty = book.position
        changed = result.lots
        if policy.method is core.Method.AVERAGE:  # opening re-averaged every lot of the book
            changed = tuple({lot.lot_id: lot for lot in (*result.lots, *book.snapshot())}.values())
        seq, head = _write(fill_in, portfolio, instrument, trade_day, settle_day, source, order_ref, now, lines,
                           changed, result.gains, by_fill_id, position_qty, securities, -realized)
        fill = Fill(seq=seq, firm_id=firm_id, fill_id=fill_in.fill_id, portfolio_id=portfolio.pk,
                    tax_entity_id=entity_id, instrument_id=instrument_id, side=side, quantity=quantity, price=price,
                    fees=fees, multiplier=fill_in.multiplier, executed_at=executed_at, trade_date=trade_day,
                    settle_date=settle_day, lot_ids=list(fill_in.lot_ids), source=source, order_ref=order_ref or "",
                    created_at=now)
        for washed in result.updated_gains:
            _update_washed_gain(washed, firm_id, actor, meta, now)
        audit_record(
            firm_id=firm_id, action="portfolio.fill_booked", actor=actor, target_type="portfolios.fill",
            target_id=fill.seq, target_label=f"{side} {quantity} {instrument.symbol} @ {price}",
            after={"portfolio": portfolio.pk, "fill_id": fill.fill_id, "instrument": instrument.symbol, "side": side,
                   "quantity": str(quantity), "price": str(price), "fees": str(fees),
                   "executed_at": executed_at.isoformat(), "realized": str(-realized),
                   "lots_closed": [g.lot_id for g in result.gains]},
            meta=meta, head=None if result.updated_gains else head,
            publish=False,  # the portfolio.fill event below is the live notification
        )
        # a restricted portfolio's trades go only to owners and admins: grants are per member, and the
        # firm stream filters by role (members with a grant reload the page to see new fills)
        publish_firm_event(firm_id=firm_id, kind="portfolio.fill", sequenced=False,
                           roles=MANAGE_ROLES if portfolio.restricted else None, payload={
            "portfolio": portfolio.pk, "instrument": instrument.symbol, "side": side, "quantity": str(quantity),
            "price": str(price), "position": str(position_qty)})
    return BookedFill(fill, tuple(result.gains), tuple(result.updated_gains), -realized, position_qty)


# -- the reads: only what this fill can touch -----------------------------------------------------

_LOT_COLUMNS = ("l.lot_id, l.portfolio_id, l.instrument_id, l.quantity, l.cost, l.basis_adjustment, l.acquired,"
                " l.holding_start, f.fill_id, l.replacement_used, l.splits, l.origin_fill_id, l.part")
_BOOK_ORDER = "l.origin_fill_id {0}, (l.part = 0) {0}, l.part {0}"  # parts sit before their lot (insert_before)
_LOTS_BASE = (f"SELECT {_LOT_COLUMNS} FROM portfolios_lot l JOIN portfolios_fill f ON f.seq = l.origin_fill_id"
              " WHERE l.instrument_id = %s AND l.quantity <> 0")


def _lock_and_read(entity_id: int, portfolio, instrument_id: int, side: str, quantity: Decimal, lot_ids,
                   trade_day: date):
    """Take the (entity, instrument) lock and read everything the engine needs, in one round trip:
    the policies of the entity's portfolios, this position's quantity, the last fill's time, and,
    guessing the portfolio uses FIFO or LIFO (it is checked against the policies read), the lots the
    fill can touch (``_lots_needed``) and the pending losses a purchase may wash. Statements sent
    together run one after another, each with its own snapshot, so every read sees all that was
    committed before the lock was granted. Returns lot rows None when the guess was wrong (average
    cost in the entity, HIFO, specific lots): the caller then reads them with ``_lots_needed``."""
    method = core.Method(portfolio.cost_basis_method)
    guess = method in (core.Method.FIFO, core.Method.LIFO) and not lot_ids
    sql = [
        "SELECT pg_advisory_xact_lock(%s)",
        "SELECT (SELECT json_agg(json_build_array(id, cost_basis_method, allow_short))"
        " FROM portfolios_portfolio WHERE tax_entity_id = %s),"
        " (SELECT quantity FROM portfolios_position WHERE portfolio_id = %s AND instrument_id = %s),"
        " (SELECT max(executed_at) FROM portfolios_fill WHERE tax_entity_id = %s AND instrument_id = %s)",
    ]
    params: list = [entity_id * LOCK_SPACE + instrument_id, entity_id, portfolio.pk, instrument_id, entity_id,
                    instrument_id]
    if guess:
        lots_sql, lots_params = _closing_lots_query(portfolio.pk, instrument_id, side, quantity, method)
        if side == "sell":  # a long sale may be a loss: its possible replacements
            since = datetime.combine(trade_day - timedelta(days=31), datetime.min.time(), tzinfo=UTC)
            lots_sql = (f"({lots_sql}) UNION ({_LOTS_BASE} AND l.tax_entity_id = %s AND l.quantity > 0"
                        " AND NOT l.replacement_used AND l.acquired >= %s)")
            lots_params = [*lots_params, instrument_id, entity_id, since]
        sql.append(lots_sql)
        params += lots_params
    if side == "buy":
        losses_sql, losses_params = _pending_losses(entity_id, instrument_id, trade_day)
        sql.append(losses_sql)
        params += losses_params
    with connection.cursor() as cur:
        cur.execute("; ".join(sql), params)
        cur.nextset()
        rows, held, last_ts = cur.fetchone()
        lot_rows = None
        if guess:
            cur.nextset()
            lot_rows = _lot_rows(cur)
        losses = []
        if side == "buy":
            cur.nextset()
            losses = [core.RealizedGain(*r) for r in cur.fetchall()]
    policies = {pid: Policy(core.Method(m), allow_short) for pid, m, allow_short in rows or ()}
    if lot_rows is not None:
        actual = policies.get(portfolio.pk)
        if actual is None or actual.method is not method or any(
                p.method is core.Method.AVERAGE for p in policies.values()):
            lot_rows = None  # the guess was wrong: read the right lots in a second round trip
        else:
            lot_rows.sort(key=lambda r: (r[1], r[2] == 0, r[2]))
    return policies, held if held is not None else ZERO, last_ts, lot_rows, losses


def _closing_lots_query(portfolio_id: int, instrument_id: int, side: str, quantity: Decimal,
                        method: core.Method) -> tuple[str, list]:
    """FIFO (oldest first) or LIFO (newest first) open lots of the book, as many as the fill closes;
    none when it closes nothing. The quantity closed comes from the position row, inside the query."""
    order = _BOOK_ORDER.format("DESC" if method is core.Method.LIFO else "ASC")
    closing_sign = 1 if side == "sell" else -1  # a sale closes a long position, a purchase a short one
    return (
        f"SELECT {_LOT_COLUMNS.replace('l.', 'x.').replace('f.fill_id', 'x.fill_id')} FROM ("
        f" SELECT l.*, f.fill_id, SUM(abs(l.quantity)) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING)"
        " - abs(l.quantity) AS before FROM portfolios_lot l JOIN portfolios_fill f ON f.seq = l.origin_fill_id"
        " WHERE l.portfolio_id = %s AND l.instrument_id = %s AND l.quantity <> 0) x"
        " WHERE x.before < (SELECT CASE WHEN sign(p.quantity) = %s THEN LEAST(%s::numeric, abs(p.quantity)) ELSE 0 END"
        " FROM portfolios_position p WHERE p.portfolio_id = %s AND p.instrument_id = %s)",
        [portfolio_id, instrument_id, closing_sign, quantity, portfolio_id, instrument_id])


def _lot_rows(cur) -> list[tuple[core.Lot, int, int]]:
    """(lot, its opening fill's seq, its part number) per row."""
    return [(core.Lot(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]), r[11], r[12])
            for r in cur.fetchall()]


def _lots_needed(entity_id, portfolio_id, instrument_id, policies, policy, held, closing, lot_ids,
                 trade_day) -> tuple[str, list] | None:
    """The query of the open lots the engine needs for this fill (see ``_read_lots``).

    A fill can only touch: the lots it closes (FIFO: the oldest covering the quantity, LIFO: the
    newest; HIFO and specific identification choose among all of the book's lots) and, for a loss
    sale, the entity's shares bought in the 30 days before it (wash-sale replacements). Loading just
    those keeps booking independent of how many lots a position has accumulated. Average cost
    re-averages whole books, so an entity using it loads everything."""
    everything = any(p.method is core.Method.AVERAGE for p in policies.values())
    base = _LOTS_BASE
    queries: list[tuple[str, list]] = []
    if everything:
        queries.append((base + " AND l.tax_entity_id = %s", [instrument_id, entity_id]))
    elif closing:
        if policy.method in (core.Method.FIFO, core.Method.LIFO) and not lot_ids:
            order = _BOOK_ORDER.format("DESC" if policy.method is core.Method.LIFO else "ASC")
            queries.append((
                f"SELECT {_LOT_COLUMNS.replace('l.', 'x.').replace('f.fill_id', 'x.fill_id')} FROM ("
                f" SELECT l.*, f.fill_id, SUM(abs(l.quantity)) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING)"
                " - abs(l.quantity) AS before FROM portfolios_lot l JOIN portfolios_fill f ON f.seq = l.origin_fill_id"
                " WHERE l.portfolio_id = %s AND l.instrument_id = %s AND l.quantity <> 0) x WHERE x.before < %s",
                [portfolio_id, instrument_id, closing]))
        else:
            queries.append((base + " AND l.portfolio_id = %s", [instrument_id, portfolio_id]))
        if held > 0:  # a long sale may be a loss: its possible replacements
            since = datetime.combine(trade_day - timedelta(days=31), datetime.min.time(), tzinfo=UTC)
            queries.append((base + " AND l.tax_entity_id = %s AND l.quantity > 0 AND NOT l.replacement_used"
                                   " AND l.acquired >= %s", [instrument_id, entity_id, since]))
    if not queries:
        return None
    sql = " UNION ".join(f"({q})" for q, _ in queries) if len(queries) > 1 else queries[0][0]
    return sql, [p for _, params in queries for p in params]


def _read_lots(lots_query: tuple[str, list] | None) -> list[tuple[core.Lot, int, int]]:
    """Run a ``_lots_needed`` query: lot rows in book order, each with its opening fill's seq and part."""
    if lots_query is None:
        return []
    with connection.cursor() as cur:
        cur.execute(*lots_query)
        rows = _lot_rows(cur)
    rows.sort(key=lambda r: (r[1], r[2] == 0, r[2]))
    return rows


def _pending_losses(entity_id: int, instrument_id: int, trade_day: date) -> tuple[str, list]:
    """Loss sales of the last 30 days not yet fully washed: a purchase now may replace their shares."""
    return (
            "SELECT g.gain_id, f.fill_id, g.lot_id, g.lot_origin_fill_id, g.portfolio_id, g.instrument_id, g.direction,"
            " g.quantity, g.acquired, g.sold, g.sold_date, g.holding_start, g.proceeds, g.cost_basis, g.gain, g.term,"
            " g.wash_code, g.disallowed, g.washed_quantity FROM portfolios_realizedgain g"
            " JOIN portfolios_fill f ON f.seq = g.fill_id"
            " WHERE g.tax_entity_id = %s AND g.instrument_id = %s AND g.gain < 0 AND g.sold_date >= %s"
            " AND g.direction = 'long' AND g.washed_quantity < g.quantity ORDER BY g.fill_id, g.id",
            [entity_id, instrument_id, trade_day - timedelta(days=31)])


# -- the writes, each one statement -------------------------------------------------------------


def _write(f: core.Fill, portfolio, instrument, trade_day, settle_day, source, order_ref, now, lines, lots, gains,
           by_fill_id: dict[str, int], position_qty, cost_delta, realized) -> int:
    """Every row of one booking in one statement (data-modifying CTEs hanging off the fill insert):
    the fill, its journal entry and lines, the lots it opened or changed, its realized gains and the
    position. A duplicate fill id inserts nothing at all and raises DUPLICATE_FILL. Returns the fill's seq
    and the audit chain's head (see ``audit_record(head=...)``)."""
    firm_id, entity_id, instrument_id = portfolio.firm_id, portfolio.tax_entity_id, instrument.pk
    params: list = [firm_id, f.fill_id, portfolio.pk, entity_id, instrument_id, str(f.side), f.quantity, f.price,
                    f.fees, f.multiplier, f.ts, trade_day, settle_day, json.dumps(list(f.lot_ids)), source,
                    order_ref or "", now]
    sql = [
        "WITH f AS (INSERT INTO portfolios_fill (firm_id, fill_id, portfolio_id, tax_entity_id, instrument_id, side,"
        " quantity, price, fees, multiplier, executed_at, trade_date, settle_date, lot_ids, source, order_ref,"
        " created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s,%s,%s)"
        " ON CONFLICT (firm_id, fill_id) DO NOTHING RETURNING seq),"
        " e AS (INSERT INTO portfolios_journalentry (firm_id, portfolio_id, kind, trade_date, settle_date, posted_at,"
        " memo, fill_id, idempotency_key) SELECT %s, %s, %s, %s::date, %s::date, %s::timestamptz, %s, f.seq, ''"
        " FROM f RETURNING id),"
    ]
    params += [firm_id, portfolio.pk, EntryKind.TRADE.value, trade_day, settle_day, now,
               f"{f.side} {f.quantity} @ {f.price}"]
    sql.append(
        " jl AS (INSERT INTO portfolios_journalline (entry_id, firm_id, portfolio_id, account, amount, instrument_id,"
        " trade_date, settle_date, memo) SELECT e.id, %s, %s, l.account, l.amount, %s, %s::date, %s::date, l.memo"
        " FROM e, (VALUES " + ", ".join(["(%s::varchar, %s::numeric, %s::varchar)"] * len(lines)) +
        ") AS l(account, amount, memo))")
    params += [firm_id, portfolio.pk, instrument_id, trade_day, settle_day]
    for account, amount, memo in lines:
        params += [str(account), amount, memo]
    if lots:
        rows = []
        for lot in lots:
            part = int(lot.lot_id[len(lot.origin_fill_id) + 1:]) if lot.lot_id != lot.origin_fill_id else 0
            rows.append("(%s::int, %s::varchar, %s::bigint, %s::int, %s::numeric, %s::numeric, %s::numeric,"
                        " %s::timestamptz, %s::date, %s::bool, %s::int, %s::timestamptz)")
            params += [lot.portfolio_id, lot.lot_id, by_fill_id.get(lot.origin_fill_id), part, lot.quantity, lot.cost,
                       lot.basis_adjustment, lot.acquired, lot.holding_start, lot.replacement_used, lot.splits,
                       now if lot.quantity == 0 else None]
        sql.append(
            ", lo AS (INSERT INTO portfolios_lot (firm_id, portfolio_id, tax_entity_id, instrument_id, lot_id,"
            " origin_fill_id, part, quantity, original_quantity, cost, basis_adjustment, acquired, holding_start,"
            " replacement_used, splits, closed_at, updated_at)"
            " SELECT %s, v.portfolio_id, %s, %s, v.lot_id, COALESCE(v.origin, f.seq), v.part, v.quantity, v.quantity,"
            " v.cost, v.adjustment, v.acquired, v.holding_start, v.used, v.splits, v.closed_at, %s::timestamptz"
            " FROM f, (VALUES " + ", ".join(rows) + ") AS v(portfolio_id, lot_id, origin, part, quantity, cost,"
            " adjustment, acquired, holding_start, used, splits, closed_at)"
            " ON CONFLICT (firm_id, lot_id) DO UPDATE SET quantity = EXCLUDED.quantity, cost = EXCLUDED.cost,"
            " basis_adjustment = EXCLUDED.basis_adjustment, holding_start = EXCLUDED.holding_start,"
            " replacement_used = EXCLUDED.replacement_used, splits = EXCLUDED.splits,"
            " closed_at = EXCLUDED.closed_at, updated_at = EXCLUDED.updated_at)")
        # the VALUES parameters were appended before the SELECT's: put the SELECT's first
        n = len(lots) * 12
        params[len(params) - n:len(params) - n] = [firm_id, entity_id, instrument_id, now]
    if gains:
        rows = []
        gain_params: list = []
        for g in gains:
            rows.append("(%s::int, %s::varchar, %s::varchar, %s::varchar, %s::varchar, %s::numeric, %s::timestamptz,"
                        " %s::timestamptz, %s::date, %s::date, %s::numeric, %s::numeric, %s::numeric, %s::varchar,"
                        " %s::varchar, %s::numeric, %s::numeric)")
            gain_params += [g.portfolio_id, g.gain_id, g.lot_id, g.lot_origin_fill_id, g.direction, g.quantity,
                            g.acquired, g.sold, g.sold_date, g.holding_start, g.proceeds, g.cost_basis, g.gain,
                            g.term, g.wash_code, g.disallowed, g.washed_quantity]
        sql.append(
            ", ga AS (INSERT INTO portfolios_realizedgain (firm_id, gain_id, portfolio_id, tax_entity_id, instrument_id,"
            " fill_id, lot_id, lot_origin_fill_id, direction, quantity, acquired, sold, sold_date, holding_start,"
            " proceeds, cost_basis, gain, term, wash_code, disallowed, washed_quantity, tax_year, updated_at)"
            " SELECT %s, v.gain_id, v.portfolio_id, %s, %s, f.seq, v.lot_id, v.origin, v.direction, v.quantity,"
            " v.acquired, v.sold, v.sold_date, v.holding_start, v.proceeds, v.basis, v.gain, v.term, v.wash,"
            " v.disallowed, v.washed, extract(year FROM v.sold_date)::int, %s::timestamptz"
            " FROM f, (VALUES " + ", ".join(rows) + ") AS v(portfolio_id, gain_id, lot_id, origin, direction,"
            " quantity, acquired, sold, sold_date, holding_start, proceeds, basis, gain, term, wash, disallowed,"
            " washed))")
        params += [firm_id, entity_id, instrument_id, now, *gain_params]
    sql.append(
        ", po AS (INSERT INTO portfolios_position (firm_id, portfolio_id, instrument_id, quantity, cost, realized,"
        " opened_at, updated_at) SELECT %s, %s, %s, %s::numeric, %s::numeric, %s::numeric, %s::timestamptz,"
        " %s::timestamptz FROM f"
        " ON CONFLICT (portfolio_id, instrument_id) DO UPDATE SET quantity = EXCLUDED.quantity,"
        " cost = portfolios_position.cost + EXCLUDED.cost, realized = portfolios_position.realized + EXCLUDED.realized,"
        " opened_at = CASE WHEN EXCLUDED.quantity = 0 THEN NULL WHEN portfolios_position.quantity = 0"
        " OR sign(portfolios_position.quantity) <> sign(EXCLUDED.quantity) THEN EXCLUDED.opened_at"
        " ELSE portfolios_position.opened_at END, updated_at = EXCLUDED.updated_at)"
        " SELECT seq FROM f")
    params += [firm_id, portfolio.pk, instrument_id, position_qty, cost_delta, realized,
               now if position_qty else None, now]
    head_sql, head_params = chain_head_sql(firm_id)  # the audit event's lock and chain head, same round trip
    with connection.cursor() as cur:
        cur.execute("".join(sql) + "; " + head_sql, params + head_params)
        row = cur.fetchone()
        cur.nextset()
        cur.nextset()
        head = chain_head_from(cur.fetchone())
    if row is None:
        raise DomainError("DUPLICATE_FILL", f"Fill {f.fill_id} is already booked.",
                          fields={"fill_id": [f.fill_id]}, status_code=409)
    return row[0], head


def post_entry(*, firm_id: int, portfolio_id: int, kind: str, trade_date: date, settle_date: date, now: datetime,
               lines: list[tuple[str, Decimal, str]], memo: str = "", fill_id: int | None = None,
               instrument_id: int | None = None, corporate_action_id: int | None = None,
               idempotency_key: str = "", created_by_id: int | None = None) -> int | None:
    """Write one balanced journal entry (entry row + lines, one statement). Returns the entry id, or
    None when ``idempotency_key`` was already posted for this portfolio."""
    if sum((amount for _, amount, _ in lines), ZERO) != 0:
        raise ValueError(f"unbalanced journal entry: {lines}")
    values = []
    params: list = [firm_id, portfolio_id, kind, trade_date, settle_date, now, memo[:300], fill_id,
                    corporate_action_id, idempotency_key, created_by_id]
    for account, amount, line_memo in lines:
        values.append("(%s, %s::numeric, %s)")
        params += [str(account), amount, line_memo[:120]]
    conflict = " ON CONFLICT (portfolio_id, idempotency_key) WHERE idempotency_key <> '' DO NOTHING" \
        if idempotency_key else ""
    sql = (
        "WITH e AS (INSERT INTO portfolios_journalentry (firm_id, portfolio_id, kind, trade_date, settle_date,"
        " posted_at, memo, fill_id, corporate_action_id, idempotency_key, created_by_id)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)" + conflict + " RETURNING id, firm_id, portfolio_id,"
        " trade_date, settle_date)"
        " INSERT INTO portfolios_journalline (entry_id, firm_id, portfolio_id, account, amount, instrument_id,"
        " trade_date, settle_date, memo)"
        " SELECT e.id, e.firm_id, e.portfolio_id, l.account, l.amount, %s, e.trade_date, e.settle_date, l.memo"
        " FROM e, (VALUES " + ", ".join(values) + ") AS l(account, amount, memo) RETURNING entry_id"
    )
    # the instrument parameter sits between the entry's and the lines' parameters
    params = params[:11] + [instrument_id] + params[11:]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    return row[0] if row else None


def _update_washed_gain(g: core.RealizedGain, firm_id: int, actor: Actor, meta, now) -> None:
    before = (RealizedGain.objects.filter(firm_id=firm_id, gain_id=g.gain_id)
              .values("id", "portfolio_id", "wash_code", "disallowed", "washed_quantity").get())
    RealizedGain.objects.filter(pk=before["id"]).update(
        wash_code=g.wash_code, disallowed=g.disallowed, washed_quantity=g.washed_quantity, updated_at=now)
    audit_record(
        firm_id=firm_id, action="portfolio.gain_washed", actor=actor, target_type="portfolios.realizedgain",
        target_id=before["id"], target_label=g.gain_id,
        before={"wash_code": before["wash_code"], "disallowed": str(before["disallowed"]),
                "washed_quantity": str(before["washed_quantity"])},
        after={"wash_code": g.wash_code, "disallowed": str(g.disallowed), "washed_quantity": str(g.washed_quantity),
               "portfolio": before["portfolio_id"]},
        meta=meta,
    )


