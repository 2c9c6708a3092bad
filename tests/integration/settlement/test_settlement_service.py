"""Settlement service end to end: a real Engine on a SQLite journal, the embedded cluster with
the clearing program, anchorpy over the cluster's RPC. Trades settle to the unit; a crash after
a landed transaction (in-process, and a SIGKILLed process) neither repeats nor skips a batch; a
dead process's batch still in flight when its successor posts a larger one never lands twice;
an RPC outage is retried through; a batch the program refuses halts settlement loudly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from anchorpy import Context
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import AccountMeta
from solders.pubkey import Pubkey

from exchange.core.commands import Deposit, PlaceOrder
from exchange.core.events import FillSettled, FundingRateApplied
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import BASE_PRECISION, NANOS_PER_SECOND, PRICE_PRECISION
from settlement.errors import SettlementHalted
from settlement.onchain import AccountMap
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.service import (
    BatchPlanner,
    FillBatch,
    ServiceState,
    SettlementConfig,
    settle_tx_bytes,
)
from settlement.spec import ERRORS
from settlement.stack import SettlementStack, StackMarket, crossing_flow

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
HOUR_NS = 3600 * NANOS_PER_SECOND
# Funding payments are exact in both markets (rate x price x lot is a multiple of 1e18), so
# the engine's extra settlements cannot round differently from the program's.
MARKETS = (
    StackMarket(0, "BTC-PERP", PRICE_PRECISION // 10, BASE_PRECISION // 100, 100_000 * USD),
    StackMarket(1, "ETH-PERP", PRICE_PRECISION // 100, BASE_PRECISION // 10, 4_000 * USD),
)
OWNERS = [(owner_id, 0) for owner_id in range(1, 6)]
DEPOSITS = [(o, s, 2_000_000 * USD) for o, s in OWNERS]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    async with SettlementStack(tmp_path / "engine", MARKETS, DEPOSITS) as s:
        yield s


def journal_fills(stack: SettlementStack) -> list[FillSettled]:
    assert stack.engine is not None
    return [e for e in stack.engine.journal.read() if type(e) is FillSettled]


async def assert_chain_equals_engine(stack: SettlementStack) -> None:
    assert stack.engine is not None
    reconciler = Reconciler(
        program=stack.program(stack.operator),
        accounts=stack.accounts,
        config=ReconcilerConfig(market_ids=(0, 1), halt_on_mismatch=False),
    )
    report = await reconciler.reconcile(stack.engine.core)
    assert report.mismatches == ()
    # and directly, to the unit, for every account (funding settled on both sides: see
    # the final fills after the last funding interval)
    program = stack.program(stack.operator)
    for key in OWNERS:
        user = await program.account["User"].fetch(stack.accounts.user(*key))
        acct = stack.engine.core.account(*key)
        slots = {p.market_index: p for p in user.positions if p.in_use}
        assert {m: (p.base, p.entry_quote) for m, p in slots.items()} == {
            m: (p.base, p.entry_quote) for m, p in acct.positions.items()
        }


async def test_fills_and_funding_settle_and_users_equal_engine_to_the_unit(
    stack: SettlementStack,
) -> None:
    # Arrange: fills in two markets, a funding interval, then more fills
    rng = random.Random(5)
    stack.process(crossing_flow(rng, MARKETS, OWNERS, 70))
    stack.clock.advance(HOUR_NS)
    stack.process(crossing_flow(rng, MARKETS, OWNERS, 50))
    fills = journal_fills(stack)
    assert stack.engine is not None
    fundings = [e for e in stack.engine.journal.read() if type(e) is FundingRateApplied]
    service = stack.service()
    # Act
    landed = await service.settle_available()
    again = await service.settle_available()
    # Assert: every fill once, whole batches, the chain's sequences at the journal's
    assert len(fills) == 120 and len(fundings) >= 2 and {f.funding_rate for f in fundings} != {0}
    assert service.metrics.fills_settled == len(fills)
    assert service.metrics.funding_updates == len(fundings)
    assert landed == service.metrics.batches_posted + len(fundings) and again == 0
    assert service.metrics.batches_posted < len(fills) // 10
    program = stack.program(stack.operator)
    for m in MARKETS:
        market = await program.account["Market"].fetch(
            stack.accounts.addresses.market(m.market_id)[0]
        )
        assert market.last_settled_sequence == max(
            f.seq for f in fills if f.market_id == m.market_id
        )
        assert market.last_funding_sequence == max(
            f.seq for f in fundings if f.market_id == m.market_id
        )
        assert (
            market.cumulative_funding == stack.engine.core.markets[m.market_id].cumulative_funding
        )
    await assert_chain_equals_engine(stack)


async def test_settle_transaction_size_matches_the_packing_formula(stack: SettlementStack) -> None:
    # Arrange: the largest batch the planner allows for 2 and for 10 users
    program = stack.program(stack.operator)
    users = [Pubkey.new_unique() for _ in range(10)]
    fill = {"maker": 0, "taker": 1, "taker_side": 0, "price_ticks": 1, "num_base_lots": 1}
    for num_users, num_fills in ((2, 44), (10, 30), (1, 1)):
        ctx = Context(
            accounts={"exchange": stack.accounts.addresses.exchange()[0],
                      "market": stack.accounts.addresses.market(0)[0],
                      "operator": stack.operator.pubkey()},
            remaining_accounts=[AccountMeta(u, False, True) for u in users[:num_users]],
            pre_instructions=[set_compute_unit_limit(200_000)],
        )  # fmt: skip
        # Act
        tx = program.transaction["settle_fills"](
            0, 1, 1, [fill] * num_fills, payer=stack.operator, blockhash=Hash.default(), ctx=ctx
        )
        # Assert
        assert len(bytes(tx)) == settle_tx_bytes(num_users, num_fills)
    assert settle_tx_bytes(2, 44) <= 1232 < settle_tx_bytes(2, 45)


async def test_crash_after_landing_before_recording_resumes_from_the_chain(
    stack: SettlementStack,
) -> None:
    # Arrange: small batches; the first service "dies" right after its third batch landed
    stack.process(crossing_flow(random.Random(9), MARKETS, OWNERS, 60))
    fills = journal_fills(stack)
    config = SettlementConfig(market_ids=(0, 1), max_fills_per_tx=8)
    first = stack.service(config)
    landed: list[int] = []

    async def die(action: object) -> None:
        assert isinstance(action, FillBatch)
        landed.append(action.sequence)
        if len(landed) == 3:
            raise KeyboardInterrupt("killed between landing and recording")

    first.after_landed = die
    with pytest.raises(KeyboardInterrupt):
        await first.settle_available()
    assert first.metrics.batches_posted == 2  # the third landed but was never recorded
    # Act: a fresh service resumes from the Market accounts
    second = stack.service(config)
    await second.settle_available()
    # Assert: nothing twice (positions would double), nothing skipped
    assert first.metrics.fills_settled + second.metrics.fills_settled < len(fills)
    assert second.metrics.found_landed == 0  # it never re-posted the landed batch
    program = stack.program(stack.operator)
    for m in MARKETS:
        market = await program.account["Market"].fetch(
            stack.accounts.addresses.market(m.market_id)[0]
        )
        assert market.last_settled_sequence == max(
            f.seq for f in fills if f.market_id == m.market_id
        )
    await assert_chain_equals_engine(stack)


async def test_a_dead_process_batch_in_flight_and_its_successors_larger_batch_never_both_land(
    stack: SettlementStack,
) -> None:
    # Arrange: a dead service planned, built and signed a batch of the first fills (from the
    # chain's progress point) but never saw it land; the journal then grows
    assert stack.engine is not None
    rng = random.Random(41)
    stack.process(crossing_flow(rng, MARKETS[:1], OWNERS, 10))
    dead = stack.service()
    await dead.resume()
    planned = BatchPlanner(dead.accounts, dead.progress, dead.config).plan(
        stack.engine.journal.read()
    )
    in_flight = next(a for a in planned if isinstance(a, FillBatch))
    client = stack.client()
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    program = stack.program(stack.operator)
    ctx = Context(
        accounts={"exchange": dead.exchange, "market": dead.markets[0],
                  "operator": stack.operator.pubkey()},
        remaining_accounts=[AccountMeta(u, False, True) for u in in_flight.users],
        pre_instructions=[set_compute_unit_limit(1_400_000)],
    )  # fmt: skip
    dead_tx = program.transaction["settle_fills"](
        in_flight.previous_sequence, in_flight.first_seq, in_flight.sequence,
        [f.arg() for f in in_flight.fills], payer=stack.operator, blockhash=blockhash, ctx=ctx,
    )  # fmt: skip
    stack.process(crossing_flow(rng, MARKETS[:1], OWNERS, 10))
    fills = journal_fills(stack)
    successor = stack.service()
    post = successor._post
    raced: list[FillBatch] = []

    async def dead_tx_lands_first(action: object) -> object:
        if not raced:  # the successor's first batch: same progress point, more fills
            assert isinstance(action, FillBatch)
            raced.append(action)
            sig = (await client.send_raw_transaction(bytes(dead_tx))).value
            await client.confirm_transaction(sig)
        return await post(action)  # type: ignore[arg-type]

    successor._post = dead_tx_lands_first  # type: ignore[method-assign,assignment]
    # Act
    await successor.settle_available()
    # Assert: the larger batch was refused (BatchNotContiguous), the successor re-planned from
    # the chain and settled the rest: every fill once
    (first_try,) = raced
    assert first_try.previous_sequence == in_flight.previous_sequence
    assert first_try.sequence > in_flight.sequence and len(first_try.fills) > len(in_flight.fills)
    assert successor.metrics.lost_races == 1 and successor.state is ServiceState.RUNNING
    assert successor.metrics.fills_settled == len(fills) - len(in_flight.fills)
    market = await program.account["Market"].fetch(dead.markets[0])
    assert market.last_settled_sequence == max(f.seq for f in fills)
    await assert_chain_equals_engine(stack)


async def test_the_same_service_resyncs_from_the_chain_after_an_unrecorded_landing(
    stack: SettlementStack,
) -> None:
    # Arrange: one batch lands but the service fails before recording it; meanwhile the
    # journal grows, so a re-plan from stale progress would post a larger batch the program
    # accepts (the landed fills twice)
    rng = random.Random(31)
    stack.process(crossing_flow(rng, MARKETS[:1], OWNERS, 10))
    service = stack.service()

    async def fail_once(action: object) -> None:
        service.after_landed = None
        raise ConnectionError("lost before recording")

    service.after_landed = fail_once
    with pytest.raises(ConnectionError):
        await service.settle_available()
    stack.process(crossing_flow(rng, MARKETS[:1], OWNERS, 10))
    # Act
    await service.settle_available()
    # Assert
    assert service.metrics.fills_settled == 10  # only the new ones
    await assert_chain_equals_engine(stack)


async def test_sigkilled_service_process_restarts_without_repeating_or_skipping(
    stack: SettlementStack, tmp_path: Path
) -> None:
    # Arrange: the service as its own process, one fill per transaction so it is mid-way
    stack.process(crossing_flow(random.Random(13), MARKETS, OWNERS, 40))
    fills = journal_fills(stack)
    keypair = tmp_path / "operator.json"
    keypair.write_text(json.dumps(list(bytes(stack.operator))))
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([[o, s, str(stack.accounts.wallet(o, s))] for o, s in OWNERS]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "settlement.service", "--rpc-url", stack.server.rpc_url,
        "--journal-url", stack.journal_url(), "--program-id", str(stack.program_id),
        "--operator-keypair", str(keypair), "--accounts", str(accounts), "--markets", "0,1",
        "--max-fills-per-tx", "1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    program = stack.program(stack.operator)
    market0 = stack.accounts.addresses.market(0)[0]
    for _ in range(600):  # wait until some, not all, fills of market 0 are on-chain
        await asyncio.sleep(0.05)
        if (await program.account["Market"].fetch(market0)).last_settled_sequence > 0:
            break
    # Act
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    before = (await program.account["Market"].fetch(market0)).last_settled_sequence
    restarted = stack.service()
    await restarted.settle_available()
    # Assert
    assert proc.returncode == -signal.SIGKILL
    assert 0 < before < max(f.seq for f in fills if f.market_id == 0)
    await assert_chain_equals_engine(stack)


async def test_rpc_outage_is_retried_until_the_cluster_is_back(stack: SettlementStack) -> None:
    # Arrange: progress loaded, then the RPC server goes away before the fills are posted
    stack.process(crossing_flow(random.Random(21), MARKETS, OWNERS, 20))
    service = stack.service(
        SettlementConfig(market_ids=(0, 1), retry_initial_s=0.02, retry_max_s=0.1)
    )
    await service.resume()
    await stack.server.stop()
    # Act
    task = asyncio.create_task(service.settle_available())
    for _ in range(200):
        await asyncio.sleep(0.02)
        if service.metrics.rpc_retries >= 3:
            break
    retries_while_down = service.metrics.rpc_retries
    await stack.server.start()  # same ports
    landed = await asyncio.wait_for(task, 30)
    # Assert
    assert retries_while_down >= 3 and landed > 0
    assert service.metrics.fills_settled == 20
    assert service.state is ServiceState.RUNNING
    await assert_chain_equals_engine(stack)


async def test_a_batch_the_program_refuses_halts_settlement_loudly(
    stack: SettlementStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Arrange: settled fills, then a fill for an account the engine credited without an
    # on-chain deposit (its User does not exist): the program must refuse that batch
    rng = random.Random(3)
    stack.process(crossing_flow(rng, MARKETS, OWNERS, 10))
    service = stack.service()
    await service.settle_available()
    ghost_wallet = Pubkey.from_bytes(hashlib.sha256(b"never deposited").digest())
    wallets = {k: stack.accounts.wallet(*k) for k in OWNERS}
    stack.accounts = AccountMap({**wallets, (9, 0): ghost_wallet}, stack.accounts.addresses)
    stack.process([Deposit(9, 0, 1_000_000 * USD)])
    m = MARKETS[0]
    stack.process([
        PlaceOrder(0, 9, 0, Side.ASK, m.index_price, m.lot_size),
        PlaceOrder(0, 2, 0, Side.BID, m.index_price, m.lot_size, time_in_force=TimeInForce.IOC),
    ])  # fmt: skip
    halting = stack.service()
    market0 = stack.accounts.addresses.market(0)[0]
    program = stack.program(stack.operator)
    before = await program.account["Market"].fetch(market0)
    # Act
    with pytest.raises(SettlementHalted) as halted:
        await halting.settle_available()
    with pytest.raises(SettlementHalted):
        await halting.settle_available()  # stays halted: no skipping past the batch
    after = await program.account["Market"].fetch(market0)
    # Assert: the program's own error, an error state and log, and nothing applied
    expected = next(e for e in ERRORS if e.name == "UserWrongOwner")
    assert halted.value.error_code == expected.code
    assert halting.state is ServiceState.HALTED and halting.halt is not None
    assert halting.halt.error_code == expected.code and halting.halt.action == "settle_fills"
    assert after.last_settled_sequence == before.last_settled_sequence
    assert any("HALTED" in r.message and r.levelname == "ERROR" for r in caplog.records)
