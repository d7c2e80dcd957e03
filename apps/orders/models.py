"""Orders, their append-only event history, and the firm's trading controls.

Who writes what: ``apps.orders.services`` is the only writer. An order is created by the one order
path (``order_submit``) and changes only through ``apply_transition`` there, which checks the move
against ``core.TRANSITIONS`` and appends an ``OrderEvent`` in the same transaction. Order events are
append-only: PostgreSQL refuses UPDATE and DELETE on them (migration 0002), so an order's original
terms and every step after them can always be rebuilt (reliability target 10c).

The order row doubles as the transactional outbox: it is committed in status ``received`` and a
relay hands every ``received`` order to its broker after commit (``services.order_route``); a crash
between the commit and the broker call leaves the row ``received``, and the next relay pass sends it.
The broker-side idempotency key (``broker_client_order_id``) is fixed when the row is created, so
any retry sends the same one.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import ExactDecimalField, FirmOwnedModel
from apps.orders.core import OrderClass, OrderType, Side, Status, TimeInForce


def _choices(enum) -> list[tuple[str, str]]:
    return [(member.value, member.value.replace("_", " ")) for member in enum]


class Origin(models.TextChoices):
    UI = "ui", "Browser"
    API = "api", "API token"
    BOT = "bot", "Bot"
    SYSTEM = "system", "System"


class BrokerName(models.TextChoices):
    PAPER = "paper", "Paper"
    ALPACA = "alpaca", "Alpaca"


class LegRole(models.TextChoices):
    ENTRY = "", "Entry / simple"
    TAKE_PROFIT = "take_profit", "Take profit"
    STOP_LOSS = "stop_loss", "Stop loss"


class Order(FirmOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    portfolio = models.ForeignKey("portfolios.Portfolio", on_delete=models.PROTECT, related_name="orders")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    symbol = models.CharField(max_length=32)
    asset_class = models.CharField(max_length=8)
    side = models.CharField(max_length=4, choices=_choices(Side))
    type = models.CharField(max_length=13, choices=_choices(OrderType))
    time_in_force = models.CharField(max_length=3, choices=_choices(TimeInForce))
    order_class = models.CharField(max_length=7, choices=_choices(OrderClass), default=OrderClass.SIMPLE)
    qty = ExactDecimalField(null=True, blank=True)
    notional = ExactDecimalField(null=True, blank=True)
    limit_price = ExactDecimalField(null=True, blank=True)
    stop_price = ExactDecimalField(null=True, blank=True)
    trail_price = ExactDecimalField(null=True, blank=True)
    trail_percent = ExactDecimalField(null=True, blank=True)
    extended_hours = models.BooleanField(default=False)
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="legs")
    leg = models.CharField(max_length=11, choices=LegRole.choices, blank=True, default="")
    replaces = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="replaced_by")
    algo = models.ForeignKey("AlgoOrder", on_delete=models.PROTECT, null=True, blank=True, related_name="children",
                             help_text="The TWAP/VWAP parent that sent this child.")

    client_order_id = models.CharField(max_length=128, help_text="Unique per firm: the client's idempotency key.")
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of the request's terms: a repeat must match.")
    broker = models.CharField(max_length=6, choices=BrokerName.choices, default=BrokerName.PAPER)
    broker_client_order_id = models.CharField(max_length=128, unique=True,
                                              help_text="Sent to the broker; fixed before the first call.")
    broker_order_id = models.CharField(max_length=64, blank=True)

    status = models.CharField(max_length=25, choices=_choices(Status), default=Status.RECEIVED)
    reject_code = models.CharField(max_length=40, blank=True)
    reject_reason = models.CharField(max_length=500, blank=True)
    filled_qty = ExactDecimalField(default=Decimal(0))
    filled_value = ExactDecimalField(default=Decimal(0))
    fees = ExactDecimalField(default=Decimal(0))
    reserve_price = ExactDecimalField(null=True, blank=True, help_text="The pre-trade price estimate.")
    reserved = ExactDecimalField(default=Decimal(0),
                                 help_text="Buying power the order took at submission (released as it fills).")
    paper_state = models.JSONField(default=dict, blank=True, help_text="The paper engine's working state.")
    submit_attempts = models.PositiveIntegerField(default=0)

    origin = models.CharField(max_length=6, choices=Origin.choices)
    source = models.CharField(max_length=40, help_text="ui, api, bot:<id>, system:<what>.")
    entered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", db_constraint=False)
    token_id = models.BigIntegerField(null=True, blank=True)
    responsible_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                         blank=True, related_name="+", db_constraint=False)

    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["firm", "client_order_id"], name="orders_order_firm_coid_uniq"),
            models.CheckConstraint(condition=Q(qty__isnull=True) | Q(qty__gt=0), name="orders_order_qty_positive"),
            models.CheckConstraint(condition=Q(notional__isnull=True) | Q(notional__gt=0),
                                   name="orders_order_notional_positive"),
            models.CheckConstraint(condition=Q(filled_qty__gte=0), name="orders_order_filled_nonnegative"),
            # an overfill is refused by the database too, whatever the code above it does
            models.CheckConstraint(condition=Q(qty__isnull=True) | Q(filled_qty__lte=models.F("qty")),
                                   name="orders_order_no_overfill"),
        ]
        indexes = [
            models.Index(fields=["firm", "status"]),
            models.Index(fields=["firm", "created_at"]),
            models.Index(fields=["portfolio", "status"]),
            models.Index(fields=["status", "broker"]),
        ]
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        amount = self.qty if self.qty is not None else f"${self.notional}"
        return f"{self.side} {amount} {self.symbol} {self.type} ({self.status})"

    @property
    def is_open(self) -> bool:
        from apps.orders.core import OPEN

        return Status(self.status) in OPEN

    @property
    def filled_avg_price(self) -> Decimal | None:
        return self.filled_value / self.filled_qty if self.filled_qty else None


class OrderEvent(FirmOwnedModel):
    """One step of an order's life (reliability target 9): what happened, when (our clock: received_at;
    the broker's: event_at), who entered it and from where, the order's material terms at that moment,
    and for fills the execution. Append-only."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
    portfolio = models.ForeignKey("portfolios.Portfolio", on_delete=models.PROTECT, related_name="+")
    client_order_id = models.CharField(max_length=128)
    broker = models.CharField(max_length=6, choices=BrokerName.choices)
    event = models.CharField(max_length=32, help_text="received, risk_rejected, submitted, accepted, new, fill, "
                                                      "partial_fill, canceled, replaced, ...")
    status_before = models.CharField(max_length=25, blank=True)
    status_after = models.CharField(max_length=25)
    received_at = models.DateTimeField()
    event_at = models.DateTimeField()
    entered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", db_constraint=False)
    responsible_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                         blank=True, related_name="+", db_constraint=False)
    source = models.CharField(max_length=40)
    terms = models.JSONField(help_text="The order's material terms at this event.")
    exec_id = models.CharField(max_length=128, blank=True)
    fill_qty = ExactDecimalField(null=True, blank=True)
    fill_price = ExactDecimalField(null=True, blank=True)
    cum_qty = ExactDecimalField(null=True, blank=True)
    fee = ExactDecimalField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="Codes and the broker's words.")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)

    class Meta:
        constraints = [
            # a broker's execution is applied once, however often it is reported (target 18)
            models.UniqueConstraint(fields=["firm", "broker", "exec_id"], condition=~Q(exec_id=""),
                                    name="orders_event_exec_once"),
        ]
        indexes = [models.Index(fields=["order", "id"]), models.Index(fields=["firm", "received_at"])]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.event} {self.status_before}->{self.status_after}"


