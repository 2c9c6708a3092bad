"""Programs on the embedded localnet: preloaded like `--bpf-program`, or deployed with the ordinary
BPFLoaderUpgradeable transactions (create buffer, write, deploy) a client sends."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from integration_support import FakeClock
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK, RENT
from solders.transaction import Transaction

from localnet.cluster import PreloadError
from localnet.server import LocalnetServer, Preload

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SOL = 1_000_000_000
LOADER_V3 = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
MEMO_V1 = Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")
BUFFER_METADATA = 37
PROGRAM_ACCOUNT_SIZE = 36
WRITE_CHUNK = 900


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[LocalnetServer]:
    async with LocalnetServer(rpc_port=0, ws_port=0, time_source=clock) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalnetServer) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(server.rpc_url)
    yield c
    await c.close()


@pytest.fixture
def memo_elf(server: LocalnetServer) -> bytes:
    """A real SBF program: the SPL Memo v1 ELF that LiteSVM ships."""
    acct = server.cluster.svm.get_account(MEMO_V1)
    assert acct is not None and bytes(acct.data[:4]) == b"\x7fELF"
    return bytes(acct.data)


async def send(client: AsyncClient, ixs: list[Instruction], signers: list[Keypair]) -> None:
    bh = (await client.get_latest_blockhash()).value.blockhash
    tx = Transaction(signers, Message(ixs, signers[0].pubkey()), bh)
    sig = (await client.send_transaction(tx)).value
    status = (await client.confirm_transaction(sig)).value[0]
    assert status is not None and status.err is None


async def invoke(client: AsyncClient, payer: Keypair, program: Pubkey, data: bytes) -> list[str]:
    bh = (await client.get_latest_blockhash()).value.blockhash
    ix = Instruction(program, data, [AccountMeta(payer.pubkey(), True, True)])
    tx = Transaction([payer], Message([ix], payer.pubkey()), bh)
    sig = (await client.send_transaction(tx)).value
    await client.confirm_transaction(sig)
    got = (await client.get_transaction(sig)).value
    assert got is not None and got.transaction.meta is not None
    assert got.transaction.meta.err is None
    return list(got.transaction.meta.log_messages or [])


async def funded(client: AsyncClient) -> Keypair:
    kp = Keypair()
    await client.confirm_transaction((await client.request_airdrop(kp.pubkey(), 50 * SOL)).value)
    return kp


async def test_preloaded_program_runs(
    server: LocalnetServer, client: AsyncClient, memo_elf: bytes, tmp_path: Path
) -> None:
    so = tmp_path / "memo.so"
    so.write_bytes(memo_elf)
    program_id = Keypair().pubkey()
    Preload(programs=[(program_id, so)]).apply(server.cluster)
    payer = await funded(client)
    logs = await invoke(client, payer, program_id, b"hello")
    assert f"Program {program_id} success" in logs
    with pytest.raises(RPCException):  # no program there: a preflight failure, not a crash
        await invoke(client, payer, Keypair().pubkey(), b"hello")
    with pytest.raises(PreloadError):
        server.cluster.add_program(Keypair().pubkey(), tmp_path / "missing.so")


async def test_deploy_with_upgradeable_loader_transactions(
    server: LocalnetServer, client: AsyncClient, clock: FakeClock, memo_elf: bytes
) -> None:
    payer = await funded(client)
    buffer, program = Keypair(), Keypair()
    rent = (
        await client.get_minimum_balance_for_rent_exemption(BUFFER_METADATA + len(memo_elf))
    ).value
    await send(
        client,
        [
            create_account(
                CreateAccountParams(
                    from_pubkey=payer.pubkey(),
                    to_pubkey=buffer.pubkey(),
                    lamports=rent,
                    space=BUFFER_METADATA + len(memo_elf),
                    owner=LOADER_V3,
                )
            ),
            Instruction(
                LOADER_V3,
                struct.pack("<I", 0),  # InitializeBuffer
                [
                    AccountMeta(buffer.pubkey(), False, True),
                    AccountMeta(payer.pubkey(), False, False),
                ],
            ),
        ],
        [payer, buffer],
    )
    for offset in range(0, len(memo_elf), WRITE_CHUNK):
        chunk = memo_elf[offset : offset + WRITE_CHUNK]
        write = Instruction(
            LOADER_V3,
            struct.pack("<IIQ", 1, offset, len(chunk)) + chunk,  # Write { offset, bytes }
            [AccountMeta(buffer.pubkey(), False, True), AccountMeta(payer.pubkey(), True, False)],
        )
        await send(client, [write], [payer])

    programdata, _ = Pubkey.find_program_address([bytes(program.pubkey())], LOADER_V3)
    program_rent = (await client.get_minimum_balance_for_rent_exemption(PROGRAM_ACCOUNT_SIZE)).value
    deploy = Instruction(
        LOADER_V3,
        struct.pack("<IQ", 2, 2 * len(memo_elf)),  # DeployWithMaxDataLen
        [
            AccountMeta(payer.pubkey(), True, True),
            AccountMeta(programdata, False, True),
            AccountMeta(program.pubkey(), False, True),
            AccountMeta(buffer.pubkey(), False, True),
            AccountMeta(RENT, False, False),
            AccountMeta(CLOCK, False, False),
            AccountMeta(SYSTEM, False, False),
            AccountMeta(payer.pubkey(), True, False),
        ],
    )
    await send(
        client,
        [
            create_account(
                CreateAccountParams(
                    from_pubkey=payer.pubkey(),
                    to_pubkey=program.pubkey(),
                    lamports=program_rent,
                    space=PROGRAM_ACCOUNT_SIZE,
                    owner=LOADER_V3,
                )
            ),
            deploy,
        ],
        [payer, program],
    )
    info = (await client.get_account_info(program.pubkey())).value
    assert info is not None and info.executable and info.owner == LOADER_V3
    loader_accounts = {a.pubkey for a in (await client.get_program_accounts(LOADER_V3)).value}
    assert {program.pubkey(), programdata} <= loader_accounts

    assert (await client.get_account_info(buffer.pubkey())).value is None  # buffer closed
    pd_info = (await client.get_account_info(programdata)).value
    assert pd_info is not None and bytes(pd_info.data)[45 : 45 + len(memo_elf)] == memo_elf
    assert bytes(pd_info.data)[13:45] == bytes(payer.pubkey())  # upgrade authority

    clock.now += 0.4  # a freshly deployed program becomes callable in the next slot
    logs = await invoke(client, payer, program.pubkey(), b"deployed")
    assert f"Program {program.pubkey()} success" in logs

    # deploying again over an initialized program fails cleanly in preflight
    with pytest.raises(RPCException):
        await send(client, [deploy], [payer])
