"""Valuation and P&L, end-of-day snapshots and performance of a portfolio (reads; snapshots are the
only writes).

Definitions (every amount an exact ``Decimal``; floats from the quote cache enter as ``Decimal(str(x))``):

- **Market value** of a holding = quantity x price x multiplier (options: the contract multiplier);
  short positions have a negative quantity and so a negative market value. A holding with no price
  at all is carried at its book cost (unrealized 0) and flagged ``stale``.
- **Cost** = signed book cost of the open lots (the SECURITIES account: long lots' cost paid, fees
  included, minus short lots' proceeds). **Unrealized** = market value - cost.
- **Equity** = cash (from the journal, everything traded so far) + market value.
- **Realized** (portfolio level) = everything the journal booked to a P&L account: realized trading
  gains (after trade fees), dividends, interest, stand-alone fees, corporate-action cash and
  adjustments. **Net flows** = deposits - withdrawals (the CAPITAL account). Because every journal
  entry balances, realized + unrealized = equity - net flows, to the cent, at any date.
- **Day P&L** of an instrument = (quantity now x last - quantity at the previous close x previous
  close) x multiplier - today's purchases + today's sale proceeds - today's trade fees. For a
  holding this is quantity held at the previous close x (last - previous close) plus, for shares
  bought today, quantity x (last - fill price), plus for shares sold today quantity x (fill price -
  previous close), minus today's fees. "Today" is the trade date (New York) of the holding's price;
  with shares held overnight and no previous close known, the day P&L is None. The portfolio's day
  P&L adds instruments closed out today and today's non-trade P&L entries (dividends, interest,
  fees, adjustments).
- **Past dates** (``summary_on``): cash from the journal by trade date; positions replayed from the
  fills with ``trade_date <= day`` and the applied splits / symbol changes with ``ex_date <= day``
  (an action on a date applies before that date's fills); cost per instrument from the trade
  entries' SECURITIES lines. Prices: the session's daily close (a 1d bar of that session, else its
  last 1m bar); older prices are used but flagged stale.
- **24/7 crypto** is cut at the NYSE close: on an NYSE session day a crypto position is valued at
  its last 1m bar ending at or before that day's NYSE close (a 1d bar only if it ended by then);
  on other days at the end of the UTC day. A price more than 24 h older than the cut is stale.
- **Snapshots** are taken for NYSE sessions (the firm's books close with the US market). A
  snapshot's ``net_flow`` is the external flows since the previous NYSE session (exclusive) up to
  its date, so a weekend deposit lands in Monday's snapshot and the performance maths sees it.
  A backfill loads the books once and replays them day by day (prices: a query or two per day;
  about 1 s for a year of a 5-instrument portfolio here); the beat task takes one per portfolio.
- **Performance** (``performance``): ``metrics.performance_summary`` over the snapshots, the curves
  for the charts and the P&L attribution between the first and last snapshot in range.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache

import pandas as pd
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.core.tenancy import firm_scope
from apps.marketdata import calendars
from apps.marketdata.models import AssetClass, Instrument
from apps.portfolios import metrics
from apps.portfolios.lots import trade_date
from apps.portfolios.models import (
    Account,
    CorporateAction,
    CorporateActionKind,
    Fill,
    JournalLine,
    Portfolio,
    Snapshot,
)

log = logging.getLogger(__name__)

ZERO = Decimal(0)
BOOKS_EXCHANGE = "NYSE"  # the calendar snapshots follow
ALWAYS_OPEN = frozenset({"CRYPTO"})
CRYPTO_FRESH = timedelta(hours=24)
PNL_ACCOUNTS = (Account.REALIZED, Account.FEES, Account.DIVIDENDS, Account.INTEREST, Account.CORPORATE,
                Account.ADJUSTMENT)


def _dec(value) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else _plain(Decimal(str(value)))


def _plain(value: Decimal) -> Decimal:
    """The same number without trailing zeros and never in exponent form (10.5000 -> 10.5, 100.00 -> 100)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _multiplier(instrument: Instrument) -> int:
    if instrument.asset_class == AssetClass.OPTION:
        return instrument.multiplier or 100
    return 1


def _is_24_7(instrument: Instrument) -> bool:
    return instrument.exchange.upper() in ALWAYS_OPEN or instrument.asset_class == AssetClass.CRYPTO


# ---------------------------------------------------------------------------- current holdings


@dataclass
class Holding:
    instrument_id: int
    symbol: str
    asset_class: str
    quantity: Decimal
    cost: Decimal  # signed book cost of the open lots
    avg_cost: Decimal | None  # per unit (cost / (quantity x multiplier))
    last: Decimal | None
    price_ts: datetime | None
    stale: bool
    market_value: Decimal
    unrealized: Decimal
    unrealized_pct: float | None  # percent of |cost|
    prev_close: Decimal | None
    day_pnl: Decimal | None
    weight: float | None  # percent of equity (None when equity <= 0)
    realized: Decimal  # economic realized P&L of the instrument so far (Position.realized)
    multiplier: int = 1


