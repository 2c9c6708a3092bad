"""The keeper on-chain, on the embedded cluster with the deployed clearing program.

1. The keeper's view agrees with the program: at a sweep of oracle prices (healthy, just
   above and below maintenance, deep, bankrupt, and a fresh price behind a stale publish time)
   ``chain_candidates`` names the victim exactly when the program's ``liquidate`` accepts it,
   and predicts the liquidator's fee share to the unit.
2. The engine is down: the keeper process (``perpdex keeper liquidator --api <nothing there>
   --rpc URL``) passes over a liquidatable account while its oracle is stale, liquidates it
   on-chain once the oracle is fresh; a second, slower keeper that saw the same chain is
   refused by the program (``NotLiquidatable``). The engine comes back: the liquidation
   scanner books the slice exactly once (a scanner without its state finds only duplicates)
   and the reconciler finds engine = chain.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.account import Account

from exchange.core.commands import BookOnChainLiquidation, PlaceOrder
from exchange.core.events import Event, LiquidationExecuted, OnChainLiquidationBooked
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION, U64_MAX
from exchange.engine.config import EngineConfig
from exchange.engine.sequencer import Engine
from liquidation.keeper import (
    ChainCandidate,
    ChainScreen,
    KeeperPlan,
    chain_candidates,
    chain_oracle_readings,
)
from oracle_feeds.encoders import encode_pyth_pull_price_update_v2
from oracle_feeds.layouts import PYTH_RECEIVER_PROGRAM_ID, PythPullAccount
from perp.params import PerpMarketParams
from settlement.keeper_chain import KeeperChain
from settlement.liquidation_scanner import LiquidationScanner
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.stack import SettlementStack, StackMarket, seeded_keypair

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
USD = 1_000_000
M = StackMarket(0, "BTC-PERP", PRICE_PRECISION // 100, BASE_PRECISION // 10, 100 * USD)
VICTIM, MAKER, KEEPER, RIVAL, POOR = (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)
SIZE = 95 * BASE_PRECISION // 10
PARAMS = PerpMarketParams(margin_tiers=((U64_MAX, 100_000, 50_000),), liquidation_fee_ppm=25_000)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    deposits = [(*VICTIM, 100 * USD), (*MAKER, 10_000 * USD), (*KEEPER, 10_000 * USD),
                (*RIVAL, 10_000 * USD), (*POOR, 1 * USD)]  # fmt: skip
    async with SettlementStack(tmp_path / "engine", (M,), deposits, params=PARAMS) as s:
        # the victim buys 9.5 base at 100 on 100 USD (about 10x), settled on-chain
        s.process([
            PlaceOrder(0, *MAKER, Side.ASK, 100 * USD, SIZE),
            PlaceOrder(0, *VICTIM, Side.BID, 100 * USD, SIZE, time_in_force=TimeInForce.IOC),
        ])  # fmt: skip
        await s.service().settle_available()
        yield s


def oracle_on_chain(stack: SettlementStack, price: int, *, age_s: int = 0) -> None:
    """The market's Pyth account at ``price``, published ``age_s`` seconds before the
    cluster's clock (the engine is not told)."""
    cluster = stack.server.cluster
    raw = encode_pyth_pull_price_update_v2(PythPullAccount(
        feed_id=hashlib.sha256(M.symbol.encode()).digest(), price=price, conf=M.tick_size,
        exponent=-6, publish_time=cluster.unix_timestamp - age_s, posted_slot=cluster.slot))  # fmt: skip
    cluster.set_account(
        seeded_keypair(f"oracle {M.symbol}").pubkey(),
        Account(10**9, raw, PYTH_RECEIVER_PROGRAM_ID, False, 0),
    )


def keeper_chain(stack: SettlementStack, who: tuple[int, int]) -> KeeperChain:
    client = AsyncClient(stack.server.rpc_url, commitment=Confirmed)
    stack.clients.append(client)
    return KeeperChain(client, stack.wallets[who], stack.program_id)


async def screen(chain: KeeperChain) -> ChainScreen:
    """The keeper's decision as ``perpdex keeper liquidator`` takes it (same clock margin)."""
    from exchange.liquidation_cli import CLOCK_MARGIN_S, CLOCK_MARGIN_SLOTS

    snap = await chain.snapshot()
    assert snap.me is not None
    readings = chain_oracle_readings(
        snap.markets, snap.oracle_prices, now_slot=snap.slot + CLOCK_MARGIN_SLOTS,
        now_unix_s=snap.unix_timestamp + CLOCK_MARGIN_S,
    )  # fmt: skip
    return chain_candidates(snap.users, snap.markets, readings, liquidator=snap.me,
                            insurance_fund_quote=snap.insurance_fund_quote)  # fmt: skip


