"""Governance from the chain into the engine (issue 8), over RPC and PubSub on the embedded
cluster with a warped clock: propose -> approve (2 of 3) -> warp past the timelock ->
execute -> the watcher (logsSubscribe) -> SetRiskParams -> the engine's RiskParamsChanged ->
the next margin check uses the new values. Also: the timelock over RPC, double execution,
the guardian (stricter at once, never looser) mirrored into the engine, a watcher restart
that re-applies nothing, and a catch-up after a change executed while it was down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction

from exchange.core.commands import CancelOrder, PlaceOrder
from exchange.core.errors import RejectCode
from exchange.core.events import (
    OrderAccepted,
    OrderRejected,
    OrderRested,
    RiskParamsChanged,
)
from exchange.core.orders import Side
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION, U64_MAX
from localnet.server import LocalnetServer
from perp.params import PerpMarketParams
from perp.risk_gate import MarketStatus
from settlement.gov_cli import GovClient, ProgramRefused
from settlement.gov_watcher import (
    ChainRiskParams,
    EngineDirect,
    EngineMarket,
    GovernanceSnapshot,
    GovWatcher,
    MarketView,
    ProposalView,
    applied_proposal_ids,
    engine_proposal_id,
    engine_values,
    params_change,
    plan_sync,
)
from settlement.governance import execute_ix, initialize_governance_ix
from settlement.stack import LAMPORTS_PER_SOL, SettlementStack, StackMarket, seeded_keypair

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
TIMELOCK_S = 3_600
SLOT_S = 0.4
TICK = PRICE_PRECISION // 100
LOT = BASE_PRECISION // 100
MARKET = StackMarket(0, "BTC-PERP", TICK, LOT, 100 * PRICE_PRECISION)
TRADER = (1, 0)
# 10x on one tier; on-chain max_leverage 10 at creation
PARAMS = PerpMarketParams(margin_tiers=((U64_MAX, 100_000, 50_000),))
COUNCIL = [seeded_keypair(f"gov council {i}") for i in range(3)]
GUARDIAN = seeded_keypair("gov guardian")
STRANGER = seeded_keypair("gov stranger")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Gov:
    """The stack plus a governance client per key."""

    def __init__(self, stack: SettlementStack) -> None:
        self.stack = stack
        self.clients = {
            k.pubkey(): GovClient(stack.client(), k, stack.program_id)
            for k in [*COUNCIL, GUARDIAN, STRANGER, stack.authority]
        }

    def by(self, key: Keypair) -> GovClient:
        return self.clients[key.pubkey()]

    def warp_seconds(self, seconds: int) -> None:
        self.stack.server.cluster.warp(int(seconds / SLOT_S) + 1)

    async def executed_change(self, **sets: Any) -> int:
        """Propose (council 0) with the Market's values changed, approve (council 1), warp
        past the timelock, execute (a stranger); returns the id."""
        risk = await self.by(COUNCIL[0]).market_risk(0)
        for name, value in sets.items():
            if name == "tiers":
                for row, (initial, maintenance) in zip(risk["margin_tiers"], value, strict=False):
                    row.update(initial_ppm=initial, maintenance_ppm=maintenance)
            else:
                risk[name] = value
        proposal_id = await self.by(COUNCIL[0]).propose_market(0, risk)
        await self.by(COUNCIL[1]).approve(proposal_id)
        self.warp_seconds(TIMELOCK_S)
        await self.by(STRANGER).execute(proposal_id)
        return proposal_id

    def watcher(self, **kwargs: Any) -> GovWatcher:
        assert self.stack.engine is not None
        return GovWatcher(
            program=self.by(STRANGER).program,
            ws_url=self.stack.server.ws_url,
            market_ids=[0],
            engine=EngineDirect(self.stack.engine),
            **kwargs,
        )

    def journaled_changes(self) -> list[RiskParamsChanged]:
        assert self.stack.engine is not None
        return [e for e in self.stack.engine.journal.read() if type(e) is RiskParamsChanged]


@pytest.fixture
async def gov(tmp_path: Path) -> AsyncIterator[Gov]:
    deposits = [(*TRADER, 1_000 * USD)]
    stack = SettlementStack(tmp_path / "engine", [MARKET], deposits, params=PARAMS)
    stack.server.shutdown_timeout = 0.2  # a test stops the servers under open connections
    async with stack:
        for k in [*COUNCIL, GUARDIAN, STRANGER]:
            stack.server.cluster.airdrop(k.pubkey(), 10 * LAMPORTS_PER_SOL)
        g = Gov(stack)
        exchange = stack.accounts.addresses.exchange()[0]
        await g.by(stack.authority).send([initialize_governance_ix(
            g.by(stack.authority).program, exchange=exchange,
            authority=stack.authority.pubkey(), council=[k.pubkey() for k in COUNCIL],
            threshold=2, guardian=GUARDIAN.pubkey(), timelock_seconds=TIMELOCK_S,
            max_leverage_cap=20)])  # fmt: skip
        yield g


def bid(num_lots: int) -> PlaceOrder:
    return PlaceOrder(0, *TRADER, Side.BID, 100 * PRICE_PRECISION, num_lots * LOT)


# ------------------------------------------------------------------ the whole flow


async def test_an_executed_change_reaches_the_next_margin_check_exactly_once(gov: Gov) -> None:
    # Arrange: 50 units at 100 = 5,000 notional: 500 initial at 10 %, fits 1,000 USDC
    stack = gov.stack
    placed = stack.process_one(bid(5_000))
    assert [type(e) for e in placed[:2]] == [OrderAccepted, OrderRested]
    stack.process_one(CancelOrder(0, *TRADER, placed[0].order_id))
    watcher = gov.watcher()
    async with watcher:
        await watcher.wait_synced(lambda: watcher.metrics.syncs >= 1)
        # Act: 25 % initial (4x) proposed and approved; not executable before the timelock
        risk = await gov.by(COUNCIL[0]).market_risk(0)
        risk["margin_tiers"][0].update(initial_ppm=250_000, maintenance_ppm=125_000)
        risk["max_leverage"] = 4
        proposal_id = await gov.by(COUNCIL[0]).propose_market(0, risk)
        await gov.by(COUNCIL[1]).approve(proposal_id)
        gov.warp_seconds(TIMELOCK_S - 60)
        with pytest.raises(ProgramRefused) as early:
            await gov.by(STRANGER).execute(proposal_id)
        still = stack.process_one(bid(5_000))  # still 10x
        assert type(still[0]) is OrderAccepted
        stack.process_one(CancelOrder(0, *TRADER, still[0].order_id))
        gov.warp_seconds(60)
        await gov.by(STRANGER).execute(proposal_id)
        await watcher.wait_synced(lambda: proposal_id in watcher.applied)
        with pytest.raises(ProgramRefused) as again:  # another payer: another transaction
            await gov.by(COUNCIL[2]).execute(proposal_id)
        after = stack.process_one(bid(5_000))
    # Assert: the timelock and double execution refused with their IDL errors
    assert early.value.name == "TimelockNotElapsed"
    assert again.value.name == "ProposalNotPending"
    # the engine journaled the change with its proposal id, and the next order used it
    [changed] = gov.journaled_changes()
    assert changed.proposal_id == engine_proposal_id(proposal_id) == proposal_id + 1
    assert json.loads(changed.params_json)["margin_tiers"] == [[U64_MAX, 250_000, 125_000]]
    assert type(after[0]) is OrderRejected and after[0].code == RejectCode.INSUFFICIENT_MARGIN
    assert watcher.metrics.params_applied == 1 and watcher.metrics.refused == 0


async def test_a_restarted_watcher_applies_nothing_twice_and_catches_up(gov: Gov) -> None:
    # Arrange: one change applied by a first watcher
    first = gov.watcher()
    async with first:
        await first.wait_synced(lambda: first.metrics.syncs >= 1)
        fee_change = await gov.executed_change(taker_fee_ppm=500)
        await first.wait_synced(lambda: fee_change in first.applied)
    # Act 1: a new watcher, told what the journal holds, and one told nothing at all
    assert gov.stack.engine is not None
    journaled = applied_proposal_ids(gov.stack.engine.journal.read())
    for applied in (journaled, set()):
        restarted = gov.watcher(applied=applied)
        answers = await restarted.sync()
        assert answers == [] and fee_change in restarted.applied
    # Act 2: a change executed while no watcher runs, then a watcher starts
    cap_change = await gov.executed_change(max_position_base=40 * BASE_PRECISION)
    late = gov.watcher(applied=applied_proposal_ids(gov.stack.engine.journal.read()))
    async with late:
        await late.wait_synced(lambda: cap_change in late.applied)
    # Assert: each proposal journaled once, the latest values in force
    assert [e.proposal_id - 1 for e in gov.journaled_changes()] == [fee_change, cap_change]
    params = gov.stack.engine.core.markets[0].params
    assert (params.taker_fee_ppm, params.max_position_base) == (500, 40 * BASE_PRECISION)
    assert journaled == {fee_change}


async def test_the_liquidators_share_and_buffer_governed_on_chain_reach_the_engine(
    gov: Gov,
) -> None:
    # Arrange
    watcher = gov.watcher()
    async with watcher:
        await watcher.wait_synced(lambda: watcher.metrics.syncs >= 1)
        # Act: one executed proposal moves both (bounded, no pace limit on either side)
        proposal_id = await gov.executed_change(
            liquidator_share_ppm=400_000, liquidation_buffer_ppm=20_000
        )
        await watcher.wait_synced(lambda: proposal_id in watcher.applied)
    # Assert: journaled as the engine's own fields; the Market holds the same values
    [changed] = gov.journaled_changes()
    new = json.loads(changed.params_json)
    assert (new["liquidator_share_ppm"], new["liquidation_buffer_ppm"]) == (400_000, 20_000)
    assert gov.stack.engine is not None
    params = gov.stack.engine.core.markets[0].params
    assert (params.liquidator_share_ppm, params.liquidation_buffer_ppm) == (400_000, 20_000)
    market = await gov.by(STRANGER).market_risk(0)
    assert (market["liquidator_share_ppm"], market["liquidation_buffer_ppm"]) == (400_000, 20_000)


async def test_a_change_executed_while_the_subscription_is_down_is_caught_up(gov: Gov) -> None:
    # Arrange: a watcher subscribed; a proposal approved and past its timelock
    watcher = gov.watcher(initial_backoff_s=0.02, max_backoff_s=0.2)
    async with watcher:
        await watcher.wait_synced(lambda: watcher.metrics.syncs >= 1)
        risk = await gov.by(COUNCIL[0]).market_risk(0)
        risk["taker_fee_ppm"] = 700
        proposal_id = await gov.by(COUNCIL[0]).propose_market(0, risk)
        await gov.by(COUNCIL[1]).approve(proposal_id)
        gov.warp_seconds(TIMELOCK_S)
        # Act: the RPC and PubSub servers go away; the proposal executes on the cluster itself
        # (no notification can reach the watcher); then the servers come back on their ports
        server = gov.stack.server
        rpc_port, ws_port = server.rpc_port, server.ws_port
        await server.stop()
        await asyncio.sleep(0.1)
        assert not watcher.subscribed.is_set()
        cluster = server.cluster
        ix = execute_ix(gov.by(STRANGER).program, proposal_id=proposal_id,
                        market=gov.stack.accounts.addresses.market(0)[0])  # fmt: skip
        tx = Transaction(
            [STRANGER], Message([ix], STRANGER.pubkey()), cluster.latest_blockhash()[0]
        )
        cluster.send_legacy(tx)
        gov.stack.server = LocalnetServer(
            cluster, rpc_port=rpc_port, ws_port=ws_port, shutdown_timeout=0.2
        )
        await gov.stack.server.start()
        await watcher.wait_synced(lambda: proposal_id in watcher.applied)
    # Assert: applied once, after the reconnect's catch-up read
    assert watcher.metrics.connects == 2 and watcher.metrics.notifications == 2  # propose, approve
    assert [e.proposal_id for e in gov.journaled_changes()] == [engine_proposal_id(proposal_id)]
    assert gov.stack.engine.core.markets[0].params.taker_fee_ppm == 700  # type: ignore[union-attr]


async def test_a_change_the_engine_refuses_is_journaled_as_refused_and_not_retried(
    gov: Gov,
) -> None:
    # Arrange: the chain's "no cap" -> a finite cap is a tightening on-chain, but 100x the
    # engine's own cap (10M base), above the engine's "at most double" limit
    watcher = gov.watcher()
    async with watcher:
        await watcher.wait_synced(lambda: watcher.metrics.syncs >= 1)
        # Act
        proposal_id = await gov.executed_change(max_position_base=10**9 * BASE_PRECISION)
        await watcher.wait_synced(lambda: proposal_id in watcher.applied)
        await watcher.sync()  # a second look changes nothing
    # Assert
    assert watcher.metrics.refused == 1 and watcher.metrics.params_applied == 0
    assert f"code {int(RejectCode.RISK_PARAMS_CHANGE_TOO_LARGE)} " in watcher.metrics.refusals[0]
    assert gov.journaled_changes() == []
    assert gov.stack.engine.core.markets[0].params.max_position_base == PARAMS.max_position_base  # type: ignore[union-attr]


async def test_the_guardian_halts_at_once_in_the_engine_but_cannot_loosen(gov: Gov) -> None:
    # Arrange
    watcher = gov.watcher()
    async with watcher:
        await watcher.wait_synced(lambda: watcher.metrics.syncs >= 1)
        # Act: no proposal, no timelock; a stranger cannot, the guardian can
        with pytest.raises(ProgramRefused) as stranger:
            await gov.by(STRANGER).guardian_status(0, int(MarketStatus.HALTED))
        await gov.by(GUARDIAN).guardian_status(0, int(MarketStatus.REDUCE_ONLY))
        await watcher.wait_synced(lambda: watcher.metrics.statuses_applied >= 1)
        reduce_only = gov.stack.engine.core.markets[0].breaker.status  # type: ignore[union-attr]
        with pytest.raises(ProgramRefused) as looser:
            await gov.by(GUARDIAN).guardian_status(0, int(MarketStatus.ACTIVE))
        await gov.by(GUARDIAN).guardian_status(0, int(MarketStatus.HALTED))
        await watcher.wait_synced(lambda: watcher.metrics.statuses_applied >= 2)
        refused = gov.stack.process_one(bid(1))
    # Assert
    assert stranger.value.name == "GuardianMismatch"
    assert looser.value.name == "GuardianStatusNotSafer"
    assert reduce_only == MarketStatus.REDUCE_ONLY
    assert gov.stack.engine.core.markets[0].breaker.status == MarketStatus.HALTED  # type: ignore[union-attr]
    assert type(refused[0]) is OrderRejected
    assert refused[0].code == RejectCode.MARKET_NOT_ACCEPTING


# ------------------------------------------------------------------ the mapping (pure)


def chain_risk(**changes: Any) -> ChainRiskParams:
    base: dict[str, Any] = {
        "funding_cap_rate": PARAMS.funding_cap_rate, "oracle_max_age_slots": 50,
        "oracle_max_age_seconds": 60, "max_position_base": U64_MAX,
        "max_open_interest_base": U64_MAX, "maker_fee_ppm": PARAMS.maker_fee_ppm,
        "taker_fee_ppm": PARAMS.taker_fee_ppm, "insurance_share_ppm": PARAMS.insurance_share_ppm,
        "oracle_max_confidence_ppm": 20_000, "liquidation_fee_ppm": PARAMS.liquidation_fee_ppm, "max_leverage": 10,
        "margin_tiers": PARAMS.margin_tiers, "liquidator_share_ppm": PARAMS.liquidator_share_ppm,
        "liquidation_buffer_ppm": PARAMS.liquidation_buffer_ppm,
    }  # fmt: skip
    return ChainRiskParams(**{**base, **changes})


def test_the_mapping_keeps_units_and_leaves_what_the_engine_does_not_govern() -> None:
    # same values as the engine's (the chain was created from them): nothing to change
    assert params_change(chain_risk(), PARAMS) == {}
    # u64 max is the program's "no cap": the engine keeps its own cap
    assert "max_position_base" not in engine_values(chain_risk())
    assert params_change(chain_risk(max_position_base=7 * BASE_PRECISION), PARAMS) == {
        "max_position_base": 7 * BASE_PRECISION
    }
    # fields the engine has no parameter for change nothing
    unmapped = chain_risk(max_leverage=3, oracle_max_age_slots=9, max_open_interest_base=10**12)
    assert params_change(unmapped, PARAMS) == {}
    # one set of liquidation parameters per market on both sides (RiskParams carries all three)
    assert params_change(chain_risk(liquidation_fee_ppm=1), PARAMS) == {"liquidation_fee_ppm": 1}
    assert params_change(
        chain_risk(liquidator_share_ppm=PARAMS.liquidator_share_ppm, liquidation_buffer_ppm=7),
        PARAMS,
    ) == {"liquidation_buffer_ppm": 7}
    tiers = ((U64_MAX, 90_000, 45_000),)
    assert params_change(chain_risk(margin_tiers=tiers, taker_fee_ppm=500), PARAMS) == {
        "margin_tiers": [[U64_MAX, 90_000, 45_000]], "taker_fee_ppm": 500}  # fmt: skip


def test_the_plan_orders_executed_proposals_and_ends_on_the_market_values() -> None:
    def proposal(i: int, status: int, market: int = 0, **risk: Any) -> ProposalView:
        return ProposalView(i, "p", market, status, 3, 0, 0, chain_risk(**risk), None)

    snapshot = GovernanceSnapshot(
        slot=9, council=("a", "b"), threshold=2, guardian="g", timelock_seconds=3_600,
        max_leverage_cap=20, escape_hatch_slots=150, next_proposal_id=5,
        proposals=(proposal(0, 1, taker_fee_ppm=500), proposal(1, 0, taker_fee_ppm=900),
                   proposal(2, 2), proposal(3, 1, taker_fee_ppm=600),
                   ProposalView(4, "p", 0xFFFF, 1, 3, 0, 0, None, {"timelock_seconds": 7_200,
                                                                    "max_leverage_cap": 20,
                                                                    "escape_hatch_slots": 150})),
        markets={0: MarketView(0, 2, chain_risk(taker_fee_ppm=650))},
    )  # fmt: skip
    engine = {0: EngineMarket(PARAMS, 0)}
    changes, statuses, settled = plan_sync(snapshot, engine, applied={0})
    # 0 applied already; 1 pending, 2 cancelled: nothing; 3 the last one: the Market's values
    assert [(c.proposal_id, c.source.taker_fee_ppm) for c in changes] == [(3, 650)]
    assert settled == [4]  # global: nothing in the engine follows it
    assert [(s.market_id, s.status) for s in statuses] == [(0, 2)]  # stricter: mirrored
    looser = {0: EngineMarket(PARAMS, int(MarketStatus.HALTED))}
    assert plan_sync(snapshot, looser, applied={0, 3})[1] == []  # never loosened
