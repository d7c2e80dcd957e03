"""Rebuild a portfolio's books from scratch and compare them with what is stored (issue #4, point 10).

``rebuild_check(portfolio)`` replays, in memory, every fill of the portfolio's tax entity (wash sales
span its portfolios) in booking order (``Fill.seq``) through the pure engine (``wash.TaxLotEngine``,
one policy per portfolio as ``booking.policies_for`` builds them), with the applied corporate actions
interleaved at their ex-date, before that day's fills (``corporate_core``: splits, symbol changes;
cash dividends only post cash, and those entries are taken as recorded). Cash in lieu of a split is an
ordinary sell fill, so it replays as one.

It then compares the replay with the stored rows of this one portfolio:

- lots: every open lot field, closed lots at quantity 0, no stored lot the replay never made;
- positions: quantity, signed book cost (``booking.signed_cost``), economic realized P&L;
- realized gains: every field, wash-sale code and amounts included;
- journal: each trade entry against the lines recomputed from the replay (cash, securities, realized),
  each stored entry balanced, and account totals = recomputed trade lines + stored non-trade entries
  (deposits, dividends, ...: external events, which a replay can only take as recorded); the
  securities account must also equal the book cost of the rebuilt open lots.

Reads run in one REPEATABLE READ, READ ONLY transaction when the caller has none open, so bookings
landing meanwhile cannot produce false differences. Nothing is written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Sum

from apps.core.tenancy import firm_scope
from apps.marketdata.models import Instrument
from apps.portfolios import corporate_core
from apps.portfolios import lots as core
from apps.portfolios.booking import policies_for, signed_cost
from apps.portfolios.models import (
    Account,
    CorporateActionApplication,
    CorporateActionKind,
    EntryKind,
    Fill,
    JournalEntry,
    JournalLine,
    Lot,
    Portfolio,
    Position,
    RealizedGain,
)
from apps.portfolios.wash import TaxLotEngine

ZERO = Decimal(0)

LOT, POSITION, GAIN, BALANCE, FILL = "lot", "position", "gain", "balance", "fill"
MISSING = "missing"  # the ``field`` of a row one side has and the other has not

LOT_FIELDS = ("instrument", "quantity", "cost", "basis_adjustment", "acquired", "holding_start", "replacement_used",
              "origin_fill_id", "splits")
GAIN_FIELDS = ("fill_id", "lot_id", "lot_origin_fill_id", "instrument", "direction", "quantity", "acquired", "sold",
               "sold_date", "holding_start", "proceeds", "cost_basis", "gain", "term", "wash_code", "disallowed",
               "washed_quantity", "tax_year")
TRADE_ACCOUNTS = (Account.CASH, Account.SECURITIES, Account.REALIZED)


@dataclass(frozen=True)
class Difference:
    """One disagreement. ``kind``: lot | position | gain | balance (and ``fill`` for a stored fill the
    replay refuses). ``key``: lot id, instrument symbol, gain id, or for balances an account name,
    ``entry <id>`` or ``fill <fill_id>``. ``field``: the column, or ``missing`` when a row exists on one
    side only (then the side without it is None and the other side gives its quantity, or for a gain
    its gain). ``stored``/``rebuilt``: the two values."""

    kind: str
    key: str
    field: str
    stored: Any
    rebuilt: Any

    def __str__(self) -> str:
        return f"{self.kind} {self.key} {self.field}: stored {_text(self.stored)}, rebuilt {_text(self.rebuilt)}"

    def as_json(self) -> dict[str, Any]:
        return {k: _json(v) for k, v in asdict(self).items()}


@dataclass
class RebuildReport:
    portfolio_id: int
    tax_entity_id: int
    fills: int = 0  # this portfolio's fills replayed
    entity_fills: int = 0  # all fills of the tax entity replayed
    corporate_actions: int = 0  # applied corporate actions replayed (entity-wide)
    lots: int = 0  # this portfolio's open lots after the replay
    closed_lots: int = 0
    positions: int = 0
    gains: int = 0
    entries: int = 0  # this portfolio's journal entries checked
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        return f"OK: {self.fills} fills, {self.lots} lots, {self.gains} gains, balances agree"

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "differences"}
        data["ok"] = self.ok
        data["differences"] = [d.as_json() for d in self.differences]
        return data


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _text(value: Any) -> str:
    return "(none)" if value is None else str(_json(value))


Progress = Callable[[int, int], None]


def rebuild_check(portfolio: Portfolio, *, progress: Progress | None = None,
                  progress_every: int = 10_000) -> RebuildReport:
    """Replay the portfolio's tax entity from scratch and compare with this portfolio's stored rows.
    ``progress(done, total)`` is called every ``progress_every`` fills (entity-wide) and at the end."""
    with firm_scope(portfolio.firm_id):
        if connection.in_atomic_block:
            return _check(portfolio, progress, progress_every)
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _check(portfolio, progress, progress_every)


# -- the replay --------------------------------------------------------------------------------


@dataclass
class _Replay:
    engine: TaxLotEngine
    realized: dict[int, Decimal]  # this portfolio: instrument id -> economic realized P&L
    entries: dict[int, dict[str, Decimal]]  # this portfolio: fill seq -> account -> rebuilt trade-entry amount
    seen_lots: set[str]  # every lot id of this portfolio the replay opened, changed or closed
    fill_ids: dict[int, str]  # this portfolio: fill seq -> fill id
    dates: dict[int, tuple[date, date]]  # this portfolio: fill seq -> (trade date, settlement date)
    failures: list[Difference]
    entity_fills: int = 0
    actions: int = 0


def _actions(entity_id: int) -> list[tuple[date, int, Any, frozenset[int]]]:
    """Applied corporate actions of the entity, in (ex-date, id) order, each with the portfolios it
    was applied to."""
    applied: dict[int, tuple[Any, set[int]]] = {}
    rows = (CorporateActionApplication.objects.filter(portfolio__tax_entity_id=entity_id)
            .select_related("action").order_by("action__ex_date", "action_id", "portfolio_id"))
    for row in rows:
        applied.setdefault(row.action_id, (row.action, set()))[1].add(row.portfolio_id)
    return [(a.ex_date, a.pk, a, frozenset(pids)) for a, pids in applied.values()]


def _apply_action(replay: _Replay, action, portfolio_ids: frozenset[int], target: int) -> None:
    engine = replay.engine
    try:
        if action.kind == CorporateActionKind.SPLIT:
            corporate_core.apply_split(engine, action.instrument_id, action.ratio_from, action.ratio_to,
                                       portfolio_ids=portfolio_ids)
        elif action.kind == CorporateActionKind.SYMBOL_CHANGE:
            # lots and the open position move; realized P&L stays with the old instrument's fills (history)
            corporate_core.change_symbol(engine, action.instrument_id, action.new_instrument_id,
                                         portfolio_ids=portfolio_ids)
    except core.LotError as exc:
        replay.failures.append(Difference(FILL, f"corporate action {action.pk}", exc.code, "applied", exc.message))
    # cash dividends change no lot: their journal entries are taken as recorded
    for (pid, _), book in engine.books.items():
        if pid == target:
            replay.seen_lots.update(lot.lot_id for lot in book.lots)
    replay.actions += 1


def _track_costs(costs: dict[str, Decimal], lots: Iterable[core.Lot], target: int, instrument_id: int) -> Decimal:
    """Record the signed cost of the target portfolio's changed lots; return the change for
    ``instrument_id``'s book."""
    delta = ZERO
    for lot in lots:
        if lot.portfolio_id != target:
            continue
        new = lot.cost if lot.quantity > 0 else -lot.cost
        old = costs.pop(lot.lot_id, ZERO)
        if lot.quantity:
            costs[lot.lot_id] = new
        if lot.instrument == instrument_id:
            delta += new - old
    return delta


