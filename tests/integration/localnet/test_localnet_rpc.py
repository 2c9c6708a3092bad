"""The embedded localnet (LiteSVM behind JSON-RPC + PubSub) driven by the real, unmodified clients."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import base58
import pytest
from integration_support import FakeClock
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.types import MemcmpOpts, TxOpts
from solana.rpc.websocket_api import connect
from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.system_program import TransferParams, transfer
from solders.sysvar import CLOCK
from solders.transaction import Transaction

from localnet.cluster import EmbeddedCluster, load_account_file
from localnet.server import LocalnetServer, Preload

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

FIXTURES = Path(__file__).parents[2] / "fixtures" / "oracle-accounts"
PYTH_PULL = FIXTURES / "pyth-pull-price-update-v2.json"
PYTH_RECEIVER = Pubkey.from_string("rec5EKMGg6MxZYaMdyBfgwp4d5rB9T1VQH5pJv5LtFJ")
SWITCHBOARD_OD = Pubkey.from_string("SBondMDrcV3K4kxZR1HNVT7osZxAHVHgYXL5Ze1oMUv")
PRICE_UPDATE_V2_DISCRIMINATOR = bytes([34, 241, 35, 99, 157, 126, 244, 205])
SOL = 1_000_000_000


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[LocalnetServer]:
    preload = Preload(account_dirs=[FIXTURES] if FIXTURES.is_dir() else [])
    async with LocalnetServer(rpc_port=0, ws_port=0, preload=preload, time_source=clock) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(server.rpc_url)
    yield c
    await c.close()


async def raw_post(
    server: LocalnetServer, body: bytes | str, headers: dict[str, str] | None = None
) -> Any:
    data = body.encode() if isinstance(body, str) else body
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.post(server.rpc_url, data=data, headers=hdrs) as resp:
            assert resp.status == 200
            return json.loads(await resp.read())


async def rpc(server: LocalnetServer, method: str, params: list[Any] | None = None) -> Any:
    req = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}
    return await raw_post(server, json.dumps(req))


async def funded(client: AsyncClient, lamports: int = 10 * SOL) -> Keypair:
    kp = Keypair()
    sig = (await client.request_airdrop(kp.pubkey(), lamports)).value
    await client.confirm_transaction(sig)
    return kp


async def transfer_tx(
    client: AsyncClient, payer: Keypair, to: Pubkey, lamports: int
) -> Transaction:
    bh = (await client.get_latest_blockhash()).value.blockhash
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports))
    return Transaction([payer], Message([ix], payer.pubkey()), bh)


# ------------------------------------------------------------------ solana-py
async def test_airdrop_transfer_and_confirm_quickly(client: AsyncClient) -> None:
    t0 = time.monotonic()
    alice = await funded(client)
    bob = Keypair()
    assert (await client.get_balance(alice.pubkey())).value == 10 * SOL

    tx = await transfer_tx(client, alice, bob.pubkey(), 2 * SOL)
    sig = (await client.send_transaction(tx)).value
    statuses = await client.confirm_transaction(sig)
    status = statuses.value[0]
    assert status is not None and status.err is None
    assert str(status.confirmation_status) == "TransactionConfirmationStatus.Finalized"
    assert time.monotonic() - t0 < 5, "confirm_transaction must not poll for 90 s"

    assert (await client.get_balance(bob.pubkey())).value == 2 * SOL
    assert (await client.get_balance(alice.pubkey())).value == 8 * SOL - 5000

    got = (await client.get_transaction(sig)).value
    assert got is not None and got.transaction.meta is not None
    assert got.transaction.meta.err is None and got.transaction.meta.fee == 5000
    b64 = (await client.get_transaction(sig, encoding="base64")).value
    assert b64 is not None


async def test_send_with_last_valid_block_height_confirms(client: AsyncClient) -> None:
    alice = await funded(client)
    bh = (await client.get_latest_blockhash()).value
    ix = transfer(
        TransferParams(from_pubkey=alice.pubkey(), to_pubkey=Keypair().pubkey(), lamports=SOL)
    )
    tx = Transaction([alice], Message([ix], alice.pubkey()), bh.blockhash)
    opts = TxOpts(skip_confirmation=False, last_valid_block_height=bh.last_valid_block_height)
    resp = await client.send_transaction(tx, opts=opts)
    assert (await client.get_signature_statuses([resp.value])).value[0] is not None


async def test_account_info_and_multiple_accounts(
    server: LocalnetServer, client: AsyncClient
) -> None:
    pubkey, expected = load_account_file(PYTH_PULL)
    info = (await client.get_account_info(pubkey)).value
    assert info is not None
    assert bytes(info.data) == bytes(expected.data) and info.owner == PYTH_RECEIVER
    assert info.lamports == expected.lamports

    missing = Keypair().pubkey()
    many = (await client.get_multiple_accounts([pubkey, missing])).value
    assert many[0] is not None and bytes(many[0].data) == bytes(expected.data)
    assert many[1] is None
    assert (await client.get_account_info(missing)).value is None

    sliced = await rpc(
        server,
        "getAccountInfo",
        [str(pubkey), {"encoding": "base64", "dataSlice": {"offset": 0, "length": 8}}],
    )
    data_b64, enc = sliced["result"]["value"]["data"]
    assert enc == "base64" and base64.b64decode(data_b64) == PRICE_UPDATE_V2_DISCRIMINATOR
    parsed = (await client.get_account_info_json_parsed(pubkey)).value
    assert parsed is not None


async def test_program_accounts_filters(server: LocalnetServer, client: AsyncClient) -> None:
    pubkey, _ = load_account_file(PYTH_PULL)
    by_size = (await client.get_program_accounts(PYTH_RECEIVER, filters=[134])).value
    assert [a.pubkey for a in by_size] == [pubkey]
    assert (await client.get_program_accounts(PYTH_RECEIVER, filters=[133])).value == []

    disc58 = base58.b58encode(PRICE_UPDATE_V2_DISCRIMINATOR).decode()
    by_memcmp = (
        await client.get_program_accounts(
            PYTH_RECEIVER, filters=[MemcmpOpts(offset=0, bytes=disc58), 134]
        )
    ).value
    assert [a.pubkey for a in by_memcmp] == [pubkey]
    wrong = base58.b58encode(b"\x00" * 8).decode()
    assert (
        await client.get_program_accounts(
            PYTH_RECEIVER, filters=[MemcmpOpts(offset=0, bytes=wrong)]
        )
    ).value == []
    assert len((await client.get_program_accounts(SWITCHBOARD_OD)).value) == 1

    # base64 memcmp + withContext (pythclient's form), via a raw request
    disc64 = base64.b64encode(PRICE_UPDATE_V2_DISCRIMINATOR).decode()
    cfg = {
        "encoding": "base64",
        "withContext": True,
        "filters": [{"memcmp": {"offset": 0, "bytes": disc64, "encoding": "base64"}}],
    }
    resp = await rpc(server, "getProgramAccounts", [str(PYTH_RECEIVER), cfg])
    value = resp["result"]["value"]
    assert resp["result"]["context"]["slot"] >= 0 and [v["pubkey"] for v in value] == [str(pubkey)]


async def test_program_accounts_index_follows_transactions(client: AsyncClient) -> None:
    alice = await funded(client)
    bob = Keypair()
    tx = await transfer_tx(client, alice, bob.pubkey(), SOL)
    await client.confirm_transaction((await client.send_transaction(tx)).value)
    system = Pubkey.from_string("11111111111111111111111111111111")
    owned = {a.pubkey for a in (await client.get_program_accounts(system, filters=[0])).value}
    assert {alice.pubkey(), bob.pubkey()} <= owned


# ---------------------------------------------------------- JSON-RPC surface
async def test_batch_with_gzip_header_on_plain_body(server: LocalnetServer) -> None:
    pubkey, expected = load_account_file(PYTH_PULL)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "getSlot", "params": []},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "getMultipleAccounts",
            "params": [[str(pubkey)], {"encoding": "base64+zstd", "commitment": "confirmed"}],
        },
        {"jsonrpc": "2.0", "id": 3, "method": "nope", "params": []},
    ]
    body = json.dumps(batch)
    for payload in (body.encode(), gzip.compress(body.encode())):
        resp = await raw_post(server, payload, {"content-encoding": "gzip"})
        assert [r["id"] for r in resp] == [1, 2, 3]
        assert isinstance(resp[0]["result"], int)
        data_b64, _enc = resp[1]["result"]["value"][0]["data"]
        assert base64.b64decode(data_b64) == bytes(expected.data)
        assert resp[2]["error"]["code"] == -32601


async def test_anchorpy_batched_get_multiple_accounts(client: AsyncClient) -> None:
    from anchorpy.utils.rpc import get_multiple_accounts

    alice = await funded(client, 3 * SOL)
    items = await get_multiple_accounts(client, [alice.pubkey(), Keypair().pubkey()])
    assert items[0] is not None and items[0].account.lamports == 3 * SOL
    assert items[1] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", -32700),
        ("[]", -32600),
        ("42", -32600),
        ('{"jsonrpc": "2.0", "id": 1}', -32600),
        ('{"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": {"a": 1}}', -32602),
        ('{"jsonrpc": "2.0", "id": 1, "method": "noSuchMethod", "params": []}', -32601),
        ('{"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": [123]}', -32602),
        ('{"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": ["notakey"]}', -32602),
        ('{"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": []}', -32602),
        (
            '{"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", '
            '"params": ["@@@not-base64@@@", {"encoding": "base64"}]}',
            -32602,
        ),
        (
            '{"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", '
            '"params": ["AAAA", {"encoding": "base64"}]}',
            -32602,
        ),
        ('{"jsonrpc": "2.0", "id": 1, "method": "getBlockTime", "params": [99999999]}', -32004),
        (
            '{"jsonrpc": "2.0", "id": 1, "method": "getProgramAccounts", '
            '"params": ["11111111111111111111111111111111", {"filters": [{"weird": 1}]}]}',
            -32602,
        ),
    ],
)
async def test_errors_are_jsonrpc_errors_and_server_survives(
    server: LocalnetServer, client: AsyncClient, body: str, code: int
) -> None:
    resp = await raw_post(server, body)
    assert resp["jsonrpc"] == "2.0" and resp["error"]["code"] == code, resp
    assert resp["error"]["message"]
    assert (await client.is_connected()) is True
    assert (await rpc(server, "getHealth"))["result"] == "ok"


async def test_client_gets_handleable_exceptions(client: AsyncClient) -> None:
    with pytest.raises(RPCException):
        await client.get_block_time(10**9)
    alice = await funded(client, SOL)
    # preflight failure: insufficient funds
    tx = await transfer_tx(client, alice, Keypair().pubkey(), 5 * SOL)
    with pytest.raises(RPCException) as excinfo:
        await client.send_transaction(tx)
    failure = excinfo.value.args[0]
    assert isinstance(failure, SendTransactionPreflightFailureMessage)
    assert isinstance(failure.data, RpcSimulateTransactionResult)
    assert "InstructionError" in repr(failure.data.err)
    assert failure.data.logs and "insufficient lamports" in " ".join(failure.data.logs)
    assert failure.message.startswith(
        "Transaction simulation failed: Error processing Instruction 0"
    )

    # unknown blockhash
    ix = transfer(
        TransferParams(from_pubkey=alice.pubkey(), to_pubkey=Keypair().pubkey(), lamports=1)
    )
    stale = Transaction([alice], Message([ix], alice.pubkey()), Hash.new_unique())
    with pytest.raises(RPCException) as excinfo:
        await client.send_transaction(stale)
    failure = excinfo.value.args[0]
    assert isinstance(failure, SendTransactionPreflightFailureMessage)
    assert "BlockhashNotFound" in repr(failure.data.err)
    assert "Blockhash not found" in failure.message

    # skipPreflight: the failing transaction lands with an error status
    sig = (await client.send_transaction(tx, opts=TxOpts(skip_preflight=True))).value
    status = (await client.get_signature_statuses([sig])).value[0]
    assert status is not None and status.err is not None
    # the server is still fine
    assert (await client.get_balance(alice.pubkey())).value <= SOL


async def test_simulate_transaction(client: AsyncClient) -> None:
    alice = await funded(client)
    bob = Keypair()
    tx = await transfer_tx(client, alice, bob.pubkey(), SOL)
    sim = (await client.simulate_transaction(tx, sig_verify=True)).value
    assert sim.err is None and sim.logs and sim.units_consumed
    assert (await client.get_balance(bob.pubkey())).value == 0  # simulation changes nothing

    # unsigned + replaceRecentBlockhash
    ix = transfer(TransferParams(from_pubkey=alice.pubkey(), to_pubkey=bob.pubkey(), lamports=1))
    from solders.transaction import VersionedTransaction

    msg = Message.new_with_blockhash([ix], alice.pubkey(), Hash.new_unique())
    unsigned = VersionedTransaction.populate(msg, [Keypair().sign_message(b"x")])
    resp = await client._provider.session.post(  # solana-py has no replaceRecentBlockhash flag
        client._provider.endpoint_uri,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "simulateTransaction",
            "params": [
                base64.b64encode(bytes(unsigned)).decode(),
                {
                    "encoding": "base64",
                    "replaceRecentBlockhash": True,
                    "accounts": {"addresses": [str(bob.pubkey())], "encoding": "base64"},
                },
            ],
        },
    )
    value = resp.json()["result"]["value"]
    assert value["err"] is None and value["replacementBlockhash"]["blockhash"]
    assert value["accounts"][0]["lamports"] == 1


# ------------------------------------------------------------------- clock
async def test_slots_follow_the_clock_and_clock_sysvar(
    server: LocalnetServer, client: AsyncClient, clock: FakeClock
) -> None:
    slot0 = (await client.get_slot()).value
    clock.advance(4.0)  # 10 slots of 400 ms
    slot1 = (await client.get_slot()).value
    assert slot1 == slot0 + 10
    assert (await client.get_block_height()).value == slot1

    info = (await client.get_account_info(CLOCK)).value
    assert info is not None
    slot, _epoch_start, _epoch, _lse, unix = struct.unpack("<QqQQq", bytes(info.data)[:40])
    assert slot == slot1 and unix == int(clock.now)
    assert (await client.get_block_time(slot1)).value == unix

    server.cluster.warp(1000)
    assert (await client.get_slot()).value == slot1 + 1000
    info = (await client.get_account_info(CLOCK)).value
    assert info is not None
    assert struct.unpack("<Q", bytes(info.data)[:8])[0] == slot1 + 1000
    epoch = (await client.get_epoch_info()).value
    assert epoch.absolute_slot == slot1 + 1000


async def test_blockhash_expires_after_150_blocks(
    server: LocalnetServer, client: AsyncClient
) -> None:
    alice = await funded(client)
    bh = (await client.get_latest_blockhash()).value
    assert bh.last_valid_block_height == (await client.get_block_height()).value + 150
    valid = await rpc(server, "isBlockhashValid", [str(bh.blockhash)])
    assert valid["result"]["value"] is True
    server.cluster.warp(151)
    valid = await rpc(server, "isBlockhashValid", [str(bh.blockhash)])
    assert valid["result"]["value"] is False
    ix = transfer(
        TransferParams(from_pubkey=alice.pubkey(), to_pubkey=Keypair().pubkey(), lamports=1)
    )
    tx = Transaction([alice], Message([ix], alice.pubkey()), bh.blockhash)
    with pytest.raises(RPCException):
        await client.send_transaction(tx)


async def test_wall_clock_cluster_advances_slots() -> None:
    async with LocalnetServer(rpc_port=0) as srv:
        c = AsyncClient(srv.rpc_url)
        try:
            first = (await c.get_slot()).value
            await asyncio.sleep(1.0)
            later = (await c.get_slot()).value
            assert 1 <= later - first <= 4
        finally:
            await c.close()


def test_cluster_clock_unit() -> None:
    clock = FakeClock(100.0)
    cluster = EmbeddedCluster(time_source=clock, start_slot=50)
    assert cluster.slot == 50 and cluster.svm.get_clock().unix_timestamp == 100
    clock.advance(0.39)
    assert cluster.tick() == 50
    clock.advance(0.02)
    assert cluster.tick() == 51
    assert cluster.warp(9) == 60 and cluster.svm.get_clock().slot == 60


# ---------------------------------------------------------------- websocket
async def ws_recv(ws: Any, timeout: float = 3) -> list[Any]:
    """The next websocket message(s), untyped (solders' union types are unwieldy in asserts)."""
    return list(await asyncio.wait_for(ws.recv(), timeout))


async def test_websocket_account_signature_logs_program(
    server: LocalnetServer, client: AsyncClient
) -> None:
    alice = await funded(client)
    bob = Keypair()
    system = Pubkey.from_string("11111111111111111111111111111111")
    async with connect(server.ws_url) as ws:
        await ws.account_subscribe(bob.pubkey())
        acct_sub = (await ws_recv(ws))[0].result
        await ws.logs_subscribe()
        await ws_recv(ws)
        await ws.program_subscribe(system)
        await ws_recv(ws)
        tx = await transfer_tx(client, alice, bob.pubkey(), SOL)
        await ws.signature_subscribe(tx.signatures[0])
        await ws_recv(ws)
        await client.send_transaction(tx)

        seen: dict[str, Any] = {}
        while len(seen) < 4:
            for msg in await ws_recv(ws):
                seen.setdefault(type(msg).__name__, msg)
        assert seen["AccountNotification"].result.value.lamports == SOL
        assert seen["AccountNotification"].subscription == acct_sub
        assert seen["SignatureNotification"].result.value.err is None
        assert seen["LogsNotification"].result.value.signature == tx.signatures[0]
        assert seen["ProgramNotification"].result.value.account.owner == system
        await ws.account_unsubscribe(acct_sub)


async def test_websocket_slot_subscribe_ticks(server: LocalnetServer, clock: FakeClock) -> None:
    async with connect(server.ws_url) as ws:
        await ws.slot_subscribe()
        await ws_recv(ws)
        start = server.cluster.slot
        clock.advance(0.8)  # the server's ticker notices within ~50 ms
        got = [(await ws_recv(ws))[0].result for _ in range(2)]
        assert [(i.parent, i.slot) for i in got] == [(start, start + 1), (start + 1, start + 2)]


async def test_websocket_root_and_slots_updates_follow_the_clock(
    server: LocalnetServer, client: AsyncClient, clock: FakeClock
) -> None:
    alice = await funded(client)
    async with connect(server.ws_url) as ws:
        await ws.root_subscribe()
        await ws_recv(ws)
        await ws.slots_updates_subscribe()
        await ws_recv(ws)
        tx = await transfer_tx(client, alice, Keypair().pubkey(), SOL)
        await client.send_transaction(tx)
        busy = server.cluster.slot
        clock.advance(0.4)  # the server's ticker starts the next slot within ~50 ms
        got = [m for _ in range(4) for m in await ws_recv(ws)]
        kinds = [type(m).__name__ for m in got]
        assert sorted(kinds) == ["RootNotification"] + ["SlotUpdateNotification"] * 3
        root = next(m for m in got if type(m).__name__ == "RootNotification")
        assert root.result == busy
        updates = {type(m.result).__name__: m.result for m in got if m is not root}
        assert updates["SlotUpdateCreatedBank"].slot == busy + 1
        assert updates["SlotUpdateCreatedBank"].parent == busy
        frozen = updates["SlotUpdateFrozen"]
        assert frozen.slot == busy and frozen.stats.num_successful_transactions == 1
        assert updates["SlotUpdateRoot"].slot == busy
    for unsupported in ("blockSubscribe", "voteSubscribe"):
        req = {"jsonrpc": "2.0", "id": 1, "method": unsupported, "params": ["all"]}
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.ws_url) as raw:
                await raw.send_str(json.dumps(req))
                answer = json.loads((await asyncio.wait_for(raw.receive(), 3)).data)
        assert answer["error"]["code"] == -32601


