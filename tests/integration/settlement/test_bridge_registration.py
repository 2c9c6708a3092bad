"""settlement.bridge open sign-up: the first deposit of an unknown wallet registers it in a
real engine before the credit; a crash between the two leaves a registered wallet whose
deposit the restarted bridge (its map rebuilt from the engine's registry) credits once,
without registering it again; without ``register`` the deposit stays unmapped."""

from __future__ import annotations

from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair

from exchange.core.commands import FIRST_REGISTERED_OWNER_ID, Deposit, RegisterAccount
from exchange.core.events import AccountRegistered, CollateralDeposited, Event
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine
from settlement.bridge import ChainDeposit, DepositBridge
from settlement.onchain import (
    LOCALNET_PROGRAM_ID,
    AccountMap,
    ClearingAddresses,
    clearing_program,
    registry_wallets,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

WALLET = Keypair.from_seed(bytes([9]) * 32).pubkey()
DEPOSIT = ChainDeposit("sig", 0, 10, WALLET, 750)


class Crash(Exception):
    pass


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def bridge(data: Path, engine: Engine, *, accounts: AccountMap, crash_on_credit: bool,
           register: bool = True) -> DepositBridge:  # fmt: skip
    async def credit(cmd: Deposit) -> list[Event]:
        if crash_on_credit:
            raise Crash
        return engine.process([cmd])[0]

    async def do_register(cmd: RegisterAccount) -> list[Event]:
        return engine.process([cmd])[0]

    return DepositBridge(
        program=clearing_program(AsyncClient("http://127.0.0.1:9"), Keypair(), LOCALNET_PROGRAM_ID),
        vault=Keypair().pubkey(), accounts=accounts, credit=credit,
        engine_last_seq=lambda: engine.core.next_seq - 1,
        journal=Journal(f"sqlite:///{data / 'journal.sqlite'}", read_only=True),
        state_path=data / "bridge.json", register=do_register if register else None,
    )  # fmt: skip


async def test_a_crash_between_registration_and_credit_credits_once_after_restart(
    tmp_path: Path,
) -> None:
    # Arrange: the first process registers the wallet, then dies before the credit
    engine = Engine(EngineConfig(data_dir=tmp_path))
    addresses = ClearingAddresses(LOCALNET_PROGRAM_ID)
    first = bridge(tmp_path, engine, accounts=AccountMap({}, addresses), crash_on_credit=True)
    with pytest.raises(Crash):
        await first._credit(DEPOSIT)
    await first.client.close()
    # Act: a restart rebuilds the map from the registry, recovers, and credits the deposit
    accounts = AccountMap(registry_wallets(engine.core.registry), addresses)
    second = bridge(tmp_path, engine, accounts=accounts, crash_on_credit=False)
    second.recover()
    credited = await second._credit(DEPOSIT)
    await second.client.close()
    events = list(engine.journal.read(after_seq=0))
    engine.close()
    # Assert
    owner = FIRST_REGISTERED_OWNER_ID
    assert first.metrics.registered == 1 and second.metrics.registered == 0
    assert credited == 1
    assert [type(e) for e in events] == [AccountRegistered, CollateralDeposited]
    deposited = events[1]
    assert isinstance(deposited, CollateralDeposited)
    assert (deposited.owner_id, deposited.sub_account_id, deposited.amount_quote) == (owner, 0, 750)
    assert accounts.account_of_wallet(WALLET) == (owner, 0)


async def test_without_register_an_unknown_wallet_stays_unmapped(tmp_path: Path) -> None:
    engine = Engine(EngineConfig(data_dir=tmp_path))
    accounts = AccountMap({}, ClearingAddresses(LOCALNET_PROGRAM_ID))
    plain = bridge(tmp_path, engine, accounts=accounts, crash_on_credit=False, register=False)
    credited = await plain._credit(DEPOSIT)
    await plain.client.close()
    assert credited == 0 and plain.metrics.unmapped == 1
    assert engine.core.next_seq == 1 and engine.core.registry == {}
    engine.close()
