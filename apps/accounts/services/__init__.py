"""Writes for accounts, one module per use-case family. Import from here.

Every service is keyword-only, runs in one transaction and records its audit event inside it.
"""

from apps.accounts.services.tokens import TokenCreated, token_create, token_revoke

__all__ = ["TokenCreated", "token_create", "token_revoke"]
