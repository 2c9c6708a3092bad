"""Ledger history, SPL Token and cluster-economics RPC methods, through the real solana-py client
(and its SPL Token client) against the embedded cluster."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import spl.token.instructions as spl_token
from integration_support import FakeClock
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.types import TokenAccountOpts, TxOpts
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from spl.token.async_client import AsyncToken
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

import localnet.cluster
from localnet.cluster import EmbeddedCluster
from localnet.server import LocalnetServer
from localnet.spl_token import ui_amount_string

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SOL = 1_000_000_000
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[LocalnetServer]:
    cluster = EmbeddedCluster(time_source=clock, start_slot=100)
    async with LocalnetServer(cluster, rpc_port=0, ws_port=0) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(server.rpc_url)
    yield c
    await c.close()


async def rpc(server: LocalnetServer, method: str, params: list[Any] | None = None) -> Any:
    req = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params or []}
    async with aiohttp.ClientSession() as session:
        async with session.post(server.rpc_url, json=req) as resp:
            assert resp.status == 200
            return json.loads(await resp.read())


async def funded(client: AsyncClient, lamports: int = 10 * SOL) -> Keypair:
    kp = Keypair()
    await client.confirm_transaction((await client.request_airdrop(kp.pubkey(), lamports)).value)
    return kp


async def send(client: AsyncClient, payer: Keypair, ixs: list[Instruction]) -> Any:
    bh = (await client.get_latest_blockhash()).value.blockhash
    tx = Transaction([payer], Message(ixs, payer.pubkey()), bh)
    sig = (await client.send_transaction(tx)).value
    await client.confirm_transaction(sig)
    return sig


def parsed_info(data: Any) -> dict[str, Any]:
    """The `info` of a jsonParsed account's data (solders types it as loose JSON)."""
    parsed = data.parsed
    assert isinstance(parsed, dict) and isinstance(parsed["info"], dict)
    return parsed["info"]


def pay(src: Keypair, dst: Pubkey, lamports: int) -> Instruction:
    return transfer(TransferParams(from_pubkey=src.pubkey(), to_pubkey=dst, lamports=lamports))


# ------------------------------------------------------------------------ history
async def test_signatures_for_address_newest_first_with_memo_and_paging(
    server: LocalnetServer, client: AsyncClient, clock: FakeClock
) -> None:
    alice = await funded(client)
    bob = Keypair().pubkey()
    sigs = []
    for i in range(3):
        clock.advance(0.4)  # one slot apart
        memo = Instruction(MEMO_PROGRAM, f"pay {i}".encode(), [])
        sigs.append(await send(client, alice, [pay(alice, bob, SOL), memo]))

    got = (await client.get_signatures_for_address(bob)).value
    assert [s.signature for s in got] == sigs[::-1]
    assert got[0].memo == "[5] pay 2" and got[0].err is None
    assert got[0].slot > got[2].slot and got[0].block_time is not None
    # alice also has her airdrop
    assert len((await client.get_signatures_for_address(alice.pubkey())).value) == 4

    page = (await client.get_signatures_for_address(bob, limit=1)).value
    assert [s.signature for s in page] == [sigs[2]]
    older = (await client.get_signatures_for_address(bob, before=sigs[2])).value
    assert [s.signature for s in older] == [sigs[1], sigs[0]]
    newer = (await client.get_signatures_for_address(bob, until=sigs[0])).value
    assert [s.signature for s in newer] == [sigs[2], sigs[1]]


