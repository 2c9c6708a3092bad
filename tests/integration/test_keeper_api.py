"""The liquidation endpoints over a real engine (SQLite journal) and aiohttp server: the
candidates after an oracle move, a signed liquidation that wins, a second that is refused
with its code, self-liquidation refused, bad bodies refused before the engine, the ADL
ranks for the owner only, and the SDK methods."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from solders.keypair import Keypair

from exchange.api.app import create_app
from exchange.api.config import ApiConfig
from exchange.client import ApiRequestError, PerpdexRest
from exchange.core.commands import (
    CreateMarket,
    Deposit,
    PlaceOrder,
    UpdateOraclePrice,
)
from exchange.core.orders import Side, TimeInForce
from exchange.engine.config import EngineConfig
from exchange.engine.sequencer import Engine, EngineRunner

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
BTC = 0
TRADER, MAKER, KEEPER_A, KEEPER_B = 1, 3, 20, 21
KEY_A, KEY_B, KEY_TRADER = (Keypair.from_seed(bytes([n]) * 32) for n in (7, 8, 9))


def _oracle(price_units: int, slot: int) -> UpdateOraclePrice:
    return UpdateOraclePrice(BTC, price_units * TICK, 0, slot, time.time_ns() // 10**9, True)


@pytest.fixture
def runner(tmp_path: Path) -> Any:
    engine = Engine(EngineConfig(data_dir=tmp_path))
    engine.process(
        [
            CreateMarket(BTC, "BTC-PERP", TICK, LOT),
            _oracle(100, 1),
            Deposit(TRADER, 0, 100 * USDC),
            Deposit(MAKER, 0, 100_000 * USDC),
            Deposit(KEEPER_A, 0, 100_000 * USDC),
            Deposit(KEEPER_B, 0, 100_000 * USDC),
            PlaceOrder(BTC, MAKER, 0, Side.ASK, 100 * TICK, 10 * LOT),
            PlaceOrder(
                BTC, TRADER, 0, Side.BID, 100 * TICK, 10 * LOT, time_in_force=TimeInForce.IOC
            ),
        ]
    )
    run = EngineRunner(engine)
    yield run
    run.close()
    engine.close()


@pytest.fixture
async def client(runner: EngineRunner) -> AsyncIterator[TestClient[Any, Any]]:
    config = ApiConfig(
        owners=(
            (str(KEY_A.pubkey()), KEEPER_A),
            (str(KEY_B.pubkey()), KEEPER_B, 0),
            (str(KEY_TRADER.pubkey()), TRADER),
        )
    )
    async with TestClient(TestServer(create_app(config, runner))) as c:
        yield c


async def _move(runner: EngineRunner, price_units: int, slot: int) -> None:
    await asyncio.wrap_future(runner.submit(_oracle(price_units, slot)))


@pytest.mark.anyio
async def test_candidates_then_one_winner_and_a_clear_rejection(
    runner: EngineRunner, client: TestClient[Any, Any]
) -> None:
    # Arrange: TRADER is long 10 at 100 with 100 USDC; the oracle falls to 92.
    url = str(client.make_url("")).rstrip("/")
    async with (
        PerpdexRest(url, KEY_A) as a,
        PerpdexRest(url, KEY_B) as b,
        PerpdexRest(url) as public,
    ):
        assert await public.liquidation_candidates() == []
        await _move(runner, 92, 2)
        before = {x.sub_account_id: x.collateral_quote for x in await a.balances()}

        # Act
        [candidate] = await public.liquidation_candidates()
        won = await a.liquidate(candidate.owner_id, candidate.sub_account_id)
        lost = await b.liquidate(TRADER, 0)
        self_liq = await a.liquidate(KEEPER_A, 0)

        # Assert
        assert (candidate.owner_id, candidate.sub_account_id) == (TRADER, 0)
        assert candidate.shortfall_quote > 0
        assert won.status == "LIQUIDATED" and won.liquidator_fee_quote > 0
        assert won.base_taken[BTC] > 0
        assert lost.status == "REJECTED"
        assert lost.reject_code_name == "LIQUIDATION_NOT_ELIGIBLE"
        assert self_liq.reject_code_name == "LIQUIDATION_SELF"
        after = {x.sub_account_id: x.collateral_quote for x in await a.balances()}
        assert after[0] - before[0] == won.liquidator_fee_quote
        assert await public.liquidation_candidates() == []


@pytest.mark.anyio
async def test_bad_requests_are_refused_before_the_engine(
    runner: EngineRunner, client: TestClient[Any, Any]
) -> None:
    url = str(client.make_url("")).rstrip("/")
    async with PerpdexRest(url, KEY_B) as b, PerpdexRest(url) as anonymous:
        seq = runner.engine.core.next_seq
        for call, code in (
            (b.liquidate(TRADER, 0, market_id=7), "UNKNOWN_MARKET"),
            (b.liquidate(TRADER, 0, sub_account_id=1), "AUTH_WRONG_SUB_ACCOUNT"),
            (b.liquidate(-1, 0), "MALFORMED_REQUEST"),
            (anonymous.liquidate(TRADER, 0), "AUTH_MISSING"),
        ):
            with pytest.raises(ApiRequestError) as err:
                await call
            assert err.value.code == code
        assert runner.engine.core.next_seq == seq


@pytest.mark.anyio
async def test_adl_ranks_are_the_owners_own(
    runner: EngineRunner, client: TestClient[Any, Any]
) -> None:
    url = str(client.make_url("")).rstrip("/")
    async with PerpdexRest(url, KEY_TRADER) as trader, PerpdexRest(url, KEY_A) as a:
        [row] = await trader.adl_ranks(TRADER, 0)
        with pytest.raises(ApiRequestError) as err:
            await a.adl_ranks(TRADER, 0)
    assert row.market_id == BTC and row.side == "LONG" and row.base == 10 * LOT
    assert row.adl_rank == runner.engine.core.adl_rank(TRADER, 0, BTC) == 1
    assert row.side_positions == 1
    assert err.value.code == "AUTH_WRONG_OWNER" and err.value.status == 403
