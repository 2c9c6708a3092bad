"""The permissionless on-chain ``liquidate`` on a real SVM (LiteSVM), driven by anchorpy.

The happy path is checked against ``liquidation.rules.plan_liquidation`` to the unit (positions,
collateral, fee split, insurance fund, open interest, the logged events); every adversarial case
(not eligible, stale or fake oracle, wrong accounts, self-liquidation, replay, bankrupt, a
liquidator that would fall below initial margin) fails with its own IDL error and leaves every
account byte-identical.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from test_clearing_program import (
    LOT_SIZE,
    NOW_S,
    NOW_SLOT,
    SCHEDULE,
    SYSTEM_PROGRAM,
    USD,
    Chain,
    assert_rejected,
    clone_account,
    make_chain,
    with_meta,
)

from exchange.core.commands import BookOnChainLiquidation, check_command
from liquidation.rules import LiquidationConfig, LiquidationPlan, OracleReading, plan_liquidation
from perp.position import Position
from settlement.errors import UnmappedAccount
from settlement.onchain import AccountMap, ClearingAddresses
from settlement.reconciler import OnChainLiquidation, booking_commands, liquidations_in_logs
from settlement.spec import LIQUIDATION_BUFFER_PPM, LIQUIDATOR_SHARE_PPM, event_discriminator

pytestmark = pytest.mark.integration

VICTIM, COUNTERPARTY, LIQUIDATOR = 0, 1, 2
#: 10 base bought at 100 USD on 100 USD of collateral: maintenance 5 % of the notional
FALLEN = 9_450_000_000  # 94.50 USD (exponent -8): equity ~44 USD < maintenance ~47 USD


def liquidate_ix(
    chain: Chain, user: int, liquidator: int, *, markets: list[int] | None = None
) -> Instruction:
    owner = chain.users[liquidator]
    held: set[int] = set()
    for who in (user, liquidator):
        state = chain.decode(chain.user_pda(chain.users[who].pubkey())[0])
        held |= {p.market_index for p in state.positions if p.in_use}
    remaining = []
    for index in sorted(held) if markets is None else markets:
        remaining += [AccountMeta(chain.market_pda(index)[0], False, True),
                      AccountMeta(chain.oracle, False, False)]  # fmt: skip
    return chain.ix(
        "liquidate",
        accounts={"exchange": chain.exchange,
                  "user": chain.user_pda(chain.users[user].pubkey())[0],
                  "liquidator_user": chain.user_pda(owner.pubkey())[0],
                  "liquidator": owner.pubkey()},
        remaining=remaining,
    )  # fmt: skip


@pytest.fixture
def underwater() -> Chain:
    """The victim is long 10 base at 100 USD on 100 USD; the oracle has fallen to 94.50."""
    chain = make_chain()
    chain.new_user(VICTIM, 100 * USD)
    chain.new_user(COUNTERPARTY, 10_000 * USD)
    chain.new_user(LIQUIDATOR, 10_000 * USD)
    # the counterparty makes, the victim takes (buys) 100 lots of 0.1 at 100.00
    chain.ok([chain.settle_ix(1, [(COUNTERPARTY, VICTIM, True, 10_000, 100)])], [chain.operator])
    chain.set_oracle(price=FALLEN)
    return chain


def user_state(chain: Chain, i: int) -> Any:
    return chain.decode(chain.user_pda(chain.users[i].pubkey())[0])


def position_of(state: Any, market_index: int = 0) -> tuple[int, int]:
    for p in state.positions:
        if p.in_use and p.market_index == market_index:
            return p.base, p.entry_quote
    return 0, 0


def python_plan(chain: Chain) -> LiquidationPlan:
    victim = user_state(chain, VICTIM)
    base, entry = position_of(victim)
    market = chain.decode(chain.market_pda(0)[0])
    plan = plan_liquidation(
        account_id=VICTIM, collateral_quote=victim.collateral_quote,
        positions={0: Position(base=base, entry_quote=entry)}, open_order_markets=(),
        oracles={0: OracleReading(FALLEN // 100, True)}, schedules={0: SCHEDULE},
        lot_sizes={0: LOT_SIZE},
        config=LiquidationConfig(liquidation_fee_ppm=market.liquidation_fee_ppm,
                                 liquidator_share_ppm=LIQUIDATOR_SHARE_PPM,
                                 buffer_ppm=LIQUIDATION_BUFFER_PPM),
        insurance_fund_quote=chain.decode(chain.exchange).insurance_fund_quote, adl_candidates={},
    )  # fmt: skip
    assert isinstance(plan, LiquidationPlan)
    return plan


def logged_events(result: Any, name: str) -> list[bytes]:
    tag = event_discriminator(name)
    out = []
    for line in result.logs():
        if line.startswith("Program data: "):
            data = base64.b64decode(line.removeprefix("Program data: "))
            if data[:8] == tag:
                out.append(data[8:])
    return out


# ------------------------------------------------------------------ happy path


def test_liquidation_matches_the_python_rules_to_the_unit(underwater: Chain) -> None:
    # Arrange
    chain = underwater
    plan = python_plan(chain)
    victim_before = user_state(chain, VICTIM)
    liquidator_before = user_state(chain, LIQUIDATOR)
    exchange_before = chain.decode(chain.exchange)
    base_before, entry_before = position_of(victim_before)
    # Act
    result = chain.ok([liquidate_ix(chain, VICTIM, LIQUIDATOR)], [chain.users[LIQUIDATOR]])
    # Assert: a partial liquidation, exactly the plan
    assert len(plan.transfers) == 1 and plan.insurance_payment_quote == 0
    t = plan.transfers[0]
    assert 0 < -t.base_delta < base_before, "expected a partial close"
    victim = user_state(chain, VICTIM)
    liquidator = user_state(chain, LIQUIDATOR)
    exchange = chain.decode(chain.exchange)
    assert victim.collateral_quote == plan.collateral_after_quote
    assert position_of(victim)[0] == base_before + t.base_delta
    assert position_of(liquidator) == (-t.base_delta, -t.quote_delta)
    assert (
        liquidator.collateral_quote == liquidator_before.collateral_quote + t.liquidator_fee_quote
    )
    assert exchange.insurance_fund_quote == (
        exchange_before.insurance_fund_quote + t.insurance_fee_quote
    )
    assert chain.decode(chain.market_pda(0)[0]).open_interest_base == base_before  # moved, kept
    assert t.fee_quote > 0 and t.liquidator_fee_quote == t.fee_quote // 2
    # the events carry the same numbers
    (slice_data,) = logged_events(result, "PositionLiquidated")
    market_index, base_delta, quote_delta, price, fee, to_liquidator, to_fund, index = (
        struct.unpack("<H64xqqQQQQ16s", slice_data)
    )
    assert (market_index, base_delta, quote_delta, price, fee, to_liquidator, to_fund) == (
        0, t.base_delta, t.quote_delta, t.price, t.fee_quote, t.liquidator_fee_quote,
        t.insurance_fee_quote,
    )  # fmt: skip
    assert int.from_bytes(index, "little", signed=True) == (
        chain.decode(chain.market_pda(0)[0]).cumulative_funding
    )
    (done,) = logged_events(result, "AccountLiquidated")
    equity, maintenance, payment, collateral_after, slices = struct.unpack("<64xqQQqB", done)
    assert (equity, maintenance, payment, collateral_after, slices) == (
        plan.equity_before_quote, plan.maintenance_before_quote, 0, plan.collateral_after_quote, 1,
    )  # fmt: skip
    assert entry_before < 0
    print(f"liquidate: {result.compute_units_consumed()} CU for one market")


# ------------------------------------------------------------------ adversarial


def test_a_healthy_account_is_not_liquidatable(underwater: Chain) -> None:
    underwater.set_oracle(price=10_000_000_000)
    assert_rejected(underwater, [liquidate_ix(underwater, VICTIM, LIQUIDATOR)],
                    [underwater.users[LIQUIDATOR]], "NotLiquidatable")  # fmt: skip


def test_a_bankrupt_account_is_left_to_the_engine(underwater: Chain) -> None:
    underwater.set_oracle(price=8_000_000_000)
    assert_rejected(underwater, [liquidate_ix(underwater, VICTIM, LIQUIDATOR)],
                    [underwater.users[LIQUIDATOR]], "AccountBankrupt")  # fmt: skip


@pytest.mark.parametrize(
    ("oracle", "error"),
    [
        ({"slot": NOW_SLOT - 51}, "OracleStaleSlots"),
        ({"publish_time": NOW_S - 61}, "OracleStaleSeconds"),
        ({"conf": 300_000_000}, "OracleConfidenceTooWide"),
        ({"owner": SYSTEM_PROGRAM}, "OracleWrongOwner"),
    ],
)
def test_never_at_a_stale_wide_or_forged_oracle(
    underwater: Chain, oracle: dict[str, Any], error: str
) -> None:
    underwater.set_oracle(price=FALLEN, **oracle)
    assert_rejected(underwater, [liquidate_ix(underwater, VICTIM, LIQUIDATOR)],
                    [underwater.users[LIQUIDATOR]], error)  # fmt: skip


def test_a_fake_oracle_account_is_refused(underwater: Chain) -> None:
    # a well-formed Pyth account at another address, with a price that would allow it
    fake = underwater.set_oracle(price=FALLEN // 2, address=Keypair().pubkey())
    ix = liquidate_ix(underwater, VICTIM, LIQUIDATOR)
    metas = list(ix.accounts)
    metas[5] = AccountMeta(fake, False, False)
    assert_rejected(underwater, [Instruction(ix.program_id, ix.data, metas)],
                    [underwater.users[LIQUIDATOR]], "OracleMismatch")  # fmt: skip


def test_wrong_accounts_are_refused(underwater: Chain) -> None:
    chain = underwater
    signer = [chain.users[LIQUIDATOR]]
    ix = liquidate_ix(chain, VICTIM, LIQUIDATOR)
    assert_rejected(chain, [with_meta(ix, 3, signer=False)], [chain.authority],
                    "LiquidatorNotSigner")  # fmt: skip
    stranger = chain.users[COUNTERPARTY]  # signs for the liquidator's User it does not own
    assert_rejected(chain, [with_meta(ix, 3, pubkey=stranger.pubkey())], [stranger],
                    "LiquidatorMismatch")  # fmt: skip
    assert_rejected(chain, [liquidate_ix(chain, VICTIM, LIQUIDATOR, markets=[])], signer,
                    "LiquidationMarketMissing")  # fmt: skip
    assert_rejected(chain, [liquidate_ix(chain, VICTIM, LIQUIDATOR, markets=[0, 0])], signer,
                    "LiquidationMarketsInvalid")  # fmt: skip
    odd = Instruction(ix.program_id, ix.data, list(ix.accounts)[:5])
    assert_rejected(chain, [odd], signer, "LiquidationMarketsInvalid")
    not_pda = clone_account(chain, chain.market_pda(0)[0], chain.program_id)
    assert_rejected(chain, [with_meta(ix, 4, pubkey=not_pda)], signer, "MarketWrongPda")
    victim_pda = chain.user_pda(chain.users[VICTIM].pubkey())[0]
    foreign = clone_account(chain, victim_pda, SYSTEM_PROGRAM)
    assert_rejected(chain, [with_meta(ix, 1, pubkey=foreign)], signer, "UserWrongOwner")
    copied = clone_account(chain, victim_pda, chain.program_id)
    assert_rejected(chain, [with_meta(ix, 1, pubkey=copied)], signer, "UserWrongPda")
    fake_exchange = clone_account(chain, chain.exchange, chain.program_id)
    assert_rejected(chain, [with_meta(ix, 0, pubkey=fake_exchange)], signer, "ExchangeWrongPda")


def test_self_liquidation_is_refused(underwater: Chain) -> None:
    assert_rejected(underwater, [liquidate_ix(underwater, VICTIM, VICTIM)],
                    [underwater.users[VICTIM]], "SelfLiquidation")  # fmt: skip


def test_a_replayed_liquidation_is_refused(underwater: Chain) -> None:
    underwater.ok([liquidate_ix(underwater, VICTIM, LIQUIDATOR)], [underwater.users[LIQUIDATOR]])
    # a new transaction (fresh blockhash) of the same instruction: the account is healthy now
    assert_rejected(underwater, [liquidate_ix(underwater, VICTIM, LIQUIDATOR)],
                    [underwater.users[LIQUIDATOR]], "NotLiquidatable")  # fmt: skip


def test_a_liquidator_that_would_fall_below_initial_margin_is_refused(underwater: Chain) -> None:
    poor = 3
    underwater.new_user(poor, 1 * USD)
    assert_rejected(underwater, [liquidate_ix(underwater, VICTIM, poor)],
                    [underwater.users[poor]], "LiquidatorBelowInitialMargin")  # fmt: skip


# ------------------------------------------------------------------ the engine's view


def test_the_reconciler_maps_the_logged_slices_to_engine_accounts(underwater: Chain) -> None:
    # Arrange: engine accounts (7, 0) = the victim's wallet, (8, 1) = the liquidator's
    accounts = AccountMap(
        {(7, 0): underwater.users[VICTIM].pubkey(), (8, 1): underwater.users[LIQUIDATOR].pubkey()},
        ClearingAddresses(underwater.program_id),
    )
    plan = python_plan(underwater)
    # Act
    result = underwater.ok([liquidate_ix(underwater, VICTIM, LIQUIDATOR)],
                           [underwater.users[LIQUIDATOR]])  # fmt: skip
    found = liquidations_in_logs(result.logs(), accounts)
    # Assert
    t = plan.transfers[0]
    assert found == [
        OnChainLiquidation(0, 7, 0, 8, 1, t.base_delta, t.quote_delta, t.price, t.fee_quote,
                           t.liquidator_fee_quote, t.insurance_fee_quote,
                           underwater.decode(underwater.market_pda(0)[0]).cumulative_funding)
    ]  # fmt: skip
    with pytest.raises(UnmappedAccount):
        liquidations_in_logs(result.logs(), AccountMap({}, accounts.addresses))
    # the engine commands that book it: one per slice, exactly-once key (signature, index)
    signature = str(result.signature())
    [book] = booking_commands(result.logs(), signature, accounts)
    check_command(book)
    assert book == BookOnChainLiquidation(
        *found[0][:12], tx_signature=signature, slice_index=0, insurance_payment_quote=0
    )