def _fills(entity_id: int) -> Iterable[tuple]:
    return (Fill.objects.filter(tax_entity_id=entity_id).order_by("seq")
            .values_list("seq", "fill_id", "portfolio_id", "instrument_id", "side", "quantity", "price",
                         "executed_at", "fees", "multiplier", "lot_ids", "trade_date", "settle_date")
            .iterator(chunk_size=5000))


def _replay(portfolio: Portfolio, progress: Progress | None, every: int) -> _Replay:
    entity_id = portfolio.tax_entity_id
    target = portfolio.pk
    engine = TaxLotEngine(policies_for(entity_id))
    replay = _Replay(engine, defaultdict(lambda: ZERO), {}, set(), {}, {}, [])
    actions = _actions(entity_id)
    total = Fill.objects.filter(tax_entity_id=entity_id).count() if progress else 0
    # the securities line of a fill is the change of its book's signed cost. Summing the whole book
    # per fill is quadratic in open lots, so it is tracked from the lots each fill reports changed;
    # average cost re-averages lots without reporting them all, so those books are summed (the
    # engine walks every lot of such a book per fill anyway)
    averaged = engine.policies.get(target, engine.default).method is core.Method.AVERAGE
    costs: dict[str, Decimal] = {}
    next_action = 0
    for seq, fill_id, pid, iid, side, qty, price, ts, fees, multiplier, lot_ids, day, settles in _fills(entity_id):
        while next_action < len(actions) and actions[next_action][0] <= day:
            _, _, action, pids = actions[next_action]
            _apply_action(replay, action, pids, target)
            next_action += 1
        replay.entity_fills += 1
        fill = core.Fill(fill_id, pid, iid, core.Side(side), qty, price, ts, fees, multiplier, tuple(lot_ids or ()))
        mine = pid == target
        book = engine.book(pid, iid)
        before = signed_cost(book.lots) if mine and averaged else ZERO
        # booking orders fills per (entity, instrument); the engine's clock is entity-wide, and seq
        # order is the truth being replayed
        engine.last_ts = None
        try:
            result = engine.apply(fill)
        except core.LotError as exc:
            replay.failures.append(Difference(FILL, fill_id, exc.code, "booked", exc.message))
            continue
        delta = _track_costs(costs, result.lots, target, iid)
        if mine:
            replay.fill_ids[seq] = fill_id
            replay.dates[seq] = (core.trade_date(ts), settles)
            securities = signed_cost(book.lots) - before if averaged else delta
            gross = qty * price * multiplier
            principal = -gross if side == core.Side.BUY else gross
            realized = -(securities + principal - fees)
            replay.realized[iid] += -realized
            replay.entries[seq] = {Account.CASH: principal - fees, Account.SECURITIES: securities,
                                   Account.REALIZED: realized}
        replay.seen_lots.update(lot.lot_id for lot in result.lots if lot.portfolio_id == target)
        if progress and replay.entity_fills % every == 0:
            progress(replay.entity_fills, total)
    for _, _, action, pids in actions[next_action:]:
        _apply_action(replay, action, pids, target)
    if progress:
        progress(replay.entity_fills, total)
    return replay


