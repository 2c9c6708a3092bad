"""The backstop as ``perpdex run`` runs it: the engine in its own process (``EngineProcess``),
``LiquidationService`` over the API port's mirror (an ``EnginePort`` listener after each
fold) sending its ``Liquidate`` through the port. The backstop acts when the grace period is
over, never on its own owner, and the journal folds to the mirror's state."""

from __future__ import annotations

from pathlib import Path

import pytest
from backstop_support import BACKSTOP, LOT, MAKER, TICK, TRADER, USDC, S
from integration_support import wait_for

from exchange.api.engine_port import EnginePort
from exchange.core.commands import Command, CreateMarket, Deposit, PlaceOrder, UpdateOraclePrice
from exchange.core.events import AccountLiquidated
from exchange.core.orders import Side, TimeInForce
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.liquidation_service import LiquidationService
from exchange.engine.process import EngineProcess
from exchange.engine.sequencer import recover
from perp.clearinghouse import Clearinghouse

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def ten_x_long(backstop_owner_id: int) -> list[Command]:
    """TRADER long 10 lots at 100 on 100 USDC (10x) against MAKER; ``backstop_owner_id``
    funded (it may be the maker itself)."""
    funded = [Deposit(o, 0, 100_000 * USDC) for o in sorted({MAKER, backstop_owner_id})]
    return [
        CreateMarket(0, "BTC-PERP", TICK, LOT),
        UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
        Deposit(TRADER, 0, 100 * USDC),
        *funded,
        PlaceOrder(0, MAKER, 0, Side.ASK, 100 * TICK, 10 * LOT),
        PlaceOrder(0, TRADER, 0, Side.BID, 100 * TICK, 10 * LOT, time_in_force=TimeInForce.IOC),
    ]


async def test_the_backstop_on_the_mirror_liquidates_through_the_engine_process(
    tmp_path: Path,
) -> None:
    # Arrange: the engine process, the port's mirror, the service listening on it
    runner = EngineProcess(EngineConfig(data_dir=tmp_path, tick_interval_ns=3600 * S))
    port = EnginePort(runner)
    try:
        await port.start()
        mirror = port.model.core
        assert isinstance(mirror, Clearinghouse)
        service = LiquidationService(
            mirror,
            lambda command: port.submit_nowait((command,)),
            liquidator_owner_id=BACKSTOP,
            grace_period_ns=0,  # due at the first screen that finds it
        )
        port.listen(lambda events, _update: service.on_batch(events))
        await port.submit_many(ten_x_long(BACKSTOP))
        assert service.candidates == [] and service.sent == 0
        # Act: the oracle falls to 92: TRADER is below maintenance
        await port.submit(UpdateOraclePrice(0, 92 * TICK, 0, 2, 2, True))

        # Assert: the backstop's Liquidate ran in the engine and came back into the mirror
        async def backstop_holds_the_position() -> bool:
            position = mirror.account(BACKSTOP, 0).positions.get(0)
            return position is not None and position.base > 0

        await wait_for(backstop_holds_the_position, 10, "the backstop's liquidation")
        assert service.sent == 1 and service.candidates == []
        mirror_hash, mirror_seq = mirror.state_hash(), mirror.next_seq - 1
    finally:
        port.close()
        runner.close()
    with Journal.for_data_dir(tmp_path, read_only=True) as journal:
        liquidated = [e for e in journal.read() if type(e) is AccountLiquidated]
        folded, _ = recover(journal)
    assert [(e.owner_id, e.liquidator_owner_id) for e in liquidated] == [(TRADER, BACKSTOP)]
    assert (folded.state_hash(), folded.next_seq - 1) == (mirror_hash, mirror_seq)


async def test_the_backstop_on_the_mirror_never_liquidates_its_own_owner(tmp_path: Path) -> None:
    runner = EngineProcess(EngineConfig(data_dir=tmp_path, tick_interval_ns=3600 * S))
    port = EnginePort(runner)
    try:
        await port.start()
        mirror = port.model.core
        assert isinstance(mirror, Clearinghouse)
        sent: list[object] = []
        service = LiquidationService(
            mirror, sent.append, liquidator_owner_id=TRADER, liquidator_sub_account_id=1,
            grace_period_ns=0,
        )  # fmt: skip
        port.listen(lambda events, _update: service.on_batch(events))
        await port.submit_many(ten_x_long(MAKER))
        await port.submit(UpdateOraclePrice(0, 92 * TICK, 0, 2, 2, True))
        assert [c.owner_id for c in service.candidates] == [TRADER]
        assert sent == [] and service.sent == 0
    finally:
        port.close()
        runner.close()