@dataclass
class Summary:
    as_of: datetime | date
    cash: Decimal
    settled_cash: Decimal
    market_value: Decimal
    equity: Decimal
    unrealized: Decimal
    realized: Decimal  # to date, every P&L account (see the module docstring)
    day_pnl: Decimal | None  # None for a past date
    net_flows: Decimal  # deposits - withdrawals to date
    stale: bool
    holdings_count: int
    total_pnl: Decimal = ZERO  # realized + unrealized = equity - net_flows
    holdings: list[Holding] = field(default_factory=list, repr=False)


def _today_fills(portfolio_id: int, since: date) -> list[dict]:
    return list(Fill.objects.filter(portfolio_id=portfolio_id, trade_date__gte=since)
                .values("instrument_id", "side", "quantity", "price", "fees", "multiplier", "trade_date"))


def _instrument_day(fills: list[dict], instrument_id: int, day: date) -> tuple[Decimal, Decimal]:
    """(signed quantity traded on ``day``, cash effect of those trades: sales - purchases - fees)."""
    qty, cash = ZERO, ZERO
    for f in fills:
        if f["instrument_id"] != instrument_id or f["trade_date"] != day:
            continue
        gross = f["quantity"] * f["price"] * f["multiplier"]
        if f["side"] == "buy":
            qty += f["quantity"]
            cash -= gross
        else:
            qty -= f["quantity"]
            cash += gross
        cash -= f["fees"]
    return qty, cash


def _day_pnl(quantity: Decimal, last: Decimal | None, prev_close: Decimal | None, mult: int, traded_qty: Decimal,
             trade_cash: Decimal) -> Decimal | None:
    prev_qty = quantity - traded_qty
    if last is None and quantity:
        return None
    if prev_close is None and prev_qty:
        return None
    now_value = quantity * last * mult if quantity else ZERO
    prev_value = prev_qty * prev_close * mult if prev_qty else ZERO
    return now_value - prev_value + trade_cash


def _board(symbols: list[str], now: datetime) -> dict[str, dict]:
    if not symbols:
        return {}
    from apps.marketdata.selectors import quote_board

    return {row["symbol"]: row for row in quote_board(symbols=symbols, now=now.timestamp())}


def _holdings_and_closed(portfolio: Portfolio, now: datetime) -> tuple[list[Holding], Decimal | None]:
    """Open holdings, and the day P&L of instruments traded today and now flat."""
    from apps.portfolios.selectors import positions_open

    today = trade_date(now)
    with firm_scope(portfolio.firm_id):
        positions = list(positions_open(portfolio.pk))
        fills = _today_fills(portfolio.pk, today - timedelta(days=7))
        closed_ids = {f["instrument_id"] for f in fills if f["trade_date"] == today} - {p.instrument_id
                                                                                         for p in positions}
        closed = list(Instrument.objects.filter(pk__in=closed_ids))
    board = _board([p.instrument.symbol for p in positions] + [i.symbol for i in closed], now)
    out: list[Holding] = []
    for p in positions:
        inst = p.instrument
        mult = _multiplier(inst)
        row = board.get(inst.symbol.upper(), {})
        last = _dec(row.get("last"))
        price_ts = row.get("ts")
        stale = bool(row.get("stale", True)) or last is None
        value = p.quantity * last * mult if last is not None else p.cost
        unrealized = value - p.cost
        day = trade_date(price_ts) if price_ts is not None else today
        prev_close = _dec(row.get("prev_close"))
        if prev_close is None and last is not None:
            prev_close = _prev_close(inst, day)
        traded_qty, trade_cash = _instrument_day(fills, inst.pk, day)
        out.append(Holding(
            instrument_id=inst.pk, symbol=inst.symbol, asset_class=inst.asset_class, quantity=p.quantity,
            cost=p.cost, avg_cost=(p.cost / (p.quantity * mult)) if p.quantity else None, last=last,
            price_ts=price_ts, stale=stale, market_value=value, unrealized=unrealized,
            unrealized_pct=float(unrealized / abs(p.cost) * 100) if p.cost else None, prev_close=prev_close,
            day_pnl=_day_pnl(p.quantity, last, prev_close, mult, traded_qty, trade_cash), weight=None,
            realized=p.realized, multiplier=mult,
        ))
    closed_pnl: Decimal | None = ZERO
    for inst in closed:
        traded_qty, trade_cash = _instrument_day(fills, inst.pk, today)
        prev_close = _dec(board.get(inst.symbol.upper(), {}).get("prev_close"))
        if prev_close is None:
            prev_close = _prev_close(inst, today)
        pnl = _day_pnl(ZERO, None, prev_close, _multiplier(inst), traded_qty, trade_cash)
        closed_pnl = None if pnl is None or closed_pnl is None else closed_pnl + pnl
    return out, closed_pnl


