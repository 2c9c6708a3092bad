"""BPFLoaderUpgradeable `DeployWithMaxDataLen` emulation for the embedded cluster.

The LiteSVM in solders 0.26 rejects `DeployWithMaxDataLen` ("Unsupported instruction": its
runtime gates new loader-v3 deployments), while `InitializeBuffer` and `Write` work. Clients
(the solana CLI, anchor deploy, hand-built transactions) still send the ordinary sequence
create buffer -> write chunks -> [create program account, DeployWithMaxDataLen]. So the cluster
runs such a transaction without its deploy instruction (signatures are checked on the original
first) and then performs the deploy itself, writing the program and ProgramData accounts in the
loader-v3 layout, which LiteSVM then loads and executes normally.

Supported: a legacy transaction whose *last* instruction is the deploy (the CLI's layout).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.account import Account
from solders.instruction import CompiledInstruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

LOADER_V3 = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
DEPLOY_WITH_MAX_DATA_LEN = 2
BUFFER_METADATA = 37  # u32 tag 1, Option<Pubkey> authority
PROGRAM_SIZE = 36  # u32 tag 2, programdata address
PROGRAMDATA_METADATA = 45  # u32 tag 3, u64 slot, Option<Pubkey> authority


@dataclass(frozen=True)
class DeployRequest:
    index: int  # instruction index in the original transaction
    max_data_len: int
    payer: Pubkey
    programdata: Pubkey
    program: Pubkey
    buffer: Pubkey
    authority: Pubkey
    authority_is_signer: bool


def find_deploy(tx: VersionedTransaction) -> DeployRequest | None:
    """The trailing DeployWithMaxDataLen instruction of a legacy transaction, if any."""
    msg = tx.message
    if not isinstance(msg, Message) or not msg.instructions:
        return None
    keys = list(msg.account_keys)
    ix: CompiledInstruction = msg.instructions[-1]
    data = bytes(ix.data)
    if keys[ix.program_id_index] != LOADER_V3 or len(data) < 12:
        return None
    tag, max_data_len = struct.unpack_from("<IQ", data)
    if tag != DEPLOY_WITH_MAX_DATA_LEN:
        return None
    accts = list(ix.accounts)
    if len(accts) < 8:
        return None
    authority_index = accts[7]
    return DeployRequest(
        index=len(msg.instructions) - 1,
        max_data_len=max_data_len,
        payer=keys[accts[0]],
        programdata=keys[accts[1]],
        program=keys[accts[2]],
        buffer=keys[accts[3]],
        authority=keys[authority_index],
        authority_is_signer=msg.is_signer(authority_index),
    )


def strip_deploy(tx: VersionedTransaction) -> VersionedTransaction:
    """The same transaction (same signatures) without its last instruction."""
    msg = tx.message
    assert isinstance(msg, Message)
    header = msg.header
    stripped = Message.new_with_compiled_instructions(
        header.num_required_signatures,
        header.num_readonly_signed_accounts,
        header.num_readonly_unsigned_accounts,
        list(msg.account_keys),
        msg.recent_blockhash,
        list(msg.instructions)[:-1],
    )
    return VersionedTransaction.populate(stripped, list(tx.signatures))


@dataclass(frozen=True)
class DeployEffects:
    accounts: list[tuple[Pubkey, Account]]
    logs: list[str]


def plan_deploy(
    req: DeployRequest,
    get: dict[Pubkey, Account | None],
    rent_exempt: int,
    slot: int,
) -> DeployEffects | str:
    """The account writes the deploy makes, or the InstructionError name it fails with.

    `get` maps payer/program/buffer/programdata to their state after the other instructions;
    `rent_exempt` is the minimum balance for the ProgramData account.
    """
    expected_pd, _ = Pubkey.find_program_address([bytes(req.program)], LOADER_V3)
    if req.programdata != expected_pd:
        return "InvalidArgument"
    if not req.authority_is_signer:
        return "MissingRequiredSignature"
    buffer = get.get(req.buffer)
    if buffer is None or buffer.owner != LOADER_V3:
        return "InvalidAccountData"
    bdata = bytes(buffer.data)
    if len(bdata) < BUFFER_METADATA or struct.unpack_from("<I", bdata)[0] != 1:
        return "InvalidAccountData"
    if bdata[4] != 1 or Pubkey.from_bytes(bdata[5:37]) != req.authority:
        return "IncorrectAuthority"
    elf = bdata[BUFFER_METADATA:]
    if req.max_data_len < len(elf):
        return "AccountDataTooSmall"
    program = get.get(req.program)
    if program is None or program.owner != LOADER_V3:
        return "IncorrectProgramId"
    if len(program.data) < PROGRAM_SIZE or any(bytes(program.data)[:4]):
        return "AccountAlreadyInitialized"
    existing_pd = get.get(req.programdata)
    if existing_pd is not None and existing_pd.lamports > 0:
        return "AccountAlreadyInitialized"
    payer = get.get(req.payer)
    if payer is None:
        return "InsufficientFunds"
    payer_lamports = payer.lamports + buffer.lamports - rent_exempt
    if payer_lamports < 0:
        return "InsufficientFunds"
    pd_data = (
        struct.pack("<IQ", 3, slot)
        + b"\x01"
        + bytes(req.authority)
        + elf
        + bytes(req.max_data_len - len(elf))
    )
    writes = [
        (
            req.payer,
            Account(payer_lamports, payer.data, payer.owner, payer.executable, payer.rent_epoch),
        ),
        (req.buffer, Account(0, b"", Pubkey.default())),
        (req.programdata, Account(rent_exempt, pd_data, LOADER_V3, False)),
        (
            req.program,
            Account(
                program.lamports, struct.pack("<I", 2) + bytes(req.programdata), LOADER_V3, True
            ),
        ),
    ]
    logs = [
        f"Program {LOADER_V3} invoke [1]",
        f"Deployed program {req.program}",
        f"Program {LOADER_V3} success",
    ]
    return DeployEffects(accounts=writes, logs=logs)


def programdata_size(req: DeployRequest) -> int:
    return PROGRAMDATA_METADATA + req.max_data_len
