"""``process_withdrawal`` (the engine's withdrawals executed by the operator) on a real SVM.

Exactly once and in journal order (one chain over ``Exchange.last_withdrawal_sequence``), the
same margin check as the owner-signed ``withdraw``, tokens only to a token account of the
User's owner; every refusal has its own IDL error and leaves every account byte-identical.
"""

from __future__ import annotations

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_PROGRAM_ID
from test_clearing_program import (
    CODES,
    NOW_SLOT,
    USD,
    Chain,
    assert_rejected,
    clone_account,
    custom_error,
    make_chain,
    with_meta,
)

pytestmark = pytest.mark.integration


def token_balance(chain: Chain, address: Pubkey) -> int:
    account = chain.svm.get_account(address)
    assert account is not None
    return int.from_bytes(bytes(account.data)[64:72], "little")


def process_ix(
    chain: Chain,
    i: int,
    amount: int,
    *,
    sequence: int,
    previous: int | None = None,
    destination: Pubkey | None = None,
    operator: Pubkey | None = None,
) -> Instruction:
    """``process_withdrawal`` of user ``i``; ``previous`` defaults to the chain's progress."""
    owner = chain.users[i]
    user, _ = chain.user_pda(owner.pubkey())
    if previous is None:
        previous = chain.decode(chain.exchange).last_withdrawal_sequence
    remaining = []
    for position in chain.decode(user).positions:
        if position.in_use:
            remaining += [AccountMeta(chain.market_pda(position.market_index)[0], False, True),
                          AccountMeta(chain.oracle, False, False)]  # fmt: skip
    return chain.ix(
        "process_withdrawal", previous, sequence, amount,
        accounts={"exchange": chain.exchange, "user": user,
                  "operator": operator or chain.operator.pubkey(),
                  "owner_token": destination or chain.owner_tokens[i], "vault": chain.vault,
                  "vault_authority": chain.vault_authority, "token_program": TOKEN_PROGRAM_ID},
        remaining=remaining,
    )  # fmt: skip


@pytest.fixture
def traded() -> Chain:
    """Users 0 and 1 with 10,000 USD and opposite positions (batch 1); user 2 flat, 1,000 USD."""
    chain = make_chain()
    chain.new_user(0, 10_000 * USD)
    chain.new_user(1, 10_000 * USD)
    chain.new_user(2, 1_000 * USD)
    chain.ok([chain.settle_ix(1, [(0, 1, True, 10_000, 50)])], [chain.operator])
    return chain


def test_an_engine_withdrawal_moves_tokens_to_the_owner_once(traded: Chain) -> None:
    # Arrange
    vault_before = token_balance(traded, traded.vault)
    owner_before = token_balance(traded, traded.owner_tokens[0])
    user = traded.user_pda(traded.users[0].pubkey())[0]
    collateral_before = traded.decode(user).collateral_quote
    ix = process_ix(traded, 0, 250 * USD, sequence=17)
    # Act
    result = traded.ok([ix], [traded.operator])
    print(f"process_withdrawal, one position: {result.compute_units_consumed()} CU")
    replay = traded.send([process_ix(traded, 0, 250 * USD, sequence=17, previous=0)],
                         [traded.operator])  # fmt: skip
    # Assert
    assert token_balance(traded, traded.owner_tokens[0]) == owner_before + 250 * USD
    assert token_balance(traded, traded.vault) == vault_before - 250 * USD
    assert traded.decode(user).collateral_quote == collateral_before - 250 * USD
    exchange = traded.decode(traded.exchange)
    assert exchange.last_withdrawal_sequence == 17
    assert exchange.net_deposits_quote == 21_000 * USD - 250 * USD
    assert any("Program data: " in line for line in result.logs())  # WithdrawalProcessed
    assert result.compute_units_consumed() < 60_000
    assert custom_error(replay) == CODES["SequenceNotIncreasing"]
    assert token_balance(traded, traded.owner_tokens[0]) == owner_before + 250 * USD


def test_withdrawals_form_one_chain_so_a_stale_copy_never_lands(traded: Chain) -> None:
    # Arrange: the dead executor's W(5) and its successor's W(5), both planned at progress 0
    first = process_ix(traded, 2, 100 * USD, sequence=5, previous=0)
    traded.ok([first], [traded.operator])
    # Act / Assert: the copy, a successor skipping ahead, a wrong predecessor, a smaller seq
    assert_rejected(traded, [process_ix(traded, 2, 100 * USD, sequence=5, previous=0)],
                    [traded.operator], "SequenceNotIncreasing")  # fmt: skip
    assert_rejected(traded, [process_ix(traded, 2, 100 * USD, sequence=9, previous=7)],
                    [traded.operator], "WithdrawalNotContiguous")  # fmt: skip
    assert_rejected(traded, [process_ix(traded, 2, 100 * USD, sequence=9, previous=0)],
                    [traded.operator], "WithdrawalNotContiguous")  # fmt: skip
    assert_rejected(traded, [process_ix(traded, 2, 100 * USD, sequence=4, previous=5)],
                    [traded.operator], "SequenceNotIncreasing")  # fmt: skip
    traded.ok([process_ix(traded, 2, 100 * USD, sequence=9, previous=5)], [traded.operator])
    assert traded.decode(traded.exchange).last_withdrawal_sequence == 9


