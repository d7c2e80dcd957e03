"""The demo firm's portfolios, with imported history worth looking at (``manage.py seed_demo``).

"Demo Growth" (FIFO, benchmark SPY) and "Demo Income", in the firm's default tax entity, get about
fifteen months of history imported the way a firm would bring it: the broker CSV
``demo_data/demo_trades.csv`` through the trade import service (``trade_import_file``, all or
nothing) and the corporate actions file ``demo_data/demo_corporate_actions.csv`` through
``corporate_actions_import`` + ``corporate_action_apply``. What it shows:

- lots, FIFO closes, realized gains short and long term (the first buys are held more than a year);
- a wash sale: 100 TSLA sold at a loss, 40 bought back in Demo Growth and 30 in Demo Income (same
  taxpayer) within 30 days: 70 shares' loss disallowed (partial replacement, across portfolios);
- a 2-for-1 NVDA split between imports (a split is refused once later fills are booked, so the
  history is imported in two parts around its ex-date); quarterly cash dividends;
- end-of-day snapshots of the last three months (``snapshots_backfill_hint()``: the commands for the
  whole history, best run once the Celery worker has backfilled the bars).

The files' dates end in November 2026; they are moved by whole weeks (weekdays stay weekdays) so
the history ends about two weeks before today. A trade's price is the close of the stored 1-minute
bar at (or up to a day before) its time when there is one; ``seed_demo`` queues the year of bars
for the Celery worker, so at seed time most are not there yet and the file's prices are used
(the snapshot commands above then value the history at the bars).

Idempotent: a portfolio that already has fills is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.marketdata.models import Bar, Instrument
from apps.portfolios import services
from apps.portfolios.corporate import corporate_action_apply, corporate_actions_import
from apps.portfolios.lots import TAX_TZ
from apps.portfolios.models import CorporateAction, Fill, Portfolio
from apps.portfolios.trade_import import trade_import_file
from apps.portfolios.valuation import last_completed_session, snapshots_backfill

DATA = Path(__file__).resolve().parent / "demo_data"
TRADES_FILE = DATA / "demo_trades.csv"
ACTIONS_FILE = DATA / "demo_corporate_actions.csv"
FILE_END = date(2026, 11, 20)  # a Friday: the files' dates are moved by whole weeks from it
GROWTH, INCOME = "Demo Growth", "Demo Income"
PORTFOLIOS = {GROWTH: {"benchmark": "SPY"}, INCOME: {"benchmark": "SPY"}}
MAPPING = {"executed_at": "Date", "type": "Type", "symbol": "Symbol", "side": "Side", "quantity": "Quantity",
           "price": "Price", "commission": "Commission", "amount": "Amount", "fill_id": "Fill ID",
           "memo": "Description"}
COLUMNS = list(MAPPING.values())
SPLIT_KIND = "split"
SNAPSHOT_DAYS = 92  # snapshots taken at seed time: about a quarter of sessions


def snapshots_backfill_hint(today: date | None = None) -> str:
    """The commands that snapshot the whole demo history (after the Celery worker has the bars)."""
    today = today or timezone.localdate()
    start = date(2025, 8, 4) + timedelta(weeks=(today - FILE_END).days // 7)
    return " && ".join(f'python manage.py snapshots_backfill "{name}" --firm demo --start {start.isoformat()}'
                       for name in PORTFOLIOS)


def demo_portfolios_seed(*, firm_id: int, actor: Actor, today: date | None = None) -> int:
    """Create the demo portfolios with their history unless they have fills; returns the number of
    changes (0 on a second run). Raises DomainError if an import is refused (nothing of that part
    written)."""
    today = today or timezone.localdate()
    shift = timedelta(weeks=(today - FILE_END).days // 7)
    with firm_scope(firm_id):
        portfolios = {name: _portfolio(firm_id, name, actor) for name in PORTFOLIOS}
        if Fill.objects.filter(portfolio__in=portfolios.values()).exists():
            return 0
    rows = _trade_rows(shift)
    actions = _shifted_actions(shift)
    split_days = sorted(date.fromisoformat(a["ex_date"]) for a in actions if a["kind"] == SPLIT_KIND)
    cut = split_days[0] if split_days else date.max
    changes = len(portfolios)
    # part 1: the history before the split, then the corporate actions (the split applies now,
    # before any later fill), then the rest, then the dividends (holders are counted from the fills)
    for name, portfolio in portfolios.items():
        changes += _import(portfolio, [r for r in rows if r["Account"] == name and _day(r) < cut], actor, "1")
    created = corporate_actions_import(firm_id=firm_id, text=_csv(actions, list(actions[0])), actor=actor)
    changes += created["created"]
    with firm_scope(firm_id):
        split_actions = list(CorporateAction.objects.filter(firm_id=firm_id, kind=SPLIT_KIND,
                                                            reference__startswith="demo:").order_by("ex_date"))
        dividends = list(CorporateAction.objects.filter(firm_id=firm_id, reference__startswith="demo:")
                         .exclude(kind=SPLIT_KIND).order_by("ex_date"))
    for action in split_actions:
        changes += len(corporate_action_apply(action=action, actor=actor, portfolios=list(portfolios.values())))
    for name, portfolio in portfolios.items():
        changes += _import(portfolio, [r for r in rows if r["Account"] == name and _day(r) >= cut], actor, "2")
    for action in dividends:
        if action.pay_date <= today:
            changes += len(corporate_action_apply(action=action, actor=actor, portfolios=list(portfolios.values())))
    _snapshots(portfolios.values(), rows)
    return changes


def _portfolio(firm_id: int, name: str, actor: Actor) -> Portfolio:
    found = Portfolio.objects.filter(firm_id=firm_id, name=name).first()
    if found is not None:
        return found
    benchmark = Instrument.objects.filter(symbol=PORTFOLIOS[name]["benchmark"]).first()
    return services.portfolio_create(firm_id=firm_id, name=name, actor=actor, benchmark=benchmark)


def _day(row: dict) -> date:
    return datetime.fromisoformat(row["Date"]).date()


def _trade_rows(shift: timedelta) -> list[dict]:
    """The broker file's rows, dates moved by ``shift``, prices from stored bars where there are any."""
    with TRADES_FILE.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    symbols = {r["Symbol"] for r in rows if r["Symbol"]}
    instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=symbols).exclude(asset_class="option")}
    for row in rows:
        when = datetime.fromisoformat(row["Date"]) + shift  # New York wall time, as the file gives it
        row["Date"] = when.strftime("%Y-%m-%d %H:%M")
        instrument = instruments.get(row["Symbol"])
        if row["Type"] == "trade" and instrument is not None:
            price = _bar_close(instrument, when.replace(tzinfo=TAX_TZ))
            if price is not None:
                row["Price"] = str(price)
    return rows


