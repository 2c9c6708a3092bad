"""The withdrawal executor against a real engine and the clearing program on the embedded
cluster: journaled withdrawals land once, in journal order with the fills around them, into the
owner's associated token account; the reconciler agrees afterwards; a crash between a landed
transaction and its record does not apply it twice; a refusal by the program halts loudly."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from solders.account import Account
from spl.token.instructions import get_associated_token_address

from exchange.core.commands import Withdraw
from exchange.core.events import CollateralWithdrawn, OrderRejected
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION
from oracle_feeds.encoders import encode_pyth_pull_price_update_v2
from oracle_feeds.layouts import PYTH_RECEIVER_PROGRAM_ID, PythPullAccount
from perp.risk_gate import RejectCode
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.stack import SettlementStack, StackMarket, crossing_flow, seeded_keypair
from settlement.withdrawals import (
    EXECUTED,
    FAILED,
    WithdrawalExecutor,
    WithdrawalHalted,
    WithdrawalRecord,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
MARKETS = (StackMarket(0, "BTC-PERP", PRICE_PRECISION // 10, BASE_PRECISION // 100, 100_000 * USD),)
OWNERS = [(owner_id, 0) for owner_id in range(1, 4)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    deposits = [(o, s, 100_000 * USD) for o, s in OWNERS]
    async with SettlementStack(tmp_path / "engine", MARKETS, deposits) as s:
        s.process(crossing_flow(random.Random(5), MARKETS, OWNERS, 12))
        yield s


def fresh_oracle(stack: SettlementStack) -> None:
    """The market's Pyth account at the cluster's current slot and time (the on-chain margin
    check of a withdrawal refuses a stale price)."""
    cluster = stack.server.cluster
    m = MARKETS[0]
    raw = encode_pyth_pull_price_update_v2(PythPullAccount(
        feed_id=hashlib.sha256(m.symbol.encode()).digest(), price=m.index_price,
        conf=m.tick_size, exponent=-6, publish_time=cluster.unix_timestamp,
        posted_slot=cluster.slot))  # fmt: skip
    cluster.set_account(
        seeded_keypair(f"oracle {m.symbol}").pubkey(),
        Account(10**9, raw, PYTH_RECEIVER_PROGRAM_ID, False, 0),
    )


def executor(stack: SettlementStack, state_path: Path) -> WithdrawalExecutor:
    assert stack.setup is not None
    return WithdrawalExecutor(
        journal=stack.service().journal,
        program=stack.program(stack.operator),
        operator=stack.operator,
        accounts=stack.accounts,
        mint=stack.setup.mint,
        vault=stack.setup.vault,
        state_path=state_path,
    )


async def token_balance(stack: SettlementStack, owner_id: int) -> int:
    assert stack.setup is not None
    ata = get_associated_token_address(stack.wallets[(owner_id, 0)].pubkey(), stack.setup.mint)
    resp = await stack.client().get_token_account_balance(ata)
    return int(resp.value.amount)


async def reconcile_ok(stack: SettlementStack) -> bool:
    rec = Reconciler(program=stack.program(stack.operator), accounts=stack.accounts,
                     config=ReconcilerConfig(market_ids=(0,), halt_on_mismatch=False))  # fmt: skip
    assert stack.engine is not None
    report = await rec.reconcile(stack.engine.core)
    return report.ok


async def test_journaled_withdrawals_land_once_in_order_with_the_fills(
    stack: SettlementStack, tmp_path: Path
) -> None:
    # Arrange: a withdrawal between two rounds of trading, and one beyond free collateral
    [withdrawn] = [e for e in stack.process_one(Withdraw(1, 0, 1_234 * USD))
                   if type(e) is CollateralWithdrawn]  # fmt: skip
    stack.process(crossing_flow(random.Random(6), MARKETS, OWNERS, 8))
    refused = stack.process_one(Withdraw(2, 0, 10**9 * USD))
    fresh_oracle(stack)
    service = stack.service()
    settled_at: list[int] = []

    async def settle_through(seq: int) -> int:
        settled_at.append(seq)
        return await service.settle_available(upto_seq=seq)

    ex = executor(stack, tmp_path / "withdrawals.json")
    # Act
    executed = await ex.run_once(settle_through)
    again = await ex.run_once(settle_through)
    # Assert
    assert [type(e) for e in refused][-1] is OrderRejected
    assert refused[-1].code == RejectCode.WITHDRAWAL_ABOVE_FREE_COLLATERAL
    assert (executed, again) == (1, 0)
    assert settled_at[0] == withdrawn.seq - 1  # the fills before it settled first
    assert await token_balance(stack, 1) == 1_234 * USD
    [row] = ex.withdrawals(1)
    assert row["status"] == EXECUTED and row["signature"] and row["sequence"] == withdrawn.seq
    assert ex.withdrawals(2) == []
    exchange = await stack.program(stack.operator).account["Exchange"].fetch(ex.exchange)
    assert exchange.last_withdrawal_sequence == withdrawn.seq
    assert await reconcile_ok(stack)


async def test_a_crash_after_sending_before_recording_applies_it_once(
    stack: SettlementStack, tmp_path: Path
) -> None:
    # Arrange: the first executor's transaction lands, then the process dies
    stack.process_one(Withdraw(3, 0, 500 * USD))
    fresh_oracle(stack)
    service = stack.service()
    state = tmp_path / "withdrawals.json"
    first = executor(stack, state)

    async def crash(record: WithdrawalRecord) -> None:
        raise KeyboardInterrupt("killed after sending")

    first.after_sent = crash
    with pytest.raises(KeyboardInterrupt):
        await first.run_once(lambda seq: service.settle_available(upto_seq=seq))
    sent = next(iter(first.records.values())).attempts
    # Act: a new process on the same state file
    second = executor(stack, state)
    executed = await second.run_once(lambda seq: service.settle_available(upto_seq=seq))
    # Assert: nothing sent again; the record carries the first process's landed signature
    assert executed == 0 and len(sent) == 1
    assert await token_balance(stack, 3) == 500 * USD
    [row] = second.withdrawals(3)
    assert row["status"] == EXECUTED and row["signature"] == sent[0]
    assert second.metrics.attempts == 0 and second.metrics.found_landed == 1
    assert await reconcile_ok(stack)


async def test_a_program_refusal_is_a_loud_incident_and_halts(
    stack: SettlementStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Arrange: the engine let owner 2 withdraw; on-chain its User has less (bytes changed),
    # so the program refuses: engine and chain disagree
    assert stack.engine is not None
    amount = stack.engine.core.margin(2, 0).free_collateral_quote // 2
    events = stack.process_one(Withdraw(2, 0, amount))
    assert any(type(e) is CollateralWithdrawn for e in events)
    fresh_oracle(stack)
    service = stack.service()
    await service.settle_available()
    user = stack.accounts.user(2, 0)
    account = stack.server.cluster.get_account(user)
    assert account is not None
    data = bytearray(account.data)
    data[40:48] = (amount - 1).to_bytes(8, "little", signed=True)  # collateral_quote
    stack.server.cluster.set_account(user, Account(account.lamports, bytes(data), account.owner,
                                                   False, 0))  # fmt: skip
    ex = executor(stack, tmp_path / "withdrawals.json")
    # Act
    with pytest.raises(WithdrawalHalted):
        await ex.run_once(lambda seq: service.settle_available(upto_seq=seq))
    # Assert
    [row] = ex.withdrawals(2)
    assert row["status"] == FAILED and row["error_name"] == "InsufficientCollateral"
    assert "RECONCILIATION INCIDENT" in caplog.text
    with pytest.raises(WithdrawalHalted):
        await ex.run_once(lambda seq: service.settle_available(upto_seq=seq))
    exchange = await stack.program(stack.operator).account["Exchange"].fetch(ex.exchange)
    assert exchange.last_withdrawal_sequence == 0 and ex.metrics.incidents == 1
