"""Page forms: shape and basic validation only; rules live in the services."""

from __future__ import annotations

import zoneinfo

from django import forms

from apps.accounts.models import Role, TokenScope, TwoFactorPolicy
from apps.accounts.services.tokens import MAX_EXPIRY_DAYS
from apps.core.errors import DomainError


def add_domain_error(form: forms.Form, exc: DomainError) -> None:
    """Show a service refusal on the form: per field where it names one, else as a form error."""
    placed = False
    for name, messages in (exc.fields or {}).items():
        target = name if name in form.fields else None
        for message in messages:
            form.add_error(target, message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


class SignupForm(forms.Form):
    firm_name = forms.CharField(label="Firm name", max_length=120)
    full_name = forms.CharField(label="Your name", max_length=150, required=False)
    email = forms.EmailField(label="Email")
    password = forms.CharField(label="Password", widget=forms.PasswordInput(render_value=False),
                               help_text="At least 12 characters. A passphrase is best.")


class LoginForm(forms.Form):
    # Named "username" so django-axes reads the same field as the admin login.
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True,
                                                                              "autocomplete": "username"}))
    password = forms.CharField(label="Password",
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


class CodeForm(forms.Form):
    code = forms.CharField(label="Code", max_length=32, widget=forms.TextInput(
        attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}))


class FirmSettingsForm(forms.Form):
    name = forms.CharField(label="Firm name", max_length=120)
    base_currency = forms.CharField(label="Base currency", max_length=3, min_length=3)
    timezone = forms.ChoiceField(label="Time zone")
    two_factor_policy = forms.ChoiceField(label="Two-factor policy", choices=TwoFactorPolicy.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(tz, tz) for tz in sorted(zoneinfo.available_timezones())]


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email")
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.ANALYST,
                             help_text="Analysts can read only; owners and admins manage members and settings.")

    def __init__(self, *args, inviter_role: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if inviter_role is not None and inviter_role != Role.OWNER:  # only owners may invite owners
            self.fields["role"].choices = [c for c in Role.choices if c[0] != Role.OWNER]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class AcceptForm(forms.Form):
    full_name = forms.CharField(label="Your name", max_length=150, required=False)
    password = forms.CharField(label="Password", widget=forms.PasswordInput,
                               help_text="At least 12 characters. A passphrase is best.")


class TokenForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80)
    scopes = forms.MultipleChoiceField(label="Scopes", choices=TokenScope.choices,
                                       widget=forms.CheckboxSelectMultiple)
    expires_days = forms.IntegerField(label="Expires after (days)", required=False, min_value=1,
                                      max_value=MAX_EXPIRY_DAYS, help_text="Leave empty for no expiry.")