async def test_get_block_lists_the_slot_transactions(
    server: LocalnetServer, client: AsyncClient, clock: FakeClock
) -> None:
    alice = await funded(client)
    clock.advance(0.4)
    sig = await send(client, alice, [pay(alice, Keypair().pubkey(), SOL)])
    slot = (await client.get_transaction(sig)).value.slot  # type: ignore[union-attr]
    clock.advance(0.4)

    block = (await client.get_block(slot, max_supported_transaction_version=0)).value
    assert block.block_height == slot and block.parent_slot == slot - 1
    txs = block.transactions or []
    assert [t.transaction.signatures[0] for t in txs] == [sig]
    assert txs[0].meta is not None and txs[0].meta.fee == 5000
    previous = (await client.get_block(slot - 1)).value
    assert previous.blockhash == block.previous_blockhash
    assert block.block_time == (await client.get_block_time(slot)).value

    sigs_only = await rpc(server, "getBlock", [slot, {"transactionDetails": "signatures"}])
    assert sigs_only["result"]["signatures"] == [str(sig)]
    blocks = (await client.get_blocks(slot - 1, slot + 1)).value
    assert blocks == [slot - 1, slot, slot + 1]
    assert (await client.get_blocks(0, 101)).value == [100, 101]  # the ledger starts at 100
    limited = await rpc(server, "getBlocksWithLimit", [slot, 2])
    assert limited["result"] == [slot, slot + 1]

    with pytest.raises(RPCException):
        await client.get_block(server.cluster.slot + 100)
    not_yet = await rpc(server, "getBlock", [server.cluster.slot + 100])
    assert not_yet["error"]["code"] == -32004
    server.cluster.warp(500_001)
    too_wide = await rpc(server, "getBlocks", [100, 10**9])
    assert too_wide["error"]["code"] == -32602 and "max 500000" in too_wide["error"]["message"]
    assert len((await client.get_blocks(100)).value) == 500_001  # an open range is capped


async def test_evicted_history_moves_first_available_block(
    server: LocalnetServer, client: AsyncClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localnet.cluster, "MAX_SIGNATURE_RECORDS", 2)
    alice = await funded(client)  # record 1 (evicted later)
    first_slot = server.cluster.slot
    for _ in range(2):
        clock.advance(0.4)
        await send(client, alice, [pay(alice, Keypair().pubkey(), 1)])
    first = (await client.get_first_available_block()).value
    assert first == first_slot + 1
    assert (await client.get_minimum_ledger_slot()).value == first
    gone = await rpc(server, "getBlock", [first_slot])
    assert gone["error"]["code"] == -32001 and "cleaned up" in gone["error"]["message"]
    assert len((await client.get_signatures_for_address(alice.pubkey())).value) == 2
    assert (await client.get_transaction_count()).value == 3


