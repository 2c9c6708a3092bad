"""The oracle adapter at the edge: streamed oracle accounts -> per-market index price updates.

:class:`IndexPriceSelector` (pure: prices, slots and times are arguments) keeps, per market, the
latest reading of its primary and optional fallback account and a short TWAP of each, applies
the market's :class:`~oracle_feeds.guards.OracleGuards` and picks the source with
:func:`~oracle_feeds.guards.choose_source` (primary while valid for trading, else the fallback
if valid, else none). It answers with :class:`IndexPriceUpdate` records:

* on every new reading of the source in use (the primary, or the fallback while the primary is
  not valid), carrying the verdict for every action;
* when the choice changes (switch to / back from the fallback, or no source valid any more:
  ``valid`` False, carrying the best reading there is so the engine can halt the market with it);
* from :meth:`IndexPriceSelector.recheck` (the clock moved): when a reading has gone stale
  and the choice or validity (for trading, or for liquidation: its guard is the strictest, so
  a reading can age out of it first) changes because of it.

A reading of an account that fails to parse (an ``OracleStreamError``) replaces that account's
latest reading with "no price": a corrupt oracle must not keep serving its last good value.
The TWAP used by the deviation guard is over the readings before the new one
(``twap_window_s``, each price held until the next), so a jump is measured against history.

:class:`OracleFeed` runs an :class:`~oracle_feeds.stream.OracleStream` (websocket, reconnects)
for every market's accounts, feeds the selector, rechecks every ``recheck_interval_s`` with the
cluster slot read over JSON-RPC ``getSlot``, and hands each update to ``on_update``. The
engine turns one into its ``UpdateOraclePrice`` command with
``exchange.engine.oracle_port.oracle_command(u.market_id, u.reading, u.verdict(TRADING),
u.verdict(LIQUIDATION))`` (the same fields as :meth:`IndexPriceUpdate.command_fields`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from solders.pubkey import Pubkey

from oracle_feeds.guards import (
    OracleAction,
    OracleGuards,
    Verdict,
    choose_source,
    time_weighted_average,
    validity,
)
from oracle_feeds.price import OraclePrice, OracleSource
from oracle_feeds.stream import (
    OracleStream,
    OracleStreamError,
    OracleUpdate,
    StreamEvent,
    StreamFeed,
)

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
MAX_TWAP_SAMPLES = 1024
Role = Literal["primary", "fallback"]


class FeedConfigError(ValueError):
    code = "ORACLE_FEED_CONFIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketOracle:
    """Where one market's index price comes from and how it is guarded."""

    market_id: int
    primary: StreamFeed
    guards: OracleGuards
    fallback: StreamFeed | None = None
    twap_window_s: int = 60

    def __post_init__(self) -> None:
        if type(self.market_id) is not int or self.market_id < 0:
            raise FeedConfigError(f"market_id: expected an int >= 0, got {self.market_id!r}")
        if type(self.twap_window_s) is not int or self.twap_window_s <= 0:
            raise FeedConfigError(f"twap_window_s: expected an int > 0, got {self.twap_window_s!r}")
        if self.fallback is not None and self.fallback.address == self.primary.address:
            raise FeedConfigError("fallback: expected another account than the primary")


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexPriceUpdate:
    """One validated index price reading for a market (prices at ``PRICE_PRECISION``).

    ``valid`` is the trading verdict of the chosen source; ``verdicts`` holds the verdict for
    every action (liquidation the strictest). With no valid source, ``role`` is the source whose
    reading is carried (primary if it has one) and ``valid`` is False."""

    market_id: int
    price: int
    confidence: int
    slot: int
    publish_time_s: int
    source: OracleSource
    address: Pubkey
    role: Role
    valid: bool
    verdicts: tuple[tuple[OracleAction, Verdict], ...]
    twap: int | None
    reading: OraclePrice  # the parsed reading itself (what the engine's oracle port takes)

    def verdict(self, action: OracleAction) -> Verdict:
        return dict(self.verdicts)[action]

    @property
    def liquidation_valid(self) -> bool:
        """Valid for trading and for liquidation (the strictest guard)."""
        return self.valid and self.verdict(OracleAction.LIQUIDATION) == Verdict.VALID

    def command_fields(self) -> dict[str, Any]:
        """The fields of the engine's oracle price command, by name."""
        return {
            "market_id": self.market_id,
            "price": self.price,
            "confidence": self.confidence,
            "slot": self.slot,
            "publish_time_s": self.publish_time_s,
            "valid": self.valid,
            "liquidation_valid": self.liquidation_valid,
        }


