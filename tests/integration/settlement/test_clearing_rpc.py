"""The clearing program behind the embedded cluster's JSON-RPC, driven by an unmodified anchorpy
``Program`` (what the settlement service will use): ``program.rpc`` sends and confirms,
``program.account[...].fetch`` decodes, and a program error comes back as anchorpy's
``ProgramError`` carrying the IDL's code and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from anchorpy import Context, Idl, Program, Provider, Wallet
from anchorpy.error import ProgramError
from solana.rpc.async_api import AsyncClient
from solana.rpc.types import TxOpts
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import Transaction
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
from localnet.server import LocalnetServer, Preload
from oracle_feeds.encoders import encode_pyth_pull_price_update_v2
from oracle_feeds.layouts import PYTH_RECEIVER_PROGRAM_ID, PythPullAccount
from settlement.gen_idl import IDL_PATH
from settlement.spec import ERRORS

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PROGRAM_SO = Path(__file__).resolve().parents[3] / "settlement" / "program" / "perpdex_clearing.so"
PROGRAM_ID = Keypair.from_seed(bytes([11]) * 32).pubkey()
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
SOL = 1_000_000_000
USD = 1_000_000
FEED_ID = bytes(range(32))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def send(client: AsyncClient, ixs: list[Instruction], signers: list[Keypair]) -> None:
    blockhash = (await client.get_latest_blockhash()).value.blockhash
    tx = Transaction(signers, Message(ixs, signers[0].pubkey()), blockhash)
    await client.confirm_transaction((await client.send_transaction(tx)).value)


@pytest.fixture
async def server() -> AsyncIterator[LocalnetServer]:
    preload = Preload(programs=[(PROGRAM_ID, PROGRAM_SO)])
    async with LocalnetServer(rpc_port=0, ws_port=0, preload=preload) as srv:
        yield srv


async def test_anchorpy_program_over_rpc_settles_fills_and_maps_program_errors(
    server: LocalnetServer,
) -> None:
    # Arrange: mint, PDA-owned vaults, an oracle, the exchange and one market, two traders
    client = AsyncClient(server.rpc_url)
    authority, operator, mint = (Keypair.from_seed(bytes([i]) * 32) for i in (12, 13, 14))
    for who in (authority, operator):
        await client.confirm_transaction(
            (await client.request_airdrop(who.pubkey(), 10 * SOL)).value
        )
    program = Program(Idl.from_json(IDL_PATH.read_text()), PROGRAM_ID,
                      Provider(client, Wallet(authority), TxOpts(preflight_commitment="confirmed")))  # fmt: skip
    vault_authority, vault_bump = Pubkey.find_program_address([b"vault"], PROGRAM_ID)
    exchange, exchange_bump = Pubkey.find_program_address([b"exchange"], PROGRAM_ID)
    market, market_bump = Pubkey.find_program_address([b"market", b"\x00\x00"], PROGRAM_ID)
    rent_mint = (await client.get_minimum_balance_for_rent_exemption(MINT_LEN)).value
    rent_token = (await client.get_minimum_balance_for_rent_exemption(ACCOUNT_LEN)).value
    await send(client, [
        create_account(CreateAccountParams(from_pubkey=authority.pubkey(), to_pubkey=mint.pubkey(),
                                           lamports=rent_mint, space=MINT_LEN, owner=TOKEN_PROGRAM_ID)),
        initialize_mint(InitializeMintParams(decimals=6, program_id=TOKEN_PROGRAM_ID, mint=mint.pubkey(),
                                             mint_authority=authority.pubkey())),
    ], [authority, mint])  # fmt: skip

    async def token_account(owner: Pubkey) -> Pubkey:
        account = Keypair()
        await send(client, [
            create_account(CreateAccountParams(from_pubkey=authority.pubkey(), to_pubkey=account.pubkey(),
                                               lamports=rent_token, space=ACCOUNT_LEN, owner=TOKEN_PROGRAM_ID)),
            initialize_account(InitializeAccountParams(program_id=TOKEN_PROGRAM_ID, account=account.pubkey(),
                                                       mint=mint.pubkey(), owner=owner)),
        ], [authority, account])  # fmt: skip
        return account.pubkey()

    vault, insurance_vault = (
        await token_account(vault_authority),
        await token_account(vault_authority),
    )
    oracle = Keypair().pubkey()
    server.cluster.set_account(oracle, Account(SOL, encode_pyth_pull_price_update_v2(PythPullAccount(
        feed_id=FEED_ID, price=10_000_000_000, conf=1, exponent=-8, publish_time=0, posted_slot=0,
    )), PYTH_RECEIVER_PROGRAM_ID, False, 0))  # fmt: skip
    await program.rpc["initialize"](operator.pubkey(), exchange_bump, vault_bump, 9_000, ctx=Context(accounts={
        "exchange": exchange, "authority": authority.pubkey(), "collateral_mint": mint.pubkey(),
        "vault": vault, "insurance_vault": insurance_vault, "vault_authority": vault_authority,
        "system_program": SYSTEM_PROGRAM}))  # fmt: skip
    tiers = [{"up_to_notional_quote": U64_MAX, "initial_ppm": 100_000, "maintenance_ppm": 50_000}]
    tiers += [{"up_to_notional_quote": 0, "initial_ppm": 0, "maintenance_ppm": 0}] * 3
    params = {"tick_size": 10_000, "lot_size": 100_000_000, "funding_cap_rate": 1_000_000,
              "oracle_max_age_slots": 50, "oracle_max_age_seconds": 60, "maker_fee_ppm": 0,
              "taker_fee_ppm": 500, "insurance_share_ppm": 0, "oracle_max_confidence_ppm": 20_000,
              "oracle_feed_id": list(FEED_ID), "index": 0, "oracle_source": 2, "num_margin_tiers": 1,
              "margin_tiers": tiers, "liquidation_fee_ppm": 25_000, "liquidator_share_ppm": 500_000,
              "liquidation_buffer_ppm": 10_000}  # fmt: skip
    await program.rpc["create_market"](params, market_bump, ctx=Context(accounts={
        "exchange": exchange, "market": market, "authority": authority.pubkey(), "oracle": oracle,
        "system_program": SYSTEM_PROGRAM}))  # fmt: skip
    users = []
    for i in range(2):
        owner = Keypair.from_seed(bytes([20 + i]) * 32)
        await client.confirm_transaction((await client.request_airdrop(owner.pubkey(), SOL)).value)
        token = await token_account(owner.pubkey())
        await send(client, [mint_to(MintToParams(program_id=TOKEN_PROGRAM_ID, mint=mint.pubkey(), dest=token,
                                                 mint_authority=authority.pubkey(), amount=5_000 * USD))],
                   [authority])  # fmt: skip
        user, bump = Pubkey.find_program_address([b"user", bytes(owner.pubkey())], PROGRAM_ID)
        await program.rpc["deposit"](5_000 * USD, bump, ctx=Context(accounts={
            "exchange": exchange, "user": user, "owner": owner.pubkey(), "owner_token": token,
            "vault": vault, "token_program": TOKEN_PROGRAM_ID, "system_program": SYSTEM_PROGRAM},
            signers=[owner]))  # fmt: skip
        users.append(user)
    fill = {"maker": 0, "taker": 1, "taker_side": 0, "price_ticks": 10_000, "num_base_lots": 10}
    settle_ctx = Context(
        accounts={"exchange": exchange, "market": market, "operator": operator.pubkey()},
        remaining_accounts=[AccountMeta(u, False, True) for u in users],
        signers=[operator],
    )
    # Act
    await program.rpc["settle_fills"](0, 1, 1, [fill], ctx=settle_ctx)
    with pytest.raises(ProgramError) as replay:
        # the same sequence again (different bytes: an identical transaction is deduplicated
        # by the runtime before the program sees it)
        await program.rpc["settle_fills"](0, 1, 1, [{**fill, "num_base_lots": 11}], ctx=settle_ctx)
    maker = await program.account["User"].fetch(users[0])
    taker = await program.account["User"].fetch(users[1])
    market_state = await program.account["Market"].fetch(market)
    await client.close()
    # Assert: 1 base unit at 100 USD; the taker pays 0.05 % = 50,000 quote units of fee
    expected = next(e for e in ERRORS if e.name == "SequenceNotIncreasing")
    assert (replay.value.code, replay.value.msg) == (expected.code, expected.msg)
    assert (maker.positions[0].base, maker.positions[0].entry_quote) == (-(10**9), 100 * USD)
    assert (taker.positions[0].base, taker.positions[0].entry_quote) == (10**9, -100 * USD)
    assert (maker.collateral_quote, taker.collateral_quote) == (5_000 * USD, 5_000 * USD - 50_000)
    assert market_state.last_settled_sequence == 1
    assert market_state.open_interest_base == 10**9