def _bar_close(instrument: Instrument, when: datetime) -> Decimal | None:
    bar = (Bar.objects.filter(instrument=instrument, timeframe="1m", ts__lte=when, ts__gt=when - timedelta(days=1))
           .order_by("-ts").values_list("close", flat=True).first())
    return Decimal(bar).quantize(Decimal("0.01")) if bar is not None else None


def _shifted_actions(shift: timedelta) -> list[dict]:
    with ACTIONS_FILE.open(newline="") as fh:
        actions = list(csv.DictReader(fh))
    for action in actions:
        for key in ("ex_date", "record_date", "pay_date"):
            if action[key]:
                action[key] = (date.fromisoformat(action[key]) + shift).isoformat()
    return actions


def _csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _import(portfolio: Portfolio, rows: list[dict], actor: Actor, part: str) -> int:
    if not rows:
        return 0
    content = _csv(rows, COLUMNS).encode()
    imp = trade_import_file(portfolio=portfolio, filename=f"demo-{portfolio.name.lower().replace(' ', '-')}-{part}.csv",
                            content=content, actor=actor, mapping=MAPPING)
    if imp.rows_booked != len(rows):
        raise DomainError("DEMO_IMPORT_FAILED", f"The demo import into {portfolio.name} booked {imp.rows_booked} "
                          f"of {len(rows)} rows: {imp.report.get('issues') or imp.report.get('message')}")
    return imp.rows_booked


def _snapshots(portfolios, rows: list[dict]) -> None:
    """The last SNAPSHOT_DAYS of snapshots now (a session takes ~0.1 s to value, so the whole history
    would make the seed minutes long); ``snapshots_backfill_hint`` gives the command for the rest."""
    end = last_completed_session()
    if end is None or not rows:
        return
    start = max(min(_day(r) for r in rows), end - timedelta(days=SNAPSHOT_DAYS))
    for portfolio in portfolios:
        with firm_scope(portfolio.firm_id), transaction.atomic():
            snapshots_backfill(portfolio, start, end)