class TradingControl(FirmOwnedModel):
    """A firm's kill switch and first-set order limits (the risk issue widens this). One row per firm,
    created on first use; the switch lives in the database so it survives restarts."""

    kill_switch = models.BooleanField(default=False)
    kill_switch_reason = models.CharField(max_length=300, blank=True)
    kill_switch_changed_at = models.DateTimeField(null=True, blank=True)
    max_order_qty = ExactDecimalField(null=True, blank=True)
    max_order_notional = ExactDecimalField(null=True, blank=True)
    daily_notional_limit = ExactDecimalField(null=True, blank=True)
    price_collar_pct = ExactDecimalField(default=Decimal(10))
    duplicate_window_seconds = models.PositiveIntegerField(default=0)
    allow_reducing_when_halted = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["firm"], name="orders_tradingcontrol_firm_uniq")]

    def __str__(self) -> str:
        return f"trading control (halted={self.kill_switch})"


class AlpacaAccount(FirmOwnedModel):
    """A live portfolio's Alpaca trading keys (one per portfolio; paper or live endpoint). The secret is
    stored encrypted (apps.core.crypto, ``OCTOPUS_FIELD_KEYS``) and never shown again; only its last 4
    characters are kept in clear, to recognise it."""

    portfolio = models.OneToOneField("portfolios.Portfolio", on_delete=models.PROTECT, related_name="alpaca_account")
    key_id = models.CharField(max_length=64)
    secret_encrypted = models.TextField(help_text="Fernet token of the secret key (apps.core.crypto).")
    secret_hint = models.CharField(max_length=4, blank=True)
    paper = models.BooleanField(default=True, help_text="Alpaca's paper endpoint (paper-api) rather than live.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    encrypted_fields = ("secret_encrypted",)  # re-encrypted by manage.py field_keys_rotate

    def __str__(self) -> str:
        return f"Alpaca {'paper' if self.paper else 'live'} {self.key_id}"


class AlgoKind(models.TextChoices):
    TWAP = "twap", "TWAP"
    VWAP = "vwap", "VWAP"


class AlgoStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELED = "canceled", "Canceled"
    DONE = "done", "Done"


class AlgoOrder(FirmOwnedModel):
    """A TWAP or VWAP parent order: it slices ``qty`` into child orders over [start_at, end_at]. Every child
    goes through the one order path (``order_submit``) with a client_order_id derived from the parent and the
    slice number, so a repeated tick never sends a slice twice."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    portfolio = models.ForeignKey("portfolios.Portfolio", on_delete=models.PROTECT, related_name="algo_orders")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, choices=_choices(Side))
    qty = ExactDecimalField()
    kind = models.CharField(max_length=4, choices=AlgoKind.choices)
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    slices = models.PositiveIntegerField()
    limit_price = ExactDecimalField(null=True, blank=True, help_text="Children never pay more (buy) / take less.")
    status = models.CharField(max_length=8, choices=AlgoStatus.choices, default=AlgoStatus.RUNNING)
    next_slice = models.PositiveIntegerField(default=0, help_text="The first slice not yet sent.")
    sent_qty = ExactDecimalField(default=Decimal(0))
    schedule = models.JSONField(default=list, help_text="[[due ISO time, qty], ...] fixed at creation.")
    client_order_id = models.CharField(max_length=100, help_text="Unique per firm; children add ':<slice>'.")
    entered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", db_constraint=False)
    origin = models.CharField(max_length=6, choices=Origin.choices)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["firm", "client_order_id"], name="orders_algo_firm_coid_uniq"),
            models.CheckConstraint(condition=Q(qty__gt=0) & Q(slices__gt=0), name="orders_algo_sizes_positive"),
            models.CheckConstraint(condition=Q(end_at__gt=models.F("start_at")), name="orders_algo_window_valid"),
        ]
        indexes = [models.Index(fields=["status", "firm"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.side} {self.qty} {self.symbol} ({self.status})"


class PortfolioHalt(FirmOwnedModel):
    """A portfolio whose trading is halted until someone has looked: reconciliation found a break with its
    broker, or could not get the broker's report (fail closed, reliability target 21). While the row exists,
    risk-increasing orders of the portfolio are refused with TRADING_HALTED; resuming deletes it (audited)."""

    portfolio = models.OneToOneField("portfolios.Portfolio", on_delete=models.PROTECT, related_name="halt")
    reason = models.CharField(max_length=500)
    report = models.JSONField(default=dict, blank=True, help_text="The reconciliation report that halted it.")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"halted: {self.reason[:60]}"
