"""Market specification: the static rules of one order book."""

from __future__ import annotations

from dataclasses import dataclass

from exchange.core.errors import ConfigError
from exchange.core.units import BASE_PRECISION, U32_MAX, U64_MAX

MAX_PRICE_TICKS = U32_MAX  # prices travel as u32 ticks on the wire and on-chain
MAX_ORDER_LOTS = 2**48  # bounds every lot count so book arithmetic fits int64 everywhere
DEFAULT_MAX_PRICE_TICKS = 10**7
DEFAULT_MAX_SIZE_LOTS = 10**8  # capped further so the largest fill's notional fits u64


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketSpec:
    """Tick, lot and size rules of a market.

    ``tick_size`` is in quote units per whole base unit at ``PRICE_PRECISION``;
    ``lot_size`` is in base units at ``BASE_PRECISION``. One tick times one lot must be
    a whole number of quote units, so every fill's notional is exact.
    """

    market_id: int
    symbol: str
    tick_size: int
    lot_size: int
    min_size_lots: int = 1
    max_size_lots: int = 0  # 0: DEFAULT_MAX_SIZE_LOTS, lowered to keep notional within u64
    max_price_ticks: int = DEFAULT_MAX_PRICE_TICKS
    max_open_orders_per_account: int = 256

    def __post_init__(self) -> None:
        def need(cond: bool, what: str, got: object) -> None:
            if not cond:
                raise ConfigError(f"MarketSpec {self.symbol!r}: expected {what}, got {got!r}")

        need(
            type(self.market_id) is int and 0 <= self.market_id <= 65535,
            "market_id in 0..65535",
            self.market_id,
        )
        need(
            isinstance(self.symbol, str) and 0 < len(self.symbol) <= 32,
            "symbol of 1..32 characters",
            self.symbol,
        )
        need(
            type(self.tick_size) is int and 0 < self.tick_size <= U64_MAX,
            "tick_size > 0",
            self.tick_size,
        )
        need(
            type(self.lot_size) is int and 0 < self.lot_size <= U64_MAX,
            "lot_size > 0",
            self.lot_size,
        )
        need(
            (self.tick_size * self.lot_size) % BASE_PRECISION == 0,
            f"tick_size*lot_size divisible by {BASE_PRECISION} (whole quote units per tick-lot)",
            (self.tick_size, self.lot_size),
        )
        need(
            type(self.max_price_ticks) is int and 1 <= self.max_price_ticks <= MAX_PRICE_TICKS,
            f"max_price_ticks in 1..{MAX_PRICE_TICKS}",
            self.max_price_ticks,
        )
        if self.max_size_lots == 0:
            fitting = U64_MAX // (self.quote_per_tick_lot * self.max_price_ticks)
            object.__setattr__(self, "max_size_lots", min(DEFAULT_MAX_SIZE_LOTS, fitting))
        need(
            type(self.min_size_lots) is int and self.min_size_lots >= 1,
            "min_size_lots >= 1",
            self.min_size_lots,
        )
        need(
            type(self.max_size_lots) is int
            and self.min_size_lots <= self.max_size_lots <= MAX_ORDER_LOTS,
            f"max_size_lots in min_size_lots..{MAX_ORDER_LOTS}",
            self.max_size_lots,
        )
        need(
            type(self.max_open_orders_per_account) is int
            and 1 <= self.max_open_orders_per_account <= 65535,
            "max_open_orders_per_account in 1..65535",
            self.max_open_orders_per_account,
        )
        # A fill's quote value must fit u64 on-chain even at the extremes.
        need(
            self.quote_per_tick_lot * self.max_price_ticks * self.max_size_lots <= U64_MAX,
            "max_price_ticks*max_size_lots notional within u64",
            self.quote_per_tick_lot * self.max_price_ticks * self.max_size_lots,
        )

    @property
    def quote_per_tick_lot(self) -> int:
        """Quote units (``QUOTE_PRECISION``) that one lot costs per tick of price."""
        return self.tick_size * self.lot_size // BASE_PRECISION

    def price_to_ticks(self, price: int) -> int | None:
        """Ticks for ``price`` (``PRICE_PRECISION``), or ``None`` if it is off-tick."""
        ticks, rest = divmod(price, self.tick_size)
        return None if rest else ticks

    def base_to_lots(self, base: int) -> int | None:
        """Lots for ``base`` (``BASE_PRECISION``), or ``None`` if it is off-lot."""
        lots, rest = divmod(base, self.lot_size)
        return None if rest else lots

    def notional_quote(self, price_ticks: int, num_base_lots: int) -> int:
        """Exact quote value (``QUOTE_PRECISION``) of ``num_base_lots`` at ``price_ticks``."""
        return price_ticks * num_base_lots * self.quote_per_tick_lot