async def test_websocket_bad_requests_get_errors_and_connection_keeps_serving(
    server: LocalnetServer,
) -> None:
    cases: list[tuple[str, int]] = [
        ("{not json", -32700),
        ("[]", -32600),
        ('{"jsonrpc": "2.0", "id": 1, "method": "noSuchSubscribe", "params": []}', -32601),
        ('{"jsonrpc": "2.0", "id": 2, "method": "accountSubscribe", "params": ["bad"]}', -32602),
        ('{"jsonrpc": "2.0", "id": 3, "method": "accountSubscribe", "params": []}', -32602),
        ('{"jsonrpc": "2.0", "id": 4, "method": "accountUnsubscribe", "params": [999]}', -32602),
        ('{"jsonrpc": "2.0", "id": 5, "method": "logsSubscribe", "params": [{"x": 1}]}', -32602),
        (
            '{"jsonrpc": "2.0", "id": 6, "method": "programSubscribe", "params": '
            '["11111111111111111111111111111111", {"filters": [{"memcmp": '
            '{"offset": 0, "bytes": "@@@", "encoding": "base64"}}]}]}',
            -32602,
        ),
    ]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.ws_url) as ws:
            for body, code in cases:
                await ws.send_str(body)
                answer = json.loads((await asyncio.wait_for(ws.receive(), 3)).data)
                assert answer["error"]["code"] == code, (body, answer)
                assert answer["error"]["message"]
            # the same connection still subscribes and is notified
            await ws.send_str(
                json.dumps({"jsonrpc": "2.0", "id": 7, "method": "slotSubscribe", "params": []})
            )
            answer = json.loads((await asyncio.wait_for(ws.receive(), 3)).data)
            assert answer["id"] == 7 and isinstance(answer["result"], int)


