"""Slippage and commission models: exact Decimal prices, fees in cents rounded half up."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from apps.orders.core import Bar, Quote, Side
from apps.orders.fills import (
    CryptoMakerTakerCommission,
    FixedBpsSlippage,
    NoCommission,
    NoSlippage,
    PercentageCommission,
    PerOrderCommission,
    PerShareCommission,
    SpreadSlippage,
    SquareRootImpact,
    round_fee,
)

AT = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


def test_round_fee_is_half_up_to_cents():
    assert round_fee(D("0.125")) == D("0.13")
    assert round_fee(D("0.124999")) == D("0.12")
    assert round_fee(D("2.675")) == D("2.68")


def test_no_slippage_keeps_the_price():
    assert NoSlippage().price(side=Side.BUY, price=D("10.01"), qty=D(5)) == D("10.01")


@pytest.mark.parametrize(("side", "bps", "price", "expected"), [
    (Side.BUY, D(5), D("100.00"), D("100.0500")),
    (Side.SELL, D(5), D("100.00"), D("99.9500")),
    (Side.BUY, D(3), D("123.45"), D("123.4870")),  # 0.037035 -> 0.0370
    (Side.SELL, D("2.5"), D("10.01"), D("10.0075")),  # 0.0025025 -> 0.0025
])
def test_fixed_bps_slippage(side, bps, price, expected):
    assert FixedBpsSlippage(bps=bps).price(side=side, price=price, qty=D(1)) == expected


def test_spread_slippage_is_a_fraction_of_the_quoted_spread():
    quote = Quote(bid=D("100.00"), ask=D("100.10"), last=None, at=AT)
    model = SpreadSlippage(fraction=D("0.5"))
    assert model.price(side=Side.BUY, price=D("100.10"), qty=D(1), quote=quote) == D("100.1500")
    assert model.price(side=Side.SELL, price=D("100.00"), qty=D(1), quote=quote) == D("99.9500")
    assert SpreadSlippage(fraction=D("0.25")).price(side=Side.BUY, price=D("100.10"), qty=D(1),
                                                    quote=quote) == D("100.1250")


def test_spread_slippage_without_a_two_sided_quote_is_zero():
    model = SpreadSlippage()
    assert model.price(side=Side.BUY, price=D("50"), qty=D(1)) == D("50")
    one_sided = Quote(bid=None, ask=D("50"), last=None, at=AT)
    assert model.price(side=Side.BUY, price=D("50"), qty=D(1), quote=one_sided) == D("50")


def test_square_root_impact_uses_the_bar_volume():
    bar = Bar(at=AT, open=D(100), high=D(100), low=D(100), close=D(100), volume=D(10_000))
    model = SquareRootImpact(coef=D(1), sigma=D("0.02"))
    # 100 * 1 * 0.02 * sqrt(100 / 10,000) = 0.2
    assert model.price(side=Side.BUY, price=D(100), qty=D(100), bar=bar) == D("100.2000")
    # 100 * 0.02 * sqrt(0.005) = 0.14142135... -> 0.1414
    assert model.price(side=Side.BUY, price=D(100), qty=D(50), bar=bar) == D("100.1414")
    assert model.price(side=Side.SELL, price=D(100), qty=D(50), bar=bar) == D("99.8586")


def test_square_root_impact_falls_back_to_its_volume_and_is_zero_without_one():
    model = SquareRootImpact(coef=D("0.5"), sigma=D("0.01"), volume=D(40_000))
    # 200 * 0.5 * 0.01 * sqrt(400 / 40,000) = 0.1
    assert model.price(side=Side.BUY, price=D(200), qty=D(400)) == D("200.1000")
    assert SquareRootImpact().price(side=Side.BUY, price=D(200), qty=D(400)) == D(200)
    zero_bar = Bar(at=AT, open=D(1), high=D(1), low=D(1), close=D(1), volume=D(0))
    assert SquareRootImpact().price(side=Side.BUY, price=D(200), qty=D(400), bar=zero_bar) == D(200)


def test_no_commission():
    assert NoCommission().fee(qty=D(100), price=D(10)) == D(0)


@pytest.mark.parametrize(("qty", "price", "expected"), [
    (D(100), D(50), D("1.00")),  # 0.50 raised to the 1.00 minimum
    (D(1000), D(20), D("5.00")),  # 1000 * 0.005
    (D(1000), D("0.10"), D("1.00")),  # 5.00 capped at 1 % of 100.00
    (D(10), D("0.50"), D("0.05")),  # the 1 % maximum (0.05) wins over the minimum
    (D(301), D(100), D("1.51")),  # 1.505 half up
])
def test_per_share_commission_with_minimum_and_maximum(qty, price, expected):
    assert PerShareCommission().fee(qty=qty, price=price) == expected


def test_per_share_commission_without_a_maximum_and_with_a_multiplier():
    assert PerShareCommission(maximum_pct=None).fee(qty=D(1000), price=D("0.10")) == D("5.00")
    # options: 2 contracts at 0.05 x 100 = 10.00 value; 0.65/contract = 1.30, capped at 1 % = 0.10
    model = PerShareCommission(per_share=D("0.65"), minimum=D("1.00"))
    assert model.fee(qty=D(2), price=D("0.05"), multiplier=100) == D("0.10")
    assert model.fee(qty=D(10), price=D("3.00"), multiplier=100) == D("6.50")


def test_percentage_commission():
    # 123 * 10.05 = 1236.15; 0.1 % = 1.23615 -> 1.24
    assert PercentageCommission(pct=D("0.1")).fee(qty=D(123), price=D("10.05")) == D("1.24")
    assert PercentageCommission(pct=D("0.25")).fee(qty=D(2), price=D("1.50"), multiplier=100) == D("0.75")


def test_per_order_commission_is_charged_on_the_first_fill_only():
    model = PerOrderCommission(amount=D("4.95"))
    assert model.fee(qty=D(10), price=D(10), first_fill=True) == D("4.95")
    assert model.fee(qty=D(10), price=D(10), first_fill=False) == D(0)


def test_crypto_maker_taker_commission_by_liquidity():
    model = CryptoMakerTakerCommission(maker_bps=D(15), taker_bps=D(25))
    assert model.fee(qty=D("0.5"), price=D(60_000), liquidity="maker") == D("45.00")
    assert model.fee(qty=D("0.5"), price=D(60_000), liquidity="taker") == D("75.00")
    assert model.fee(qty=D("0.5"), price=D(60_000), liquidity="") == D("75.00")  # unknown pays taker
    # 0.001 * 61234.5 = 61.2345; 25 bps = 0.15308625 -> 0.15
    assert model.fee(qty=D("0.001"), price=D("61234.5"), liquidity="taker") == D("0.15")


def test_models_are_frozen():
    model = FixedBpsSlippage()
    with pytest.raises(AttributeError):
        model.bps = D(1)
