"""`perpdex run` as a user runs it: a real process on free ports with a temporary data directory.

One run of the whole node (embedded cluster, clearing program, oracle, engine, API, settlement,
reconciler, demo traders), checked from outside through the SDK, the websocket, /metrics and
the chain; then Ctrl+C, `perpdex replay`, and a restart that resumes the same state.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from integration_support import wait_for
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from exchange.client import PerpdexRest, PerpdexWs
from settlement.onchain import LOCALNET_PROGRAM_ID, ClearingAddresses, clearing_program

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

READY_TIMEOUT_S = 60.0
MARKETS = (0, 1, 2)
CONFIG = """
[node]
maker_interval_s = 0.3
taker_interval_s = 0.15
settle_interval_s = 0.2
reconcile_interval_s = 0.5
"""


class NodeProcess:
    """``perpdex run`` in a child process; stdout lines collected as they come."""

    def __init__(self, data_dir: Path, config: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.config = config
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exchange.cli", "run", "--data-dir", str(self.data_dir),
            "--config", str(self.config), "--api-port", "0", "--rpc-port", "0",
            "--ws-port", "0", "--log-level", "info",
            stdout=subprocess.PIPE, stderr=open(self.log, "ab"),  # noqa: SIM115
        )  # fmt: skip
        await asyncio.wait_for(self.read_until("perpdex ready"), READY_TIMEOUT_S)

    async def read_until(self, marker: str) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                raise AssertionError(f"node exited before {marker!r}: {self.stderr_tail()}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if marker in line:
                return line

    def stderr_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def endpoints(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "node.json").read_text()))

    async def interrupt(self, timeout_s: float = 15.0) -> tuple[int, float]:
        """SIGINT (Ctrl+C); the exit code and how long the shutdown took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stdout is not None
        rest = await asyncio.wait_for(self.proc.stdout.read(), timeout_s)
        self.lines += rest.decode().splitlines()
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        return code, time.monotonic() - started

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def find(self, pattern: str) -> re.Match[str]:
        for line in self.lines:
            m = re.search(pattern, line)
            if m:
                return m
        raise AssertionError(f"no line matches {pattern!r} in {self.lines}")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict reader of the Prometheus text format: every sample belongs to a declared
    family, labels are well formed, values are numbers, histogram buckets are cumulative."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, label_text, value = m.groups()
        labels: list[tuple[str, str]] = []
        if label_text:
            consumed = 0
            for lm in _LABEL.finditer(label_text):
                assert lm.start() == consumed, f"bad labels in {line!r}"
                labels.append((lm.group(1), lm.group(2)))
                consumed = lm.end()
            assert consumed == len(label_text), f"bad labels in {line!r}"
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        family = name if name in types else base
        assert family in types, f"sample of an undeclared family: {line!r}"
        if types[family] == "histogram" and name.endswith("_bucket"):
            assert any(k == "le" for k, _ in labels), line
        samples[(name, frozenset(labels))] = float(value)
    buckets: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, float]]] = {}
    for (name, label_set), value in samples.items():
        if name.endswith("_bucket"):
            le = dict(label_set)["le"]
            rest = frozenset(kv for kv in label_set if kv[0] != "le")
            buckets.setdefault((name, rest), []).append((float(le), value))
    for series in buckets.values():
        counts = [v for _, v in sorted(series)]
        assert counts == sorted(counts), f"buckets not cumulative: {series}"
    return samples


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    """A sample's value; 0 for a counter series that has not counted anything yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def key(data_dir: Path, name: str) -> Keypair:
    return Keypair.from_bytes(bytes(json.loads((data_dir / "keys" / f"{name}.json").read_text())))


async def test_main_job_trades_settles_reconciles_stops_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "perpdex.toml"
    config.write_text(CONFIG)
    node = NodeProcess(data, config, tmp_path / "node.log")
    try:
        await node.start()
        # the banner says whether the engine holds its PM QoS CPU-latency request, or why not
        node.find(r"^  latency    (held at 0 us via |/dev/cpu_dma_latency: )")
        ep = node.endpoints()
        async with aiohttp.ClientSession() as http:
            # A websocket consumer follows every book from snapshot + deltas.
            consumer = PerpdexWs(ep["ws_url"], session=http)
            await consumer.connect()
            books = {m: await consumer.subscribe_book(m) for m in MARKETS}
            start_seq = {m: b.book_seq for m, b in books.items()}

            # Two market makers and a taker trade (each seen through its own key).
            traders = {
                name: PerpdexRest(ep["api_url"], key(data, name), session=http)
                for name in ("maker-1", "maker-2", "taker-1")
            }

            async def everyone_filled() -> bool:
                for rest in traders.values():
                    if not await rest.fills(limit=1):
                        return False
                return True

            await wait_for(everyone_filled, 40, "fills of both makers and the taker")
            public = PerpdexRest(ep["api_url"], session=http)
            assert any([await public.trades(m) for m in MARKETS])

            # The local books equal the server's at the same book sequence.
            for market_id in MARKETS:

                async def same_book(market_id: int = market_id) -> bool:
                    server = await public.book(market_id, depth=1000)
                    local = books[market_id]
                    if server.book_seq != local.book_seq:
                        return False
                    assert (local.bids, local.asks) == (server.bids, server.asks)
                    return True

                await wait_for(same_book, 20, f"book {market_id} at a common sequence")
            assert any(books[m].book_seq > start_seq[m] for m in MARKETS)  # deltas applied
            await consumer.close()

            # Settlement reached the chain and the reconciler agrees with the engine there.
            async def reconciled() -> dict[Any, float] | None:
                async with http.get(ep["metrics_url"]) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    samples = parse_exposition(await resp.text())
                settled = metric(samples, "perpdex_settlement_total", what="fills")
                runs = metric(samples, "perpdex_reconciliation_runs_total")
                return samples if settled > 0 and runs >= 2 else None

            samples = await wait_for(reconciled, 30, "settled fills and reconciliations")
            assert metric(samples, "perpdex_reconciliation_ok") == 1
            assert metric(samples, "perpdex_reconciliation_mismatches_total") == 0
            assert metric(samples, "perpdex_settlement_state", state="running") == 1
            assert metric(samples, "perpdex_bridge_deposits_total") == 4  # + the liquidator
            assert (
                sum(metric(samples, "perpdex_fills_total", market_id=str(m)) for m in MARKETS) > 0
            )
            for m in MARKETS:
                assert metric(samples, "perpdex_oracle_age_seconds", market_id=str(m),
                              symbol=("BTC-PERP", "ETH-PERP", "SOL-PERP")[m]) < 30  # fmt: skip
            assert any(n == "perpdex_api_request_seconds_bucket" for n, _ in samples)
            assert metric(samples, "perpdex_liquidation_screens_total") > 0

            # On-chain User accounts hold settled positions.
            client = AsyncClient(ep["rpc_url"])
            try:
                program = clearing_program(client, Keypair(), LOCALNET_PROGRAM_ID)
                addresses = ClearingAddresses(LOCALNET_PROGRAM_ID)
                users = await program.account["User"].fetch_multiple(
                    [addresses.user(key(data, n).pubkey())[0] for n in traders]
                )
                assert all(u is not None for u in users)
                assert any(
                    p.in_use and p.base != 0 for u in users if u is not None for p in u.positions
                )
            finally:
                await client.close()
            for rest in traders.values():
                await rest.close()

        code, seconds = await node.interrupt()
        assert code == 0, node.stderr_tail()
        assert seconds < 15
        stopped = node.find(r"stopped: state hash ([0-9a-f]{64}) at seq (\d+)")
        final_hash, final_seq = stopped.group(1), int(stopped.group(2))
        assert (data / "chain").is_dir()

        replay = subprocess.run(
            [sys.executable, "-m", "exchange.cli", "replay", str(data)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        assert f"state hash {final_hash}" in replay.stdout
        assert f"last seq {final_seq}" in replay.stdout

        again = NodeProcess(data, config, tmp_path / "node2.log")
        node = again
        await again.start()
        recovered = again.find(r"recovered state ([0-9a-f]{64}) at seq (\d+)")
        assert (recovered.group(1), int(recovered.group(2))) == (final_hash, final_seq)
        code, _ = await again.interrupt()
        assert code == 0, again.stderr_tail()
    finally:
        await node.kill()


def test_run_refuses_a_journal_without_its_chain(tmp_path: Path) -> None:
    data = tmp_path / "data"
    demo = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "run", "--demo-only", "--data-dir", str(data),
         "--rounds", "1"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    result = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "run", "--data-dir", str(data), "--api-port", "0",
         "--rpc-port", "0"], capture_output=True, text=True, timeout=120,
        env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 1
    assert "NODE" in result.stderr and "expected the chain state" in result.stderr