@dataclass
class _SourceState:
    feed: StreamFeed
    latest: OraclePrice | None = None
    samples: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=MAX_TWAP_SAMPLES))
    twap: int | None = None  # TWAP of the readings before `latest`


@dataclass
class _MarketState:
    config: MarketOracle
    primary: _SourceState
    fallback: _SourceState | None
    # (role, valid, liquidation_valid) of the last update sent
    last_choice: tuple[Role, bool, bool] | None = None


class IndexPriceSelector:
    """Pure per-market source choice and guarding (see the module docstring)."""

    def __init__(self, markets: Sequence[MarketOracle]) -> None:
        if not markets:
            raise FeedConfigError("markets: expected at least one")
        self._markets: dict[int, _MarketState] = {}
        self._by_address: dict[Pubkey, tuple[_MarketState, Role]] = {}
        for market in markets:
            if market.market_id in self._markets:
                raise FeedConfigError(f"market_id: {market.market_id} configured twice")
            state = _MarketState(
                config=market,
                primary=_SourceState(market.primary),
                fallback=_SourceState(market.fallback) if market.fallback else None,
            )
            self._markets[market.market_id] = state
            roles: list[tuple[_SourceState, Role]] = [(state.primary, "primary")]
            if state.fallback is not None:
                roles.append((state.fallback, "fallback"))
            for src, role in roles:
                if src.feed.address in self._by_address:
                    raise FeedConfigError(f"{src.feed.address}: one account serves one market only")
                self._by_address[src.feed.address] = (state, role)

    @property
    def stream_feeds(self) -> list[StreamFeed]:
        """Every account to follow (primaries and fallbacks)."""
        out = []
        for market in self._markets.values():
            out.append(market.primary.feed)
            if market.fallback is not None:
                out.append(market.fallback.feed)
        return out

    def observe(
        self, address: Pubkey, price: OraclePrice | None, *, now_slot: int, now_s: int
    ) -> list[IndexPriceUpdate]:
        """A new reading (None: the account no longer parses) of ``address``."""
        entry = self._by_address.get(address)
        if entry is None:
            return []
        market, role = entry
        src = market.primary if role == "primary" else market.fallback
        assert src is not None
        window_ns = market.config.twap_window_s * NS_PER_S
        now_ns = now_s * NS_PER_S
        # a sample matters while the next one starts inside the window: drop older ones
        while len(src.samples) >= 2 and src.samples[1][0] <= now_ns - window_ns:
            src.samples.popleft()
        src.twap = time_weighted_average(src.samples, now_ns, window_ns)
        src.latest = price
        if price is not None and price.status_ok:
            sample = (price.publish_time_s * NS_PER_S, price.price)
            if src.samples and src.samples[-1][0] == sample[0]:
                src.samples[-1] = sample  # same instant: the earlier one held for no time
            else:
                src.samples.append(sample)
        update = self._decide(market, now_slot=now_slot, now_s=now_s)
        if update is None:
            return []
        choice = (update.role, update.valid, update.liquidation_valid)
        if update.role == role or choice != market.last_choice:
            market.last_choice = choice
            return [update]
        return []

    def recheck(self, *, now_slot: int, now_s: int) -> list[IndexPriceUpdate]:
        """Re-evaluate every market at ``now``; updates only where the choice changed."""
        out = []
        for market in self._markets.values():
            update = self._decide(market, now_slot=now_slot, now_s=now_s)
            if update is None:
                continue
            choice = (update.role, update.valid, update.liquidation_valid)
            if choice != market.last_choice:
                market.last_choice = choice
                out.append(update)
        return out

    def _verdicts(
        self, market: _MarketState, src: _SourceState | None, now_slot: int, now_s: int
    ) -> dict[OracleAction, Verdict] | None:
        if src is None:
            return None
        return validity(
            src.latest, market.config.guards, now_slot=now_slot, now_s=now_s, twap=src.twap
        )

    def _decide(
        self, market: _MarketState, *, now_slot: int, now_s: int
    ) -> IndexPriceUpdate | None:
        primary = self._verdicts(market, market.primary, now_slot, now_s)
        fallback = self._verdicts(market, market.fallback, now_slot, now_s)
        assert primary is not None
        chosen = choose_source(
            primary[OracleAction.TRADING],
            fallback[OracleAction.TRADING] if fallback is not None else None,
        )
        role: Role
        if chosen == "fallback":
            role = "fallback"
        elif chosen == "primary" or market.primary.latest is not None:
            role = "primary"
        elif market.fallback is not None and market.fallback.latest is not None:
            role = "fallback"
        else:
            return None  # no reading at all yet
        src = market.primary if role == "primary" else market.fallback
        verdicts = primary if role == "primary" else fallback
        assert src is not None and verdicts is not None and src.latest is not None
        price = src.latest
        return IndexPriceUpdate(
            market_id=market.config.market_id,
            price=price.price,
            confidence=price.confidence,
            slot=price.slot,
            publish_time_s=price.publish_time_s,
            source=price.source,
            address=src.feed.address,
            role=role,
            valid=chosen is not None,
            verdicts=tuple(sorted(verdicts.items())),
            twap=src.twap,
            reading=price,
        )