# --------------------------------------------------------------------------- tokens
@pytest.mark.parametrize("program_id", [TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID])
async def test_spl_token_methods_through_the_token_client(
    client: AsyncClient, program_id: Pubkey
) -> None:
    payer = await funded(client)
    owner, delegate = Keypair(), Keypair()
    opts = TxOpts(skip_confirmation=False, preflight_commitment=Confirmed)
    token = await AsyncToken.create_mint(client, payer, payer.pubkey(), 6, program_id)
    big = await token.create_account(owner.pubkey())
    small = await token.create_account(owner.pubkey())
    minted = (await token.mint_to(big, payer, 12_345_678, opts=opts)).value
    await token.mint_to(small, payer, 500_000, opts=opts)
    # AsyncToken.approve signs with the payer only (a solana-py bug): send the instruction
    approve_ix = spl_token.approve(
        spl_token.ApproveParams(
            program_id=program_id,
            source=small,
            delegate=delegate.pubkey(),
            owner=owner.pubkey(),
            amount=1_000,
        )
    )
    bh = (await client.get_latest_blockhash()).value.blockhash
    approve_tx = Transaction([payer, owner], Message([approve_ix], payer.pubkey()), bh)
    await client.confirm_transaction((await client.send_transaction(approve_tx)).value)

    # the transaction's token balances before and after, like the validator's meta
    history = (await client.get_transaction(minted)).value
    assert history is not None and history.transaction.meta is not None
    meta = history.transaction.meta
    [pre] = meta.pre_token_balances or []
    [post] = meta.post_token_balances or []
    assert pre.mint == post.mint == token.pubkey and post.owner == owner.pubkey()
    assert pre.account_index == post.account_index
    assert (pre.ui_token_amount.amount, post.ui_token_amount.amount) == ("0", "12345678")
    assert post.program_id == program_id

    balance = (await client.get_token_account_balance(big)).value
    assert balance.amount == "12345678" and balance.decimals == 6
    assert balance.ui_amount_string == "12.345678"
    supply = (await client.get_token_supply(token.pubkey)).value
    assert supply.amount == "12845678" and supply.ui_amount_string == "12.845678"

    mine = (
        await client.get_token_accounts_by_owner(
            owner.pubkey(), TokenAccountOpts(mint=token.pubkey)
        )
    ).value
    assert sorted(str(a.pubkey) for a in mine) == sorted([str(big), str(small)])
    by_program = (
        await client.get_token_accounts_by_owner(
            owner.pubkey(), TokenAccountOpts(program_id=program_id)
        )
    ).value
    assert len(by_program) == 2
    parsed = (
        await client.get_token_accounts_by_owner_json_parsed(
            owner.pubkey(), TokenAccountOpts(mint=token.pubkey)
        )
    ).value
    info = {str(a.pubkey): parsed_info(a.account.data) for a in parsed}
    assert info[str(big)]["tokenAmount"]["uiAmountString"] == "12.345678"
    assert info[str(small)]["delegate"] == str(delegate.pubkey())
    assert info[str(small)]["delegatedAmount"]["amount"] == "1000"
    delegated = (
        await client.get_token_accounts_by_delegate(
            delegate.pubkey(), TokenAccountOpts(mint=token.pubkey)
        )
    ).value
    assert [a.pubkey for a in delegated] == [small]

    largest = (await client.get_token_largest_accounts(token.pubkey)).value
    assert [a.address for a in largest] == [big, small]
    mint_info = (await client.get_account_info_json_parsed(token.pubkey)).value
    assert mint_info is not None
    assert parsed_info(mint_info.data)["supply"] == "12845678"

    # not a token account / not a mint / unknown program: handleable errors
    with pytest.raises(RPCException):
        await client.get_token_account_balance(payer.pubkey())
    with pytest.raises(RPCException):
        await client.get_token_supply(big)
    with pytest.raises(RPCException):
        await client.get_token_accounts_by_owner(
            owner.pubkey(), TokenAccountOpts(program_id=payer.pubkey())
        )