def _prev_close(instrument: Instrument, day: date) -> Decimal | None:
    """The last close before ``day``'s session from stored bars (when the quote board has none)."""
    if _is_24_7(instrument):
        price = close_on(instrument, day - timedelta(days=1))
    else:
        session = _session_on_or_before(_pricing_exchange(instrument), day - timedelta(days=1))
        price = close_on(instrument, session.day) if session else None
    return price.value if price else None


def _weigh(items: list[Holding], equity: Decimal) -> None:
    for h in items:
        h.weight = float(h.market_value / equity * 100) if equity > 0 else None


def holdings(portfolio: Portfolio, *, now: datetime | None = None) -> list[Holding]:
    """Open positions valued at the latest quotes, by symbol; ``weight`` is the percent of equity."""
    return summary(portfolio, now=now).holdings


def _balances(portfolio_id: int, *, on: date | None = None) -> dict[str, Decimal]:
    from apps.portfolios.selectors import account_balances

    return account_balances(portfolio_id, on=on)


def _realized_from(balances: dict[str, Decimal]) -> Decimal:
    return -sum((balances[a] for a in PNL_ACCOUNTS), ZERO)


def summary(portfolio: Portfolio, *, now: datetime | None = None) -> Summary:
    """The portfolio now: cash, market value, equity, P&L (realized to date, unrealized, day)."""
    from apps.portfolios.selectors import cash_balance

    now = now or timezone.now()
    today = trade_date(now)
    items, closed_pnl = _holdings_and_closed(portfolio, now)
    with firm_scope(portfolio.firm_id):
        balances = _balances(portfolio.pk)
        settled = cash_balance(portfolio.pk, settled_on=today)
        income_today = -(JournalLine.objects.filter(
            portfolio_id=portfolio.pk, trade_date=today, entry__fill__isnull=True, account__in=PNL_ACCOUNTS,
        ).aggregate(total=Sum("amount"))["total"] or ZERO)
    cash = balances[Account.CASH]
    market_value = sum((h.market_value for h in items), ZERO)
    unrealized = sum((h.unrealized for h in items), ZERO)
    equity = cash + market_value
    _weigh(items, equity)
    day_pnl: Decimal | None = closed_pnl
    for h in items:
        day_pnl = None if day_pnl is None or h.day_pnl is None else day_pnl + h.day_pnl
    if day_pnl is not None:
        day_pnl += income_today
    realized = _realized_from(balances)
    return Summary(as_of=now, cash=cash, settled_cash=settled, market_value=market_value, equity=equity,
                   unrealized=unrealized, realized=realized, day_pnl=day_pnl,
                   net_flows=-balances[Account.CAPITAL], stale=any(h.stale for h in items),
                   holdings_count=len(items), total_pnl=realized + unrealized, holdings=items)


# ---------------------------------------------------------------------------- past dates


@dataclass(frozen=True)
class Price:
    value: Decimal
    ts: datetime  # when the price was made (bar end / session close)
    stale: bool


_LAST_BARS_BEFORE = """
SELECT i.id, b.ts, b.close FROM unnest(%s::bigint[]) AS i(id)
CROSS JOIN LATERAL (
    SELECT ts, close FROM marketdata_bar
    WHERE instrument_id = i.id AND timeframe = %s AND ts < %s
    ORDER BY ts DESC LIMIT 1
) b
"""


def _last_bars(wanted: dict[int, datetime], timeframe: str) -> dict[int, tuple[datetime, Decimal]]:
    """(open time, close) of each instrument's last ``timeframe`` bar opening before its own bound:
    one primary-key probe per instrument, one query per distinct bound."""
    groups: dict[datetime, list[int]] = {}
    for instrument_id, before in wanted.items():
        groups.setdefault(before, []).append(instrument_id)
    out: dict[int, tuple[datetime, Decimal]] = {}
    with connection.cursor() as cur:
        for before, ids in groups.items():
            cur.execute(_LAST_BARS_BEFORE, [ids, timeframe, before])
            # bars are NUMERIC(20, 10): drop the scale's trailing zeros so amounts read "1040", not "1040.0000000000"
            out.update({pk: (ts, _plain(Decimal(close))) for pk, ts, close in cur.fetchall()})
    return out


