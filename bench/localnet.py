"""Local cluster benchmark: transfers, account reads and oracle-to-consumer latency.

Run: ``python -m bench.localnet [--quick]``. Everything talks to an embedded cluster
(``localnet.server.LocalnetServer``, wall-clock slots) over real HTTP / websocket on 127.0.0.1,
in this process and event loop (client and server share one core: the figures are the
cost of both sides).

* transfers: system transfers built, signed and sent by solana-py's ``AsyncClient`` (preflight
  on) and confirmed with ``confirm_transaction``; ``--concurrency`` in flight. Baselines: the
  same transfers through ``EmbeddedCluster.process`` in-process (no HTTP, no client), and a
  ``getHealth`` round trip.
* account reads: ``getAccountInfo`` one request at a time and ``--concurrency`` in flight, a
  JSON-RPC batch of 100 ``getAccountInfo``, and ``getMultipleAccounts`` of 100 keys (accounts/s).
* oracle latency: the simulated publisher writes a Pyth pull (primary) and a Switchboard
  On-Demand (fallback) account; ``OracleFeed`` (websocket ``OracleStream`` -> parse -> guards ->
  source choice) hands the index price to the consumer: ``exchange.engine.oracle_port`` turns
  it into ``UpdateOraclePrice`` and ``Engine.process`` runs it (journaled in a temporary
  SQLite journal); the time runs until ``process`` returns with the ``OraclePriceUpdated``
  event. (Without the engine's oracle port it ends at the ``on_update`` callback; the JSON
  says which.) Baseline: the parse + guard work
  alone, in process, on the same bytes.

Prints a short table, then, as the LAST line, one JSON object of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction

from localnet.cluster import EmbeddedCluster
from localnet.server import LocalnetServer
from oracle_feeds.feed import IndexPriceSelector, IndexPriceUpdate, MarketOracle, OracleFeed
from oracle_feeds.guards import GuardLimits, OracleAction, OracleGuards
from oracle_feeds.parsers import parse_oracle_account
from oracle_feeds.price import OracleSource
from oracle_feeds.publisher import RandomWalk, SimulatedFeed, SimulatedPublisher
from oracle_feeds.stream import StreamFeed

SOL = 1_000_000_000
FEED_ID = bytes(range(32))
LIMITS = GuardLimits(
    max_age_slots=25, max_age_seconds=60, max_confidence_ppm=10_000, max_twap_deviation_ppm=50_000
)
GUARDS = OracleGuards(trading=LIMITS, funding=LIMITS, withdrawal=LIMITS, liquidation=LIMITS)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def rate(n: int, concurrency: int, op: Callable[[int], Any]) -> float:
    """Operations per second for ``n`` calls of ``op(i)`` with ``concurrency`` in flight."""
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


def transfer_tx(payer: Keypair, to: Pubkey, lamports: int, blockhash: Hash) -> Transaction:
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    return Transaction([payer], Message([ix], payer.pubkey()), blockhash)


def inprocess_transfers_per_s(n: int) -> float:
    """Baseline: signed transfers through the cluster directly (no HTTP, no client)."""
    cluster = EmbeddedCluster()
    payer = Keypair()
    cluster.airdrop(payer.pubkey(), 1_000 * SOL)
    to = Keypair().pubkey()
    start = time.perf_counter()
    for i in range(n):
        bh, _ = cluster.latest_blockhash()
        tx = VersionedTransaction.from_legacy(transfer_tx(payer, to, 1 + i, bh))
        outcome = cluster.process(tx)
        assert outcome.err is None, outcome.err
    return n / (time.perf_counter() - start)


class TransferRun:
    """Figures of one transfer run: rate, per-transfer latency and expired blockhashes."""

    def __init__(self) -> None:
        self.per_s = 0.0
        self.latencies: list[float] = []
        # (seconds from getLatestBlockhash to the refusal, slots the cluster moved meanwhile)
        self.expired: list[tuple[float, int]] = []


async def bench_transfers(
    server: LocalnetServer, client: AsyncClient, n: int, concurrency: int
) -> TransferRun:
    payers = []
    for _ in range(concurrency):
        kp = Keypair()
        await client.confirm_transaction(
            (await client.request_airdrop(kp.pubkey(), 100 * SOL)).value
        )
        payers.append(kp)
    to = Keypair().pubkey()
    run = TransferRun()

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        while True:
            t_bh, slot_bh = time.perf_counter(), server.cluster.slot
            bh = (await client.get_latest_blockhash()).value.blockhash
            tx = transfer_tx(payers[i % len(payers)], to, 1 + i, bh)
            try:
                sig = (await client.send_transaction(tx)).value
                break
            except RPCException as exc:
                # a request held up longer than a blockhash lives (150 slots): a real client
                # fetches a new blockhash and sends again; count it
                if "BlockhashNotFound" not in repr(exc):
                    raise
                run.expired.append((time.perf_counter() - t_bh, server.cluster.slot - slot_bh))
        status = (await client.confirm_transaction(sig)).value[0]
        assert status is not None and status.err is None, status
        run.latencies.append(time.perf_counter() - t0)

    run.per_s = await rate(n, concurrency, one)
    balance = (await client.get_balance(to)).value
    assert balance == sum(1 + i for i in range(n)), "every transfer must have landed"
    return run


async def bench_reads(
    server: LocalnetServer, client: AsyncClient, n: int, concurrency: int
) -> dict[str, float]:
    keys = []
    for _ in range(100):
        kp = Keypair()
        server.cluster.airdrop(kp.pubkey(), SOL)
        keys.append(kp.pubkey())

    async def get_one(i: int) -> None:
        info = (await client.get_account_info(keys[i % 100])).value
        assert info is not None and info.lamports == SOL

    single = await rate(n, 1, get_one)
    parallel = await rate(n, concurrency, get_one)

    async def get_many(i: int) -> None:
        values = (await client.get_multiple_accounts(keys)).value
        assert len(values) == 100 and all(v is not None for v in values)

    batches = max(10, n // 100)
    multiple_accounts_per_s = 100 * await rate(batches, 1, get_many)

    body = json.dumps(
        [
            {
                "jsonrpc": "2.0",
                "id": i,
                "method": "getAccountInfo",
                "params": [str(k), {"encoding": "base64"}],
            }
            for i, k in enumerate(keys)
        ]
    )
    async with aiohttp.ClientSession() as session:

        async def post_batch(i: int) -> None:
            async with session.post(
                server.rpc_url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                answers = await resp.json()
            assert len(answers) == 100 and all("result" in a for a in answers)

        batch_requests_per_s = 100 * await rate(batches, 1, post_batch)

        health = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getHealth"})

        async def ping(i: int) -> None:
            async with session.post(
                server.rpc_url, data=health, headers={"Content-Type": "application/json"}
            ) as resp:
                assert (await resp.json())["result"] == "ok"

        health_per_s = await rate(n, 1, ping)

        one_body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "getAccountInfo",
                "params": [str(keys[0]), {"encoding": "base64"}],
            }
        )

        async def raw_get_one(i: int) -> None:
            async with session.post(
                server.rpc_url, data=one_body, headers={"Content-Type": "application/json"}
            ) as resp:
                assert (await resp.json())["result"]["value"]["lamports"] == SOL

        raw_single = await rate(n, 1, raw_get_one)

    async def client_health(i: int) -> None:
        assert await client.is_connected()

    client_health_per_s = await rate(n, 1, client_health)
    return {
        "get_account_info_raw_http_per_s": raw_single,
        "get_health_solana_py_per_s": client_health_per_s,
        "get_account_info_per_s": single,
        "get_account_info_concurrent_per_s": parallel,
        "get_account_info_batched_per_s": batch_requests_per_s,
        "get_multiple_accounts_accounts_per_s": multiple_accounts_per_s,
        "get_health_per_s": health_per_s,
    }


class EngineConsumer:
    """``Engine.process`` of the engine's oracle price command, if the engine has one."""

    def __init__(self, data_dir: Path) -> None:
        from exchange.core.commands import CreateMarket
        from exchange.core.events import OraclePriceUpdated
        from exchange.engine.config import EngineConfig
        from exchange.engine.oracle_port import oracle_command
        from exchange.engine.sequencer import Engine

        self.oracle_command = oracle_command
        self.event_type = OraclePriceUpdated
        self.engine = Engine(EngineConfig(data_dir=data_dir))
        self.engine.process([CreateMarket(0, "BENCH-PERP", 1_000_000, 1_000_000_000)])

    def __call__(self, update: IndexPriceUpdate) -> list[Any]:
        command = self.oracle_command(
            update.market_id,
            update.reading,
            update.verdict(OracleAction.TRADING),
            update.verdict(OracleAction.LIQUIDATION),
        )
        [events] = self.engine.process([command])
        if not any(isinstance(e, self.event_type) and e.valid for e in events):
            raise RuntimeError(f"engine did not take the index price: {events!r}")
        return events

    def close(self) -> None:
        self.engine.close()


