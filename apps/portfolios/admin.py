"""Admin for portfolios (firm-scoped; see apps.core.admin).

Tax entities and portfolios are created and changed through the services (validation, the rule that
the cost-basis method and tax entity freeze once fills exist, and the audit event). The books — fills,
journal, lots, realized gains, positions, snapshots, corporate actions, trade imports — are read-only
here: only the booking service writes them, and a correction is a new entry.
"""

from __future__ import annotations

from django.contrib import admin

from apps.accounts.models import MANAGE_ROLES
from apps.audit.services import RequestMeta, actor_from_request
from apps.core.admin import FirmScopedAdmin, is_platform_admin
from apps.core.errors import DomainError
from apps.marketdata.models import Instrument
from apps.portfolios import services
from apps.portfolios.models import (
    CorporateAction,
    Fill,
    JournalEntry,
    JournalLine,
    Lot,
    Portfolio,
    Position,
    RealizedGain,
    Snapshot,
    TaxEntity,
    TradeImport,
)

PORTFOLIO_FORM_FIELDS = ("name", "base_currency", "mode", "cost_basis_method", "allow_short", "benchmark",
                         "tax_entity", "restricted")


def _target_firm_id(request, obj) -> int:
    """The firm a new object belongs to: the member's active firm; a superuser picks one in the form."""
    if obj.firm_id is not None and is_platform_admin(request):
        return obj.firm_id
    firm = getattr(request, "firm", None)
    if firm is None:
        raise DomainError("VALIDATION_ERROR", "Choose the firm.", fields={"firm": ["Required."]})
    return firm.pk


def _adopt(obj, saved) -> None:
    """Make the admin's unsaved instance the service's saved row (the admin logs and redirects with it)."""
    obj.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})
    obj._state.adding = False
    obj._state.db = saved._state.db


class _ServiceAdmin(FirmScopedAdmin):
    """Owners and admins add and change; the services audit, so the admin does not audit again."""

    add_roles = MANAGE_ROLES
    audit_changes = False

    def get_fields(self, request, obj=None):
        if obj is not None:
            return ("firm", *self.form_fields, *self.readonly_fields)
        return ("firm", *self.form_fields) if is_platform_admin(request) else tuple(self.form_fields)

    def get_readonly_fields(self, request, obj=None):
        return ("firm", *self.readonly_fields) if obj is not None else self.readonly_fields


