"""settle_liquidation (the engine's liquidations settled on-chain) and the wallet withdraw escape
hatch, on a real SVM (LiteSVM) through anchorpy-built instructions.

The happy path is compared with the Python ledger to the unit; every adversarial case (replay,
out of order, wrong signer, forged accounts, amounts that do not conserve value or that the
rules would never produce, the insurance fund going negative) fails with its own IDL error
and leaves every account byte-identical.
"""

from __future__ import annotations

from typing import Any

import pytest
from solders.instruction import AccountMeta, Instruction
from test_clearing_program import (
    CODES,
    ESCAPE_HATCH_SLOTS,
    FEES,
    LOT_SIZE,
    SYSTEM_PROGRAM,
    TICK_SIZE,
    USD,
    Chain,
    assert_rejected,
    clone_account,
    custom_error,
    make_chain,
    with_meta,
)

from perp.ledger import Ledger
from perp.position import apply_fill
from settlement.spec import (
    LIQUIDATION_MOVE_ADL,
    LIQUIDATION_MOVE_PAYMENT,
    LIQUIDATION_MOVE_SLICE,
    MAX_LIQUIDATION_BATCH_MARKETS,
)

pytestmark = pytest.mark.integration

BASE = 10**9
TARGET, LIQUIDATOR, SHORT, WHALE_A, WHALE_B = 0, 1, 2, 3, 4


def move(
    kind: int,
    account: int,
    counterparty: int = 0,
    *,
    market: int = 0,
    base_delta: int = 0,
    quote_delta: int = 0,
    price: int = 0,
    fee: int = 0,
    liquidator_fee: int = 0,
) -> dict[str, Any]:
    """A move with users named by their Chain index (mapped to remaining indices later)."""
    return {
        "kind": kind, "market": market, "account": account, "counterparty": counterparty,
        "base_delta": base_delta, "quote_delta": quote_delta, "price": price,
        "fee_quote": fee, "liquidator_fee_quote": liquidator_fee,
    }  # fmt: skip


def slice_move(base_delta: int, price: int, fee: int, liquidator_fee: int) -> dict[str, Any]:
    quote = (-base_delta * price) // BASE  # rules._close_quote
    return move(LIQUIDATION_MOVE_SLICE, TARGET, LIQUIDATOR, base_delta=base_delta,
                quote_delta=quote, price=price, fee=fee, liquidator_fee=liquidator_fee)  # fmt: skip


