"""The API's governance read endpoints (issue 8) fed the way the main job feeds them: the engine
behind an ``EngineRunner``, the governance watcher submitting through it and handing every
chain snapshot to the app's ``GovernanceView``; a real aiohttp server; the embedded cluster
with a warped clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

# pytest puts this directory on sys.path (rootdir-relative, no packages)
from test_gov_engine import COUNCIL, STRANGER, TIMELOCK_S, Gov, gov  # noqa: F401

from exchange.api.app import create_app
from exchange.api.config import ApiConfig
from exchange.api.governance import GOVERNANCE_KEY
from exchange.core.units import U64_MAX
from exchange.engine.sequencer import EngineRunner
from settlement.gov_watcher import EngineDirect, GovWatcher
from settlement.onchain import DEFAULT_ESCAPE_HATCH_SLOTS

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_risk_params_and_proposals_follow_the_chain(gov: Gov) -> None:  # noqa: F811
    # Arrange: the engine behind a runner, the API, and a watcher feeding the app's view
    engine = gov.stack.engine
    assert engine is not None
    runner = EngineRunner(engine)
    app = create_app(ApiConfig(), runner)
    view = app[GOVERNANCE_KEY]
    port = EngineDirect(engine, submit=lambda c: asyncio.wrap_future(runner.submit(c)))
    watcher = GovWatcher(program=gov.by(STRANGER).program, ws_url=gov.stack.server.ws_url,
                         market_ids=[0], engine=port, on_snapshot=view.update)  # fmt: skip
    try:
        async with TestClient(TestServer(app)) as client:

            async def get(path: str) -> tuple[int, Any]:
                resp = await client.get(path)
                return resp.status, await resp.json()

            unfed = await get("/v1/governance/proposals")
            unfed_params = await get("/v1/governance/params")
            async with watcher:
                await watcher.wait_synced(lambda: watcher.metrics.syncs >= 1)
                # Act: a proposal, approved 2 of 3, seen as pending with its earliest time
                risk = await gov.by(COUNCIL[0]).market_risk(0)
                risk["margin_tiers"][0].update(initial_ppm=250_000, maintenance_ppm=125_000)
                risk["max_leverage"] = 4
                proposal_id = await gov.by(COUNCIL[0]).propose_market(0, risk)
                await gov.by(COUNCIL[1]).approve(proposal_id)
                await watcher.wait_synced(
                    lambda: (
                        bool(view.proposals("pending")["proposals"])
                        and view.proposals("pending")["proposals"][0]["approvals"] == 2
                    )
                )
                pending = await get("/v1/governance/proposals")
                params = await get("/v1/governance/params")
                before = await get("/v1/markets/0/risk-params")
                gov.warp_seconds(TIMELOCK_S)
                await gov.by(STRANGER).execute(proposal_id)
                await watcher.wait_synced(lambda: proposal_id in watcher.applied)
                after = await get("/v1/markets/0/risk-params")
                still_pending = await get("/v1/governance/proposals")
                executed = await get("/v1/governance/proposals?status=executed")
                bad = await get("/v1/governance/proposals?status=maybe")
                unknown = await get("/v1/markets/7/risk-params")
    finally:
        runner.close()
    # Assert
    assert unfed == (200, {"available": False, "as_of_slot": None, "updated_ns": 0,
                           "proposals": []})  # fmt: skip
    status, body = pending
    assert status == 200 and body["available"] and body["threshold"] == 2
    assert body["escape_hatch_slots"] == DEFAULT_ESCAPE_HATCH_SLOTS
    assert unfed_params == (200, {"available": False, "as_of_slot": None, "updated_ns": 0})
    status, global_params = params
    assert status == 200 and global_params["available"]
    assert (global_params["timelock_seconds"], global_params["max_leverage_cap"],
            global_params["escape_hatch_slots"]) == (TIMELOCK_S, 20, DEFAULT_ESCAPE_HATCH_SLOTS)  # fmt: skip
    assert (global_params["threshold"], len(global_params["council"]),
            global_params["next_proposal_id"]) == (2, 3, 1)  # fmt: skip
    assert global_params["as_of_slot"] >= body["as_of_slot"]  # a later snapshot at most
    [p] = body["proposals"]
    assert (p["id"], p["status"], p["approvals"], p["market_id"]) == (0, "pending", 2, 0)
    assert p["earliest_execution_unix_s"] - p["created_unix_s"] == TIMELOCK_S
    assert before[1]["params"]["margin_tiers"] == [[U64_MAX, 100_000, 50_000]]
    assert before[1]["on_chain"]["risk"]["max_leverage"] == 10
    assert after[1]["params"]["margin_tiers"] == [[U64_MAX, 250_000, 125_000]]
    assert after[1]["on_chain"]["risk"]["max_leverage"] == 4
    assert after[1]["as_of_seq"] > before[1]["as_of_seq"]
    assert still_pending[1]["proposals"] == []
    assert [q["id"] for q in executed[1]["proposals"]] == [0]
    assert bad[0] == 400 and bad[1]["code"] == "MALFORMED_REQUEST"
    assert unknown[0] == 404 and unknown[1]["code"] == "UNKNOWN_MARKET"
