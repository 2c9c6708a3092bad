"""The liquidation scanner end to end on the embedded cluster: a keeper calls the program's
``liquidate`` while the engine is unaware (its oracle never fell); the scanner finds the
transaction, books its slices into the engine, and the reconciler then finds engine = chain.
A restarted scanner (same state file) finds nothing to do; one without its state re-reads the
history and the engine refuses every slice as a duplicate: each is journaled once."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from anchorpy import Context
from solders.account import Account
from solders.instruction import AccountMeta

from exchange.core.commands import BookOnChainLiquidation, PlaceOrder
from exchange.core.events import Event, LiquidationExecuted, OnChainLiquidationBooked
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION, U64_MAX
from oracle_feeds.encoders import encode_pyth_pull_price_update_v2
from oracle_feeds.layouts import PYTH_RECEIVER_PROGRAM_ID, PythPullAccount
from perp.params import PerpMarketParams
from settlement.liquidation_scanner import LiquidationScanner
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.stack import SettlementStack, StackMarket, seeded_keypair

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
M = StackMarket(0, "BTC-PERP", PRICE_PRECISION // 100, BASE_PRECISION // 10, 100 * USD)
VICTIM, MAKER, KEEPER = (1, 0), (2, 0), (3, 0)
SIZE = 95 * BASE_PRECISION // 10
# 10x initial, 5 % maintenance; the fee the program sets at create_market (half the first
# maintenance ratio) until create_market takes the engine's value
PARAMS = PerpMarketParams(margin_tiers=((U64_MAX, 100_000, 50_000),), liquidation_fee_ppm=25_000)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    deposits = [(*VICTIM, 100 * USD), (*MAKER, 10_000 * USD), (*KEEPER, 10_000 * USD)]
    async with SettlementStack(tmp_path / "engine", (M,), deposits, params=PARAMS) as s:
        # the victim buys 9.5 base at 100 on 100 USD (about 10x), settled on-chain
        s.process([
            PlaceOrder(0, *MAKER, Side.ASK, 100 * USD, SIZE),
            PlaceOrder(0, *VICTIM, Side.BID, 100 * USD, SIZE, time_in_force=TimeInForce.IOC),
        ])  # fmt: skip
        assert s.engine is not None and s.engine.core.account(*VICTIM).positions[0].base == SIZE
        await s.service().settle_available()
        yield s


def oracle_on_chain(stack: SettlementStack, price: int) -> None:
    """The market's Pyth account at ``price``, fresh at the cluster's slot and time (the
    engine's oracle is not told)."""
    cluster = stack.server.cluster
    raw = encode_pyth_pull_price_update_v2(PythPullAccount(
        feed_id=hashlib.sha256(M.symbol.encode()).digest(), price=price, conf=M.tick_size,
        exponent=-6, publish_time=cluster.unix_timestamp, posted_slot=cluster.slot))  # fmt: skip
    cluster.set_account(
        seeded_keypair(f"oracle {M.symbol}").pubkey(),
        Account(10**9, raw, PYTH_RECEIVER_PROGRAM_ID, False, 0),
    )


async def keeper_liquidates(stack: SettlementStack) -> str:
    """The keeper's wallet-signed ``liquidate`` of the victim; its signature."""
    keeper = stack.wallets[KEEPER]
    program = stack.program(keeper)
    addresses = stack.accounts.addresses
    signature = await program.rpc["liquidate"](ctx=Context(
        accounts={"exchange": addresses.exchange()[0],
                  "user": stack.accounts.user(*VICTIM),
                  "liquidator_user": stack.accounts.user(*KEEPER),
                  "liquidator": keeper.pubkey()},
        remaining_accounts=[AccountMeta(addresses.market(0)[0], False, True),
                            AccountMeta(seeded_keypair(f"oracle {M.symbol}").pubkey(), False,
                                        False)],
        signers=[keeper]))  # fmt: skip
    return str(signature)


def scanner(stack: SettlementStack, state_path: Path) -> LiquidationScanner:
    assert stack.setup is not None

    async def submit(command: BookOnChainLiquidation) -> list[Event]:
        return stack.process_one(command)

    return LiquidationScanner(
        client=stack.client(),
        exchange=stack.setup.addresses.exchange()[0],
        accounts=stack.accounts,
        submit=submit,
        state_path=state_path,
    )


def journaled(stack: SettlementStack, kind: type) -> list[object]:
    assert stack.engine is not None
    return [e for e in stack.engine.journal.read() if type(e) is kind]


async def test_an_onchain_liquidation_is_booked_once_and_the_engine_equals_the_chain(
    stack: SettlementStack, tmp_path: Path
) -> None:
    # Arrange: the oracle falls to 94 on-chain only (equity ~42.6 < maintenance ~44.7); a
    # keeper liquidates there
    assert stack.engine is not None
    oracle_on_chain(stack, 94 * USD)
    signature = await keeper_liquidates(stack)
    state_path = tmp_path / "liquidation-scanner.json"
    reconciler = Reconciler(
        program=stack.program(stack.operator), accounts=stack.accounts,
        config=ReconcilerConfig(market_ids=(0,)), submit=stack.process_one,
    )  # fmt: skip
    before = await reconciler.reconcile(stack.engine.core)
    # Act
    first = scanner(stack, state_path)
    booked = await first.poll()
    await stack.service().settle_available()
    after = await reconciler.reconcile(stack.engine.core)
    # Assert: the engine booked the chain's slice(s) and now agrees with the chain
    assert {m.field for m in before.mismatches} >= {"base"}, "the engine did not know"
    assert booked >= 1 and first.incident is None
    assert first.metrics.liquidation_transactions == 1
    assert after.ok, after.mismatches
    [booking] = journaled(stack, OnChainLiquidationBooked)
    assert booking.tx_signature == signature  # type: ignore[attr-defined]
    slices = journaled(stack, LiquidationExecuted)
    assert len(slices) == booked
    victim = stack.engine.core.account(*VICTIM)
    assert 0 < victim.positions[0].base < SIZE  # a partial liquidation
    keeper = stack.engine.core.account(*KEEPER)
    assert keeper.positions[0].base == SIZE - victim.positions[0].base

    # Act: a restart with its state, then one that lost it
    restarted = scanner(stack, state_path)
    again = await restarted.poll()
    state_path.unlink()
    amnesiac = scanner(stack, state_path)
    once_more = await amnesiac.poll()
    final = await reconciler.reconcile(stack.engine.core)
    # Assert: applied once
    assert (again, restarted.metrics.transactions_read, restarted.metrics.duplicates) == (0, 0, 0)
    assert once_more == 0 and amnesiac.metrics.duplicates == booked
    assert amnesiac.incident is None
    assert len(journaled(stack, LiquidationExecuted)) == booked
    assert final.ok, final.mismatches
