"""The toolchain demo program (our SDK + clang-19 + our linker) on real Solana runtimes.

1. Deployed through the real BPFLoaderUpgradeable `DeployWithMaxDataLen` (strict ELF checks and
   the verifier) on a LiteSVM whose feature set lets loader-v3 deploy.
2. Deployed with the ordinary deploy transactions through solana-py against our embedded cluster
   (`localnet`), then invoked: logs, u128 helpers vs Python on edge values, PDAs vs solders,
   an SPL Token transfer CPI signed by a PDA, a system create_account signed by a PDA, the clock,
   the heap, errors, compute units.
"""

from __future__ import annotations

import base64
import random
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.types import TxOpts
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

from localnet.server import LocalnetServer
from settlement.toolchain import build
from settlement.toolchain.loader_v3 import (
    BUFFER_METADATA_BYTES,
    LOADER_V3,
    PROGRAM_ACCOUNT_BYTES,
    SYSTEM_PROGRAM,
    DeployError,
    deploy_over_rpc,
    deploy_steps,
    programdata_address,
)
from settlement.toolchain.sbf_linker import link

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DEMO_SO = Path(__file__).resolve().parents[3] / "settlement/program/toolchain_demo.so"
SOL = 1_000_000_000
# Agave gates new loader-v3 deployments behind this feature; off, DeployWithMaxDataLen runs.
DISABLE_DEPLOY_OF_ALLOC_FREE_SYSCALL = Pubkey.from_string(
    "EmhbpdVtZ2hWRGFWBDjn2i3SJD8Z36z4mpMcZJEnebnP"
)
U64 = 2**64
EDGE_U64 = [0, 1, 2, 3, 7, 2**32 - 1, 2**32, 2**32 + 1, 2**63 - 1, 2**63, 2**63 + 1, U64 - 1]


# --------------------------------------------------------------------------- real loader-v3
def loader_v3_svm() -> LiteSVM:
    """A LiteSVM whose BPFLoaderUpgradeable accepts DeployWithMaxDataLen (strict loader path)."""
    features = FeatureSet.all_enabled()
    active = dict(features.active)
    active.pop(DISABLE_DEPLOY_OF_ALLOC_FREE_SYSCALL, None)
    features = FeatureSet(active, set(features.inactive) | {DISABLE_DEPLOY_OF_ALLOC_FREE_SYSCALL})
    return (
        LiteSVM.default()
        .with_builtins(features)
        .with_precompiles(features)
        .with_sysvars()
        .with_spl_programs()
        .with_lamports(10**18)
        .with_sigverify(True)
    )


def deploy_raw(svm: LiteSVM, elf: bytes, payer: Keypair, program: Keypair) -> str | None:
    """Run the deploy transactions; the error of the first failing one, or None."""
    steps = deploy_steps(
        elf,
        payer=payer,
        program=program,
        buffer=Keypair(),
        buffer_rent_lamports=svm.minimum_balance_for_rent_exemption(
            BUFFER_METADATA_BYTES + len(elf)
        ),
        program_rent_lamports=svm.minimum_balance_for_rent_exemption(PROGRAM_ACCOUNT_BYTES),
    )
    for step in steps:
        tx = Transaction(
            step.signers, Message(step.instructions, payer.pubkey()), svm.latest_blockhash()
        )
        result = svm.send_transaction(tx)
        svm.expire_blockhash()
        if isinstance(result, FailedTransactionMetadata):
            return f"{result.err()} {list(result.meta().logs())}"
    return None


def test_real_loader_v3_deploys_and_runs_the_demo() -> None:
    # Arrange
    svm = loader_v3_svm()
    payer, program = Keypair(), Keypair()
    svm.airdrop(payer.pubkey(), 100 * SOL)
    # Act
    error = deploy_raw(svm, DEMO_SO.read_bytes(), payer, program)
    svm.warp_to_slot(svm.get_clock().slot + 1)
    ix = Instruction(program.pubkey(), b"\x00", [AccountMeta(payer.pubkey(), True, True)])
    result = svm.send_transaction(
        Transaction([payer], Message([ix], payer.pubkey()), svm.latest_blockhash())
    )
    # Assert
    assert error is None
    programdata = svm.get_account(programdata_address(program.pubkey()))
    assert programdata is not None and programdata.owner == LOADER_V3
    assert not isinstance(result, FailedTransactionMetadata), result
    assert "Program log: perpdex toolchain demo" in result.logs()
    assert "Program log: callx ok" in result.logs()


