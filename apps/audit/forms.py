"""The audit log page's filter form (GET)."""

from __future__ import annotations

from django import forms

from apps.audit.models import ActorType

MSG_RANGE = "'To' must be on or after 'From'."


class AuditLogFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=200, label="Actor", help_text="Part of an email or name.")
    action = forms.CharField(
        required=False, max_length=64, label="Action", help_text="Exact, or a prefix ending in a dot."
    )
    actor_type = forms.ChoiceField(required=False, choices=[("", "Any"), *ActorType.choices], label="Actor type")
    date_from = forms.DateField(required=False, label="From (UTC)", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(
        required=False, label="To (UTC, inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", MSG_RANGE)
        return data
