"""BPFLoaderUpgradeable deploy transactions (what `solana program deploy` sends), built by hand.

create buffer + InitializeBuffer -> Write chunks -> create program account + DeployWithMaxDataLen.
Each step is a list of instructions with the keypairs that must sign it, so any client (solana-py
against a cluster's RPC, or a LiteSVM directly) can send them; `deploy_over_rpc` sends them all
through solana-py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solana.rpc.async_api import AsyncClient
from solana.rpc.types import TxOpts
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK, RENT
from solders.transaction import Transaction

LOADER_V3 = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
BUFFER_METADATA_BYTES = 37  # u32 tag, Option<Pubkey> authority
PROGRAM_ACCOUNT_BYTES = 36  # u32 tag, programdata address
# A legacy transaction is at most 1232 bytes; a Write with two signatures' worth of overhead
# leaves a little over 1000 bytes of payload.
WRITE_CHUNK_BYTES = 900


@dataclass(frozen=True)
class DeployStep:
    instructions: list[Instruction]
    signers: list[Keypair]  # fee payer first


def programdata_address(program_id: Pubkey) -> Pubkey:
    """The ProgramData account of an upgradeable program."""
    return Pubkey.find_program_address([bytes(program_id)], LOADER_V3)[0]


def deploy_steps(
    elf: bytes,
    *,
    payer: Keypair,
    program: Keypair,
    buffer: Keypair,
    buffer_rent_lamports: int,
    program_rent_lamports: int,
    max_data_len: int | None = None,
) -> list[DeployStep]:
    """The transactions that deploy `elf` at `program.pubkey()` with `payer` as authority."""
    if not elf:
        raise ValueError("expected a non-empty ELF, got 0 bytes")
    max_len = len(elf) if max_data_len is None else max_data_len
    if max_len < len(elf):
        raise ValueError(f"expected max_data_len >= {len(elf)}, got {max_len}")
    steps = [
        DeployStep(
            [
                create_account(
                    CreateAccountParams(
                        from_pubkey=payer.pubkey(),
                        to_pubkey=buffer.pubkey(),
                        lamports=buffer_rent_lamports,
                        space=BUFFER_METADATA_BYTES + len(elf),
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
    ]
    for offset in range(0, len(elf), WRITE_CHUNK_BYTES):
        chunk = elf[offset : offset + WRITE_CHUNK_BYTES]
        write = Instruction(
            LOADER_V3,
            struct.pack("<IIQ", 1, offset, len(chunk)) + chunk,  # Write { offset, bytes }
            [AccountMeta(buffer.pubkey(), False, True), AccountMeta(payer.pubkey(), True, False)],
        )
        steps.append(DeployStep([write], [payer]))
    deploy = Instruction(
        LOADER_V3,
        struct.pack("<IQ", 2, max_len),  # DeployWithMaxDataLen
        [
            AccountMeta(payer.pubkey(), True, True),
            AccountMeta(programdata_address(program.pubkey()), False, True),
            AccountMeta(program.pubkey(), False, True),
            AccountMeta(buffer.pubkey(), False, True),
            AccountMeta(RENT, False, False),
            AccountMeta(CLOCK, False, False),
            AccountMeta(SYSTEM_PROGRAM, False, False),
            AccountMeta(payer.pubkey(), True, False),
        ],
    )
    create_program = create_account(
        CreateAccountParams(
            from_pubkey=payer.pubkey(),
            to_pubkey=program.pubkey(),
            lamports=program_rent_lamports,
            space=PROGRAM_ACCOUNT_BYTES,
            owner=LOADER_V3,
        )
    )
    steps.append(DeployStep([create_program, deploy], [payer, program]))
    return steps


class DeployError(RuntimeError):
    """A deploy transaction failed; the message carries its error and logs."""


async def deploy_over_rpc(
    client: AsyncClient,
    elf: bytes,
    *,
    payer: Keypair,
    program: Keypair,
    max_data_len: int | None = None,
) -> Pubkey:
    """Deploy `elf` at `program.pubkey()` through a cluster's JSON-RPC (solana-py), like
    `solana program deploy`: every transaction confirmed in order. Returns the program id."""
    buffer = Keypair()
    buffer_rent = await client.get_minimum_balance_for_rent_exemption(
        BUFFER_METADATA_BYTES + len(elf)
    )
    program_rent = await client.get_minimum_balance_for_rent_exemption(PROGRAM_ACCOUNT_BYTES)
    steps = deploy_steps(
        elf,
        payer=payer,
        program=program,
        buffer=buffer,
        buffer_rent_lamports=buffer_rent.value,
        program_rent_lamports=program_rent.value,
        max_data_len=max_data_len,
    )
    for number, step in enumerate(steps):
        blockhash = (await client.get_latest_blockhash()).value.blockhash
        tx = Transaction(step.signers, Message(step.instructions, payer.pubkey()), blockhash)
        signature = (await client.send_transaction(tx, opts=TxOpts(skip_preflight=True))).value
        status = (await client.confirm_transaction(signature)).value[0]
        if status is None or status.err is not None:
            got = (await client.get_transaction(signature)).value
            logs = got.transaction.meta.log_messages if got and got.transaction.meta else None
            raise DeployError(
                f"deploy step {number + 1}/{len(steps)} failed: expected success, got "
                f"{status.err if status else 'no status'}; logs {logs}"
            )
    return program.pubkey()