# -- the comparison ----------------------------------------------------------------------------


def _check(portfolio: Portfolio, progress: Progress | None, every: int) -> RebuildReport:
    replay = _replay(portfolio, progress, every)
    report = RebuildReport(portfolio.pk, portfolio.tax_entity_id, fills=len(replay.fill_ids),
                           entity_fills=replay.entity_fills, corporate_actions=replay.actions)
    report.differences.extend(replay.failures)  # any refused fill of the entity skews what follows it
    target = portfolio.pk
    books = {iid: book for (pid, iid), book in replay.engine.books.items() if pid == target}
    symbols = _symbols(set(books) | set(replay.realized) | _stored_instruments(target))
    _compare_lots(target, books, replay.seen_lots, symbols, report)
    _compare_positions(target, books, replay.realized, symbols, report)
    _compare_gains(target, replay.engine, symbols, report)
    _compare_journal(target, books, replay, report)
    return report


def _stored_instruments(portfolio_id: int) -> set[int]:
    return set(Position.objects.filter(portfolio_id=portfolio_id).values_list("instrument_id", flat=True))


def _symbols(ids: set[int]) -> dict[int, str]:
    return dict(Instrument.objects.filter(pk__in=ids).values_list("pk", "symbol"))


def _compare_fields(diffs: list[Difference], kind: str, key: str, names: Iterable[str], stored: dict,
                    rebuilt: dict) -> None:
    for name in names:
        if stored[name] != rebuilt[name]:
            diffs.append(Difference(kind, key, name, stored[name], rebuilt[name]))