# ---------------------------------------------------------------- anchorpy
async def test_anchorpy_provider_send_and_simulate(client: AsyncClient) -> None:
    from anchorpy import Provider, Wallet

    payer = await funded(client)
    provider = Provider(client, Wallet(payer))
    bob = Keypair()
    tx = await transfer_tx(client, payer, bob.pubkey(), SOL)
    sim = await provider.simulate(tx)
    assert sim.value.err is None
    sig = await provider.send(tx)
    await client.confirm_transaction(sig)
    assert (await client.get_balance(bob.pubkey())).value == SOL


COUNTER_IDL = {
    "version": "0.1.0",
    "name": "counter",
    "instructions": [],
    "accounts": [
        {
            "name": "Counter",
            "type": {
                "kind": "struct",
                "fields": [
                    {"name": "authority", "type": "publicKey"},
                    {"name": "count", "type": "u64"},
                ],
            },
        }
    ],
}


async def test_anchorpy_program_fetch_multiple_and_all(
    server: LocalnetServer, client: AsyncClient
) -> None:
    """`account.fetch_multiple` (a JSON-RPC batch of getMultipleAccounts asking base64+zstd with
    a gzip header) and `account.all` (getProgramAccounts + discriminator memcmp) decode
    accounts laid out by a legacy Anchor IDL."""
    import hashlib

    from anchorpy import Idl, Program, Provider, Wallet

    program_id = Keypair().pubkey()
    provider = Provider(client, Wallet(Keypair()))
    program = Program(Idl.from_json(json.dumps(COUNTER_IDL)), program_id, provider)
    discriminator = hashlib.sha256(b"account:Counter").digest()[:8]
    authority = Keypair().pubkey()
    addresses = [Keypair().pubkey() for _ in range(3)]
    for count, address in enumerate(addresses, start=40):
        data = discriminator + bytes(authority) + struct.pack("<Q", count)
        server.cluster.set_account(address, Account(lamports=10**6, data=data, owner=program_id))
    # an account with another discriminator is not a Counter
    wrong = Keypair().pubkey()
    server.cluster.set_account(
        wrong, Account(lamports=10**6, data=bytes(8) + bytes(40), owner=program_id)
    )

    missing = Keypair().pubkey()
    fetched = await program.account["Counter"].fetch_multiple(
        [*addresses, missing, wrong], batch_size=2
    )
    assert [f.count if f is not None else None for f in fetched] == [40, 41, 42, None, None]
    assert all(f.authority == authority for f in fetched[:3] if f is not None)
    one = await program.account["Counter"].fetch(addresses[1])
    assert one.count == 41
    listed = await program.account["Counter"].all()
    assert sorted(r.account.count for r in listed) == [40, 41, 42]
    assert {r.public_key for r in listed} == set(addresses)


