"""SimulatedPublisher + OracleStream against a real LocalnetServer (JSON-RPC + PubSub)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from integration_support import FakeClock, key
from pythclient.pythaccounts import PythPriceAccount, PythPriceStatus
from pythclient.solana import SolanaClient
from solana.rpc.async_api import AsyncClient
from solders.account import Account

from localnet.cluster import EmbeddedCluster
from localnet.server import LocalnetServer
from oracle_feeds.guards import GuardLimits, Verdict, check
from oracle_feeds.layouts import (
    PYTH_PUSH_PROGRAM_ID,
    PYTH_RECEIVER_PROGRAM_ID,
    SWITCHBOARD_ON_DEMAND_PROGRAM_ID,
    SWITCHBOARD_V2_PROGRAM_ID,
)
from oracle_feeds.parsers import parse_oracle_account
from oracle_feeds.price import OracleSource
from oracle_feeds.publisher import (
    CsvPathError,
    CsvPricePath,
    Published,
    RandomWalk,
    SimulatedFeed,
    SimulatedPublisher,
)
from oracle_feeds.stream import OracleStream, OracleStreamError, OracleUpdate, StreamFeed

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

OWNERS = {
    OracleSource.PYTH_PUSH: PYTH_PUSH_PROGRAM_ID,
    OracleSource.PYTH_PULL: PYTH_RECEIVER_PROGRAM_ID,
    OracleSource.SWITCHBOARD_ON_DEMAND: SWITCHBOARD_ON_DEMAND_PROGRAM_ID,
    OracleSource.SWITCHBOARD_V2: SWITCHBOARD_V2_PROGRAM_ID,
}
FEED_ID = bytes(range(32))
TIMEOUT = 5.0


def walk(seed: int, start: int = 65_000_000_000) -> RandomWalk:
    return RandomWalk(seed=seed, start_price=start, step_ppm=2_000, confidence_ppm=150)


def all_feeds(seed: int = 7) -> list[SimulatedFeed]:
    return [
        SimulatedFeed(key(1), OracleSource.PYTH_PUSH, walk(seed), exponent=-8),
        SimulatedFeed(key(2), OracleSource.PYTH_PULL, walk(seed + 1), feed_id=FEED_ID),
        SimulatedFeed(key(3), OracleSource.SWITCHBOARD_ON_DEMAND, walk(seed + 2)),
        SimulatedFeed(key(4), OracleSource.SWITCHBOARD_V2, walk(seed + 3)),
    ]


@pytest.fixture
def cluster(clock: FakeClock) -> EmbeddedCluster:
    return EmbeddedCluster(time_source=clock, start_slot=1_000)  # slot 0 = "no result"


@pytest.fixture
async def server(cluster: EmbeddedCluster) -> AsyncIterator[LocalnetServer]:
    # a short shutdown grace: stop() closes open websockets instead of waiting 60 s for them
    async with LocalnetServer(cluster, rpc_port=0, ws_port=0, shutdown_timeout=0.2) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(server.rpc_url)
    yield c
    await c.close()


async def read_back(client: AsyncClient, pub: Published) -> None:
    info = (await client.get_account_info(pub.address)).value
    assert info is not None
    assert info.owner == OWNERS[pub.source]
    price = parse_oracle_account(
        pub.source,
        bytes(info.data),
        info.owner,
        expected_feed_id=FEED_ID if pub.source is OracleSource.PYTH_PULL else None,
    )
    assert (price.price, price.confidence, price.slot, price.publish_time_s) == (
        pub.price,
        pub.confidence,
        pub.slot,
        pub.publish_time_s,
    )
    assert price.status_ok


async def next_update(stream: OracleStream) -> OracleUpdate:
    event = await stream.next_event(TIMEOUT)
    assert isinstance(event, OracleUpdate), event
    return event


def same(event: OracleUpdate, pub: Published) -> bool:
    p = event.price
    return (event.address, p.price, p.confidence, p.slot, p.publish_time_s) == (
        pub.address,
        pub.price,
        pub.confidence,
        pub.slot,
        pub.publish_time_s,
    )


# ---------------------------------------------------------------- publisher


def test_random_walk_is_seeded_integer_and_bounded() -> None:
    w1, w2 = walk(42), walk(42)
    seq1 = [w1.next_point() for _ in range(200)]
    seq2 = [w2.next_point() for _ in range(200)]
    assert seq1 == seq2
    assert seq1[0].price == 65_000_000_000
    for prev, cur in itertools.pairwise(seq1):
        assert type(cur.price) is int and type(cur.confidence) is int
        assert abs(cur.price - prev.price) * 1_000_000 <= 2_000 * prev.price
        assert cur.confidence == -((-cur.price * 150) // 1_000_000)
    assert [p.price for p in seq1] != [p.price for p in (walk(43).next_point() for _ in range(200))]


async def test_publisher_writes_all_formats_read_back_exactly(
    server: LocalnetServer, client: AsyncClient, clock: FakeClock, cluster: EmbeddedCluster
) -> None:
    publisher = SimulatedPublisher(cluster, all_feeds())
    for _ in range(3):
        clock.advance(0.8)
        published = publisher.publish_once()
        assert len(published) == 4
        assert {p.slot for p in published} == {cluster.slot}
        assert {p.publish_time_s for p in published} == {cluster.unix_timestamp}
        for pub in published:
            await read_back(client, pub)
    assert len(publisher.history) == 12

    # pythclient reads the Pyth push account through its own RPC client
    solana = SolanaClient(ratelimit=False, endpoint=server.rpc_url, ws_endpoint=server.ws_url)
    try:
        account = PythPriceAccount(str(key(1)), solana)
        await account.update()
    finally:
        await solana.close()
    last_push = [p for p in publisher.history if p.source is OracleSource.PYTH_PUSH][-1]
    assert account.aggregate_price_info is not None
    assert account.aggregate_price_info.raw_price == last_push.price * 100
    assert account.aggregate_price_info.raw_confidence_interval == last_push.confidence * 100
    assert account.aggregate_price_info.pub_slot == last_push.slot
    assert account.aggregate_price_info.price_status == PythPriceStatus.TRADING
    assert account.timestamp == last_push.publish_time_s


async def test_csv_path_replayed_exactly(
    tmp_path: Path, server: LocalnetServer, client: AsyncClient, clock: FakeClock
) -> None:
    path = tmp_path / "path.csv"
    path.write_text("ts_s,price\n100,65000.123456\n101,64999.5\n103,0.000001\n110,1e3\n")
    expected = [65_000_123_456, 64_999_500_000, 1, 1_000_000_000]
    csv_path = CsvPricePath.from_file(path, default_confidence_ppm=100)
    assert [p.ts_s for p in csv_path.points] == [100, 101, 103, 110]
    publisher = SimulatedPublisher(
        server.cluster, [SimulatedFeed(key(9), OracleSource.PYTH_PULL, csv_path, feed_id=FEED_ID)]
    )
    got = []
    while not publisher.exhausted:
        clock.advance(0.4)
        (pub,) = publisher.publish_once()
        await read_back(client, pub)
        got.append(pub.price)
    assert got == expected
    assert publisher.publish_once() == []


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("ts_s,price\n1,10\n2,abc\n", 3, "decimal"),
        ("1,10\n2,10\n\n4,1.0000001\n", 4, "at most 6 decimals"),
        ("1,10\n2,-5\n", 2, "expected > 0"),
        ("1,10\n0,10\n", 2, "previous row"),
        ("1,10,1,1\n", 1, "fields"),
        ("x,10\n", 1, "ts_s"),
        ("1,NaN\n", 1, "finite"),
    ],
)
def test_bad_csv_row_refused_with_line_number(
    tmp_path: Path, text: str, line: int, what: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CsvPathError, match=rf"line {line}: .*{what}"):
        CsvPricePath.from_file(path)


# ---------------------------------------------------------------- stream


async def test_stream_receives_consecutive_updates_in_order(
    server: LocalnetServer, clock: FakeClock, cluster: EmbeddedCluster
) -> None:
    feeds = all_feeds(11)
    publisher = SimulatedPublisher(cluster, feeds)
    publisher.publish_once()  # initial state: delivered by the first snapshot
    received: list[OracleUpdate] = []

    def on_event(event: object) -> None:
        assert isinstance(event, OracleUpdate)
        received.append(event)

    stream_feeds = [StreamFeed(f.address, f.source) for f in feeds]
    async with OracleStream(server.ws_url, server.rpc_url, stream_feeds, on_event=on_event) as s:
        await asyncio.wait_for(s.subscribed.wait(), TIMEOUT)
        snapshot = [await next_update(s) for _ in feeds]
        assert all(e.origin == "snapshot" for e in snapshot)
        assert all(same(e, p) for e, p in zip(snapshot, publisher.history, strict=True))

        n = 10
        for _ in range(n):
            clock.advance(0.4)
            publisher.publish_once()
        events = [await next_update(s) for _ in range(n * len(feeds))]
        assert all(e.origin == "notification" for e in events)
        for feed in feeds:
            mine = [e for e in events if e.address == feed.address]
            pubs = [p for p in publisher.history[len(feeds) :] if p.address == feed.address]
            assert len(mine) == n
            assert all(same(e, p) for e, p in zip(mine, pubs, strict=True))
            assert [e.price.slot for e in mine] == sorted(e.price.slot for e in mine)
            assert mine[0].source is feed.source
        assert received == snapshot + events
        assert s.reconnects == 0


async def test_stream_runner_task_publishes_until_stopped(
    server: LocalnetServer, cluster: EmbeddedCluster
) -> None:
    feed = SimulatedFeed(key(5), OracleSource.SWITCHBOARD_ON_DEMAND, walk(5))
    publisher = SimulatedPublisher(cluster, [feed])
    stream = OracleStream(server.ws_url, server.rpc_url, [StreamFeed(feed.address, feed.source)])
    async with stream:
        await asyncio.wait_for(stream.subscribed.wait(), TIMEOUT)
        publisher.start(interval_s=0.01)
        events = [await next_update(stream) for _ in range(5)]
        await publisher.stop()
    assert len(publisher.history) >= 5
    assert [e.price.price for e in events] == [p.price for p in publisher.history[:5]]


async def test_bad_account_data_yields_error_record_not_crash(
    server: LocalnetServer, clock: FakeClock, cluster: EmbeddedCluster
) -> None:
    feed = SimulatedFeed(key(6), OracleSource.PYTH_PULL, walk(6), feed_id=FEED_ID)
    publisher = SimulatedPublisher(cluster, [feed])
    stream = OracleStream(
        server.ws_url,
        server.rpc_url,
        [StreamFeed(feed.address, feed.source, expected_feed_id=FEED_ID)],
    )
    async with stream:
        await asyncio.wait_for(stream.subscribed.wait(), TIMEOUT)
        cluster.set_account(
            feed.address, Account(lamports=10**6, data=b"garbage", owner=PYTH_RECEIVER_PROGRAM_ID)
        )
        bad = await stream.next_event(TIMEOUT)
        assert isinstance(bad, OracleStreamError)
        assert bad.code == "ORACLE_WRONG_SIZE"
        assert bad.address == feed.address and bad.origin == "notification"
        cluster.set_account(
            feed.address,
            Account(lamports=10**6, data=bytes(134), owner=SWITCHBOARD_V2_PROGRAM_ID),
        )
        wrong_owner = await stream.next_event(TIMEOUT)
        assert isinstance(wrong_owner, OracleStreamError)
        assert wrong_owner.code == "ORACLE_WRONG_OWNER"
        clock.advance(0.4)
        (pub,) = publisher.publish_once()
        good = await next_update(stream)
        assert same(good, pub)
        assert stream.reconnects == 0


async def test_stream_reconnects_resubscribes_and_catches_up(
    server: LocalnetServer, clock: FakeClock, cluster: EmbeddedCluster
) -> None:
    feeds = all_feeds(21)[:2]
    publisher = SimulatedPublisher(cluster, feeds)
    stream = OracleStream(
        server.ws_url,
        server.rpc_url,
        [StreamFeed(f.address, f.source) for f in feeds],
        initial_backoff_s=0.02,
        max_backoff_s=0.2,
    )
    async with stream:
        await asyncio.wait_for(stream.subscribed.wait(), TIMEOUT)
        for _ in range(2):
            clock.advance(0.4)
            for pub in publisher.publish_once():
                assert same(await next_update(stream), pub)

        # kill the server (both ports); the cluster keeps being published to meanwhile
        rpc_port, ws_port = server.rpc_port, server.ws_port
        await server.stop()
        await asyncio.sleep(0.3)  # the stream sees the close and retries against nothing
        assert not stream.subscribed.is_set()
        assert stream.failures >= 2  # bounded backoff keeps retrying
        for _ in range(3):
            clock.advance(0.4)
            publisher.publish_once()
        missed = publisher.history[-len(feeds) :]  # only the latest state can be caught up

        restarted = LocalnetServer(
            cluster, rpc_port=rpc_port, ws_port=ws_port, shutdown_timeout=0.2
        )
        await restarted.start()
        try:
            await asyncio.wait_for(stream.subscribed.wait(), TIMEOUT)
            assert stream.reconnects == 1
            catch_up = [await next_update(stream) for _ in feeds]
            assert all(e.origin == "snapshot" for e in catch_up)
            assert all(same(e, p) for e, p in zip(catch_up, missed, strict=True))
            for _ in range(3):  # resubscribed: notifications flow again
                clock.advance(0.4)
                for pub in publisher.publish_once():
                    event = await next_update(stream)
                    assert event.origin == "notification" and same(event, pub)
        finally:
            await restarted.stop()


async def test_guards_see_age_grow_when_publishing_stops(
    server: LocalnetServer, clock: FakeClock, cluster: EmbeddedCluster
) -> None:
    feeds = all_feeds(31)
    publisher = SimulatedPublisher(cluster, feeds)
    limits = GuardLimits(
        max_age_slots=25, max_age_seconds=60, max_confidence_ppm=1_000, max_twap_deviation_ppm=0
    )
    stream = OracleStream(
        server.ws_url, server.rpc_url, [StreamFeed(f.address, f.source) for f in feeds]
    )
    async with stream:
        await asyncio.wait_for(stream.subscribed.wait(), TIMEOUT)
        clock.advance(0.4)
        publisher.publish_once()
        latest = {e.address: e.price for e in [await next_update(stream) for _ in feeds]}
        ages: list[tuple[int, int]] = []
        verdicts: list[set[Verdict]] = []
        for warp in (0, 10, 10, 10):
            cluster.warp(warp)  # publishing has stopped; the cluster clock moves on
            now_slot, now_s = cluster.slot, cluster.unix_timestamp
            ages.append((now_slot - latest[key(1)].slot, now_s - latest[key(1)].publish_time_s))
            verdicts.append(
                {
                    check(p, limits, now_slot=now_slot, now_s=now_s, twap=None)
                    for p in latest.values()
                }
            )
        assert [a[0] for a in ages] == [0, 10, 20, 30]
        assert [a[1] for a in ages] == sorted(a[1] for a in ages) and ages[-1][1] >= 12
        assert verdicts == [
            {Verdict.VALID},
            {Verdict.VALID},
            {Verdict.VALID},
            {Verdict.STALE_SLOTS},
        ]
        # publishing again makes every feed valid at once
        publisher.publish_once()
        fresh = [await next_update(stream) for _ in feeds]
        assert {
            check(e.price, limits, now_slot=cluster.slot, now_s=cluster.unix_timestamp, twap=None)
            for e in fresh
        } == {Verdict.VALID}


async def test_stream_backoff_is_bounded_while_nothing_listens(cluster: EmbeddedCluster) -> None:
    server = LocalnetServer(cluster, rpc_port=0, ws_port=0, shutdown_timeout=0.2)
    await server.start()
    await server.stop()  # ports now closed: every connect fails
    stream = OracleStream(
        server.ws_url,
        server.rpc_url,
        [StreamFeed(key(1), OracleSource.PYTH_PUSH)],
        initial_backoff_s=0.01,
        max_backoff_s=0.02,
    )
    async with stream:
        # Capped at 20 ms, ten attempts take ~0.2 s; uncapped doubling from 10 ms would need
        # over 10 s. Poll with a generous deadline so a loaded machine cannot make it flaky.
        deadline = asyncio.get_running_loop().time() + 3.0
        while stream.failures < 10:
            assert asyncio.get_running_loop().time() < deadline, (
                f"only {stream.failures} attempts in 3 s: backoff is not capped"
            )
            await asyncio.sleep(0.02)
        assert stream.connects == 0 and not stream.subscribed.is_set()
        with pytest.raises(TimeoutError):
            await stream.next_event(0.01)


async def test_pythclient_websocket_sees_every_publisher_write(
    server: LocalnetServer, clock: FakeClock, cluster: EmbeddedCluster
) -> None:
    """pythclient's own websocket path (accountSubscribe + accountNotification, decoded by
    PythPriceAccount) follows the Pyth push account the publisher writes."""
    publisher = SimulatedPublisher(
        cluster, [SimulatedFeed(key(1), OracleSource.PYTH_PUSH, walk(41), exponent=-8)]
    )
    solana = SolanaClient(ratelimit=False, endpoint=server.rpc_url, ws_endpoint=server.ws_url)
    try:
        account = PythPriceAccount(str(key(1)), solana)
        sub_id = await solana.ws_account_subscribe(account.key)
        for _ in range(3):
            clock.advance(0.4)
            [pub] = publisher.publish_once()
            msg = await asyncio.wait_for(solana.get_next_update(), TIMEOUT)
            assert msg["method"] == "accountNotification"
            assert msg["params"]["subscription"] == sub_id
            result = msg["params"]["result"]
            account.update_with_rpc_response(result["context"]["slot"], result["value"])
            info = account.aggregate_price_info
            assert info is not None
            assert (info.raw_price, info.raw_confidence_interval, info.pub_slot) == (
                pub.price * 100,
                pub.confidence * 100,
                pub.slot,
            )
            assert info.price_status == PythPriceStatus.TRADING
        assert await solana.ws_account_unsubscribe(sub_id) is True
    finally:
        await solana.ws_disconnect()
        await solana.close()