async def test_inner_instructions_of_a_cpi_in_simulation_and_history(
    server: LocalnetServer, client: AsyncClient
) -> None:
    """Creating an associated token account CPIs into the token and system programs."""
    payer = await funded(client)
    token = await AsyncToken.create_mint(client, payer, payer.pubkey(), 6, TOKEN_PROGRAM_ID)
    ix = spl_token.create_associated_token_account(payer.pubkey(), payer.pubkey(), token.pubkey)
    bh = (await client.get_latest_blockhash()).value.blockhash
    tx = Transaction([payer], Message([ix], payer.pubkey()), bh)

    plain = await rpc(
        server,
        "simulateTransaction",
        [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}],
    )
    assert plain["result"]["value"]["innerInstructions"] is None
    sim = await rpc(
        server,
        "simulateTransaction",
        [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64", "innerInstructions": True}],
    )
    [inner] = sim["result"]["value"]["innerInstructions"]
    keys = [str(k) for k in tx.message.account_keys]
    called = {keys[i["programIdIndex"]] for i in inner["instructions"]}
    assert inner["index"] == 0 and str(TOKEN_PROGRAM_ID) in called
    assert "11111111111111111111111111111111" in called
    assert all(i["stackHeight"] == 2 for i in inner["instructions"])

    sig = (await client.send_transaction(tx)).value
    await client.confirm_transaction(sig)
    got = (await client.get_transaction(sig)).value
    assert got is not None and got.transaction.meta is not None
    history = got.transaction.meta.inner_instructions
    assert history is not None and len(history[0].instructions) == len(inner["instructions"])


def test_ui_amount_string_is_exact() -> None:
    assert ui_amount_string(12_345_678, 6) == "12.345678"
    assert ui_amount_string(12_000_000, 6) == "12"
    assert ui_amount_string(5, 6) == "0.000005"
    assert ui_amount_string(2**64 - 1, 9) == "18446744073.709551615"
    assert ui_amount_string(7, 0) == "7"


# ------------------------------------------------------------------- cluster economics
async def test_single_node_cluster_methods(server: LocalnetServer, client: AsyncClient) -> None:
    alice = await funded(client, 7 * SOL)
    identity = (await client.get_identity()).value.identity
    supply = (await client.get_supply()).value
    assert supply.total >= 7 * SOL and supply.circulating == supply.total
    largest = (await client.get_largest_accounts()).value
    assert alice.pubkey() in [a.address for a in largest]
    assert (await client.get_inflation_governor()).value.initial == pytest.approx(0.08)
    epoch = (await client.get_epoch_info()).value
    assert (await client.get_inflation_rate()).value.epoch == epoch.epoch
    assert (await client.get_slot_leader()).value == identity
    assert (await client.get_vote_accounts()).value.current == []
    assert (await client.get_block_commitment(server.cluster.slot)).value.total_stake == 0
    assert isinstance((await client.get_recent_performance_samples(5)).value, list)
    stake_min = await rpc(server, "getStakeMinimumDelegation", [])
    assert stake_min["result"]["value"] == 1
    leaders = await rpc(server, "getSlotLeaders", [server.cluster.slot, 3])
    assert leaders["result"] == [str(identity)] * 3
    production = await rpc(server, "getBlockProduction", [])
    assert str(identity) in production["result"]["value"]["byIdentity"]
    assert (await rpc(server, "getHighestSnapshotSlot"))["error"]["code"] == -32008
    assert (await rpc(server, "getMaxShredInsertSlot"))["result"] >= 0

    # rewards are per completed epoch (none: no stake); the current epoch is not complete
    assert (await client.get_inflation_reward([alice.pubkey()])).value == [None]
    with pytest.raises(RPCException):
        await client.get_inflation_reward([alice.pubkey()], epoch=epoch.epoch)
    schedule = (await client.get_leader_schedule()).value
    assert schedule is not None and len(schedule[identity]) == epoch.slots_in_epoch


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("getSignaturesForAddress", ["11111111111111111111111111111111", {"limit": 0}], -32602),
        ("getSignaturesForAddress", ["11111111111111111111111111111111", {"limit": 1001}], -32602),
        ("getSignaturesForAddress", ["nope"], -32602),
        ("getSignaturesForAddress", ["11111111111111111111111111111111", {"before": "x"}], -32602),
        ("getBlock", [0, {"commitment": "processed"}], -32602),
        ("getBlock", [0, {"transactionDetails": "most"}], -32602),
        ("getBlock", ["zero"], -32602),
        ("getBlocks", [0, "x"], -32602),
        ("getBlocksWithLimit", [0, 500_001], -32602),
        ("getTokenSupply", ["11111111111111111111111111111111"], -32602),
        ("getTokenAccountBalance", [str(Pubkey.new_unique())], -32602),
        ("getTokenAccountsByOwner", ["11111111111111111111111111111111", {}], -32602),
        (
            "getTokenAccountsByOwner",
            ["11111111111111111111111111111111", {"mint": "1" * 32}],
            -32602,
        ),
        ("getSlotLeaders", [0, 5001], -32602),
        ("getRecentPerformanceSamples", [721], -32602),
        ("getLargestAccounts", [{"filter": "weird"}], -32602),
        ("getInflationReward", ["notalist"], -32602),
    ],
)
async def test_bad_params_get_validator_shaped_errors(
    server: LocalnetServer, method: str, params: list[Any], code: int
) -> None:
    resp = await rpc(server, method, params)
    assert resp["error"]["code"] == code, resp
    assert resp["error"]["message"]
    assert (await rpc(server, "getHealth"))["result"] == "ok"