UpdateCallback = Callable[[IndexPriceUpdate], Awaitable[None] | None]


class OracleFeed:
    """Stream every market's oracle accounts and deliver :class:`IndexPriceUpdate` s.

    ``async with OracleFeed(ws_url, rpc_url, markets, on_update=...) as feed:``. ``now_s`` is
    the clock for the seconds guards (default: wall time); the slot is the newest of the
    notification context slots and the cluster's ``getSlot`` polled on every recheck."""

    def __init__(
        self,
        ws_url: str,
        rpc_url: str,
        markets: Sequence[MarketOracle],
        *,
        on_update: UpdateCallback,
        now_s: Callable[[], float] = time.time,
        recheck_interval_s: float = 0.4,
        **stream_options: Any,
    ) -> None:
        if recheck_interval_s <= 0:
            raise FeedConfigError(f"recheck_interval_s: expected > 0, got {recheck_interval_s}")
        self.selector = IndexPriceSelector(markets)
        self.rpc_url = rpc_url
        self.on_update = on_update
        self._now_s = now_s
        self.recheck_interval_s = recheck_interval_s
        self.slot = 0
        self.stream = OracleStream(
            ws_url, rpc_url, self.selector.stream_feeds, on_event=self._on_event, **stream_options
        )
        self._recheck_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        await self.stream.start()
        self._recheck_task = asyncio.create_task(self._recheck_loop(), name="oracle-feed-recheck")

    async def stop(self) -> None:
        if self._recheck_task is not None:
            self._recheck_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck_task
            self._recheck_task = None
        await self.stream.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OracleFeed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _emit(self, updates: list[IndexPriceUpdate]) -> None:
        for update in updates:
            try:
                result = self.on_update(update)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("oracle feed: consumer failed on %r", update)

    async def _on_event(self, event: StreamEvent) -> None:
        self.slot = max(self.slot, event.context_slot)
        price = event.price if isinstance(event, OracleUpdate) else None
        if isinstance(event, OracleStreamError):
            log.warning(
                "oracle feed: %s unreadable (%s): %s", event.address, event.code, event.message
            )
        updates = self.selector.observe(
            event.address, price, now_slot=self.slot, now_s=int(self._now_s())
        )
        await self._emit(updates)

    async def recheck_now(self) -> None:
        """Read the cluster slot and re-evaluate every market (what the loop does)."""
        assert self._session is not None
        req = {"jsonrpc": "2.0", "id": 1, "method": "getSlot", "params": []}
        async with self._session.post(
            self.rpc_url, json=req, timeout=aiohttp.ClientTimeout(total=5)
        ) as resp:
            body = await resp.json(content_type=None)
        if "result" in body:
            self.slot = max(self.slot, int(body["result"]))
        await self._emit(self.selector.recheck(now_slot=self.slot, now_s=int(self._now_s())))

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_interval_s)
            try:
                await self.recheck_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cluster being away is the stream's problem too
                log.info("oracle feed: recheck failed (%r)", exc)