@pytest.mark.parametrize("so", sorted(DEMO_SO.parent.glob("*.so")), ids=lambda p: p.name)
def test_real_loader_v3_accepts_every_committed_program(so: Path) -> None:
    # Arrange
    svm = loader_v3_svm()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * SOL)
    # Act
    error = deploy_raw(svm, so.read_bytes(), payer, Keypair())
    # Assert
    assert error is None, error


@pytest.mark.skipif(build.find_clang() is None, reason="clang-19 absent: no fresh objects")
@pytest.mark.parametrize(
    ("source", "logs"),
    [
        ("unsigned long long entrypoint(const unsigned char *in) { return in[0] & 0; }", []),
        (
            '#include "perpdex_sol.h"\n'
            'static const char *const WORDS[] = {"first", "second"};\n'
            "uint64_t entrypoint(const uint8_t *in) { sol_log(WORDS[1 + (in[0] & 0)]); return 0; }",
            ["Program log: second"],
        ),
    ],
    ids=["no-syscalls-no-rodata", "rodata-pointer-table"],
)
def test_real_loader_v3_runs_freshly_linked_edge_cases(
    source: str, logs: list[str], tmp_path: Path
) -> None:
    # Arrange
    clang = build.find_clang()
    assert clang is not None
    (tmp_path / "edge.c").write_text(source)
    obj = build.compile_source(clang, str(tmp_path / "edge.c"), tmp_path / "edge.o")
    elf = link([("edge.o", obj)]).elf
    svm = loader_v3_svm()
    payer, program = Keypair(), Keypair()
    svm.airdrop(payer.pubkey(), 100 * SOL)
    # Act
    error = deploy_raw(svm, elf, payer, program)
    svm.warp_to_slot(svm.get_clock().slot + 1)
    ix = Instruction(program.pubkey(), b"", [AccountMeta(payer.pubkey(), True, True)])
    result = svm.send_transaction(
        Transaction([payer], Message([ix], payer.pubkey()), svm.latest_blockhash())
    )
    # Assert
    assert error is None, error
    assert not isinstance(result, FailedTransactionMetadata), result
    assert all(line in result.logs() for line in logs)


def test_real_loader_v3_rejects_a_32_bit_jump() -> None:
    # Arrange: the demo with its first instruction patched to jne32 (opcode 0x56), which our
    # linker refuses to produce: the real verifier refuses it too
    elf = bytearray(DEMO_SO.read_bytes())
    text_offset = struct.unpack_from("<Q", elf, 24)[0]  # e_entry == entrypoint's file offset
    elf[text_offset] = 0x56
    svm = loader_v3_svm()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * SOL)
    # Act
    error = deploy_raw(svm, bytes(elf), payer, Keypair())
    # Assert
    assert error is not None and "InvalidAccountData" in error


# --------------------------------------------------------------------------- embedded cluster
class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Outcome:
    err: object
    logs: list[str]
    return_data: bytes
    compute_units: int


@dataclass
class Demo:
    server: LocalnetServer
    client: AsyncClient
    clock: FakeClock
    payer: Keypair
    program_id: Pubkey

    async def send(self, ixs: list[Instruction], signers: list[Keypair]) -> Outcome:
        bh = (await self.client.get_latest_blockhash()).value.blockhash
        tx = Transaction(signers, Message(ixs, signers[0].pubkey()), bh)
        sig = (await self.client.send_transaction(tx, opts=TxOpts(skip_preflight=True))).value
        await self.client.confirm_transaction(sig)
        got = (await self.client.get_transaction(sig)).value
        assert got is not None and got.transaction.meta is not None
        logs = list(got.transaction.meta.log_messages or [])
        returned = b""
        consumed = 0
        for line in logs:
            if line.startswith(f"Program return: {self.program_id} "):
                returned = base64.b64decode(line.split(" ")[-1])
            match = re.match(rf"Program {self.program_id} consumed (\d+) of", line)
            if match:
                consumed = int(match.group(1))
        return Outcome(got.transaction.meta.err, logs, returned, consumed)

    async def call(self, data: bytes, accounts: list[AccountMeta] | None = None) -> Outcome:
        metas = accounts or [AccountMeta(self.payer.pubkey(), True, True)]
        return await self.send([Instruction(self.program_id, data, metas)], [self.payer])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    clock = FakeClock()
    async with LocalnetServer(rpc_port=0, ws_port=0, time_source=clock) as server:
        client = AsyncClient(server.rpc_url)
        try:
            payer = Keypair.from_seed(bytes([1]) * 32)  # fixed keys: fixed PDA bumps and CU
            await client.confirm_transaction(
                (await client.request_airdrop(payer.pubkey(), 100 * SOL)).value
            )
            program = Keypair.from_seed(bytes([2]) * 32)
            await deploy_over_rpc(client, DEMO_SO.read_bytes(), payer=payer, program=program)
            d = Demo(server, client, clock, payer, program.pubkey())
            clock.now += 0.4  # a freshly deployed program is callable from the next slot
            yield d
        finally:
            await client.close()


