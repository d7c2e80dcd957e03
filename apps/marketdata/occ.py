"""OCC option symbols, both ways (pure; no ORM).

The OCC (Options Clearing Corporation) symbology: root (1-6 characters) + expiry ``YYMMDD`` +
right ``C``/``P`` + strike x 1000 as 8 digits. The padded form pads the root with spaces to 6
characters (21 characters in all, e.g. ``"AAPL  250117C00150000"``); the compact form used by
brokers and data vendors drops the padding (``"AAPL250117C00150000"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

ROOT_WIDTH = 6
PADDED_LENGTH = 21
MAX_STRIKE = Decimal("99999.999")

_ROOT = re.compile(r"^[A-Z0-9]{1,6}$")
_COMPACT = re.compile(r"^(?P<root>[A-Z0-9]{1,6})(?P<expiry>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")

RIGHTS = {"C": "call", "P": "put"}
RIGHT_LETTERS = {v: k for k, v in RIGHTS.items()}


@dataclass(frozen=True)
class OccContract:
    root: str
    expiry: date
    right: str  # "call" / "put"
    strike: Decimal

    @property
    def symbol(self) -> str:
        return occ_format(self.root, self.expiry, self.right, self.strike)

    @property
    def padded(self) -> str:
        return occ_format(self.root, self.expiry, self.right, self.strike, padded=True)


def occ_parse(symbol: str) -> OccContract:
    """Parse a compact or 21-character padded OCC symbol; ValueError says what is wrong."""
    if not isinstance(symbol, str):
        raise ValueError(f"OCC symbol must be a string, not {type(symbol).__name__}")
    text = symbol
    if len(symbol) == PADDED_LENGTH:  # padded form (identical to compact when the root has 6 characters)
        root = symbol[:ROOT_WIDTH].rstrip()
        if not root or " " in root:
            raise ValueError(f"malformed OCC symbol {symbol!r}: the root must be left-aligned and space-padded")
        text = root + symbol[ROOT_WIDTH:]
    match = _COMPACT.match(text)
    if match is None:
        raise ValueError(
            f"malformed OCC symbol {symbol!r}: expected ROOT(1-6 A-Z/0-9) + YYMMDD + C|P + 8-digit strike x 1000"
        )
    digits = match["expiry"]
    try:
        expiry = date(2000 + int(digits[:2]), int(digits[2:4]), int(digits[4:]))
    except ValueError:
        raise ValueError(f"malformed OCC symbol {symbol!r}: {digits} is not a valid YYMMDD date") from None
    strike = Decimal(int(match["strike"])).scaleb(-3)  # 00150000 -> Decimal("150.000")
    if strike <= 0:
        raise ValueError(f"malformed OCC symbol {symbol!r}: strike must be positive")
    return OccContract(root=match["root"], expiry=expiry, right=RIGHTS[match["right"]], strike=strike)


def occ_format(root: str, expiry: date, right: str, strike: Decimal | int | str, *, padded: bool = False) -> str:
    """Build the OCC symbol (compact by default; ``padded=True`` for the 21-character form)."""
    root = (root or "").strip().upper()
    if not _ROOT.match(root):
        raise ValueError(f"invalid OCC root {root!r}: 1-6 characters A-Z/0-9")
    if not isinstance(expiry, date) or not 2000 <= expiry.year <= 2099:
        raise ValueError(f"invalid expiry {expiry!r}: a date in 2000-2099")
    letter = RIGHT_LETTERS.get(str(right).lower()) or (str(right).upper() if str(right).upper() in RIGHTS else None)
    if letter is None:
        raise ValueError(f"invalid right {right!r}: call or put")
    try:
        value = Decimal(str(strike))
    except InvalidOperation:
        raise ValueError(f"invalid strike {strike!r}") from None
    if not value.is_finite() or value <= 0 or value > MAX_STRIKE:
        raise ValueError(f"invalid strike {strike!r}: between 0.001 and {MAX_STRIKE}")
    thousandths = value * 1000
    if thousandths != thousandths.to_integral_value():
        raise ValueError(f"invalid strike {strike!r}: at most 3 decimal places")
    body = f"{expiry:%y%m%d}{letter}{int(thousandths):08d}"
    return (root.ljust(ROOT_WIDTH) if padded else root) + body
