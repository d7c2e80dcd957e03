"""API token format and hashing (pure). A token reads ``oct_<prefix>_<secret>``."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "oct_"  # noqa: S105 - a public marker, not a secret


def generate() -> tuple[str, str, str]:
    """Return (full token, prefix, sha256 of the secret)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{prefix}_{secret}", prefix, hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """Split a presented token into (prefix, secret), or None if it is not one of ours."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    body = token[len(TOKEN_PREFIX):]
    prefix, sep, secret = body.partition("_")
    if not sep or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


def matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)
