"""settlement.bridge: a credit in flight at a crash is resolved from the journal, exactly once.

(The bridge's chain side, vault transactions -> Deposited -> engine Deposit, runs end to end
in tests/integration/test_main_job.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from exchange.core.commands import Deposit, DepositInsurance
from exchange.core.events import Event
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine
from settlement.bridge import BridgeError, BridgeState, DepositBridge
from settlement.onchain import LOCALNET_PROGRAM_ID, AccountMap, ClearingAddresses, clearing_program

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _bridge(data: Path, state: BridgeState) -> DepositBridge:
    state.save(data / "bridge.json")
    program = clearing_program(AsyncClient("http://127.0.0.1:9"), Keypair(), LOCALNET_PROGRAM_ID)
    journal = Journal(f"sqlite:///{data / 'journal.sqlite'}", read_only=True)

    async def credit(cmd: Deposit) -> list[Event]:
        raise AssertionError("recover must not credit")

    return DepositBridge(
        program=program,
        vault=Keypair().pubkey(),
        accounts=AccountMap({(1, 0): Keypair().pubkey()}, ClearingAddresses(LOCALNET_PROGRAM_ID)),
        credit=credit,
        engine_last_seq=lambda: 0,
        journal=journal,
        state_path=data / "bridge.json",
    )


def _pending(amount: int, after_seq: int) -> dict[str, object]:
    return {"key": "sig:0", "owner_id": 1, "sub_account_id": 0, "amount": amount,
            "after_seq": after_seq}  # fmt: skip


async def test_pending_credit_found_in_the_journal_is_recorded_as_credited(tmp_path: Path) -> None:
    # Arrange: the engine journaled the deposit, the process died before recording it
    engine = Engine(EngineConfig(data_dir=tmp_path))
    engine.process([Deposit(1, 0, 500)])
    engine.close()
    bridge = await _bridge(tmp_path, BridgeState(pending=_pending(500, 0)))
    # Act
    bridge.recover()
    # Assert
    saved = BridgeState.load(tmp_path / "bridge.json")
    assert saved.pending is None and saved.credited == ["sig:0"]
    assert bridge.metrics.recovered_pending == 1
    await bridge.client.close()


async def test_pending_credit_missing_from_the_journal_is_credited_again(tmp_path: Path) -> None:
    # Arrange: another deposit is journaled, and the pending one only after a later seq
    engine = Engine(EngineConfig(data_dir=tmp_path))
    engine.process([Deposit(1, 0, 500)])
    engine.close()
    bridge = await _bridge(tmp_path, BridgeState(pending=_pending(500, 5)))
    # Act
    bridge.recover()
    # Assert: not credited, so the next poll credits it
    saved = BridgeState.load(tmp_path / "bridge.json")
    assert saved.pending is None and saved.credited == []
    await bridge.client.close()


async def test_pending_insurance_top_up_is_resolved_from_the_fund_deposits(tmp_path: Path) -> None:
    # Arrange: the engine journaled a top-up of 700 (and a deposit of 500, not a top-up)
    engine = Engine(EngineConfig(data_dir=tmp_path))
    engine.process([Deposit(1, 0, 500), DepositInsurance(700)])
    engine.close()
    found = {**_pending(700, 0), "kind": "insurance", "key": "sig:i0"}
    missing = {**_pending(500, 0), "kind": "insurance", "key": "sig:i1"}
    # Act / Assert: found -> credited; a deposit of the same amount is not a top-up
    bridge = await _bridge(tmp_path, BridgeState(pending=found))
    bridge.recover()
    assert BridgeState.load(tmp_path / "bridge.json").credited == ["sig:i0"]
    assert bridge.state.history == []  # the API's deposit listing is deposits only
    await bridge.client.close()
    bridge = await _bridge(tmp_path, BridgeState(pending=missing))
    bridge.recover()
    assert BridgeState.load(tmp_path / "bridge.json").credited == []
    await bridge.client.close()


def test_a_state_file_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bridge.json"
    path.write_text('{"version": 99}')
    with pytest.raises(BridgeError, match="expected a version 1 JSON file"):
        BridgeState.load(path)
