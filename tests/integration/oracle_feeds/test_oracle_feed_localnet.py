"""OracleFeed (stream + guards -> per-market index price updates) against a real LocalnetServer,
with the simulated publisher writing real-format accounts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from integration_support import FakeClock, key

from exchange.core.commands import CreateMarket
from exchange.core.events import OraclePriceUpdated
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.oracle_port import oracle_command
from exchange.engine.sequencer import Engine
from localnet.cluster import EmbeddedCluster
from localnet.server import LocalnetServer
from oracle_feeds.feed import IndexPriceUpdate, MarketOracle, OracleFeed
from oracle_feeds.guards import GuardLimits, OracleAction, OracleGuards, Verdict
from oracle_feeds.price import OracleSource
from oracle_feeds.publisher import RandomWalk, SimulatedFeed, SimulatedPublisher
from oracle_feeds.stream import StreamFeed

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TIMEOUT = 5.0
FEED_ID = bytes(range(32))
TRADING = GuardLimits(
    max_age_slots=25, max_age_seconds=60, max_confidence_ppm=10_000, max_twap_deviation_ppm=50_000
)
LIQUIDATION = GuardLimits(
    max_age_slots=10, max_age_seconds=30, max_confidence_ppm=5_000, max_twap_deviation_ppm=20_000
)
GUARDS = OracleGuards(trading=TRADING, funding=TRADING, withdrawal=TRADING, liquidation=LIQUIDATION)


def walk(seed: int, start: int) -> RandomWalk:
    return RandomWalk(seed=seed, start_price=start, step_ppm=1_000, confidence_ppm=100)


@pytest.fixture
def cluster(clock: FakeClock) -> EmbeddedCluster:
    return EmbeddedCluster(time_source=clock, start_slot=1_000)


@pytest.fixture
async def server(cluster: EmbeddedCluster) -> AsyncIterator[LocalnetServer]:
    async with LocalnetServer(cluster, rpc_port=0, ws_port=0, shutdown_timeout=0.2) as srv:
        yield srv


class Consumer:
    """Stands in for the engine: collects what it is handed, in order."""

    def __init__(self) -> None:
        self.updates: asyncio.Queue[IndexPriceUpdate] = asyncio.Queue()

    def __call__(self, update: IndexPriceUpdate) -> None:
        self.updates.put_nowait(update)

    async def next(self) -> IndexPriceUpdate:
        return await asyncio.wait_for(self.updates.get(), TIMEOUT)


async def test_feed_hands_validated_index_prices_per_market_and_falls_back(
    server: LocalnetServer, cluster: EmbeddedCluster, clock: FakeClock
) -> None:
    sol_primary = SimulatedFeed(
        key(1), OracleSource.PYTH_PULL, walk(1, 150_000_000), feed_id=FEED_ID
    )
    sol_fallback = SimulatedFeed(key(2), OracleSource.SWITCHBOARD_ON_DEMAND, walk(2, 150_100_000))
    btc_primary = SimulatedFeed(key(3), OracleSource.PYTH_PUSH, walk(3, 65_000_000_000))
    primaries = SimulatedPublisher(cluster, [sol_primary, btc_primary])
    fallbacks = SimulatedPublisher(cluster, [sol_fallback])
    markets = [
        MarketOracle(
            market_id=0,
            primary=StreamFeed(key(1), OracleSource.PYTH_PULL, expected_feed_id=FEED_ID),
            fallback=StreamFeed(key(2), OracleSource.SWITCHBOARD_ON_DEMAND),
            guards=GUARDS,
        ),
        MarketOracle(
            market_id=1, primary=StreamFeed(key(3), OracleSource.PYTH_PUSH), guards=GUARDS
        ),
    ]
    consumer = Consumer()
    feed = OracleFeed(
        server.ws_url,
        server.rpc_url,
        markets,
        on_update=consumer,
        now_s=clock,
        recheck_interval_s=10.0,  # the test drives rechecks itself
    )
    async with feed:
        await asyncio.wait_for(feed.stream.subscribed.wait(), TIMEOUT)
        clock.advance(0.4)
        published = {p.address: p for p in primaries.publish_once() + fallbacks.publish_once()}
        got = {}
        for _ in range(2):  # the fallback's reading is held back while the primary is valid
            u = await consumer.next()
            got[u.market_id] = u
        for market_id, address in ((0, key(1)), (1, key(3))):
            update, pub = got[market_id], published[address]
            assert (update.price, update.confidence, update.slot, update.publish_time_s) == (
                pub.price,
                pub.confidence,
                pub.slot,
                pub.publish_time_s,
            )
            assert update.valid and update.role == "primary"
            assert update.verdict(OracleAction.LIQUIDATION) == Verdict.VALID
        assert consumer.updates.empty()

        # the SOL primary stops publishing; the fallback keeps going; 26 slots later the
        # primary is stale for trading and the market switches to the fallback
        cluster.warp(26)
        clock.advance(26 * 0.4)
        fresh = fallbacks.publish_once()[0]
        switched = await consumer.next()
        assert switched.market_id == 0 and switched.role == "fallback" and switched.valid
        assert (
            switched.price == fresh.price and switched.source is OracleSource.SWITCHBOARD_ON_DEMAND
        )
        # BTC has no fallback: the recheck reports it invalid (the engine halts that market)
        await feed.recheck_now()
        halted = await consumer.next()
        assert halted.market_id == 1 and not halted.valid
        assert halted.verdict(OracleAction.TRADING) == Verdict.STALE_SLOTS
        assert halted.command_fields()["valid"] is False

        # both primaries publish again: SOL back on its primary, BTC valid again
        published = {p.address: p for p in primaries.publish_once()}
        again = {u.market_id: u for u in [await consumer.next(), await consumer.next()]}
        assert again[0].role == "primary" and again[0].valid
        assert again[0].price == published[key(1)].price
        assert again[1].valid and again[1].price == published[key(3)].price


async def test_feed_drives_the_engine_through_the_oracle_port(
    server: LocalnetServer, cluster: EmbeddedCluster, clock: FakeClock, tmp_path: Path
) -> None:
    """Publisher -> cluster -> websocket -> OracleFeed -> oracle port -> Engine.process: the
    journaled OraclePriceUpdated carries exactly what was published; a stale oracle halts."""
    publisher = SimulatedPublisher(
        cluster,
        [SimulatedFeed(key(5), OracleSource.PYTH_PULL, walk(5, 150_000_000), feed_id=FEED_ID)],
    )
    engine = Engine(EngineConfig(data_dir=tmp_path))
    engine.process([CreateMarket(0, "SOL-PERP", 1_000_000, 1_000_000_000)])
    journaled: list[OraclePriceUpdated] = []

    def to_engine(update: IndexPriceUpdate) -> None:
        command = oracle_command(
            update.market_id,
            update.reading,
            update.verdict(OracleAction.TRADING),
            update.verdict(OracleAction.LIQUIDATION),
        )
        [events] = engine.process([command])
        journaled.extend(e for e in events if isinstance(e, OraclePriceUpdated))

    market = MarketOracle(
        market_id=0,
        primary=StreamFeed(key(5), OracleSource.PYTH_PULL, expected_feed_id=FEED_ID),
        guards=GUARDS,
    )
    feed = OracleFeed(
        server.ws_url,
        server.rpc_url,
        [market],
        on_update=to_engine,
        now_s=clock,
        recheck_interval_s=10.0,
    )
    try:
        async with feed:
            await asyncio.wait_for(feed.stream.subscribed.wait(), TIMEOUT)
            published = []
            for _ in range(3):
                clock.advance(0.4)
                published.extend(publisher.publish_once())
                await wait_for_count(journaled, len(published))
            assert [
                (e.price, e.confidence, e.slot, e.publish_time_s, e.valid) for e in journaled
            ] == [(p.price, p.confidence, p.slot, p.publish_time_s, True) for p in published]
            cluster.warp(26)
            await feed.recheck_now()
            await wait_for_count(journaled, 4)
            assert journaled[-1].valid is False  # the engine's breaker halts on it
        replayed = Journal.for_data_dir(tmp_path, read_only=True)
        try:
            kinds = [type(e).__name__ for e in replayed.read()]
        finally:
            replayed.close()
        assert kinds.count("OraclePriceUpdated") == 4
    finally:
        engine.close()


async def wait_for_count(items: list[OraclePriceUpdated], n: int) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while len(items) < n:
        assert asyncio.get_running_loop().time() < deadline, f"{len(items)} of {n} arrived"
        await asyncio.sleep(0.005)
