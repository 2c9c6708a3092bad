"""On-chain facts the engine books through the deposit bridge, on the embedded cluster with a
real engine (SQLite journal) and the clearing program:

* a wallet's escape-hatch ``withdraw`` (the operator silent for ``escape_hatch_slots``) ->
  ``BookOnChainWithdrawal`` -> the reconciler finds no difference, and the withdrawal is booked
  once across a bridge restart (also one that lost its state);
* an insurance top-up (``deposit_insurance``) -> the engine's ``DepositInsurance`` -> a
  bad-debt payment only the top-up covers settles on-chain (``settle_liquidation``) and the
  insurance funds agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from anchorpy import Context
from spl.token.constants import TOKEN_PROGRAM_ID
from spl.token.instructions import MintToParams, mint_to

from exchange.core.commands import Liquidate, PlaceOrder, UpdateOraclePrice
from exchange.core.events import (
    Event,
    InsuranceFundDeposited,
    InsuranceFundPaidBadDebt,
    OnChainWithdrawalBooked,
)
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from exchange.engine.journal import Journal
from perp.params import PerpMarketParams
from settlement.bridge import BridgeState, DepositBridge
from settlement.onchain import (
    DEFAULT_ESCAPE_HATCH_SLOTS,
    create_token_account,
    send_instructions,
)
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.stack import LAMPORTS_PER_SOL, SettlementStack, StackMarket, seeded_keypair

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
TICK, LOT = 1_000_000, 1_000_000_000  # 1 USD, 1 base
MARKET = StackMarket(0, "T-PERP", TICK, LOT, 100 * USD)
TRADER, MAKER, KEEPER, SAVER = (1, 0), (3, 0), (4, 0), (5, 0)
PARAMS = PerpMarketParams(maker_fee_ppm=0, taker_fee_ppm=500, insurance_share_ppm=200_000)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    deposits = [(*TRADER, 100 * USD), (*MAKER, 1_000_000 * USD), (*KEEPER, 1_000_000 * USD),
                (*SAVER, 50 * USD)]  # fmt: skip
    async with SettlementStack(tmp_path / "engine", [MARKET], deposits, params=PARAMS) as s:
        yield s


def trade(stack: SettlementStack, taker_side: Side, lots: int, price: int) -> None:
    maker_side = Side.ASK if taker_side == Side.BID else Side.BID
    stack.process([
        PlaceOrder(0, *MAKER, maker_side, price * TICK, lots * LOT),
        PlaceOrder(0, *TRADER, taker_side, price * TICK, lots * LOT, time_in_force=TimeInForce.IOC),
    ])  # fmt: skip


def oracle(stack: SettlementStack, price: int) -> None:
    """A reading two minutes after the last (the breaker's window has passed)."""
    stack.clock.advance(120 * NANOS_PER_SECOND)
    stack.process_one(UpdateOraclePrice(0, price * TICK, TICK, 0, 0, True))


async def bridge(stack: SettlementStack, state_path: Path, *, start: bool = False) -> DepositBridge:
    """A bridge on the stack's engine. ``start``: the stack credited its deposits itself, so a
    new state file starts past the vault's transactions so far."""
    assert stack.engine is not None and stack.setup is not None
    engine = stack.engine
    program = stack.program(stack.operator)
    if start:
        page = await program.provider.connection.get_signatures_for_address(stack.setup.vault)
        BridgeState(scanned=[str(s.signature) for s in page.value]).save(state_path)
    journal = Journal(stack.journal_url(), read_only=True)
    stack.journals.append(journal)

    async def submit(command: Any) -> Sequence[Event]:
        return stack.process_one(command)

    return DepositBridge(
        program=program,
        vault=stack.setup.vault,
        accounts=stack.accounts,
        credit=submit,
        engine_last_seq=lambda: engine.core.next_seq - 1,
        journal=journal,
        state_path=state_path,
        book=submit,
    )


def reconciler(stack: SettlementStack) -> Reconciler:
    return Reconciler(
        program=stack.program(stack.operator),
        accounts=stack.accounts,
        config=ReconcilerConfig(market_ids=(0,), halt_on_mismatch=False),
    )


async def test_an_escape_hatch_withdrawal_is_booked_once_and_the_chain_equals_the_engine(
    stack: SettlementStack, tmp_path: Path
) -> None:
    # Arrange: a settled trade (the operator was active), then a bridge past the deposits
    assert stack.engine is not None and stack.setup is not None
    trade(stack, Side.BID, 2, 100)
    service = stack.service()
    await service.settle_available()
    state_path = tmp_path / "bridge.json"
    first = await bridge(stack, state_path, start=True)
    lost_state = BridgeState.load(state_path)  # what a bridge that loses its file starts from
    wallet = stack.wallets[SAVER]
    program = stack.program(wallet)
    destination = await create_token_account(
        program.provider.connection, stack.authority, stack.setup.mint, wallet.pubkey()
    )

    async def withdraw(amount_quote: int) -> None:
        await program.rpc["withdraw"](amount_quote, ctx=Context(accounts={
            "exchange": stack.setup.addresses.exchange()[0],  # type: ignore[union-attr]
            "user": stack.accounts.user(*SAVER), "owner": wallet.pubkey(),
            "owner_token": destination, "vault": stack.setup.vault,  # type: ignore[union-attr]
            "vault_authority": stack.setup.addresses.vault_authority()[0],  # type: ignore[union-attr]
            "token_program": TOKEN_PROGRAM_ID}, signers=[wallet]))  # fmt: skip

    with pytest.raises(Exception, match="6154: withdraw: the operator settled"):  # OperatorActive
        await withdraw(20 * USD)
    # Act: the engine goes quiet past the hatch; the wallet takes its collateral out itself
    stack.server.cluster.warp(DEFAULT_ESCAPE_HATCH_SLOTS + 1)
    await withdraw(20 * USD)
    before = await reconciler(stack).reconcile(stack.engine.core)
    booked = await first.poll()
    # Assert: booked as a fact, and the chain equals the engine again
    assert booked == 0  # no deposit credited
    assert first.metrics.withdrawals_booked == 1 and first.metrics.withdrawn_quote == 20 * USD
    assert not before.ok  # the chain paid out what the engine did not know of
    assert stack.engine.core.account(*SAVER).collateral_quote == 30 * USD
    after = await reconciler(stack).reconcile(stack.engine.core)
    assert after.ok, after.mismatches
    # exactly once: a restarted bridge finds nothing; one without its state re-sends and the
    # engine refuses the duplicate (counted as booked, nothing journaled)
    again = await bridge(stack, state_path)
    assert await again.poll() == 0 and again.metrics.withdrawals_booked == 0
    lost_state.save(state_path)
    amnesiac = await bridge(stack, state_path)
    await amnesiac.poll()
    assert amnesiac.metrics.withdrawals_booked == 1 and amnesiac.metrics.withdrawn_quote == 0
    journal = Journal(stack.journal_url(), read_only=True)
    stack.journals.append(journal)
    [event] = [e for e in journal.read() if type(e) is OnChainWithdrawalBooked]
    assert (event.owner_id, event.sub_account_id, event.amount_quote) == (*SAVER, 20 * USD)
    assert stack.engine.core.account(*SAVER).collateral_quote == 30 * USD
    # the engine is back: its next settlement lands (and closes the hatch again)
    trade(stack, Side.ASK, 1, 100)
    assert await service.settle_available() > 0
    assert (await reconciler(stack).reconcile(stack.engine.core)).ok


async def test_an_insurance_top_up_on_chain_lets_a_bad_debt_payment_settle(
    stack: SettlementStack, tmp_path: Path
) -> None:
    # Arrange: a 10x long, settled; a funder tops the fund up on-chain
    assert stack.engine is not None and stack.setup is not None
    trade(stack, Side.BID, 10, 100)
    service = stack.service()
    await service.settle_available()
    top_ups = await bridge(stack, tmp_path / "bridge.json", start=True)
    funder = seeded_keypair("perpdex insurance funder")
    client = stack.client()
    stack.server.cluster.airdrop(funder.pubkey(), LAMPORTS_PER_SOL)
    token = await create_token_account(client, stack.authority, stack.setup.mint, funder.pubkey())
    await send_instructions(client, [mint_to(MintToParams(
        program_id=TOKEN_PROGRAM_ID, mint=stack.setup.mint, dest=token,
        mint_authority=stack.authority.pubkey(), amount=500 * USD))], [stack.authority])  # fmt: skip
    fund_before = stack.engine.core.insurance_fund_quote
    program = stack.program(funder)
    await program.rpc["deposit_insurance"](500 * USD, ctx=Context(accounts={
        "exchange": stack.setup.addresses.exchange()[0], "funder": funder.pubkey(),
        "funder_token": token, "vault": stack.setup.vault,
        "token_program": TOKEN_PROGRAM_ID}, signers=[funder]))  # fmt: skip
    # Act: the bridge credits it; the long goes bankrupt and the fund pays its deficit
    await top_ups.poll()
    credited = stack.engine.core.insurance_fund_quote
    oracle(stack, 92)
    oracle(stack, 80)
    bankrupt = stack.process_one(Liquidate(*KEEPER, *TRADER))
    await service.settle_available()
    # Assert: the engine's fund grew by the top-up, once; the payment needed it
    assert credited == fund_before + 500 * USD
    assert top_ups.metrics.insurance_credited == 1
    [paid] = [e for e in bankrupt if type(e) is InsuranceFundPaidBadDebt]
    assert fund_before < paid.amount_quote <= credited
    report = await reconciler(stack).reconcile(stack.engine.core)
    assert report.ok, report.mismatches
    exchange = await program.account["Exchange"].fetch(service.exchange)
    assert exchange.insurance_fund_quote == stack.engine.core.insurance_fund_quote
    assert exchange.last_liquidation_sequence == paid.seq
    # a restarted bridge credits nothing again
    again = await bridge(stack, tmp_path / "bridge.json")
    await again.poll()
    assert again.metrics.insurance_credited == 0
    journal = Journal(stack.journal_url(), read_only=True)
    stack.journals.append(journal)
    assert len([e for e in journal.read() if type(e) is InsuranceFundDeposited]) == 1