def _bar_ends(minute, daily) -> list[tuple[datetime, Decimal]]:
    """(end time, close) of the found 1m and 1d bars."""
    out = []
    if minute:
        out.append((minute[0] + timedelta(minutes=1), minute[1]))
    if daily:
        out.append((daily[0] + timedelta(days=1), daily[1]))
    return out


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@lru_cache(maxsize=8)
def _session_table(exchange: str) -> tuple[list[date], list[datetime], list[datetime]]:
    """Every session of a calendar as (days, opens, closes), built once per process: a backfill asks
    for a session per day and instrument, and slicing the calendar each time cost ~20 ms."""
    schedule = calendars.get_calendar(exchange).schedule
    days = [ts.date() for ts in schedule.index]
    opens = [ts.to_pydatetime() for ts in schedule["open"]]
    closes = [ts.to_pydatetime() for ts in schedule["close"]]
    return days, opens, closes


def _session_on_or_before(exchange: str, day: date) -> calendars.Session | None:
    """The exchange's last session on or before ``day``; None for a 24/7 market, an unknown exchange
    or a date outside the calendar."""
    try:
        code = calendars.calendar_code(exchange)
    except calendars.UnknownExchange:
        return None
    if code == "24/7":
        return None
    days, opens, closes = _session_table(exchange.upper())
    i = bisect_right(days, day) - 1
    if i < 0 or day > days[-1]:
        return None
    return calendars.Session(day=days[i], open=opens[i], close=closes[i], early_close=False)


def books_cut(day: date) -> datetime:
    """The instant a day's books close: the NYSE close on a session day, else the end of the UTC day."""
    session = _session_on_or_before(BOOKS_EXCHANGE, day)
    if session is not None and session.day == day:
        return session.close
    return _midnight(day + timedelta(days=1))


def _pricing_exchange(instrument: Instrument) -> str:
    try:
        calendars.calendar_code(instrument.exchange)
    except calendars.UnknownExchange:
        return BOOKS_EXCHANGE  # options (OPRA) trade NYSE hours
    return instrument.exchange


def closes_on(instruments: list[Instrument], day: date) -> dict[int, Price]:
    """Each instrument's closing price for ``day`` (see the module docstring); instruments with no bar
    at all are absent. A few queries whatever the number of instruments."""
    cut = books_cut(day)
    crypto = [i for i in instruments if _is_24_7(i)]
    sessions = {i.pk: _session_on_or_before(_pricing_exchange(i), day) for i in instruments if not _is_24_7(i)}
    sessions = {pk: s for pk, s in sessions.items() if s is not None}
    eps = timedelta(microseconds=1)
    daily = _last_bars({**{i.pk: cut - timedelta(days=1) + eps for i in crypto},
                        **{pk: _midnight(s.day + timedelta(days=1)) for pk, s in sessions.items()}}, "1d")
    fresh_daily = {pk for pk, s in sessions.items() if pk in daily and daily[pk][0].astimezone(UTC).date() == s.day}
    minute = _last_bars({**{i.pk: cut - timedelta(minutes=1) + eps for i in crypto},
                         **{pk: s.close for pk, s in sessions.items() if pk not in fresh_daily}}, "1m")
    out: dict[int, Price] = {}
    for i in crypto:
        found = _bar_ends(minute.get(i.pk), daily.get(i.pk))
        if found:
            end, px = max(found, key=lambda t: t[0])
            out[i.pk] = Price(px, end, end <= cut - CRYPTO_FRESH)
    for pk, session in sessions.items():
        if pk in fresh_daily:
            out[pk] = Price(daily[pk][1], session.close, False)
            continue
        m = minute.get(pk)
        if m and m[0] >= session.open:
            out[pk] = Price(m[1], m[0] + timedelta(minutes=1), False)
            continue
        found = _bar_ends(m, daily.get(pk))
        if found:
            end, px = max(found, key=lambda t: t[0])
            out[pk] = Price(px, min(end, session.open), True)
    return out


def close_on(instrument: Instrument, day: date) -> Price | None:
    """One instrument's closing price for ``day``; None when it has no bar at all."""
    return closes_on([instrument], day).get(instrument.pk)


@dataclass
class _Book:
    quantity: Decimal = ZERO
    cost: Decimal = ZERO


