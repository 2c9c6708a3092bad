"""``perpdex localnet`` deploys the clearing program: the embedded cluster serves it at its
localnet address (executable, driven through anchorpy), and the solana-test-validator command
line carries the same ``.so`` as ``--bpf-program``."""

from __future__ import annotations

from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey

from exchange.cli import build_parser, localnet_programs
from localnet.server import LocalnetServer, Preload
from localnet.validator import ValidatorOptions, validator_command
from settlement.onchain import LOCALNET_PROGRAM_ID, PROGRAM_SO, localnet_program_keypair

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_localnet_program_id_is_the_documented_keypair() -> None:
    assert localnet_program_keypair().pubkey() == LOCALNET_PROGRAM_ID


def test_localnet_preloads_the_clearing_program_first_unless_told_not_to(tmp_path: Path) -> None:
    # Arrange
    extra = ["--bpf-program", "11111111111111111111111111111112", str(tmp_path / "x.so")]
    parser = build_parser()
    # Act
    default = localnet_programs(parser.parse_args(["localnet", *extra]))
    without = localnet_programs(parser.parse_args(["localnet", "--no-clearing-program", *extra]))
    argv = validator_command(ValidatorOptions(data_dir=tmp_path, programs=default))
    # Assert
    assert default[0] == (str(LOCALNET_PROGRAM_ID), PROGRAM_SO) and len(default) == 2
    assert without == default[1:]
    at = argv.index(str(LOCALNET_PROGRAM_ID))
    assert argv[at - 1 : at + 2] == ["--bpf-program", str(LOCALNET_PROGRAM_ID), str(PROGRAM_SO)]


async def test_embedded_localnet_serves_the_program_executable(tmp_path: Path) -> None:
    # Arrange: what `perpdex localnet` hands to the embedded cluster
    programs = localnet_programs(build_parser().parse_args(["localnet"]))
    preload = Preload(programs=[(Pubkey.from_string(a), p) for a, p in programs])
    # Act
    async with LocalnetServer(rpc_port=0, ws_port=0, preload=preload) as server:
        client = AsyncClient(server.rpc_url)
        info = (await client.get_account_info(LOCALNET_PROGRAM_ID)).value
        await client.close()
    # Assert
    assert info is not None and info.executable
