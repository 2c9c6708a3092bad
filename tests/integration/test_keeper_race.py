"""Two keeper processes race (``perpdex keeper liquidator`` subprocesses, each with its own
key and account) against a real API server and engine (SQLite journal).

Six accounts are pushed below maintenance by one oracle move. The engine is held busy for a
moment right after that move (a slow subscriber), so both keepers see the candidates and
queue their liquidations before the first is applied: the engine's one sequence decides.
Each account is liquidated exactly once; every loser is told LIQUIDATION_NOT_ELIGIBLE; each
keeper's collateral rises by exactly its liquidator share; the journal holds nothing twice
and folds back to the same state."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from solders.keypair import Keypair

from exchange.api.app import create_app
from exchange.api.config import ApiConfig
from exchange.core.commands import CreateMarket, Deposit, PlaceOrder, UpdateOraclePrice
from exchange.core.errors import RejectCode
from exchange.core.events import AccountLiquidated, LiquidationExecuted, OrderRejected
from exchange.core.orders import Side, TimeInForce
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine, EngineRunner
from liquidation.rules import Health

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
BTC = 0
MAKER = 3
TRADERS = tuple(range(100, 106))
KEEPERS = {20: Keypair.from_seed(bytes([20]) * 32), 21: Keypair.from_seed(bytes([21]) * 32)}
HOLD_S = 2.0  # the engine is busy this long after the oracle move
ROOT = Path(__file__).resolve().parents[2]


def _oracle(price_units: int, slot: int) -> UpdateOraclePrice:
    return UpdateOraclePrice(BTC, price_units * TICK, 0, slot, time.time_ns() // 10**9, True)


def _setup(engine: Engine) -> None:
    """Each trader long 10 BTC at 100 on 100..105 USDC (10x); the keepers well funded."""
    commands: list[Any] = [
        CreateMarket(BTC, "BTC-PERP", TICK, LOT),
        _oracle(100, 1),
        Deposit(MAKER, 0, 1_000_000 * USDC),
        *(Deposit(k, 0, 100_000 * USDC) for k in KEEPERS),
        PlaceOrder(BTC, MAKER, 0, Side.ASK, 100 * TICK, 10 * LOT * len(TRADERS)),
    ]
    for i, trader in enumerate(TRADERS):
        commands += [
            Deposit(trader, 0, (100 + i) * USDC),
            PlaceOrder(BTC, trader, 0, Side.BID, 100 * TICK, 10 * LOT,
                       time_in_force=TimeInForce.IOC),
        ]  # fmt: skip
    engine.process(commands)


async def _lines_until(
    proc: asyncio.subprocess.Process, want: str, seen: list[dict[str, Any]]
) -> None:
    assert proc.stdout is not None
    while True:
        raw = await proc.stdout.readline()
        if not raw:
            raise AssertionError(f"keeper exited before {want!r}: {seen}")
        line = json.loads(raw)
        seen.append(line)
        if line["event"] == want:
            return


@pytest.mark.anyio
async def test_two_keepers_race_each_liquidation_is_applied_once(tmp_path: Path) -> None:
    # Arrange: engine, API on a real port, two keeper processes with their own keys.
    engine = Engine(EngineConfig(data_dir=tmp_path / "engine"))
    _setup(engine)
    runner = EngineRunner(engine)
    config = ApiConfig(
        owners=tuple((str(key.pubkey()), owner) for owner, key in KEEPERS.items()),
        rate_limit_burst=10_000, rate_limit_per_second=10_000,
        public_rate_limit_burst=10_000, public_rate_limit_per_second=10_000,
    )  # fmt: skip
    app_runner = web.AppRunner(create_app(config, runner))
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    port = app_runner.addresses[0][1]
    keepers: dict[int, asyncio.subprocess.Process] = {}
    logs: dict[int, list[dict[str, Any]]] = {owner: [] for owner in KEEPERS}
    hold = threading.Event()
    try:
        for owner, key in KEEPERS.items():
            key_file = tmp_path / f"keeper-{owner}.json"
            key_file.write_text(json.dumps(list(bytes(key))))
            keepers[owner] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "exchange.cli", "keeper", "liquidator",
                "--api", f"http://127.0.0.1:{port}", "--key", str(key_file),
                "--interval-ms", "100",
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        for owner, proc in keepers.items():
            await asyncio.wait_for(_lines_until(proc, "started", logs[owner]), 60)
        before = {owner: logs[owner][-1]["collateral_quote"] for owner in KEEPERS}

        # Act: the oracle falls to 92; the engine stays busy HOLD_S after that batch (a
        # subscriber after the API's: the read model already has the move).
        def slow_subscriber(events: Any) -> None:
            if hold.is_set():
                hold.clear()
                time.sleep(HOLD_S)

        engine.subscribe(slow_subscriber)
        hold.set()
        moved = runner.submit(_oracle(92, 2))
        await asyncio.wrap_future(moved)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await asyncio.wrap_future(runner.submit(_oracle(92, 3)))  # also: runner idle
            now_ns = time.time_ns()
            if all(engine.core.liquidation_health(t, 0, now_ns) == Health.HEALTHY for t in TRADERS):
                break
        await asyncio.sleep(0.5)  # the keepers' answers are printed
        for proc in keepers.values():
            proc.send_signal(signal.SIGINT)
        for owner, proc in keepers.items():
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            logs[owner] += [json.loads(line) for line in out.decode().splitlines()]
    finally:
        for proc in keepers.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await app_runner.cleanup()
        runner.close()
        state_hash = engine.core.state_hash()
        engine.close()

    # Assert: the keepers' own accounts of the race.
    summaries = {owner: logs[owner][-1] for owner in KEEPERS}
    assert all(s["event"] == "stopped" for s in summaries.values())
    won = [tuple(w[:2]) for s in summaries.values() for w in s["won"]]
    assert sorted(won) == [(t, 0) for t in TRADERS]  # every account once, by one keeper
    rejected = Counter(
        line["code"] for lines in logs.values() for line in lines if line["event"] == "rejected"
    )
    assert rejected["LIQUIDATION_NOT_ELIGIBLE"] >= 1  # somebody lost a race, and was told
    assert set(rejected) == {"LIQUIDATION_NOT_ELIGIBLE"}
    for owner, s in summaries.items():
        assert s["errors"] == 0
        gained = s["collateral_after_quote"] - before[owner]
        assert gained == s["liquidator_fee_quote"]

    # Assert: the journal is the truth, and holds each liquidation once.
    with Journal.for_data_dir(tmp_path / "engine", read_only=True) as journal:
        events = list(journal.read())
    done = Counter((e.owner_id, e.sub_account_id) for e in events if type(e) is AccountLiquidated)
    assert done == Counter({(t, 0): 1 for t in TRADERS})
    slices = [e for e in events if type(e) is LiquidationExecuted]
    for owner, s in summaries.items():
        mine = [e for e in slices if e.liquidator_owner_id == owner]
        assert sum(e.liquidator_fee_quote for e in mine) == s["liquidator_fee_quote"]
        assert len({(e.owner_id, e.sub_account_id) for e in mine}) == s["liquidated"]
    losses = [
        e for e in events
        if type(e) is OrderRejected and e.code == RejectCode.LIQUIDATION_NOT_ELIGIBLE
    ]  # fmt: skip
    assert len(losses) == rejected["LIQUIDATION_NOT_ELIGIBLE"]
    assert {e.owner_id for e in losses} <= set(KEEPERS)
    restarted = Engine(EngineConfig(data_dir=tmp_path / "engine"))
    assert restarted.core.state_hash() == state_hash
    restarted.close()