class _Ledger:
    """A portfolio's books up to a date, loaded in a few queries, so any number of dates up to it
    (a backfill) is summarized without going back to the database except for prices."""

    def __init__(self, portfolio: Portfolio, upto: date):
        with firm_scope(portfolio.firm_id):
            self.lines = list(JournalLine.objects.filter(portfolio_id=portfolio.pk, trade_date__lte=upto)
                              .values_list("account", "amount", "trade_date", "settle_date"))
            self.fills = list(Fill.objects.filter(portfolio_id=portfolio.pk, trade_date__lte=upto)
                              .values_list("seq", "instrument_id", "side", "quantity", "trade_date").order_by("seq"))
            self.securities = dict(JournalLine.objects.filter(
                portfolio_id=portfolio.pk, account=Account.SECURITIES, entry__fill__isnull=False, trade_date__lte=upto,
            ).values_list("entry__fill_id").annotate(total=Sum("amount")).values_list("entry__fill_id", "total"))
            self.actions = list(CorporateAction.objects.filter(
                applications__portfolio_id=portfolio.pk, ex_date__lte=upto,
                kind__in=[CorporateActionKind.SPLIT, CorporateActionKind.SYMBOL_CHANGE],
            ).distinct().order_by("ex_date", "id"))
        self.instruments: dict[int, Instrument] = {}

    def balances(self, day: date) -> dict[str, Decimal]:
        out = {account: ZERO for account in Account.values}
        for account, amount, trade_day, _ in self.lines:
            if trade_day <= day:
                out[account] += amount
        return out

    def settled_cash(self, day: date) -> Decimal:
        return sum((amount for account, amount, _, settle in self.lines if account == Account.CASH and settle <= day),
                   ZERO)

    def flows(self, after: date | None, upto: date) -> Decimal:
        return -sum((amount for account, amount, trade_day, _ in self.lines
                     if account == Account.CAPITAL and trade_day <= upto and (after is None or trade_day > after)),
                    ZERO)

    def states(self, days: list[date]):
        """(day, {instrument id: (quantity, signed cost)}) for each of ``days`` (ascending): the fills
        replayed with the splits and symbol changes (an action dated ``day`` applies before its fills)."""
        from apps.portfolios.corporate_core import scale_quantity

        events: list[tuple] = [(a.ex_date, 0, a.pk, a) for a in self.actions]
        events += [(f[4], 1, f[0], f) for f in self.fills]
        events.sort(key=lambda e: e[:3])
        books: dict[int, _Book] = {}
        i = 0
        for day in days:
            while i < len(events) and events[i][0] <= day:
                _, kind, _, payload = events[i]
                i += 1
                if kind == 1:
                    seq, instrument_id, side, quantity, _ = payload
                    book = books.setdefault(instrument_id, _Book())
                    book.quantity += quantity if side == "buy" else -quantity
                    book.cost += self.securities.get(seq, ZERO)
                elif payload.kind == CorporateActionKind.SPLIT:
                    book = books.get(payload.instrument_id)
                    if book is not None and book.quantity:
                        book.quantity = scale_quantity(book.quantity, payload.ratio_from, payload.ratio_to)
                elif payload.new_instrument_id and payload.instrument_id in books:
                    old = books.pop(payload.instrument_id)
                    new = books.setdefault(payload.new_instrument_id, _Book())
                    new.quantity += old.quantity
                    new.cost += old.cost
            yield day, {k: (b.quantity, b.cost) for k, b in books.items() if b.quantity}

    def instrument(self, pk: int) -> Instrument:
        if pk not in self.instruments:
            self.instruments.update({i.pk: i for i in Instrument.objects.filter(pk__in=[pk])})
        return self.instruments[pk]

    def summary(self, day: date, state: dict[int, tuple[Decimal, Decimal]], *,
                extra: list[Instrument] = ()) -> tuple[Summary, dict[int, Price]]:
        missing = [pk for pk in state if pk not in self.instruments]
        if missing:
            self.instruments.update({i.pk: i for i in Instrument.objects.filter(pk__in=missing)})
        instruments = {pk: self.instruments[pk] for pk in state}
        prices = closes_on([*instruments.values(), *extra], day)
        items = _holdings_at(state, instruments, prices)
        balances = self.balances(day)
        cash = balances[Account.CASH]
        market_value = sum((h.market_value for h in items), ZERO)
        unrealized = sum((h.unrealized for h in items), ZERO)
        equity = cash + market_value
        _weigh(items, equity)
        realized = _realized_from(balances)
        return Summary(as_of=day, cash=cash, settled_cash=self.settled_cash(day), market_value=market_value,
                       equity=equity, unrealized=unrealized, realized=realized, day_pnl=None,
                       net_flows=-balances[Account.CAPITAL], stale=any(h.stale for h in items),
                       holdings_count=len(items), total_pnl=realized + unrealized, holdings=items), prices


def positions_on(portfolio: Portfolio, day: date) -> dict[int, tuple[Decimal, Decimal]]:
    """instrument id -> (quantity, signed cost) at the end of ``day``, replayed from the fills and the
    applied splits and symbol changes (an action dated ``day`` applies before that day's fills)."""
    return next(_Ledger(portfolio, day).states([day]))[1]


