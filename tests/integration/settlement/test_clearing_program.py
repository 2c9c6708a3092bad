"""The clearing program (settlement/program/perpdex_clearing.so) on a real SVM, driven by anchorpy.

Instructions are built by anchorpy's ``Program.instruction`` from the generated IDL and sent to
LiteSVM (the runtime the embedded cluster runs) with SPL Token and a real-format Pyth pull oracle
account; accounts are decoded with ``Program.coder``. The results are compared with the Python
ledger (``perp.ledger``) to the unit, and every adversarial case must fail with its own IDL error
and leave every account byte-identical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from anchorpy import Context, Idl, Program, Provider, Wallet
from solana.rpc.async_api import AsyncClient
from solders.account import Account
from solders.clock import Clock
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import FeatureSet, LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata
from spl.token.constants import ACCOUNT_LEN, MINT_LEN, TOKEN_PROGRAM_ID
from spl.token.instructions import (
    InitializeAccountParams,
    InitializeMintParams,
    MintToParams,
    initialize_account,
    initialize_mint,
    mint_to,
)

from exchange.core.units import U64_MAX
from oracle_feeds.encoders import encode_pyth_pull_price_update_v2
from oracle_feeds.layouts import PYTH_RECEIVER_PROGRAM_ID, PythPullAccount
from perp.ledger import Ledger
from perp.margin_check import margin_summary
from perp.math.fees import FeeSchedule
from perp.math.margin import MarginSchedule, MarginTier
from settlement.gen_idl import IDL_PATH
from settlement.spec import ERRORS
from settlement.toolchain.loader_v3 import (
    BUFFER_METADATA_BYTES,
    PROGRAM_ACCOUNT_BYTES,
    deploy_steps,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PROGRAM_SO = ROOT / "settlement" / "program" / "perpdex_clearing.so"
CODES = {e.name: e.code for e in ERRORS}
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
SOL = 1_000_000_000
USD = 1_000_000
FEED_ID = bytes(range(32))
NOW_SLOT, NOW_S = 1_000, 1_700_000_000
ESCAPE_HATCH_SLOTS = 150  # the smallest the program takes

TICK_SIZE = 10_000  # 0.01 USD
LOT_SIZE = 100_000_000  # 0.1 base
FEES = FeeSchedule(maker_ppm=-100, taker_ppm=500, insurance_share_ppm=200_000)
TIERS = [(100_000 * USD, 100_000, 50_000), (U64_MAX, 200_000, 100_000)]
SCHEDULE = MarginSchedule(
    tiers=tuple(
        MarginTier(up_to_notional_quote=u, initial_ppm=i, maintenance_ppm=m) for u, i, m in TIERS
    )
)


def key(i: int) -> Keypair:
    return Keypair.from_seed(bytes([i]) * 32)


@dataclass
class Chain:
    svm: LiteSVM
    program: Program
    program_id: Pubkey
    authority: Keypair
    operator: Keypair
    mint: Pubkey
    vault: Pubkey
    insurance_vault: Pubkey
    vault_authority: Pubkey
    vault_bump: int
    exchange: Pubkey
    exchange_bump: int
    oracle: Pubkey
    users: dict[int, Keypair] = field(default_factory=dict)
    markets: list[Pubkey] = field(default_factory=list)
    now_slot: int = NOW_SLOT  # the SVM clock (warp moves it)
    now_s: int = NOW_S

    # ---------------------------------------------------------------- plumbing
    def send(self, ixs: list[Instruction], signers: list[Keypair]) -> Any:
        tx = Transaction(signers, Message(ixs, signers[0].pubkey()), self.svm.latest_blockhash())
        result = self.svm.send_transaction(tx)
        self.svm.expire_blockhash()
        return result

    def ok(self, ixs: list[Instruction], signers: list[Keypair]) -> Any:
        result = self.send(ixs, signers)
        assert not isinstance(result, FailedTransactionMetadata), (
            f"{result.err()} {list(result.meta().logs())}"
        )
        return result

    def ix(
        self,
        name: str,
        *args: Any,
        accounts: dict[str, Pubkey],
        remaining: list[AccountMeta] | None = None,
    ) -> Instruction:
        return self.program.instruction[name](
            *args, ctx=Context(accounts=accounts, remaining_accounts=remaining or [])
        )

    def decode(self, address: Pubkey) -> Any:
        account = self.svm.get_account(address)
        assert account is not None, address
        return self.program.coder.accounts.decode(bytes(account.data))

    def user_pda(self, owner: Pubkey) -> tuple[Pubkey, int]:
        return Pubkey.find_program_address([b"user", bytes(owner)], self.program_id)

    def market_pda(self, index: int) -> tuple[Pubkey, int]:
        return Pubkey.find_program_address(
            [b"market", index.to_bytes(2, "little")], self.program_id
        )

    def token_account(self, owner: Pubkey, payer: Keypair) -> Pubkey:
        account = Keypair()
        rent = self.svm.minimum_balance_for_rent_exemption(ACCOUNT_LEN)
        self.ok(
            [
                create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=account.pubkey(),
                                                   lamports=rent, space=ACCOUNT_LEN, owner=TOKEN_PROGRAM_ID)),
                initialize_account(InitializeAccountParams(program_id=TOKEN_PROGRAM_ID, account=account.pubkey(),
                                                           mint=self.mint, owner=owner)),
            ],
            [payer, account],
        )  # fmt: skip
        return account.pubkey()

    def set_oracle(self, *, price: int = 10_000_000_000, conf: int = 5_000_000, slot: int | None = None,
                   publish_time: int | None = None, exponent: int = -8,
                   owner: Pubkey = PYTH_RECEIVER_PROGRAM_ID, address: Pubkey | None = None) -> Pubkey:  # fmt: skip
        """A Pyth pull price account, posted now unless ``slot`` / ``publish_time`` say otherwise."""
        data = encode_pyth_pull_price_update_v2(
            PythPullAccount(feed_id=FEED_ID, price=price, conf=conf, exponent=exponent,
                            publish_time=self.now_s if publish_time is None else publish_time,
                            posted_slot=self.now_slot if slot is None else slot)
        )  # fmt: skip
        target = address or self.oracle
        self.svm.set_account(target, Account(SOL, data, owner, False, 0))
        return target

    def warp(self, slots: int) -> None:
        """Move the SVM clock ``slots`` ahead (400 ms each)."""
        self.now_slot += slots
        self.now_s += slots * 2 // 5
        self.svm.set_clock(Clock(self.now_slot, self.now_s, 0, 0, self.now_s))

    def operator_inactive(self, **oracle: Any) -> None:
        """Warp to the first slot at which the wallet's escape-hatch ``withdraw`` is open (the
        operator silent for ``escape_hatch_slots`` + 1 slots) and re-post the oracle there."""
        exchange = self.decode(self.exchange)
        self.warp(exchange.operator_active_slot + exchange.escape_hatch_slots + 1 - self.now_slot)
        self.set_oracle(**oracle)

    def snapshot(self, addresses: list[Pubkey]) -> list[bytes | None]:
        out = []
        for a in addresses:
            account = self.svm.get_account(a)
            out.append(None if account is None else bytes(account.data) + bytes(account.owner))
        return out

    # ---------------------------------------------------------------- instructions
    def market_params(self, index: int) -> dict[str, Any]:
        tiers = [
            {"up_to_notional_quote": u, "initial_ppm": i, "maintenance_ppm": m} for u, i, m in TIERS
        ]
        tiers += [{"up_to_notional_quote": 0, "initial_ppm": 0, "maintenance_ppm": 0}] * (
            4 - len(tiers)
        )
        params = {
            "tick_size": TICK_SIZE, "lot_size": LOT_SIZE, "funding_cap_rate": 1_000_000,
            "oracle_max_age_slots": 50, "oracle_max_age_seconds": 60,
            "maker_fee_ppm": FEES.maker_ppm, "taker_fee_ppm": FEES.taker_ppm,
            "insurance_share_ppm": FEES.insurance_share_ppm, "oracle_max_confidence_ppm": 20_000,
            "oracle_feed_id": list(FEED_ID), "index": index, "oracle_source": 2,
            "num_margin_tiers": len(TIERS), "margin_tiers": tiers,
            # half the first maintenance ratio, the engine's default share and buffer
            "liquidation_fee_ppm": TIERS[0][2] // 2, "liquidator_share_ppm": 500_000,
            "liquidation_buffer_ppm": 10_000,
        }  # fmt: skip
        return params

    def initialize_ix(self, escape_hatch_slots: int) -> Instruction:
        return self.ix(
            "initialize", self.operator.pubkey(), self.exchange_bump, self.vault_bump, escape_hatch_slots,
            accounts={"exchange": self.exchange, "authority": self.authority.pubkey(),
                      "collateral_mint": self.mint, "vault": self.vault,
                      "insurance_vault": self.insurance_vault, "vault_authority": self.vault_authority,
                      "system_program": SYSTEM_PROGRAM},
        )  # fmt: skip

    def create_market_ix(self, market_index: int, **overrides: Any) -> Instruction:
        market, bump = self.market_pda(market_index)
        params = self.market_params(market_index)
        params.update(overrides)
        return self.ix(
            "create_market", params, bump,
            accounts={"exchange": self.exchange, "market": market, "authority": self.authority.pubkey(),
                      "oracle": self.oracle, "system_program": SYSTEM_PROGRAM},
        )  # fmt: skip

    def new_user(self, i: int, amount: int) -> Keypair:
        owner = key(40 + i)
        self.svm.airdrop(owner.pubkey(), 10 * SOL)
        token = self.token_account(owner.pubkey(), owner)
        self.ok([mint_to(MintToParams(program_id=TOKEN_PROGRAM_ID, mint=self.mint, dest=token,
                                      mint_authority=self.authority.pubkey(), amount=10**15))],
                [self.authority])  # fmt: skip
        self.users[i] = owner
        self.owner_tokens[i] = token
        if amount:
            self.ok([self.deposit_ix(i, amount)], [owner])
        return owner

    owner_tokens: dict[int, Pubkey] = field(default_factory=dict)

    def deposit_ix(self, i: int, amount: int) -> Instruction:
        owner = self.users[i]
        user, bump = self.user_pda(owner.pubkey())
        return self.ix(
            "deposit", amount, bump,
            accounts={"exchange": self.exchange, "user": user, "owner": owner.pubkey(),
                      "owner_token": self.owner_tokens[i], "vault": self.vault,
                      "token_program": TOKEN_PROGRAM_ID, "system_program": SYSTEM_PROGRAM},
        )  # fmt: skip

    def withdraw_ix(self, i: int, amount: int, *, oracle: Pubkey | None = None) -> Instruction:
        owner = self.users[i]
        user, _ = self.user_pda(owner.pubkey())
        state = self.decode(user)
        remaining = []
        for position in state.positions:
            if position.in_use:
                remaining += [AccountMeta(self.market_pda(position.market_index)[0], False, True),
                              AccountMeta(oracle or self.oracle, False, False)]  # fmt: skip
        return self.ix(
            "withdraw", amount,
            accounts={"exchange": self.exchange, "user": user, "owner": owner.pubkey(),
                      "owner_token": self.owner_tokens[i], "vault": self.vault,
                      "vault_authority": self.vault_authority, "token_program": TOKEN_PROGRAM_ID},
            remaining=remaining,
        )  # fmt: skip

    def settle_ix(self, sequence: int, fills: list[tuple[int, int, bool, int, int]], *, market_index: int = 0,
                  operator: Pubkey | None = None, previous: int | None = None,
                  first: int | None = None) -> Instruction:  # fmt: skip
        """fills: (maker user, taker user, taker buys, price_ticks, lots); the batch continues
        the Market's settled sequence unless ``previous`` says otherwise; ``first`` defaults to
        ``sequence``."""
        if previous is None:
            previous = self.decode(self.market_pda(market_index)[0]).last_settled_sequence
        order: list[int] = []
        for maker, taker, *_ in fills:
            for u in (maker, taker):
                if u not in order:
                    order.append(u)
        encoded = [
            {"maker": order.index(m), "taker": order.index(t), "taker_side": 0 if buys else 1,
             "price_ticks": ticks, "num_base_lots": lots}
            for m, t, buys, ticks, lots in fills
        ]  # fmt: skip
        remaining = [
            AccountMeta(self.user_pda(self.users[u].pubkey())[0], False, True) for u in order
        ]
        return self.ix(
            "settle_fills", previous, sequence if first is None else first, sequence, encoded,
            accounts={"exchange": self.exchange, "market": self.market_pda(market_index)[0],
                      "operator": operator or self.operator.pubkey()},
            remaining=remaining,
        )  # fmt: skip

    def funding_ix(self, sequence: int, rate: int, index_price: int) -> Instruction:
        return self.ix(
            "update_funding", sequence, rate, index_price,
            accounts={"exchange": self.exchange, "market": self.market_pda(0)[0],
                      "operator": self.operator.pubkey()},
        )  # fmt: skip


def custom_error(result: Any) -> int:
    assert isinstance(result, FailedTransactionMetadata), "expected the transaction to fail"
    match = re.search(r"Custom\((\d+)\)", str(result.err()))
    assert match, f"expected a custom program error, got {result.err()}"
    return int(match.group(1))


@pytest.fixture
def chain() -> Chain:
    return make_chain()


def make_chain(*, initialize: bool = True) -> Chain:
    """SPL mint and vaults, the program, ``initialize`` and market 0 on a fresh LiteSVM (only
    the mint, vaults and program without ``initialize``)."""
    svm = LiteSVM().with_sigverify(True)
    program_id = key(1).pubkey()
    svm.add_program(program_id, PROGRAM_SO.read_bytes())
    svm.set_clock(Clock(NOW_SLOT, NOW_S, 0, 0, NOW_S))
    idl = Idl.from_json(IDL_PATH.read_text())
    program = Program(idl, program_id, Provider(AsyncClient("http://127.0.0.1:1"), Wallet.dummy()))
    authority, operator = key(2), key(3)
    svm.airdrop(authority.pubkey(), 100 * SOL)
    svm.airdrop(operator.pubkey(), 100 * SOL)
    mint = key(4)
    vault_authority, vault_bump = Pubkey.find_program_address([b"vault"], program_id)
    exchange, exchange_bump = Pubkey.find_program_address([b"exchange"], program_id)
    c = Chain(svm, program, program_id, authority, operator, mint.pubkey(), Pubkey.default(),
              Pubkey.default(), vault_authority, vault_bump, exchange, exchange_bump, key(5).pubkey())  # fmt: skip
    c.ok(
        [
            create_account(CreateAccountParams(from_pubkey=authority.pubkey(), to_pubkey=mint.pubkey(),
                                               lamports=svm.minimum_balance_for_rent_exemption(MINT_LEN),
                                               space=MINT_LEN, owner=TOKEN_PROGRAM_ID)),
            initialize_mint(InitializeMintParams(decimals=6, program_id=TOKEN_PROGRAM_ID, mint=mint.pubkey(),
                                                 mint_authority=authority.pubkey())),
        ],
        [authority, mint],
    )  # fmt: skip
    c.vault = c.token_account(vault_authority, authority)
    c.insurance_vault = c.token_account(vault_authority, authority)
    c.set_oracle()
    if initialize:
        c.ok([c.initialize_ix(ESCAPE_HATCH_SLOTS)], [authority])
        c.ok([c.create_market_ix(0)], [authority])
    return c


# ------------------------------------------------------------------ happy path vs the Python ledger


def test_fills_funding_and_withdrawal_match_the_python_ledger_to_the_unit(chain: Chain) -> None:
    # Arrange: three users with collateral, the same operations on the Python ledger
    ledger = Ledger()
    for i, amount in enumerate([50_000 * USD, 40_000 * USD, 30_000 * USD]):
        chain.new_user(i, amount)
        ledger.deposit(i, amount)
    batches = [
        [(0, 1, True, 10_000, 25), (0, 2, False, 10_001, 7), (1, 2, True, 9_999, 3)],
        [(2, 0, True, 10_050, 40), (1, 0, False, 10_020, 12)],
        [(0, 1, True, 9_990, 60), (2, 1, True, 10_010, 1), (0, 2, False, 10_000, 33)],
    ]
    fundings = [(123_457, 100_000_123), (-987_654, 99_999_999), (1_000_000, 101_234_567)]
    # Act
    for seq, (batch, (rate, index_price)) in enumerate(zip(batches, fundings), start=1):
        chain.ok([chain.settle_ix(seq, batch)], [chain.operator])
        for maker, taker, buys, ticks, lots in batch:
            price, base = ticks * TICK_SIZE, lots * LOT_SIZE
            ledger.trade(0, maker, taker, buys, base, price * base // 10**9, FEES)
        chain.ok([chain.funding_ix(seq, rate, index_price)], [chain.operator])
        ledger.accrue_funding(0, rate, index_price)
    ledger.settle(1, 0)
    collateral_before = ledger.collateral[1]
    oracle_price = 100 * USD
    summary = margin_summary(ledger.collateral[1], {0: ledger.position(1, 0)}, {}, {0: oracle_price},
                             {0: SCHEDULE})  # fmt: skip
    free = min(summary.free_collateral_quote, ledger.collateral[1])
    chain.operator_inactive()  # the wallet's own withdraw is the escape hatch
    refused = chain.send([chain.withdraw_ix(1, free + 1)], [chain.users[1]])
    chain.ok([chain.withdraw_ix(1, free)], [chain.users[1]])
    ledger.withdraw(1, free)
    # Assert
    assert custom_error(refused) == CODES["InsufficientFreeCollateral"]
    assert 0 < free < collateral_before
    for i in range(3):  # users 0 and 2 owe the last funding lazily, on both sides
        state = chain.decode(chain.user_pda(chain.users[i].pubkey())[0])
        slot = next(p for p in state.positions if p.in_use)
        expected = ledger.position(i, 0)
        assert (state.collateral_quote, slot.base, slot.entry_quote, slot.realized_pnl_quote) == (
            ledger.collateral[i],
            expected.base,
            expected.entry_quote,
            expected.realized_pnl,
        )
        assert slot.funding_snapshot == expected.funding_snapshot
    exchange = chain.decode(chain.exchange)
    market = chain.decode(chain.market_pda(0)[0])
    assert exchange.fee_pool_quote == ledger.fee_pool_quote
    assert exchange.insurance_fund_quote == ledger.insurance_fund_quote
    assert market.funding_pool_quote == ledger.funding[0].pool_quote
    assert market.funding_surplus_numerator == ledger.funding[0].surplus_numerator
    assert market.cumulative_funding == ledger.funding[0].cumulative_funding
    assert market.last_settled_sequence == 3 and market.last_funding_sequence == 3
    assert exchange.net_deposits_quote == ledger.net_deposits_quote


# ------------------------------------------------------------------ adversarial


def watched(chain: Chain) -> list[Pubkey]:
    users = [chain.user_pda(u.pubkey())[0] for u in chain.users.values()]
    return [chain.exchange, chain.market_pda(0)[0], chain.vault, chain.oracle, *users,
            *chain.owner_tokens.values()]  # fmt: skip


def assert_rejected(
    chain: Chain, ixs: list[Instruction], signers: list[Keypair], error: str
) -> None:
    before = chain.snapshot(watched(chain))
    result = chain.send(ixs, signers)
    assert custom_error(result) == CODES[error], list(result.meta().logs())
    assert chain.snapshot(watched(chain)) == before, "a rejected instruction changed an account"


@pytest.fixture
def traded(chain: Chain) -> Chain:
    """Two users with collateral and opposite positions after batch 1."""
    chain.new_user(0, 10_000 * USD)
    chain.new_user(1, 10_000 * USD)
    chain.ok([chain.settle_ix(1, [(0, 1, True, 10_000, 50)])], [chain.operator])
    return chain


def with_meta(
    ix: Instruction, index: int, *, signer: bool | None = None, pubkey: Pubkey | None = None
) -> Instruction:
    metas = list(ix.accounts)
    m = metas[index]
    metas[index] = AccountMeta(
        pubkey or m.pubkey, m.is_signer if signer is None else signer, m.is_writable
    )
    return Instruction(ix.program_id, ix.data, metas)


def clone_account(chain: Chain, source: Pubkey, owner: Pubkey) -> Pubkey:
    account = chain.svm.get_account(source)
    assert account is not None
    target = Keypair().pubkey()
    chain.svm.set_account(target, Account(account.lamports, bytes(account.data), owner, False, 0))
    return target


def test_a_replayed_or_out_of_order_batch_is_refused(traded: Chain) -> None:
    assert_rejected(traded, [traded.settle_ix(1, [(0, 1, True, 10_000, 1)])], [traded.operator],
                    "SequenceNotIncreasing")  # fmt: skip
    assert_rejected(traded, [traded.settle_ix(0, [(0, 1, True, 10_000, 1)])], [traded.operator],
                    "SequenceNotIncreasing")  # fmt: skip
    traded.ok([traded.settle_ix(7, [(0, 1, True, 10_000, 1)])], [traded.operator])  # gaps are fine
    assert_rejected(traded, [traded.settle_ix(6, [(0, 1, True, 10_000, 1)])], [traded.operator],
                    "SequenceNotIncreasing")  # fmt: skip


def test_a_batch_must_continue_the_settled_sequence(traded: Chain) -> None:
    # settled: 1; a batch claiming another predecessor, or a first fill outside its range
    fills = [(0, 1, True, 10_000, 1)]
    assert_rejected(traded, [traded.settle_ix(3, fills, previous=0, first=2)], [traded.operator],
                    "BatchNotContiguous")  # fmt: skip
    assert_rejected(traded, [traded.settle_ix(3, fills, previous=2, first=3)], [traded.operator],
                    "BatchNotContiguous")  # fmt: skip
    assert_rejected(traded, [traded.settle_ix(3, fills, first=1)], [traded.operator],
                    "BatchSequenceRange")  # fmt: skip
    assert_rejected(traded, [traded.settle_ix(3, fills, first=4)], [traded.operator],
                    "BatchSequenceRange")  # fmt: skip
    traded.ok([traded.settle_ix(3, fills, first=2)], [traded.operator])
    assert traded.decode(traded.market_pda(0)[0]).last_settled_sequence == 3


@pytest.mark.parametrize("smaller_lands_first", [True, False])
def test_two_batches_built_from_one_progress_point_never_both_land(
    traded: Chain, smaller_lands_first: bool
) -> None:
    # Arrange: a dead process's batch (fills 2..3) still in flight, and its successor's larger
    # batch (fills 2..5) over the same journal, both built while the chain stood at 1
    fills = [(0, 1, True, 10_000, 2), (1, 0, True, 10_010, 3), (0, 1, False, 9_990, 1),
             (1, 0, False, 10_000, 4)]  # fmt: skip
    smaller = traded.settle_ix(3, fills[:2], previous=1, first=2)
    larger = traded.settle_ix(5, fills, previous=1, first=2)
    first_ix, second_ix = (smaller, larger) if smaller_lands_first else (larger, smaller)
    # Act
    traded.ok([first_ix], [traded.operator])
    landed = traded.snapshot(watched(traded))
    second = traded.send([second_ix], [traded.operator])
    # Assert: the second is refused with its own error and changes nothing
    expected = "BatchNotContiguous" if smaller_lands_first else "SequenceNotIncreasing"
    assert custom_error(second) == CODES[expected]
    assert traded.snapshot(watched(traded)) == landed
    user0 = traded.decode(traded.user_pda(traded.users[0].pubkey())[0])
    base = next(p.base for p in user0.positions if p.in_use)
    applied = fills[:2] if smaller_lands_first else fills
    expected_base = -50 * LOT_SIZE + sum(
        (1 if (maker == 0) != buys else -1) * lots * LOT_SIZE for maker, _, buys, _, lots in applied
    )  # user 0 is the maker of batch 1 (sold 50 lots)
    assert base == expected_base


def test_settle_refuses_a_missing_or_wrong_operator_signature(traded: Chain) -> None:
    unsigned = with_meta(traded.settle_ix(2, [(0, 1, True, 10_000, 1)]), 2, signer=False)
    assert_rejected(traded, [unsigned], [traded.authority], "OperatorNotSigner")
    wrong = traded.settle_ix(2, [(0, 1, True, 10_000, 1)], operator=traded.authority.pubkey())
    assert_rejected(traded, [wrong], [traded.authority], "OperatorMismatch")


def test_settle_refuses_foreign_and_wrong_pda_accounts(traded: Chain) -> None:
    ix = traded.settle_ix(2, [(0, 1, True, 10_000, 1)])
    foreign = clone_account(traded, traded.market_pda(0)[0], SYSTEM_PROGRAM)
    assert_rejected(
        traded, [with_meta(ix, 1, pubkey=foreign)], [traded.operator], "MarketWrongOwner"
    )
    not_pda = clone_account(traded, traded.market_pda(0)[0], traded.program_id)
    assert_rejected(traded, [with_meta(ix, 1, pubkey=not_pda)], [traded.operator], "MarketWrongPda")
    fake_exchange = clone_account(traded, traded.exchange, traded.program_id)
    assert_rejected(
        traded, [with_meta(ix, 0, pubkey=fake_exchange)], [traded.operator], "ExchangeWrongPda"
    )
    fake_user = clone_account(traded, traded.user_pda(traded.users[0].pubkey())[0], SYSTEM_PROGRAM)
    assert_rejected(
        traded, [with_meta(ix, 3, pubkey=fake_user)], [traded.operator], "UserWrongOwner"
    )
    market_as_user = with_meta(ix, 3, pubkey=traded.market_pda(0)[0])
    assert_rejected(traded, [market_as_user], [traded.operator], "UserWrongSize")


@pytest.mark.parametrize(
    ("fills", "error"),
    [
        ([(0, 1, True, U64_MAX, 1)], "FillValueOverflow"),
        ([(0, 1, True, 1, U64_MAX)], "FillValueOverflow"),
        ([(0, 1, True, 2**40, 2**30)], "FillValueOverflow"),
        ([(0, 0, True, 10_000, 1)], "FillSelfTrade"),
        ([(0, 1, True, 0, 1)], "FillZeroSize"),
        ([(0, 1, True, 10_000, 0)], "FillZeroSize"),
        ([], "FillBatchEmpty"),
        ([(0, 1, True, 10_000, 1)] * 65, "FillBatchTooLarge"),
    ],
)
def test_settle_refuses_bad_fills(traded: Chain, fills: list[Any], error: str) -> None:
    assert_rejected(traded, [traded.settle_ix(2, fills)], [traded.operator], error)


def test_settle_refuses_a_fill_pointing_past_the_user_accounts(traded: Chain) -> None:
    ix = traded.settle_ix(2, [(0, 1, True, 10_000, 1)])
    trimmed = Instruction(ix.program_id, ix.data, list(ix.accounts)[:4])  # only the maker
    assert_rejected(traded, [trimmed], [traded.operator], "FillUserIndexOutOfRange")


def test_withdraw_beyond_collateral_or_free_collateral_is_refused(traded: Chain) -> None:
    traded.new_user(2, 1_000 * USD)  # no position: free == collateral
    traded.operator_inactive()
    assert_rejected(traded, [traded.withdraw_ix(2, 1_000 * USD + 1)], [traded.users[2]],
                    "InsufficientCollateral")  # fmt: skip
    traded.ok([traded.withdraw_ix(2, 1_000 * USD)], [traded.users[2]])
    assert_rejected(traded, [traded.withdraw_ix(0, 10_000 * USD)], [traded.users[0]],
                    "InsufficientFreeCollateral")  # fmt: skip


@pytest.mark.parametrize(
    ("oracle", "error"),
    [
        ({"owner": SYSTEM_PROGRAM}, "OracleWrongOwner"),
        ({"slot": -51}, "OracleStaleSlots"),  # slot, publish_time: relative to now
        ({"publish_time": -61}, "OracleStaleSeconds"),
        ({"conf": 300_000_000}, "OracleConfidenceTooWide"),
        ({"price": -1}, "OracleNonPositivePrice"),
        ({"exponent": -40}, "OracleExponentOutOfRange"),
    ],
)
def test_withdraw_refuses_a_bad_oracle(traded: Chain, oracle: dict[str, Any], error: str) -> None:
    traded.operator_inactive()
    oracle = dict(oracle)
    if "slot" in oracle:
        oracle["slot"] += traded.now_slot
    if "publish_time" in oracle:
        oracle["publish_time"] += traded.now_s
    traded.set_oracle(**oracle)
    assert_rejected(traded, [traded.withdraw_ix(0, 1 * USD)], [traded.users[0]], error)


def test_withdraw_refuses_another_oracle_account_and_a_foreign_layout(traded: Chain) -> None:
    traded.operator_inactive()
    other = traded.set_oracle(address=Keypair().pubkey())
    assert_rejected(traded, [traded.withdraw_ix(0, 1 * USD, oracle=other)], [traded.users[0]],
                    "OracleMismatch")  # fmt: skip
    traded.svm.set_account(
        traded.oracle, Account(SOL, bytes(134), PYTH_RECEIVER_PROGRAM_ID, False, 0)
    )
    assert_rejected(traded, [traded.withdraw_ix(0, 1 * USD)], [traded.users[0]], "OracleBadLayout")


def test_withdraw_refuses_a_missing_signer_and_someone_elses_user(traded: Chain) -> None:
    traded.operator_inactive()
    ix = traded.withdraw_ix(0, 1 * USD)
    assert_rejected(traded, [with_meta(ix, 2, signer=False)], [traded.authority], "OwnerNotSigner")
    thief = with_meta(ix, 2, pubkey=traded.users[1].pubkey())  # user 1 signs for user 0's account
    assert_rejected(traded, [thief], [traded.users[1]], "UserWrongPda")
    missing = Instruction(ix.program_id, ix.data, list(ix.accounts)[:7])
    assert_rejected(traded, [missing], [traded.users[0]], "WithdrawMarketMissing")


def test_initialize_and_create_market_cannot_be_repeated_or_forged(chain: Chain) -> None:
    again = chain.ix("initialize", chain.operator.pubkey(), chain.exchange_bump, chain.vault_bump, 150,
                     accounts={"exchange": chain.exchange, "authority": chain.authority.pubkey(),
                               "collateral_mint": chain.mint, "vault": chain.vault,
                               "insurance_vault": chain.insurance_vault,
                               "vault_authority": chain.vault_authority, "system_program": SYSTEM_PROGRAM})  # fmt: skip
    assert_rejected(chain, [again], [chain.authority], "ExchangeAlreadyInitialized")
    assert_rejected(chain, [chain.create_market_ix(0)], [chain.authority], "MarketIndexMismatch")
    assert_rejected(
        chain, [chain.create_market_ix(1, index=0)], [chain.authority], "MarketIndexMismatch"
    )
    chain.svm.airdrop(chain.operator.pubkey(), SOL)
    forged = with_meta(chain.create_market_ix(1), 2, pubkey=chain.operator.pubkey())
    assert_rejected(chain, [forged], [chain.operator], "AuthorityMismatch")
    bad_tiers = chain.create_market_ix(1, num_margin_tiers=1)  # last bound not u64 max
    assert_rejected(chain, [bad_tiers], [chain.authority], "InvalidMarginTiers")
    bad_lot = chain.create_market_ix(1, lot_size=3)
    assert_rejected(chain, [bad_lot], [chain.authority], "InvalidTickOrLot")
    chain.ok([chain.create_market_ix(1)], [chain.authority])
    assert chain.decode(chain.exchange).num_markets == 2


def test_funding_is_capped_and_applied_exactly_once(traded: Chain) -> None:
    assert_rejected(traded, [traded.funding_ix(1, 1_000_001, 100 * USD)], [traded.operator],
                    "FundingRateAboveCap")  # fmt: skip
    assert_rejected(traded, [traded.funding_ix(1, 5, 0)], [traded.operator], "IndexPriceZero")
    traded.ok([traded.funding_ix(1, 1_000, 100 * USD)], [traded.operator])
    assert_rejected(traded, [traded.funding_ix(1, 1_000, 100 * USD)], [traded.operator],
                    "SequenceNotIncreasing")  # fmt: skip


def test_market_status_needs_the_authority_or_operator_and_a_known_status(traded: Chain) -> None:
    market = traded.market_pda(0)[0]
    stranger = key(99)
    traded.svm.airdrop(stranger.pubkey(), SOL)
    ix = traded.ix("set_market_status", 4, accounts={"exchange": traded.exchange, "market": market,
                                                     "signer": stranger.pubkey()})  # fmt: skip
    assert_rejected(traded, [ix], [stranger], "StatusSignerMismatch")
    bad = traded.ix("set_market_status", 5, accounts={"exchange": traded.exchange, "market": market,
                                                      "signer": traded.operator.pubkey()})  # fmt: skip
    assert_rejected(traded, [bad], [traded.operator], "InvalidStatus")
    good = traded.ix("set_market_status", 4, accounts={"exchange": traded.exchange, "market": market,
                                                       "signer": traded.operator.pubkey()})  # fmt: skip
    traded.ok([good], [traded.operator])
    assert traded.decode(market).status == 4


def test_an_unknown_instruction_is_refused(traded: Chain) -> None:
    ix = Instruction(traded.program_id, b"\x01" * 8, [])
    assert_rejected(traded, [ix], [traded.operator], "UnknownInstruction")


# ------------------------------------------------------------------ capacity and compute


def test_twenty_fills_fit_one_transaction_at_3000_cu_per_fill_at_most(traded: Chain) -> None:
    # Arrange: six users; 1 fill, 20 fills, and the most fills that fit a 1,232-byte transaction
    for i in range(2, 6):
        traded.new_user(i, 10_000 * USD)

    def fills(n: int) -> list[tuple[int, int, bool, int, int]]:
        return [(i % 6, (i + 1) % 6, i % 2 == 0, 10_000 + i, 1 + i % 3) for i in range(n)]

    def size(ix: Instruction) -> int:
        message = Message([ix], traded.operator.pubkey())
        return len(bytes(Transaction([traded.operator], message, traded.svm.latest_blockhash())))

    most = 20
    while size(traded.settle_ix(4, fills(most + 1))) <= 1232:
        most += 1
    # Act
    single = traded.ok([traded.settle_ix(2, fills(1))], [traded.operator]).compute_units_consumed()
    twenty = traded.ok([traded.settle_ix(3, fills(20))], [traded.operator]).compute_units_consumed()
    full = traded.ok([traded.settle_ix(4, fills(most))], [traded.operator]).compute_units_consumed()
    # Assert
    marginal = (twenty - single) / 19
    print(f"settle_fills: 1 fill {single} CU; 20 fills {size(traded.settle_ix(3, fills(20)))} bytes, "
          f"{twenty} CU, {twenty / 20:.0f} CU per fill, {marginal:.0f} CU per extra fill; "
          f"{most} fills (the most in 1,232 bytes) {full} CU, {full / most:.0f} CU per fill")  # fmt: skip
    assert size(traded.settle_ix(3, fills(20))) <= 1232
    assert twenty / 20 <= 3_000  # issue 5's target
    assert full / most <= 3_000 and most <= 64


# ------------------------------------------------------------------ the strict loader


def test_the_real_loader_v3_deploys_the_clearing_program_and_it_runs() -> None:
    # Arrange: a LiteSVM whose BPFLoaderUpgradeable runs DeployWithMaxDataLen (ELF checks and
    # the verifier), as in test_program_deploy.py
    gate = Pubkey.from_string("EmhbpdVtZ2hWRGFWBDjn2i3SJD8Z36z4mpMcZJEnebnP")
    features = FeatureSet.all_enabled()
    active = dict(features.active)
    active.pop(gate, None)
    features = FeatureSet(active, set(features.inactive) | {gate})
    svm = (LiteSVM.default().with_builtins(features).with_precompiles(features).with_sysvars()
           .with_spl_programs().with_lamports(10**18).with_sigverify(True))  # fmt: skip
    payer, program = Keypair(), Keypair()
    svm.airdrop(payer.pubkey(), 100 * SOL)
    elf = PROGRAM_SO.read_bytes()
    steps = deploy_steps(
        elf, payer=payer, program=program, buffer=Keypair(),
        buffer_rent_lamports=svm.minimum_balance_for_rent_exemption(BUFFER_METADATA_BYTES + len(elf)),
        program_rent_lamports=svm.minimum_balance_for_rent_exemption(PROGRAM_ACCOUNT_BYTES),
    )  # fmt: skip
    # Act
    for step in steps:
        tx = Transaction(
            step.signers, Message(step.instructions, payer.pubkey()), svm.latest_blockhash()
        )
        deployed = svm.send_transaction(tx)
        svm.expire_blockhash()
        assert not isinstance(deployed, FailedTransactionMetadata), deployed.err()
    svm.warp_to_slot(svm.get_clock().slot + 1)
    ix = Instruction(program.pubkey(), b"\x01" * 8, [])
    result = svm.send_transaction(
        Transaction([payer], Message([ix], payer.pubkey()), svm.latest_blockhash())
    )
    # Assert: the program ran and refused the unknown discriminator with its own code
    assert custom_error(result) == CODES["UnknownInstruction"]
