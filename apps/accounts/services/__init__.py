"""Writes for accounts, one module per use-case family. Import from here.

Every service is keyword-only, runs in one transaction and records its audit event inside it.
"""

from apps.accounts.services.auth import (
    auth_locked_out_record,
    auth_login_failed_record,
    auth_login_record,
    two_factor_disable,
    two_factor_enrol_begin,
    two_factor_enrol_confirm,
    two_factor_verify,
)
from apps.accounts.services.firms import firm_signup, firm_switch, firm_update
from apps.accounts.services.members import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    member_change_role,
    member_remove,
)
from apps.accounts.services.tokens import TokenCreated, token_create, token_revoke

__all__ = [
    "TokenCreated",
    "auth_locked_out_record",
    "auth_login_failed_record",
    "auth_login_record",
    "firm_signup",
    "firm_switch",
    "firm_update",
    "invitation_accept",
    "invitation_create",
    "invitation_revoke",
    "member_change_role",
    "member_remove",
    "token_create",
    "token_revoke",
    "two_factor_disable",
    "two_factor_enrol_begin",
    "two_factor_enrol_confirm",
    "two_factor_verify",
]