@pytest.mark.anyio
async def test_the_keepers_view_agrees_with_the_program(stack: SettlementStack) -> None:
    # Arrange: the rival keeper's view and sends; the victim's User
    chain = keeper_chain(stack, RIVAL)
    poor = keeper_chain(stack, POOR)
    victim = bytes(stack.accounts.user(*VICTIM))
    seen = []
    # The victim paid a 4.5 bp taker fee: collateral 99.5725, so equity 99.5725 + 9.5 (p - 100)
    # meets maintenance 5 % x 9.5 p at p = 94.2302. Healthy, just above, just below (a slice),
    # the same price again (the slice reached maintenance + buffer), deeper (another slice),
    # bankrupt, and a liquidatable price behind a stale publication. None: liquidated.
    steps: list[tuple[int, int, str | None]] = [
        (99 * USD, 0, "NotLiquidatable"),
        (94_240_000, 0, "NotLiquidatable"),
        (94_220_000, 0, None),
        (94_220_000, 0, "NotLiquidatable"),
        (91 * USD, 0, None),
        (50 * USD, 0, "AccountBankrupt"),
        (90 * USD, 61, "OracleStaleSeconds"),
    ]
    for price, age_s, expected in steps:
        stack.server.cluster.warp(1)  # a new blockhash: the same instruction is a new transaction
        oracle_on_chain(stack, price, age_s=age_s)
        found = await screen(chain)
        mine = [c for c in found.candidates if c.user == victim]
        # Act: send the liquidate either way, as a keeper that did not look would
        target = (
            mine[0]
            if mine
            else ChainCandidate(victim, bytes(stack.wallets[VICTIM].pubkey()), 0, 0, (0,), 0, 0)
        )
        if mine:
            # a keeper with 1 USD could not take the slice over: it does not try, and the
            # program would refuse it
            poor_screen = await screen(poor)
            assert poor_screen.candidates == [] and poor_screen.skipped == {"liquidator_margin": 1}
            refused = await poor.liquidate(mine[0])
            assert refused.code == "LiquidatorBelowInitialMargin"
        outcome = await chain.liquidate(target)
        seen.append((price, age_s, outcome.code))
        # Assert: the screen named it exactly when the program took it, fee to the unit
        assert outcome.code == expected, (price, age_s, outcome, found)
        if mine:
            assert outcome.status == "LIQUIDATED"
            assert outcome.liquidator_fee_quote == mine[0].liquidator_fee_quote > 0
            assert outcome.slices == mine[0].num_slices == 1
        elif expected == "AccountBankrupt":
            assert found.skipped == {"bankrupt": 1}
        elif expected == "OracleStaleSeconds":
            assert found.skipped == {"oracle_invalid": 2} and found.invalid_oracles == (0,)
        else:
            assert found.skipped == {}
    assert [code for _, _, code in seen].count(None) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(
    proc: asyncio.subprocess.Process, want: str, log: list[dict[str, Any]]
) -> dict[str, Any]:
    assert proc.stdout is not None
    while True:
        raw = await proc.stdout.readline()
        if not raw:
            raise AssertionError(f"keeper exited before {want!r}: {log}")
        line: dict[str, Any] = json.loads(raw)
        log.append(line)
        if line["event"] == want:
            return line


def journaled(stack: SettlementStack, kind: type) -> list[Any]:
    assert stack.engine is not None
    return [e for e in stack.engine.journal.read() if type(e) is kind]