async def test_logs_function_pointer_calls_and_compute_units(demo: Demo) -> None:
    # Act
    out = await demo.call(b"\x00")
    # Assert
    assert out.err is None
    assert "Program log: perpdex toolchain demo" in out.logs
    assert "Program log: 0x1, 0x1, 0x0, 0x0, 0x0" in out.logs  # 1 account, 1 byte of data
    assert "Program log: callx ok" in out.logs
    assert 0 < out.compute_units < 2_000


def expected_vector(a: int, b: int, d: int) -> list[int]:
    """What op_u128 returns for one (a, b, d), computed with Python integers."""
    product = a * b
    q, r = divmod(product, d)
    signed_a = a - U64 if a >= 2**63 else a
    floor_q = (signed_a * b) // d
    ceil_q = -((-signed_a * b) // d)
    fits = (1 if -(2**63) <= floor_q < 2**63 else 0) | (2 if -(2**63) <= ceil_q < 2**63 else 0)
    return [
        product % U64,
        product >> 64,
        q % U64,
        q >> 64,
        r,
        (floor_q if fits & 1 else 0) % U64,
        (ceil_q if fits & 2 else 0) % U64,
        fits,
        (signed_a // d) % U64,
    ]


async def test_u128_helpers_match_python_on_edge_values(demo: Demo) -> None:
    # Arrange: every edge value as a, b and d, plus seeded random vectors
    rng = random.Random(5)
    vectors = [(a, b, d) for a in EDGE_U64 for b in EDGE_U64[::3] for d in EDGE_U64[1::4]]
    vectors += [(rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(rng.choice([8, 33, 64])) or 1)
                for _ in range(40)]  # fmt: skip
    # Act
    outcomes = []
    for start in range(0, len(vectors), 14):
        chunk = vectors[start : start + 14]
        data = b"\x01" + b"".join(struct.pack("<QQQ", *v) for v in chunk)
        outcomes.append((chunk, await demo.call(data)))
    # Assert
    for chunk, out in outcomes:
        assert out.err is None, out.logs
        got = struct.unpack(f"<{9 * len(chunk)}Q", out.return_data)
        for i, (a, b, d) in enumerate(chunk):
            assert list(got[9 * i : 9 * i + 9]) == expected_vector(a, b, d), (a, b, d)


async def test_pdas_match_solders(demo: Demo) -> None:
    # Arrange
    seed_sets = [[], [b"vault"], [b"user", bytes(demo.payer.pubkey())], [b"m", b"\x00" * 32, b"x"]]
    for seeds in seed_sets:
        data = b"\x02" + bytes([len(seeds)]) + b"".join(bytes([len(s)]) + s for s in seeds)
        # Act
        out = await demo.call(data)
        # Assert
        assert out.err is None, out.logs
        address, bump = Pubkey.find_program_address(seeds, demo.program_id)
        assert out.return_data == bytes(address) + bytes([bump])


async def make_token_accounts(demo: Demo, vault_owner: Pubkey) -> tuple[Pubkey, Pubkey]:
    """A mint, a vault owned by `vault_owner` holding 1,000,000, a payer-owned destination."""
    payer = demo.payer.pubkey()
    mint, vault, destination = Keypair(), Keypair(), Keypair()
    mint_rent = (await demo.client.get_minimum_balance_for_rent_exemption(MINT_LEN)).value
    acct_rent = (await demo.client.get_minimum_balance_for_rent_exemption(ACCOUNT_LEN)).value

    def new_account(account: Keypair, lamports: int, space: int) -> Instruction:
        return create_account(
            CreateAccountParams(
                from_pubkey=payer,
                to_pubkey=account.pubkey(),
                lamports=lamports,
                space=space,
                owner=TOKEN_PROGRAM_ID,
            )
        )

    ixs = [
        new_account(mint, mint_rent, MINT_LEN),
        initialize_mint(
            InitializeMintParams(
                decimals=6,
                program_id=TOKEN_PROGRAM_ID,
                mint=mint.pubkey(),
                mint_authority=payer,
                freeze_authority=None,
            )
        ),
    ]
    for account, owner in ((vault, vault_owner), (destination, payer)):
        ixs += [
            new_account(account, acct_rent, ACCOUNT_LEN),
            initialize_account(
                InitializeAccountParams(
                    program_id=TOKEN_PROGRAM_ID,
                    account=account.pubkey(),
                    mint=mint.pubkey(),
                    owner=owner,
                )
            ),
        ]
    ixs.append(
        mint_to(
            MintToParams(
                program_id=TOKEN_PROGRAM_ID,
                mint=mint.pubkey(),
                dest=vault.pubkey(),
                mint_authority=payer,
                amount=1_000_000,
            )
        )
    )
    out = await demo.send(ixs, [demo.payer, mint, vault, destination])
    assert out.err is None, out.logs
    return vault.pubkey(), destination.pubkey()


async def token_amount(demo: Demo, account: Pubkey) -> int:
    info = (await demo.client.get_account_info(account)).value
    assert info is not None
    return int(struct.unpack_from("<Q", bytes(info.data), 64)[0])


async def test_spl_token_transfer_cpi_signed_by_a_pda(demo: Demo) -> None:
    # Arrange
    authority, bump = Pubkey.find_program_address([b"vault"], demo.program_id)
    vault, destination = await make_token_accounts(demo, authority)

    def accounts(signing_authority: Pubkey) -> list[AccountMeta]:
        return [
            AccountMeta(vault, False, True),
            AccountMeta(destination, False, True),
            AccountMeta(signing_authority, False, False),
            AccountMeta(TOKEN_PROGRAM_ID, False, False),
        ]

    # Act
    moved = await demo.call(b"\x03" + struct.pack("<Q", 250_000), accounts(authority))
    too_much = await demo.call(b"\x03" + struct.pack("<Q", 750_001), accounts(authority))
    wrong_pda = await demo.call(b"\x03" + struct.pack("<Q", 1), accounts(demo.payer.pubkey()))
    # Assert
    assert moved.err is None, moved.logs
    assert f"Program {TOKEN_PROGRAM_ID} invoke [2]" in moved.logs
    find_pda_units = 1_500 * (256 - bump)  # one create_program_address per bump tried
    assert 4_000 < moved.compute_units - find_pda_units < 8_000
    assert too_much.err is not None  # the token program's InsufficientFunds, nothing moved
    assert "InvalidSeeds" in str(wrong_pda.err)
    assert await token_amount(demo, vault) == 750_000
    assert await token_amount(demo, destination) == 250_000


async def test_system_create_account_signed_by_a_pda(demo: Demo) -> None:
    # Arrange
    state, _ = Pubkey.find_program_address([b"state", bytes(demo.payer.pubkey())], demo.program_id)
    accounts = [
        AccountMeta(demo.payer.pubkey(), True, True),
        AccountMeta(state, False, True),
        AccountMeta(SYSTEM_PROGRAM, False, False),
    ]
    # Act
    out = await demo.call(b"\x04" + struct.pack("<Q", 200), accounts)
    again = await demo.call(b"\x04" + struct.pack("<Q", 201), accounts)
    # Assert
    assert out.err is None, out.logs
    info = (await demo.client.get_account_info(state)).value
    assert info is not None
    assert info.owner == demo.program_id and len(info.data) == 200
    rent = (await demo.client.get_minimum_balance_for_rent_exemption(200)).value
    assert info.lamports == rent  # pd_rent_exempt_minimum agrees with the cluster
    assert again.err is not None  # the system program refuses to create it twice
    assert any("already in use" in line for line in again.logs)


async def test_clock_heap_and_errors(demo: Demo) -> None:
    # Act
    clock = await demo.call(b"\x05")
    heap = await demo.call(b"\x06")
    custom = await demo.call(b"\x07" + struct.pack("<Q", 6001))
    builtin = await demo.call(b"\x07" + struct.pack("<Q", 8 << 32))
    panic = await demo.call(b"\x08")
    unknown = await demo.call(b"\x09")
    # Assert
    slot, unix_timestamp = struct.unpack("<Qq", clock.return_data)
    assert slot == demo.server.cluster.slot
    assert unix_timestamp == demo.server.cluster.unix_timestamp
    assert struct.unpack("<Q", heap.return_data) == (31,)  # 32 KiB heap, 8-byte cursor
    assert "6001" in str(custom.err)
    assert "MissingRequiredSignature" in str(builtin.err)
    assert any("Panicked in toolchain_demo.c" in line for line in panic.logs)
    assert "InvalidInstructionData" in str(unknown.err)


async def test_deploy_over_rpc_reports_a_failing_step(demo: Demo) -> None:
    # Arrange: the program account already exists (the demo's own id)
    program = Keypair.from_seed(bytes([2]) * 32)
    # Act
    with pytest.raises(DeployError) as info:
        await deploy_over_rpc(demo.client, DEMO_SO.read_bytes(), payer=demo.payer, program=program)
    # Assert
    assert "failed: expected success" in str(info.value)
