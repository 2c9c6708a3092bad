"""Adversarial cases the coverage matrix (README.md in this directory) found missing.

Same LiteSVM set-up as test_clearing_program.py (the committed .so, instructions built by
anchorpy from the generated IDL). Every refusal must carry the instruction's own IDL error and
leave every watched account (Exchange, Market 0, vaults, oracle, Users, their token accounts,
Governance and its proposals, plus the accounts a case brings) byte-identical.
"""

from __future__ import annotations

from typing import Any

import pytest
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.token.constants import ACCOUNT_LEN, MINT_LEN, TOKEN_PROGRAM_ID
from spl.token.instructions import (
    InitializeAccountParams,
    InitializeMintParams,
    MintToParams,
    initialize_account,
    initialize_mint,
    mint_to,
)

# pytest puts this directory on sys.path (rootdir-relative, no packages)
from test_clearing_program import (
    CODES,
    ESCAPE_HATCH_SLOTS,
    SOL,
    SYSTEM_PROGRAM,
    USD,
    Chain,
    clone_account,
    custom_error,
    key,
    make_chain,
    watched,
    with_meta,
)

from settlement.governance import (
    approve_ix,
    cancel_ix,
    execute_ix,
    governance_pda,
    guardian_set_status_ix,
    initialize_governance_ix,
    proposal_pda,
    propose_ix,
)
from settlement.spec import ACCOUNTS, SPEC, Vec, instruction_discriminator, offsets, size_of

pytestmark = pytest.mark.integration

I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
TOKEN_INSUFFICIENT_FUNDS = 1  # spl-token TokenError::InsufficientFunds
FUNDER = 30
COUNCIL = [key(70), key(71)]
GUARDIAN = key(72)
TIMELOCK_S = 3_600


def field_offset(account: str, name: str) -> int:
    """Byte offset of ``name`` in the program account ``account`` (discriminator included)."""
    spec = next(a for a in ACCOUNTS if a.name == account)
    return next(at for fld, at in offsets(SPEC, spec.fields, 8) if fld.name == name)