@pytest.mark.anyio
async def test_engine_down_a_keeper_liquidates_on_chain_and_the_engine_books_it_once(
    stack: SettlementStack, tmp_path: Path
) -> None:
    # Arrange: the engine is down (closed, no API anywhere); the oracle falls to 94 on-chain
    # but its last publication is stale; the keeper process watches the chain.
    assert stack.engine is not None
    stack.engine.close()
    stack.engine = None
    oracle_on_chain(stack, 94 * USD, age_s=120)
    key_file = tmp_path / "keeper.json"
    key_file.write_text(json.dumps(list(bytes(stack.wallets[KEEPER]))))
    log: list[dict[str, Any]] = []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchange.cli", "keeper", "liquidator",
        "--api", f"http://127.0.0.1:{_free_port()}", "--rpc", stack.server.rpc_url,
        "--program-id", str(stack.program_id), "--key", str(key_file), "--interval-ms", "100",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    rival = keeper_chain(stack, RIVAL)
    rival_plan = KeeperPlan()
    victim_wallet = str(stack.wallets[VICTIM].pubkey())
    try:
        started = await asyncio.wait_for(_until(proc, "started", log), 60)
        skipped = await asyncio.wait_for(_until(proc, "skipped", log), 10)
        # Act: the keeper pauses (a slower round); the oracle publishes fresh; the rival
        # takes its view now, but sends only after the keeper has acted
        os.kill(proc.pid, signal.SIGSTOP)
        oracle_on_chain(stack, 94 * USD)
        rival_view = rival_plan.choose_onchain((await screen(rival)).candidates, 0)
        os.kill(proc.pid, signal.SIGCONT)
        won = await asyncio.wait_for(_until(proc, "liquidated", log), 10)
        [lost] = [await rival.liquidate(target) for target in rival_view]
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    log += [json.loads(line) for line in out.decode().splitlines()]
    print("\n".join(json.dumps(line) for line in log))

    # Assert: the keeper saw the API down, never acted at the stale oracle, then won once
    assert started["collateral_quote"] == 10_000 * USD
    assert any(line["event"] == "api_unreachable" for line in log)
    assert skipped["reasons"] == {"oracle_invalid": 2}  # the victim and the maker
    assert skipped["invalid_oracle_markets"] == [0]
    assert won["via"] == "chain" and won["target_wallet"] == victim_wallet
    assert won["liquidator_fee_quote"] == won["expected_liquidator_fee_quote"] > 0
    assert won["slices"] == won["expected_slices"] == 1
    assert [line["event"] for line in log].count("liquidated") == 1
    summary = log[-1]
    assert summary["event"] == "stopped" and summary["errors"] == 0
    assert summary["onchain"]["liquidated"] == 1 and summary["onchain"]["rejected"] == {}
    assert summary["collateral_after_quote"] == 10_000 * USD + won["liquidator_fee_quote"]
    # ... and the slower keeper was refused by the program
    assert (lost.status, lost.code) == ("REJECTED", "NotLiquidatable")

    # Act: the engine comes back; the scanner books what the chain did
    stack.engine = Engine(
        EngineConfig(data_dir=stack.data_dir, market_params=stack.params,
                     tick_interval_ns=3_600_000_000_000),
        clock=stack.clock,
    )  # fmt: skip
    assert stack.engine.core.account(*VICTIM).positions[0].base == SIZE  # not yet

    async def submit(command: BookOnChainLiquidation) -> list[Event]:
        return stack.process_one(command)

    assert stack.setup is not None
    exchange = stack.setup.addresses.exchange()[0]
    state_path = tmp_path / "scanner.json"

    def scanner() -> LiquidationScanner:
        return LiquidationScanner(client=stack.client(), exchange=exchange,
                                  accounts=stack.accounts, submit=submit, state_path=state_path)  # fmt: skip

    first = scanner()
    booked = await first.poll()
    await stack.service().settle_available()
    reconciler = Reconciler(program=stack.program(stack.operator), accounts=stack.accounts,
                            config=ReconcilerConfig(market_ids=(0,)), submit=stack.process_one)  # fmt: skip
    report = await reconciler.reconcile(stack.engine.core)
    state_path.unlink()
    amnesiac = scanner()
    again = await amnesiac.poll()
    final = await reconciler.reconcile(stack.engine.core)

    # Assert: booked once, the engine equals the chain, the keeper holds what it took
    assert booked == 1 and first.incident is None
    assert first.metrics.liquidation_transactions == 1
    assert report.ok, report.mismatches
    [booking] = journaled(stack, OnChainLiquidationBooked)
    assert booking.tx_signature == won["signature"]
    [slice_] = journaled(stack, LiquidationExecuted)
    assert slice_.liquidator_fee_quote == won["liquidator_fee_quote"]
    victim = stack.engine.core.account(*VICTIM)
    assert 0 < victim.positions[0].base < SIZE
    keeper = stack.engine.core.account(*KEEPER)
    assert keeper.positions[0].base == SIZE - victim.positions[0].base == won["base_taken"]["0"]
    assert (again, amnesiac.metrics.duplicates) == (0, 1)
    assert len(journaled(stack, LiquidationExecuted)) == 1
    assert final.ok, final.mismatches


def test_bad_keeper_options_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    import argparse

    from exchange.liquidation_cli import register

    parser = argparse.ArgumentParser(prog="perpdex")
    register(parser.add_subparsers())
    key_file = tmp_path / "k.json"
    key_file.write_text(json.dumps(list(bytes(seeded_keypair("k")))))
    for args, message in [
        (["--onchain-only"], "--onchain-only: expected --rpc URL too, got none"),
        ([], "--api: expected the API's URL (or --onchain-only with --rpc), got none"),
        (["--rpc", "http://127.0.0.1:1", "--onchain-only", "--program-id", "x"],
         "--program-id: expected a base58 public key, got 'x'"),
        (["--api", "http://127.0.0.1:1", "--program-id", "x"],
         "--program-id: expected --rpc URL too, got none"),
    ]:  # fmt: skip
        parsed = parser.parse_args(["keeper", "liquidator", "--key", str(key_file), *args])
        with pytest.raises(SystemExit) as refused:
            parsed.func(parsed)
        assert str(refused.value) == message
