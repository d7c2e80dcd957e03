"""Portfolios and their books: the fills, the double-entry cash journal, tax lots, realized gains,
positions, corporate actions, trade imports and end-of-day snapshots.

Who writes what: ``apps.portfolios.services`` (and ``booking`` under it) is the only writer of the
ledger tables (Fill, JournalEntry, JournalLine, Lot, RealizedGain, Position). Fills and journal
rows are append-only: PostgreSQL refuses UPDATE and DELETE on them (triggers from migration 0002),
so a correction is always a new entry. Lots and positions are the current state derived from the
fills (``rebuild_portfolio`` proves it); realized-gain rows change only when a later purchase
washes an earlier sale, and that change is audited.

Amounts are exact: ``ExactDecimalField`` is PostgreSQL ``numeric`` without a fixed scale, so what
the pure engine (``lots``/``wash``) computed is stored as it is, and a rebuild compares equal.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import ExactDecimalField, FirmOwnedModel
from apps.portfolios.lots import Method


class PortfolioMode(models.TextChoices):
    PAPER = "paper", "Paper"
    LIVE = "live", "Live"


class CostBasisMethod(models.TextChoices):
    FIFO = Method.FIFO.value, "FIFO (first in, first out)"
    LIFO = Method.LIFO.value, "LIFO (last in, first out)"
    HIFO = Method.HIFO.value, "Highest cost first"
    SPECIFIC = Method.SPECIFIC.value, "Specific identification"
    AVERAGE = Method.AVERAGE.value, "Average cost"


class TaxEntity(FirmOwnedModel):
    """One taxpayer. Wash-sale rules apply across all of its portfolios."""

    name = models.CharField(max_length=120)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "tax entities"
        constraints = [models.UniqueConstraint(fields=["firm", "name"], name="portfolios_taxentity_firm_name_uniq")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Portfolio(FirmOwnedModel):
    name = models.CharField(max_length=120)
    base_currency = models.CharField(max_length=3, default="USD")
    mode = models.CharField(max_length=5, choices=PortfolioMode.choices, default=PortfolioMode.PAPER)
    cost_basis_method = models.CharField(max_length=8, choices=CostBasisMethod.choices, default=CostBasisMethod.FIFO)
    allow_short = models.BooleanField(default=False, help_text="Sells beyond the long position open short lots.")
    benchmark = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="+")
    tax_entity = models.ForeignKey(TaxEntity, on_delete=models.PROTECT, related_name="portfolios")
    restricted = models.BooleanField(
        default=False,
        help_text="Traders, analysts and compliance see or trade it only with an explicit grant; owners and "
                  "admins always can.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["firm", "name"], name="portfolios_portfolio_firm_name_uniq")]
        permissions = [("trade_portfolio", "Can trade the portfolio"), ("manage_portfolio", "Can manage the portfolio")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FillSource(models.TextChoices):
    ORDER = "order", "Order"
    IMPORT = "import", "Import"
    MANUAL = "manual", "Manual entry"


class Fill(FirmOwnedModel):
    """A booked execution. ``seq`` is the booking order (the order a rebuild replays)."""

    seq = models.BigAutoField(primary_key=True)
    fill_id = models.CharField(max_length=128, help_text="Unique per firm: the broker's execution id or an import key.")
    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="fills")
    tax_entity = models.ForeignKey(TaxEntity, on_delete=models.PROTECT, related_name="+")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    side = models.CharField(max_length=4)
    quantity = ExactDecimalField()
    price = ExactDecimalField()
    fees = ExactDecimalField(default=Decimal(0))
    multiplier = models.PositiveIntegerField(default=1)
    executed_at = models.DateTimeField()
    trade_date = models.DateField()
    settle_date = models.DateField()
    lot_ids = models.JSONField(default=list, blank=True, help_text="Specific identification: the lots it closed.")
    source = models.CharField(max_length=8, choices=FillSource.choices, default=FillSource.ORDER)
    order_ref = models.CharField(max_length=64, blank=True, help_text="The order it executed, when there is one.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["firm", "fill_id"], name="portfolios_fill_firm_fill_id_uniq"),
            models.CheckConstraint(condition=Q(quantity__gt=0) & Q(price__gte=0) & Q(fees__gte=0),
                                   name="portfolios_fill_amounts_valid"),
            models.CheckConstraint(condition=Q(side__in=["buy", "sell"]), name="portfolios_fill_side_valid"),
        ]
        indexes = [
            models.Index(fields=["tax_entity", "instrument", "executed_at"]),
            models.Index(fields=["portfolio", "executed_at"]),
        ]
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} @ {self.price} ({self.fill_id})"


class Account(models.TextChoices):
    """The chart of accounts of a portfolio. Amounts are signed: debit positive, credit negative,
    and the lines of one entry sum to zero."""

    CASH = "cash", "Cash"
    SECURITIES = "securities", "Securities at cost"  # long lots' cost minus short lots' proceeds
    CAPITAL = "capital", "Capital (deposits and withdrawals)"
    REALIZED = "realized", "Realized gains and losses"
    FEES = "fees", "Fees and commissions"
    DIVIDENDS = "dividends", "Dividend income"
    INTEREST = "interest", "Interest"
    CORPORATE = "corporate", "Corporate-action cash"
    ADJUSTMENT = "adjustment", "Adjustments"


class EntryKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    TRADE = "trade", "Trade settlement"
    FEE = "fee", "Fee"
    DIVIDEND = "dividend", "Dividend"
    INTEREST = "interest", "Interest"
    CORPORATE_ACTION = "corporate_action", "Corporate-action cash"
    ADJUSTMENT = "adjustment", "Adjustment"


EXTERNAL_FLOW_KINDS = (EntryKind.DEPOSIT, EntryKind.WITHDRAWAL)


class JournalEntry(FirmOwnedModel):
    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="journal")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    trade_date = models.DateField()
    settle_date = models.DateField()
    posted_at = models.DateTimeField()
    memo = models.CharField(max_length=300, blank=True, help_text="Why: required for adjustments.")
    fill = models.OneToOneField(Fill, on_delete=models.PROTECT, null=True, blank=True, related_name="entry")
    corporate_action = models.ForeignKey("CorporateAction", on_delete=models.PROTECT, null=True, blank=True,
                                         related_name="+")
    idempotency_key = models.CharField(max_length=128, blank=True,
                                       help_text="Refuses a second posting of the same external event.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", db_constraint=False)

    class Meta:
        verbose_name_plural = "journal entries"
        constraints = [
            models.UniqueConstraint(fields=["portfolio", "idempotency_key"], condition=~Q(idempotency_key=""),
                                    name="portfolios_entry_idempotency_uniq"),
        ]
        indexes = [models.Index(fields=["portfolio", "trade_date"])]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.trade_date}"


class JournalLine(FirmOwnedModel):
    """One side of an entry. ``portfolio``/``firm`` are repeated from the entry so balances are one
    index scan; ``settle_date`` likewise, for settled cash."""

    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="lines")
    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="+")
    account = models.CharField(max_length=12, choices=Account.choices)
    amount = ExactDecimalField(help_text="Debit positive, credit negative.")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    trade_date = models.DateField()
    settle_date = models.DateField()
    memo = models.CharField(max_length=120, blank=True)

    class Meta:
        indexes = [models.Index(fields=["portfolio", "account", "settle_date"])]
        ordering = ["id"]


class Position(FirmOwnedModel):
    """Current holding of one instrument: the sum of its open lots (quantity and book cost) plus the
    economic realized P&L so far. Kept in the booking transaction; ``rebuild_portfolio`` checks it."""

    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="positions")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    quantity = ExactDecimalField(default=Decimal(0))
    cost = ExactDecimalField(default=Decimal(0), help_text="Signed book cost of the open lots (short: negative).")
    realized = ExactDecimalField(default=Decimal(0), help_text="Realized P&L (before wash-sale adjustments).")
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portfolio", "instrument"],
                                               name="portfolios_position_uniq")]

    def __str__(self) -> str:
        return f"{self.instrument_id}: {self.quantity}"


class Lot(FirmOwnedModel):
    """A tax lot, open (quantity != 0) or closed (0, kept for history)."""

    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="lots")
    tax_entity = models.ForeignKey(TaxEntity, on_delete=models.PROTECT, related_name="+")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    lot_id = models.CharField(max_length=160, help_text="The opening fill's id; '<id>.<n>' for a part split off it.")
    origin_fill = models.ForeignKey(Fill, on_delete=models.PROTECT, related_name="+")
    part = models.PositiveIntegerField(default=0, help_text="0 for the lot itself, n for '<lot_id>.<n>'.")
    quantity = ExactDecimalField()
    original_quantity = ExactDecimalField()
    cost = ExactDecimalField(help_text="Total paid (long) or received (short), fees included.")
    basis_adjustment = ExactDecimalField(default=Decimal(0), help_text="Disallowed wash-sale losses added.")
    acquired = models.DateTimeField()
    holding_start = models.DateField()
    replacement_used = models.BooleanField(default=False)
    splits = models.PositiveIntegerField(default=0)
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["firm", "lot_id"], name="portfolios_lot_firm_lot_id_uniq")]
        indexes = [
            models.Index(fields=["tax_entity", "instrument"], condition=~Q(quantity=0), name="portfolios_lot_open"),
            models.Index(fields=["portfolio", "instrument"]),
        ]
        ordering = ["origin_fill_id", "part"]

    def __str__(self) -> str:
        return self.lot_id

    @property
    def basis(self) -> Decimal:
        return self.cost + self.basis_adjustment


class RealizedGain(FirmOwnedModel):
    gain_id = models.CharField(max_length=300)
    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="realized_gains")
    tax_entity = models.ForeignKey(TaxEntity, on_delete=models.PROTECT, related_name="+")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    fill = models.ForeignKey(Fill, on_delete=models.PROTECT, related_name="gains")
    lot_id = models.CharField(max_length=160)
    lot_origin_fill_id = models.CharField(max_length=128)
    direction = models.CharField(max_length=5)  # long (a sale) or short (a cover)
    quantity = ExactDecimalField()
    acquired = models.DateTimeField()
    sold = models.DateTimeField()
    sold_date = models.DateField()
    holding_start = models.DateField()
    proceeds = ExactDecimalField()
    cost_basis = ExactDecimalField()
    gain = ExactDecimalField(help_text="Proceeds minus cost basis, before any wash-sale adjustment.")
    term = models.CharField(max_length=5)  # short or long
    wash_code = models.CharField(max_length=1, blank=True)
    disallowed = ExactDecimalField(default=Decimal(0))
    washed_quantity = ExactDecimalField(default=Decimal(0))
    tax_year = models.PositiveSmallIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["firm", "gain_id"], name="portfolios_gain_firm_gain_id_uniq")]
        indexes = [
            models.Index(fields=["portfolio", "tax_year", "term"]),
            models.Index(fields=["tax_entity", "instrument", "sold_date"], condition=Q(gain__lt=0),
                         name="portfolios_gain_losses"),
        ]
        ordering = ["fill_id", "id"]

    def __str__(self) -> str:
        return self.gain_id

    @property
    def adjusted_gain(self) -> Decimal:
        return self.gain + self.disallowed


class CorporateActionKind(models.TextChoices):
    SPLIT = "split", "Split or reverse split"
    CASH_DIVIDEND = "cash_dividend", "Cash dividend"
    SYMBOL_CHANGE = "symbol_change", "Symbol change"


class CorporateAction(FirmOwnedModel):
    """A corporate action as the firm entered or imported it; applying it to the firm's portfolios
    is idempotent (``CorporateActionApplication``)."""

    kind = models.CharField(max_length=16, choices=CorporateActionKind.choices)
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    ex_date = models.DateField(help_text="Split: effective date. Dividend: ex-date.")
    record_date = models.DateField(null=True, blank=True)
    pay_date = models.DateField(null=True, blank=True)
    ratio_from = ExactDecimalField(null=True, blank=True, help_text="Split: old shares (2-for-1: from 1 to 2).")
    ratio_to = ExactDecimalField(null=True, blank=True, help_text="Split: new shares.")
    cash_per_share = ExactDecimalField(null=True, blank=True, help_text="Dividend per share.")
    new_symbol = models.CharField(max_length=32, blank=True)
    cash_in_lieu_price = ExactDecimalField(
        null=True, blank=True,
        help_text="Split of a non-fractionable instrument: price per post-split share paid for fractions.")
    applied_at = models.DateTimeField(null=True, blank=True,
                                      help_text="When it was applied to the firm's portfolios (due processing).")
    new_instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, null=True, blank=True,
                                       related_name="+")
    reference = models.CharField(max_length=128, help_text="Unique per firm: a second import of it is a no-op.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", db_constraint=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["firm", "reference"], name="portfolios_ca_firm_reference_uniq"),
            models.CheckConstraint(
                condition=~Q(kind="split") | (Q(ratio_from__gt=0) & Q(ratio_to__gt=0)),
                name="portfolios_ca_split_ratio_positive"),
            models.CheckConstraint(condition=~Q(kind="cash_dividend") | Q(cash_per_share__gt=0),
                                   name="portfolios_ca_dividend_positive"),
        ]
        ordering = ["-ex_date", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.instrument_id} {self.ex_date}"


class CorporateActionApplication(FirmOwnedModel):
    action = models.ForeignKey(CorporateAction, on_delete=models.PROTECT, related_name="applications")
    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="+")
    applied_at = models.DateTimeField()
    summary = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["action", "portfolio"], name="portfolios_ca_applied_once")]


class TradeImportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class TradeImport(FirmOwnedModel):
    """A CSV of past fills from another broker, mapped, validated and booked (all or nothing by default)."""

    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="imports")
    filename = models.CharField(max_length=255)
    mapping = models.JSONField(default=dict, help_text="Our column -> the file's column.")
    status = models.CharField(max_length=10, choices=TradeImportStatus.choices, default=TradeImportStatus.PENDING)
    all_or_nothing = models.BooleanField(default=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    rows_booked = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", db_constraint=False)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class Snapshot(FirmOwnedModel):
    """A portfolio at one session's close."""

    portfolio = models.ForeignKey(Portfolio, on_delete=models.PROTECT, related_name="snapshots")
    date = models.DateField()
    cash = ExactDecimalField()
    settled_cash = ExactDecimalField()
    market_value = ExactDecimalField()
    equity = ExactDecimalField()
    net_flow = ExactDecimalField(default=Decimal(0), help_text="Deposits minus withdrawals that day.")
    realized = ExactDecimalField(default=Decimal(0), help_text="Realized P&L to date.")
    unrealized = ExactDecimalField(default=Decimal(0))
    benchmark_close = ExactDecimalField(null=True, blank=True)
    stale = models.BooleanField(default=False, help_text="Some price was missing or older than the session.")
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portfolio", "date"], name="portfolios_snapshot_uniq")]
        ordering = ["date"]
