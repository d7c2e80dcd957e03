"""Reliability target 23: money and quantities in the ledger are Decimal (NUMERIC), never float."""

from __future__ import annotations

from django.apps import apps
from django.db import models

MONEY_WORDS = ("amount", "cost", "price", "proceeds", "gain", "cash", "equity", "fees", "value", "realized",
               "unrealized", "flow", "quantity", "disallowed", "adjustment", "close", "per_share", "ratio")


NOT_MONEY = {"cost_basis_method"}  # a choice of method, not an amount
NOT_NUMBERS = (models.DateField, models.BooleanField, models.JSONField, models.CharField)  # incl. DateTimeField


def test_every_money_and_quantity_field_of_the_ledger_is_decimal():
    checked = []
    for model in apps.get_app_config("portfolios").get_models():
        for field in model._meta.concrete_fields:
            if (any(word in field.name for word in MONEY_WORDS) and not field.is_relation
                    and field.name not in NOT_MONEY and not isinstance(field, NOT_NUMBERS)):
                assert isinstance(field, models.DecimalField), f"{model.__name__}.{field.name} is {type(field).__name__}"
                checked.append(f"{model.__name__}.{field.name}")
    assert {"Fill.price", "JournalLine.amount", "Lot.cost", "RealizedGain.proceeds", "Snapshot.equity",
            "Position.quantity"} <= set(checked)
    assert not any(isinstance(f, models.FloatField) for m in apps.get_app_config("portfolios").get_models()
                   for f in m._meta.concrete_fields)