def _compare_lots(target: int, books: dict, seen: set[str], symbols: dict[int, str],
                  report: RebuildReport) -> None:
    diffs = report.differences
    rebuilt = {lot.lot_id: lot for book in books.values() for lot in book.lots}
    report.lots = len(rebuilt)
    rows = (Lot.objects.filter(portfolio_id=target).annotate(origin=F("origin_fill__fill_id"))
            .values("lot_id", "instrument_id", "quantity", "cost", "basis_adjustment", "acquired", "holding_start",
                    "replacement_used", "origin", "splits"))
    stored_ids = set()
    for row in rows:
        lot_id = row["lot_id"]
        stored_ids.add(lot_id)
        lot = rebuilt.get(lot_id)
        if lot is None:
            if lot_id not in seen:  # a lot no fill of the replay made
                diffs.append(Difference(LOT, lot_id, MISSING, row["quantity"], None))
            elif row["quantity"] != 0:  # closed by the replay
                diffs.append(Difference(LOT, lot_id, "quantity", row["quantity"], ZERO))
            else:
                report.closed_lots += 1
            continue
        stored = {**row, "instrument": symbols.get(row["instrument_id"], row["instrument_id"]),
                  "origin_fill_id": row["origin"]}
        mine = {"instrument": symbols.get(lot.instrument, lot.instrument), "quantity": lot.quantity,
                "cost": lot.cost, "basis_adjustment": lot.basis_adjustment, "acquired": lot.acquired,
                "holding_start": lot.holding_start, "replacement_used": lot.replacement_used,
                "origin_fill_id": lot.origin_fill_id, "splits": lot.splits}
        _compare_fields(diffs, LOT, lot_id, LOT_FIELDS, stored, mine)
    for lot_id in sorted(set(rebuilt) - stored_ids):
        diffs.append(Difference(LOT, lot_id, MISSING, None, rebuilt[lot_id].quantity))
    for lot_id in sorted(seen - stored_ids - set(rebuilt)):
        diffs.append(Difference(LOT, lot_id, MISSING, None, ZERO))  # closed in the replay, no row stored


def _compare_positions(target: int, books: dict, realized: dict[int, Decimal], symbols: dict[int, str],
                       report: RebuildReport) -> None:
    rebuilt = {}
    for iid in set(books) | set(realized):
        book = books.get(iid)
        lots = book.lots if book is not None else ()
        rebuilt[iid] = {"quantity": sum((lot.quantity for lot in lots), ZERO), "cost": signed_cost(lots),
                        "realized": realized.get(iid, ZERO)}
    stored = {row["instrument_id"]: row for row in
              Position.objects.filter(portfolio_id=target).values("instrument_id", "quantity", "cost", "realized")}
    empty = {"quantity": ZERO, "cost": ZERO, "realized": ZERO}
    report.positions = sum(1 for p in rebuilt.values() if p["quantity"])
    for iid in sorted(set(rebuilt) | set(stored)):
        key = symbols.get(iid, str(iid))
        if iid not in stored:
            if rebuilt[iid] != empty:  # a book a corporate action created but never traded is no position
                report.differences.append(Difference(POSITION, key, MISSING, None, rebuilt[iid]["quantity"]))
            continue
        _compare_fields(report.differences, POSITION, key, ("quantity", "cost", "realized"), stored[iid],
                        rebuilt.get(iid, empty))


def _compare_gains(target: int, engine: TaxLotEngine, symbols: dict[int, str], report: RebuildReport) -> None:
    diffs = report.differences
    rebuilt = {g.gain_id: g for g in engine.gains.values() if g.portfolio_id == target}
    report.gains = len(rebuilt)
    rows = (RealizedGain.objects.filter(portfolio_id=target).annotate(fill_fill_id=F("fill__fill_id"))
            .values("gain_id", "fill_fill_id", "lot_id", "lot_origin_fill_id", "instrument_id", "direction",
                    "quantity", "acquired", "sold", "sold_date", "holding_start", "proceeds", "cost_basis", "gain",
                    "term", "wash_code", "disallowed", "washed_quantity", "tax_year"))
    stored_ids = set()
    for row in rows:
        gain_id = row["gain_id"]
        stored_ids.add(gain_id)
        g = rebuilt.get(gain_id)
        if g is None:
            diffs.append(Difference(GAIN, gain_id, MISSING, row["gain"], None))
            continue
        stored = {**row, "fill_id": row["fill_fill_id"],
                  "instrument": symbols.get(row["instrument_id"], row["instrument_id"])}
        mine = {name: getattr(g, name) for name in GAIN_FIELDS if name not in ("instrument", "tax_year")}
        mine["instrument"] = symbols.get(g.instrument, g.instrument)
        mine["tax_year"] = g.sold_date.year
        _compare_fields(diffs, GAIN, gain_id, GAIN_FIELDS, stored, mine)
    for gain_id in sorted(set(rebuilt) - stored_ids):
        diffs.append(Difference(GAIN, gain_id, MISSING, None, rebuilt[gain_id].gain))