def _flows_between(portfolio_id: int, after: date | None, upto: date) -> Decimal:
    qs = JournalLine.objects.filter(portfolio_id=portfolio_id, account=Account.CAPITAL, trade_date__lte=upto)
    if after is not None:
        qs = qs.filter(trade_date__gt=after)
    return -(qs.aggregate(total=Sum("amount"))["total"] or ZERO)


def _holdings_at(state: dict[int, tuple[Decimal, Decimal]], instruments: dict[int, Instrument],
                 prices: dict[int, Price]) -> list[Holding]:
    items: list[Holding] = []
    for instrument_id, (quantity, cost) in sorted(state.items(), key=lambda kv: instruments[kv[0]].symbol):
        inst = instruments[instrument_id]
        mult = _multiplier(inst)
        price = prices.get(instrument_id)
        value = quantity * price.value * mult if price else cost
        unrealized = value - cost
        items.append(Holding(
            instrument_id=inst.pk, symbol=inst.symbol, asset_class=inst.asset_class, quantity=quantity, cost=cost,
            avg_cost=cost / (quantity * mult), last=price.value if price else None,
            price_ts=price.ts if price else None, stale=price.stale if price else True, market_value=value,
            unrealized=unrealized, unrealized_pct=float(unrealized / abs(cost) * 100) if cost else None,
            prev_close=None, day_pnl=None, weight=None, realized=ZERO, multiplier=mult,
        ))
    return items


def _value_on(portfolio: Portfolio, day: date) -> tuple[list[Holding], bool]:
    ledger = _Ledger(portfolio, day)
    s, _ = ledger.summary(day, next(ledger.states([day]))[1])
    return s.holdings, s.stale


def summary_on(portfolio: Portfolio, day: date) -> Summary:
    """The portfolio at the close of ``day``, rebuilt from the journal (trade-date balances), the
    fills and corporate actions up to that date, and that session's closes. ``day_pnl`` is None."""
    ledger = _Ledger(portfolio, day)
    with firm_scope(portfolio.firm_id):
        return ledger.summary(day, next(ledger.states([day]))[1])[0]


# ---------------------------------------------------------------------------- snapshots


def _previous_session(day: date) -> date | None:
    session = _session_on_or_before(BOOKS_EXCHANGE, day - timedelta(days=1))
    return session.day if session else None


SNAPSHOT_FIELDS = ("cash", "settled_cash", "market_value", "equity", "net_flow", "realized", "unrealized",
                   "benchmark_close", "stale")


def _snapshot_rows(portfolio: Portfolio, days: list[date], progress=None) -> list[Snapshot]:
    """Unsaved snapshots of ``days`` (ascending NYSE sessions), from one load of the books."""
    ledger = _Ledger(portfolio, days[-1])
    with firm_scope(portfolio.firm_id):
        benchmark = ledger.instrument(portfolio.benchmark_id) if portfolio.benchmark_id else None
        rows = []
        for n, (day, state) in enumerate(ledger.states(days), 1):
            s, prices = ledger.summary(day, state, extra=[benchmark] if benchmark else [])
            bench = prices.get(benchmark.pk) if benchmark else None
            rows.append(Snapshot(
                firm_id=portfolio.firm_id, portfolio_id=portfolio.pk, date=day, cash=s.cash,
                settled_cash=s.settled_cash, market_value=s.market_value, equity=s.equity,
                net_flow=ledger.flows(_previous_session(day), day), realized=s.realized, unrealized=s.unrealized,
                benchmark_close=bench.value if bench else None, stale=s.stale))
            if progress is not None:
                progress(n, len(days), day)
    return rows


def _upsert(portfolio: Portfolio, rows: list[Snapshot]) -> None:
    with firm_scope(portfolio.firm_id), transaction.atomic():
        Snapshot.objects.bulk_create(rows, batch_size=500, update_conflicts=True,
                                     unique_fields=["portfolio", "date"], update_fields=[*SNAPSHOT_FIELDS, "created_at"])


def snapshot_take(portfolio: Portfolio, day: date) -> Snapshot:
    """Upsert the snapshot of ``portfolio`` for ``day`` (idempotent: a rerun rewrites the same row).

    Snapshots are derived data (reproducible from the journal, fills and bars), so they are not
    audited; the ledger they summarize is."""
    _upsert(portfolio, _snapshot_rows(portfolio, [day]))
    with firm_scope(portfolio.firm_id):
        return Snapshot.objects.get(portfolio_id=portfolio.pk, date=day)


def sessions_between(start: date, end: date) -> list[date]:
    """NYSE session dates from ``start`` to ``end`` inclusive (the dates snapshots are taken for)."""
    if start > end:
        return []
    return [s.day for s in calendars.sessions(BOOKS_EXCHANGE, start, end)]


def last_completed_session(now: datetime | None = None) -> date | None:
    now = now or timezone.now()
    found = calendars.sessions(BOOKS_EXCHANGE, (now - timedelta(days=14)).date(), now.date())
    done = [s for s in found if s.close <= now]
    return done[-1].day if done else None


