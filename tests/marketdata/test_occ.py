from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.marketdata.occ import OccContract, occ_format, occ_parse


def test_parse_compact():
    assert occ_parse("AAPL250117C00150000") == OccContract("AAPL", date(2025, 1, 17), "call", Decimal("150.000"))


def test_parse_padded_21_chars():
    contract = occ_parse("SPY   241220P00475500")
    assert contract == OccContract("SPY", date(2024, 12, 20), "put", Decimal("475.500"))
    assert contract.symbol == "SPY241220P00475500"
    assert contract.padded == "SPY   241220P00475500"
    assert len(contract.padded) == 21


def test_format_both_forms():
    assert occ_format("aapl", date(2025, 1, 17), "call", Decimal("150")) == "AAPL250117C00150000"
    assert occ_format("AAPL", date(2025, 1, 17), "call", "150", padded=True) == "AAPL  250117C00150000"
    assert occ_format("BRKB", date(2026, 3, 20), "P", "0.5") == "BRKB260320P00000500"


@pytest.mark.parametrize(("symbol", "message"), [
    ("AAPL", "expected ROOT(1-6 A-Z/0-9) + YYMMDD + C|P + 8-digit strike x 1000"),
    ("AAPL250117X00150000", "expected ROOT(1-6 A-Z/0-9) + YYMMDD + C|P + 8-digit strike x 1000"),
    ("AAPL250117C0015000", "expected ROOT(1-6 A-Z/0-9) + YYMMDD + C|P + 8-digit strike x 1000"),
    ("TOOLONG250117C00150000", "expected ROOT(1-6 A-Z/0-9) + YYMMDD + C|P + 8-digit strike x 1000"),
    ("aapl250117C00150000", "expected ROOT(1-6 A-Z/0-9) + YYMMDD + C|P + 8-digit strike x 1000"),
    ("AAPL251317C00150000", "251317 is not a valid YYMMDD date"),
    ("AAPL250117C00000000", "strike must be positive"),
    (" AAPL 250117C00150000", "the root must be left-aligned and space-padded"),
])
def test_parse_rejects_malformed(symbol, message):
    with pytest.raises(ValueError) as exc:
        occ_parse(symbol)
    assert str(exc.value) == f"malformed OCC symbol {symbol!r}: {message}"


@pytest.mark.parametrize(("args", "message"), [
    (("", date(2025, 1, 17), "call", "1"), "invalid OCC root '': 1-6 characters A-Z/0-9"),
    (("AAPL", date(2025, 1, 17), "straddle", "1"), "invalid right 'straddle': call or put"),
    (("AAPL", date(2025, 1, 17), "call", "1.0005"), "invalid strike '1.0005': at most 3 decimal places"),
    (("AAPL", date(2025, 1, 17), "call", "100000"), "invalid strike '100000': between 0.001 and 99999.999"),
    (("AAPL", date(2025, 1, 17), "call", "abc"), "invalid strike 'abc'"),
])
def test_format_rejects_bad_parts(args, message):
    with pytest.raises(ValueError) as exc:
        occ_format(*args)
    assert str(exc.value) == message


roots = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=6)
expiries = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
strikes = st.integers(min_value=1, max_value=99_999_999).map(lambda n: Decimal(n).scaleb(-3))


@given(root=roots, expiry=expiries, right=st.sampled_from(["call", "put"]), strike=strikes,
       padded=st.booleans())
def test_round_trip(root, expiry, right, strike, padded):
    symbol = occ_format(root, expiry, right, strike, padded=padded)
    assert len(symbol) == 21 if padded else len(symbol) == len(root) + 15
    parsed = occ_parse(symbol)
    assert parsed == OccContract(root, expiry, right, strike)
    assert occ_format(parsed.root, parsed.expiry, parsed.right, parsed.strike, padded=padded) == symbol