def _compare_journal(target: int, books: dict, replay: _Replay, report: RebuildReport) -> None:
    diffs = report.differences
    entries = {eid: (kind, fill_seq, dates) for eid, kind, fill_seq, *dates in
               JournalEntry.objects.filter(portfolio_id=target).values_list("id", "kind", "fill_id", "trade_date",
                                                                           "settle_date")}
    report.entries = len(entries)
    per_entry: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for eid, account, amount in (JournalLine.objects.filter(portfolio_id=target).values("entry_id", "account")
                                 .annotate(total=Sum("amount")).values_list("entry_id", "account", "total")):
        per_entry[eid][account] = amount
    stored_totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    rebuilt_totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    fill_entries: dict[int, int] = {}
    for eid in sorted(entries):
        kind, fill_seq, dates = entries[eid]
        lines = per_entry.get(eid, {})
        imbalance = sum(lines.values(), ZERO)
        if imbalance:
            diffs.append(Difference(BALANCE, f"entry {eid}", "sum", imbalance, ZERO))
        for account, amount in lines.items():
            stored_totals[account] += amount
        if fill_seq is None:
            if kind == EntryKind.TRADE:
                diffs.append(Difference(BALANCE, f"entry {eid}", "fill", None, "a trade entry needs its fill"))
            for account, amount in lines.items():
                rebuilt_totals[account] += amount
            continue
        fill_entries[fill_seq] = eid
        rebuilt = replay.entries.get(fill_seq)
        fill_key = f"fill {replay.fill_ids.get(fill_seq, fill_seq)}"
        if rebuilt is None:  # the replay refused this fill (reported), or it is not this portfolio's
            diffs.append(Difference(BALANCE, fill_key, "entry", eid, None))
            continue
        if kind != EntryKind.TRADE:
            diffs.append(Difference(BALANCE, fill_key, "kind", kind, EntryKind.TRADE.value))
        for name, stored_day, fill_day in zip(("trade_date", "settle_date"), dates, replay.dates[fill_seq],
                                              strict=True):
            if stored_day != fill_day:  # the fill's trade date is recomputed from its time (New York)
                diffs.append(Difference(BALANCE, fill_key, name, stored_day, fill_day))
        for account in sorted(set(lines) | set(TRADE_ACCOUNTS)):
            stored_amount, rebuilt_amount = lines.get(account, ZERO), rebuilt.get(account, ZERO)
            if stored_amount != rebuilt_amount:
                diffs.append(Difference(BALANCE, fill_key, account, stored_amount, rebuilt_amount))
            rebuilt_totals[account] += rebuilt_amount
    for seq in sorted(set(replay.entries) - set(fill_entries)):
        diffs.append(Difference(BALANCE, f"fill {replay.fill_ids[seq]}", "entry", None, "trade entry"))
        for account, amount in replay.entries[seq].items():
            rebuilt_totals[account] += amount
    for account in Account.values:
        if stored_totals[account] != rebuilt_totals[account]:
            diffs.append(Difference(BALANCE, account, "total", stored_totals[account], rebuilt_totals[account]))
    book_cost = sum((signed_cost(book.lots) for book in books.values()), ZERO)
    if rebuilt_totals[Account.SECURITIES] != book_cost:
        diffs.append(Difference(BALANCE, Account.SECURITIES.value, "book_cost", rebuilt_totals[Account.SECURITIES],
                                book_cost))