def snapshots_at_close(*, now: datetime | None = None) -> dict:
    """Beat task body: for every firm and portfolio, snapshot the latest completed NYSE session if
    that snapshot is missing, and re-take past snapshots that were stale (``_repair_stale``).
    Idempotent; a portfolio that fails is logged and the rest go on."""
    from apps.accounts.models import Firm

    day = last_completed_session(now)
    out = {"session": day.isoformat() if day else None, "firms": 0, "taken": 0, "failed": 0, "repaired": 0}
    if day is None:
        return out
    budget = REPAIR_PORTFOLIOS_PER_RUN
    for firm_id in Firm.objects.order_by("pk").values_list("pk", flat=True):
        out["firms"] += 1
        with firm_scope(firm_id):
            portfolios = list(Portfolio.objects.filter(firm_id=firm_id).exclude(
                snapshots__date=day).select_related("benchmark").order_by("pk"))
            for portfolio in portfolios:
                try:
                    snapshot_take(portfolio, day)
                    out["taken"] += 1
                except Exception:  # one broken portfolio must not stop every firm's books
                    log.exception("snapshot of portfolio %s for %s failed", portfolio.pk, day)
                    out["failed"] += 1
            if budget > 0:
                repaired, budget = _repair_stale(firm_id, day, budget)
                out["repaired"] += repaired
    return out


REPAIR_AFTER = timedelta(minutes=30)
REPAIR_PORTFOLIOS_PER_RUN = 25


def _repair_stale(firm_id: int, day: date, budget: int) -> tuple[int, int]:
    """Re-take the past snapshots that were stale when taken (prices missing: e.g. history imported
    before its bars were backfilled) once they are at least ``REPAIR_AFTER`` old, oldest first, for
    at most ``budget`` portfolios. A price that never arrives keeps its snapshot stale; it is retried
    each ``REPAIR_AFTER`` within the budget. Returns (snapshots re-taken, budget left)."""
    from django.db.models import Max, Min

    cutoff = timezone.now() - REPAIR_AFTER
    ranges = list(Snapshot.objects.filter(stale=True, date__lt=day, created_at__lt=cutoff)
                  .values("portfolio_id").annotate(first=Min("date"), last=Max("date"), oldest=Min("created_at"))
                  .order_by("oldest")[:budget])
    taken = 0
    for row in ranges:
        portfolio = Portfolio.objects.select_related("benchmark").get(pk=row["portfolio_id"])
        try:
            taken += snapshots_backfill(portfolio, row["first"], row["last"])
        except Exception:
            log.exception("repairing the snapshots of portfolio %s failed", portfolio.pk)
    return taken, budget - len(ranges)


def snapshots_backfill(portfolio: Portfolio, start: date, end: date,
                       progress: Callable[[int, int, date], None] | None = None) -> int:
    """Snapshot every NYSE session from ``start`` to ``end`` (upserts, in one transaction); returns how
    many were written. The books are loaded once and replayed day by day; prices are a query or two a day."""
    days = sessions_between(start, end)
    if not days:
        return 0
    _upsert(portfolio, _snapshot_rows(portfolio, days, progress))
    return len(days)


# ---------------------------------------------------------------------------- series and performance

SERIES_COLUMNS = ("equity", "net_flow", "benchmark_close", "cash", "market_value")


