"""Demo traders of a running node, through the SDK (``exchange.client``) with their own keys.

``MarketMaker`` quotes every market around the oracle index price (``/v1/markets/{id}/prices``)
with ``levels`` post-only orders a side, ``half_spread_ppm`` x level away from a mid that is
skewed against its inventory: a long position moves both quotes down (it sells more easily and
buys less), up to ``max_skew_ppm`` at ``max_inventory_notional_quote``. Each round is a
cancel-all and one batch per market. ``Taker`` sends a seeded stream of small IOC orders that
cross the book. Both only read public market data and their own positions; every price is
an integer at ``PRICE_PRECISION`` on the market's tick grid, every size a whole number of lots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exchange.client import ApiRequestError, Market, PerpdexRest
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION, RATIO_PRECISION

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MakerParams:
    levels: int = 3
    half_spread_ppm: int = 300  # first level: 3 bp from the (skewed) mid
    quote_notional_quote: int = 5_000 * 10**6  # per order, QUOTE_PRECISION
    max_inventory_notional_quote: int = 200_000 * 10**6
    max_skew_ppm: int = 1_000  # mid moved by at most 10 bp against the inventory
    interval_s: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TakerParams:
    notional_quote: int = 5_000 * 10**6  # per order (x 0.5..2), QUOTE_PRECISION
    through_ppm: int = 5_000  # IOC limit 50 bp through the index
    interval_s: float = 0.7
    seed: int = 7


@dataclass(slots=True)
class BotStats:
    rounds: int = 0
    orders_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    rejections_by_code: dict[str, int] = field(default_factory=dict)

    def note(self, results: Sequence[Any]) -> None:
        for r in results:
            self.orders_sent += 1
            if r.accepted:
                self.accepted += 1
            else:
                self.rejected += 1
                name = r.reject_code_name or str(r.reject_code)
                self.rejections_by_code[name] = self.rejections_by_code.get(name, 0) + 1


def lots_for_notional(notional_quote: int, price: int, market: Market) -> int:
    """Whole lots worth about ``notional_quote`` at ``price`` (at least one lot)."""
    # base units = notional / price, at BASE_PRECISION; floor, then whole lots
    base = notional_quote * BASE_PRECISION // max(1, price)
    return max(1, base // market.lot_size)


def on_tick(price: int, market: Market, *, up: bool) -> int:
    """``price`` moved onto the market's tick grid (rounded away from the touch when quoting)."""
    ticks, rem = divmod(price, market.tick_size)
    if up and rem:
        ticks += 1
    return max(1, ticks) * market.tick_size


class Bot:
    """Shared plumbing: the SDK client, the market list, the run loop."""

    name = "bot"

    def __init__(self, rest: PerpdexRest, markets: Sequence[Market], interval_s: float) -> None:
        self.rest = rest
        self.markets = list(markets)
        self.interval_s = interval_s
        self.stats = BotStats()

    async def index_price(self, market_id: int) -> int:
        prices = await self.rest.prices(market_id)
        return prices.index_price if prices.status == "ACTIVE" else 0

    async def collateral_quote(self) -> int:
        """Collateral of sub-account 0 as the engine sees it (0 before any deposit)."""
        return sum(b.collateral_quote for b in await self.rest.balances() if b.sub_account_id == 0)

    async def wait_funded(self, stop: asyncio.Event, timeout_s: float = 60.0) -> bool:
        """Wait until the bridge credited the on-chain deposit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not stop.is_set() and loop.time() < deadline:
            if await self.collateral_quote() > 0:
                return True
            await asyncio.sleep(0.1)
        return False

    async def step(self) -> None:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        """Trade until ``stop``; API refusals are counted and logged, never fatal."""
        if not await self.wait_funded(stop):
            log.warning("%s: no collateral credited; not trading", self.name)
            return
        while not stop.is_set():
            try:
                await self.step()
                self.stats.rounds += 1
            except ApiRequestError as exc:
                self.stats.errors += 1
                log.info("%s: API refused: %s", self.name, exc)
            except OSError as exc:  # the API going away at shutdown
                self.stats.errors += 1
                log.info("%s: connection: %r", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)


class MarketMaker(Bot):
    """Quotes around the oracle with inventory skew (see the module docstring)."""

    def __init__(
        self,
        rest: PerpdexRest,
        markets: Sequence[Market],
        params: MakerParams = MakerParams(),
        *,
        name: str = "maker",
        spread_multiplier: int = 1,
    ) -> None:
        super().__init__(rest, markets, params.interval_s)
        self.params = params
        self.name = name
        self.spread_multiplier = spread_multiplier

    def quotes(self, market: Market, index_price: int, position_base: int) -> list[dict[str, Any]]:
        """The post-only orders of one market for an index price and a position."""
        p = self.params
        inventory_quote = position_base * index_price // BASE_PRECISION
        # skew in ppm of the price, against the inventory, clamped
        skew_ppm = -inventory_quote * p.max_skew_ppm // p.max_inventory_notional_quote
        skew_ppm = max(-p.max_skew_ppm, min(p.max_skew_ppm, skew_ppm))
        mid = index_price + index_price * skew_ppm // RATIO_PRECISION
        lots = lots_for_notional(p.quote_notional_quote, index_price, market)
        orders = []
        for level in range(1, p.levels + 1):
            offset = mid * p.half_spread_ppm * level * self.spread_multiplier // RATIO_PRECISION
            offset = max(offset, market.tick_size)
            for side, price in (
                ("BID", on_tick(mid - offset, market, up=False)),
                ("ASK", on_tick(mid + offset, market, up=True)),
            ):
                orders.append(
                    {
                        "market_id": market.market_id,
                        "side": side,
                        "price": price,
                        "size_base": lots * market.lot_size,
                        "time_in_force": "POST_ONLY_SLIDE",
                    }
                )
        return orders

    async def step(self) -> None:
        positions = {
            p["market_id"]: p["base"]
            for p in await self.rest.positions()
            if p.get("sub_account_id", 0) == 0
        }
        for market in self.markets:
            index_price = await self.index_price(market.market_id)
            await self.rest.cancel_all(market.market_id)
            if index_price <= 0:
                continue  # no valid oracle: stay out of the market
            orders = self.quotes(market, index_price, positions.get(market.market_id, 0))
            self.stats.note(await self.rest.place_batch(orders))


class Taker(Bot):
    """Seeded IOC orders through the index price."""

    def __init__(
        self,
        rest: PerpdexRest,
        markets: Sequence[Market],
        params: TakerParams = TakerParams(),
        *,
        name: str = "taker",
    ) -> None:
        super().__init__(rest, markets, params.interval_s)
        self.params = params
        self.name = name
        self.rng = random.Random(params.seed)

    def order(self, market: Market, index_price: int, buy: bool) -> dict[str, Any]:
        p = self.params
        through = index_price * p.through_ppm // RATIO_PRECISION
        price = on_tick(index_price + through if buy else index_price - through, market, up=buy)
        lots = lots_for_notional(p.notional_quote, index_price, market)
        lots = max(1, lots * self.rng.randint(1, 4) // 2)
        return {
            "market_id": market.market_id,
            "side": "BID" if buy else "ASK",
            "price": price,
            "size_base": lots * market.lot_size,
            "time_in_force": "IOC",
        }

    async def step(self) -> None:
        market = self.rng.choice(self.markets)
        buy = self.rng.random() < 0.5
        index_price = await self.index_price(market.market_id)
        if index_price <= 0:
            return
        result = await self.rest.place(**self.order(market, index_price, buy))
        self.stats.note([result])


assert PRICE_PRECISION == 10**6  # the quote sizes above are written at 1e6