def make_engine_consumer(data_dir: Path) -> tuple[EngineConsumer | None, str]:
    try:
        consumer = EngineConsumer(data_dir)
    except ImportError as exc:
        return None, f"callback (engine has no oracle port: {exc!r})"
    return consumer, "Engine.process (journaled)"


async def bench_oracle(
    server: LocalnetServer, updates: int, data_dir: Path
) -> tuple[list[float], list[float], float, str, int]:
    cluster = server.cluster
    cluster.warp(1_000)  # Switchboard reads slot 0 as "no result yet"
    feeds = [
        SimulatedFeed(
            Pubkey(bytes([1]) * 32),
            OracleSource.PYTH_PULL,
            RandomWalk(seed=1, start_price=150_000_000, step_ppm=1_000, confidence_ppm=100),
            feed_id=FEED_ID,
        ),
        SimulatedFeed(
            Pubkey(bytes([2]) * 32),
            OracleSource.SWITCHBOARD_ON_DEMAND,
            RandomWalk(seed=2, start_price=150_050_000, step_ppm=1_000, confidence_ppm=100),
        ),
    ]
    publisher = SimulatedPublisher(cluster, feeds)
    market = MarketOracle(
        market_id=0,
        primary=StreamFeed(feeds[0].address, OracleSource.PYTH_PULL, expected_feed_id=FEED_ID),
        fallback=StreamFeed(feeds[1].address, OracleSource.SWITCHBOARD_ON_DEMAND),
        guards=GUARDS,
    )
    engine, consumer_kind = make_engine_consumer(data_dir)
    arrived: asyncio.Queue[tuple[float, float]] = asyncio.Queue()  # (to callback, end)
    engine_events = 0

    def on_update(update: IndexPriceUpdate) -> None:
        nonlocal engine_events
        at_callback = time.perf_counter()
        if engine is not None:
            engine_events += len(engine(update))
        arrived.put_nowait((at_callback, time.perf_counter()))

    latencies: list[float] = []
    to_callback: list[float] = []
    feed = OracleFeed(
        server.ws_url, server.rpc_url, [market], on_update=on_update, recheck_interval_s=60.0
    )
    try:
        async with feed:
            await asyncio.wait_for(feed.stream.subscribed.wait(), 10)
            for _ in range(updates):
                t0 = time.perf_counter()
                publisher.publish_once()  # both accounts; only the primary is announced
                at_callback, t1 = await asyncio.wait_for(arrived.get(), 10)
                latencies.append(t1 - t0)
                to_callback.append(at_callback - t0)
    finally:
        if engine is not None:
            engine.close()

    # baseline: parse + guards for the same two accounts, in process
    selector = IndexPriceSelector([market])
    blobs = [(f.address, f.source, cluster.get_account(f.address)) for f in feeds]
    reps = 2_000
    start = time.perf_counter()
    for i in range(reps):
        for address, source, acct in blobs:
            assert acct is not None
            price = parse_oracle_account(
                source,
                bytes(acct.data),
                acct.owner,
                expected_feed_id=FEED_ID if source is OracleSource.PYTH_PULL else None,
            )
            selector.observe(address, price, now_slot=cluster.slot, now_s=cluster.unix_timestamp)
    baseline_s = (time.perf_counter() - start) / reps
    return latencies, to_callback, baseline_s, consumer_kind, engine_events