def adl_move(base_delta: int, price: int) -> dict[str, Any]:
    product = -base_delta * price  # rules._adl_quote
    quote = -(-product // BASE) if base_delta < 0 else product // BASE
    return move(LIQUIDATION_MOVE_ADL, TARGET, SHORT, base_delta=base_delta, quote_delta=quote,
                price=price)  # fmt: skip


def liquidation_ix(
    chain: Chain,
    sequence: int,
    moves: list[dict[str, Any]],
    *,
    first: int | None = None,
    previous: int | None = None,
    markets: list[int] | None = None,
    market_previous: list[int] | None = None,
    operator: Any = None,
) -> Instruction:
    """settle_liquidation continuing both chains unless told otherwise; ``markets`` defaults
    to market 0 when a move needs one."""
    exchange = chain.decode(chain.exchange)
    if previous is None:
        previous = exchange.last_liquidation_sequence
    if markets is None:
        markets = [0] if any(m["kind"] != LIQUIDATION_MOVE_PAYMENT for m in moves) else []
    if market_previous is None:
        market_previous = [
            chain.decode(chain.market_pda(i)[0]).last_settled_sequence for i in markets
        ]
    order: list[int] = []
    for m in moves:
        named = [m["account"]] if m["kind"] == LIQUIDATION_MOVE_PAYMENT else [
            m["account"], m["counterparty"]]  # fmt: skip
        for u in named:
            if u not in order:
                order.append(u)
    encoded = []
    for m in moves:
        e = dict(m)
        e["account"] = order.index(m["account"])
        if m["kind"] != LIQUIDATION_MOVE_PAYMENT:
            e["counterparty"] = order.index(m["counterparty"])
        encoded.append(e)
    prev = market_previous + [0] * (MAX_LIQUIDATION_BATCH_MARKETS - len(market_previous))
    remaining = [AccountMeta(chain.market_pda(i)[0], False, True) for i in markets]
    remaining += [
        AccountMeta(chain.user_pda(chain.users[u].pubkey())[0], False, True) for u in order
    ]
    return chain.ix(
        "settle_liquidation", previous, sequence if first is None else first, sequence,
        len(markets), prev, encoded,
        accounts={"exchange": chain.exchange, "operator": operator or chain.operator.pubkey()},
        remaining=remaining,
    )  # fmt: skip


def ledger_move(ledger: Ledger, market: int, account: int, base_delta: int, quote: int) -> None:
    """One side of a liquidation move as the engine books it (funding settled first, a closed
    position's carry swept)."""
    ledger.settle(account, market)
    key = (account, market)
    result = apply_fill(ledger.position(account, market), base_delta, quote)
    position = result.position
    ledger.positions[key] = ledger._closed(market, position) if not position.base else position
    ledger.collateral[account] += result.realized_quote


@pytest.fixture
def book() -> tuple[Chain, Ledger]:
    """TARGET long 50 lots at 100 USD against SHORT (seq 1); two whales trade 2 x 1,000 base
    (seq 2) so the insurance fund holds their fees; funding moved (seq 2) so the liquidation
    settles it first; the same on the Python ledger."""
    chain, ledger = make_chain(), Ledger()
    for user, amount in ((TARGET, 30 * USD), (LIQUIDATOR, 5_000 * USD), (SHORT, 5_000 * USD),
                         (WHALE_A, 200_000 * USD), (WHALE_B, 200_000 * USD)):  # fmt: skip
        chain.new_user(user, amount)
        ledger.deposit(user, amount)
    fills = [[(SHORT, TARGET, True, 10_000, 50)],
             [(WHALE_B, WHALE_A, True, 10_000, 10_000), (WHALE_B, WHALE_A, False, 10_000, 10_000)]]  # fmt: skip
    for seq, batch in enumerate(fills, start=1):
        chain.ok([chain.settle_ix(seq, batch)], [chain.operator])
        for maker, taker, buys, ticks, lots in batch:
            price, base = ticks * TICK_SIZE, lots * LOT_SIZE
            ledger.trade(0, maker, taker, buys, base, price * base // BASE, FEES)
    chain.ok([chain.funding_ix(2, 123_457, 100_000_123)], [chain.operator])
    ledger.accrue_funding(0, 123_457, 100_000_123)
    return chain, ledger


def bankrupt_moves() -> list[dict[str, Any]]:
    """TARGET's whole long: 2 base to the liquidator at 90 USD with a 1 % fee, 3 base
    deleveraged against SHORT at 95 USD, then the fund pays what is left negative."""
    return [slice_move(-2 * BASE, 90 * USD, 1_800_000, 900_000), adl_move(-3 * BASE, 95 * USD)]


def test_engine_liquidation_slice_adl_and_payment_match_the_ledger_to_the_unit(
    book: tuple[Chain, Ledger],
) -> None:
    # Arrange
    chain, ledger = book
    moves = bankrupt_moves()
    for m in moves:
        ledger_move(ledger, 0, TARGET, m["base_delta"], m["quote_delta"])
        ledger_move(ledger, 0, m["counterparty"], -m["base_delta"], -m["quote_delta"])
    ledger.collateral[TARGET] -= 1_800_000
    ledger.collateral[LIQUIDATOR] += 900_000
    ledger.insurance_fund_quote += 900_000
    deficit = -ledger.collateral[TARGET]
    assert 0 < deficit <= ledger.insurance_fund_quote
    ledger.collateral[TARGET] += deficit
    ledger.insurance_fund_quote -= deficit
    payment = move(LIQUIDATION_MOVE_PAYMENT, TARGET, quote_delta=deficit)
    # Act: seq 5..8 (FundingSettled, two moves, the fund's payment)
    chain.ok([liquidation_ix(chain, 8, [*moves, payment], first=6)], [chain.operator])
    # Assert
    for user in (TARGET, LIQUIDATOR, SHORT):
        state = chain.decode(chain.user_pda(chain.users[user].pubkey())[0])
        slot = next((p for p in state.positions if p.in_use), None)
        expected = ledger.position(user, 0)
        assert state.collateral_quote == ledger.collateral[user], user
        held = (slot.base, slot.entry_quote) if slot is not None else (0, 0)
        assert held == (expected.base, expected.entry_quote), user
    assert ledger.collateral[TARGET] == 0 and ledger.position(TARGET, 0).base == 0
    assert ledger.position(SHORT, 0).base == -2 * BASE  # 3 of its 5 base deleveraged
    exchange = chain.decode(chain.exchange)
    market = chain.decode(chain.market_pda(0)[0])
    assert exchange.insurance_fund_quote == ledger.insurance_fund_quote
    assert market.funding_pool_quote == ledger.funding[0].pool_quote
    assert exchange.last_liquidation_sequence == 8 and market.last_settled_sequence == 8
    # the fill chain continues from the liquidation
    assert_rejected(chain, [chain.settle_ix(9, [(WHALE_A, WHALE_B, True, 10_000, 1)], previous=2)],
                    [chain.operator], "BatchNotContiguous")  # fmt: skip
    chain.ok([chain.settle_ix(9, [(WHALE_A, WHALE_B, True, 10_000, 1)])], [chain.operator])


def test_a_payment_only_liquidation_chains_on_the_exchange_alone(
    book: tuple[Chain, Ledger],
) -> None:
    chain, _ = book
    chain.ok([liquidation_ix(chain, 8, bankrupt_moves(), first=6)], [chain.operator])
    owed = -chain.decode(chain.user_pda(chain.users[TARGET].pubkey())[0]).collateral_quote
    payment = [move(LIQUIDATION_MOVE_PAYMENT, TARGET, quote_delta=owed)]
    chain.ok([liquidation_ix(chain, 12, payment, first=11)], [chain.operator])
    assert chain.decode(chain.exchange).last_liquidation_sequence == 12
    assert chain.decode(chain.market_pda(0)[0]).last_settled_sequence == 8
    assert_rejected(chain, [liquidation_ix(chain, 12, payment, previous=8, first=11)],
                    [chain.operator], "SequenceNotIncreasing")  # fmt: skip


# ------------------------------------------------------------------ adversarial


def test_a_replayed_or_out_of_order_liquidation_is_refused(book: tuple[Chain, Ledger]) -> None:
    chain, _ = book
    moves = bankrupt_moves()
    landed = liquidation_ix(chain, 8, moves, first=6)
    chain.ok([landed], [chain.operator])
    assert_rejected(chain, [landed], [chain.operator], "SequenceNotIncreasing")  # replay
    rest = [slice_move(-LOT_SIZE, 90 * USD, 0, 0)]
    cases = [
        (liquidation_ix(chain, 12, rest, previous=0), "LiquidationChainNotContiguous"),
        (liquidation_ix(chain, 12, rest, market_previous=[2]), "LiquidationMarketNotContiguous"),
        (liquidation_ix(chain, 12, rest, first=8), "LiquidationSequenceRange"),
        (liquidation_ix(chain, 12, rest, first=13), "LiquidationSequenceRange"),
        (chain.settle_ix(7, [(WHALE_A, WHALE_B, True, 10_000, 1)], previous=2),
         "SequenceNotIncreasing"),  # a fill from before the liquidation, late
    ]  # fmt: skip
    for ix, error in cases:
        assert_rejected(chain, [ix], [chain.operator], error)


def test_a_fill_batch_can_not_jump_ahead_of_a_pending_liquidation(
    book: tuple[Chain, Ledger],
) -> None:
    # the fill after the liquidation names it as predecessor: refused until it lands
    chain, _ = book
    later_fill = chain.settle_ix(9, [(WHALE_A, WHALE_B, True, 10_000, 1)], previous=8)
    assert_rejected(chain, [later_fill], [chain.operator], "BatchNotContiguous")
    chain.ok([liquidation_ix(chain, 8, bankrupt_moves(), first=6)], [chain.operator])
    chain.ok([later_fill], [chain.operator])


def test_only_the_operator_may_settle_liquidations(book: tuple[Chain, Ledger]) -> None:
    chain, _ = book
    ix = liquidation_ix(chain, 8, bankrupt_moves(), first=6)
    assert_rejected(chain, [with_meta(ix, 1, signer=False)], [chain.authority], "OperatorNotSigner")
    intruder = chain.users[LIQUIDATOR]
    forged = with_meta(ix, 1, pubkey=intruder.pubkey())
    assert_rejected(chain, [forged], [intruder], "OperatorMismatch")


def test_forged_or_misplaced_accounts_are_refused(book: tuple[Chain, Ledger]) -> None:
    chain, _ = book
    ix = liquidation_ix(chain, 8, bankrupt_moves(), first=6)
    market = chain.market_pda(0)[0]
    fake_market = clone_account(chain, market, chain.program_id)
    target_user = chain.user_pda(chain.users[TARGET].pubkey())[0]
    fake_user = clone_account(chain, target_user, SYSTEM_PROGRAM)
    metas = list(ix.accounts)
    readonly_market = list(metas)
    readonly_market[2] = AccountMeta(market, False, False)
    readonly_user = list(metas)
    readonly_user[3] = AccountMeta(target_user, False, False)
    cases = [
        (with_meta(ix, 0, pubkey=market), "ExchangeWrongSize"),
        (with_meta(ix, 2, pubkey=fake_market), "MarketWrongPda"),
        (with_meta(ix, 2, pubkey=target_user), "MarketWrongSize"),
        (with_meta(ix, 3, pubkey=fake_user), "UserWrongOwner"),
        (with_meta(ix, 3, pubkey=market), "UserWrongSize"),
        (Instruction(ix.program_id, ix.data, readonly_market), "AccountNotWritable"),
        (Instruction(ix.program_id, ix.data, readonly_user), "AccountNotWritable"),
        (Instruction(ix.program_id, ix.data, metas[:4]), "LiquidationMoveUserOutOfRange"),
    ]
    for forged, error in cases:
        assert_rejected(chain, [forged], [chain.operator], error)


def test_a_batch_names_its_markets_exactly(book: tuple[Chain, Ledger]) -> None:
    chain, _ = book
    chain.ok([chain.create_market_ix(1)], [chain.authority])
    moves = bankrupt_moves()
    cases = [
        (liquidation_ix(chain, 8, moves, first=6, markets=[0, 1]), "LiquidationMarketUnused"),
        (liquidation_ix(chain, 8, moves, first=6, markets=[1, 0]),
         "LiquidationBatchMarketsInvalid"),  # not ascending
        (liquidation_ix(chain, 8, moves, first=6, markets=[0], market_previous=[2, 5]),
         "LiquidationBatchMarketsInvalid"),  # an unused previous sequence must be 0
        (liquidation_ix(chain, 8, [{**moves[0], "market": 1}], first=6),
         "LiquidationMoveMarketOutOfRange"),
        (liquidation_ix(chain, 8, [slice_move(-LOT_SIZE, 90 * USD, 0, 0)], first=6,
                        markets=[1]), "LiquidationMoveNotReducing"),  # nothing held there
        (liquidation_ix(chain, 8, [], first=6, markets=[0]), "LiquidationBatchEmpty"),
        (liquidation_ix(chain, 8, [slice_move(-LOT_SIZE, 90 * USD, 0, 0)] * 33, first=6),
         "LiquidationBatchTooLarge"),
    ]  # fmt: skip
    for ix, error in cases:
        assert_rejected(chain, [ix], [chain.operator], error)


@pytest.mark.parametrize(
    ("moves", "error"),
    [
        # quote not at the price with the protocol's rounding (value out of thin air)
        ([{**slice_move(-2 * BASE, 90 * USD, 0, 0), "quote_delta": 180 * USD + 1}],
         "LiquidationQuoteMismatch"),
        ([{**adl_move(-3 * BASE, 95 * USD), "quote_delta": 285 * USD - 1}],
         "LiquidationQuoteMismatch"),
        ([slice_move(-2 * BASE, 90 * USD, 18_000_001, 0)], "LiquidationFeeInvalid"),  # > 10 %
        ([slice_move(-2 * BASE, 90 * USD, 1_000, 1_001)], "LiquidationFeeInvalid"),  # split > fee
        ([{**adl_move(-3 * BASE, 95 * USD), "fee_quote": 1}], "LiquidationMoveFieldsInvalid"),
        ([slice_move(-2 * BASE, 0, 0, 0)], "LiquidationMoveFieldsInvalid"),
        ([slice_move(2 * BASE, 90 * USD, 0, 0)], "LiquidationMoveNotReducing"),  # grows it
        ([slice_move(-6 * BASE, 90 * USD, 0, 0)], "LiquidationMoveNotReducing"),  # flips it
        ([slice_move(-LOT_SIZE // 2, 90 * USD, 0, 0)], "LiquidationMoveNotReducing"),  # not lots
        ([{**adl_move(-6 * BASE, 95 * USD)}], "LiquidationMoveNotReducing"),
        ([{**slice_move(-LOT_SIZE, 90 * USD, 0, 0), "counterparty": TARGET}],
         "LiquidationMoveSelf"),
        ([{**slice_move(-LOT_SIZE, 90 * USD, 0, 0), "kind": 3}], "LiquidationMoveBadKind"),
        ([{**move(LIQUIDATION_MOVE_PAYMENT, TARGET, quote_delta=1), "price": 1}],
         "LiquidationMoveFieldsInvalid"),
        ([move(LIQUIDATION_MOVE_PAYMENT, TARGET, quote_delta=0)], "LiquidationMoveFieldsInvalid"),
        # the fund pays only a closed account, only its deficit, only what it holds
        ([move(LIQUIDATION_MOVE_PAYMENT, TARGET, quote_delta=1)], "InsurancePaymentAccountOpen"),
        ([*bankrupt_moves(), move(LIQUIDATION_MOVE_PAYMENT, TARGET, quote_delta=10**12)],
         "InsuranceFundInsufficient"),
    ],
)  # fmt: skip
def test_moves_the_rules_never_produce_are_refused(
    book: tuple[Chain, Ledger], moves: list[dict[str, Any]], error: str
) -> None:
    chain, _ = book
    ix = liquidation_ix(chain, 8, moves, first=6, markets=[0])
    assert_rejected(chain, [ix], [chain.operator], error)


def test_a_payment_beyond_the_deficit_is_refused(book: tuple[Chain, Ledger]) -> None:
    chain, _ = book
    chain.ok([liquidation_ix(chain, 8, bankrupt_moves(), first=6)], [chain.operator])
    owed = -chain.decode(chain.user_pda(chain.users[TARGET].pubkey())[0]).collateral_quote
    too_much = [move(LIQUIDATION_MOVE_PAYMENT, TARGET, quote_delta=owed + 1)]
    assert_rejected(chain, [liquidation_ix(chain, 9, too_much)], [chain.operator],
                    "InsurancePaymentAboveDeficit")  # fmt: skip


# ------------------------------------------------------------------ escape hatch


def withdraw_result(chain: Chain, amount: int) -> Any:
    return chain.send([chain.withdraw_ix(SHORT, amount)], [chain.users[SHORT]])


def test_wallet_withdraw_waits_for_the_operator_to_be_inactive(book: tuple[Chain, Ledger]) -> None:
    # Arrange: the operator settled at the current slot
    chain, _ = book
    # Act / Assert: refused (accounts unchanged) until escape_hatch_slots have passed
    assert_rejected(chain, [chain.withdraw_ix(SHORT, USD)], [chain.users[SHORT]], "OperatorActive")
    chain.warp(ESCAPE_HATCH_SLOTS)
    chain.set_oracle()
    assert_rejected(chain, [chain.withdraw_ix(SHORT, USD)], [chain.users[SHORT]], "OperatorActive")
    chain.warp(1)
    chain.set_oracle()
    chain.ok([chain.withdraw_ix(SHORT, USD)], [chain.users[SHORT]])
    # any settlement by the operator closes the hatch again
    chain.ok([liquidation_ix(chain, 8, bankrupt_moves(), first=6)], [chain.operator])
    assert chain.decode(chain.exchange).operator_active_slot == chain.now_slot
    assert custom_error(withdraw_result(chain, USD)) == CODES["OperatorActive"]
    chain.operator_inactive()
    chain.ok([chain.settle_ix(9, [(WHALE_A, WHALE_B, True, 10_000, 1)])], [chain.operator])
    assert custom_error(withdraw_result(chain, USD)) == CODES["OperatorActive"]


def test_initialize_refuses_an_escape_hatch_out_of_bounds() -> None:
    for slots in (ESCAPE_HATCH_SLOTS - 1, 1_512_001):
        chain = make_chain(initialize=False)
        before = chain.snapshot([chain.exchange])
        result = chain.send([chain.initialize_ix(slots)], [chain.authority])
        assert custom_error(result) == CODES["InvalidEscapeHatch"]
        assert chain.snapshot([chain.exchange]) == before
    chain = make_chain(initialize=False)
    chain.ok([chain.initialize_ix(1_512_000)], [chain.authority])
    exchange = chain.decode(chain.exchange)
    assert (exchange.escape_hatch_slots, exchange.operator_active_slot) == (
        1_512_000,
        chain.now_slot,
    )
