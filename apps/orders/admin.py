"""Admin for orders (firm-scoped; see apps.core.admin): read-only. Orders are placed, canceled and replaced
through the one order path (the Trade page, the API), never edited here; their events are append-only."""

from __future__ import annotations

from django.contrib import admin

from apps.core.admin import FirmScopedAdmin
from apps.orders.models import AlgoOrder, Order, OrderEvent, PortfolioHalt, TradingControl


class _ReadOnly(FirmScopedAdmin):
    read_only = True
    list_per_page = 100


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    fields = ("event", "status_before", "status_after", "received_at", "event_at", "exec_id", "fill_qty",
              "fill_price", "source")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)

    def has_view_permission(self, request, obj=None) -> bool:
        return True  # the parent admin decided who sees the order

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(_ReadOnly):
    list_display = ("created_at", "portfolio", "symbol", "side", "type", "qty", "notional", "limit_price",
                    "time_in_force", "status", "filled_qty", "reject_code", "source")
    list_filter = ("status", "side", "type", "broker", ("portfolio", admin.RelatedOnlyFieldListFilter))
    search_fields = ("client_order_id", "broker_order_id", "symbol")
    ordering = ("-created_at",)
    list_select_related = ("portfolio",)
    inlines = [OrderEventInline]


@admin.register(OrderEvent)
class OrderEventAdmin(_ReadOnly):
    list_display = ("received_at", "order", "event", "status_before", "status_after", "exec_id", "fill_qty",
                    "fill_price", "source")
    list_filter = ("event", "broker")
    search_fields = ("client_order_id", "exec_id")
    ordering = ("-id",)
    list_select_related = ("order",)


@admin.register(TradingControl)
class TradingControlAdmin(_ReadOnly):
    """The kill switch and limits change through the API (audited, and halting cancels working orders)."""

    list_display = ("firm", "kill_switch", "kill_switch_reason", "kill_switch_changed_at", "max_order_qty",
                    "max_order_notional", "daily_notional_limit", "price_collar_pct")


@admin.register(AlgoOrder)
class AlgoOrderAdmin(_ReadOnly):
    """TWAP/VWAP parents are created, paused and canceled through the API (audited)."""

    list_display = ("created_at", "portfolio", "kind", "side", "qty", "symbol", "start_at", "end_at", "slices",
                    "next_slice", "sent_qty", "status")
    list_filter = ("kind", "status")
    search_fields = ("client_order_id", "symbol")
    ordering = ("-created_at",)
    list_select_related = ("portfolio",)


@admin.register(PortfolioHalt)
class PortfolioHaltAdmin(_ReadOnly):
    """Halts come from reconciliation and are lifted through the API after review (audited)."""

    list_display = ("portfolio", "reason", "created_at")
    list_select_related = ("portfolio",)