def equity_series(portfolio: Portfolio, *, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """Snapshots as a float frame indexed by date (a DatetimeIndex named ``date``), oldest first, with
    columns equity, net_flow, benchmark_close (NaN when unknown), cash, market_value."""
    with firm_scope(portfolio.firm_id):
        qs = Snapshot.objects.filter(portfolio_id=portfolio.pk)
        if start is not None:
            qs = qs.filter(date__gte=start)
        if end is not None:
            qs = qs.filter(date__lte=end)
        rows = list(qs.order_by("date").values_list("date", *SERIES_COLUMNS))
    frame = pd.DataFrame(
        [[float(v) if v is not None else float("nan") for v in r[1:]] for r in rows],
        index=pd.DatetimeIndex([pd.Timestamp(r[0]) for r in rows], name="date"),
        columns=list(SERIES_COLUMNS), dtype="float64",
    )
    return frame


def _iso(ts) -> str:
    return pd.Timestamp(ts).date().isoformat()


def _floats(series: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in series.to_numpy()]


def _curves(frame: pd.DataFrame) -> dict:
    if frame.empty:
        return {"dates": [], "equity": [], "growth": [], "benchmark": [], "drawdown": []}
    growth = metrics.growth_index(frame["equity"], frame["net_flow"], base=100.0)
    bench = frame["benchmark_close"].dropna()
    bench_curve: list[float | None] = [None] * len(frame)
    if len(bench) and not growth.isna().all():
        try:
            norm = metrics.normalize_curves(growth.ffill(), bench, base=100.0)
            aligned = norm["benchmark"].reindex(frame.index)
            # rebased to the portfolio's level on their first common date
            bench_curve = _floats(aligned / 100.0 * growth.loc[norm.index[0]]) if len(norm) else bench_curve
        except ValueError:
            pass
    return {
        "dates": [_iso(d) for d in frame.index],
        "equity": _floats(frame["equity"]),
        "growth": _floats(growth),
        "benchmark": bench_curve,
        "drawdown": _floats(metrics.drawdown_series(growth.ffill().fillna(100.0))),
    }


def instrument_pnl(portfolio: Portfolio, start: date, end: date) -> dict[int, Decimal]:
    """P&L per instrument over (start, end]: market value at end - market value at start - purchases
    + sale proceeds - trade fees + dividends (fills and journal dated in the period)."""
    with firm_scope(portfolio.firm_id):
        before, _ = _value_on(portfolio, start)
        after, _ = _value_on(portfolio, end)
        pnl: dict[int, Decimal] = {}
        for h in after:
            pnl[h.instrument_id] = pnl.get(h.instrument_id, ZERO) + h.market_value
        for h in before:
            pnl[h.instrument_id] = pnl.get(h.instrument_id, ZERO) - h.market_value
        for f in Fill.objects.filter(portfolio_id=portfolio.pk, trade_date__gt=start, trade_date__lte=end).values(
                "instrument_id", "side", "quantity", "price", "fees", "multiplier"):
            gross = f["quantity"] * f["price"] * f["multiplier"]
            cash = (gross if f["side"] == "sell" else -gross) - f["fees"]
            pnl[f["instrument_id"]] = pnl.get(f["instrument_id"], ZERO) + cash
        for instrument_id, total in (JournalLine.objects.filter(
                portfolio_id=portfolio.pk, account=Account.DIVIDENDS, trade_date__gt=start, trade_date__lte=end,
                instrument_id__isnull=False).values_list("instrument_id").annotate(t=Sum("amount"))
                .values_list("instrument_id", "t")):
            pnl[instrument_id] = pnl.get(instrument_id, ZERO) - total
    return pnl


def _attribution(portfolio: Portfolio, start: date, end: date) -> dict:
    pnl = instrument_pnl(portfolio, start, end)
    instruments = {i.pk: i for i in Instrument.objects.filter(pk__in=list(pnl))}
    columns = {instruments[k].symbol: float(v) for k, v in pnl.items()}
    classes = {instruments[k].symbol: instruments[k].asset_class for k in pnl}
    result = metrics.attribute_pnl(pd.DataFrame([columns]) if columns else pd.DataFrame(), classes)
    return {"start": start.isoformat(), "end": end.isoformat(), "total": result.total,
            "by_instrument": result.by_instrument, "by_asset_class": result.by_asset_class,
            "share_by_instrument": result.share_by_instrument, "share_by_asset_class": result.share_by_asset_class}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def performance(portfolio: Portfolio, *, start: date | None = None, end: date | None = None) -> dict:
    """Performance over the snapshots in [start, end]: ``metrics.performance_summary`` (flows =
    deposits - withdrawals; dates as ISO strings, undefined metrics None), ``curves`` (dates,
    equity, growth index from 100, benchmark rebased to the growth index, drawdown fractions) and
    ``attribution`` of P&L by instrument and asset class between the first and last snapshot."""
    frame = equity_series(portfolio, start=start, end=end)
    bench = frame["benchmark_close"].dropna()
    try:
        summary_ = metrics.performance_summary(frame["equity"], frame["net_flow"],
                                               benchmark_prices=bench if len(bench) > 1 else None)
        out = _jsonable(summary_.as_dict())
    except ValueError:  # e.g. a curve the maths refuses; report what is known
        out = _jsonable(metrics.performance_summary(pd.Series([], dtype="float64")).as_dict())
    out["curves"] = _curves(frame)
    if len(frame) >= 2:
        out["attribution"] = _attribution(portfolio, frame.index[0].date(), frame.index[-1].date())
    else:
        out["attribution"] = {"start": None, "end": None, "total": 0.0, "by_instrument": {}, "by_asset_class": {},
                              "share_by_instrument": None, "share_by_asset_class": None}
    return out


__all__ = [
    "Holding", "Price", "Summary", "books_cut", "close_on", "equity_series", "holdings", "instrument_pnl",
    "last_completed_session", "performance", "positions_on", "sessions_between", "snapshot_take",
    "snapshots_at_close", "snapshots_backfill", "summary", "summary_on",
]