class Case:
    """The chain with the extra accounts a test watches, and the refusal check."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.extra: list[Pubkey] = [chain.insurance_vault]

    def watched(self) -> list[Pubkey]:
        governance = governance_pda(self.chain.program_id)[0]
        proposals = [proposal_pda(self.chain.program_id, i)[0] for i in range(3)]
        return [*watched(self.chain), governance, *proposals, *self.extra]

    def rejected(self, ixs: list[Instruction], signers: list[Keypair], error: str) -> None:
        before = self.chain.snapshot(self.watched())
        result = self.chain.send(ixs, signers)
        assert custom_error(result) == CODES[error], list(result.meta().logs())
        assert self.chain.snapshot(self.watched()) == before, "a refusal changed an account"

    def token_balance(self, address: Pubkey) -> int:
        account = self.chain.svm.get_account(address)
        assert account is not None
        return int.from_bytes(bytes(account.data)[64:72], "little")

    def other_mint_account(self, owner: Keypair) -> Pubkey:
        """A funded token account of a second mint, owned by ``owner``."""
        chain, mint, account = self.chain, Keypair(), Keypair()
        rent = chain.svm.minimum_balance_for_rent_exemption
        chain.ok(
            [
                create_account(CreateAccountParams(from_pubkey=owner.pubkey(), to_pubkey=mint.pubkey(),
                                                   lamports=rent(MINT_LEN), space=MINT_LEN,
                                                   owner=TOKEN_PROGRAM_ID)),
                initialize_mint(InitializeMintParams(decimals=6, program_id=TOKEN_PROGRAM_ID,
                                                     mint=mint.pubkey(), mint_authority=owner.pubkey())),
                create_account(CreateAccountParams(from_pubkey=owner.pubkey(), to_pubkey=account.pubkey(),
                                                   lamports=rent(ACCOUNT_LEN), space=ACCOUNT_LEN,
                                                   owner=TOKEN_PROGRAM_ID)),
                initialize_account(InitializeAccountParams(program_id=TOKEN_PROGRAM_ID,
                                                           account=account.pubkey(), mint=mint.pubkey(),
                                                           owner=owner.pubkey())),
                mint_to(MintToParams(program_id=TOKEN_PROGRAM_ID, mint=mint.pubkey(), dest=account.pubkey(),
                                     mint_authority=owner.pubkey(), amount=10**12)),
            ],
            [owner, mint, account],
        )  # fmt: skip
        self.extra.append(account.pubkey())
        return account.pubkey()


@pytest.fixture
def case() -> Case:
    """Market 0, users 0 and 1 with opposite positions (batch 1), a funder with tokens."""
    chain = make_chain()
    chain.new_user(0, 10_000 * USD)
    chain.new_user(1, 10_000 * USD)
    chain.ok([chain.settle_ix(1, [(0, 1, True, 10_000, 50)])], [chain.operator])
    chain.new_user(FUNDER, 0)  # a wallet with tokens and no User account
    return Case(chain)


def insurance_ix(
    chain: Chain, amount: int, *, funder: int = FUNDER, **accounts: Pubkey
) -> Instruction:
    names = {"exchange": chain.exchange, "funder": chain.users[funder].pubkey(),
             "funder_token": chain.owner_tokens[funder], "vault": chain.vault,
             "token_program": TOKEN_PROGRAM_ID}  # fmt: skip
    names.update(accounts)
    return chain.ix("deposit_insurance", amount, accounts=names)


# ------------------------------------------------------------------ deposit_insurance


def test_deposit_insurance_adds_to_the_fund_and_the_vault(case: Case) -> None:
    # Arrange
    chain = case.chain
    fund_before = chain.decode(chain.exchange).insurance_fund_quote
    vault_before = case.token_balance(chain.vault)
    # Act
    result = chain.ok([insurance_ix(chain, 500 * USD)], [chain.users[FUNDER]])
    # Assert: the fund is a claim on the vault (not the insurance_vault token account)
    assert chain.decode(chain.exchange).insurance_fund_quote == fund_before + 500 * USD
    assert case.token_balance(chain.vault) == vault_before + 500 * USD
    assert case.token_balance(chain.owner_tokens[FUNDER]) == 10**15 - 500 * USD
    assert any("Program data:" in line for line in result.logs())  # InsuranceDeposited


def test_deposit_insurance_refuses_a_zero_or_overflowing_amount(case: Case) -> None:
    chain, funder = case.chain, [case.chain.users[FUNDER]]
    case.rejected([insurance_ix(chain, 0)], funder, "AmountZero")
    # the fund is an i64 in the engine: the sum must stay <= i64 max (checked before any transfer)
    case.rejected([insurance_ix(chain, I64_MAX + 1)], funder, "FeeOverflow")
    case.rejected([insurance_ix(chain, U64_MAX)], funder, "FeeOverflow")
    fund = chain.decode(chain.exchange).insurance_fund_quote
    assert fund > 0  # fees of batch 1: i64 max - fund + 1 overflows, i64 max - fund would not
    case.rejected([insurance_ix(chain, I64_MAX - fund + 1)], funder, "FeeOverflow")


def test_deposit_insurance_refuses_a_wrong_vault_or_token_program(case: Case) -> None:
    chain, funder = case.chain, [case.chain.users[FUNDER]]
    for vault in (chain.insurance_vault, chain.owner_tokens[0], chain.owner_tokens[FUNDER]):
        case.rejected([insurance_ix(chain, USD, vault=vault)], funder, "VaultMismatch")
    for program in (SYSTEM_PROGRAM, chain.program_id):
        case.rejected([insurance_ix(chain, USD, token_program=program)], funder,
                      "TokenProgramMismatch")  # fmt: skip


def test_deposit_insurance_refuses_a_token_account_of_another_mint_or_owner(case: Case) -> None:
    chain, funder_key = case.chain, case.chain.users[FUNDER]
    other_mint = case.other_mint_account(funder_key)
    case.rejected([insurance_ix(chain, USD, funder_token=other_mint)], [funder_key],
                  "TokenAccountMintMismatch")  # fmt: skip
    case.rejected([insurance_ix(chain, USD, funder_token=chain.mint)], [funder_key],
                  "TokenAccountBadLayout")  # a mint, not a token account  # fmt: skip
    not_token = clone_account(chain, chain.owner_tokens[FUNDER], chain.program_id)
    case.rejected([insurance_ix(chain, USD, funder_token=not_token)], [funder_key],
                  "TokenAccountWrongOwner")  # fmt: skip
    # the funder signs, but the tokens are user 0's: no paying from someone else's account
    case.rejected([insurance_ix(chain, USD, funder_token=chain.owner_tokens[0])], [funder_key],
                  "SourceNotOwner")  # fmt: skip


def test_deposit_insurance_needs_the_funders_signature_and_real_exchange(case: Case) -> None:
    chain, funder = case.chain, [case.chain.users[FUNDER]]
    unsigned = with_meta(insurance_ix(chain, USD), 1, signer=False)
    case.rejected([unsigned], [chain.authority], "OwnerNotSigner")
    foreign = clone_account(chain, chain.exchange, SYSTEM_PROGRAM)
    case.rejected([insurance_ix(chain, USD, exchange=foreign)], funder, "ExchangeWrongOwner")
    copied = clone_account(chain, chain.exchange, chain.program_id)
    case.rejected([insurance_ix(chain, USD, exchange=copied)], funder, "ExchangeWrongPda")
    case.rejected([insurance_ix(chain, USD, exchange=chain.market_pda(0)[0])], funder,
                  "ExchangeWrongSize")  # fmt: skip
    ix = insurance_ix(chain, USD)
    readonly = list(ix.accounts)
    readonly[0] = AccountMeta(chain.exchange, False, False)
    case.rejected([Instruction(ix.program_id, ix.data, readonly)], funder, "AccountNotWritable")


def test_deposit_insurance_beyond_the_funders_tokens_changes_nothing(case: Case) -> None:
    # the Token program refuses the transfer (its InsufficientFunds); the program wrote nothing
    chain = case.chain
    poor = key(31)
    chain.svm.airdrop(poor.pubkey(), SOL)
    chain.users[31] = poor
    chain.owner_tokens[31] = chain.token_account(poor.pubkey(), poor)  # empty
    before = chain.snapshot(case.watched())
    result = chain.send([insurance_ix(chain, USD, funder=31)], [poor])
    assert custom_error(result) == TOKEN_INSUFFICIENT_FUNDS
    assert chain.snapshot(case.watched()) == before


# ------------------------------------------------------------------ deposit


def deposit_ix(chain: Chain, i: int, amount: int, **accounts: Pubkey) -> Instruction:
    ix = chain.deposit_ix(i, amount)
    names = ["exchange", "user", "owner", "owner_token", "vault", "token_program", "system_program"]
    metas = list(ix.accounts)
    for name, pubkey in accounts.items():
        m = metas[names.index(name)]
        metas[names.index(name)] = AccountMeta(pubkey, m.is_signer, m.is_writable)
    return Instruction(ix.program_id, ix.data, metas)


def test_deposit_refuses_zero_overflow_and_wrong_token_accounts(case: Case) -> None:
    chain, owner = case.chain, [case.chain.users[0]]
    case.rejected([deposit_ix(chain, 0, 0)], owner, "AmountZero")
    case.rejected([deposit_ix(chain, 0, I64_MAX + 1)], owner, "CollateralOverflow")
    # 10,000 USD of collateral: i64 max - collateral + 1 no longer fits
    case.rejected([deposit_ix(chain, 0, I64_MAX - 10_000 * USD + 1)], owner, "CollateralOverflow")
    case.rejected([deposit_ix(chain, 0, USD, vault=chain.insurance_vault)], owner, "VaultMismatch")
    case.rejected([deposit_ix(chain, 0, USD, token_program=SYSTEM_PROGRAM)], owner,
                  "TokenProgramMismatch")  # fmt: skip
    case.rejected([deposit_ix(chain, 0, USD, system_program=TOKEN_PROGRAM_ID)], owner,
                  "SystemProgramMismatch")  # fmt: skip
    other_mint = case.other_mint_account(chain.users[0])
    case.rejected([deposit_ix(chain, 0, USD, owner_token=other_mint)], owner,
                  "TokenAccountMintMismatch")  # fmt: skip
    case.rejected([deposit_ix(chain, 0, USD, owner_token=chain.owner_tokens[1])], owner,
                  "SourceNotOwner")  # fmt: skip


def test_deposit_refuses_a_missing_signer_and_foreign_or_wrong_user_accounts(case: Case) -> None:
    chain, owner = case.chain, [case.chain.users[0]]
    case.rejected([with_meta(chain.deposit_ix(0, USD), 2, signer=False)], [chain.authority],
                  "OwnerNotSigner")  # fmt: skip
    user1 = chain.user_pda(chain.users[1].pubkey())[0]
    case.rejected([deposit_ix(chain, 0, USD, user=user1)], owner, "UserWrongPda")
    foreign = clone_account(chain, chain.user_pda(chain.users[0].pubkey())[0], chain.mint)
    case.rejected([deposit_ix(chain, 0, USD, user=foreign)], owner, "UserWrongOwner")
    copied = clone_account(chain, chain.user_pda(chain.users[0].pubkey())[0], chain.program_id)
    case.rejected([deposit_ix(chain, 0, USD, user=copied)], owner, "UserWrongPda")
    case.rejected([deposit_ix(chain, 0, USD, exchange=clone_account(chain, chain.exchange,
                                                                   SYSTEM_PROGRAM))],
                  owner, "ExchangeWrongOwner")  # fmt: skip
    # first deposit (creates the User): the address must be the owner's PDA with its bump
    newcomer = chain.users[FUNDER]
    user, bump = chain.user_pda(newcomer.pubkey())
    case.extra.append(user)
    ix = chain.deposit_ix(FUNDER, USD)
    wrong_bump = chain.ix(
        "deposit", USD, (bump - 1) % 256,
        accounts={"exchange": chain.exchange, "user": user, "owner": newcomer.pubkey(),
                  "owner_token": chain.owner_tokens[FUNDER], "vault": chain.vault,
                  "token_program": TOKEN_PROGRAM_ID, "system_program": SYSTEM_PROGRAM},
    )  # fmt: skip
    case.rejected([wrong_bump], [newcomer], "UserWrongPda")
    case.rejected([with_meta(ix, 1, pubkey=Keypair().pubkey())], [newcomer], "UserWrongPda")
    chain.ok([ix], [newcomer])
    assert chain.decode(user).collateral_quote == USD


# ------------------------------------------------------------------ withdraw (escape hatch)


def test_withdraw_refuses_wrong_token_accounts_and_vault_keys(case: Case) -> None:
    chain, owner = case.chain, [case.chain.users[0]]
    chain.operator_inactive()
    ix = chain.withdraw_ix(0, USD)  # exchange, user, owner, owner_token, vault, authority, token
    other_mint = case.other_mint_account(chain.users[0])
    cases = [
        (with_meta(ix, 3, pubkey=other_mint), "TokenAccountMintMismatch"),
        (with_meta(ix, 3, pubkey=chain.mint), "TokenAccountBadLayout"),
        (with_meta(ix, 4, pubkey=chain.insurance_vault), "VaultMismatch"),
        (with_meta(ix, 5, pubkey=Keypair().pubkey()), "VaultAuthorityWrongPda"),
        (with_meta(ix, 6, pubkey=SYSTEM_PROGRAM), "TokenProgramMismatch"),
        (chain.withdraw_ix(0, 0), "AmountZero"),
        (with_meta(ix, 0, pubkey=clone_account(chain, chain.exchange, chain.program_id)),
         "ExchangeWrongPda"),
        (with_meta(ix, 1, pubkey=clone_account(chain, chain.user_pda(chain.users[0].pubkey())[0],
                                               SYSTEM_PROGRAM)), "UserWrongOwner"),
    ]  # fmt: skip
    for forged, error in cases:
        case.rejected([forged], owner, error)
    # any token account of the collateral mint the owner names is fine (its own choice)
    chain.ok([with_meta(ix, 3, pubkey=chain.owner_tokens[1])], owner)


# ------------------------------------------------------------------ update_funding


def test_update_funding_refuses_signers_forged_accounts_and_an_overflowing_index(
    case: Case,
) -> None:
    chain, operator = case.chain, [case.chain.operator]
    ix = chain.funding_ix(1, 1_000, 100 * USD)
    case.rejected([with_meta(ix, 2, signer=False)], [chain.authority], "OperatorNotSigner")
    case.rejected([with_meta(ix, 2, pubkey=chain.authority.pubkey())], [chain.authority],
                  "OperatorMismatch")  # fmt: skip
    market = chain.market_pda(0)[0]
    case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, market, SYSTEM_PROGRAM))],
                  operator, "MarketWrongOwner")  # fmt: skip
    case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, market, chain.program_id))],
                  operator, "MarketWrongPda")  # fmt: skip
    case.rejected([with_meta(ix, 0, pubkey=clone_account(chain, chain.exchange, chain.program_id))],
                  operator, "ExchangeWrongPda")  # fmt: skip
    case.rejected([with_meta(ix, 1, pubkey=chain.user_pda(chain.users[0].pubkey())[0])],
                  operator, "MarketWrongSize")  # fmt: skip
    case.rejected([chain.funding_ix(1, -1_000_001, 100 * USD)], operator, "FundingRateAboveCap")
    # an index one step from the i128 edge (a value no real history reaches in one step)
    account = chain.svm.get_account(market)
    assert account is not None
    data = bytearray(account.data)
    at = field_offset("Market", "cumulative_funding")
    data[at : at + 16] = (2**127 - 1).to_bytes(16, "little", signed=True)
    chain.svm.set_account(market, Account(account.lamports, bytes(data), account.owner, False, 0))
    case.rejected([chain.funding_ix(1, 1_000, 100 * USD)], operator, "FundingIndexOverflow")


# ------------------------------------------------------------------ set_market_status, create_market


def test_set_market_status_refuses_a_missing_signer_and_forged_accounts(case: Case) -> None:
    chain = case.chain
    market = chain.market_pda(0)[0]
    ix = chain.ix("set_market_status", 4, accounts={"exchange": chain.exchange, "market": market,
                                                    "signer": chain.authority.pubkey()})  # fmt: skip
    case.rejected([with_meta(ix, 2, signer=False)], [chain.operator], "AuthorityNotSigner")
    case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, market, SYSTEM_PROGRAM))],
                  [chain.authority], "MarketWrongOwner")  # fmt: skip
    case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, market, chain.program_id))],
                  [chain.authority], "MarketWrongPda")  # fmt: skip
    case.rejected([with_meta(ix, 0, pubkey=clone_account(chain, chain.exchange, SYSTEM_PROGRAM))],
                  [chain.authority], "ExchangeWrongOwner")  # fmt: skip


def test_create_market_refuses_a_missing_signer_a_wrong_pda_and_a_fake_oracle(case: Case) -> None:
    chain, authority = case.chain, [case.chain.authority]
    market1, bump = chain.market_pda(1)
    case.extra.append(market1)
    ix = chain.create_market_ix(1)
    case.rejected([with_meta(ix, 2, signer=False)], [chain.operator], "AuthorityNotSigner")
    case.rejected([with_meta(ix, 1, pubkey=Keypair().pubkey())], authority, "MarketWrongPda")
    wrong_bump = chain.ix(
        "create_market", chain.market_params(1), (bump - 1) % 256,
        accounts={"exchange": chain.exchange, "market": market1,
                  "authority": chain.authority.pubkey(), "oracle": chain.oracle,
                  "system_program": SYSTEM_PROGRAM},
    )  # fmt: skip
    case.rejected([wrong_bump], authority, "MarketWrongPda")
    case.rejected([with_meta(ix, 4, pubkey=TOKEN_PROGRAM_ID)], authority, "SystemProgramMismatch")
    forged_oracle = chain.set_oracle(owner=SYSTEM_PROGRAM, address=Keypair().pubkey())
    case.rejected([with_meta(ix, 3, pubkey=forged_oracle)], authority, "OracleWrongOwner")
    case.rejected([chain.create_market_ix(1, oracle_feed_id=[7] * 32)], authority,
                  "OracleFeedMismatch")  # fmt: skip
    chain.ok([ix], authority)
    # re-initialisation: the created Market cannot be created again (also as index 1 again)
    case.rejected([chain.create_market_ix(1)], authority, "MarketIndexMismatch")


# ------------------------------------------------------------------ initialize


def test_initialize_refuses_a_missing_signer_forged_pdas_and_vaults() -> None:
    chain = make_chain(initialize=False)
    case = Case(chain)
    case.extra += [chain.vault, chain.insurance_vault, chain.vault_authority]
    ix = chain.initialize_ix(ESCAPE_HATCH_SLOTS)
    # exchange, authority, collateral_mint, vault, insurance_vault, vault_authority, system
    stranger_vault = chain.token_account(chain.authority.pubkey(), chain.authority)
    wrong_bump = chain.ix(
        "initialize", chain.operator.pubkey(), (chain.exchange_bump - 1) % 256, chain.vault_bump,
        ESCAPE_HATCH_SLOTS,
        accounts={"exchange": chain.exchange, "authority": chain.authority.pubkey(),
                  "collateral_mint": chain.mint, "vault": chain.vault,
                  "insurance_vault": chain.insurance_vault, "vault_authority": chain.vault_authority,
                  "system_program": SYSTEM_PROGRAM},
    )  # fmt: skip
    cases = [
        (with_meta(ix, 1, signer=False), [chain.operator], "AuthorityNotSigner"),
        (with_meta(ix, 0, pubkey=Keypair().pubkey()), [chain.authority], "ExchangeWrongPda"),
        (wrong_bump, [chain.authority], "ExchangeWrongPda"),
        (with_meta(ix, 5, pubkey=Keypair().pubkey()), [chain.authority], "VaultAuthorityWrongPda"),
        (with_meta(ix, 2, pubkey=chain.vault), [chain.authority], "MintBadLayout"),
        (with_meta(ix, 4, pubkey=chain.vault), [chain.authority], "VaultMismatch"),
        (with_meta(ix, 3, pubkey=stranger_vault), [chain.authority], "VaultNotOwnedByAuthority"),
        (with_meta(ix, 3, pubkey=chain.mint), [chain.authority], "TokenAccountBadLayout"),
        (with_meta(ix, 6, pubkey=TOKEN_PROGRAM_ID), [chain.authority], "SystemProgramMismatch"),
    ]
    for forged, signers, error in cases:
        case.rejected([forged], signers, error)
    chain.ok([ix], [chain.authority])
    case.rejected([ix], [chain.authority], "ExchangeAlreadyInitialized")


# ------------------------------------------------------------------ governance


@pytest.fixture
def gov_case(case: Case) -> Case:
    """``case`` plus Governance (council of two, threshold 1), proposal 0 pending (global)."""
    chain = case.chain
    for k in [*COUNCIL, GUARDIAN]:
        chain.svm.airdrop(k.pubkey(), 10 * SOL)
    chain.ok([initialize_governance_ix(
        chain.program, exchange=chain.exchange, authority=chain.authority.pubkey(),
        council=[k.pubkey() for k in COUNCIL], threshold=1, guardian=GUARDIAN.pubkey(),
        timelock_seconds=TIMELOCK_S, max_leverage_cap=20,
        escape_hatch_slots=ESCAPE_HATCH_SLOTS)], [chain.authority])  # fmt: skip
    chain.ok([propose_ix(chain.program, proposal_id=0, proposer=COUNCIL[0].pubkey(),
                         global_params=global_params(2 * ESCAPE_HATCH_SLOTS))], [COUNCIL[0]])  # fmt: skip
    return case


def global_params(escape_hatch_slots: int) -> dict[str, Any]:
    return {"timelock_seconds": TIMELOCK_S, "max_leverage_cap": 20, "padding": [0] * 4,
            "escape_hatch_slots": escape_hatch_slots}  # fmt: skip


def test_initialize_governance_refuses_a_missing_signer_and_a_wrong_pda(case: Case) -> None:
    chain = case.chain
    ix = initialize_governance_ix(
        chain.program, exchange=chain.exchange, authority=chain.authority.pubkey(),
        council=[k.pubkey() for k in COUNCIL], threshold=1, guardian=GUARDIAN.pubkey(),
        timelock_seconds=TIMELOCK_S, max_leverage_cap=20, escape_hatch_slots=ESCAPE_HATCH_SLOTS)  # fmt: skip
    case.rejected([with_meta(ix, 2, signer=False)], [chain.operator], "AuthorityNotSigner")
    case.rejected([with_meta(ix, 1, pubkey=Keypair().pubkey())], [chain.authority],
                  "GovernanceWrongPda")  # fmt: skip
    case.rejected([with_meta(ix, 0, pubkey=clone_account(chain, chain.exchange, chain.program_id))],
                  [chain.authority], "ExchangeWrongPda")  # fmt: skip
    case.rejected([with_meta(ix, 3, pubkey=TOKEN_PROGRAM_ID)], [chain.authority],
                  "SystemProgramMismatch")  # fmt: skip


def test_propose_refuses_a_wrong_or_taken_proposal_account(gov_case: Case) -> None:
    chain = gov_case.chain
    ix = propose_ix(chain.program, proposal_id=1, proposer=COUNCIL[0].pubkey(),
                    global_params=global_params(ESCAPE_HATCH_SLOTS))  # fmt: skip
    gov_case.rejected([with_meta(ix, 1, pubkey=Keypair().pubkey())], [COUNCIL[0]],
                      "ProposalWrongPda")  # fmt: skip
    # proposal 0's account in proposal 1's place: already a program account (re-initialisation)
    gov_case.rejected([with_meta(ix, 1, pubkey=proposal_pda(chain.program_id, 0)[0])],
                      [COUNCIL[0]], "ProposalWrongOwner")  # fmt: skip
    governance = governance_pda(chain.program_id)[0]
    gov_case.rejected([with_meta(ix, 0, pubkey=clone_account(chain, governance, SYSTEM_PROGRAM))],
                      [COUNCIL[0]], "GovernanceWrongOwner")  # fmt: skip
    gov_case.rejected([with_meta(ix, 0, pubkey=chain.exchange)], [COUNCIL[0]],
                      "GovernanceWrongSize")  # fmt: skip
    chain.ok([ix], [COUNCIL[0]])


def test_approve_and_cancel_refuse_missing_signers_and_forged_proposals(gov_case: Case) -> None:
    chain = gov_case.chain
    proposal = proposal_pda(chain.program_id, 0)[0]
    approve = approve_ix(chain.program, proposal_id=0, member=COUNCIL[1].pubkey())
    cancel = cancel_ix(chain.program, proposal_id=0, signer=COUNCIL[1].pubkey())
    for ix in (approve, cancel):
        gov_case.rejected([with_meta(ix, 2, signer=False)], [GUARDIAN], "CouncilNotSigner")
        gov_case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, proposal, SYSTEM_PROGRAM))],
                          [COUNCIL[1]], "ProposalWrongOwner")  # fmt: skip
        gov_case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, proposal, chain.program_id))],
                          [COUNCIL[1]], "ProposalWrongPda")  # fmt: skip
        gov_case.rejected([with_meta(ix, 1, pubkey=chain.market_pda(0)[0])], [COUNCIL[1]],
                          "ProposalWrongSize")  # fmt: skip
    guardian_cancel = cancel_ix(chain.program, proposal_id=0, signer=GUARDIAN.pubkey())
    gov_case.rejected([guardian_cancel], [GUARDIAN], "CancelNotAllowed")


def test_a_global_execute_needs_the_real_exchange(gov_case: Case) -> None:
    chain = gov_case.chain
    chain.warp(TIMELOCK_S * 5 // 2 + 1)  # 400 ms slots: past the timelock
    ix = execute_ix(chain.program, proposal_id=0, exchange=True)
    for forged, error in [(clone_account(chain, chain.exchange, SYSTEM_PROGRAM), "ExchangeWrongOwner"),
                          (clone_account(chain, chain.exchange, chain.program_id), "ExchangeWrongPda"),
                          (chain.market_pda(0)[0], "ExchangeWrongSize")]:  # fmt: skip
        gov_case.rejected([with_meta(ix, 2, pubkey=forged)], [GUARDIAN], error)
    chain.ok([ix], [GUARDIAN])  # anyone sends it
    assert chain.decode(chain.exchange).escape_hatch_slots == 2 * ESCAPE_HATCH_SLOTS
    gov_case.rejected([execute_ix(chain.program, proposal_id=0, exchange=True)], [GUARDIAN],
                      "ProposalNotPending")  # replayed  # fmt: skip


def test_guardian_set_status_refuses_forged_markets_and_governance(gov_case: Case) -> None:
    chain = gov_case.chain
    market = chain.market_pda(0)[0]
    ix = guardian_set_status_ix(chain.program, market=market, guardian=GUARDIAN.pubkey(), status=4)
    gov_case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, market, SYSTEM_PROGRAM))],
                      [GUARDIAN], "MarketWrongOwner")  # fmt: skip
    gov_case.rejected([with_meta(ix, 1, pubkey=clone_account(chain, market, chain.program_id))],
                      [GUARDIAN], "MarketWrongPda")  # fmt: skip
    governance = governance_pda(chain.program_id)[0]
    gov_case.rejected([with_meta(ix, 0, pubkey=clone_account(chain, governance, chain.program_id))],
                      [GUARDIAN], "GovernanceWrongPda")  # fmt: skip
    readonly = list(ix.accounts)
    readonly[1] = AccountMeta(market, False, False)
    gov_case.rejected([Instruction(ix.program_id, ix.data, readonly)], [GUARDIAN],
                      "AccountNotWritable")  # fmt: skip
    chain.ok([ix], [GUARDIAN])
    assert chain.decode(market).status == 4


# ------------------------------------------------------------------ every instruction


def zero_args(name: str, *, vec_elements: int = 1) -> bytes:
    """Discriminator plus all-zero Borsh arguments (a ``vec`` with ``vec_elements`` zeros)."""
    ix = next(i for i in SPEC.instructions if i.name == name)
    body = b""
    for arg in ix.args:
        if isinstance(arg.type, Vec):
            element = size_of(SPEC, arg.type.element)
            body += vec_elements.to_bytes(4, "little") + bytes(element * vec_elements)
        else:
            body += bytes(size_of(SPEC, arg.type))
    return instruction_discriminator(name) + body


@pytest.mark.parametrize("name", [ix.name for ix in SPEC.instructions])
def test_every_instruction_refuses_a_wrong_data_length_and_too_few_accounts(
    case: Case, name: str
) -> None:
    chain, data = case.chain, zero_args(name)
    for wrong in (data + b"\x00", data[:-1]):
        if len(wrong) < 8:  # no arguments to cut short (shorter: not an instruction at all)
            continue
        case.rejected([Instruction(chain.program_id, wrong, [])], [chain.operator],
                      "InstructionDataLength")  # fmt: skip
    case.rejected([Instruction(chain.program_id, data, [])], [chain.operator], "NotEnoughAccounts")


@pytest.mark.parametrize(
    ("account", "ix_name"),
    [("Exchange", "update_funding"), ("Market", "update_funding"), ("User", "settle_fills")],
)
def test_a_program_account_with_another_discriminator_is_refused(
    case: Case, account: str, ix_name: str
) -> None:
    # a copy with a zeroed discriminator (the size and owner right): the discriminator check
    chain = case.chain
    ix = (
        chain.funding_ix(1, 1_000, USD)
        if ix_name == "update_funding"
        else chain.settle_ix(2, [(0, 1, True, 10_000, 1)])
    )
    index, source = {
        "Exchange": (0, chain.exchange),
        "Market": (1, chain.market_pda(0)[0]),
        "User": (3, chain.user_pda(chain.users[0].pubkey())[0]),
    }[account]
    forged = clone_account(chain, source, chain.program_id)
    original = chain.svm.get_account(forged)
    assert original is not None
    chain.svm.set_account(forged, Account(original.lamports, bytes(8) + bytes(original.data)[8:],
                                          original.owner, False, 0))  # fmt: skip
    case.rejected([with_meta(ix, index, pubkey=forged)], [chain.operator],
                  f"{account}BadDiscriminator")  # fmt: skip


def test_a_fill_with_an_unknown_taker_side_is_refused(case: Case) -> None:
    chain = case.chain
    users = [AccountMeta(chain.user_pda(chain.users[u].pubkey())[0], False, True) for u in (0, 1)]
    fill = {"maker": 0, "taker": 1, "taker_side": 2, "price_ticks": 10_000, "num_base_lots": 1}
    ix = chain.ix("settle_fills", 1, 2, 2, [fill],
                  accounts={"exchange": chain.exchange, "market": chain.market_pda(0)[0],
                            "operator": chain.operator.pubkey()},
                  remaining=users)  # fmt: skip
    case.rejected([ix], [chain.operator], "FillBadSide")


def test_withdraw_refuses_another_markets_account_for_a_position(case: Case) -> None:
    chain = case.chain
    chain.ok([chain.create_market_ix(1)], [chain.authority])
    case.extra.append(chain.market_pda(1)[0])
    chain.operator_inactive()
    ix = chain.withdraw_ix(0, USD)  # user 0 holds market 0 only: (Market 0, oracle) follow
    case.rejected([with_meta(ix, 7, pubkey=chain.market_pda(1)[0])], [chain.users[0]],
                  "WithdrawMarketMismatch")  # fmt: skip


@pytest.mark.parametrize(
    ("fills", "error"),
    [
        # two buys of 5e18 base units each: the taker's position passes i64 max
        ([(0, 1, True, 1, 5 * 10**10)] * 2, "PositionOverflow"),
        # three longs of 7e18 each (every position fits): open interest passes u64 max
        ([(0, 1, True, 1, 7 * 10**10), (2, 3, True, 1, 7 * 10**10), (0, 4, True, 1, 7 * 10**10)],
         "OpenInterestOverflow"),
    ],
)  # fmt: skip
def test_fills_that_overflow_a_position_or_the_open_interest_are_refused(
    case: Case, fills: list[tuple[int, int, bool, int, int]], error: str
) -> None:
    chain = case.chain
    for i in (2, 3, 4):
        chain.new_user(i, 10_000 * USD)
    case.rejected([chain.settle_ix(2, fills)], [chain.operator], error)
