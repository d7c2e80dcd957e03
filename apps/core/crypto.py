"""Encryption of secret fields at rest (a firm's Alpaca keys now, broker keys later).

Fernet (AES-128-CBC + HMAC-SHA256, authenticated) through ``MultiFernet`` so keys can rotate:
``OCTOPUS_FIELD_KEYS`` is a comma-separated list of Fernet keys; the first encrypts, every one
decrypts. To rotate: put a new key first, keep the old ones after it, run ``field_rotate`` over the
stored values (``rotate`` re-encrypts under the first key), then drop the old key.

Without ``OCTOPUS_FIELD_KEYS`` (development and tests only: production settings refuse to start)
the key is derived from ``SECRET_KEY`` with HKDF, so a fresh checkout works with nothing to set.

Callers store the ciphertext (text) in a plain ``TextField`` and decrypt only where the secret is
used, never where a row is listed or shown: a wrong key then fails one use with a clear error
(:class:`FieldDecryptError`) instead of every page that loads the row.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

HKDF_INFO = b"octopus field encryption v1"
MASK = "\u2022" * 8  # what is shown in place of a secret
MSG_BAD_KEY = (
    "OCTOPUS_FIELD_KEYS entry {n} is not a Fernet key (32 random bytes, url-safe base64: "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
)
MSG_UNDECRYPTABLE = (
    "The stored secret cannot be decrypted with the configured OCTOPUS_FIELD_KEYS (the key that "
    "encrypted it was removed or changed). Restore that key, or enter the secret again."
)


class FieldDecryptError(Exception):
    """A stored ciphertext was made with none of the configured keys (or was altered)."""

    def __init__(self, message: str = MSG_UNDECRYPTABLE):
        super().__init__(message)
        self.message = message


def derived_key(secret_key: str) -> bytes:
    """The development/test Fernet key: HKDF-SHA256 of SECRET_KEY (a separate key, not SECRET_KEY itself)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


def parse_keys(keys: list[str] | tuple[str, ...]) -> list[Fernet]:
    """Fernet objects for the configured keys; ImproperlyConfigured names a malformed entry."""
    fernets = []
    for n, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.strip().encode()))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(MSG_BAD_KEY.format(n=n)) from None
    return fernets


def _fernet() -> MultiFernet:
    # Built per call (microseconds): settings may change under override_settings in tests, and a
    # cache keyed on the settings value would keep key material around for no measurable gain.
    keys = list(getattr(settings, "OCTOPUS_FIELD_KEYS", None) or [])
    if not keys:
        if not settings.DEBUG and not getattr(settings, "TESTING", False):
            raise ImproperlyConfigured("OCTOPUS_FIELD_KEYS must be set when DEBUG=0.")
        return MultiFernet([Fernet(derived_key(settings.SECRET_KEY))])
    return MultiFernet(parse_keys(keys))


def encrypt(plaintext: str) -> str:
    """Ciphertext (url-safe base64 text) of ``plaintext`` under the first key; different on every call."""
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """The plaintext; FieldDecryptError when no configured key made it (or it was tampered with)."""
    try:
        return _fernet().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, UnicodeError, ValueError):
        raise FieldDecryptError() from None


def rotate(ciphertext: str) -> str:
    """The same plaintext re-encrypted under the first (newest) key."""
    try:
        return _fernet().rotate(ciphertext.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError):
        raise FieldDecryptError() from None


def hint(secret: str) -> str:
    """The last 4 characters (stored in clear to recognise a key, like a card's last digits); none of a short one."""
    return secret[-4:] if len(secret) >= 16 else ""


def masked(secret_hint: str) -> str:
    """What an API or page shows for a stored secret: a mask and at most its last 4 characters."""
    return MASK + secret_hint