# ---------------------------------------------------------------- pythclient
def _pyth_push_price_account(price: int, conf: int, expo: int, pub_slot: int) -> bytes:
    """A legacy Pyth push (v2) price account, laid out as in the shared notes (3312 bytes)."""
    buf = bytearray(3312)
    struct.pack_into("<IIII", buf, 0, 0xA1B2C3D4, 2, 3, 240)
    struct.pack_into("<IiII", buf, 16, 1, expo, 0, 0)
    struct.pack_into("<QQ", buf, 32, pub_slot, pub_slot)
    struct.pack_into("<q", buf, 96, 1_700_000_000)
    struct.pack_into("<qQIIQ", buf, 208, price, conf, 1, 0, pub_slot)
    return bytes(buf)


async def test_pythclient_reads_preloaded_push_account(
    server: LocalnetServer, tmp_path: Path
) -> None:
    from pythclient.pythaccounts import PythPriceAccount, PythPriceStatus
    from pythclient.solana import SolanaClient, SolanaPublicKey

    address = Keypair().pubkey()
    pyth_oracle = "FsJ3A3u2vn5cTVofAjvy6y5kwABJAqYWpe4975bi2epH"
    data = _pyth_push_price_account(price=6_512_345_678, conf=1_234_567, expo=-8, pub_slot=1)
    account_json = {
        "pubkey": str(Keypair().pubkey()),  # overridden by the address, like --account ADDR FILE
        "account": {
            "lamports": 23_942_400,
            "data": [base64.b64encode(data).decode(), "base64"],
            "owner": pyth_oracle,
            "executable": False,
            "rentEpoch": 18446744073709551615,
            "space": len(data),
        },
    }
    path = tmp_path / "price.json"
    path.write_text(json.dumps(account_json))
    server.cluster.load_account_file(path, address)

    async with SolanaClient(
        ratelimit=False, endpoint=server.rpc_url, ws_endpoint=server.ws_url
    ) as sc:
        assert await sc.get_health() == "ok"
        acct = PythPriceAccount(SolanaPublicKey(str(address)), sc)
        await acct.update()
        assert acct.aggregate_price_info is not None
        assert acct.aggregate_price_info.price == pytest.approx(65.12345678)
        assert acct.aggregate_price_info.price_status == PythPriceStatus.TRADING
        assert acct.exponent == -8 and acct.slot is not None
        listed = await sc.get_program_accounts(pyth_oracle)
        assert [v["pubkey"] for v in listed["value"]] == [str(address)]
        assert isinstance(await sc.get_block_time(server.cluster.slot), int)


async def test_cluster_info_methods_parse_in_solana_py(
    server: LocalnetServer, client: AsyncClient
) -> None:
    payer = Keypair().pubkey()
    bh = (await client.get_latest_blockhash()).value.blockhash
    ix = transfer(TransferParams(from_pubkey=payer, to_pubkey=payer, lamports=1))
    assert (
        await client.get_fee_for_message(Message.new_with_blockhash([ix], payer, bh))
    ).value == 5000
    assert (await client.get_epoch_info()).value.absolute_slot == server.cluster.slot
    assert len((await client.get_cluster_nodes()).value) == 1
    assert (await client.get_version()).value.solana_core
    assert (await client.get_genesis_hash()).value
    assert (await client.get_identity()).value.identity
    assert (await client.get_epoch_schedule()).value.slots_per_epoch == 432000
    assert (await client.get_minimum_balance_for_rent_exemption(100)).value > 0
    fees = await rpc(server, "getRecentPrioritizationFees", [[str(payer)]])
    assert fees["result"][0]["prioritizationFee"] == 0