def test_process_withdrawal_checks_collateral_and_free_collateral(traded: Chain) -> None:
    assert_rejected(traded, [process_ix(traded, 2, 1_000 * USD + 1, sequence=1)],
                    [traded.operator], "InsufficientCollateral")  # fmt: skip
    assert_rejected(traded, [process_ix(traded, 0, 10_000 * USD, sequence=1)],
                    [traded.operator], "InsufficientFreeCollateral")  # fmt: skip
    assert_rejected(traded, [process_ix(traded, 2, 0, sequence=1)], [traded.operator],
                    "AmountZero")  # fmt: skip
    traded.set_oracle(slot=NOW_SLOT - 51)  # never at a stale price
    assert_rejected(traded, [process_ix(traded, 0, 1 * USD, sequence=1)], [traded.operator],
                    "OracleStaleSlots")  # fmt: skip
    traded.set_oracle()
    missing = process_ix(traded, 0, 1 * USD, sequence=1)
    trimmed = Instruction(missing.program_id, missing.data, list(missing.accounts)[:7])
    assert_rejected(traded, [trimmed], [traded.operator], "WithdrawMarketMissing")
    assert traded.decode(traded.exchange).last_withdrawal_sequence == 0


def test_only_the_operator_may_send_it(traded: Chain) -> None:
    ix = process_ix(traded, 2, 1 * USD, sequence=1)
    assert_rejected(traded, [with_meta(ix, 2, signer=False)], [traded.authority],
                    "OperatorNotSigner")  # fmt: skip
    owner_signs = process_ix(traded, 2, 1 * USD, sequence=1, operator=traded.users[2].pubkey())
    assert_rejected(traded, [owner_signs], [traded.users[2]], "OperatorMismatch")
    authority_signs = process_ix(traded, 2, 1 * USD, sequence=1,
                                 operator=traded.authority.pubkey())  # fmt: skip
    assert_rejected(traded, [authority_signs], [traded.authority], "OperatorMismatch")


def test_the_tokens_go_only_to_the_owners_token_account(traded: Chain) -> None:
    # user 1's token account, the operator's own, and the vault itself
    thief_account = traded.owner_tokens[1]
    operator_account = traded.token_account(traded.operator.pubkey(), traded.operator)
    for destination in (thief_account, operator_account, traded.vault):
        assert_rejected(traded, [process_ix(traded, 2, 1 * USD, sequence=1, destination=destination)],
                        [traded.operator], "DestinationNotOwner")  # fmt: skip
    not_token = clone_account(traded, traded.owner_tokens[2], traded.program_id)
    assert_rejected(traded, [process_ix(traded, 2, 1 * USD, sequence=1, destination=not_token)],
                    [traded.operator], "TokenAccountWrongOwner")  # fmt: skip


def test_forged_exchange_user_and_vault_accounts_are_refused(traded: Chain) -> None:
    ix = process_ix(traded, 2, 1 * USD, sequence=1)
    fake_exchange = clone_account(traded, traded.exchange, traded.program_id)
    assert_rejected(traded, [with_meta(ix, 0, pubkey=fake_exchange)], [traded.operator],
                    "ExchangeWrongPda")  # fmt: skip
    fake_user = clone_account(traded, traded.user_pda(traded.users[2].pubkey())[0],
                              traded.program_id)  # fmt: skip
    assert_rejected(traded, [with_meta(ix, 1, pubkey=fake_user)], [traded.operator],
                    "UserWrongPda")  # fmt: skip
    assert_rejected(traded, [with_meta(ix, 4, pubkey=traded.insurance_vault)], [traded.operator],
                    "VaultMismatch")  # fmt: skip
    assert_rejected(traded, [with_meta(ix, 5, pubkey=Keypair().pubkey())], [traded.operator],
                    "VaultAuthorityWrongPda")  # fmt: skip
    assert_rejected(traded, [with_meta(ix, 6, pubkey=traded.program_id)], [traded.operator],
                    "TokenProgramMismatch")  # fmt: skip
    # another user's account under this user's destination: the owner check binds them
    other_user = with_meta(ix, 1, pubkey=traded.user_pda(traded.users[1].pubkey())[0])
    assert_rejected(traded, [other_user], [traded.operator], "DestinationNotOwner")


def test_the_owner_signed_withdraw_leaves_the_engine_chain_alone(traded: Chain) -> None:
    traded.operator_inactive()
    traded.ok([traded.withdraw_ix(2, 10 * USD)], [traded.users[2]])
    assert traded.decode(traded.exchange).last_withdrawal_sequence == 0
    traded.ok([process_ix(traded, 2, 990 * USD, sequence=3)], [traded.operator])  # the rest
    assert_rejected(traded, [process_ix(traded, 2, 1, sequence=4)], [traded.operator],
                    "InsufficientCollateral")  # fmt: skip
    assert traded.decode(traded.exchange).last_withdrawal_sequence == 3
