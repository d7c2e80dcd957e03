"""Fill cost models (pure; no ORM): what a simulated fill costs beyond the quoted price.

Shared by the paper broker's matching engine (apps.orders.matching) and the backtester, so a backtest
and a paper account pay the same costs.

Slippage models take the price the engine would fill at and return a worse one: higher for buys,
lower for sells. The adverse amount is rounded to the model's ``tick`` (default 0.0001) with
ROUND_HALF_UP, so a fill price is an exact Decimal with at most four places.

Commission models return the fee of one execution, rounded to cents with ROUND_HALF_UP. The trade
value they see is ``qty * price * multiplier`` (an option contract's multiplier is 100).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from apps.orders.core import Bar, Quote, Side

ZERO = Decimal(0)
CENT = Decimal("0.01")
TICK = Decimal("0.0001")
BPS = Decimal(10_000)
HUNDRED = Decimal(100)
MAKER, TAKER = "maker", "taker"


def round_fee(amount: Decimal) -> Decimal:
    """Cents, half up: 0.005 -> 0.01."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _adverse(side: Side, price: Decimal, amount: Decimal, tick: Decimal) -> Decimal:
    amount = amount.quantize(tick, rounding=ROUND_HALF_UP)
    if side == Side.BUY:
        return price + amount
    return max(price - amount, ZERO)


# --- slippage -----------------------------------------------------------------------------------


class SlippageModel(Protocol):
    def price(self, *, side: Side, price: Decimal, qty: Decimal, quote: Quote | None = None,
              bar: Bar | None = None) -> Decimal:
        """The fill price after slippage for ``qty`` at ``price`` (never better than ``price``)."""
        ...


@dataclass(frozen=True, slots=True)
class NoSlippage:
    def price(self, *, side: Side, price: Decimal, qty: Decimal, quote: Quote | None = None,
              bar: Bar | None = None) -> Decimal:
        """The price unchanged."""
        return price


@dataclass(frozen=True, slots=True)
class FixedBpsSlippage:
    """A fixed cost in basis points of the price: 5 bps on a 100.00 buy fills at 100.05."""

    bps: Decimal = Decimal(5)
    tick: Decimal = TICK

    def price(self, *, side: Side, price: Decimal, qty: Decimal, quote: Quote | None = None,
              bar: Bar | None = None) -> Decimal:
        """``price ± price * bps / 10,000``."""
        return _adverse(side, price, price * self.bps / BPS, self.tick)


@dataclass(frozen=True, slots=True)
class SpreadSlippage:
    """A fraction of the quoted spread (ask - bid): crossing costs part of the spread again.

    Without a two-sided quote (bar fills, one-sided quotes) there is no spread and no slippage.
    """

    fraction: Decimal = Decimal("0.5")
    tick: Decimal = TICK

    def price(self, *, side: Side, price: Decimal, qty: Decimal, quote: Quote | None = None,
              bar: Bar | None = None) -> Decimal:
        """``price ± fraction * (ask - bid)`` (a crossed quote counts as no spread)."""
        if quote is None or quote.bid is None or quote.ask is None:
            return price
        return _adverse(side, price, self.fraction * max(quote.ask - quote.bid, ZERO), self.tick)


@dataclass(frozen=True, slots=True)
class SquareRootImpact:
    """Square-root market impact: ``price * coef * sigma * sqrt(qty / volume)``.

    ``qty / volume`` is the participation; ``volume`` is the bar's volume when filling on a bar, else the
    model's ``volume`` (e.g. an average daily volume); with neither, or a zero volume, there is no impact.
    ``sigma`` is the volatility over the volume's period (0.02 = 2 %).
    """

    coef: Decimal = Decimal(1)
    sigma: Decimal = Decimal("0.02")
    volume: Decimal | None = None
    tick: Decimal = TICK

    def price(self, *, side: Side, price: Decimal, qty: Decimal, quote: Quote | None = None,
              bar: Bar | None = None) -> Decimal:
        """``price ± price * coef * sigma * sqrt(qty / volume)``."""
        volume = bar.volume if bar is not None else self.volume
        if not volume or volume <= 0 or qty <= 0:
            return price
        return _adverse(side, price, price * self.coef * self.sigma * (qty / volume).sqrt(), self.tick)


# --- commission ---------------------------------------------------------------------------------


class CommissionModel(Protocol):
    def fee(self, *, qty: Decimal, price: Decimal, multiplier: int = 1, liquidity: str = "",
            first_fill: bool = True) -> Decimal:
        """The fee of one execution in cents. ``first_fill``: this is the order's first execution;
        ``liquidity``: "maker" | "taker" | "" (unknown counts as taker)."""
        ...


@dataclass(frozen=True, slots=True)
class NoCommission:
    def fee(self, *, qty: Decimal, price: Decimal, multiplier: int = 1, liquidity: str = "",
            first_fill: bool = True) -> Decimal:
        """Zero."""
        return ZERO


@dataclass(frozen=True, slots=True)
class PerShareCommission:
    """Per share (per contract for options), with a minimum and a maximum as a % of the trade value
    (IBKR fixed: 0.005/share, min 1.00, max 1 % of value). The maximum wins over the minimum, so a
    tiny trade pays at most 1 % of its value. Applied per execution."""

    per_share: Decimal = Decimal("0.005")
    minimum: Decimal = Decimal("1.00")
    maximum_pct: Decimal | None = Decimal(1)

    def fee(self, *, qty: Decimal, price: Decimal, multiplier: int = 1, liquidity: str = "",
            first_fill: bool = True) -> Decimal:
        """``min(max(qty * per_share, minimum), qty * price * multiplier * maximum_pct / 100)``."""
        fee = max(qty * self.per_share, self.minimum)
        if self.maximum_pct is not None:
            fee = min(fee, qty * price * multiplier * self.maximum_pct / HUNDRED)
        return round_fee(fee)


@dataclass(frozen=True, slots=True)
class PercentageCommission:
    """A percentage of the trade value (0.1 = 0.1 %)."""

    pct: Decimal = Decimal("0.1")

    def fee(self, *, qty: Decimal, price: Decimal, multiplier: int = 1, liquidity: str = "",
            first_fill: bool = True) -> Decimal:
        """``qty * price * multiplier * pct / 100``."""
        return round_fee(qty * price * multiplier * self.pct / HUNDRED)


@dataclass(frozen=True, slots=True)
class PerOrderCommission:
    """A flat amount per order, charged once: on the order's first execution."""

    amount: Decimal = Decimal("1.00")

    def fee(self, *, qty: Decimal, price: Decimal, multiplier: int = 1, liquidity: str = "",
            first_fill: bool = True) -> Decimal:
        """``amount`` on the first fill, zero on later ones."""
        return round_fee(self.amount) if first_fill else ZERO


@dataclass(frozen=True, slots=True)
class CryptoMakerTakerCommission:
    """Crypto maker/taker fees in basis points of the value, by the fill's liquidity (Alpaca's first
    tier: 15 bps maker, 25 bps taker). Unknown liquidity pays the taker rate."""

    maker_bps: Decimal = Decimal(15)
    taker_bps: Decimal = Decimal(25)

    def fee(self, *, qty: Decimal, price: Decimal, multiplier: int = 1, liquidity: str = "",
            first_fill: bool = True) -> Decimal:
        """``qty * price * multiplier * bps / 10,000``, bps = maker_bps for "maker", else taker_bps."""
        bps = self.maker_bps if liquidity == MAKER else self.taker_bps
        return round_fee(qty * price * multiplier * bps / BPS)