async def run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"quick": bool(args.quick), "concurrency": args.concurrency}
    async with LocalnetServer(rpc_port=0, ws_port=0, shutdown_timeout=0.5) as server:
        client = AsyncClient(server.rpc_url)
        try:
            one = await bench_transfers(server, client, args.transfers, 1)
            figures["transfers_per_s"] = one.per_s
            figures["transfer_latency_p50_ms"] = statistics.median(one.latencies) * 1e3
            figures["transfer_latency_p99_ms"] = pct(one.latencies, 0.99) * 1e3
            many = await bench_transfers(server, client, args.transfers, args.concurrency)
            figures["transfers_concurrent_per_s"] = many.per_s
            figures["transfer_concurrent_latency_p50_ms"] = statistics.median(many.latencies) * 1e3
            figures["transfer_concurrent_latency_p99_ms"] = pct(many.latencies, 0.99) * 1e3
            figures["transfer_concurrent_max_ms"] = max(many.latencies) * 1e3
            expired = one.expired + many.expired
            figures["blockhash_expired_resent"] = len(expired)
            figures["blockhash_expired_after_s"] = [round(s, 1) for s, _ in expired]
            figures["blockhash_expired_after_slots"] = [slots for _, slots in expired]
            figures.update(await bench_reads(server, client, args.reads, args.concurrency))
        finally:
            await client.close()
        with tempfile.TemporaryDirectory(prefix="bench-localnet-") as tmp:
            lat, to_cb, baseline_s, kind, engine_events = await bench_oracle(
                server, args.oracle_updates, Path(tmp)
            )
        figures["oracle_consumer"] = kind
        figures["oracle_engine_events"] = engine_events
        figures["oracle_latency_p50_ms"] = statistics.median(lat) * 1e3
        figures["oracle_latency_p99_ms"] = pct(lat, 0.99) * 1e3
        figures["oracle_to_callback_p50_ms"] = statistics.median(to_cb) * 1e3
        figures["oracle_to_callback_p99_ms"] = pct(to_cb, 0.99) * 1e3
        figures["oracle_parse_guard_baseline_us"] = baseline_s * 1e6
    figures["inprocess_transfers_per_s"] = inprocess_transfers_per_s(args.transfers)
    figures["transfers_ratio_vs_inprocess"] = (
        figures["transfers_per_s"] / figures["inprocess_transfers_per_s"]
    )
    figures["get_account_info_ratio_vs_get_health"] = (
        figures["get_account_info_per_s"] / figures["get_health_solana_py_per_s"]
    )
    figures["oracle_latency_ratio_vs_get_health_rtt"] = (
        figures["oracle_latency_p50_ms"] / 1e3 * figures["get_health_per_s"]
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about a tenth of the work")
    parser.add_argument("--transfers", type=int, default=None)
    parser.add_argument("--reads", type=int, default=None)
    parser.add_argument("--oracle-updates", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    args.transfers = args.transfers or (300 if args.quick else 3_000)
    args.reads = args.reads or (500 if args.quick else 5_000)
    args.oracle_updates = args.oracle_updates or (50 if args.quick else 500)
    f = asyncio.run(run(args))
    c = args.concurrency
    rows = [
        (
            "transfers sent+confirmed, 1 in flight",
            f"{f['transfers_per_s']:,.0f} /s",
            f"p50 {f['transfer_latency_p50_ms']:.2f} ms, p99 {f['transfer_latency_p99_ms']:.2f} ms",
        ),
        (
            f"transfers sent+confirmed, {c} in flight",
            f"{f['transfers_concurrent_per_s']:,.0f} /s",
            f"p50 {f['transfer_concurrent_latency_p50_ms']:.2f} ms, "
            f"p99 {f['transfer_concurrent_latency_p99_ms']:.2f} ms, "
            f"max {f['transfer_concurrent_max_ms']:.0f} ms, "
            f"{f['blockhash_expired_resent']} resent after an expired blockhash",
        ),
        (
            "  baseline: in-process cluster.process",
            f"{f['inprocess_transfers_per_s']:,.0f} /s",
            f"ratio {f['transfers_ratio_vs_inprocess']:.3f} (1 in flight)",
        ),
        (
            "getAccountInfo (solana-py), 1 in flight",
            f"{f['get_account_info_per_s']:,.0f} /s",
            f"ratio vs solana-py getHealth {f['get_account_info_ratio_vs_get_health']:.2f}",
        ),
        (
            f"getAccountInfo (solana-py), {c} in flight",
            f"{f['get_account_info_concurrent_per_s']:,.0f} /s",
            "",
        ),
        (
            "getAccountInfo (raw aiohttp), 1 in flight",
            f"{f['get_account_info_raw_http_per_s']:,.0f} /s",
            "server side without solana-py",
        ),
        (
            "getAccountInfo in JSON-RPC batches of 100",
            f"{f['get_account_info_batched_per_s']:,.0f} /s",
            "",
        ),
        (
            "getMultipleAccounts x100",
            f"{f['get_multiple_accounts_accounts_per_s']:,.0f} acct/s",
            "",
        ),
        ("  baseline: getHealth (solana-py)", f"{f['get_health_solana_py_per_s']:,.0f} /s", ""),
        ("  baseline: getHealth (raw aiohttp)", f"{f['get_health_per_s']:,.0f} /s", ""),
        (
            "oracle write -> consumer",
            f"p50 {f['oracle_latency_p50_ms']:.2f} ms",
            f"p99 {f['oracle_latency_p99_ms']:.2f} ms; to {f['oracle_consumer']}",
        ),
        (
            "  of which write -> OracleFeed callback",
            f"p50 {f['oracle_to_callback_p50_ms']:.2f} ms",
            f"p99 {f['oracle_to_callback_p99_ms']:.2f} ms (websocket, parse, guards)",
        ),
        (
            "  baseline: parse+guards in process",
            f"{f['oracle_parse_guard_baseline_us']:.1f} us",
            f"latency = {f['oracle_latency_ratio_vs_get_health_rtt']:.1f} raw getHealth round trips",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        sys.stdout.write(f"{label:<{width}}  {value:>18}  {note}\n".rstrip() + "\n")
    sys.stdout.write(json.dumps(f) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