@admin.register(TaxEntity)
class TaxEntityAdmin(_ServiceAdmin):
    """Created through ``tax_entity_create`` (audited); names do not change once portfolios use them."""

    form_fields = ("name",)
    change_roles = frozenset()
    list_display = ("name", "firm", "created_at")
    list_filter = (("firm", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name",)
    ordering = ("name",)
    readonly_fields = ("created_at",)
    list_select_related = ("firm",)

    def save_model(self, request, obj, form, change):
        if change:
            return
        entity = services.tax_entity_create(firm_id=_target_firm_id(request, obj), name=obj.name,
                                            actor=actor_from_request(request), meta=RequestMeta.from_request(request))
        _adopt(obj, entity)


@admin.register(Portfolio)
class PortfolioAdmin(_ServiceAdmin):
    """Created and changed through ``portfolio_create`` / ``portfolio_update`` (validated, audited)."""

    form_fields = PORTFOLIO_FORM_FIELDS
    list_display = ("name", "firm", "mode", "cost_basis_method", "tax_entity", "benchmark", "restricted",
                    "created_at")
    list_filter = ("mode", "cost_basis_method", "restricted", ("firm", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name",)
    ordering = ("name",)
    readonly_fields = ("created_at", "updated_at")
    list_select_related = ("firm", "tax_entity", "benchmark")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "benchmark":  # market data is global: any active instrument
            kwargs["queryset"] = Instrument.objects.filter(active=True).order_by("symbol")
            return admin.ModelAdmin.formfield_for_foreignkey(self, db_field, request, **kwargs)
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "tax_entity":
            field.required = False
            field.help_text = "The firm's default tax entity when left empty."
        return field

    def save_model(self, request, obj, form, change):
        actor, meta = actor_from_request(request), RequestMeta.from_request(request)
        if not change:
            options = {name: getattr(obj, name) for name in PORTFOLIO_FORM_FIELDS if name not in ("name", "tax_entity")}
            entity = obj.tax_entity if obj.tax_entity_id is not None else None
            saved = services.portfolio_create(firm_id=_target_firm_id(request, obj), name=obj.name, actor=actor,
                                              meta=meta, tax_entity=entity, **options)
            _adopt(obj, saved)
            return
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in PORTFOLIO_FORM_FIELDS}
        if changes.get("tax_entity", True) is None:
            raise DomainError("VALIDATION_ERROR", "A tax entity is required.", fields={"tax_entity": ["Required."]})
        if changes:
            current = Portfolio.objects.for_firm(obj.firm_id).get(pk=obj.pk)
            _adopt(obj, services.portfolio_update(portfolio=current, actor=actor, meta=meta, **changes))


# --- the books: read-only ---------------------------------------------------------------------------


class _BooksAdmin(FirmScopedAdmin):
    read_only = True
    list_per_page = 100


@admin.register(Fill)
class FillAdmin(_BooksAdmin):
    list_display = ("fill_id", "portfolio", "instrument", "side", "quantity", "price", "fees", "executed_at",
                    "settle_date", "source")
    list_filter = ("side", "source", ("portfolio", admin.RelatedOnlyFieldListFilter))
    search_fields = ("fill_id", "order_ref", "instrument__symbol")
    ordering = ("-seq",)
    list_select_related = ("portfolio", "instrument")


class JournalLineInline(admin.TabularInline):
    model = JournalLine
    fields = ("account", "amount", "instrument", "trade_date", "settle_date", "memo")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_view_permission(self, request, obj=None) -> bool:
        return True  # the parent admin decided who sees the entry

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(_BooksAdmin):
    inlines = [JournalLineInline]
    list_display = ("id", "portfolio", "kind", "trade_date", "settle_date", "memo", "posted_at")
    list_filter = ("kind", ("portfolio", admin.RelatedOnlyFieldListFilter))
    search_fields = ("memo", "idempotency_key")
    ordering = ("-id",)
    list_select_related = ("portfolio",)


@admin.register(Lot)
class LotAdmin(_BooksAdmin):
    list_display = ("lot_id", "portfolio", "instrument", "quantity", "original_quantity", "cost",
                    "basis_adjustment", "acquired", "holding_start", "closed_at")
    list_filter = (("portfolio", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("lot_id", "instrument__symbol")
    ordering = ("portfolio", "origin_fill_id", "part")
    list_select_related = ("portfolio", "instrument")


@admin.register(RealizedGain)
class RealizedGainAdmin(_BooksAdmin):
    list_display = ("gain_id", "portfolio", "instrument", "quantity", "sold_date", "proceeds", "cost_basis", "gain",
                    "term", "wash_code", "disallowed", "tax_year")
    list_filter = ("tax_year", "term", "wash_code", ("portfolio", admin.RelatedOnlyFieldListFilter))
    search_fields = ("gain_id", "lot_id", "instrument__symbol")
    ordering = ("-sold", "-id")
    list_select_related = ("portfolio", "instrument")


@admin.register(Position)
class PositionAdmin(_BooksAdmin):
    list_display = ("portfolio", "instrument", "quantity", "cost", "realized", "opened_at", "updated_at")
    list_filter = (("portfolio", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("instrument__symbol", "portfolio__name")
    ordering = ("portfolio", "instrument__symbol")
    list_select_related = ("portfolio", "instrument")


@admin.register(Snapshot)
class SnapshotAdmin(_BooksAdmin):
    list_display = ("portfolio", "date", "cash", "market_value", "equity", "net_flow", "realized", "unrealized",
                    "stale")
    list_filter = ("stale", ("portfolio", admin.RelatedOnlyFieldListFilter))
    ordering = ("-date", "portfolio")
    date_hierarchy = "date"
    list_select_related = ("portfolio",)


@admin.register(CorporateAction)
class CorporateActionAdmin(_BooksAdmin):
    """Entered and applied on the Corporate actions page / API (idempotent, audited); read-only here."""

    list_display = ("reference", "kind", "instrument", "ex_date", "pay_date", "ratio_from", "ratio_to",
                    "cash_per_share", "new_symbol", "created_at")
    list_filter = ("kind",)
    search_fields = ("reference", "instrument__symbol", "new_symbol")
    ordering = ("-ex_date", "-id")
    list_select_related = ("instrument",)


@admin.register(TradeImport)
class TradeImportAdmin(_BooksAdmin):
    list_display = ("filename", "portfolio", "status", "rows_total", "rows_booked", "created_at", "finished_at")
    list_filter = ("status", ("portfolio", admin.RelatedOnlyFieldListFilter))
    search_fields = ("filename",)
    ordering = ("-created_at",)
    list_select_related = ("portfolio",)
