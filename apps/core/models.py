"""Firm-owned base model and its fail-closed manager (see apps.core.tenancy)."""

from __future__ import annotations

from django.db import models

from apps.core.tenancy import FirmScopeError, current_firm_id, scope_is_unscoped


class FirmQuerySet(models.QuerySet):
    def for_firm(self, firm_or_id) -> FirmQuerySet:
        firm_id = getattr(firm_or_id, "pk", firm_or_id)
        return self.filter(firm_id=firm_id)


class FirmScopedManager(models.Manager.from_queryset(FirmQuerySet)):
    """Default manager of every firm-owned model.

    Related managers (``portfolio.orders``) are derived from this class and are already bound
    to a parent row that was itself reached through a scope, so they are allowed as they are.
    """

    def get_queryset(self) -> FirmQuerySet:
        qs = super().get_queryset()
        if hasattr(self, "instance"):  # a related manager: constrained by its parent row
            return qs
        if scope_is_unscoped():
            return qs
        firm_id = current_firm_id()
        if firm_id is None:
            raise FirmScopeError(
                f"{self.model.__name__} queried without a firm scope; use firm_scope(firm_id) or unscoped()"
            )
        return qs.filter(firm_id=firm_id)

    def unscoped(self) -> FirmQuerySet:
        """All firms' rows. Only for platform-level code; every caller is a reviewed exception."""
        return super().get_queryset()


class FirmOwnedModel(models.Model):
    """Abstract base for every row that belongs to one firm."""

    firm = models.ForeignKey("accounts.Firm", on_delete=models.PROTECT, related_name="+")

    objects = FirmScopedManager()

    class Meta:
        abstract = True


class ExactDecimalField(models.DecimalField):
    """PostgreSQL ``numeric`` with no fixed precision or scale: stores a ``Decimal`` exactly as
    computed (ledger amounts, per-unit costs of fractional quantities), so a value read back
    compares equal to the one written."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 40)
        kwargs.setdefault("decimal_places", 20)
        super().__init__(*args, **kwargs)

    def db_type(self, connection) -> str:
        return "numeric"

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        return name, path, args, kwargs
